/**
 * `POST /api/v1/uploads` (AWS only, IAM-authorized in API Gateway): adds a
 * custom image whose files the operator has already copied into the bucket
 * under `incoming/` (images are far larger than a Lambda payload). Each file
 * is streamed from there to its item key, its size and sha256 checked on
 * the way; then its record is written, the incoming objects removed, and
 * the next scheduled check publishes the image. Apart from the read-only
 * app (functions/http/app.ts): that one is public behind CloudFront, this
 * one writes.
 */
import { INCOMING_PREFIX, validateUpload, type UploadRequest } from '../core/custom-images.ts';
import { ConfigError, ConflictError, FileFormatError, IntegrityError, RequestError } from '../core/errors.ts';
import { objectKeyProblem } from '../core/paths.ts';
import type { Catalog, ObjectStore } from '../core/ports.ts';
import { storeUpload, uploadLimits, type UploadSource } from '../core/uploads.ts';
import { errorBody, errorReply, json, toResponse, type ExposedError, type RequestFailure } from './reply.ts';

export const UPLOADS_ROUTE = '/api/v1/uploads';
const ROUTE_NAME = `POST ${UPLOADS_ROUTE}`;

/**
 * What this route raises about the request: a malformed or invalid body, an
 * incoming file that is missing, a version already stored. The route is for
 * the operator (IAM-authorized), who needs those messages to fix the request.
 */
const UPLOAD_REQUEST_ERRORS: readonly ExposedError[] = [RequestError, ConflictError];

export interface UploadRouteDeps {
  objects: ObjectStore;
  catalog: Catalog;
  /** Uploads are published in re-signed mode only: otherwise every request is refused, storing nothing. */
  resign: boolean;
  /** @default () => new Date() */
  now?: () => Date;
  /** Where the detail of a 5xx goes. @default console.error */
  log?: (failure: RequestFailure) => void;
}

/** One file of the request body: an object already in the bucket, and what its bytes must be. */
export interface IncomingFile {
  ftype: string;
  key: string;
  sha256: string;
  size: number;
}

/** The request body: an upload's metadata, its files given as incoming objects. */
export type UploadBody = Omit<UploadRequest, 'files'> & { files: IncomingFile[] };

/** What a stored upload answers: 202, published by the next sync. */
export interface UploadAccepted {
  product: string;
  version: string;
  items: { item: string; path: string; size: number; sha256: string }[];
  published: string;
}

const METADATA_FIELDS = new Set(['os', 'release', 'arch', 'subarch', 'title', 'label', 'kflavor', 'subarches', 'releaseVersion', 'supportEol']);
const FILE_FIELDS = new Set(['ftype', 'key', 'sha256', 'size']);

/** Reading and validating the body: every ConfigError there is about the request, not the mirror. */
async function asRequestError<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof ConfigError && !(error instanceof RequestError)) throw new RequestError(error.message, { cause: error });
    throw error;
  }
}

export function createUploadRoute(deps: UploadRouteDeps): (request: Request) => Promise<Response> {
  const now = deps.now ?? (() => new Date());
  const log = deps.log ?? ((failure: RequestFailure) => console.error(`[${failure.requestId}] ${failure.method} ${failure.path} → ${failure.status}:`, failure.error));
  return async (request) => {
    const path = new URL(request.url).pathname;
    if (path !== UPLOADS_ROUTE) return toResponse(json(errorBody(404, `${path} is not the uploads route (${UPLOADS_ROUTE})`), 404));
    if (request.method !== 'POST') return toResponse(json(errorBody(405, `method ${request.method} not allowed`), 405, { allow: 'POST' }));
    try {
      if (!deps.resign) {
        return toResponse(
          json(
            errorBody(
              409,
              "custom images are published only in re-signed mode (the stack's resign setting): verbatim mode serves upstream's signed files unchanged and cannot add products to them. Nothing was stored.",
            ),
            409,
          ),
        );
      }
      const { body, upload } = await asRequestError(async () => {
        const body = parseUploadBody(await boundedText(request));
        return { body, upload: validateUpload({ ...body, files: body.files.map((file) => ({ ftype: file.ftype, source: file.key })) }, ROUTE_NAME) };
      });
      const sources = new Map<string, UploadSource>();
      for (const file of upload.files) {
        const incoming = body.files.find((candidate) => candidate.key === file.source)!;
        const found = await deps.objects.head(incoming.key);
        if (!found) throw new RequestError(`${ROUTE_NAME}: ${incoming.key}: no such object in the bucket: copy the file there first (aws s3 cp FILE s3://BUCKET/${incoming.key})`);
        if (found.size !== incoming.size) throw new IntegrityError(incoming.key, `is ${found.size} bytes, the request says ${incoming.size}`);
        sources.set(file.item, {
          size: incoming.size,
          sha256: incoming.sha256,
          open: async () => (await deps.objects.get(incoming.key)).body,
          // Images are gigabytes: the format check reads only their first bytes.
          leading: async (maxBytes) => collect((await deps.objects.get(incoming.key, { range: { start: 0, end: maxBytes - 1 } })).body),
        });
      }
      const record = await storeUpload({ objects: deps.objects, catalog: deps.catalog, now }, upload, sources);
      // Verified and stored under the item keys: the incoming copies have served their purpose.
      for (const file of body.files) await deps.objects.delete(file.key);
      const accepted: UploadAccepted = {
        product: record.product,
        version: record.version,
        items: record.items.map(({ item, path: itemPath, size, sha256 }) => ({ item, path: itemPath, size, sha256 })),
        published: 'by the next sync: the next scheduled check sees the new upload and starts one',
      };
      return toResponse(json(accepted, 202));
    } catch (error) {
      // The client's bytes are not what it promised (or not what their item must be): its mistake to fix, not the mirror's failure.
      if (error instanceof IntegrityError || error instanceof FileFormatError) return toResponse(json(errorBody(422, error.message), 422));
      return toResponse(errorReply(error, (failure) => log({ ...failure, method: request.method, path }), UPLOAD_REQUEST_ERRORS));
    }
  };
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function boundedText(request: Request): Promise<string> {
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength > uploadLimits.requestBytes) {
    throw new ConfigError(`${ROUTE_NAME}: the body is ${bytes.byteLength} bytes, more than ${uploadLimits.requestBytes}: send metadata only, the files go to ${INCOMING_PREFIX} first`);
  }
  return new TextDecoder().decode(bytes);
}

/** The body's shape: ConfigError naming the field for a missing, extra or mistyped one. */
export function parseUploadBody(text: string): UploadBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(`${ROUTE_NAME}: the body is not JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`${ROUTE_NAME}: the body must be a JSON object`);
  const body = parsed as Record<string, unknown>;
  for (const [name, value] of Object.entries(body)) {
    if (name === 'files') continue;
    if (!METADATA_FIELDS.has(name)) throw new ConfigError(`${ROUTE_NAME}: unknown field ${JSON.stringify(name)}`);
    if (typeof value !== 'string') throw new ConfigError(`${ROUTE_NAME}: ${name} must be a string`);
  }
  if (!Array.isArray(body.files) || body.files.length === 0) throw new ConfigError(`${ROUTE_NAME}: files must be a non-empty array of {ftype, key, sha256, size}`);
  const files = body.files.map((value, i): IncomingFile => {
    const at = `files[${i}]`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(`${ROUTE_NAME}: ${at} must be an object`);
    const file = value as Record<string, unknown>;
    for (const name of Object.keys(file)) if (!FILE_FIELDS.has(name)) throw new ConfigError(`${ROUTE_NAME}: ${at}: unknown field ${JSON.stringify(name)}`);
    if (typeof file.ftype !== 'string' || file.ftype === '') throw new ConfigError(`${ROUTE_NAME}: ${at}.ftype is required`);
    if (typeof file.key !== 'string' || !file.key.startsWith(INCOMING_PREFIX) || objectKeyProblem(file.key) !== undefined || file.key === INCOMING_PREFIX) {
      throw new ConfigError(`${ROUTE_NAME}: ${at}.key must be an object key under ${INCOMING_PREFIX}, found ${JSON.stringify(file.key)}`);
    }
    if (typeof file.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(file.sha256)) throw new ConfigError(`${ROUTE_NAME}: ${at}.sha256 must be 64 hex digits`);
    if (typeof file.size !== 'number' || !Number.isSafeInteger(file.size) || file.size < 0) throw new ConfigError(`${ROUTE_NAME}: ${at}.size must be a whole number of bytes`);
    return { ftype: file.ftype, key: file.key, sha256: file.sha256.toLowerCase(), size: file.size };
  });
  const keys = new Set(files.map((file) => file.key));
  if (keys.size !== files.length) throw new ConfigError(`${ROUTE_NAME}: files: the same key is given twice`);
  return { ...(body as unknown as Omit<UploadRequest, 'files'>), files };
}
