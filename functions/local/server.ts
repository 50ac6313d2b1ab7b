/** node:http in front of the web-standard app, for one machine. */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { ConfigError } from '../core/errors.ts';
import { badRequest, errorResponse, isReadMethod, methodNotAllowed, mirrorPath, type App } from '../http/app.ts';

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
  /** Connections beyond this many are closed as they arrive. */
  maxConnections: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  headersTimeoutMs: 20_000,
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

/** The app sees the path the client asked for, never a URL built from its Host header. */
const ORIGIN = 'http://localhost';
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
  server.maxConnections = limits.maxConnections;
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
  let response: Response;
  try {
    response = rejection(req) ?? (await app(toRequest(req)));
  } catch (error) {
    response = errorResponse(error, ({ requestId, error: cause }) => log(`[${requestId}] ${req.method} ${req.url}:`, cause));
  }
  await send(response, res, log);
}

/**
 * The answer to a request the app must not see: a method it does not serve
 * (some, like TRACE, cannot even become a web Request), an unusable Host, or
 * a target that is not a plain path.
 */
function rejection(req: IncomingMessage): Response | undefined {
  const method = req.method ?? '';
  if (!isReadMethod(method)) return methodNotAllowed(method);
  const hosts = req.rawHeaders.filter((_value, index) => index % 2 === 0 && req.rawHeaders[index]!.toLowerCase() === 'host');
  const host = req.headers.host;
  if (hosts.length > 1 || (host !== undefined && !validHost(host))) return badRequest('malformed Host header');
  const target = req.url ?? '';
  // Origin-form only: an absolute-form or `*` target would let the client pick the URL's origin.
  if (!target.startsWith('/')) return badRequest('request target must be a path');
  const [path = ''] = target.split('?', 1);
  // Checked before URL parsing, which would silently resolve `..` and turn `\` into `/`.
  if (mirrorPath(path) === undefined) return badRequest('malformed request path');
  return undefined;
}

function validHost(host: string): boolean {
  const match = HOST_HEADER.exec(host);
  return match !== null && (match[1] === undefined || Number(match[1]) <= 65_535);
}

function toRequest(req: IncomingMessage): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return new Request(ORIGIN + req.url, { method: req.method, headers });
}

async function send(response: Response, res: ServerResponse, log: NonNullable<ServerOptions['log']>): Promise<void> {
  if (res.destroyed) {
    await response.body?.cancel();
    return;
  }
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (!response.body) {
    res.end();
    return;
  }
  try {
    // pipeline ends the body (closing the store's file) however the response ends, a client abort included.
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), res);
  } catch (error) {
    if (!clientWentAway(error)) log('response body failed:', error);
  }
}

function clientWentAway(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'EPIPE';
}
