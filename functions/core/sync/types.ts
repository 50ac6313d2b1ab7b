/**
 * What the sync engine's phases share: the settings and dependencies it runs
 * with, the events and outcomes it reports, the plan it leaves between
 * phases, and the context each phase is handed.
 */
import type { MetadataLimits } from '../metadata-limits.ts';
import type { Keyring } from '../pgp.ts';
import type { CopyTask, Selection } from '../planner.ts';
import type {
  Catalog,
  CatalogEntry,
  LockHolder,
  ObjectStore,
  SigningKeyStore,
  UploadedPart,
  Upstream,
} from '../ports.ts';
import type { SourceConflict } from '../sources.ts';
import type { IndexState, MergedIndexState, MergedSourceSettings, SyncSources } from '../sync-sources.ts';

/** Items larger than `thresholdBytes` are copied in ranged parts of `partBytes` across invocations. */
export interface RangedCopySettings {
  readonly thresholdBytes: number;
  readonly partBytes: number;
}

/** What the engine runs with, complete: `settings.ts` holds the defaults and builds this from a validated SyncConfig. */
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
  /** Bounds on the metadata one run reads. */
  limits: MetadataLimits;
  /** The channel a run publishes to. */
  channel: string;
  /** Generations each channel keeps (the one it points at and those before it, for `rollback`). */
  keepGenerations: number;
  /** When `copyWithinBudget` copies an item in ranged parts, and how large they are. */
  rangedCopy: RangedCopySettings;
  /**
   * Publish the mirror's own metadata, listing exactly what it stores and
   * signed with its own key (`EngineDeps.signingKeys`), instead of upstream's
   * verbatim.
   */
  resign: boolean;
  /**
   * Several sources merged into one stream (needs `resign`), each fetched
   * from `EngineDeps.upstreams` under its name. undefined: the one source of
   * `keyring` and `selection`, fetched from `EngineDeps.upstream`.
   */
  sources?: readonly MergedSourceSettings[];
  /**
   * What a run does when these settings publish in another mode than the
   * mirror recorded: `refuse` (a ConfigError; an operator's command names the
   * switch), or `allow` and record the switch with the run (a deployment's
   * config always states its mode, so a change there is the switch).
   */
  modeChange: 'refuse' | 'allow';
}

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
  /** Something the operator should act on that does not fail the run; also kept with the run record. */
  | { type: 'warning'; runId: string; message: string }
  | { type: 'published'; runId: string; generation: number; upstreamUpdated: string; items: number; channel: string; previousGeneration?: number }
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

/**
 * What every phase is handed: the engine's dependencies with their defaults
 * applied, its settings and sources. Each phase's functions name the part
 * (and the catalog ports) they use.
 */
export interface SyncContext {
  objects: ObjectStore;
  catalog: Catalog;
  settings: SyncSettings;
  sources: SyncSources;
  now: () => Date;
  emit: (event: SyncEvent) => void;
  sleep: (ms: number) => Promise<void>;
  holder: LockHolder | undefined;
  /** See EngineDeps.isAlive; never tells when not given. */
  isAlive: (holder: LockHolder) => boolean | undefined;
  signingKeys: SigningKeyStore | undefined;
}

/** A phase's view of the context: its catalog narrowed to the ports the phase uses. */
export type PhaseContext<Ports> = Omit<SyncContext, 'catalog'> & { catalog: Ports };

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

/** What `plan` leaves for `publish`, in the object store. */
export interface StoredPlan {
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
