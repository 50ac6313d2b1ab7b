/**
 * The prune phase: generations replaced longer ago than the grace period
 * go (with the package-index records of manifests only they listed), then
 * every stored file no remaining generation references, then leftovers of
 * failed runs. What goes is decided by retention.ts; this does the I/O.
 */
import { forgetUnlistedManifests, manifestsListedBy } from '../manifests.ts';
import { unreferencedPaths } from '../planner.ts';
import { keys, type Locks, type ManifestIndex, type ObjectIndex, type Publications } from '../ports.ts';
import { retainGenerations, unretainedMetadataKeys } from '../retention.ts';
import { uploadedPaths } from '../uploads.ts';
import { renewLease } from './lease.ts';
import { deleteKeys } from './runs.ts';
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
  context.emit({ type: 'pruned', runId, paths: deletedPaths.length, generations: retired });
  return { deletedPaths, deletedGenerations: retired };
}
