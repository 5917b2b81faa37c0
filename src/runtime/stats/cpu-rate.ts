// CRI wants usage_nano_cores, a rate, while the cgroup gives a cumulative counter: the rate needs the previous
// sample of the same container, kept here between stats calls.

export interface CpuRateOptions {
  /** A key not sampled for this long is forgotten (a container that went away without forget()). Default 5 min. */
  ttlNs?: bigint;
  /** Hard cap; the least recently sampled keys go first. Default 10 000. */
  maxKeys?: number;
}

interface Sample {
  usageCoreNs: bigint;
  timestampNs: bigint;
}

export class CpuRate {
  private readonly ttlNs: bigint;
  private readonly maxKeys: number;
  // Insertion order = last-sampled order (each sample re-inserts its key), so expiry only ever looks at the front.
  private readonly samples = new Map<string, Sample>();

  constructor(opts: CpuRateOptions = {}) {
    this.ttlNs = opts.ttlNs ?? 300_000_000_000n;
    this.maxKeys = opts.maxKeys ?? 10_000;
  }

  /** Records a sample; returns nano-cores (Δusage_ns / Δt_s) since the key's previous one, undefined for the first. */
  sample(key: string, usageCoreNs: bigint, timestampNs: bigint): bigint | undefined {
    this.expire(timestampNs);
    const prev = this.samples.get(key);
    if (prev && timestampNs <= prev.timestampNs) return undefined; // same or older sample: nothing to divide by, keep the newer one
    this.samples.delete(key);
    this.samples.set(key, { usageCoreNs, timestampNs });
    if (this.samples.size > this.maxKeys) this.dropOldest();
    // A counter that went down is a new cgroup under the same key: start over.
    if (!prev || usageCoreNs < prev.usageCoreNs) return undefined;
    return ((usageCoreNs - prev.usageCoreNs) * 1_000_000_000n) / (timestampNs - prev.timestampNs);
  }

  forget(key: string): void {
    this.samples.delete(key);
  }

  get size(): number {
    return this.samples.size;
  }

  private expire(nowNs: bigint): void {
    for (const [key, s] of this.samples) {
      if (nowNs - s.timestampNs <= this.ttlNs) break;
      this.samples.delete(key);
    }
  }

  private dropOldest(): void {
    const oldest = this.samples.keys().next();
    if (!oldest.done) this.samples.delete(oldest.value);
  }
}
