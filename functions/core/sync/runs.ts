/**
 * Run records and run files: a run's id, the plan it leaves in the object
 * store, a failed run recorded and its staging removed, runs whose holder
 * died settled as abandoned, and the requests that make the next run plan
 * again although upstream has not changed.
 */
import { randomBytes } from 'node:crypto';
import { LeaseLostError, NotFoundError } from '../errors.ts';
import { forgetUnlistedManifests, isManifest } from '../manifests.ts';
import {
  DEFAULT_CHANNEL,
  keys,
  type Lease,
  type Locks,
  type ManifestIndex,
  type ObjectIndex,
  type ObjectStore,
  type Publications,
  type RunLog,
  type StateStore,
  type SyncRun,
} from '../ports.ts';
import { renewLease } from './lease.ts';
import type { StoredPlan, SyncContext } from './types.ts';

/** Catalog state (per channel, see channelStateKey): the index state each source was last published from. */
export const INDEX_STATE = 'upstream-index';
/** Set by `requestRepair` and `requestRepublish`: the next run re-plans from upstream even when its index has not changed. */
export const REPAIR_STATE = 'repair-requested';
/** Runs looked at for ones to settle as abandoned. */
const RECENT_RUNS = 20;

/**
 * After `verify` found stored bytes that differ from what the publication
 * promises: forgets them, so the next run fetches them again (replacing
 * only those bytes, with the promised ones), and makes that run re-plan even
 * though upstream has not changed.
 */
export async function requestRepair(catalog: ObjectIndex & StateStore, paths: readonly string[]): Promise<void> {
  for (const path of paths) await catalog.forgetObject(path);
  await catalog.setState(REPAIR_STATE, paths.join('\n'));
}

/**
 * After the signing keys changed (rotated, or a previous key retired): the
 * next run publishes again, signed and with the keyring as they now are,
 * even though upstream has not changed.
 */
export async function requestRepublish(catalog: StateStore, reason: string): Promise<void> {
  await catalog.setState(REPAIR_STATE, reason);
}

export function newRunId(now: Date): string {
  return `${now.toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`;
}

/** A catalog state of one channel: the default channel's under the bare name. */
export function channelStateKey(name: string, channel: string): string {
  return channel === DEFAULT_CHANNEL ? name : `${name}@${channel}`;
}

export async function writeRunFile(objects: ObjectStore, runId: string, name: string, value: unknown): Promise<void> {
  await objects.put(keys.runFile(runId, name), new TextEncoder().encode(JSON.stringify(value)), {
    contentType: 'application/json',
  });
}

export async function readRunFile<T>(objects: ObjectStore, runId: string, name: string): Promise<T> {
  const { body } = await objects.get(keys.runFile(runId, name));
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}

/** Deletes every object under `prefix` that `shouldDelete` picks, all listed before the first goes. */
export async function deleteKeys(objects: ObjectStore, prefix: string, shouldDelete: (key: string) => boolean): Promise<void> {
  const doomed: string[] = [];
  for await (const object of objects.list(prefix)) {
    if (shouldDelete(object.key)) doomed.push(object.key);
  }
  for (const key of doomed) await objects.delete(key);
}

/** What recording and settling runs needs of the context. */
export type RunsContext = Pick<SyncContext, 'objects' | 'settings' | 'now' | 'emit' | 'isAlive'> & {
  catalog: Locks & RunLog & Publications & ManifestIndex;
};

/**
 * Records the run as failed, removes what it staged and releases the lock;
 * the current publication is untouched. A run that no longer holds the
 * lock records nothing: the run that holds or next takes it settles this
 * one as abandoned.
 */
export async function failRun(context: RunsContext, runId: string, error: unknown): Promise<void> {
  const { catalog } = context;
  const message = error instanceof Error ? error.message : String(error);
  const lease = await renewLease(context, runId).catch((lost: unknown) => {
    if (lost instanceof LeaseLostError) return undefined;
    throw lost;
  });
  if (!lease) {
    context.emit({ type: 'failed', runId, error: message });
    return;
  }
  const run = await catalog.getRun(runId);
  await catalog.putRun(
    {
      ...(run ?? { id: runId, startedAt: context.now().toISOString(), itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 }),
      state: 'failed',
      finishedAt: context.now().toISOString(),
      error: message,
    },
    lease,
  );
  if (run) await removeStaged(context, run, lease);
  await catalog.releaseLock(lease);
  context.emit({ type: 'failed', runId, error: message });
}

/** Records the failure if the catalog lets us; the caller rethrows the original error either way. */
export async function failQuietly(context: RunsContext, runId: string, error: unknown): Promise<void> {
  try {
    await failRun(context, runId, error);
  } catch {
    // The store that failed the run may refuse this too; its lease then expires by itself.
  }
}

/**
 * Records every unfinished run but `lease`'s own as abandoned: with the
 * lock in hand, no other run can still be working. What each staged
 * (metadata under its prefix, entries of its reserved generation) goes too.
 */
export async function settleAbandonedRuns(context: RunsContext, lease: Lease): Promise<void> {
  const { catalog } = context;
  for (const run of await catalog.listRuns(RECENT_RUNS)) {
    if (run.state !== 'running' || run.id === lease.owner) continue;
    const reason = run.holder && context.isAlive(run.holder) === false ? 'its process is gone' : 'its lease ran out';
    await catalog.putRun({ ...run, state: 'abandoned', finishedAt: context.now().toISOString(), error: `abandoned: ${reason}` }, lease);
    await removeLeftovers(context, run, lease.owner);
    await removeStaged(context, run, lease);
    context.emit({ type: 'abandoned', runId: lease.owner, abandonedRun: run.id, reason });
  }
}

/**
 * What the dead run was writing when it stopped: its temp files, its
 * unfinished parted writes under the keys it had to copy. Best effort: a
 * store that cannot list them leaves them to its own sweep (an hour on
 * disk, the bucket's lifecycle rule on S3), and this run goes on.
 */
async function removeLeftovers(context: RunsContext, run: SyncRun, settlingRunId: string): Promise<void> {
  const { objects } = context;
  try {
    const tasks = await readRunFile<Array<{ path: string }>>(objects, run.id, 'copy.json').catch((error: unknown) => {
      if (error instanceof NotFoundError) return [];
      throw error;
    });
    await objects.removeLeftovers({ ...(run.holder && { holder: run.holder }), keys: tasks.map((task) => keys.item(task.path)) });
  } catch (error) {
    const problem = error instanceof Error ? error.message : String(error);
    context.emit({ type: 'warning', runId: settlingRunId, message: `leftovers of abandoned run ${run.id} not removed: ${problem}` });
  }
}

/** Removes a run's staged metadata, run files and the entries of its generation, unless that generation was published. */
async function removeStaged(context: RunsContext, run: SyncRun, lease: Lease): Promise<void> {
  const { catalog, objects } = context;
  if (run.generation === undefined) return;
  if (await catalog.getPublication(run.generation)) return;
  await catalog.deletePublication(run.generation, lease);
  // Manifests its copies indexed that no publication lists: records of bytes nothing serves.
  const plan = await readRunFile<StoredPlan>(objects, run.id, 'plan.json').catch((error: unknown) => {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  });
  if (plan) {
    const candidates = new Set(plan.entries.filter((entry) => isManifest(entry.ftype) && entry.sha256).map((entry) => entry.sha256));
    const retained = (await catalog.listPublications()).map((publication) => publication.generation);
    await forgetUnlistedManifests(catalog, candidates, retained, lease);
  }
  const prefix = keys.metadataPrefix({ generation: run.generation, runId: run.id });
  await deleteKeys(objects, prefix, () => true);
  await deleteKeys(objects, keys.runFile(run.id, ''), () => true);
}
