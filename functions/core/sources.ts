/**
 * Several sources, one stream (re-signed mode): each source's verified
 * products, already cut down to what its own filters and max select, are
 * merged into the documents the mirror publishes. A product id two sources
 * both list is taken from the source of higher priority (the earlier one in
 * the configuration on a tie); so is a path two sources list with different
 * bytes, and an image MAAS would know by the same os/release arch/subarch
 * under two product ids, the lower source's whole product giving way. Every
 * such decision is a conflict the operator sees in `status`.
 *
 * Pure: no I/O; the engine reads and verifies each source first.
 */
import { MetadataError } from './errors.ts';
import { sameContent } from './planner.ts';
import { productsBase, type PublishedProducts } from './publish-metadata.ts';
import { INDEX_BASE, flattenItems, type FlatItem, type IndexEntry, type ProductEntry, type ProductsDocument, type StreamIndex } from './simplestreams.ts';

/** One source's products as its own selection left them: what `mergeSources` takes. */
export interface SelectedProducts {
  source: string;
  priority: number;
  products: readonly { file: string; doc: ProductsDocument }[];
  /** Its index, for the index entries' and the published index's own fields. */
  index?: StreamIndex;
}

/** A product (or one of its files) that two sources both offered; only `kept` is published. */
export interface SourceConflict {
  product: string;
  kept: { source: string; product: string };
  dropped: { source: string; product: string };
  /**
   * `product`: the same product id; `path`: a file both list, with different
   * bytes (`path` names it); `name`: another product id for the image MAAS
   * would know by the same os, release, arch and subarch (`image` names it).
   */
  reason: 'product' | 'path' | 'name';
  image?: string;
  path?: string;
}

export interface MergedSources {
  /** One document per content id, ready for `buildPublishedStream`. */
  products: PublishedProducts[];
  /** Which source each published file is fetched from. */
  sourceOfPath: Map<string, string>;
  /** By product id. */
  conflicts: SourceConflict[];
  /** The index whose top-level fields the published one keeps: the highest-priority source's. */
  index?: StreamIndex;
}

/** Fields of a products document that are its structure, never inherited by products. */
const STRUCTURAL_FIELDS = new Set(['format', 'content_id', 'updated', 'products', '_aliases']);

interface Claim {
  source: string;
  item: FlatItem;
}

/** Merges the sources, highest priority first (listed order on a tie). */
export function mergeSources(sources: readonly SelectedProducts[]): MergedSources {
  const ranked = sources.map((source, order) => ({ source, order })).sort((a, b) => b.source.priority - a.source.priority || a.order - b.order);
  const productOwner = new Map<string, string>();
  const pathClaims = new Map<string, Claim>();
  const imageOwner = new Map<string, { source: string; product: string }>();
  const sourceOfPath = new Map<string, string>();
  const conflicts: SourceConflict[] = [];
  const byContentId = new Map<string, { base: string; indexEntry?: IndexEntry; parts: { doc: ProductsDocument; products: Record<string, ProductEntry> }[] }>();
  // The index is published at its own base: no products file may take it.
  const basesTaken = new Map<string, string>([[INDEX_BASE, '']]);

  for (const { source } of ranked) {
    for (const { file, doc } of source.products) {
      const accepted: Record<string, ProductEntry> = {};
      for (const [productName, product] of Object.entries(doc.products)) {
        const owner = productOwner.get(productName);
        if (owner !== undefined) {
          conflicts.push({ product: productName, kept: { source: owner, product: productName }, dropped: { source: source.source, product: productName }, reason: 'product' });
          continue;
        }
        const items = flattenItems(file, { ...doc, products: { [productName]: product } });
        const clash = items.map((item) => ({ item, claim: pathClaims.get(item.path) })).find(({ item, claim }) => claim && !sameContent(claim.item, item));
        if (clash?.claim) {
          conflicts.push({
            product: productName,
            kept: { source: clash.claim.source, product: clash.claim.item.productName },
            dropped: { source: source.source, product: productName },
            reason: 'path',
            path: clash.item.path,
          });
          continue;
        }
        const image = imageName(items[0]?.fields);
        const namesake = image === undefined ? undefined : imageOwner.get(image);
        if (namesake && namesake.source !== source.source) {
          conflicts.push({ product: productName, kept: namesake, dropped: { source: source.source, product: productName }, reason: 'name', image });
          continue;
        }
        if (image !== undefined && !namesake) imageOwner.set(image, { source: source.source, product: productName });
        productOwner.set(productName, source.source);
        for (const item of items) {
          if (!pathClaims.has(item.path)) {
            pathClaims.set(item.path, { source: source.source, item });
            sourceOfPath.set(item.path, source.source);
          }
        }
        accepted[productName] = product;
      }
      if (Object.keys(accepted).length === 0) continue;
      let merged = byContentId.get(doc.content_id);
      if (!merged) {
        const indexEntry = source.index?.index[doc.content_id];
        merged = { base: uniqueBase(productsBase(file), doc.content_id, basesTaken), ...(indexEntry && { indexEntry }), parts: [] };
        byContentId.set(doc.content_id, merged);
      }
      const [firstPart] = merged.parts;
      if (firstPart && !sameJson(firstPart.doc._aliases, doc._aliases)) {
        throw new MetadataError(file, '$._aliases', `differs from the _aliases of ${doc.content_id} in another source: the two cannot be published as one document`);
      }
      merged.parts.push({ doc, products: accepted });
    }
  }

  const products = [...byContentId.values()].map(({ base, indexEntry, parts }) => ({
    base,
    doc: joinDocuments(parts),
    ...(indexEntry && { indexEntry }),
  }));
  const index = ranked.find(({ source }) => source.index)?.source.index;
  conflicts.sort((a, b) => (a.product < b.product ? -1 : a.product > b.product ? 1 : 0));
  return { products, sourceOfPath, conflicts, ...(index && { index }) };
}

/**
 * How MAAS names the boot resource a product becomes: `os/release arch/subarch`.
 * undefined for products without all four (bootloaders), which MAAS names otherwise.
 */
function imageName(fields: Record<string, unknown> | undefined): string | undefined {
  const [os, release, arch, subarch] = ['os', 'release', 'arch', 'subarch'].map((key) => fields?.[key]);
  if (![os, release, arch, subarch].every((value) => typeof value === 'string' && value !== '')) return undefined;
  return `${os as string}/${release as string} ${arch as string}/${subarch as string}`;
}

/**
 * One products document from parts of several with the same content id.
 * The top level keeps only the fields every part agrees on; a field only
 * some parts had is pushed down into their products (where a product does
 * not set it itself), so every item inherits exactly what it did before.
 */
function joinDocuments(parts: readonly { doc: ProductsDocument; products: Record<string, ProductEntry> }[]): ProductsDocument {
  const [first] = parts;
  if (!first) throw new Error('joinDocuments needs a part');
  if (parts.length === 1) return { ...first.doc, products: first.products };
  const topFields = (doc: ProductsDocument) => Object.entries(doc).filter(([key]) => !STRUCTURAL_FIELDS.has(key));
  const agreed = Object.fromEntries(
    topFields(first.doc).filter(([key, value]) => parts.every(({ doc }) => key in doc && sameJson(doc[key], value))),
  );
  const products: Record<string, ProductEntry> = {};
  for (const { doc, products: accepted } of parts) {
    const pushed = Object.fromEntries(topFields(doc).filter(([key]) => !(key in agreed)));
    for (const [name, product] of Object.entries(accepted)) products[name] = { ...pushed, ...product };
  }
  const aliases = first.doc._aliases;
  return { ...agreed, format: 'products:1.0', content_id: first.doc.content_id, ...(aliases && { _aliases: aliases }), products } as ProductsDocument;
}

/** Where the mirror serves metadata from: a products file published anywhere else would be a 404 to MAAS. */
const PUBLISHED_METADATA_DIR = 'streams/v1/';

/**
 * The published base of a products file: its source's, unless that lies
 * outside `streams/v1/`, is the index's, or another content id took it
 * already; then one named after the content id (characters a key may not
 * hold replaced), made unique.
 */
function uniqueBase(base: string, contentId: string, taken: Map<string, string>): string {
  const free = (candidate: string) => (taken.get(candidate) ?? contentId) === contentId;
  let chosen = base.startsWith(PUBLISHED_METADATA_DIR) && free(base) ? base : `${PUBLISHED_METADATA_DIR}${contentId.replace(/[^A-Za-z0-9._:+-]/g, '_').replace(/^\.+$/, '_')}`;
  while (!free(chosen)) chosen += '_';
  taken.set(chosen, contentId);
  return chosen;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
