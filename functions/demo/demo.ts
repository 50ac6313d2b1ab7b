/**
 * `npm run demo`: no internet needed. Generates a MAAS-shaped upstream signed
 * with a throwaway key, serves it on loopback, mirrors it with the real
 * engine into the embedded backend, and serves the mirror.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { generateSigningKey, loadSigningKey } from '../core/pgp.ts';
import type { Backend, SyncRun } from '../core/ports.ts';
import { codeEntryPoint, parseSyncConfig } from '../core/settings.ts';
import { openEmbeddedBackend } from '../adapters/embedded.ts';
import { createSyncEngine, loadSyncKeyrings } from '../adapters/sync-engine.ts';
import { createApp } from '../http/app.ts';
import { progressReporter } from '../local/progress.ts';
import { startServer } from '../local/server.ts';
import { demoItemContent, demoProducts } from './demo-data.ts';
import { serveSyntheticUpstream, synthesizeTree } from './synthetic-upstream.ts';

export interface DemoOptions {
  /** Where the upstream, the mirror and the keyring are kept. */
  dataDir: string;
  /** The mirror's port. @default 0 (any free port) */
  port?: number;
  /** Which images to mirror. @default ['arch=amd64'] */
  filters?: string[];
  /** Versions kept per product. @default 2, so `skystreams diff` can compare them */
  max?: number;
  /** Where sync progress goes. @default process.stderr */
  progress?: NodeJS.WriteStream;
}

export interface Demo {
  /** The mirror's base URL, ending in `/`. */
  url: string;
  /** The synthetic upstream's base URL, still served. */
  upstreamUrl: string;
  /** The upstream's public keyring (binary, as `gpg --export` writes it). */
  keyringPath: string;
  /** The embedded backend's directory: `--data-dir` for the CLI. */
  mirrorDir: string;
  backend: Backend;
  /** The sync that filled the mirror. */
  run: SyncRun;
  /** Signer of the upstream's metadata. */
  fingerprint: string;
  close(): Promise<void>;
}

/** Serves a signed synthetic upstream, mirrors it, and serves the mirror; the sync must succeed. */
export async function startDemo(options: DemoOptions): Promise<Demo> {
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const { armoredPrivate, fingerprint } = await generateSigningKey('skystreams demo');
  const key = await loadSigningKey('the demo key', armoredPrivate);
  const keyringPath = resolve(dataDir, 'demo-keyring.gpg');
  const publicKeyring = key.toPublic().write();
  await writeFile(keyringPath, publicKeyring);
  const upstream = await serveSyntheticUpstream(await synthesizeTree(demoProducts(), { key, itemContent: demoItemContent }), resolve(dataDir, 'upstream'));

  const mirrorDir = resolve(dataDir, 'mirror');
  const backend = openEmbeddedBackend(mirrorDir);
  try {
    const progress = progressReporter(options.progress);
    const config = parseSyncConfig(
      { source: upstream.baseUrl, keyring: keyringPath, filters: options.filters ?? ['arch=amd64'], max: options.max ?? 2 },
      codeEntryPoint(),
    );
    const keyrings = await loadSyncKeyrings(config, () => keyringPath);
    const engine = createSyncEngine(config, backend, { keyrings, onEvent: (e) => progress.onEvent(e) });
    const run = await engine.run();
    progress.finish();
    if (run.state !== 'succeeded') throw new Error(`the demo sync ended ${run.state}: ${run.error}`);

    const server = await startServer(createApp({ ...backend, keyringFilename: keyringPath }), { port: options.port ?? 0, host: '127.0.0.1' });
    return {
      url: server.url,
      upstreamUrl: upstream.baseUrl,
      keyringPath,
      mirrorDir,
      backend,
      run,
      fingerprint,
      async close() {
        await server.close();
        await upstream.close();
        await backend.close();
      },
    };
  } catch (error) {
    await upstream.close();
    await backend.close();
    throw error;
  }
}

if (import.meta.main) {
  const demo = await startDemo({
    dataDir: process.env.SKYSTREAMS_DEMO_DIR ?? './.skystreams-demo',
    port: Number(process.env.PORT ?? 8765),
  });
  const { url, keyringPath } = demo;
  console.log(`
synthetic upstream (signed by ${demo.fingerprint}) at ${demo.upstreamUrl}
mirror served at ${url}  (open it in a browser: the status page)
keyring:         ${keyringPath}

try:
  curl -s ${url}api/v1/status
  curl -s ${url}api/v1/packages/openssl
  curl -s ${url}api/v1/diff/com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04/20250618/20250709
  gpgv --keyring ${keyringPath} <(curl -s ${url}streams/v1/index.sjson)
  sstream-mirror --keyring=${keyringPath} ${url} /tmp/out 'arch=amd64' --max=1
  maas $PROFILE boot-source update 1 url=${url} keyring_filename=${keyringPath}

Ctrl-C to stop.`);

  await new Promise<void>((done) => {
    process.once('SIGINT', () => done());
    process.once('SIGTERM', () => done());
  });
  await demo.close();
}
