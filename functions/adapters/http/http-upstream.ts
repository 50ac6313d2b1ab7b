/** A simplestreams source over HTTP(S), with the platform fetch (undici). */
import { ConfigError, InputTooLargeError, NotFoundError, RangeNotSupportedError, SkystreamsError, UpstreamError } from '../../core/errors.ts';
import type { ByteRange, ByteStream, FetchedFile, FetchLimits, Upstream, Validators } from '../../core/ports.ts';
import { redactUrl, splitCredentials } from '../../core/redact.ts';
import { syncDefaults } from '../../core/settings.ts';

export interface HttpUpstreamOptions {
  /** Per metadata file: every redirect and the whole body. @default 60 s */
  metadataTimeoutMs?: number;
  /** Metadata files larger than this are refused rather than buffered, unless fetchFile is given its own limit. @default 256 MiB */
  maxMetadataBytes?: number;
  /** Until an item's response headers arrive, redirects included. @default 60 s */
  itemHeadersTimeoutMs?: number;
  /** An item download fails (transiently) once no byte has arrived for this long. @default syncDefaults.itemIdleTimeoutMs */
  itemIdleTimeoutMs?: number;
  /** Follow redirects to another scheme, host or port. @default syncDefaults.allowCrossHostRedirects */
  allowCrossHostRedirects?: boolean;
  userAgent?: string;
}

/** More than this many redirects for one file is a misconfigured (or hostile) upstream. */
export const MAX_REDIRECTS = 5;

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export class HttpUpstream implements Upstream {
  /** Where requests go: without credentials, which fetch refuses in URLs. */
  private readonly requestBase: string;
  /** What messages show: credentials redacted. */
  private readonly shownBase: string;
  private readonly origin: string;
  private readonly authorization: string | undefined;
  private readonly metadataTimeoutMs: number;
  private readonly maxMetadataBytes: number;
  private readonly itemHeadersTimeoutMs: number;
  private readonly itemIdleTimeoutMs: number;
  private readonly allowCrossHostRedirects: boolean;
  private readonly userAgent: string;

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
    this.allowCrossHostRedirects = options.allowCrossHostRedirects ?? syncDefaults.allowCrossHostRedirects;
    this.userAgent = options.userAgent ?? 'skystreams';
  }

  url(path: string): string {
    return this.shownBase + encodePath(path);
  }

  async fetchFile(path: string, validators?: Validators, limits?: FetchLimits): Promise<FetchedFile> {
    const shown = this.url(path);
    const headers: Record<string, string> = {};
    if (validators?.etag) headers['if-none-match'] = validators.etag;
    if (validators?.lastModified) headers['if-modified-since'] = validators.lastModified;
    const limit = limits?.maxBytes === undefined
      ? { bytes: this.maxMetadataBytes, name: 'maxMetadataBytes' }
      : { bytes: limits.maxBytes, name: 'maxBytes' };
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new UpstreamError(shown, `no complete answer within ${this.metadataTimeoutMs} ms`)),
      this.metadataTimeoutMs,
    );
    try {
      const response = await this.request(path, headers, controller.signal);
      if (response.status === 304) return { notModified: true };
      const bytes = await readBounded(shown, response, limit);
      return {
        notModified: false,
        bytes,
        validators: dropEmpty({
          etag: response.headers.get('etag') ?? undefined,
          lastModified: response.headers.get('last-modified') ?? undefined,
        }),
      };
    } catch (error) {
      // Closes the connection: a refused or broken body must not keep streaming in.
      controller.abort();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async openStream(path: string): Promise<{ body: ByteStream; size?: number }> {
    const { response, controller } = await this.openItem(path, {});
    const length = response.headers.get('content-length');
    return {
      body: this.itemBody(path, response, controller),
      size: length === null ? undefined : Number(length),
    };
  }

  async openRange(path: string, range: ByteRange): Promise<{ body: ByteStream; size: number }> {
    const shown = this.url(path);
    const asked = `bytes ${range.start}-${range.end}`;
    const { response, controller } = await this.openItem(path, { range: `bytes=${range.start}-${range.end}` });
    const refuse = (error: Error) => {
      controller.abort();
      return error;
    };
    if (response.status !== 206) {
      throw refuse(new RangeNotSupportedError(shown, `answered HTTP ${response.status} to a request for ${asked}, not 206 Partial Content: this upstream does not serve byte ranges, which an item this large needs`));
    }
    const served = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get('content-range') ?? '');
    if (!served || Number(served[1]) !== range.start || Number(served[2]) !== range.end) {
      throw refuse(new UpstreamError(shown, `asked for ${asked}, got Content-Range ${JSON.stringify(response.headers.get('content-range'))}`));
    }
    return { body: this.itemBody(path, response, controller), size: Number(served[3]) };
  }

  /** An item's response, once its headers have arrived within the item header timeout. */
  private async openItem(path: string, headers: Record<string, string>): Promise<{ response: Response; controller: AbortController }> {
    const shown = this.url(path);
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new UpstreamError(shown, `no response headers within ${this.itemHeadersTimeoutMs} ms`)),
      this.itemHeadersTimeoutMs,
    );
    try {
      return { response: await this.request(path, headers, controller.signal), controller };
    } finally {
      clearTimeout(timer);
    }
  }

  private itemBody(path: string, response: Response, controller: AbortController): ByteStream {
    const shown = this.url(path);
    if (!response.body) throw new UpstreamError(shown, 'empty response body');
    // Locked now, not at the first read: undici cancels the unlocked body of a Response once it is garbage-collected.
    return guardBody(shown, response.body.getReader(), controller, this.itemIdleTimeoutMs);
  }

  /** GET, following redirects by hand so their number and destination stay ours to decide. */
  private async request(path: string, extraHeaders: Record<string, string>, signal: AbortSignal): Promise<Response> {
    const shown = this.url(path);
    let target = new URL(this.requestBase + encodePath(path));
    const visited = new Set([target.href]);
    for (let redirects = 0; ; redirects++) {
      const response = await this.send(shown, target, redirects > 0, extraHeaders, signal);
      if (!REDIRECT_STATUSES.has(response.status)) return checkStatus(shown, redirects > 0 ? target : undefined, response);
      await response.body?.cancel().catch(() => undefined);
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

  private async send(
    shown: string,
    target: URL,
    redirected: boolean,
    extraHeaders: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Response> {
    const headers: Record<string, string> = { ...extraHeaders, 'user-agent': this.userAgent };
    // The source's credentials are for the source: never handed to a host it redirects to.
    if (this.authorization && target.origin === this.origin) headers.authorization = this.authorization;
    try {
      return await fetch(target, { headers, signal, redirect: 'manual' });
    } catch (error) {
      if (signal.reason instanceof SkystreamsError) throw signal.reason;
      const via = redirected ? ` (at ${redactUrl(target.href)})` : '';
      throw new UpstreamError(shown, `request failed${via}: ${describe(error)}`, { cause: error });
    }
  }
}

function redirectTarget(shown: string, from: URL, response: Response): URL {
  const location = response.headers.get('location');
  if (location === null) throw new UpstreamError(shown, `HTTP ${response.status} from ${redactUrl(from.href)} without a Location`);
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new UpstreamError(shown, `${redactUrl(from.href)} redirects to ${JSON.stringify(redactUrl(location))}, not a URL`);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new UpstreamError(shown, `${redactUrl(from.href)} redirects to ${redactUrl(next.href)}: only http and https are followed`);
  }
  // Credentials a Location carries are not ours to send (and fetch refuses them in URLs).
  next.username = '';
  next.password = '';
  return next;
}

/** `redirectedTo`: where the answer came from, when that is not `shown`. */
async function checkStatus(shown: string, redirectedTo: URL | undefined, response: Response): Promise<Response> {
  if (response.status === 200 || response.status === 206 || response.status === 304) return response;
  await response.body?.cancel().catch(() => undefined);
  const where = redirectedTo ? ` (at ${redactUrl(redirectedTo.href)})` : '';
  if (response.status === 404) throw new NotFoundError(`${shown}: 404 Not Found${where}`);
  throw new UpstreamError(shown, `HTTP ${response.status} ${response.statusText}${where}`);
}

/**
 * The whole body in one buffer, refused as soon as more than `limit` bytes
 * arrive, announced or not. A body whose length is announced is copied into
 * a buffer of that size as it arrives, so it is held once; one of unknown
 * length grows into a buffer that doubles.
 */
async function readBounded(
  shown: string,
  response: Response,
  limit: { bytes: number; name: string },
): Promise<Uint8Array> {
  const tooLarge = (what: string) =>
    new InputTooLargeError(shown, limit.bytes, `${what}, over the ${limit.bytes}-byte limit (${limit.name}): refused`);
  const declared = response.headers.get('content-length');
  if (declared !== null && Number(declared) > limit.bytes) throw tooLarge(`announces ${declared} bytes`);
  if (!response.body) return new Uint8Array();
  const announced = announcedLength(response);
  let buffer: Uint8Array = new Uint8Array(announced ?? Math.min(limit.bytes, UNKNOWN_LENGTH_START));
  let received = 0;
  const reader = response.body.getReader();
  for (;;) {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await reader.read();
    } catch (error) {
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

/** Content-Length, when it counts the bytes the body will yield: fetch decodes a content-encoded body, whose length it does not announce. */
function announcedLength(response: Response): number | undefined {
  const length = response.headers.get('content-length');
  const encoding = response.headers.get('content-encoding');
  if (length === null || (encoding !== null && encoding.trim().toLowerCase() !== 'identity')) return undefined;
  const bytes = Number(length);
  return Number.isSafeInteger(bytes) && bytes >= 0 ? bytes : undefined;
}

/** `buffer` with its first `used` bytes, in room for at least `needed`, at most `limit`. */
function grown(buffer: Uint8Array, used: number, needed: number, limit: number): Uint8Array {
  const next = new Uint8Array(Math.min(limit, Math.max(needed, buffer.byteLength * 2)));
  next.set(buffer.subarray(0, used));
  return next;
}

/**
 * The body as a ByteStream that fails with UpstreamError (transient, for the
 * engine's retry) on a broken connection or once no byte has arrived for
 * `idleMs`, and closes the connection whenever it stops before the end.
 * Only time spent waiting for upstream counts: a slow consumer is not idle upstream.
 */
async function* guardBody(
  shown: string,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  controller: AbortController,
  idleMs: number,
): ByteStream {
  let complete = false;
  let waiting = false;
  let stalled: UpstreamError | undefined;
  // One timer for the whole body, re-armed per read: a timer and a race per chunk cost more than the chunk.
  const idle: NodeJS.Timeout = setTimeout(() => {
    if (!waiting) {
      idle.refresh();
      return;
    }
    stalled = new UpstreamError(shown, `download stalled: no data for ${idleMs} ms`);
    controller.abort(stalled);
  }, idleMs);
  try {
    for (;;) {
      let result: ReadableStreamReadResult<Uint8Array>;
      waiting = true;
      idle.refresh();
      try {
        result = await reader.read();
      } catch (error) {
        if (stalled) throw stalled;
        if (error instanceof SkystreamsError) throw error;
        throw new UpstreamError(shown, `download interrupted: ${describe(error)}`, { cause: error });
      } finally {
        waiting = false;
      }
      if (result.done) {
        complete = true;
        return;
      }
      yield result.value;
    }
  } finally {
    clearTimeout(idle);
    if (!complete) controller.abort();
  }
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
