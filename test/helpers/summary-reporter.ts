// Ends a jest run with one plain line, "N passed, N failed, N skipped", that any CI can read.
interface Results {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numRuntimeErrorTestSuites: number;
}

class SummaryReporter {
  onRunComplete(_contexts: unknown, results: Results): void {
    // A suite that failed to load ran no test but must still count as a failure.
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    process.stdout.write(`\n${results.numPassedTests} passed, ${failed} failed, ${results.numPendingTests + results.numTodoTests} skipped\n`);
  }
}

module.exports = SummaryReporter;
