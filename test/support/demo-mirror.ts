/**
 * What `npm run demo` runs, for tests: the demo's signed MAAS-shaped upstream
 * on loopback, synced by the real engine into an embedded backend, and served
 * by the real app on node:http.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import type { Backend, SyncRun } from '../../functions/core/ports.ts';
import { createApp } from '../../functions/http/app.ts';
import { demoItemContent, demoProducts } from '../../functions/local/demo-data.ts';
import { startServer } from '../../functions/local/server.ts';
import { generateSigningKey, serveSyntheticUpstream, synthesizeTree } from '../../functions/local/synthetic-upstream.ts';
import { syncMirror } from './mirror.ts';

export interface DemoMirror {
  /** The mirror's base URL, ending in `/`. */
  url: string;
  backend: Backend;
  /** The sync that filled it. */
  run: SyncRun;
  /** The embedded backend's directory: `--data-dir` for the CLI. */
  dataDir: string;
  /** The demo upstream, still served: `--source` for the CLI. */
  upstreamUrl: string;
  /** The upstream's public keyring on disk: `--keyring` for the CLI. */
  keyringFile: string;
  close(): Promise<void>;
}

export async function startDemoMirror(options: { filters?: string[]; max?: number } = {}): Promise<DemoMirror> {
  const dir = await mkdtemp(join(tmpdir(), 'skystreams-demo-mirror-'));
  const key = await generateSigningKey('skystreams test demo');
  const keyringFile = join(dir, 'keyring.gpg');
  await writeFile(keyringFile, key.publicKeyring);
  const upstream = await serveSyntheticUpstream(await synthesizeTree(demoProducts(), { key, itemContent: demoItemContent }), join(dir, 'upstream'));
  const dataDir = join(dir, 'mirror');
  const backend = openEmbeddedBackend(dataDir);
  try {
    const run = await syncMirror(backend, upstream.baseUrl, { keyring: key, filters: options.filters ?? ['arch=amd64'], max: options.max ?? 1 });
    if (run.state !== 'succeeded') throw new Error(`the demo sync ended ${run.state}: ${run.error}`);
    const server = await startServer(createApp(backend), { port: 0, host: '127.0.0.1' });
    return {
      url: server.url,
      backend,
      run,
      dataDir,
      upstreamUrl: upstream.baseUrl,
      keyringFile,
      async close() {
        await server.close();
        await upstream.close();
        await backend.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await upstream.close();
    await backend.close();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
