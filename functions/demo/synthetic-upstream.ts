/**
 * The demo's upstream: deterministic item bytes and OpenPGP clearsigned
 * metadata (signed with core/pgp.ts), served on loopback by the real HTTP
 * app. Nothing here talks to the internet.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { PrivateKey } from 'openpgp';
import { openEmbeddedBackend } from '../adapters/embedded.ts';
import { contentTypeOf } from '../core/content-types.ts';
import { clearsign } from '../core/pgp.ts';
import { keys, type Backend, type CatalogEntry } from '../core/ports.ts';
import { stableJson } from '../core/publish-metadata.ts';
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
import { startServer } from '../local/server.ts';

export interface SynthesizeOptions {
  /** Sign: write `.sjson` beside every `.json`. Without it, only `.json` files. */
  key?: PrivateKey;
  /** `updated` of the index, its entries and every products file. @default formatUpdated(now) */
  updated?: string;
  /** The bytes of an item, or undefined for syntheticItemBytes(item). @default synthetic bytes for every item */
  itemContent?: (item: FlatItem) => Uint8Array | undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

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

/** An item's synthetic bytes: 1–40 KiB unless `size` is given, both derived from the path and the seed. */
export function syntheticItemBytes(item: FlatItem, options: { size?: number; contentSeed?: string } = {}): Uint8Array {
  const contentSeed = options.contentSeed ?? '';
  const spread = createHash('sha256').update(`${contentSeed}\0${item.path}`).digest().readUInt32BE(0);
  return syntheticContent(item.path, options.size ?? 1024 + (spread % (39 * 1024 + 1)), contentSeed);
}

/**
 * Every file of an upstream mirror, keyed by path relative to its root: each
 * item's bytes (its `size` and `sha256` rewritten to match, and any
 * `sha512`/`md5` it declared recomputed), the products files and the index,
 * clearsigned when `key` is given. The input documents are not modified.
 * Items sharing a path share their bytes.
 */
export async function synthesizeTree(
  products: ProductsDocument[],
  options: SynthesizeOptions = {},
): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const documents = products.map((document) => structuredClone(document));
  for (const document of documents) {
    const file = productsPath(document.content_id);
    for (const flat of flattenItems(file, document)) {
      let bytes = files.get(flat.path);
      if (!bytes) {
        bytes = options.itemContent?.(flat) ?? syntheticItemBytes(flat);
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
 * as they are (item bytes untouched), signed when `key` is given. Leaves
 * other files, including stale `.sjson` files when unsigned, alone.
 */
export async function writeMetadata(
  files: Map<string, Uint8Array>,
  products: ProductsDocument[],
  options: Pick<SynthesizeOptions, 'key' | 'updated'> = {},
): Promise<void> {
  const { key } = options;
  const updated = options.updated ?? formatUpdated(new Date());
  const unsignedIndex: StreamIndex = { format: 'index:1.0', updated, index: {} };
  const signedIndex: StreamIndex = { format: 'index:1.0', updated, index: {} };
  for (const original of products) {
    const document: ProductsDocument = { ...original, updated };
    const text = stableJson(document);
    files.set(productsPath(document.content_id), encoder.encode(text));
    if (key) files.set(signedProductsPath(document.content_id), encoder.encode(await clearsign(text, key)));
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
  files.set(INDEX_PATH, encoder.encode(stableJson(unsignedIndex)));
  if (key) files.set(SIGNED_INDEX_PATH, encoder.encode(await clearsign(stableJson(signedIndex), key)));
}

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
  const index = JSON.parse(decoder.decode(files.get(INDEX_PATH))) as StreamIndex;
  const entries: CatalogEntry[] = [];
  for (const { path: file } of Object.values(index.index)) {
    const document = parseProducts(file, decoder.decode(files.get(file)));
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
