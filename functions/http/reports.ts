/** The JSON the `/api/v1/*` routes and the CLI's `status` print. */
import { redactRun } from '../core/redact.ts';
import { forEachLimited } from '../core/concurrency.ts';
import type { CopyTask } from '../core/planner.ts';
import type { SourceConflict } from '../core/sources.ts';
import { keys, SOURCE_CONFLICTS_STATE, type CatalogEntry, type Channel, type LockHolder, type ManifestIndex, type ObjectIndex, type ObjectStore, type Publication, type Publications, type RunLog, type StateStore, type SyncRun } from '../core/ports.ts';
import { ManifestUnavailableError, NotFoundError } from '../core/errors.ts';
import { diffVersions, type PackageChange } from '../core/packages.ts';
import { PUBLISHED_KEYRING } from '../core/published-files.ts';
import { modeOfPublishedFiles, type PublishingMode } from '../core/publishing-mode.ts';
import { describeDuration, syncDefaults } from '../core/settings.ts';
import { readSigningKeyPhases, type SigningKeyPhase } from '../core/signing-key-phases.ts';

export interface StatusReport {
  /** The default channel's publication. */
  publication: Omit<Publication, 'files'> | null;
  /** How the default channel's publication is signed; null before the first one. */
  mode: PublicationMode | null;
  /** Every channel: the generation it points at and those it can roll back to. */
  channels: Omit<Channel, 'revision'>[];
  runs: SyncRun[];
  /** Where merged sources offered the same product id or path: which source's was published, which gave way. */
  conflicts: SourceConflict[];
  /** Present only when the mirror is stale (see `staleness`). */
  stale?: Staleness;
  /** The mirror's signing keys, in re-signed mode. */
  signing?: { keys: SigningKeyPhase[] };
}

/**
 * `verbatim`: upstream's signed files as upstream signed them. `re-signed`:
 * the mirror's own signature over one source's metadata; `merged`: over
 * several sources'. The last two serve the keyring that checks them.
 */
export type PublicationMode = PublishingMode;

/** Why and since when the mirror can no longer be trusted to be current. */
export interface Staleness {
  /** ISO 8601: when it became stale. */
  since: string;
  reason: string;
}

export interface StatusOptions {
  /** Runs listed. @default 10 */
  runs?: number;
  /** Shows a `running` run whose process is known gone as `abandoned`, before a next run records it so. */
  isAlive?: (holder: LockHolder) => boolean | undefined;
  /** @default new Date() */
  now?: Date;
  /** Upstream metadata older than this makes the mirror stale; 0 turns the rule off. @default syncDefaults.staleAfterMs */
  staleAfterMs?: number;
  /** Time between scheduled syncs; undefined when the mirror syncs on no schedule. */
  syncIntervalMs?: number;
}

/** A publication's mode, from the files it holds (the rule lives with the publishing modes). */
export const publicationMode: (files: Iterable<string>) => PublicationMode = modeOfPublishedFiles;

/** A schedule is broken once this many intervals pass without a successful check. */
export const MISSED_INTERVALS = 3;

/**
 * Whether the mirror is stale, and since when: upstream's metadata is older
 * than `staleAfterMs` (an upstream frozen on old images, or a mirror nobody
 * feeds; 0 turns this off, as for an air-gapped mirror fed by `import`), or,
 * with `intervalMs` set, no check of upstream has succeeded for
 * MISSED_INTERVALS intervals (a broken schedule). The earlier of the two
 * when both hold; undefined when fresh.
 */
export function staleness(
  report: { publication: Pick<Publication, 'upstreamUpdated' | 'publishedAt'> | null; runs: readonly SyncRun[] },
  now: Date,
  staleAfterMs: number,
  intervalMs?: number,
): Staleness | undefined {
  const found: { since: number; reason: string }[] = [];
  const updated = report.publication ? Date.parse(report.publication.upstreamUpdated) : Number.NaN;
  if (staleAfterMs > 0 && !Number.isNaN(updated) && now.getTime() - updated >= staleAfterMs) {
    found.push({
      since: updated + staleAfterMs,
      reason: `upstream's metadata was last updated ${new Date(updated).toISOString()}, more than ${describeSpan(staleAfterMs)} ago`,
    });
  }
  if (intervalMs !== undefined && intervalMs > 0) {
    const lastCheck = report.runs.find(isSuccessfulCheck);
    // Without a successful check among the runs listed, the schedule has been failing since at least the oldest of them.
    const checkedAt = lastCheck ? (lastCheck.finishedAt ?? lastCheck.startedAt) : (report.publication?.publishedAt ?? report.runs.at(-1)?.startedAt);
    const since = checkedAt === undefined ? Number.NaN : Date.parse(checkedAt) + MISSED_INTERVALS * intervalMs;
    if (!Number.isNaN(since) && now.getTime() >= since) {
      found.push({
        since,
        reason: `no check of upstream has succeeded since ${new Date(since - MISSED_INTERVALS * intervalMs).toISOString()}: ${MISSED_INTERVALS} sync intervals of ${describeSpan(intervalMs)} have passed`,
      });
    }
  }
  if (found.length === 0) return undefined;
  found.sort((a, b) => a.since - b.since);
  return { since: new Date(found[0]!.since).toISOString(), reason: found.map((rule) => rule.reason).join('; ') };
}

/** The newest run that reached upstream and finished: it published, or found upstream unchanged. */
function isSuccessfulCheck(run: SyncRun): boolean {
  return run.state === 'succeeded' || run.state === 'unchanged';
}

const DAY_MS = 24 * 60 * 60 * 1000;

function describeSpan(ms: number): string {
  if (ms % DAY_MS === 0) return ms === DAY_MS ? '1 day' : `${ms / DAY_MS} days`;
  return describeDuration(ms);
}

export async function statusReport(catalog: Publications & RunLog & StateStore, options: StatusOptions = {}): Promise<StatusReport> {
  const current = await catalog.getCurrent();
  const { files: _files, ...publication } = current ?? { files: [] };
  const runs = (await catalog.listRuns(options.runs ?? 10)).map((run) =>
    run.state === 'running' && run.holder && options.isAlive?.(run.holder) === false
      ? { ...run, state: 'abandoned' as const, error: 'abandoned: its process is gone' }
      : run,
  );
  const channels = (await catalog.listChannels()).map(({ revision: _revision, ...channel }) => channel);
  const conflicts = JSON.parse((await catalog.getState(SOURCE_CONFLICTS_STATE)) || '[]') as SourceConflict[];
  // A verbatim publication serves upstream's signatures: keys left from an earlier re-signed mode say nothing about it.
  const signingKeys = current && !current.files.includes(PUBLISHED_KEYRING) ? undefined : await readSigningKeyPhases(catalog);
  const report: StatusReport = {
    publication: current ? (publication as Omit<Publication, 'files'>) : null,
    mode: current ? publicationMode(current.files) : null,
    channels,
    runs,
    conflicts,
    ...(signingKeys && { signing: { keys: signingKeys } }),
  };
  const stale = staleness(report, options.now ?? new Date(), options.staleAfterMs ?? syncDefaults.staleAfterMs, options.syncIntervalMs);
  return stale ? { ...report, stale } : report;
}

export interface ImageSummary {
  contentId: string;
  product: string;
  os?: string;
  release?: string;
  arch?: string;
  subarch?: string;
  label?: string;
  versions: { version: string; items: { item: string; ftype?: string; path: string; size: number; sha256: string }[] }[];
  totalBytes: number;
}

export interface CatalogReport {
  generation: number | null;
  images: ImageSummary[];
}

export async function catalogSummary(catalog: Publications): Promise<CatalogReport> {
  const current = await catalog.getCurrent();
  if (!current) return { generation: null, images: [] };
  const images = new Map<string, ImageSummary>();
  for await (const entry of catalog.listEntries(current.generation)) addEntry(images, entry);
  const sorted = [...images.values()].sort((a, b) => compare(a.contentId + a.product, b.contentId + b.product));
  for (const image of sorted) image.versions.sort((a, b) => compare(b.version, a.version));
  return { generation: current.generation, images: sorted };
}

function addEntry(images: Map<string, ImageSummary>, entry: CatalogEntry): void {
  const key = `${entry.contentId}\u0000${entry.product}`;
  let image = images.get(key);
  if (!image) {
    image = {
      contentId: entry.contentId,
      product: entry.product,
      os: entry.os,
      release: entry.release,
      arch: entry.arch,
      subarch: entry.subarch,
      label: entry.label,
      versions: [],
      totalBytes: 0,
    };
    images.set(key, image);
  }
  let version = image.versions.find((v) => v.version === entry.version);
  if (!version) {
    version = { version: entry.version, items: [] };
    image.versions.push(version);
  }
  version.items.push({ item: entry.item, ftype: entry.ftype, path: entry.path, size: entry.size, sha256: entry.sha256 });
  image.totalBytes += entry.size;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One mirrored image as the status page lists it. */
export interface PageImage extends Omit<ImageSummary, 'versions'> {
  versions: { version: string; bytes: number; items: number; publishedSince?: string }[];
}

/** A channel as the status page lists it: with when its generation was published, while that publication is retained. */
export interface PageChannel extends Omit<Channel, 'revision'> {
  publishedAt?: string;
}

/** Everything the status page shows, read from the catalog in one go. */
export interface StatusPageReport extends Omit<StatusReport, 'channels'> {
  channels: PageChannel[];
  generation: number | null;
  images: PageImage[];
  /** For each image with two or more versions, what its manifests say changed from the one before to the newest. */
  packageChanges: PackageChangeSummary[];
  /** The newest run that reached upstream and finished (published or found it unchanged): when the mirror last knew it was current. */
  lastCheck: SyncRun | null;
  /** How far the running sync's copy has got; undefined with no run running, or while it is still planning. */
  progress?: RunProgress;
}

/** What changed in an image's packages between its two newest versions, or why that is not known. */
export interface PackageChangeSummary {
  product: string;
  label: string;
  from: string;
  to: string;
  added: number;
  removed: number;
  /** The first PACKAGE_CHANGES_SHOWN changed packages, by name. */
  changed: PackageChange[];
  changedCount: number;
  /** Set instead of the counts when a manifest is missing, unparsed or not indexed yet. */
  problem?: string;
}

/** Images whose package changes the status page computes (each reads two manifests), and changed packages shown per image. */
const PACKAGE_CHANGE_IMAGES = 20;
const PACKAGE_CHANGES_SHOWN = 12;

/** A running sync's copy: what its plan listed, and how much of it the catalog has recorded as stored and verified. */
export interface RunProgress {
  runId: string;
  copyItems: number;
  copyBytes: number;
  storedItems: number;
  storedBytes: number;
}

/** Catalog reads in flight while counting a running copy's stored items. */
const PROGRESS_LOOKUPS = 8;

/**
 * The running copy's progress: its plan's copy list (the run file the engine
 * writes before copying) against the catalog's stored objects, which a copy
 * records once an item's digests are verified.
 */
export async function runProgress(objects: ObjectStore, catalog: ObjectIndex, runId: string): Promise<RunProgress | undefined> {
  const key = keys.runFile(runId, 'copy.json');
  if (!(await objects.head(key))) return undefined;
  const chunks: Uint8Array[] = [];
  for await (const chunk of (await objects.get(key)).body) chunks.push(chunk);
  const tasks = JSON.parse(Buffer.concat(chunks).toString('utf8')) as CopyTask[];
  const progress: RunProgress = { runId, copyItems: tasks.length, copyBytes: 0, storedItems: 0, storedBytes: 0 };
  for (const task of tasks) progress.copyBytes += task.size;
  await forEachLimited(tasks, PROGRESS_LOOKUPS, async (task) => {
    const stored = await catalog.getObject(task.path);
    if (stored && stored.size === task.size && (task.sha256 === undefined || stored.sha256 === task.sha256)) {
      progress.storedItems++;
      progress.storedBytes += task.size;
    }
  });
  return progress;
}

/**
 * The status report and the catalog, with each version's `publishedSince`:
 * when the oldest retained publication that lists it was published (older
 * generations are pruned, so this is "served since at least").
 */
export async function statusPageReport(
  objects: ObjectStore,
  catalog: Publications & RunLog & StateStore & ObjectIndex & ManifestIndex,
  options: StatusOptions = {},
): Promise<StatusPageReport> {
  const status = await statusReport(catalog, options);
  const summary = await catalogSummary(catalog);
  const publishedSince = new Map<string, string>();
  const publications = await catalog.listPublications();
  const publishedAt = new Map(publications.map((publication) => [publication.generation, publication.publishedAt]));
  const channels = status.channels.map((channel) => ({ ...channel, publishedAt: publishedAt.get(channel.generation) }));
  // Oldest first, so the first publication seen listing a version is kept.
  for (const publication of [...publications].reverse()) {
    if (summary.generation === null || publication.generation > summary.generation) continue;
    for await (const entry of catalog.listEntries(publication.generation)) {
      const key = versionKey(entry.contentId, entry.product, entry.version);
      if (!publishedSince.has(key)) publishedSince.set(key, publication.publishedAt);
    }
  }
  const images = summary.images.map(({ versions, ...image }) => ({
    ...image,
    versions: versions.map(({ version, items }) => ({
      version,
      bytes: items.reduce((sum, item) => sum + item.size, 0),
      items: items.length,
      publishedSince: publishedSince.get(versionKey(image.contentId, image.product, version)),
    })),
  }));
  const lastCheck = status.runs.find(isSuccessfulCheck) ?? null;
  const running = status.runs.find((run) => run.state === 'running');
  const progress = running && (await runProgress(objects, catalog, running.id));
  const packageChanges = summary.generation === null ? [] : await packageChangeSummaries(catalog, summary.generation, summary.images);
  return { ...status, channels, generation: summary.generation, images, packageChanges, lastCheck, ...(progress && { progress }) };
}

/** From the catalog summary's files: only the two manifests of each image are read, not the generation again. */
async function packageChangeSummaries(catalog: ManifestIndex, generation: number, images: readonly ImageSummary[]): Promise<PackageChangeSummary[]> {
  const summaries: PackageChangeSummary[] = [];
  for (const image of images.filter((candidate) => candidate.versions.length >= 2).slice(0, PACKAGE_CHANGE_IMAGES)) {
    // Versions are newest first (catalogSummary).
    const [newest, previous] = [image.versions[0]!, image.versions[1]!];
    const [to, from] = [newest.version, previous.version];
    const label = [image.os, image.release, image.arch, image.subarch].filter(Boolean).join(' ') || image.product;
    const base = { product: image.product, label, from, to };
    try {
      const diff = await diffVersions(catalog, image.product, generation, { version: from, files: previous.items }, { version: to, files: newest.items });
      summaries.push({
        ...base,
        added: diff.added.length,
        removed: diff.removed.length,
        changed: diff.changed.slice(0, PACKAGE_CHANGES_SHOWN),
        changedCount: diff.changed.length,
      });
    } catch (error) {
      // Images without manifests (bootloaders) have nothing to compare; an unread manifest says why.
      if (error instanceof NotFoundError) continue;
      if (!(error instanceof ManifestUnavailableError)) throw error;
      summaries.push({ ...base, added: 0, removed: 0, changed: [], changedCount: 0, problem: error.message });
    }
  }
  return summaries;
}

function versionKey(contentId: string, product: string, version: string): string {
  return `${contentId}\u0000${product}\u0000${version}`;
}

/** The status report as HTTP clients get it: runs' errors and warnings without paths, bucket, table or key names. */
export function reportForClients<R extends StatusReport>(report: R): R {
  return { ...report, runs: report.runs.map(redactRun) };
}

/** The status page's report, redacted as `reportForClients`, its last check too. */
export function pageReportForClients(report: StatusPageReport): StatusPageReport {
  const redacted = reportForClients(report);
  return { ...redacted, lastCheck: report.lastCheck && redactRun(report.lastCheck) };
}
