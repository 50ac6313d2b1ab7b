/**
 * Signed synthetic upstreams for tests and the benches, built on the demo's
 * synthesizer (functions/demo/synthetic-upstream.ts) and the mirror's own
 * OpenPGP code (functions/core/pgp.ts). Serve a tree with serveTree
 * (./upstream-server.ts).
 */
import type { PrivateKey } from 'openpgp';
import { clearsign as clearsignWith, generateSigningKey as generateCoreKey, loadSigningKey } from '../../functions/core/pgp.ts';
import { stableJson } from '../../functions/core/publish-metadata.ts';
import { parseProducts, type FlatItem, type ProductsDocument, type StreamIndex } from '../../functions/core/simplestreams.ts';
import {
  INDEX_PATH,
  synthesizeTree as synthesizeDemoTree,
  syntheticItemBytes,
  writeMetadata as writeDemoMetadata,
} from '../../functions/demo/synthetic-upstream.ts';

export {
  INDEX_PATH,
  SIGNED_INDEX_PATH,
  productsPath,
  signedProductsPath,
  syntheticContent,
} from '../../functions/demo/synthetic-upstream.ts';

/** A core signing key with the forms tests hand to verifiers, gpgv and the CLI. */
export interface SigningKey {
  privateKey: PrivateKey;
  armoredPrivateKey: string;
  armoredPublicKey: string;
  /** Binary, like `gpg --export`, suitable for `gpgv --keyring`. */
  publicKeyring: Uint8Array;
  /** Upper-case hex. */
  fingerprint: string;
}

/** A fresh, unprotected signing key, as the mirror makes its own (core/pgp.ts). */
export async function generateSigningKey(name = 'skystreams synthetic upstream'): Promise<SigningKey> {
  const { armoredPrivate, fingerprint } = await generateCoreKey(name);
  const privateKey = await loadSigningKey(name, armoredPrivate);
  const publicKey = privateKey.toPublic();
  return {
    privateKey,
    armoredPrivateKey: armoredPrivate,
    armoredPublicKey: publicKey.armor(),
    publicKeyring: publicKey.write(),
    fingerprint,
  };
}

/** `text` as an OpenPGP clearsigned message, signed by `key`. */
export function clearsign(text: string, key: SigningKey): Promise<string> {
  return clearsignWith(text, key.privateKey);
}

/** As simplestreams' tools write metadata: one-space indent, sorted keys, trailing newline. */
export const serializeMetadata = stableJson;

export interface SynthesizeOptions {
  /** Sign: write `.sjson` beside every `.json`. Without it, only `.json` files. */
  key?: SigningKey;
  /** `updated` of the index, its entries and every products file. @default formatUpdated(now) */
  updated?: string;
  /** Bytes to synthesize for an item. @default 1–40 KiB, derived from the path */
  itemSize?: (item: FlatItem) => number;
  /** Changes every item's bytes (and so its digests) without changing its path. @default '' */
  contentSeed?: string;
  /** The bytes of an item whose content matters, or undefined for the synthetic bytes. */
  itemContent?: (item: FlatItem) => Uint8Array | undefined;
}

/**
 * Every file of an upstream mirror, keyed by path relative to its root (see
 * the demo's synthesizeTree), with the item sizes and content seed a test asks for.
 */
export function synthesizeTree(products: ProductsDocument[], options: SynthesizeOptions = {}): Promise<Map<string, Uint8Array>> {
  const { key, updated, itemSize, contentSeed, itemContent } = options;
  return synthesizeDemoTree(products, {
    ...(key && { key: key.privateKey }),
    ...(updated !== undefined && { updated }),
    itemContent: (item) => itemContent?.(item) ?? syntheticItemBytes(item, { size: itemSize?.(item), contentSeed }),
  });
}

/**
 * (Re)writes the products files and the index for `products` into `files`,
 * as they are (item bytes untouched), signed when `key` is given. Handy after
 * a test edits a document: the metadata is then validly signed but may
 * promise bytes the tree does not hold.
 */
export function writeMetadata(
  files: Map<string, Uint8Array>,
  products: ProductsDocument[],
  options: Pick<SynthesizeOptions, 'key' | 'updated'> = {},
): Promise<void> {
  return writeDemoMetadata(files, products, {
    ...(options.key && { key: options.key.privateKey }),
    ...(options.updated !== undefined && { updated: options.updated }),
  });
}

const decoder = new TextDecoder();

/** The products documents of a tree (from its unsigned `.json` files), for a test to edit and pass to writeMetadata. */
export function productsIn(files: Map<string, Uint8Array>): ProductsDocument[] {
  const index = JSON.parse(decoder.decode(files.get(INDEX_PATH))) as StreamIndex;
  return Object.values(index.index).map((entry) =>
    parseProducts(entry.path, decoder.decode(files.get(entry.path) ?? new Uint8Array())),
  );
}
