/** The embedded backend (directory + SQLite) against both port contracts, plus what only it promises. */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { ABANDONED_TEMP_AGE_MS, FsObjectStore } from '../../functions/adapters/fs/fs-object-store.ts';
import { tempName, writerTag } from '../../functions/adapters/fs/temp-files.ts';
import { thisProcess } from '../../functions/adapters/process-holder.ts';
import { SqliteCatalog } from '../../functions/adapters/sqlite/sqlite-catalog.ts';
import Database from 'better-sqlite3';
import { ConfigError, ConflictError, NotFoundError } from '../../functions/core/errors.ts';
import { DEFAULT_CHANNEL, type Publication } from '../../functions/core/ports.ts';
import { catalogContract } from './catalog.contract.ts';
import { objectStoreContract } from './object-store.contract.ts';

async function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'skystreams-embedded-'));
}

objectStoreContract('FsObjectStore', async () => {
  const dir = await makeTempDir();
  return { store: new FsObjectStore(join(dir, 'objects')), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

catalogContract('SqliteCatalog', async () => {
  const dir = await makeTempDir();
  const catalog = new SqliteCatalog(join(dir, 'catalog.sqlite'));
  return {
    catalog,
    cleanup: async () => {
      catalog.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('Class: FsObjectStore', () => {
  let dir: string;
  let store: FsObjectStore;

  beforeEach(async () => {
    dir = await makeTempDir();
    store = new FsObjectStore(dir);
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('Method: put', () => {
    it.each(['', '/etc/passwd', 'a/../../b', 'a//b', './a', 'a/.', 'a\\b', 'a\u0000b', '.tmp/x', '.meta/x'])(
      'rejects the key %j',
      async (key) => {
        // Act
        const attempt = store.put(key, Buffer.from('x'));

        // Assess
        await expect(attempt).rejects.toThrow(`invalid object key ${JSON.stringify(key)}: `);
        expect(await readdir(dir)).not.toContain('etc');
      },
    );

    it('removes its temporary file when the body throws', async () => {
      // Prepare
      async function* failing() {
        yield Buffer.from('partial');
        throw new Error('digest mismatch');
      }

      // Act
      const attempt = store.put('items/x', failing());

      // Assess
      await expect(attempt).rejects.toThrow('digest mismatch');
      expect(await readdir(join(dir, '.tmp'))).toEqual([]);
    });

    it('removes temporary files abandoned by a dead writer, and only those', async () => {
      // Prepare: one temp file a crashed process left long ago, one a live writer is filling.
      await mkdir(join(dir, '.tmp'), { recursive: true });
      const abandoned = join(dir, '.tmp', 'abandoned');
      const live = join(dir, '.tmp', 'live');
      await writeFile(abandoned, 'half a squashfs');
      await writeFile(live, 'being written');
      const longAgo = new Date(Date.now() - ABANDONED_TEMP_AGE_MS - 60_000);
      await utimes(abandoned, longAgo, longAgo);

      // Act
      await store.put('items/x', Buffer.from('x'));

      // Assess
      expect((await readdir(join(dir, '.tmp'))).sort()).toEqual(['live']);
    });

    it('removes at once the temp files of a writer that is gone, and only those', async () => {
      // Prepare: a dead writer's two files, another dead writer's, and one this process is filling.
      const dead = { host: hostname(), pid: 4_000_001, startTime: 77 };
      const other = { host: hostname(), pid: 4_000_002, startTime: 77 };
      await mkdir(join(dir, '.tmp'), { recursive: true });
      const names = [`${writerTag(dead)}a`, `${writerTag(dead)}b`, `${writerTag(other)}c`, tempName()];
      for (const name of names) await writeFile(join(dir, '.tmp', name), 'half a squashfs');

      // Act
      const removed = await store.removeLeftovers({ holder: dead, keys: ['items/x'] });
      const mine = await store.removeLeftovers({ holder: thisProcess(), keys: [] });
      const elsewhere = await store.removeLeftovers({ holder: { ...other, host: `not-${hostname()}` }, keys: [] });
      const unknown = await store.removeLeftovers({ keys: [] });

      // Assess
      expect(removed).toBe(2);
      expect([mine, elsewhere, unknown]).toEqual([0, 0, 0]);
      expect((await readdir(join(dir, '.tmp'))).sort()).toEqual(names.slice(2).sort());
    });

    it('writes a body of several MiB in odd-sized chunks byte for byte, its full batches bypassing the page cache', async () => {
      // Prepare: 3 MiB and a tail that is no whole number of blocks, in chunks that straddle every batch boundary.
      const bytes = randomBytes(3 * 2 ** 20 + 1234);
      async function* chunks() {
        for (let offset = 0; offset < bytes.byteLength; offset += 100_003) yield bytes.subarray(offset, offset + 100_003);
      }

      // Act
      const info = await store.put('items/large', chunks());

      // Assess
      expect(info.size).toBe(bytes.byteLength);
      expect((await readFile(join(dir, 'items', 'large'))).equals(bytes)).toBe(true);
      expect(store.writeCounts.direct + store.writeCounts.pageCache).toBe(bytes.byteLength);
      // Linux file systems under tmpdir (ext4, xfs, btrfs, tmpfs since 6.6) take O_DIRECT.
      if (process.platform === 'linux') expect(store.writeCounts).toEqual({ direct: 3 * 2 ** 20, pageCache: 1234 });
      expect(await readdir(join(dir, '.tmp'))).toEqual([]);
    });

    it('writes the file at the key path, so the directory can be served as is', async () => {
      // Act
      await store.put('items/server/jammy/boot-kernel', Buffer.from('kernel'));

      // Assess
      expect(existsSync(join(dir, 'items', 'server', 'jammy', 'boot-kernel'))).toBe(true);
    });
  });

  describe('Method: get / head (symlinks)', () => {
    it('refuses a symlink that leads out of the store, and serves one that stays inside', async () => {
      // Prepare
      const outside = await makeTempDir();
      await writeFile(join(outside, 'secret'), 'not mirrored');
      await mkdir(join(dir, 'items'), { recursive: true });
      await symlink(join(outside, 'secret'), join(dir, 'items', 'escape'));
      await symlink(outside, join(dir, 'items', 'escape-dir'));
      await store.put('items/real', Buffer.from('mirrored'));
      await symlink(join(dir, 'items', 'real'), join(dir, 'items', 'alias'));

      // Act
      const escaped = await store.get('items/escape').catch((error: unknown) => error);
      const escapedThroughDir = await store.get('items/escape-dir/secret').catch((error: unknown) => error);
      const headEscaped = await store.head('items/escape');
      const alias = await store.head('items/alias');

      // Assess
      expect(escaped).toBeInstanceOf(NotFoundError);
      expect(escapedThroughDir).toBeInstanceOf(NotFoundError);
      expect(headEscaped).toBeUndefined();
      expect(alias?.size).toBe('mirrored'.length);
      await rm(outside, { recursive: true, force: true });
    });
  });

  describe('Method: delete', () => {
    it('prunes directories it empties, but not the root', async () => {
      // Prepare
      await store.put('items/a/b/c', Buffer.from('x'));
      await store.put('items/keep', Buffer.from('y'));

      // Act
      await store.delete('items/a/b/c');

      // Assess
      expect(existsSync(join(dir, 'items', 'a'))).toBe(false);
      expect(existsSync(join(dir, 'items', 'keep'))).toBe(true);
      expect(existsSync(dir)).toBe(true);
    });
  });

  describe('Method: list', () => {
    it('lists nothing for a store whose directory does not exist yet', async () => {
      // Prepare
      const fresh = new FsObjectStore(join(dir, 'not-yet'));

      // Act
      const listed = [];
      for await (const info of fresh.list('')) listed.push(info);

      // Assess
      expect(listed).toEqual([]);
    });
  });
});

describe('Class: SqliteCatalog', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await makeTempDir();
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const first: Publication = {
    generation: 1,
    upstreamUpdated: 'Mon, 01 Jan 2024 00:00:00 +0000',
    publishedAt: '2024-01-01T00:00:00.000Z',
    runId: 'run-1',
    files: ['streams/v1/index.sjson'],
    itemCount: 1,
    totalBytes: 2,
  };

  it('keeps everything across close and reopen', async () => {
    // Prepare
    const path = join(dir, 'catalog.sqlite');
    const writer = new SqliteCatalog(path);
    await writer.publish(first, undefined);
    await writer.setState('upstream:etag', '"x"');
    writer.close();

    // Act
    const reader = new SqliteCatalog(path);
    const current = await reader.getCurrent();
    const state = await reader.getState('upstream:etag');
    reader.close();

    // Assess
    expect(current).toEqual(first);
    expect(state).toBe('"x"');
  });

  it('checks the expected generation across two connections to one file', async () => {
    // Prepare
    const path = join(dir, 'catalog.sqlite');
    const one = new SqliteCatalog(path);
    const two = new SqliteCatalog(path);

    // Act
    await one.publish(first, undefined);
    const attempt = two.publish({ ...first, generation: 2 }, undefined);

    // Assess
    await expect(attempt).rejects.toBeInstanceOf(ConflictError);
    expect((await two.getCurrent())?.generation).toBe(1);
    one.close();
    two.close();
  });
});

describe('Class: SqliteCatalog (schema 1 files)', () => {
  it('migrates objects, locks and runs of a schema-1 catalog, keeping every digest it knew', async () => {
    // Prepare: the tables and rows schema 1 wrote.
    const dir = await makeTempDir();
    const file = join(dir, 'catalog.sqlite');
    const old = new Database(file);
    old.exec(`
      CREATE TABLE objects (path TEXT PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
                            digest TEXT NOT NULL, stored_at TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE runs (id TEXT PRIMARY KEY, state TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
                         items_copied INTEGER NOT NULL, bytes_copied INTEGER NOT NULL, items_present INTEGER NOT NULL,
                         generation INTEGER, error TEXT);
      CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
      INSERT INTO objects VALUES ('a.img', 3, '${'a'.repeat(64)}', 'sha512:${'b'.repeat(128)}', '2024-01-01T00:00:00.000Z');
      INSERT INTO objects VALUES ('b.img', 4, '${'c'.repeat(64)}', 'sha256:${'c'.repeat(64)}', '2024-01-01T00:00:00.000Z');
      INSERT INTO runs VALUES ('r1', 'succeeded', '2024-01-01T00:00:00.000Z', NULL, 1, 2, 3, 1, NULL);
      INSERT INTO locks VALUES ('sync', 'r1', 0);
      PRAGMA user_version = 1;
    `);
    old.close();

    // Act
    const catalog = new SqliteCatalog(file);
    const a = await catalog.getObject('a.img');
    const b = await catalog.getObject('b.img');
    const lease = await catalog.acquireLock('sync', 'r2', 60_000, new Date());
    const runR1 = await catalog.getRun('r1');
    catalog.close();
    const reopened = new SqliteCatalog(file);
    const afterReopen = await reopened.getObject('a.img');
    reopened.close();

    // Assess
    expect(a?.digests).toEqual({ sha256: 'a'.repeat(64), sha512: 'b'.repeat(128) });
    expect(b?.digests).toEqual({ sha256: 'c'.repeat(64) });
    expect(lease.epoch).toBe(1);
    expect(runR1).toMatchObject({ id: 'r1', state: 'succeeded' });
    expect(afterReopen).toEqual(a);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('Class: SqliteCatalog (schema 3 files)', () => {
  it('adds the run warnings and mode-switch columns to a schema-3 catalog, keeping its runs', async () => {
    // Prepare: schema 3's objects and runs tables, with one run.
    const dir = await makeTempDir();
    const file = join(dir, 'catalog.sqlite');
    const old = new Database(file);
    old.exec(`
      CREATE TABLE objects (path TEXT PRIMARY KEY, size INTEGER NOT NULL, sha256 TEXT NOT NULL, sha512 TEXT, md5 TEXT, stored_at TEXT NOT NULL);
      CREATE TABLE runs (id TEXT PRIMARY KEY, state TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, items_copied INTEGER NOT NULL,
                         bytes_copied INTEGER NOT NULL, items_present INTEGER NOT NULL, generation INTEGER, error TEXT, holder_host TEXT, holder_pid INTEGER);
      INSERT INTO runs (id, state, started_at, items_copied, bytes_copied, items_present) VALUES ('old', 'unchanged', '2024-01-01T00:00:00.000Z', 0, 0, 0);
      PRAGMA user_version = 3;
    `);
    old.close();

    // Act
    const catalog = new SqliteCatalog(file);
    const kept = await catalog.getRun('old');
    await catalog.putRun({ id: 'new', state: 'succeeded', startedAt: '2024-01-02T00:00:00.000Z', itemsCopied: 0, bytesCopied: 0, itemsPresent: 0, warnings: ['w'] });
    const added = await catalog.getRun('new');
    catalog.close();

    // Assess
    expect(kept).toEqual({ id: 'old', state: 'unchanged', startedAt: '2024-01-01T00:00:00.000Z', itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 });
    expect(added?.warnings).toEqual(['w']);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('Class: SqliteCatalog (schema 2 files)', () => {
  const first: Publication = {
    generation: 4,
    upstreamUpdated: 'Mon, 01 Jan 2024 00:00:00 +0000',
    publishedAt: '2024-01-01T00:00:00.000Z',
    runId: 'run-4',
    files: ['streams/v1/index.sjson'],
    itemCount: 1,
    totalBytes: 2,
  };

  it('makes the one current pointer of a schema-2 catalog the default channel', async () => {
    // Prepare: schema 2's publications and its single pointer row.
    const dir = await makeTempDir();
    const file = join(dir, 'catalog.sqlite');
    const old = new Database(file);
    old.exec(`
      CREATE TABLE publications (generation INTEGER PRIMARY KEY, upstream_updated TEXT NOT NULL, published_at TEXT NOT NULL,
                                 run_id TEXT NOT NULL, files TEXT NOT NULL, item_count INTEGER NOT NULL, total_bytes INTEGER NOT NULL);
      CREATE TABLE current_publication (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), generation INTEGER NOT NULL);
      INSERT INTO publications VALUES (${first.generation}, '${first.upstreamUpdated}', '${first.publishedAt}', '${first.runId}',
                                       '${JSON.stringify(first.files)}', ${first.itemCount}, ${first.totalBytes});
      INSERT INTO current_publication VALUES (1, ${first.generation});
      PRAGMA user_version = 2;
    `);
    old.close();

    // Act
    const catalog = new SqliteCatalog(file);
    const current = await catalog.getCurrent();
    const channels = await catalog.listChannels();
    await catalog.publish({ ...first, generation: first.generation + 1 }, first.generation);
    const next = await catalog.getChannel(DEFAULT_CHANNEL);
    catalog.close();

    // Assess
    expect(current).toEqual(first);
    expect(channels).toEqual([{ name: DEFAULT_CHANNEL, generation: first.generation, history: [], revision: 1 }]);
    expect(next).toEqual({ name: DEFAULT_CHANNEL, generation: first.generation + 1, history: [first.generation], revision: 2 });
    await rm(dir, { recursive: true, force: true });
  });

  it('adds the package index to a schema-2 catalog, keeping what it held', async () => {
    // Prepare: a catalog as schema 2 left it, without the manifests table.
    const dir = await makeTempDir();
    const file = join(dir, 'catalog.sqlite');
    const before = new SqliteCatalog(file);
    await before.setState('upstream:etag', '"kept"');
    before.close();
    const old = new Database(file);
    old.exec('DROP TABLE manifests; PRAGMA user_version = 2;');
    old.close();
    const manifest = { sha256: 'd'.repeat(64), path: 'noble/squashfs.manifest', packages: new Map([['bash', '5.2.21-2ubuntu4']]), indexedAt: '2025-07-09T12:00:00.000Z' };

    // Act
    const catalog = new SqliteCatalog(file);
    const unindexed = await catalog.getManifest(manifest.sha256);
    await catalog.putManifest(manifest);
    const read = await catalog.getManifest(manifest.sha256);
    const state = await catalog.getState('upstream:etag');
    catalog.close();
    const check = new Database(file);
    const version = check.pragma('user_version', { simple: true });
    check.close();

    // Assess
    expect(unindexed).toBeUndefined();
    expect(read).toEqual(manifest);
    expect(state).toBe('"kept"');
    expect(version).toBe(4);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('Class: SqliteCatalog (runs without holder start times)', () => {
  it('adds the holder start time column on open, keeping the holders recorded without it', async () => {
    // Prepare: a schema-3 catalog whose runs table predates the column.
    const dir = await makeTempDir();
    const file = join(dir, 'catalog.sqlite');
    const before = new SqliteCatalog(file);
    before.close();
    const old = new Database(file);
    old.exec(`
      ALTER TABLE runs DROP COLUMN holder_start;
      INSERT INTO runs (id, state, started_at, items_copied, bytes_copied, items_present, holder_host, holder_pid)
        VALUES ('r-old', 'running', '2025-01-01T00:00:00.000Z', 0, 0, 0, 'host-a', 77);
    `);
    old.close();

    // Act
    const catalog = new SqliteCatalog(file);
    const kept = await catalog.getRun('r-old');
    await catalog.putRun({ ...kept!, id: 'r-new', holder: { host: 'host-a', pid: 78, startTime: 12_345 } });
    const added = await catalog.getRun('r-new');
    catalog.close();

    // Assess
    expect(kept?.holder).toEqual({ host: 'host-a', pid: 77 });
    expect(added?.holder).toEqual({ host: 'host-a', pid: 78, startTime: 12_345 });
    await rm(dir, { recursive: true, force: true });
  });
});

describe('Function: openEmbeddedBackend', () => {
  it('refuses, creating nothing, to open a mirror that does not exist when asked for an existing one', async () => {
    // Prepare
    const parent = await mkdtemp(join(tmpdir(), 'skystreams-existing-'));
    const missing = join(parent, 'mirror');
    try {
      // Act
      const attempt = () => openEmbeddedBackend(missing, { existing: true });

      // Assess
      expect(attempt).toThrow(ConfigError);
      expect(attempt).toThrow(`${missing}: no mirror here (no catalog.sqlite): name the mirror's directory with --data-dir, or make one with skystreams sync`);
      expect(existsSync(missing)).toBe(false);
      await openEmbeddedBackend(missing).close();
      await openEmbeddedBackend(missing, { existing: true }).close();
      expect(existsSync(join(missing, 'catalog.sqlite'))).toBe(true);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});
