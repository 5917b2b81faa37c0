// CRI timestamps are int64 nanoseconds since the epoch. A JS number holds only 2^53, so they travel as bigint
// inside berth and as decimal strings on the wire (proto-loader's longs: String).

const originNs = BigInt(Math.round(performance.timeOrigin * 1e6));

/** Wall-clock now in ns, with sub-millisecond resolution from the monotonic clock. */
export function nowNs(): bigint {
  return originNs + BigInt(Math.round(performance.now() * 1e6));
}

export function nsToWire(ns: bigint): string {
  return ns.toString();
}

export function msToNs(ms: number): bigint {
  return BigInt(Math.round(ms)) * 1_000_000n;
}
