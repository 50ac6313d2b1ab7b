/** Sync progress: a live line on a TTY, JSON lines otherwise (for logs and scripts). */
import type { SyncEvent } from '../core/engine.ts';

export interface ProgressReporter {
  onEvent(event: SyncEvent): void;
  finish(): void;
}

export function progressReporter(stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  return stream.isTTY ? new TtyProgress(stream) : new JsonLinesProgress(stream);
}

class TtyProgress implements ProgressReporter {
  private totalItems = 0;
  private totalBytes = 0;
  private doneItems = 0;
  private doneBytes = 0;
  private startedAt = Date.now();
  private lastDraw = 0;

  constructor(private readonly out: NodeJS.WriteStream) {}

  onEvent(event: SyncEvent): void {
    switch (event.type) {
      case 'planned':
        this.totalItems = event.copyItems;
        this.totalBytes = event.copyBytes;
        this.startedAt = Date.now();
        this.line(
          `generation ${event.generation}: ${event.copyItems} items (${bytes(event.copyBytes)}) to fetch, ${event.presentItems} already stored\n`,
        );
        break;
      case 'item-progress':
        this.doneBytes += event.bytes;
        if (Date.now() - this.lastDraw > 200) this.draw();
        break;
      case 'item-stored':
        if (!event.skipped) this.doneItems++;
        this.draw();
        break;
      case 'manifest-unindexed':
        this.line(`package index: ${event.problem}\n`);
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
    this.lastDraw = Date.now();
    const seconds = Math.max((Date.now() - this.startedAt) / 1000, 0.001);
    const rate = this.doneBytes / seconds;
    const eta = rate > 0 ? Math.max(0, (this.totalBytes - this.doneBytes) / rate) : Number.NaN;
    this.out.write(
      `\r\x1b[Kitems ${this.doneItems}/${this.totalItems}  ${bytes(this.doneBytes)}/${bytes(this.totalBytes)}  ${bytes(rate)}/s  ETA ${duration(eta)}`,
    );
  }

  private line(text: string): void {
    this.out.write(`\r\x1b[K${text}`);
  }
}

class JsonLinesProgress implements ProgressReporter {
  private bytesSinceReport = 0;
  private lastReport = 0;

  constructor(private readonly out: NodeJS.WriteStream) {}

  onEvent(event: SyncEvent): void {
    if (event.type === 'item-progress') {
      // Byte counts are aggregated to one line a second: a per-chunk log would be megabytes.
      this.bytesSinceReport += event.bytes;
      if (Date.now() - this.lastReport < 1000) return;
      this.write({ type: 'progress', runId: event.runId, bytes: this.bytesSinceReport });
      this.bytesSinceReport = 0;
      this.lastReport = Date.now();
      return;
    }
    this.write(event);
  }

  finish(): void {}

  private write(value: object): void {
    this.out.write(`${JSON.stringify({ time: new Date().toISOString(), ...value })}\n`);
  }
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`;
}
