/**
 * `skystreams verify`: does the store hold, byte for byte, what a channel's
 * publication's own signed metadata promises? Each listed item is checked
 * against every digest the published products file declares for it (not
 * against the catalog, which could drift from what clients are told).
 * Each metadata file is checked against the sha256 recorded when its
 * generation was published; a products file that fails it is not trusted
 * to check items with.
 */
import { createHash } from 'node:crypto';
import { IntegrityError, MetadataError } from './errors.ts';
import { verifyAll } from './checksum.ts';
import { defaultMetadataLimits, publishedIndexFile, UNSIGNED_INDEX } from './metadata.ts';
import { clearsignedBody, isClearsigned } from './pgp.ts';
import { flattenItems, parseIndex, parseProducts, type FlatItem } from './simplestreams.ts';
import { recordedMetadataDigests } from './metadata-digests.ts';
import { keys, type ByteStream, type ObjectStore, type Publication, type Publications } from './ports.ts';

export interface AuditProblem {
  path: string;
  problem: string;
  /** A metadata file is repaired by publishing again; an item by fetching it again. @default 'item' */
  kind?: 'metadata' | 'item';
}

export interface AuditReport {
  generation: number | null;
  checkedFiles: number;
  checkedBytes: number;
  problems: AuditProblem[];
}

export async function auditPublication(
  objects: ObjectStore,
  catalog: Publications,
  onFile: (path: string) => void = () => {},
  /** Whose publication to check. @default DEFAULT_CHANNEL */
  channel?: string,
): Promise<AuditReport> {
  const current = await catalog.getCurrent(channel);
  const report: AuditReport = { generation: current?.generation ?? null, checkedFiles: 0, checkedBytes: 0, problems: [] };
  if (!current) return report;
  const recorded = await recordedMetadataDigests(objects, current);
  const damaged = new Set<string>();
  for (const file of current.files) {
    onFile(file);
    report.checkedFiles++;
    const problem = await checkMetadataFile(objects, current, file, recorded?.[file]);
    if (typeof problem === 'number') {
      report.checkedBytes += problem;
      continue;
    }
    damaged.add(file);
    report.problems.push({ path: file, problem, kind: 'metadata' });
  }
  const promised = await publishedItems(objects, current, damaged);
  const listed = new Map<string, FlatItem | undefined>();
  for await (const entry of catalog.listEntries(current.generation)) {
    if (listed.has(entry.path)) continue;
    listed.set(entry.path, promised.get(itemKey(entry.contentId, entry.product, entry.version, entry.item)));
  }
  for (const [path, item] of [...listed].sort(([a], [b]) => (a < b ? -1 : 1))) {
    // An item only a damaged products file declares is checked once that file is published sound again.
    if (!item && damaged.size > 0) continue;
    onFile(path);
    report.checkedFiles++;
    const problem = item ? await checkItem(objects, item) : 'listed by the catalog but by no published products file';
    if (problem) report.problems.push({ path, problem });
    else report.checkedBytes += item!.size;
  }
  return report;
}

/** The file's size when it is stored as published; otherwise what is wrong with it. */
async function checkMetadataFile(objects: ObjectStore, publication: Publication, file: string, recordedSha256: string | undefined): Promise<number | string> {
  const key = keys.metadata(publication, file);
  if (!(await objects.head(key))) return 'metadata file missing from the store';
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of (await objects.get(key)).body) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  const sha256 = hash.digest('hex');
  if (recordedSha256 !== undefined && sha256 !== recordedSha256) return `sha256 ${sha256}, published as ${recordedSha256}: metadata damaged at rest`;
  return size;
}

/** Every item the publication's sound products files declare, by content id, product, version and item name. */
async function publishedItems(objects: ObjectStore, publication: Publication, damaged: ReadonlySet<string>): Promise<Map<string, FlatItem>> {
  const items = new Map<string, FlatItem>();
  const indexFile = publishedIndexFile(publication) ?? UNSIGNED_INDEX;
  if (damaged.has(indexFile)) return items;
  const index = parseIndex(indexFile, await publishedText(objects, publication, indexFile, defaultMetadataLimits.indexBytes));
  for (const entry of Object.values(index.index)) {
    if (damaged.has(entry.path)) continue;
    const text = await publishedText(objects, publication, entry.path, defaultMetadataLimits.productsBytes);
    for (const item of flattenItems(entry.path, parseProducts(entry.path, text))) {
      items.set(itemKey(item.contentId, item.productName, item.versionName, item.itemName), item);
    }
  }
  return items;
}

async function publishedText(objects: ObjectStore, publication: Publication, file: string, limit: number): Promise<string> {
  const key = keys.metadata(publication, file);
  const { size, body } = await objects.get(key);
  if (size > limit) {
    await drain(body).catch(() => undefined);
    throw new MetadataError(key, '$', `published file of ${size} bytes is over the ${limit}-byte limit`);
  }
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return isClearsigned(text) ? clearsignedBody(key, text) : text;
}

/** Streams the stored bytes through the same size and digest checks a copy makes. */
async function checkItem(objects: ObjectStore, item: FlatItem): Promise<string | undefined> {
  const info = await objects.head(keys.item(item.path));
  if (!info) return 'missing from the store';
  if (info.size !== item.size) return `size ${info.size}, expected ${item.size}`;
  const { body } = await objects.get(keys.item(item.path));
  const { sha256, sha512, md5 } = item;
  try {
    await verifyAll(body, { path: item.path, size: item.size, sha256, sha512, md5 });
    return undefined;
  } catch (error) {
    if (error instanceof IntegrityError) return error.message.slice(item.path.length + 2);
    throw error;
  }
}

async function drain(body: ByteStream): Promise<void> {
  for await (const _chunk of body) {
    // Only the checks the stream makes on its way through matter.
  }
}

function itemKey(contentId: string, product: string, version: string, item: string): string {
  return [contentId, product, version, item].join('\u0000');
}
