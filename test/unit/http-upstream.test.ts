import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { AddressInfo } from 'node:net';
import { constants as perfConstants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { COLLECT_EVERY_BYTES, youngCollection } from '../../functions/runtime/young-collection.ts';
import { ConfigError, InputTooLargeError, NotFoundError, UpstreamError } from '../../functions/core/errors.ts';
import { redactUrl, splitCredentials } from '../../functions/core/redact.ts';

let server: Server;
let base: string;
/** The request headers of the last request for each path. */
const seenHeaders = new Map<string, IncomingHttpHeaders>();
const LARGE_ITEM_BYTES = 96 * 1024 * 1024;
const GZIPPED_TEXT = '{"format":"products:1.0"}'.repeat(1000);

beforeAll(async () => {
  // Chunked answers carry no Content-Length, so only a bounded read can stop an oversized one.
  server = createServer((req, res) => {
    seenHeaders.set(req.url ?? '', req.headers);
    if (req.url === '/streams/v1/gzipped.json') {
      const body = gzipSync(GZIPPED_TEXT);
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': body.length });
      res.end(body);
      return;
    }
    if (req.url === '/streams/v1/gzip-bomb.json') {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(gzipSync(Buffer.alloc(10 * 1024 * 1024)));
      return;
    }
    if (req.url === '/item/large') {
      res.writeHead(200, { 'content-length': LARGE_ITEM_BYTES });
      const block = Buffer.alloc(1024 * 1024, 0x5a);
      let sent = 0;
      const sendMore = () => {
        while (sent < LARGE_ITEM_BYTES) {
          sent += block.length;
          if (!res.write(block)) return void res.once('drain', sendMore);
        }
        res.end();
      };
      sendMore();
      return;
    }
    if (req.url === '/item/encoded') {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(gzipSync('bytes'));
      return;
    }
    if (req.url === '/streams/v1/big.json') {
      res.writeHead(200, { etag: '"v1"' });
      for (let i = 0; i < 3; i++) res.write(Buffer.alloc(100, 0x61));
      res.end();
      return;
    }
    if (req.url === '/streams/v1/large-chunked.json') {
      for (let i = 0; i < 5; i++) res.write(Buffer.alloc(100_000, 0x61 + i));
      res.end();
      return;
    }
    if (req.url === '/streams/v1/announced.json') {
      // Announces a mebibyte, sends a few bytes and holds on: only the header can have been judged.
      res.writeHead(200, { 'content-length': 1024 * 1024 });
      res.write('{}');
      return;
    }
    if (req.url === '/streams/v1/sized.json') {
      // Announced, and sent in several writes: read into the one buffer its length calls for.
      res.writeHead(200, { 'content-length': 3 * 100_000 });
      for (let i = 0; i < 3; i++) res.write(Buffer.alloc(100_000, 0x61 + i));
      res.end();
      return;
    }
    if (req.url === '/streams/v1/cut.json') {
      // Announces more than it sends, then closes: a truncated file must not pass for a whole one.
      res.writeHead(200, { 'content-length': 1000 });
      res.write('{}', () => res.destroy());
      return;
    }
    if (req.url === '/streams/v1/cached.json' && req.headers['if-none-match'] === '"v1"') {
      res.writeHead(304).end();
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('Class: HttpUpstream', () => {
  describe('Method: fetchFile', () => {
    it('reads a chunked body whole, with its validators', async () => {
      const fetched = await new HttpUpstream(base).fetchFile('streams/v1/big.json');

      expect(fetched).toMatchObject({ notModified: false, validators: { etag: '"v1"' } });
      expect(fetched.notModified === false && fetched.bytes.length).toBe(300);
    });

    it('reads a body of announced length whole, in order', async () => {
      const fetched = await new HttpUpstream(base).fetchFile('streams/v1/sized.json');

      const bytes = fetched.notModified ? new Uint8Array() : fetched.bytes;
      expect(bytes.byteLength).toBe(300_000);
      expect([bytes[0], bytes[99_999], bytes[100_000], bytes[299_999]]).toEqual([0x61, 0x61, 0x62, 0x63]);
    });

    it('reads a chunked body larger than its first buffer whole, in order', async () => {
      const fetched = await new HttpUpstream(base).fetchFile('streams/v1/large-chunked.json');

      const bytes = fetched.notModified ? new Uint8Array() : fetched.bytes;
      expect(bytes.byteLength).toBe(5 * 100_000);
      expect([bytes[0], bytes[199_999], bytes[200_000], bytes[499_999]]).toEqual([0x61, 0x62, 0x63, 0x65]);
    });

    it('fails (UpstreamError) on a body shorter than announced', async () => {
      const attempt = new HttpUpstream(base).fetchFile('streams/v1/cut.json');

      await expect(attempt).rejects.toBeInstanceOf(UpstreamError);
    });

    it('refuses a body past the metadata limit even without a Content-Length', async () => {
      const attempt = new HttpUpstream(base, { maxMetadataBytes: 150 }).fetchFile('streams/v1/big.json');

      await expect(attempt).rejects.toBeInstanceOf(InputTooLargeError);
      await expect(attempt).rejects.toMatchObject({ source: `${base}streams/v1/big.json`, limit: 150 });
      await expect(attempt).rejects.toThrow(/big\.json: more than 150 bytes arrived, over the 150-byte limit \(maxMetadataBytes\)/);
    });

    it('lets the caller set a limit of its own, below or above the metadata default', async () => {
      const upstream = new HttpUpstream(base, { maxMetadataBytes: 150 });

      const below = upstream.fetchFile('streams/v1/big.json', undefined, { maxBytes: 299 }).catch((error: unknown) => error);
      const exact = await upstream.fetchFile('streams/v1/big.json', undefined, { maxBytes: 300 });

      expect(await below).toBeInstanceOf(InputTooLargeError);
      expect(await below).toMatchObject({ limit: 299, message: expect.stringMatching(/over the 299-byte limit \(maxBytes\)/) });
      expect(exact.notModified === false && exact.bytes.length).toBe(300);
    });

    it('refuses an announced Content-Length over the limit before reading the body', async () => {
      const attempt = new HttpUpstream(base).fetchFile('streams/v1/announced.json', undefined, { maxBytes: 1024 });

      await expect(attempt).rejects.toBeInstanceOf(InputTooLargeError);
      await expect(attempt).rejects.toThrow(/announced\.json: announces 1048576 bytes, over the 1024-byte limit/);
    });

    it('decodes a gzipped answer, and counts the limit in decoded bytes', async () => {
      const upstream = new HttpUpstream(base);

      const fetched = await upstream.fetchFile('streams/v1/gzipped.json');
      const bomb = await upstream.fetchFile('streams/v1/gzip-bomb.json', undefined, { maxBytes: 1024 * 1024 }).catch((error: unknown) => error);

      expect(seenHeaders.get('/streams/v1/gzipped.json')?.['accept-encoding']).toMatch(/gzip/);
      expect(fetched.notModified === false && Buffer.from(fetched.bytes).toString()).toBe(GZIPPED_TEXT);
      expect(bomb).toBeInstanceOf(InputTooLargeError);
      expect(bomb).toMatchObject({ message: expect.stringMatching(/gzip-bomb\.json: more than 1048576 bytes arrived/) });
    });

    it('answers a conditional GET with notModified, and 404 with NotFoundError', async () => {
      const upstream = new HttpUpstream(base);

      await expect(upstream.fetchFile('streams/v1/cached.json', { etag: '"v1"' })).resolves.toEqual({ notModified: true });
      await expect(upstream.fetchFile('streams/v1/missing.json')).rejects.toThrow(NotFoundError);
    });
  });
});

describe('Class: HttpUpstream, Method: openStream', () => {
  it('keeps an item body readable when its response is garbage-collected before the first read', async () => {
    // Prepare: a store may take a while (temp dir, open, fsync) between opening the item and reading it.
    setFlagsFromString('--expose-gc');
    const collectGarbage = runInNewContext('gc') as () => void;
    const upstream = new HttpUpstream(base);

    // Act
    const { body, size } = await upstream.openStream('streams/v1/sized.json');
    for (let i = 0; i < 3; i++) {
      collectGarbage();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);

    // Assess
    expect(size).toBe(300_000);
    expect(Buffer.concat(chunks).length).toBe(300_000);
  });
});

describe('Class: HttpUpstream, content encoding of items', () => {
  it('asks for the bytes as stored, and refuses an item sent content-encoded with UpstreamError naming it', async () => {
    const upstream = new HttpUpstream(base);

    const sized = await upstream.openStream('streams/v1/sized.json');
    for await (const _chunk of sized.body) {
      // Drained: the exchange is over.
    }
    const attempt = await upstream.openStream('item/encoded').catch((error: unknown) => error);

    expect(seenHeaders.get('/streams/v1/sized.json')?.['accept-encoding']).toBe('identity');
    expect(attempt).toBeInstanceOf(UpstreamError);
    expect(attempt).toMatchObject({ message: `${base}item/encoded: answered with Content-Encoding gzip to a request for the bytes as stored (identity)` });
  });
});

describe('Class: HttpUpstream, memory of item bodies', () => {
  it('tells onBodyBytes the size of every chunk of item body, and nothing of metadata', async () => {
    const reported: number[] = [];
    const upstream = new HttpUpstream(base, { onBodyBytes: (bytes) => reported.push(bytes) });

    await upstream.fetchFile('streams/v1/sized.json');
    const { body } = await upstream.openStream('item/large');
    let received = 0;
    for await (const chunk of body) received += chunk.byteLength;

    expect(received).toBe(LARGE_ITEM_BYTES);
    expect(reported.length).toBeGreaterThan(1);
    expect(reported.reduce((total, bytes) => total + bytes, 0)).toBe(LARGE_ITEM_BYTES);
  });

  it('with the entry points\' young collection, collects the young generation every few MiB of body', async () => {
    // Without these collections a download's small per-chunk objects seldom fill the young generation:
    // a few scavenges in 96 MiB, and the chunks' external memory left for full collections.
    const collections: PerformanceEntry[] = [];
    const observer = new PerformanceObserver((list) => collections.push(...list.getEntries()));
    observer.observe({ entryTypes: ['gc'] });

    const { body } = await new HttpUpstream(base, { onBodyBytes: youngCollection({}) }).openStream('item/large');
    let received = 0;
    for await (const chunk of body) received += chunk.byteLength;
    await new Promise((resolve) => setImmediate(resolve));
    collections.push(...observer.takeRecords());
    observer.disconnect();

    const minor = collections.filter((entry) => (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MINOR);
    expect(received).toBe(LARGE_ITEM_BYTES);
    // A busy machine can fold two requested scavenges into one: at least half of those asked for.
    expect(minor.length).toBeGreaterThanOrEqual(LARGE_ITEM_BYTES / COLLECT_EVERY_BYTES / 2);
  });

  it('has no young collection when SKYSTREAMS_YOUNG_COLLECTION=off', () => {
    expect(youngCollection({ SKYSTREAMS_YOUNG_COLLECTION: 'off' })).toBeUndefined();
    expect(youngCollection({})).toBeTypeOf('function');
  });
});

describe('Function: redactUrl', () => {
  it('hides user and password, and leaves everything else as it was', () => {
    expect(redactUrl('https://user:p%40ss@images.example/a/b%3Ac?x#y')).toBe('https://***@images.example/a/b%3Ac?x#y');
    expect(redactUrl('http://token@127.0.0.1:8080/')).toBe('http://***@127.0.0.1:8080/');
    expect(redactUrl('https://images.maas.io/ephemeral-v3/stable/')).toBe('https://images.maas.io/ephemeral-v3/stable/');
  });

  it('hides a password holding an unescaped @, and leaves an @ in the path alone', () => {
    expect(redactUrl('http://u:p@ss@host/x')).toBe('http://***@host/x');
    expect(redactUrl('http://host/users/@me')).toBe('http://host/users/@me');
  });
});

describe('Function: splitCredentials', () => {
  it('returns the URL without them, and them percent-decoded', () => {
    expect(splitCredentials('http://mirror:p%40ss@host/root/')).toEqual({
      url: 'http://host/root/',
      credentials: { username: 'mirror', password: 'p@ss' },
    });
    expect(splitCredentials('http://host/root/')).toEqual({ url: 'http://host/root/' });
  });
});

describe('Class: HttpUpstream, constructor', () => {
  it('refuses a source that is not a URL, without echoing its credentials', () => {
    const attempt = () => new HttpUpstream('http://user:secret@');

    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow('upstream "http://***@/" is not a URL');
  });
});
