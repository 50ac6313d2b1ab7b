/**
 * The pure half of a sync: which items the new generation lists, which of
 * them must be fetched, and which stored files nothing references any more.
 */
import { MetadataError } from './errors.ts';
import { matchesAll, newestVersions, type ItemFilter } from './filters.ts';
import { declaredDigests, DIGEST_ALGORITHMS, satisfiesDigests } from './checksum.ts';
import { flattenItems, type FlatItem, type ProductsDocument } from './simplestreams.ts';
import type { CatalogEntry, Digests, StoredObject } from './ports.ts';

export interface Selection {
  filters: readonly ItemFilter[];
  /** Newest versions kept per product; all when undefined. */
  max?: number;
  /** Only items at these paths, before filters and max (an import selects what its bundle carries). */
  paths?: ReadonlySet<string>;
  /** Versions kept beyond max (`pinKey(product, version)`), as long as upstream lists them and the filters match. */
  pinned?: ReadonlySet<string>;
}

/** How a pinned version is named in `Selection.pinned`. */
export function pinKey(product: string, version: string): string {
  return JSON.stringify([product, version]);
}

/** One file to fetch, verify and store, with every digest the signed metadata declares for it. */
export interface CopyTask extends Digests {
  path: string;
  size: number;
  /** What the metadata says the file is (`squashfs`, `squashfs.manifest`, …): a manifest is indexed once stored. */
  ftype?: string;
}

export interface SyncPlan {
  /** Every selected item: the new generation's catalog. */
  entries: CatalogEntry[];
  /** Every unique selected path with its expected content. */
  objects: CopyTask[];
  /** Unique paths not yet stored with the right content. */
  copy: CopyTask[];
  /** Unique paths already stored with the right content: not fetched again. */
  presentPaths: number;
  /**
   * Stored paths the new generation no longer lists: what prune
   * deletes after publishing (it re-checks against every retained generation then).
   */
  prune: string[];
  /** Metadata files to publish verbatim, relative to the mirror root. */
  metadata: string[];
  /** Sum of sizes over unique selected paths. */
  totalBytes: number;
  copyBytes: number;
}

export interface PlanInput {
  /** Each with its own selection when it has one (uploaded images: every version), else `selection`. */
  products: readonly { file: string; doc: ProductsDocument; selection?: Selection }[];
  selection: Selection;
  /** What the store holds now, by path. */
  stored: ReadonlyMap<string, StoredObject>;
  /** Metadata files the upstream tree holds (published verbatim). @default none */
  metadataFiles?: readonly string[];
}

export function selectItems(file: string, doc: ProductsDocument, selection: Selection): FlatItem[] {
  const byProduct = new Map<string, Map<string, FlatItem[]>>();
  for (const item of flattenItems(file, doc)) {
    if (selection.paths && !selection.paths.has(item.path)) continue;
    if (!matchesAll(selection.filters, item.fields)) continue;
    const versions = byProduct.get(item.productName) ?? new Map<string, FlatItem[]>();
    byProduct.set(item.productName, versions);
    const items = versions.get(item.versionName) ?? [];
    versions.set(item.versionName, items);
    items.push(item);
  }
  const selected: FlatItem[] = [];
  for (const [product, versions] of byProduct) {
    const kept = new Set(newestVersions([...versions.keys()], selection.max));
    for (const name of versions.keys()) if (selection.pinned?.has(pinKey(product, name))) kept.add(name);
    for (const name of kept) selected.push(...(versions.get(name) ?? []));
  }
  return selected;
}

export function toCopyTask(file: string, item: FlatItem): CopyTask {
  const digests = declaredDigests(item);
  if (Object.keys(digests).length === 0) {
    // flattenItems already rejects these; kept so a CopyTask can never lack a digest.
    throw new MetadataError(file, itemJsonPath(item), 'item has no sha512, sha256 or md5');
  }
  return { path: item.path, size: item.size, ...digests, ...(item.ftype !== undefined && { ftype: item.ftype }) };
}

/** Stored with the task's size and every digest the task declares. */
export function isStoredAs(stored: StoredObject | undefined, task: CopyTask): boolean {
  return stored !== undefined && stored.size === task.size && satisfiesDigests(stored.digests, declaredDigests(task));
}

export function planSync(input: PlanInput): SyncPlan {
  const entries: CatalogEntry[] = [];
  const tasks = new Map<string, { task: CopyTask; file: string; item: FlatItem }>();
  for (const { file, doc, selection } of input.products) {
    for (const item of selectItems(file, doc, selection ?? input.selection)) {
      const task = toCopyTask(file, item);
      const seen = tasks.get(task.path);
      if (seen && !sameContent(seen.item, item)) {
        throw new MetadataError(
          file,
          itemJsonPath(item),
          `path ${task.path} is also listed by ${seen.file} ${itemJsonPath(seen.item)} with a different size or digest`,
        );
      }
      // Two listings of one file agree on what both declare; verify against all either declares.
      tasks.set(task.path, seen ? { ...seen, task: { ...task, ...seen.task } } : { task, file, item });
      entries.push(toEntry(item));
    }
  }
  const objects = [...tasks.values()].map(({ task }) => task).sort(byPath);
  const copy: CopyTask[] = [];
  let presentPaths = 0;
  let totalBytes = 0;
  let copyBytes = 0;
  for (const task of objects) {
    totalBytes += task.size;
    if (isStoredAs(input.stored.get(task.path), task)) {
      presentPaths++;
      continue;
    }
    copy.push(task);
    copyBytes += task.size;
  }
  const referenced = new Set(tasks.keys());
  return {
    entries,
    objects,
    copy,
    presentPaths,
    prune: unreferencedPaths(input.stored.keys(), referenced),
    metadata: [...(input.metadataFiles ?? [])].sort(),
    totalBytes,
    copyBytes,
  };
}

/** Stored paths that no retained generation references: safe to delete. */
export function unreferencedPaths(stored: Iterable<string>, referenced: ReadonlySet<string>): string[] {
  return [...stored].filter((path) => !referenced.has(path)).sort();
}

/** Listings agree when sizes match and every digest both declare matches. */
function sameContent(a: FlatItem, b: FlatItem): boolean {
  if (a.size !== b.size) return false;
  return DIGEST_ALGORITHMS.every(
    (algorithm) => a[algorithm] === undefined || b[algorithm] === undefined || a[algorithm]!.toLowerCase() === b[algorithm]!.toLowerCase(),
  );
}

function byPath(a: CopyTask, b: CopyTask): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

function toEntry(item: FlatItem): CatalogEntry {
  const text = (key: string): string | undefined => {
    const value = item.fields[key];
    return value === undefined || value === null ? undefined : String(value);
  };
  return dropUndefined({
    contentId: item.contentId,
    product: item.productName,
    version: item.versionName,
    item: item.itemName,
    path: item.path,
    size: item.size,
    sha256: item.sha256 ?? '',
    ftype: item.ftype,
    os: text('os'),
    release: text('release'),
    arch: text('arch'),
    subarch: text('subarch'),
    label: text('label'),
  });
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function itemJsonPath(item: FlatItem): string {
  const key = (k: string) => `[${JSON.stringify(k)}]`;
  return `$.products${key(item.productName)}.versions${key(item.versionName)}.items${key(item.itemName)}`;
}
