import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import type { SyncEvent } from '../../functions/core/engine.ts';
import type { Backend } from '../../functions/core/ports.ts';
import { createApp } from '../../functions/http/app.ts';
import { demoProducts } from '../support/demo-mirror.ts';
import { generateSigningKey, synthesizeTree } from '../support/signed-upstream.ts';
import { syncMirror } from '../support/mirror.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

/** The demo's largest amd64 item: held back by the upstream so the sync stays running. */
const STALLED = 'noble/amd64/20250709/squashfs';

let dir: string | undefined;
let backend: Backend | undefined;
let upstream: ServedTree | undefined;

afterEach(async () => {
  await upstream?.close();
  await backend?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('Status page during a sync', () => {
  it('shows what the running copy has stored so far, and reloads itself', async () => {
    // Prepare: an upstream that sends half of one item and then nothing.
    dir = await mkdtemp(join(tmpdir(), 'skystreams-live-page-'));
    const key = await generateSigningKey('live page test');
    const files = await synthesizeTree(demoProducts(), { key });
    upstream = await serveTree(files, { faults: new Map([[STALLED, { kind: 'stall' }]]) });
    backend = openEmbeddedBackend(join(dir, 'mirror'));
    const app = createApp(backend);
    const events: SyncEvent[] = [];
    const sync = syncMirror(backend, upstream.baseUrl, { keyring: key, filters: ['arch=amd64'], max: 1, events }).catch((error: unknown) => error);

    // Act: wait until every item but the stalled one is stored.
    const planned = await waitFor(() => events.find((event) => event.type === 'planned'));
    const storedBeforeStall = planned.copyItems - 1;
    await waitFor(() => events.filter((event) => event.type === 'item-stored').length >= storedBeforeStall || undefined);
    const page = await (await app(new Request('http://mirror.test/'))).text();

    // Assess
    const stalledSize = files.get(STALLED)!.length;
    expect(page).toContain('<meta http-equiv="refresh" content="5">');
    expect(page).toContain(`<dt>Copied</dt><dd>${storedBeforeStall} of ${planned.copyItems} items`);
    expect(page).toContain(`<progress id="copy-progress" max="${planned.copyBytes}" value="${planned.copyBytes - stalledSize}">`);
    expect(page).toMatch(/<dt>Generation being built<\/dt><dd>1<\/dd>/);
    expect(page).toContain('nothing yet: the first sync has not finished');

    // The stalled sync ends once the upstream goes; nothing is published.
    await upstream.close();
    upstream = undefined;
    expect(await sync).toBeInstanceOf(Error);
    expect(await backend.catalog.getCurrent()).toBeUndefined();
  });
});

async function waitFor<T>(find: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found) return found;
    if (Date.now() > until) throw new Error('timed out waiting for the sync');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
