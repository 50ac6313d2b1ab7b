/**
 * RELIABILITY.md against the suite: every row names a test that exists,
 * every test titled `R-…:` has a row, and the totals count the rows.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TABLE_ROW = /^\| (F\d+) \| (.+?) \| (.+?) \| (.+?) \| `([^`]+)` › (.+?) \|$/;

interface Row {
  id: string;
  observed: string;
  file: string;
  title: string;
}

function rows(markdown: string): Row[] {
  return markdown
    .split('\n')
    .map((line) => TABLE_ROW.exec(line))
    .filter((match): match is RegExpExecArray => match !== null)
    .map(([, id, , , observed, file, title]) => ({ id: id!, observed: observed!, file: file!, title: title! }));
}

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(path);
    return /\.(test|suite|contract)\.ts$/.test(entry.name) || entry.name.endsWith('.contract.ts') ? [path] : [];
  });
}

describe('Document: RELIABILITY.md', () => {
  const markdown = readFileSync(join(ROOT, 'RELIABILITY.md'), 'utf8');
  const table = rows(markdown);

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
    const unlisted = testFiles(join(ROOT, 'test')).flatMap((path) => {
      const file = relative(ROOT, path);
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
