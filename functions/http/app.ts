/**
 * The mirror as a web-standard `Request → Response` app: the same code serves
 * on node:http (one machine) and behind API Gateway (Lambda).
 */
import { NotFoundError, SkystreamsError } from '../core/errors.ts';
import { contentTypeOf } from '../core/engine.ts';
import { keys, type ByteRange, type ByteStream, type Catalog, type ObjectInfo, type ObjectStore } from '../core/ports.ts';
import { catalogSummary, statusReport } from './reports.ts';

export interface AppDeps {
  objects: ObjectStore;
  catalog: Catalog;
}

export type App = (request: Request) => Promise<Response>;

const READ_METHODS = new Set(['GET', 'HEAD']);
const METADATA_PREFIX = 'streams/';
/** Metadata changes with every generation; items never change under a path. */
const METADATA_CACHE = 'public, max-age=60';
const ITEM_CACHE = 'public, max-age=31536000, immutable';

export function createApp(deps: AppDeps): App {
  return async (request) => {
    try {
      if (!READ_METHODS.has(request.method)) {
        return json({ error: `method ${request.method} not allowed` }, 405, { allow: 'GET, HEAD' });
      }
      const path = mirrorPath(new URL(request.url).pathname);
      if (path === 'api/v1/status') return json(await statusReport(deps.catalog), 200, {}, request);
      if (path === 'api/v1/images') return json(await catalogSummary(deps.catalog), 200, {}, request);
      if (path.startsWith(METADATA_PREFIX)) return await serveMetadata(deps, path, request);
      return await serveItem(deps, path, request);
    } catch (error) {
      return errorResponse(error);
    }
  };
}

async function serveMetadata(deps: AppDeps, path: string, request: Request): Promise<Response> {
  const current = await deps.catalog.getCurrent();
  if (!current || !current.files.includes(path)) return notFound(path);
  return serveObject(deps.objects, keys.metadata(current, path), request, contentTypeOf(path), METADATA_CACHE);
}

async function serveItem(deps: AppDeps, path: string, request: Request): Promise<Response> {
  if (!path || !(await deps.catalog.getObject(path))) return notFound(path);
  return serveObject(deps.objects, keys.item(path), request, 'application/octet-stream', ITEM_CACHE);
}

async function serveObject(
  objects: ObjectStore,
  key: string,
  request: Request,
  contentType: string,
  cacheControl: string,
): Promise<Response> {
  const info = await objects.head(key);
  if (!info) return notFound(key);
  const headers = new Headers({
    'content-type': contentType,
    'cache-control': cacheControl,
    etag: info.etag,
    'last-modified': info.lastModified.toUTCString(),
    'accept-ranges': 'bytes',
  });
  if (notModified(request, info)) return new Response(null, { status: 304, headers });

  const range = requestedRange(request, info);
  if (range === 'unsatisfiable') {
    headers.set('content-range', `bytes */${info.size}`);
    return new Response(null, { status: 416, headers });
  }
  const status = range ? 206 : 200;
  headers.set('content-length', String(range ? range.end - range.start + 1 : info.size));
  if (range) headers.set('content-range', `bytes ${range.start}-${range.end}/${info.size}`);
  if (request.method === 'HEAD' || info.size === 0) return new Response(null, { status, headers });
  const object = await objects.get(key, range ? { range } : undefined);
  return new Response(toWebStream(object.body), { status, headers });
}

function notModified(request: Request, info: ObjectInfo): boolean {
  const ifNoneMatch = request.headers.get('if-none-match');
  // If-None-Match uses the weak comparison (RFC 9110 §13.1.2): `W/"x"` matches `"x"`.
  if (ifNoneMatch) return ifNoneMatch.split(',').some((tag) => tag.trim() === '*' || opaqueTag(tag) === opaqueTag(info.etag));
  const ifModifiedSince = request.headers.get('if-modified-since');
  if (!ifModifiedSince) return false;
  const since = Date.parse(ifModifiedSince);
  return !Number.isNaN(since) && Math.floor(info.lastModified.getTime() / 1000) * 1000 <= since;
}

function opaqueTag(tag: string): string {
  const trimmed = tag.trim();
  return trimmed.startsWith('W/') ? trimmed.slice(2) : trimmed;
}

/** One `bytes=` range (RFC 9110); several ranges, or an If-Range that no longer matches, get the whole file. */
export function requestedRange(request: Request, info: ObjectInfo): ByteRange | 'unsatisfiable' | undefined {
  const header = request.headers.get('range');
  if (!header) return undefined;
  const ifRange = request.headers.get('if-range');
  if (ifRange && ifRange !== info.etag) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || info.size === 0) return 'unsatisfiable';
    return { start: Math.max(0, info.size - suffix), end: info.size - 1 };
  }
  const start = Number(first);
  if (start >= info.size) return 'unsatisfiable';
  const end = last === '' ? info.size - 1 : Math.min(Number(last), info.size - 1);
  if (end < start) return undefined;
  return { start, end };
}

/** `/a/b%3Ac` → `a/b:c`; product names contain `:`, which clients may or may not escape. */
function mirrorPath(pathname: string): string {
  const segments = pathname.split('/').filter((segment) => segment !== '');
  return segments
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        return segment;
      }
    })
    .join('/');
}

function toWebStream(body: ByteStream): ReadableStream<Uint8Array> {
  if (body instanceof ReadableStream) return body as ReadableStream<Uint8Array>;
  const iterator = body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}

function json(body: unknown, status: number, extra: Record<string, string> = {}, request?: Request): Response {
  const text = JSON.stringify(body, null, 2);
  const headers = { 'content-type': 'application/json', 'cache-control': 'no-store', ...extra };
  return new Response(request?.method === 'HEAD' ? null : text, { status, headers });
}

function notFound(path: string): Response {
  return json({ error: `${path || '/'} is not published here` }, 404);
}

function errorResponse(error: unknown): Response {
  if (error instanceof NotFoundError) return json({ error: error.message }, 404);
  if (error instanceof SkystreamsError) return json({ error: error.message }, error.statusCode);
  return json({ error: 'internal error' }, 500);
}
