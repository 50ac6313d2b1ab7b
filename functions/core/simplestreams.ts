/**
 * simplestreams `index:1.0` / `products:1.0` documents: parse, validate, flatten.
 * Unknown fields are kept untouched (we publish upstream files verbatim).
 */
import { MetadataError } from './errors.ts';

export interface IndexEntry {
  path: string;
  format?: string;
  datatype?: string;
  products?: string[];
  updated?: string;
  [field: string]: unknown;
}

export interface StreamIndex {
  format: 'index:1.0';
  updated?: string;
  index: Record<string, IndexEntry>;
  [field: string]: unknown;
}

export interface ItemEntry {
  path: string;
  size?: number;
  sha256?: string;
  sha512?: string;
  md5?: string;
  ftype?: string;
  [field: string]: unknown;
}

export interface VersionEntry {
  items: Record<string, ItemEntry>;
  [field: string]: unknown;
}

export interface ProductEntry {
  versions: Record<string, VersionEntry>;
  [field: string]: unknown;
}

export interface ProductsDocument {
  format: 'products:1.0';
  content_id: string;
  updated?: string;
  products: Record<string, ProductEntry>;
  _aliases?: Record<string, Record<string, Record<string, unknown>>>;
  [field: string]: unknown;
}

/** One item with every field it inherits (top → product → version → item). */
export interface FlatItem {
  contentId: string;
  productName: string;
  versionName: string;
  itemName: string;
  path: string;
  size: number;
  sha256?: string;
  sha512?: string;
  md5?: string;
  ftype?: string;
  /** All fields after inheritance and `_aliases` expansion, plus content_id, product_name, version_name, item_name. */
  fields: Record<string, unknown>;
}

export function parseIndex(file: string, text: string): StreamIndex {
  void MetadataError;
  throw new Error(`parseIndex(${file}, ${text.length}) not implemented`);
}

export function parseProducts(file: string, text: string): ProductsDocument {
  throw new Error(`parseProducts(${file}, ${text.length}) not implemented`);
}

export function flattenItems(file: string, doc: ProductsDocument): FlatItem[] {
  throw new Error(`flattenItems(${file}, ${doc.content_id}) not implemented`);
}

/** Parses simplestreams' `updated` (RFC 2822, e.g. `Thu, 24 Jul 2025 08:01:49 +0000`) to epoch ms. */
export function parseUpdated(file: string, jsonPath: string, value: string): number {
  throw new Error(`parseUpdated(${file}, ${jsonPath}, ${value}) not implemented`);
}

/** `%a, %d %b %Y %H:%M:%S +0000`, the only form MAAS 3.8 accepts (never `GMT`). */
export function formatUpdated(date: Date): string {
  throw new Error(`formatUpdated(${date.toISOString()}) not implemented`);
}
