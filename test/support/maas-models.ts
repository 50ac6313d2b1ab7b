/**
 * The rules MAAS 3.8's pydantic models (canonical/maas
 * src/maasservicelayer/simplestreams/models.py) put on a stream, as checks
 * over parsed documents: what a published stream must satisfy for MAAS to
 * import it. No inheritance: each model reads the fields of its own level
 * only. A products file must fit one model (bootloader, multi-file or
 * single-file image: SimpleStreamsProductListFactory tries each) as a whole.
 * Each function returns the problems it found, empty when MAAS would accept.
 */

type Json = Record<string, unknown>;

/** `datetime.strptime(v, "%a, %d %b %Y %H:%M:%S %z")`: no GMT/UTC, a numeric zone. */
const STRPTIME_UPDATED = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/;
const DATATYPES = new Set(['image-ids', 'image-downloads']);
const SUPPORT_EOL = /^\d{4}-\d{2}-\d{2}$/;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

class Problems {
  readonly list: string[] = [];
  private readonly file: string;
  constructor(file: string) {
    this.file = file;
  }
  add(at: string, problem: string): void {
    this.list.push(`${this.file}: ${at}: ${problem}`);
  }
  string(level: Json, at: string, field: string, optional = false): void {
    const value = level[field];
    if (value === undefined && optional) return;
    if (typeof value !== 'string') this.add(`${at}.${field}`, `str required, found ${JSON.stringify(value)}`);
  }
  updated(level: Json, at: string): void {
    const value = level.updated;
    if (typeof value !== 'string' || !STRPTIME_UPDATED.test(value)) this.add(`${at}.updated`, `not "%a, %d %b %Y %H:%M:%S %z": ${JSON.stringify(value)}`);
  }
}

/** SimpleStreamsIndexList + IndexContent. */
export function maasIndexProblems(file: string, index: Json): string[] {
  const problems = new Problems(file);
  problems.updated(index, '$');
  if (!isObject(index.index)) {
    problems.add('$.index', 'object required');
    return problems.list;
  }
  for (const [name, entry] of Object.entries(index.index)) {
    const at = `$.index[${JSON.stringify(name)}]`;
    if (!isObject(entry)) {
      problems.add(at, 'object required');
      continue;
    }
    problems.string(entry, at, 'path');
    problems.updated(entry, at);
    problems.string(entry, at, 'format', true);
    if (entry.datatype !== undefined && !DATATYPES.has(String(entry.datatype))) problems.add(`${at}.datatype`, `not a Datatype: ${JSON.stringify(entry.datatype)}`);
    if (!Array.isArray(entry.products) || entry.products.some((product) => typeof product !== 'string')) {
      problems.add(`${at}.products`, 'list[str] required');
    }
  }
  return problems.list;
}

type ProductModel = 'bootloader' | 'multi-file' | 'single-file';
const MODELS: ProductModel[] = ['bootloader', 'multi-file', 'single-file'];

/** The problems of a products document under the one model it fits; under each model when it fits none. */
export function maasProductsProblems(file: string, doc: Json): string[] {
  const byModel = MODELS.map((model) => productListProblems(file, doc, model));
  return byModel.some((problems) => problems.length === 0) ? [] : byModel.flat();
}

/** Which model a products document fits, for assertions on which shapes a stream carries. */
export function maasProductModel(file: string, doc: Json): ProductModel | undefined {
  return MODELS.find((model) => productListProblems(file, doc, model).length === 0);
}

function productListProblems(file: string, doc: Json, model: ProductModel): string[] {
  const problems = new Problems(`${file} as ${model}`);
  problems.string(doc, '$', 'content_id');
  if (!DATATYPES.has(String(doc.datatype))) problems.add('$.datatype', `a Datatype required, found ${JSON.stringify(doc.datatype)}`);
  problems.updated(doc, '$');
  // `if v.get("products")`: an empty dict is never turned into a list, and fails list validation.
  if (!isObject(doc.products) || Object.keys(doc.products).length === 0) {
    problems.add('$.products', 'a non-empty object required');
    return problems.list;
  }
  for (const [name, product] of Object.entries(doc.products)) {
    const at = `$.products[${JSON.stringify(name)}]`;
    if (!isObject(product)) {
      problems.add(at, 'object required');
      continue;
    }
    for (const field of ['arch', 'label', 'os']) problems.string(product, at, field);
    if (model === 'bootloader') {
      problems.string(product, at, 'arches');
      problems.string(product, at, 'bootloader-type');
    } else {
      for (const field of ['release', 'release_title', 'subarch', 'subarches', 'version']) problems.string(product, at, field);
      eol(problems, product, at, 'support_eol');
    }
    if (!isObject(product.versions) || Object.keys(product.versions).length === 0) {
      problems.add(`${at}.versions`, 'a non-empty object required');
      continue;
    }
    for (const [versionName, version] of Object.entries(product.versions)) {
      const versionAt = `${at}.versions[${JSON.stringify(versionName)}]`;
      const items = isObject(version) && isObject(version.items) ? version.items : undefined;
      if (!items) {
        problems.add(`${versionAt}.items`, 'object required');
        continue;
      }
      versionProblems(problems, version as Json, items, versionAt, model);
    }
  }
  return problems.list;
}

function versionProblems(problems: Problems, version: Json, items: Json, at: string, model: ProductModel): void {
  const file = (name: string, required: boolean, extra: readonly string[] = []) => {
    const item = items[name];
    if (item === undefined) {
      if (required) problems.add(`${at}.items`, `${name} required`);
      return;
    }
    const itemAt = `${at}.items[${JSON.stringify(name)}]`;
    if (!isObject(item)) return problems.add(itemAt, 'object required');
    for (const field of ['ftype', 'path', 'sha256', ...extra]) problems.string(item, itemAt, field);
    if (typeof item.size !== 'number' || !Number.isInteger(item.size)) problems.add(`${itemAt}.size`, 'int required');
    if (item.kpackage !== undefined && item.kpackage !== null) problems.string(item, itemAt, 'kpackage');
  };
  if (model === 'bootloader') {
    const names = ['grub2-signed', 'shim-signed', 'grub2', 'syslinux'];
    for (const name of names) file(name, false, ['src_package', 'src_release', 'src_version']);
    if (!names.some((name) => items[name] !== undefined)) problems.add(`${at}.items`, `one of ${names.join(', ')} required`);
  } else if (model === 'multi-file') {
    for (const name of ['boot-initrd', 'boot-kernel', 'manifest']) file(name, true);
    file('squashfs', false);
    file('root-image.gz', false);
    if (items.squashfs === undefined && items['root-image.gz'] === undefined) problems.add(`${at}.items`, 'squashfs or root-image.gz required');
    eol(problems, version, at, 'support_eol');
    eol(problems, version, at, 'support_esm_eol');
  } else {
    file('manifest', true);
    file('root-tgz', true);
  }
}

function eol(problems: Problems, level: Json, at: string, field: string): void {
  const value = level[field];
  if (value !== undefined && value !== null && (typeof value !== 'string' || !SUPPORT_EOL.test(value))) {
    problems.add(`${at}.${field}`, `a YYYY-MM-DD date required, found ${JSON.stringify(value)}`);
  }
}
