/**
 * The sync engine: plan → copy → publish → prune, over the ports only.
 * `run()` does a whole sync in one process (CLI); the phases are public so
 * Step Functions can call them from separate Lambdas, passing only a run id
 * and one copy task at a time. Each phase lives in its own module under
 * `sync/`; they share what they need through one SyncContext.
 *
 * Integrity rules, each enforced in one place:
 * - Bytes under a path that a retained generation lists never change: items
 *   are written create-only, and a plan whose upstream promises other bytes
 *   at such a path fails before anything is copied (PublishedContentError,
 *   sync/generation.ts).
 * - Every catalog write of a run is fenced by its lease (owner + epoch), so
 *   a run that lost the lock can change nothing; only `plan` takes the lock,
 *   every later phase renews it, and a long copy renews it while it streams
 *   (sync/lease.ts).
 * - A run whose holder is known dead (same host, process gone) or whose
 *   lease ran out is recorded `abandoned` by the next run, which takes over
 *   at once and removes what the dead run staged (sync/runs.ts).
 */
import { forEachLimited } from './concurrency.ts';
import { LockHeldError } from './errors.ts';
import type { CopyTask } from './planner.ts';
import type { Publication, SyncRun } from './ports.ts';
import { SyncSources } from './sync-sources.ts';
import { copy, copyWithRetries, copyWithinBudget } from './sync/copy.ts';
import { whileRenewing } from './sync/lease.ts';
import { check, plan } from './sync/plan.ts';
import { prune } from './sync/prune.ts';
import { publish } from './sync/publish.ts';
import { INDEX_STATE, channelStateKey, failQuietly, failRun, newRunId, readRunFile } from './sync/runs.ts';
import type {
  CopiedItem,
  EngineDeps,
  PlanOutcome,
  PruneResult,
  RangedCopy,
  SyncContext,
  SyncSettings,
  UnfinishedCopy,
} from './sync/types.ts';

export { SYNC_LOCK } from './sync/lease.ts';
export { channelStateKey, newRunId, requestRepair, requestRepublish } from './sync/runs.ts';
export type {
  CopiedItem,
  EngineDeps,
  PlanOutcome,
  PruneResult,
  RangedCopy,
  RangedCopySettings,
  SyncEvent,
  SyncSettings,
  UnfinishedCopy,
} from './sync/types.ts';
export type { MergedSourceSettings } from './sync-sources.ts';

export class SyncEngine {
  private readonly context: SyncContext;

  constructor(deps: EngineDeps, settings: SyncSettings) {
    this.context = {
      objects: deps.objects,
      catalog: deps.catalog,
      settings,
      sources: new SyncSources(deps, settings, channelStateKey(INDEX_STATE, settings.channel)),
      now: deps.now ?? (() => new Date()),
      emit: deps.onEvent ?? (() => {}),
      sleep: deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
      holder: deps.holder,
      isAlive: deps.isAlive ?? (() => undefined),
      signingKeys: deps.signingKeys,
    };
  }

  /** A whole sync in this process. Resolves with the run record; rejects (after recording it) on failure. */
  async run(runId = newRunId(this.context.now())): Promise<SyncRun> {
    const context = this.context;
    const planned = await this.plan(runId);
    if (planned.outcome === 'locked') {
      throw new LockHeldError(planned.holder, planned.expiresAt);
    }
    if (planned.outcome === 'planned') {
      try {
        // Largest first: the long downloads start at once and the small ones fill the gaps beside them.
        const tasks = (await readRunFile<CopyTask[]>(context.objects, runId, 'copy.json')).sort((a, b) => b.size - a.size);
        await whileRenewing(context, runId, () =>
          forEachLimited(tasks, context.settings.concurrency, (task) => copyWithRetries(context, runId, task)),
        );
        await this.publish(runId);
        await this.prune(runId);
      } catch (error) {
        await failQuietly(context, runId, error);
        throw error;
      }
    }
    return (await context.catalog.getRun(runId)) as SyncRun;
  }

  /** Conditional GET of the index only: does a run have anything to do? */
  check(): Promise<{ changed: boolean }> {
    return check(this.context);
  }

  /** Takes the lock, verifies upstream metadata, stages it as the next generation and lists what to copy. */
  plan(runId: string): Promise<PlanOutcome> {
    return plan(this.context, runId);
  }

  /** Fetches one item, verifying size and digest while it streams; only verified bytes become visible. */
  copy(runId: string, task: CopyTask): Promise<CopiedItem> {
    return copy(this.context, runId, task);
  }

  /**
   * One invocation's share of an item's copy, for callers with a time limit
   * (a Lambda): whole, or as ranged parts until `budgetMs` would run out,
   * handing back a continuation for the next call (see sync/copy.ts).
   */
  copyWithinBudget(runId: string, task: CopyTask, budgetMs: number, resume?: RangedCopy): Promise<CopiedItem | UnfinishedCopy> {
    return copyWithinBudget(this.context, runId, task, budgetMs, resume);
  }

  /** Checks every listed file is stored as promised, then switches the current publication atomically. */
  publish(runId: string): Promise<Publication> {
    return publish(this.context, runId);
  }

  /**
   * Drops generations replaced longer ago than the grace period (and the
   * package-index records of manifests only they listed), then every
   * stored file no remaining generation references, then leftovers of
   * failed runs. Releases the lock.
   */
  prune(runId: string): Promise<PruneResult> {
    return prune(this.context, runId);
  }

  /**
   * Records the run as failed, removes what it staged and releases the lock;
   * the current publication is untouched. A run that no longer holds the
   * lock records nothing: the run that holds or next takes it settles this
   * one as abandoned.
   */
  fail(runId: string, error: unknown): Promise<void> {
    return failRun(this.context, runId, error);
  }
}
