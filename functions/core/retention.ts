/**
 * What prune keeps and what it deletes, decided without I/O: which
 * generations outlive the grace period (the ones channels point at, and as
 * many of each channel's earlier ones as it keeps for rollback), which
 * staged metadata no kept generation needs, whether a run that found
 * nothing new must prune, and which bytes an interrupted prune left
 * (`unreferencedPaths`, in the planner, decides which stored files).
 *
 * Pure: the engine reads the catalog and the store, and deletes.
 */
import { keys, type Channel, type MetadataOwner, type Publication } from './ports.ts';

export interface GenerationRetentionInput {
  /** Newest generation first, as the catalog lists them. */
  publications: readonly Pick<Publication, 'generation' | 'publishedAt'>[];
  channels: readonly Pick<Channel, 'generation' | 'history'>[];
  /** Generations each channel keeps: the one it points at and those before it. At least 1. */
  keepGenerations: number;
  /** How long a replaced generation stays, for clients mid-download. */
  pruneGraceMs: number;
  now: Date;
}

export interface GenerationRetention {
  /** Kept, newest first. */
  retained: number[];
  /** To delete, newest first. */
  retired: number[];
}

/**
 * Keeps every generation a channel points at or keeps in its history, and
 * every generation replaced (by the next newer one) less than the grace
 * period ago; the newest is never replaced. Retires the rest.
 */
export function retainGenerations(input: GenerationRetentionInput): GenerationRetention {
  const kept = new Set<number>();
  for (const channel of input.channels) {
    kept.add(channel.generation);
    for (const earlier of channel.history.slice(0, input.keepGenerations - 1)) kept.add(earlier);
  }
  const retained: number[] = [];
  const retired: number[] = [];
  input.publications.forEach((publication, i) => {
    const successor = input.publications[i - 1];
    const replacedAt = successor ? Date.parse(successor.publishedAt) : Number.POSITIVE_INFINITY;
    const keep = kept.has(publication.generation) || input.now.getTime() - replacedAt < input.pruneGraceMs;
    (keep ? retained : retired).push(publication.generation);
  });
  return { retained, retired };
}

/** Keys of staged metadata (under `meta/`) that no retained publication serves: every run's leftovers but theirs. */
export function unretainedMetadataKeys(metadataKeys: Iterable<string>, retained: readonly MetadataOwner[]): string[] {
  const prefixes = retained.map((owner) => keys.metadataPrefix(owner));
  return [...metadataKeys].filter((key) => !prefixes.some((prefix) => key.startsWith(prefix)));
}

/** What a run that found upstream unchanged knows before it decides to prune. */
export interface PruneDueInput {
  /** Publications the catalog lists, every channel's. */
  publications: number;
  /**
   * Some run left files under `runs/`: every finished prune removes them all,
   * so they mean a run stopped before its prune ended (killed, or failed
   * after publishing), with deletions perhaps still to make.
   */
  runFilesLeft: boolean;
}

/** Prune unless there is only one publication and no run left anything behind: then prune has nothing to do. */
export function pruneDue(input: PruneDueInput): boolean {
  return input.publications > 1 || input.runFilesLeft;
}

/**
 * Paths whose bytes an interrupted prune may have left after forgetting
 * them: those it meant to delete (`pending`, as it wrote them down before
 * the first delete) that no retained generation or upload references now
 * and the catalog does not list again (a later run that fetched one again
 * recorded it; prune's own pass decides those).
 */
export function leftoverPrunePaths(pending: Iterable<string>, referenced: ReadonlySet<string>, recorded: ReadonlySet<string>): string[] {
  const paths = new Set<string>();
  for (const path of pending) if (!referenced.has(path) && !recorded.has(path)) paths.add(path);
  return [...paths].sort();
}
