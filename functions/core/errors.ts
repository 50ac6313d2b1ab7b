/**
 * Domain errors. Adapters translate SDK / driver errors into these, so the
 * engine and the HTTP app never see a vendor error type.
 */
export class SkystreamsError extends Error {
  /** HTTP status the API answers when this error escapes a request. */
  readonly statusCode: number = 500;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Metadata that is not valid simplestreams: names the file and the JSON path. */
export class MetadataError extends SkystreamsError {
  override readonly statusCode = 502;
  readonly file: string;
  readonly jsonPath: string;
  constructor(
    file: string,
    jsonPath: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${jsonPath}: ${problem}`, options);
    this.file = file;
    this.jsonPath = jsonPath;
  }
}

/** A missing, malformed or untrusted OpenPGP signature. */
export class SignatureError extends SkystreamsError {
  override readonly statusCode = 502;
  readonly file: string;
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`${file}: ${problem}`, options);
    this.file = file;
  }
}

/** Bytes that do not match the size or digest the signed metadata promises. */
export class IntegrityError extends SkystreamsError {
  override readonly statusCode = 502;
  readonly path: string;
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.path = path;
  }
}

/** A path that could escape the mirror root or is otherwise unusable. */
export class UnsafePathError extends MetadataError {
  readonly path: string;
  constructor(file: string, jsonPath: string, path: string, problem: string) {
    super(file, jsonPath, `unsafe path ${JSON.stringify(path)}: ${problem}`);
    this.path = path;
  }
}

/**
 * Upstream metadata older than what is already published, or than the index
 * that lists it: a replay. `file` and `contentId` name the products file when
 * the index itself was fine.
 */
export class RollbackError extends SkystreamsError {
  override readonly statusCode = 409;
  readonly file?: string;
  readonly contentId?: string;
  readonly upstreamUpdated: string;
  readonly publishedUpdated: string;
  constructor(
    upstreamUpdated: string,
    publishedUpdated: string,
    context?: { file?: string; contentId?: string; problem?: string },
  ) {
    super(
      context?.file === undefined
        ? `upstream index updated ${upstreamUpdated} is older than the published ${publishedUpdated}: refusing to roll back`
        : `${context.file}: ${context.problem ?? `updated ${upstreamUpdated} is older than the published ${publishedUpdated}`}: refusing to roll back`,
    );
    this.upstreamUpdated = upstreamUpdated;
    this.publishedUpdated = publishedUpdated;
    if (context?.file !== undefined) this.file = context.file;
    if (context?.contentId !== undefined) this.contentId = context.contentId;
  }
}

/** The upstream could not be read (network, HTTP status). */
export class UpstreamError extends SkystreamsError {
  override readonly statusCode = 502;
  readonly url: string;
  constructor(url: string, problem: string, options?: { cause?: unknown }) {
    super(`${url}: ${problem}`, options);
    this.url = url;
  }
}

/**
 * The upstream answered a ranged GET with the whole file (no 206): an item
 * too large for one invocation cannot be copied from it in parts. Not
 * transient: asking again gets the same answer.
 */
export class RangeNotSupportedError extends SkystreamsError {
  override readonly statusCode = 502;
  readonly url: string;
  constructor(url: string, problem: string) {
    super(`${url}: ${problem}`);
    this.url = url;
  }
}

/** An input (metadata file, run total, JSON nesting) over its configured bound: refused before it is buffered. */
export class InputTooLargeError extends SkystreamsError {
  override readonly statusCode = 502;
  readonly source: string;
  readonly limit: number;
  constructor(source: string, limit: number, problem: string) {
    super(`${source}: ${problem}`);
    this.source = source;
    this.limit = limit;
  }
}

/** An air-gap bundle that cannot be read, or is not one skystreams wrote: names the bundle. */
export class BundleError extends SkystreamsError {
  override readonly statusCode = 400;
  readonly bundle: string;
  constructor(bundle: string, problem: string, options?: { cause?: unknown }) {
    super(`${bundle}: ${problem}`, options);
    this.bundle = bundle;
  }
}

/** Bad configuration or command-line input. */
export class ConfigError extends SkystreamsError {
  override readonly statusCode = 400;
}

/**
 * A request its caller must fix (a malformed or invalid body, a reference to
 * something absent): the one kind of configuration problem a route may tell
 * its caller about. The same class raised by a store or the deployment is
 * the mirror's failure, answered 500.
 */
export class RequestError extends ConfigError {}

/** A file to upload that is empty or not what its item must be (its leading bytes say otherwise). */
export class FileFormatError extends ConfigError {
  readonly file: string;
  readonly item: string;
  constructor(file: string, item: string, problem: string) {
    super(`${file}: the ${item} file ${problem}`);
    this.file = file;
    this.item = item;
  }
}

/**
 * An image in a format MAAS cannot take from a simplestreams source (a dd
 * disk image, say): publishing it would make MAAS reject the whole stream.
 * Carries the command that uploads it to MAAS directly instead.
 */
export class UnsupportedImageError extends ConfigError {
  readonly ftype: string;
  readonly file: string;
  readonly maasCommand: string;
  constructor(ftype: string, file: string, maasCommand: string) {
    super(
      `${file}: ${ftype} images cannot be published in a stream: MAAS's stream models only take ` +
        'boot-kernel + boot-initrd + squashfs (or root-image.gz) + manifest, or root-tgz + manifest, ' +
        `and a file it cannot read makes it reject the whole source. Upload it to MAAS directly instead:\n  ${maasCommand}`,
    );
    this.ftype = ftype;
    this.file = file;
    this.maasCommand = maasCommand;
  }
}

export class NotFoundError extends SkystreamsError {
  override readonly statusCode = 404;
}

/** A conditional write lost a race (pointer switch, lock, create-if-absent). */
export class ConflictError extends SkystreamsError {
  override readonly statusCode = 409;
}

/** Another sync run holds the lock. */
export class LockHeldError extends ConflictError {
  readonly holder: string;
  readonly expiresAt: string;
  constructor(holder: string, expiresAt: string) {
    super(`another sync run (${holder}) holds the lock until ${expiresAt}`);
    this.holder = holder;
    this.expiresAt = expiresAt;
  }
}

/** A fenced write whose lease has lost the lock: the run must stop. */
export class LeaseLostError extends ConflictError {
  readonly owner: string;
  readonly epoch: number | undefined;
  constructor(owner: string, epoch: number | undefined, problem = 'no longer holds the sync lock') {
    super(`run ${owner}${epoch === undefined ? '' : ` (lease epoch ${epoch})`} ${problem}`);
    this.owner = owner;
    this.epoch = epoch;
  }
}

/** Upstream promises other bytes at paths a retained generation serves: refused before anything is copied. */
export class PublishedContentError extends ConflictError {
  readonly paths: readonly string[];
  constructor(paths: readonly string[]) {
    const shown = paths.slice(0, 10).join(', ');
    const more = paths.length > 10 ? ` and ${paths.length - 10} more` : '';
    super(
      `upstream now lists different content at ${paths.length} path(s) the mirror already serves: ${shown}${more}; ` +
        'published bytes are never replaced, so this upstream cannot be mirrored until those paths are no longer published',
    );
    this.paths = paths;
  }
}

/** A create-only put found an object already there; the existing object is untouched. */
export class ObjectExistsError extends ConflictError {
  readonly key: string;
  constructor(key: string) {
    super(`an object is already stored at ${key}; published bytes are never replaced`);
    this.key = key;
  }
}

/**
 * The disk the mirror writes to is full: names the directory and how much the
 * write needed, so the operator knows what to free. Nothing partial is kept.
 */
export class StorageFullError extends SkystreamsError {
  readonly directory: string;
  constructor(directory: string, needed: string, options?: { cause?: unknown }) {
    super(`${directory}: no space left on the device (needed ${needed}); free space there or move the mirror to a larger disk`, options);
    this.directory = directory;
  }
}

/** The store is throttling or unreachable; worth retrying. */
export class UnavailableError extends SkystreamsError {
  override readonly statusCode = 503;
}

/** A package manifest that is not `package<TAB>version` lines: names the file and, when it applies, the line. */
export class ManifestError extends SkystreamsError {
  override readonly statusCode = 502;
  readonly path: string;
  readonly line: number | undefined;
  constructor(path: string, line: number | undefined, problem: string) {
    super(`${path}: ${line === undefined ? '' : `line ${line}: `}${problem}`);
    this.path = path;
    this.line = line;
  }
}

/** A manifest the mirror holds but could not index (unparsed, or stored before the index existed and not yet read). */
export class ManifestUnavailableError extends SkystreamsError {
  override readonly statusCode = 409;
}
