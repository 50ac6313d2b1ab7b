/**
 * A simplestreams source over HTTP(S), with node:http and node:https.
 *
 * Not the platform fetch: an item body read through fetch's web stream costs
 * a ReadableStream read, several promise turns and a fresh chunk object per
 * 16-64 KiB, which for a gigabyte image adds up to more CPU than hashing it.
 * Here every socket read reaches the consumer as the Buffer it arrived in.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { ConfigError, InputTooLargeError, NotFoundError, RangeNotSupportedError, SkystreamsError, UpstreamError } from '../../core/errors.ts';
import type { ByteRange, ByteStream, FetchedFile, FetchLimits, Upstream, Validators } from '../../core/ports.ts';
import { redactUrl, splitCredentials } from '../../core/redact.ts';
import { syncDefaults, type MinItemRate } from '../../core/settings.ts';
import { ProxyRoutes, type ProxyEnvironment } from './proxy.ts';

export interface HttpUpstreamOptions {
  /** Per metadata file: every redirect and the whole body. @default 60 s */
  metadataTimeoutMs?: number;
  /** Metadata files larger than this are refused rather than buffered, unless fetchFile is given its own limit. @default 256 MiB */
  maxMetadataBytes?: number;
  /** Until an item's response headers arrive, redirects included. @default 60 s */
  itemHeadersTimeoutMs?: number;
  /** An item download fails (transiently) once no byte has arrived for this long. @default syncDefaults.itemIdleTimeoutMs */
  itemIdleTimeoutMs?: number;
  /** An item download slower than this, over a window of waiting for it, fails (transiently). @default syncDefaults.minItemRate */
  minItemRate?: MinItemRate;
  /** Follow redirects to another scheme, host or port. @default syncDefaults.allowCrossHostRedirects */
  allowCrossHostRedirects?: boolean;
  userAgent?: string;
  /** Read once, here: https_proxy, http_proxy, no_proxy and their upper-case forms. @default process.env */
  proxyEnv?: ProxyEnvironment;
  /** Certificate authorities trusted for HTTPS upstreams instead of Node's bundled ones. @default Node's bundled ones */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Told the size of every chunk of item body received (the entry points' memory policy hooks in here). @default none */
  onBodyBytes?: (bytes: number) => void;
}

/** More than this many redirects for one file is a misconfigured (or hostile) upstream. */
export const MAX_REDIRECTS = 5;

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export class HttpUpstream implements Upstream {
  /** Where requests go: without credentials, which are sent as a header instead. */
  private readonly requestBase: string;
  /** What messages show: credentials redacted. */
  private readonly shownBase: string;
  private readonly origin: string;
  private readonly authorization: string | undefined;
  private readonly metadataTimeoutMs: number;
  private readonly maxMetadataBytes: number;
  private readonly itemHeadersTimeoutMs: number;
  private readonly itemIdleTimeoutMs: number;
  private readonly minItemRate: MinItemRate;
  private readonly allowCrossHostRedirects: boolean;
  private readonly userAgent: string;
  private readonly routes: ProxyRoutes;
  private readonly onBodyBytes: ((bytes: number) => void) | undefined;

  constructor(baseUrl: string, options: HttpUpstreamOptions = {}) {
    const withSlash = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
    const { url, credentials } = splitCredentials(withSlash);
    this.requestBase = url;
    this.shownBase = redactUrl(withSlash);
    try {
      this.origin = new URL(url).origin;
    } catch {
      throw new ConfigError(`upstream ${JSON.stringify(this.shownBase)} is not a URL`);
    }
    this.authorization = credentials
      ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`
      : undefined;
    this.metadataTimeoutMs = options.metadataTimeoutMs ?? 60_000;
    this.maxMetadataBytes = options.maxMetadataBytes ?? 256 * 1024 * 1024;
    this.itemHeadersTimeoutMs = options.itemHeadersTimeoutMs ?? 60_000;
    this.itemIdleTimeoutMs = options.itemIdleTimeoutMs ?? syncDefaults.itemIdleTimeoutMs;
    this.minItemRate = options.minItemRate ?? syncDefaults.minItemRate;
    this.allowCrossHostRedirects = options.allowCrossHostRedirects ?? syncDefaults.allowCrossHostRedirects;
    this.userAgent = options.userAgent ?? 'skystreams';
    // A tunnel still being built ignores the deadline's destroy: it is bounded by the shorter deadline itself.
    this.routes = new ProxyRoutes(options.proxyEnv ?? process.env, { ca: options.ca, connectTimeoutMs: Math.min(this.metadataTimeoutMs, this.itemHeadersTimeoutMs) });
    this.onBodyBytes = options.onBodyBytes;
  }

  url(path: string): string {
    return this.shownBase + encodePath(path);
  }

  async fetchFile(path: string, validators?: Validators, limits?: FetchLimits): Promise<FetchedFile> {
    const shown = this.url(path);
    // Metadata compresses well; items are sent as they are stored (their digests are of those bytes).
    const headers: Record<string, string> = { 'accept-encoding': 'gzip, deflate, br' };
    if (validators?.etag) headers['if-none-match'] = validators.etag;
    if (validators?.lastModified) headers['if-modified-since'] = validators.lastModified;
    const limit = limits?.maxBytes === undefined
      ? { bytes: this.maxMetadataBytes, name: 'maxMetadataBytes' }
      : { bytes: limits.maxBytes, name: 'maxBytes' };
    const deadline = new Deadline(this.metadataTimeoutMs, () => new UpstreamError(shown, `no complete answer within ${this.metadataTimeoutMs} ms`));
    let exchange: Exchange | undefined;
    try {
      exchange = await this.request(path, headers, deadline);
      if (exchange.response.statusCode === 304) {
        exchange.response.resume(); // No body: the connection goes back to the pool.
        return { notModified: true };
      }
      const bytes = await readBounded(shown, exchange, limit, deadline);
      const { etag, 'last-modified': lastModified } = exchange.response.headers;
      return { notModified: false, bytes, validators: dropEmpty({ etag, lastModified }) };
    } catch (error) {
      // Closes the connection: a refused or broken body must not keep streaming in.
      exchange?.request.destroy();
      throw error;
    } finally {
      deadline.clear();
    }
  }

  async openStream(path: string): Promise<{ body: ByteStream; size?: number }> {
    const exchange = await this.openItem(path, {});
    const length = exchange.response.headers['content-length'];
    return {
      body: this.itemBody(path, exchange),
      size: length === undefined ? undefined : Number(length),
    };
  }

  async openRange(path: string, range: ByteRange): Promise<{ body: ByteStream; size: number }> {
    const shown = this.url(path);
    const asked = `bytes ${range.start}-${range.end}`;
    const exchange = await this.openItem(path, { range: `bytes=${range.start}-${range.end}` });
    const { response } = exchange;
    const refuse = (error: Error) => {
      exchange.request.destroy();
      return error;
    };
    if (response.statusCode !== 206) {
      throw refuse(new RangeNotSupportedError(shown, `answered HTTP ${response.statusCode} to a request for ${asked}, not 206 Partial Content: this upstream does not serve byte ranges, which an item this large needs`));
    }
    const contentRange = response.headers['content-range'];
    const served = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange ?? '');
    if (!served || Number(served[1]) !== range.start || Number(served[2]) !== range.end) {
      throw refuse(new UpstreamError(shown, `asked for ${asked}, got Content-Range ${JSON.stringify(contentRange ?? null)}`));
    }
    return { body: this.itemBody(path, exchange), size: Number(served[3]) };
  }

  /** An item's response, once its headers have arrived within the item header timeout. */
  private async openItem(path: string, headers: Record<string, string>): Promise<Exchange> {
    const shown = this.url(path);
    const deadline = new Deadline(this.itemHeadersTimeoutMs, () => new UpstreamError(shown, `no response headers within ${this.itemHeadersTimeoutMs} ms`));
    try {
      const exchange = await this.request(path, { ...headers, 'accept-encoding': 'identity' }, deadline);
      const encoding = contentEncoding(exchange.response);
      if (encoding !== undefined) {
        exchange.request.destroy();
        throw new UpstreamError(shown, `answered with Content-Encoding ${encoding} to a request for the bytes as stored (identity)`);
      }
      return exchange;
    } finally {
      deadline.clear();
    }
  }

  private itemBody(path: string, exchange: Exchange): ByteStream {
    const chunks = guardBody(this.url(path), exchange, { idleMs: this.itemIdleTimeoutMs, minRate: this.minItemRate }, this.onBodyBytes);
    // A generator's return() before its first next() skips its finally: a consumer that gives
    // the body up unread (a store refusing the put) must still close the connection.
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => chunks.next(),
        return: () => {
          exchange.request.destroy();
          return chunks.return(undefined);
        },
      }),
    };
  }

  /** GET, following redirects by hand so their number and destination stay ours to decide. */
  private async request(path: string, extraHeaders: Record<string, string>, deadline: Deadline): Promise<Exchange> {
    const shown = this.url(path);
    let target = new URL(this.requestBase + encodePath(path));
    const visited = new Set([target.href]);
    for (let redirects = 0; ; redirects++) {
      const exchange = await this.send(shown, target, redirects > 0, extraHeaders, deadline);
      const { response } = exchange;
      if (!REDIRECT_STATUSES.has(response.statusCode ?? 0)) return checkStatus(shown, redirects > 0 ? target : undefined, exchange);
      // A redirect's body is not read: closing its connection costs less than trusting its length.
      exchange.request.destroy();
      const next = redirectTarget(shown, target, response);
      const hop = `${redactUrl(target.href)} redirects to ${redactUrl(next.href)}`;
      if (next.origin !== this.origin && !this.allowCrossHostRedirects) {
        throw new UpstreamError(shown, `${hop}, another origin: refused (allowCrossHostRedirects is off)`);
      }
      if (visited.has(next.href)) throw new UpstreamError(shown, `redirect loop: ${hop}, already visited`);
      if (redirects === MAX_REDIRECTS) throw new UpstreamError(shown, `more than ${MAX_REDIRECTS} redirects: ${hop}`);
      visited.add(next.href);
      target = next;
    }
  }

  /** One GET of `target`: its response once the headers are in, or UpstreamError (or the deadline's error). */
  private send(shown: string, target: URL, redirected: boolean, extraHeaders: Record<string, string>, deadline: Deadline): Promise<Exchange> {
    const route = this.routes.route(target);
    const headers: Record<string, string> = { ...extraHeaders, ...route.headers, 'user-agent': this.userAgent };
    // The source's credentials are for the source: never handed to a host it redirects to.
    if (this.authorization && target.origin === this.origin) headers.authorization = this.authorization;
    return new Promise((resolve, reject) => {
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      const request = send(target, { ...route.options, headers });
      // Stays attached for the life of the request: an error after the response (a reset, a
      // destroy) reaches the body reader through the response, and must not go unhandled here.
      request.on('error', (error) => {
        if (deadline.expired) return reject(deadline.expired);
        if (error instanceof SkystreamsError) return reject(error);
        const via = redirected ? ` (at ${redactUrl(target.href)})` : '';
        reject(new UpstreamError(shown, `request failed${via}: ${describe(error)}`, { cause: error }));
      });
      request.once('response', (response) => {
        const refused = route.refusal(response);
        if (refused === undefined) return resolve({ request, response });
        request.destroy();
        reject(new UpstreamError(shown, refused));
      });
      deadline.watch(request);
      request.end();
    });
  }
}

/** A request and its response, headers in, body not yet read. Destroying the request closes the connection. */
interface Exchange {
  request: ClientRequest;
  response: IncomingMessage;
}

/** Ends the request in flight with an error of its own once `ms` have passed, redirects included. */
class Deadline {
  expired: UpstreamError | undefined;
  private active: ClientRequest | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(ms: number, error: () => UpstreamError) {
    this.timer = setTimeout(() => {
      this.expired = error();
      this.active?.destroy(this.expired);
    }, ms);
  }

  watch(request: ClientRequest): void {
    this.active = request;
    if (this.expired) request.destroy(this.expired);
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

function redirectTarget(shown: string, from: URL, response: IncomingMessage): URL {
  const location = response.headers.location;
  if (location === undefined) throw new UpstreamError(shown, `HTTP ${response.statusCode} from ${redactUrl(from.href)} without a Location`);
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new UpstreamError(shown, `${redactUrl(from.href)} redirects to ${JSON.stringify(redactUrl(location))}, not a URL`);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new UpstreamError(shown, `${redactUrl(from.href)} redirects to ${redactUrl(next.href)}: only http and https are followed`);
  }
  // Credentials a Location carries are not ours to send.
  next.username = '';
  next.password = '';
  return next;
}

/** `redirectedTo`: where the answer came from, when that is not `shown`. */
function checkStatus(shown: string, redirectedTo: URL | undefined, exchange: Exchange): Exchange {
  const { statusCode, statusMessage } = exchange.response;
  if (statusCode === 200 || statusCode === 206 || statusCode === 304) return exchange;
  exchange.request.destroy();
  const where = redirectedTo ? ` (at ${redactUrl(redirectedTo.href)})` : '';
  if (statusCode === 404) throw new NotFoundError(`${shown}: 404 Not Found${where}`);
  throw new UpstreamError(shown, `HTTP ${statusCode} ${statusMessage ?? ''}${where}`.trimEnd());
}

/** The response's Content-Encoding, lower-cased; undefined when the body is sent as it is (none, or identity). */
function contentEncoding(response: IncomingMessage): string | undefined {
  const encoding = response.headers['content-encoding']?.trim().toLowerCase();
  return encoding === undefined || encoding === '' || encoding === 'identity' ? undefined : encoding;
}

/** The body decoded as its Content-Encoding says; a decoder failing on corrupt data fails the read. */
function decodedBody(shown: string, response: IncomingMessage): Readable {
  const encoding = contentEncoding(response);
  if (encoding === undefined) return response;
  const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip()
    : encoding === 'deflate' ? createInflate()
    : encoding === 'br' ? createBrotliDecompress()
    : undefined;
  if (!decoder) throw new UpstreamError(shown, `answered with Content-Encoding ${encoding}, which was not asked for`);
  response.on('error', (error) => decoder.destroy(error));
  response.pipe(decoder);
  return decoder;
}

/**
 * The whole body in one buffer, refused as soon as more than `limit` bytes
 * arrive (decoded), announced or not. A body whose length is announced is
 * copied into a buffer of that size as it arrives, so it is held once; one of
 * unknown length grows into a buffer that doubles.
 */
async function readBounded(
  shown: string,
  exchange: Exchange,
  limit: { bytes: number; name: string },
  deadline: Deadline,
): Promise<Uint8Array> {
  const { response } = exchange;
  const tooLarge = (what: string) =>
    new InputTooLargeError(shown, limit.bytes, `${what}, over the ${limit.bytes}-byte limit (${limit.name}): refused`);
  const declared = response.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit.bytes) throw tooLarge(`announces ${declared} bytes`);
  const announced = announcedLength(response);
  let buffer: Uint8Array = new Uint8Array(announced ?? Math.min(limit.bytes, UNKNOWN_LENGTH_START));
  let received = 0;
  const chunks = bodyChunks(decodedBody(shown, response));
  for (;;) {
    let result: IteratorResult<Buffer>;
    try {
      result = await chunks.next();
    } catch (error) {
      if (deadline.expired) throw deadline.expired;
      if (error instanceof SkystreamsError) throw error;
      throw new UpstreamError(shown, `reading the body failed: ${describe(error)}`, { cause: error });
    }
    if (result.done) break;
    const end = received + result.value.byteLength;
    if (end > limit.bytes) throw tooLarge(`more than ${limit.bytes} bytes arrived`);
    if (announced !== undefined && end > announced) throw new UpstreamError(shown, `more than the ${announced} bytes it announced arrived`);
    if (end > buffer.byteLength) buffer = grown(buffer, received, end, limit.bytes);
    buffer.set(result.value, received);
    received = end;
  }
  if (announced !== undefined && received < announced) {
    throw new UpstreamError(shown, `the body ended after ${received} of the ${announced} bytes it announced`);
  }
  // Not copied to fit: the unused tail of a grown buffer was never written, so it costs address space, not memory.
  return received === buffer.byteLength ? buffer : buffer.subarray(0, received);
}

/** Where a body of unknown length starts: most metadata files are smaller. */
const UNKNOWN_LENGTH_START = 64 * 1024;

/** Content-Length, when it counts the bytes the body will yield: a content-encoded body is decoded to a length it does not announce. */
function announcedLength(response: IncomingMessage): number | undefined {
  const length = response.headers['content-length'];
  if (length === undefined || contentEncoding(response) !== undefined) return undefined;
  const bytes = Number(length);
  return Number.isSafeInteger(bytes) && bytes >= 0 ? bytes : undefined;
}

/** `buffer` with its first `used` bytes, in room for at least `needed`, at most `limit`. */
function grown(buffer: Uint8Array, used: number, needed: number, limit: number): Uint8Array {
  const next = new Uint8Array(Math.min(limit, Math.max(needed, buffer.byteLength * 2)));
  next.set(buffer.subarray(0, used));
  return next;
}

/** Bytes received but not yet taken that pause the socket: TCP then holds the sender back. */
const QUEUED_BYTES_HIGH = 1024 * 1024;

/**
 * The chunks of `body` as they arrived, each the Buffer of one socket read
 * (a Readable's own async iterator concatenates what is buffered, a copy).
 * Ends when the body ends; throws when it fails or closes before its end.
 * `onWait(true)` is called while the consumer waits for bytes, `onWait(false)`
 * when they come.
 */
async function* bodyChunks(body: Readable, onWait?: (waiting: boolean) => void): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let queuedBytes = 0;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const waiting = wake;
    wake = undefined;
    waiting?.();
  };
  body.on('data', (chunk: Buffer) => {
    queue.push(chunk);
    queuedBytes += chunk.byteLength;
    if (queuedBytes >= QUEUED_BYTES_HIGH) body.pause();
    notify();
  });
  body.on('end', () => {
    ended = true;
    notify();
  });
  body.on('error', (error: Error) => {
    failure ??= error;
    notify();
  });
  body.on('close', () => {
    if (!ended) failure ??= new Error('the connection closed before the body ended');
    notify();
  });
  for (;;) {
    const chunk = queue.shift();
    if (chunk) {
      queuedBytes -= chunk.byteLength;
      if (queuedBytes < QUEUED_BYTES_HIGH && body.isPaused()) body.resume();
      yield chunk;
      continue;
    }
    if (failure) throw failure;
    if (ended) return;
    onWait?.(true);
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    onWait?.(false);
  }
}

/**
 * The body as a ByteStream that fails with UpstreamError (transient, for the
 * engine's retry) on a broken connection, once no byte has arrived for
 * `idleMs`, or once a window of `minRate.windowMs` spent waiting for upstream
 * brought fewer bytes than `minRate.bytesPerSecond` asks for; and closes the
 * connection whenever it stops before the end. Only time spent waiting for
 * upstream counts: a slow consumer is neither idle nor slow upstream.
 *
 * The rate guard lives here, beside the idle timeout, rather than in the
 * engine: only the adapter sees when the consumer waits on the socket, so
 * only it can tell a slow upstream from a slow store. Other upstreams (an
 * export bundle on disk) cannot trickle.
 */
async function* guardBody(
  shown: string,
  exchange: Exchange,
  limits: { idleMs: number; minRate: MinItemRate },
  onBodyBytes: ((bytes: number) => void) | undefined,
): AsyncGenerator<Uint8Array, void, undefined> {
  const { idleMs, minRate } = limits;
  let complete = false;
  let waiting = false;
  let stalled: UpstreamError | undefined;
  // One timer for the whole body, re-armed per wait: a timer per chunk costs more than the chunk.
  const idle: NodeJS.Timeout = setTimeout(() => {
    if (!waiting) {
      idle.refresh();
      return;
    }
    stalled = new UpstreamError(shown, `download stalled: no data for ${idleMs} ms`);
    exchange.request.destroy(stalled);
  }, idleMs);
  const rate = new RateWindow(minRate);
  const chunks = bodyChunks(exchange.response, (now) => {
    waiting = now;
    if (now) idle.refresh();
    rate.waiting(now);
  });
  try {
    for (;;) {
      let result: IteratorResult<Buffer>;
      try {
        result = await chunks.next();
      } catch (error) {
        if (stalled) throw stalled;
        if (error instanceof SkystreamsError) throw error;
        throw new UpstreamError(shown, `download interrupted: ${describe(error)}`, { cause: error });
      }
      if (result.done) {
        complete = true;
        return;
      }
      const tooSlow = rate.received(result.value.byteLength);
      if (tooSlow) throw new UpstreamError(shown, tooSlow);
      onBodyBytes?.(result.value.byteLength);
      yield result.value;
    }
  } finally {
    clearTimeout(idle);
    if (!complete) exchange.request.destroy();
  }
}

/**
 * Bytes against time spent waiting for them, in consecutive windows of
 * `windowMs` of waiting. Checked as bytes arrive: a wait with none at all
 * is the idle timeout's to end.
 */
class RateWindow {
  private bytes = 0;
  private waitedMs = 0;
  private waitStartedAt: number | undefined;
  private readonly minRate: MinItemRate;

  constructor(minRate: MinItemRate) {
    this.minRate = minRate;
  }

  waiting(now: boolean): void {
    if (now) {
      this.waitStartedAt = performance.now();
    } else if (this.waitStartedAt !== undefined) {
      this.waitedMs += performance.now() - this.waitStartedAt;
      this.waitStartedAt = undefined;
    }
  }

  /** The problem, when the window just closed below the minimum; undefined otherwise. */
  received(bytes: number): string | undefined {
    if (this.minRate.bytesPerSecond <= 0) return undefined;
    this.bytes += bytes;
    if (this.waitedMs < this.minRate.windowMs) return undefined;
    const measured = (this.bytes * 1000) / this.waitedMs;
    const { bytesPerSecond, windowMs } = this.minRate;
    const waited = Math.round(this.waitedMs);
    this.bytes = 0;
    this.waitedMs = 0;
    if (measured >= bytesPerSecond) return undefined;
    return `download too slow: ${formatRate(measured)} over ${waited} ms of waiting, below the minimum of ${formatRate(bytesPerSecond)} (over ${windowMs} ms)`;
  }
}

function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond >= 1024 * 1024) return `${(bytesPerSecond / (1024 * 1024)).toFixed(1)} MiB/s`;
  if (bytesPerSecond >= 1024) return `${(bytesPerSecond / 1024).toFixed(1)} KiB/s`;
  return `${bytesPerSecond.toFixed(1)} B/s`;
}

/** Escape each segment but keep `:` readable: product file names are full of them. */
function encodePath(path: string): string {
  return path.split('/').map((s) => encodeURIComponent(s).replaceAll('%3A', ':')).join('/');
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

function dropEmpty(validators: Validators): Validators {
  return Object.fromEntries(Object.entries(validators).filter(([, v]) => v)) as Validators;
}
