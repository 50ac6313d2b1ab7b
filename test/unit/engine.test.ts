import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { auditPublication } from '../../functions/core/audit.ts';
import {
  SYNC_LOCK,
  SyncEngine,
  type PlanOutcome,
  type SyncEvent,
  type SyncSettings,
} from '../../functions/core/engine.ts';
import { defaultEngineSettings as defaultSettings } from '../../functions/core/settings.ts';
import { ConflictError, IntegrityError, LeaseLostError, LockHeldError, ObjectExistsError } from '../../functions/core/errors.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { loadKeyring, type Keyring } from '../../functions/core/pgp.ts';
import type { CopyTask } from '../../functions/core/planner.ts';
import {
  keys,
  type Backend,
  type ByteRange,
  type ByteStream,
  type Catalog,
  type ObjectBody,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type SyncRun,
} from '../../functions/core/ports.ts';
import type { ProductsDocument } from '../../functions/core/simplestreams.ts';
import { createApp } from '../../functions/http/app.ts';
import { SIGNED_INDEX_PATH, generateSigningKey, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { replaceFiles, selectedPaths, withNewVersion } from '../support/mirror.ts';
import { WrappedObjectStore } from '../support/wrapped-store.ts';

const FIRST = 'Thu, 24 Jul 2025 08:01:49 +0000';
const SECOND = 'Fri, 25 Jul 2025 08:01:49 +0000';
const NEW_VERSION = '20991231';
const T0 = Date.parse('2025-07-25T09:00:00.000Z');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

let key: SigningKey;
let keyring: Keyring;
let products: ProductsDocument[];
let nextProducts: ProductsDocument[];
let firstTree: Map<string, Uint8Array>;
let secondTree: Map<string, Uint8Array>;
/** What the upstream serves right now; tests replace its contents. */
let live: Map<string, Uint8Array>;
let upstream: ServedTree;

let dataDir: string;
let backend: Backend;

beforeAll(async () => {
  key = await generateSigningKey('engine test upstream');
  keyring = await loadKeyring('engine test keyring', key.publicKeyring);
  products = loadFixtureProducts();
  nextProducts = withNewVersion(products, NEW_VERSION);
  firstTree = await synthesizeTree(products, { key, updated: FIRST });
  secondTree = await synthesizeTree(nextProducts, { key, updated: SECOND });
  live = new Map(firstTree);
  upstream = await serveTree(live);
});

afterAll(async () => {
  await upstream.close();
});

beforeEach(async () => {
  replaceFiles(live, firstTree);
  dataDir = await mkdtemp(join(tmpdir(), 'skystreams-engine-'));
  backend = openEmbeddedBackend(dataDir);
});

afterEach(async () => {
  await backend.close();
  await rm(dataDir, { recursive: true, force: true });
});

interface EngineOptions {
  now?: () => Date;
  settings?: Partial<SyncSettings>;
  events?: SyncEvent[];
  objects?: ObjectStore;
  catalog?: Catalog;
}

/** An engine over the test backend and the live upstream, selecting amd64, newest version only. */
function engineFor(options: EngineOptions = {}): SyncEngine {
  return new SyncEngine(
    {
      upstream: new HttpUpstream(upstream.baseUrl),
      objects: options.objects ?? backend.objects,
      catalog: options.catalog ?? backend.catalog,
      now: options.now,
      onEvent: (event) => options.events?.push(event),
      sleep: async () => {},
    },
    { ...defaultSettings, keyring, selection: { filters: [parseFilter('arch=amd64')], max: 1 }, ...options.settings },
  );
}

const at = (ms: number) => () => new Date(ms);
const amd64Newest = (docs: ProductsDocument[]) => selectedPaths(docs, 'amd64', 1);
const metadataFiles = (tree: Map<string, Uint8Array>) => [...tree.keys()].filter((path) => path.startsWith('streams/')).sort();

async function readAll(body: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function storedBytes(key: string): Promise<Buffer> {
  return readAll((await backend.objects.get(key)).body);
}

/** What Step Functions reads at `copyKey` to fan the copies out. */
async function copyTasksOf(planned: PlanOutcome): Promise<CopyTask[]> {
  if (planned.outcome !== 'planned') throw new Error(`expected a planned run, got ${planned.outcome}`);
  return JSON.parse((await storedBytes(planned.copyKey)).toString('utf8')) as CopyTask[];
}

/** plan → copy (each task read from the store) → publish → prune, each as its own call, as the state machine makes them. */
async function runPhases(engine: SyncEngine, runId: string): Promise<void> {
  const planned = await engine.plan(runId);
  for (const task of await copyTasksOf(planned)) await engine.copy(runId, task);
  await engine.publish(runId);
  await engine.prune(runId);
}

async function keysUnder(prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const object of backend.objects.list(prefix)) found.push(object.key);
  return found;
}

/** Item paths (not metadata) the upstream was asked for since `mark`. */
function itemRequestsSince(mark: number): string[] {
  return upstream.requests
    .slice(mark)
    .map((request) => request.path)
    .filter((path) => !path.startsWith('streams/'));
}

/** Takes the sync lock for `runId`, as `plan` would, so a phase can be called on its own. */
async function holdLock(runId: string, now: Date): Promise<void> {
  await backend.catalog.acquireLock(SYNC_LOCK, runId, defaultSettings.lockTtlMs, now);
}

/** Whether another owner could take the sync lock now (tests that ask use the real clock). */
async function lockIsFree(): Promise<boolean> {
  const held = await backend.catalog.getLock(SYNC_LOCK);
  return held === undefined || Date.parse(held.expiresAt) <= Date.now();
}

async function servedIndex(): Promise<Buffer> {
  const response = await createApp(backend)(new Request(`http://mirror.test/${SIGNED_INDEX_PATH}`));
  expect(response.status).toBe(200);
  return Buffer.from(await response.arrayBuffer());
}

/** The real store, except that the first put under `prefix` waits until `resume()`: a Lambda stalled mid-phase. */
class StallingObjectStore extends WrappedObjectStore {
  readonly stalled: Promise<void>;
  private reachedStall!: () => void;
  private release!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));
  private hasStalled = false;

  private readonly prefix: string;
  constructor(
    inner: ObjectStore,
    prefix: string,
  ) {
    super(inner);
    this.prefix = prefix;
    this.stalled = new Promise<void>((resolve) => (this.reachedStall = resolve));
  }

  resume(): void {
    this.release();
  }

  override async put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    if (!this.hasStalled && key.startsWith(this.prefix)) {
      this.hasStalled = true;
      this.reachedStall();
      await this.gate;
    }
    return this.inner.put(key, body, options);
  }
}

describe('Class: SyncEngine', () => {
  describe('Method: plan', () => {
    it('stages the verified metadata as the next generation and writes the copy tasks at copyKey', async () => {
      // Prepare
      const events: SyncEvent[] = [];
      const engine = engineFor({ events });
      const wanted = amd64Newest(products);

      // Act
      const planned = await engine.plan('run-a');

      // Assess
      const tasks = await copyTasksOf(planned);
      expect(planned).toMatchObject({ runId: 'run-a', outcome: 'planned', generation: 1, copyItems: wanted.length, copyKey: keys.runFile('run-a', 'copy.json') });
      expect(tasks.map((task) => task.path).sort()).toEqual(wanted);
      for (const task of tasks) {
        expect(task.size, task.path).toBe(firstTree.get(task.path)!.length);
        expect(task.sha256).toMatch(/^[0-9a-f]{64}$/);
      }
      expect(planned.outcome === 'planned' && planned.copyBytes).toBe(tasks.reduce((sum, task) => sum + task.size, 0));
      for (const file of metadataFiles(firstTree)) {
        expect((await storedBytes(keys.metadata({ generation: 1, runId: 'run-a' }, file))).equals(firstTree.get(file)!), file).toBe(true);
      }
      expect(await backend.catalog.getCurrent()).toBeUndefined();
      expect(await backend.catalog.getRun('run-a')).toMatchObject({ state: 'running', generation: 1, itemsPresent: 0 });
      expect(await lockIsFree()).toBe(false);
      expect(events).toEqual([expect.objectContaining({ type: 'planned', runId: 'run-a', generation: 1, copyItems: wanted.length, presentItems: 0 })]);
    });

    it('answers locked and records nothing while another run holds the lock', async () => {
      // Prepare
      const settings = { lockTtlMs: 10 * MINUTE };
      await engineFor({ now: at(T0), settings }).plan('run-a');
      const metadataBefore = await keysUnder('meta/');
      const events: SyncEvent[] = [];

      // Act
      const second = await engineFor({ now: at(T0 + MINUTE), settings, events }).plan('run-b');

      // Assess
      expect(second).toEqual({ runId: 'run-b', outcome: 'locked', holder: 'run-a', expiresAt: new Date(T0 + 10 * MINUTE).toISOString() });
      expect(await backend.catalog.getRun('run-b')).toBeUndefined();
      expect((await backend.catalog.listRuns(10)).map((run) => run.id)).toEqual(['run-a']);
      expect(await keysUnder('runs/run-b/')).toEqual([]);
      expect(await keysUnder('meta/')).toEqual(metadataBefore);
      expect(events).toEqual([{ type: 'locked', runId: 'run-b', holder: 'run-a', expiresAt: new Date(T0 + 10 * MINUTE).toISOString() }]);
    });

    it.each([
      ['fail', (engine: SyncEngine) => engine.fail('run-a', new Error('state machine aborted'))],
      ['prune', (engine: SyncEngine) => engine.prune('run-a').then(() => {})],
    ])('plans once %s released the lock', async (_phase, release) => {
      // Prepare
      const engine = engineFor();
      await engine.plan('run-a');
      await release(engine);

      // Act
      const planned = await engine.plan('run-b');

      // Assess
      expect(planned).toMatchObject({ outcome: 'planned', runId: 'run-b' });
    });

    it('takes over a lease that has expired, and the run that lost it can no longer copy', async () => {
      // Prepare
      const settings = { lockTtlMs: 10 * MINUTE };
      const stale = engineFor({ now: at(T0), settings });
      const staleTask = (await copyTasksOf(await stale.plan('run-a')))[0]!;

      // Act
      const planned = await engineFor({ now: at(T0 + 10 * MINUTE + 1), settings }).plan('run-b');

      // Assess
      expect(planned).toMatchObject({ outcome: 'planned', runId: 'run-b' });
      await expect(stale.copy('run-a', staleTask)).rejects.toThrow(LeaseLostError);
      expect(await backend.catalog.getObject(staleTask.path)).toBeUndefined();
    });

    it('answers unchanged after one conditional request when the index has not changed since the last publication', async () => {
      // Prepare
      await engineFor().run('run-1');
      const mark = upstream.requests.length;

      // Act
      const planned = await engineFor().plan('run-2');

      // Assess
      expect(planned).toEqual({ runId: 'run-2', outcome: 'unchanged' });
      expect(upstream.requests.slice(mark).map((request) => request.status)).toEqual([304]);
      expect(await backend.catalog.getRun('run-2')).toMatchObject({ state: 'unchanged' });
      expect(await lockIsFree()).toBe(true);
    });

    // A plan that stalls past its lease (right before its first metadata
    // write here) resumes after another run took the lock and published: it
    // must change nothing the new publication serves.
    it('never overwrites a published generation when a plan that lost its lease resumes', async () => {
      // Prepare
      const settings = { lockTtlMs: 10 * MINUTE };
      const stalling = new StallingObjectStore(backend.objects, 'meta/');
      const stalePlan = engineFor({ now: at(T0), settings, objects: stalling }).plan('run-stale');
      await stalling.stalled;
      replaceFiles(live, secondTree);
      const takeover = await engineFor({ now: at(T0 + 10 * MINUTE + 1), settings }).run('run-takeover');
      expect(takeover).toMatchObject({ state: 'succeeded', generation: 2 });

      // Act
      stalling.resume();
      const staleOutcome = stalePlan.catch((error: unknown) => error);

      // Assess
      expect(await staleOutcome).toBeInstanceOf(LeaseLostError);
      expect((await servedIndex()).equals(secondTree.get(SIGNED_INDEX_PATH)!)).toBe(true);
    });
  });

  describe('Method: copy', () => {
    it('stores the verified bytes, records them, and skips a task already stored', async () => {
      // Prepare
      const engine = engineFor();
      const [task] = await copyTasksOf(await engine.plan('run-a'));
      await engine.copy('run-a', task!);
      const mark = upstream.requests.length;

      // Act
      const again = await engine.copy('run-a', task!);

      // Assess
      expect((await storedBytes(keys.item(task!.path))).equals(firstTree.get(task!.path)!)).toBe(true);
      expect(await backend.catalog.getObject(task!.path)).toMatchObject({ path: task!.path, size: task!.size, sha256: task!.sha256, digests: { sha256: task!.sha256 } });
      expect(again).toEqual({ path: task!.path, size: task!.size, skipped: true });
      expect(upstream.requests.length).toBe(mark);
    });

    it('makes nothing visible when the upstream item is truncated', async () => {
      // Prepare
      const engine = engineFor();
      const [task] = await copyTasksOf(await engine.plan('run-a'));
      live.set(task!.path, firstTree.get(task!.path)!.subarray(0, task!.size - 1));

      // Act
      const attempt = engine.copy('run-a', task!);

      // Assess
      await expect(attempt).rejects.toThrow(IntegrityError);
      await expect(attempt).rejects.toThrow(task!.path);
      expect(await backend.objects.head(keys.item(task!.path))).toBeUndefined();
      expect(await backend.catalog.getObject(task!.path)).toBeUndefined();
    });
  });

  describe('Method: copy, when the store refuses before reading', () => {
    it('fails with the store\'s error and closes the download it never read', async () => {
      // Prepare: the key is taken between the engine's check and its put, as by a concurrent writer.
      let taken: string | undefined;
      class TakenMeanwhile extends WrappedObjectStore {
        override async put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
          if (key === taken) await this.inner.put(key, new TextEncoder().encode('someone else'), {});
          return this.inner.put(key, body, options);
        }
      }
      const engine = engineFor({ objects: new TakenMeanwhile(backend.objects) });
      const [task] = await copyTasksOf(await engine.plan('run-a'));
      taken = keys.item(task!.path);
      // Endless, so only a closed connection can end the exchange.
      upstream.faults.set(task!.path, { kind: 'endless', chunkBytes: 64 * 1024, intervalMs: 1 });

      try {
        // Act
        const attempt = engine.copy('run-a', task!);

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(ObjectExistsError);
        const request = upstream.requestsFor(task!.path).at(-1);
        await request!.over;
        expect(request!.cutShort).toBe(true);
        expect(await backend.catalog.getObject(task!.path)).toBeUndefined();
      } finally {
        upstream.faults.delete(task!.path);
      }
    });
  });

  describe('Phases as Step Functions calls them', () => {
    it('plans, copies each task read from copyKey, publishes and prunes', async () => {
      // Prepare
      const engine = engineFor();
      const wanted = amd64Newest(products);

      // Act
      await runPhases(engine, 'run-a');

      // Assess
      const current = await backend.catalog.getCurrent();
      expect(current).toMatchObject({ generation: 1, upstreamUpdated: FIRST, runId: 'run-a', files: metadataFiles(firstTree) });
      for (const path of wanted) {
        expect((await storedBytes(keys.item(path))).equals(firstTree.get(path)!), path).toBe(true);
      }
      expect((await servedIndex()).equals(firstTree.get(SIGNED_INDEX_PATH)!)).toBe(true);
      expect(await backend.catalog.getRun('run-a')).toMatchObject({ state: 'succeeded', generation: 1, itemsCopied: wanted.length });
      expect(await keysUnder('runs/')).toEqual([]);
      expect(await lockIsFree()).toBe(true);
      expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
    });
  });

  describe('An interrupted run', () => {
    it('leaves the current publication serving and nothing half-visible; the next run copies only what is missing', async () => {
      // Prepare: a published first generation, then an upstream update with one truncated item.
      await engineFor().run('run-1');
      const published = await backend.catalog.getCurrent();
      replaceFiles(live, secondTree);
      const engine = engineFor();
      const tasks = await copyTasksOf(await engine.plan('run-2'));
      const half = Math.floor(tasks.length / 2);
      const copied = tasks.slice(0, half);
      const broken = tasks[half]!;
      live.set(broken.path, secondTree.get(broken.path)!.subarray(0, Math.floor(broken.size / 2)));

      // Act: copy half, then the broken item fails and the state machine calls fail.
      for (const task of copied) await engine.copy('run-2', task);
      const failure = await engine.copy('run-2', broken).catch((error: unknown) => error);
      await engine.fail('run-2', failure);

      // Assess
      expect(failure).toBeInstanceOf(IntegrityError);
      expect(await backend.catalog.getCurrent()).toEqual(published);
      expect((await servedIndex()).equals(firstTree.get(SIGNED_INDEX_PATH)!)).toBe(true);
      expect(await backend.objects.head(keys.item(broken.path))).toBeUndefined();
      expect(await backend.catalog.getObject(broken.path)).toBeUndefined();
      expect(await backend.catalog.getRun('run-2')).toMatchObject({ state: 'failed', error: (failure as Error).message });
      expect(await lockIsFree()).toBe(true);

      // Act: upstream fixed, a whole run.
      live.set(broken.path, secondTree.get(broken.path)!);
      const mark = upstream.requests.length;
      const events: SyncEvent[] = [];
      const run = await engineFor({ events }).run('run-3');

      // Assess
      const missing = tasks.slice(half).map((task) => task.path);
      expect(run).toMatchObject({ state: 'succeeded', generation: 3, itemsCopied: missing.length, itemsPresent: copied.length });
      expect(itemRequestsSince(mark).sort()).toEqual([...missing].sort());
      expect(events.filter((event) => event.type === 'item-stored').map((event) => event.type === 'item-stored' && event.path).sort()).toEqual([...missing].sort());
      expect(await backend.catalog.getCurrent()).toMatchObject({ generation: 3, upstreamUpdated: SECOND });
      expect((await servedIndex()).equals(secondTree.get(SIGNED_INDEX_PATH)!)).toBe(true);
      expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
    });

    it('makes run() record the failure, release the lock and reject, keeping the current publication', async () => {
      // Prepare
      await engineFor().run('run-1');
      const published = await backend.catalog.getCurrent();
      replaceFiles(live, secondTree);
      const broken = amd64Newest(nextProducts).find((path) => path.includes(NEW_VERSION))!;
      live.set(broken, secondTree.get(broken)!.subarray(1));

      // Act
      const attempt = engineFor().run('run-2');

      // Assess
      await expect(attempt).rejects.toThrow(IntegrityError);
      expect(await backend.catalog.getRun('run-2')).toMatchObject({ state: 'failed', error: expect.stringContaining(broken) });
      expect(await backend.catalog.getCurrent()).toEqual(published);
      expect(await backend.objects.head(keys.item(broken))).toBeUndefined();
      expect(await lockIsFree()).toBe(true);
    });
  });

  describe('Method: publish', () => {
    async function planAndCopyAll(engine: SyncEngine, runId: string): Promise<CopyTask[]> {
      const tasks = await copyTasksOf(await engine.plan(runId));
      for (const task of tasks) await engine.copy(runId, task);
      return tasks;
    }

    it('refuses with IntegrityError when an object is missing from the catalog', async () => {
      // Prepare
      const engine = engineFor();
      const [lost] = await planAndCopyAll(engine, 'run-a');
      await backend.catalog.forgetObject(lost!.path);

      // Act
      const attempt = engine.publish('run-a');

      // Assess
      await expect(attempt).rejects.toThrow(IntegrityError);
      await expect(attempt).rejects.toThrow(lost!.path);
      expect(await backend.catalog.getCurrent()).toBeUndefined();
    });

    it('refuses with IntegrityError when the catalog records another digest', async () => {
      // Prepare
      const engine = engineFor();
      const tasks = await planAndCopyAll(engine, 'run-a');
      const tampered = tasks[tasks.length - 1]!;
      const stored = (await backend.catalog.getObject(tampered.path))!;
      await backend.catalog.recordObject({ ...stored, sha256: '0'.repeat(64), digests: { sha256: '0'.repeat(64) } });

      // Act
      const attempt = engine.publish('run-a');

      // Assess
      await expect(attempt).rejects.toThrow(IntegrityError);
      await expect(attempt).rejects.toThrow(tampered.path);
      expect(await backend.catalog.getCurrent()).toBeUndefined();
    });

    it('refuses with ConflictError when another generation was published meanwhile', async () => {
      // Prepare
      const engine = engineFor();
      await planAndCopyAll(engine, 'run-a');
      const other = {
        generation: 7,
        upstreamUpdated: FIRST,
        publishedAt: new Date().toISOString(),
        runId: 'another-writer',
        files: [],
        itemCount: 0,
        totalBytes: 0,
      };
      await backend.catalog.publish(other, undefined);

      // Act
      const attempt = engine.publish('run-a');

      // Assess
      await expect(attempt).rejects.toThrow(ConflictError);
      expect(await backend.catalog.getCurrent()).toEqual(other);
    });
  });

  describe('Method: prune', () => {
    it('keeps the replaced generation and its files until the grace period has passed, then deletes them', async () => {
      // Prepare
      let clock = T0;
      const engine = engineFor({ now: () => new Date(clock), settings: { pruneGraceMs: HOUR } });
      await engine.run('run-1');
      replaceFiles(live, secondTree);
      clock = T0 + MINUTE;
      await engine.run('run-2');
      const oldOnly = amd64Newest(products).filter((path) => !amd64Newest(nextProducts).includes(path));
      expect(oldOnly.length).toBeGreaterThan(0);

      // Act
      clock = T0 + MINUTE + HOUR - 1;
      await holdLock('prune-early', new Date(clock));
      const withinGrace = await engine.prune('prune-early');
      clock = T0 + MINUTE + HOUR;
      await holdLock('prune-late', new Date(clock));
      const afterGrace = await engine.prune('prune-late');

      // Assess
      expect(withinGrace).toEqual({ deletedPaths: [], deletedGenerations: [] });
      expect(afterGrace).toEqual({ deletedPaths: oldOnly, deletedGenerations: [1] });
      expect((await backend.catalog.listPublications()).map((publication) => publication.generation)).toEqual([2]);
      expect(await keysUnder(`meta/1-`)).toEqual([]);
      for (const path of oldOnly) {
        expect(await backend.objects.head(keys.item(path)), path).toBeUndefined();
        expect(await backend.catalog.getObject(path), path).toBeUndefined();
      }
      expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
    });

    it('keeps, within the grace period, the replaced generation, its metadata and the files only it lists', async () => {
      // Prepare
      let clock = T0;
      const engine = engineFor({ now: () => new Date(clock), settings: { pruneGraceMs: HOUR } });
      await engine.run('run-1');
      replaceFiles(live, secondTree);
      clock = T0 + MINUTE;

      // Act: run() prunes at its end, within the grace of generation 1.
      await engine.run('run-2');

      // Assess
      expect((await backend.catalog.listPublications()).map((publication) => publication.generation)).toEqual([2, 1]);
      expect(await backend.catalog.getCurrent()).toMatchObject({ generation: 2 });
      for (const file of metadataFiles(firstTree)) {
        expect((await storedBytes(keys.metadata({ generation: 1, runId: 'run-1' }, file))).equals(firstTree.get(file)!), file).toBe(true);
      }
      for (const path of amd64Newest(products)) {
        expect((await storedBytes(keys.item(path))).equals(firstTree.get(path)!), path).toBe(true);
      }
    });

    it('prunes a replaced generation whose grace ran out on a run that finds upstream unchanged', async () => {
      // Prepare
      let clock = T0;
      const engine = engineFor({ now: () => new Date(clock), settings: { pruneGraceMs: HOUR } });
      await engine.run('run-1');
      replaceFiles(live, secondTree);
      clock = T0 + MINUTE;
      await engine.run('run-2');
      clock = T0 + MINUTE + 2 * HOUR;

      // Act
      const run = await engine.run('run-3');

      // Assess
      expect(run.state).toBe('unchanged');
      expect((await backend.catalog.listPublications()).map((publication) => publication.generation)).toEqual([2]);
      expect(await keysUnder('meta/1-')).toEqual([]);
      expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
      expect(await lockIsFree()).toBe(true);
    });

    it('deletes the staged metadata of failed runs and every runs/ file, keeping what is published', async () => {
      // Prepare: a run that died before it could record its failure leaves what it staged.
      const engine = engineFor();
      await engine.run('run-1');
      replaceFiles(live, secondTree);
      await engine.plan('run-2');
      await backend.catalog.releaseLock((await backend.catalog.getLock(SYNC_LOCK))!);
      expect(await keysUnder(`meta/2-`)).not.toEqual([]);
      expect(await keysUnder('runs/run-2/')).not.toEqual([]);

      // Act
      await holdLock('run-3', new Date());
      const result = await engine.prune('run-3');

      // Assess
      expect(result).toEqual({ deletedPaths: [], deletedGenerations: [] });
      expect(await keysUnder(`meta/2-`)).toEqual([]);
      expect(await keysUnder('runs/')).toEqual([]);
      // The published metadata files, and the digests recorded when they were published.
      expect((await keysUnder(`meta/1-`)).length).toBe(metadataFiles(firstTree).length + 1);
      expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
      expect(await lockIsFree()).toBe(true);
    });
  });

  describe('Method: run', () => {
    it('makes run() reject with LockHeldError while another run holds the lock', async () => {
      // Prepare
      await engineFor().plan('run-a');

      // Act
      const attempt = engineFor().run('run-b');

      // Assess
      await expect(attempt).rejects.toThrow(LockHeldError);
      expect(await backend.catalog.getRun('run-b')).toBeUndefined();
    });

    it('rejects with the error that failed the run even when recording the failure fails too', async () => {
      // Prepare: the catalog refuses to record failed runs; the upstream serves a short item.
      const refusingFailures = new Proxy(backend.catalog, {
        get(target, property, receiver) {
          if (property === 'putRun') {
            return async (run: SyncRun) => {
              if (run.state === 'failed') throw new Error('catalog unavailable');
              return target.putRun(run);
            };
          }
          const value: unknown = Reflect.get(target, property, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const victim = amd64Newest(products)[0]!;
      live.set(victim, firstTree.get(victim)!.subarray(0, 10));

      // Act
      const failure = await engineFor({ catalog: refusingFailures }).run('run-1').then(
        () => undefined,
        (error: unknown) => error,
      );

      // Assess
      expect(failure).toBeInstanceOf(IntegrityError);
      expect((failure as Error).message).toContain(victim);
      expect(await backend.catalog.getCurrent()).toBeUndefined();
    });
  });

  describe('Method: check', () => {
    it('reports a change when nothing is published yet', async () => {
      // Act
      const result = await engineFor().check();

      // Assess
      expect(result).toEqual({ changed: true });
    });

    it('reports no change after a publish, asking upstream once and getting 304', async () => {
      // Prepare
      await engineFor().run('run-1');
      const mark = upstream.requests.length;

      // Act
      const result = await engineFor().check();

      // Assess
      expect(result).toEqual({ changed: false });
      expect(upstream.requests.slice(mark)).toEqual([{ method: 'GET', path: SIGNED_INDEX_PATH, status: 304 }]);
    });

    it('reports a change once the upstream index changes', async () => {
      // Prepare
      await engineFor().run('run-1');
      replaceFiles(live, secondTree);

      // Act
      const result = await engineFor().check();

      // Assess
      expect(result).toEqual({ changed: true });
      expect(await backend.catalog.getCurrent()).toMatchObject({ generation: 1 });
    });
  });
});
