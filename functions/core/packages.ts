/**
 * Questions about what the mirrored images ship, answered from the package
 * index (functions/core/manifests.ts) and the current publication's entries:
 * which images carry a package, and what changed between two versions of one.
 */
import { forEachLimited } from './concurrency.ts';
import { ConfigError, ManifestUnavailableError, NotFoundError } from './errors.ts';
import { isManifest, isPackageName } from './manifests.ts';
import type { CatalogEntry, ManifestIndex, PackageManifest, Publications } from './ports.ts';

/** One version of one mirrored product, as the publication describes it. */
export interface ImageVersion {
  product: string;
  version: string;
  os?: string;
  release?: string;
  arch?: string;
  subarch?: string;
  label?: string;
}

export interface PackageMatch extends ImageVersion {
  /** As the manifest lists it: `name`, or `name:arch`. */
  package: string;
  packageVersion: string;
  /** The manifest's mirror path. */
  manifest: string;
}

/** A manifest the answer could not look into, and why. */
export interface UnreadManifest extends ImageVersion {
  manifest: string;
  reason: string;
}

export interface PackageReport {
  package: string;
  /** The publication searched; null when nothing is published yet. */
  generation: number | null;
  /** Newest version first within each product. */
  images: PackageMatch[];
  /** Empty unless some manifest is unparsed or not yet indexed: then the answer may be incomplete. */
  unread: UnreadManifest[];
}

export interface PackageChange {
  package: string;
  from: string;
  to: string;
}

export interface PackageVersion {
  package: string;
  version: string;
}

export interface ImageDiff {
  product: string;
  generation: number;
  from: { version: string; manifest: string };
  to: { version: string; manifest: string };
  added: PackageVersion[];
  removed: PackageVersion[];
  changed: PackageChange[];
  unchanged: number;
}

const NOT_INDEXED = 'not indexed yet: the next sync that finds upstream changed reads it';

/** Manifest records read at once: a mirror of every MAAS image lists hundreds, each a round trip on DynamoDB. */
const MANIFEST_READS = 8;

/**
 * Every image of the current publication (each product's latest and retained
 * versions) whose manifest lists `name`, with the version it lists. `libc6`
 * also finds `libc6:amd64`; `libc6:amd64` finds only that.
 */
export async function packagesNamed(catalog: ManifestIndex & Publications, name: string): Promise<PackageReport> {
  if (!isPackageName(name)) throw new ConfigError(`${JSON.stringify(name)} is not a package name`);
  const current = await catalog.getCurrent();
  if (!current) return { package: name, generation: null, images: [], unread: [] };
  const bySha256 = new Map<string, CatalogEntry[]>();
  for await (const entry of catalog.listEntries(current.generation)) {
    if (!isManifest(entry.ftype)) continue;
    bySha256.set(entry.sha256, [...(bySha256.get(entry.sha256) ?? []), entry]);
  }
  const images: PackageMatch[] = [];
  const unread: UnreadManifest[] = [];
  await forEachLimited([...bySha256], MANIFEST_READS, async ([sha256, entries]) => {
    const manifest = await catalog.getManifest(sha256);
    if (!manifest?.packages) {
      const reason = manifest?.problem ?? NOT_INDEXED;
      for (const entry of entries) unread.push({ ...imageOf(entry), manifest: entry.path, reason });
      return;
    }
    for (const [listed, packageVersion] of matching(manifest.packages, name)) {
      for (const entry of entries) images.push({ ...imageOf(entry), package: listed, packageVersion, manifest: entry.path });
    }
  });
  images.sort((a, b) => byProductThenNewest(a, b) || compare(a.package, b.package));
  unread.sort(byProductThenNewest);
  return { package: name, generation: current.generation, images, unread };
}

/**
 * The packages added, removed and changed from version `from` to version
 * `to` of `product`, both in the current publication. NotFoundError naming
 * the product or version when either is not published, or lists no manifest;
 * ManifestUnavailableError when a manifest is unparsed or not yet indexed.
 */
export async function diffImages(catalog: ManifestIndex & Publications, product: string, from: string, to: string): Promise<ImageDiff> {
  const current = await catalog.getCurrent();
  if (!current) throw new NotFoundError('nothing is published yet');
  const files = new Map<string, CatalogEntry[]>();
  for await (const entry of catalog.listEntries(current.generation)) {
    if (entry.product !== product) continue;
    if (!files.has(entry.version)) files.set(entry.version, []);
    files.get(entry.version)!.push(entry);
  }
  if (files.size === 0) throw new NotFoundError(`product ${product} is not in the published catalog (generation ${current.generation})`);
  return diffVersions(catalog, product, current.generation, { version: from, files: files.get(from) }, { version: to, files: files.get(to) });
}

/** The files of one version of a product, as the catalog lists them (manifests among them); undefined when it is not published. */
export interface VersionFiles {
  version: string;
  files: readonly Pick<CatalogEntry, 'item' | 'ftype' | 'path' | 'sha256'>[] | undefined;
}

/**
 * `diffImages` for two versions whose files the caller already has (say,
 * from one pass over a generation's entries): reads their manifests only.
 */
export async function diffVersions(catalog: ManifestIndex, product: string, generation: number, from: VersionFiles, to: VersionFiles): Promise<ImageDiff> {
  const [before, after] = [await packagesOf(catalog, product, from), await packagesOf(catalog, product, to)];
  const added: PackageVersion[] = [];
  const removed: PackageVersion[] = [];
  const changed: PackageChange[] = [];
  let unchanged = 0;
  for (const [name, version] of before.packages) {
    const next = after.packages.get(name);
    if (next === undefined) removed.push({ package: name, version });
    else if (next !== version) changed.push({ package: name, from: version, to: next });
    else unchanged++;
  }
  for (const [name, version] of after.packages) {
    if (!before.packages.has(name)) added.push({ package: name, version });
  }
  const byName = (a: { package: string }, b: { package: string }) => compare(a.package, b.package);
  return {
    product,
    generation,
    from: { version: from.version, manifest: before.path },
    to: { version: to.version, manifest: after.path },
    added: added.sort(byName),
    removed: removed.sort(byName),
    changed: changed.sort(byName),
    unchanged,
  };
}

/** The manifest `diffImages` compares for a version: squashfs's first, then the rest by ftype and item name. */
const MANIFEST_PREFERENCE = ['squashfs.manifest', 'manifest', 'root-tgz.manifest'];

async function packagesOf(
  catalog: ManifestIndex,
  product: string,
  { version, files }: VersionFiles,
): Promise<{ path: string; packages: ReadonlyMap<string, string> }> {
  if (!files) throw new NotFoundError(`product ${product} has no version ${version} in the published catalog`);
  const manifests = files.filter((file) => isManifest(file.ftype));
  const [entry] = manifests.sort((a, b) => rank(a) - rank(b) || compare(a.ftype ?? '', b.ftype ?? '') || compare(a.item, b.item));
  if (!entry) throw new NotFoundError(`product ${product} version ${version} lists no package manifest`);
  const manifest: PackageManifest | undefined = await catalog.getManifest(entry.sha256);
  if (!manifest?.packages) {
    throw new ManifestUnavailableError(`${entry.path} (product ${product} version ${version}): ${manifest?.problem ?? NOT_INDEXED}`);
  }
  return { path: entry.path, packages: manifest.packages };
}

function rank(entry: Pick<CatalogEntry, 'ftype'>): number {
  const index = MANIFEST_PREFERENCE.indexOf(entry.ftype ?? '');
  return index === -1 ? MANIFEST_PREFERENCE.length : index;
}

function* matching(packages: ReadonlyMap<string, string>, name: string): Iterable<[string, string]> {
  const exact = packages.get(name);
  if (exact !== undefined) yield [name, exact];
  if (name.includes(':')) return;
  for (const [listed, version] of packages) {
    if (listed.startsWith(`${name}:`)) yield [listed, version];
  }
}

function imageOf(entry: CatalogEntry): ImageVersion {
  const image: ImageVersion = { product: entry.product, version: entry.version };
  for (const field of ['os', 'release', 'arch', 'subarch', 'label'] as const) {
    if (entry[field] !== undefined) image[field] = entry[field];
  }
  return image;
}

function byProductThenNewest(a: ImageVersion & { manifest: string }, b: ImageVersion & { manifest: string }): number {
  return compare(a.product, b.product) || compare(b.version, a.version) || compare(a.manifest, b.manifest);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
