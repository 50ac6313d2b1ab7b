/**
 * Frees downloaded chunks while they are young: a young-generation
 * collection (a scavenge, about a millisecond) after every
 * COLLECT_EVERY_BYTES of item body received. The entry points that run
 * syncs opt in (the CLI's sync, the copy Lambda), handing `onBodyBytes` to
 * HttpUpstream, which only reports the bytes it receives.
 *
 * Why: node:http hands over each socket read in Buffers whose memory V8
 * counts as external to its heap (the read and the parser's copy of it). The
 * JavaScript objects made per chunk are small, so the young generation
 * seldom fills and no scavenge frees those Buffers; instead the dead ones pile
 * up until the external-memory limit (64 MB past the last full collection)
 * forces a full mark-compact of the whole heap: ~45 of them per GiB
 * downloaded, more CPU than the rest of the download.
 *
 * What it measured (BENCHMARKS.md, section 5 of the profile): per 2 GiB
 * sync, 0.62–0.73× the process's CPU, V8's GC threads from 2.6–3.0 s down to
 * 0.35–0.38 s, peak RSS ~60 MB lower.
 *
 * How: V8's `gc` function, which a context made after --expose-gc is set
 * provides (or the global one when node runs with --expose-gc). Its
 * `{ type: 'minor' }` option is V8's, not a documented node API: where the
 * function is missing, nothing is collected early and V8's own heuristics
 * apply. SKYSTREAMS_YOUNG_COLLECTION=off turns it off.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Well under the 64 MB that triggers a full collection, with two Buffers per read and several downloads at once. */
export const COLLECT_EVERY_BYTES = 12 * 1024 * 1024;

type CollectGarbage = (options: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

/**
 * An `onBodyBytes` hook that counts body bytes and collects the young
 * generation once `everyBytes` have come in since the last time; undefined
 * when turned off or when V8's collector cannot be had. One hook per sync:
 * give it to every upstream of that sync, so their downloads count together.
 */
export function youngCollection(
  env: Readonly<Record<string, string | undefined>> = process.env,
  everyBytes = COLLECT_EVERY_BYTES,
): ((bytes: number) => void) | undefined {
  if (env.SKYSTREAMS_YOUNG_COLLECTION === 'off') return undefined;
  const collect = youngCollector();
  if (!collect) return undefined;
  let receivedSinceCollection = 0;
  return (bytes) => {
    receivedSinceCollection += bytes;
    if (receivedSinceCollection < everyBytes) return;
    receivedSinceCollection = 0;
    collect({ type: 'minor' });
  };
}

function youngCollector(): CollectGarbage | undefined {
  const global = (globalThis as { gc?: unknown }).gc;
  if (typeof global === 'function') return global as CollectGarbage;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as CollectGarbage) : undefined;
  } catch {
    return undefined;
  }
}
