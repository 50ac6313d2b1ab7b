import { describe, expect, it } from 'vitest';
import { backoffUntil, defaultBackoff, mayStartRun, pauseAfter } from '../../functions/core/backoff.ts';
import { SYNC_LOCK } from '../../functions/core/engine.ts';
import type { Catalog, Lease, RunState, SyncRun } from '../../functions/core/ports.ts';

const MINUTE = 60_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0 + ms);

/** A run that finished `finishedAtMs` after T0 (negative: before). */
function run(state: RunState, finishedAtMs: number, id = `${state}-${finishedAtMs}`): SyncRun {
  return { id, state, startedAt: at(finishedAtMs - MINUTE).toISOString(), finishedAt: at(finishedAtMs).toISOString(), itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 };
}

/** Just what mayStartRun reads: the lock and the newest runs. */
function catalogWith(runsNewestFirst: SyncRun[], lock?: Lease): Catalog {
  return {
    getLock: async (name: string) => (name === SYNC_LOCK ? lock : undefined),
    listRuns: async (limit: number) => runsNewestFirst.slice(0, limit),
  } as unknown as Catalog;
}

describe('Module: backoff', () => {
  describe('Method: pauseAfter', () => {
    it('doubles from the first pause with each failure in a row, up to the cap', () => {
      // Act
      const pauses = [0, 1, 2, 3, 4, 5, 6, 7, 100].map((failures) => pauseAfter(failures) / MINUTE);

      // Assess
      expect(pauses).toEqual([0, 15, 30, 60, 120, 240, 360, 360, 360]);
    });
  });

  describe('Method: backoffUntil', () => {
    it('counts failed and abandoned runs back to the newest succeeded or unchanged one, skipping running ones', () => {
      // Prepare: newest first.
      const runs = [run('running', 0), run('failed', -10 * MINUTE), run('abandoned', -40 * MINUTE), run('failed', -70 * MINUTE), run('succeeded', -100 * MINUTE), run('failed', -200 * MINUTE)];

      // Act / Assess: three failures in a row → 60 minutes after the newest one.
      expect(backoffUntil(runs)).toEqual(at(-10 * MINUTE + 60 * MINUTE));
    });

    it('has no pause after a succeeded or unchanged run, or with no runs at all', () => {
      expect(backoffUntil([run('succeeded', 0), run('failed', -MINUTE)])).toBeUndefined();
      expect(backoffUntil([run('unchanged', 0), run('failed', -MINUTE)])).toBeUndefined();
      expect(backoffUntil([])).toBeUndefined();
    });
  });

  describe('Method: mayStartRun', () => {
    it('starts nothing while a run holds a live lease on the sync lock', async () => {
      // Prepare
      const lock: Lease = { name: SYNC_LOCK, owner: 'run-1', epoch: 3, expiresAt: at(5 * MINUTE).toISOString() };

      // Act
      const decision = await mayStartRun(catalogWith([], lock), at(0));

      // Assess
      expect(decision).toEqual({ start: false, reason: 'running', holder: 'run-1', expiresAt: lock.expiresAt });
    });

    it('starts a run once the lease ran out: that run settles the dead one', async () => {
      const lock: Lease = { name: SYNC_LOCK, owner: 'run-1', epoch: 3, expiresAt: at(-1).toISOString() };

      expect(await mayStartRun(catalogWith([run('running', -10 * MINUTE)], lock), at(0))).toEqual({ start: true });
    });

    it('backs off after a failed run, and starts again once the pause is over', async () => {
      // Prepare: one failure at T0.
      const catalog = catalogWith([run('failed', 0)]);

      // Act
      const during = await mayStartRun(catalog, at(14 * MINUTE));
      const after = await mayStartRun(catalog, at(15 * MINUTE));

      // Assess
      expect(during).toEqual({ start: false, reason: 'backing-off', failedRuns: 1, until: at(15 * MINUTE).toISOString() });
      expect(after).toEqual({ start: true });
    });

    it('waits at most the cap however many runs failed', async () => {
      const failures = Array.from({ length: 20 }, (_, i) => run('failed', -i * 7 * 60 * MINUTE));

      expect(await mayStartRun(catalogWith(failures), at(6 * 60 * MINUTE - 1))).toMatchObject({ start: false, failedRuns: 20 });
      expect(await mayStartRun(catalogWith(failures), at(defaultBackoff.maxPauseMs))).toEqual({ start: true });
    });

    it('forgets the failures once a run succeeds or finds upstream unchanged', async () => {
      expect(await mayStartRun(catalogWith([run('succeeded', 0), run('failed', -MINUTE)]), at(1))).toEqual({ start: true });
      expect(await mayStartRun(catalogWith([run('unchanged', 0), run('failed', -MINUTE)]), at(1))).toEqual({ start: true });
    });
  });
});
