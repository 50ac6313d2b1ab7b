/**
 * The mirror's signing keys on the embedded backend: one file under the data
 * dir, readable by its owner only (0600), replaced atomically (a temporary
 * file in the same directory, fsynced, renamed over it).
 */
import { randomUUID } from 'node:crypto';
import { chmod, link, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ConfigError } from '../../core/errors.ts';
import type { SigningKeyStore } from '../../core/ports.ts';

/** Its name under the data dir. */
export const SIGNING_KEYS_FILE = 'signing-keys.json';

const OWNER_ONLY = 0o600;

export class SigningKeyFile implements SigningKeyStore {
  readonly description: string;

  readonly path: string;
  constructor(path: string) {
    this.path = path;
    this.description = path;
  }

  async read(): Promise<string | undefined> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ConfigError(`${this.path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
    }
  }

  async create(text: string, overwrite: boolean): Promise<boolean> {
    if (overwrite) {
      await this.replace(text);
      return true;
    }
    const temporary = await this.writeTemporary(text);
    try {
      // link() fails when the name exists, so the first process to get here wins and nobody's key is lost.
      await link(temporary, this.path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    } finally {
      await unlink(temporary).catch(() => undefined);
    }
  }

  async replace(text: string): Promise<void> {
    const temporary = await this.writeTemporary(text);
    try {
      await rename(temporary, this.path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
  }

  private async writeTemporary(text: string): Promise<string> {
    const temporary = join(dirname(this.path), `.${basename(this.path)}.${randomUUID()}.tmp`);
    const handle = await open(temporary, 'wx', OWNER_ONLY);
    try {
      await handle.writeFile(text, 'utf8');
      // The mode given to open() is masked by the umask; the key must not be readable by others whatever it is.
      await chmod(temporary, OWNER_ONLY);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return temporary;
  }
}

/** The key file of a data dir. */
export function signingKeyFileIn(dataDir: string): SigningKeyFile {
  return new SigningKeyFile(join(dataDir, SIGNING_KEYS_FILE));
}
