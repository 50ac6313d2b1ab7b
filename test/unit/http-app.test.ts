import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { BundleError, ConfigError, ConflictError, NotFoundError, UnavailableError } from '../../functions/core/errors.ts';
import {
  DEFAULT_CHANNEL,
  keys,
  type Backend,
  type Catalog,
  type CatalogEntry,
  type ObjectStore,
  type Publication,
  type StoredObject,
  type SyncRun,
} from '../../functions/core/ports.ts';
import { createApp, type App, type RequestFailure } from '../../functions/http/app.ts';
import { statusReport } from '../../functions/http/reports.ts';
import { counting } from '../support/counting.ts';

const ORIGIN = 'http://mirror.test/';
const INDEX = 'streams/v1/index.sjson';
const UNSIGNED_INDEX = 'streams/v1/index.json';
const PRODUCTS = 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson';
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz';
const KERNEL = 'noble/amd64/20250709/ga-24.04/generic/boot-kernel';
const NOBLE_GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const NOBLE_HWE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04';
const UBUNTU_ID = 'com.ubuntu.maas:stable:v3:download';

const encode = (text: string) => new TextEncoder().encode(text);
const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

let dataDir: string;
let backend: Backend;
let app: App;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'skystreams-http-app-'));
  backend = openEmbeddedBackend(dataDir);
  app = createApp(backend);
});

afterEach(async () => {
  await backend.close();
  await rm(dataDir, { recursive: true, force: true });
});

function request(path: string, init: RequestInit = {}): Promise<Response> {
  return app(new Request(ORIGIN + path, init));
}

async function bodyText(response: Response): Promise<string> {
  return new TextDecoder().decode(await response.arrayBuffer());
}

/** Bytes at `items/<path>`, recorded in the catalog as a copy would record them, but listed by no publication yet. */
async function storeItem(path: string, bytes: Uint8Array): Promise<void> {
  await backend.objects.put(keys.item(path), bytes);
  await backend.catalog.recordObject(storedObject(path, bytes.length, sha256Of(bytes)));
}

/** The catalog's record of a copied item. */
function storedObject(path: string, size: number, sha256: string): StoredObject {
  return { path, size, sha256, digests: { sha256 }, storedAt: new Date().toISOString() };
}

/** A stored item listed by a new current generation, as a sync that copied and published it leaves it. */
async function publishItem(path: string, bytes: Uint8Array): Promise<Publication> {
  await storeItem(path, bytes);
  const generation = ((await backend.catalog.getCurrent())?.generation ?? 0) + 1;
  return publishGeneration(generation, { [INDEX]: `generation ${generation}` }, [entry(NOBLE_GA, '20250709', 'item', path, bytes.length)]);
}

/** Stages `files` as generation `generation` and makes it current, as publish would. */
async function publishGeneration(
  generation: number,
  files: Record<string, string>,
  entries: CatalogEntry[] = [],
): Promise<Publication> {
  for (const [file, text] of Object.entries(files)) {
    await backend.objects.put(keys.metadata({ generation, runId: `run-${generation}` }, file), encode(text));
  }
  await backend.catalog.putEntries(generation, entries);
  const previous = await backend.catalog.getCurrent();
  const publication: Publication = {
    generation,
    upstreamUpdated: 'Wed, 09 Jul 2025 12:00:00 +0000',
    publishedAt: new Date(Date.UTC(2025, 6, 9, 12, generation)).toISOString(),
    runId: `run-${generation}`,
    files: Object.keys(files).sort(),
    itemCount: entries.length,
    totalBytes: entries.reduce((sum, entry) => sum + entry.size, 0),
  };
  await backend.catalog.publish(publication, previous?.generation);
  return publication;
}

function entry(product: string, version: string, item: string, path: string, size: number): CatalogEntry {
  return {
    contentId: UBUNTU_ID,
    product,
    version,
    item,
    path,
    size,
    sha256: sha256Of(encode(path)),
    ftype: item,
    os: 'ubuntu',
    release: 'noble',
    arch: 'amd64',
    subarch: product.endsWith('hwe-24.04') ? 'hwe-24.04' : 'ga-24.04',
    label: 'stable',
  };
}

/** The real port, except that `method` throws `error`: a store failing mid-request. */
function failing<T extends object>(port: T, method: keyof T, error: Error): T {
  return new Proxy(port, {
    get(target, property) {
      if (property === method) {
        return async () => {
          throw error;
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** The real port, except that every method throws `error` as it is called: a store that fails whatever is asked of it. */
function allFailing<T extends object>(port: T, error: Error): T {
  return new Proxy(port, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      return () => {
        throw error;
      };
    },
  });
}

describe('Function: createApp', () => {
  describe('Route: metadata (streams/…)', () => {
    it('serves a file of the current publication with its type, validators and length', async () => {
      // Prepare
      const signed = '-----BEGIN PGP SIGNED MESSAGE-----\n{"format": "index:1.0"}\n';
      await publishGeneration(1, { [INDEX]: signed, [UNSIGNED_INDEX]: '{"format": "index:1.0"}\n' });
      const stored = await backend.objects.head(keys.metadata({ generation: 1, runId: 'run-1' }, INDEX));

      // Act
      const response = await request(INDEX);

      // Assess
      expect(response.status).toBe(200);
      expect(await bodyText(response)).toBe(signed);
      expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      expect(response.headers.get('content-length')).toBe(String(encode(signed).length));
      expect(response.headers.get('etag')).toBe(stored!.etag);
      expect(response.headers.get('last-modified')).toBe(stored!.lastModified.toUTCString());
      expect(response.headers.get('accept-ranges')).toBe('bytes');
      expect(response.headers.get('cache-control')).toBe('public, max-age=60');
      const unsigned = await request(UNSIGNED_INDEX);
      await unsigned.body?.cancel();
      expect(unsigned.headers.get('content-type')).toBe('application/json');
    });

    it('answers HEAD with the headers of GET and no body', async () => {
      // Prepare
      const text = '{"format": "index:1.0"}\n';
      await publishGeneration(1, { [UNSIGNED_INDEX]: text });
      const get = await request(UNSIGNED_INDEX);
      await get.body?.cancel();

      // Act
      const head = await request(UNSIGNED_INDEX, { method: 'HEAD' });

      // Assess
      expect(head.status).toBe(200);
      expect(await bodyText(head)).toBe('');
      expect(head.headers.get('content-length')).toBe(String(encode(text).length));
      for (const name of ['content-type', 'etag', 'last-modified', 'cache-control']) {
        expect(head.headers.get(name), name).toBe(get.headers.get(name));
      }
    });

    it('serves the newest publication once another is published', async () => {
      // Prepare
      await publishGeneration(1, { [UNSIGNED_INDEX]: 'first\n' });
      await publishGeneration(2, { [UNSIGNED_INDEX]: 'second\n' });

      // Act
      const response = await request(UNSIGNED_INDEX);

      // Assess
      expect(await bodyText(response)).toBe('second\n');
    });

    it('answers 404 while nothing is published, even when staged files exist', async () => {
      // Prepare
      await backend.objects.put(keys.metadata({ generation: 1, runId: 'run-1' }, INDEX), encode('staged by a running sync'));

      // Act
      const response = await request(INDEX);

      // Assess
      expect(response.status).toBe(404);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(await response.json()).toEqual({ error: { code: 'not_found', message: expect.stringContaining(INDEX) } });
    });

    it('answers 404 for a file the current publication does not list', async () => {
      // Prepare
      await publishGeneration(1, { [INDEX]: 'published' });
      await backend.objects.put(keys.metadata({ generation: 2, runId: 'run-2' }, PRODUCTS), encode('staged for generation 2'));
      await backend.objects.put(keys.metadata({ generation: 1, runId: 'run-1' }, 'streams/v1/unlisted.sjson'), encode('not in the file list'));

      // Act
      const staged = await request(PRODUCTS);
      const unlisted = await request('streams/v1/unlisted.sjson');

      // Assess
      expect(staged.status).toBe(404);
      expect(unlisted.status).toBe(404);
    });

    it.each([
      ['raw', PRODUCTS],
      ['percent-encoded', PRODUCTS.replaceAll(':', '%3A')],
      ['lower-case percent-encoded', PRODUCTS.replaceAll(':', '%3a')],
    ])('serves a file whose name holds colons, written %s', async (_form, requested) => {
      // Prepare
      await publishGeneration(1, { [INDEX]: 'index', [PRODUCTS]: 'ubuntu products' });

      // Act
      const response = await request(requested);

      // Assess
      expect(response.status).toBe(200);
      expect(await bodyText(response)).toBe('ubuntu products');
    });
  });

  describe('Route: items', () => {
    it('serves a stored item as immutable bytes', async () => {
      // Prepare
      const bytes = encode(ALPHABET);
      await publishItem(KERNEL, bytes);

      // Act
      const response = await request(KERNEL);

      // Assess
      expect(response.status).toBe(200);
      expect(new Uint8Array(await response.arrayBuffer())).toEqual(bytes);
      expect(response.headers.get('content-type')).toBe('application/octet-stream');
      expect(response.headers.get('content-length')).toBe(String(bytes.length));
      expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(response.headers.get('etag')).toBe((await backend.objects.head(keys.item(KERNEL)))!.etag);
    });

    it('answers HEAD with the length and no body', async () => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));

      // Act
      const response = await request(KERNEL, { method: 'HEAD' });

      // Assess
      expect(response.status).toBe(200);
      expect(response.headers.get('content-length')).toBe(String(ALPHABET.length));
      expect(await bodyText(response)).toBe('');
    });

    it('serves an empty item', async () => {
      // Prepare
      await publishItem('empty/file', new Uint8Array());

      // Act
      const response = await request('empty/file');

      // Assess
      expect(response.status).toBe(200);
      expect(response.headers.get('content-length')).toBe('0');
      expect(await bodyText(response)).toBe('');
    });

    it.each([
      ['an unknown path', 'noble/amd64/20990101/squashfs'],
      ['a directory', 'noble/'],
      ['a name every JavaScript object has', 'constructor'],
      ['the catalog through a doubled slash', '/catalog.sqlite'],
    ])('answers 404 for %s', async (_name, path) => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));

      // Act
      const response = await request(path);

      // Assess
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ error: { code: 'not_found', message: expect.stringMatching(/not published here/) } });
    });

    it('answers 404 for an item a run copied and recorded but no publication lists', async () => {
      // Prepare
      await storeItem(KERNEL, encode(ALPHABET));
      await publishGeneration(1, { [INDEX]: 'index' }, [entry(NOBLE_GA, '20250709', 'squashfs', 'noble/amd64/20250709/squashfs', 3)]);

      // Act
      const response = await request(KERNEL);

      // Assess
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ error: { code: 'not_found', message: `${KERNEL} is not published here` } });
      expect(await backend.catalog.getObject(KERNEL)).toMatchObject({ size: ALPHABET.length });
    });

    it('serves an item listed only by a retained generation that is no longer current', async () => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));
      await publishItem('noble/amd64/20250710/boot-kernel', encode('newer'));

      // Act
      const response = await request(KERNEL);

      // Assess
      expect((await backend.catalog.getCurrent())!.generation).toBe(2);
      expect(response.status).toBe(200);
      expect(await bodyText(response)).toBe(ALPHABET);
    });

    it('serves an item from the first request after the publication that lists it', async () => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));
      await (await request(KERNEL)).body?.cancel();
      const newer = 'noble/amd64/20250710/boot-kernel';
      await storeItem(newer, encode('newer'));
      const before = await request(newer);

      // Act
      await publishGeneration(2, { [INDEX]: 'second' }, [entry(NOBLE_GA, '20250710', 'boot-kernel', newer, 5)]);
      const after = await request(newer);

      // Assess
      expect(before.status).toBe(404);
      expect(after.status).toBe(200);
      expect(await bodyText(after)).toBe('newer');
    });

    it('stops serving an item once the only generation listing it is pruned and the listing is re-read', async () => {
      // Prepare
      let clock = Date.parse('2025-07-25T09:00:00.000Z');
      app = createApp({ ...backend, listingTtlMs: 50, now: () => new Date(clock) });
      await publishItem(KERNEL, encode(ALPHABET));
      await publishGeneration(2, { [INDEX]: 'second' });
      const before = await request(KERNEL);
      await before.body?.cancel();

      // Act
      await backend.catalog.deletePublication(1);
      const withinTtl = await request(KERNEL);
      await withinTtl.body?.cancel();
      clock += 50;
      const after = await request(KERNEL);

      // Assess
      expect(before.status).toBe(200);
      expect(withinTtl.status).toBe(200);
      expect(after.status).toBe(404);
      expect(await backend.objects.head(keys.item(KERNEL))).toMatchObject({ size: ALPHABET.length });
    });

    it('reads the listing once per set of retained generations, not per request', async () => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));
      const calls: string[] = [];
      app = createApp({ objects: backend.objects, catalog: counting<Catalog>(backend.catalog, calls) });

      // Act
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const response = await request(KERNEL);
        await response.body?.cancel();
        statuses.push(response.status);
      }

      // Assess
      expect(statuses).toEqual([200, 200, 200, 200, 200]);
      expect(calls).toEqual(['listPublications', 'listEntries']);
    });

    it('answers 404 for bytes in the store the catalog does not record (a copy that never finished)', async () => {
      // Prepare
      await backend.objects.put(keys.item(KERNEL), encode(ALPHABET));

      // Act
      const response = await request(KERNEL);

      // Assess
      expect(response.status).toBe(404);
    });

    it('answers 404 when the catalog records an item whose bytes are gone', async () => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));
      await backend.objects.delete(keys.item(KERNEL));

      // Act
      const response = await request(KERNEL);

      // Assess
      expect(response.status).toBe(404);
    });

    it.each([
      ['raw', 'centos/8:stream/root-tgz'],
      ['percent-encoded', 'centos/8%3Astream/root-tgz'],
    ])('serves an item whose path holds a colon, written %s', async (_form, requested) => {
      // Prepare
      await publishItem('centos/8:stream/root-tgz', encode('root'));

      // Act
      const response = await request(requested);

      // Assess
      expect(response.status).toBe(200);
      expect(await bodyText(response)).toBe('root');
    });
  });

  describe('Header: Range', () => {
    beforeEach(async () => {
      await publishItem(KERNEL, encode(ALPHABET));
    });

    it.each([
      ['the first byte', 'bytes=0-0', 0, 0],
      ['from an offset to the end', 'bytes=5-', 5, 25],
      ['a suffix', 'bytes=-3', 23, 25],
      ['a suffix longer than the item', 'bytes=-100', 0, 25],
      ['an end beyond the size (clamped)', 'bytes=20-99', 20, 25],
      ['the last byte', 'bytes=25-25', 25, 25],
    ])('answers 206 with %s for %j', async (_name, range, start, end) => {
      // Act
      const response = await request(KERNEL, { headers: { range } });

      // Assess
      expect(response.status).toBe(206);
      expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/26`);
      expect(response.headers.get('content-length')).toBe(String(end - start + 1));
      expect(await bodyText(response)).toBe(ALPHABET.slice(start, end + 1));
    });

    it.each([
      ['a start at the size', 'bytes=26-'],
      ['a start beyond the size', 'bytes=1000-2000'],
      ['an empty suffix', 'bytes=-0'],
    ])('answers 416 with the size for %s', async (_name, range) => {
      // Act
      const response = await request(KERNEL, { headers: { range } });

      // Assess
      expect(response.status).toBe(416);
      expect(response.headers.get('content-range')).toBe('bytes */26');
      expect(await bodyText(response)).toBe('');
    });

    it.each([
      ['several ranges', 'bytes=0-1,3-4'],
      ['an end before the start', 'bytes=5-3'],
      ['another unit', 'items=0-3'],
      ['no numbers', 'bytes=-'],
    ])('ignores %s and answers 200 with the whole item', async (_name, range) => {
      // Act
      const response = await request(KERNEL, { headers: { range } });

      // Assess
      expect(response.status).toBe(200);
      expect(response.headers.get('content-range')).toBeNull();
      expect(await bodyText(response)).toBe(ALPHABET);
    });

    it('answers HEAD with a range with 206 headers and no body', async () => {
      // Act
      const response = await request(KERNEL, { method: 'HEAD', headers: { range: 'bytes=10-19' } });

      // Assess
      expect(response.status).toBe(206);
      expect(response.headers.get('content-range')).toBe('bytes 10-19/26');
      expect(response.headers.get('content-length')).toBe('10');
      expect(await bodyText(response)).toBe('');
    });

    it('honours the range when If-Range names the current ETag', async () => {
      // Prepare
      const { etag } = (await backend.objects.head(keys.item(KERNEL)))!;

      // Act
      const response = await request(KERNEL, { headers: { range: 'bytes=0-2', 'if-range': etag } });

      // Assess
      expect(response.status).toBe(206);
      expect(await bodyText(response)).toBe('abc');
    });

    it.each([
      ['another ETag', '"not-the-current-one"'],
      ['a weak form of the ETag (If-Range compares strongly)', 'weak'],
    ])('answers 200 with the whole item when If-Range names %s', async (_name, validator) => {
      // Prepare
      const { etag } = (await backend.objects.head(keys.item(KERNEL)))!;
      const ifRange = validator === 'weak' ? `W/${etag}` : validator;

      // Act
      const response = await request(KERNEL, { headers: { range: 'bytes=0-2', 'if-range': ifRange } });

      // Assess
      expect(response.status).toBe(200);
      expect(await bodyText(response)).toBe(ALPHABET);
    });
  });

  describe('Header: If-None-Match / If-Modified-Since', () => {
    beforeEach(async () => {
      await publishItem(KERNEL, encode(ALPHABET));
    });

    it.each([
      ['the ETag', (etag: string) => etag],
      ['a list holding the ETag', (etag: string) => `"other", ${etag}`],
      ['*', () => '*'],
    ])('answers 304 with the validators and no body when If-None-Match names %s', async (_name, header) => {
      // Prepare
      const { etag } = (await backend.objects.head(keys.item(KERNEL)))!;

      // Act
      const response = await request(KERNEL, { headers: { 'if-none-match': header(etag) } });

      // Assess
      expect(response.status).toBe(304);
      expect(response.headers.get('etag')).toBe(etag);
      expect(await bodyText(response)).toBe('');
    });

    it('answers 304 to a conditional request for published metadata', async () => {
      // Prepare
      const current = (await backend.catalog.getCurrent())!;
      const { etag } = (await backend.objects.head(keys.metadata(current, INDEX)))!;

      // Act
      const response = await request(INDEX, { headers: { 'if-none-match': etag } });

      // Assess
      expect(response.status).toBe(304);
    });

    it('answers 200 when If-None-Match names another ETag, whatever If-Modified-Since says', async () => {
      // Act
      const response = await request(KERNEL, {
        headers: { 'if-none-match': '"other"', 'if-modified-since': new Date(Date.now() + 86_400_000).toUTCString() },
      });

      // Assess
      expect(response.status).toBe(200);
      expect(await bodyText(response)).toBe(ALPHABET);
    });

    it('answers 304 when If-Modified-Since is not older than Last-Modified, 200 when it is', async () => {
      // Prepare
      const { lastModified } = (await backend.objects.head(keys.item(KERNEL)))!;

      // Act
      const same = await request(KERNEL, { headers: { 'if-modified-since': lastModified.toUTCString() } });
      const older = await request(KERNEL, {
        headers: { 'if-modified-since': new Date(lastModified.getTime() - 60_000).toUTCString() },
      });

      // Assess
      expect(same.status).toBe(304);
      expect(older.status).toBe(200);
      expect(await bodyText(older)).toBe(ALPHABET);
    });

    // RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and caches
    // revalidate with `W/"…"` after compressing a response.
    it('answers 304 when If-None-Match names the weak form of the ETag', async () => {
      // Prepare
      const { etag } = (await backend.objects.head(keys.item(KERNEL)))!;

      // Act
      const response = await request(KERNEL, { headers: { 'if-none-match': `W/${etag}` } });
      await response.body?.cancel();

      // Assess
      expect(response.status).toBe(304);
    });
  });

  describe('Methods', () => {
    it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('answers %s with 405 and Allow: GET, HEAD', async (method) => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));

      // Act
      const response = await request(KERNEL, { method, ...(method === 'OPTIONS' ? {} : { body: 'x' }) });

      // Assess
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, HEAD');
      expect(await response.json()).toEqual({ error: { code: 'method_not_allowed', message: `method ${method} not allowed` } });
      expect(await backend.objects.head(keys.item(KERNEL))).toMatchObject({ size: ALPHABET.length });
    });
  });

  describe('Route: api/v1/status', () => {
    it('reports no publication and no runs on an empty mirror', async () => {
      // Act
      const response = await request('api/v1/status');

      // Assess
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(await response.json()).toEqual({ publication: null, mode: null, channels: [], runs: [], conflicts: [] });
    });

    it('reports the current publication without its file list, and the runs newest first', async () => {
      // Prepare
      const older: SyncRun = {
        id: 'run-1',
        state: 'succeeded',
        startedAt: '2025-07-09T12:00:00.000Z',
        finishedAt: '2025-07-09T12:05:00.000Z',
        itemsCopied: 2,
        bytesCopied: 52,
        itemsPresent: 0,
        generation: 1,
      };
      const newer: SyncRun = { id: 'run-2', state: 'failed', startedAt: '2025-07-10T12:00:00.000Z', itemsCopied: 0, bytesCopied: 0, itemsPresent: 2, error: 'boom' };
      await backend.catalog.putRun(older);
      await backend.catalog.putRun(newer);
      const { files: _files, ...publication } = await publishGeneration(1, { [INDEX]: 'index' }, [
        entry(NOBLE_GA, '20250709', 'boot-kernel', KERNEL, 26),
      ]);

      // Act
      const response = await request('api/v1/status');

      // Assess
      // The fixture's upstream was updated in July 2025: more than the default 14 days before now.
      expect(await response.json()).toEqual({
        publication,
        mode: 'verbatim',
        channels: [{ name: DEFAULT_CHANNEL, generation: 1, history: [] }],
        runs: [newer, older],
        conflicts: [],
        stale: { since: '2025-07-23T12:00:00.000Z', reason: "upstream's metadata was last updated 2025-07-09T12:00:00.000Z, more than 14 days ago" },
      });
    });

    it('answers HEAD with no body', async () => {
      // Act
      const response = await request('api/v1/status', { method: 'HEAD' });

      // Assess
      expect(response.status).toBe(200);
      expect(await bodyText(response)).toBe('');
    });
  });

  describe('Route: api/v1/images', () => {
    it('reports no generation and no images on an empty mirror', async () => {
      // Act
      const response = await request('api/v1/images');

      // Assess
      expect(await response.json()).toEqual({ generation: null, images: [] });
    });

    it('groups the current entries by product, versions newest first, with their total size', async () => {
      // Prepare
      const squashfs = (version: string) => `noble/amd64/${version}/squashfs`;
      await publishGeneration(1, { [INDEX]: 'first' }, [entry(NOBLE_GA, '20250618', 'squashfs', squashfs('20250618'), 100)]);
      await publishGeneration(2, { [INDEX]: 'second' }, [
        entry(NOBLE_HWE, '20250709', 'squashfs', squashfs('20250709'), 300),
        entry(NOBLE_GA, '20250618', 'squashfs', squashfs('20250618'), 100),
        entry(NOBLE_GA, '20250709', 'squashfs', squashfs('20250709'), 300),
        entry(NOBLE_GA, '20250709', 'boot-kernel', KERNEL, 26),
      ]);

      // Act
      const response = await request('api/v1/images');

      // Assess
      const report = (await response.json()) as {
        generation: number;
        images: { product: string; subarch: string; totalBytes: number; versions: { version: string; items: { item: string }[] }[] }[];
      };
      expect(report.generation).toBe(2);
      expect(report.images.map((image) => image.product)).toEqual([NOBLE_GA, NOBLE_HWE]);
      const [ga, hwe] = report.images;
      expect(ga).toMatchObject({ contentId: UBUNTU_ID, os: 'ubuntu', release: 'noble', arch: 'amd64', subarch: 'ga-24.04', label: 'stable', totalBytes: 426 });
      expect(ga!.versions.map((version) => version.version)).toEqual(['20250709', '20250618']);
      expect(ga!.versions[0]!.items.map((item) => item.item).sort()).toEqual(['boot-kernel', 'squashfs']);
      expect(ga!.versions[0]!.items.find((item) => item.item === 'boot-kernel')).toEqual({
        item: 'boot-kernel',
        ftype: 'boot-kernel',
        path: KERNEL,
        size: 26,
        sha256: sha256Of(encode(KERNEL)),
      });
      expect(hwe).toMatchObject({ subarch: 'hwe-24.04', totalBytes: 300 });
    });
  });

  describe('Errors', () => {
    it.each([
      ['a store ConflictError', new ConflictError('dynamodb:private-table publish generation 3: moved')],
      ['a store NotFoundError', new NotFoundError('no object at s3://private-bucket/meta/3-run-9/streams/v1/index.sjson')],
      ['a configuration error', new ConfigError('s3://private-bucket/items/x: no AWS credentials found (environment, profile, SSO or instance role)')],
      ['a bundle error', new BundleError('/srv/skystreams/export.tar', 'truncated')],
    ])('R-no-internals-4xx: every route answers %s from a store with 500, a request id and none of its words; the log has the detail', async (_name, error) => {
      // Prepare: every method of both stores fails, so whichever a route calls first throws.
      await publishItem(KERNEL, encode(ALPHABET));
      const logged: RequestFailure[] = [];
      app = createApp({ objects: allFailing(backend.objects, error), catalog: allFailing(backend.catalog, error), log: (failure) => logged.push(failure) });
      // The diff route answers core's NotFoundError (no such product or version) with 404; no catalog adapter raises one.
      const diff = error instanceof NotFoundError ? [] : ['api/v1/diff/p/1/2'];
      const routes = ['', 'api/v1/status', 'api/v1/images', 'api/v1/packages/bash', ...diff, INDEX, PRODUCTS, KERNEL, `channels/candidate/${INDEX}`];

      // Act
      const responses = await Promise.all(routes.map(async (path) => ({ path, response: await request(path) })));

      // Assess
      for (const { path, response } of responses) {
        const body = await bodyText(response);
        expect({ path, status: response.status }).toEqual({ path, status: 500 });
        const requestId = response.headers.get('x-request-id');
        expect(JSON.parse(body)).toEqual({ error: { code: 'internal_error', message: 'internal error', requestId } });
        expect(body).not.toMatch(/private|s3:|meta\/|credentials|dynamodb|\/srv/);
        expect(logged.find((failure) => failure.requestId === requestId)).toMatchObject({ status: 500, error });
      }
      expect(logged).toHaveLength(routes.length);
    });

    it('R-no-internals-404: a published path whose bytes the store lost answers 500, never a 404 naming the store\'s key', async () => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));
      const logged: RequestFailure[] = [];
      const objects = failing<ObjectStore>(backend.objects, 'get', new NotFoundError(`no object at ${keys.item(KERNEL)}`));
      app = createApp({ objects, catalog: backend.catalog, log: (failure) => logged.push(failure) });

      // Act
      const lost = await request(KERNEL);
      const unknown = await request('noble/amd64/nothing-here');

      // Assess
      expect(lost.status).toBe(500);
      expect(await bodyText(lost)).not.toContain('items/');
      expect(logged).toHaveLength(1);
      expect(unknown.status).toBe(404);
      expect(await unknown.json()).toEqual({ error: { code: 'not_found', message: 'noble/amd64/nothing-here is not published here' } });
    });

    it('R-request-errors-4xx: the request\'s own errors stay 4xx with their message: a bad path, a method, an unknown package name, product or version', async () => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));

      // Act
      const answers = await Promise.all([
        request('noble/%E0%A4%A'),
        request(KERNEL, { method: 'DELETE' }),
        request('api/v1/packages/Not%20A%20Name'),
        request('api/v1/diff/no-such-product/1/2'),
        request('api/v1/diff/a/b'),
      ]);

      // Assess
      expect(answers.map((response) => response.status)).toEqual([400, 405, 400, 404, 400]);
      const bodies = await Promise.all(answers.map((response) => response.json() as Promise<{ error: { message: string; requestId?: string } }>));
      expect(bodies.map((body) => body.error.requestId)).toEqual([undefined, undefined, undefined, undefined, undefined]);
      expect(bodies[3]!.error.message).toContain('no-such-product');
    });

    it('R-status-redacted: GET /api/v1/status and the status page show a run\'s error without local paths, buckets or keys; the operator\'s report keeps them', async () => {
      // Prepare
      await publishGeneration(1, { [INDEX]: 'index' });
      const detail =
        'StorageFullError: /srv/skystreams/objects: no space left (needed 4096 bytes); then s3://private-bucket/meta/3-run-9/streams/v1/index.sjson: AccessDenied for arn:aws:iam::123456789012:role/mirror in dynamodb:private-table';
      await backend.catalog.putRun({ id: 'run-9', state: 'failed', startedAt: '2025-07-10T12:00:00.000Z', finishedAt: '2025-07-10T12:01:00.000Z', itemsCopied: 0, bytesCopied: 0, itemsPresent: 0, error: detail, warnings: ['kept /var/lib/skystreams/x'] });

      // Act
      const api = await request('api/v1/status');
      const page = await request('');
      const operator = await statusReport(backend.catalog);

      // Assess
      const apiBody = await bodyText(api);
      const pageBody = await bodyText(page);
      for (const body of [apiBody, pageBody]) {
        expect(body).toContain('StorageFullError');
        expect(body).toContain('no space left');
        expect(body).not.toMatch(/\/srv|\/var\/lib|private-bucket|private-table|meta\/3-|123456789012/);
      }
      const run = (JSON.parse(apiBody) as { runs: SyncRun[] }).runs[0]!;
      expect(run.error).toContain('AccessDenied');
      expect(operator.runs[0]!.error).toBe(detail);
    });

    it('answers 503 without the store\'s words when the object store is unavailable, and logs them', async () => {
      // Prepare
      await publishGeneration(1, { [INDEX]: 'index' });
      const logged: RequestFailure[] = [];
      const objects = failing<ObjectStore>(backend.objects, 'head', new UnavailableError('SlowDown: bucket arn:aws:s3:::private-mirror'));
      app = createApp({ objects, catalog: backend.catalog, log: (failure) => logged.push(failure) });

      // Act
      const response = await request(INDEX);

      // Assess
      expect(response.status).toBe(503);
      const requestId = response.headers.get('x-request-id');
      expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(await response.json()).toEqual({ error: { code: 'unavailable', message: 'temporarily unavailable, retry later', requestId } });
      expect(logged).toEqual([{ requestId, method: 'GET', path: `/${INDEX}`, status: 503, error: expect.any(UnavailableError) }]);
    });

    it.each([
      ['an error that is not a domain error', new Error('SQLITE_CORRUPT at /var/secret')],
      [
        'a domain error with a 5xx status',
        new UnavailableError('AccessDeniedException: arn:aws:sts::123456789012:assumed-role/mirror-api is not authorized'),
      ],
    ])('answers 5xx for %s with a generic body and request id, the detail in the log only', async (_name, error) => {
      // Prepare
      const logged: RequestFailure[] = [];
      app = createApp({ objects: backend.objects, catalog: failing<Catalog>(backend.catalog, 'listRuns', error), log: (failure) => logged.push(failure) });

      // Act
      const response = await request('api/v1/status');

      // Assess
      expect(response.status).toBeGreaterThanOrEqual(500);
      const requestId = response.headers.get('x-request-id');
      const body = await bodyText(response);
      expect(JSON.parse(body)).toEqual({ error: { code: response.status === 503 ? 'unavailable' : 'internal_error', message: expect.any(String), requestId } });
      expect(body).not.toMatch(/SQLITE|secret|arn:|AccessDenied/);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatchObject({ requestId, method: 'GET', path: '/api/v1/status', error });
    });

    it('gives each failing request its own request id', async () => {
      // Prepare
      app = createApp({ objects: backend.objects, catalog: failing<Catalog>(backend.catalog, 'listRuns', new Error('boom')), log: () => {} });

      // Act
      const first = await request('api/v1/status');
      const second = await request('api/v1/status');

      // Assess
      expect(first.headers.get('x-request-id')).not.toBe(second.headers.get('x-request-id'));
    });
  });

  describe('Request path', () => {
    it.each([
      ['a .. segment hidden behind an encoded slash', '..%2Fcatalog.sqlite'],
      ['a . segment hidden behind an encoded slash', 'noble/.%2Famd64'],
      ['bad percent-encoding', 'noble/%E0%A4%A'],
      ['an encoded NUL', `${KERNEL}%00`],
      ['an encoded backslash', 'noble%5Camd64'],
    ])('answers a path with %s with 400', async (_name, path) => {
      // Prepare
      await publishItem(KERNEL, encode(ALPHABET));

      // Act
      const response = await request(path);

      // Assess
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: { code: 'bad_request', message: 'malformed request path' } });
    });

    it('takes the path from the URL, whatever the Host header says', async () => {
      // Prepare
      await publishGeneration(1, { [INDEX]: 'index' });

      // Act
      const response = await request('index.sjson', { headers: { host: 'mirror.test/streams/v1' } });

      // Assess
      expect(response.status).toBe(404);
    });
  });
});

describe('Route: keyring.gpg / keyring.asc (re-signed publications)', () => {
  it('serves the current publication’s keyring, switching with it, and 404 for a publication that has none', async () => {
    // Prepare: a verbatim publication, then a re-signed one with its keyring.
    await publishGeneration(1, { [UNSIGNED_INDEX]: '{}' });
    const verbatim = await request('keyring.gpg');
    await verbatim.body?.cancel();
    await publishGeneration(2, { [UNSIGNED_INDEX]: '{}', 'keyring.gpg': 'binary keys 2', 'keyring.asc': 'armored keys 2' });

    // Act
    const binary = await request('keyring.gpg');
    const armored = await request('keyring.asc');

    // Assess
    expect(verbatim.status).toBe(404);
    expect(binary.status).toBe(200);
    expect(await bodyText(binary)).toBe('binary keys 2');
    expect(binary.headers.get('content-type')).toBe('application/pgp-keys');
    expect(await bodyText(armored)).toBe('armored keys 2');
    await publishGeneration(3, { [UNSIGNED_INDEX]: '{}', 'keyring.gpg': 'binary keys 3' });
    expect(await bodyText(await request('keyring.gpg'))).toBe('binary keys 3');
    const gone = await request('keyring.asc');
    await gone.body?.cancel();
    expect(gone.status).toBe(404);
  });
});
