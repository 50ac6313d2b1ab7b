/**
 * Reads an upstream's metadata: the index and every products file it lists,
 * each signature checked, each document validated, and the unsigned `.json`
 * twins checked against what was signed — so everything we later publish
 * verbatim has been verified.
 *
 * Bounded: every file has a byte limit, the run a total, and JSON a nesting
 * depth, all enforced before the text is parsed. Fresh: nothing may go back
 * in time against what is published, file by file, nor against the index
 * that lists it.
 */
import { createHash } from 'node:crypto';
import { InputTooLargeError, MetadataError, NotFoundError, RollbackError, SignatureError } from './errors.ts';
import { defaultMetadataLimits, type MetadataLimits } from './metadata-limits.ts';
import { recordedMetadataDigests, sha256Hex } from './metadata-digests.ts';
import { assertSafePath } from './paths.ts';
import { clearsignedBody, isClearsigned, verifyClearsignedBytes, type Keyring } from './pgp.ts';
import {
  INDEX_BASE,
  jsonPath,
  parseIndex,
  parseProducts,
  parseUpdated,
  type IndexEntry,
  type ProductsDocument,
  type StreamIndex,
} from './simplestreams.ts';
import { UPSTREAM_COPY_PREFIX, upstreamCopyPrefix } from './published-files.ts';
import { keys, type FetchedFile, type ObjectStore, type Publication, type Upstream, type Validators } from './ports.ts';

export const SIGNED_INDEX = `${INDEX_BASE}.sjson`;
export const UNSIGNED_INDEX = `${INDEX_BASE}.json`;

export { defaultMetadataLimits, type MetadataLimits };

/** What the freshness checks compare an upstream with: the current publication's own metadata. */
export interface PublishedMetadata {
  /** The published index's `updated`; undefined only for a publication made before it was required. */
  indexUpdated?: string;
  /** By content id (the index key). */
  products: ReadonlyMap<string, PublishedProducts>;
}

export interface PublishedProducts {
  /** Object-store key it was read from, for messages. */
  source: string;
  updated?: string;
  /** sha256 of the signed body (of the whole file when unsigned). */
  bodySha256: string;
}

export interface UpstreamMetadata {
  index: StreamIndex;
  indexFile: string;
  /** The index's `updated`, verbatim: always present, never synthesized. */
  updated: string;
  products: { file: string; doc: ProductsDocument }[];
  /** Every metadata file to publish verbatim, by path relative to the mirror root. */
  files: Map<string, Uint8Array>;
  /** Validators of the index response, for the next conditional GET. */
  validators: Validators;
}

export type IndexCheck =
  | { changed: false }
  | { changed: true; bytes: Uint8Array; validators: Validators };

/** The index a publication lists: signed, or plain when it was synced with `--no-verify`; undefined when it lists neither. */
export function publishedIndexFile(publication: Pick<Publication, 'files'>): string | undefined {
  return [SIGNED_INDEX, UNSIGNED_INDEX].find((file) => publication.files.includes(file));
}

/** `keyring` undefined means the operator chose `--no-verify`: unsigned `.json` files. */
export function indexFileFor(keyring: Keyring | undefined): string {
  return keyring ? SIGNED_INDEX : UNSIGNED_INDEX;
}

/** A conditional GET of the index: at most one request when nothing changed. */
export async function checkIndex(
  upstream: Upstream,
  keyring: Keyring | undefined,
  validators: Validators | undefined,
  limits: MetadataLimits = defaultMetadataLimits,
): Promise<IndexCheck> {
  const { indexBytes } = limits;
  const indexFile = indexFileFor(keyring);
  let fetched: FetchedFile;
  try {
    fetched = await upstream.fetchFile(indexFile, validators, { maxBytes: indexBytes });
  } catch (error) {
    if (keyring && error instanceof NotFoundError) {
      throw new SignatureError(
        indexFile,
        `not found at ${upstream.url(indexFile)}: the URL is wrong or the source is unsigned (only then, and only if you trust it, use --no-verify)`,
      );
    }
    throw error;
  }
  if (fetched.notModified) return { changed: false };
  refuseOversized(indexFile, fetched.bytes, indexBytes);
  return { changed: true, bytes: fetched.bytes, validators: fetched.validators };
}

/**
 * The verified metadata of an upstream, refused (RollbackError) when any of
 * it is older than `published` or a products file is older than its index
 * entry claims.
 *
 * `updated` is required of the index and of every products file, even at the
 * first sync when there is nothing to roll back to: accepting it missing then
 * would make the first sync succeed and every later one fail, and the engine
 * would have to invent the publication's date. MAAS streams always carry it.
 */
export async function readUpstreamMetadata(
  upstream: Upstream,
  keyring: Keyring | undefined,
  index: { bytes: Uint8Array; validators: Validators },
  published?: PublishedMetadata,
  limits: MetadataLimits = defaultMetadataLimits,
): Promise<UpstreamMetadata> {
  const bounds = limits;
  const budget = new RunBudget(bounds.runBytes);
  const indexFile = indexFileFor(keyring);
  refuseOversized(indexFile, index.bytes, bounds.indexBytes);
  budget.spend(indexFile, index.bytes.byteLength);
  const files = new Map<string, Uint8Array>([[indexFile, index.bytes]]);
  const indexText = await signedText(indexFile, index.bytes, keyring);
  refuseDeepJson(indexFile, indexText, bounds.jsonDepth);
  const indexDoc = parseIndex(indexFile, indexText);
  const updated = requireUpdated(indexFile, '$.updated', indexDoc.updated);
  if (published?.indexUpdated !== undefined && isOlder(indexFile, updated, published.indexUpdated)) {
    throw new RollbackError(updated, published.indexUpdated, {
      file: upstream.url(indexFile),
      problem: `updated ${updated} is older than the ${published.indexUpdated} of the index the published generation was made from`,
    });
  }

  const products: UpstreamMetadata['products'] = [];
  for (const [contentId, entry] of Object.entries(indexDoc.index).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const file = assertSafePath(indexFile, `${jsonPath(['index', contentId])}.path`, entry.path);
    const bytes = await fetchBounded(upstream, file, bounds.productsBytes, budget);
    files.set(file, bytes);
    const body = await signedText(file, bytes, keyring);
    refuseDeepJson(file, body, bounds.jsonDepth);
    const doc = parseProducts(file, body);
    refuseMismatch(indexFile, contentId, entry, file, doc);
    refuseStale(indexFile, contentId, entry, file, doc, body, published?.products.get(contentId));
    products.push({ file, doc });
    // One products body at a time: its twin is checked now, not after all are read.
    if (keyring) await addUnsignedTwin(upstream, files, file, body, doc, bounds.productsBytes, bounds.jsonDepth, budget);
  }
  if (keyring) {
    const view = unsignedIndexView(JSON.parse(indexText));
    await addUnsignedTwin(upstream, files, indexFile, indexText, view, bounds.indexBytes, bounds.jsonDepth, budget);
  }
  return { index: indexDoc, indexFile, updated, products, files, validators: index.validators };
}

/**
 * What the freshness checks need from the current publication: the `updated`
 * of its index and, per content id, of its products file and a digest of the
 * body. Read from the object store under the publication's own prefix,
 * within the same limits as an upstream. Signatures are not checked again:
 * these bytes were verified before they were published, and the keyring may
 * have changed since.
 */
export async function loadPublishedMetadata(
  objects: ObjectStore,
  publication: Publication,
  limits: MetadataLimits = defaultMetadataLimits,
): Promise<PublishedMetadata> {
  const listed = new Set(publication.files);
  // A re-signed generation keeps the upstream files it was made from: upstream is compared with upstream.
  const base = [SIGNED_INDEX, UNSIGNED_INDEX].some((file) => listed.has(`${UPSTREAM_COPY_PREFIX}${file}`)) ? UPSTREAM_COPY_PREFIX : '';
  const published = await loadKeptMetadata(objects, publication, base, limits);
  // Fail closed: a publication we cannot read back must not switch the checks off.
  if (!published) throw new MetadataError(`publication ${publication.generation}`, '$', `lists no ${SIGNED_INDEX} or ${UNSIGNED_INDEX}`);
  return published;
}

/**
 * The same for one of several merged sources, from the copy kept under
 * `upstreamCopyPrefix(source)`: undefined when the publication has none,
 * the source being new to it.
 */
export async function loadSourceMetadata(
  objects: ObjectStore,
  publication: Publication,
  source: string,
  limits: MetadataLimits = defaultMetadataLimits,
): Promise<PublishedMetadata | undefined> {
  return loadKeptMetadata(objects, publication, upstreamCopyPrefix(source), limits);
}

async function loadKeptMetadata(
  objects: ObjectStore,
  publication: Publication,
  base: string,
  limits: MetadataLimits,
): Promise<PublishedMetadata | undefined> {
  const bounds = limits;
  const budget = new RunBudget(bounds.runBytes);
  const listed = new Set(publication.files);
  const indexFile = [SIGNED_INDEX, UNSIGNED_INDEX].find((file) => listed.has(`${base}${file}`));
  const where = `publication ${publication.generation}`;
  if (!indexFile) return undefined;

  // A file damaged at rest since it was published is no base for the checks: it is read from upstream as if new.
  const recorded = await recordedMetadataDigests(objects, publication);
  const damaged = (file: string, bytes: Uint8Array) => recorded?.[file] !== undefined && recorded[file] !== sha256Hex(bytes);
  const indexKey = keys.metadata(publication, `${base}${indexFile}`);
  const indexBytes = await readStored(objects, indexKey, bounds.indexBytes, budget);
  if (damaged(`${base}${indexFile}`, indexBytes)) return { products: new Map() };
  const indexBody = await publishedBody(indexKey, indexBytes);
  refuseDeepJson(indexKey, indexBody, bounds.jsonDepth);
  const index = parseIndex(indexKey, indexBody);

  const products = new Map<string, PublishedProducts>();
  for (const [contentId, entry] of Object.entries(index.index)) {
    if (!listed.has(`${base}${entry.path}`)) {
      throw new MetadataError(indexKey, `${jsonPath(['index', contentId])}.path`, `${entry.path} is not a file of ${where}`);
    }
    const source = keys.metadata(publication, `${base}${entry.path}`);
    const stored = await readStored(objects, source, bounds.productsBytes, budget);
    if (damaged(`${base}${entry.path}`, stored)) continue;
    const body = await publishedBody(source, stored);
    refuseDeepJson(source, body, bounds.jsonDepth);
    const doc = parseProducts(source, body);
    products.set(contentId, { source, ...(doc.updated === undefined ? {} : { updated: doc.updated }), bodySha256: sha256(body) });
  }
  return { ...(index.updated === undefined ? {} : { indexUpdated: index.updated }), products };
}

/**
 * The `updated` of the index `publication` serves (the mirror's own date when
 * it was re-signed, upstream's otherwise): what the next re-signed index
 * must come after.
 */
export async function servedIndexUpdated(
  objects: ObjectStore,
  publication: Publication,
  limits: MetadataLimits = defaultMetadataLimits,
): Promise<string | undefined> {
  const bounds = limits;
  const indexFile = publishedIndexFile(publication);
  if (!indexFile) throw new MetadataError(`publication ${publication.generation}`, '$', `lists no ${SIGNED_INDEX} or ${UNSIGNED_INDEX}`);
  const key = keys.metadata(publication, indexFile);
  const body = await publishedBody(key, await readStored(objects, key, bounds.indexBytes, new RunBudget(bounds.indexBytes)));
  refuseDeepJson(key, body, bounds.jsonDepth);
  return parseIndex(key, body).updated;
}

// ---------------------------------------------------------------- freshness

function requireUpdated(file: string, path: string, value: string | undefined): string {
  if (value === undefined) {
    throw new MetadataError(file, path, 'missing: without it a replayed older file cannot be told from a newer one');
  }
  return value;
}

function isOlder(file: string, updated: string, than: string): boolean {
  return parseUpdated(file, '$.updated', updated) < parseUpdated(file, '$.updated', than);
}

/** A products file must be the one its index entry lists: no mixing files of other streams or formats. */
function refuseMismatch(indexFile: string, contentId: string, entry: IndexEntry, file: string, doc: ProductsDocument): void {
  if (doc.content_id !== contentId) {
    throw new MetadataError(
      file,
      '$.content_id',
      `is ${JSON.stringify(doc.content_id)}, but ${indexFile} lists this file as ${JSON.stringify(contentId)}`,
    );
  }
  if (entry.format !== undefined && entry.format !== doc.format) {
    throw new MetadataError(
      file,
      '$.format',
      `is ${JSON.stringify(doc.format)}, but ${indexFile} lists this file as ${JSON.stringify(entry.format)}`,
    );
  }
}

/**
 * Refuses a products file that is older than its index entry claims (an old
 * file replayed under a new index), older than the published one, or as old
 * as the published one with different content.
 *
 * The last case: simplestreams tools move `updated` whenever they rewrite a
 * products file, so equal dates with different bodies is either an upstream
 * that broke that rule or an older file replayed with a fresh date; the
 * mirror cannot tell which is newer, so it keeps what it has. Equal bodies
 * (say, re-signed with a new signature) are the same file and pass.
 */
function refuseStale(
  indexFile: string,
  contentId: string,
  entry: IndexEntry,
  file: string,
  doc: ProductsDocument,
  body: string,
  published: PublishedProducts | undefined,
): void {
  const updated = requireUpdated(file, '$.updated', doc.updated);
  if (entry.updated !== undefined && isOlder(file, updated, entry.updated)) {
    throw new RollbackError(updated, entry.updated, {
      file,
      contentId,
      problem: `updated ${updated} is older than ${indexFile} says it is (${entry.updated}): an old products file under a newer index`,
    });
  }
  if (published?.updated === undefined) return;
  if (isOlder(file, updated, published.updated)) {
    throw new RollbackError(updated, published.updated, { file, contentId });
  }
  if (!isOlder(file, published.updated, updated) && sha256(body) !== published.bodySha256) {
    throw new RollbackError(updated, published.updated, {
      file,
      contentId,
      problem: `updated ${updated} is the published one's, but the content differs: a changed file must carry a newer date`,
    });
  }
}

// ---------------------------------------------------------------- bounds

/** The bytes of all metadata one run reads. */
class RunBudget {
  private spent = 0;
  readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }

  /** The most `file` may hold: its own limit, or less when the run's total is nearly spent. */
  capFor(fileLimit: number): number {
    return Math.min(fileLimit, this.limit - this.spent);
  }

  spend(file: string, bytes: number): void {
    this.spent += bytes;
    if (this.spent > this.limit) throw this.exceeded(file);
  }

  exceeded(file: string): InputTooLargeError {
    return new InputTooLargeError(file, this.limit, `the metadata of this run exceeds its ${this.limit}-byte total`);
  }
}

function refuseOversized(file: string, bytes: Uint8Array, limit: number): void {
  if (bytes.byteLength > limit) {
    throw new InputTooLargeError(file, limit, `${bytes.byteLength} bytes exceed the ${limit}-byte limit`);
  }
}

/** The whole file, refused past its own limit or the run's remaining total, whether or not the upstream enforces `maxBytes`. */
async function fetchBounded(upstream: Upstream, file: string, fileLimit: number, budget: RunBudget): Promise<Uint8Array> {
  const cap = budget.capFor(fileLimit);
  let fetched: FetchedFile;
  try {
    fetched = await upstream.fetchFile(file, undefined, { maxBytes: cap });
  } catch (error) {
    if (error instanceof InputTooLargeError && cap < fileLimit) throw budget.exceeded(file);
    throw error;
  }
  if (fetched.notModified) throw new MetadataError(file, '$', 'upstream answered 304 to an unconditional GET');
  if (fetched.bytes.byteLength > cap && cap < fileLimit) throw budget.exceeded(file);
  refuseOversized(file, fetched.bytes, fileLimit);
  budget.spend(file, fetched.bytes.byteLength);
  return fetched.bytes;
}

/** An object of the store, refused past `limit` without reading further. */
async function readStored(objects: ObjectStore, key: string, fileLimit: number, budget: RunBudget): Promise<Uint8Array> {
  const cap = budget.capFor(fileLimit);
  const refuse = () => (cap < fileLimit ? budget.exceeded(key) : new InputTooLargeError(key, fileLimit, `over the ${fileLimit}-byte limit`));
  const object = await objects.get(key);
  const iterator = object.body[Symbol.asyncIterator]();
  if (object.size > cap) {
    await iterator.return?.();
    throw refuse();
  }
  const bytes = new Uint8Array(object.size);
  let received = 0;
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    if (received + next.value.byteLength > object.size) {
      await iterator.return?.();
      throw refuse();
    }
    bytes.set(next.value, received);
    received += next.value.byteLength;
  }
  if (received !== object.size) throw new MetadataError(key, '$', `read ${received} of its ${object.size} bytes`);
  budget.spend(key, received);
  return bytes;
}

const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Refuses JSON nested deeper than `limit` before anything parses it: the
 * documents are later cloned and serialized recursively. Brackets inside
 * strings do not count; malformed JSON is left for JSON.parse to name.
 */
function refuseDeepJson(file: string, text: string, limit: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > limit) {
        throw new InputTooLargeError(file, limit, `JSON nested more than ${limit} levels deep (at character ${i})`);
      }
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
  }
}

// ---------------------------------------------------------------- bodies

/** The signed body (signature checked first), or the text of an unsigned file: decoded once. */
async function signedText(file: string, bytes: Uint8Array, keyring: Keyring | undefined): Promise<string> {
  if (keyring) return verifyClearsignedBytes(file, bytes, keyring);
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

async function publishedBody(key: string, bytes: Uint8Array): Promise<string> {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  return isClearsigned(text) ? clearsignedBody(key, text) : text;
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * `x.json` beside a signed `x.sjson` is served as is, so it must say exactly
 * what was signed. When upstream has none, the signed body is published instead.
 */
async function addUnsignedTwin(
  upstream: Upstream,
  files: Map<string, Uint8Array>,
  signedFile: string,
  signedBody: string,
  expected: unknown,
  fileLimit: number,
  jsonDepth: number,
  budget: RunBudget,
): Promise<void> {
  if (!signedFile.endsWith('.sjson')) return;
  const twin = `${signedFile.slice(0, -'.sjson'.length)}.json`;
  let bytes: Uint8Array;
  try {
    bytes = await fetchBounded(upstream, twin, fileLimit, budget);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    files.set(twin, new TextEncoder().encode(signedBody));
    return;
  }
  const text = new TextDecoder().decode(bytes);
  // Usually the very bytes that were signed: then there is nothing to parse.
  if (text !== signedBody) {
    refuseDeepJson(twin, text, jsonDepth);
    let twinDoc: unknown;
    try {
      twinDoc = JSON.parse(text);
    } catch (error) {
      throw new MetadataError(twin, '$', `not valid JSON: ${(error as Error).message}`);
    }
    if (canonicalJson(twinDoc) !== canonicalJson(expected)) {
      throw new MetadataError(twin, '$', `differs from the signed ${signedFile}; refusing to publish unverified metadata`);
    }
  }
  files.set(twin, bytes);
}

/** The signed index lists `.sjson` product files; its unsigned twin lists the `.json` ones. */
function unsignedIndexView(doc: unknown): unknown {
  const copy = doc as { index?: Record<string, { path?: unknown }> };
  for (const entry of Object.values(copy.index ?? {})) {
    if (typeof entry.path === 'string' && entry.path.endsWith('.sjson')) {
      entry.path = `${entry.path.slice(0, -'.sjson'.length)}.json`;
    }
  }
  return copy;
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}
