/** The Content-Type a mirror file is stored and served with, by its name. */
export function contentTypeOf(file: string): string {
  if (file.endsWith('.json')) return 'application/json';
  if (file.endsWith('.sjson')) return 'text/plain; charset=utf-8';
  // The mirror's public keyring, binary (`.gpg`) or armored (`.asc`).
  if (file.endsWith('.gpg') || file.endsWith('.asc')) return 'application/pgp-keys';
  return 'application/octet-stream';
}
