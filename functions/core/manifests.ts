/**
 * Package manifests (`squashfs.manifest`, `root-tgz.manifest`: one
 * `package<TAB>version` line per installed package) into the catalog's
 * package index, at sync time. A manifest that cannot be parsed never fails
 * a sync: it is recorded with the reason, so queries can say why it is missing.
 */
import { LeaseLostError, ManifestError } from './errors.ts';
import { keys, type CatalogEntry, type Fence, type ManifestIndex, type ObjectStore, type PackageManifest, type Publications, type StoredObject } from './ports.ts';

/**
 * Bounds on one package manifest (`squashfs.manifest`: `package<TAB>version`
 * lines). Ubuntu's run to ~2,000 lines and ~100 KiB; anything far past these
 * is not a manifest, and is recorded as unparsed instead of indexed.
 */
export interface ManifestLimits {
  readonly bytes: number;
  readonly packages: number;
  /** Of a package name or a version. */
  readonly fieldLength: number;
}

export const manifestLimits: ManifestLimits = Object.freeze({
  bytes: 16 * 1024 * 1024,
  packages: 200_000,
  fieldLength: 512,
});

/** Any ftype naming a manifest: MAAS streams use `manifest`, `squashfs.manifest` and `root-tgz.manifest`. */
export function isManifest(ftype: string | undefined): boolean {
  return ftype !== undefined && ftype.endsWith('manifest');
}

/** `libc6`, `libc6:amd64`, `snap:lxd`: Debian package names, with an architecture or namespace after a colon. */
const PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9+._-]*(?::[A-Za-z0-9][A-Za-z0-9+._-]*)?$/;
/** Debian versions (`1:2.3-4ubuntu1~22.04`), snap revisions, and a snap's `revision (channel)`: printable ASCII words. */
const PACKAGE_VERSION = /^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/;

/** True when `name` could be a package a manifest lists; queries refuse anything else up front. */
export function isPackageName(name: string): boolean {
  return name.length <= manifestLimits.fieldLength && PACKAGE_NAME.test(name);
}

/**
 * The packages a manifest lists. Blank lines, CRLF endings and snaps listed
 * with their channel are accepted;
 * anything else that is not `package<TAB>version`, a package listed twice
 * with different versions, invalid UTF-8, or a manifest over the limits is a
 * ManifestError naming `path` and the line.
 */
export function parseManifest(path: string, bytes: Uint8Array, limits: ManifestLimits = manifestLimits): Map<string, string> {
  if (bytes.byteLength > limits.bytes) {
    throw new ManifestError(path, undefined, `${bytes.byteLength} bytes is more than a manifest may have (${limits.bytes})`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ManifestError(path, undefined, 'not UTF-8 text');
  }
  const packages = new Map<string, string>();
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.endsWith('\r') ? lines[index]!.slice(0, -1) : lines[index]!;
    if (line.trim() === '') continue;
    const number = index + 1;
    const fields = line.split('\t');
    const snapWithChannel = fields.length === 3 && fields[0]!.startsWith('snap:');
    if (fields.length !== 2 && !snapWithChannel) {
      throw new ManifestError(path, number, `expected "package<TAB>version", found ${fields.length} tab-separated field(s)`);
    }
    // Image manifests may list a snap as `snap:name<TAB>channel<TAB>revision`: its version is then `revision (channel)`.
    const [name, version] = (snapWithChannel ? [fields[0], `${fields[2]} (${fields[1]})`] : fields) as [string, string];
    if (name.length > limits.fieldLength || !PACKAGE_NAME.test(name)) {
      throw new ManifestError(path, number, `${JSON.stringify(name.slice(0, 80))} is not a package name`);
    }
    if (version.length > limits.fieldLength || !PACKAGE_VERSION.test(version)) {
      throw new ManifestError(path, number, `${JSON.stringify(version.slice(0, 80))} is not a version (of ${name})`);
    }
    const earlier = packages.get(name);
    if (earlier !== undefined && earlier !== version) {
      throw new ManifestError(path, number, `${name} is listed again with another version (${earlier}, then ${version})`);
    }
    packages.set(name, version);
    if (packages.size > limits.packages) {
      throw new ManifestError(path, number, `more than ${limits.packages} packages`);
    }
  }
  return packages;
}

/** The manifest text of `packages`, sorted by package: how backends store a record's packages compactly. */
export function formatManifest(packages: ReadonlyMap<string, string>): string {
  return [...packages]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, version]) => `${name}\t${version}\n`)
    .join('');
}

/** The record for a manifest's bytes: its packages, or why it has none. */
export function manifestRecord(path: string, sha256: string, bytes: Uint8Array, indexedAt: Date): PackageManifest {
  const record = { sha256, path, indexedAt: indexedAt.toISOString() };
  try {
    return { ...record, packages: parseManifest(path, bytes) };
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error;
    return { ...record, problem: error.message };
  }
}

export interface ManifestIndexing {
  objects: ObjectStore;
  catalog: ManifestIndex;
  now: () => Date;
  /** Told about each manifest that could not be indexed, with the reason (naming the file). */
  onProblem?: (path: string, problem: string) => void;
}

/**
 * After a copy stored `item`: when it is a manifest not yet indexed, reads
 * its bytes back from the store and records its packages (or why it has
 * none). A failure to read or record it is reported, not thrown: the copy
 * stands, and the next plan's catch-up indexes it.
 */
export async function indexIfManifest(
  indexing: ManifestIndexing,
  item: { path: string; ftype?: string; sha256: string },
  fence?: Fence,
): Promise<void> {
  if (!isManifest(item.ftype)) return;
  await indexUnlessIndexed(indexing, item.path, item.sha256, fence);
}

/**
 * The plan's catch-up for manifests stored before the package index existed
 * (or by a run that died between storing and indexing them): every manifest
 * the new generation lists that is already stored but not indexed is read
 * from the store and indexed. A manifest it cannot read or record is
 * reported and left for the next plan; the sync goes on. Returns how many it indexed.
 */
export async function indexStoredManifests(
  indexing: ManifestIndexing,
  entries: readonly CatalogEntry[],
  stored: ReadonlyMap<string, StoredObject>,
  fence?: Fence,
): Promise<number> {
  const bySha256 = new Map<string, string>();
  for (const entry of entries) {
    const object = stored.get(entry.path);
    if (isManifest(entry.ftype) && object) bySha256.set(object.sha256, object.path);
  }
  let indexed = 0;
  for (const [sha256, path] of bySha256) {
    if (await indexUnlessIndexed(indexing, path, sha256, fence)) indexed++;
  }
  return indexed;
}

/** True when it indexed the manifest now; false when it already was, or could not be read or recorded (reported). */
async function indexUnlessIndexed(indexing: ManifestIndexing, path: string, sha256: string, fence?: Fence): Promise<boolean> {
  try {
    if (await indexing.catalog.getManifest(sha256)) return false;
    await indexStored(indexing, path, sha256, fence);
    return true;
  } catch (error) {
    if (error instanceof LeaseLostError) throw error;
    indexing.onProblem?.(path, `${path}: not indexed yet: ${(error as Error).message}`);
    return false;
  }
}

async function indexStored(indexing: ManifestIndexing, path: string, sha256: string, fence?: Fence): Promise<void> {
  const bytes = await readManifest(indexing.objects, path);
  const record = manifestRecord(path, sha256, bytes, indexing.now());
  if (record.problem) indexing.onProblem?.(path, record.problem);
  await indexing.catalog.putManifest(record, fence);
}

/**
 * The stored bytes of the manifest at `path`; for an object larger than any
 * manifest, only as many as show that (parseManifest then refuses them).
 */
async function readManifest(objects: ObjectStore, path: string): Promise<Uint8Array> {
  const { body } = await objects.get(keys.item(path));
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (size > manifestLimits.bytes) break;
  }
  return Buffer.concat(chunks);
}

/** The sha256 of every manifest the given generations list: what prune may forget once they are deleted. */
export async function manifestsListedBy(catalog: Publications, generations: readonly number[]): Promise<Set<string>> {
  const digests = new Set<string>();
  for (const generation of generations) {
    for await (const entry of catalog.listEntries(generation)) {
      if (isManifest(entry.ftype) && entry.sha256) digests.add(entry.sha256);
    }
  }
  return digests;
}

/**
 * Forgets the records of `candidates` (manifests of deleted generations)
 * that no retained generation lists, so the index does not outgrow the
 * mirror. Returns how many it forgot.
 */
export async function forgetUnlistedManifests(
  catalog: ManifestIndex & Publications,
  candidates: ReadonlySet<string>,
  retained: Iterable<number>,
  fence?: Fence,
): Promise<number> {
  if (candidates.size === 0) return 0;
  const listed = await manifestsListedBy(catalog, [...retained]);
  let forgotten = 0;
  for (const sha256 of candidates) {
    if (listed.has(sha256)) continue;
    await catalog.forgetManifest(sha256, fence);
    forgotten++;
  }
  return forgotten;
}
