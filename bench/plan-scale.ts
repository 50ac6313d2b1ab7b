/**
 * Planning cost against catalog size: parse a products document of N items
 * and plan a sync of all of them into an empty store, for N from 1k to 100k.
 * Each size runs in fresh node processes (BENCH_SCALE_PROCESSES, default 3),
 * so one size's garbage and heap growth cannot inflate the next; in each,
 * the time is the median of 5 runs after a warm-up and the memory is what a
 * parse + plan keeps reachable (heap used after a full GC, with and without
 * the plan) and how far RSS grew. The table and an SVG plot (log-log, with
 * the straight line that linear growth would follow) go to BENCHMARKS.md
 * and docs/plan-scale.svg.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import type { BenchRow } from './lib/report.ts';

const SIZES = [1_000, 3_000, 10_000, 30_000, 100_000] as const;
const ITEMS_PER_PRODUCT = 100; // 10 versions × 10 items, as in (d)
const RUNS_PER_PROCESS = 5;
const SELF = fileURLToPath(import.meta.url);
export const PLOT_FILE = fileURLToPath(new URL('../docs/plan-scale.svg', import.meta.url));
const run = promisify(execFile);

interface ScalePoint {
  items: number;
  ms: number;
  retainedBytes: number;
  rssGrowthBytes: number;
}

// ---------------------------------------------------------------- one size, in a child process

async function measureInThisProcess(items: number): Promise<ScalePoint> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const { syntheticProducts } = await import('./lib/synthetic-catalog.ts');
  const { serializeMetadata } = await import('../test/support/signed-upstream.ts');
  const { parseProducts } = await import('../functions/core/simplestreams.ts');
  const { planSync } = await import('../functions/core/planner.ts');
  const file = 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson';
  const text = serializeMetadata(syntheticProducts({ products: items / ITEMS_PER_PRODUCT, versionsPerProduct: 10, itemsPerVersion: 10 }));
  const parseAndPlan = () => planSync({ products: [{ file, doc: parseProducts(file, text) }], selection: { filters: [] }, stored: new Map() });

  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const rssBefore = process.memoryUsage().rss;
  let kept = parseAndPlan();
  if (kept.copy.length !== items) throw new Error(`planned ${kept.copy.length} copies of ${items} items`);
  gc();
  const retainedBytes = process.memoryUsage().heapUsed - heapBefore;
  const rssGrowthBytes = process.memoryUsage().rss - rssBefore;
  const times: number[] = [];
  for (let i = 0; i < RUNS_PER_PROCESS; i++) {
    const started = performance.now();
    kept = parseAndPlan();
    times.push(performance.now() - started);
  }
  return { items, ms: median(times), retainedBytes, rssGrowthBytes };
}

// ---------------------------------------------------------------- all sizes

export async function benchPlanScale(): Promise<{ rows: BenchRow[]; notes: string[] }> {
  const processes = Number(process.env.BENCH_SCALE_PROCESSES ?? 3);
  const points: ScalePoint[] = [];
  for (const items of SIZES) {
    const samples: ScalePoint[] = [];
    for (let i = 0; i < processes; i++) {
      const { stdout } = await run(process.execPath, [SELF, '--items', String(items)], { maxBuffer: 2 ** 20 });
      samples.push(JSON.parse(stdout) as ScalePoint);
    }
    points.push({
      items,
      ms: median(samples.map((s) => s.ms)),
      retainedBytes: median(samples.map((s) => s.retainedBytes)),
      rssGrowthBytes: median(samples.map((s) => s.rssGrowthBytes)),
    });
  }
  const time = fitLine(points.map((p) => [p.items, p.ms]));
  const heap = fitLine(points.map((p) => [p.items, p.retainedBytes]));
  writeFileSync(PLOT_FILE, plot(points, time.slope, heap.slope));

  const rows: BenchRow[] = points.map((p) => ({
    benchmark: 'i. Parse + plan, all items to copy (catalog scale)',
    size: `${p.items / 1000}k items`,
    time: `${p.ms.toFixed(p.ms < 10 ? 2 : 0)} ms`,
    rate: `${((p.ms * 1000) / p.items).toFixed(1)} µs/item`,
    notes: `heap kept ${(p.retainedBytes / 2 ** 20).toFixed(1)} MB (${(p.retainedBytes / p.items).toFixed(0)} B/item), RSS grew ${(p.rssGrowthBytes / 2 ** 20).toFixed(0)} MB`,
  }));
  const largest = points.at(-1)!;
  const tenth = points.find((p) => p.items === largest.items / 10)!;
  const perItemGrowth = (a: ScalePoint, b: ScalePoint, pick: (p: ScalePoint) => number) => (pick(b) / b.items / (pick(a) / a.items)).toFixed(2);
  const notes = [
    `(i) Least-squares lines through the ${points.length} sizes: time ${(time.slope * 1000).toFixed(2)} µs/item ${signed(time.intercept, 1)} ms (R² ${time.r2.toFixed(4)}), ` +
      `heap ${heap.slope.toFixed(0)} B/item ${signed(heap.intercept / 2 ** 20, 1)} MB (R² ${heap.r2.toFixed(4)}). ` +
      `Going from ${tenth.items / 1000}k to ${largest.items / 1000}k items multiplies the cost per item by ${perItemGrowth(tenth, largest, (p) => p.ms)} (time) ` +
      `and ${perItemGrowth(tenth, largest, (p) => p.retainedBytes)} (heap): 1.00 is exactly linear. ` +
      `Each size ran in ${processes} fresh processes (medians); time is the median of ${RUNS_PER_PROCESS} runs after a warm-up; ` +
      'heap kept is heap used after a full GC with the parsed document and plan held, minus before. Plot: docs/plan-scale.svg.',
    '',
    asciiPlot(points),
  ];
  return { rows, notes };
}

/** y = intercept + slope·x by least squares, and R². */
export function fitLine(points: readonly (readonly [number, number])[]): { slope: number; intercept: number; r2: number } {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  const ssRes = points.reduce((s, [x, y]) => s + (y - intercept - slope * x) ** 2, 0);
  const ssTot = points.reduce((s, [, y]) => s + (y - my) ** 2, 0);
  return { slope, intercept, r2: 1 - ssRes / ssTot };
}

/** Per-item cost by size as bars: a linear cost draws bars of equal length. */
function asciiPlot(points: readonly ScalePoint[]): string {
  const width = 40;
  const perItemUs = points.map((p) => (p.ms * 1000) / p.items);
  const perItemBytes = points.map((p) => p.retainedBytes / p.items);
  const maxUs = Math.max(...perItemUs);
  const maxBytes = Math.max(...perItemBytes);
  const lines = ['```', 'cost per item by catalog size (equal bars = linear growth)', ''];
  points.forEach((p, i) => {
    const label = `${String(p.items / 1000).padStart(4)}k`;
    lines.push(`${label} time ${'#'.repeat(Math.round((perItemUs[i]! / maxUs) * width)).padEnd(width)} ${perItemUs[i]!.toFixed(1)} µs`);
    lines.push(`${' '.repeat(label.length)} heap ${'='.repeat(Math.round((perItemBytes[i]! / maxBytes) * width)).padEnd(width)} ${perItemBytes[i]!.toFixed(0)} B`);
  });
  lines.push('```');
  return lines.join('\n');
}

/** Log-log plot of time and kept heap against items, with the lines linear growth at the fitted slope would follow. */
function plot(points: readonly ScalePoint[], msPerItem: number, bytesPerItem: number): string {
  const [w, h, left, right, top, bottom] = [640, 400, 70, 20, 30, 50];
  const xs = points.map((p) => p.items);
  const [xMin, xMax] = [Math.min(...xs) / 1.5, Math.max(...xs) * 1.5];
  const ys = points.flatMap((p) => [p.ms, p.retainedBytes / 2 ** 20]);
  const [yMin, yMax] = [Math.min(...ys) / 2, Math.max(...ys) * 2];
  const round = (v: number) => Math.round(v * 10) / 10;
  const x = (v: number) => round(left + ((Math.log10(v) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * (w - left - right));
  const y = (v: number) => round(h - bottom - ((Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * (h - top - bottom));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${w / 2}" y="18" text-anchor="middle" font-size="14">Parse + plan by catalog size (log-log; dashed: linear growth)</text>`,
    `<line x1="${left}" y1="${h - bottom}" x2="${w - right}" y2="${h - bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${h - bottom}" stroke="black"/>`,
    `<text x="${w / 2}" y="${h - 10}" text-anchor="middle">items in the catalog</text>`,
  ];
  for (let decade = Math.ceil(Math.log10(xMin)); decade <= Math.log10(xMax); decade++) {
    const v = 10 ** decade;
    parts.push(`<line x1="${x(v)}" y1="${h - bottom}" x2="${x(v)}" y2="${h - bottom + 5}" stroke="black"/>`);
    parts.push(`<text x="${x(v)}" y="${h - bottom + 18}" text-anchor="middle">${v >= 1000 ? `${v / 1000}k` : v}</text>`);
  }
  for (let decade = Math.ceil(Math.log10(yMin)); decade <= Math.log10(yMax); decade++) {
    const v = 10 ** decade;
    parts.push(`<line x1="${left - 5}" y1="${y(v)}" x2="${w - right}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 8}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
  }
  const series = [
    { name: 'time, ms', color: '#1f77b4', value: (p: ScalePoint) => p.ms, perItem: msPerItem },
    { name: 'heap kept, MB', color: '#d62728', value: (p: ScalePoint) => p.retainedBytes / 2 ** 20, perItem: bytesPerItem / 2 ** 20 },
  ];
  series.forEach((s, i) => {
    parts.push(`<line x1="${x(xMin * 1.2)}" y1="${y(s.perItem * xMin * 1.2)}" x2="${x(xMax / 1.2)}" y2="${y(s.perItem * (xMax / 1.2))}" stroke="${s.color}" stroke-dasharray="5,4" opacity="0.6"/>`);
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points.map((p) => `${x(p.items)},${y(s.value(p))}`).join(' ')}"/>`);
    for (const p of points) parts.push(`<circle cx="${x(p.items)}" cy="${y(s.value(p))}" r="4" fill="${s.color}"/>`);
    parts.push(`<rect x="${left + 15}" y="${top + 8 + i * 18}" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${left + 32}" y="${top + 18 + i * 18}">${s.name}</text>`);
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

/** `+ 1.5` or `− 1.5`: an intercept written after a slope. */
function signed(value: number, digits: number): string {
  return `${value < 0 ? '−' : '+'} ${Math.abs(value).toFixed(digits)}`;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

if (process.argv[1] === SELF && process.argv[2] === '--items') {
  console.log(JSON.stringify(await measureInThisProcess(Number(process.argv[3]))));
}
