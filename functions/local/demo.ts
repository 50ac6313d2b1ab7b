/**
 * `npm run demo`: no internet needed. Generates a MAAS-shaped upstream signed
 * with a throwaway key, serves it on loopback, mirrors it with the real
 * engine into the embedded backend, and serves the mirror.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { codeEntryPoint, parseSyncConfig } from '../core/settings.ts';
import { openEmbeddedBackend } from '../adapters/embedded.ts';
import { createSyncEngine, loadSyncKeyrings } from '../adapters/sync-engine.ts';
import { createApp } from '../http/app.ts';
import { progressReporter } from './progress.ts';
import { startServer } from './server.ts';
import { demoItemContent, demoProducts } from './demo-data.ts';
import { generateSigningKey, serveSyntheticUpstream, synthesizeTree } from './synthetic-upstream.ts';

const dataDir = resolve(process.env.SKYSTREAMS_DEMO_DIR ?? './.skystreams-demo');
const port = Number(process.env.PORT ?? 8765);

await mkdir(dataDir, { recursive: true });
const key = await generateSigningKey('skystreams demo');
const keyringPath = resolve(dataDir, 'demo-keyring.gpg');
await writeFile(keyringPath, key.publicKeyring);
const upstream = await serveSyntheticUpstream(await synthesizeTree(demoProducts(), { key, itemContent: demoItemContent }), resolve(dataDir, 'upstream'));
console.log(`synthetic upstream (signed by ${key.fingerprint}) at ${upstream.baseUrl}`);

const backend = openEmbeddedBackend(resolve(dataDir, 'mirror'));
const progress = progressReporter();
// Two versions per product, so `skystreams diff` can compare them.
const config = parseSyncConfig({ source: upstream.baseUrl, keyring: keyringPath, filters: ['arch=amd64'], max: 2 }, codeEntryPoint());
const keyrings = await loadSyncKeyrings(config, () => keyringPath);
const engine = createSyncEngine(config, backend, { keyrings, onEvent: (e) => progress.onEvent(e) });
await engine.run();
progress.finish();

const server = await startServer(createApp({ ...backend, keyringFilename: keyringPath }), { port, host: '127.0.0.1' });
console.log(`
mirror served at ${server.url}  (open it in a browser: the status page)
keyring:         ${keyringPath}

try:
  curl -s ${server.url}api/v1/status
  curl -s ${server.url}api/v1/packages/openssl
  curl -s ${server.url}api/v1/diff/com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04/20250618/20250709
  gpgv --keyring ${keyringPath} <(curl -s ${server.url}streams/v1/index.sjson)
  sstream-mirror --keyring=${keyringPath} ${server.url} /tmp/out 'arch=amd64' --max=1
  maas $PROFILE boot-source update 1 url=${server.url} keyring_filename=${keyringPath}

Ctrl-C to stop.`);

await new Promise<void>((done) => {
  process.once('SIGINT', () => done());
  process.once('SIGTERM', () => done());
});
await server.close();
await upstream.close();
await backend.close();
