/** Reads a keyring file for any entry point; what a missing one means is settings.ts's rule. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadKeyring, type Keyring } from '../../core/pgp.ts';
import { unreadableKeyring, type KeyringSource } from '../../core/settings.ts';

/** The file's bytes, or the ConfigError `unreadableKeyring` words for the setting named `label`. */
export function readKeyringFile(path: string, label: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw unreadableKeyring(label, path, code, { cause: error });
  }
  if (bytes.length === 0) throw unreadableKeyring(label, path, 'empty');
  return bytes;
}

/** The keyring bytes a KeyringSource names; relative files resolve against `baseDir`. */
export function keyringBytes(source: KeyringSource, label: string, baseDir = process.cwd()): { bytes: Uint8Array; name: string } {
  if ('armored' in source) return { bytes: new TextEncoder().encode(source.armored), name: label };
  const path = resolve(baseDir, source.file);
  return { bytes: readKeyringFile(path, label), name: path };
}

/** Reads and parses the keyring a KeyringSource names. */
export async function openKeyring(source: KeyringSource, label: string, baseDir?: string): Promise<Keyring> {
  const { bytes, name } = keyringBytes(source, label, baseDir);
  return loadKeyring(name, bytes);
}
