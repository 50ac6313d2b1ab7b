/**
 * The mirror's routing rules, in one place. `resolve` turns a request into a
 * Reply; the app itself is the web-standard `Request → Response` face of it
 * (behind API Gateway in a Lambda, and in tests), while node:http writes a
 * Reply straight to the socket (functions/local/server.ts).
 */
import { mirrorPathProblem } from '../core/paths.ts';
import { PUBLISHED_KEYRING, PUBLISHED_KEYRING_ARMORED } from '../core/published-files.ts';
import { CHANNEL_NAME, CHANNELS_PATH_PREFIX, DEFAULT_CHANNEL, keys, type ByteRange, type Catalog, type ObjectInfo, type ObjectStore } from '../core/ports.ts';
import { CurrentPublication, METADATA_CACHE, MetadataFiles, objectHeaders, type HeldFile } from './current-metadata.ts';
import { packageRouteReply } from './package-routes.ts';
import { PublishedItems } from './published-items.ts';
import { syncDefaults, UBUNTU_CLOUDIMAGE_KEYRING } from '../core/settings.ts';
import { OPENAPI_DOCUMENT } from './openapi.ts';
import { catalogSummary, pageReportForClients, reportForClients, statusPageReport, statusReport, type StatusOptions } from './reports.ts';
import { errorReply, html, json, methodNotAllowed, badRequest, notFound, toResponse, type Reply, type RequestFailure } from './reply.ts';
import { STATUS_PAGE_CSP, renderStatusPage } from './status-page.ts';

export { badRequest, errorReply, methodNotAllowed, type Reply, type RequestFailure } from './reply.ts';

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
  /**
   * The keyring the status page's MAAS command names while the mirror
   * serves upstream's signatures (a re-signed publication's command names
   * the mirror's own keyring, which it serves at /keyring.gpg).
   * @default the Ubuntu cloud image keyring's path on a MAAS region controller
   */
  keyringFilename?: string;
  /**
   * Upstream metadata older than this makes the status page and
   * `/api/v1/status` report the mirror stale; 0 turns the rule off.
   * @default syncDefaults.staleAfterMs
   */
  staleAfterMs?: number;
  /**
   * Time between the syncs of the schedule feeding this mirror: stale too
   * once no check succeeded for three of them.
   * @default undefined: not scheduled, so the rule does not apply
   */
  syncIntervalMs?: number;
  /** @default () => new Date() */
  now?: () => Date;
}

/** A request as `resolve` reads it, whatever server received it. */
export interface AppRequest {
  method: string;
  /** The target's path, still percent-encoded, without the query: `/streams/v1/a%3Ab.sjson`. */
  pathname: string;
  /** A request header by lower-case name. */
  header(name: string): string | undefined;
}

export interface App {
  (request: Request): Promise<Response>;
  /** The reply to `request`; never throws (failures become 5xx replies, logged). */
  resolve(request: AppRequest): Promise<Reply>;
  /** The paths answered whatever is published (`''` is `/`), for the API contract's test. */
  readonly routes: readonly string[];
}

const READ_METHODS = new Set(['GET', 'HEAD']);
const METADATA_PREFIX = 'streams/';
const API_PREFIX = 'api/v1/';
/** Items never change under a path. */
const ITEM_CACHE = 'public, max-age=31536000, immutable';
const ITEM_TYPE = 'application/octet-stream';
const DEFAULT_LISTING_TTL_MS = 1000;
/** How often the status page reloads while a sync runs. */
const STATUS_PAGE_REFRESH_SECONDS = 5;

/** A route answered the same whatever else is published: the status page and the JSON API. */
type FixedRoute = (request: AppRequest) => Promise<Reply>;

export function createApp(deps: AppDeps): App {
  const log = deps.log ?? logToConsole;
  const now = deps.now ?? (() => new Date());
  const publishedItems = new PublishedItems(deps.catalog, deps.listingTtlMs ?? DEFAULT_LISTING_TTL_MS, now);
  const channels = new ServedChannels(deps);

  const statusOptions = (at: Date): StatusOptions => ({
    now: at,
    staleAfterMs: deps.staleAfterMs ?? syncDefaults.staleAfterMs,
    syncIntervalMs: deps.syncIntervalMs,
  });
  const fixedRoutes: Record<string, FixedRoute> = {
    '': async (request) => {
      const at = now();
      return html(
        renderStatusPage(pageReportForClients(await statusPageReport(deps.objects, deps.catalog, statusOptions(at))), {
          mirrorUrl: requestBaseUrl(request),
          keyringFilename: deps.keyringFilename ?? UBUNTU_CLOUDIMAGE_KEYRING,
          now: at,
          refreshSeconds: STATUS_PAGE_REFRESH_SECONDS,
        }),
        { 'content-security-policy': STATUS_PAGE_CSP },
        request.method,
      );
    },
    'api/v1/status': async (request) => json(reportForClients(await statusReport(deps.catalog, statusOptions(now()))), 200, {}, request.method),
    'api/v1/images': async (request) => json(await catalogSummary(deps.catalog), 200, {}, request.method),
    'api/v1/openapi.json': async (request) => json(OPENAPI_DOCUMENT, 200, {}, request.method),
  };

  async function route(request: AppRequest, path: string): Promise<Reply> {
    // Own keys only: a path such as `constructor` is an item path, not Object.prototype's.
    if (Object.hasOwn(fixedRoutes, path)) return fixedRoutes[path]!(request);
    if (path.startsWith(API_PREFIX)) {
      const packageReply = await packageRouteReply(deps.catalog, path, request.method);
      if (packageReply) return packageReply;
    }
    const { channel, rest } = channels.of(path);
    if (!channel) return notFound(path);
    if (rest.startsWith(METADATA_PREFIX) || isServedKeyring(rest)) {
      const publication = await channel.current.get();
      if (!publication || !publication.files.includes(rest)) return notFound(path);
      const held = await channel.metadata.get(publication, rest);
      return held ? heldFileReply(held, request) : notFound(path);
    }
    // Items are the same bytes under every channel: any retained generation listing the path will do.
    if (!rest || !(await publishedItems.has(rest))) return notFound(path);
    return objectReply(deps.objects, keys.item(rest), path, request);
  }

  async function resolve(request: AppRequest): Promise<Reply> {
    try {
      if (!isReadMethod(request.method)) return methodNotAllowed(request.method);
      const path = mirrorPath(request.pathname);
      if (path === undefined) return badRequest('malformed request path');
      return await route(request, path);
    } catch (error) {
      return errorReply(error, (failure) => log({ ...failure, method: request.method, path: request.pathname }));
    }
  }

  const app = async (request: Request): Promise<Response> => {
    if (!isReadMethod(request.method)) return toResponse(methodNotAllowed(request.method));
    let pathname: string;
    try {
      pathname = new URL(request.url).pathname;
    } catch (error) {
      return toResponse(errorReply(error, (failure) => log({ ...failure, method: request.method, path: '' })));
    }
    const header = (name: string) => request.headers.get(name) ?? undefined;
    return toResponse(await resolve({ method: request.method, pathname, header }));
  };
  return Object.assign(app, { resolve, routes: Object.keys(fixedRoutes) });
}

/** `Host` or `host:port`: a DNS name, an IPv4 address or a bracketed IPv6 address. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The base URL the client used, from `X-Forwarded-Host`/`Host` and
 * `X-Forwarded-Proto`/`CloudFront-Forwarded-Proto`; undefined when they do not
 * name one. Shown to people only, never used to route or to build a redirect.
 */
export function requestBaseUrl(request: Pick<AppRequest, 'header'>): string | undefined {
  const first = (name: string) => request.header(name)?.split(',')[0]?.trim() || undefined;
  const host = first('x-forwarded-host') ?? first('host');
  if (!host || !HOST.test(host)) return undefined;
  const proto = (first('x-forwarded-proto') ?? first('cloudfront-forwarded-proto') ?? 'http').toLowerCase();
  return `${proto === 'https' ? 'https' : 'http'}://${host}/`;
}

/** What a channel serves from: its pointer, checked in batches, and its generation's metadata in memory. */
interface ServedChannel {
  current: CurrentPublication;
  metadata: MetadataFiles;
}

/**
 * The default channel at `/`, every channel at `/channels/NAME/`. Channels
 * are kept apart so that serving one never evicts another's metadata from
 * memory; only so many are held, so made-up names cannot grow memory.
 */
class ServedChannels {
  private static readonly HELD = 16;
  private readonly held = new Map<string, ServedChannel>();

  private readonly deps: Pick<AppDeps, 'catalog' | 'objects'>;
  constructor(deps: Pick<AppDeps, 'catalog' | 'objects'>) {
    this.deps = deps;
  }

  /** The channel a mirror path is under and the path inside it; no channel for a name that cannot be one. */
  of(path: string): { channel: ServedChannel | undefined; rest: string } {
    if (!path.startsWith(CHANNELS_PATH_PREFIX)) return { channel: this.named(DEFAULT_CHANNEL), rest: path };
    const slash = path.indexOf('/', CHANNELS_PATH_PREFIX.length);
    const name = slash < 0 ? path.slice(CHANNELS_PATH_PREFIX.length) : path.slice(CHANNELS_PATH_PREFIX.length, slash);
    const rest = slash < 0 ? '' : path.slice(slash + 1);
    return { channel: CHANNEL_NAME.test(name) ? this.named(name) : undefined, rest };
  }

  private named(name: string): ServedChannel {
    const held = this.held.get(name);
    if (held) return held;
    const channel = { current: new CurrentPublication(this.deps.catalog, name), metadata: new MetadataFiles(this.deps.objects) };
    if (this.held.size < ServedChannels.HELD) this.held.set(name, channel);
    return channel;
  }
}

/** The public keyring of a re-signed publication: a file of its generation, switched with its metadata. */
function isServedKeyring(path: string): boolean {
  return path === PUBLISHED_KEYRING || path === PUBLISHED_KEYRING_ARMORED;
}

export function isReadMethod(method: string): boolean {
  return READ_METHODS.has(method);
}

/** A metadata file from memory: no store access, headers built once per generation. */
function heldFileReply(held: HeldFile, request: AppRequest): Reply {
  const { info, bytes } = held;
  if (!request.header('range') && !request.header('if-none-match') && !request.header('if-modified-since')) {
    return request.method === 'HEAD' || info.size === 0 ? { status: 200, headers: held.headers } : { status: 200, headers: held.headers, body: bytes };
  }
  const conditional = conditionalReply(request, info, held.headers['content-type']!, METADATA_CACHE);
  if ('reply' in conditional) return conditional.reply;
  const { status, headers, range } = conditional;
  if (request.method === 'HEAD' || info.size === 0) return { status, headers };
  return { status, headers, body: range ? bytes.subarray(range.start, range.end + 1) : bytes };
}

/** An item, streamed from the store; a 404 names the path asked for, never the store's key. */
async function objectReply(objects: ObjectStore, key: string, path: string, request: AppRequest): Promise<Reply> {
  const info = await objects.head(key);
  if (!info) return notFound(path);
  const conditional = conditionalReply(request, info, ITEM_TYPE, ITEM_CACHE);
  if ('reply' in conditional) return conditional.reply;
  const { status, headers, range } = conditional;
  if (request.method === 'HEAD' || info.size === 0) return { status, headers };
  const object = await objects.get(key, range ? { range } : undefined);
  return { status, headers, body: object.body };
}

/** 304 or 416 as `reply`; else the status (200 or 206), headers and range of the bytes to send. */
function conditionalReply(
  request: AppRequest,
  info: ObjectInfo,
  contentType: string,
  cacheControl: string,
): { reply: Reply } | { status: number; headers: Record<string, string>; range: ByteRange | undefined } {
  const headers = objectHeaders(info, contentType, cacheControl);
  if (notModified(request, info)) return { reply: { status: 304, headers } };
  const range = requestedRange(request, info);
  if (range === 'unsatisfiable') return { reply: { status: 416, headers: { ...headers, 'content-range': `bytes */${info.size}` } } };
  headers['content-length'] = String(range ? range.end - range.start + 1 : info.size);
  if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${info.size}`;
  return { status: range ? 206 : 200, headers, range };
}

function notModified(request: AppRequest, info: ObjectInfo): boolean {
  const ifNoneMatch = request.header('if-none-match');
  // If-None-Match uses the weak comparison (RFC 9110 §13.1.2): `W/"x"` matches `"x"`.
  if (ifNoneMatch) return ifNoneMatch.split(',').some((tag) => tag.trim() === '*' || opaqueTag(tag) === opaqueTag(info.etag));
  const ifModifiedSince = request.header('if-modified-since');
  if (!ifModifiedSince) return false;
  const since = Date.parse(ifModifiedSince);
  return !Number.isNaN(since) && Math.floor(info.lastModified.getTime() / 1000) * 1000 <= since;
}

function opaqueTag(tag: string): string {
  const trimmed = tag.trim();
  return trimmed.startsWith('W/') ? trimmed.slice(2) : trimmed;
}

/** One `bytes=` range (RFC 9110); several ranges, or an If-Range that no longer matches, get the whole file. */
export function requestedRange(request: Pick<AppRequest, 'header'>, info: ObjectInfo): ByteRange | 'unsatisfiable' | undefined {
  const header = request.header('range');
  if (!header) return undefined;
  const ifRange = request.header('if-range');
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

/** Non-empty segments of unreserved characters (and `:`), none starting with a dot. */
const PLAIN_PATH = /^(?:\/[\w:~-][\w.:~-]*)+$/;

/**
 * `/a/b%3Ac` → `a/b:c` (product names contain `:`, which clients may or may
 * not escape); undefined for a path no mirror file can have: bad
 * percent-encoding, or a decoded path that `mirrorPathProblem` (the rule
 * sync applies to upstream paths) refuses. Empty segments are dropped, so
 * `//x` is `x`.
 */
export function mirrorPath(pathname: string): string | undefined {
  // Most paths need no decoding and hold no dot segment: only their lengths are left to check.
  const path = PLAIN_PATH.test(pathname) ? pathname.slice(1) : decodedPath(pathname);
  if (path === undefined) return undefined;
  // The empty path is the site root (the status page), not a file.
  return path === '' || mirrorPathProblem(path) === undefined ? path : undefined;
}

function decodedPath(pathname: string): string | undefined {
  const decoded: string[] = [];
  for (const segment of pathname.split('/')) {
    let text: string;
    try {
      text = decodeURIComponent(segment);
    } catch {
      return undefined;
    }
    if (text !== '') decoded.push(text);
  }
  return decoded.join('/');
}

function logToConsole(failure: RequestFailure): void {
  console.error(`[${failure.requestId}] ${failure.method} ${failure.path} → ${failure.status}:`, failure.error);
}
