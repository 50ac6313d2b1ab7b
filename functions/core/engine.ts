/**
 * The sync engine: plan → copy → publish → prune, over the ports only.
 * `run()` does a whole sync in one process (CLI); the phases are public so
 * Step Functions can call them from separate Lambdas, passing only a run id
 * and one copy task at a time.
 *
 * Integrity rules, each enforced in one place here:
 * - Bytes under a path that a retained generation lists never change: items
 *   are written create-only, and a plan whose upstream promises other bytes
 *   at such a path fails before anything is copied (PublishedContentError).
 * - Every catalog write of a run is fenced by its lease (owner + epoch), so
 *   a run that lost the lock can change nothing; only `plan` takes the lock,
 *   every later phase renews it, and a long copy renews it while it streams.
 * - A run whose holder is known dead (same host, process gone) or whose
 *   lease ran out is recorded `abandoned` by the next run, which takes over
 *   at once and removes what the dead run staged.
 */
import { randomBytes } from 'node:crypto';
import { assertRoomForChannel } from './channels.ts';
import { forEachLimited } from './concurrency.ts';
import {
  ConfigError,
  ConflictError,
  IntegrityError,
  LeaseLostError,
  LockHeldError,
  NotFoundError,
  ObjectExistsError,
  PublishedContentError,
  UnavailableError,
  UpstreamError,
} from './errors.ts';
import { declaredDigests, verifyAll, verifyingStream, type VerifiedContent } from './checksum.ts';
import { contentTypeOf } from './content-types.ts';
import {
  forgetUnlistedManifests,
  indexIfManifest,
  indexStoredManifests,
  isManifest,
  manifestsListedBy,
  type ManifestIndexing,
} from './manifests.ts';
import { servedIndexUpdated, type MetadataLimits } from './metadata.ts';
import {
  buildPublishedStream,
  curateProducts,
  keyringFiles,
  nextUpdated,
  serializePublishedStream,
} from './publish-metadata.ts';
import { upstreamCopyPrefix } from './published-files.ts';
import { mergeSources, type SourceConflict, type SourceProducts } from './sources.ts';
import { SyncSources, type ChangedIndexes, type IndexState, type MergedIndexState, type SourceRead, type SourceSettings } from './sync-sources.ts';
import { parseUpdated, type ProductsDocument } from './simplestreams.ts';
import { openSigningKeys } from './signing-keys.ts';
import { isStoredAs, planSync, selectItems, unreferencedPaths, type CopyTask, type Selection, type SyncPlan } from './planner.ts';
import { uploadedProducts } from './custom-images.ts';
import { latestUpload, listUploadRecords, uploadedPaths } from './uploads.ts';
import { clearsign, type Keyring } from './pgp.ts';
import { pinnedVersions } from './pins.ts';
import { syncDefaults, type RangedCopySettings } from './settings.ts';
import {
  DEFAULT_CHANNEL,
  PRIMARY_SOURCE,
  SOURCE_CONFLICTS_STATE,
  UPLOADS_SOURCE,
  keys,
  type ByteStream,
  type Catalog,
  type CatalogEntry,
  type Lease,
  type LockHolder,
  type ObjectStore,
  type PartUpload,
  type UploadedPart,
  type Publication,
  type SigningKeyStore,
  type StoredObject,
  type SyncRun,
  type Upstream,
} from './ports.ts';

export const SYNC_LOCK = 'sync';
const INDEX_STATE = 'upstream-index';
/** Set by `requestRepair` and `requestRepublish`: the next run re-plans from upstream even when its index has not changed. */
const REPAIR_STATE = 'repair-requested';
const ENTRY_BATCH = 1_000;

/** What the engine runs with; `settings.ts` holds the defaults and builds this from a validated SyncConfig. */
export interface SyncSettings {
  /** undefined only when the operator asked for `--no-verify` (unsigned `.json` sources). */
  keyring: Keyring | undefined;
  selection: Selection;
  /** Items copied at once by `run()`. */
  concurrency: number;
  /** How long a replaced generation (and files only it references) stays, for clients mid-download. */
  pruneGraceMs: number;
  /** Lease of the sync lock; every phase renews it, and a copy renews it every third of it while it streams. */
  lockTtlMs: number;
  /** Attempts per item in `run()` for transient upstream/store errors. */
  attempts: number;
  /** Bounds on the metadata one run reads. @default defaultMetadataLimits */
  limits?: Partial<MetadataLimits>;
  /** The channel a run publishes to. @default DEFAULT_CHANNEL */
  channel?: string;
  /** Generations each channel keeps (the one it points at and those before it, for `rollback`). @default 1 */
  keepGenerations?: number;
  /** When `copyWithinBudget` copies an item in ranged parts, and how large they are. @default syncDefaults.rangedCopy */
  rangedCopy?: RangedCopySettings;
  /**
   * Publish the mirror's own metadata, listing exactly what it stores and
   * signed with its own key (`EngineDeps.signingKeys`), instead of upstream's
   * verbatim. @default false
   */
  resign?: boolean;
  /**
   * Several sources merged into one stream (needs `resign`), each fetched
   * from `EngineDeps.upstreams` under its name. undefined: the one source of
   * `keyring` and `selection`, fetched from `EngineDeps.upstream`.
   */
  sources?: readonly SourceSettings[];
}

export type { SourceSettings } from './sync-sources.ts';

export type SyncEvent =
  | { type: 'unchanged'; runId: string }
  | { type: 'locked'; runId: string; holder: string; expiresAt: string }
  | { type: 'abandoned'; runId: string; abandonedRun: string; reason: string }
  | {
      type: 'planned';
      runId: string;
      generation: number;
      copyItems: number;
      copyBytes: number;
      presentItems: number;
      /** Stored files the new generation no longer lists. */
      unreferencedItems: number;
      totalBytes: number;
    }
  | { type: 'item-progress'; runId: string; path: string; bytes: number }
  | { type: 'item-stored'; runId: string; path: string; size: number; skipped: boolean }
  | { type: 'item-retry'; runId: string; path: string; attempt: number; error: string }
  /** A ranged copy stopped for this call, to go on in the next. */
  | { type: 'item-continued'; runId: string; path: string; copiedBytes: number; parts: number }
  /** A package manifest left out of the package index (unparsable, or unreadable for now); the sync goes on. */
  | { type: 'manifest-unindexed'; runId: string; path: string; problem: string }
  | { type: 'published'; runId: string; generation: number; upstreamUpdated: string; items: number }
  | { type: 'pruned'; runId: string; paths: number; generations: number[] }
  | { type: 'failed'; runId: string; error: string };

export interface EngineDeps {
  /** The one source, unless `SyncSettings.sources` lists several. */
  upstream?: Upstream;
  /** Each of `SyncSettings.sources`, by name. */
  upstreams?: ReadonlyMap<string, Upstream>;
  objects: ObjectStore;
  catalog: Catalog;
  now?: () => Date;
  onEvent?: (event: SyncEvent) => void;
  sleep?: (ms: number) => Promise<void>;
  /** This process, recorded with each run it starts. @default none (a Lambda: its lease is what ends it) */
  holder?: LockHolder;
  /**
   * Whether a run's recorded process still lives: false only when known dead
   * (same host, no such process), undefined when it cannot tell. @default can never tell
   */
  isAlive?: (holder: LockHolder) => boolean | undefined;
  /** The mirror's own keys; needed (and read, by `plan` only) in re-signed mode. */
  signingKeys?: SigningKeyStore;
}

export type PlanOutcome =
  | { runId: string; outcome: 'unchanged' }
  | { runId: string; outcome: 'locked'; holder: string; expiresAt: string }
  | {
      runId: string;
      outcome: 'planned';
      generation: number;
      copyItems: number;
      copyBytes: number;
      /** Object-store key of the JSON array of CopyTasks (for a Distributed Map). */
      copyKey: string;
    };

export interface CopiedItem {
  path: string;
  size: number;
  /** Already stored as promised: nothing was downloaded. */
  skipped: boolean;
}

/**
 * Where a ranged copy stands between invocations: plain data, handed back
 * by `copyWithinBudget` and given to the next call for the same item.
 */
export interface RangedCopy {
  uploadId: string;
  /** Bytes in every part but the last. */
  partBytes: number;
  /** Parts stored so far, in order: part n holds bytes from (n − 1) × partBytes. */
  parts: UploadedPart[];
}

/** An item whose copy goes on in the next call, with `continuation`. */
export interface UnfinishedCopy {
  path: string;
  size: number;
  continuation: RangedCopy;
  /** Bytes stored so far. */
  copiedBytes: number;
}

export interface PruneResult {
  deletedPaths: string[];
  deletedGenerations: number[];
}

/** Runs looked at for ones to settle as abandoned. */
const RECENT_RUNS = 20;

/** What `plan` leaves for `publish`, in the object store. */
interface StoredPlan {
  runId: string;
  generation: number;
  basedOn: number | undefined;
  upstreamUpdated: string;
  files: string[];
  /** Every unique selected path with its expected content. */
  objects: CopyTask[];
  entries: CatalogEntry[];
  indexState: IndexState | MergedIndexState;
  /** Where merged sources offered the same product or path, and which gave way. */
  conflicts?: SourceConflict[];
  copyItems: number;
  copyBytes: number;
  presentItems: number;
  totalBytes: number;
}

/**
 * After `verify` found stored bytes that differ from what the publication
 * promises: forgets them, so the next run fetches them again (replacing
 * only those bytes, with the promised ones), and makes that run re-plan even
 * though upstream has not changed.
 */
export async function requestRepair(catalog: Catalog, paths: readonly string[]): Promise<void> {
  for (const path of paths) await catalog.forgetObject(path);
  await catalog.setState(REPAIR_STATE, paths.join('\n'));
}

/**
 * After the signing keys changed (rotated, or a previous key retired): the
 * next run publishes again, signed and with the keyring as they now are,
 * even though upstream has not changed.
 */
export async function requestRepublish(catalog: Catalog, reason: string): Promise<void> {
  await catalog.setState(REPAIR_STATE, reason);
}

export function newRunId(now: Date): string {
  return `${now.toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`;
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

export class SyncEngine {
  private readonly now: () => Date;
  private readonly emit: (event: SyncEvent) => void;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly sources: SyncSources;

  private readonly deps: EngineDeps;
  private readonly settings: SyncSettings;
  constructor(
    deps: EngineDeps,
    settings: SyncSettings,
  ) {
    this.deps = deps;
    this.settings = settings;
    this.sources = new SyncSources(deps, settings, channelStateKey(INDEX_STATE, settings.channel ?? DEFAULT_CHANNEL));
    this.now = deps.now ?? (() => new Date());
    this.emit = deps.onEvent ?? (() => {});
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** A whole sync in this process. Resolves with the run record; rejects (after recording it) on failure. */
  async run(runId = newRunId(this.now())): Promise<SyncRun> {
    const planned = await this.plan(runId);
    if (planned.outcome === 'locked') {
      throw new LockHeldError(planned.holder, planned.expiresAt);
    }
    if (planned.outcome === 'planned') {
      try {
        // Largest first: the long downloads start at once and the small ones fill the gaps beside them.
        const tasks = (await this.readRunFile<CopyTask[]>(runId, 'copy.json')).sort((a, b) => b.size - a.size);
        await this.whileRenewing(runId, () =>
          forEachLimited(tasks, this.settings.concurrency, (task) => this.copyWithRetries(runId, task)),
        );
        await this.publish(runId);
        await this.prune(runId);
      } catch (error) {
        await this.failQuietly(runId, error);
        throw error;
      }
    }
    return (await this.deps.catalog.getRun(runId)) as SyncRun;
  }

  /** Conditional GET of the index only: does a run have anything to do? */
  async check(): Promise<{ changed: boolean }> {
    const indexes = await this.changedIndexes(await this.deps.catalog.getCurrent(this.channel), { all: false });
    return { changed: indexes !== undefined };
  }

  /** Takes the lock, verifies upstream metadata, stages it as the next generation and lists what to copy. */
  async plan(runId: string): Promise<PlanOutcome> {
    const { catalog } = this.deps;
    const startedAt = this.now();
    let lease: Lease;
    try {
      lease = await this.takeLock(runId);
    } catch (error) {
      if (!(error instanceof LockHeldError)) throw error;
      this.emit({ type: 'locked', runId, holder: error.holder, expiresAt: error.expiresAt });
      return { runId, outcome: 'locked', holder: error.holder, expiresAt: error.expiresAt };
    }
    const run: SyncRun = {
      id: runId,
      state: 'running',
      startedAt: startedAt.toISOString(),
      itemsCopied: 0,
      bytesCopied: 0,
      itemsPresent: 0,
      ...(this.deps.holder && { holder: this.deps.holder }),
    };
    try {
      // Reading and verifying sources can outlast the lease: it is renewed meanwhile, as during a copy.
      const { current, indexes } = await this.whileRenewing(runId, async () => {
        await catalog.putRun(run, lease);
        await this.settleAbandonedRuns(lease);
        await assertRoomForChannel(catalog, this.channel);
        const current = await catalog.getCurrent(this.channel);
        return { current, indexes: await this.changedIndexes(current, { all: true }) };
      });
      if (!indexes) {
        await catalog.putRun({ ...run, state: 'unchanged', finishedAt: this.now().toISOString() }, lease);
        this.emit({ type: 'unchanged', runId });
        // Replaced generations whose grace ran out go now, not at the next upstream change.
        if ((await catalog.listPublications()).length > 1) await this.prune(runId);
        else await catalog.releaseLock(lease);
        return { runId, outcome: 'unchanged' };
      }
      return await this.whileRenewing(runId, () => this.stage(run, lease, current, indexes));
    } catch (error) {
      await this.failQuietly(runId, error);
      throw error;
    }
  }

  /** The rest of `plan` once a source changed: the new generation's metadata staged, and what to copy listed. */
  private async stage(run: SyncRun, lease: Lease, current: Publication | undefined, indexes: ChangedIndexes): Promise<PlanOutcome> {
    const { catalog, objects } = this.deps;
    const runId = run.id;
    const reads = await this.sources.read(indexes, current);
    const stored = new Map<string, StoredObject>();
    for await (const object of catalog.listObjects()) stored.set(object.path, object);
    const pinned = await pinnedVersions(catalog);
    const uploads = await this.uploadedImages();
    const { plan, staged, conflicts } = this.settings.resign
      ? await this.resignedPlan(reads, uploads.products, stored, pinned, current)
      : verbatimPlan(reads, stored, pinned);
    await this.refuseChangesToPublishedContent(plan.objects);
    await indexStoredManifests(this.manifestIndexing(runId), plan.entries, stored, lease);
    const generation = await catalog.reserveGeneration(lease);
    await catalog.putRun({ ...run, generation }, lease);
    for (const [file, bytes] of staged) {
      await objects.put(keys.metadata({ generation, runId }, file), bytes, { contentType: contentTypeOf(file), ifAbsent: true });
    }
    const storedPlan: StoredPlan = {
      runId,
      generation,
      basedOn: current?.generation,
      upstreamUpdated: newestUpdated(reads),
      files: [...staged.keys()].sort(),
      objects: plan.objects,
      entries: plan.entries,
      indexState: this.sources.stateOf(indexes, uploads.latest),
      conflicts,
      copyItems: plan.copy.length,
      copyBytes: plan.copyBytes,
      presentItems: plan.presentPaths,
      totalBytes: plan.totalBytes,
    };
    await this.writeRunFile(runId, 'plan.json', storedPlan);
    await this.writeRunFile(runId, 'copy.json', plan.copy);
    await catalog.putRun({ ...run, itemsPresent: plan.presentPaths, generation }, lease);
    this.emit({
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
   * A re-signed generation: each source's products cut down to what its
   * own selection keeps, merged (conflicts resolved by priority), planned as
   * one; its metadata lists exactly those items (all verified and stored
   * before `publish` switches to them), signed now with the active key,
   * with the keyring that verifies them and, unserved, the upstream files
   * each source's part was made from.
   */
  private async resignedPlan(
    reads: readonly SourceRead[],
    uploaded: readonly { file: string; doc: ProductsDocument }[],
    stored: ReadonlyMap<string, StoredObject>,
    pinned: ReadonlySet<string>,
    current: Publication | undefined,
  ): Promise<PlannedGeneration> {
    const store = this.deps.signingKeys;
    if (!store) throw new ConfigError('re-signed mode needs the mirror\'s signing key store');
    const sources: SourceProducts[] = reads.map(({ source, metadata }) => ({
      source: source.name,
      priority: source.priority,
      index: metadata.index,
      products: metadata.products.flatMap(({ file, doc }) => {
        const selected = new Set(
          selectItems(file, doc, { ...source.selection, pinned }).map((item) => itemKey(item.contentId, item.productName, item.versionName, item.itemName)),
        );
        const curated = curateProducts(doc, (product, version, item) => selected.has(itemKey(doc.content_id, product, version, item)));
        return curated ? [{ file, doc: curated }] : [];
      }),
    }));
    // The site's own images: every uploaded version, above every source (their product ids are the mirror's own).
    if (uploaded.length > 0) sources.push({ source: UPLOADS_SOURCE, priority: Number.MAX_SAFE_INTEGER, products: uploaded });
    const merged = mergeSources(sources);
    const planned = planSync({
      products: merged.products.map(({ base, doc }) => ({ file: base, doc })),
      selection: { filters: [] },
      stored,
    });
    const fromSource = (task: CopyTask): CopyTask => ({ ...task, source: merged.sourceOfPath.get(task.path) ?? PRIMARY_SOURCE });
    const plan = { ...planned, objects: planned.objects.map(fromSource), copy: planned.copy.map(fromSource) };

    const now = this.now();
    const signing = await openSigningKeys(store, now, this.deps.catalog);
    const previous = current && (await servedIndexUpdated(this.deps.objects, current, this.settings.limits));
    const stream = buildPublishedStream({ products: merged.products, updated: nextUpdated(now, previous), ...(merged.index && { sourceIndex: merged.index }) });
    const staged = await serializePublishedStream(stream, (text) => clearsign(text, signing.signer, now));
    for (const [file, bytes] of keyringFiles(signing.published)) staged.set(file, bytes);
    for (const { source, metadata } of reads) {
      for (const [file, bytes] of metadata.files) staged.set(`${upstreamCopyPrefix(source.name)}${file}`, bytes);
    }
    return { plan, staged, conflicts: merged.conflicts };
  }

  /**
   * The custom images `skystreams upload` stored, as products to plan beside
   * upstream's: every version, whatever the filters and max (re-signed mode
   * only: verbatim mode publishes upstream's signed files unchanged). With
   * the newest upload they include, read first, so none is missed by both
   * this run and the next check.
   */
  private async uploadedImages(): Promise<{ products: { file: string; doc: ProductsDocument }[]; latest: string }> {
    if (!this.settings.resign) return { products: [], latest: '' };
    const latest = await latestUpload(this.deps.catalog);
    return { products: uploadedProducts(await listUploadRecords(this.deps.objects)), latest };
  }

  /** Fetches one item, verifying size and digest while it streams; only verified bytes become visible. */
  async copy(runId: string, task: CopyTask): Promise<CopiedItem> {
    const { catalog, objects } = this.deps;
    const lease = await this.renewLease(runId);
    const settled = await this.settleStored(runId, task, lease);
    if (settled) return settled;
    const key = keys.item(task.path);
    const { body } = await this.sources.upstreamOf(task).openStream(task.path);
    const verifier = verifyingStream(this.watched(runId, task.path, lease, body), task);
    await closedOnFailure(body, objects.put(key, verifier.stream, { size: task.size, ifAbsent: true }));
    await catalog.recordObject(storedObject(task.path, verifier.result(), this.now()), lease);
    await indexIfManifest(this.manifestIndexing(runId), { ...task, sha256: verifier.result().sha256 }, lease);
    this.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: false });
    return { path: task.path, size: task.size, skipped: false };
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
  async copyWithinBudget(runId: string, task: CopyTask, budgetMs: number, resume?: RangedCopy): Promise<CopiedItem | UnfinishedCopy> {
    const parts = this.deps.objects.parts;
    const ranged = this.settings.rangedCopy ?? syncDefaults.rangedCopy;
    if (!resume && (!parts || task.size <= ranged.thresholdBytes)) return this.copy(runId, task);
    if (!parts) throw new Error(`${task.path}: a ranged copy was resumed on a store without parted writes`);
    const startedAt = this.now().getTime();
    const lease = await this.renewLease(runId);
    const key = keys.item(task.path);
    let progress = resume;
    if (!progress) {
      const settled = await this.settleStored(runId, task, lease);
      if (settled) return settled;
      const upload = await parts.start(key, { contentType: contentTypeOf(task.path) });
      progress = { uploadId: upload.uploadId, partBytes: rangedPartBytes(task.size, ranged.partBytes, parts), parts: [] };
    }
    const upload: PartUpload = { key, uploadId: progress.uploadId };
    if (resume) {
      // A retried call whose first attempt joined (or even recorded) the item before it was cut short:
      // what it left under the key is checked where it lies, like any unvouched bytes.
      const settled = await this.settleStored(runId, task, lease);
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
        const elapsed = this.now().getTime() - startedAt;
        if (storedNow > 0 && elapsed + longestPartMs > budgetMs) return this.unfinished(runId, task, progress);
        const partStartedAt = this.now().getTime();
        const partNumber = progress.parts.length + 1;
        const start = (partNumber - 1) * progress.partBytes;
        const end = Math.min(task.size, start + progress.partBytes) - 1;
        const { body } = await this.sources.upstreamOf(task).openRange(task.path, { start, end });
        const part: UploadedPart = await closedOnFailure(body, parts.putPart(upload, partNumber, this.watched(runId, task.path, lease, body), end - start + 1));
        progress = { ...progress, parts: [...progress.parts, part] };
        storedNow++;
        longestPartMs = Math.max(longestPartMs, this.now().getTime() - partStartedAt);
      }
      // Reading the whole object back takes a while too: a call that spent its budget leaves it to the next.
      if (storedNow > 0 && this.now().getTime() - startedAt > budgetMs) return this.unfinished(runId, task, progress);
      await parts.complete(upload, progress.parts, { ifAbsent: true });
    } catch (error) {
      const retryable = error instanceof UpstreamError || error instanceof UnavailableError;
      if (!retryable) await parts.abort(upload).catch(() => undefined);
      throw error;
    }
    // Joined, the bytes sit under the item's key, unvouched: checked where they lie, and removed unless they are the promised ones.
    let verified: VerifiedContent;
    try {
      verified = await verifyAll((await this.deps.objects.get(key)).body, task);
    } catch (error) {
      if (!(error instanceof IntegrityError)) throw error;
      await this.deps.objects.delete(key);
      const problem = error.message.slice(`${task.path}: `.length);
      throw new IntegrityError(task.path, `joined from its ranged parts, ${problem}; deleted`);
    }
    await this.deps.catalog.recordObject(storedObject(task.path, verified, this.now()), lease);
    await indexIfManifest(this.manifestIndexing(runId), { ...task, sha256: verified.sha256 }, lease);
    this.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: false });
    return { path: task.path, size: task.size, skipped: false };
  }

  private unfinished(runId: string, task: CopyTask, progress: RangedCopy): UnfinishedCopy {
    const copiedBytes = Math.min(task.size, progress.parts.length * progress.partBytes);
    this.emit({ type: 'item-continued', runId, path: task.path, copiedBytes, parts: progress.parts.length });
    return { path: task.path, size: task.size, continuation: progress, copiedBytes };
  }

  /**
   * Settles an item before it is downloaded: stored as promised (skipped),
   * or unvouched bytes under its key that turn out to be the promised ones
   * (recorded, skipped). Other unvouched bytes are removed. undefined: the
   * item must be fetched.
   */
  private async settleStored(runId: string, task: CopyTask, lease: Lease): Promise<CopiedItem | undefined> {
    const { catalog, objects } = this.deps;
    if (isStoredAs(await catalog.getObject(task.path), task)) {
      this.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: true });
      return { path: task.path, size: task.size, skipped: true };
    }
    const key = keys.item(task.path);
    if (await objects.head(key)) {
      // Bytes the catalog does not vouch for: a run that died between storing and recording
      // them, or bytes verify found bad. Checked where they lie, they are kept when they are
      // the promised ones (no download, no moment without them); otherwise, since the plan
      // refused any path a retained generation promises other content for, only the
      // promised bytes can take their place.
      const found = await this.verifyStored(key, task);
      if (found) {
        await catalog.recordObject(storedObject(task.path, found, this.now()), lease);
        await indexIfManifest(this.manifestIndexing(runId), { ...task, sha256: found.sha256 }, lease);
        this.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: true });
        return { path: task.path, size: task.size, skipped: true };
      }
      await catalog.forgetObject(task.path, lease);
      await objects.delete(key);
    }
    return undefined;
  }

  /** Checks every listed file is stored as promised, then switches the current publication atomically. */
  async publish(runId: string): Promise<Publication> {
    const { catalog } = this.deps;
    const lease = await this.renewLease(runId);
    const plan = await this.readRunFile<StoredPlan>(runId, 'plan.json');
    const current = await catalog.getCurrent(this.channel);
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
      publishedAt: this.now().toISOString(),
      runId,
      files: plan.files,
      itemCount: entries.length,
      totalBytes: plan.totalBytes,
    };
    await this.deps.objects.persist();
    await catalog.publish(publication, plan.basedOn, lease, this.channel);
    await catalog.setState(this.indexStateKey, JSON.stringify(plan.indexState), lease);
    await catalog.setState(this.channelStateKey(SOURCE_CONFLICTS_STATE), JSON.stringify(plan.conflicts ?? []), lease);
    if (await catalog.getState(REPAIR_STATE)) await catalog.setState(REPAIR_STATE, '', lease);
    const run = await catalog.getRun(runId);
    await catalog.putRun(
      {
        ...(run ?? { id: runId, startedAt: publication.publishedAt, itemsPresent: plan.presentItems }),
        state: 'succeeded',
        finishedAt: this.now().toISOString(),
        itemsCopied: plan.copyItems,
        bytesCopied: plan.copyBytes,
        generation: plan.generation,
      },
      lease,
    );
    this.emit({
      type: 'published',
      runId,
      generation: plan.generation,
      upstreamUpdated: plan.upstreamUpdated,
      items: entries.length,
    });
    return publication;
  }

  /**
   * Drops generations replaced longer ago than the grace period (and the
   * package-index records of manifests only they listed), then every
   * stored file no remaining generation references, then leftovers of
   * failed runs. Releases the lock.
   */
  async prune(runId: string): Promise<PruneResult> {
    const { catalog, objects } = this.deps;
    const now = this.now();
    const lease = await this.renewLease(runId);
    const publications = await catalog.listPublications();
    const kept = new Set<number>();
    for (const channel of await catalog.listChannels()) {
      kept.add(channel.generation);
      for (const earlier of channel.history.slice(0, (this.settings.keepGenerations ?? 1) - 1)) kept.add(earlier);
    }
    const retained = new Set<number>();
    const retired: number[] = [];
    publications.forEach((publication, i) => {
      const successor = publications[i - 1];
      const replacedAt = successor ? Date.parse(successor.publishedAt) : Number.POSITIVE_INFINITY;
      const keep = kept.has(publication.generation) || now.getTime() - replacedAt < this.settings.pruneGraceMs;
      if (keep) retained.add(publication.generation);
      else retired.push(publication.generation);
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
    const retainedMetadata = publications
      .filter((publication) => retained.has(publication.generation))
      .map((publication) => keys.metadataPrefix(publication));
    await this.deleteKeys('meta/', (key) => !retainedMetadata.some((prefix) => key.startsWith(prefix)));
    await this.deleteKeys('runs/', () => true);
    await catalog.releaseLock(lease);
    this.emit({ type: 'pruned', runId, paths: deletedPaths.length, generations: retired });
    return { deletedPaths, deletedGenerations: retired };
  }

  /** Records the run as failed and releases the lock; the current publication is untouched. */
  /**
   * Records the run as failed, removes what it staged and releases the lock;
   * the current publication is untouched. A run that no longer holds the
   * lock records nothing: the run that holds or next takes it settles this
   * one as abandoned.
   */
  async fail(runId: string, error: unknown): Promise<void> {
    const { catalog } = this.deps;
    const message = error instanceof Error ? error.message : String(error);
    const lease = await this.renewLease(runId).catch((lost: unknown) => {
      if (lost instanceof LeaseLostError) return undefined;
      throw lost;
    });
    if (!lease) {
      this.emit({ type: 'failed', runId, error: message });
      return;
    }
    const run = await catalog.getRun(runId);
    await catalog.putRun(
      {
        ...(run ?? { id: runId, startedAt: this.now().toISOString(), itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 }),
        state: 'failed',
        finishedAt: this.now().toISOString(),
        error: message,
      },
      lease,
    );
    if (run) await this.removeStaged(run, lease);
    await catalog.releaseLock(lease);
    this.emit({ type: 'failed', runId, error: message });
  }

  /** Records the failure if the catalog lets us; the caller rethrows the original error either way. */
  private async failQuietly(runId: string, error: unknown): Promise<void> {
    try {
      await this.fail(runId, error);
    } catch {
      // The store that failed the run may refuse this too; its lease then expires by itself.
    }
  }

  /** The stored bytes at `key` checked against `task`: their verified content, or undefined when they differ. */
  private async verifyStored(key: string, task: CopyTask): Promise<VerifiedContent | undefined> {
    const { body } = await this.deps.objects.get(key);
    try {
      return await verifyAll(body, task);
    } catch (error) {
      if (error instanceof IntegrityError) return undefined;
      throw error;
    }
  }

  private manifestIndexing(runId: string): ManifestIndexing {
    const { objects, catalog } = this.deps;
    const onProblem = (path: string, problem: string) => this.emit({ type: 'manifest-unindexed', runId, path, problem });
    return { objects, catalog, now: this.now, onProblem };
  }

  /** Takes the free lock, or one held by a run known dead. */
  private async takeLock(runId: string): Promise<Lease> {
    const { catalog } = this.deps;
    const now = this.now();
    try {
      return await catalog.acquireLock(SYNC_LOCK, runId, this.settings.lockTtlMs, now);
    } catch (error) {
      if (!(error instanceof LockHeldError)) throw error;
      const holder = await catalog.getRun(error.holder);
      if (!holder?.holder || this.deps.isAlive?.(holder.holder) !== false) throw error;
      return await catalog.acquireLock(SYNC_LOCK, runId, this.settings.lockTtlMs, now, error.holder);
    }
  }

  /** The run's own lease, extended; LeaseLostError when another run has taken the lock since. */
  private async renewLease(runId: string): Promise<Lease> {
    const { catalog } = this.deps;
    const held = await catalog.getLock(SYNC_LOCK);
    if (held?.owner !== runId) throw new LeaseLostError(runId, undefined, 'does not hold the sync lock');
    return catalog.renewLock(held, this.settings.lockTtlMs, this.now());
  }

  /** Runs `work`, renewing the run's lease every third of its length until `work` settles. */
  private async whileRenewing<T>(runId: string, work: () => Promise<T>): Promise<T> {
    let lost: unknown;
    const timer = setInterval(() => {
      this.renewLease(runId).catch((error: unknown) => (lost ??= error));
    }, this.settings.lockTtlMs / 3);
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
  private async *watched(runId: string, path: string, lease: Lease, body: ByteStream): ByteStream {
    const every = this.settings.lockTtlMs / 3;
    let renewedAt = this.now().getTime();
    for await (const chunk of body) {
      this.emit({ type: 'item-progress', runId, path, bytes: chunk.byteLength });
      if (this.now().getTime() - renewedAt >= every) {
        await this.deps.catalog.renewLock(lease, this.settings.lockTtlMs, this.now());
        renewedAt = this.now().getTime();
      }
      yield chunk;
    }
  }

  /**
   * Records every unfinished run but `lease`'s own as abandoned: with the
   * lock in hand, no other run can still be working. What each staged
   * (metadata under its prefix, entries of its reserved generation) goes too.
   */
  private async settleAbandonedRuns(lease: Lease): Promise<void> {
    const { catalog } = this.deps;
    for (const run of await catalog.listRuns(RECENT_RUNS)) {
      if (run.state !== 'running' || run.id === lease.owner) continue;
      const reason = run.holder && this.deps.isAlive?.(run.holder) === false ? 'its process is gone' : 'its lease ran out';
      await catalog.putRun({ ...run, state: 'abandoned', finishedAt: this.now().toISOString(), error: `abandoned: ${reason}` }, lease);
      await this.removeStaged(run, lease);
      this.emit({ type: 'abandoned', runId: lease.owner, abandonedRun: run.id, reason });
    }
  }

  /** Removes a run's staged metadata, run files and the entries of its generation, unless that generation was published. */
  private async removeStaged(run: SyncRun, lease: Lease): Promise<void> {
    const { catalog } = this.deps;
    if (run.generation === undefined) return;
    if (await catalog.getPublication(run.generation)) return;
    await catalog.deletePublication(run.generation, lease);
    // Manifests its copies indexed that no publication lists: records of bytes nothing serves.
    const plan = await this.readRunFile<StoredPlan>(run.id, 'plan.json').catch((error: unknown) => {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    });
    if (plan) {
      const candidates = new Set(plan.entries.filter((entry) => isManifest(entry.ftype) && entry.sha256).map((entry) => entry.sha256));
      const retained = (await catalog.listPublications()).map((publication) => publication.generation);
      await forgetUnlistedManifests(catalog, candidates, retained, lease);
    }
    const prefix = keys.metadataPrefix({ generation: run.generation, runId: run.id });
    await this.deleteKeys(prefix, () => true);
    await this.deleteKeys(keys.runFile(run.id, ''), () => true);
  }

  /**
   * Fails (before a byte is copied) when upstream now promises other content
   * at a path a retained generation lists: those bytes are being served and
   * never change. Names the paths.
   */
  private async refuseChangesToPublishedContent(tasks: readonly CopyTask[]): Promise<void> {
    const { catalog } = this.deps;
    const promised = new Map<string, { size: number; sha256: string; generation: number }>();
    for (const publication of await catalog.listPublications()) {
      for await (const entry of catalog.listEntries(publication.generation)) {
        promised.set(entry.path, { size: entry.size, sha256: entry.sha256, generation: publication.generation });
      }
    }
    const changed: string[] = [];
    for (const task of tasks) {
      const published = promised.get(task.path);
      if (!published) continue;
      const sha256 = declaredDigests(task).sha256;
      if (published.size !== task.size || (sha256 !== undefined && sha256 !== published.sha256)) {
        changed.push(`${task.path} (generation ${published.generation})`);
      }
    }
    if (changed.length > 0) throw new PublishedContentError(changed);
  }

  private async copyWithRetries(runId: string, task: CopyTask): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.copy(runId, task);
        return;
      } catch (error) {
        // A create that lost to a concurrent writer finds the key taken: the next attempt replaces unvouched bytes.
        const transient = error instanceof UpstreamError || error instanceof UnavailableError || error instanceof ObjectExistsError;
        if (!transient || attempt >= this.settings.attempts) throw error;
        this.emit({ type: 'item-retry', runId, path: task.path, attempt, error: (error as Error).message });
        await this.sleep(500 * 2 ** (attempt - 1));
      }
    }
  }

  /** The index of every source when a run has something to do (see SyncSources.changed); undefined otherwise. */
  private async changedIndexes(current: Publication | undefined, options: { all: boolean }): Promise<ChangedIndexes | undefined> {
    const replan = Boolean(await this.deps.catalog.getState(REPAIR_STATE));
    const latest = this.settings.resign ? await latestUpload(this.deps.catalog) : '';
    return this.sources.changed(current, { ...options, replan, latestUpload: latest });
  }

  private get channel(): string {
    return this.settings.channel ?? DEFAULT_CHANNEL;
  }

  /** Each channel remembers the upstream index it was last published from: one may be behind another. */
  private get indexStateKey(): string {
    return this.channelStateKey(INDEX_STATE);
  }

  private channelStateKey(name: string): string {
    return channelStateKey(name, this.channel);
  }

  private async writeRunFile(runId: string, name: string, value: unknown): Promise<void> {
    await this.deps.objects.put(keys.runFile(runId, name), new TextEncoder().encode(JSON.stringify(value)), {
      contentType: 'application/json',
    });
  }

  private async readRunFile<T>(runId: string, name: string): Promise<T> {
    const { body } = await this.deps.objects.get(keys.runFile(runId, name));
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
  }

  private async deleteKeys(prefix: string, shouldDelete: (key: string) => boolean): Promise<void> {
    const doomed: string[] = [];
    for await (const object of this.deps.objects.list(prefix)) {
      if (shouldDelete(object.key)) doomed.push(object.key);
    }
    for (const key of doomed) await this.deps.objects.delete(key);
  }
}

/** A catalog state of one channel: the default channel's under the bare name. */
export function channelStateKey(name: string, channel: string): string {
  return channel === DEFAULT_CHANNEL ? name : `${name}@${channel}`;
}

/** What a plan stages and the generation it describes. */
interface PlannedGeneration {
  plan: SyncPlan;
  /** Metadata files of the generation, by path. */
  staged: Map<string, Uint8Array>;
  conflicts: SourceConflict[];
}

/** The one source's metadata published as it is, listing what its selection keeps. */
function verbatimPlan(reads: readonly SourceRead[], stored: ReadonlyMap<string, StoredObject>, pinned: ReadonlySet<string>): PlannedGeneration {
  const [read, ...others] = reads;
  if (!read || others.length > 0) throw new ConfigError('several sources can only be merged in re-signed mode');
  const { source, metadata } = read;
  const plan = planSync({
    products: metadata.products,
    selection: { ...source.selection, pinned },
    stored,
    metadataFiles: [...metadata.files.keys()],
  });
  return { plan, staged: metadata.files, conflicts: [] };
}

/** The newest `updated` of the sources' indexes: what the generation says upstream last published. */
function newestUpdated(reads: readonly SourceRead[]): string {
  const dated = reads.map(({ metadata }) => ({ updated: metadata.updated, at: parseUpdated(metadata.indexFile, '$.updated', metadata.updated) }));
  return dated.reduce((newest, next) => (next.at > newest.at ? next : newest)).updated;
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

function itemKey(contentId: string, product: string, version: string, item: string): string {
  return JSON.stringify([contentId, product, version, item]);
}


