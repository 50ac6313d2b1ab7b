/**
 * Frees downloaded chunks while they are young: a young-generation
 * collection (a scavenge, about a millisecond) after every
 * COLLECT_EVERY_BYTES of item body received, process-wide.
 *
 * Why: node:http hands over each socket read in Buffers whose memory V8
 * counts as external to its heap (the read and the parser's copy of it). The
 * JavaScript objects made per chunk are small, so the young generation
 * seldom fills and no scavenge frees those Buffers; instead the dead ones pile
 * up until the external-memory limit (64 MB past the last full collection)
 * forces a full mark-compact of the whole heap: ~45 of them per GiB
 * downloaded, more CPU than the rest of the download. A scavenge every few
 * MiB reclaims them before that limit is near (BENCHMARKS.md, profile section).
 *
 * The collection needs V8's `gc` function, which a context made after
 * --expose-gc is set provides; where that fails, nothing is collected early
 * and V8's own heuristics apply, as before.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Well under the 64 MB that triggers a full collection, with two Buffers per read and several downloads at once. */
const COLLECT_EVERY_BYTES = 12 * 1024 * 1024;

type CollectGarbage = (options: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let collector: CollectGarbage | null | undefined;
let receivedSinceCollection = 0;

/** Counts `bytes` of body received; collects the young generation once enough has come in since the last time. */
export function noteBodyBytes(bytes: number): void {
  receivedSinceCollection += bytes;
  if (receivedSinceCollection < COLLECT_EVERY_BYTES) return;
  receivedSinceCollection = 0;
  youngCollector()?.({ type: 'minor' });
}

function youngCollector(): CollectGarbage | null {
  if (collector !== undefined) return collector;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    collector = typeof gc === 'function' ? (gc as CollectGarbage) : null;
  } catch {
    collector = null;
  }
  return collector;
}
