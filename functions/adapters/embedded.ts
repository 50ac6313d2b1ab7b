/** The single-machine backend: objects in a directory, catalog in one SQLite file beside them. */
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '../core/errors.ts';
import type { Backend } from '../core/ports.ts';
import { FsObjectStore } from './fs/fs-object-store.ts';
import { signingKeyFileIn } from './fs/signing-key-file.ts';
import { SqliteCatalog } from './sqlite/sqlite-catalog.ts';

const CATALOG_FILE = 'catalog.sqlite';

export interface EmbeddedBackendOptions {
  /**
   * Only open a mirror that exists: for commands that read one, a mistyped
   * `--data-dir` must be an error, not a new empty mirror. @default false
   */
  existing?: boolean;
  /**
   * Open an existing mirror without writing a byte (implies `existing`), so
   * commands that only read it work on a full disk. @default false
   */
  readOnly?: boolean;
}

/** Opens (creating when absent) `<dataDir>/objects/` and `<dataDir>/catalog.sqlite`; signing keys go in `<dataDir>/signing-keys.json`. */
export function openEmbeddedBackend(dataDir: string, options: EmbeddedBackendOptions = {}): Backend {
  const root = resolve(dataDir);
  if ((options.existing || options.readOnly) && !existsSync(join(root, CATALOG_FILE))) {
    throw new ConfigError(`${root}: no mirror here (no ${CATALOG_FILE}): name the mirror's directory with --data-dir, or make one with skystreams sync`);
  }
  if (!options.readOnly) mkdirSync(join(root, 'objects'), { recursive: true });
  const catalog = new SqliteCatalog(join(root, CATALOG_FILE), { readOnly: options.readOnly === true });
  return {
    objects: new FsObjectStore(join(root, 'objects')),
    catalog,
    description: `dir ${root}`,
    signingKeys: signingKeyFileIn(root),
    close: async () => catalog.close(),
  };
}
