/**
 * RELIABILITY.md's table of failure cases, each naming the test that shows
 * it, and the check that those tests ran and passed (test/support/reliability-reporter.ts
 * applies it at the end of every vitest run).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TABLE_ROW = /^\| (F\d+) \| (.+?) \| (.+?) \| (.+?) \| `([^`]+)` › (.+?) \|$/;

export interface ReliabilityRow {
  id: string;
  /** The table's "observed" cell. */
  observed: string;
  /** Relative to the repository: a test file, or a suite or contract that test files run. */
  file: string;
  /** The test's title, or its `R-…:` prefix. */
  title: string;
}

export function reliabilityRows(markdown = readFileSync(join(ROOT, 'RELIABILITY.md'), 'utf8')): ReliabilityRow[] {
  return markdown
    .split('\n')
    .map((line) => TABLE_ROW.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map(([, id, , , observed, file, title]) => ({ id: id!, observed: observed!, file: file!, title: title! }));
}

/** A test as a run reported it. */
export interface RanTest {
  /** The test file it ran in, relative to the repository. */
  file: string;
  name: string;
  state: 'passed' | 'failed' | 'skipped' | 'pending';
}

/**
 * What is wrong with each row the run could show: its test failed, did
 * not run, or was skipped everywhere it ran. A row naming a test file the run left out is not
 * judged; nor one naming a suite or contract, unless `wholeSuite` (every test
 * file ran, unfiltered), since only then must its tests have run.
 */
export function unverifiedRows(rows: readonly ReliabilityRow[], ran: readonly RanTest[], wholeSuite: boolean): string[] {
  const files = new Set(ran.map((test) => test.file));
  const problems: string[] = [];
  for (const row of rows) {
    const direct = row.file.endsWith('.test.ts');
    if (direct && !files.has(row.file)) continue;
    const title = titlePattern(row.title);
    const matching = ran.filter((test) => title.test(test.name) && (!direct || test.file === row.file));
    if (matching.length === 0) {
      if (direct || wholeSuite) problems.push(`${row.id}: ${row.file} › ${row.title} did not run`);
      continue;
    }
    // A contract may leave a case out on a backend that cannot settle it (runIf), as long as another backend showed it.
    const failed = matching.filter((test) => test.state === 'failed');
    const shown = failed.length === 0 && matching.some((test) => test.state === 'passed');
    if (!shown) {
      const wrong = failed.length > 0 ? failed : matching;
      problems.push(`${row.id}: ${row.file} › ${row.title} ${[...new Set(wrong.map((test) => test.state))].join(', ')} (in ${[...new Set(wrong.map((test) => test.file))].join(', ')})`);
    }
  }
  return problems;
}

/** A title as written in the test file, `it.each`'s placeholders (`%i`, `$name`) standing for what they print. */
function titlePattern(title: string): RegExp {
  const escaped = title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped.replace(/%[sdifjo#]/g, '.+?').replace(/\\\$[\w.]+/g, '.+?')}`);
}

/** Every file under `dir` whose name matches `pattern`, relative to the repository. */
export function filesUnder(dir: string, pattern: RegExp): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && pattern.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name).slice(ROOT.length));
}
