/**
 * The plan phase: takes the lock, settles runs that died, asks the sources
 * whether anything changed, and if so stages the next generation's
 * metadata and lists what to copy (in run files, for the later phases).
 */
import { assertRoomForChannel } from '../channels.ts';
import { contentTypeOf } from '../content-types.ts';
import { LockHeldError } from '../errors.ts';
import { modeOfSettings, recordedPublishingMode, resolvePublishingMode } from '../publishing-mode.ts';
import { indexStoredManifests } from '../manifests.ts';
import { pinnedVersions } from '../pins.ts';
import { pruneDue } from '../retention.ts';
import { keys, type Lease, type Publication, type Publications, type PublishingMode, type StateStore, type StoredObject, type SyncRun } from '../ports.ts';
import type { ChangedIndexes } from '../sync-sources.ts';
import { latestUpload } from '../uploads.ts';
import { manifestIndexing } from './copy.ts';
import {
  newestUpdated,
  refuseChangesToPublishedContent,
  resignedGeneration,
  uploadedImages,
  verbatimGeneration,
} from './generation.ts';
import { takeLock, whileRenewing } from './lease.ts';
import { prune } from './prune.ts';
import { recordMetadataDigests } from '../metadata-digests.ts';
import { REPAIR_STATE, failQuietly, settleAbandonedRuns, writeRunFile } from './runs.ts';
import { selectionWarnings } from './warnings.ts';
import type { PhaseContext, PlanOutcome, StoredPlan, SyncContext } from './types.ts';

/** Conditional GET of the index only: does a run have anything to do? */
export async function check(context: PhaseContext<Publications & StateStore>): Promise<{ changed: boolean }> {
  const indexes = await changedIndexes(context, await context.catalog.getCurrent(context.settings.channel), { all: false });
  return { changed: indexes !== undefined };
}

/**
 * Takes the lock, verifies upstream metadata, stages it as the next
 * generation and lists what to copy. Uses every catalog port (and prunes
 * when nothing changed).
 */
export async function plan(context: SyncContext, runId: string): Promise<PlanOutcome> {
  const { catalog, settings } = context;
  const startedAt = context.now();
  let lease: Lease;
  try {
    lease = await takeLock(context, runId);
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    context.emit({ type: 'locked', runId, holder: error.holder, expiresAt: error.expiresAt });
    return { runId, outcome: 'locked', holder: error.holder, expiresAt: error.expiresAt };
  }
  const run: SyncRun = {
    id: runId,
    state: 'running',
    startedAt: startedAt.toISOString(),
    itemsCopied: 0,
    bytesCopied: 0,
    itemsPresent: 0,
    ...(context.holder && { holder: context.holder }),
  };
  try {
    // Reading and verifying sources can outlast the lease: it is renewed meanwhile, as during a copy.
    const { current, indexes } = await whileRenewing(context, runId, async () => {
      await catalog.putRun(run, lease);
      await settleAbandonedRuns(context, lease);
      await assertRoomForChannel(catalog, settings.channel);
      const modeSwitch = await checkPublishingMode(context);
      if (modeSwitch) run.modeSwitch = modeSwitch;
      const current = await catalog.getCurrent(settings.channel);
      return { current, indexes: await changedIndexes(context, current, { all: true, replan: modeSwitch !== undefined }) };
    });
    if (!indexes) {
      await catalog.putRun({ ...run, state: 'unchanged', finishedAt: context.now().toISOString() }, lease);
      context.emit({ type: 'unchanged', runId });
      // Replaced generations whose grace ran out go now, not at the next upstream change; so does the rest of a prune that stopped.
      const due = pruneDue({ publications: (await catalog.listPublications()).length, runFilesLeft: await anyRunFiles(context.objects) });
      if (due) await prune(context, runId);
      else await catalog.releaseLock(lease);
      return { runId, outcome: 'unchanged' };
    }
    return await whileRenewing(context, runId, () => stage(context, run, lease, current, indexes));
  } catch (error) {
    await failQuietly(context, runId, error);
    throw error;
  }
}

/** The rest of `plan` once a source changed: the new generation's metadata staged, and what to copy listed. */
async function stage(context: SyncContext, run: SyncRun, lease: Lease, current: Publication | undefined, indexes: ChangedIndexes): Promise<PlanOutcome> {
  const { catalog, objects, sources } = context;
  const runId = run.id;
  const reads = await sources.read(indexes, current);
  const stored = new Map<string, StoredObject>();
  for await (const object of catalog.listObjects()) stored.set(object.path, object);
  const pinned = await pinnedVersions(catalog);
  const uploads = await uploadedImages(context);
  const { plan, staged, conflicts } = context.settings.resign
    ? await resignedGeneration(context, reads, uploads.products, stored, pinned, current)
    : verbatimGeneration(reads, stored, pinned);
  const warnings = selectionWarnings(reads, pinned);
  if (warnings.length > 0) run.warnings = warnings;
  for (const message of warnings) context.emit({ type: 'warning', runId, message });
  await refuseChangesToPublishedContent(catalog, plan.objects);
  await indexStoredManifests(manifestIndexing(context, runId), plan.entries, stored, lease);
  const generation = await catalog.reserveGeneration(lease);
  await catalog.putRun({ ...run, generation }, lease);
  for (const [file, bytes] of staged) {
    await objects.put(keys.metadata({ generation, runId }, file), bytes, { contentType: contentTypeOf(file), ifAbsent: true });
  }
  await recordMetadataDigests(objects, { generation, runId }, staged);
  const storedPlan: StoredPlan = {
    runId,
    generation,
    basedOn: current?.generation,
    upstreamUpdated: newestUpdated(reads),
    files: [...staged.keys()].sort(),
    objects: plan.objects,
    entries: plan.entries,
    indexState: sources.stateOf(indexes, uploads.latest),
    conflicts,
    copyItems: plan.copy.length,
    copyBytes: plan.copyBytes,
    presentItems: plan.presentPaths,
    totalBytes: plan.totalBytes,
  };
  await writeRunFile(objects, runId, 'plan.json', storedPlan);
  await writeRunFile(objects, runId, 'copy.json', plan.copy);
  await catalog.putRun({ ...run, itemsPresent: plan.presentPaths, generation }, lease);
  context.emit({
    type: 'planned',
    runId,
    generation,
    copyItems: plan.copy.length,
    copyBytes: plan.copyBytes,
    presentItems: plan.presentPaths,
    unreferencedItems: plan.prune.length,
    totalBytes: plan.totalBytes,
  });
  return {
    runId,
    outcome: 'planned',
    generation,
    copyItems: plan.copy.length,
    copyBytes: plan.copyBytes,
    copyKey: keys.runFile(runId, 'copy.json'),
  };
}

/**
 * The switch this run makes to the mirror's recorded publishing mode, if it
 * makes one; a ConfigError when its settings name another mode and may not
 * change it (before anything is fetched or staged).
 */
async function checkPublishingMode(context: PhaseContext<StateStore & Publications>): Promise<{ from: PublishingMode; to: PublishingMode } | undefined> {
  const recorded = await recordedPublishingMode(context.catalog);
  const named = modeOfSettings(context.settings);
  const allowed = context.settings.modeChange === 'allow';
  return resolvePublishingMode(recorded, { named, namedBy: 'this sync', declarative: allowed }).switched;
}

/** Whether any run left files under `runs/` (see PruneDueInput.runFilesLeft): one listed key is enough to know. */
async function anyRunFiles(objects: SyncContext['objects']): Promise<boolean> {
  for await (const _ of objects.list('runs/')) return true;
  return false;
}

/** The index of every source when a run has something to do (see SyncSources.changed); undefined otherwise. */
async function changedIndexes(
  context: PhaseContext<StateStore>,
  current: Publication | undefined,
  options: { all: boolean; replan?: boolean },
): Promise<ChangedIndexes | undefined> {
  const replan = options.replan === true || Boolean(await context.catalog.getState(REPAIR_STATE));
  const latest = context.settings.resign ? await latestUpload(context.catalog) : '';
  return context.sources.changed(current, { all: options.all, replan, latestUpload: latest });
}
