/** Mirror-relative path safety. */

/**
 * Throws UnsafePathError (naming file and JSON path) for empty paths,
 * absolute paths, `..` or `.` or empty segments, backslashes, NUL or other
 * control characters. Returns the path unchanged.
 */
export function assertSafePath(file: string, jsonPath: string, path: string): string {
  throw new Error(`assertSafePath(${file}, ${jsonPath}, ${path}) not implemented`);
}
