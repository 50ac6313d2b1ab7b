/**
 * Every AWS call each handler makes, checked against that function's own
 * role. The handlers run the whole pipeline on the stand-ins (which accept
 * any credentials) through every path: a changed upstream, an unchanged one
 * whose plan prunes, a failed run, an abandoned run settled by the next plan,
 * a large item copied in ranged parts (and one failing each way), a plan
 * that indexes stored manifests the package index lacks, and the API. A
 * middleware on the backend's SDK clients records each call as the IAM
 * request AWS would authorize (action, resource ARN, condition keys);
 * each is then evaluated against the policies the synthesized template gives
 * that function, resolved for account 123456789012 in us-east-1, with
 * @cloud-copilot/iam-simulate (AGPL-3.0: a devDependency of the tests only).
 * The stack is synthesized in re-signed mode, so the plan function also
 * reads and fills the signing key secret (on the Secrets Manager stand-in).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { runSimulation } from '@cloud-copilot/iam-simulate';
import type { InitializeMiddleware, MiddlewareStack } from '@smithy/types';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openCloudBackend, type ClientHook } from '../../functions/adapters/cloud.ts';
import { DeleteCommand } from '@aws-sdk/lib-dynamodb';
import { dynamoClients } from '../../functions/adapters/dynamodb/dynamodb-client.ts';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import type { PlanOutcome } from '../../functions/core/engine.ts';
import { NotFoundError } from '../../functions/core/errors.ts';
import { syncDefaults } from '../../functions/core/settings.ts';
import type { CopyTask } from '../../functions/core/planner.ts';
import { keys, type Backend } from '../../functions/core/ports.ts';
import { demoProducts } from '../support/demo-mirror.ts';
import { withNewVersion } from '../support/mirror.ts';
import { generateSigningKey, synthesizeTree, syntheticContent, type SigningKey } from '../support/signed-upstream.ts';
import { useStandins } from '../support/global-standins.ts';
import { createSigningSecret, loadHandlers, setHandlerEnvironment, type Handler, type HandlerEnvironment } from '../support/handler-environment.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { logicalIdOf, synthMirror, type SynthesizedMirror } from '../infra/synth.ts';
import { apiGatewayEvent, lambdaContext, startStepFunctionsStandin, type StepFunctionsStandin } from '../support/lambda-invocation.ts';
import { rootTgz } from '../support/image-files.ts';

const ACCOUNT = '123456789012';
const REGION = 'us-east-1';
const BUCKET = 'skystreams-iam';
const TABLE = BUCKET;
const BUCKET_ARN = `arn:aws:s3:::${BUCKET}`;
const TABLE_ARN = `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${TABLE}`;
const STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:SkystreamsSync`;
const SIGNING_SECRET_NAME = 'skystreams-signing';
const SIGNING_SECRET_ARN = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${SIGNING_SECRET_NAME}-AbCdEf`;
const HOUR = 3_600_000;
const MiB = 2 ** 20;

const FUNCTIONS = ['check', 'plan', 'copy', 'publish', 'prune', 'fail', 'api', 'upload'] as const;
type FunctionName = (typeof FUNCTIONS)[number];

/** One request as IAM authorizes it. */
interface IamRequest {
  action: string;
  resource: string;
  context: Record<string, string | string[]>;
}

interface RecordedCall extends IamRequest {
  fn: FunctionName;
  /** The SDK command, for messages. */
  command: string;
  /** The path of the pipeline it was made in. */
  path: string;
}

type PolicyDocument = { Version: string; Statement: unknown[] };

const invoking = new AsyncLocalStorage<{ fn: FunctionName; path: string }>();
const calls: RecordedCall[] = [];
let handlers: Record<FunctionName, Handler>;
let policies: Record<FunctionName, PolicyDocument[]>;
let roleArns: Record<FunctionName, string>;
let mirror: SynthesizedMirror;
const standinEndpoints = useStandins();
let upstream: ServedTree;
let upstreamFiles: Map<string, Uint8Array>;
let upstreamKey: SigningKey;
let stepFunctions: StepFunctionsStandin;
let backend: Backend;
let environment: HandlerEnvironment | undefined;

beforeAll(async () => {
  // Only the template's policies are read: no bundling.
  mirror = await synthMirror({ resign: true, maasKeyringPath: null }, { account: ACCOUNT, region: REGION }, { bundle: false });
  ({ policies, roleArns } = rolePolicies(mirror));

  const standins = standinEndpoints();
  upstreamKey = await generateSigningKey('skystreams iam test');
  upstreamFiles = await synthesizeTree(demoProducts(), { key: upstreamKey });
  upstream = await serveTree(upstreamFiles);
  stepFunctions = await startStepFunctionsStandin();
  await createSigningSecret(standins, SIGNING_SECRET_NAME);
  environment = await setHandlerEnvironment({
    standins,
    name: BUCKET,
    upstreamUrl: upstream.baseUrl,
    keyring: upstreamKey.publicKeyring,
    env: {
      AWS_ENDPOINT_URL_SFN: stepFunctions.endpoint,
      [ENV.pruneGraceHours]: '1',
      [ENV.stateMachineArn]: STATE_MACHINE_ARN,
      // Small enough that a 12 MiB item goes in ranged parts (S3's smallest, 5 MiB).
      [ENV.rangedCopyThreshold]: String(8 * MiB),
      [ENV.copyPartSize]: String(5 * MiB),
      [ENV.resign]: 'true',
      // The stack sets it on the plan function only; IAM, simulated below, is what keeps the others out.
      [ENV.signingSecret]: SIGNING_SECRET_ARN,
    },
  });
  // Every SDK client the backends of this process share (the handlers' and this file's own) records what it sends,
  // but only calls made inside a handler invocation are kept.
  const record: InitializeMiddleware<object, object> = (next, context) => async (args) => {
    const invocation = invoking.getStore();
    if (invocation) {
      const command = String(context.commandName);
      for (const request of toIamRequests(String(context.clientName), command, args.input as Record<string, any>)) {
        calls.push({ ...invocation, command, ...request });
      }
    }
    return next(args);
  };
  const recorded = new WeakSet<object>();
  const recordIamRequests: ClientHook = (client) => {
    if (recorded.has(client)) return;
    recorded.add(client);
    (client.middlewareStack as MiddlewareStack<object, object>).add(record, { step: 'initialize', name: 'recordIamRequests' });
  };
  // The SDK clients are shared by every backend of the process: the handlers' backends use the ones hooked here.
  const recording = openCloudBackend({ bucket: BUCKET, table: TABLE, signingSecret: SIGNING_SECRET_ARN }, process.env, { clientHooks: [recordIamRequests] });
  await recording.signingKeys!.read(); // makes the Secrets Manager client, outside any invocation
  handlers = await loadHandlers(FUNCTIONS);
  backend = openCloudBackend({ bucket: BUCKET, table: TABLE });
}, 240_000);

afterAll(async () => {
  vi.useRealTimers();
  environment?.restore();
  await upstream?.close();
  await stepFunctions?.close();
  mirror?.dispose();
});

describe('IAM: every call a handler makes is allowed by its own role', () => {
  it('allows every call of every path: changed, pruned, unchanged with prune, failed, abandoned, resumed, API', async () => {
    // Act: the paths, each handler invoked as Step Functions or API Gateway would.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now());

    await inPath('changed', async () => {
      await invoke('check', { source: 'skystreams.schedule' });
      await runToPublication('run-1');
    });
    await inPath('catch-up: plan indexes the stored manifests the package index lacks, as after an upgrade', async () => {
      const manifests = await indexedManifests();
      expect(manifests.length).toBeGreaterThan(0);
      await forgetPackageIndex(manifests);
      expect(await indexedManifests()).toEqual([]);
      const republished = await synthesizeTree(demoProducts(), { key: upstreamKey, updated: new Date(Date.now() + HOUR).toUTCString() });
      for (const [path, bytes] of republished) upstreamFiles.set(path, bytes);
      const plan = await planned('run-1b');
      expect(plan.copyItems).toBe(0);
      await runPublishAndPrune('run-1b');
      expect(await indexedManifests()).toEqual(manifests);
    });
    await inPath('changed again, prune keeps the replaced generation; the start expires runs past the newest kept', async () => {
      const { keep, retentionMs } = syncDefaults.runRetention;
      const longAgo = Date.now() - retentionMs - 10 * 24 * HOUR;
      for (let i = 0; i < keep; i++) {
        const at = new Date(longAgo + i * 60_000).toISOString();
        await backend.catalog.putRun({ id: `old-${i}`, state: 'succeeded', startedAt: at, finishedAt: at, itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 });
      }
      await changeUpstream('20990101');
      await runToPublication('run-2');
    });
    await inPath('unchanged: plan prunes what the grace let go', async () => {
      vi.setSystemTime(Date.now() + 2 * HOUR);
      await invoke('check', { source: 'skystreams.schedule' });
      expect(await invoke('plan', { runId: 'run-3' })).toMatchObject({ outcome: 'unchanged' });
      expect((await backend.catalog.listPublications()).length).toBe(1);
    });
    await inPath('failed: a corrupt item, then the Catch records the failure', async () => {
      await changeUpstream('20990202');
      const plan = await planned('run-4');
      const [task] = await copyList(plan);
      if (!task) throw new Error('expected items to copy');
      const bytes = upstreamFiles.get(task.path) as Uint8Array;
      upstreamFiles.set(task.path, bytes.map((byte, i) => (i === 0 ? byte ^ 0xff : byte)));
      await expect(invoke('copy', { runId: 'run-4', task })).rejects.toMatchObject({ name: 'IntegrityError' });
      upstreamFiles.set(task.path, bytes);
      await invoke('fail', { runId: 'run-4', error: { Error: 'IntegrityError', Cause: '{}' } });
      await expect(backend.objects.get(plan.copyKey)).rejects.toThrow(NotFoundError);
      // The next check backs off instead of starting the same run again.
      expect(await invoke('check', { source: 'skystreams.schedule' })).toMatchObject({ changed: true, reason: 'backing-off' });
    });
    await inPath('abandoned and resumed: a planned run whose lease ran out, settled by the next plan, which then publishes', async () => {
      const abandoned = await planned('run-5');
      expect(await invoke('check', { source: 'skystreams.schedule' })).toMatchObject({ reason: 'running' });
      vi.setSystemTime(Date.now() + HOUR);
      const plan = await planned('run-6');
      expect(await backend.catalog.getRun('run-5')).toMatchObject({ state: 'abandoned' });
      await expect(backend.objects.get(abandoned.copyKey)).rejects.toThrow(NotFoundError);
      // Bytes nobody vouches for where an item goes: copy replaces them.
      const [task] = await copyList(plan);
      if (!task) throw new Error('expected items to copy');
      await backend.objects.put(keys.item(task.path), new TextEncoder().encode('stray'));
      await copyAll(plan);
      // The status page while the run is copying: it reads the run's copy list.
      const page = await invoke('api', apiGatewayEvent('/'));
      expect(page.statusCode).toBe(200);
      expect(Buffer.from(page.body, 'base64').toString()).toContain('<h2 id="progress">Sync in progress</h2>');
      // Step Functions retrying a copy whose first attempt did finish: it finds the item stored.
      expect(await invoke('copy', { runId: 'run-6', task })).toMatchObject({ skipped: true });
      await invoke('publish', { runId: 'run-6' });
      await invoke('prune', { runId: 'run-6' });
    });
    await inPath('ranged: a large item in parts over several invocations; one whose joined bytes are bad; one whose upstream ignores Range', async () => {
      await changeUpstream('20990303');
      const plan = await planned('run-7');
      const bytes = syntheticContent('ranged/large.img', 12 * MiB);
      const task = (path: string): CopyTask => ({ path, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
      upstreamFiles.set('ranged/large.img', bytes);
      upstreamFiles.set('ranged/corrupt.img', bytes.map((byte, i) => (i === 6 * MiB ? byte ^ 0xff : byte)));
      upstreamFiles.set('ranged/whole.img', bytes);
      expect(await copyInParts('run-7', task('ranged/large.img'))).toEqual({ path: 'ranged/large.img', size: bytes.length, skipped: false, invocations: 4 });
      await expect(copyInParts('run-7', task('ranged/corrupt.img'))).rejects.toMatchObject({ name: 'IntegrityError' });
      upstream.ranges = false;
      await expect(copyInParts('run-7', task('ranged/whole.img'))).rejects.toMatchObject({ name: 'RangeNotSupportedError' });
      upstream.ranges = true;
      await copyAll(plan);
      await invoke('publish', { runId: 'run-7' });
      await invoke('prune', { runId: 'run-7' });
    });
    await inPath('api', async () => {
      for (const path of ['/', '/streams/v1/index.sjson', '/api/v1/status', '/streams/v1/missing.json', '/api/v1/packages/bash', '/keyring.gpg']) {
        expect((await invoke('api', apiGatewayEvent(path))).statusCode, path).toBeLessThan(500);
      }
    });

    await inPath('upload: a custom image from incoming/ (one refused, one stored), then the run that publishes it', async () => {
      const tgz = rootTgz(40_000);
      const manifest = new TextEncoder().encode('site-agent\t1.2.3\n');
      const digest = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
      // What the operator's `aws s3 cp` does, outside any handler.
      await backend.objects.put('incoming/iam/image.tgz', tgz);
      await backend.objects.put('incoming/iam/image.manifest', manifest);
      const body = (tgzSha256: string) =>
        JSON.stringify({
          os: 'centos',
          release: 'iam9',
          arch: 'amd64',
          subarch: 'generic',
          title: 'IAM test image',
          files: [
            { ftype: 'root-tgz', key: 'incoming/iam/image.tgz', sha256: tgzSha256, size: tgz.byteLength },
            { ftype: 'manifest', key: 'incoming/iam/image.manifest', sha256: digest(manifest), size: manifest.byteLength },
          ],
        });
      // The manifest is stored first, then the bad tgz fails: the function deletes what it created.
      expect((await invoke('upload', apiGatewayEvent('/api/v1/uploads', { method: 'POST', body: body('0'.repeat(64)) }))).statusCode).toBe(422);
      expect((await invoke('upload', apiGatewayEvent('/api/v1/uploads', { method: 'POST', body: body(digest(tgz)) }))).statusCode).toBe(202);
      expect(await invoke('check', { source: 'skystreams.schedule' })).toMatchObject({ changed: true });
      await runToPublication('run-8');
    });

    // Assess: every function was seen doing what its paths are about...
    expect(new Set(calls.map((call) => call.fn))).toEqual(new Set(FUNCTIONS));
    const made = new Set(calls.map((call) => `${call.fn} ${call.action}`));
    const expected = [
      'check dynamodb:Query',
      'plan s3:DeleteObject',
      'plan dynamodb:BatchWriteItem',
      'plan dynamodb:DeleteItem',
      'copy s3:DeleteObject',
      'copy s3:PutObject',
      'copy s3:AbortMultipartUpload',
      'copy dynamodb:DeleteItem',
      'publish dynamodb:PutItem',
      'prune s3:DeleteObject',
      'fail s3:DeleteObject',
      'fail dynamodb:DeleteItem',
      'plan secretsmanager:GetSecretValue',
      'plan secretsmanager:PutSecretValue',
      'plan s3:ListBucket',
      'prune s3:GetObject',
      'upload s3:GetObject',
      'upload s3:PutObject',
      'upload s3:DeleteObject',
      'upload dynamodb:PutItem',
    ];
    expect(expected.filter((call) => !made.has(call))).toEqual([]);
    expect(calls.some((call) => call.fn === 'plan' && call.action === 'dynamodb:UpdateItem' && String(call.context['dynamodb:LeadingKeys']) === 'RUN')).toBe(true);
    // ...and IAM allows each of their calls.
    const denied: string[] = [];
    for (const call of uniqueCalls(calls)) {
      const result = await simulate(call.fn, call);
      if (result !== 'Allowed') denied.push(`${call.fn}: ${call.action} ${call.resource} ${JSON.stringify(call.context)} (${call.command}, ${call.path}): ${result}`);
    }
    expect(denied).toEqual([]);
  }, 240_000);

  it('lets the check function start executions of its state machine', async () => {
    expect(await simulate('check', { action: 'states:StartExecution', resource: STATE_MACHINE_ARN, context: {} })).toBe('Allowed');
  });
});

describe('IAM: the denials that matter', () => {
  const item = (partition: string): IamRequest[] =>
    ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'].map((action) => ({
      action,
      resource: TABLE_ARN,
      context: { 'dynamodb:LeadingKeys': [partition] },
    }));
  const objects = (prefix: string, actions = ['s3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload']): IamRequest[] =>
    actions.map((action) => ({ action, resource: `${BUCKET_ARN}/${prefix}some/key`, context: {} }));
  const verdicts = async (fn: FunctionName, requests: IamRequest[]) =>
    Promise.all(requests.map(async (request) => `${request.action} ${request.resource.replace(BUCKET_ARN, 's3:')} ${JSON.stringify(request.context['dynamodb:LeadingKeys'] ?? '')}: ${await simulate(fn, request)}`));
  const allDenied = (lines: string[]) => lines.filter((line) => !line.endsWith('ImplicitlyDenied'));

  it('lets only publish move the current pointer', async () => {
    for (const fn of ['check', 'plan', 'copy', 'prune', 'fail', 'api', 'upload'] as const) {
      expect(allDenied(await verdicts(fn, item('CURRENT'))), fn).toEqual([]);
    }
    expect(await simulate('publish', item('CURRENT')[0] as IamRequest)).toBe('Allowed');
  });

  it('lets copy create item bytes but never overwrite them in place', async () => {
    const put = (context: Record<string, string>): IamRequest => ({ action: 's3:PutObject', resource: `${BUCKET_ARN}/items/a/b`, context });

    expect(await simulate('copy', put({ 's3:ObjectCreationOperation': 'true', 's3:if-none-match': '*' }))).toBe('Allowed');
    expect(await simulate('copy', put({ 's3:ObjectCreationOperation': 'false' }))).toBe('Allowed');
    expect(await simulate('copy', put({ 's3:ObjectCreationOperation': 'true' }))).toBe('ImplicitlyDenied');
  });

  it('keeps copy to item bytes and their records: no metadata, run files, publications, entries, runs or state', async () => {
    const requests = [
      ...objects('meta/', ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']),
      ...objects('runs/', ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']),
      { action: 's3:ListBucket', resource: BUCKET_ARN, context: { 's3:prefix': 'meta/' } },
      ...['PUBLICATION', 'ENTRIES#7', 'RUN', 'STATE'].flatMap(item),
      { action: 'dynamodb:PutItem', resource: TABLE_ARN, context: { 'dynamodb:LeadingKeys': ['LOCK'] } },
    ];

    expect(allDenied(await verdicts('copy', requests))).toEqual([]);
  });

  it('lets the API write nothing at all', async () => {
    const requests = [
      ...['items/', 'meta/', 'runs/'].flatMap((prefix) => objects(prefix)),
      ...['OBJECT', 'PUBLICATION', 'CURRENT', 'ENTRIES#7', 'RUN', 'LOCK', 'STATE', `MANIFEST#${'a'.repeat(64)}`].flatMap(item),
    ];

    expect(allDenied(await verdicts('api', requests))).toEqual([]);
  });

  it('keeps the upload function to incoming/, upload records and custom items, creating but never replacing them', async () => {
    const put = (key: string, context: Record<string, string>): IamRequest => ({ action: 's3:PutObject', resource: `${BUCKET_ARN}/${key}`, context });
    const creating = { 's3:ObjectCreationOperation': 'true', 's3:if-none-match': '*' };
    const replacing = { 's3:ObjectCreationOperation': 'true' };
    const requests = [
      // Mirrored items, metadata and run files: not its business.
      ...objects('items/jammy/', ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']),
      ...['meta/', 'runs/'].flatMap((prefix) => objects(prefix, ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'])),
      // A record, once written, stays: no delete, no replacement; nor may a custom item be replaced in place.
      ...objects('uploads/', ['s3:DeleteObject']),
      put('uploads/com.skystreams.custom:v3:a:b:amd64:generic/20261202.json', replacing),
      put('items/custom/a/b/amd64/generic/20261202/root-tgz', replacing),
      // It may not write incoming/ either: that is the operator's.
      put('incoming/a', creating),
      ...['PUBLICATION', 'CURRENT', 'ENTRIES#7', 'RUN', 'LOCK'].flatMap(item),
      { action: 'dynamodb:DeleteItem', resource: TABLE_ARN, context: { 'dynamodb:LeadingKeys': ['OBJECT'] } },
    ];

    expect(allDenied(await verdicts('upload', requests))).toEqual([]);
    expect(await simulate('upload', put('items/custom/a/b/amd64/generic/20261202/root-tgz', creating))).toBe('Allowed');
    expect(await simulate('upload', put('uploads/com.skystreams.custom:v3:a:b:amd64:generic/20261202.json', creating))).toBe('Allowed');
    expect(await simulate('upload', { action: 's3:DeleteObject', resource: `${BUCKET_ARN}/incoming/a`, context: {} })).toBe('Allowed');
  });

  it('gives the check function no bucket access and no catalog writes', async () => {
    const requests = [
      ...['items/', 'meta/', 'runs/'].flatMap((prefix) => objects(prefix, ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'])),
      ...['OBJECT', 'PUBLICATION', 'CURRENT', 'ENTRIES#7', 'RUN', 'LOCK', 'STATE'].flatMap(item),
    ];

    expect(allDenied(await verdicts('check', requests))).toEqual([]);
  });

  it('lets only the plan function, which signs, read or write the signing key secret', async () => {
    const secret = (action: string): IamRequest => ({ action, resource: SIGNING_SECRET_ARN, context: {} });
    for (const fn of ['check', 'copy', 'publish', 'prune', 'fail', 'api', 'upload'] as const) {
      expect(await simulate(fn, secret('secretsmanager:GetSecretValue')), fn).toBe('ImplicitlyDenied');
      expect(await simulate(fn, secret('secretsmanager:PutSecretValue')), fn).toBe('ImplicitlyDenied');
    }
    expect(await simulate('plan', secret('secretsmanager:GetSecretValue'))).toBe('Allowed');
    expect(await simulate('plan', { action: 'secretsmanager:GetSecretValue', resource: `${SIGNING_SECRET_ARN.slice(0, -6)}other`, context: {} })).toBe(
      'ImplicitlyDenied',
    );
  });

  it('scopes every listing to the prefixes a function works in', async () => {
    const list = (prefix: string): IamRequest => ({ action: 's3:ListBucket', resource: BUCKET_ARN, context: { 's3:prefix': prefix } });

    expect(await simulate('api', list('items/'))).toBe('ImplicitlyDenied');
    expect(await simulate('publish', list('items/'))).toBe('ImplicitlyDenied');
    expect(await simulate('fail', list('items/'))).toBe('ImplicitlyDenied');
    expect(await simulate('prune', list(''))).toBe('ImplicitlyDenied');
  });
});

// ---------------------------------------------------------------- the pipeline

let currentPath = '';

async function inPath(path: string, steps: () => Promise<void>): Promise<void> {
  currentPath = path;
  await steps();
}

function invoke(fn: FunctionName, event: unknown): Promise<any> {
  return invoking.run({ fn, path: currentPath }, () => handlers[fn](event, lambdaContext(fn)));
}

async function planned(runId: string): Promise<Extract<PlanOutcome, { outcome: 'planned' }>> {
  const plan = (await invoke('plan', { runId })) as PlanOutcome;
  if (plan.outcome !== 'planned') throw new Error(`expected run ${runId} to plan, got ${plan.outcome}`);
  return plan;
}

async function copyList(plan: { copyKey: string }): Promise<CopyTask[]> {
  const { body } = await backend.objects.get(plan.copyKey);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as CopyTask[];
}

async function copyAll(plan: Extract<PlanOutcome, { outcome: 'planned' }>): Promise<void> {
  for (const task of await copyList(plan)) await invoke('copy', { runId: plan.runId, task });
}

/** The state machine's CopyItem ⇄ MoreParts loop for one item: the copy result, and how many invocations it took. */
async function copyInParts(runId: string, task: CopyTask): Promise<Record<string, unknown>> {
  let previous: { continuation?: unknown } | undefined;
  for (let invocations = 1; ; invocations++) {
    const result = (await invoke('copy', { runId, task, ...(previous && { previous }) })) as { continuation?: unknown };
    if (!result.continuation) return { ...result, invocations };
    previous = result;
  }
}

async function runToPublication(runId: string): Promise<void> {
  const plan = await planned(runId);
  await copyAll(plan);
  await invoke('publish', { runId });
  await invoke('prune', { runId });
}

async function runPublishAndPrune(runId: string): Promise<void> {
  await invoke('publish', { runId });
  await invoke('prune', { runId });
}

/** The sha256 of every manifest the current publication lists that the package index holds, sorted. */
async function indexedManifests(): Promise<string[]> {
  const current = await backend.catalog.getCurrent();
  const digests = new Set<string>();
  for await (const entry of backend.catalog.listEntries(current!.generation)) {
    if (entry.ftype?.endsWith('manifest') && (await backend.catalog.getManifest(entry.sha256))) digests.add(entry.sha256);
  }
  return [...digests].sort();
}

/** Deletes package-index records straight from the table: a mirror synced before the index existed has none. */
async function forgetPackageIndex(digests: readonly string[]): Promise<void> {
  const { documents } = dynamoClients({ endpoint: standinEndpoints().dynamodbEndpoint });
  for (const sha256 of digests) {
    await documents.send(new DeleteCommand({ TableName: TABLE, Key: { PK: `MANIFEST#${sha256}`, SK: '0000' } }));
  }
}

async function changeUpstream(version: string): Promise<void> {
  const newer = await synthesizeTree(withNewVersion(demoProducts(), version), {
    key: upstreamKey,
    updated: new Date(Date.UTC(Number(version.slice(0, 4)), Number(version.slice(4, 6)) - 1, Number(version.slice(6)))).toUTCString(),
  });
  for (const [path, bytes] of newer) upstreamFiles.set(path, bytes);
}

// ---------------------------------------------------------------- SDK calls as IAM requests

const s3Object = (input: Record<string, any>) => `arn:aws:s3:::${input.Bucket}/${input.Key}`;
const s3Bucket = (input: Record<string, any>) => `arn:aws:s3:::${input.Bucket}`;
const dynamoTable = (name: string) => `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${name}`;
/** A key attribute as the document client (plain) or the low-level client (`{ S: … }`) sends it. */
const plain = (value: unknown) => String(typeof value === 'object' && value !== null && 'S' in value ? (value as { S: string }).S : value);
const leadingKeys = (...partitions: unknown[]) => ({ 'dynamodb:LeadingKeys': [...new Set(partitions.map(plain))] });

/** The IAM request(s) AWS authorizes for one SDK call; throws for a call this table does not know yet. */
function toIamRequests(clientName: string, commandName: string, input: Record<string, any>): IamRequest[] {
  const command = commandName.replace(/Command$/, '');
  if (clientName === 'S3Client') {
    switch (command) {
      case 'HeadObject':
      case 'GetObject':
        // A missing key answers 404 only with ListBucket, which S3 checks with the key as s3:prefix.
        return [
          { action: 's3:GetObject', resource: s3Object(input), context: {} },
          { action: 's3:ListBucket', resource: s3Bucket(input), context: { 's3:prefix': String(input.Key) } },
        ];
      case 'PutObject':
      case 'CompleteMultipartUpload':
        // The calls that create the object, and may carry If-None-Match.
        return [
          {
            action: 's3:PutObject',
            resource: s3Object(input),
            context: { 's3:ObjectCreationOperation': 'true', ...(input.IfNoneMatch && { 's3:if-none-match': String(input.IfNoneMatch) }) },
          },
        ];
      case 'CreateMultipartUpload':
      case 'UploadPart':
        return [{ action: 's3:PutObject', resource: s3Object(input), context: { 's3:ObjectCreationOperation': 'false' } }];
      case 'AbortMultipartUpload':
        return [{ action: 's3:AbortMultipartUpload', resource: s3Object(input), context: {} }];
      case 'DeleteObject':
        return [{ action: 's3:DeleteObject', resource: s3Object(input), context: {} }];
      case 'ListObjectsV2':
        return [{ action: 's3:ListBucket', resource: s3Bucket(input), context: { 's3:prefix': String(input.Prefix ?? '') } }];
      case 'ListMultipartUploads':
        return [{ action: 's3:ListBucketMultipartUploads', resource: s3Bucket(input), context: {} }];
    }
  }
  if (clientName === 'DynamoDBClient') {
    const table = dynamoTable(String(input.TableName));
    switch (command) {
      case 'Get':
      case 'GetItem':
        return [{ action: 'dynamodb:GetItem', resource: table, context: leadingKeys(input.Key.PK) }];
      case 'Put':
      case 'PutItem':
        return [{ action: 'dynamodb:PutItem', resource: table, context: leadingKeys(input.Item.PK) }];
      case 'Update':
      case 'UpdateItem':
        return [{ action: 'dynamodb:UpdateItem', resource: table, context: leadingKeys(input.Key.PK) }];
      case 'Delete':
      case 'DeleteItem':
        return [{ action: 'dynamodb:DeleteItem', resource: table, context: leadingKeys(input.Key.PK) }];
      case 'Query':
        return [
          {
            action: 'dynamodb:Query',
            resource: input.IndexName ? `${table}/index/${input.IndexName}` : table,
            context: leadingKeys(input.ExpressionAttributeValues[':pk']),
          },
        ];
      case 'BatchWrite':
      case 'BatchWriteItem':
        return Object.entries(input.RequestItems as Record<string, any[]>).map(([name, requests]) => ({
          action: 'dynamodb:BatchWriteItem',
          resource: dynamoTable(name),
          context: leadingKeys(...requests.map((request) => (request.PutRequest ? request.PutRequest.Item.PK : request.DeleteRequest.Key.PK))),
        }));
      case 'TransactWrite':
      case 'TransactWriteItems':
        // IAM authorizes each action of a transaction as its own item-level action.
        return (input.TransactItems as Record<string, any>[]).map((entry) => {
          const [kind, action] = Object.entries(entry)[0] as [string, Record<string, any>];
          const iamAction = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem' }[kind];
          if (!iamAction) throw new Error(`unknown transaction action ${kind}`);
          return { action: `dynamodb:${iamAction}`, resource: dynamoTable(action.TableName), context: leadingKeys((action.Item ?? action.Key).PK) };
        });
    }
  }
  if (clientName === 'SecretsManagerClient' && ['GetSecretValue', 'PutSecretValue', 'CreateSecret'].includes(command)) {
    return [{ action: `secretsmanager:${command}`, resource: String(input.SecretId ?? input.Name), context: {} }];
  }
  throw new Error(`${clientName} ${commandName}: no IAM mapping in this test yet; add one`);
}

function uniqueCalls(recorded: RecordedCall[]): RecordedCall[] {
  const byRequest = new Map<string, RecordedCall>();
  for (const call of recorded) byRequest.set(JSON.stringify([call.fn, call.action, call.resource, call.context]), call);
  return [...byRequest.values()];
}

// ---------------------------------------------------------------- the template's policies

async function simulate(fn: FunctionName, request: IamRequest): Promise<string> {
  const result = await runSimulation(
    {
      identityPolicies: policies[fn].map((policy, i) => ({ name: `${fn}-${i}`, policy })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        action: request.action,
        principal: roleArns[fn],
        resource: { resource: request.resource, accountId: ACCOUNT },
        contextVariables: { 'aws:SecureTransport': 'true', ...request.context },
      },
    },
    {},
  );
  if (result.resultType === 'error') return `simulation error: ${JSON.stringify(result.errors)}`;
  return result.overallResult;
}

/** Each function's identity policies from the template, with the bucket and table resolved to the stand-ins' names. */
function rolePolicies(synthesized: SynthesizedMirror): { policies: typeof policies; roleArns: typeof roleArns } {
  const { stack, template } = synthesized;
  const { sync, api } = stack;
  const roles: Record<FunctionName, string> = {
    check: logicalIdOf(stack, sync.checkFunction.role),
    plan: logicalIdOf(stack, sync.planFunction.role),
    copy: logicalIdOf(stack, sync.copyFunction.role),
    publish: logicalIdOf(stack, sync.publishFunction.role),
    prune: logicalIdOf(stack, sync.pruneFunction.role),
    fail: logicalIdOf(stack, sync.failFunction.role),
    api: logicalIdOf(stack, api.handler.role),
    upload: logicalIdOf(stack, api.uploadHandler.role),
  };
  const bucketId = logicalIdOf(stack, stack.storage.bucket);
  const tableId = logicalIdOf(stack, stack.storage.table);
  const machineId = logicalIdOf(stack, sync.stateMachine);
  if (!stack.signingKey) throw new Error('expected a stack synthesized in re-signed mode');
  const secretId = logicalIdOf(stack, stack.signingKey.secret);
  const resolve = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(resolve);
    if (!value || typeof value !== 'object') return value;
    const object = value as Record<string, unknown>;
    if (typeof object.Ref === 'string') {
      const pseudo: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': REGION, 'AWS::AccountId': ACCOUNT, 'AWS::URLSuffix': 'amazonaws.com' };
      if (object.Ref in pseudo) return pseudo[object.Ref];
      return (
        { [bucketId]: BUCKET, [tableId]: TABLE, [machineId]: STATE_MACHINE_ARN, [secretId]: SIGNING_SECRET_ARN }[object.Ref] ??
        `arn:aws:unresolved:${REGION}:${ACCOUNT}:${object.Ref}`
      );
    }
    if (Array.isArray(object['Fn::GetAtt'])) {
      const [id] = object['Fn::GetAtt'] as string[];
      return { [bucketId]: BUCKET_ARN, [tableId]: TABLE_ARN }[id as string] ?? `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${id}`;
    }
    if (Array.isArray(object['Fn::Join'])) {
      const [delimiter, parts] = object['Fn::Join'] as [string, unknown[]];
      return parts.map(resolve).join(delimiter);
    }
    return Object.fromEntries(Object.entries(object).map(([key, inner]) => [key, resolve(inner)]));
  };
  const documents = Object.values(template.findResources('AWS::IAM::Policy')) as {
    Properties: { Roles: { Ref: string }[]; PolicyDocument: PolicyDocument };
  }[];
  const policiesOf = (roleId: string) =>
    documents.filter((policy) => policy.Properties.Roles.some((role) => role.Ref === roleId)).map((policy) => resolve(policy.Properties.PolicyDocument) as PolicyDocument);
  return {
    policies: Object.fromEntries(FUNCTIONS.map((fn) => [fn, policiesOf(roles[fn])])) as typeof policies,
    roleArns: Object.fromEntries(FUNCTIONS.map((fn) => [fn, `arn:aws:iam::${ACCOUNT}:role/${roles[fn]}`])) as typeof roleArns,
  };
}
