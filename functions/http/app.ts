/**
 * The mirror as a web-standard `Request → Response` app: the same code serves
 * on node:http (one machine) and behind API Gateway (Lambda).
 */
import { SkystreamsError } from '../core/errors.ts';
import { contentTypeOf } from '../core/content-types.ts';
import { keys, type ByteRange, type ByteStream, type Catalog, type ObjectInfo, type ObjectStore } from '../core/ports.ts';
import { catalogSummary, statusReport } from './reports.ts';

export interface AppDeps {
  objects: ObjectStore;
  catalog: Catalog;
  /**
   * Where the detail of a 5xx goes; the client only sees the request id.
   * @default console.error, prefixed with the request id
   */
  log?: (failure: RequestFailure) => void;
  /**
   * How long the set of servable item paths is trusted before the catalog's
   * publications are read again. A path missing from the set is re-checked at
   * once, so a new publication is served from the next request on.
   * @default 1000
   */
  listingTtlMs?: number;
}

/** A request that ended in a 5xx, as the log receives it. */
export interface RequestFailure {
  requestId: string;
  method: string;
  path: string;
  status: number;
  error: unknown;
}

export type App = (request: Request) => Promise<Response>;

const READ_METHODS = new Set(['GET', 'HEAD']);
const ALLOWED_METHODS = [...READ_METHODS].join(', ');
const METADATA_PREFIX = 'streams/';
/** Metadata changes with every generation; items never change under a path. */
const METADATA_CACHE = 'public, max-age=60';
const ITEM_CACHE = 'public, max-age=31536000, immutable';
const DEFAULT_LISTING_TTL_MS = 1000;

export function createApp(deps: AppDeps): App {
  const log = deps.log ?? logToConsole;
  const publishedItems = new PublishedItems(deps.catalog, deps.listingTtlMs ?? DEFAULT_LISTING_TTL_MS);
  return async (request) => {
    let pathname = '';
    try {
      if (!isReadMethod(request.method)) return methodNotAllowed(request.method);
      pathname = new URL(request.url).pathname;
      const path = mirrorPath(pathname);
      if (path === undefined) return badRequest('malformed request path');
      if (path === 'api/v1/status') return json(await statusReport(deps.catalog), 200, {}, request);
      if (path === 'api/v1/images') return json(await catalogSummary(deps.catalog), 200, {}, request);
      if (path.startsWith(METADATA_PREFIX)) return await serveMetadata(deps, path, request);
      if (!path || !(await publishedItems.has(path))) return notFound(path);
      return await serveObject(deps.objects, keys.item(path), request, 'application/octet-stream', ITEM_CACHE);
    } catch (error) {
      return errorResponse(error, (failure) => log({ ...failure, method: request.method, path: pathname }));
    }
  };
}

export function isReadMethod(method: string): boolean {
  return READ_METHODS.has(method);
}

/**
 * The item paths some retained publication lists: only those are served, so
 * bytes a run copied but never published stay private, while clients still
 * reading an older generation's metadata keep getting its items.
 */
class PublishedItems {
  private paths = new Set<string>();
  /** The retained generations `paths` was built from, e.g. `3,2,1`. */
  private generations: string | undefined;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly catalog: Catalog,
    private readonly ttlMs: number,
  ) {}

  async has(path: string): Promise<boolean> {
    if (this.paths.has(path) && Date.now() - this.checkedAt < this.ttlMs) return true;
    await this.refresh();
    return this.paths.has(path);
  }

  /** Concurrent requests share one refresh. */
  private refresh(): Promise<void> {
    this.refreshing ??= this.reload().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async reload(): Promise<void> {
    const publications = await this.catalog.listPublications();
    const generations = publications.map((publication) => publication.generation).join(',');
    if (generations !== this.generations) {
      const paths = new Set<string>();
      for (const publication of publications) {
        for await (const entry of this.catalog.listEntries(publication.generation)) paths.add(entry.path);
      }
      this.paths = paths;
      this.generations = generations;
    }
    this.checkedAt = Date.now();
  }
}

async function serveMetadata(deps: AppDeps, path: string, request: Request): Promise<Response> {
  const current = await deps.catalog.getCurrent();
  if (!current || !current.files.includes(path)) return notFound(path);
  return serveObject(deps.objects, keys.metadata(current, path), request, contentTypeOf(path), METADATA_CACHE);
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

/**
 * `/a/b%3Ac` → `a/b:c` (product names contain `:`, which clients may or may
 * not escape); undefined for a path no mirror file can have: bad
 * percent-encoding, NUL, a backslash, or a `.`/`..` segment once decoded.
 * Empty segments are dropped, so `//x` is `x`.
 */
export function mirrorPath(pathname: string): string | undefined {
  const decoded: string[] = [];
  for (const segment of pathname.split('/')) {
    let text: string;
    try {
      text = decodeURIComponent(segment);
    } catch {
      return undefined;
    }
    if (text.includes('\0') || text.includes('\\')) return undefined;
    if (text.split('/').some((part) => part === '.' || part === '..')) return undefined;
    if (text !== '') decoded.push(text);
  }
  return decoded.join('/');
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

export function methodNotAllowed(method: string): Response {
  return json({ error: `method ${method} not allowed` }, 405, { allow: ALLOWED_METHODS });
}

export function badRequest(problem: string): Response {
  return json({ error: problem }, 400);
}

function notFound(path: string): Response {
  return json({ error: `${path || '/'} is not published here` }, 404);
}

/** What a client may learn of a 5xx: the kind of failure, never the adapter's words. */
const SERVER_ERROR_MESSAGES: Record<number, string> = {
  503: 'temporarily unavailable, retry later',
};

/**
 * 4xx domain errors keep their message (a path, a conflict: safe and useful);
 * anything else is a 5xx whose detail goes to `log` under a request id the
 * client also gets, in the body and in `x-request-id`.
 */
export function errorResponse(error: unknown, log: (failure: Omit<RequestFailure, 'method' | 'path'>) => void): Response {
  const status = error instanceof SkystreamsError ? error.statusCode : 500;
  if (status < 500) return json({ error: (error as Error).message }, status);
  const requestId = crypto.randomUUID();
  log({ requestId, status, error });
  const message = SERVER_ERROR_MESSAGES[status] ?? 'internal error';
  return json({ error: message, requestId }, status, { 'x-request-id': requestId });
}

function logToConsole(failure: RequestFailure): void {
  console.error(`[${failure.requestId}] ${failure.method} ${failure.path} → ${failure.status}:`, failure.error);
}
