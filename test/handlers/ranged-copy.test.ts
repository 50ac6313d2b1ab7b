/**
 * Ranged copy through the copy handler on the stand-ins, small and fast: a
 * 20 MiB item above an 8 MiB threshold, in 5 MiB parts (S3's smallest), one
 * part per invocation. test/handlers/ranged-copy.scale.test.ts does the same
 * with 3 GB.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { copyBudgetMs, ENV } from '../../functions/adapters/lambda/environment.ts';
import { ConfigError, IntegrityError, RangeNotSupportedError, UpstreamError } from '../../functions/core/errors.ts';
import { keys } from '../../functions/core/ports.ts';
import { syncDefaults } from '../../functions/core/settings.ts';
import { useStandins } from '../support/global-standins.ts';
import { startRangedCopyRig, type RangedCopyRig } from '../support/ranged-copy.ts';
import type { UnfinishedCopy } from '../../functions/core/engine.ts';
import { generatedFile, serveTree } from '../support/upstream-server.ts';

const MiB = 2 ** 20;
const ITEM_BYTES = 20 * MiB;
const PART_BYTES = 5 * MiB;

const standins = useStandins();
let rig: RangedCopyRig;

beforeAll(async () => {
  rig = await startRangedCopyRig(standins(), { itemBytes: ITEM_BYTES, thresholdBytes: 8 * MiB, partBytes: PART_BYTES });
});

afterAll(async () => {
  await rig?.close();
});

describe('Handler: copy, an item above the ranged-copy threshold', () => {
  it('copies it in ranged parts over several invocations, verifies the joined object, and publishes it', async () => {
    // Prepare
    const plan = await rig.plan('ranged-1');
    const tasks = await rig.copyList(plan);
    const large = tasks.find((task) => task.path === rig.large.path);
    if (!large) throw new Error('expected the large item in the copy list');

    // Act
    const loop = await rig.copyUntilDone('ranged-1', large);
    for (const task of tasks) if (task !== large) await rig.copyUntilDone('ranged-1', task);
    const publication = await rig.handlers.publish({ runId: 'ranged-1' }, rig.context);

    // Assess: four parts, one per invocation, then one more to join and verify them...
    expect(loop.result).toEqual({ path: large.path, size: ITEM_BYTES, skipped: false });
    expect(loop.continuations.map((step) => step.continuation.parts.length)).toEqual([1, 2, 3, 4]);
    expect(loop.invocations).toBe(5);
    expect(new Set(loop.continuations.map((step) => step.continuation.uploadId)).size).toBe(1);
    // ...each a Range request answered 206...
    const ranges = rig.upstream.requestsFor(large.path).map((request) => [request.headers.range, request.status]);
    expect(ranges).toEqual([0, 1, 2, 3].map((n) => [`bytes=${n * PART_BYTES}-${Math.min(ITEM_BYTES, (n + 1) * PART_BYTES) - 1}`, 206]));
    // ...joined into one object with the promised bytes, recorded and published. (s3rver's ETag of a
    // multipart object is a plain MD5, not S3's `-<parts>` form, so the parts are counted above.)
    expect(await rig.backend.objects.head(keys.item(large.path))).toMatchObject({ size: ITEM_BYTES });
    expect(await sha256Of(keys.item(large.path))).toBe(rig.large.file.sha256);
    expect(await rig.backend.catalog.getObject(large.path)).toMatchObject({ size: ITEM_BYTES, sha256: rig.large.file.sha256 });
    expect(publication).toMatchObject({ generation: plan.generation });
    expect(await rig.backend.catalog.getCurrent()).toMatchObject({ generation: plan.generation });
    await rig.handlers.prune({ runId: 'ranged-1' }, rig.context);
  });

  it('fails the item when a part arrives corrupted: the joined object is deleted and the run publishes nothing', async () => {
    // Prepare: a new upstream version whose large item has one byte flipped in its second part.
    const before = await rig.backend.catalog.getCurrent();
    await rig.newVersion('20990101');
    rig.upstream.faults.set(rig.large.path, { kind: 'corrupt', offsets: [PART_BYTES + 12_345] });
    const plan = await rig.plan('ranged-2');
    const large = (await rig.copyList(plan)).find((task) => task.path === rig.large.path);
    if (!large) throw new Error('expected the large item in the copy list');

    // Act
    const failure = await rig.copyUntilDone('ranged-2', large).catch((error: unknown) => error);
    await rig.handlers.fail({ runId: 'ranged-2', error: { Error: 'IntegrityError', Cause: '{}' } }, rig.context);

    // Assess: the item failed on its digest, its bytes are gone, the current generation is untouched.
    expect(failure).toBeInstanceOf(IntegrityError);
    expect((failure as Error).message).toContain(large.path);
    expect((failure as Error).message).toMatch(/sha256/);
    expect(await rig.backend.objects.head(keys.item(large.path))).toBeUndefined();
    expect(await rig.backend.catalog.getObject(large.path)).toBeUndefined();
    expect(await rig.backend.catalog.getCurrent()).toEqual(before);
    expect(await rig.backend.catalog.getRun('ranged-2')).toMatchObject({ state: 'failed' });
    rig.upstream.faults.clear();
  });

  it('keeps the upload open through a transient upstream error, so the retry with the same continuation goes on', async () => {
    // Prepare: one part stored, then upstream answers 503 once.
    await rig.newVersion('20990303');
    const plan = await rig.plan('ranged-4');
    const tasks = await rig.copyList(plan);
    const large = tasks.find((task) => task.path === rig.large.path);
    if (!large) throw new Error('expected the large item in the copy list');
    const first = (await rig.handlers.copy({ runId: 'ranged-4', task: large }, rig.context)) as UnfinishedCopy;
    rig.upstream.faults.set(large.path, { kind: 'status', status: 503, times: rig.upstream.requestsFor(large.path).length + 1 });

    // Act: the failed invocation, then Step Functions' retry with the same input.
    const failure = await rig.handlers.copy({ runId: 'ranged-4', task: large, previous: first }, rig.context).catch((error: unknown) => error);
    const retried = await rig.copyUntilDone('ranged-4', large, first);
    for (const task of tasks) if (task !== large) await rig.copyUntilDone('ranged-4', task);
    await rig.handlers.publish({ runId: 'ranged-4' }, rig.context);
    await rig.handlers.prune({ runId: 'ranged-4' }, rig.context);

    // Assess
    expect(first.continuation.parts).toHaveLength(1);
    expect(failure).toBeInstanceOf(UpstreamError);
    expect(retried.result).toEqual({ path: large.path, size: ITEM_BYTES, skipped: false });
    expect(retried.continuations.every((step) => step.continuation.uploadId === first.continuation.uploadId)).toBe(true);
    expect(rig.upstream.requestsFor(large.path).map((request) => request.status)).toEqual([206, 503, 206, 206, 206]);
    expect(await sha256Of(keys.item(large.path))).toBe(rig.large.file.sha256);
    rig.upstream.faults.clear();
  });

  it('records the joined bytes when a retry finds that its cut-short attempt had already joined them', async () => {
    // Prepare: every part stored, then the parts joined as the attempt Step Functions retries had done before it timed out.
    await rig.newVersion('20990505');
    const plan = await rig.plan('ranged-5');
    const large = (await rig.copyList(plan)).find((task) => task.path === rig.large.path);
    if (!large) throw new Error('expected the large item in the copy list');
    let last = (await rig.handlers.copy({ runId: 'ranged-5', task: large }, rig.context)) as UnfinishedCopy;
    while (last.continuation.parts.length < 4) {
      last = (await rig.handlers.copy({ runId: 'ranged-5', task: large, previous: last }, rig.context)) as UnfinishedCopy;
    }
    const upload = { key: keys.item(large.path), uploadId: last.continuation.uploadId };
    await rig.backend.objects.parts?.complete(upload, last.continuation.parts, { ifAbsent: true });

    // Act: the retry, with the input of the cut-short attempt.
    const retried = await rig.handlers.copy({ runId: 'ranged-5', task: large, previous: last }, rig.context);

    // Assess
    expect(retried).toEqual({ path: large.path, size: ITEM_BYTES, skipped: true });
    expect(await rig.backend.catalog.getObject(large.path)).toMatchObject({ size: ITEM_BYTES, sha256: rig.large.file.sha256 });
    await rig.handlers.fail({ runId: 'ranged-5', error: { Error: 'States.Timeout', Cause: '{}' } }, rig.context);
  });

  it('fails the item with RangeNotSupportedError naming it when upstream ignores Range, leaving nothing stored', async () => {
    // Prepare
    await rig.newVersion('20990606');
    rig.upstream.ranges = false;
    const plan = await rig.plan('ranged-3');
    const large = (await rig.copyList(plan)).find((task) => task.path === rig.large.path);
    if (!large) throw new Error('expected the large item in the copy list');

    // Act
    const failure = await rig.copyUntilDone('ranged-3', large).catch((error: unknown) => error);
    await rig.handlers.fail({ runId: 'ranged-3', error: { Error: 'RangeNotSupportedError', Cause: '{}' } }, rig.context);

    // Assess: refused at the first part, not retried as transient, nothing under the item's key.
    expect(failure).toBeInstanceOf(RangeNotSupportedError);
    expect(failure).not.toBeInstanceOf(UpstreamError);
    expect((failure as Error).message).toContain(rig.upstream.url(large.path));
    expect(rig.upstream.requestsFor(large.path)).toHaveLength(1);
    expect(await rig.backend.objects.head(keys.item(large.path))).toBeUndefined();
    rig.upstream.ranges = true;
  });
});

describe('Function: copyBudgetMs', () => {
  it('is the remaining time less the reserve, capped by the environment, and refuses a cap that is not a duration in ms', () => {
    const reserve = syncDefaults.copyInvocationReserveMs;

    expect(copyBudgetMs(reserve + 90_000, {})).toBe(90_000);
    expect(copyBudgetMs(reserve + 90_000, { [ENV.copyBudgetMs]: '5000' })).toBe(5_000);
    expect(copyBudgetMs(reserve + 1_000, { [ENV.copyBudgetMs]: '5000' })).toBe(1_000);
    expect(() => copyBudgetMs(reserve, { [ENV.copyBudgetMs]: '5s' })).toThrow(ConfigError);
    expect(() => copyBudgetMs(reserve, { [ENV.copyBudgetMs]: '5s' })).toThrow(ENV.copyBudgetMs);
  });
});

describe('Class: HttpUpstream, openRange', () => {
  it('streams exactly the asked range of a generated file, with the whole size', async () => {
    // Prepare
    const file = generatedFile(3 * MiB + 7, 'open-range');
    const server = await serveTree(new Map([['big.img', file]]));
    const upstream = new HttpUpstream(server.baseUrl);
    try {
      // Act
      const { body, size } = await upstream.openRange('big.img', { start: MiB - 3, end: 2 * MiB + 5 });
      const received = await collect(body);
      const whole = await collect(file.open());

      // Assess
      expect(size).toBe(file.size);
      expect(received.equals(whole.subarray(MiB - 3, 2 * MiB + 6))).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('refuses a 200 to a ranged request with RangeNotSupportedError naming the URL', async () => {
    // Prepare
    const server = await serveTree(new Map([['whole.img', new Uint8Array(64)]]), { ranges: false });
    const upstream = new HttpUpstream(server.baseUrl);
    try {
      // Act
      const failure = await upstream.openRange('whole.img', { start: 0, end: 9 }).catch((error: unknown) => error);

      // Assess
      expect(failure).toBeInstanceOf(RangeNotSupportedError);
      expect((failure as Error).message).toContain(`${server.baseUrl}whole.img`);
      expect((failure as Error).message).toContain('HTTP 200');
    } finally {
      await server.close();
    }
  });
});

async function sha256Of(key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of (await rig.backend.objects.get(key)).body) hash.update(chunk);
  return hash.digest('hex');
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}
