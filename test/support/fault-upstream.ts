/**
 * A loopback HTTP upstream that misbehaves on demand: serves `files` (path →
 * bytes, e.g. a tree from synthesizeTree) and answers a path that has a fault
 * the way a broken network or server would. Faults are read per request, so a
 * test may set or clear them between calls. Paths are relative to the root,
 * percent-decoded, as in serveTree.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

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

export interface FaultRequest {
  path: string;
  headers: IncomingHttpHeaders;
  /** The status line sent; undefined when the connection ended before one. */
  status?: number;
  /** Body bytes handed to the socket. */
  bodyBytesSent: number;
  /** Resolves once the exchange is over: the response ended or the connection closed. */
  over: Promise<void>;
  /** Whether the connection closed before the response ended (the client, a reset or a truncation cut it short). */
  cutShort: boolean;
}

export interface FaultUpstream {
  /** `http://host:port/`, ends with `/`. */
  baseUrl: string;
  /** Absolute URL of `path` on this server (path relative to the root). */
  url(path: string): string;
  /** Read on every request: a test may change it. */
  files: Map<string, Uint8Array>;
  /** Path → fault; read on every request. */
  faults: Map<string, Fault>;
  /** Every request, in arrival order. */
  requests: FaultRequest[];
  /** The requests for one path. */
  requestsFor(path: string): FaultRequest[];
  /** Stops listening and cuts every open connection (stalled, endless, slow). */
  close(): Promise<void>;
}

export interface FaultUpstreamOptions {
  /** Another loopback address (127.0.0.2, …) gives another origin. @default 127.0.0.1 */
  host?: string;
}

/** Starts a fault upstream on an ephemeral port. */
export async function startFaultUpstream(
  files: Map<string, Uint8Array> = new Map(),
  faults: Map<string, Fault> = new Map(),
  options: FaultUpstreamOptions = {},
): Promise<FaultUpstream> {
  const host = options.host ?? '127.0.0.1';
  const requests: FaultRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, ms);
    timers.add(timer);
  };

  const server = createServer((request, response) => {
    const path = requestPath(request);
    let settle!: () => void;
    const record: FaultRequest = {
      path,
      headers: request.headers,
      bodyBytesSent: 0,
      over: new Promise<void>((resolve) => (settle = resolve)),
      cutShort: false,
    };
    requests.push(record);
    response.once('finish', () => settle());
    response.once('close', () => {
      record.cutShort = !response.writableFinished;
      settle();
    });
    const earlier = requests.filter((r) => r.path === path).length - 1;
    answer(request, response, record, files.get(path), faults.get(path), earlier, later);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  return {
    baseUrl,
    url: (path) => baseUrl + path.split('/').map(encodeURIComponent).join('/'),
    files,
    faults,
    requests,
    requestsFor: (path) => requests.filter((r) => r.path === path),
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

type Later = (ms: number, run: () => void) => void;

function answer(
  request: IncomingMessage,
  response: ServerResponse,
  record: FaultRequest,
  bytes: Uint8Array | undefined,
  fault: Fault | undefined,
  earlierRequests: number,
  later: Later,
): void {
  const status = (code: number, headers: Record<string, string | number> = {}, body?: Uint8Array) => {
    record.status = code;
    response.writeHead(code, headers);
    if (body) record.bodyBytesSent += body.length;
    response.end(body);
  };
  if (fault?.kind === 'redirect') return status(fault.status ?? 302, { location: fault.location });
  if (fault?.kind === 'status' && earlierRequests < (fault.times ?? Infinity)) {
    return status(fault.status, { 'content-type': 'text/plain' }, new TextEncoder().encode(`fault: ${fault.status}\n`));
  }
  if (fault?.kind === 'reset' && fault.afterBytes === undefined) {
    request.socket.resetAndDestroy();
    return;
  }
  if (fault?.kind === 'slowHeaders') {
    later(fault.delayMs, () => answer(request, response, record, bytes, undefined, earlierRequests, later));
    return;
  }
  if (!bytes) return status(404, { 'content-type': 'text/plain' }, new TextEncoder().encode(`${record.path}: not found\n`));

  const etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
  if (!fault && request.headers['if-none-match'] === etag) return status(304, { etag });
  const half = Math.floor(bytes.length / 2);
  switch (fault?.kind) {
    case undefined:
    case 'status':
      return status(200, { 'content-length': bytes.length, etag }, bytes);
    case 'corrupt': {
      const corrupted = Uint8Array.from(bytes);
      for (const offset of fault.offsets ?? [half]) corrupted[offset] = corrupted[offset]! ^ 0xff;
      return status(200, { 'content-length': bytes.length, etag }, corrupted);
    }
    // These break HTTP framing, which ServerResponse guards: they write the raw socket.
    case 'truncate':
      rawAnswer(request.socket, record, bytes.length, bytes.subarray(0, fault.afterBytes ?? half));
      request.socket.end();
      return;
    case 'wrongLength':
      rawAnswer(request.socket, record, bytes.length + (fault.extraBytes ?? 100), bytes);
      request.socket.end();
      return;
    case 'shortLength':
      rawAnswer(request.socket, record, Math.max(0, bytes.length - (fault.missingBytes ?? 100)), bytes);
      request.socket.end();
      return;
    case 'stall':
      rawAnswer(request.socket, record, bytes.length, bytes.subarray(0, fault.afterBytes ?? half));
      return;
    case 'reset':
      rawAnswer(request.socket, record, bytes.length, bytes.subarray(0, fault.afterBytes));
      // After the bytes are on the wire, so the client sees them before the reset.
      later(20, () => request.socket.resetAndDestroy());
      return;
    case 'endless':
      record.status = 200;
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      sendForever(response, record, bytes, fault.chunkBytes ?? 16 * 1024, fault.intervalMs ?? 1, later);
      return;
  }
}

function rawAnswer(socket: Socket, record: FaultRequest, contentLength: number, body: Uint8Array): void {
  record.status = 200;
  record.bodyBytesSent += body.length;
  socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${contentLength}\r\nConnection: close\r\n\r\n`);
  socket.write(body);
}

function sendForever(
  response: ServerResponse,
  record: FaultRequest,
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
    record.bodyBytesSent += chunkBytes;
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
