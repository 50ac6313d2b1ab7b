/**
 * The ObjectStore contract: one suite every backend must pass (directory, S3).
 *
 * Only port methods are used, never the backing files or bucket. Every test
 * writes under its own random prefix, so `open()` may hand out stores that
 * share one bucket. Keys never make one key a "directory" of another
 * (`a` and `a/b`), which a filesystem cannot hold.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IntegrityError, NotFoundError, ObjectExistsError } from '../../functions/core/errors.ts';
import { MAX_MIRROR_PATH_BYTES, MAX_SEGMENT_BYTES, mirrorPathProblem } from '../../functions/core/paths.ts';
import { keys, type ByteStream, type ObjectInfo, type ObjectStore } from '../../functions/core/ports.ts';

export interface OpenedObjectStore {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

export interface ObjectStoreContractOptions {
  /** Objects written for the listing-across-pages test; must exceed the 1,000 a page may hold. @default 1100 */
  manyObjects?: number;
  /**
   * Whether the backend itself settles two create-only puts racing for one
   * key. A filesystem does (link(2)); S3 does with If-None-Match, but the S3
   * stand-in ignores that header, so its run skips the race. @default true
   */
  settlesCreateRaces?: boolean;
  /**
   * Whether the store offers `parts` (one object written part by part, over
   * several processes). Without them the engine copies every item whole.
   * @default false
   */
  partedWrites?: boolean;
}

/** Big enough that an S3 backend has to go multipart (parts are at least 5 MiB). */
const LARGE_CHUNK_COUNT = 97;
const LARGE_CHUNK_SIZE = 64 * 1024 + 13;

export function objectStoreContract(
  name: string,
  open: () => Promise<OpenedObjectStore>,
  options: ObjectStoreContractOptions = {},
): void {
  const manyObjects = options.manyObjects ?? 1100;

  describe(`ObjectStore contract: ${name}`, () => {
    let opened: OpenedObjectStore;
    let store: ObjectStore;
    /** This test's own key prefix. */
    let base: string;

    beforeEach(async () => {
      opened = await open();
      store = opened.store;
      base = `contract-${randomUUID()}/`;
    });

    afterEach(async () => {
      await opened.cleanup();
    });

    describe('Property: parts', () => {
      if (!options.partedWrites) {
        it('is absent, so the engine copies every item whole', () => {
          expect(store.parts).toBeUndefined();
        });
        return;
      }
      const MiB = 1024 * 1024;
      const partsOf = () => {
        if (!store.parts) throw new Error('expected parted writes');
        return store.parts;
      };

      it('joins parts written one by one into one object, invisible until complete', async () => {
        // Prepare
        const parts = partsOf();
        const key = `${base}items/large.img`;
        const first = randomBytes(parts.minPartBytes);
        const second = randomBytes(MiB + 7);

        // Act: the second part first, as a retried invocation might.
        const upload = await parts.start(key, { contentType: 'application/octet-stream' });
        const two = await parts.putPart(upload, 2, fromChunks([second]), second.length);
        const one = await parts.putPart(upload, 1, fromChunks([first.subarray(0, MiB), first.subarray(MiB)]), first.length);
        const beforeComplete = await store.head(key);
        const info = await parts.complete(upload, [one, two], { ifAbsent: true });

        // Assess
        expect(beforeComplete).toBeUndefined();
        expect(info).toMatchObject({ key, size: first.length + second.length });
        expect(sha256(await readAll(store, key))).toBe(sha256(Buffer.concat([first, second])));
      });

      it('replaces a part written again under its number', async () => {
        // Prepare
        const parts = partsOf();
        const key = `${base}items/rewritten.img`;
        const stale = randomBytes(parts.minPartBytes);
        const fresh = randomBytes(parts.minPartBytes);
        const tail = randomBytes(1000);

        // Act
        const upload = await parts.start(key);
        await parts.putPart(upload, 1, fromChunks([stale]), stale.length);
        const one = await parts.putPart(upload, 1, fromChunks([fresh]), fresh.length);
        const two = await parts.putPart(upload, 2, fromChunks([tail]), tail.length);
        await parts.complete(upload, [one, two]);

        // Assess
        expect(sha256(await readAll(store, key))).toBe(sha256(Buffer.concat([fresh, tail])));
      });

      it('refuses a part body of another length than declared with IntegrityError naming the key, either way', async () => {
        // Prepare
        const parts = partsOf();
        const key = `${base}items/short.img`;
        const upload = await parts.start(key);

        // Act
        const short = await parts.putPart(upload, 1, fromChunks([randomBytes(100)]), 200).catch((error: unknown) => error);
        const long = await parts.putPart(upload, 1, fromChunks([randomBytes(300)]), 200).catch((error: unknown) => error);
        await parts.abort(upload);

        // Assess
        expect(short).toBeInstanceOf(IntegrityError);
        expect(long).toBeInstanceOf(IntegrityError);
        expect((short as Error).message).toContain(key);
        expect(await store.head(key)).toBeUndefined();
      });

      it('completes create-only: ObjectExistsError when an object is there, which stays as it was', async () => {
        // Prepare
        const parts = partsOf();
        const key = `${base}items/taken.img`;
        await store.put(key, new TextEncoder().encode('published'));
        const upload = await parts.start(key);
        const part = await parts.putPart(upload, 1, fromChunks([randomBytes(10)]), 10);

        // Act
        const failure = await parts.complete(upload, [part], { ifAbsent: true }).catch((error: unknown) => error);
        await parts.abort(upload);

        // Assess
        expect(failure).toBeInstanceOf(ObjectExistsError);
        expect((await readAll(store, key)).toString()).toBe('published');
      });

      it('aborts idempotently, after which the upload cannot be completed (NotFoundError)', async () => {
        // Prepare
        const parts = partsOf();
        const key = `${base}items/aborted.img`;
        const upload = await parts.start(key);
        const part = await parts.putPart(upload, 1, fromChunks([randomBytes(10)]), 10);

        // Act
        await parts.abort(upload);
        await parts.abort(upload);
        const late = await parts.complete(upload, [part], { ifAbsent: true }).catch((error: unknown) => error);

        // Assess
        expect(late).toBeInstanceOf(NotFoundError);
        expect(await store.head(key)).toBeUndefined();
      });
    });

    describe('Method: put / head / get', () => {
      it('round-trips bytes, size, etag and content type', async () => {
        // Prepare
        const key = `${base}streams/v1/index.json`;
        const bytes = randomBytes(4099);

        // Act
        const written = await store.put(key, bytes, { contentType: 'application/json', size: bytes.length });
        const headed = await store.head(key);
        const got = await store.get(key);
        const read = await collect(got.body);

        // Assess
        expect(Buffer.compare(read, bytes)).toBe(0);
        expect(written).toMatchObject({ key, size: bytes.length, contentType: 'application/json' });
        expect(headed).toMatchObject({ key, size: bytes.length, etag: written.etag, contentType: 'application/json' });
        expect(got).toMatchObject({ key, size: bytes.length, etag: written.etag, contentType: 'application/json' });
        expect(got.range).toBeUndefined();
        expect(written.lastModified).toBeInstanceOf(Date);
        expect(Number.isNaN(written.lastModified.getTime())).toBe(false);
      });

      it('stores and reads back an item at the longest mirror path (its object key the longest S3 allows)', async () => {
        // Prepare: segments of up to 255 bytes, the path MAX_MIRROR_PATH_BYTES long; the last one short (the S3 stand-in adds a suffix to it on disk).
        const first = `${randomUUID()}-${'a'.repeat(MAX_SEGMENT_BYTES - 37)}`;
        const leading = [first, 'b'.repeat(MAX_SEGMENT_BYTES), 'c'.repeat(MAX_SEGMENT_BYTES), 'd'.repeat(200)];
        const path = [...leading, 'e'.repeat(MAX_MIRROR_PATH_BYTES - leading.join('/').length - 1)].join('/');
        const key = keys.item(path);
        const bytes = randomBytes(100);

        // Act
        await store.put(key, bytes);
        const read = await collect((await store.get(key)).body);
        await store.delete(key);

        // Assess
        expect(mirrorPathProblem(path)).toBeUndefined();
        expect(Buffer.byteLength(key)).toBe(1024);
        expect(Buffer.compare(read, bytes)).toBe(0);
      });

      it('gives a quoted etag that stays put until the object changes', async () => {
        // Prepare
        const key = `${base}etag`;
        const first = await store.put(key, Buffer.from('first version'));

        // Act
        const headedTwice = [await store.head(key), await store.head(key)];
        const second = await store.put(key, Buffer.from('second version, longer'));

        // Assess
        expect(first.etag).toMatch(/^"[^"]+"$/);
        expect(headedTwice.map((info) => info?.etag)).toEqual([first.etag, first.etag]);
        expect(second.etag).not.toBe(first.etag);
        expect((await store.head(key))?.etag).toBe(second.etag);
        expect((await readAll(store, key)).toString()).toBe('second version, longer');
      });

      it('streams a body of many chunks without changing a byte', async () => {
        // Prepare
        const key = `${base}items/large.img`;
        const chunks = largeChunks();
        const expectedSize = LARGE_CHUNK_COUNT * LARGE_CHUNK_SIZE;

        // Act
        const written = await store.put(key, fromChunks(chunks), { size: expectedSize });
        const read = await readAll(store, key);

        // Assess
        expect(written.size).toBe(expectedSize);
        expect((await store.head(key))?.size).toBe(expectedSize);
        expect(sha256(read)).toBe(sha256(Buffer.concat(chunks)));
      });

      it('stores an empty object', async () => {
        // Prepare
        const key = `${base}empty`;

        // Act
        const written = await store.put(key, new Uint8Array(0));

        // Assess
        expect(written.size).toBe(0);
        expect((await store.head(key))?.size).toBe(0);
        expect((await readAll(store, key)).length).toBe(0);
      });

      it('keeps keys with colons and deep directories', async () => {
        // Prepare
        const key = `${base}items/server/releases/jammy/release-20240101/ubuntu-22.04:amd64:ga-22.04/boot-kernel`;

        // Act
        await store.put(key, Buffer.from('kernel'));
        const listed = await collectKeys(store.list(base));

        // Assess
        expect((await store.head(key))?.key).toBe(key);
        expect((await readAll(store, key)).toString()).toBe('kernel');
        expect(listed).toEqual([key]);
      });
    });

    describe('Method: put (failing body)', () => {
      it.each([
        ['mid-way', false],
        ['after the last chunk', true],
      ])('leaves no object when the body throws %s', async (_when, atTheEnd) => {
        // Prepare
        const key = `${base}items/bad.img`;
        const failure = new Error('checksum mismatch');

        // Act
        const attempt = store.put(key, failingBody(largeChunks(), failure, atTheEnd));

        // Assess
        await expect(attempt).rejects.toBe(failure);
        expect(await store.head(key)).toBeUndefined();
        await expect(store.get(key)).rejects.toBeInstanceOf(NotFoundError);
        expect(await collectKeys(store.list(base))).toEqual([]);
      });

      it.each([
        ['mid-way', false],
        ['after the last chunk', true],
      ])('leaves the previous object unchanged when the body throws %s', async (_when, atTheEnd) => {
        // Prepare
        const key = `${base}items/kept.img`;
        const previousBytes = randomBytes(2048);
        const previous = await store.put(key, previousBytes, { contentType: 'application/octet-stream' });
        const failure = new Error('size mismatch');

        // Act
        const attempt = store.put(key, failingBody(largeChunks(), failure, atTheEnd), { contentType: 'text/plain' });

        // Assess
        await expect(attempt).rejects.toBe(failure);
        const after = await store.head(key);
        expect(after).toMatchObject({ size: previous.size, etag: previous.etag, contentType: 'application/octet-stream' });
        expect(Buffer.compare(await readAll(store, key), previousBytes)).toBe(0);
        expect(await collectKeys(store.list(base))).toEqual([key]);
      });
    });

    describe('Method: put (ifAbsent)', () => {
      it('creates an object that is absent', async () => {
        // Prepare
        const key = `${base}items/new.img`;
        const bytes = randomBytes(4096);

        // Act
        const written = await store.put(key, bytes, { ifAbsent: true });

        // Assess
        expect(written.size).toBe(bytes.length);
        expect(sha256(await readAll(store, key))).toBe(sha256(bytes));
      });

      it.each([
        ['a small body', () => fromChunks([randomBytes(100)])],
        ['a multipart-sized body', () => fromChunks(largeChunks())],
      ])('refuses with ObjectExistsError and keeps the stored bytes, given %s', async (_what, body) => {
        // Prepare
        const key = `${base}items/published.img`;
        const publishedBytes = randomBytes(3000);
        const published = await store.put(key, publishedBytes, { contentType: 'application/octet-stream' });
        let bodyRead = false;
        async function* watched(): ByteStream {
          bodyRead = true;
          yield* body();
        }

        // Act
        const attempt = store.put(key, watched(), { ifAbsent: true, contentType: 'text/plain' });

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(ObjectExistsError);
        expect(bodyRead).toBe(false);
        expect(await store.head(key)).toMatchObject({ size: published.size, etag: published.etag, contentType: 'application/octet-stream' });
        expect(Buffer.compare(await readAll(store, key), publishedBytes)).toBe(0);
      });

      it('creates a multipart-sized object that is absent, byte for byte', async () => {
        // Prepare
        const key = `${base}items/big-new.img`;
        const chunks = largeChunks();

        // Act
        await store.put(key, fromChunks(chunks), { ifAbsent: true });

        // Assess
        expect(sha256(await readAll(store, key))).toBe(sha256(Buffer.concat(chunks)));
      });

      it('leaves no object when a create-only body throws', async () => {
        // Prepare
        const key = `${base}items/bad-new.img`;
        const failure = new Error('sha256 mismatch');

        // Act
        const attempt = store.put(key, failingBody(largeChunks(), failure, true), { ifAbsent: true });

        // Assess
        await expect(attempt).rejects.toBe(failure);
        expect(await store.head(key)).toBeUndefined();
        expect(await collectKeys(store.list(base))).toEqual([]);
      });

      it.runIf(options.settlesCreateRaces ?? true)('lets exactly one of two racing create-only puts win', async () => {
        // Prepare
        const key = `${base}items/raced.img`;
        const contenders = [randomBytes(200_000), randomBytes(200_000)];

        // Act
        const outcomes = await Promise.allSettled(
          contenders.map((bytes) => store.put(key, fromChunks([bytes.subarray(0, 100_000), bytes.subarray(100_000)]), { ifAbsent: true })),
        );

        // Assess
        const winners = outcomes.flatMap((outcome, i) => (outcome.status === 'fulfilled' ? [i] : []));
        expect(winners).toHaveLength(1);
        const loser = outcomes.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult;
        expect(loser.reason).toBeInstanceOf(ObjectExistsError);
        expect(sha256(await readAll(store, key))).toBe(sha256(contenders[winners[0]!]!));
      });
    });

    describe('Method: persist', () => {
      it('makes completed puts durable without changing them, also after a delete emptied their directory', async () => {
        // Prepare
        const kept = `${base}items/a/b/kept.img`;
        const gone = `${base}items/c/d/gone.img`;
        const bytes = randomBytes(5000);
        await store.put(kept, bytes);
        await store.put(gone, Buffer.from('short-lived'));
        await store.delete(gone);

        // Act
        await store.persist();
        await store.persist();

        // Assess
        expect(Buffer.compare(await readAll(store, kept), bytes)).toBe(0);
        expect(await store.head(gone)).toBeUndefined();
        expect(await collectKeys(store.list(base))).toEqual([kept]);
      });
    });

    describe('Method: removeLeftovers', () => {
      it('leaves stored objects alone, and removes nothing for a writer it knows nothing of', async () => {
        // Prepare
        const kept = `${base}items/kept.img`;
        await store.put(kept, Buffer.from('kept'));

        // Act
        const removed = await store.removeLeftovers({ keys: [] });

        // Assess
        expect(removed).toBe(0);
        expect((await readAll(store, kept)).toString()).toBe('kept');
      });
    });

    describe('Method: get (range)', () => {
      it.each([
        ['the first byte', 0, 0],
        ['a middle slice', 1000, 2999],
        ['the last byte', 4095, 4095],
        ['everything', 0, 4095],
      ])('reads only %s', async (_what, start, end) => {
        // Prepare
        const key = `${base}ranged`;
        const bytes = randomBytes(4096);
        const written = await store.put(key, bytes);

        // Act
        const got = await store.get(key, { range: { start, end } });
        const read = await collect(got.body);

        // Assess
        expect(Buffer.compare(read, bytes.subarray(start, end + 1))).toBe(0);
        expect(got.range).toEqual({ start, end });
        expect(got.size).toBe(bytes.length); // The whole object's size, for `Content-Range: bytes s-e/size`.
        expect(got.etag).toBe(written.etag);
      });
    });

    describe('Method: get / head (absent)', () => {
      it('throws NotFoundError from get', async () => {
        // Act
        const attempt = store.get(`${base}missing`);

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(NotFoundError);
      });

      it('answers undefined from head', async () => {
        // Act
        const info = await store.head(`${base}missing`);

        // Assess
        expect(info).toBeUndefined();
      });

      it('does not mistake a key prefix for an object', async () => {
        // Prepare
        await store.put(`${base}dir/file`, Buffer.from('x'));

        // Act
        const info = await store.head(`${base}dir`);

        // Assess
        expect(info).toBeUndefined();
        await expect(store.get(`${base}dir`)).rejects.toBeInstanceOf(NotFoundError);
      });
    });

    describe('Method: delete', () => {
      it('removes an object and is idempotent', async () => {
        // Prepare
        const key = `${base}items/gone`;
        const sibling = `${base}items/stays`;
        await store.put(key, Buffer.from('bye'));
        await store.put(sibling, Buffer.from('hi'));

        // Act
        await store.delete(key);
        await store.delete(key);
        await store.delete(`${base}never-existed/at-all`);

        // Assess
        expect(await store.head(key)).toBeUndefined();
        await expect(store.get(key)).rejects.toBeInstanceOf(NotFoundError);
        expect(await collectKeys(store.list(base))).toEqual([sibling]);
      });

      it('lets a deleted key be written again', async () => {
        // Prepare
        const key = `${base}a/b/c`;
        await store.put(key, Buffer.from('one'));
        await store.delete(key);

        // Act
        await store.put(key, Buffer.from('two'));

        // Assess
        expect((await readAll(store, key)).toString()).toBe('two');
      });
    });

    describe('Method: list', () => {
      it('lists exactly the keys under a prefix, in ascending order', async () => {
        // Prepare
        const names = ['p/b', 'p/a/b', 'z', 'p/ab', 'pq', 'p/a-c', 'p/a:d'];
        for (const name of names) await store.put(`${base}${name}`, Buffer.from(name));

        // Act
        const underPA = await collectKeys(store.list(`${base}p/a`));
        const underP = await collectKeys(store.list(`${base}p/`));
        const startingP = await collectKeys(store.list(`${base}p`));
        const all = await collectKeys(store.list(base));
        const none = await collectKeys(store.list(`${base}nothing`));

        // Assess: '-' < '/' < ':' < 'b' in byte order.
        expect(underPA).toEqual(['p/a-c', 'p/a/b', 'p/a:d', 'p/ab'].map((n) => base + n));
        expect(underP).toEqual(['p/a-c', 'p/a/b', 'p/a:d', 'p/ab', 'p/b'].map((n) => base + n));
        expect(startingP).toEqual([...underP, `${base}pq`]);
        expect(all).toEqual([...startingP, `${base}z`]);
        expect(none).toEqual([]);
      });

      it('gives each listed object its size and etag', async () => {
        // Prepare
        const written = await store.put(`${base}sized`, randomBytes(321));

        // Act
        const listed: ObjectInfo[] = [];
        for await (const info of store.list(base)) listed.push(info);

        // Assess
        expect(listed).toHaveLength(1);
        expect(listed[0]).toMatchObject({ key: written.key, size: 321, etag: written.etag });
        expect(listed[0]?.lastModified).toBeInstanceOf(Date);
      });

      it(`lists across pages (${manyObjects} objects)`, async () => {
        // Prepare
        const keys = Array.from({ length: manyObjects }, (_, i) => `${base}many/${i}`);
        await inBatches(keys, 25, (key) => store.put(key, Buffer.from(key)));

        // Act
        const listed = await collectKeys(store.list(`${base}many/`));

        // Assess: unpadded numbers, so byte order differs from numeric order ('many/10' < 'many/2').
        expect(listed).toHaveLength(manyObjects);
        expect(listed).toEqual([...keys].sort(compareBytes));
      });
    });
  });
}

function largeChunks(): Buffer[] {
  return Array.from({ length: LARGE_CHUNK_COUNT }, () => randomBytes(LARGE_CHUNK_SIZE));
}

async function* fromChunks(chunks: readonly Uint8Array[]): ByteStream {
  for (const chunk of chunks) yield chunk;
}

/** Yields half the chunks (or all of them) and then throws, the way a verifying stream reports a bad digest. */
async function* failingBody(chunks: readonly Uint8Array[], failure: Error, atTheEnd: boolean): ByteStream {
  const count = atTheEnd ? chunks.length : Math.floor(chunks.length / 2);
  for (const chunk of chunks.slice(0, count)) yield chunk;
  throw failure;
}

async function collect(body: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function readAll(store: ObjectStore, key: string): Promise<Buffer> {
  return collect((await store.get(key)).body);
}

async function collectKeys(listing: AsyncIterable<ObjectInfo>): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of listing) keys.push(info.key);
  return keys;
}

async function inBatches<T>(items: readonly T[], size: number, work: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
