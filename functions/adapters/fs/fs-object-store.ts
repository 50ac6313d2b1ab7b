/**
 * ObjectStore over a plain directory: key `a/b/c` is the file `<root>/a/b/c`.
 *
 * Writes go to `<root>/.tmp/<writer>-<random>` (see temp-files.ts), are fsynced, then renamed over the
 * final path, so a reader sees either the old file or the complete new one.
 * A create-only put links the temp file into place instead: link(2) fails
 * when the name exists, so two writers can never both "create" one key.
 * Reads resolve symlinks and refuse any that lead out of the root.
 * A content type, when given, lives in a sidecar file under `<root>/.meta/`
 * because a directory has nowhere else to keep it.
 */
import { constants as fsConstants, type BigIntStats, type Dirent } from 'node:fs';
import { link, mkdir, open, readdir, readFile, realpath, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { NotFoundError, ObjectExistsError, StorageFullError } from '../../core/errors.ts';
import { objectKeyProblem } from '../../core/paths.ts';
import type { ByteRange, ByteStream, ObjectBody, ObjectInfo, ObjectStore, PutOptions, WriterLeftovers } from '../../core/ports.ts';
import { removeAbandonedTempFiles, removeTempFilesOf, tempName } from './temp-files.ts';

/** Top-level names the store uses for itself; keys may not start with them. */
const TEMP_DIR = '.tmp';
const META_DIR = '.meta';
const RESERVED_TOP_LEVEL = new Set([TEMP_DIR, META_DIR]);

export { ABANDONED_TEMP_AGE_MS } from './temp-files.ts';

/** A rename can race a concurrent delete pruning the now-empty parent; retrying a few times wins. */
const RENAME_ATTEMPTS = 3;

export class FsObjectStore implements ObjectStore {
  readonly rootDir: string;
  private tempSweep: Promise<void> | undefined;
  private realRoot: string | undefined;
  /** Directories whose entries changed since the last persist(): their fsync makes the new names durable. */
  private readonly changedDirs = new Set<string>();
  /** Which path written bytes took; read by tests and benchmarks. */
  readonly writeCounts: WriteCounts = { direct: 0, pageCache: 0 };

  constructor(rootDir: string) {
    this.rootDir = resolve(rootDir);
  }

  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const finalPath = this.pathOf(key);
    // Refused before the body is read: the caller decides what becomes of it.
    if (options.ifAbsent && (await this.head(key))) throw new ObjectExistsError(key);
    const tempPath = await this.writeTempFile(body).catch((error: unknown) => {
      throw asStorageFull(error, this.rootDir, options.size ?? (body instanceof Uint8Array ? body.byteLength : undefined));
    });
    try {
      if (options.ifAbsent) await this.linkIntoPlace(key, tempPath, finalPath);
      else await moveIntoPlace(rename, tempPath, finalPath);
      this.noteChangedDirs(finalPath);
    } finally {
      await unlinkIfPresent(tempPath);
    }
    await this.writeContentType(key, options.contentType);
    const stats = await stat(finalPath, { bigint: true });
    return toObjectInfo(key, stats, options.contentType);
  }

  async persist(): Promise<void> {
    const dirs = [...this.changedDirs].sort((a, b) => b.length - a.length);
    this.changedDirs.clear();
    // Deepest first: a new directory's own entry lives in its parent, synced after it.
    for (const dir of dirs) {
      const handle = await open(dir, 'r').catch((error: unknown) => {
        if (isAbsentError(error)) return undefined; // Pruned since: nothing of it to keep.
        throw error;
      });
      if (!handle) continue;
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }

  /** The directory of a new name and every directory up to the root: any of them may have just been made. */
  private noteChangedDirs(path: string): void {
    for (let dir = dirname(path); dir.startsWith(this.rootDir); dir = dirname(dir)) {
      if (this.changedDirs.has(dir)) return;
      this.changedDirs.add(dir);
      if (dir === this.rootDir) return;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    let stats: BigIntStats;
    try {
      stats = await stat(await this.resolveWithinRoot(key), { bigint: true });
    } catch (error) {
      if (isAbsentError(error)) return undefined;
      throw error;
    }
    if (!stats.isFile()) return undefined;
    return toObjectInfo(key, stats, await this.readContentType(key));
  }

  async get(key: string, options: { range?: ByteRange } = {}): Promise<ObjectBody> {
    const handle = await this.openForReading(key);
    try {
      // Stat the open handle, not the path: the info then describes exactly the bytes we stream.
      const stats = await handle.stat({ bigint: true });
      if (!stats.isFile()) throw new NotFoundError(`no object at ${key}`);
      const info = toObjectInfo(key, stats, await this.readContentType(key));
      const { range } = options;
      if (range) assertRangeWithin(key, range, info.size);
      // 1 MiB reads: the 64 KiB default costs a thread-pool round trip per 64 KiB of an image.
      const body = handle.createReadStream({ highWaterMark: READ_CHUNK_BYTES, ...(range && { start: range.start, end: range.end }) });
      return range ? { ...info, body, range: { ...range } } : { ...info, body };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    await unlinkIfPresent(path);
    await unlinkIfPresent(this.metaPathOf(key));
    await this.pruneEmptyParents(path, this.rootDir);
    await this.pruneEmptyParents(this.metaPathOf(key), join(this.rootDir, META_DIR));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Start in the deepest directory the prefix names in full; filter the rest by name.
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash === -1 ? '' : prefix.slice(0, slash + 1);
    const namePrefix = prefix.slice(dirKey.length);
    if (dirKey !== '' && !isSafeDirKey(dirKey)) return;
    yield* this.walk(dirKey, namePrefix);
  }

  /** Yields every file under the directory for `dirKey` (`''` or ending in `/`) whose name starts with `namePrefix`, in key order. */
  private async *walk(dirKey: string, namePrefix: string): AsyncGenerator<ObjectInfo> {
    const dirPath = join(this.rootDir, ...dirKey.split('/').filter(Boolean));
    let entries: Dirent[];
    try {
      entries = await readdir(dirPath, { withFileTypes: true });
    } catch (error) {
      if (isAbsentError(error)) return;
      throw error;
    }
    // Every key below directory `d` starts with `d/`, so sorting directories as `d/` gives global key order.
    const children = entries
      .filter((entry) => !(dirKey === '' && RESERVED_TOP_LEVEL.has(entry.name)))
      .map((entry) => ({ entry, sortName: entry.isDirectory() ? `${entry.name}/` : entry.name }))
      .filter(({ sortName }) => sortName.startsWith(namePrefix))
      .sort((a, b) => compareKeys(a.sortName, b.sortName));
    for (const { entry } of children) {
      const key = dirKey + entry.name;
      if (entry.isDirectory()) {
        yield* this.walk(`${key}/`, '');
      } else if (entry.isFile()) {
        const stats = await statIfPresent(join(dirPath, entry.name));
        if (stats?.isFile()) yield toObjectInfo(key, stats, undefined);
      }
    }
  }

  /** Temp files of a writer that died; the directory store has no parted writes to abort. */
  removeLeftovers(of: WriterLeftovers): Promise<number> {
    return removeTempFilesOf(join(this.rootDir, TEMP_DIR), of.holder);
  }

  private async writeTempFile(body: ByteStream | Uint8Array): Promise<string> {
    const tempDir = join(this.rootDir, TEMP_DIR);
    this.tempSweep ??= removeAbandonedTempFiles(tempDir);
    await this.tempSweep;
    await mkdir(tempDir, { recursive: true });
    const tempPath = join(tempDir, tempName());
    const handle = await open(tempPath, 'wx');
    let writer: BatchedWriter | undefined;
    try {
      if (body instanceof Uint8Array) {
        await writeFully(handle, body);
        this.writeCounts.pageCache += body.byteLength;
      } else {
        writer = new BatchedWriter(handle, await openDirectWriter(tempPath), this.writeCounts);
        for await (const chunk of body) await writer.add(chunk);
        await writer.finish();
        await writer.release();
      }
      await handle.sync();
    } catch (error) {
      await writer?.settle();
      await writer?.release();
      await handle.close().catch(() => undefined);
      await unlinkIfPresent(tempPath);
      throw error;
    }
    await handle.close();
    return tempPath;
  }

  private async linkIntoPlace(key: string, tempPath: string, finalPath: string): Promise<void> {
    try {
      await moveIntoPlace(link, tempPath, finalPath);
    } catch (error) {
      if (errorCode(error) === 'EEXIST') throw new ObjectExistsError(key);
      throw error;
    }
  }

  private async writeContentType(key: string, contentType: string | undefined): Promise<void> {
    const metaPath = this.metaPathOf(key);
    if (contentType === undefined) {
      await unlinkIfPresent(metaPath);
      return;
    }
    const tempPath = join(this.rootDir, TEMP_DIR, tempName());
    await writeFile(tempPath, contentType, { flag: 'wx' });
    await moveIntoPlace(rename, tempPath, metaPath);
  }

  private async readContentType(key: string): Promise<string | undefined> {
    try {
      return await readFile(this.metaPathOf(key), 'utf8');
    } catch (error) {
      if (isAbsentError(error)) return undefined;
      throw error;
    }
  }

  private async openForReading(key: string): Promise<FileHandle> {
    try {
      return await open(await this.resolveWithinRoot(key), 'r');
    } catch (error) {
      if (isAbsentError(error)) throw new NotFoundError(`no object at ${key}`, { cause: error });
      throw error;
    }
  }

  /** The key's file with symlinks resolved; ENOENT (as if absent) when they lead outside the root. */
  private async resolveWithinRoot(key: string): Promise<string> {
    const path = this.pathOf(key);
    const real = await realpath(path);
    this.realRoot ??= await realpath(this.rootDir);
    const root = this.realRoot;
    if (!real.startsWith(root + sep)) {
      throw Object.assign(new Error(`${key} resolves outside the store`), { code: 'ENOENT' });
    }
    return real;
  }

  /** Removes empty directories from `path`'s parent up to (not including) `stopAt`. */
  private async pruneEmptyParents(path: string, stopAt: string): Promise<void> {
    for (let dir = dirname(path); dir.startsWith(stopAt + sep); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        return; // Not empty, already gone, or in use by a concurrent put: all fine to leave.
      }
    }
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    return join(this.rootDir, ...key.split('/'));
  }

  private metaPathOf(key: string): string {
    assertValidKey(key);
    return join(this.rootDir, META_DIR, ...key.split('/'));
  }
}

function assertValidKey(key: string): void {
  const problem = keyProblem(key);
  if (problem) throw new Error(`invalid object key ${JSON.stringify(key)}: ${problem}`);
}

/** The shared key rules, plus the store's own top-level directories. */
function keyProblem(key: string): string | undefined {
  const problem = objectKeyProblem(key);
  if (problem !== undefined) return problem;
  const topLevel = key.split('/')[0] ?? '';
  if (RESERVED_TOP_LEVEL.has(topLevel)) return `"${topLevel}/" is reserved by the store`;
  return undefined;
}

/** A list prefix's directory part: listing it can only be empty when it isn't a valid key prefix. */
function isSafeDirKey(dirKey: string): boolean {
  return keyProblem(dirKey.slice(0, -1)) === undefined;
}

function assertRangeWithin(key: string, range: ByteRange, size: number): void {
  const { start, end } = range;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end >= size) {
    throw new RangeError(`range ${start}-${end} is not within ${key} (${size} bytes)`);
  }
}

const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Bytes per write(2): network chunks are 16–64 KiB, and a write per chunk
 * costs more than the copy into a batch. A multiple of DIRECT_IO_ALIGNMENT.
 */
const WRITE_BATCH_BYTES = 1024 * 1024;
/**
 * A datasync is started (and left to run) after every this many bytes written
 * through the page cache, so the kernel writes back while the download goes
 * on and the fsync that makes the object durable finds little left to do.
 */
const WRITEBACK_EVERY_BYTES = 64 * 1024 * 1024;
/**
 * O_DIRECT wants the buffer address, the file offset and the length aligned
 * to the device's logical block; 4 KiB covers 512-byte and 4 KiB devices.
 */
const DIRECT_IO_ALIGNMENT = 4096;
/** WebAssembly memory comes in 64 KiB pages. */
const WASM_PAGE_BYTES = 65536;

/**
 * Write buffers whose addresses are page-aligned, as O_DIRECT needs. A
 * Buffer's address cannot be chosen from JavaScript and malloc aligns to 16
 * bytes only, but a WebAssembly.Memory is mapped by V8's page allocator, so
 * offset 0 (and every multiple of 4 KiB) of it is page-aligned. Should that
 * ever not hold, the first direct write fails with EINVAL and the writer
 * falls back to the page cache: slower, never wrong. Buffers are reused, so
 * the pool holds two per put in flight.
 */
const alignedBatchBuffers: Buffer[] = [];

function takeAlignedBatchBuffers(): [Buffer, Buffer] {
  if (alignedBatchBuffers.length < 2) {
    const memory = new WebAssembly.Memory({ initial: (2 * WRITE_BATCH_BYTES) / WASM_PAGE_BYTES });
    alignedBatchBuffers.push(Buffer.from(memory.buffer, 0, WRITE_BATCH_BYTES), Buffer.from(memory.buffer, WRITE_BATCH_BYTES, WRITE_BATCH_BYTES));
  }
  return [alignedBatchBuffers.pop()!, alignedBatchBuffers.pop()!];
}

/**
 * A second descriptor on `path` that bypasses the page cache, or undefined
 * where the platform or file system has no O_DIRECT. Full, aligned batches go
 * through it: a mirror writes gigabytes it will not read back soon, and
 * copying them into page cache costs more CPU than the download (on a VM
 * whose memory is backed lazily, several times more). The final fsync on the
 * ordinary descriptor still makes the inode's data durable, whichever
 * descriptor wrote it.
 */
async function openDirectWriter(path: string): Promise<FileHandle | undefined> {
  const direct = (fsConstants as { O_DIRECT?: number }).O_DIRECT;
  if (direct === undefined) return undefined;
  try {
    return await open(path, fsConstants.O_WRONLY | direct);
  } catch (error) {
    if (errorCode(error) === 'EINVAL' || errorCode(error) === 'EOPNOTSUPP') return undefined;
    throw error;
  }
}

/** Bytes an FsObjectStore has written through each path since it was made: what `put` costs is told by which. */
export interface WriteCounts {
  /** Full batches written with O_DIRECT. */
  direct: number;
  /** Everything else: tails, small bodies, and all bytes where O_DIRECT is unavailable. */
  pageCache: number;
}

/**
 * Writes a stream of chunks to a file in batches, one write in flight while
 * the next batch fills (two buffers, swapped), at explicit offsets because
 * two descriptors share the file. Full batches go to the direct descriptor
 * when there is one; the rest through the page cache, whose writeback it
 * starts as it goes.
 */
class BatchedWriter {
  /** Taken at the first chunk, so an empty body costs no buffers. */
  private buffers: Buffer[] = [];
  private filled = 0;
  private position = 0;
  private writing: Promise<void> = Promise.resolve();
  private syncing: Promise<void> = Promise.resolve();
  private sinceSync = 0;

  private readonly handle: FileHandle;
  private direct: FileHandle | undefined;
  private readonly counts: WriteCounts;
  constructor(
    handle: FileHandle,
    direct: FileHandle | undefined,
    counts: WriteCounts,
  ) {
    this.handle = handle;
    this.direct = direct;
    this.counts = counts;
  }

  async add(chunk: Uint8Array): Promise<void> {
    if (this.buffers.length === 0) this.buffers = takeAlignedBatchBuffers();
    let offset = 0;
    while (offset < chunk.byteLength) {
      const current = this.buffers[0]!;
      const take = Math.min(chunk.byteLength - offset, current.byteLength - this.filled);
      current.set(chunk.subarray(offset, offset + take), this.filled);
      this.filled += take;
      offset += take;
      if (this.filled === current.byteLength) await this.flush();
    }
  }

  /** Waits for what is in flight, ignoring its failure: the write has already failed for another reason. */
  async settle(): Promise<void> {
    await Promise.allSettled([this.writing, this.syncing]);
  }

  /** Everything written; writeback started earlier has finished. The caller still fsyncs. */
  async finish(): Promise<void> {
    await this.flush();
    await this.writing;
    await this.syncing;
  }

  /** Gives the buffers back once nothing is in flight (after finish or settle) and closes the direct descriptor. */
  async release(): Promise<void> {
    alignedBatchBuffers.push(...this.buffers);
    this.buffers = [];
    await this.direct?.close().catch(() => undefined);
    this.direct = undefined;
  }

  private async flush(): Promise<void> {
    if (this.filled === 0) return;
    const batch = this.buffers[0]!.subarray(0, this.filled);
    const position = this.position;
    // The other buffer is free once its write is done; at most one write is in flight.
    await this.writing;
    const aligned = batch.byteLength % DIRECT_IO_ALIGNMENT === 0 && position % DIRECT_IO_ALIGNMENT === 0;
    if (this.direct && aligned) {
      this.writing = this.writeDirect(batch, position);
    } else {
      this.writing = writeFully(this.handle, batch, position);
      this.counts.pageCache += batch.byteLength;
      this.sinceSync += batch.byteLength;
    }
    this.buffers.reverse();
    this.filled = 0;
    this.position += batch.byteLength;
    if (this.sinceSync >= WRITEBACK_EVERY_BYTES) {
      this.sinceSync = 0;
      await this.syncing;
      const afterWrite = this.writing;
      this.syncing = afterWrite.then(() => this.handle.datasync());
    }
  }

  /** EINVAL means this file system or buffer does not suit O_DIRECT after all: the batch, and the rest, go through the page cache. */
  private async writeDirect(batch: Buffer, position: number): Promise<void> {
    try {
      await writeFully(this.direct!, batch, position);
      this.counts.direct += batch.byteLength;
    } catch (error) {
      if (errorCode(error) !== 'EINVAL') throw error;
      await this.direct?.close().catch(() => undefined);
      this.direct = undefined;
      await writeFully(this.handle, batch, position);
      this.counts.pageCache += batch.byteLength;
    }
  }
}

/** rename(2) or link(2) into a directory made first; retried when a concurrent delete prunes that directory meanwhile. */
async function moveIntoPlace(
  move: (from: string, to: string) => Promise<void>,
  tempPath: string,
  finalPath: string,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(dirname(finalPath), { recursive: true });
    try {
      await move(tempPath, finalPath);
      return;
    } catch (error) {
      if (!(errorCode(error) === 'ENOENT' && attempt < RENAME_ATTEMPTS)) throw error;
    }
  }
}

/** Writes all of `bytes` at `position`, or at the descriptor's offset when `position` is undefined. */
async function writeFully(handle: FileHandle, bytes: Uint8Array, position?: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const at = position === undefined ? null : position + offset;
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset, at);
    offset += bytesWritten;
  }
}

function toObjectInfo(key: string, stats: BigIntStats, contentType: string | undefined): ObjectInfo {
  const info: ObjectInfo = {
    key,
    size: Number(stats.size),
    etag: etagOf(stats),
    lastModified: new Date(Number(stats.mtimeMs)),
  };
  if (contentType !== undefined) info.contentType = contentType;
  return info;
}

/**
 * Size, modification time (ns) and inode: every put renames a fresh inode
 * into place, so a replaced object never keeps its old validator.
 */
function etagOf(stats: BigIntStats): string {
  return `"${[stats.size, stats.mtimeNs, stats.ino].map((n) => n.toString(16)).join('-')}"`;
}

/** Byte order of the UTF-8 encodings, as S3 orders keys. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

async function statIfPresent(path: string): Promise<BigIntStats | undefined> {
  try {
    return await stat(path, { bigint: true });
  } catch (error) {
    if (isAbsentError(error)) return undefined;
    throw error;
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    // EISDIR/EPERM: the key names a directory of other keys, so no object is there.
    if (isAbsentError(error) || errorCode(error) === 'EISDIR' || errorCode(error) === 'EPERM') return;
    throw error;
  }
}

/** ENOSPC/EDQUOT as the domain error naming the directory and the size the write needed; anything else unchanged. */
function asStorageFull(error: unknown, directory: string, neededBytes: number | undefined): unknown {
  const code = errorCode(error);
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return error;
  const needed = neededBytes === undefined ? 'an object of unknown size' : `${neededBytes} bytes`;
  return new StorageFullError(directory, needed, { cause: error });
}

function isAbsentError(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined;
}
