/**
 * Integrity under faults, on the embedded backend: crashes (SIGKILL of the
 * real CLI), racing runs, lapsed leases, readers during publishes, a full
 * disk, corruption at rest and hostile upstream changes. Each case checks
 * what must survive: the current publication served byte for byte, an audit
 * with no problems, the lock free once the dust settles, runs recorded as
 * they ended. Case ids (`R-…:`) are referenced by the reliability table.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { HttpUpstream, type HttpUpstreamOptions } from '../../functions/adapters/upstream/http-upstream.ts';
import { auditPublication } from '../../functions/core/audit.ts';
import { SYNC_LOCK, SyncEngine, type SyncEvent, type SyncSettings } from '../../functions/core/engine.ts';
import { defaultEngineSettings as defaultSettings } from '../../functions/core/settings.ts';
import { IntegrityError, LeaseLostError, PublishedContentError, StorageFullError, UpstreamError } from '../../functions/core/errors.ts';
import { newestVersions, parseFilter } from '../../functions/core/filters.ts';
import { clearsignedBody, loadKeyring, type Keyring } from '../../functions/core/pgp.ts';
import type { CopyTask } from '../../functions/core/planner.ts';
import { keys, type Backend, type ObjectStore, type Publication, type SyncRun } from '../../functions/core/ports.ts';
import type { ProductsDocument, StreamIndex } from '../../functions/core/simplestreams.ts';
import { createApp, type App } from '../../functions/http/app.ts';
import {
  SIGNED_INDEX_PATH,
  generateSigningKey,
  productsIn,
  synthesizeTree,
  writeMetadata,
  type SigningKey,
} from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { cli } from '../support/cli.ts';
import { killHard, spawnCli, type ProgressLine } from '../support/crash.ts';
import { DiskFullObjectStore } from '../support/fault-store.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { replaceFiles, selectedPaths, serveMirror, withNewVersion } from '../support/mirror.ts';

const FIRST = 'Thu, 24 Jul 2025 08:01:49 +0000';
const SECOND = 'Fri, 25 Jul 2025 08:01:49 +0000';
const NEW_VERSION = '20991231';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const T0 = Date.parse('2025-07-25T09:00:00.000Z');
/** Catalog entries of the wide tree: enough that publish and prune take a while on a busy machine. */
const WIDE_ENTRIES = 40_000;
/** A wide sync reads, verifies and stores that catalog twice over on two shared cores. */
const WIDE_TIMEOUT_MS = 180_000;

let work: string;
let key: SigningKey;
let keyringFile: string;
let keyring: Keyring;
let products: ProductsDocument[];
let nextProducts: ProductsDocument[];
let firstTree: Map<string, Uint8Array>;
let secondTree: Map<string, Uint8Array>;
let dataDirs = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'skystreams-faults-'));
  key = await generateSigningKey('faults upstream');
  keyringFile = join(work, 'keyring.gpg');
  await writeFile(keyringFile, key.publicKeyring);
  keyring = await loadKeyring('faults keyring', key.publicKeyring);
  products = loadFixtureProducts();
  nextProducts = withNewVersion(products, NEW_VERSION);
  firstTree = await synthesizeTree(products, { key, updated: FIRST });
  secondTree = await synthesizeTree(nextProducts, { key, updated: SECOND });
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------- helpers

const freshDataDir = () => join(work, `data-${++dataDirs}`);
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const newVersionPaths = () => selectedPaths(nextProducts, 'amd64', 1).filter((path) => path.includes(NEW_VERSION));

/** `skystreams sync` against `source`, selecting amd64, newest version only. */
function syncArgs(dataDir: string, source: string, ...extra: string[]): string[] {
  return ['sync', '--data-dir', dataDir, '--source', source, '--keyring', keyringFile, '--filter', 'arch=amd64', '--max', '1', ...extra];
}

/** A loopback upstream serving `tree` (live: change the map to change what it serves) until the test ends. */
async function upstreamFor(tree: Map<string, Uint8Array>): Promise<ServedTree> {
  const upstream = await serveTree(tree);
  onTestFinished(() => upstream.close());
  return upstream;
}

async function withBackend<T>(dataDir: string, use: (backend: Backend) => Promise<T>): Promise<T> {
  const backend = openEmbeddedBackend(dataDir);
  try {
    return await use(backend);
  } finally {
    await backend.close();
  }
}

function engineFor(
  backend: Backend,
  source: string,
  options: {
    now?: () => Date;
    settings?: Partial<SyncSettings>;
    objects?: ObjectStore;
    events?: SyncEvent[];
    upstream?: HttpUpstreamOptions;
  } = {},
): SyncEngine {
  return new SyncEngine(
    {
      upstream: new HttpUpstream(source, options.upstream),
      objects: options.objects ?? backend.objects,
      catalog: backend.catalog,
      now: options.now,
      onEvent: (event) => options.events?.push(event),
      sleep: async () => {},
    },
    { ...defaultSettings, keyring, selection: { filters: [parseFilter('arch=amd64')], max: 1 }, ...options.settings },
  );
}

const mirrorUrl = (path: string) => `http://mirror.test/${path.split('/').map(encodeURIComponent).join('/')}`;

async function served(app: App, path: string): Promise<{ status: number; bytes: Buffer }> {
  const response = await app(new Request(mirrorUrl(path)));
  return { status: response.status, bytes: Buffer.from(await response.arrayBuffer()) };
}

interface Snapshot {
  publication: Publication | undefined;
  /** Every metadata file and item the publication lists → `status sha256` as the app serves it. */
  files: Record<string, string>;
}

/** What a client can read of the current publication, byte for byte (as digests). */
async function snapshot(backend: Backend): Promise<Snapshot> {
  const publication = await backend.catalog.getCurrent();
  const files: Record<string, string> = {};
  if (publication) {
    const app = createApp(backend);
    const paths = new Set(publication.files);
    for await (const entry of backend.catalog.listEntries(publication.generation)) paths.add(entry.path);
    for (const path of paths) {
      const { status, bytes } = await served(app, path);
      files[path] = `${status} ${sha256(bytes)}`;
    }
  }
  return { publication, files };
}

async function expectAuditClean(backend: Backend): Promise<void> {
  const report = await auditPublication(backend.objects, backend.catalog);
  expect(report.generation).not.toBeNull();
  expect(report.problems).toEqual([]);
}

async function expectLockFree(backend: Backend): Promise<void> {
  expect(await backend.catalog.getLock(SYNC_LOCK)).toBeUndefined();
}

/** Nothing left half done: the published generation audits clean and no run holds the lock. */
async function expectSettled(backend: Backend): Promise<void> {
  await expectAuditClean(backend);
  await expectLockFree(backend);
}

async function expectServes(backend: Backend, tree: Map<string, Uint8Array>, paths: string[]): Promise<void> {
  const app = createApp(backend);
  for (const path of paths) {
    const { status, bytes } = await served(app, path);
    expect(status, path).toBe(200);
    expect(bytes.equals(Buffer.from(tree.get(path)!)), path).toBe(true);
  }
}

async function keysUnder(objects: ObjectStore, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const object of objects.list(prefix)) found.push(object.key);
  return found;
}

async function statusRuns(dataDir: string): Promise<SyncRun[]> {
  const status = await cli(['status', '--data-dir', dataDir, '--json']);
  expect(status.code, status.stderr).toBe(0);
  return (JSON.parse(status.stdout) as { runs: SyncRun[] }).runs;
}

/**
 * Polls the catalog (as another process would) until entries of `generation`
 * appear: publish has started writing. False if the run ended first.
 */
async function waitForStagedEntries(backend: Backend, generation: number, ended: Promise<unknown>): Promise<boolean> {
  let over = false;
  void ended.then(() => (over = true));
  while (!over) {
    for await (const _entry of backend.catalog.listEntries(generation)) return true;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return false;
}

const isType = (type: string) => (line: ProgressLine) => line.type === type;

/**
 * `docs` with the newest amd64 version of the first products file widened
 * to about `entries` items: the extra items reuse the version's own paths
 * (as products share a squashfs upstream), so the catalog grows while the
 * bytes to copy stay few.
 */
function widened(docs: ProductsDocument[], entries: number): ProductsDocument[] {
  const copy = structuredClone(docs);
  const amd64 = Object.values(copy[0]!.products).filter((product) => product.arch === 'amd64');
  const perProduct = Math.ceil(entries / amd64.length);
  for (const product of amd64) {
    const newest = newestVersions(Object.keys(product.versions), 1)[0]!;
    const items = product.versions[newest]!.items;
    const originals = Object.values(items);
    for (let i = 0; i < perProduct; i++) {
      const original = originals[i % originals.length]!;
      items[`alias-${String(i).padStart(6, '0')}`] = { ...original };
    }
  }
  return copy;
}

// ---------------------------------------------------------------- crashes

describe('Integrity under faults (embedded backend)', () => {
  describe('Crashes of the CLI', () => {
    it('R-crash-copy: a sync killed mid-copy changes nothing served; the next sync takes over at once and records it abandoned', async () => {
      // Prepare
      const files = new Map(firstTree);
      const upstream = await upstreamFor(files);
      const dataDir = freshDataDir();
      const first = await cli(syncArgs(dataDir, upstream.baseUrl));
      expect(first.code, first.stderr).toBe(0);
      const before = await withBackend(dataDir, snapshot);
      replaceFiles(files, secondTree);
      const slow = newVersionPaths()[0]!;
      upstream.faults.set(slow, { kind: 'stall', afterBytes: 512 });

      // Act
      const doomed = spawnCli(syncArgs(dataDir, upstream.baseUrl));
      const planned = await doomed.waitFor(isType('planned'));
      await doomed.waitFor(isType('progress'));
      await expect.poll(() => upstream.requestsFor(slow).some((request) => request.bodyBytesSent > 0), { timeout: 20_000 }).toBe(true);
      const exit = await killHard(doomed);
      upstream.faults.delete(slow);

      // Assess: the crash left the publication as it was
      expect(exit.signal).toBe('SIGKILL');
      await withBackend(dataDir, async (backend) => {
        expect(await snapshot(backend)).toEqual(before);
        await expectAuditClean(backend);
        expect(await backend.catalog.getRun(planned.runId!)).toMatchObject({ state: 'running' });
        expect(await backend.catalog.getObject(slow)).toBeUndefined();
        expect(await backend.objects.head(keys.item(slow))).toBeUndefined();
      });
      expect((await statusRuns(dataDir)).find((run) => run.id === planned.runId)).toMatchObject({ state: 'abandoned' });

      // Assess: the next run does not wait for the dead run's lease
      const startedAt = Date.now();
      const rerun = await cli(syncArgs(dataDir, upstream.baseUrl));
      expect(rerun.stderr).not.toMatch(/holds the lock/);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(Date.now() - startedAt).toBeLessThan(defaultSettings.lockTtlMs / 2);
      expect(rerun.stderr).toContain('"type":"published"');
      const runs = await statusRuns(dataDir);
      expect(runs.find((run) => run.id === planned.runId)).toMatchObject({ state: 'abandoned' });
      expect(runs[0]).toMatchObject({ state: 'succeeded' });
      await withBackend(dataDir, async (backend) => {
        expect((await backend.catalog.getCurrent())!.generation).toBeGreaterThan(before.publication!.generation);
        await expectServes(backend, secondTree, [SIGNED_INDEX_PATH, ...selectedPaths(nextProducts, 'amd64', 1)]);
        await expectSettled(backend);
      });
    });

    it('R-killed-run-leftovers: the run after a SIGKILL mid-copy removes the temp files the dead run left, at once', async () => {
      // Prepare
      const files = new Map(firstTree);
      const upstream = await upstreamFor(files);
      const dataDir = freshDataDir();
      const first = await cli(syncArgs(dataDir, upstream.baseUrl));
      expect(first.code, first.stderr).toBe(0);
      replaceFiles(files, secondTree);
      const slow = newVersionPaths()[0]!;
      upstream.faults.set(slow, { kind: 'stall', afterBytes: 512 });
      const tempDir = join(dataDir, 'objects', '.tmp');

      // Act: killed while its temp file is open
      const doomed = spawnCli(syncArgs(dataDir, upstream.baseUrl));
      await doomed.waitFor(isType('planned'));
      await expect.poll(() => upstream.requestsFor(slow).some((request) => request.bodyBytesSent > 0), { timeout: 20_000 }).toBe(true);
      const dead = await withBackend(dataDir, async (backend) => (await backend.catalog.listRuns(1))[0]!.holder!);
      await expect.poll(async () => (await readdir(tempDir).catch(() => [])).some((name) => name.startsWith(`w${dead.pid}-`)), { timeout: 20_000 }).toBe(true);
      const exit = await killHard(doomed);
      upstream.faults.delete(slow);
      const left = await readdir(tempDir);
      const rerun = await cli(syncArgs(dataDir, upstream.baseUrl));

      // Assess
      expect(exit.signal).toBe('SIGKILL');
      expect(left.length).toBeGreaterThan(0);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(rerun.stderr).toContain('"type":"abandoned"');
      expect(await readdir(tempDir).catch(() => [])).toEqual([]);
      await withBackend(dataDir, async (backend) => {
        await expectServes(backend, secondTree, [SIGNED_INDEX_PATH, ...selectedPaths(nextProducts, 'amd64', 1)]);
        await expectSettled(backend);
      });
    });

    describe('with a wide catalog', () => {
      let wideTree: Map<string, Uint8Array>;
      let widePaths: string[];
      beforeAll(async () => {
        const wide = widened(nextProducts, WIDE_ENTRIES);
        wideTree = await synthesizeTree(wide, { key, updated: SECOND });
        widePaths = selectedPaths(wide, 'amd64', 1);
      });

      it('R-crash-publish: a sync killed while publishing changes nothing served; the next sync publishes at once', { timeout: WIDE_TIMEOUT_MS }, async () => {
        // Prepare
        const files = new Map(firstTree);
        const upstream = await upstreamFor(files);
        const dataDir = freshDataDir();
        const first = await cli(syncArgs(dataDir, upstream.baseUrl));
        expect(first.code, first.stderr).toBe(0);
        const before = await withBackend(dataDir, snapshot);
        replaceFiles(files, wideTree);

        // Act: killed once publish has begun writing the new generation's entries
        const doomed = spawnCli(syncArgs(dataDir, upstream.baseUrl));
        const planned = await doomed.waitFor(isType('planned'));
        const generation = planned.generation as number;
        const staged = await withBackend(dataDir, (backend) => waitForStagedEntries(backend, generation, doomed.exited));
        const exit = await killHard(doomed);

        // Assess: killed before the pointer switch, and nothing served changed
        expect(exit.signal).toBe('SIGKILL');
        expect(doomed.events.map((line) => line.type)).not.toContain('published');
        expect(staged).toBe(true);
        await withBackend(dataDir, async (backend) => {
          expect(await snapshot(backend)).toEqual(before);
          await expectAuditClean(backend);
        });

        const startedAt = Date.now();
        const rerun = await cli(syncArgs(dataDir, upstream.baseUrl));
        expect(rerun.stderr).not.toMatch(/holds the lock/);
        expect(rerun.code, rerun.stderr).toBe(0);
        expect(Date.now() - startedAt).toBeLessThan(defaultSettings.lockTtlMs / 2);
        const runs = await statusRuns(dataDir);
        expect(runs.find((run) => run.id === planned.runId)).toMatchObject({ state: 'abandoned' });
        expect(runs[0]).toMatchObject({ state: 'succeeded' });
        await withBackend(dataDir, async (backend) => {
          const current = (await backend.catalog.getCurrent())!;
          expect(current.runId).not.toBe(planned.runId);
          expect(current.itemCount).toBeGreaterThanOrEqual(WIDE_ENTRIES);
          await expectServes(backend, wideTree, [SIGNED_INDEX_PATH, ...widePaths]);
          await expectSettled(backend);
        });
      });

      it('R-crash-prune: a sync killed right after publishing (in prune) leaves the new publication whole; the next sync finishes the prune at once', { timeout: WIDE_TIMEOUT_MS }, async () => {
        // Prepare
        const files = new Map(firstTree);
        const upstream = await upstreamFor(files);
        const dataDir = freshDataDir();
        const first = await cli(syncArgs(dataDir, upstream.baseUrl));
        expect(first.code, first.stderr).toBe(0);
        replaceFiles(files, wideTree);

        // Act
        const doomed = spawnCli(syncArgs(dataDir, upstream.baseUrl));
        const published = await doomed.waitFor(isType('published'), WIDE_TIMEOUT_MS);
        const exit = await killHard(doomed);

        // Assess: prune never finished (it releases the lock last), the new publication is whole
        expect(exit.signal).toBe('SIGKILL');
        expect(doomed.events.map((line) => line.type)).not.toContain('pruned');
        const after = await withBackend(dataDir, async (backend) => {
          expect(await backend.catalog.getLock(SYNC_LOCK)).toMatchObject({ owner: published.runId });
          const current = (await backend.catalog.getCurrent())!;
          expect(current).toMatchObject({ generation: published.generation, runId: published.runId });
          await expectServes(backend, wideTree, [SIGNED_INDEX_PATH, ...widePaths]);
          await expectAuditClean(backend);
          return snapshot(backend);
        });

        const startedAt = Date.now();
        const rerun = await cli(syncArgs(dataDir, upstream.baseUrl));
        expect(rerun.stderr).not.toMatch(/holds the lock/);
        expect(rerun.code, rerun.stderr).toBe(0);
        expect(Date.now() - startedAt).toBeLessThan(defaultSettings.lockTtlMs / 2);
        const runs = await statusRuns(dataDir);
        expect(runs.find((run) => run.id === published.runId)).toMatchObject({ state: 'succeeded' });
        expect(runs[0]).toMatchObject({ state: 'unchanged' });
        await withBackend(dataDir, async (backend) => {
          expect(await snapshot(backend)).toEqual(after);
          expect(await keysUnder(backend.objects, 'runs/')).toEqual([]);
          await expectSettled(backend);
        });
      });
    });
  });

  // ---------------------------------------------------------------- races

  describe('Racing runs', () => {
    it('R-race-two-runs: two syncs started at once on one data dir: one publishes, the other names the holder or finds nothing to do', async () => {
      const files = new Map(firstTree);
      const upstream = await upstreamFor(files);
      const dataDir = freshDataDir();
      // Round 1 races on a fresh data dir, round 2 on an upstream change, round 3 on an unchanged upstream.
      for (const [round, tree] of [firstTree, secondTree, secondTree].entries()) {
        replaceFiles(files, tree);
        // Prepare
        const before = round === 0 ? undefined : await withBackend(dataDir, snapshot);

        // Act
        const racers = [spawnCli(syncArgs(dataDir, upstream.baseUrl)), spawnCli(syncArgs(dataDir, upstream.baseUrl))];
        const exits = await Promise.all(racers.map((racer) => racer.exited));

        // Assess
        const runIdOf = (i: number) => racers[i]!.events.find((line) => line.runId)?.runId;
        const outcomes = exits.map((exit, i) => {
          if (exit.code === 0) return 'ok';
          const locked = /another sync run \((\S+)\) holds the lock/.exec(racers[i]!.stderr());
          expect(locked, `round ${round}, racer ${i} exited ${exit.code}:\n${racers[i]!.stderr()}`).not.toBeNull();
          expect(locked![1], `round ${round}: the lock message names the other run`).toBe(runIdOf(1 - i));
          return 'locked';
        });
        expect(outcomes, `round ${round}`).toContain('ok');
        await withBackend(dataDir, async (backend) => {
          if (round === 2) expect(await snapshot(backend)).toEqual(before);
          await expectServes(backend, tree, [SIGNED_INDEX_PATH, ...selectedPaths(round === 0 ? products : nextProducts, 'amd64', 1)]);
          await expectSettled(backend);
          for (const run of await backend.catalog.listRuns(20)) {
            expect(['succeeded', 'unchanged'], `round ${round}: run ${run.id} ${run.error ?? ''}`).toContain(run.state);
          }
        });
      }
    });

    it('R-lapsed-lease: a run whose lease lapsed and was taken over can neither copy nor publish, its fail records nothing, and it changes nothing', async () => {
      // Prepare
      const dataDir = freshDataDir();
      const staleTree = await synthesizeTree(withNewVersion(products, '20990101'), { key, updated: SECOND });
      const takeoverTree = await synthesizeTree(withNewVersion(products, '20991231'), { key, updated: 'Sat, 26 Jul 2025 08:01:49 +0000' });
      const live = new Map(firstTree);
      const upstream = await upstreamFor(live);
      const settings = { lockTtlMs: 10 * MINUTE };
      await withBackend(dataDir, async (backend) => {
        await engineFor(backend, upstream.baseUrl, { now: () => new Date(T0 - HOUR), settings }).run('run-first');
        replaceFiles(live, staleTree);
        const stale = engineFor(backend, upstream.baseUrl, { now: () => new Date(T0), settings });
        const planned = await stale.plan('run-stale');
        expect(planned).toMatchObject({ outcome: 'planned' });
        const staleTasks = JSON.parse((await readAll(backend, keys.runFile('run-stale', 'copy.json'))).toString('utf8')) as CopyTask[];
        const staleOnly = staleTasks.filter((task) => task.path.includes('20990101'));
        expect(staleOnly.length).toBeGreaterThan(0);

        // Act: the lease lapses; another run takes over and publishes
        replaceFiles(live, takeoverTree);
        const takeover = engineFor(backend, upstream.baseUrl, { now: () => new Date(T0 + 10 * MINUTE + 1), settings });
        const takeoverPlan = await takeover.plan('run-takeover');
        // While the new run holds the lock…
        await expect(stale.copy('run-stale', staleOnly[0]!)).rejects.toThrow(LeaseLostError);
        for (const task of JSON.parse((await readAll(backend, keys.runFile('run-takeover', 'copy.json'))).toString('utf8')) as CopyTask[]) {
          await takeover.copy('run-takeover', task);
        }
        await takeover.publish('run-takeover');
        await takeover.prune('run-takeover');
        expect(takeoverPlan).toMatchObject({ outcome: 'planned' });
        const before = await snapshot(backend);

        // …and after it has let go.
        const attempts = {
          copy: await stale.copy('run-stale', staleOnly[1] ?? staleOnly[0]!).catch((error: unknown) => error),
          publish: await stale.publish('run-stale').catch((error: unknown) => error),
          fail: await stale.fail('run-stale', new Error('stale run gives up')).catch((error: unknown) => error),
        };

        // Assess: nothing changed…
        expect(await snapshot(backend)).toEqual(before);
        expect(before.publication).toMatchObject({ runId: 'run-takeover' });
        expect((await backend.catalog.listPublications()).map((publication) => publication.runId)).not.toContain('run-stale');
        for (const task of staleOnly) {
          expect(await backend.catalog.getObject(task.path), task.path).toBeUndefined();
          expect(await backend.objects.head(keys.item(task.path)), task.path).toBeUndefined();
        }
        expect(await backend.catalog.getRun('run-stale')).toMatchObject({ state: 'abandoned' });
        expect(await keysUnder(backend.objects, keys.metadataPrefix({ generation: (planned as { generation: number }).generation, runId: 'run-stale' }))).toEqual([]);
        await expectServes(backend, takeoverTree, [SIGNED_INDEX_PATH]);
        await expectSettled(backend);
        // …and each phase said why.
        expect(attempts.copy).toBeInstanceOf(LeaseLostError);
        expect(attempts.publish).toBeInstanceOf(LeaseLostError);
        // fail() of a run that lost the lock records nothing and lets the holder settle it.
        expect(attempts.fail).toBeUndefined();
      });
    });
  });

  // ---------------------------------------------------------------- readers

  describe('Readers', () => {
    it('R-readers-during-publishes: 4 MAAS-like readers see no missing or wrong file while 8 generations are published', async () => {
      // Prepare
      const PUBLISHES = 8;
      const READERS = 4;
      const deadline = Date.now() + 90_000;
      const trees: Map<string, Uint8Array>[] = [];
      let docs = products;
      for (let i = 1; i <= PUBLISHES; i++) {
        docs = withNewVersion(docs, `2099010${i}`);
        trees.push(await synthesizeTree(docs, { key, updated: `Sat, 0${i} Nov 2025 08:00:00 +0000` }));
      }
      const live = new Map(firstTree);
      const upstream = await upstreamFor(live);
      const dataDir = freshDataDir();
      const backend = openEmbeddedBackend(dataDir);
      const server = await serveMirror(backend);
      const inconsistencies: string[] = [];
      const passes: number[] = Array.from({ length: READERS }, () => 0);
      let publishing = true;
      try {
        const sync = () => engineFor(backend, upstream.baseUrl).run();
        expect(await sync()).toMatchObject({ state: 'succeeded' });

        const get = async (path: string) => {
          const response = await fetch(server.url + path.split('/').map(encodeURIComponent).join('/'));
          return { status: response.status, bytes: Buffer.from(await response.arrayBuffer()) };
        };
        const readMetadata = async (path: string): Promise<unknown> => {
          const { status, bytes } = await get(path);
          if (status !== 200) {
            inconsistencies.push(`${path}: ${status}`);
            return undefined;
          }
          return JSON.parse(await clearsignedBody(path, bytes.toString('utf8')));
        };
        // What MAAS does: the index, each products file it lists, every item of the newest version of each selected product.
        const reader = async (n: number) => {
          while (publishing && Date.now() < deadline) {
            const index = (await readMetadata(SIGNED_INDEX_PATH)) as StreamIndex | undefined;
            for (const entry of Object.values(index?.index ?? {})) {
              const doc = (await readMetadata(entry.path)) as ProductsDocument | undefined;
              for (const product of Object.values(doc?.products ?? {})) {
                if (product.arch !== 'amd64') continue;
                const newest = newestVersions(Object.keys(product.versions), 1)[0]!;
                for (const item of Object.values(product.versions[newest]!.items)) {
                  const { status, bytes } = await get(item.path);
                  if (status !== 200) inconsistencies.push(`${item.path}: ${status}`);
                  else if (bytes.length !== item.size || sha256(bytes) !== item.sha256) inconsistencies.push(`${item.path}: other bytes`);
                }
              }
            }
            passes[n]!++;
          }
        };
        const readers = Array.from({ length: READERS }, (_, n) => reader(n));

        // Act
        const runs: SyncRun[] = [];
        for (const tree of trees) {
          replaceFiles(live, tree);
          runs.push(await sync());
        }
        publishing = false;
        await Promise.all(readers);

        // Assess
        expect(Date.now()).toBeLessThan(deadline);
        expect(runs.map((run) => run.state)).toEqual(Array(PUBLISHES).fill('succeeded'));
        expect(inconsistencies).toEqual([]);
        for (const count of passes) expect(count).toBeGreaterThan(0);
        expect((await backend.catalog.listPublications()).length).toBe(PUBLISHES + 1);
        await expectSettled(backend);
      } finally {
        publishing = false;
        await server.close();
        await backend.close();
      }
    });
  });

  // ---------------------------------------------------------------- storage

  describe('Storage faults', () => {
    it('R-disk-full: ENOSPC mid-copy fails the run, leaves the publication and no temp file, frees the lock; the next run succeeds', async () => {
      // Prepare
      const live = new Map(firstTree);
      const upstream = await upstreamFor(live);
      const dataDir = freshDataDir();
      await withBackend(dataDir, async (backend) => {
        expect(await engineFor(backend, upstream.baseUrl).run()).toMatchObject({ state: 'succeeded' });
        const before = await snapshot(backend);
        replaceFiles(live, secondTree);
        const newBytes = newVersionPaths().reduce((sum, path) => sum + secondTree.get(path)!.length, 0);
        const full = new DiskFullObjectStore(backend.objects, Math.floor(newBytes / 2));
        const events: SyncEvent[] = [];

        // Act
        const failure = await engineFor(backend, upstream.baseUrl, { objects: full, events }).run('run-full').catch((error: unknown) => error);

        // Assess
        expect(failure).toBeInstanceOf(StorageFullError);
        expect(failure).toMatchObject({ directory: join(dataDir, 'objects'), cause: { code: 'ENOSPC' } });
        expect(full.failedPuts.length).toBeGreaterThan(0);
        expect(await snapshot(backend)).toEqual(before);
        await expectSettled(backend);
        expect(await backend.catalog.getRun('run-full')).toMatchObject({ state: 'failed', error: expect.stringContaining('no space left on the device') });
        expect(await readdir(join(dataDir, 'objects', '.tmp')).catch(() => [])).toEqual([]);
        for (const key of full.failedPuts) expect(await backend.objects.head(key), key).toBeUndefined();

        const next = await engineFor(backend, upstream.baseUrl).run('run-with-space');
        expect(next).toMatchObject({ state: 'succeeded' });
        await expectServes(backend, secondTree, [SIGNED_INDEX_PATH, ...selectedPaths(nextProducts, 'amd64', 1)]);
        await expectSettled(backend);
      });
    });

    it('R-slow-upstream: an item trickling below the minimum rate fails the run naming its URL and rate; the lock is freed', async () => {
      // Prepare
      const live = new Map(firstTree);
      const upstream = await upstreamFor(live);
      const dataDir = freshDataDir();
      await withBackend(dataDir, async (backend) => {
        expect(await engineFor(backend, upstream.baseUrl).run()).toMatchObject({ state: 'succeeded' });
        const before = await snapshot(backend);
        replaceFiles(live, secondTree);
        const slow = newVersionPaths()[0]!;
        // About 50 bytes a second against a floor of 1 KiB/s over 200 ms windows.
        upstream.faults.set(slow, { kind: 'endless', chunkBytes: 1, intervalMs: 20 });
        const events: SyncEvent[] = [];
        const startedAt = Date.now();

        // Act
        const failure = await engineFor(backend, upstream.baseUrl, {
          events,
          settings: { attempts: 2 },
          upstream: { minItemRate: { bytesPerSecond: 1024, windowMs: 200 } },
        }).run('run-slow').catch((error: unknown) => error);

        // Assess
        expect(failure).toBeInstanceOf(UpstreamError);
        const message = (failure as UpstreamError).message;
        expect(message).toContain(upstream.url(slow));
        expect(message).toMatch(/download too slow: \d+(\.\d)? B\/s over \d+ ms of waiting, below the minimum of 1\.0 KiB\/s \(over 200 ms\)/);
        expect(Date.now() - startedAt).toBeLessThan(10_000);
        expect(events.filter((event) => event.type === 'item-retry' && event.path === slow)).toHaveLength(1);
        expect(await backend.catalog.getRun('run-slow')).toMatchObject({ state: 'failed', error: expect.stringContaining('download too slow') });
        expect(await snapshot(backend)).toEqual(before);
        await expectSettled(backend);
      });
    });

    it('R-corrupt-at-rest: verify names an item damaged on disk; the next sync heals it and verify passes', async () => {
      // Prepare
      const upstream = await upstreamFor(new Map(firstTree));
      const dataDir = freshDataDir();
      const first = await cli(syncArgs(dataDir, upstream.baseUrl));
      expect(first.code, first.stderr).toBe(0);
      const victim = selectedPaths(products, 'amd64', 1)[0]!;
      const file = join(dataDir, 'objects', ...keys.item(victim).split('/'));
      const damaged = await readFile(file);
      const middle = damaged.length >> 1;
      damaged[middle] = damaged[middle]! ^ 0xff;
      await writeFile(file, damaged);

      // Act
      const found = await cli(['verify', '--data-dir', dataDir]);
      const healing = await cli(syncArgs(dataDir, upstream.baseUrl));
      const healed = await cli(['verify', '--data-dir', dataDir]);

      // Assess
      expect(found.code).toBe(1);
      expect(found.stderr).toContain(`BAD ${victim}`);
      expect(healing.code, healing.stderr).toBe(0);
      expect(healed.code, healed.stderr).toBe(0);
      await withBackend(dataDir, async (backend) => {
        await expectServes(backend, firstTree, [SIGNED_INDEX_PATH, ...selectedPaths(products, 'amd64', 1)]);
        await expectSettled(backend);
      });
    });
  });

  // ---------------------------------------------------------------- hostile upstreams

  describe('Hostile upstream changes', () => {
    it('R-republished-bytes: other bytes promised under published paths fail the run before any item is fetched', async () => {
      // Prepare
      const files = new Map(firstTree);
      const upstream = await upstreamFor(files);
      const dataDir = freshDataDir();
      const settings = { selection: { filters: [parseFilter('arch=amd64')], max: 2 } };
      const republished = await synthesizeTree(nextProducts, { key, updated: SECOND, contentSeed: 'republished' });
      const oldSelection = selectedPaths(products, 'amd64', 2);
      const newSelection = selectedPaths(nextProducts, 'amd64', 2);
      const changed = newSelection.filter((path) => oldSelection.includes(path) && sha256(firstTree.get(path)!) !== sha256(republished.get(path)!));
      expect(changed.length).toBeGreaterThan(0);
      const corrupt = newSelection.find((path) => path.includes(NEW_VERSION))!;
      await withBackend(dataDir, async (backend) => {
        expect(await engineFor(backend, upstream.baseUrl, { settings }).run()).toMatchObject({ state: 'succeeded' });
        const before = await snapshot(backend);
        replaceFiles(files, republished);
        upstream.faults.set(corrupt, { kind: 'corrupt' });
        const mark = upstream.requests.length;

        // Act
        const failure = await engineFor(backend, upstream.baseUrl, { settings }).run('run-republished').catch((error: unknown) => error);

        // Assess
        expect(failure).toBeInstanceOf(PublishedContentError);
        const named = (failure as PublishedContentError).paths.map((entry) => entry.replace(/ \(generation \d+\)$/, ''));
        expect([...named].sort()).toEqual(changed);
        expect(upstream.requests.slice(mark).map((request) => request.path).filter((path) => !path.startsWith('streams/'))).toEqual([]);
        expect(await snapshot(backend)).toEqual(before);
        await expectServes(backend, firstTree, oldSelection);
        await expectSettled(backend);
        expect(await backend.catalog.getRun('run-republished')).toMatchObject({ state: 'failed' });
      });
    });

    it('R-sha512-only-right: an item with a right sha512 and a wrong signed sha256 is refused with IntegrityError; nothing is published', async () => {
      // Prepare
      const docs = loadFixtureProducts();
      const product = Object.values(docs[0]!.products).find((candidate) => candidate.arch === 'amd64')!;
      const version = product.versions[newestVersions(Object.keys(product.versions), 1)[0]!]!;
      const [itemName, item] = Object.entries(version.items)[0]!;
      item.sha512 = '0'.repeat(128); // synthesizeTree recomputes a declared sha512 from the bytes
      const files = await synthesizeTree(docs, { key, updated: FIRST });
      const victim = item.path;
      const signed = productsIn(files);
      const signedDoc = signed.find((doc) => doc.content_id === docs[0]!.content_id)!;
      const signedItem = Object.values(signedDoc.products).find((candidate) => candidate.arch === 'amd64')!.versions[
        newestVersions(Object.keys(product.versions), 1)[0]!
      ]!.items[itemName]!;
      expect(signedItem.sha512).toBe(createHash('sha512').update(files.get(victim)!).digest('hex'));
      signedItem.sha256 = sha256(new TextEncoder().encode('some other bytes'));
      await writeMetadata(files, signed, { key, updated: FIRST });
      const upstream = await upstreamFor(files);
      const dataDir = freshDataDir();
      await withBackend(dataDir, async (backend) => {
        // Act
        const failure = await engineFor(backend, upstream.baseUrl).run('run-sha512').catch((error: unknown) => error);

        // Assess
        expect(failure).toBeInstanceOf(IntegrityError);
        expect(failure).toMatchObject({ path: victim, message: expect.stringMatching(/sha256/) });
        expect(await backend.catalog.getCurrent()).toBeUndefined();
        expect(await backend.catalog.listPublications()).toEqual([]);
        expect(await backend.catalog.getObject(victim)).toBeUndefined();
        expect(await backend.objects.head(keys.item(victim))).toBeUndefined();
        expect(await backend.catalog.getRun('run-sha512')).toMatchObject({ state: 'failed' });
        expect((await served(createApp(backend), SIGNED_INDEX_PATH)).status).toBe(404);
        await expectLockFree(backend);
      });
    });
  });
});

async function readAll(backend: Backend, key: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of (await backend.objects.get(key)).body) chunks.push(chunk);
  return Buffer.concat(chunks);
}
