/**
 * The sources one sync engine reads: the one `--source`, or several merged
 * ones, each with its upstream, keyring, selection and priority; whether
 * any index changed since the publication they made (and so whether a run
 * has anything to do); each one's verified metadata for a plan; and the
 * state the next run compares with. Over the ports only.
 */
import { ConfigError, IntegrityError, UpstreamError } from './errors.ts';
import {
  checkIndex,
  indexFileFor,
  loadPublishedMetadata,
  loadSourceMetadata,
  readUpstreamMetadata,
  type MetadataLimits,
  type UpstreamMetadata,
} from './metadata.ts';
import type { Keyring } from './pgp.ts';
import type { CopyTask, Selection } from './planner.ts';
import { PRIMARY_SOURCE, UPLOADS_SOURCE, type ObjectStore, type StateStore, type Publication, type Upstream, type Validators } from './ports.ts';
import { sha256Hex } from './checksum.ts';

/**
 * One of several merged sources as the engine runs it (settings.ts's
 * SourceConfig, its keyring loaded): verified with its own keyring,
 * selected by its own filters and max.
 */
export interface MergedSourceSettings {
  name: string;
  keyring: Keyring;
  selection: Selection;
  /** Wins product ids and paths over sources of lower priority; on a tie, the earlier source wins. */
  priority: number;
}

/** What the published generation was made from, for one source. */
export interface IndexState extends Validators {
  url: string;
  sha256: string;
  /** Published re-signed: switching the mode publishes again even when upstream has not changed. */
  resigned?: boolean;
  /** The newest upload it published (re-signed mode): a newer one publishes again even when upstream has not changed. */
  latestUpload?: string;
}

/** Merged sources: each one's index state, and the sources' settings they were planned with. */
export interface MergedIndexState {
  sources: Record<string, IndexState>;
  /** A source added, removed or re-filtered plans again even when no index changed. */
  fingerprint: string;
  /** As IndexState's. */
  latestUpload?: string;
}

/** A source as one run reads it. */
export interface ActiveSource {
  name: string;
  upstream: Upstream;
  keyring: Keyring | undefined;
  selection: Selection;
  priority: number;
}

/** The index of each source, when at least one changed since the current publication. */
export type ChangedIndexes = Map<string, { bytes: Uint8Array; validators: Validators }>;

/** A source with its verified metadata, read for a plan. */
export interface VerifiedSource {
  source: ActiveSource;
  metadata: UpstreamMetadata;
}

export interface SyncSourcesDeps {
  catalog: StateStore;
  objects: ObjectStore;
  /** The one source, unless `sources` lists several. */
  upstream?: Upstream;
  /** Each of `sources`, by name. */
  upstreams?: ReadonlyMap<string, Upstream>;
}

export interface SyncSourcesSettings {
  /** The one source's keyring; undefined for `--no-verify`. */
  keyring: Keyring | undefined;
  /** The one source's selection. */
  selection: Selection;
  sources?: readonly MergedSourceSettings[];
  resign: boolean;
  limits: MetadataLimits;
}

export class SyncSources {
  readonly list: readonly ActiveSource[];

  /** `stateKey`: the catalog state where the channel keeps what its publication was made from. */
  private readonly deps: SyncSourcesDeps;
  private readonly settings: SyncSourcesSettings;
  private readonly stateKey: string;
  constructor(
    deps: SyncSourcesDeps,
    settings: SyncSourcesSettings,
    stateKey: string,
  ) {
    this.deps = deps;
    this.settings = settings;
    this.stateKey = stateKey;
    this.list = activeSources(deps, settings);
  }

  /** Merged sources (a configured list), rather than the one source. */
  get merged(): boolean {
    return this.settings.sources !== undefined;
  }

  /**
   * The index of every source, unless each is what the current publication
   * was made from: a 304 to the conditional GET, or (for servers without
   * validators) the same bytes; `replan` (a repair or a republish asked for)
   * or an upload newer than the publication's plans again regardless. With
   * several sources, one changed index (or changed sources) plans again from
   * all of them: with `all`, the ones that had not changed are fetched again
   * in full; without, the answer comes at the first change.
   */
  async changed(
    current: Publication | undefined,
    options: { all: boolean; replan: boolean; latestUpload: string },
  ): Promise<ChangedIndexes | undefined> {
    const saved = current && !options.replan ? await this.savedStates(options.latestUpload) : undefined;
    const indexes: ChangedIndexes = new Map();
    const unchanged: ActiveSource[] = [];
    for (const source of this.list) {
      const state = saved?.get(source.name);
      const index = await checkIndex(source.upstream, source.keyring, state, this.settings.limits);
      if (!index.changed || state?.sha256 === sha256Hex(index.bytes)) {
        unchanged.push(source);
        continue;
      }
      indexes.set(source.name, index);
      if (!options.all) return indexes;
    }
    if (indexes.size === 0 && saved) return undefined;
    for (const source of unchanged) {
      const index = await checkIndex(source.upstream, source.keyring, undefined, this.settings.limits);
      if (!index.changed) throw new UpstreamError(source.upstream.url(indexFileFor(source.keyring)), 'answered 304 to a request without validators');
      indexes.set(source.name, index);
    }
    return indexes;
  }

  /** Each source's verified metadata, checked for freshness against what the current publication was made from. */
  async read(indexes: ChangedIndexes, current: Publication | undefined): Promise<VerifiedSource[]> {
    const { objects } = this.deps;
    const { limits } = this.settings;
    const reads: VerifiedSource[] = [];
    for (const source of this.list) {
      const index = indexes.get(source.name);
      if (!index) throw new Error(`no index was read for source ${source.name}`);
      const published = !current
        ? undefined
        : this.merged
          ? await loadSourceMetadata(objects, current, source.name, limits)
          : await loadPublishedMetadata(objects, current, limits);
      reads.push({ source, metadata: await readUpstreamMetadata(source.upstream, source.keyring, index, published, limits) });
    }
    return reads;
  }

  /** What the next run compares each source's index with, once a plan of `indexes` is published. */
  stateOf(indexes: ChangedIndexes, latestUpload: string): IndexState | MergedIndexState {
    const states: Record<string, IndexState> = {};
    for (const source of this.list) {
      const index = indexes.get(source.name);
      if (!index) throw new Error(`no index was read for source ${source.name}`);
      states[source.name] = {
        ...index.validators,
        url: source.upstream.url(indexFileFor(source.keyring)),
        sha256: sha256Hex(index.bytes),
        ...(this.settings.resign && { resigned: true }),
      };
    }
    const uploads = this.settings.resign ? { latestUpload } : {};
    return this.merged
      ? { sources: states, fingerprint: this.fingerprint(), ...uploads }
      : { ...(states[PRIMARY_SOURCE] as IndexState), ...uploads };
  }

  /** The upstream a planned item is fetched from. */
  upstreamOf(task: CopyTask): Upstream {
    const name = task.source ?? PRIMARY_SOURCE;
    if (name === UPLOADS_SOURCE) {
      throw new IntegrityError(task.path, 'an uploaded image lists it, but its bytes are not stored as uploaded: upload the image again');
    }
    const source = this.list.find((candidate) => candidate.name === name);
    if (!source) throw new ConfigError(`${task.path}: planned from source ${name}, which is no longer configured`);
    return source.upstream;
  }

  /**
   * The index state each source was last published from, by name; undefined
   * when the sources, their settings, the mode or the uploads changed since
   * (a new plan is due).
   */
  private async savedStates(latestUpload: string): Promise<Map<string, IndexState> | undefined> {
    const raw = await this.deps.catalog.getState(this.stateKey);
    if (!raw) return undefined;
    const saved = JSON.parse(raw) as IndexState | MergedIndexState;
    const states = 'sources' in saved ? saved.sources : { [PRIMARY_SOURCE]: saved };
    if ('sources' in saved !== this.merged) return undefined;
    if ('sources' in saved && saved.fingerprint !== this.fingerprint()) return undefined;
    if (this.settings.resign && (saved.latestUpload ?? '') !== latestUpload) return undefined;
    const byName = new Map<string, IndexState>();
    for (const source of this.list) {
      const state = states[source.name];
      const sameMode = (state?.resigned ?? false) === this.settings.resign;
      if (!state || !sameMode || state.url !== source.upstream.url(indexFileFor(source.keyring))) return undefined;
      byName.set(source.name, state);
    }
    return byName;
  }

  /** The merged sources' settings that decide what is published, so a changed filter, max or priority plans again. */
  private fingerprint(): string {
    const sources = (this.settings.sources ?? []).map((source) => ({
      name: source.name,
      filters: source.selection.filters.map((filter) => filter.source),
      max: source.selection.max ?? null,
      priority: source.priority,
    }));
    return sha256Hex(new TextEncoder().encode(JSON.stringify(sources)));
  }
}

/** The configured list with each source's upstream, or the one source. */
function activeSources(deps: SyncSourcesDeps, settings: SyncSourcesSettings): ActiveSource[] {
  const { sources } = settings;
  if (!sources) {
    if (!deps.upstream) throw new ConfigError('the sync engine has no upstream');
    return [{ name: PRIMARY_SOURCE, upstream: deps.upstream, keyring: settings.keyring, selection: settings.selection, priority: 0 }];
  }
  return sources.map((source) => {
    const upstream = deps.upstreams?.get(source.name);
    if (!upstream) throw new ConfigError(`source ${source.name}: the sync engine has no upstream for it`);
    return { ...source, upstream };
  });
}
