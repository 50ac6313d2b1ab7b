/**
 * A vitest reporter: at the end of a run, every RELIABILITY.md row whose
 * test was in it must have run and passed, or the run fails.
 */
import { relative } from 'node:path';
import type { Reporter, TestModule, Vitest } from 'vitest/node';
import { filesUnder, reliabilityRows, ROOT, unverifiedRows, type RanTest } from './reliability-table.ts';

export default class ReliabilityReporter implements Reporter {
  private filtered = false;

  onInit(vitest: Vitest): void {
    this.filtered = vitest.config.testNamePattern !== undefined;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const ran: RanTest[] = testModules.flatMap((module) => {
      const file = relative(ROOT, module.moduleId);
      return [...module.children.allTests()].map((test) => ({ file, name: test.name, state: test.result().state }));
    });
    const testFiles = filesUnder('test', /\.test\.ts$/).filter((file) => !file.endsWith('.scale.test.ts'));
    const wholeSuite = !this.filtered && testFiles.every((file) => testModules.some((module) => relative(ROOT, module.moduleId) === file));
    const rows = this.filtered ? [] : reliabilityRows();
    const problems = unverifiedRows(rows, ran, wholeSuite);
    if (problems.length === 0) return;
    console.error(`\nRELIABILITY.md: ${problems.length} case(s) not shown by this run:\n${problems.map((problem) => `  ${problem}`).join('\n')}`);
    process.exitCode = 1;
  }
}
