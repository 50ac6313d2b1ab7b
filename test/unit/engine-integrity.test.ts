/**
 * The engine's integrity rules under faults, in process on the embedded
 * backend: published bytes never change, leases fence every write and are
 * renewed while a long copy streams, dead holders are evicted at once, and a
 * store found bad by verify is healed by the next run.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { auditPublication } from '../../functions/core/audit.ts';
import { SYNC_LOCK, SyncEngine, requestRepair, type SyncSettings } from '../../functions/core/engine.ts';
import { defaultEngineSettings as defaultSettings } from '../../functions/core/settings.ts';
import { IntegrityError, LeaseLostError, LockHeldError, PublishedContentError } from '../../functions/core/errors.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { loadKeyring, type Keyring } from '../../functions/core/pgp.ts';
import { keys, type Backend, type LockHolder, type Upstream } from '../../functions/core/ports.ts';
import type { ProductsDocument } from '../../functions/core/simplestreams.ts';
import { generateSigningKey, productsIn, synthesizeTree, writeMetadata, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { isAliveOnThisHost, processStatus, thisProcess } from '../../functions/adapters/process-holder.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { eventually } from '../support/eventually.ts';
import { replaceFiles, selectedPaths } from '../support/mirror.ts';

const FIRST = 'Thu, 24 Jul 2025 08:01:49 +0000';
const SECOND = 'Fri, 25 Jul 2025 08:01:49 +0000';

let key: SigningKey;
let keyring: Keyring;
let products: ProductsDocument[];
let firstTree: Map<string, Uint8Array>;
let live: Map<string, Uint8Array>;
let upstream: ServedTree;
let dataDir: string;
let backend: Backend;

beforeAll(async () => {
  key = await generateSigningKey('integrity test upstream');
  keyring = await loadKeyring('integrity test keyring', key.publicKeyring);
  products = loadFixtureProducts();
  firstTree = await synthesizeTree(products, { key, updated: FIRST });
  live = new Map(firstTree);
  upstream = await serveTree(live);
});

afterAll(async () => {
  await upstream.close();
});

beforeEach(async () => {
  replaceFiles(live, firstTree);
  dataDir = await mkdtemp(join(tmpdir(), 'skystreams-integrity-'));
  backend = openEmbeddedBackend(dataDir);
});

afterEach(async () => {
  await backend.close();
  await rm(dataDir, { recursive: true, force: true });
});

interface EngineOptions {
  settings?: Partial<SyncSettings>;
  upstream?: Upstream;
  holder?: LockHolder;
  isAlive?: (holder: LockHolder) => boolean | undefined;
  now?: () => Date;
}

function engineFor(options: EngineOptions = {}): SyncEngine {
  return new SyncEngine(
    {
      upstream: options.upstream ?? new HttpUpstream(upstream.baseUrl),
      objects: backend.objects,
      catalog: backend.catalog,
      sleep: async () => {},
      holder: options.holder,
      isAlive: options.isAlive,
      now: options.now,
    },
    { ...defaultSettings, keyring, selection: { filters: [parseFilter('arch=amd64')], max: 1 }, ...options.settings },
  );
}

const selected = () => selectedPaths(products, 'amd64', 1);

/** Polls `condition` every 10 ms for up to 5 s. */
async function waitFor(condition: () => boolean): Promise<void> {
  for (let attempt = 0; attempt < 500 && !condition(); attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

async function servedBytes(path: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of (await backend.objects.get(keys.item(path))).body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** The published tree as bytes, item by item: what must not change while a later run fails. */
async function snapshot(paths: readonly string[]): Promise<Map<string, Buffer>> {
  return new Map(await Promise.all(paths.map(async (path) => [path, await servedBytes(path)] as const)));
}

function itemRequests(since: number): string[] {
  return upstream.requests.slice(since).map((request) => request.path).filter((path) => !path.startsWith('streams/'));
}

/** A tree whose metadata promises, for every selected item, bytes of its own seed: same paths, other content. */
async function republishedTree(seed: string, updated = SECOND): Promise<Map<string, Uint8Array>> {
  return synthesizeTree(products, { key, updated, contentSeed: seed });
}

describe('Class: SyncEngine — published bytes never change', () => {
  it('R-engine-republished-bytes: refuses, before fetching any item, an upstream that promises other bytes at published paths', async () => {
    // Prepare
    await engineFor().run('run-1');
    const before = await snapshot(selected());
    const tree = await republishedTree('republished');
    const corrupt = selected()[0]!;
    tree.set(corrupt, Buffer.from('not what the metadata says'));
    replaceFiles(live, tree);
    const mark = upstream.requests.length;

    // Act
    const failure = await engineFor().run('run-2').catch((error: unknown) => error);

    // Assess
    expect(failure).toBeInstanceOf(PublishedContentError);
    expect((failure as PublishedContentError).paths.length).toBe(selected().length);
    expect((failure as Error).message).toContain(corrupt);
    expect(itemRequests(mark)).toEqual([]);
    expect(await snapshot(selected())).toEqual(before);
    expect((await backend.catalog.getCurrent())?.runId).toBe('run-1');
    expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
    expect(await backend.catalog.getRun('run-2')).toMatchObject({ state: 'failed' });
    expect(await backend.catalog.getLock(SYNC_LOCK)).toBeUndefined();
  });

  it('R-sha256-checked: refuses an item whose sha512 is right and whose declared sha256 is wrong', async () => {
    // Prepare: sign metadata that declares both digests, the sha256 of other bytes.
    const docs = productsIn(firstTree);
    const victim = selected()[0]!;
    for (const doc of docs) {
      for (const product of Object.values(doc.products)) {
        for (const version of Object.values(product.versions)) {
          for (const item of Object.values(version.items)) {
            if (item.path !== victim) continue;
            const { createHash } = await import('node:crypto');
            item.sha512 = createHash('sha512').update(firstTree.get(victim)!).digest('hex');
            item.sha256 = createHash('sha256').update('other bytes').digest('hex');
          }
        }
      }
    }
    const tree = new Map(firstTree);
    await writeMetadata(tree, docs, { key, updated: FIRST });
    replaceFiles(live, tree);

    // Act
    const failure = await engineFor().run('run-1').catch((error: unknown) => error);

    // Assess
    expect(failure).toBeInstanceOf(IntegrityError);
    expect((failure as Error).message).toContain(`${victim}: sha256 is`);
    expect(await backend.catalog.getCurrent()).toBeUndefined();
    expect(await backend.objects.head(keys.item(victim))).toBeUndefined();
    expect(await backend.catalog.getObject(victim)).toBeUndefined();
  });

  it('R-verify-heal: forgets bytes verify found bad, and the next run restores exactly the promised bytes', async () => {
    // Prepare
    await engineFor().run('run-1');
    const victim = selected()[1]!;
    await writeFile(join(dataDir, 'objects', 'items', ...victim.split('/')), 'rotted on disk');
    const audit = await auditPublication(backend.objects, backend.catalog);
    expect(audit.problems.map((problem) => problem.path)).toEqual([victim]);

    // Act
    await requestRepair(backend.catalog, audit.problems.map((problem) => problem.path));
    const mark = upstream.requests.length;
    const healed = await engineFor().run('run-2');

    // Assess
    expect(healed).toMatchObject({ state: 'succeeded', itemsCopied: 1 });
    expect(itemRequests(mark)).toEqual([victim]);
    expect((await servedBytes(victim)).equals(Buffer.from(firstTree.get(victim)!))).toBe(true);
    expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
    expect(await engineFor().plan('run-3')).toEqual({ runId: 'run-3', outcome: 'unchanged' });
  });

  it('R-stray-bytes: replaces bytes a dead run left under an unpublished path with the verified ones', async () => {
    // Prepare: bytes under an item key that no catalog record vouches for.
    const stray = selected()[2]!;
    await backend.objects.put(keys.item(stray), Buffer.from('left by a run that died before recording'));

    // Act
    const run = await engineFor().run('run-1');

    // Assess
    expect(run.state).toBe('succeeded');
    expect((await servedBytes(stray)).equals(Buffer.from(firstTree.get(stray)!))).toBe(true);
    expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
  });

  it('R-stray-right-bytes: keeps, without a download, the right bytes a run stored but died before recording', async () => {
    // Prepare: the promised bytes under an item key, with no catalog record.
    const stray = selected()[3]!;
    await backend.objects.put(keys.item(stray), firstTree.get(stray)!);
    const before = (await backend.objects.head(keys.item(stray)))!;
    const mark = upstream.requests.length;

    // Act
    const run = await engineFor().run('run-1');

    // Assess
    expect(run.state).toBe('succeeded');
    expect(itemRequests(mark)).not.toContain(stray);
    expect(await backend.objects.head(keys.item(stray))).toMatchObject({ etag: before.etag });
    expect(await backend.catalog.getObject(stray)).toMatchObject({ path: stray, size: before.size });
    expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
  });
});

describe('Class: SyncEngine — leases', () => {
  it('R-dead-holder: takes the lock at once from a run whose process is gone, and records that run abandoned', async () => {
    // Prepare: a run planned by a process that then died (its lease has 5 minutes left).
    const dead: LockHolder = { host: 'this-host', pid: 999_999 };
    await engineFor({ holder: dead }).plan('run-dead');
    const probe = (holder: LockHolder) => (holder.pid === dead.pid ? false : true);

    // Act
    const run = await engineFor({ holder: { host: 'this-host', pid: 1 }, isAlive: probe }).run('run-next');

    // Assess
    expect(run.state).toBe('succeeded');
    expect(await backend.catalog.getRun('run-dead')).toMatchObject({ state: 'abandoned', error: 'abandoned: its process is gone' });
    expect(await backend.catalog.getPublication(1)).toBeUndefined();
    const staged: string[] = [];
    for await (const object of backend.objects.list('meta/')) staged.push(object.key);
    expect(staged.every((stagedKey) => stagedKey.includes('run-next'))).toBe(true);
  });

  it('R-zombie-holder: takes the lock at once from a holder whose process is a zombie nobody reaps', async () => {
    // Prepare: a forked child exits while its parent sleeps without waiting for it: a zombie, as a SIGKILLed run is in a container without init.
    const parent = spawn('perl', ['-MPOSIX', '-e', 'my $child = fork() // die; if ($child == 0) { POSIX::_exit(0) } $| = 1; print "$child\\n"; sleep 30'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const zombiePid = Number((await once(parent.stdout!, 'data'))[0].toString().trim());
      await waitFor(() => processStatus(zombiePid)?.state === 'Z');
      const zombie: LockHolder = { host: hostname(), pid: zombiePid, startTime: processStatus(zombiePid)!.startTime };
      await engineFor({ holder: zombie }).plan('run-killed');

      // Act
      const run = await engineFor({ holder: thisProcess(), isAlive: isAliveOnThisHost }).run('run-next');

      // Assess
      expect(run.state).toBe('succeeded');
      expect(await backend.catalog.getRun('run-killed')).toMatchObject({ state: 'abandoned', error: 'abandoned: its process is gone' });
      expect(await backend.catalog.getRun('run-next')).toMatchObject({ holder: thisProcess() });
      expect(await backend.catalog.acquireLock(SYNC_LOCK, 'probe', 60_000, new Date())).toMatchObject({ owner: 'probe', epoch: 3 });
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('R-reused-pid-holder: takes the lock from a holder whose pid now names another process, and leaves it to the one recorded', async () => {
    // Prepare: a live process stands for one that got the dead holder's pid after a restart.
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await waitFor(() => processStatus(other.pid!) !== undefined);
      const started = processStatus(other.pid!)!.startTime;
      await engineFor({ holder: { host: hostname(), pid: other.pid!, startTime: started } }).plan('run-live');
      const live = await engineFor({ holder: thisProcess(), isAlive: isAliveOnThisHost }).plan('run-refused');
      await backend.catalog.putRun({ ...(await backend.catalog.getRun('run-live'))!, holder: { host: hostname(), pid: other.pid!, startTime: started - 1 } });

      // Act
      const run = await engineFor({ holder: thisProcess(), isAlive: isAliveOnThisHost }).run('run-next');

      // Assess
      expect(live).toMatchObject({ outcome: 'locked', holder: 'run-live' });
      expect(run.state).toBe('succeeded');
      expect(await backend.catalog.getRun('run-live')).toMatchObject({ state: 'abandoned', error: 'abandoned: its process is gone' });
      expect(await backend.catalog.acquireLock(SYNC_LOCK, 'probe', 60_000, new Date())).toMatchObject({ owner: 'probe', epoch: 3 });
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('R-live-holder: leaves the lock to a holder that still lives, or whose liveness it cannot tell', async () => {
    // Prepare
    await engineFor({ holder: { host: 'other-host', pid: 1 } }).plan('run-a');

    // Act
    const alive = await engineFor({ isAlive: () => true }).plan('run-b');
    const unknown = await engineFor({ isAlive: () => undefined }).plan('run-c');

    // Assess
    expect(alive).toMatchObject({ outcome: 'locked', holder: 'run-a' });
    expect(unknown).toMatchObject({ outcome: 'locked', holder: 'run-a' });
    expect(await backend.catalog.getRun('run-a')).toMatchObject({ state: 'running' });
  });

  it('R-lease-renewed-while-copying: keeps the lock through a copy longer than the lease', async () => {
    // Prepare: an upstream that sends one item a chunk at a time, when told; a 300 ms lease on a clock the test moves.
    const slowPath = selected()[0]!;
    const slow = await steppedUpstream(live, slowPath, 8);
    const ttlMs = 300;
    let clock = Date.parse('2025-07-25T09:00:00.000Z');
    const now = () => new Date(clock);
    const copying = engineFor({ upstream: new HttpUpstream(slow.baseUrl), settings: { lockTtlMs: ttlMs }, now }).run('run-slow');
    await slow.requested;

    // Act: two whole leases go by while the item streams, a third of a lease per chunk.
    for (let step = 0; step < 6; step++) {
      clock += ttlMs / 3;
      slow.sendChunk();
      await eventually(async () => expect(Date.parse((await backend.catalog.getLock(SYNC_LOCK))!.expiresAt)).toBe(clock + ttlMs));
    }
    const intruder = await engineFor({ settings: { lockTtlMs: ttlMs }, now }).plan('run-intruder');
    slow.sendRest();
    const finished = await copying;

    // Assess
    expect(intruder).toMatchObject({ outcome: 'locked', holder: 'run-slow' });
    expect(finished.state).toBe('succeeded');
    expect((await servedBytes(slowPath)).equals(Buffer.from(firstTree.get(slowPath)!))).toBe(true);
    await slow.close();
  });

  it('R-lapsed-lease-fenced: a run whose lease lapsed and was taken over can record nothing', async () => {
    // Prepare
    let clock = Date.parse('2025-07-25T09:00:00.000Z');
    const stale = engineFor({ now: () => new Date(clock) });
    await stale.plan('run-stale');
    const chunks: Uint8Array[] = [];
    for await (const chunk of (await backend.objects.get(keys.runFile('run-stale', 'copy.json'))).body) chunks.push(chunk);
    const [task] = JSON.parse(Buffer.concat(chunks).toString('utf8')) as [{ path: string; size: number; sha256: string }];
    clock += defaultSettings.lockTtlMs + 1;
    const takeover = await engineFor({ now: () => new Date(clock) }).run('run-takeover');

    // Act
    const copy = await stale.copy('run-stale', task).catch((error: unknown) => error);
    const publish = await stale.publish('run-stale').catch((error: unknown) => error);
    await stale.fail('run-stale', new Error('late'));

    // Assess
    expect(takeover.state).toBe('succeeded');
    expect(copy).toBeInstanceOf(LeaseLostError);
    expect(publish).toBeInstanceOf(LeaseLostError);
    expect((await backend.catalog.getCurrent())?.runId).toBe('run-takeover');
    expect(await backend.catalog.getRun('run-stale')).toMatchObject({ state: 'abandoned' });
    expect((await auditPublication(backend.objects, backend.catalog)).problems).toEqual([]);
  });

  it('R-held-lock: refuses a second run while the first holds an unexpired lease (LockHeldError from run())', async () => {
    // Prepare
    await engineFor().plan('run-a');

    // Act
    const second = await engineFor().run('run-b').catch((error: unknown) => error);

    // Assess
    expect(second).toBeInstanceOf(LockHeldError);
    expect(await backend.catalog.getRun('run-b')).toBeUndefined();
  });
});

/** Serves `files`; `slowPath` in `chunks` parts, the first at once and each next one when the test sends it. */
async function steppedUpstream(
  files: Map<string, Uint8Array>,
  slowPath: string,
  chunks: number,
): Promise<{ baseUrl: string; requested: Promise<void>; sendChunk(): void; sendRest(): void; close(): Promise<void> }> {
  const bytes = files.get(slowPath)!;
  const size = Math.ceil(bytes.length / chunks);
  let sent = 0;
  let slowResponse: ServerResponse | undefined;
  let markRequested!: () => void;
  const requested = new Promise<void>((resolve) => (markRequested = resolve));
  const send = (upTo: number) => {
    slowResponse!.write(bytes.subarray(sent, upTo));
    sent = upTo;
    if (sent >= bytes.length) slowResponse!.end();
  };
  const server: Server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://upstream').pathname.slice(1));
    const body = files.get(path);
    if (!body) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-length': body.length });
    if (path !== slowPath) {
      response.end(body);
      return;
    }
    slowResponse = response;
    send(size);
    markRequested();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/`,
    requested,
    sendChunk: () => send(Math.min(sent + size, bytes.length - 1)),
    sendRest: () => send(bytes.length),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
