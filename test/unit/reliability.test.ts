/**
 * RELIABILITY.md against the suite: every row names a test that exists,
 * every test titled `R-…:` has a row, and the totals count the rows. That
 * the named tests ran and passed is checked at the end of every run, by
 * test/support/reliability-reporter.ts (its rule is tested here).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { filesUnder, reliabilityRows, ROOT, unverifiedRows, type RanTest, type ReliabilityRow } from '../support/reliability-table.ts';

describe('Document: RELIABILITY.md', () => {
  const markdown = readFileSync(join(ROOT, 'RELIABILITY.md'), 'utf8');
  const table = reliabilityRows(markdown);

  it('has one row per case, with unique ids, each observed as passed', () => {
    // Assess
    expect(table.length).toBeGreaterThanOrEqual(40);
    expect(new Set(table.map((row) => row.id)).size).toBe(table.length);
    expect(table.filter((row) => row.observed !== 'passed')).toEqual([]);
  });

  it('names, in each row, a test that exists in the file it gives', () => {
    // Act
    const missing = table.filter((row) => {
      const source = readFileSync(join(ROOT, row.file), 'utf8');
      return !source.includes(row.title);
    });

    // Assess
    expect(missing).toEqual([]);
  });

  it('has a row for every test whose title starts with an R- case id', () => {
    // Prepare
    const listed = new Set(table.map((row) => `${row.file} › ${row.title}`));

    // Act
    const unlisted = filesUnder('test', /\.(test|suite|contract)\.ts$/).flatMap((file) => {
      const path = join(ROOT, file);
      const ids = [...readFileSync(path, 'utf8').matchAll(/\bit\(\s*'(R-[a-z0-9-]+:)/g)].map((match) => match[1]!);
      return ids.filter((id) => !listed.has(`${file} › ${id}`)).map((id) => `${file} › ${id}`);
    });

    // Assess
    expect(unlisted).toEqual([]);
  });

  it('totals what the table holds, with no byte lost and no unverified byte served', () => {
    // Act
    const totals = /^Totals: cases (\d+) · passed (\d+) · bytes lost (\d+) · unverified bytes served (\d+)$/m.exec(markdown);

    // Assess
    expect(totals?.slice(1).map(Number)).toEqual([table.length, table.length, 0, 0]);
  });
});

describe('Function: unverifiedRows', () => {
  const rows: ReliabilityRow[] = [
    { id: 'F01', observed: 'passed', file: 'test/unit/a.test.ts', title: 'R-first:' },
    { id: 'F02', observed: 'passed', file: 'test/contract/store.contract.ts', title: 'keeps the bytes' },
  ];
  const passing: RanTest[] = [
    { file: 'test/unit/a.test.ts', name: 'R-first: does what it says', state: 'passed' },
    { file: 'test/contract/embedded.test.ts', name: 'keeps the bytes', state: 'passed' },
    { file: 'test/contract/cloud.test.ts', name: 'keeps the bytes', state: 'passed' },
  ];

  it('accepts a run in which every named test passed, on every backend that ran it', () => {
    expect(unverifiedRows(rows, passing, true)).toEqual([]);
  });

  it('names a row whose test failed, or was skipped wherever it ran, and where', () => {
    // Prepare
    const ran = passing.map((test): RanTest => (test.file.startsWith('test/contract/') ? { ...test, state: 'skipped' } : test));
    ran[0] = { ...ran[0]!, state: 'failed' };

    // Act
    const problems = unverifiedRows(rows, ran, true);

    // Assess
    expect(problems).toEqual([
      'F01: test/unit/a.test.ts › R-first: failed (in test/unit/a.test.ts)',
      'F02: test/contract/store.contract.ts › keeps the bytes skipped (in test/contract/embedded.test.ts, test/contract/cloud.test.ts)',
    ]);
  });

  it('accepts a contract case one backend leaves out when another showed it', () => {
    const ran = passing.map((test): RanTest => (test.file === 'test/contract/cloud.test.ts' ? { ...test, state: 'skipped' } : test));

    expect(unverifiedRows(rows, ran, true)).toEqual([]);
  });

  it('names a row whose test file ran without it, and a suite row the whole suite did not run', () => {
    // Prepare
    const ran: RanTest[] = [{ file: 'test/unit/a.test.ts', name: 'R-other: something else', state: 'passed' }];

    // Act
    const whole = unverifiedRows(rows, ran, true);
    const partial = unverifiedRows(rows, ran, false);

    // Assess
    expect(whole).toEqual(['F01: test/unit/a.test.ts › R-first: did not run', 'F02: test/contract/store.contract.ts › keeps the bytes did not run']);
    expect(partial).toEqual(['F01: test/unit/a.test.ts › R-first: did not run']);
  });

  it('reads it.each placeholders in a title as whatever they printed', () => {
    const each: ReliabilityRow = { id: 'F03', observed: 'passed', file: 'test/unit/a.test.ts', title: 'refuses %i hours, naming $setting' };
    const ran = (name: string): RanTest[] => [{ file: 'test/unit/a.test.ts', name, state: 'passed' }];

    expect(unverifiedRows([each], ran('refuses 23 hours, naming pruneGraceHours'), true)).toEqual([]);
    expect(unverifiedRows([each], ran('refuses hours, naming'), true)).toEqual(['F03: test/unit/a.test.ts › refuses %i hours, naming $setting did not run']);
  });

  it('leaves alone a row whose test file the run left out', () => {
    expect(unverifiedRows(rows, [{ file: 'test/unit/b.test.ts', name: 'R-first: elsewhere', state: 'failed' }], false)).toEqual([]);
  });
});
