/** Concurrent calls with the same key share one execution and its result (e.g. two pulls of one layer). */
export class SingleFlight<V> {
  private readonly inFlight = new Map<string, Promise<V>>();

  has(key: string): boolean {
    return this.inFlight.has(key);
  }

  run(key: string, fn: () => Promise<V>): { promise: Promise<V>; shared: boolean } {
    const existing = this.inFlight.get(key);
    if (existing) return { promise: existing, shared: true };
    const promise = fn().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return { promise, shared: false };
  }
}
