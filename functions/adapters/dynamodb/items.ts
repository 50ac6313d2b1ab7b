/**
 * Item shapes of the catalog table: the keys of each kind of item and the
 * conversions between items and domain records. Pure data; no SDK calls.
 *
 * Attributes other than the keys carry the domain record's own field names,
 * so an item reads like the record in the console. Optional fields that are
 * unset are left out of the item, and therefore out of the record read back.
 */
import { DEFAULT_CHANNEL, type CatalogEntry, type Channel, type PackageManifest, type Publication, type StoredObject, type SyncRun } from '../../core/ports.ts';
import { gunzipSync, gzipSync } from 'node:zlib';
import { formatManifest, parseManifest } from '../../core/manifests.ts';
import { RECORD_FIELDS, pickSet } from '../records.ts';

export interface ItemKey {
  PK: string;
  SK: string;
}

export type Item = Record<string, unknown>;

/** Wide enough for any safe integer, so string order is numeric order. */
const GENERATION_DIGITS = 16;

export const keyOf = {
  object: (path: string): ItemKey => ({ PK: 'OBJECT', SK: path }),
  publication: (generation: number): ItemKey => ({ PK: 'PUBLICATION', SK: generationSortKey(generation) }),
  /** The default channel keeps the key of the one pointer tables had before channels. */
  channel: (name: string): ItemKey => ({ PK: partitionOf.channels, SK: name === DEFAULT_CHANNEL ? 'CURRENT' : `CHANNEL#${name}` }),
  entry: (generation: number, entry: CatalogEntry): ItemKey => ({
    PK: entriesPartition(generation),
    SK: [entry.contentId, entry.product, entry.version, entry.item].map(escapeKeyPart).join('#'),
  }),
  run: (id: string): ItemKey => ({ PK: 'RUN', SK: id }),
  lock: (name: string): ItemKey => ({ PK: 'LOCK', SK: name }),
  state: (key: string): ItemKey => ({ PK: 'STATE', SK: key }),
  manifestPart: (sha256: string, part: number): ItemKey => ({ PK: manifestPartition(sha256), SK: String(part).padStart(4, '0') }),
} as const;

export const partitionOf = {
  channels: 'CURRENT',
  objects: 'OBJECT',
  publications: 'PUBLICATION',
  runs: 'RUN',
} as const;

/** One partition per package manifest: its record may need several items (see manifestItems). */
export function manifestPartition(sha256: string): string {
  return `MANIFEST#${sha256}`;
}

export function entriesPartition(generation: number): string {
  return `ENTRIES#${assertGeneration(generation)}`;
}

/** `#` separates key parts, so it (and the escape character) must not occur inside one. */
function escapeKeyPart(part: string): string {
  return part.replaceAll('%', '%25').replaceAll('#', '%23');
}

function generationSortKey(generation: number): string {
  return String(assertGeneration(generation)).padStart(GENERATION_DIGITS, '0');
}

function assertGeneration(generation: number): number {
  if (!Number.isSafeInteger(generation) || generation < 0) {
    throw new RangeError(`generation must be a non-negative integer, not ${generation}`);
  }
  return generation;
}

// ---------------------------------------------------------------- to items

export function objectItem(object: StoredObject): Item {
  return { ...keyOf.object(object.path), ...pickSet(object, RECORD_FIELDS.object) };
}

export function publicationItem(publication: Publication, key: ItemKey): Item {
  return { ...key, ...pickSet(publication, RECORD_FIELDS.publication) };
}

/** A channel's pointer item carries a copy of the publication it points at, so serving needs one read. */
export function channelItem(channel: Omit<Channel, 'revision'>, revision: number, publication: Publication): Item {
  return {
    ...publicationItem(publication, keyOf.channel(channel.name)),
    channel: channel.name,
    history: channel.history,
    revision,
  };
}

export function entryItem(generation: number, entry: CatalogEntry): Item {
  return { ...keyOf.entry(generation, entry), ...pickSet(entry, RECORD_FIELDS.entry) };
}

/**
 * The table's time-to-live attribute (epoch seconds): DynamoDB deletes an
 * item some time after it passes. The CDK table and `skystreams init` enable
 * TTL on this name.
 */
export const EXPIRES_AT_ATTRIBUTE = 'expiresAt';

/** Without an expiry: a run gets one only once newer runs push it out of the newest kept (see DynamoCatalog.putRun). */
export function runItem(run: SyncRun): Item {
  const startedAt = Number.isNaN(Date.parse(run.startedAt)) ? run.startedAt : new Date(run.startedAt).toISOString();
  return {
    ...keyOf.run(run.id),
    GSI1PK: partitionOf.runs,
    GSI1SK: `${startedAt}#${run.id}`,
    ...pickSet(run, RECORD_FIELDS.run),
  };
}

/**
 * When a run pushed out of the newest kept expires (epoch seconds): the
 * retention after it finished. undefined while it has not finished: an
 * unfinished run's record is what the next holder settles.
 */
export function runExpiry(run: Item, retentionMs: number): number | undefined {
  if (run.state === 'running' || typeof run.finishedAt !== 'string') return undefined;
  const finishedAt = Date.parse(run.finishedAt);
  if (Number.isNaN(finishedAt)) return undefined;
  return Math.floor((finishedAt + retentionMs) / 1000);
}

/** Whether an item's TTL has passed: DynamoDB deletes such items only within a day or two, so reads skip them. */
export function hasExpired(item: Item, now: Date): boolean {
  const expiresAt = item[EXPIRES_AT_ATTRIBUTE];
  return typeof expiresAt === 'number' && expiresAt <= now.getTime() / 1000;
}

// ---------------------------------------------------------------- from items

export function toStoredObject(item: Item): StoredObject {
  const object = pickSet(item, RECORD_FIELDS.object) as unknown as StoredObject;
  // Items written before every declared digest was kept carry only the strongest, as `digest: "algo:hex"`.
  if (!object.digests) {
    const [algorithm, hex] = String(item.digest ?? '').split(':');
    object.digests = { sha256: object.sha256, ...(algorithm && hex && { [algorithm]: hex }) };
  }
  return object;
}

export function toPublication(item: Item): Publication {
  return pickSet(item, RECORD_FIELDS.publication) as unknown as Publication;
}

/** Pointer items written before channels have no name, history or revision: the default channel, revision 0. */
export function toChannel(item: Item): Channel {
  return {
    name: typeof item.channel === 'string' ? item.channel : DEFAULT_CHANNEL,
    generation: Number(item.generation),
    history: Array.isArray(item.history) ? item.history.map(Number) : [],
    revision: Number(item.revision ?? 0),
  };
}

export function toCatalogEntry(item: Item): CatalogEntry {
  return pickSet(item, RECORD_FIELDS.entry) as unknown as CatalogEntry;
}

export function toSyncRun(item: Item): SyncRun {
  return pickSet(item, RECORD_FIELDS.run) as unknown as SyncRun;
}

/** The key attributes of an item, e.g. to delete what a query found. */
export function keyAttributesOf(item: Item): ItemKey {
  return { PK: String(item.PK), SK: String(item.SK) };
}

// ---------------------------------------------------------------- package manifests

/**
 * Bytes of compressed package list per item: an item may not pass 400 KB,
 * and a manifest of thousands of packages compresses to tens of KB, so
 * nearly every manifest is one item; a larger one continues in more.
 */
export const MANIFEST_PART_BYTES = 300_000;

/**
 * A manifest record as items: part 0 carries the record's fields and how many
 * parts its packages span; every part carries a slice of the gzipped
 * manifest text. An unparsed manifest is part 0 alone, with its problem.
 */
export function manifestItems(manifest: PackageManifest): Item[] {
  const packed = manifest.packages ? gzipSync(formatManifest(manifest.packages)) : new Uint8Array();
  const slices: Uint8Array[] = [];
  for (let offset = 0; offset < packed.byteLength; offset += MANIFEST_PART_BYTES) {
    slices.push(packed.subarray(offset, offset + MANIFEST_PART_BYTES));
  }
  const head: Item = {
    ...keyOf.manifestPart(manifest.sha256, 0),
    sha256: manifest.sha256,
    path: manifest.path,
    indexedAt: manifest.indexedAt,
    parts: slices.length,
    ...(manifest.problem !== undefined && { problem: manifest.problem }),
    ...(manifest.packages && { packageCount: manifest.packages.size }),
    ...(slices[0] && { data: slices[0] }),
  };
  return [head, ...slices.slice(1).map((data, index) => ({ ...keyOf.manifestPart(manifest.sha256, index + 1), data }))];
}

/** The record from its items in part order; undefined when part 0, or any part it counts, is missing. */
export function toPackageManifest(items: readonly Item[]): PackageManifest | undefined {
  const [head] = items;
  if (!head || head.SK !== keyOf.manifestPart(String(head.sha256), 0).SK) return undefined;
  const parts = Number(head.parts ?? 0);
  if (items.length < parts) return undefined;
  const path = String(head.path);
  const manifest: PackageManifest = { sha256: String(head.sha256), path, indexedAt: String(head.indexedAt) };
  if (head.problem !== undefined) manifest.problem = String(head.problem);
  if (parts > 0) {
    const packed = Buffer.concat(items.slice(0, parts).map((item) => item.data as Uint8Array));
    manifest.packages = parseManifest(path, gunzipSync(packed));
  }
  return manifest;
}
