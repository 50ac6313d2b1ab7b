/**
 * `skystreams verify`: does the store hold, byte for byte, what a channel's
 * publication's own signed metadata promises? Each listed item is checked
 * against every digest the published products file declares for it (not
 * against the catalog, which could drift from what clients are told).
 * Each metadata file is checked against the sha256 recorded when its
 * generation was published; a products file that fails it is not trusted
 * to check items with. A generation published before digests were recorded
 * has its signed files checked against their signatures instead: the
 * mirror's own keyring (published with the generation) for re-signed files,
 * `keyring` (upstream's) for verbatim ones when given.
 */
import { createHash } from 'node:crypto';
import { IntegrityError, MetadataError, SignatureError } from './errors.ts';
import { verifyAll } from './checksum.ts';
import { defaultMetadataLimits, publishedIndexFile, UNSIGNED_INDEX } from './metadata.ts';
import { clearsignedBody, isClearsigned, loadKeyring, verifyClearsignedBytes, type Keyring } from './pgp.ts';
import { PUBLISHED_KEYRING, UPSTREAM_COPY_PREFIX } from './published-files.ts';
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
  /** Upstream's keyring: checks verbatim signed files of a generation with no recorded digests. */
  keyring?: Keyring,
): Promise<AuditReport> {
  const current = await catalog.getCurrent(channel);
  const report: AuditReport = { generation: current?.generation ?? null, checkedFiles: 0, checkedBytes: 0, problems: [] };
  if (!current) return report;
  const recorded = await recordedMetadataDigests(objects, current);
  const signers = recorded ? undefined : await signatureKeyrings(objects, current, keyring);
  const damaged = new Set<string>();
  for (const file of current.files) {
    onFile(file);
    report.checkedFiles++;
    const problem = await checkMetadataFile(objects, current, file, recorded?.[file], signers?.(file));
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

/**
 * For a generation with no recorded digests: which keyring checks a signed
 * file's signature (undefined: none can). Re-signed files are the mirror's,
 * whose keyring the generation publishes; upstream's copies and verbatim
 * files need upstream's keyring.
 */
async function signatureKeyrings(objects: ObjectStore, publication: Publication, upstream: Keyring | undefined): Promise<(file: string) => Keyring | undefined> {
  const own = publication.files.includes(PUBLISHED_KEYRING)
    ? await loadKeyring(PUBLISHED_KEYRING, await storedBytes(objects, keys.metadata(publication, PUBLISHED_KEYRING)))
    : undefined;
  return (file) => {
    if (!file.endsWith('.sjson')) return undefined;
    return own && !file.startsWith(UPSTREAM_COPY_PREFIX) ? own : upstream;
  };
}

/** The file's size when it is stored as published (its digest, or else its signature, agrees); otherwise what is wrong with it. */
async function checkMetadataFile(
  objects: ObjectStore,
  publication: Publication,
  file: string,
  recordedSha256: string | undefined,
  signer: Keyring | undefined,
): Promise<number | string> {
  const key = keys.metadata(publication, file);
  if (!(await objects.head(key))) return 'metadata file missing from the store';
  const bytes = await storedBytes(objects, key);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (recordedSha256 !== undefined && sha256 !== recordedSha256) return `sha256 ${sha256}, published as ${recordedSha256}: metadata damaged at rest`;
  if (recordedSha256 === undefined && signer) {
    try {
      await verifyClearsignedBytes(file, bytes, signer);
    } catch (error) {
      if (error instanceof SignatureError) return `${error.message.startsWith(file) ? error.message.slice(file.length + 2) : error.message}: metadata damaged at rest`;
      throw error;
    }
  }
  return bytes.byteLength;
}

async function storedBytes(objects: ObjectStore, key: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of (await objects.get(key)).body) chunks.push(chunk);
  return Buffer.concat(chunks);
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
