/**
 * docs/costs.md against its own arithmetic: the fixed-cost rows add up to the
 * total line, and that an idle mirror stays under $6 a month.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const COSTS = readFileSync(new URL('../../docs/costs.md', import.meta.url), 'utf8');
const FIXED_BUDGET_DOLLARS = 6;

/** The table under the "Fixed monthly cost" heading: each row's last cell in cents. */
function fixedTable(markdown: string): { rows: { item: string; cents: number }[]; totalCents: number } {
  const section = markdown.split(/^## /m).find((part) => part.startsWith('Fixed monthly cost'));
  if (!section) throw new Error('docs/costs.md has no "## Fixed monthly cost" section');
  const cells = section
    .split('\n')
    .filter((line) => /^\| .*\$\d+\.\d{2}\** \|$/.test(line))
    .map((line) => line.split('|').map((cell) => cell.trim()).filter(Boolean));
  const cents = (cell: string) => Math.round(Number(/\$(\d+\.\d{2})/.exec(cell)![1]) * 100);
  const total = cells.find((row) => row[0]!.startsWith('**Total'));
  if (!total) throw new Error('the fixed-cost table has no **Total fixed** line');
  return {
    rows: cells.filter((row) => row !== total).map((row) => ({ item: row[0]!, cents: cents(row.at(-1)!) })),
    totalCents: cents(total.at(-1)!),
  };
}

describe('docs/costs.md', () => {
  it('adds the fixed-cost rows up to its total line', () => {
    const { rows, totalCents } = fixedTable(COSTS);

    expect(rows.length).toBeGreaterThan(5);
    expect(rows.reduce((sum, row) => sum + row.cents, 0)).toBe(totalCents);
  });

  it(`keeps the fixed monthly total under $${FIXED_BUDGET_DOLLARS}`, () => {
    expect(fixedTable(COSTS).totalCents).toBeLessThan(FIXED_BUDGET_DOLLARS * 100);
  });
});
