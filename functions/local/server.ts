/**
 * node:http in front of the app, for one machine. Requests go to the app's
 * `resolve` step and its Reply is written straight to the socket: no web
 * Request/Response in between, bytes held in memory sent in one write, item
 * streams piped with backpressure.
 */
import cluster, { type Worker } from 'node:cluster';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { ConfigError } from '../core/errors.ts';
import type { ByteStream } from '../core/ports.ts';
import { badRequest, errorReply, isReadMethod, methodNotAllowed, mirrorPath, type App, type Reply } from '../http/app.ts';

/** What one client may hold of the server, and for how long. */
export interface ServerLimits {
  /** Time a client has to send its request headers (cuts off slowloris clients). */
  headersTimeoutMs: number;
  /** Time a client has to send its whole request; never limits the response. */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection waits for its next request. */
  keepAliveTimeoutMs: number;
  /** A connection with no bytes moving either way for this long is closed (a stalled download too). */
  idleTimeoutMs: number;
  /**
   * At most this many connections are open: one more sheds the connections
   * idle longest (none mid-request or mid-response), so idle ones can never
   * lock clients out; when every one is busy, the new one is closed.
   */
  maxConnections: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxConnections: 512,
});

export interface ServerOptions {
  port: number;
  host: string;
  /** @default DEFAULT_SERVER_LIMITS, field by field */
  limits?: Partial<ServerLimits>;
  /**
   * Where a failure the app could not answer goes (say, the store failing
   * mid-body). Clients that go away are not failures.
   * @default console.error
   */
  log?: (message: string, error: unknown) => void;
}

export interface RunningServer {
  /** Base URL, ending in `/`. */
  url: string;
  close(): Promise<void>;
}

/** `host` or `host:port`, `host` a DNS name, IPv4 address or bracketed IPv6 address. */
const HOST_HEADER = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;

export async function startServer(app: App, options: ServerOptions): Promise<RunningServer> {
  const limits = serverLimits(options.limits);
  const log = options.log ?? ((message, error) => console.error(message, error));
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks the two timeouts above on this interval, so it bounds how late a cut-off comes.
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    },
    (req, res) => {
      void handle(app, req, res, log);
    },
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.setTimeout(limits.idleTimeoutMs);
  shedIdleConnections(server, limits.maxConnections);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}/`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/**
 * Keeps at most `maxConnections` open. Node's own `maxConnections` closes
 * new connections while old ones sit idle, so a client holding idle sockets
 * (or one sending its headers slowly) could lock everyone else out until
 * the timeouts cut them. Instead, a new connection at capacity sheds the
 * connections idle longest; one with a request in flight is never shed.
 */
function shedIdleConnections(server: Server, maxConnections: number): void {
  // Requests in flight per open socket; iteration order is idle-longest first (a socket moves to the end as it goes idle).
  const inFlight = new Map<Socket, number>();
  server.on('connection', (socket: Socket) => {
    for (const [held, requests] of inFlight) {
      if (inFlight.size < maxConnections) break;
      if (requests > 0) continue;
      inFlight.delete(held);
      held.destroy();
    }
    if (inFlight.size >= maxConnections) {
      socket.destroy();
      return;
    }
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const requests = inFlight.get(socket);
    if (requests === undefined) return;
    inFlight.set(socket, requests + 1);
    res.once('close', () => {
      const left = inFlight.get(socket);
      if (left === undefined) return;
      inFlight.delete(socket);
      inFlight.set(socket, left - 1);
    });
  });
}

/** A worker that has not stopped this long after being asked to is killed. */
const WORKER_STOP_TIMEOUT_MS = 10_000;

/**
 * `start` (which opens a backend and calls startServer) run in `workers`
 * processes that share one listening socket through node:cluster, for when
 * one core is not enough. Each worker is this program run again: in a worker
 * this returns `start()`; in the primary, once every worker listens, a
 * handle whose `close` stops them all. A worker that crashes is replaced.
 * With `workers` 1, `start()` in this process.
 */
export async function startWorkers(workers: number, start: () => Promise<RunningServer>): Promise<RunningServer> {
  if (!Number.isSafeInteger(workers) || workers < 1) throw new ConfigError(`workers must be a positive integer, not ${workers}`);
  if (workers === 1) return start();
  if (cluster.isWorker) {
    // The channel to the primary would keep a stopped worker, or one that could not start, alive.
    const leave = () => process.disconnect?.();
    const server = await start().catch((error: unknown) => {
      leave();
      throw error;
    });
    return { url: server.url, close: () => server.close().finally(leave) };
  }
  let serving = false;
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    await Promise.all(Object.values(cluster.workers ?? {}).map((worker) => worker && stopWorker(worker)));
  };
  const fork = (): Promise<{ worker: Worker; port: number; address: string }> => {
    const worker = cluster.fork();
    worker.once('exit', (code, signal) => {
      // Not while starting (a worker that cannot start fails the start), nor after a clean stop (a signal to the whole process group, say).
      if (!serving || stopping || code === 0) return;
      console.error(`server worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
      void fork().catch((error: unknown) => console.error('could not replace a server worker:', error));
    });
    return new Promise((resolve, reject) => {
      worker.once('listening', ({ port, address }) => resolve({ worker, port, address }));
      worker.once('exit', (code) => reject(new Error(`server worker exited (code ${code}) before listening`)));
    });
  };
  let started: Awaited<ReturnType<typeof fork>>[];
  try {
    started = await Promise.all(Array.from({ length: workers }, fork));
  } catch (error) {
    await stopAll();
    throw error;
  }
  serving = true;
  const { port, address } = started[0]!;
  const host = address.includes(':') ? `[${address}]` : address;
  return { url: `http://${host}:${port}/`, close: stopAll };
}

function stopWorker(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    if (worker.isDead()) return resolve();
    const kill = setTimeout(() => worker.process.kill('SIGKILL'), WORKER_STOP_TIMEOUT_MS);
    worker.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    // The signal itself, not cluster's disconnect first: the worker closes its own server and connections.
    worker.process.kill('SIGTERM');
  });
}

function serverLimits(overrides: Partial<ServerLimits> = {}): ServerLimits {
  const limits = { ...DEFAULT_SERVER_LIMITS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new ConfigError(`server limit ${name} must be a positive integer, not ${value}`);
  }
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new ConfigError(`server limit headersTimeoutMs (${limits.headersTimeoutMs}) exceeds requestTimeoutMs (${limits.requestTimeoutMs})`);
  }
  return limits;
}

async function handle(app: App, req: IncomingMessage, res: ServerResponse, log: NonNullable<ServerOptions['log']>): Promise<void> {
  let reply: Reply;
  try {
    // The app sees the path the client asked for, never a URL built from its Host header.
    reply = rejection(req) ?? (await app.resolve({ method: req.method ?? '', pathname: pathOf(req.url ?? ''), header: (name) => headerOf(req, name) }));
  } catch (error) {
    reply = errorReply(error, ({ requestId, error: cause }) => log(`[${requestId}] ${req.method} ${req.url}:`, cause));
  }
  await send(reply, res, log);
}

/**
 * The answer to a request the app must not see: a method it does not serve
 * (some, like TRACE, cannot even become a web Request), an unusable Host, or
 * a target that is not a plain path.
 */
function rejection(req: IncomingMessage): Reply | undefined {
  const method = req.method ?? '';
  if (!isReadMethod(method)) return methodNotAllowed(method);
  const host = req.headers.host;
  if (host !== undefined && (!validHost(host) || hostCount(req) > 1)) return badRequest('malformed Host header');
  const target = req.url ?? '';
  // Origin-form only: an absolute-form or `*` target would let the client pick the URL's origin.
  if (!target.startsWith('/')) return badRequest('request target must be a path');
  // Checked here as well as by the app, before anything could resolve `..` or turn `\` into `/`.
  if (mirrorPath(pathOf(target)) === undefined) return badRequest('malformed request path');
  return undefined;
}

function hostCount(req: IncomingMessage): number {
  let count = 0;
  for (let index = 0; index < req.rawHeaders.length; index += 2) {
    if (req.rawHeaders[index]!.toLowerCase() === 'host') count++;
  }
  return count;
}

function validHost(host: string): boolean {
  const match = HOST_HEADER.exec(host);
  return match !== null && (match[1] === undefined || Number(match[1]) <= 65_535);
}

function pathOf(target: string): string {
  const query = target.indexOf('?');
  return query === -1 ? target : target.slice(0, query);
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

async function send(reply: Reply, res: ServerResponse, log: NonNullable<ServerOptions['log']>): Promise<void> {
  const { body } = reply;
  if (res.destroyed) {
    await discard(body);
    return;
  }
  res.writeHead(reply.status, reply.headers);
  if (body === undefined || body instanceof Uint8Array) {
    res.end(body);
    return;
  }
  try {
    // pipeline ends the body (closing the store's file) however the response ends, a client abort included.
    await pipeline(readableOf(body), res);
  } catch (error) {
    if (!clientWentAway(error)) log('response body failed:', error);
  }
}

function readableOf(body: ByteStream): Readable {
  if (body instanceof Readable) return body;
  if (body instanceof ReadableStream) return Readable.fromWeb(body as NodeReadableStream<Uint8Array>);
  return Readable.from(body, { objectMode: false });
}

/** Releases a body nobody will read (the client went away first): its file closes. */
async function discard(body: Reply['body']): Promise<void> {
  if (body === undefined || body instanceof Uint8Array) return;
  if (body instanceof Readable) body.destroy();
  else if (body instanceof ReadableStream) await body.cancel();
  else await body[Symbol.asyncIterator]().return?.();
}

function clientWentAway(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'EPIPE';
}
