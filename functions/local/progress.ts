/** Sync progress: a live line on a TTY, JSON lines otherwise (for logs and scripts). */
import type { SyncEvent } from '../core/engine.ts';
import { formatBytes, formatDuration } from '../http/format.ts';

export interface ProgressReporter {
  onEvent(event: SyncEvent): void;
  finish(): void;
}

export function progressReporter(stream: NodeJS.WriteStream = process.stderr, clock: () => number = Date.now): ProgressReporter {
  return stream.isTTY ? new TtyProgress(stream, clock) : new JsonLinesProgress(stream, clock);
}

/**
 * Bytes done against the plan's total: the rate over the last
 * RECENT_WINDOW_MS (since the plan, until that long has passed) and the time
 * left at that rate. A rate averaged over the whole copy would keep
 * promising a fast finish long after upstream slowed to a trickle.
 */
class Throughput {
  totalBytes = 0;
  doneBytes = 0;
  /** Oldest first; the first is the newest at or before the window's start. */
  private samples: Array<{ at: number; doneBytes: number }>;

  private readonly clock: () => number;
  constructor(clock: () => number) {
    this.clock = clock;
    this.samples = [{ at: clock(), doneBytes: 0 }];
  }

  start(totalBytes: number): void {
    this.totalBytes = totalBytes;
    this.doneBytes = 0;
    this.samples = [{ at: this.clock(), doneBytes: 0 }];
  }

  add(bytes: number): void {
    this.doneBytes += bytes;
    const now = this.clock();
    if (now - this.samples[this.samples.length - 1]!.at >= SAMPLE_EVERY_MS) this.samples.push({ at: now, doneBytes: this.doneBytes });
  }

  /** Bytes a second over the last RECENT_WINDOW_MS. */
  rate(): number {
    const now = this.clock();
    while (this.samples.length > 1 && this.samples[1]!.at <= now - RECENT_WINDOW_MS) this.samples.shift();
    const base = this.samples[0]!;
    return (this.doneBytes - base.doneBytes) / Math.max((now - base.at) / 1000, 0.001);
  }

  /** Seconds left at the current rate; NaN while no byte arrived in the window. */
  etaSeconds(): number {
    const rate = this.rate();
    return rate > 0 ? Math.max(0, (this.totalBytes - this.doneBytes) / rate) : Number.NaN;
  }

  /** 0 to 1. */
  fraction(): number {
    return this.totalBytes > 0 ? Math.min(1, this.doneBytes / this.totalBytes) : 1;
  }
}

/** How far back the rate looks: long enough to be steady, short enough to notice a stall within a minute. */
const RECENT_WINDOW_MS = 30_000;
const SAMPLE_EVERY_MS = 1_000;

const BAR_WIDTH = 24;

class TtyProgress implements ProgressReporter {
  private totalItems = 0;
  private doneItems = 0;
  private readonly throughput: Throughput;
  private lastDraw = 0;

  private readonly out: NodeJS.WriteStream;
  private readonly clock: () => number;
  constructor(
    out: NodeJS.WriteStream,
    clock: () => number,
  ) {
    this.out = out;
    this.clock = clock;
    this.throughput = new Throughput(clock);
  }

  onEvent(event: SyncEvent): void {
    switch (event.type) {
      case 'planned':
        this.totalItems = event.copyItems;
        this.throughput.start(event.copyBytes);
        this.line(
          `generation ${event.generation}: ${event.copyItems} items (${bytes(event.copyBytes)}) to fetch, ${event.presentItems} already stored\n`,
        );
        break;
      case 'item-progress':
        this.throughput.add(event.bytes);
        if (this.clock() - this.lastDraw > 200) this.draw();
        break;
      case 'item-stored':
        if (!event.skipped) this.doneItems++;
        this.draw();
        break;
      case 'manifest-unindexed':
        this.line(`package index: ${event.problem}\n`);
        break;
      case 'warning':
        this.line(`warning: ${event.message}\n`);
        break;
      case 'item-retry':
        this.line(`retrying ${event.path} (attempt ${event.attempt}): ${event.error}\n`);
        break;
      case 'unchanged':
        this.line('upstream unchanged: nothing to do\n');
        break;
      case 'locked':
        this.line(`another sync (${event.holder}) holds the lock until ${event.expiresAt}\n`);
        break;
      case 'published':
        this.line(`published generation ${event.generation} (upstream updated ${event.upstreamUpdated}, ${event.items} items)\n`);
        break;
      case 'pruned':
        this.line(`pruned ${event.paths} files and ${event.generations.length} old generations\n`);
        break;
      case 'failed':
        this.line(`sync failed: ${event.error}\n`);
        break;
    }
  }

  finish(): void {
    this.out.write('\r\x1b[K');
  }

  private draw(): void {
    this.lastDraw = this.clock();
    const { doneBytes, totalBytes } = this.throughput;
    const filled = Math.round(this.throughput.fraction() * BAR_WIDTH);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${Math.floor(this.throughput.fraction() * 100)}%`;
    this.out.write(
      `\r\x1b[K${bar}  items ${this.doneItems}/${this.totalItems}  ${bytes(doneBytes)}/${bytes(totalBytes)}  ${bytes(this.throughput.rate())}/s  ETA ${duration(this.throughput.etaSeconds())}`,
    );
  }

  private line(text: string): void {
    this.out.write(`\r\x1b[K${text}`);
  }
}

class JsonLinesProgress implements ProgressReporter {
  private bytesSinceReport = 0;
  private lastReport = 0;
  private readonly throughput: Throughput;

  private readonly out: NodeJS.WriteStream;
  private readonly clock: () => number;
  constructor(
    out: NodeJS.WriteStream,
    clock: () => number,
  ) {
    this.out = out;
    this.clock = clock;
    this.throughput = new Throughput(clock);
  }

  onEvent(event: SyncEvent): void {
    if (event.type === 'planned') this.throughput.start(event.copyBytes);
    if (event.type === 'item-progress') {
      // Byte counts are aggregated to one line a second: a per-chunk log would be megabytes.
      this.bytesSinceReport += event.bytes;
      this.throughput.add(event.bytes);
      if (this.clock() - this.lastReport < 1000) return;
      const eta = this.throughput.etaSeconds();
      this.write({
        type: 'progress',
        runId: event.runId,
        bytes: this.bytesSinceReport,
        doneBytes: this.throughput.doneBytes,
        totalBytes: this.throughput.totalBytes,
        bytesPerSecond: Math.round(this.throughput.rate()),
        ...(Number.isFinite(eta) && { etaSeconds: Math.round(eta) }),
      });
      this.bytesSinceReport = 0;
      this.lastReport = this.clock();
      return;
    }
    this.write(event);
  }

  finish(): void {}

  private write(value: object): void {
    this.out.write(`${JSON.stringify({ time: new Date(this.clock()).toISOString(), ...value })}\n`);
  }
}

/** A byte count for people: `1.5 GiB`. */
export const bytes = formatBytes;

function duration(seconds: number): string {
  return Number.isFinite(seconds) ? formatDuration(seconds * 1000) : '--';
}
