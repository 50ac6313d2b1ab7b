import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { get as httpGet } from 'node:http';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { keys, type Backend, type Catalog, type CatalogEntry, type ObjectStore } from '../../functions/core/ports.ts';
import { createApp, type AppRequest } from '../../functions/http/app.ts';
import { useEmbeddedBackend } from '../support/embedded-backend.ts';
import { startServer, startWorkers, type RunningServer } from '../../functions/local/server.ts';
import { counting } from '../support/counting.ts';

const INDEX = 'streams/v1/index.sjson';
const ITEM = 'noble/amd64/20250709/squashfs';
const MiB = 2 ** 20;

let dataDir: string;
let backend: Backend;
let server: RunningServer | undefined;

useEmbeddedBackend(
  'skystreams-fast-path-',
  (fresh) => ({ dataDir, backend } = fresh),
  async () => {
    await server?.close();
    server = undefined;
  },
);

/** Stages `index` (and `items`, already stored) as generation `generation` and makes it current. */
async function publish(generation: number, index: string, items: { path: string; size: number }[] = []): Promise<void> {
  const owner = { generation, runId: `run-${generation}` };
  await backend.objects.put(keys.metadata(owner, INDEX), new TextEncoder().encode(index));
  const entries: CatalogEntry[] = items.map(({ path, size }) => ({
    contentId: 'c',
    product: 'p',
    version: String(generation),
    item: 'squashfs',
    path,
    size,
    sha256: '0'.repeat(64),
  }));
  await backend.catalog.putEntries(generation, entries);
  const previous = await backend.catalog.getCurrent();
  await backend.catalog.publish(
    {
      ...owner,
      upstreamUpdated: 'Wed, 09 Jul 2025 12:00:00 +0000',
      publishedAt: new Date().toISOString(),
      files: [INDEX],
      itemCount: entries.length,
      totalBytes: items.reduce((sum, item) => sum + item.size, 0),
    },
    previous?.generation,
  );
}

function appRequest(path: string, headers: Record<string, string> = {}, method = 'GET'): AppRequest {
  return { method, pathname: `/${path}`, header: (name) => headers[name] };
}

function text(body: unknown): string {
  expect(body).toBeInstanceOf(Uint8Array);
  return new TextDecoder().decode(body as Uint8Array);
}

/** `size` bytes of 1 MiB chunks, each filled with its index, never all in memory at once. */
async function* chunks(size: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0, index = 0; offset < size; offset += MiB, index++) yield new Uint8Array(Math.min(MiB, size - offset)).fill(index);
}

describe('Function: createApp', () => {
  describe('Method: resolve', () => {
    it('answers metadata with bytes from memory: after the first request, neither the store nor the catalog\'s files are read', async () => {
      // Prepare
      await publish(1, 'generation 1');
      const objectCalls: string[] = [];
      const catalogCalls: string[] = [];
      const app = createApp({ objects: counting<ObjectStore>(backend.objects, objectCalls), catalog: counting<Catalog>(backend.catalog, catalogCalls) });
      await app.resolve(appRequest(INDEX));
      objectCalls.length = 0;
      catalogCalls.length = 0;

      // Act
      const reply = await app.resolve(appRequest(INDEX));

      // Assess
      expect(reply.status).toBe(200);
      expect(text(reply.body)).toBe('generation 1');
      expect(reply.headers).toMatchObject({ 'content-length': '12', etag: expect.stringMatching(/^"/), 'last-modified': expect.any(String) });
      expect(objectCalls).toEqual([]);
      expect(catalogCalls).toEqual(['getCurrent']);
    });

    it('answers with the next publication\'s metadata from the first request after it', async () => {
      // Prepare
      await publish(1, 'generation 1');
      const app = createApp(backend);
      const before = await app.resolve(appRequest(INDEX));

      // Act
      await publish(2, 'generation 2');
      const after = await app.resolve(appRequest(INDEX));

      // Assess
      expect(text(before.body)).toBe('generation 1');
      expect(text(after.body)).toBe('generation 2');
      expect(after.headers.etag).not.toBe(before.headers.etag);
    });

    it('checks the current publication once for requests that arrive together', async () => {
      // Prepare
      await publish(1, 'generation 1');
      const calls: string[] = [];
      const app = createApp({ objects: backend.objects, catalog: counting<Catalog>(backend.catalog, calls) });

      // Act
      const replies = await Promise.all(Array.from({ length: 20 }, () => app.resolve(appRequest(INDEX))));

      // Assess
      expect(replies.map((reply) => reply.status)).toEqual(Array(20).fill(200));
      expect(calls.filter((call) => call === 'getCurrent')).toHaveLength(1);
    });

    it('answers Range, If-None-Match and HEAD on held metadata as on the store\'s', async () => {
      // Prepare
      await publish(1, 'abcdefghij');
      const app = createApp(backend);
      const { headers } = await app.resolve(appRequest(INDEX));

      // Act
      const range = await app.resolve(appRequest(INDEX, { range: 'bytes=2-4' }));
      const notModified = await app.resolve(appRequest(INDEX, { 'if-none-match': headers.etag! }));
      const head = await app.resolve(appRequest(INDEX, {}, 'HEAD'));

      // Assess
      expect(range.status).toBe(206);
      expect(text(range.body)).toBe('cde');
      expect(range.headers).toMatchObject({ 'content-range': 'bytes 2-4/10', 'content-length': '3' });
      expect(notModified.status).toBe(304);
      expect(notModified.body).toBeUndefined();
      expect(head).toEqual({ status: 200, headers });
    });

    it('answers an item with a stream of the store\'s bytes, not a buffer', async () => {
      // Prepare
      await backend.objects.put(keys.item(ITEM), new Uint8Array(1000).fill(1));
      await publish(1, 'index', [{ path: ITEM, size: 1000 }]);
      const app = createApp(backend);

      // Act
      const reply = await app.resolve(appRequest(ITEM));

      // Assess
      expect(reply.status).toBe(200);
      expect(reply.body).not.toBeInstanceOf(Uint8Array);
      let received = 0;
      for await (const chunk of reply.body as AsyncIterable<Uint8Array>) received += chunk.byteLength;
      expect(received).toBe(1000);
    });

    it('answers a method it does not serve with 405 and a malformed path with 400, without throwing', async () => {
      // Prepare
      const app = createApp(backend);

      // Act
      const post = await app.resolve(appRequest(INDEX, {}, 'POST'));
      const dots = await app.resolve(appRequest('streams/%2e%2e/x'));

      // Assess
      expect(post).toMatchObject({ status: 405, headers: { allow: 'GET, HEAD' } });
      expect(dots.status).toBe(400);
    });
  });
});

describe('Function: startServer', () => {
  it('serves the next publication\'s metadata from the first request after it', async () => {
    // Prepare
    await publish(1, 'generation 1');
    server = await startServer(createApp(backend), { port: 0, host: '127.0.0.1' });
    const before = await (await fetch(`${server.url}${INDEX}`)).text();

    // Act
    await publish(2, 'generation 2');
    const after = await (await fetch(`${server.url}${INDEX}`)).text();

    // Assess
    expect(before).toBe('generation 1');
    expect(after).toBe('generation 2');
  });

  it('streams a 64 MiB item with the process\'s memory growing far less than its size', async () => {
    // Prepare
    const size = 64 * MiB;
    await backend.objects.put(keys.item(ITEM), chunks(size));
    await publish(1, 'index', [{ path: ITEM, size }]);
    server = await startServer(createApp(backend), { port: 0, host: '127.0.0.1' });
    const expected = createHash('sha256');
    for await (const chunk of chunks(size)) expected.update(chunk);
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 5);

    // Act
    const received = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
      httpGet(`${server!.url}${ITEM}`, (response) => {
        const hash = createHash('sha256');
        let bytes = 0;
        response.on('data', (chunk: Buffer) => {
          bytes += chunk.byteLength;
          hash.update(chunk);
        });
        response.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
        response.on('error', reject);
      }).on('error', reject);
    });
    clearInterval(sampler);

    // Assess
    expect(received).toEqual({ bytes: size, sha256: expected.digest('hex') });
    expect(peakRss - rssBefore).toBeLessThan(size / 4);
  });
});

describe('Function: startWorkers', () => {
  it('starts the server in this process when one worker is asked for', async () => {
    // Act
    server = await startWorkers(1, () => startServer(createApp(backend), { port: 0, host: '127.0.0.1' }));

    // Assess
    expect((await fetch(`${server.url}api/v1/status`)).status).toBe(200);
  });

  it('serves from several worker processes on one port and stops them all on SIGINT (skystreams serve --workers 2)', async () => {
    // Prepare
    await publish(1, 'generation 1');
    const cli = fileURLToPath(new URL('../../bin/skystreams.mjs', import.meta.url));
    const child = spawn(process.execPath, [cli, 'serve', '--data-dir', dataDir, '--port', '0', '--workers', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));

    // Act
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', () => {
        const match = /serving with 2 workers at (\S+)/.exec(output);
        if (match) resolve(match[1]!);
      });
      void exited.then(() => reject(new Error(`serve exited early: ${output}`)));
    });
    const bodies = await Promise.all(Array.from({ length: 4 }, async () => (await fetch(`${url}${INDEX}`)).text()));
    child.kill('SIGINT');

    // Assess
    expect(bodies).toEqual(Array(4).fill('generation 1'));
    expect(await exited).toBe(0);
    expect(output.match(/serving dir /g)).toHaveLength(2);
  }, 30_000);

  it('rejects a worker count that is not a positive integer', async () => {
    // Act
    const starting = startWorkers(0, () => startServer(createApp(backend), { port: 0, host: '127.0.0.1' }));

    // Assess
    await expect(starting).rejects.toThrow(/workers must be a positive integer/);
  });
});
