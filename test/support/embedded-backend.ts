/** A fresh directory + SQLite backend for each test of a file, removed after it. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import type { Backend } from '../../functions/core/ports.ts';

export interface EmbeddedBackend {
  dataDir: string;
  backend: Backend;
}

/**
 * Registers beforeEach/afterEach hooks: `opened` gets each test's backend
 * before the test runs; `cleanup` runs first after it (to stop a server, say).
 */
export function useEmbeddedBackend(prefix: string, opened: (fresh: EmbeddedBackend) => void, cleanup?: () => Promise<void>): void {
  let current: EmbeddedBackend | undefined;
  beforeEach(async () => {
    const dataDir = await mkdtemp(join(tmpdir(), prefix));
    current = { dataDir, backend: openEmbeddedBackend(dataDir) };
    opened(current);
  });
  afterEach(async () => {
    await cleanup?.();
    if (!current) return;
    await current.backend.close();
    await rm(current.dataDir, { recursive: true, force: true });
    current = undefined;
  });
}
