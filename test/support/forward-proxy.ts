/**
 * A loopback forward proxy, as operators run squid: CONNECT tunnels for
 * HTTPS, absolute-form requests for plain HTTP, Basic credentials when asked
 * for. Host names resolve through `hosts` only, so an upstream named there is
 * reachable through the proxy and nowhere else. Records what it was asked.
 * Also a TLS front for a loopback upstream, with a certificate made for the
 * test by the openssl CLI.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface ForwardProxy {
  /** `http://127.0.0.1:port`. */
  url: string;
  port: number;
  /** The `host:port` of every CONNECT, refused ones included, in arrival order. */
  connects: string[];
  /** The absolute URL of every plain request, refused ones included, in arrival order. */
  forwarded: string[];
  close(): Promise<void>;
}

export interface ForwardProxyOptions {
  /** Host name → loopback address it resolves to; other names are resolved as they are (127.0.0.1 stays itself). */
  hosts?: Record<string, string>;
  /** Requests without these Basic credentials get 407. @default none asked for */
  credentials?: { username: string; password: string };
  /** Takes connections and requests, answers none of them: a proxy that hangs. @default false */
  silent?: boolean;
}

export async function startForwardProxy(options: ForwardProxyOptions = {}): Promise<ForwardProxy> {
  const connects: string[] = [];
  const forwarded: string[] = [];
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const resolve = (host: string) => options.hosts?.[host] ?? host;
  const expected = options.credentials
    && `Basic ${Buffer.from(`${options.credentials.username}:${options.credentials.password}`).toString('base64')}`;
  const authorized = (request: IncomingMessage) => !expected || request.headers['proxy-authorization'] === expected;

  const server: Server = createServer((incoming: IncomingMessage, answer: ServerResponse) => {
    forwarded.push(incoming.url ?? '');
    if (options.silent) return;
    if (!authorized(incoming)) {
      answer.writeHead(407, { 'proxy-authenticate': 'Basic realm="test proxy"' }).end();
      return;
    }
    const target = new URL(incoming.url ?? '');
    const headers = { ...incoming.headers };
    delete headers['proxy-authorization'];
    const outgoing = request(
      { host: resolve(target.hostname), port: target.port || 80, path: target.pathname + target.search, method: incoming.method, headers, agent: false },
      (response) => {
        answer.writeHead(response.statusCode ?? 502, response.statusMessage, response.headers);
        response.pipe(answer);
        response.once('error', () => answer.destroy());
      },
    );
    outgoing.once('error', () => (answer.headersSent ? answer.destroy() : answer.writeHead(502).end()));
    answer.once('close', () => outgoing.destroy());
    outgoing.end();
  });
  server.on('connection', track);
  server.on('connect', (incoming: IncomingMessage, client: Socket, head: Buffer) => {
    const authority = incoming.url ?? '';
    connects.push(authority);
    if (options.silent) return;
    if (!authorized(incoming)) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test proxy"\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const colon = authority.lastIndexOf(':');
    const host = authority.slice(0, colon).replace(/^\[|\]$/g, '');
    const origin = connect({ host: resolve(host), port: Number(authority.slice(colon + 1)) });
    track(origin);
    origin.once('connect', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.byteLength > 0) origin.write(head);
      origin.pipe(client);
      client.pipe(origin);
    });
    origin.once('error', () => (client.writable ? client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n') : client.destroy()));
    client.once('error', () => origin.destroy());
    client.once('close', () => origin.destroy());
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connects,
    forwarded,
    close: () => closeAll(server, sockets),
  };
}

export interface TestCertificate {
  /** PEM; self-signed, so it is also the CA a client must trust. */
  cert: string;
  key: string;
}

/** A self-signed certificate for `dnsNames` (and 127.0.0.1), valid for a day. */
export async function generateCertificate(dnsNames: string[]): Promise<TestCertificate> {
  const work = await mkdtemp(join(tmpdir(), 'skystreams-cert-'));
  try {
    const names = [...dnsNames.map((name) => `DNS:${name}`), 'IP:127.0.0.1'].join(',');
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', `/CN=${dnsNames[0] ?? '127.0.0.1'}`, '-addext', `subjectAltName=${names}`,
      '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem'),
    ]);
    return { cert: await readFile(join(work, 'cert.pem'), 'utf8'), key: await readFile(join(work, 'key.pem'), 'utf8') };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface TlsFront {
  port: number;
  close(): Promise<void>;
}

/** HTTPS on 127.0.0.1 in front of the plain-HTTP upstream at `originBase` (`http://127.0.0.1:port/`). */
export async function startTlsFront(originBase: string, certificate: TestCertificate): Promise<TlsFront> {
  const origin = new URL(originBase);
  const sockets = new Set<Socket>();
  const server = createHttpsServer({ cert: certificate.cert, key: certificate.key }, (incoming, answer) => {
    const outgoing = request(
      { host: origin.hostname, port: origin.port, path: incoming.url, method: incoming.method, headers: incoming.headers, agent: false },
      (response) => {
        answer.writeHead(response.statusCode ?? 502, response.statusMessage, response.headers);
        response.pipe(answer);
        response.once('error', () => answer.destroy());
      },
    );
    outgoing.once('error', () => (answer.headersSent ? answer.destroy() : answer.writeHead(502).end()));
    answer.once('close', () => outgoing.destroy());
    outgoing.end();
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const port = await listen(server);
  return { port, close: () => closeAll(server, sockets) };
}

/** A loopback port nothing listens on (it was listened on, then closed). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function listen(server: NetServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

async function closeAll(server: NetServer, sockets: Set<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
