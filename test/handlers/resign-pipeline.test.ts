/**
 * Re-signed mode on the cloud backend, through the Lambda handlers in the
 * order the state machine calls them (plan → copy each item → publish →
 * prune), on s3rver, DynamoDB Local and the Secrets Manager stand-in, the
 * signing key secret prepared keyless as the stack creates it. The mirror is
 * then read through a loopback stand-in for CloudFront's routing: metadata
 * and the keyring from the API handler, items straight from the bucket.
 * Then a custom image through the uploads handler (POST /api/v1/uploads),
 * published by the next run although upstream has not changed.
 * The same for two sources merged into one stream (SKYSTREAMS_SOURCES).
 */
import { createServer, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initCloudResources, openCloudBackend } from '../../functions/adapters/cloud.ts';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import type { PlanOutcome } from '../../functions/core/engine.ts';
import { NotFoundError } from '../../functions/core/errors.ts';
import type { CopyTask } from '../../functions/core/planner.ts';
import { keys, type Backend } from '../../functions/core/ports.ts';
import { parseSigningKeysDocument } from '../../functions/core/signing-keys.ts';
import { buildFixtureUpstream, loadFixtureProducts } from '../support/fixtures.ts';
import { selectedPaths } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror } from '../support/resigned-mirror.ts';
import { useStandins } from '../support/global-standins.ts';
import { createSigningSecret, loadHandlers, setHandlerEnvironment, type Handler, type HandlerEnvironment } from '../support/handler-environment.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { createHash } from 'node:crypto';
import { CUSTOM_CONTENT_IDS } from '../../functions/core/custom-images.ts';
import { createUploadRoute } from '../../functions/http/upload-route.ts';
import { maasProductModel } from '../support/maas-models.ts';
import { apiGatewayEvent, lambdaContext } from '../support/lambda-invocation.ts';
import { rootTgz } from '../support/image-files.ts';

const BUCKET = 'skystreams-resign';
const TABLE = BUCKET;
const SECRET_NAME = `skystreams-resign-signing-${process.pid}`;

const standinEndpoints = useStandins();
let upstream: ServedTree;
let backend: Backend;
let environment: HandlerEnvironment | undefined;
let secrets: SecretsManagerClient;
let handlers: Record<'plan' | 'copy' | 'publish' | 'prune' | 'api' | 'upload', Handler>;
let edge: { url: string; close(): Promise<void> };

beforeAll(async () => {
  const standins = standinEndpoints();
  const { key, files } = await buildFixtureUpstream();
  upstream = await serveTree(files);
  await createSigningSecret(standins, SECRET_NAME);
  environment = await setHandlerEnvironment({
    standins,
    name: BUCKET,
    upstreamUrl: upstream.baseUrl,
    keyring: key.publicKeyring,
    env: { [ENV.filters]: JSON.stringify(['arch=amd64']), [ENV.resign]: 'true', [ENV.signingSecret]: SECRET_NAME },
  });
  secrets = new SecretsManagerClient({
    endpoint: standins.secretsManagerEndpoint,
    region: standins.region,
    credentials: { accessKeyId: 'standin', secretAccessKey: 'standin' },
  });
  handlers = await loadHandlers(['plan', 'copy', 'publish', 'prune', 'api', 'upload']);
  backend = openCloudBackend({ bucket: BUCKET, table: TABLE });
  edge = await startEdgeStandin(handlers.api, backend);
}, 120_000);

afterAll(async () => {
  environment?.restore();
  await edge?.close();
  await upstream?.close();
});

describe('Handlers: a re-signed sync', () => {
  it('publishes exactly what it stores, signed with the key it created in the secret, served with /keyring.gpg', async () => {
    const runId = 'resign-run-1';
    const plan = (await handlers.plan({ runId }, lambdaContext('plan'))) as PlanOutcome;
    if (plan.outcome !== 'planned') throw new Error(`expected a plan, got ${plan.outcome}`);
    for (const task of await copyList(plan.copyKey)) await handlers.copy({ runId, task }, lambdaContext('copy'));
    await handlers.publish({ runId }, lambdaContext('publish'));
    await handlers.prune({ runId }, lambdaContext('prune'));

    // The plan function filled the keyless secret with a key: the one the served keyring holds.
    const { SecretString } = await secrets.send(new GetSecretValueCommand({ SecretId: SECRET_NAME }));
    expect(parseSigningKeysDocument(SECRET_NAME, SecretString ?? '').active).toContain('-----BEGIN PGP PRIVATE KEY BLOCK-----');

    const mirror = await readResignedMirror(edge.url);
    expect(mirror.listedPaths).toEqual(selectedPaths(loadFixtureProducts(), 'amd64', 1));
    expect(mirror.fetchProblems).toEqual([]);
    expect(mirror.maasProblems).toEqual([]);
    expect(mirror.keyring.fingerprints).toHaveLength(1);
    const gpgv = await gpgvProblems(mirror);
    if (gpgv === undefined) console.warn('gpgv is not installed: the gpgv check of the re-signed files is skipped');
    else expect(gpgv).toEqual([]);
    // The upstream files it was made from are kept with the generation, never served.
    expect((await fetch(`${edge.url}upstream/streams/v1/index.sjson`)).status).toBe(404);
  });
});

describe('Handlers: a custom image uploaded through POST /api/v1/uploads', () => {
  const encoder = new TextEncoder();
  const tgz = rootTgz(50_000);
  const manifest = encoder.encode('site-agent\t1.2.3\nbash\t5.1.8-6.el9\n');
  const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
  const image = { os: 'centos', release: 'mycentos9', arch: 'amd64', subarch: 'generic', title: 'CentOS 9 (site)' };
  const files = (tgzSha256: string) => [
    { ftype: 'root-tgz', key: 'incoming/site/image.tgz', sha256: tgzSha256, size: tgz.byteLength },
    { ftype: 'manifest', key: 'incoming/site/image.manifest', sha256: sha256(manifest), size: manifest.byteLength },
  ];
  const post = async (body: unknown) => {
    const result = (await handlers.upload(apiGatewayEvent('/api/v1/uploads', { method: 'POST', body: JSON.stringify(body) }), lambdaContext('upload'))) as APIGatewayProxyResult;
    return { status: result.statusCode, body: JSON.parse(Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8').toString()) };
  };
  const keysUnder = async (prefix: string) => {
    const found: string[] = [];
    for await (const info of backend.objects.list(prefix)) found.push(info.key);
    return found;
  };

  it('refuses a wrong sha256 (422 naming the file) and a dd image (400 with the maas command), storing nothing; then stores it, and the next sync publishes it', async () => {
    await backend.objects.put('incoming/site/image.tgz', tgz);
    await backend.objects.put('incoming/site/image.manifest', manifest);

    const wrong = await post({ ...image, files: files('0'.repeat(64)) });
    expect(wrong.status).toBe(422);
    expect(wrong.body.error.code).toBe('unprocessable_content');
    expect(wrong.body.error.message).toBe(`incoming/site/image.tgz: sha256 is ${sha256(tgz)}, the metadata declares ${'0'.repeat(64)}`);
    expect(await keysUnder('items/custom/')).toEqual([]);
    expect(await keysUnder('uploads/')).toEqual([]);
    // The incoming files stay, for a corrected request.
    expect(await keysUnder('incoming/')).toEqual(['incoming/site/image.manifest', 'incoming/site/image.tgz']);

    const esxi = await post({ ...image, os: 'esxi', release: '8.0', title: 'ESXi 8.0', files: [{ ftype: 'ddgz', key: 'incoming/site/image.tgz', sha256: sha256(tgz), size: tgz.byteLength }] });
    expect(esxi.status).toBe(400);
    expect(esxi.body.error.message).toContain("maas $PROFILE boot-resources create name=esxi/8.0 'title=ESXi 8.0' architecture=amd64/generic filetype=ddgz content@=incoming/site/image.tgz");

    const unknownField = await post({ ...image, files: files(sha256(tgz)), colour: 'blue' });
    expect(unknownField.status).toBe(400);
    expect(unknownField.body.error.message).toBe('POST /api/v1/uploads: unknown field "colour"');
    expect(await keysUnder('uploads/')).toEqual([]);

    const accepted = await post({ ...image, files: files(sha256(tgz).toUpperCase()) });
    expect(accepted.status).toBe(202);
    expect(accepted.body).toMatchObject({ product: 'com.skystreams.custom:v3:centos:mycentos9:amd64:generic', version: expect.stringMatching(/^\d{8}$/) });
    const version = accepted.body.version as string;
    expect(await keysUnder('incoming/')).toEqual([]);
    expect(await keysUnder('items/custom/')).toEqual([
      `items/custom/centos/mycentos9/amd64/generic/${version}/root-tgz`,
      `items/custom/centos/mycentos9/amd64/generic/${version}/root-tgz.manifest`,
    ]);

    // Upstream has not changed since the first test's sync: the upload alone makes this run publish.
    const runId = 'resign-run-upload';
    const plan = (await handlers.plan({ runId }, lambdaContext('plan'))) as PlanOutcome;
    expect(plan.outcome).toBe('planned');
    if (plan.outcome !== 'planned') return;
    expect(plan.copyItems).toBe(0);
    await handlers.publish({ runId }, lambdaContext('publish'));
    await handlers.prune({ runId }, lambdaContext('prune'));

    const mirror = await readResignedMirror(edge.url);
    expect(mirror.fetchProblems).toEqual([]);
    expect(mirror.maasProblems).toEqual([]);
    expect(mirror.listedPaths.filter((path) => path.startsWith('custom/'))).toEqual([
      `custom/centos/mycentos9/amd64/generic/${version}/root-tgz`,
      `custom/centos/mycentos9/amd64/generic/${version}/root-tgz.manifest`,
    ]);
    const single = mirror.products.find((doc) => doc.content_id === CUSTOM_CONTENT_IDS['single-file']);
    expect(maasProductModel('single', single as unknown as Record<string, unknown>)).toBe('single-file');
    // And the package index has its manifest, as for mirrored images.
    const packages = (await handlers.api(apiGatewayEvent('/api/v1/packages/site-agent'), lambdaContext('api'))) as APIGatewayProxyResult;
    expect(Buffer.from(packages.body, 'base64').toString()).toContain('com.skystreams.custom:v3:centos:mycentos9:amd64:generic');
  });

  it('refuses every upload on a mirror that does not publish re-signed (409), storing nothing', async () => {
    await backend.objects.put('incoming/verbatim/image.tgz', tgz);
    const route = createUploadRoute({ objects: backend.objects, catalog: backend.catalog, resign: false });
    const response = await route(
      new Request('https://api.example/api/v1/uploads', { method: 'POST', body: JSON.stringify({ ...image, release: 'verbatim9', files: files(sha256(tgz)) }) }),
    );
    expect(response.status).toBe(409);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/^custom images are published only in re-signed mode/);
    expect((await keysUnder('uploads/')).some((key) => key.includes('verbatim9'))).toBe(false);
    expect(await keysUnder('incoming/')).toEqual(['incoming/verbatim/image.tgz']);
    const get = await route(new Request('https://api.example/api/v1/uploads'));
    expect(get.status).toBe(405);
  });
});

describe('Handlers: two sources merged into one re-signed stream', () => {
  const MERGED = 'skystreams-merged';
  let maas: ServedTree;
  let site: ServedTree;
  let mergedEdge: { url: string; close(): Promise<void> } | undefined;
  afterAll(async () => {
    await mergedEdge?.close();
    await maas?.close();
    await site?.close();
  });

  it('copies each item from its own source, publishes what both selected, and records which products gave way', async () => {
    const standins = standinEndpoints();
    await initCloudResources({ bucket: MERGED, table: MERGED, s3Endpoint: standins.s3Endpoint, dynamodbEndpoint: standins.dynamodbEndpoint });
    const [ubuntu, bootloaders, centos] = loadFixtureProducts();
    const maasTree = await buildFixtureUpstream({ mutate: (docs) => docs.splice(2, 1) });
    // The site also offers Ubuntu, its own build at the same paths: those products give way to maas's, of higher priority.
    const siteTree = await buildFixtureUpstream({ contentSeed: 'site', mutate: (docs) => docs.splice(1, 1) });
    maas = await serveTree(maasTree.files);
    site = await serveTree(siteTree.files);
    const { workDir } = environment!;
    writeFileSync(join(workDir, 'maas.gpg'), maasTree.key.publicKeyring);
    writeFileSync(join(workDir, 'site.gpg'), siteTree.key.publicKeyring);
    const secret = `${MERGED}-signing-${process.pid}`;
    await createSigningSecret(standins, secret);
    for (const single of [ENV.sourceUrl, ENV.filters, ENV.max, ENV.keyringFile]) delete process.env[single];
    Object.assign(process.env, {
      [ENV.bucket]: MERGED,
      [ENV.table]: MERGED,
      [ENV.signingSecret]: secret,
      [ENV.sources]: JSON.stringify([
        { name: 'maas', url: maas.baseUrl, keyring: join(workDir, 'maas.gpg'), filters: ['arch=amd64'], max: 1, priority: 10 },
        { name: 'site', url: site.baseUrl, keyring: join(workDir, 'site.gpg'), filters: ['arch=amd64'], max: 1, priority: 0 },
      ]),
    });
    // Each Lambda container builds its runtime once from its environment: these are new containers.
    vi.resetModules();
    const merged = await loadHandlers(['plan', 'copy', 'publish', 'prune', 'api']);
    const store = openCloudBackend({ bucket: MERGED, table: MERGED });
    mergedEdge = await startEdgeStandin(merged.api, store);

    const runId = 'merged-run-1';
    const plan = (await merged.plan({ runId }, lambdaContext('plan'))) as PlanOutcome;
    if (plan.outcome !== 'planned') throw new Error(`expected a plan, got ${plan.outcome}`);
    const tasks = await copyList(plan.copyKey, store);
    expect(new Set(tasks.map((task) => task.source))).toEqual(new Set(['maas', 'site']));
    for (const task of tasks) await merged.copy({ runId, task }, lambdaContext('copy'));
    await merged.publish({ runId }, lambdaContext('publish'));
    await merged.prune({ runId }, lambdaContext('prune'));

    const mirror = await readResignedMirror(mergedEdge.url);
    expect(mirror.listedPaths).toEqual([...selectedPaths([ubuntu!, bootloaders!], 'amd64', 1), ...selectedPaths([centos!], 'amd64', 1)].sort());
    expect(mirror.fetchProblems).toEqual([]);
    expect(mirror.maasProblems).toEqual([]);
    // Every Ubuntu item has maas's bytes, not the site's (readResignedMirror checked the served bytes against these digests).
    const ubuntuPath = selectedPaths([ubuntu!], 'amd64', 1)[0]!;
    expect(maas.requestsFor(ubuntuPath)).toHaveLength(1);
    expect(site.requestsFor(ubuntuPath)).toHaveLength(0);
    const status = (await (await fetch(`${mergedEdge.url}api/v1/status`)).json()) as { conflicts: { product: string; kept: { source: string }; reason: string }[] };
    const amd64Ubuntu = Object.entries(ubuntu!.products).filter(([, product]) => product.arch === 'amd64').map(([name]) => name);
    expect(status.conflicts.map((conflict) => conflict.product)).toEqual(amd64Ubuntu.sort());
    expect(status.conflicts.every((conflict) => conflict.kept.source === 'maas' && conflict.reason === 'product')).toBe(true);

    // No source changed: the check answers unchanged after one conditional request to each.
    const before = [maas.requests.length, site.requests.length];
    const again = (await merged.plan({ runId: 'merged-run-2' }, lambdaContext('plan'))) as PlanOutcome;
    expect(again.outcome).toBe('unchanged');
    expect([maas.requests.length - before[0]!, site.requests.length - before[1]!]).toEqual([1, 1]);
  });
});

async function copyList(key: string, store: Backend = backend): Promise<CopyTask[]> {
  const { body } = await store.objects.get(key);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as CopyTask[];
}

/**
 * CloudFront's routing on loopback: `/streams/*`, `/api/*` and the keyring
 * files go to the API handler as API Gateway events; every other path is an
 * item read from the bucket under `items/`, 404 when absent.
 */
async function startEdgeStandin(api: Handler, store: Backend): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://edge').pathname;
    void (async () => {
      if (/^\/(streams|api)\//.test(path) || path === '/keyring.gpg' || path === '/keyring.asc') {
        const result = (await api(apiGatewayEvent(path), lambdaContext('api'))) as APIGatewayProxyResult;
        response.writeHead(result.statusCode).end(Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8'));
        return;
      }
      try {
        const object = await store.objects.get(keys.item(decodeURIComponent(path.slice(1))));
        response.writeHead(200, { 'content-length': object.size });
        for await (const chunk of object.body) response.write(chunk);
        response.end();
      } catch (error) {
        response.writeHead(error instanceof NotFoundError ? 404 : 500).end();
      }
    })().catch(() => response.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
