/**
 * The Catalog contract: one suite every backend must pass (SQLite, DynamoDB).
 *
 * Only port methods are used, never SQL or table items. A catalog has one
 * current pointer and one list of publications, so every `open()` must hand
 * out an empty catalog of its own (a fresh file, table or key prefix).
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, LeaseLostError, LockHeldError } from '../../functions/core/errors.ts';
import { DEFAULT_CHANNEL, type Catalog, type CatalogEntry, type Lease, type PackageManifest, type Publication, type StoredObject, type SyncRun } from '../../functions/core/ports.ts';
import { pointedAt, rolledBack } from '../../functions/core/channels.ts';
import { MAX_MIRROR_PATH_BYTES, MAX_SEGMENT_BYTES, mirrorPathProblem } from '../../functions/core/paths.ts';
import { syncDefaults } from '../../functions/core/settings.ts';

export interface OpenedCatalog {
  catalog: Catalog;
  cleanup(): Promise<void>;
}

export interface CatalogContractOptions {
  /** Rows written for the listing-across-pages tests; must exceed the 1,000 a page may hold. @default 1100 */
  manyRows?: number;
}

export function catalogContract(
  name: string,
  open: () => Promise<OpenedCatalog>,
  options: CatalogContractOptions = {},
): void {
  const manyRows = options.manyRows ?? 1100;

  describe(`Catalog contract: ${name}`, () => {
    let opened: OpenedCatalog;
    let catalog: Catalog;

    beforeEach(async () => {
      opened = await open();
      catalog = opened.catalog;
    });

    afterEach(async () => {
      await opened.cleanup();
    });

    describe('Port: ObjectIndex', () => {
      it('records, reads, overwrites and forgets an object', async () => {
        // Prepare
        const original = storedObject('ubuntu/jammy/squashfs', 1);
        const replacement = { ...original, size: 999, sha256: 'f'.repeat(64), digests: { sha256: 'f'.repeat(64), md5: 'e'.repeat(32) } };

        // Act
        const before = await catalog.getObject(original.path);
        await catalog.recordObject(original);
        const afterRecord = await catalog.getObject(original.path);
        await catalog.recordObject(replacement);
        const afterUpsert = await catalog.getObject(original.path);
        await catalog.forgetObject(original.path);
        const afterForget = await catalog.getObject(original.path);

        // Assess
        expect(before).toBeUndefined();
        expect(afterRecord).toEqual(original);
        expect(afterUpsert).toEqual(replacement);
        expect(afterForget).toBeUndefined();
      });

      it('records an object at the longest mirror path (a sort key the longest DynamoDB allows)', async () => {
        // Prepare
        const path = ['a'.repeat(MAX_SEGMENT_BYTES), 'b'.repeat(MAX_SEGMENT_BYTES), 'c'.repeat(MAX_SEGMENT_BYTES), 'd'.repeat(MAX_MIRROR_PATH_BYTES - 3 * (MAX_SEGMENT_BYTES + 1))].join('/');
        const stored = storedObject(path, 7);

        // Act
        await catalog.recordObject(stored);
        const read = await catalog.getObject(path);

        // Assess
        expect(mirrorPathProblem(path)).toBeUndefined();
        expect(read).toEqual(stored);
      });

      it('forgets an unknown object without complaint', async () => {
        // Act
        const attempt = catalog.forgetObject('never/recorded');

        // Assess
        await expect(attempt).resolves.toBeUndefined();
      });

      it(`lists every object across pages (${manyRows} objects)`, async () => {
        // Prepare
        const objects = Array.from({ length: manyRows }, (_, i) => storedObject(`items/${i}/root.tgz`, i));
        await inBatches(objects, 25, (object) => catalog.recordObject(object));
        await catalog.forgetObject(objects[0]?.path ?? '');

        // Act
        const listed: StoredObject[] = [];
        for await (const object of catalog.listObjects()) listed.push(object);

        // Assess
        expect(listed).toHaveLength(manyRows - 1);
        expect(sortBy(listed, (o) => o.path)).toEqual(sortBy(objects.slice(1), (o) => o.path));
      });
    });

    describe('Port: Publications', () => {
      describe('Method: publish', () => {
        it('publishes the first generation, then the next one over it', async () => {
          // Prepare
          const first = publication(1);
          const second = publication(2);

          // Act
          const initially = await catalog.getCurrent();
          await catalog.publish(first, undefined);
          const afterFirst = await catalog.getCurrent();
          await catalog.publish(second, 1);
          const afterSecond = await catalog.getCurrent();

          // Assess
          expect(initially).toBeUndefined();
          expect(afterFirst).toEqual(first);
          expect(afterSecond).toEqual(second);
          expect(await catalog.getPublication(1)).toEqual(first);
          expect(await catalog.getPublication(2)).toEqual(second);
          expect(await catalog.getPublication(3)).toBeUndefined();
        });

        it('lists publications newest generation first', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);
          await catalog.publish(publication(5), 1);
          await catalog.publish(publication(12), 5);

          // Act
          const listed = await catalog.listPublications();

          // Assess
          expect(listed.map((p) => p.generation)).toEqual([12, 5, 1]);
          expect(listed[0]).toEqual(publication(12));
        });

        it('refuses a stale expected generation and leaves the current one', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);
          await catalog.publish(publication(2), 1);

          // Act
          // Settled together: on a networked store the second rejection would otherwise go unhandled.
          const [staleExpected, expectedNone] = await Promise.allSettled([
            catalog.publish(publication(3), 1),
            catalog.publish(publication(4), undefined),
          ]);

          // Assess
          expect(staleExpected).toMatchObject({ status: 'rejected', reason: expect.any(ConflictError) });
          expect(expectedNone).toMatchObject({ status: 'rejected', reason: expect.any(ConflictError) });
          expect(await catalog.getCurrent()).toEqual(publication(2));
          expect(await catalog.getPublication(3)).toBeUndefined();
          expect(await catalog.getPublication(4)).toBeUndefined();
        });

        it('refuses an expected generation when nothing is published yet', async () => {
          // Act
          const attempt = catalog.publish(publication(2), 1);

          // Assess
          await expect(attempt).rejects.toBeInstanceOf(ConflictError);
          expect(await catalog.getCurrent()).toBeUndefined();
          expect(await catalog.listPublications()).toEqual([]);
        });

        it('refuses to reuse a generation', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);
          await catalog.publish(publication(2), 1);
          const reused = { ...publication(1), upstreamUpdated: 'Tue, 02 Jan 2024 00:00:00 +0000' };

          // Act
          const [reuseOld, reuseCurrent] = await Promise.allSettled([
            catalog.publish(reused, 2),
            catalog.publish({ ...publication(2), runId: 'another-run' }, 2),
          ]);

          // Assess
          expect(reuseOld).toMatchObject({ status: 'rejected', reason: expect.any(ConflictError) });
          expect(reuseCurrent).toMatchObject({ status: 'rejected', reason: expect.any(ConflictError) });
          expect(await catalog.getCurrent()).toEqual(publication(2));
          expect(await catalog.getPublication(1)).toEqual(publication(1));
        });

        it('lets exactly one of two racing publishes win', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);

          // Act
          const results = await Promise.allSettled([
            catalog.publish(publication(2), 1),
            catalog.publish(publication(3), 1),
          ]);

          // Assess
          const winners = results.filter((r) => r.status === 'fulfilled');
          const losers = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
          expect(winners).toHaveLength(1);
          expect(losers).toHaveLength(1);
          expect(losers[0]?.reason).toBeInstanceOf(ConflictError);
          const winner = results[0]?.status === 'fulfilled' ? 2 : 3;
          expect((await catalog.getCurrent())?.generation).toBe(winner);
        });
      });

      describe('Method: reserveGeneration', () => {
        it('hands out numbers above every publication and every earlier reservation', async () => {
          // Prepare
          await catalog.publish(publication(4), undefined);

          // Act
          const first = await catalog.reserveGeneration();
          const second = await catalog.reserveGeneration();

          // Assess
          expect(first).toBe(5);
          expect(second).toBe(6);
        });
      });

      describe('Entries', () => {
        it('appends on each putEntries call and keeps generations apart', async () => {
          // Prepare
          const firstBatch = [catalogEntry(1, 0), catalogEntry(1, 1)];
          const secondBatch = [catalogEntry(1, 2)];
          const otherGeneration = [catalogEntry(2, 0)];

          // Act
          await catalog.putEntries(1, firstBatch);
          await catalog.putEntries(1, secondBatch);
          await catalog.putEntries(2, otherGeneration);
          await catalog.putEntries(3, []);

          // Assess
          expect(sortEntries(await collect(catalog.listEntries(1)))).toEqual(sortEntries([...firstBatch, ...secondBatch]));
          expect(await collect(catalog.listEntries(2))).toEqual(otherGeneration);
          expect(await collect(catalog.listEntries(3))).toEqual([]);
          expect(await collect(catalog.listEntries(4))).toEqual([]);
        });

        it('round-trips an entry without the optional fields', async () => {
          // Prepare
          const bare: CatalogEntry = {
            contentId: 'com.ubuntu.maas:stable:v3:download',
            product: 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04',
            version: '20240101',
            item: 'boot-kernel',
            path: 'server/releases/jammy/boot-kernel',
            size: 12,
            sha256: 'a'.repeat(64),
          };

          // Act
          await catalog.putEntries(7, [bare]);
          const [listed] = await collect(catalog.listEntries(7));

          // Assess
          expect(listed).toEqual(bare);
          expect(Object.keys(listed ?? {}).sort()).toEqual(Object.keys(bare).sort());
        });

        it(`lists every entry across pages (${manyRows} entries in two calls)`, async () => {
          // Prepare
          const entries = Array.from({ length: manyRows }, (_, i) => catalogEntry(9, i));
          const half = Math.ceil(manyRows / 2);
          await catalog.putEntries(9, entries.slice(0, half));
          await catalog.putEntries(9, entries.slice(half));

          // Act
          const listed = await collect(catalog.listEntries(9));

          // Assess
          expect(listed).toHaveLength(manyRows);
          expect(sortEntries(listed)).toEqual(sortEntries(entries));
        });
      });

      describe('Method: deletePublication', () => {
        it('refuses to delete the current generation', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);
          await catalog.putEntries(1, [catalogEntry(1, 0)]);

          // Act
          const attempt = catalog.deletePublication(1);

          // Assess
          await expect(attempt).rejects.toBeInstanceOf(ConflictError);
          expect(await catalog.getCurrent()).toEqual(publication(1));
          expect(await collect(catalog.listEntries(1))).toEqual([catalogEntry(1, 0)]);
        });

        it('deletes an old generation with its entries', async () => {
          // Prepare
          await catalog.putEntries(1, [catalogEntry(1, 0), catalogEntry(1, 1)]);
          await catalog.publish(publication(1), undefined);
          await catalog.putEntries(2, [catalogEntry(2, 0)]);
          await catalog.publish(publication(2), 1);

          // Act
          await catalog.deletePublication(1);

          // Assess
          expect(await catalog.getPublication(1)).toBeUndefined();
          expect(await collect(catalog.listEntries(1))).toEqual([]);
          expect((await catalog.listPublications()).map((p) => p.generation)).toEqual([2]);
          expect(await collect(catalog.listEntries(2))).toEqual([catalogEntry(2, 0)]);
          expect(await catalog.getCurrent()).toEqual(publication(2));
        });

        it('ignores an unknown generation', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);

          // Act
          const attempt = catalog.deletePublication(42);

          // Assess
          await expect(attempt).resolves.toBeUndefined();
          expect(await catalog.listPublications()).toEqual([publication(1)]);
        });
      });

      describe('Channels', () => {
        it('publishes into a named channel without moving the default one, and remembers each pointer\'s history', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);

          // Act
          await catalog.publish(publication(2), undefined, undefined, 'candidate');
          await catalog.publish(publication(3), 2, undefined, 'candidate');

          // Assess
          expect(await catalog.getCurrent()).toEqual(publication(1));
          expect(await catalog.getCurrent(DEFAULT_CHANNEL)).toEqual(publication(1));
          expect(await catalog.getCurrent('candidate')).toEqual(publication(3));
          expect(await catalog.getCurrent('edge')).toBeUndefined();
          expect(await catalog.listChannels()).toEqual([
            { name: 'candidate', generation: 3, history: [2], revision: 2 },
            { name: DEFAULT_CHANNEL, generation: 1, history: [], revision: 1 },
          ]);
        });

        it('promotes: points a channel at another channel\'s generation, then rolls it back', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);
          await catalog.publish(publication(2), undefined, undefined, 'candidate');
          const stable = (await catalog.getChannel(DEFAULT_CHANNEL))!;

          // Act
          await catalog.setChannel(pointedAt(stable, stable.name, 2), stable.revision);
          const promoted = (await catalog.getChannel(DEFAULT_CHANNEL))!;
          const afterPromote = await catalog.getCurrent();
          await catalog.setChannel(rolledBack(promoted), promoted.revision);

          // Assess
          expect(promoted).toEqual({ name: DEFAULT_CHANNEL, generation: 2, history: [1], revision: 2 });
          expect(afterPromote).toEqual(publication(2));
          expect(await catalog.getChannel(DEFAULT_CHANNEL)).toEqual({ name: DEFAULT_CHANNEL, generation: 1, history: [], revision: 3 });
          expect(await catalog.getCurrent()).toEqual(publication(1));
        });

        it('refuses a switch over a stale revision, and one to an unpublished generation; the channel stays', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);
          await catalog.publish(publication(2), 1);
          const stable = (await catalog.getChannel(DEFAULT_CHANNEL))!;

          // Act
          const stale = catalog.setChannel({ name: DEFAULT_CHANNEL, generation: 1, history: [] }, stable.revision - 1);
          const unpublished = catalog.setChannel({ name: DEFAULT_CHANNEL, generation: 9, history: [2] }, stable.revision);
          const outcomes = await Promise.allSettled([stale, unpublished]);
          await catalog.setChannel({ name: 'candidate', generation: 1, history: [] }, undefined);
          const again = await Promise.allSettled([catalog.setChannel({ name: 'candidate', generation: 2, history: [] }, undefined)]);

          // Assess
          for (const outcome of [...outcomes, ...again]) {
            expect(outcome.status).toBe('rejected');
            expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
          }
          expect(await catalog.getChannel(DEFAULT_CHANNEL)).toEqual(stable);
          expect(await catalog.getChannel('candidate')).toEqual({ name: 'candidate', generation: 1, history: [], revision: 1 });
        });

        it('refuses to delete a generation any channel points at', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined, undefined, 'candidate');
          await catalog.publish(publication(2), undefined);

          // Act
          const attempt = catalog.deletePublication(1);

          // Assess
          await expect(attempt).rejects.toBeInstanceOf(ConflictError);
          expect(await catalog.getPublication(1)).toEqual(publication(1));
          expect(await catalog.getCurrent('candidate')).toEqual(publication(1));
        });

        it('lets exactly one of two racing switches of a channel win', async () => {
          // Prepare
          await catalog.publish(publication(1), undefined);
          await catalog.publish(publication(2), undefined, undefined, 'candidate');
          await catalog.publish(publication(3), 2, undefined, 'candidate');
          const stable = (await catalog.getChannel(DEFAULT_CHANNEL))!;

          // Act
          const outcomes = await Promise.allSettled([
            catalog.setChannel(pointedAt(stable, stable.name, 2), stable.revision),
            catalog.setChannel(pointedAt(stable, stable.name, 3), stable.revision),
          ]);

          // Assess
          expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
          const rejected = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
          expect(rejected).toHaveLength(1);
          expect(rejected[0]!.reason).toBeInstanceOf(ConflictError);
          const after = (await catalog.getChannel(DEFAULT_CHANNEL))!;
          expect([2, 3]).toContain(after.generation);
          expect(after).toMatchObject({ history: [1], revision: stable.revision + 1 });
        });
      });
    });

    describe('Port: RunLog', () => {
      it('keeps the holder of a run with its start time, and one recorded without it as it was', async () => {
        // Prepare
        const base: SyncRun = { id: 'run-held', state: 'running', startedAt: '2024-01-02T00:00:00.000Z', itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 };
        const withStart: SyncRun = { ...base, holder: { host: 'host-a', pid: 4242, startTime: 987_654_321 } };
        const older: SyncRun = { ...base, id: 'run-older', holder: { host: 'host-a', pid: 4243 } };

        // Act
        await catalog.putRun(withStart);
        await catalog.putRun(older);

        // Assess
        expect(await catalog.getRun('run-held')).toEqual(withStart);
        const read = await catalog.getRun('run-older');
        expect(read).toEqual(older);
        expect(Object.keys(read?.holder ?? {}).sort()).toEqual(['host', 'pid']);
      });

      it('upserts a run by id', async () => {
        // Prepare
        const running: SyncRun = {
          id: 'run-1',
          state: 'running',
          startedAt: '2024-01-02T00:00:00.000Z',
          itemsCopied: 0,
          bytesCopied: 0,
          itemsPresent: 0,
        };
        const finished: SyncRun = {
          ...running,
          state: 'succeeded',
          finishedAt: '2024-01-02T00:10:00.000Z',
          itemsCopied: 3,
          bytesCopied: 123_456_789_012,
          itemsPresent: 40,
          generation: 2,
        };

        // Act
        await catalog.putRun(running);
        const first = await catalog.getRun('run-1');
        await catalog.putRun(finished);
        const second = await catalog.getRun('run-1');

        // Assess
        expect(first).toEqual(running);
        expect(Object.keys(first ?? {}).sort()).toEqual(Object.keys(running).sort());
        expect(second).toEqual(finished);
        expect(await catalog.getRun('run-unknown')).toBeUndefined();
      });

      it('keeps a run\'s warnings and publishing-mode switch, and drops them when a later write has none', async () => {
        // Prepare
        const run: SyncRun = {
          id: 'run-notes',
          state: 'succeeded',
          startedAt: '2024-01-03T00:00:00.000Z',
          finishedAt: '2024-01-03T00:01:00.000Z',
          itemsCopied: 1,
          bytesCopied: 10,
          itemsPresent: 0,
          generation: 1,
          warnings: ['no bootloader selected for arm64', 'a second, with "quotes" and ünïcode'],
          modeSwitch: { from: 'verbatim', to: 're-signed' },
        };

        // Act
        await catalog.putRun(run);
        const stored = await catalog.getRun(run.id);
        const { warnings: _warnings, modeSwitch: _modeSwitch, ...plain } = run;
        await catalog.putRun(plain);
        const rewritten = await catalog.getRun(run.id);

        // Assess
        expect(stored).toEqual(run);
        expect(rewritten).toEqual(plain);
        expect((await catalog.listRuns(5)).find((listed) => listed.id === run.id)).toEqual(plain);
      });

      it('lists runs newest start first, up to the limit', async () => {
        // Prepare
        const failed = run('run-b', '2024-01-03T00:00:00.000Z', { state: 'failed', error: 'upstream 503' });
        const oldest = run('run-c', '2024-01-01T00:00:00.000Z', { state: 'unchanged' });
        const newest = run('run-a', '2024-01-05T00:00:00.000Z', { state: 'running' });
        for (const r of [failed, oldest, newest]) await catalog.putRun(r);

        // Act
        const all = await catalog.listRuns(10);
        const firstTwo = await catalog.listRuns(2);

        // Assess
        expect(all).toEqual([newest, failed, oldest]);
        expect(firstTwo).toEqual([newest, failed]);
      });

      it('keeps the newest runs however old once a run starts, and drops the older ones finished before the retention', async () => {
        // Prepare: `keep` + 2 runs that finished long before the retention, a minute apart.
        const { keep, retentionMs } = syncDefaults.runRetention;
        const longAgo = Date.now() - retentionMs - 30 * DAY;
        const old = Array.from({ length: keep + 2 }, (_, i) =>
          run(`old-${String(i).padStart(2, '0')}`, iso(longAgo + i * MINUTE), { finishedAt: iso(longAgo + i * MINUTE + 1_000) }),
        );
        for (const r of old) await catalog.putRun(r);
        const untouched = await catalog.listRuns(100);

        // Act: a run starts.
        const starting = run('starting', iso(Date.now()), { state: 'running' });
        await catalog.putRun(starting);

        // Assess: nothing went before a run started; then the newest `keep` (the new one with them) stay, the 3 oldest go.
        expect(untouched).toHaveLength(keep + 2);
        const kept = await catalog.listRuns(100);
        expect(kept).toEqual([starting, ...old.slice(3).reverse()]);
        expect(kept).toHaveLength(keep);
        for (const gone of old.slice(0, 3)) expect(await catalog.getRun(gone.id), gone.id).toBeUndefined();
      });

      it('keeps runs past the newest kept until the retention after they finished, and never one still running', async () => {
        // Prepare: 3 runs finished 10 days ago, one of them still running (abandoned), then `keep` - 1 newer ones.
        const { keep } = syncDefaults.runRetention;
        const tenDaysAgo = Date.now() - 10 * DAY;
        const recent = [
          run('recent-0', iso(tenDaysAgo), { finishedAt: iso(tenDaysAgo + 1_000) }),
          run('recent-1', iso(tenDaysAgo + MINUTE), { state: 'running' }),
          run('recent-2', iso(tenDaysAgo + 2 * MINUTE), { state: 'failed', finishedAt: iso(tenDaysAgo + 2 * MINUTE + 1_000), error: 'x' }),
        ];
        const newer = Array.from({ length: keep - 1 }, (_, i) =>
          run(`newer-${String(i).padStart(2, '0')}`, iso(tenDaysAgo + DAY + i * MINUTE), { finishedAt: iso(tenDaysAgo + DAY + i * MINUTE + 1_000) }),
        );
        for (const r of [...recent, ...newer]) await catalog.putRun(r);

        // Act
        const starting = run('starting', iso(Date.now()), { state: 'running' });
        await catalog.putRun(starting);

        // Assess
        expect(await catalog.listRuns(100)).toEqual([starting, ...newer.reverse(), ...recent.reverse()]);
      });
    });

    describe('Port: Locks', () => {
      const t0 = Date.parse('2024-01-01T00:00:00.000Z');
      const at = (seconds: number) => new Date(t0 + seconds * 1000);
      const minute = 60_000;

      it('lets the holder renew and keeps others out until the lease ends', async () => {
        // Prepare
        const lease = await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        const renewed = await catalog.renewLock(lease, minute, at(30)); // until 90 s
        const attempt = catalog.acquireLock('sync', 'owner-b', minute, at(80));

        // Assess
        const error = await attempt.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(LockHeldError);
        expect(error).toBeInstanceOf(ConflictError);
        expect(error).toMatchObject({ holder: 'owner-a', expiresAt: at(90).toISOString() });
        expect(renewed).toEqual({ name: 'sync', owner: 'owner-a', epoch: lease.epoch, expiresAt: at(90).toISOString() });
        expect(await catalog.getLock('sync')).toEqual(renewed);
      });

      it('refuses a second acquire by the holder itself: a run renews, it never re-takes', async () => {
        // Prepare
        await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        const attempt = catalog.acquireLock('sync', 'owner-a', minute, at(1));

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(LockHeldError);
      });

      it('hands an expired lease to another owner with the next epoch', async () => {
        // Prepare
        const first = await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        const second = await catalog.acquireLock('sync', 'owner-b', minute, at(61));
        const attemptByOldOwner = catalog.acquireLock('sync', 'owner-a', minute, at(62));

        // Assess
        await expect(attemptByOldOwner).rejects.toMatchObject({ holder: 'owner-b' });
        expect(second.epoch).toBe(first.epoch + 1);
      });

      it('evicts a holder named as dead before its lease ends, and only that holder', async () => {
        // Prepare
        const first = await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        const wrongEviction = await catalog.acquireLock('sync', 'owner-b', minute, at(1), 'owner-x').catch((e: unknown) => e);
        const taken = await catalog.acquireLock('sync', 'owner-b', minute, at(2), 'owner-a');

        // Assess
        expect(wrongEviction).toBeInstanceOf(LockHeldError);
        expect(taken).toMatchObject({ owner: 'owner-b', epoch: first.epoch + 1 });
      });

      it('refuses to renew a lease taken over after it expired, and leaves the new holder alone', async () => {
        // Prepare
        const lapsed = await catalog.acquireLock('sync', 'owner-a', minute, at(0));
        const successor = await catalog.acquireLock('sync', 'owner-b', minute, at(61));

        // Act
        const attempt = catalog.renewLock(lapsed, minute, at(62));

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(LeaseLostError);
        expect(await catalog.getLock('sync')).toEqual(successor);
      });

      it('renews a lapsed lease that nobody took over', async () => {
        // Prepare
        const lapsed = await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        const renewed = await catalog.renewLock(lapsed, minute, at(120));

        // Assess
        expect(renewed).toMatchObject({ owner: 'owner-a', epoch: lapsed.epoch, expiresAt: at(180).toISOString() });
      });

      it('refuses to renew a released lease, even when the lock is free again', async () => {
        // Prepare
        const lease = await catalog.acquireLock('sync', 'owner-a', minute, at(0));
        await catalog.releaseLock(lease);

        // Act
        const attempt = catalog.renewLock(lease, minute, at(1));

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(LeaseLostError);
        expect(await catalog.getLock('sync')).toBeUndefined();
      });

      it('ignores a release by a lease that does not hold the lock', async () => {
        // Prepare
        const lease = await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        await catalog.releaseLock({ ...lease, owner: 'owner-b' });
        await catalog.releaseLock({ ...lease, epoch: lease.epoch + 7 });
        await catalog.releaseLock({ name: 'unknown-lock', owner: 'owner-a', epoch: 1 });
        const attempt = catalog.acquireLock('sync', 'owner-b', minute, at(1));

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(LockHeldError);
      });

      it('frees the lock on release by its holder and keeps counting epochs', async () => {
        // Prepare
        const first = await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        await catalog.releaseLock(first);
        const second = await catalog.acquireLock('sync', 'owner-b', minute, at(1));
        const attemptByFormerHolder = catalog.acquireLock('sync', 'owner-a', minute, at(2));

        // Assess
        await expect(attemptByFormerHolder).rejects.toMatchObject({ holder: 'owner-b' });
        expect(second.epoch).toBe(first.epoch + 1);
      });

      it('keeps locks of different names apart', async () => {
        // Prepare
        await catalog.acquireLock('sync', 'owner-a', minute, at(0));

        // Act
        const other = await catalog.acquireLock('gc', 'owner-b', minute, at(1));

        // Assess
        expect(other).toMatchObject({ name: 'gc', owner: 'owner-b' });
      });

      it('lets exactly one of two racing owners take a free lock', async () => {
        // Act
        const results = await Promise.allSettled([
          catalog.acquireLock('sync', 'owner-a', minute, at(0)),
          catalog.acquireLock('sync', 'owner-b', minute, at(0)),
        ]);

        // Assess
        const losers = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(losers).toHaveLength(1);
        expect(losers[0]?.reason).toBeInstanceOf(ConflictError);
      });
    });

    describe('Port: ManifestIndex', () => {
      it('records a parsed and an unparsed manifest by sha256, and reads each back as written', async () => {
        // Prepare
        const parsed = packageManifest('noble-20250709', 3);
        const unparsed: PackageManifest = {
          sha256: sha256Of('broken'),
          path: 'noble/amd64/20250618/squashfs.manifest',
          problem: 'noble/amd64/20250618/squashfs.manifest: line 2: expected "package<TAB>version", found 1 tab-separated field(s)',
          indexedAt: '2025-07-09T12:00:00.000Z',
        };

        // Act
        const before = await catalog.getManifest(parsed.sha256);
        await catalog.putManifest(parsed);
        await catalog.putManifest(unparsed);
        await catalog.putManifest(parsed);

        // Assess
        expect(before).toBeUndefined();
        expect(await catalog.getManifest(parsed.sha256)).toEqual(parsed);
        expect(await catalog.getManifest(unparsed.sha256)).toEqual(unparsed);
        expect(await catalog.getManifest(sha256Of('never indexed'))).toBeUndefined();
      });

      it('keeps a manifest whose packages do not compress to one DynamoDB item (60,000 packages)', async () => {
        // Prepare
        const large = packageManifest('large', 60_000);

        // Act
        await catalog.putManifest(large);
        const read = await catalog.getManifest(large.sha256);

        // Assess
        expect(read?.packages?.size).toBe(60_000);
        expect(read).toEqual(large);
      });

      it('forgets a manifest (one of several parts too) and nothing else; forgetting an unknown one is no error', async () => {
        // Prepare
        const large = packageManifest('large', 60_000);
        const other = packageManifest('other', 3);
        await catalog.putManifest(large);
        await catalog.putManifest(other);

        // Act
        await catalog.forgetManifest(large.sha256);
        await catalog.forgetManifest(large.sha256);
        await catalog.forgetManifest(sha256Of('never indexed'));

        // Assess
        expect(await catalog.getManifest(large.sha256)).toBeUndefined();
        expect(await catalog.getManifest(other.sha256)).toEqual(other);
        await catalog.putManifest(large);
        expect(await catalog.getManifest(large.sha256)).toEqual(large);
      });

      it('replaces an unparsed record of a manifest with its packages (a later program that can parse it)', async () => {
        // Prepare
        const parsed = packageManifest('retried', 2);
        await catalog.putManifest({ sha256: parsed.sha256, path: parsed.path, problem: 'not UTF-8 text', indexedAt: parsed.indexedAt });

        // Act
        await catalog.putManifest(parsed);

        // Assess
        expect(await catalog.getManifest(parsed.sha256)).toEqual(parsed);
      });
    });

    describe('Port: StateStore', () => {
      it('gets, sets and overwrites named values', async () => {
        // Act
        const before = await catalog.getState('upstream:etag');
        await catalog.setState('upstream:etag', '"abc"');
        await catalog.setState('upstream:last-modified', 'Mon, 01 Jan 2024 00:00:00 GMT');
        const afterSet = await catalog.getState('upstream:etag');
        await catalog.setState('upstream:etag', '"def"');
        const afterOverwrite = await catalog.getState('upstream:etag');

        // Assess
        expect(before).toBeUndefined();
        expect(afterSet).toBe('"abc"');
        expect(afterOverwrite).toBe('"def"');
        expect(await catalog.getState('upstream:last-modified')).toBe('Mon, 01 Jan 2024 00:00:00 GMT');
      });
    });

    describe('Fenced writes', () => {
      const now = new Date('2024-01-01T00:00:00.000Z');
      const later = new Date('2024-01-01T01:00:00.000Z');
      const minute = 60_000;
      let stale: Lease;

      /** A lease that expired and was taken over by another run. */
      beforeEach(async () => {
        stale = await catalog.acquireLock('sync', 'stale-run', minute, now);
        await catalog.acquireLock('sync', 'live-run', minute, later);
      });

      it.each([
        ['recordObject', (c: Catalog, l: Lease) => c.recordObject(storedObject('items/late', 1), l)],
        ['forgetObject', (c: Catalog, l: Lease) => c.forgetObject('items/kept', l)],
        ['putEntries', (c: Catalog, l: Lease) => c.putEntries(9, [catalogEntry(9, 1)], l)],
        ['publish', (c: Catalog, l: Lease) => c.publish(publication(9), undefined, l)],
        ['deletePublication', (c: Catalog, l: Lease) => c.deletePublication(1, l)],
        ['putRun', (c: Catalog, l: Lease) => c.putRun(run('stale-run', now.toISOString(), { state: 'succeeded' }), l)],
        ['setState', (c: Catalog, l: Lease) => c.setState('upstream-index', 'stale', l)],
        ['reserveGeneration', (c: Catalog, l: Lease) => c.reserveGeneration(l)],
        ['putManifest', (c: Catalog, l: Lease) => c.putManifest(packageManifest('late', 3), l)],
        ['putManifest (several parts)', (c: Catalog, l: Lease) => c.putManifest(packageManifest('late', 60_000), l)],
        ['forgetManifest', (c: Catalog, l: Lease) => c.forgetManifest(sha256Of('kept'), l)],
      ])('refuses %s by a lease that lost the lock, changing nothing', async (_method, write) => {
        // Prepare
        await catalog.recordObject(storedObject('items/kept', 2));
        await catalog.publish(publication(1), undefined);
        await catalog.putManifest(packageManifest('kept', 2));

        // Act
        const attempt = write(catalog, stale);

        // Assess
        await expect(attempt).rejects.toBeInstanceOf(LeaseLostError);
        expect(await catalog.getObject('items/late')).toBeUndefined();
        expect(await catalog.getObject('items/kept')).toEqual(storedObject('items/kept', 2));
        expect(await collect(catalog.listEntries(9))).toEqual([]);
        expect((await catalog.getCurrent())?.generation).toBe(1);
        expect(await catalog.getPublication(1)).toEqual(publication(1));
        expect(await catalog.getRun('stale-run')).toBeUndefined();
        expect(await catalog.getState('upstream-index')).toBeUndefined();
        expect(await catalog.reserveGeneration()).toBe(2);
        expect(await catalog.getManifest(sha256Of('late'))).toBeUndefined();
        expect(await catalog.getManifest(sha256Of('kept'))).toEqual(packageManifest('kept', 2));
      });

      it('lets the holding lease write', async () => {
        // Prepare
        const live = (await catalog.getLock('sync')) as Lease;

        // Act
        await catalog.recordObject(storedObject('items/new', 3), live);
        const generation = await catalog.reserveGeneration(live);
        await catalog.putEntries(generation, [catalogEntry(generation, 1)], live);
        await catalog.publish(publication(generation), undefined, live);

        // Assess
        expect(await catalog.getObject('items/new')).toEqual(storedObject('items/new', 3));
        expect((await catalog.getCurrent())?.generation).toBe(generation);
        expect(await collect(catalog.listEntries(generation))).toHaveLength(1);
      });
    });
  });
}

/** A parsed manifest of `count` packages whose versions look random, so they compress poorly. */
function packageManifest(seed: string, count: number): PackageManifest {
  const packages = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const version = createHash('sha256').update(`${seed}\0${i}`).digest('hex').slice(0, 20);
    packages.set(i % 2 === 0 ? `pkg-${i}` : `lib${i}:amd64`, `1:${version}-0ubuntu1~24.04`);
  }
  return { sha256: sha256Of(seed), path: `noble/amd64/${seed}/squashfs.manifest`, packages, indexedAt: '2025-07-09T12:00:00.000Z' };
}

function sha256Of(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function storedObject(path: string, n: number): StoredObject {
  return {
    path,
    size: 1000 + n,
    sha256: n.toString(16).padStart(64, '0'),
    digests: { sha256: n.toString(16).padStart(64, '0'), sha512: n.toString(16).padStart(128, '0') },
    storedAt: new Date(Date.UTC(2024, 0, 1, 0, 0, n % 60)).toISOString(),
  };
}

function publication(generation: number): Publication {
  return {
    generation,
    upstreamUpdated: `Mon, 01 Jan 2024 00:00:${String(generation % 60).padStart(2, '0')} +0000`,
    publishedAt: new Date(Date.UTC(2024, 0, 1, generation)).toISOString(),
    runId: `run-${generation}`,
    files: ['streams/v1/index.sjson', `streams/v1/com.ubuntu.maas:stable:v3:download-${generation}.sjson`],
    itemCount: 10 * generation,
    totalBytes: 5_000_000_000 * generation,
  };
}

function catalogEntry(generation: number, n: number): CatalogEntry {
  return {
    contentId: 'com.ubuntu.maas:stable:v3:download',
    product: `com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04`,
    version: `2024010${generation}`,
    item: `item-${n}`,
    path: `server/releases/jammy/${generation}/item-${n}`,
    size: 100 + n,
    sha256: n.toString(16).padStart(64, '0'),
    ftype: 'squashfs',
    os: 'ubuntu',
    release: 'jammy',
    arch: 'amd64',
    subarch: 'ga-22.04',
    label: 'stable',
  };
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const iso = (ms: number) => new Date(ms).toISOString();

function run(id: string, startedAt: string, overrides: Partial<SyncRun>): SyncRun {
  return { id, state: 'succeeded', startedAt, itemsCopied: 1, bytesCopied: 2, itemsPresent: 3, ...overrides };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const collected: T[] = [];
  for await (const item of items) collected.push(item);
  return collected;
}

async function inBatches<T>(items: readonly T[], size: number, work: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}

function sortBy<T>(items: readonly T[], keyOf: (item: T) => string): T[] {
  return [...items].sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
}

function sortEntries(entries: readonly CatalogEntry[]): CatalogEntry[] {
  return sortBy(entries, (e) => `${e.version}\u0000${e.item}`);
}
