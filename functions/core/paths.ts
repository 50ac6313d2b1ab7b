/** Mirror-relative path safety. */
import { UnsafePathError } from './errors.ts';

// C0 controls and DEL; a file name with these is never legitimate and may confuse logs or shells.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Throws UnsafePathError (naming file and JSON path) for empty paths,
 * absolute paths, `..` or `.` or empty segments, backslashes, NUL or other
 * control characters. Returns the path unchanged.
 */
export function assertSafePath(file: string, jsonPath: string, path: string): string {
  const reject = (problem: string): never => {
    throw new UnsafePathError(file, jsonPath, path, problem);
  };
  if (typeof path !== 'string' || path === '') reject('empty');
  if (CONTROL_CHARACTER.test(path)) reject('contains a control character');
  if (path.includes('\\')) reject('contains a backslash');
  if (path.startsWith('/')) reject('is absolute');
  for (const segment of path.split('/')) {
    if (segment === '') reject('has an empty segment');
    if (segment === '.' || segment === '..') reject(`has a "${segment}" segment`);
  }
  return path;
}
