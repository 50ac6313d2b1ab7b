/**
 * Reads an upstream's metadata: the index and every products file it lists,
 * each signature checked, each document validated, and the unsigned `.json`
 * twins checked against what was signed — so everything we later publish
 * verbatim has been verified.
 */
import { MetadataError, NotFoundError, RollbackError, SignatureError } from './errors.ts';
import { assertSafePath } from './paths.ts';
import { verifyClearsigned, type Keyring } from './pgp.ts';
import {
  parseIndex,
  parseProducts,
  parseUpdated,
  type ProductsDocument,
  type StreamIndex,
} from './simplestreams.ts';
import type { FetchedFile, Upstream, Validators } from './ports.ts';

export const SIGNED_INDEX = 'streams/v1/index.sjson';
export const UNSIGNED_INDEX = 'streams/v1/index.json';

export interface UpstreamMetadata {
  index: StreamIndex;
  indexFile: string;
  products: { file: string; doc: ProductsDocument }[];
  /** Every metadata file to publish verbatim, by path relative to the mirror root. */
  files: Map<string, Uint8Array>;
  /** Validators of the index response, for the next conditional GET. */
  validators: Validators;
}

export type IndexCheck =
  | { changed: false }
  | { changed: true; bytes: Uint8Array; validators: Validators };

/** `keyring` undefined means the operator chose `--no-verify`: unsigned `.json` files. */
export function indexFileFor(keyring: Keyring | undefined): string {
  return keyring ? SIGNED_INDEX : UNSIGNED_INDEX;
}

/** A conditional GET of the index: at most one request when nothing changed. */
export async function checkIndex(
  upstream: Upstream,
  keyring: Keyring | undefined,
  validators: Validators | undefined,
): Promise<IndexCheck> {
  const indexFile = indexFileFor(keyring);
  let fetched: FetchedFile;
  try {
    fetched = await upstream.fetchFile(indexFile, validators);
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
  return { changed: true, bytes: fetched.bytes, validators: fetched.validators };
}

export async function readUpstreamMetadata(
  upstream: Upstream,
  keyring: Keyring | undefined,
  index: { bytes: Uint8Array; validators: Validators },
  published?: { upstreamUpdated: string },
): Promise<UpstreamMetadata> {
  const indexFile = indexFileFor(keyring);
  const files = new Map<string, Uint8Array>([[indexFile, index.bytes]]);
  const indexText = await signedText(indexFile, index.bytes, keyring);
  const indexDoc = parseIndex(indexFile, indexText);
  refuseRollback(indexFile, indexDoc, published);

  const products: UpstreamMetadata['products'] = [];
  const signedBodies = new Map<string, string>();
  for (const [name, entry] of Object.entries(indexDoc.index).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const file = assertSafePath(indexFile, `$.index[${JSON.stringify(name)}].path`, entry.path);
    const fetched = await upstream.fetchFile(file);
    if (fetched.notModified) throw new MetadataError(file, '$', 'upstream answered 304 to an unconditional GET');
    files.set(file, fetched.bytes);
    const body = await signedText(file, fetched.bytes, keyring);
    signedBodies.set(file, body);
    products.push({ file, doc: parseProducts(file, body) });
  }

  if (keyring) {
    await addUnsignedTwin(upstream, files, indexFile, indexText, unsignedIndexView);
    for (const [file, body] of signedBodies) {
      await addUnsignedTwin(upstream, files, file, body, (doc) => doc);
    }
  }
  return { index: indexDoc, indexFile, products, files, validators: index.validators };
}

async function signedText(file: string, bytes: Uint8Array, keyring: Keyring | undefined): Promise<string> {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  return keyring ? verifyClearsigned(file, text, keyring) : text;
}

function refuseRollback(file: string, index: StreamIndex, published?: { upstreamUpdated: string }): void {
  if (!published || index.updated === undefined) return;
  const upstream = parseUpdated(file, '$.updated', index.updated);
  const current = parseUpdated('the published index', '$.updated', published.upstreamUpdated);
  if (upstream < current) throw new RollbackError(index.updated, published.upstreamUpdated);
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
  expectedView: (signedDoc: unknown) => unknown,
): Promise<void> {
  if (!signedFile.endsWith('.sjson')) return;
  const twin = `${signedFile.slice(0, -'.sjson'.length)}.json`;
  let bytes: Uint8Array;
  try {
    const fetched = await upstream.fetchFile(twin);
    if (fetched.notModified) return;
    bytes = fetched.bytes;
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    files.set(twin, new TextEncoder().encode(signedBody));
    return;
  }
  let twinDoc: unknown;
  try {
    twinDoc = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new MetadataError(twin, '$', `not valid JSON: ${(error as Error).message}`);
  }
  const expected = expectedView(JSON.parse(signedBody));
  if (canonicalJson(twinDoc) !== canonicalJson(expected)) {
    throw new MetadataError(twin, '$', `differs from the signed ${signedFile}; refusing to publish unverified metadata`);
  }
  files.set(twin, bytes);
}

/** The signed index lists `.sjson` product files; its unsigned twin lists the `.json` ones. */
function unsignedIndexView(doc: unknown): unknown {
  const copy = structuredClone(doc) as { index?: Record<string, { path?: unknown }> };
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
