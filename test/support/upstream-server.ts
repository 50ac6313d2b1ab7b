/**
 * The one loopback upstream of the tests and the bench: serves `files` (path →
 * bytes, e.g. a tree from synthesizeTree, or a file generated as it streams)
 * the way a static web server would — strong ETags, Last-Modified, 304s, HEAD,
 * 404, 405 — records every request, and, for a path that has a fault, answers
 * the way a broken network or server would. Files and faults are read per
 * request, so a test may change them between calls. Paths are relative to
 * the root, percent-decoded, without query. A single `Range: bytes=a-b`
 * (or `a-`) is answered 206 with its Content-Range, unless `ranges: false`.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { contentTypeOf } from '../../functions/core/content-types.ts';

/**
 * A file produced as it is sent, never held in memory (the bench's gigabyte
 * item). Of the faults, only `corrupt` and `status` apply to it.
 */
export interface StreamedFile {
  size: number;
  /** Lower-case hex: the strong ETag. */
  sha256: string;
  /** The bytes from `start` (default 0) to `end` (inclusive, default the last). */
  open(range?: { start: number; end: number }): Readable;
}

export type ServedFile = Uint8Array | StreamedFile;

export type Fault =
  /** Announces the full Content-Length, sends `afterBytes` (default half) of the body, then closes the connection. */
  | { kind: 'truncate'; afterBytes?: number }
  /** Sends the whole body with the byte at each offset inverted (default: the middle one); headers are honest. */
  | { kind: 'corrupt'; offsets?: number[] }
  /** Announces `extraBytes` (default 100) more than the body, sends the body, closes: a body cut short of its length. */
  | { kind: 'wrongLength'; extraBytes?: number }
  /** Announces `missingBytes` (default 100) fewer than the body, then sends the whole body: bytes past the length. */
  | { kind: 'shortLength'; missingBytes?: number }
  /** 200 without a Content-Length, then the body over and over, `chunkBytes` every `intervalMs`, until the client goes. */
  | { kind: 'endless'; chunkBytes?: number; intervalMs?: number }
  /** Answers `status` to the first `times` requests for the path (default: all of them), the file afterwards. */
  | { kind: 'status'; status: number; times?: number }
  /** Announces the full length, sends `afterBytes` (default half), then nothing, holding the connection open. */
  | { kind: 'stall'; afterBytes?: number }
  /** Resets the connection (TCP RST) after `afterBytes` of the body; with no `afterBytes`, before any header. */
  | { kind: 'reset'; afterBytes?: number }
  /**
   * `status` (default 302) with `Location: location`, verbatim: a path on this
   * server (`/other`), a loop (a path that redirects back), or an absolute URL
   * of another server (another port or 127.0.0.2: another origin).
   */
  | { kind: 'redirect'; location: string; status?: number }
  /** Waits `delayMs` before the status line, then answers normally. */
  | { kind: 'slowHeaders'; delayMs: number };

/**
 * One request. `method`, `path` and `status` are its own enumerable fields,
 * so a request compares (toEqual) and prints as `{ method, path, status }`;
 * the rest of the exchange is there to read but not enumerable.
 */
export interface ServedRequest {
  method: string;
  /** Relative to the root, percent-decoded, without query. */
  path: string;
  /** The status line sent; undefined when the connection ended before one. */
  status?: number;
  readonly headers: IncomingHttpHeaders;
  /** Body bytes handed to the socket. */
  readonly bodyBytesSent: number;
  /** Resolves once the exchange is over: the response ended or the connection closed. */
  readonly over: Promise<void>;
  /** Whether the connection closed before the response ended (the client, a reset or a truncation cut it short). */
  readonly cutShort: boolean;
}

export interface ServedTree<F extends ServedFile = Uint8Array> {
  /** `http://host:port/`, ends with `/`. */
  baseUrl: string;
  /** Absolute URL of `path` on this server (path relative to the root). */
  url(path: string): string;
  /** Read on every request: a test may change it. */
  files: Map<string, F>;
  /** Path → fault; read on every request. */
  faults: Map<string, Fault>;
  /** Every request, in arrival order. */
  requests: ServedRequest[];
  /** The requests for one path. */
  requestsFor(path: string): ServedRequest[];
  /** Whether `Range` requests get a 206 (the `ranges` option); read on every request. */
  ranges: boolean;
  /** Stops listening and cuts every open connection (stalled, endless, slow). */
  close(): Promise<void>;
}

export interface ServeOptions {
  /** Path → fault; the server's `faults`. @default none */
  faults?: Map<string, Fault>;
  /** Another loopback address (127.0.0.2, …) gives another origin. @default 127.0.0.1 */
  host?: string;
  /** Answer `Range` requests with 206; false: ignore the header and send the whole file, as some servers do. @default true */
  ranges?: boolean;
}

/** Serves `files` on an ephemeral port. */
export async function serveTree<F extends ServedFile = Uint8Array>(
  files: Map<string, F> = new Map(),
  options: ServeOptions = {},
): Promise<ServedTree<F>> {
  const host = options.host ?? '127.0.0.1';
  const faults = options.faults ?? new Map<string, Fault>();
  const requests: ServedRequest[] = [];
  const versions = new FileVersions(new Date());
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, ms);
    timers.add(timer);
  };

  const tree = { ranges: options.ranges ?? true } as ServedTree<F>;
  const server = createServer((request, response) => {
    const path = requestPath(request);
    const exchange = new Exchange(request.method ?? '', path, request.headers);
    requests.push(exchange.record);
    response.once('finish', () => exchange.settle(false));
    response.once('close', () => exchange.settle(!response.writableFinished));
    const earlier = requests.filter((r) => r.path === path).length - 1;
    const file = files.get(path);
    const pathFault = faults.get(path);
    const streamedFault = pathFault?.kind === 'corrupt' || pathFault?.kind === 'status';
    const fault = file === undefined || file instanceof Uint8Array || streamedFault ? pathFault : undefined;
    answer({ request, response, exchange, file, fault, earlierRequests: earlier, later, versions, ranges: tree.ranges });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  return Object.assign(tree, {
    baseUrl,
    url: (path: string) => baseUrl + path.split('/').map(encodeURIComponent).join('/'),
    files,
    faults,
    requests,
    requestsFor: (path: string) => requests.filter((r) => r.path === path),
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  });
}

/** A request's record, and the writes that keep it current. */
class Exchange {
  readonly record: ServedRequest;
  private readonly detail: { bodyBytesSent: number; cutShort: boolean; over: Promise<void> };
  private resolveOver!: () => void;

  constructor(method: string, path: string, headers: IncomingHttpHeaders) {
    this.detail = { bodyBytesSent: 0, cutShort: false, over: new Promise<void>((resolve) => (this.resolveOver = resolve)) };
    const detail = this.detail;
    this.record = Object.defineProperties({ method, path } as ServedRequest, {
      headers: { value: headers },
      bodyBytesSent: { get: () => detail.bodyBytesSent },
      cutShort: { get: () => detail.cutShort },
      over: { value: detail.over },
    });
  }

  status(code: number): void {
    this.record.status = code;
  }

  sent(bytes: number): void {
    this.detail.bodyBytesSent += bytes;
  }

  settle(cutShort: boolean): void {
    this.detail.cutShort ||= cutShort;
    this.resolveOver();
  }
}

/** Per-path validators: the ETag of the current bytes, and when they were first served. */
class FileVersions {
  private readonly seen = new Map<string, { etag: string; lastModified: number }>();
  private readonly startedAt: Date;
  constructor(startedAt: Date) {
    this.startedAt = startedAt;
  }

  of(path: string, etag: string): { etag: string; lastModified: number } {
    const previous = this.seen.get(path);
    if (previous?.etag === etag) return previous;
    // HTTP dates have whole seconds: a change must move Last-Modified forward by at least one.
    const now = Math.floor((previous ? Date.now() : this.startedAt.getTime()) / 1000) * 1000;
    const lastModified = previous ? Math.max(now, previous.lastModified + 1000) : now;
    const version = { etag, lastModified };
    this.seen.set(path, version);
    return version;
  }
}

type Later = (ms: number, run: () => void) => void;

interface Answer {
  request: IncomingMessage;
  response: ServerResponse;
  exchange: Exchange;
  file: ServedFile | undefined;
  fault: Fault | undefined;
  earlierRequests: number;
  later: Later;
  versions: FileVersions;
  ranges: boolean;
}

function answer(a: Answer): void {
  const { request, response, exchange, file, fault } = a;
  const finish = (code: number, headers: Record<string, string | number> = {}, body?: Uint8Array) => {
    exchange.status(code);
    response.writeHead(code, headers);
    if (body && request.method !== 'HEAD') {
      exchange.sent(body.length);
      response.end(body);
    } else response.end();
  };
  if (request.method !== 'GET' && request.method !== 'HEAD') return finish(405, { allow: 'GET, HEAD' });
  if (fault?.kind === 'redirect') return finish(fault.status ?? 302, { location: fault.location });
  if (fault?.kind === 'status' && a.earlierRequests < (fault.times ?? Infinity)) {
    return finish(fault.status, { 'content-type': 'text/plain' }, new TextEncoder().encode(`fault: ${fault.status}\n`));
  }
  if (fault?.kind === 'reset' && fault.afterBytes === undefined) {
    request.socket.resetAndDestroy();
    return;
  }
  if (fault?.kind === 'slowHeaders') {
    a.later(fault.delayMs, () => answer({ ...a, fault: undefined }));
    return;
  }
  if (!file) return finish(404, { 'content-type': 'text/plain' }, new TextEncoder().encode(`${exchange.record.path}: not found\n`));

  const bytes = file instanceof Uint8Array ? file : undefined;
  const size = bytes?.length ?? (file as StreamedFile).size;
  const sha256 = bytes ? createHash('sha256').update(bytes).digest('hex') : (file as StreamedFile).sha256;
  const { etag, lastModified } = a.versions.of(exchange.record.path, `"${sha256}"`);
  const validators = { etag, 'last-modified': new Date(lastModified).toUTCString() };
  const headers = { ...validators, 'content-type': contentTypeOf(exchange.record.path), 'content-length': size };
  if (!fault && isNotModified(request, etag, lastModified)) return finish(304, validators);
  const corruptAt = fault?.kind === 'corrupt' ? (fault.offsets ?? [Math.floor(size / 2)]) : [];
  const range = a.ranges && request.method === 'GET' && (fault === undefined || fault.kind === 'corrupt' || fault.kind === 'status')
    ? requestedRange(request, size)
    : undefined;
  if (range === 'unsatisfiable') return finish(416, { 'content-range': `bytes */${size}` });
  const partial = range
    ? { ...headers, 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${size}` }
    : undefined;
  if (!bytes) return streamFile(a, file as StreamedFile, partial ?? headers, range, corruptAt);

  const half = Math.floor(bytes.length / 2);
  switch (fault?.kind) {
    case undefined:
    case 'status':
    case 'corrupt': {
      const sent = corruptAt.length > 0 ? corrupted(bytes, corruptAt, 0) : bytes;
      return range && partial ? finish(206, partial, sent.subarray(range.start, range.end + 1)) : finish(200, headers, sent);
    }
    // These break HTTP framing, which ServerResponse guards: they write the raw socket.
    case 'truncate':
      rawAnswer(request.socket, exchange, bytes.length, bytes.subarray(0, fault.afterBytes ?? half));
      request.socket.end();
      return;
    case 'wrongLength':
      rawAnswer(request.socket, exchange, bytes.length + (fault.extraBytes ?? 100), bytes);
      request.socket.end();
      return;
    case 'shortLength':
      rawAnswer(request.socket, exchange, Math.max(0, bytes.length - (fault.missingBytes ?? 100)), bytes);
      request.socket.end();
      return;
    case 'stall':
      rawAnswer(request.socket, exchange, bytes.length, bytes.subarray(0, fault.afterBytes ?? half));
      return;
    case 'reset':
      rawAnswer(request.socket, exchange, bytes.length, bytes.subarray(0, fault.afterBytes));
      // After the bytes are on the wire, so the client sees them before the reset.
      a.later(20, () => request.socket.resetAndDestroy());
      return;
    case 'endless':
      exchange.status(200);
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      sendForever(response, exchange, bytes, fault.chunkBytes ?? 16 * 1024, fault.intervalMs ?? 1, a.later);
      return;
  }
}

/** RFC 9110: If-None-Match, when present, decides; If-Modified-Since only otherwise. */
function isNotModified(request: IncomingMessage, etag: string, lastModified: number): boolean {
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    return ifNoneMatch.split(',').some((candidate) => {
      const tag = candidate.trim();
      return tag === '*' || tag.replace(/^W\//, '') === etag;
    });
  }
  const ifModifiedSince = request.headers['if-modified-since'];
  if (ifModifiedSince === undefined) return false;
  const since = Date.parse(ifModifiedSince);
  return !Number.isNaN(since) && lastModified <= since;
}

function streamFile(
  { request, response, exchange }: Answer,
  file: StreamedFile,
  headers: Record<string, string | number>,
  range: { start: number; end: number } | undefined,
  corruptAt: readonly number[],
): void {
  const status = range ? 206 : 200;
  exchange.status(status);
  response.writeHead(status, headers);
  if (request.method === 'HEAD') {
    response.end();
    return;
  }
  const opened = file.open(range);
  const body = corruptAt.length > 0 ? Readable.from(corruptedStream(opened, corruptAt, range?.start ?? 0)) : opened;
  body.on('data', (chunk: Uint8Array) => exchange.sent(chunk.length));
  body.pipe(response);
  response.once('close', () => body.destroy());
}

/** A copy of `bytes` (which start at file offset `from`) with the byte at each file offset in `offsets` inverted. */
function corrupted(bytes: Uint8Array, offsets: readonly number[], from: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  for (const offset of offsets) {
    const at = offset - from;
    if (at >= 0 && at < copy.length) copy[at] = copy[at]! ^ 0xff;
  }
  return copy;
}

async function* corruptedStream(source: Readable, offsets: readonly number[], from: number): AsyncGenerator<Uint8Array> {
  let position = from;
  for await (const chunk of source as AsyncIterable<Uint8Array>) {
    const hit = offsets.some((offset) => offset >= position && offset < position + chunk.length);
    yield hit ? corrupted(chunk, offsets, position) : chunk;
    position += chunk.length;
  }
}

/** The single range a GET asks for, clamped to the file; undefined when it asks for none (or several, answered whole). */
function requestedRange(request: IncomingMessage, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range?.trim() ?? '');
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * A file of `size` bytes generated as it is read, the same every time, any
 * range of it producible on its own: a 1 MiB random block, xored with the
 * number of the MiB it lands in. Its sha256 is computed by generating it once.
 */
export function generatedFile(size: number, seed = 'skystreams'): StreamedFile {
  const blockBytes = 1 << 20;
  const block = new Uint8Array(blockBytes);
  for (let filled = 0, counter = 0; filled < blockBytes; counter++) {
    const digest = createHash('sha256').update(`${seed}:${counter}`).digest();
    block.set(digest.subarray(0, Math.min(digest.length, blockBytes - filled)), filled);
    filled += digest.length;
  }
  const words = new Uint32Array(block.buffer);
  const blockNumbered = (n: number): Uint8Array => {
    const out = new Uint32Array(words.length);
    const mask = (Math.imul(n + 1, 0x9e3779b1) >>> 0);
    for (let i = 0; i < words.length; i++) out[i] = words[i]! ^ mask;
    return new Uint8Array(out.buffer);
  };
  function* bytesOf(start: number, end: number): Generator<Uint8Array> {
    for (let position = start; position <= end; ) {
      const n = Math.floor(position / blockBytes);
      const from = position - n * blockBytes;
      const to = Math.min(blockBytes, end + 1 - n * blockBytes);
      yield blockNumbered(n).subarray(from, to);
      position += to - from;
    }
  }
  const hash = createHash('sha256');
  for (const chunk of bytesOf(0, size - 1)) hash.update(chunk);
  const sha256 = hash.digest('hex');
  return {
    size,
    sha256,
    open: (range) => Readable.from(bytesOf(range?.start ?? 0, range?.end ?? size - 1), { objectMode: false }),
  };
}

function rawAnswer(socket: Socket, exchange: Exchange, contentLength: number, body: Uint8Array): void {
  exchange.status(200);
  exchange.sent(body.length);
  socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${contentLength}\r\nConnection: close\r\n\r\n`);
  socket.write(body);
}

function sendForever(
  response: ServerResponse,
  exchange: Exchange,
  bytes: Uint8Array,
  chunkBytes: number,
  intervalMs: number,
  later: Later,
): void {
  const source = bytes.length > 0 ? bytes : new Uint8Array(1);
  let offset = 0;
  const tick = () => {
    if (response.destroyed || response.socket === null) return;
    const chunk = new Uint8Array(chunkBytes);
    for (let i = 0; i < chunkBytes; i++) chunk[i] = source[(offset + i) % source.length]!;
    offset = (offset + chunkBytes) % source.length;
    exchange.sent(chunkBytes);
    response.write(chunk);
    later(intervalMs, tick);
  };
  tick();
}

function requestPath(request: IncomingMessage): string {
  const raw = (request.url ?? '/').split('?')[0] ?? '/';
  try {
    return decodeURIComponent(raw.replace(/^\/+/, ''));
  } catch {
    return raw;
  }
}
