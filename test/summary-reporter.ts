import type { Reporter, TestModule } from 'vitest/node'

/**
 * Ends the run with one plain line, `tests: N passed, N failed, N skipped`, which CI reads. A file
 * that failed before any test ran counts as one failure.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>) {
    let passed = 0
    let failed = unhandledErrors.length
    let skipped = 0
    for (const testModule of testModules) {
      let ran = 0
      for (const test of testModule.children.allTests()) {
        ran += 1
        const state = test.result().state
        if (state === 'passed') passed += 1
        else if (state === 'failed') failed += 1
        else skipped += 1
      }
      if (ran === 0 && testModule.state() === 'failed') failed += 1
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`)
  }
}
