/**
 * The sync engine: plan → copy → publish → prune, over the ports only.
 * `run()` does a whole sync in one process (CLI); the phases are public so
 * Step Functions can call them from separate Lambdas, passing only a run id
 * and one copy task at a time.
 */
import { createHash, randomBytes } from 'node:crypto';
import { forEachLimited } from './concurrency.ts';
import { ConflictError, IntegrityError, LockHeldError, UnavailableError, UpstreamError } from './errors.ts';
import { verifyingStream, type VerifiedContent } from './checksum.ts';
import { checkIndex, indexFileFor, readUpstreamMetadata, type IndexCheck } from './metadata.ts';
import { isStoredAs, planSync, unreferencedPaths, type CopyTask, type Selection } from './planner.ts';
import type { Keyring } from './pgp.ts';
import { formatUpdated } from './simplestreams.ts';
import {
  keys,
  type ByteStream,
  type Catalog,
  type CatalogEntry,
  type ObjectStore,
  type Publication,
  type StoredObject,
  type SyncRun,
  type Upstream,
  type Validators,
} from './ports.ts';

export const SYNC_LOCK = 'sync';
const INDEX_STATE = 'upstream-index';
const ENTRY_BATCH = 1_000;

export interface SyncSettings {
  /** undefined only when the operator asked for `--no-verify` (unsigned `.json` sources). */
  keyring: Keyring | undefined;
  selection: Selection;
  /** Items copied at once by `run()`. */
  concurrency: number;
  /** How long a replaced generation (and files only it references) stays, for clients mid-download. */
  pruneGraceMs: number;
  /** Lease of the sync lock; every phase renews it. */
  lockTtlMs: number;
  /** Attempts per item in `run()` for transient upstream/store errors. */
  attempts: number;
}

export const defaultSettings = {
  concurrency: 4,
  pruneGraceMs: 0,
  lockTtlMs: 30 * 60_000,
  attempts: 3,
} as const satisfies Partial<SyncSettings>;

export type SyncEvent =
  | { type: 'unchanged'; runId: string }
  | { type: 'locked'; runId: string; holder: string; expiresAt: string }
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
  | { type: 'published'; runId: string; generation: number; upstreamUpdated: string; items: number }
  | { type: 'pruned'; runId: string; paths: number; generations: number[] }
  | { type: 'failed'; runId: string; error: string };

export interface EngineDeps {
  upstream: Upstream;
  objects: ObjectStore;
  catalog: Catalog;
  now?: () => Date;
  onEvent?: (event: SyncEvent) => void;
  sleep?: (ms: number) => Promise<void>;
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

export interface PruneResult {
  deletedPaths: string[];
  deletedGenerations: number[];
}

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
  indexState: IndexState;
  copyItems: number;
  copyBytes: number;
  presentItems: number;
  totalBytes: number;
}

interface IndexState extends Validators {
  url: string;
  sha256: string;
}

export function newRunId(now: Date): string {
  return `${now.toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`;
}

export class SyncEngine {
  private readonly now: () => Date;
  private readonly emit: (event: SyncEvent) => void;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly deps: EngineDeps,
    private readonly settings: SyncSettings,
  ) {
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
        const tasks = await this.readRunFile<CopyTask[]>(runId, 'copy.json');
        await forEachLimited(tasks, this.settings.concurrency, (task) => this.copyWithRetries(runId, task));
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
    const index = await this.fetchIndexIfChanged(await this.deps.catalog.getCurrent());
    return { changed: index.changed };
  }

  /** Takes the lock, verifies upstream metadata, stages it as the next generation and lists what to copy. */
  async plan(runId: string): Promise<PlanOutcome> {
    const { catalog, objects, upstream } = this.deps;
    const startedAt = this.now();
    try {
      await catalog.acquireLock(SYNC_LOCK, runId, this.settings.lockTtlMs, startedAt);
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
    };
    try {
      await catalog.putRun(run);
      const current = await catalog.getCurrent();
      const index = await this.fetchIndexIfChanged(current);
      if (!index.changed) {
        await catalog.putRun({ ...run, state: 'unchanged', finishedAt: this.now().toISOString() });
        this.emit({ type: 'unchanged', runId });
        // Replaced generations whose grace ran out go now, not at the next upstream change.
        if ((await catalog.listPublications()).length > 1) await this.prune(runId);
        else await catalog.releaseLock(SYNC_LOCK, runId);
        return { runId, outcome: 'unchanged' };
      }
      const metadata = await readUpstreamMetadata(upstream, this.settings.keyring, index, current);
      const stored = new Map<string, StoredObject>();
      for await (const object of catalog.listObjects()) stored.set(object.path, object);
      const plan = planSync({
        products: metadata.products,
        selection: this.settings.selection,
        stored,
        metadataFiles: [...metadata.files.keys()],
      });
      const generation = (await this.lastGeneration()) + 1;
      for (const [file, bytes] of metadata.files) {
        await objects.put(keys.metadata({ generation, runId }, file), bytes, { contentType: contentTypeOf(file) });
      }
      const storedPlan: StoredPlan = {
        runId,
        generation,
        basedOn: current?.generation,
        upstreamUpdated: metadata.index.updated ?? formatUpdated(this.now()),
        files: plan.metadata,
        objects: plan.objects,
        entries: plan.entries,
        indexState: { ...index.validators, url: upstream.url(indexFileFor(this.settings.keyring)), sha256: sha256Hex(index.bytes) },
        copyItems: plan.copy.length,
        copyBytes: plan.copyBytes,
        presentItems: plan.presentPaths,
        totalBytes: plan.totalBytes,
      };
      await this.writeRunFile(runId, 'plan.json', storedPlan);
      await this.writeRunFile(runId, 'copy.json', plan.copy);
      await catalog.putRun({ ...run, itemsPresent: plan.presentPaths, generation });
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
    } catch (error) {
      await this.failQuietly(runId, error);
      throw error;
    }
  }

  /** Fetches one item, verifying size and digest while it streams; only verified bytes become visible. */
  async copy(runId: string, task: CopyTask): Promise<{ path: string; size: number; skipped: boolean }> {
    const { catalog, objects, upstream } = this.deps;
    await catalog.acquireLock(SYNC_LOCK, runId, this.settings.lockTtlMs, this.now());
    if (isStoredAs(await catalog.getObject(task.path), task)) {
      this.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: true });
      return { path: task.path, size: task.size, skipped: true };
    }
    const { body } = await upstream.openStream(task.path);
    const verifier = verifyingStream(this.countProgress(runId, task.path, body), {
      path: task.path,
      size: task.size,
      algorithm: task.algorithm,
      hex: task.hex,
    });
    await objects.put(keys.item(task.path), verifier.stream, { size: task.size });
    const verified: VerifiedContent = verifier.result();
    await catalog.recordObject({
      path: task.path,
      size: verified.size,
      sha256: verified.sha256,
      digest: verified.digest,
      storedAt: this.now().toISOString(),
    });
    this.emit({ type: 'item-stored', runId, path: task.path, size: task.size, skipped: false });
    return { path: task.path, size: task.size, skipped: false };
  }

  /** Checks every listed file is stored as promised, then switches the current publication atomically. */
  async publish(runId: string): Promise<Publication> {
    const { catalog } = this.deps;
    await catalog.acquireLock(SYNC_LOCK, runId, this.settings.lockTtlMs, this.now());
    const plan = await this.readRunFile<StoredPlan>(runId, 'plan.json');
    const current = await catalog.getCurrent();
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
    const entries = plan.entries.map((entry) => ({ ...entry, sha256: stored.get(entry.path)?.sha256 ?? entry.sha256 }));
    // A crashed earlier attempt may have left entries for this generation: start clean.
    await catalog.deletePublication(plan.generation);
    for (let i = 0; i < entries.length; i += ENTRY_BATCH) {
      await catalog.putEntries(plan.generation, entries.slice(i, i + ENTRY_BATCH));
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
    await catalog.publish(publication, plan.basedOn);
    await catalog.setState(INDEX_STATE, JSON.stringify(plan.indexState));
    const run = await catalog.getRun(runId);
    await catalog.putRun({
      ...(run ?? { id: runId, startedAt: publication.publishedAt, itemsPresent: plan.presentItems }),
      state: 'succeeded',
      finishedAt: this.now().toISOString(),
      itemsCopied: plan.copyItems,
      bytesCopied: plan.copyBytes,
      generation: plan.generation,
    });
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
   * Drops generations replaced longer ago than the grace period, then every
   * stored file no remaining generation references, then leftovers of
   * failed runs. Releases the lock.
   */
  async prune(runId: string): Promise<PruneResult> {
    const { catalog, objects } = this.deps;
    const now = this.now();
    await catalog.acquireLock(SYNC_LOCK, runId, this.settings.lockTtlMs, now);
    const publications = await catalog.listPublications();
    const current = await catalog.getCurrent();
    const retained = new Set<number>();
    const retired: number[] = [];
    publications.forEach((publication, i) => {
      const successor = publications[i - 1];
      const replacedAt = successor ? Date.parse(successor.publishedAt) : Number.POSITIVE_INFINITY;
      const keep =
        publication.generation === current?.generation || now.getTime() - replacedAt < this.settings.pruneGraceMs;
      if (keep) retained.add(publication.generation);
      else retired.push(publication.generation);
    });
    for (const generation of retired) await catalog.deletePublication(generation);

    const referenced = new Set<string>();
    for (const generation of retained) {
      for await (const entry of catalog.listEntries(generation)) referenced.add(entry.path);
    }
    const storedPaths: string[] = [];
    for await (const object of catalog.listObjects()) storedPaths.push(object.path);
    const deletedPaths = unreferencedPaths(storedPaths, referenced);
    for (const path of deletedPaths) {
      // Forget first: a crash in between leaves stray bytes, never a catalog entry without bytes.
      await catalog.forgetObject(path);
      await objects.delete(keys.item(path));
    }
    const retainedMetadata = publications
      .filter((publication) => retained.has(publication.generation))
      .map((publication) => keys.metadataPrefix(publication));
    await this.deleteKeys('meta/', (key) => !retainedMetadata.some((prefix) => key.startsWith(prefix)));
    await this.deleteKeys('runs/', () => true);
    await catalog.releaseLock(SYNC_LOCK, runId);
    this.emit({ type: 'pruned', runId, paths: deletedPaths.length, generations: retired });
    return { deletedPaths, deletedGenerations: retired };
  }

  /** Records the run as failed and releases the lock; the current publication is untouched. */
  async fail(runId: string, error: unknown): Promise<void> {
    const { catalog } = this.deps;
    const message = error instanceof Error ? error.message : String(error);
    const run = await catalog.getRun(runId);
    await catalog.putRun({
      ...(run ?? { id: runId, startedAt: this.now().toISOString(), itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 }),
      state: 'failed',
      finishedAt: this.now().toISOString(),
      error: message,
    });
    await catalog.releaseLock(SYNC_LOCK, runId);
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

  private async copyWithRetries(runId: string, task: CopyTask): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.copy(runId, task);
        return;
      } catch (error) {
        const transient = error instanceof UpstreamError || error instanceof UnavailableError;
        if (!transient || attempt >= this.settings.attempts) throw error;
        this.emit({ type: 'item-retry', runId, path: task.path, attempt, error: (error as Error).message });
        await this.sleep(500 * 2 ** (attempt - 1));
      }
    }
  }

  private async *countProgress(runId: string, path: string, body: ByteStream): ByteStream {
    for await (const chunk of body) {
      this.emit({ type: 'item-progress', runId, path, bytes: chunk.byteLength });
      yield chunk;
    }
  }

  /**
   * The index, unless it is what the current publication was made from: a
   * 304 to the conditional GET, or (for servers without validators) the same bytes.
   */
  private async fetchIndexIfChanged(current: Publication | undefined): Promise<IndexCheck> {
    const state = current ? await this.indexState() : undefined;
    const index = await checkIndex(this.deps.upstream, this.settings.keyring, state);
    if (index.changed && state?.sha256 === sha256Hex(index.bytes)) return { changed: false };
    return index;
  }

  private async lastGeneration(): Promise<number> {
    const publications = await this.deps.catalog.listPublications();
    return publications.reduce((max, p) => Math.max(max, p.generation), 0);
  }

  private async indexState(): Promise<IndexState | undefined> {
    const raw = await this.deps.catalog.getState(INDEX_STATE);
    if (!raw) return undefined;
    const state = JSON.parse(raw) as IndexState;
    return state.url === this.deps.upstream.url(indexFileFor(this.settings.keyring)) ? state : undefined;
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

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function contentTypeOf(file: string): string {
  if (file.endsWith('.json')) return 'application/json';
  if (file.endsWith('.sjson')) return 'text/plain; charset=utf-8';
  return 'application/octet-stream';
}
