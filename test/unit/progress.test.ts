import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { SyncEvent } from '../../functions/core/engine.ts';
import { bytes, progressReporter } from '../../functions/local/progress.ts';

/** A stream that records what is written, posing as a terminal or a pipe. */
function capture(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  }) as unknown as NodeJS.WriteStream;
  Object.assign(stream, { isTTY });
  return { stream, text: () => chunks.join('') };
}

const RUN = 'run-1';
const events: SyncEvent[] = [
  { type: 'planned', runId: RUN, generation: 3, copyItems: 2, copyBytes: 4 * 1024 * 1024, presentItems: 5, unreferencedItems: 0, totalBytes: 8 * 1024 * 1024 },
  { type: 'item-progress', runId: RUN, path: 'a', bytes: 2 * 1024 * 1024 },
  { type: 'item-stored', runId: RUN, path: 'a', size: 2 * 1024 * 1024, skipped: false },
  { type: 'warning', runId: RUN, message: 'no bootloader selected for arm64' },
  { type: 'published', runId: RUN, generation: 3, upstreamUpdated: 'Thu, 24 Jul 2025 08:01:49 +0000', items: 7, channel: 'stable', previousGeneration: 2 },
];

describe('Function: progressReporter', () => {
  it('draws items, bytes, rate and ETA on a terminal', () => {
    const out = capture(true);
    const progress = progressReporter(out.stream);

    for (const event of events) progress.onEvent(event);
    progress.finish();

    expect(out.text()).toContain('generation 3: 2 items (4.0 MiB) to fetch, 5 already stored');
    expect(out.text()).toMatch(/items 1\/2 {2}2\.0 MiB\/4\.0 MiB {2}[\d.]+ [KMG]?i?B\/s {2}ETA \S+/);
    expect(out.text()).toContain('published generation 3');
    expect(out.text()).toContain('warning: no bootloader selected for arm64\n');
  });

  it('writes one JSON object a line when not a terminal, with byte counts aggregated', () => {
    const out = capture(false);
    const progress = progressReporter(out.stream);

    for (const event of events) progress.onEvent(event);

    const lines = out.text().trim().split('\n').map((line) => JSON.parse(line) as { type: string; time: string });
    expect(lines.map((line) => line.type)).toEqual(['planned', 'progress', 'item-stored', 'warning', 'published']);
    expect(lines.every((line) => !Number.isNaN(Date.parse(line.time)))).toBe(true);
  });
});

describe('Function: progressReporter, rate and ETA', () => {
  const MiB = 1024 * 1024;
  const planned: SyncEvent = { type: 'planned', runId: RUN, generation: 1, copyItems: 4, copyBytes: 40 * MiB, presentItems: 0, unreferencedItems: 0, totalBytes: 40 * MiB };
  const chunk = (megabytes: number): SyncEvent => ({ type: 'item-progress', runId: RUN, path: 'a', bytes: megabytes * MiB });

  it('draws a bar with the share done, the rate since the plan and the time left at that rate', () => {
    // Prepare
    let now = 1_000_000;
    const out = capture(true);
    const progress = progressReporter(out.stream, () => now);

    // Act: 10 MiB in 5 s of 40 MiB, so 2 MiB/s and 15 s left.
    progress.onEvent(planned);
    now += 5_000;
    progress.onEvent(chunk(10));

    // Assess
    expect(out.text()).toContain('[######------------------] 25%  items 0/4  10.0 MiB/40.0 MiB  2.0 MiB/s  ETA 15s');
  });

  it('adds the bytes done, the total, the rate and the ETA to each JSON progress line', () => {
    // Prepare
    let now = 1_000_000;
    const out = capture(false);
    const progress = progressReporter(out.stream, () => now);

    // Act: 30 MiB in 10 s of 40 MiB, so 3 MiB/s and 3 s left (rounded).
    progress.onEvent(planned);
    now += 10_000;
    progress.onEvent(chunk(30));

    // Assess
    const lines = out.text().trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines[1]).toEqual({
      time: new Date(now).toISOString(),
      type: 'progress',
      runId: RUN,
      bytes: 30 * MiB,
      doneBytes: 30 * MiB,
      totalBytes: 40 * MiB,
      bytesPerSecond: 3 * MiB,
      etaSeconds: 3,
    });
  });

  it('R-eta-tells-the-truth: once bytes trickle, the ETA follows the recent rate, not the average since the plan', () => {
    // Prepare
    let now = 1_000_000;
    const out = capture(false);
    const progress = progressReporter(out.stream, () => now);
    progress.onEvent(planned);

    // Act: 20 MiB in the first 10 s, then 1 KiB a second for two minutes.
    now += 10_000;
    progress.onEvent(chunk(20));
    for (let second = 1; second <= 120; second++) {
      now += 1_000;
      progress.onEvent({ type: 'item-progress', runId: RUN, path: 'a', bytes: 1024 });
    }

    // Assess: averaged since the plan, 20 MiB in 130 s would promise about 2 minutes; at 1 KiB/s, 20 MiB take months.
    const lines = out.text().trim().split('\n').map((line) => JSON.parse(line) as Record<string, number>);
    const last = lines[lines.length - 1]!;
    expect(last.bytesPerSecond).toBe(1024);
    expect(last.etaSeconds).toBeGreaterThan(20 * 1024 - 200);
  });
});

describe('Function: bytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KiB'],
    [5 * 1024 ** 3, '5.0 GiB'],
  ])('formats %d as %s', (n, text) => {
    expect(bytes(n)).toBe(text);
  });
});
