/**
 * When the scheduled check may start a sync run: never while a run holds the
 * sync lock, and after failed runs only once a pause has passed since the
 * last failure, doubling with each failure in a row up to a cap. The streak
 * is read from the run records the catalog keeps anyway (newest first); a
 * succeeded or unchanged run ends it, so no extra state can drift.
 */
import { SYNC_LOCK } from './sync/lease.ts';
import type { Locks, RunLog, SyncRun } from './ports.ts';

const MINUTE = 60_000;

export interface BackoffPolicy {
  /** Pause after one failed run. */
  readonly firstPauseMs: number;
  /** No pause is longer than this, however many runs failed. */
  readonly maxPauseMs: number;
}

/** 15 min, 30 min, 1 h, 2 h, 4 h, then every 6 h: a doomed run costs cents a day, not dollars. */
export const defaultBackoff: BackoffPolicy = { firstPauseMs: 15 * MINUTE, maxPauseMs: 6 * 60 * MINUTE };

/** Run records looked at: enough to reach the cap of any sensible policy. */
const RUNS_LOOKED_AT = 20;

export type StartDecision =
  | { start: true }
  | { start: false; reason: 'running'; holder: string; expiresAt: string }
  | { start: false; reason: 'backing-off'; failedRuns: number; until: string };

/** The pause after `failures` failed runs in a row: 0, first, 2 × first, … capped. */
export function pauseAfter(failures: number, policy: BackoffPolicy = defaultBackoff): number {
  if (failures <= 0) return 0;
  return Math.min(policy.maxPauseMs, policy.firstPauseMs * 2 ** Math.min(failures - 1, 52));
}

/** Failed (or abandoned) runs since the newest succeeded or unchanged one, newest first; running ones are skipped. */
export function failureStreak(runsNewestFirst: readonly SyncRun[]): SyncRun[] {
  const streak: SyncRun[] = [];
  for (const run of runsNewestFirst) {
    if (run.state === 'succeeded' || run.state === 'unchanged') break;
    if (run.state === 'failed' || run.state === 'abandoned') streak.push(run);
  }
  return streak;
}

/** When the pause after the current failure streak ends; undefined when the newest finished run did not fail. */
export function backoffUntil(runsNewestFirst: readonly SyncRun[], policy: BackoffPolicy = defaultBackoff): Date | undefined {
  const streak = failureStreak(runsNewestFirst);
  const [newest] = streak;
  if (!newest) return undefined;
  const failedAt = Date.parse(newest.finishedAt ?? newest.startedAt);
  return new Date(failedAt + pauseAfter(streak.length, policy));
}

/** Whether a new run may start at `now`: no live lease on the sync lock, no pause in force. */
export async function mayStartRun(catalog: Locks & RunLog, now: Date, policy: BackoffPolicy = defaultBackoff): Promise<StartDecision> {
  const lock = await catalog.getLock(SYNC_LOCK);
  if (lock && Date.parse(lock.expiresAt) > now.getTime()) {
    return { start: false, reason: 'running', holder: lock.owner, expiresAt: lock.expiresAt };
  }
  const runs = await catalog.listRuns(RUNS_LOOKED_AT);
  const until = backoffUntil(runs, policy);
  if (until && until.getTime() > now.getTime()) {
    return { start: false, reason: 'backing-off', failedRuns: failureStreak(runs).length, until: until.toISOString() };
  }
  return { start: true };
}
