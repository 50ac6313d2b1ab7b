/**
 * Re-signed mode on the cloud backend, through the Lambda handlers in the
 * order the state machine calls them (plan → copy each item → publish →
 * prune), on s3rver, DynamoDB Local and the Secrets Manager stand-in, the
 * signing key secret prepared keyless as the stack creates it. The mirror is
 * then read through a loopback stand-in for CloudFront's routing: metadata
 * and the keyring from the API handler, items straight from the bucket.
 * The same for two sources merged into one stream (SKYSTREAMS_SOURCES).
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIGatewayProxyResult, Context } from 'aws-lambda';
import { CreateSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initCloudResources, openCloudBackend } from '../../functions/adapters/cloud.ts';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import type { PlanOutcome } from '../../functions/core/engine.ts';
import { NotFoundError } from '../../functions/core/errors.ts';
import type { CopyTask } from '../../functions/core/planner.ts';
import { keys, type Backend } from '../../functions/core/ports.ts';
import { parseSigningKeysDocument, SIGNING_KEYS_FORMAT } from '../../functions/core/signing-keys.ts';
import { buildFixtureUpstream, loadFixtureProducts } from '../support/fixtures.ts';
import { selectedPaths } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror } from '../support/resigned-mirror.ts';
import { useStandins } from '../support/global-standins.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { apiGatewayEvent, lambdaContext } from '../support/lambda-invocation.ts';

const BUCKET = 'skystreams-resign';
const TABLE = 'skystreams-resign';
const SECRET_NAME = `skystreams-resign-signing-${process.pid}`;

type Handler = (event: unknown, context: Context) => Promise<any>;

const standinEndpoints = useStandins();
let upstream: ServedTree;
let backend: Backend;
let workDir: string;
let secrets: SecretsManagerClient;
let handlers: Record<'plan' | 'copy' | 'publish' | 'prune' | 'api', Handler>;
let edge: { url: string; close(): Promise<void> };
const savedEnv = { ...process.env };

beforeAll(async () => {
  const standins = standinEndpoints();
  await initCloudResources({ bucket: BUCKET, table: TABLE, s3Endpoint: standins.s3Endpoint, dynamodbEndpoint: standins.dynamodbEndpoint });
  const { key, files } = await buildFixtureUpstream();
  upstream = await serveTree(files);
  workDir = mkdtempSync(join(tmpdir(), 'skystreams-resign-pipeline-'));
  writeFileSync(join(workDir, 'keyring.gpg'), key.publicKeyring);
  secrets = new SecretsManagerClient({
    endpoint: standins.secretsManagerEndpoint,
    region: standins.region,
    credentials: { accessKeyId: 'standin', secretAccessKey: 'standin' },
  });
  await secrets.send(new CreateSecretCommand({ Name: SECRET_NAME, SecretString: JSON.stringify({ format: SIGNING_KEYS_FORMAT }) }));

  Object.assign(process.env, standins.env, {
    [ENV.bucket]: BUCKET,
    [ENV.table]: TABLE,
    [ENV.sourceUrl]: upstream.baseUrl,
    [ENV.filters]: JSON.stringify(['arch=amd64']),
    [ENV.max]: '1',
    [ENV.pruneGraceHours]: '0',
    [ENV.keyringFile]: join(workDir, 'keyring.gpg'),
    [ENV.resign]: 'true',
    [ENV.signingSecret]: SECRET_NAME,
    POWERTOOLS_TRACE_ENABLED: 'false',
    POWERTOOLS_SERVICE_NAME: 'skystreams',
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    POWERTOOLS_METRICS_DISABLED: 'true',
  });
  handlers = await loadHandlers();
  backend = openCloudBackend({ bucket: BUCKET, table: TABLE });
  edge = await startEdgeStandin(handlers.api, backend);
}, 120_000);

afterAll(async () => {
  process.env = savedEnv;
  await edge?.close();
  await upstream?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
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
    writeFileSync(join(workDir, 'maas.gpg'), maasTree.key.publicKeyring);
    writeFileSync(join(workDir, 'site.gpg'), siteTree.key.publicKeyring);
    const secret = `${MERGED}-signing-${process.pid}`;
    await secrets.send(new CreateSecretCommand({ Name: secret, SecretString: JSON.stringify({ format: SIGNING_KEYS_FORMAT }) }));
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
    const merged = await loadHandlers();
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

async function loadHandlers(): Promise<Record<'plan' | 'copy' | 'publish' | 'prune' | 'api', Handler>> {
  const load = async (name: string) => ((await import(`../../functions/handlers/${name}.ts`)) as { handler: Handler }).handler;
  return { plan: await load('plan'), copy: await load('copy'), publish: await load('publish'), prune: await load('prune'), api: await load('api') };
}

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
