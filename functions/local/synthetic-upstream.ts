/**
 * A synthetic, signed simplestreams upstream for the offline demo:
 * deterministic item bytes and real OpenPGP clearsigned metadata, served on
 * loopback by the real HTTP app. Nothing here talks to the internet. Tests
 * build on the synthesizer (test/support/signed-upstream.ts).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createCleartextMessage, generateKey, readKey, readPrivateKey, sign } from 'openpgp';
import { openEmbeddedBackend } from '../adapters/embedded.ts';
import { contentTypeOf } from '../core/content-types.ts';
import { keys, type Backend, type CatalogEntry } from '../core/ports.ts';
import {
  flattenItems,
  formatUpdated,
  parseProducts,
  type FlatItem,
  type IndexEntry,
  type ProductsDocument,
  type StreamIndex,
} from '../core/simplestreams.ts';
import { createApp } from '../http/app.ts';
import { startServer } from './server.ts';

// ---------------------------------------------------------------- signing

export interface SigningKey {
  armoredPrivateKey: string;
  armoredPublicKey: string;
  /** Binary, like `gpg --export`, suitable for `gpgv --keyring`. */
  publicKeyring: Uint8Array;
  /** Upper-case hex. */
  fingerprint: string;
}

/** A fresh, unprotected Ed25519 signing key (with a Curve25519 subkey), as gpg 2.2 understands them. */
export async function generateSigningKey(name = 'skystreams synthetic upstream'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name, email: 'synthetic-upstream@skystreams.invalid' }],
    format: 'armored',
  });
  const key = await readKey({ armoredKey: publicKey });
  return {
    armoredPrivateKey: privateKey,
    armoredPublicKey: publicKey,
    publicKeyring: key.write(),
    fingerprint: key.getFingerprint().toUpperCase(),
  };
}

/** `text` as an OpenPGP clearsigned message, signed by `key`. */
export async function clearsign(text: string, key: SigningKey): Promise<string> {
  const signingKey = await readPrivateKey({ armoredKey: key.armoredPrivateKey });
  return sign({ message: await createCleartextMessage({ text }), signingKeys: signingKey });
}

// ---------------------------------------------------------------- the tree

export interface SynthesizeOptions {
  /** Sign: write `.sjson` beside every `.json`. Without it, only `.json` files. */
  key?: SigningKey;
  /** `updated` of the index, its entries and every products file. @default formatUpdated(now) */
  updated?: string;
  /** Bytes to synthesize for an item. @default 1–40 KiB, derived from the path */
  itemSize?: (item: FlatItem) => number;
  /** Changes every item's bytes (and so its digests) without changing its path. @default '' */
  contentSeed?: string;
  /**
   * The bytes of an item whose content matters (a package manifest), or
   * undefined for the synthetic bytes (then `itemSize` and `contentSeed` apply).
   * @default synthetic bytes for every item
   */
  itemContent?: (item: FlatItem) => Uint8Array | undefined;
}

const encoder = new TextEncoder();

export const INDEX_PATH = 'streams/v1/index.json';
export const SIGNED_INDEX_PATH = 'streams/v1/index.sjson';
export const productsPath = (contentId: string) => `streams/v1/${contentId}.json`;
export const signedProductsPath = (contentId: string) => `streams/v1/${contentId}.sjson`;

const hexDigest = (algorithm: string, bytes: Uint8Array) => createHash(algorithm).update(bytes).digest('hex');

/** Deterministic pseudo-random bytes for `path`: AES-256-CTR keystream keyed by seed and path. */
export function syntheticContent(path: string, size: number, contentSeed = ''): Uint8Array {
  const key = createHash('sha256').update(`skystreams-synthetic\0${contentSeed}\0${path}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return new Uint8Array(Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]));
}

function defaultItemSize(item: FlatItem, contentSeed: string): number {
  const spread = createHash('sha256').update(`${contentSeed}\0${item.path}`).digest().readUInt32BE(0);
  return 1024 + (spread % (39 * 1024 + 1));
}

/**
 * Every file of an upstream mirror, keyed by path relative to its root: each
 * item's synthetic bytes (its `size` and `sha256` rewritten to match, and any
 * `sha512`/`md5` it declared recomputed), the products files and the index,
 * clearsigned when `key` is given. The input documents are not modified.
 * Items sharing a path share their bytes.
 */
export async function synthesizeTree(
  products: ProductsDocument[],
  options: SynthesizeOptions = {},
): Promise<Map<string, Uint8Array>> {
  const contentSeed = options.contentSeed ?? '';
  const files = new Map<string, Uint8Array>();
  const documents = products.map((document) => structuredClone(document));
  for (const document of documents) {
    const file = productsPath(document.content_id);
    for (const flat of flattenItems(file, document)) {
      let bytes = files.get(flat.path);
      if (!bytes) {
        bytes = options.itemContent?.(flat);
        if (!bytes) {
          const size = options.itemSize?.(flat) ?? defaultItemSize(flat, contentSeed);
          bytes = syntheticContent(flat.path, size, contentSeed);
        }
        files.set(flat.path, bytes);
      }
      const item = document.products[flat.productName]!.versions[flat.versionName]!.items[flat.itemName]!;
      item.size = bytes.length;
      item.sha256 = hexDigest('sha256', bytes);
      if (item.sha512 !== undefined) item.sha512 = hexDigest('sha512', bytes);
      if (item.md5 !== undefined) item.md5 = hexDigest('md5', bytes);
    }
  }
  await writeMetadata(files, documents, options);
  return files;
}

/**
 * (Re)writes the products files and the index for `products` into `files`,
 * as they are (item bytes untouched), signed when `key` is given. Handy after
 * a test edits a document: the metadata is then validly signed but may
 * promise bytes the tree does not hold. Leaves other files, including stale
 * `.sjson` files when unsigned, alone.
 */
export async function writeMetadata(
  files: Map<string, Uint8Array>,
  products: ProductsDocument[],
  options: Pick<SynthesizeOptions, 'key' | 'updated'> = {},
): Promise<void> {
  const updated = options.updated ?? formatUpdated(new Date());
  const unsignedIndex: StreamIndex = { format: 'index:1.0', updated, index: {} };
  const signedIndex: StreamIndex = { format: 'index:1.0', updated, index: {} };
  for (const original of products) {
    const document: ProductsDocument = { ...original, updated };
    const text = serializeMetadata(document);
    files.set(productsPath(document.content_id), encoder.encode(text));
    if (options.key) files.set(signedProductsPath(document.content_id), encoder.encode(await clearsign(text, options.key)));
    const entry: IndexEntry = {
      datatype: typeof document.datatype === 'string' ? document.datatype : 'image-ids',
      format: 'products:1.0',
      path: productsPath(document.content_id),
      products: Object.keys(document.products).sort(),
      updated,
    };
    unsignedIndex.index[document.content_id] = entry;
    signedIndex.index[document.content_id] = { ...entry, path: signedProductsPath(document.content_id) };
  }
  files.set(INDEX_PATH, encoder.encode(serializeMetadata(unsignedIndex)));
  if (options.key) files.set(SIGNED_INDEX_PATH, encoder.encode(await clearsign(serializeMetadata(signedIndex), options.key)));
}

/** As simplestreams' tools write metadata: one-space indent, sorted keys, trailing newline. */
export function serializeMetadata(value: unknown): string {
  return `${JSON.stringify(value, sortedKeys, 1)}\n`;
}

function sortedKeys(_key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}


// ---------------------------------------------------------------- serving

/**
 * Serves `files` on loopback the way a mirror serves: published as one
 * generation of an embedded backend at `directory` (emptied first), behind
 * the real HTTP app. Every item must be listed by some products file.
 */
export async function serveSyntheticUpstream(
  files: ReadonlyMap<string, Uint8Array>,
  directory: string,
): Promise<{ baseUrl: string; close(): Promise<void> }> {
  await rm(directory, { recursive: true, force: true });
  const backend = openEmbeddedBackend(directory);
  try {
    await publishTree(backend, files);
    const server = await startServer(createApp(backend), { port: 0, host: '127.0.0.1' });
    return {
      baseUrl: server.url,
      close: async () => {
        await server.close();
        await backend.close();
      },
    };
  } catch (error) {
    await backend.close();
    throw error;
  }
}

/** Stores the tree's items and metadata and publishes them as the backend's next generation. */
async function publishTree({ objects, catalog }: Backend, files: ReadonlyMap<string, Uint8Array>): Promise<void> {
  const generation = await catalog.reserveGeneration();
  const owner = { generation, runId: `synthetic-${generation}` };
  const metadataFiles = [...files.keys()].filter((path) => path.startsWith('streams/'));
  const index = JSON.parse(new TextDecoder().decode(files.get(INDEX_PATH))) as StreamIndex;
  const entries: CatalogEntry[] = [];
  for (const { path: file } of Object.values(index.index)) {
    const document = parseProducts(file, new TextDecoder().decode(files.get(file)));
    for (const item of flattenItems(file, document)) {
      const bytes = files.get(item.path);
      if (!bytes) throw new Error(`${file} lists ${item.path}, which the tree does not hold`);
      const { contentId, productName: product, versionName: version, itemName, path } = item;
      entries.push({ contentId, product, version, item: itemName, path, size: bytes.length, sha256: hexDigest('sha256', bytes) });
    }
  }
  for (const path of new Set(entries.map((entry) => entry.path))) await objects.put(keys.item(path), files.get(path)!);
  for (const file of metadataFiles) await objects.put(keys.metadata(owner, file), files.get(file)!, { contentType: contentTypeOf(file) });
  await catalog.putEntries(generation, entries);
  await catalog.publish(
    {
      ...owner,
      upstreamUpdated: index.updated ?? '',
      publishedAt: new Date().toISOString(),
      files: metadataFiles,
      itemCount: entries.length,
      totalBytes: entries.reduce((total, entry) => total + entry.size, 0),
    },
    (await catalog.getCurrent())?.generation,
  );
}
