/**
 * The Lambda handlers, invoked with the event shapes AWS sends them, in the
 * order the state machine calls them, against s3rver and DynamoDB Local and a
 * signed synthetic upstream; the check's StartExecution goes to a stand-in
 * that speaks the Step Functions JSON protocol.
 */
import { join } from 'node:path';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openCloudBackend } from '../../functions/adapters/cloud.ts';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import { METRIC } from '../../functions/adapters/lambda/telemetry-names.ts';
import { SYNC_LOCK, type PlanOutcome } from '../../functions/core/engine.ts';
import type { CopyTask } from '../../functions/core/planner.ts';
import { keys, type Backend } from '../../functions/core/ports.ts';
import { demoProducts } from '../support/demo-mirror.ts';
import { generateSigningKey, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { withNewVersion } from '../support/mirror.ts';
import { useStandins } from '../support/global-standins.ts';
import { loadHandlers, setHandlerEnvironment, type Handler, type HandlerEnvironment } from '../support/handler-environment.ts';
import { logicalIdOf, synthMirror } from '../infra/synth.ts';
import { apiGatewayEvent, lambdaContext, startStepFunctionsStandin, type StepFunctionsStandin } from '../support/lambda-invocation.ts';

const NAME = 'skystreams-pipeline';
const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:SkystreamsSync';

const standinEndpoints = useStandins();
let upstream: ServedTree;
let upstreamFiles: Map<string, Uint8Array>;
let stepFunctions: StepFunctionsStandin;
let handlers: Record<'check' | 'plan' | 'copy' | 'publish' | 'prune' | 'fail' | 'api', Handler>;
let backend: Backend;
let environment: HandlerEnvironment | undefined;
let upstreamKey: SigningKey;

beforeAll(async () => {
  const key = await generateSigningKey('skystreams pipeline test');
  upstreamKey = key;
  upstreamFiles = await synthesizeTree(demoProducts(), { key });
  upstream = await serveTree(upstreamFiles);
  stepFunctions = await startStepFunctionsStandin();
  // The environment the stack gives the functions, pointed at the stand-ins; metrics on, for the test that reads them.
  environment = await setHandlerEnvironment({
    standins: standinEndpoints(),
    name: NAME,
    upstreamUrl: upstream.baseUrl,
    keyring: key.publicKeyring,
    quiet: false,
    env: { AWS_ENDPOINT_URL_SFN: stepFunctions.endpoint, [ENV.stateMachineArn]: STATE_MACHINE_ARN },
  });
  handlers = await loadHandlers(['check', 'plan', 'copy', 'publish', 'prune', 'fail', 'api']);
  backend = openCloudBackend({ bucket: NAME, table: NAME });
});

afterAll(async () => {
  environment?.restore();
  await upstream?.close();
  await stepFunctions?.close();
});

describe('Handlers: the sync pipeline as Step Functions drives it', () => {
  it('mirrors a signed upstream: check → plan → copy each item → publish → prune, then serves it byte for byte', async () => {
    // Act: the schedule fires.
    const metricsOut = captureStdout();
    const checked = await handlers.check(schedulerPayload(), lambdaContext('check'));
    const checkMetrics = metricsOut.stop();

    // Assess: upstream is ahead, and one execution was started, named after the run.
    expect(checked).toEqual({ changed: true, runId: expect.any(String) });
    expect(stepFunctions.started).toEqual([{ stateMachineArn: STATE_MACHINE_ARN, name: checked.runId, input: JSON.stringify({ runId: checked.runId }) }]);
    expect(emittedMetric(checkMetrics, METRIC.upstreamAhead)).toEqual([1]);

    // Act: the state machine's steps, with the payloads its definition builds.
    const runId: string = checked.runId;
    const plan = (await handlers.plan({ runId }, lambdaContext('plan'))) as PlanOutcome;
    expect(plan).toMatchObject({ runId, outcome: 'planned', copyKey: keys.runFile(runId, 'copy.json') });
    if (plan.outcome !== 'planned') throw new Error('expected a plan');
    // The Distributed Map's ItemReader reads the copy list from the bucket.
    const tasks = JSON.parse(await readObject(plan.copyKey)) as CopyTask[];
    expect(tasks).toHaveLength(plan.copyItems);
    for (const task of tasks) {
      const copied = await handlers.copy({ runId, task }, lambdaContext('copy'));
      expect(copied).toEqual({ path: task.path, size: task.size, skipped: false });
    }
    const published = await handlers.publish({ runId }, lambdaContext('publish'));
    const pruned = await handlers.prune({ runId }, lambdaContext('prune'));

    // Assess: a published generation...
    expect(published).toMatchObject({ generation: plan.generation, itemCount: expect.any(Number) });
    expect(pruned).toEqual({ deletedFiles: 0, deletedGenerations: [] });
    // ...whose metadata the API serves byte for byte, `:` escaped or not...
    const metadataFiles = [...upstreamFiles.keys()].filter((path) => path.startsWith('streams/v1/') && path.endsWith('.sjson'));
    expect(metadataFiles.some((path) => path.includes(':'))).toBe(true);
    for (const path of metadataFiles) {
      const raw = await handlers.api(apiGatewayEvent(`/${path}`), lambdaContext('api'));
      const escaped = await handlers.api(apiGatewayEvent(`/${path.replaceAll(':', '%3A')}`), lambdaContext('api'));
      expect(raw.statusCode).toBe(200);
      expect(bodyOf(raw)).toEqual(upstreamFiles.get(path));
      expect(bodyOf(escaped)).toEqual(upstreamFiles.get(path));
    }
    // ...and whose items sit where CloudFront's /items origin path finds them, identical to upstream.
    for (const task of tasks) {
      expect(new Uint8Array(Buffer.from(await readObject(keys.item(task.path), 'binary'), 'binary'))).toEqual(upstreamFiles.get(task.path));
    }
    const status = await handlers.api(apiGatewayEvent('/api/v1/status'), lambdaContext('api'));
    expect(status.statusCode).toBe(200);
    expect(JSON.stringify(JSON.parse(Buffer.from(status.body, 'base64').toString('utf8')))).toContain(runId);
  });

  it('finds nothing to do on the next check and starts no run', async () => {
    const before = stepFunctions.started.length;
    const metricsOut = captureStdout();

    const checked = await handlers.check(schedulerPayload(), lambdaContext('check'));

    expect(checked).toEqual({ changed: false });
    expect(emittedMetric(metricsOut.stop(), METRIC.upstreamAhead)).toEqual([0]);
    expect(stepFunctions.started).toHaveLength(before);
  });

  it('lets a second run started during a run end at once, and records a failed item as a failed run', async () => {
    // Prepare: upstream publishes new bytes and newer metadata.
    await changeUpstream();
    const checked = await handlers.check(schedulerPayload(), lambdaContext('check'));
    expect(checked.changed).toBe(true);
    const runId: string = checked.runId;
    const plan = (await handlers.plan({ runId }, lambdaContext('plan'))) as PlanOutcome;
    if (plan.outcome !== 'planned') throw new Error(`expected a plan, got ${plan.outcome}`);

    // Act: another execution's plan while this run holds the lock.
    const second = await handlers.plan({ runId: `${runId}-second` }, lambdaContext('plan'));

    // Assess: it ends cleanly, naming the holder.
    expect(second).toMatchObject({ outcome: 'locked', holder: runId });

    // Act: the corrupted item fails; Step Functions catches and calls the fail step.
    const [corrupted] = JSON.parse(await readObject(plan.copyKey)) as CopyTask[];
    if (!corrupted) throw new Error('expected items to copy');
    // Upstream now serves bytes that do not match what its signed metadata promises.
    const served = upstreamFiles.get(corrupted.path) as Uint8Array;
    upstreamFiles.set(corrupted.path, served.map((byte, i) => (i === 0 ? byte ^ 0xff : byte)));
    const failure = await handlers.copy({ runId, task: corrupted }, lambdaContext('copy')).then(
      () => undefined,
      (error: Error) => error,
    );
    expect(failure?.name).toBe('IntegrityError');
    const recorded = await handlers.fail(
      { runId, error: { Error: failure?.name, Cause: JSON.stringify({ errorType: failure?.name, errorMessage: failure?.message, trace: [] }) } },
      lambdaContext('fail'),
    );

    // Assess: the run is failed with the item's error, the lock is free, the old generation still served.
    expect(recorded.recorded).toMatch(/^IntegrityError: .*/);
    const run = await backend.catalog.getRun(runId);
    expect(run).toMatchObject({ state: 'failed', error: recorded.recorded });
    const afterwards = await handlers.plan({ runId: `${runId}-after` }, lambdaContext('plan'));
    expect(afterwards.outcome).not.toBe('locked');
    const current = await backend.catalog.getCurrent();
    expect(current?.runId).not.toBe(runId);
  });

  // Synthesizing bundles all seven functions with esbuild: over a minute on a busy 2-core machine.
  it('behaves the same bundled by esbuild as deployed: modules load, error names survive minification', { timeout: 180_000 }, async () => {
    // Prepare: the bundles `cdk synth` builds for Lambda, with their keyring beside them.
    const synthesized = await synthMirror({}, { account: '123456789012', region: 'us-east-1' });
    try {
      const bundled = async (fn: { node: { defaultChild?: unknown } }): Promise<Handler> => {
        const { Properties } = synthesized.template.findResources('AWS::Lambda::Function')[logicalIdOf(synthesized.stack, fn)] as {
          Properties: { Code: { S3Key: string } };
        };
        const dir = join(synthesized.outdir, `asset.${Properties.Code.S3Key.replace(/\.zip$/, '')}`);
        return ((await import(pathToFileURL(join(dir, 'index.mjs')).href)) as { handler: Handler }).handler;
      };
      const { sync, api } = synthesized.stack;
      const [bundledFail, bundledCopy, bundledApi] = await Promise.all([
        bundled(sync.failFunction.function),
        bundled(sync.copyFunction.function),
        bundled(api.handler.function),
      ]);
      const holder = await backend.catalog.listRuns(1);
      const runId = `bundled-${Date.now()}`;

      // Act: free the lock the previous test's last plan took, then copy a file whose digest will not match.
      await bundledFail({ runId: holder[0]?.id, error: { Error: 'States.Timeout', Cause: 'test over' } }, lambdaContext('fail'));
      const lease = await backend.catalog.acquireLock(SYNC_LOCK, runId, 60_000, new Date());
      const path = [...upstreamFiles.keys()].find((file) => !file.startsWith('streams/')) as string;
      const failure = await bundledCopy(
        { runId, task: { path, size: upstreamFiles.get(path)?.byteLength, sha256: '0'.repeat(64) } },
        lambdaContext('copy'),
      ).then(
        () => undefined,
        (error: Error) => error,
      );
      const index = await bundledApi(apiGatewayEvent('/streams/v1/index.sjson'), lambdaContext('api'));
      const reference = await handlers.api(apiGatewayEvent('/streams/v1/index.sjson'), lambdaContext('api'));

      // Assess: Step Functions retries and catches by these names, so minification must keep them.
      expect(failure?.name).toBe('IntegrityError');
      expect(index.statusCode).toBe(200);
      expect(bodyOf(index)).toEqual(bodyOf(reference));
      await backend.catalog.releaseLock(lease);
    } finally {
      synthesized.dispose();
    }
  });
});

/** Upstream publishes a newer version of every product: new paths, new bytes, newer signed metadata. */
async function changeUpstream(): Promise<void> {
  const newer = await synthesizeTree(withNewVersion(demoProducts(), '20990101'), { key: upstreamKey, updated: 'Thu, 01 Jan 2099 00:00:00 +0000' });
  for (const [path, bytes] of newer) upstreamFiles.set(path, bytes);
}

async function readObject(key: string, encoding: BufferEncoding = 'utf8'): Promise<string> {
  const { body } = await backend.objects.get(key);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks).toString(encoding);
}

function schedulerPayload() {
  return { source: 'skystreams.schedule', scheduledTime: new Date().toISOString() };
}

function bodyOf(result: APIGatewayProxyResult): Uint8Array {
  expect(result.isBase64Encoded).toBe(true);
  return new Uint8Array(Buffer.from(result.body, 'base64'));
}

/** Collects what Powertools writes to stdout (EMF metrics, JSON logs) until stop(). */
function captureStdout(): { stop(): string[] } {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => {
    lines.push(String(chunk));
    return true;
  });
  return {
    stop() {
      spy.mockRestore();
      return lines;
    },
  };
}

/** Values of `name` in the EMF documents among `lines`. */
function emittedMetric(lines: string[], name: string): number[] {
  return lines
    .flatMap((line) => line.split('\n'))
    .filter((line) => line.includes('"_aws"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((document) => name in document)
    .map((document) => document[name] as number);
}
