import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.ts';
import { keys, type Backend, type CatalogEntry, type ObjectStore, type StoredObject } from '../../functions/core/ports.ts';
import { createApp } from '../../functions/http/app.ts';
import { useEmbeddedBackend } from '../support/embedded-backend.ts';
import { startServer, type RunningServer, type ServerOptions } from '../../functions/local/server.ts';
import { eventually } from '../support/eventually.ts';

const INDEX = 'streams/v1/index.sjson';
const INDEX_TEXT = '-----BEGIN PGP SIGNED MESSAGE-----\n{"format": "index:1.0"}\n';
const SQUASHFS = 'noble/amd64/20250709/squashfs';
/** Far more than the socket buffers hold, so a client that stops reading leaves the server mid-body. */
const SQUASHFS_BYTES = 8 * 1024 * 1024;

let dataDir: string;
let backend: Backend;
let server: RunningServer | undefined;

useEmbeddedBackend(
  'skystreams-server-',
  (fresh) => ({ dataDir, backend } = fresh),
  async () => {
    await server?.close();
    server = undefined;
  },
);

async function serve(options: Partial<ServerOptions> = {}, objects: ObjectStore = backend.objects): Promise<URL> {
  server = await startServer(createApp({ objects, catalog: backend.catalog }), { port: 0, host: '127.0.0.1', ...options });
  return new URL(server.url);
}

/** Generation 1 with the index and one large item, as a sync would publish them. */
async function publishMirror(): Promise<void> {
  const owner = { generation: 1, runId: 'run-1' };
  await backend.objects.put(keys.metadata(owner, INDEX), new TextEncoder().encode(INDEX_TEXT));
  const bytes = new Uint8Array(SQUASHFS_BYTES).fill(7);
  await backend.objects.put(keys.item(SQUASHFS), bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const entry: CatalogEntry = { contentId: 'c', product: 'p', version: '20250709', item: 'squashfs', path: SQUASHFS, size: bytes.length, sha256 };
  await backend.catalog.recordObject(storedObject(SQUASHFS, bytes.length, sha256));
  await backend.catalog.putEntries(1, [entry]);
  await backend.catalog.publish(
    {
      ...owner,
      upstreamUpdated: 'Wed, 09 Jul 2025 12:00:00 +0000',
      publishedAt: '2025-07-09T12:00:00.000Z',
      files: [INDEX],
      itemCount: 1,
      totalBytes: bytes.length,
    },
    undefined,
  );
}

/** The catalog's record of a copied item. */
function storedObject(path: string, size: number, sha256: string): StoredObject {
  return { path, size, sha256, digests: { sha256 }, storedAt: new Date().toISOString() };
}

function open(url: URL): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything the server sends until it closes the connection. */
function received(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => {});
    socket.on('close', () => resolve(text));
  });
}

/** Sends `head` (request line and headers, `\r\n`-separated, no final blank line) verbatim; answers the raw response. */
async function rawRequest(url: URL, head: string): Promise<{ status: number; headers: string; body: string }> {
  const socket = await open(url);
  const response = received(socket);
  socket.write(`${head}\r\nConnection: close\r\n\r\n`);
  const text = await response;
  const split = text.indexOf('\r\n\r\n');
  const headers = text.slice(0, split).toLowerCase();
  const body = text.slice(split + 4);
  const status = Number(/^http\/1\.1 (\d{3})/.exec(headers)?.[1]);
  return { status, headers, body: headers.includes('\r\ntransfer-encoding: chunked') ? unchunked(body) : body };
}

function unchunked(body: string): string {
  let text = '';
  for (let at = 0; ; ) {
    const lineEnd = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, lineEnd), 16);
    if (!(size > 0)) return text;
    text += body.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** File descriptors of this process open on some stored item. */
async function openItemFiles(): Promise<string[]> {
  const itemsDir = join(dataDir, 'objects', keys.item(''));
  const targets = await Promise.all(
    (await readdir('/proc/self/fd')).map((fd) => readlink(join('/proc/self/fd', fd)).catch(() => '')),
  );
  return targets.filter((target) => target.startsWith(itemsDir));
}

/** Resolves once `socket` has closed and the event loop has polled for I/O since, so the server end has seen it go. */
async function closedEverywhere(socket: Socket): Promise<void> {
  if (!socket.closed) await new Promise((resolve) => socket.once('close', resolve));
  for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
}

describe('Function: startServer', () => {
  describe('Request line and Host', () => {
    beforeEach(publishMirror);

    it('takes the path from the request target alone, never from the Host header', async () => {
      // Prepare
      const url = await serve();

      // Act
      const response = await rawRequest(url, 'GET /index.sjson HTTP/1.1\r\nHost: a/streams/v1');

      // Assess
      expect(response.status).toBe(400);
      expect(response.body).not.toContain('index:1.0');
    });

    it('answers a Host whose port is out of range with 400', async () => {
      // Prepare
      const url = await serve();

      // Act
      const response = await rawRequest(url, `GET /${INDEX} HTTP/1.1\r\nHost: x:99999`);

      // Assess
      expect(response.status).toBe(400);
      expect(JSON.parse(response.body)).toEqual({ error: { code: 'bad_request', message: 'malformed Host header' } });
    });

    it('answers TRACE with 405 and Allow: GET, HEAD', async () => {
      // Prepare
      const url = await serve();

      // Act
      const response = await rawRequest(url, `TRACE /${INDEX} HTTP/1.1\r\nHost: localhost`);

      // Assess
      expect(response.status).toBe(405);
      expect(response.headers).toContain('\r\nallow: get, head');
      expect(JSON.parse(response.body)).toEqual({ error: { code: 'method_not_allowed', message: 'method TRACE not allowed' } });
    });

    it('answers an absolute-form target with 400 rather than fetching the origin it names', async () => {
      // Prepare
      const url = await serve();

      // Act
      const response = await rawRequest(url, `GET http://elsewhere.example/${INDEX} HTTP/1.1\r\nHost: localhost`);

      // Assess
      expect(response.status).toBe(400);
      expect(JSON.parse(response.body)).toEqual({ error: { code: 'bad_request', message: 'request target must be a path' } });
    });

    it.each([
      ['a .. segment', `/streams/v1/../v1/index.sjson`],
      ['a percent-encoded .. segment', `/streams/v1/%2e%2e/v1/index.sjson`],
      ['backslashes', `/streams\\v1\\index.sjson`],
      ['bad percent-encoding', `/streams/v1/%zz`],
      ['an encoded NUL', `/streams/v1/index.sjson%00`],
    ])('answers a target with %s with 400', async (_name, target) => {
      // Prepare
      const url = await serve();

      // Act
      const response = await rawRequest(url, `GET ${target} HTTP/1.1\r\nHost: localhost`);

      // Assess
      expect(response.status).toBe(400);
      expect(JSON.parse(response.body)).toEqual({ error: { code: 'bad_request', message: 'malformed request path' } });
    });

    it('still serves a plain request with a Host naming another port', async () => {
      // Prepare
      const url = await serve();

      // Act
      const response = await rawRequest(url, `GET /${INDEX} HTTP/1.1\r\nHost: mirror.example:8080`);

      // Assess
      expect(response.status).toBe(200);
      expect(response.body).toBe(INDEX_TEXT);
    });
  });

  describe('Limits', () => {
    it('cuts off a client that sends its headers too slowly', async () => {
      // Prepare
      const url = await serve({ limits: { headersTimeoutMs: 200, requestTimeoutMs: 200 } });
      const socket = await open(url);
      const response = received(socket);
      const started = Date.now();

      // Act: one header line every 50 ms, for up to 3 s.
      socket.write('GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n');
      for (let line = 0; line < 60 && !socket.destroyed && socket.writable; line++) {
        socket.write(`X-Slow-${line}: 1\r\n`);
        await sleep(50);
      }
      const text = await Promise.race([response, sleep(1000).then(() => 'still open')]);

      // Assess
      expect(text).toMatch(/^HTTP\/1\.1 408/);
      expect(Date.now() - started).toBeLessThan(2500);
      socket.destroy();
    });

    it('sheds the connection idle longest for a new one beyond maxConnections, and closes a new one when every connection is busy', async () => {
      // Prepare: two connections at the cap, one idle longer than the other.
      await publishMirror();
      const url = await serve({ limits: { maxConnections: 2 } });
      const oldest = await open(url);
      const oldestClosed = received(oldest);
      await sleep(20);
      const younger = await open(url);
      await sleep(50);

      // Act: a third client asks for the status, then two paused downloads fill the cap.
      const third = await rawRequest(url, 'GET /api/v1/status HTTP/1.1\r\nHost: localhost');
      younger.destroy();
      const downloads = [await open(url), await open(url)];
      for (const download of downloads) {
        const firstBytes = new Promise<void>((resolve) => download.once('data', () => resolve()));
        download.write(`GET /${SQUASHFS} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
        await firstBytes;
        download.pause();
      }
      const extra = await open(url);
      const refused = await Promise.race([received(extra), sleep(1000).then(() => 'still open')]);

      // Assess
      expect(third.status).toBe(200);
      expect(await oldestClosed).toBe('');
      expect(refused).toBe('');
      expect(downloads.every((download) => !download.destroyed)).toBe(true);
      for (const download of downloads) download.destroy();
    });

    it('R-idle-connections: answers a new client within 1 s while 2,000 idle connections are held open', async () => {
      // Prepare: 2,000 connections that never send a byte, opened 100 at a time (loopback only).
      const url = await serve();
      const idle: Socket[] = [];
      for (let batch = 0; batch < 20; batch++) {
        const opened = await Promise.all(Array.from({ length: 100 }, () => open(url).catch(() => undefined)));
        for (const socket of opened) {
          if (!socket) continue;
          socket.on('error', () => {});
          idle.push(socket);
        }
      }
      await sleep(100);

      // Act
      const started = performance.now();
      const answer = await rawRequest(url, 'GET /api/v1/status HTTP/1.1\r\nHost: localhost');
      const elapsedMs = performance.now() - started;

      // Assess
      expect(idle).toHaveLength(2000);
      expect(answer.status).toBe(200);
      expect(elapsedMs).toBeLessThan(1000);
      console.info(`time to a 200 with 2,000 idle connections open: ${elapsedMs.toFixed(1)} ms`);
      for (const socket of idle) socket.destroy();
    });

    it('rejects a limit that is not a positive integer', async () => {
      // Act
      const starting = serve({ limits: { idleTimeoutMs: 0 } });

      // Assess
      await expect(starting).rejects.toBeInstanceOf(ConfigError);
      await expect(starting).rejects.toThrow('server limit idleTimeoutMs must be a positive integer, not 0');
      expect(server).toBeUndefined();
    });
  });

  describe.runIf(existsSync('/proc/self/fd'))('Client aborts', () => {
    beforeEach(publishMirror);

    it('closes the item file when the client disconnects mid-download, and keeps serving', async () => {
      // Prepare
      const url = await serve();
      const socket = await open(url);
      const firstBytes = new Promise<void>((resolve) => socket.once('data', () => resolve()));
      socket.write(`GET /${SQUASHFS} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      await firstBytes;
      socket.pause();
      expect(await openItemFiles()).toHaveLength(1);

      // Act
      socket.destroy();

      // Assess
      await eventually(async () => expect(await openItemFiles()).toEqual([]));
      const after = await rawRequest(url, `GET /${INDEX} HTTP/1.1\r\nHost: localhost`);
      expect(after.status).toBe(200);
    });

    it('closes the item file when the client disconnects before the response starts', async () => {
      // Prepare: the real store, whose get waits until the client has gone.
      let clientGone!: () => void;
      const gone = new Promise<void>((resolve) => (clientGone = resolve));
      let storeAsked!: () => void;
      const asked = new Promise<void>((resolve) => (storeAsked = resolve));
      const objects = new Proxy(backend.objects, {
        get(target, property) {
          if (property === 'get') {
            return async (...args: Parameters<ObjectStore['get']>) => {
              storeAsked();
              await gone;
              return target.get(...args);
            };
          }
          const value: unknown = Reflect.get(target, property, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const url = await serve({}, objects);
      const socket = await open(url);
      socket.write(`GET /${SQUASHFS} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      await asked;

      // Act
      socket.destroy();
      await closedEverywhere(socket);
      clientGone();

      // Assess
      await eventually(async () => expect(await openItemFiles()).toEqual([]));
      const after = await rawRequest(url, `GET /${INDEX} HTTP/1.1\r\nHost: localhost`);
      expect(after.status).toBe(200);
    });
  });
});
