/**
 * The copy phase: one item fetched and verified while it streams, whole or
 * (for callers with a time limit) as ranged parts over several calls; only
 * verified bytes become visible, and an item already stored as promised is
 * skipped.
 */
import { verifyAll, verifyingStream, type VerifiedContent } from '../checksum.ts';
import { contentTypeOf } from '../content-types.ts';
import { IntegrityError, ObjectExistsError, UnavailableError, UpstreamError } from '../errors.ts';
import { indexIfManifest, type ManifestIndexing } from '../manifests.ts';
import { isStoredAs, type CopyTask } from '../planner.ts';
import {
  keys,
  type ByteStream,
  type Lease,
  type Locks,
  type ManifestIndex,
  type ObjectIndex,
  type PartUpload,
  type StoredObject,
  type UploadedPart,
} from '../ports.ts';
import { renewLease, watched } from './lease.ts';
import type { CopiedItem, PhaseContext, RangedCopy, SyncContext, UnfinishedCopy } from './types.ts';

/** What copying needs: the index of stored objects, the lease, and the package index its manifests go to. */
export type CopyContext = PhaseContext<ObjectIndex & Locks & ManifestIndex>;

/** Fetches one item, verifying size and digest while it streams; only verified bytes become visible. */
export async function copy(context: CopyContext, runId: string, task: CopyTask): Promise<CopiedItem> {
  const { catalog, objects } = context;
  const lease = await renewLease(context, runId);
  const settled = await settleStored(context, runId, task, lease);
  if (settled) return settled;
  const key = keys.item(task.path);
  const { body } = await context.sources.upstreamOf(task).openStream(task.path);
  const verifier = verifyingStream(watched(context, runId, task.path, lease, body), task);
  await closedOnFailure(body, objects.put(key, verifier.stream, { size: task.size, ifAbsent: true }));
  await catalog.recordObject(storedObject(task.path, verifier.result(), context.now()), lease);
  await indexIfManifest(manifestIndexing(context, runId), { ...task, sha256: verifier.result().sha256 }, lease);
  context.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: false });
  return { path: task.path, size: task.size, skipped: false };
}

/** `copy`, tried again (with backoff) after a transient upstream or store error, up to `settings.attempts` times. */
export async function copyWithRetries(context: CopyContext, runId: string, task: CopyTask): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await copy(context, runId, task);
      return;
    } catch (error) {
      // A create that lost to a concurrent writer finds the key taken: the next attempt replaces unvouched bytes.
      const transient = error instanceof UpstreamError || error instanceof UnavailableError || error instanceof ObjectExistsError;
      if (!transient || attempt >= context.settings.attempts) throw error;
      context.emit({ type: 'item-retry', runId, path: task.path, attempt, error: (error as Error).message });
      await context.sleep(500 * 2 ** (attempt - 1));
    }
  }
}

/**
 * One invocation's share of an item's copy, for callers with a time limit
 * (a Lambda). Items up to the ranged-copy threshold, and every item on a
 * store without parted writes, are copied whole, as `copy` does. Larger
 * ones are fetched as byte ranges, each stored as one part, until
 * `budgetMs` would run out before another part: then the call hands back
 * a continuation, which the next call for the item takes up (at least one
 * part per call, so every call makes progress). Once every part is stored,
 * the parts are joined at the item's key (create-only) and the whole object
 * is read back through the size and digest checks before it is recorded;
 * bytes that fail them are deleted and the item fails with IntegrityError.
 * An error that retrying cannot cure aborts the upload; a transient one
 * leaves it for the retry, which comes back with the same continuation.
 */
export async function copyWithinBudget(
  context: CopyContext,
  runId: string,
  task: CopyTask,
  budgetMs: number,
  resume?: RangedCopy,
): Promise<CopiedItem | UnfinishedCopy> {
  const { objects } = context;
  const parts = objects.parts;
  const ranged = context.settings.rangedCopy;
  if (!resume && (!parts || task.size <= ranged.thresholdBytes)) return copy(context, runId, task);
  if (!parts) throw new Error(`${task.path}: a ranged copy was resumed on a store without parted writes`);
  const startedAt = context.now().getTime();
  const lease = await renewLease(context, runId);
  const key = keys.item(task.path);
  let progress = resume;
  if (!progress) {
    const settled = await settleStored(context, runId, task, lease);
    if (settled) return settled;
    const upload = await parts.start(key, { contentType: contentTypeOf(task.path) });
    progress = { uploadId: upload.uploadId, partBytes: rangedPartBytes(task.size, ranged.partBytes, parts), parts: [] };
  }
  const upload: PartUpload = { key, uploadId: progress.uploadId };
  if (resume) {
    // A retried call whose first attempt joined (or even recorded) the item before it was cut short:
    // what it left under the key is checked where it lies, like any unvouched bytes.
    const settled = await settleStored(context, runId, task, lease);
    if (settled) {
      await parts.abort(upload);
      return settled;
    }
  }
  const partCount = Math.ceil(task.size / progress.partBytes);
  try {
    let longestPartMs = 0;
    let storedNow = 0;
    while (progress.parts.length < partCount) {
      const elapsed = context.now().getTime() - startedAt;
      if (storedNow > 0 && elapsed + longestPartMs > budgetMs) return unfinished(context, runId, task, progress);
      const partStartedAt = context.now().getTime();
      const partNumber = progress.parts.length + 1;
      const start = (partNumber - 1) * progress.partBytes;
      const end = Math.min(task.size, start + progress.partBytes) - 1;
      const { body } = await context.sources.upstreamOf(task).openRange(task.path, { start, end });
      const part: UploadedPart = await closedOnFailure(
        body,
        parts.putPart(upload, partNumber, watched(context, runId, task.path, lease, body), end - start + 1),
      );
      progress = { ...progress, parts: [...progress.parts, part] };
      storedNow++;
      longestPartMs = Math.max(longestPartMs, context.now().getTime() - partStartedAt);
    }
    // Reading the whole object back takes a while too: a call that spent its budget leaves it to the next.
    if (storedNow > 0 && context.now().getTime() - startedAt > budgetMs) return unfinished(context, runId, task, progress);
    await parts.complete(upload, progress.parts, { ifAbsent: true });
  } catch (error) {
    const retryable = error instanceof UpstreamError || error instanceof UnavailableError;
    if (!retryable) await parts.abort(upload).catch(() => undefined);
    throw error;
  }
  // Joined, the bytes sit under the item's key, unvouched: checked where they lie, and removed unless they are the promised ones.
  let verified: VerifiedContent;
  try {
    verified = await verifyAll((await objects.get(key)).body, task);
  } catch (error) {
    if (!(error instanceof IntegrityError)) throw error;
    await objects.delete(key);
    const problem = error.message.slice(`${task.path}: `.length);
    throw new IntegrityError(task.path, `joined from its ranged parts, ${problem}; deleted`);
  }
  await context.catalog.recordObject(storedObject(task.path, verified, context.now()), lease);
  await indexIfManifest(manifestIndexing(context, runId), { ...task, sha256: verified.sha256 }, lease);
  context.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: false });
  return { path: task.path, size: task.size, skipped: false };
}

/** What indexing a run's manifests needs, problems reported as the run's events. */
export function manifestIndexing(context: Pick<SyncContext, 'objects' | 'now' | 'emit'> & { catalog: ManifestIndex }, runId: string): ManifestIndexing {
  const { objects, catalog, now } = context;
  const onProblem = (path: string, problem: string) => context.emit({ type: 'manifest-unindexed', runId, path, problem });
  return { objects, catalog, now, onProblem };
}

function unfinished(context: CopyContext, runId: string, task: CopyTask, progress: RangedCopy): UnfinishedCopy {
  const copiedBytes = Math.min(task.size, progress.parts.length * progress.partBytes);
  context.emit({ type: 'item-continued', runId, path: task.path, copiedBytes, parts: progress.parts.length });
  return { path: task.path, size: task.size, continuation: progress, copiedBytes };
}

/**
 * Settles an item before it is downloaded: stored as promised (skipped),
 * or unvouched bytes under its key that turn out to be the promised ones
 * (recorded, skipped). Other unvouched bytes are removed. undefined: the
 * item must be fetched.
 */
async function settleStored(context: CopyContext, runId: string, task: CopyTask, lease: Lease): Promise<CopiedItem | undefined> {
  const { catalog, objects } = context;
  if (isStoredAs(await catalog.getObject(task.path), task)) {
    context.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: true });
    return { path: task.path, size: task.size, skipped: true };
  }
  const key = keys.item(task.path);
  if (await objects.head(key)) {
    // Bytes the catalog does not vouch for: a run that died between storing and recording
    // them, or bytes verify found bad. Checked where they lie, they are kept when they are
    // the promised ones (no download, no moment without them); otherwise, since the plan
    // refused any path a retained generation promises other content for, only the
    // promised bytes can take their place.
    const found = await verifyStored(context, key, task);
    if (found) {
      await catalog.recordObject(storedObject(task.path, found, context.now()), lease);
      await indexIfManifest(manifestIndexing(context, runId), { ...task, sha256: found.sha256 }, lease);
      context.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: true });
      return { path: task.path, size: task.size, skipped: true };
    }
    await catalog.forgetObject(task.path, lease);
    await objects.delete(key);
  }
  return undefined;
}

/** The stored bytes at `key` checked against `task`: their verified content, or undefined when they differ. */
async function verifyStored(context: Pick<SyncContext, 'objects'>, key: string, task: CopyTask): Promise<VerifiedContent | undefined> {
  const { body } = await context.objects.get(key);
  try {
    return await verifyAll(body, task);
  } catch (error) {
    if (error instanceof IntegrityError) return undefined;
    throw error;
  }
}

/**
 * `writing`, and when it fails, `body` closed: a store may refuse before it
 * reads a byte (a create-only put whose key was taken meanwhile), and an
 * unread download left open holds its connection.
 */
async function closedOnFailure<T>(body: ByteStream, writing: Promise<T>): Promise<T> {
  try {
    return await writing;
  } catch (error) {
    try {
      await body[Symbol.asyncIterator]().return?.();
    } catch {
      // The write's failure is the one to report.
    }
    throw error;
  }
}

/**
 * The part size for an item: the configured one, at least the store's
 * smallest, and large enough that the item needs no more parts than the
 * store allows.
 */
function rangedPartBytes(size: number, configured: number, parts: { minPartBytes: number; maxParts: number }): number {
  return Math.max(configured, parts.minPartBytes, Math.ceil(size / parts.maxParts));
}

function storedObject(path: string, verified: VerifiedContent, now: Date): StoredObject {
  return { path, size: verified.size, sha256: verified.sha256, digests: verified.digests, storedAt: now.toISOString() };
}
