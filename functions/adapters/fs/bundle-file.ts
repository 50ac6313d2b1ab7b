/**
 * Air-gap bundles on disk: writing one durably, and reading one as the
 * upstream an offline mirror syncs from.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BUNDLE_KEYRING, BUNDLE_MANIFEST, BUNDLE_MIRROR_ROOT, bundleEntryProblem, checkBundleContents, parseBundleManifest, type BundleManifest } from '../../core/bundle.ts';
import { BundleError, InputTooLargeError, NotFoundError } from '../../core/errors.ts';
import { defaultMetadataLimits } from '../../core/metadata-limits.ts';
import type { ByteRange, ByteStream, FetchLimits, FetchedFile, Upstream, Validators } from '../../core/ports.ts';
import { TAR_BLOCK, parsePaxRecords, parseTarBlock, tarPadding, type TarPosition } from '../../core/tar.ts';

/** Pax records beyond this are not ours: a bundle only puts a path and a size there. */
const MAX_PAX_BYTES = 64 * 1024;
/** The manifest and keyring are read whole. */
const MAX_SMALL_FILE_BYTES = 1024 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Writes `stream` to `file` so that `file` only ever names a whole bundle:
 * a temp name beside it, fsync, then rename. A failure removes the temp file.
 */
export async function writeBundleFile(file: string, stream: AsyncIterable<Uint8Array>): Promise<void> {
  const partial = `${file}.partial`;
  try {
    await pipeline(Readable.from(stream), createWriteStream(partial, { mode: 0o644 }));
    const handle = await open(partial, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(partial, file);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
}

interface Entry {
  offset: number;
  size: number;
}

/**
 * A bundle file as an Upstream: `path` is the mirror path, served from the
 * archive's `mirror/` tree. The archive's headers are read once when opened;
 * bytes are read from the file when asked for. Nothing here is trusted: the
 * engine checks signatures and digests as it does for any upstream.
 */
export class BundleUpstream implements Upstream {
  readonly file: string;
  readonly manifest: BundleManifest;
  readonly keyring: Uint8Array | undefined;
  private readonly entries: ReadonlyMap<string, Entry>;
  private readonly indexEtag: string | undefined;
  private constructor(
    file: string,
    manifest: BundleManifest,
    /** The bundle's keyring (binary OpenPGP), when it ships one. */
    keyring: Uint8Array | undefined,
    entries: ReadonlyMap<string, Entry>,
    /** Same index bytes, same etag: importing a bundle twice is a no-op. */
    indexEtag: string | undefined,
  ) {
    this.file = file;
    this.manifest = manifest;
    this.keyring = keyring;
    this.entries = entries;
    this.indexEtag = indexEtag;
  }

  /**
   * BundleError naming `file` (and the entry) when it is not a readable
   * skystreams bundle: an entry outside `mirror/` or at a path sync would
   * refuse, a link or other non-regular entry, a file its metadata does not
   * list, a products file its index lists missing, or a manifest whose
   * counts are not what the bundle holds.
   */
  static async open(file: string): Promise<BundleUpstream> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      throw new BundleError(file, `cannot be opened (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
    }
    try {
      const entries = await readEntries(file, handle);
      for (const name of entries.keys()) {
        const problem = bundleEntryProblem(name);
        if (problem !== undefined) throw new BundleError(file, `${name}: ${problem}`);
      }
      const manifestEntry = entries.get(BUNDLE_MANIFEST);
      if (!manifestEntry || [...entries.keys()][0] !== BUNDLE_MANIFEST) {
        throw new BundleError(file, `not a skystreams bundle: ${BUNDLE_MANIFEST} is not its first file`);
      }
      const manifest = parseBundleManifest(file, await readSmall(file, handle, BUNDLE_MANIFEST, manifestEntry));
      const keyringEntry = entries.get(BUNDLE_KEYRING);
      const keyring = keyringEntry && (await readSmall(file, handle, BUNDLE_KEYRING, keyringEntry));
      const mirror = new Map<string, Entry>();
      for (const [path, entry] of entries) if (path.startsWith(BUNDLE_MIRROR_ROOT)) mirror.set(path.slice(BUNDLE_MIRROR_ROOT.length), entry);
      const sizes = new Map([...mirror].map(([path, entry]) => [path, entry.size] as const));
      await checkBundleContents(file, manifest, sizes, (path) =>
        readSmall(file, handle, BUNDLE_MIRROR_ROOT + path, mirror.get(path)!, defaultMetadataLimits.productsBytes),
      );
      const index = mirror.get('streams/v1/index.sjson') ?? mirror.get('streams/v1/index.json');
      const indexEtag = index && index.size <= MAX_SMALL_FILE_BYTES ? `"bundle-${sha256Hex(await readSmall(file, handle, 'index', index))}"` : undefined;
      return new BundleUpstream(file, manifest, keyring, mirror, indexEtag);
    } finally {
      await handle.close();
    }
  }

  /** The mirror paths the bundle carries bytes for: what an import of it selects. */
  paths(): ReadonlySet<string> {
    return new Set(this.entries.keys());
  }

  url(path: string): string {
    return `${this.file}:${BUNDLE_MIRROR_ROOT}${path}`;
  }

  async fetchFile(path: string, validators?: Validators, limits?: FetchLimits): Promise<FetchedFile> {
    const entry = this.entry(path);
    // Read whole into memory: without a limit of the caller's, no more than a run reads of metadata in all.
    const maxBytes = limits?.maxBytes ?? defaultMetadataLimits.runBytes;
    if (entry.size > maxBytes) {
      throw new InputTooLargeError(this.url(path), maxBytes, `${entry.size} bytes, more than the ${maxBytes} allowed`);
    }
    const isIndex = path.startsWith('streams/v1/index.');
    if (isIndex && this.indexEtag !== undefined && validators?.etag === this.indexEtag) return { notModified: true };
    const handle = await open(this.file, 'r');
    try {
      const bytes = new Uint8Array(entry.size);
      const { bytesRead } = await handle.read(bytes, 0, entry.size, entry.offset);
      if (bytesRead !== entry.size) throw new BundleError(this.file, `${BUNDLE_MIRROR_ROOT}${path}: truncated`);
      return { notModified: false, bytes, validators: isIndex && this.indexEtag !== undefined ? { etag: this.indexEtag } : {} };
    } finally {
      await handle.close();
    }
  }

  async openStream(path: string): Promise<{ body: ByteStream; size?: number }> {
    const entry = this.entry(path);
    if (entry.size === 0) return { body: Readable.from([]), size: 0 };
    const body = createReadStream(this.file, { start: entry.offset, end: entry.offset + entry.size - 1, highWaterMark: READ_CHUNK_BYTES });
    return { body, size: entry.size };
  }

  async openRange(path: string, range: ByteRange): Promise<{ body: ByteStream; size: number }> {
    const entry = this.entry(path);
    if (range.start < 0 || range.end < range.start || range.end >= entry.size) {
      throw new BundleError(this.file, `${BUNDLE_MIRROR_ROOT}${path}: bytes ${range.start}-${range.end} lie outside its ${entry.size} bytes`);
    }
    const body = createReadStream(this.file, { start: entry.offset + range.start, end: entry.offset + range.end, highWaterMark: READ_CHUNK_BYTES });
    return { body, size: entry.size };
  }

  private entry(path: string): Entry {
    const entry = this.entries.get(path);
    if (!entry) throw new NotFoundError(`${this.url(path)}: not in the bundle`);
    return entry;
  }
}

/** Every regular file of the archive by path, in archive order; refuses duplicates and entries past the end. */
async function readEntries(file: string, handle: FileHandle): Promise<Map<string, Entry>> {
  const { size: fileSize } = await handle.stat();
  const entries = new Map<string, Entry>();
  const block = new Uint8Array(TAR_BLOCK);
  let offset = 0;
  let pending: { path?: string; size?: number } = {};
  for (;;) {
    const at: TarPosition = { archive: file, offset };
    const { bytesRead } = await handle.read(block, 0, TAR_BLOCK, offset);
    if (bytesRead !== TAR_BLOCK) throw new BundleError(file, `at byte ${offset}: ends without the end-of-archive marker: truncated`);
    const header = parseTarBlock(block, at);
    if (header.kind === 'end') return entries;
    const dataOffset = offset + TAR_BLOCK;
    if (header.kind === 'pax') {
      if (header.size > MAX_PAX_BYTES) throw new BundleError(file, `at byte ${offset}: a ${header.size}-byte pax header`);
      const records = new Uint8Array(header.size);
      await handle.read(records, 0, header.size, dataOffset);
      pending = parsePaxRecords(records, at);
      offset = dataOffset + header.size + tarPadding(header.size);
      continue;
    }
    const path = pending.path ?? header.path;
    const size = pending.size ?? header.size;
    pending = {};
    if (dataOffset + size > fileSize) throw new BundleError(file, `${path}: ${size} bytes announced, the file ends first: truncated`);
    if (entries.has(path)) throw new BundleError(file, `${path}: in the archive twice`);
    entries.set(path, { offset: dataOffset, size });
    offset = dataOffset + size + tarPadding(size);
  }
}

async function readSmall(file: string, handle: FileHandle, name: string, entry: Entry, maxBytes = MAX_SMALL_FILE_BYTES): Promise<Uint8Array> {
  if (entry.size > maxBytes) throw new BundleError(file, `${name}: ${entry.size} bytes, more than ${maxBytes}`);
  const bytes = new Uint8Array(entry.size);
  await handle.read(bytes, 0, entry.size, entry.offset);
  return bytes;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
