/**
 * The publish phase: checks every file the planned generation lists is
 * stored as promised, stores its entries, and switches the channel to it
 * atomically, with the state the next run compares upstream with.
 */
import { ConflictError, IntegrityError } from '../errors.ts';
import { isStoredAs } from '../planner.ts';
import { PUBLISHING_MODE_STATE, modeOfSettings } from '../publishing-mode.ts';
import {
  SOURCE_CONFLICTS_STATE,
  type Locks,
  type ObjectIndex,
  type Publication,
  type Publications,
  type RunLog,
  type StateStore,
  type StoredObject,
} from '../ports.ts';
import { renewLease } from './lease.ts';
import { INDEX_STATE, REPAIR_STATE, channelStateKey, readRunFile } from './runs.ts';
import type { PhaseContext, StoredPlan } from './types.ts';

/** Entries stored per catalog call. */
const ENTRY_BATCH = 1_000;

/** Checks every listed file is stored as promised, then switches the current publication atomically. */
export async function publish(context: PhaseContext<Locks & Publications & ObjectIndex & StateStore & RunLog>, runId: string): Promise<Publication> {
  const { catalog, objects, settings } = context;
  const lease = await renewLease(context, runId);
  const plan = await readRunFile<StoredPlan>(objects, runId, 'plan.json');
  const current = await catalog.getCurrent(settings.channel);
  if (current?.generation !== plan.basedOn) {
    throw new ConflictError(
      `generation ${current?.generation ?? 'none'} was published while run ${runId} (based on ${plan.basedOn ?? 'none'}) ran`,
    );
  }
  const stored = new Map<string, StoredObject>();
  for await (const object of catalog.listObjects()) stored.set(object.path, object);
  for (const task of plan.objects) {
    if (!isStoredAs(stored.get(task.path), task)) {
      throw new IntegrityError(task.path, 'not stored with the size and digest the metadata promises; refusing to publish');
    }
  }
  // The sha256 the metadata promises; for an item that declares none, the one its verified bytes have.
  const entries = plan.entries.map((entry) => ({ ...entry, sha256: entry.sha256 || (stored.get(entry.path)?.sha256 ?? '') }));
  // A crashed earlier attempt of this run may have left entries for its generation: start clean.
  await catalog.deletePublication(plan.generation, lease);
  for (let i = 0; i < entries.length; i += ENTRY_BATCH) {
    await catalog.putEntries(plan.generation, entries.slice(i, i + ENTRY_BATCH), lease);
  }
  const publication: Publication = {
    generation: plan.generation,
    upstreamUpdated: plan.upstreamUpdated,
    publishedAt: context.now().toISOString(),
    runId,
    files: plan.files,
    itemCount: entries.length,
    totalBytes: plan.totalBytes,
  };
  await objects.persist();
  await catalog.publish(publication, plan.basedOn, lease, settings.channel);
  // Each channel remembers the upstream index it was last published from: one may be behind another.
  await catalog.setState(channelStateKey(INDEX_STATE, settings.channel), JSON.stringify(plan.indexState), lease);
  await catalog.setState(channelStateKey(SOURCE_CONFLICTS_STATE, settings.channel), JSON.stringify(plan.conflicts ?? []), lease);
  // From the first publication on, later runs follow this mode unless told to switch (see publishing-mode.ts).
  const mode = modeOfSettings(settings);
  if ((await catalog.getState(PUBLISHING_MODE_STATE)) !== mode) await catalog.setState(PUBLISHING_MODE_STATE, mode, lease);
  if (await catalog.getState(REPAIR_STATE)) await catalog.setState(REPAIR_STATE, '', lease);
  const run = await catalog.getRun(runId);
  await catalog.putRun(
    {
      ...(run ?? { id: runId, startedAt: publication.publishedAt, itemsPresent: plan.presentItems }),
      state: 'succeeded',
      finishedAt: context.now().toISOString(),
      itemsCopied: plan.copyItems,
      bytesCopied: plan.copyBytes,
      generation: plan.generation,
    },
    lease,
  );
  context.emit({
    type: 'published',
    runId,
    generation: plan.generation,
    upstreamUpdated: plan.upstreamUpdated,
    items: entries.length,
    channel: settings.channel,
    ...(plan.basedOn !== undefined && { previousGeneration: plan.basedOn }),
  });
  return publication;
}
