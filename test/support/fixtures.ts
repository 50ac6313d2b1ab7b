/**
 * Real captures of images.maas.io metadata (test/fixtures/maas-stream; see
 * test/fixtures/README.md), and a signed synthetic upstream built from them.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseProducts, type ProductsDocument } from '../../functions/core/simplestreams.ts';
import { generateSigningKey, synthesizeTree, type SigningKey, type SynthesizeOptions } from './signed-upstream.ts';

const FIXTURE_DIRECTORY = fileURLToPath(new URL('../fixtures/maas-stream/', import.meta.url));

export const FIXTURE_PRODUCT_FILES = [
  'simplestreams_ubuntu.json',
  'simplestreams_bootloaders.json',
  'simplestreams_centos.json',
] as const;

export type FixtureFile = (typeof FIXTURE_PRODUCT_FILES)[number] | 'simplestreams_index.json';

/** The raw text of one capture. */
export function fixtureText(name: FixtureFile): string {
  return readFileSync(`${FIXTURE_DIRECTORY}${name}`, 'utf8');
}

/** The three captured products documents (ubuntu, bootloaders, centos), parsed; fresh copies on every call. */
export function loadFixtureProducts(): ProductsDocument[] {
  return FIXTURE_PRODUCT_FILES.map((name) => parseProducts(name, fixtureText(name)));
}

export interface FixtureUpstreamOptions extends Omit<SynthesizeOptions, 'key'> {
  /** Signs with this key. @default a fresh key */
  key?: SigningKey;
  /** false: only unsigned `.json` metadata. @default true */
  signed?: boolean;
  /** Edits the (copied) fixture documents before the tree is built. */
  mutate?: (documents: ProductsDocument[]) => void;
}

/**
 * A complete upstream over the real captures: synthetic item bytes (small by
 * default), metadata with matching sizes and sha256, clearsigned by `key`.
 * Serve `files` with serveTree.
 */
export async function buildFixtureUpstream(
  options: FixtureUpstreamOptions = {},
): Promise<{ key: SigningKey; files: Map<string, Uint8Array> }> {
  const { key: givenKey, signed = true, mutate, ...synthesize } = options;
  const key = givenKey ?? (await generateSigningKey());
  const documents = loadFixtureProducts();
  mutate?.(documents);
  const files = await synthesizeTree(documents, { ...synthesize, ...(signed ? { key } : {}) });
  return { key, files };
}
