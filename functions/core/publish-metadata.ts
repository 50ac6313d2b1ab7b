/**
 * The mirror's own simplestreams metadata (re-signed mode): given the
 * products, versions and items to publish, whatever source they came from,
 * builds `streams/v1/index` and one products file per source products file,
 * each as `.json` and clearsigned `.sjson`, plus the public keyring that
 * verifies them. Pure: signing is a function handed in.
 *
 * Shape: every level keeps the fields its source wrote there (top-level,
 * product, version, item), so inheritance works as it did upstream and
 * MAAS's models, which read `os`, `arch`, `label`… at product level and
 * `ftype`, `path`, `sha256`, `size` at item level, see what they saw there.
 */
import { armor, enums, type PublicKey } from 'openpgp';
import { MetadataError } from './errors.ts';
import { INDEX_BASE, formatUpdated, parseUpdated, type IndexEntry, type ProductsDocument, type StreamIndex, type VersionEntry } from './simplestreams.ts';

import { PUBLISHED_KEYRING, PUBLISHED_KEYRING_ARMORED } from './published-files.ts';

export { PUBLISHED_KEYRING, PUBLISHED_KEYRING_ARMORED, UPSTREAM_COPY_PREFIX } from './published-files.ts';

/** One products file to publish: where it goes (without `.json`/`.sjson`) and what it holds. */
export interface PublishedProducts {
  /** `streams/v1/com.ubuntu.maas:stable:v3:download`: the `.json` and `.sjson` are published beside each other. */
  base: string;
  doc: ProductsDocument;
  /** The source index's entry for it: its fields other than path, updated and products are kept. */
  indexEntry?: IndexEntry;
}

export interface PublishedStream {
  index: { json: StreamIndex; signed: StreamIndex };
  products: PublishedProducts[];
  updated: string;
}

/** `(product, version, item)` of one content id: kept or not. */
export type ItemSelector = (product: string, version: string, item: string) => boolean;

/**
 * `doc` with only the items `keep` accepts; versions and products left with
 * no item go; every field of every level is kept as the source wrote it.
 * Undefined when nothing is left.
 */
export function curateProducts(doc: ProductsDocument, keep: ItemSelector): ProductsDocument | undefined {
  const products: ProductsDocument['products'] = {};
  for (const [productName, product] of Object.entries(doc.products)) {
    const versions: Record<string, VersionEntry> = {};
    for (const [versionName, version] of Object.entries(product.versions)) {
      const items = Object.fromEntries(Object.entries(version.items).filter(([itemName]) => keep(productName, versionName, itemName)));
      if (Object.keys(items).length > 0) versions[versionName] = { ...version, items };
    }
    if (Object.keys(versions).length > 0) products[productName] = { ...product, versions };
  }
  return Object.keys(products).length === 0 ? undefined : { ...doc, products };
}

/** The base path of a products file, whatever its source called it. */
export function productsBase(path: string): string {
  return path.replace(/\.s?json$/, '');
}

/**
 * An `updated` strictly after `previous` (what the mirror published last),
 * normally `now`: clients refuse metadata whose date goes backwards, and the
 * mirror's clock may lag the one that published before.
 */
export function nextUpdated(now: Date, previous: string | undefined): string {
  const seconds = Math.floor(now.getTime() / 1000) * 1000;
  const after = previous === undefined ? -Infinity : parseUpdated('published index', '$.updated', previous) + 1000;
  return formatUpdated(new Date(Math.max(seconds, after)));
}

/** The index and products documents of a stream, all dated `updated`. */
export function buildPublishedStream(input: {
  products: readonly PublishedProducts[];
  updated: string;
  /** Top-level fields of the source index other than format, updated and index are kept. */
  sourceIndex?: StreamIndex;
}): PublishedStream {
  const { updated } = input;
  const seen = new Map<string, string>();
  const products = input.products.map(({ base, doc, indexEntry }) => {
    const clash = seen.get(doc.content_id);
    if (clash !== undefined) {
      throw new MetadataError(base, '$.content_id', `${JSON.stringify(doc.content_id)} is also the content id of ${clash}`);
    }
    seen.set(doc.content_id, base);
    const dated: ProductsDocument = { ...doc, format: 'products:1.0', updated };
    return { base, doc: dated, ...(indexEntry && { indexEntry }) };
  });
  const entries = (extension: '.json' | '.sjson') =>
    Object.fromEntries(
      [...products]
        .sort((a, b) => (a.doc.content_id < b.doc.content_id ? -1 : 1))
        .map(({ base, doc, indexEntry }) => {
          const entry: IndexEntry = {
            ...indexEntry,
            ...(typeof doc['datatype'] === 'string' && { datatype: doc['datatype'] }),
            format: 'products:1.0',
            path: `${base}${extension}`,
            products: Object.keys(doc.products).sort(),
            updated,
          };
          return [doc.content_id, entry];
        }),
    );
  const { index: _index, updated: _updated, format: _format, ...sourceFields } = input.sourceIndex ?? { index: {} };
  const index = (extension: '.json' | '.sjson'): StreamIndex => ({ ...sourceFields, format: 'index:1.0', updated, index: entries(extension) });
  return { index: { json: index('.json'), signed: index('.sjson') }, products, updated };
}

/**
 * Every file of the stream, by path: `.json` and the clearsigned `.sjson`
 * of the same text, so the unsigned twin says exactly what was signed.
 */
export async function serializePublishedStream(
  stream: PublishedStream,
  clearsign: (text: string) => Promise<string>,
): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const encoder = new TextEncoder();
  const add = async (base: string, json: unknown, signed: unknown) => {
    const jsonText = stableJson(json);
    const signedText = signed === json ? jsonText : stableJson(signed);
    files.set(`${base}.json`, encoder.encode(jsonText));
    files.set(`${base}.sjson`, encoder.encode(await clearsign(signedText)));
  };
  await add(INDEX_BASE, stream.index.json, stream.index.signed);
  for (const { base, doc } of stream.products) await add(base, doc, doc);
  return files;
}

/** The keyring files of `keys`: binary packets one key after another, and the same armored. */
export function keyringFiles(keys: readonly PublicKey[]): Map<string, Uint8Array> {
  const parts = keys.map((key) => key.write());
  const binary = new Uint8Array(parts.reduce((total, part) => total + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    binary.set(part, offset);
    offset += part.byteLength;
  }
  return new Map([
    [PUBLISHED_KEYRING, binary],
    [PUBLISHED_KEYRING_ARMORED, new TextEncoder().encode(armor(enums.armor.publicKey, binary))],
  ]);
}

/** JSON with sorted member names, one space of indent and a final newline, as python-simplestreams writes it. */
export function stableJson(value: unknown): string {
  const sorted = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v as Record<string, unknown>)
            .sort()
            .map((key) => [key, sorted((v as Record<string, unknown>)[key])]),
        )
      : Array.isArray(v)
        ? v.map(sorted)
        : v;
  return `${JSON.stringify(sorted(value), null, 1)}\n`;
}
