/**
 * The item paths some retained publication lists: only those are served, so
 * bytes a run copied but never published stay private, while clients still
 * reading an older generation's metadata keep getting its items.
 */
import type { Catalog } from '../core/ports.ts';

export class PublishedItems {
  private paths = new Set<string>();
  /** The retained generations `paths` was built from, e.g. `3,2,1`. */
  private generations: string | undefined;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;

  private readonly catalog: Catalog;
  private readonly ttlMs: number;
  private readonly now: () => Date;
  constructor(catalog: Catalog, ttlMs: number, now: () => Date = () => new Date()) {
    this.catalog = catalog;
    this.ttlMs = ttlMs;
    this.now = now;
  }

  async has(path: string): Promise<boolean> {
    if (this.paths.has(path) && this.now().getTime() - this.checkedAt < this.ttlMs) return true;
    await this.refresh();
    return this.paths.has(path);
  }

  /** Concurrent requests share one refresh. */
  private refresh(): Promise<void> {
    this.refreshing ??= this.reload().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async reload(): Promise<void> {
    const publications = await this.catalog.listPublications();
    const generations = publications.map((publication) => publication.generation).join(',');
    if (generations !== this.generations) {
      const paths = new Set<string>();
      for (const publication of publications) {
        for await (const entry of this.catalog.listEntries(publication.generation)) paths.add(entry.path);
      }
      this.paths = paths;
      this.generations = generations;
    }
    this.checkedAt = this.now().getTime();
  }
}
