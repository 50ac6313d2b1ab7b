/** The benchmark table, on the terminal and as a dated section of BENCHMARKS.md. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

export interface BenchRow {
  benchmark: string;
  size: string;
  time: string;
  rate: string;
  notes: string;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
}

export function thisMachine(): Machine {
  const all = cpus();
  return {
    cpu: all[0]?.model.trim() ?? 'unknown CPU',
    cores: all.length,
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version,
  };
}

export function markdownTable(rows: readonly BenchRow[]): string {
  const header = '| Benchmark | Size | Time | Rate | Notes |\n|---|---:|---:|---:|---|';
  const escape = (cell: string) => cell.replaceAll('|', '\\|');
  const lines = rows.map((row) => `| ${[row.benchmark, row.size, row.time, row.rate, row.notes].map(escape).join(' | ')} |`);
  return [header, ...lines].join('\n');
}

const TITLE = `# Benchmarks

Measured by \`npm run bench\` (bench/run.ts) on the machine named in each
section. MB = 2^20 bytes. Each run adds a dated section; a second run on the
same date replaces that date's section. Set \`BENCH_ITEM_MB\` to change the
size of the synced item.
`;

/** Adds (or, for the same date, replaces) the section for `date` in the file at `path`. */
export function recordSection(path: string, date: string, machine: Machine, body: string): void {
  const begin = `<!-- bench ${date} -->`;
  const end = `<!-- /bench ${date} -->`;
  const section = [
    begin,
    `## ${date}`,
    '',
    `${machine.cpu} · ${machine.cores} cores · ${machine.memoryGiB.toFixed(1)} GiB RAM · Node ${machine.node} · ${process.platform}/${process.arch}`,
    '',
    body.trimEnd(),
    end,
  ].join('\n');
  const existing = existsSync(path) ? readFileSync(path, 'utf8') : TITLE;
  const start = existing.indexOf(begin);
  const stop = existing.indexOf(end);
  const updated =
    start !== -1 && stop > start
      ? existing.slice(0, start) + section + existing.slice(stop + end.length)
      : `${existing.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, updated);
}
