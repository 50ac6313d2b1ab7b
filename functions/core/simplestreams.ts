/**
 * simplestreams `index:1.0` / `products:1.0` documents: parse, validate, flatten.
 * Unknown fields are kept untouched (we publish upstream files verbatim).
 */
import { MetadataError } from './errors.ts';
import { assertSafePath } from './paths.ts';

/** Where every stream keeps its index, without the extension: `.sjson` clearsigned, `.json` plain. */
export const INDEX_BASE = 'streams/v1/index';

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

// ---------------------------------------------------------------- JSON paths

/** `$.products["p"].versions["v"]…`: member names always bracketed and JSON-quoted, since product names hold `:` and `.`. */
export function jsonPath(...steps: (string | [collection: string, name: string])[]): string {
  return steps.reduce<string>(
    (path, step) => (typeof step === 'string' ? `${path}.${step}` : `${path}.${step[0]}[${JSON.stringify(step[1])}]`),
    '$',
  );
}

/** The JSON path of an item (or of one of its fields) in a products document. */
export function itemJsonPath(productName: string, versionName: string, itemName: string, field?: string): string {
  const path = jsonPath(['products', productName], ['versions', versionName], ['items', itemName]);
  return field === undefined ? path : `${path}.${field}`;
}

// ---------------------------------------------------------------- parsing

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function parseJsonObject(file: string, text: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new MetadataError(file, '$', `not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (!isObject(parsed)) throw new MetadataError(file, '$', `expected an object, found ${describeType(parsed)}`);
  return parsed;
}

function requireObject(file: string, path: string, value: unknown): JsonObject {
  if (!isObject(value)) throw new MetadataError(file, path, `expected an object, found ${describeType(value)}`);
  return value;
}

function optionalString(file: string, path: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'string') {
    throw new MetadataError(file, path, `expected a string, found ${describeType(value)}`);
  }
}

function requireFormat(file: string, document: JsonObject, expected: string): void {
  if (document.format !== expected) {
    throw new MetadataError(file, '$.format', `expected ${JSON.stringify(expected)}, found ${JSON.stringify(document.format)}`);
  }
}

function checkUpdated(file: string, path: string, value: unknown): void {
  optionalString(file, path, value);
  if (typeof value === 'string') parseUpdated(file, path, value);
}

export function parseIndex(file: string, text: string): StreamIndex {
  const document = parseJsonObject(file, text);
  requireFormat(file, document, 'index:1.0');
  checkUpdated(file, '$.updated', document.updated);
  const index = requireObject(file, '$.index', document.index);
  for (const [contentId, entryValue] of Object.entries(index)) {
    const at = (field?: string) => jsonPath(['index', contentId]) + (field ? `.${field}` : '');
    const entry = requireObject(file, at(), entryValue);
    if (typeof entry.path !== 'string') {
      throw new MetadataError(file, at('path'), `expected a string, found ${describeType(entry.path)}`);
    }
    assertSafePath(file, at('path'), entry.path);
    optionalString(file, at('format'), entry.format);
    optionalString(file, at('datatype'), entry.datatype);
    checkUpdated(file, at('updated'), entry.updated);
    if (entry.products !== undefined) {
      if (!Array.isArray(entry.products)) {
        throw new MetadataError(file, at('products'), `expected an array, found ${describeType(entry.products)}`);
      }
      entry.products.forEach((name, position) => optionalString(file, `${at('products')}[${position}]`, name));
    }
  }
  return document as StreamIndex;
}

export function parseProducts(file: string, text: string): ProductsDocument {
  const document = parseJsonObject(file, text);
  requireFormat(file, document, 'products:1.0');
  if (typeof document.content_id !== 'string' || document.content_id === '') {
    throw new MetadataError(file, '$.content_id', `expected a non-empty string, found ${JSON.stringify(document.content_id)}`);
  }
  checkUpdated(file, '$.updated', document.updated);
  if (document._aliases !== undefined) {
    const aliases = requireObject(file, '$._aliases', document._aliases);
    for (const [field, byName] of Object.entries(aliases)) {
      for (const [name, expansion] of Object.entries(requireObject(file, jsonPath(['_aliases', field]), byName))) {
        requireObject(file, `${jsonPath(['_aliases', field])}[${JSON.stringify(name)}]`, expansion);
      }
    }
  }
  const products = requireObject(file, '$.products', document.products);
  for (const [productName, product] of Object.entries(products)) {
    const productPath = jsonPath(['products', productName]);
    const versions = requireObject(file, `${productPath}.versions`, requireObject(file, productPath, product).versions);
    for (const [versionName, version] of Object.entries(versions)) {
      const versionPath = jsonPath(['products', productName], ['versions', versionName]);
      const items = requireObject(file, `${versionPath}.items`, requireObject(file, versionPath, version).items);
      for (const [itemName, item] of Object.entries(items)) {
        requireObject(file, itemJsonPath(productName, versionName, itemName), item);
      }
    }
  }
  return document as ProductsDocument;
}

// ---------------------------------------------------------------- flattening

type Scalar = string | number | boolean;

function isScalar(value: unknown): value is Scalar {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

/**
 * The scalar fields of one level, with `_aliases` expanded as python-simplestreams
 * does: a field whose value names an entry of `_aliases[field]` pulls that
 * entry's fields into the level (overriding the level's own).
 */
function levelFields(
  file: string,
  path: string,
  level: JsonObject,
  aliases: ProductsDocument['_aliases'],
): Map<string, Scalar> {
  const fields = new Map<string, Scalar>();
  const expansions: JsonObject[] = [];
  for (const [field, value] of Object.entries(level)) {
    if (field === '_aliases' || !isScalar(value)) continue;
    fields.set(field, value);
    if (aliases && Object.hasOwn(aliases, field)) {
      const byName = aliases[field] ?? {};
      const name = String(value);
      if (!Object.hasOwn(byName, name)) {
        throw new MetadataError(file, `${path}.${field}`, `${JSON.stringify(name)} names no entry of $._aliases[${JSON.stringify(field)}]`);
      }
      expansions.push(byName[name] ?? {});
    }
  }
  for (const expansion of expansions) {
    for (const [field, value] of Object.entries(expansion)) {
      if (isScalar(value)) fields.set(field, value);
    }
  }
  return fields;
}

const DIGEST_LENGTHS = { sha512: 128, sha256: 64, md5: 32 } as const;
const HEX = /^[0-9a-fA-F]+$/;

/**
 * Every item of every version of every product, each carrying the fields it
 * inherits (lower levels win). MetadataError / UnsafePathError naming the item
 * when its path, size or digests are unusable.
 */
export function flattenItems(file: string, doc: ProductsDocument): FlatItem[] {
  const aliases = doc._aliases;
  const top = levelFields(file, '$', doc, aliases);
  const flat: FlatItem[] = [];
  for (const [productName, product] of Object.entries(doc.products)) {
    const productFields = new Map([
      ...top,
      ...levelFields(file, jsonPath(['products', productName]), product, aliases),
      ['product_name', productName],
    ]);
    for (const [versionName, version] of Object.entries(product.versions)) {
      const versionFields = new Map([
        ...productFields,
        ...levelFields(file, jsonPath(['products', productName], ['versions', versionName]), version, aliases),
        ['version_name', versionName],
      ]);
      for (const [itemName, item] of Object.entries(version.items)) {
        const itemPath = itemJsonPath(productName, versionName, itemName);
        const fields = new Map([
          ...versionFields,
          ...levelFields(file, itemPath, item, aliases),
          ['item_name', itemName],
        ]);
        flat.push(toFlatItem(file, itemPath, { contentId: doc.content_id, productName, versionName, itemName }, fields));
      }
    }
  }
  return flat;
}

function toFlatItem(
  file: string,
  itemPath: string,
  names: Pick<FlatItem, 'contentId' | 'productName' | 'versionName' | 'itemName'>,
  fields: Map<string, Scalar>,
): FlatItem {
  const path = fields.get('path');
  if (typeof path !== 'string') {
    throw new MetadataError(file, `${itemPath}.path`, `expected a string, found ${describeType(path)}`);
  }
  assertSafePath(file, `${itemPath}.path`, path);

  const size = fields.get('size');
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new MetadataError(file, `${itemPath}.size`, `expected a whole number of bytes ≥ 0, found ${JSON.stringify(size)}`);
  }

  const digests: Partial<Record<keyof typeof DIGEST_LENGTHS, string>> = {};
  for (const [algorithm, length] of Object.entries(DIGEST_LENGTHS) as [keyof typeof DIGEST_LENGTHS, number][]) {
    const hex = fields.get(algorithm);
    if (hex === undefined) continue;
    if (typeof hex !== 'string' || hex.length !== length || !HEX.test(hex)) {
      throw new MetadataError(file, `${itemPath}.${algorithm}`, `expected ${length} hex digits, found ${JSON.stringify(hex)}`);
    }
    digests[algorithm] = hex;
  }
  if (Object.keys(digests).length === 0) {
    throw new MetadataError(file, itemPath, 'declares no sha512, sha256 or md5 digest');
  }

  const ftype = fields.get('ftype');
  return {
    ...names,
    path,
    size,
    ...digests,
    ...(typeof ftype === 'string' ? { ftype } : {}),
    // fromEntries defines own properties, so a field named `__proto__` stays data.
    fields: Object.fromEntries(fields),
  };
}

// ---------------------------------------------------------------- dates

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

// RFC 2822 date-time, with the obsolete zone names too; the day name, when
// present, is not cross-checked (python's email.utils does not either).
const RFC_2822 =
  /^\s*(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?(\d{1,2})\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{4})\s+(\d{2}):(\d{2})(?::(\d{2}))?\s+([+-]\d{4}|UT|UTC|GMT|Z)\s*$/i;

/** Parses simplestreams' `updated` (RFC 2822, e.g. `Thu, 24 Jul 2025 08:01:49 +0000`) to epoch ms. */
export function parseUpdated(file: string, jsonPath: string, value: string): number {
  const unparseable = () =>
    new MetadataError(file, jsonPath, `${JSON.stringify(value)} is not an RFC 2822 date like "Thu, 24 Jul 2025 08:01:49 +0000"`);
  const match = RFC_2822.exec(value);
  if (!match) throw unparseable();
  const [, day, monthName = '', year, hour, minute, second = '0', zone = ''] = match;
  const month = MONTH_NAMES.findIndex((name) => name.toLowerCase() === monthName.toLowerCase());
  const fields = [Number(year), month, Number(day), Number(hour), Number(minute), Number(second)] as const;
  const wallClock = Date.UTC(...fields);
  const roundTrip = new Date(wallClock);
  const valid =
    roundTrip.getUTCDate() === fields[2] &&
    roundTrip.getUTCMonth() === month &&
    fields[3] < 24 &&
    fields[4] < 60 &&
    fields[5] < 60;
  if (!valid) throw unparseable();
  const offsetMinutes = /^[+-]/.test(zone)
    ? (zone.startsWith('-') ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5)))
    : 0;
  return wallClock - offsetMinutes * 60_000;
}

const twoDigits = (value: number) => String(value).padStart(2, '0');

/** `%a, %d %b %Y %H:%M:%S +0000`, the only form MAAS 3.8 accepts (never `GMT`). */
export function formatUpdated(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('formatUpdated: invalid date');
  return (
    `${DAY_NAMES[date.getUTCDay()]}, ${twoDigits(date.getUTCDate())} ${MONTH_NAMES[date.getUTCMonth()]} ` +
    `${date.getUTCFullYear()} ${twoDigits(date.getUTCHours())}:${twoDigits(date.getUTCMinutes())}:` +
    `${twoDigits(date.getUTCSeconds())} +0000`
  );
}
