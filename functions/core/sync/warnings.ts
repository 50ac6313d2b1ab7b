/**
 * What a plan tells the operator without failing the run: a selection that
 * imports into MAAS but cannot network-boot some architecture. Kept with the
 * run record, so `status`, the API and the page show it after the terminal
 * that ran the sync has closed.
 */
import { bootloaderGaps, describeBootloaderGap } from '../boot-coverage.ts';
import type { ItemFilter } from '../filters.ts';
import { selectItems } from '../planner.ts';
import { flattenItems, type FlatItem } from '../simplestreams.ts';
import type { VerifiedSource } from '../sync-sources.ts';

/** The warnings of a selection over every source read (bootloaders may come from another source than the images). */
export function selectionWarnings(reads: readonly VerifiedSource[], pinned: ReadonlySet<string>): string[] {
  const upstream: FlatItem[] = [];
  const selected: FlatItem[] = [];
  const filters = new Map<string, ItemFilter>();
  for (const { source, metadata } of reads) {
    for (const filter of source.selection.filters) filters.set(filter.source, filter);
    for (const { file, doc } of metadata.products) {
      upstream.push(...flattenItems(file, doc));
      selected.push(...selectItems(file, doc, { ...source.selection, pinned }));
    }
  }
  return bootloaderGaps(upstream, selected, [...filters.values()]).map(describeBootloaderGap);
}
