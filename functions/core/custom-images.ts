/**
 * Custom images (`skystreams upload`): a site's own packer-built images,
 * published in a re-signed stream beside what is mirrored. Pure: validates
 * an upload request, names its product, version and item paths, and builds
 * the products documents MAAS's stream models accept.
 *
 * MAAS (canonical/maas `src/maasservicelayer/simplestreams/models.py`) reads
 * a products file as one of three models, the whole file at once: bootloader,
 * multi-file (items `boot-kernel`, `boot-initrd`, `manifest`, and `squashfs`
 * or `root-image.gz`) or single-file (items `root-tgz` and `manifest`). A
 * file it cannot read as one of them makes the whole source fail, so each
 * shape gets a products file of its own, and formats no model has (dd disk
 * images, other tarballs) are refused here, with the command that uploads
 * them to MAAS directly instead.
 */
import { ConfigError, MetadataError, UnsupportedImageError } from './errors.ts';
import { mirrorPathProblem } from './paths.ts';
import type { ProductEntry, ProductsDocument, VersionEntry } from './simplestreams.ts';

/** Object-store prefix of the upload records: one JSON object per uploaded version, written create-only. */
export const UPLOADS_PREFIX = 'uploads/';
/**
 * Where an operator copies an image's files in the bucket (`aws s3 cp`)
 * before `POST /api/v1/uploads` verifies and stores them; never served.
 */
export const INCOMING_PREFIX = 'incoming/';
/** Mirror paths of uploaded items start here, so they never meet an upstream's. */
export const CUSTOM_ITEMS_PREFIX = 'custom/';
/** Product ids of uploaded images start here. */
export const CUSTOM_PRODUCT_PREFIX = 'com.skystreams.custom:v3';
/** The products file of each shape: MAAS reads a file as one model, so the shapes never share one. */
export const CUSTOM_CONTENT_IDS = {
  'multi-file': 'com.skystreams.custom:v3:download',
  'single-file': 'com.skystreams.custom:v3:root-tgz-download',
} as const;
/** What an upload's label is unless it says: the label MAAS's stable stream carries. */
export const DEFAULT_UPLOAD_LABEL = 'stable';
/** Uploads of one product a day: versions are `YYYYMMDD`, then `YYYYMMDD.01` … `YYYYMMDD.99`. */
export const MAX_UPLOADS_PER_DAY = 100;

export type ImageShape = keyof typeof CUSTOM_CONTENT_IDS;

/** Item name → file name under the version's directory, per shape; `manifest` is the one item both have. */
const SHAPES: Record<ImageShape, { required: readonly string[]; oneOf?: readonly string[]; fileNames: Record<string, string> }> = {
  'multi-file': {
    required: ['boot-kernel', 'boot-initrd', 'manifest'],
    oneOf: ['squashfs', 'root-image.gz'],
    fileNames: {
      'boot-kernel': 'boot-kernel',
      'boot-initrd': 'boot-initrd',
      squashfs: 'squashfs',
      'root-image.gz': 'root-image.gz',
      manifest: 'squashfs.manifest',
    },
  },
  'single-file': {
    required: ['root-tgz', 'manifest'],
    fileNames: { 'root-tgz': 'root-tgz', manifest: 'root-tgz.manifest' },
  },
};

/** The names a manifest may be given on upload: MAAS streams call it each of these. */
const MANIFEST_ALIASES = new Set(['manifest', 'squashfs.manifest', 'root-tgz.manifest']);

/**
 * Formats MAAS takes only as a direct upload (`boot-resources create`), by
 * the name given on upload → the `filetype=` MAAS's API expects for them.
 */
const DIRECT_UPLOAD_FILETYPES: Record<string, string> = {
  ddgz: 'ddgz',
  ddxz: 'ddxz',
  ddbz2: 'ddbz2',
  ddraw: 'ddraw',
  ddtar: 'ddtar',
  ddtgz: 'ddtgz',
  ddtbz: 'ddtbz',
  ddtxz: 'ddtxz',
  'root-dd': 'ddtgz',
  'root-dd.gz': 'ddgz',
  'root-dd.xz': 'ddxz',
  'root-dd.bz2': 'ddbz2',
  'root-dd.raw': 'ddraw',
  'root-dd.tar': 'ddtar',
  'root-dd.tar.bz2': 'ddtbz',
  'root-dd.tar.xz': 'ddtxz',
  'root-tbz': 'tbz',
  'root-txz': 'txz',
  tbz: 'tbz',
  txz: 'txz',
  'self-extracting': 'self-extracting',
};

/** One file of an upload request: which item it is, and where its bytes come from (a local path, an incoming key). */
export interface UploadFile {
  ftype: string;
  source: string;
}

/** What an operator (or packer) says about an image. */
export interface UploadRequest {
  os: string;
  release: string;
  arch: string;
  subarch: string;
  title: string;
  /** @default DEFAULT_UPLOAD_LABEL */
  label?: string;
  /** Kernel flavour of a multi-file image (MAAS's `kflavor`). @default 'generic' for multi-file images */
  kflavor?: string;
  /** Comma-separated subarches the image's kernel supports (MAAS's `subarches`). @default subarch */
  subarches?: string;
  /** The release's version (MAAS's `version`, `22.04` for jammy). @default release */
  releaseVersion?: string;
  /** Last day of support, `YYYY-MM-DD` (MAAS's `support_eol`). */
  supportEol?: string;
  files: readonly UploadFile[];
}

/** A request that passed every check: its shape, product id and the items it will publish. */
export interface ValidatedUpload {
  shape: ImageShape;
  product: string;
  fields: ProductFields;
  /** In item-name order. */
  files: { item: string; ftype: string; fileName: string; source: string }[];
}

/** The product-level fields MAAS's image models read. */
export interface ProductFields {
  os: string;
  release: string;
  arch: string;
  subarch: string;
  subarches: string;
  label: string;
  release_title: string;
  version: string;
  kflavor?: string;
  support_eol?: string;
}

/** One stored uploaded version, as kept under `UPLOADS_PREFIX`: everything its products entry is made from. */
export interface UploadRecord {
  shape: ImageShape;
  product: string;
  version: string;
  fields: ProductFields;
  /** ISO 8601. */
  uploadedAt: string;
  items: { item: string; ftype: string; path: string; size: number; sha256: string }[];
}

/** Lower-case names MAAS uses for os, release, subarch, label and flavours; each is also a path segment. */
const NAME = /^[a-z0-9][a-z0-9._+-]{0,63}$/;
/** Debian architecture names (amd64, arm64, ppc64el, s390x, riscv64…). */
const ARCH = /^[a-z0-9]{1,16}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
// C0 controls and DEL have no place in a title MAAS shows.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Checks an upload request, naming the field at fault (`where` says which
 * request: a command line, an API body). ConfigError for a missing, extra
 * or invalid field; UnsupportedImageError, carrying the `maas … boot-resources
 * create` command, for a format MAAS cannot take from a stream.
 */
export function validateUpload(request: UploadRequest, where: string): ValidatedUpload {
  const field = (name: string, value: unknown, pattern: RegExp, hint: string): string => {
    if (typeof value !== 'string' || value === '') throw new ConfigError(`${where}: ${name} is required (${hint})`);
    if (!pattern.test(value)) throw new ConfigError(`${where}: ${name} ${JSON.stringify(value)} is not valid: ${hint}`);
    return value;
  };
  const lowerName = 'lower-case letters, digits, ".", "_", "+" and "-", starting with a letter or digit, at most 64';
  const os = field('os', request.os, NAME, lowerName);
  const release = field('release', request.release, NAME, lowerName);
  const arch = field('arch', request.arch, ARCH, 'a Debian architecture such as amd64 or arm64');
  const subarch = field('subarch', request.subarch, NAME, lowerName);
  const title = request.title;
  if (typeof title !== 'string' || title.trim() === '') throw new ConfigError(`${where}: title is required (what MAAS shows for the image)`);
  if (title.length > 200 || CONTROL_CHARACTER.test(title)) {
    throw new ConfigError(`${where}: title is not valid: at most 200 characters, no control characters`);
  }
  const label = request.label === undefined ? DEFAULT_UPLOAD_LABEL : field('label', request.label, NAME, lowerName);
  const subarches = request.subarches === undefined ? subarch : field('subarches', request.subarches, /^[a-z0-9._+-]+(,[a-z0-9._+-]+)*$/, 'comma-separated subarches');
  const releaseVersion = request.releaseVersion === undefined ? release : field('release version', request.releaseVersion, NAME, lowerName);
  const supportEol = request.supportEol === undefined ? undefined : field('support EOL', request.supportEol, DATE, 'a date YYYY-MM-DD');
  if (supportEol !== undefined && Number.isNaN(Date.parse(`${supportEol}T00:00:00Z`))) {
    throw new ConfigError(`${where}: support EOL ${JSON.stringify(supportEol)} is not a date`);
  }

  const files = request.files ?? [];
  if (files.length === 0) throw new ConfigError(`${where}: files are required: ${describeShapes()}`);
  const byItem = new Map<string, UploadFile>();
  for (const file of files) {
    if (typeof file.ftype !== 'string' || file.ftype === '') throw new ConfigError(`${where}: a file has no ftype (${describeShapes()})`);
    const direct = DIRECT_UPLOAD_FILETYPES[file.ftype];
    if (direct !== undefined) {
      throw new UnsupportedImageError(file.ftype, file.source, directUploadCommand({ os, release, arch, subarch, title, filetype: direct, file: file.source }));
    }
    const item = MANIFEST_ALIASES.has(file.ftype) ? 'manifest' : file.ftype;
    if (!Object.values(SHAPES).some((shape) => item in shape.fileNames)) {
      throw new ConfigError(`${where}: file ${file.source}: ftype ${JSON.stringify(file.ftype)} is not one MAAS takes from a stream (${describeShapes()})`);
    }
    const other = byItem.get(item);
    if (other) throw new ConfigError(`${where}: file ${file.source}: ${item} is also given as ${other.source}`);
    if (typeof file.source !== 'string' || file.source === '') throw new ConfigError(`${where}: the ${item} file is not named`);
    byItem.set(item, file);
  }
  const shape: ImageShape = byItem.has('root-tgz') ? 'single-file' : 'multi-file';
  const rules = SHAPES[shape];
  for (const item of byItem.keys()) {
    if (!(item in rules.fileNames)) {
      throw new ConfigError(`${where}: file ${byItem.get(item)!.source}: ${item} does not belong in a ${shape} image (${describeShapes()})`);
    }
  }
  for (const item of rules.required) {
    if (!byItem.has(item)) throw new ConfigError(`${where}: a ${shape} image needs a ${item} file (${describeShapes()})`);
  }
  if (rules.oneOf) {
    const roots = rules.oneOf.filter((item) => byItem.has(item));
    if (roots.length !== 1) {
      throw new ConfigError(`${where}: a ${shape} image needs exactly one of ${rules.oneOf.join(' or ')}, found ${roots.length === 0 ? 'none' : roots.join(' and ')}`);
    }
  }
  if (request.kflavor !== undefined && shape === 'single-file') {
    throw new ConfigError(`${where}: kflavor applies to images with their own kernel (boot-kernel), not to a root-tgz image`);
  }
  const kflavor =
    shape === 'multi-file' ? (request.kflavor === undefined ? 'generic' : field('kflavor', request.kflavor, NAME, lowerName)) : undefined;
  const fields: ProductFields = {
    os,
    release,
    arch,
    subarch,
    subarches,
    label,
    release_title: title,
    version: releaseVersion,
    ...(kflavor !== undefined && { kflavor }),
    ...(supportEol !== undefined && { support_eol: supportEol }),
  };
  return {
    shape,
    product: `${CUSTOM_PRODUCT_PREFIX}:${os}:${release}:${arch}:${subarch}`,
    fields,
    files: [...byItem.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([item, file]) => ({ item, ftype: item, fileName: rules.fileNames[item]!, source: file.source })),
  };
}

/** The command that uploads a file to MAAS directly, for the formats a stream cannot carry. */
export function directUploadCommand(image: { os: string; release: string; arch: string; subarch: string; title: string; filetype: string; file: string }): string {
  const quote = (value: string) => (/^[A-Za-z0-9@%+=:,./_-]+$/.test(value) ? value : `'${value.replaceAll("'", `'"'"'`)}'`);
  return [
    'maas $PROFILE boot-resources create',
    quote(`name=${image.os}/${image.release}`),
    quote(`title=${image.title}`),
    quote(`architecture=${image.arch}/${image.subarch}`),
    quote(`filetype=${image.filetype}`),
    quote(`content@=${image.file}`),
  ].join(' ');
}

function describeShapes(): string {
  return 'MAAS takes boot-kernel + boot-initrd + squashfs (or root-image.gz) + manifest, or root-tgz + manifest';
}

/**
 * The version name of an upload at `now`: the UTC day `YYYYMMDD`, or when
 * the product already has that version, `YYYYMMDD.NN` with the next free
 * number. Two digits, so versions of a day sort as strings in upload order
 * (MAAS takes the latest version by sorting the names).
 */
export function nextUploadVersion(now: Date, existing: Iterable<string>): string {
  const day = now.toISOString().slice(0, 10).replaceAll('-', '');
  const taken = new Set(existing);
  if (!taken.has(day)) return day;
  for (let n = 1; n < MAX_UPLOADS_PER_DAY; n++) {
    const version = `${day}.${String(n).padStart(2, '0')}`;
    if (!taken.has(version)) return version;
  }
  throw new ConfigError(`${MAX_UPLOADS_PER_DAY} versions of one image were already uploaded on ${day}: upload it again tomorrow`);
}

/** Where an uploaded item lives in the mirror: create-only and immutable, like every item. */
export function uploadItemPath(upload: Pick<ValidatedUpload, 'fields'>, version: string, fileName: string): string {
  const { os, release, arch, subarch } = upload.fields;
  return `${CUSTOM_ITEMS_PREFIX}${os}/${release}/${arch}/${subarch}/${version}/${fileName}`;
}

/** The object-store key of an uploaded version's record. */
export function uploadRecordKey(product: string, version: string): string {
  return `${UPLOADS_PREFIX}${product}/${version}.json`;
}

/**
 * A stored record read back, checked field by field (MetadataError naming
 * the key and field): records are ours, but a hand-edited or truncated one
 * must not publish something MAAS rejects.
 */
export function parseUploadRecord(key: string, text: string): UploadRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new MetadataError(key, '$', 'not valid JSON');
  }
  const object = (value: unknown, at: string): Record<string, unknown> => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MetadataError(key, at, 'expected an object');
    return value as Record<string, unknown>;
  };
  const string = (value: unknown, at: string): string => {
    if (typeof value !== 'string' || value === '') throw new MetadataError(key, at, 'expected a non-empty string');
    return value;
  };
  const record = object(parsed, '$');
  const shape = string(record.shape, '$.shape');
  if (!(shape in SHAPES)) throw new MetadataError(key, '$.shape', `expected multi-file or single-file, found ${JSON.stringify(shape)}`);
  const fields = object(record.fields, '$.fields');
  for (const name of ['os', 'release', 'arch', 'subarch', 'subarches', 'label', 'release_title', 'version']) string(fields[name], `$.fields.${name}`);
  if (!Array.isArray(record.items) || record.items.length === 0) throw new MetadataError(key, '$.items', 'expected a non-empty array');
  const items = record.items.map((value, i) => {
    const item = object(value, `$.items[${i}]`);
    const path = string(item.path, `$.items[${i}].path`);
    const problem = mirrorPathProblem(path);
    if (problem !== undefined || !path.startsWith(CUSTOM_ITEMS_PREFIX)) {
      throw new MetadataError(key, `$.items[${i}].path`, `${JSON.stringify(path)} is not a path under ${CUSTOM_ITEMS_PREFIX}${problem ? ` (${problem})` : ''}`);
    }
    if (typeof item.size !== 'number' || !Number.isSafeInteger(item.size) || item.size < 0) {
      throw new MetadataError(key, `$.items[${i}].size`, 'expected a whole number of bytes');
    }
    const sha256 = string(item.sha256, `$.items[${i}].sha256`);
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new MetadataError(key, `$.items[${i}].sha256`, 'expected 64 lower-case hex digits');
    return { item: string(item.item, `$.items[${i}].item`), ftype: string(item.ftype, `$.items[${i}].ftype`), path, size: item.size, sha256 };
  });
  return {
    shape: shape as ImageShape,
    product: string(record.product, '$.product'),
    version: string(record.version, '$.version'),
    fields: fields as unknown as ProductFields,
    uploadedAt: string(record.uploadedAt, '$.uploadedAt'),
    items,
  };
}

/** Where each shape's products file is published. */
export function uploadedProductsFile(shape: ImageShape): string {
  return `streams/v1/${CUSTOM_CONTENT_IDS[shape]}.json`;
}

/**
 * The products documents that publish `records`: one per shape present
 * (MAAS reads each file as a single model), every version of every product
 * listed. Empty when there are no records. `updated` is set when published.
 */
export function uploadedProducts(records: readonly UploadRecord[]): { file: string; doc: ProductsDocument }[] {
  const documents: { file: string; doc: ProductsDocument }[] = [];
  for (const shape of Object.keys(SHAPES) as ImageShape[]) {
    const ofShape = records.filter((record) => record.shape === shape);
    if (ofShape.length === 0) continue;
    const products: Record<string, ProductEntry> = {};
    for (const record of [...ofShape].sort((a, b) => (a.version < b.version ? -1 : 1))) {
      const items: VersionEntry['items'] = {};
      for (const item of record.items) items[item.item] = { ftype: item.ftype, path: item.path, sha256: item.sha256, size: item.size };
      // A later version's fields (a corrected title) describe the product.
      const product = products[record.product] ?? { versions: {} };
      products[record.product] = { ...product, ...record.fields, versions: { ...product.versions, [record.version]: { items } } };
    }
    documents.push({
      file: uploadedProductsFile(shape),
      doc: { format: 'products:1.0', content_id: CUSTOM_CONTENT_IDS[shape], datatype: 'image-downloads', products },
    });
  }
  return documents;
}
