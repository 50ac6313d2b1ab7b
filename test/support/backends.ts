/**
 * The backends the end-to-end suites run on. Each opens an empty mirror and
 * says which CLI flags reach the same stores.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import type { Backend } from '../../functions/core/ports.ts';

export interface OpenedBackend {
  backend: Backend;
  /** CLI flags selecting these stores. */
  cliFlags: string[];
  /** Extra environment for CLI child processes. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

export interface BackendFactory {
  name: string;
  open(): Promise<OpenedBackend>;
}

export const embeddedBackend: BackendFactory = {
  name: 'embedded (directory + SQLite)',
  async open() {
    const dataDir = await mkdtemp(join(tmpdir(), 'skystreams-e2e-'));
    const backend = openEmbeddedBackend(dataDir);
    return {
      backend,
      cliFlags: ['--data-dir', dataDir],
      env: {},
      async cleanup() {
        await backend.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  },
};
