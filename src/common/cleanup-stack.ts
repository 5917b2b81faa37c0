// Undo steps of a multi-step operation, run in reverse when a later step fails (CRI-O's pattern).
export class CleanupStack {
  private readonly steps: { what: string; undo: () => Promise<void> | void }[] = [];

  push(what: string, undo: () => Promise<void> | void): void {
    this.steps.push({ what, undo });
  }

  /** Runs every undo step, newest first; a failing step does not stop the others. Returns what failed. */
  async unwind(): Promise<{ what: string; err: unknown }[]> {
    const failures: { what: string; err: unknown }[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.undo();
      } catch (err) {
        failures.push({ what: step.what, err });
      }
    }
    return failures;
  }
}
