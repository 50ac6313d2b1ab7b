/**
 * ObjectStore over one S3 bucket: key `k` is the S3 key `<prefix>k`, so
 * CloudFront can serve `items/` straight from the bucket.
 *
 * Writes stream through lib-storage's Upload. Memory is bounded whatever the
 * object size: at most `queueSize` parts are in flight plus one being filled,
 * each `partSize` bytes, so about partSize × (queueSize + 1) — 40 MiB with the
 * defaults (8 MiB × (4 + 1)) — plus the SDK's socket buffers.
 *
 * Atomicity (the `put` contract): an object shorter than one part goes up as
 * a single PutObject, which lib-storage only sends once the body has ended
 * without error. A longer one goes up as a multipart upload, which S3 keeps
 * invisible until CompleteMultipartUpload; if the body throws, Upload sends
 * AbortMultipartUpload instead (leavePartsOnError: false) and the body's own
 * error is rethrown. A bucket lifecycle rule should still abort incomplete
 * uploads after a day, for processes killed mid-upload.
 *
 * Create-only puts (`ifAbsent`) send `If-None-Match: *` with the PutObject
 * or CompleteMultipartUpload, so S3 itself refuses (412) to replace an
 * object that appeared meanwhile; a HEAD first refuses before any byte is
 * read, and covers stand-ins that ignore the condition.
 */
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  UploadPartCommand,
  type GetObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ConflictError, IntegrityError, NotFoundError, ObjectExistsError } from '../../core/errors.ts';
import { objectKeyProblem } from '../../core/paths.ts';
import type {
  ByteRange,
  ByteStream,
  ObjectBody,
  ObjectInfo,
  ObjectStore,
  PartedWrites,
  PartUpload,
  PutOptions,
  UploadedPart,
  WriterLeftovers,
} from '../../core/ports.ts';
import { toDomainError } from './errors.ts';

const MiB = 1024 * 1024;
/** S3's smallest allowed part (all but the last). */
export const MIN_PART_SIZE = 5 * MiB;
export const DEFAULT_PART_SIZE = 8 * MiB;
export const DEFAULT_QUEUE_SIZE = 4;
/** S3's limit on parts per upload; with a known size, parts grow to stay under it. */
export const MAX_PARTS = 10_000;

export interface S3ObjectStoreOptions {
  client: S3Client;
  bucket: string;
  /** Prepended to every key; a missing trailing `/` is added. @default '' */
  prefix?: string;
  /** Bytes per multipart part (≥ 5 MiB). @default 8 MiB */
  partSize?: number;
  /** Parts uploaded concurrently. @default 4 */
  queueSize?: number;
}

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly partSize: number;
  readonly queueSize: number;
  readonly parts: PartedWrites;
  private readonly client: S3Client;

  constructor(options: S3ObjectStoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.prefix = normalizePrefix(options.prefix ?? '');
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    this.queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(this.partSize) || this.partSize < MIN_PART_SIZE) {
      throw new RangeError(`partSize must be an integer of at least ${MIN_PART_SIZE} bytes, not ${this.partSize}`);
    }
    if (!Number.isInteger(this.queueSize) || this.queueSize < 1) {
      throw new RangeError(`queueSize must be a positive integer, not ${this.queueSize}`);
    }
    this.parts = new S3PartedWrites(this.client, this.bucket, (key) => this.s3KeyOf(key), (key) => this.describe(key), (key) => this.head(key));
  }

  async put(key: string, body: ByteStream | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const s3Key = this.s3KeyOf(key);
    if (options.ifAbsent && (await this.head(key))) throw new ObjectExistsError(key);
    const source = body instanceof Uint8Array ? undefined : new RecordingSource(body);
    const payload = body instanceof Uint8Array ? body : source?.readable;
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: s3Key,
        Body: payload,
        ...(options.contentType && { ContentType: options.contentType }),
        ...(options.ifAbsent && { IfNoneMatch: '*' }),
      },
      partSize: this.partSizeFor(options.size),
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      // The body's own error wins, even when aborting the upload failed too.
      if (source?.failure) throw source.failure.error;
      const domainError = toDomainError(error, this.describe(key));
      if (options.ifAbsent && domainError instanceof ConflictError) throw new ObjectExistsError(key);
      throw domainError;
    } finally {
      source?.release();
    }
    const stored = await this.head(key);
    if (!stored) throw new NotFoundError(`${this.describe(key)} vanished right after its upload`);
    return stored;
  }

  /** A completed PutObject or CompleteMultipartUpload is already durable in S3. */
  async persist(): Promise<void> {}

  /**
   * Aborts the unfinished multipart uploads under `of.keys` (the bucket's
   * lifecycle rule stays the backstop for any this misses). S3 has no temp
   * files: a put that died left nothing else.
   */
  async removeLeftovers(of: WriterLeftovers): Promise<number> {
    const wanted = new Set(of.keys.map((key) => this.s3KeyOf(key)));
    if (wanted.size === 0) return 0;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.client
        .send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: commonPrefix([...wanted]),
            ...(keyMarker && { KeyMarker: keyMarker }),
            ...(uploadIdMarker && { UploadIdMarker: uploadIdMarker }),
          }),
        )
        .catch((error: unknown) => {
          throw toDomainError(error, this.describe('unfinished uploads'));
        });
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined || !wanted.has(upload.Key)) continue;
        await this.parts.abort({ key: upload.Key.slice(this.prefix.length), uploadId: upload.UploadId });
        removed++;
      }
      if (!page.IsTruncated) return removed;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.s3KeyOf(key) }));
      return toObjectInfo(key, response, response.ContentLength ?? 0);
    } catch (error) {
      const domainError = toDomainError(error, this.describe(key));
      if (domainError instanceof NotFoundError) return undefined;
      throw domainError;
    }
  }

  async get(key: string, options: { range?: ByteRange } = {}): Promise<ObjectBody> {
    const { range } = options;
    if (range) assertRangeShape(key, range);
    let response: GetObjectCommandOutput;
    try {
      response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.s3KeyOf(key),
          ...(range && { Range: `bytes=${range.start}-${range.end}` }),
        }),
      );
    } catch (error) {
      if (isRangeNotSatisfiable(error)) throw new RangeError(`range ${range?.start}-${range?.end} is not within ${key}`);
      throw toDomainError(error, this.describe(key));
    }
    const stream = response.Body as Readable | undefined;
    const body = guardedBody(stream, this.describe(key));
    if (!range) return { ...toObjectInfo(key, response, response.ContentLength ?? 0), body };

    const served = parseContentRange(response.ContentRange);
    if (!served || served.start !== range.start || served.end !== range.end) {
      // S3 clamps an end past the object; the port promises exactly the bytes asked for.
      stream?.destroy();
      throw new RangeError(
        `range ${range.start}-${range.end} is not within ${key} (${served ? served.size : 'unknown'} bytes)`,
      );
    }
    return { ...toObjectInfo(key, response, served.size), body, range: { start: range.start, end: range.end } };
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.s3KeyOf(key) }));
    } catch (error) {
      const domainError = toDomainError(error, this.describe(key));
      if (!(domainError instanceof NotFoundError)) throw domainError;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let continuationToken: string | undefined;
    do {
      const page = await this.client
        .send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            ...(continuationToken && { ContinuationToken: continuationToken }),
          }),
        )
        .catch((error: unknown) => {
          throw toDomainError(error, this.describe(`${prefix}*`));
        });
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield {
          key: object.Key.slice(this.prefix.length),
          size: object.Size ?? 0,
          etag: object.ETag ?? '""',
          lastModified: object.LastModified ?? new Date(0),
        };
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
  }

  /** `s3://bucket/prefix/key`, for messages. */
  describe(key: string): string {
    return `s3://${this.bucket}/${this.prefix}${key}`;
  }

  private s3KeyOf(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  private partSizeFor(size: number | undefined): number {
    if (size === undefined || size <= this.partSize * MAX_PARTS) return this.partSize;
    return Math.ceil(size / MAX_PARTS);
  }
}

/**
 * A multipart upload driven part by part by the caller, so it can span
 * processes: the upload id and each part's ETag (and checksum) are all a
 * later process needs to go on. Parts carry the CRC32 the SDK computes when
 * the client asks for checksums (as lib-storage's Upload does), so S3 checks
 * each part as it arrives.
 */
class S3PartedWrites implements PartedWrites {
  readonly minPartBytes = MIN_PART_SIZE;
  readonly maxParts = MAX_PARTS;

  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly s3KeyOf: (key: string) => string;
  private readonly describe: (key: string) => string;
  private readonly head: (key: string) => Promise<ObjectInfo | undefined>;
  constructor(
    client: S3Client,
    bucket: string,
    s3KeyOf: (key: string) => string,
    describe: (key: string) => string,
    head: (key: string) => Promise<ObjectInfo | undefined>,
  ) {
    this.client = client;
    this.bucket = bucket;
    this.s3KeyOf = s3KeyOf;
    this.describe = describe;
    this.head = head;
  }

  async start(key: string, options: { contentType?: string } = {}): Promise<PartUpload> {
    const checksums = (await this.client.config.requestChecksumCalculation()) === 'WHEN_SUPPORTED';
    const created = await this.client
      .send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.s3KeyOf(key),
          ...(options.contentType && { ContentType: options.contentType }),
          ...(checksums && { ChecksumAlgorithm: ChecksumAlgorithm.CRC32 }),
        }),
      )
      .catch((error: unknown) => {
        throw toDomainError(error, this.describe(key));
      });
    if (!created.UploadId) throw new Error(`${this.describe(key)}: CreateMultipartUpload returned no upload id`);
    return { key, uploadId: created.UploadId };
  }

  async putPart(upload: PartUpload, partNumber: number, body: ByteStream, size: number): Promise<UploadedPart> {
    const what = `${this.describe(upload.key)} part ${partNumber}`;
    // A body that fails mid-part must end the request too: S3 would otherwise wait for the rest of its Content-Length.
    const request = new AbortController();
    const source = new RecordingSource(exactly(body, size, what), () => request.abort());
    try {
      const uploaded = await this.client.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: this.s3KeyOf(upload.key),
          UploadId: upload.uploadId,
          PartNumber: partNumber,
          ContentLength: size,
          Body: source.readable,
        }),
        { abortSignal: request.signal },
      );
      if (!uploaded.ETag) throw new Error(`${what}: UploadPart returned no ETag`);
      return { partNumber, etag: uploaded.ETag, ...(uploaded.ChecksumCRC32 && { checksum: uploaded.ChecksumCRC32 }) };
    } catch (error) {
      // The body's own error (upstream, a wrong length) wins over the SDK's report of the broken request.
      if (source.failure) throw source.failure.error;
      throw toDomainError(error, what);
    } finally {
      source.release();
    }
  }

  async complete(upload: PartUpload, parts: readonly UploadedPart[], options: { ifAbsent?: boolean } = {}): Promise<ObjectInfo> {
    // s3rver ignores If-None-Match: the HEAD refuses sequential overwrites there too.
    if (options.ifAbsent && (await this.head(upload.key))) throw new ObjectExistsError(upload.key);
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.s3KeyOf(upload.key),
          UploadId: upload.uploadId,
          MultipartUpload: {
            Parts: parts.map((part) => ({
              PartNumber: part.partNumber,
              ETag: part.etag,
              ...(part.checksum && { ChecksumCRC32: part.checksum }),
            })),
          },
          ...(options.ifAbsent && { IfNoneMatch: '*' }),
        }),
      );
    } catch (error) {
      const domainError = toDomainError(error, this.describe(upload.key));
      if (options.ifAbsent && domainError instanceof ConflictError) throw new ObjectExistsError(upload.key);
      throw domainError;
    }
    const stored = await this.head(upload.key);
    if (!stored) throw new NotFoundError(`${this.describe(upload.key)} vanished right after its upload was completed`);
    return stored;
  }

  async abort(upload: PartUpload): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.s3KeyOf(upload.key), UploadId: upload.uploadId }),
      );
    } catch (error) {
      const domainError = toDomainError(error, this.describe(upload.key));
      if (!(domainError instanceof NotFoundError)) throw domainError;
    }
  }
}

/** The longest prefix every one of `keys` starts with. */
function commonPrefix(keys: readonly string[]): string {
  let prefix = keys[0] ?? '';
  for (const key of keys) while (!key.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix;
}

/** `body`, failing with IntegrityError (naming `what`) as soon as it holds more than `size` bytes, or at its end when fewer. */
async function* exactly(body: ByteStream, size: number, what: string): AsyncGenerator<Uint8Array> {
  let received = 0;
  for await (const chunk of body) {
    received += chunk.byteLength;
    if (received > size) throw new IntegrityError(what, `received more than the ${size} bytes the part holds`);
    yield chunk;
  }
  if (received < size) throw new IntegrityError(what, `received ${received} bytes, the part holds ${size}`);
}

/**
 * Hands a ByteStream to Upload as a Readable and remembers whether the
 * stream itself threw, so that error (not an SDK one) reaches the caller.
 */
class RecordingSource {
  readonly readable: Readable;
  failure: { error: unknown } | undefined;

  /** `onFailure` runs when the body throws, before the error reaches the reader. */
  private readonly onFailure: () => void;
  constructor(body: ByteStream, onFailure: () => void = () => {}) {
    this.onFailure = onFailure;
    // One chunk of read-ahead: the part being filled is the buffer that matters.
    this.readable = Readable.from(this.recording(body), { highWaterMark: 1 });
    // The failure is recorded and rethrown to the caller; the stream's own 'error' event needs no other listener.
    this.readable.on('error', () => {});
  }

  /** Closes the source when Upload stopped reading early (an S3 failure): no dangling upstream response. */
  release(): void {
    if (!this.readable.destroyed) this.readable.destroy();
  }

  private async *recording(body: ByteStream): AsyncGenerator<Uint8Array> {
    try {
      yield* body;
    } catch (error) {
      this.failure = { error };
      this.onFailure();
      throw error;
    }
  }
}

/** Maps errors raised while the caller reads a GET body (a reset connection) to domain errors. */
async function* guardedBody(stream: Readable | undefined, what: string): ByteStream {
  if (!stream) return;
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } catch (error) {
    throw toDomainError(error, what);
  }
}

interface ObjectMetadata {
  ETag?: string;
  LastModified?: Date;
  ContentType?: string;
}

function toObjectInfo(key: string, metadata: ObjectMetadata, size: number): ObjectInfo {
  return {
    key,
    size,
    etag: metadata.ETag ?? '""',
    lastModified: metadata.LastModified ?? new Date(0),
    ...(metadata.ContentType && { contentType: metadata.ContentType }),
  };
}

/** `bytes 0-99/1234` → its parts; undefined when absent or malformed. */
function parseContentRange(header: string | undefined): { start: number; end: number; size: number } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header ?? '');
  if (!match) return undefined;
  return { start: Number(match[1]), end: Number(match[2]), size: Number(match[3]) };
}

function isRangeNotSatisfiable(error: unknown): boolean {
  const sdk = error as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return sdk?.name === 'InvalidRange' || sdk?.$metadata?.httpStatusCode === 416;
}

function assertRangeShape(key: string, range: ByteRange): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end) {
    throw new RangeError(`range ${start}-${end} is not within ${key}`);
  }
}

function assertValidKey(key: string): void {
  const problem = objectKeyProblem(key);
  if (problem) throw new Error(`invalid object key ${JSON.stringify(key)}: ${problem}`);
}

function normalizePrefix(prefix: string): string {
  if (prefix === '') return '';
  assertValidKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}
