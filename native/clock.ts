// CLOCK_REALTIME in nanoseconds, the clock the kernel stamps files with (conmon's exit files): timestamps berth
// takes itself and those it reads from files then order correctly. Node's own clocks are ms (Date) or monotonic.
import { libc } from './libc';

const CLOCK_REALTIME = 0;

let clockGettime: ((clock: number, ts: Buffer) => number) | undefined;

export function realtimeNs(): bigint {
  clockGettime ??= libc().func('int clock_gettime(int, _Out_ uint8_t *ts)') as unknown as (clock: number, ts: Buffer) => number;
  const ts = Buffer.alloc(16);
  if (clockGettime(CLOCK_REALTIME, ts) !== 0) return BigInt(Date.now()) * 1_000_000n;
  return ts.readBigInt64LE(0) * 1_000_000_000n + ts.readBigInt64LE(8);
}
