/**
 * The ranged copy at size: a 3 GB item, generated as it streams, copied
 * through the copy handler into s3rver in 256 MiB parts, one part per
 * invocation (the budget forced to a millisecond), then published; and the
 * same item with one byte flipped in its fifth part, which fails with its
 * bytes deleted. Run by `npm run test:scale`.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError } from '../../functions/core/errors.ts';
import { keys } from '../../functions/core/ports.ts';
import { useStandins } from '../support/global-standins.ts';
import { startRangedCopyRig, type RangedCopyRig } from '../support/ranged-copy.ts';

const MiB = 2 ** 20;
const ITEM_BYTES = 3_000_000_000;
const PART_BYTES = 256 * MiB;
const PARTS = Math.ceil(ITEM_BYTES / PART_BYTES);

const standins = useStandins();
let rig: RangedCopyRig;

beforeAll(async () => {
  rig = await startRangedCopyRig(standins(), { itemBytes: ITEM_BYTES, thresholdBytes: 1_024 * MiB, partBytes: PART_BYTES });
}, 300_000);

afterAll(async () => {
  await rig?.close();
});

describe('Handler: copy, a 3 GB item', () => {
  it('copies it in 256 MiB ranged parts over one invocation per part, verifies it whole and publishes it', { timeout: 900_000 }, async () => {
    // Prepare
    const plan = await rig.plan('scale-1');
    const tasks = await rig.copyList(plan);
    const large = tasks.find((task) => task.path === rig.large.path);
    if (!large) throw new Error('expected the large item in the copy list');

    // Act
    const startedAt = Date.now();
    const loop = await rig.copyUntilDone('scale-1', large);
    const seconds = (Date.now() - startedAt) / 1000;
    for (const task of tasks) if (task !== large) await rig.copyUntilDone('scale-1', task);
    const publication = await rig.handlers.publish({ runId: 'scale-1' }, rig.context);
    await rig.handlers.prune({ runId: 'scale-1' }, rig.context);

    // Assess
    console.log(`3 GB ranged copy: ${loop.invocations} invocations, ${PARTS} parts, ${seconds.toFixed(1)} s`);
    expect(PARTS).toBeGreaterThan(1);
    expect(loop.result).toEqual({ path: large.path, size: ITEM_BYTES, skipped: false });
    expect(loop.continuations.at(-1)?.continuation.parts).toHaveLength(PARTS);
    expect(loop.invocations).toBe(PARTS + 1);
    expect(rig.upstream.requestsFor(large.path).every((request) => request.status === 206)).toBe(true);
    expect(await sha256Of(keys.item(large.path))).toBe(rig.large.file.sha256);
    expect(await rig.backend.catalog.getObject(large.path)).toMatchObject({ size: ITEM_BYTES, sha256: rig.large.file.sha256 });
    expect(await rig.backend.catalog.getCurrent()).toMatchObject({ generation: publication.generation });
  });

  it('fails a 3 GB item with a corrupted part: its bytes are deleted and nothing is published', { timeout: 900_000 }, async () => {
    // Prepare
    const before = await rig.backend.catalog.getCurrent();
    await rig.newVersion('20990101');
    rig.upstream.faults.set(rig.large.path, { kind: 'corrupt', offsets: [4 * PART_BYTES + 1] });
    const plan = await rig.plan('scale-2');
    const large = (await rig.copyList(plan)).find((task) => task.path === rig.large.path);
    if (!large) throw new Error('expected the large item in the copy list');

    // Act
    const failure = await rig.copyUntilDone('scale-2', large).catch((error: unknown) => error);
    await rig.handlers.fail({ runId: 'scale-2', error: { Error: 'IntegrityError', Cause: '{}' } }, rig.context);

    // Assess
    expect(failure).toBeInstanceOf(IntegrityError);
    expect((failure as Error).message).toContain(`${large.path}: joined from its ranged parts, sha256 is`);
    expect(await rig.backend.objects.head(keys.item(large.path))).toBeUndefined();
    expect(await rig.backend.catalog.getObject(large.path)).toBeUndefined();
    expect(await rig.backend.catalog.getCurrent()).toEqual(before);
  });
});

async function sha256Of(key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of (await rig.backend.objects.get(key)).body) hash.update(chunk);
  return hash.digest('hex');
}
