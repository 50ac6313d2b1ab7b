import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpUpstream, MAX_REDIRECTS } from '../../functions/adapters/upstream/http-upstream.ts';
import { InputTooLargeError, UpstreamError } from '../../functions/core/errors.ts';
import type { ByteStream, FetchedFile } from '../../functions/core/ports.ts';
import { syntheticContent } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

const ITEM = 'noble/amd64/20250709/squashfs';
const INDEX = 'streams/v1/index.json';
const itemBytes = syntheticContent(ITEM, 256 * 1024);
const indexBytes = new TextEncoder().encode(`${JSON.stringify({ format: 'index:1.0', index: {} })}\n`);

let upstream: ServedTree;
/** Another port: another origin. */
let elsewhere: ServedTree;

beforeAll(async () => {
  upstream = await serveTree(new Map([[ITEM, itemBytes], [INDEX, indexBytes]]));
  elsewhere = await serveTree(new Map([[ITEM, itemBytes], [INDEX, indexBytes]]));
});

afterEach(() => {
  upstream.faults.clear();
  upstream.requests.length = 0;
  elsewhere.requests.length = 0;
});

afterAll(async () => {
  await Promise.all([upstream.close(), elsewhere.close()]);
});

async function drain(body: ByteStream): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function bytesOf(fetched: FetchedFile): Buffer {
  if (fetched.notModified) return expect.unreachable('expected the file, not 304');
  return Buffer.from(fetched.bytes);
}

/** Rejects with what `promise` rejects with; fails the test when it resolves. */
async function failureOf(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => expect.unreachable('expected a failure'),
    (error: unknown) => error as Error,
  );
}

describe('Class: HttpUpstream, against a faulty upstream', () => {
  describe('Method: openStream', () => {
    it('fails a body cut short of its Content-Length with UpstreamError naming the URL', async () => {
      upstream.faults.set(ITEM, { kind: 'truncate', afterBytes: 1000 });
      const { body, size } = await new HttpUpstream(upstream.baseUrl).openStream(ITEM);

      const error = await failureOf(drain(body));

      expect(size).toBe(itemBytes.length);
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toContain(upstream.url(ITEM));
    });

    it('passes corrupted bytes through as they came: the checksum layer is the one to refuse them', async () => {
      upstream.faults.set(ITEM, { kind: 'corrupt', offsets: [7, 70_000] });
      const { body } = await new HttpUpstream(upstream.baseUrl).openStream(ITEM);

      const received = await drain(body);

      expect(received.length).toBe(itemBytes.length);
      expect(Buffer.compare(received, itemBytes)).not.toBe(0);
      expect(received[7]).toBe(itemBytes[7]! ^ 0xff);
    });

    it('fails a body that ends before the longer Content-Length it announced', async () => {
      upstream.faults.set(ITEM, { kind: 'wrongLength', extraBytes: 10 });
      const { body, size } = await new HttpUpstream(upstream.baseUrl).openStream(ITEM);

      const error = await failureOf(drain(body));

      expect(size).toBe(itemBytes.length + 10);
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toContain(upstream.url(ITEM));
    });

    it('never yields bytes past a too short Content-Length, so the size check sees the announced length', async () => {
      upstream.faults.set(ITEM, { kind: 'shortLength', missingBytes: 100 });
      const { body, size } = await new HttpUpstream(upstream.baseUrl).openStream(ITEM);

      const received = await drain(body);

      expect(size).toBe(itemBytes.length - 100);
      expect(received.length).toBe(itemBytes.length - 100);
    });

    it('streams an endless body on (the checksum layer bounds items) and closes the connection when the reader stops', async () => {
      upstream.faults.set(ITEM, { kind: 'endless', chunkBytes: 64 * 1024, intervalMs: 1 });
      const { body, size } = await new HttpUpstream(upstream.baseUrl).openStream(ITEM);

      let received = 0;
      for await (const chunk of body) {
        received += chunk.length;
        if (received > 1024 * 1024) break;
      }
      const [request] = upstream.requestsFor(ITEM);
      await request!.over;

      expect(size).toBeUndefined();
      expect(request!.cutShort).toBe(true);
    });

    it('closes the connection when the body is given up before its first read', async () => {
      upstream.faults.set(ITEM, { kind: 'endless', chunkBytes: 64 * 1024, intervalMs: 1 });
      const { body } = await new HttpUpstream(upstream.baseUrl).openStream(ITEM);

      const ended = await body[Symbol.asyncIterator]().return?.();
      const [request] = upstream.requestsFor(ITEM);
      await request!.over;

      expect(ended).toEqual({ done: true, value: undefined });
      expect(request!.cutShort).toBe(true);
    });

    it('fails a stalled download with UpstreamError within the idle timeout, and closes the connection', async () => {
      upstream.faults.set(ITEM, { kind: 'stall', afterBytes: 1000 });
      const { body } = await new HttpUpstream(upstream.baseUrl, { itemIdleTimeoutMs: 200 }).openStream(ITEM);
      const started = Date.now();

      const error = await failureOf(drain(body));
      const [request] = upstream.requestsFor(ITEM);
      await request!.over;

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toMatch(new RegExp(`^${escape(upstream.url(ITEM))}: download stalled: no data for 200 ms`));
      expect(Date.now() - started).toBeGreaterThanOrEqual(180);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(request!.cutShort).toBe(true);
    });

    it('does not count a slow reader as a stalled upstream', async () => {
      const { body } = await new HttpUpstream(upstream.baseUrl, { itemIdleTimeoutMs: 100 }).openStream(ITEM);

      let received = 0;
      for await (const chunk of body) {
        received += chunk.length;
        await new Promise((resolve) => setTimeout(resolve, 150));
      }

      expect(received).toBe(itemBytes.length);
    });

    it('fails a download below the minimum rate with UpstreamError naming the rate, and closes the connection', async () => {
      upstream.faults.set(ITEM, { kind: 'endless', chunkBytes: 1, intervalMs: 20 });
      const { body } = await new HttpUpstream(upstream.baseUrl, { minItemRate: { bytesPerSecond: 1024, windowMs: 200 } }).openStream(ITEM);

      const error = await failureOf(drain(body));
      const [request] = upstream.requestsFor(ITEM);
      await request!.over;

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toMatch(new RegExp(`^${escape(upstream.url(ITEM))}: download too slow: [\\d.]+ B/s over \\d+ ms of waiting`));
      expect(request!.cutShort).toBe(true);
    });

    it('does not count a slow reader against the minimum rate', async () => {
      const { body } = await new HttpUpstream(upstream.baseUrl, { minItemRate: { bytesPerSecond: 64 * 1024 * 1024, windowMs: 100 } }).openStream(ITEM);

      let received = 0;
      for await (const chunk of body) {
        received += chunk.length;
        await new Promise((resolve) => setTimeout(resolve, 150));
      }

      expect(received).toBe(itemBytes.length);
    });

    it('fails with UpstreamError when the response headers do not arrive in time', async () => {
      upstream.faults.set(ITEM, { kind: 'slowHeaders', delayMs: 2_000 });
      const started = Date.now();

      const error = await failureOf(new HttpUpstream(upstream.baseUrl, { itemHeadersTimeoutMs: 200 }).openStream(ITEM));

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toBe(`${upstream.url(ITEM)}: no response headers within 200 ms`);
      expect(Date.now() - started).toBeLessThan(1_500);
    });

    it('fails a connection reset mid-body with UpstreamError naming the URL', async () => {
      upstream.faults.set(ITEM, { kind: 'reset', afterBytes: 1000 });
      const { body } = await new HttpUpstream(upstream.baseUrl).openStream(ITEM);

      const error = await failureOf(drain(body));

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toContain(upstream.url(ITEM));
    });
  });

  describe('Method: fetchFile', () => {
    it('refuses an endless body with InputTooLargeError before more than maxBytes + 64 KiB arrive', async () => {
      upstream.faults.set(INDEX, { kind: 'endless', chunkBytes: 16 * 1024, intervalMs: 1 });
      const maxBytes = 256 * 1024;

      const error = await failureOf(new HttpUpstream(upstream.baseUrl).fetchFile(INDEX, undefined, { maxBytes }));
      const [request] = upstream.requestsFor(INDEX);
      await request!.over;

      expect(error).toBeInstanceOf(InputTooLargeError);
      expect(error).toMatchObject({ source: upstream.url(INDEX), limit: maxBytes });
      expect(error.message).toContain(`${maxBytes}-byte limit`);
      // Sent and then cut off: the reader stopped at the limit rather than buffering on.
      expect(request!.cutShort).toBe(true);
      expect(request!.bodyBytesSent).toBeLessThanOrEqual(maxBytes + 64 * 1024);
    });

    it('fails a reset before any header with UpstreamError naming the URL', async () => {
      upstream.faults.set(INDEX, { kind: 'reset' });

      const error = await failureOf(new HttpUpstream(upstream.baseUrl).fetchFile(INDEX));

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toMatch(new RegExp(`^${escape(upstream.url(INDEX))}: request failed`));
    });

    it('fails a truncated metadata file with UpstreamError rather than returning part of it', async () => {
      upstream.faults.set(INDEX, { kind: 'truncate', afterBytes: 10 });

      const error = await failureOf(new HttpUpstream(upstream.baseUrl).fetchFile(INDEX));

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toContain(upstream.url(INDEX));
    });

    it('reports a 5xx as UpstreamError with its status, and reads the file once upstream recovers', async () => {
      upstream.faults.set(INDEX, { kind: 'status', status: 503, times: 1 });
      const http = new HttpUpstream(upstream.baseUrl);

      const error = await failureOf(http.fetchFile(INDEX));
      const retried = await http.fetchFile(INDEX);

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toBe(`${upstream.url(INDEX)}: HTTP 503 Service Unavailable`);
      expect(bytesOf(retried)).toEqual(Buffer.from(indexBytes));
      expect(upstream.requestsFor(INDEX).map((r) => r.status)).toEqual([503, 200]);
    });
  });

  describe('Redirects', () => {
    it('follows a redirect on the same origin, credentials and all', async () => {
      upstream.faults.set(INDEX, { kind: 'redirect', location: '/mirror/index.json' });
      upstream.files.set('mirror/index.json', indexBytes);
      const withCredentials = upstream.baseUrl.replace('http://', 'http://mirror:s3cret@');

      const fetched = await new HttpUpstream(withCredentials).fetchFile(INDEX);

      expect(bytesOf(fetched)).toEqual(Buffer.from(indexBytes));
      expect(upstream.requests.map((r) => [r.path, r.headers.authorization])).toEqual([
        [INDEX, basic('mirror', 's3cret')],
        ['mirror/index.json', basic('mirror', 's3cret')],
      ]);
    });

    it('ends a redirect loop with UpstreamError without going round it', async () => {
      upstream.faults.set(INDEX, { kind: 'redirect', location: '/loop/b' });
      upstream.faults.set('loop/b', { kind: 'redirect', location: `/${INDEX}`, status: 301 });

      const error = await failureOf(new HttpUpstream(upstream.baseUrl).fetchFile(INDEX));

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toMatch(/redirect loop/);
      expect(upstream.requests).toHaveLength(2);
    });

    it(`refuses a chain of more than ${MAX_REDIRECTS} redirects`, async () => {
      for (let hop = 0; hop < 10; hop++) {
        upstream.faults.set(hop === 0 ? INDEX : `hop/${hop}`, { kind: 'redirect', location: `/hop/${hop + 1}` });
      }

      const error = await failureOf(new HttpUpstream(upstream.baseUrl).openStream(INDEX));

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toContain(`more than ${MAX_REDIRECTS} redirects`);
      expect(upstream.requests).toHaveLength(MAX_REDIRECTS + 1);
    });

    it('refuses a redirect to another origin with UpstreamError naming both URLs', async () => {
      upstream.faults.set(ITEM, { kind: 'redirect', location: elsewhere.url(ITEM) });

      const error = await failureOf(new HttpUpstream(upstream.baseUrl).openStream(ITEM));

      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toContain(upstream.url(ITEM));
      expect(error.message).toContain(elsewhere.url(ITEM));
      expect(elsewhere.requests).toHaveLength(0);
    });

    it('follows a redirect to another origin when allowed, without handing it the credentials', async () => {
      upstream.faults.set(ITEM, { kind: 'redirect', location: elsewhere.url(ITEM) });
      const withCredentials = upstream.baseUrl.replace('http://', 'http://mirror:s3cret@');
      const http = new HttpUpstream(withCredentials, { allowCrossHostRedirects: true });

      const { body } = await http.openStream(ITEM);

      expect(Buffer.compare(await drain(body), itemBytes)).toBe(0);
      expect(upstream.requestsFor(ITEM)[0]!.headers.authorization).toBe(basic('mirror', 's3cret'));
      expect(elsewhere.requestsFor(ITEM)).toHaveLength(1);
      expect(elsewhere.requestsFor(ITEM)[0]!.headers.authorization).toBeUndefined();
    });
  });

  describe('Credentials in the source URL', () => {
    it('sends them as Basic auth but never shows them in url() or in messages', async () => {
      upstream.faults.set(INDEX, { kind: 'status', status: 500 });
      const { port } = new URL(upstream.baseUrl);
      const http = new HttpUpstream(`http://mirror:p%40ss@127.0.0.1:${port}/`);

      const error = await failureOf(http.fetchFile(INDEX));
      const fetched = await http.fetchFile(ITEM);

      expect(http.url(INDEX)).toBe(`http://***@127.0.0.1:${port}/${INDEX}`);
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toBe(`http://***@127.0.0.1:${port}/${INDEX}: HTTP 500 Internal Server Error`);
      expect(error.message).not.toMatch(/mirror|p%40ss|p@ss/);
      expect(bytesOf(fetched).equals(itemBytes)).toBe(true);
      expect(upstream.requests.map((r) => r.headers.authorization)).toEqual([basic('mirror', 'p@ss'), basic('mirror', 'p@ss')]);
    });
  });
});

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
