/** The engine the benches sync with: wired like every other entry point's, one attempt per item, no backoff sleeps. */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SyncEngine } from '../../functions/core/engine.ts';
import type { Backend } from '../../functions/core/ports.ts';
import { codeEntryPoint, parseSyncConfig } from '../../functions/core/settings.ts';
import { createSyncEngine, loadSyncKeyrings } from '../../functions/adapters/sync-engine.ts';
import type { StreamingUpstream } from './streaming-upstream.ts';

/** Writes the upstream's keyring into `dataDir` (the backend's, already open) and syncs everything the upstream lists. */
export async function benchEngine(upstream: StreamingUpstream, backend: Backend, dataDir: string): Promise<SyncEngine> {
  const keyringFile = join(dataDir, 'upstream-keyring.gpg');
  await writeFile(keyringFile, upstream.publicKeyring);
  const config = parseSyncConfig({ source: upstream.baseUrl, keyring: keyringFile, attempts: 1 }, codeEntryPoint());
  return createSyncEngine(config, backend, { keyrings: await loadSyncKeyrings(config, () => keyringFile), sleep: async () => {} });
}
