/** Mirror-relative path safety. */
import { UnsafePathError } from './errors.ts';
import { CHANNELS_PATH_PREFIX, keys } from './ports.ts';

// C0 controls and DEL; a file name with these is never legitimate and may confuse logs or shells.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Why `key` is not a safe mirror-relative path, or undefined when it is.
 * Every object key is such a path, so the object stores check keys with
 * this too. Unsafe: empty, NUL or other control characters, backslashes,
 * absolute, or an empty, `.` or `..` segment (which HTTP stacks and file
 * systems could normalise away or use to escape the mirror root).
 */
export function objectKeyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key === '') return 'empty';
  if (CONTROL_CHARACTER.test(key)) return 'contains a control character';
  if (key.includes('\\')) return 'contains a backslash';
  if (key.startsWith('/')) return 'is absolute';
  for (const segment of key.split('/')) {
    if (segment === '') return 'has an empty segment';
    if (segment === '.' || segment === '..') return `has a "${segment}" segment`;
  }
  return undefined;
}

// A percent sign and two hex digits: HTTP clients and CDNs decode it, so the served path would differ from the stored one.
const PERCENT_ENCODED = /%[0-9a-fA-F]{2}/;

/** The longest name a segment may have: what ext4, xfs and most other file systems allow. */
export const MAX_SEGMENT_BYTES = 255;

/**
 * The longest mirror path, in UTF-8 bytes: S3 keys and DynamoDB sort keys
 * hold at most 1,024 bytes, and an item's object key adds `items/` (the
 * catalog's sort key is the bare path, so the object key is what binds).
 */
export const MAX_MIRROR_PATH_BYTES = 1024 - keys.item('').length;

const encoder = new TextEncoder();

/**
 * Why `path` cannot be a mirror path, or undefined when it can: the one rule
 * sync applies to every path upstream metadata names and serve applies to
 * every decoded request path, so whatever sync publishes serve answers and
 * whatever serve refuses sync never published. On top of `objectKeyProblem`:
 * no percent-encoded sequence, no segment over MAX_SEGMENT_BYTES and no
 * path over MAX_MIRROR_PATH_BYTES.
 */
export function mirrorPathProblem(path: string): string | undefined {
  const problem = objectKeyProblem(path);
  if (problem !== undefined) return problem;
  if (PERCENT_ENCODED.test(path)) return 'contains a percent-encoded sequence';
  const bytes = encoder.encode(path).length;
  if (bytes > MAX_MIRROR_PATH_BYTES) return `is ${bytes} bytes long, more than the ${MAX_MIRROR_PATH_BYTES} a mirror path may have`;
  for (const segment of path.split('/')) {
    const segmentBytes = encoder.encode(segment).length;
    if (segmentBytes > MAX_SEGMENT_BYTES) return `has a segment of ${segmentBytes} bytes, more than ${MAX_SEGMENT_BYTES}`;
  }
  return undefined;
}

/**
 * Throws UnsafePathError, a MetadataError naming file and JSON path, when
 * `mirrorPathProblem` finds a problem with `path`, or when it lies where the mirror serves its
 * channels (a file there could never be served). Returns the path unchanged.
 */
export function assertSafePath(file: string, jsonPath: string, path: string): string {
  const problem =
    mirrorPathProblem(path) ??
    (path.startsWith(CHANNELS_PATH_PREFIX) ? `is under ${CHANNELS_PATH_PREFIX}, where the mirror serves its channels` : undefined);
  if (problem !== undefined) throw new UnsafePathError(file, jsonPath, path, problem);
  return path;
}
