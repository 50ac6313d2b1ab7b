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
   * Writing one object as numbered parts, over several processes if need be:
   * what lets a copy longer than one Lambda invocation resume in the next.
   * Absent on stores that only write whole objects (the directory backend).
   */
  readonly parts?: PartedWrites;
  /**
   * Makes every put that has completed durable, names included, so a power
   * cut after this returns cannot lose them. Called before a publication
   * lists them. (A put's bytes are durable when it returns; on a filesystem
   * the directory entry that names them is not, until this.)
   */
  persist(): Promise<void>;
  /**
   * Removes what a writer known to be gone left unfinished: the temp files
   * it named after itself, and unfinished parted writes under the keys it
   * was writing. Nothing a live writer (this process included) is writing.
   * Returns how many leftovers went.
   */
  removeLeftovers(of: WriterLeftovers): Promise<number>;
}

/** What a writer that stopped without finishing may have left (see ObjectStore.removeLeftovers). */
export interface WriterLeftovers {
  /** The process that wrote, as its run recorded it: a directory store names its temp files after it. */
  holder?: LockHolder;
  /** The keys it was writing: a store with parted writes aborts the unfinished ones under them. */
  keys: readonly string[];
}

/** An unfinished parted write, as `PartedWrites.start` began it; plain data, so it can travel between processes. */
export interface PartUpload {
  key: string;
  uploadId: string;
}

export interface UploadedPart {
  /** 1-based. */
  partNumber: number;
  /** The store's validator of the part, needed to complete the upload. */
  etag: string;
  /** The store's own integrity check of the part, when it keeps one (S3: its CRC32), also needed to complete. */
  checksum?: string;
}

/**
 * Parts written one by one, invisible until `complete` joins them at the
 * key. An upload left unfinished costs storage until it is aborted (on S3, a
 * lifecycle rule aborts leftovers after a day).
 */
export interface PartedWrites {
  /** Smallest size of every part but the last. */
  readonly minPartBytes: number;
  /** Most parts one object may have. */
  readonly maxParts: number;
  start(key: string, options?: { contentType?: string }): Promise<PartUpload>;
  /**
   * Writes part `partNumber` from `body`, which must hold exactly `size`
   * bytes (IntegrityError naming the key otherwise). Writing a part number
   * again replaces that part. NotFoundError when the upload is gone (aborted
   * or completed).
   */
  putPart(upload: PartUpload, partNumber: number, body: ByteStream, size: number): Promise<UploadedPart>;
  /**
   * Joins `parts`, in order, into the object at the upload's key. With
   * `ifAbsent`, ObjectExistsError when an object is already there, which
   * stays as it was (and the upload stays open, for `abort`).
   */
  complete(upload: PartUpload, parts: readonly UploadedPart[], options?: { ifAbsent?: boolean }): Promise<ObjectInfo>;
  /** Drops the upload and its parts. Idempotent: an unknown or finished upload is not an error. */
  abort(upload: PartUpload): Promise<void>;
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

/**
 * The packages one manifest file lists, stored once per distinct manifest:
 * images that share a manifest (GA and HWE kernels of one root image) share
 * the record, and which images list it is in the publication's entries.
 */
export interface PackageManifest {
  /** Of the manifest's bytes: the record's key. */
  sha256: string;
  /** Where the manifest was read, for messages. */
  path: string;
  /** Package as listed (`name` or `name:arch`) → version; absent when the manifest could not be parsed. */
  packages?: ReadonlyMap<string, string>;
  /** Why it could not be parsed, naming the file and line. */
  problem?: string;
  /** ISO 8601. */
  indexedAt: string;
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

/**
 * A named pointer to a publication. MAAS regions follow one channel's URL
 * (`/channels/NAME/`, the default channel also at `/`); a sync publishes to
 * one channel, and `promote` points another at the same generation.
 */
export interface Channel {
  name: string;
  generation: number;
  /** Generations it pointed at before, newest first: where `rollback` goes. At most CHANNEL_HISTORY_LIMIT. */
  history: number[];
  /** Grows by one at every switch: the compare-and-set token of `setChannel`. */
  revision: number;
}

/** The channel a sync publishes to and `/` serves, unless told otherwise. */
export const DEFAULT_CHANNEL = 'stable';
/** Previous generations a channel remembers. */
export const CHANNEL_HISTORY_LIMIT = 10;
/**
 * Channels one mirror may have: deleting a generation re-checks every
 * channel in one DynamoDB transaction (at most 100 actions).
 */
export const MAX_CHANNELS = 32;
/** Every channel is served under `channels/NAME/`: no mirror file may have a path there. */
export const CHANNELS_PATH_PREFIX = 'channels/';
/** Lower-case, digits and dashes: a channel's name is a URL path segment and a key part. */
export const CHANNEL_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** The one source of a mirror configured with `--source` (not a list of sources): its state and kept metadata keep their original names. */
export const PRIMARY_SOURCE = 'upstream';
/**
 * Catalog state: the product ids and paths the default channel's publication
 * took from one merged source over another (a JSON array of SourceConflict);
 * another channel's under `name@channel`.
 */
export const SOURCE_CONFLICTS_STATE = 'source-conflicts';
/** Names the site's uploaded images among merged sources: no configured source may take it. */
export const UPLOADS_SOURCE = 'uploads';
/** What a configured source may be called: it names a state key and an object-store prefix. */
export const SOURCE_NAME = /^[a-z][a-z0-9-]{0,31}$/;

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
  /** What the operator should know of a run that did not fail it, e.g. a selection MAAS cannot network-boot. */
  warnings?: string[];
  /** Set on the run that changed how the mirror publishes. */
  modeSwitch?: { from: PublishingMode; to: PublishingMode };
}

/** verbatim: upstream's signed metadata as upstream wrote it; re-signed: the mirror's own, signed with its key; merged: re-signed over several sources. */
export type PublishingMode = 'verbatim' | 're-signed' | 'merged';

/** A lock holder's process. */
export interface LockHolder {
  host: string;
  pid: number;
  /**
   * When the process started, in the host's own units (Linux: clock ticks
   * after boot): another process given the same pid later has another.
   * Absent for holders recorded by older runs or without /proc.
   */
  startTime?: number;
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
 * The catalog's ports. Every write takes an optional fence: when given, the
 * write happens only if the lock still has the fence's owner and epoch, else
 * LeaseLostError and nothing changes. The sync engine fences all of its
 * writes. Code names the ports it uses; a backend implements them all as
 * one `Catalog`.
 */

/** What verified bytes exist in the object store, by mirror path. */
export interface ObjectIndex {
  getObject(path: string): Promise<StoredObject | undefined>;
  /** Upsert. */
  recordObject(object: StoredObject, fence?: Fence): Promise<void>;
  /** Idempotent. */
  forgetObject(path: string, fence?: Fence): Promise<void>;
  /** All objects, across all pages, any order. */
  listObjects(): AsyncIterable<StoredObject>;
}

/** Generations of metadata, their entries, and the channels pointing at them. */
export interface Publications {
  /** The publication `channel` points at. @default channel DEFAULT_CHANNEL */
  getCurrent(channel?: string): Promise<Publication | undefined>;
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
   * Atomically records `next` and points `channel` at it (the generation it
   * pointed at goes to the front of its history), provided the channel still
   * points at `expectedCurrent` (undefined: the channel does not exist yet)
   * and `next.generation` is unused. Otherwise ConflictError and nothing changes.
   * @default channel DEFAULT_CHANNEL
   */
  publish(next: Publication, expectedCurrent: number | undefined, fence?: Fence, channel?: string): Promise<void>;
  /**
   * Removes a publication and its entries — including entries staged for a
   * generation that was never published. ConflictError when a channel points
   * at it. Idempotent for unknown generations.
   */
  deletePublication(generation: number, fence?: Fence): Promise<void>;
  /** Every channel, by name. */
  listChannels(): Promise<Channel[]>;
  getChannel(name: string): Promise<Channel | undefined>;
  /**
   * Points a channel at an existing publication (promote, rollback): writes
   * `next` (revision one above `expectedRevision`) provided the channel's
   * revision is still `expectedRevision` (undefined: the channel does not
   * exist yet) and publication `next.generation` exists. ConflictError
   * otherwise, and nothing changes.
   */
  setChannel(next: Omit<Channel, 'revision'>, expectedRevision: number | undefined, fence?: Fence): Promise<void>;
}

/** The record of sync runs. */
export interface RunLog {
  /** Upsert by id. */
  putRun(run: SyncRun, fence?: Fence): Promise<void>;
  getRun(id: string): Promise<SyncRun | undefined>;
  /** Newest `startedAt` first. */
  listRuns(limit: number): Promise<SyncRun[]>;
}

/** Lease locks, so only one sync runs at a time. */
export interface Locks {
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
}

/** Package manifests, by the sha256 of their bytes. */
export interface ManifestIndex {
  /** Upsert: a manifest's record only depends on its bytes, so rewriting one changes nothing. */
  putManifest(manifest: PackageManifest, fence?: Fence): Promise<void>;
  /** undefined when that manifest has not been indexed. */
  getManifest(sha256: string): Promise<PackageManifest | undefined>;
  /** Idempotent. */
  forgetManifest(sha256: string, fence?: Fence): Promise<void>;
}

/** Small named values (upstream ETag / Last-Modified, pins, …). */
export interface StateStore {
  getState(key: string): Promise<string | undefined>;
  setState(key: string, value: string, fence?: Fence): Promise<void>;
}

/** Every catalog port: what a backend implements, in one store. */
export interface Catalog extends ObjectIndex, Publications, RunLog, Locks, ManifestIndex, StateStore {}

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
  /**
   * Streams bytes `range.start`..`range.end` (inclusive) of a file, with
   * `size` the whole file's length. RangeNotSupportedError (naming the URL)
   * when the server answers without a 206 Partial Content; UpstreamError when
   * its Content-Range is not the range asked for, or on other failures.
   */
  openRange(path: string, range: ByteRange): Promise<{ body: ByteStream; size: number }>;
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
