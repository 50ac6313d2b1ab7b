/**
 * What `npm run demo` runs (functions/demo/demo.ts), for tests: the demo's
 * signed MAAS-shaped upstream on loopback, synced by the real engine into an
 * embedded backend, and served by the real app on node:http. Tests reach the
 * demo's data through here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Backend, SyncRun } from '../../functions/core/ports.ts';
import { startDemo } from '../../functions/demo/demo.ts';

export { demoItemContent, demoManifestPackages, demoProducts } from '../../functions/demo/demo-data.ts';

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

/** The demo, quiet, in a directory of its own that close() removes. @default max 1 */
export async function startDemoMirror(options: { filters?: string[]; max?: number } = {}): Promise<DemoMirror> {
  const dir = await mkdtemp(join(tmpdir(), 'skystreams-demo-mirror-'));
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() }) as unknown as NodeJS.WriteStream;
  try {
    const demo = await startDemo({ dataDir: dir, max: options.max ?? 1, ...(options.filters && { filters: options.filters }), progress: discard });
    return {
      url: demo.url,
      backend: demo.backend,
      run: demo.run,
      dataDir: demo.mirrorDir,
      upstreamUrl: demo.upstreamUrl,
      keyringFile: demo.keyringPath,
      async close() {
        await demo.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
