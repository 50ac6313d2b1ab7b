/**
 * The seams between the sync engine / HTTP app and the outside world.
 * Every backend (directory + SQLite, S3 + DynamoDB) implements these, and one
 * contract suite per port (test/contract/) runs against each of them.
 */

/** Bytes as they flow through the engine: Node Readables and web ReadableStreams both qualify. */
export type ByteStream = AsyncIterable<Uint8Array>;

// ---------------------------------------------------------------- objects

export interface ObjectInfo {
  key: string;
  size: number;
  /** Strong validator, quoted as in HTTP (`"abc"`). */
  etag: string;
  lastModified: Date;
  contentType?: string;
}

/** Inclusive byte range, as in HTTP `Range: bytes=start-end`. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ObjectBody extends ObjectInfo {
  body: ByteStream;
  /** Present when a range was asked for: the bytes `body` holds. */
  range?: ByteRange;
}

export interface PutOptions {
  contentType?: string;
  /** Expected size when known; lets a backend size multipart parts. */
  size?: number;
  /**
   * Create-only: when an object is already at `key`, ObjectExistsError and
   * the existing object stays as it was. What makes published bytes immutable.
   */
  ifAbsent?: boolean;
}

/**
 * Flat key → bytes store. Keys are relative, `/`-separated, never start with
 * `/`, never contain `..` segments.
 */
export interface ObjectStore {
  /**
   * Writes `body` to `key` atomically: readers see the previous object (or
   * none) until the body has been read to its end without throwing. If the
   * body throws (say, a checksum mismatch found at the last byte), that error
   * propagates and nothing at `key` changes. Memory use is bounded whatever
   * the size. With `ifAbsent`, never replaces an existing object.
   */
  put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo>;
  /** undefined when absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Throws NotFoundError when absent. `range` must lie within the object. */
  get(key: string, options?: { range?: ByteRange }): Promise<ObjectBody>;
  /** Idempotent: deleting an absent key is not an error. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with `prefix`, in ascending key order, across all pages. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * Makes every put that has completed durable, names included, so a power
   * cut after this returns cannot lose them. Called before a publication
   * lists them. (A put's bytes are durable when it returns; on a filesystem
   * the directory entry that names them is not, until this.)
   */
  persist(): Promise<void>;
}

// ---------------------------------------------------------------- catalog

/** Lower-case hex digests by algorithm. */
export interface Digests {
  sha256?: string;
  sha512?: string;
  md5?: string;
}

/** A verified file in the object store, by its mirror path. */
export interface StoredObject {
  path: string;
  size: number;
  /** Always computed while storing (MAAS checks sha256). */
  sha256: string;
  /** Every digest the signed metadata declared for the file, each verified while storing. */
  digests: Digests;
  /** ISO 8601. */
  storedAt: string;
}

/** One item of one version of one product, as a publication lists it. */
export interface CatalogEntry {
  contentId: string;
  product: string;
  version: string;
  item: string;
  path: string;
  size: number;
  sha256: string;
  ftype?: string;
  os?: string;
  release?: string;
  arch?: string;
  subarch?: string;
  label?: string;
}

/** A generation of published metadata. Its files live at `keys.metadata(publication, file)` in the object store. */
export interface Publication {
  /** Strictly increasing. */
  generation: number;
  /** The upstream index's `updated`, verbatim. */
  upstreamUpdated: string;
  /** ISO 8601. */
  publishedAt: string;
  runId: string;
  /** Metadata files, relative to the mirror root (`streams/v1/index.sjson`, …). */
  files: string[];
  itemCount: number;
  totalBytes: number;
}

/** `abandoned`: its process died or its lease ran out before it finished; a later run recorded that. */
export type RunState = 'running' | 'succeeded' | 'unchanged' | 'failed' | 'abandoned';

export interface SyncRun {
  id: string;
  state: RunState;
  /** ISO 8601. */
  startedAt: string;
  finishedAt?: string;
  itemsCopied: number;
  bytesCopied: number;
  /** Items the plan found already stored. */
  itemsPresent: number;
  generation?: number;
  error?: string;
  /** Where the run's process lives, so a run on the same host can tell a dead holder at once. */
  holder?: LockHolder;
}

/** A lock holder's process. */
export interface LockHolder {
  host: string;
  pid: number;
}

/**
 * A held lease. `epoch` grows by one at every take-over of the lock and is
 * the fencing token: a write fenced by a lease only happens while the lock
 * still has that owner and epoch, so a run that lost its lease can do no harm.
 */
export interface Lease {
  name: string;
  owner: string;
  epoch: number;
  /** ISO 8601. */
  expiresAt: string;
}

export type Fence = Pick<Lease, 'name' | 'owner' | 'epoch'>;

/**
 * Every write takes an optional fence: when given, the write happens only if
 * the lock still has the fence's owner and epoch, else LeaseLostError and
 * nothing changes. The sync engine fences all of its writes.
 */
export interface Catalog {
  // Objects: what verified bytes exist, by path.
  getObject(path: string): Promise<StoredObject | undefined>;
  /** Upsert. */
  recordObject(object: StoredObject, fence?: Fence): Promise<void>;
  /** Idempotent. */
  forgetObject(path: string, fence?: Fence): Promise<void>;
  /** All objects, across all pages, any order. */
  listObjects(): AsyncIterable<StoredObject>;

  // Publications: generations of metadata and the one current pointer.
  getCurrent(): Promise<Publication | undefined>;
  getPublication(generation: number): Promise<Publication | undefined>;
  /** Newest generation first. */
  listPublications(): Promise<Publication[]>;
  /**
   * A generation number no publication and no earlier reservation has used:
   * each run stages under its own, so a fenced-out run's late writes can
   * never land in another run's generation.
   */
  reserveGeneration(fence?: Fence): Promise<number>;
  /** Stores a (not yet current) generation's entries; may be called more than once per generation (appends). */
  putEntries(generation: number, entries: readonly CatalogEntry[], fence?: Fence): Promise<void>;
  /** All entries of a generation, across all pages. */
  listEntries(generation: number): AsyncIterable<CatalogEntry>;
  /**
   * Atomically records `next` and makes it current, provided the current
   * generation is still `expectedCurrent` (undefined: none yet) and
   * `next.generation` is unused. Otherwise ConflictError and nothing changes.
   */
  publish(next: Publication, expectedCurrent: number | undefined, fence?: Fence): Promise<void>;
  /**
   * Removes a publication and its entries — including entries staged for a
   * generation that was never published. ConflictError when it is current.
   * Idempotent for unknown generations.
   */
  deletePublication(generation: number, fence?: Fence): Promise<void>;

  // Sync runs.
  /** Upsert by id. */
  putRun(run: SyncRun, fence?: Fence): Promise<void>;
  getRun(id: string): Promise<SyncRun | undefined>;
  /** Newest `startedAt` first. */
  listRuns(limit: number): Promise<SyncRun[]>;

  // A lease lock, so only one sync runs at a time.
  /**
   * Takes the free lock `name` for `owner` until `now + ttlMs`, with an epoch
   * one above any before it. LockHeldError when another owner holds an
   * unexpired lease (or `owner` itself: renew instead); an expired lease is
   * taken over, and so is one whose holder is `evict` (a holder known dead).
   */
  acquireLock(name: string, owner: string, ttlMs: number, now: Date, evict?: string): Promise<Lease>;
  /**
   * Extends a held lease to `now + ttlMs`. LeaseLostError when the lock no
   * longer has the lease's owner and epoch (released, or taken over after it
   * expired); a lapsed lease nobody took over is renewed.
   */
  renewLock(lease: Fence, ttlMs: number, now: Date): Promise<Lease>;
  /** The current holder, if any (expired leases included). */
  getLock(name: string): Promise<Lease | undefined>;
  /** No-op unless the lease still holds the lock. The epoch is kept for the next holder. */
  releaseLock(lease: Fence): Promise<void>;

  // Small named values (upstream ETag / Last-Modified, …).
  getState(key: string): Promise<string | undefined>;
  setState(key: string, value: string, fence?: Fence): Promise<void>;
}

// ---------------------------------------------------------------- upstream

export interface Validators {
  etag?: string;
  lastModified?: string;
}

export interface FetchLimits {
  /** Refuse the file once it is larger than this. */
  maxBytes?: number;
}

export type FetchedFile =
  | { notModified: true }
  | { notModified: false; bytes: Uint8Array; validators: Validators };

/** A simplestreams source, addressed by paths relative to its root. */
export interface Upstream {
  /** Full URL of `path`, for messages. */
  url(path: string): string;
  /**
   * Whole small file. NotFoundError on 404, UpstreamError on other failures,
   * InputTooLargeError (naming the URL) as soon as more than `limits.maxBytes`
   * arrive, announced or not. Conditional when `validators` given.
   */
  fetchFile(path: string, validators?: Validators, limits?: FetchLimits): Promise<FetchedFile>;
  /** Streams a (large) file. NotFoundError on 404, UpstreamError on other failures. */
  openStream(path: string): Promise<{ body: ByteStream; size?: number }>;
}

// ---------------------------------------------------------------- signing keys

/**
 * Where the mirror's own signing keys live (re-signed mode): one small
 * secret document, read and written whole. Its text is secret: never log it.
 */
export interface SigningKeyStore {
  /** For messages: a file path or a secret's name, never its content. */
  readonly description: string;
  /** The stored document, or undefined when none was ever stored. */
  read(): Promise<string | undefined>;
  /**
   * Stores the first document. `overwrite` false: only when none exists, else
   * false and nothing changes (another process created it first). `overwrite`
   * true: the store holds a prepared, keyless document that this replaces.
   */
  create(text: string, overwrite: boolean): Promise<boolean>;
  /** Replaces the document atomically (readers see the old or the new one whole). */
  replace(text: string): Promise<void>;
}

// ---------------------------------------------------------------- backend

/** A matched object store + catalog, as the CLI and handlers open them. */
export interface Backend {
  objects: ObjectStore;
  catalog: Catalog;
  /** For messages: `dir /path` or `s3://bucket + dynamodb:table`. */
  description: string;
  /** The mirror's own signing keys (re-signed mode), where this backend keeps them; undefined when it was given none. */
  signingKeys?: SigningKeyStore;
  close(): Promise<void>;
}

/** Which staged metadata a publication serves: each run stages under its own prefix. */
export type MetadataOwner = Pick<Publication, 'generation' | 'runId'>;

/** Object-store key layout shared by every backend (CloudFront serves `items/` as the site root). */
export const keys = {
  item: (path: string) => `items/${path}`,
  /**
   * Per run, not just per generation: a run that lost its lock while staging
   * could otherwise overwrite the files of a generation another run published.
   */
  metadata: (owner: MetadataOwner, file: string) => `${keys.metadataPrefix(owner)}${file}`,
  metadataPrefix: (owner: MetadataOwner) => `meta/${owner.generation}-${owner.runId}/`,
  runFile: (runId: string, name: string) => `runs/${runId}/${name}`,
} as const;
