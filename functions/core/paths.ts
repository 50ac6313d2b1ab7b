/** Mirror-relative path safety. */
import { UnsafePathError } from './errors.ts';
import { CHANNELS_PATH_PREFIX } from './ports.ts';

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

/**
 * Throws UnsafePathError (naming file and JSON path) when `objectKeyProblem`
 * finds a problem with `path`, or when it lies where the mirror serves its
 * channels (a file there could never be served). Returns the path unchanged.
 */
export function assertSafePath(file: string, jsonPath: string, path: string): string {
  const problem =
    objectKeyProblem(path) ??
    (path.startsWith(CHANNELS_PATH_PREFIX) ? `is under ${CHANNELS_PATH_PREFIX}, where the mirror serves its channels` : undefined);
  if (problem !== undefined) throw new UnsafePathError(file, jsonPath, path, problem);
  return path;
}
