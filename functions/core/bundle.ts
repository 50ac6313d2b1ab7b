/**
 * Air-gap bundles: one publication (metadata, items, a keyring) as a single
 * tar archive, written as a stream.
 *
 * Layout: `skystreams-bundle.json` (what the bundle holds) first, then
 * `keyring.gpg` when one was given, then the mirror tree under `mirror/`,
 * exactly as it is served. Extracted with any `tar`, `mirror/` is a static
 * mirror. An offline mirror imports a bundle by syncing from it like from any
 * upstream (functions/adapters/fs/bundle-upstream.ts): every signature and
 * digest is checked again there, so the bundle's transport need not be trusted.
 */
import { verifyingStream } from './checksum.ts';
import { BundleError, ConfigError } from './errors.ts';
import { mirrorPathProblem } from './paths.ts';
import { clearsignedBody, isClearsigned } from './pgp.ts';
import { keys, type ObjectIndex, type ObjectStore, type Publication, type Publications } from './ports.ts';
import { PUBLISHED_KEYRING, PUBLISHED_KEYRING_ARMORED } from './published-files.ts';
import { flattenItems, parseIndex, parseProducts } from './simplestreams.ts';
import { writeTar, type TarSource } from './tar.ts';

export const BUNDLE_MANIFEST = 'skystreams-bundle.json';
export const BUNDLE_KEYRING = 'keyring.gpg';
/** The mirror root inside the archive. */
export const BUNDLE_MIRROR_ROOT = 'mirror/';
const BUNDLE_FORMAT = 1;

/** `skystreams-bundle.json`: what a bundle holds, for the importing side and for people. */
export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  /** ISO 8601. */
  exportedAt: string;
  /** The exporting mirror's generation, and its upstream index's `updated`. */
  generation: number;
  upstreamUpdated: string;
  metadataFiles: number;
  items: number;
  /** Of the items. */
  itemBytes: number;
  /** Whether `keyring.gpg` is in the bundle (it is no trust anchor: the importer names its own). */
  keyring: boolean;
}

export interface ExportOptions {
  /** A keyring to ship beside the mirror, for the offline MAAS (binary OpenPGP). */
  keyring?: Uint8Array;
  now: Date;
  /** The channel whose publication is exported. @default DEFAULT_CHANNEL */
  channel?: string;
}

export interface ExportedBundle {
  manifest: BundleManifest;
  /** The archive's bytes. Every item is checked against its catalog digests on the way out. */
  stream: AsyncIterable<Uint8Array>;
}

/** The current publication as a bundle. ConfigError when nothing is published. */
export async function exportPublication(objects: ObjectStore, catalog: ObjectIndex & Publications, options: ExportOptions): Promise<ExportedBundle> {
  const publication = await catalog.getCurrent(options.channel);
  if (!publication) {
    throw new ConfigError(`nothing published${options.channel ? ` in channel ${options.channel}` : ''} yet: run \`skystreams sync\` first`);
  }
  const metadata = await metadataSources(objects, publication);
  const items = await itemSources(objects, catalog, publication);
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    exportedAt: options.now.toISOString(),
    generation: publication.generation,
    upstreamUpdated: publication.upstreamUpdated,
    metadataFiles: metadata.length,
    items: items.length,
    itemBytes: items.reduce((sum, item) => sum + item.size, 0),
    keyring: options.keyring !== undefined,
  };
  const head: TarSource[] = [inMemory(BUNDLE_MANIFEST, new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`))];
  if (options.keyring) head.push(inMemory(BUNDLE_KEYRING, options.keyring));
  return { manifest, stream: writeTar([...head, ...metadata, ...items]) };
}

/** Reads and checks a bundle's manifest. */
export function parseBundleManifest(bundle: string, bytes: Uint8Array): BundleManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw new BundleError(bundle, `${BUNDLE_MANIFEST} is not JSON`, { cause: error });
  }
  const manifest = parsed as Partial<BundleManifest> | null;
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) {
    throw new BundleError(bundle, `${BUNDLE_MANIFEST}: expected an object`);
  }
  if (manifest.format !== BUNDLE_FORMAT) {
    throw new BundleError(bundle, `${BUNDLE_MANIFEST}: $.format ${JSON.stringify(manifest.format)} is not ${BUNDLE_FORMAT}: written by another version of skystreams`);
  }
  for (const field of ['generation', 'metadataFiles', 'items', 'itemBytes'] as const) {
    if (!Number.isSafeInteger(manifest[field])) throw new BundleError(bundle, `${BUNDLE_MANIFEST}: $.${field}: expected an integer`);
  }
  for (const field of ['exportedAt', 'upstreamUpdated'] as const) {
    if (typeof manifest[field] !== 'string') throw new BundleError(bundle, `${BUNDLE_MANIFEST}: $.${field}: expected a string`);
  }
  if (typeof manifest.keyring !== 'boolean') throw new BundleError(bundle, `${BUNDLE_MANIFEST}: $.keyring: expected true or false`);
  return manifest as BundleManifest;
}

/**
 * Why archive entry `name` has no place in a bundle, or undefined: a bundle
 * holds its manifest, its keyring and mirror files under `mirror/`, each at
 * a path sync would accept from upstream metadata.
 */
export function bundleEntryProblem(name: string): string | undefined {
  if (name === BUNDLE_MANIFEST || name === BUNDLE_KEYRING) return undefined;
  if (!name.startsWith(BUNDLE_MIRROR_ROOT)) return `outside ${BUNDLE_MIRROR_ROOT}`;
  const problem = mirrorPathProblem(name.slice(BUNDLE_MIRROR_ROOT.length));
  return problem && `not a mirror path: it ${problem}`;
}

const SIGNED_INDEX = 'streams/v1/index.sjson';
const UNSIGNED_INDEX = 'streams/v1/index.json';

/**
 * Checks that the metadata in a bundle accounts for every file under its
 * `mirror/` and that its manifest's counts are the truth: the index, the
 * products files it lists, the items those list (the metadata's signatures
 * are checked by the import's sync before anything is published, so this
 * accounting rests on signed bytes), the unsigned `.json` twin of a signed
 * file, and a re-signed publication's keyrings. BundleError naming `bundle`
 * and the entry otherwise. `read` gives a mirror file's bytes.
 */
export async function checkBundleContents(
  bundle: string,
  manifest: BundleManifest,
  sizes: ReadonlyMap<string, number>,
  read: (path: string) => Promise<Uint8Array>,
): Promise<void> {
  const entryName = (path: string) => `${bundle}:${BUNDLE_MIRROR_ROOT}${path}`;
  const text = async (path: string) => {
    const body = new TextDecoder().decode(await read(path));
    return isClearsigned(body) ? clearsignedBody(entryName(path), body) : body;
  };
  const indexPath = sizes.has(SIGNED_INDEX) ? SIGNED_INDEX : UNSIGNED_INDEX;
  if (!sizes.has(indexPath)) throw new BundleError(bundle, `${BUNDLE_MIRROR_ROOT}${SIGNED_INDEX}: missing: a bundle holds its publication's index`);
  const metadata = new Set([indexPath]);
  const items = new Set<string>();
  for (const entry of Object.values(parseIndex(entryName(indexPath), await text(indexPath)).index)) {
    metadata.add(entry.path);
    if (!sizes.has(entry.path)) throw new BundleError(bundle, `${BUNDLE_MIRROR_ROOT}${entry.path}: listed by its index, missing from the bundle`);
    const products = parseProducts(entryName(entry.path), await text(entry.path));
    for (const item of flattenItems(entryName(entry.path), products)) items.add(item.path);
  }
  for (const path of [...metadata]) if (path.endsWith('.sjson')) metadata.add(`${path.slice(0, -'.sjson'.length)}.json`);
  metadata.add(PUBLISHED_KEYRING).add(PUBLISHED_KEYRING_ARMORED);
  const counted = { metadataFiles: 0, items: 0, itemBytes: 0 };
  for (const [path, size] of sizes) {
    if (metadata.has(path)) counted.metadataFiles++;
    else if (items.has(path)) {
      counted.items++;
      counted.itemBytes += size;
    } else throw new BundleError(bundle, `${BUNDLE_MIRROR_ROOT}${path}: not listed by the bundle's metadata`);
  }
  for (const field of ['metadataFiles', 'items', 'itemBytes'] as const) {
    if (counted[field] !== manifest[field]) {
      throw new BundleError(bundle, `${BUNDLE_MANIFEST}: $.${field} is ${manifest[field]}, the bundle holds ${counted[field]}`);
    }
  }
}

async function metadataSources(objects: ObjectStore, publication: Publication): Promise<TarSource[]> {
  const sources: TarSource[] = [];
  for (const file of publication.files) {
    const key = keys.metadata(publication, file);
    const info = await objects.head(key);
    if (!info) throw new ConfigError(`generation ${publication.generation} lists ${file}, but its bytes are not in the store: run \`skystreams verify\``);
    sources.push({ path: BUNDLE_MIRROR_ROOT + file, size: info.size, open: async () => (await objects.get(key)).body });
  }
  return sources;
}

async function itemSources(objects: ObjectStore, catalog: ObjectIndex & Publications, publication: Publication): Promise<TarSource[]> {
  const paths = new Set<string>();
  for await (const entry of catalog.listEntries(publication.generation)) paths.add(entry.path);
  const sources: TarSource[] = [];
  for (const path of [...paths].sort()) {
    const stored = await catalog.getObject(path);
    if (!stored) throw new ConfigError(`generation ${publication.generation} lists ${path}, which the catalog has forgotten: run \`skystreams sync\` to repair it first`);
    sources.push({
      path: BUNDLE_MIRROR_ROOT + path,
      size: stored.size,
      open: async () => {
        const { body } = await objects.get(keys.item(path));
        // Bytes damaged at rest must not leave in a bundle: the import would refuse it far from here.
        return verifyingStream(body, { ...stored.digests, sha256: stored.sha256, path, size: stored.size }).stream;
      },
    });
  }
  return sources;
}

function inMemory(path: string, bytes: Uint8Array): TarSource {
  return {
    path,
    size: bytes.byteLength,
    open: async () =>
      (async function* () {
        yield bytes;
      })(),
  };
}
