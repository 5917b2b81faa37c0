// Writable-layer usage for the stats RPCs. diskUsage walks the tree asynchronously (never blocking the event loop)
// but costs a stat per file; the kubelet asks every 10 s per container, so a recent result is reused and
// concurrent asks for one dir share one walk.
import { SingleFlight } from '../../common/single-flight';
import { DiskUsage, diskUsage } from '../../storage/disk-usage';

export interface UsageCacheOptions {
  /** A result this young is reused. Default 30 s. */
  maxAgeMs?: number;
  /** For tests. */
  measure?: (dir: string) => Promise<DiskUsage>;
  now?: () => number;
}

interface Entry {
  usage: DiskUsage;
  /** When the walk that produced it started: anything written after may be missing from it. */
  atMs: number;
}

export class UsageCache {
  private readonly maxAgeMs: number;
  private readonly measure: (dir: string) => Promise<DiskUsage>;
  private readonly now: () => number;
  // Insertion order ≈ age order (a refresh re-inserts), so expiry only looks at the front; the map holds little more
  // than the dirs asked about within maxAgeMs.
  private readonly entries = new Map<string, Entry>();
  private readonly flights = new SingleFlight<DiskUsage>();

  constructor(opts: UsageCacheOptions = {}) {
    this.maxAgeMs = opts.maxAgeMs ?? 30_000;
    this.measure = opts.measure ?? diskUsage;
    this.now = opts.now ?? Date.now;
  }

  /** Bytes and inodes under `dir` (0/0 when it is not there), at most maxAgeMs old. Failures are not cached. */
  get(dir: string): Promise<DiskUsage> {
    const now = this.now();
    this.expire(now);
    const hit = this.entries.get(dir);
    if (hit && now - hit.atMs < this.maxAgeMs) return Promise.resolve(hit.usage);
    return this.flights.run(dir, async () => {
      const usage = await this.measure(dir);
      this.entries.delete(dir);
      this.entries.set(dir, { usage, atMs: now });
      return usage;
    }).promise;
  }

  /** Drops the dir's result (its container was removed). A walk already running still completes and is cached. */
  forget(dir: string): void {
    this.entries.delete(dir);
  }

  get size(): number {
    return this.entries.size;
  }

  private expire(now: number): void {
    for (const [dir, e] of this.entries) {
      if (now - e.atMs < this.maxAgeMs) break;
      this.entries.delete(dir);
    }
  }
}
