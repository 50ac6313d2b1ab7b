/** The single-machine backend: objects in a directory, catalog in one SQLite file beside them. */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Backend } from '../core/ports.ts';
import { FsObjectStore } from './fs/fs-object-store.ts';
import { signingKeyFileIn } from './fs/signing-key-file.ts';
import { SqliteCatalog } from './sqlite/sqlite-catalog.ts';

/** Opens (creating when absent) `<dataDir>/objects/` and `<dataDir>/catalog.sqlite`; signing keys go in `<dataDir>/signing-keys.json`. */
export function openEmbeddedBackend(dataDir: string): Backend {
  const root = resolve(dataDir);
  mkdirSync(join(root, 'objects'), { recursive: true });
  const catalog = new SqliteCatalog(join(root, 'catalog.sqlite'));
  return {
    objects: new FsObjectStore(join(root, 'objects')),
    catalog,
    description: `dir ${root}`,
    signingKeys: signingKeyFileIn(root),
    close: async () => catalog.close(),
  };
}
