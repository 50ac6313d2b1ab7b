/**
 * The sync lock's lease: taken by `plan` only, renewed by every later
 * phase, and renewed while long work (reading sources, streaming an item)
 * goes on. Every catalog write of a run is fenced by it.
 */
import { LeaseLostError, LockHeldError } from '../errors.ts';
import type { ByteStream, Lease, Locks, RunLog } from '../ports.ts';
import type { SyncContext } from './types.ts';

export const SYNC_LOCK = 'sync';

/** What lease keeping needs of the context. */
export type LeaseContext = Pick<SyncContext, 'settings' | 'now' | 'isAlive'> & { catalog: Locks & RunLog };

/** Takes the free lock, or one held by a run known dead. */
export async function takeLock(context: LeaseContext, runId: string): Promise<Lease> {
  const { catalog, settings } = context;
  const now = context.now();
  try {
    return await catalog.acquireLock(SYNC_LOCK, runId, settings.lockTtlMs, now);
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    const holder = await catalog.getRun(error.holder);
    if (!holder?.holder || context.isAlive(holder.holder) !== false) throw error;
    return await catalog.acquireLock(SYNC_LOCK, runId, settings.lockTtlMs, now, error.holder);
  }
}

/** The run's own lease, extended; LeaseLostError when another run has taken the lock since. */
export async function renewLease(context: Pick<LeaseContext, 'settings' | 'now'> & { catalog: Locks }, runId: string): Promise<Lease> {
  const { catalog } = context;
  const held = await catalog.getLock(SYNC_LOCK);
  if (held?.owner !== runId) throw new LeaseLostError(runId, undefined, 'does not hold the sync lock');
  return catalog.renewLock(held, context.settings.lockTtlMs, context.now());
}

/** Runs `work`, renewing the run's lease every third of its length until `work` settles. */
export async function whileRenewing<T>(
  context: Pick<LeaseContext, 'settings' | 'now'> & { catalog: Locks },
  runId: string,
  work: () => Promise<T>,
): Promise<T> {
  let lost: unknown;
  const timer = setInterval(() => {
    renewLease(context, runId).catch((error: unknown) => (lost ??= error));
  }, context.settings.lockTtlMs / 3);
  try {
    const result = await work();
    if (lost) throw lost;
    return result;
  } finally {
    clearInterval(timer);
  }
}

/**
 * Passes an item's body through, reporting progress and renewing the lease
 * whenever a third of it has passed: a copy can outlast a lease. (A renewal
 * keeps the epoch, so the fence of the caller's lease stays valid.)
 */
export async function* watched(
  context: Pick<SyncContext, 'settings' | 'now' | 'emit'> & { catalog: Locks },
  runId: string,
  path: string,
  lease: Lease,
  body: ByteStream,
): ByteStream {
  const { settings } = context;
  const every = settings.lockTtlMs / 3;
  let renewedAt = context.now().getTime();
  for await (const chunk of body) {
    context.emit({ type: 'item-progress', runId, path, bytes: chunk.byteLength });
    if (context.now().getTime() - renewedAt >= every) {
      await context.catalog.renewLock(lease, settings.lockTtlMs, context.now());
      renewedAt = context.now().getTime();
    }
    yield chunk;
  }
}
