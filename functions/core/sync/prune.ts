/**
 * The prune phase: generations replaced longer ago than the grace period
 * go (with the package-index records of manifests only they listed), then
 * every stored file no remaining generation references, then leftovers of
 * failed runs. What goes is decided by retention.ts; this does the I/O.
 *
 * Resumable: the paths to delete are written to the run's files before the
 * first delete, and run files go only once everything else has. A prune
 * stopped in between (killed, or a store error) leaves that list behind;
 * the next prune deletes whatever of it is still unreferenced, including
 * bytes whose catalog record was forgotten just before the stop.
 */
import { forgetUnlistedManifests, manifestsListedBy } from '../manifests.ts';
import { unreferencedPaths } from '../planner.ts';
import { NotFoundError } from '../errors.ts';
import { keys, type Locks, type ManifestIndex, type ObjectIndex, type ObjectStore, type Publications } from '../ports.ts';
import { leftoverPrunePaths, retainGenerations, unretainedMetadataKeys } from '../retention.ts';
import { uploadedPaths } from '../uploads.ts';
import { renewLease } from './lease.ts';
import { deleteKeys, readRunFile, writeRunFile } from './runs.ts';
import type { PhaseContext, PruneResult } from './types.ts';

/** Drops what no retained generation needs (see the module comment). Releases the lock. */
export async function prune(context: PhaseContext<Locks & Publications & ManifestIndex & ObjectIndex>, runId: string): Promise<PruneResult> {
  const { catalog, objects, settings } = context;
  const now = context.now();
  const lease = await renewLease(context, runId);
  const publications = await catalog.listPublications();
  const { retained, retired } = retainGenerations({
    publications,
    channels: await catalog.listChannels(),
    keepGenerations: settings.keepGenerations,
    pruneGraceMs: settings.pruneGraceMs,
    now,
  });
  const retiredManifests = await manifestsListedBy(catalog, retired);
  for (const generation of retired) await catalog.deletePublication(generation, lease);
  await forgetUnlistedManifests(catalog, retiredManifests, retained, lease);

  const referenced = new Set<string>();
  for (const generation of retained) {
    for await (const entry of catalog.listEntries(generation)) referenced.add(entry.path);
  }
  const storedPaths: string[] = [];
  for await (const object of catalog.listObjects()) storedPaths.push(object.path);
  // Read after the catalog: an upload writes its record before its catalog records, so none it recorded is missed.
  for (const path of await uploadedPaths(objects)) referenced.add(path);
  const deletedPaths = unreferencedPaths(storedPaths, referenced);
  const leftovers = leftoverPrunePaths(await pendingPrunePaths(objects), referenced, new Set(storedPaths));
  for (const path of leftovers) await objects.delete(keys.item(path));
  if (deletedPaths.length > 0) await writeRunFile(objects, runId, PRUNE_FILE, deletedPaths);
  for (const path of deletedPaths) {
    // Forget first: a crash in between leaves stray bytes, never a catalog entry without bytes.
    await catalog.forgetObject(path, lease);
    await objects.delete(keys.item(path));
  }
  const retainedPublications = publications.filter((publication) => retained.includes(publication.generation));
  const metadataKeys: string[] = [];
  for await (const object of objects.list('meta/')) metadataKeys.push(object.key);
  for (const key of unretainedMetadataKeys(metadataKeys, retainedPublications)) await objects.delete(key);
  await deleteKeys(objects, 'runs/', () => true);
  await catalog.releaseLock(lease);
  context.emit({ type: 'pruned', runId, paths: deletedPaths.length + leftovers.length, generations: retired });
  return { deletedPaths: [...deletedPaths, ...leftovers], deletedGenerations: retired };
}

/** A prune's list of the paths it is deleting, among its run's files until it finishes. */
const PRUNE_FILE = 'prune.json';

/** Every path an unfinished prune listed to delete. */
async function pendingPrunePaths(objects: ObjectStore): Promise<string[]> {
  const runIds: string[] = [];
  for await (const object of objects.list('runs/')) {
    const [, runId, name] = object.key.split('/');
    if (runId && name === PRUNE_FILE) runIds.push(runId);
  }
  const paths: string[] = [];
  for (const runId of runIds) {
    const listed = await readRunFile<string[]>(objects, runId, PRUNE_FILE).catch((error: unknown) => {
      if (error instanceof NotFoundError) return [];
      throw error;
    });
    paths.push(...listed);
  }
  return paths;
}
