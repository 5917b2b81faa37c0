// CRI timestamps are int64 nanoseconds since the epoch. A JS number holds only 2^53, so they travel as bigint
// inside berth and as decimal strings on the wire (proto-loader's longs: String).

import { realtimeNs } from '../../native/clock';

/** Wall-clock now in ns from CLOCK_REALTIME: the same clock as the file times conmon's exit files carry. */
export function nowNs(): bigint {
  return realtimeNs();
}

export function nsToWire(ns: bigint): string {
  return ns.toString();
}

export function msToNs(ms: number): bigint {
  return BigInt(Math.round(ms)) * 1_000_000n;
}
