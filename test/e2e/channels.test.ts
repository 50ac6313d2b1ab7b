import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { promote, rollBack } from '../../functions/core/channels.ts';
import { ConfigError, ConflictError } from '../../functions/core/errors.ts';
import { addPin, listPins, removePin } from '../../functions/core/pins.ts';
import { DEFAULT_CHANNEL, MAX_CHANNELS } from '../../functions/core/ports.ts';
import type { RunningServer } from '../../functions/local/server.ts';
import { cloudBackend, embeddedBackend, type BackendFactory, type OpenedBackend } from '../support/backends.ts';
import { cli } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { useStandins } from '../support/global-standins.ts';
import { fetchBytes, replaceFiles, selectedPaths, serveMirror, syncMirror, withNewVersion, type SyncOptions } from '../support/mirror.ts';
import { generateSigningKey, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

const FIRST = 'Mon, 01 Jun 2026 00:00:00 +0000';
const SECOND = 'Tue, 02 Jun 2026 00:00:00 +0000';
const NEW_VERSION = '20990101';
const INDEX = 'streams/v1/index.sjson';
const NOBLE_GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

const backends: BackendFactory[] = [embeddedBackend, cloudBackend(useStandins())];

describe.each(backends)('Channels: $name', (factory) => {
  const products = loadFixtureProducts();
  let key: SigningKey;
  let firstTree: Map<string, Uint8Array>;
  let secondTree: Map<string, Uint8Array>;
  const live = new Map<string, Uint8Array>();
  let upstream: ServedTree;
  let opened: OpenedBackend;
  let server: RunningServer;

  beforeAll(async () => {
    key = await generateSigningKey('channels upstream');
    firstTree = await synthesizeTree(products, { key, updated: FIRST });
    secondTree = await synthesizeTree(withNewVersion(products, NEW_VERSION), { key, updated: SECOND });
    upstream = await serveTree(live);
  });
  afterAll(async () => {
    await upstream?.close();
  });
  beforeEach(async () => {
    replaceFiles(live, firstTree);
    opened = await factory.open();
    server = await serveMirror(opened.backend);
  });
  afterEach(async () => {
    await server.close();
    await opened.cleanup();
  });

  const sync = (options: Partial<SyncOptions> = {}) =>
    syncMirror(opened.backend, upstream.baseUrl, { keyring: key, filters: ['arch=amd64'], max: 1, ...options });
  const served = async (path: string) => fetchBytes(server.url + path);

  it('serves a sync into candidate at /channels/candidate/ only, until promote points stable (/) at exactly it', async () => {
    // Act
    await sync({ channel: 'candidate' });
    const beforePromote = await served(INDEX);
    const candidateIndex = await served(`channels/candidate/${INDEX}`);
    const promoted = await promote(opened.backend.catalog, 'candidate', DEFAULT_CHANNEL);

    // Assess
    expect(beforePromote.status).toBe(404);
    expect(candidateIndex.status).toBe(200);
    expect(candidateIndex.bytes.equals(Buffer.from(firstTree.get(INDEX)!))).toBe(true);
    expect(promoted).toEqual({ generation: 1, changed: true });
    for (const path of [INDEX, `channels/${DEFAULT_CHANNEL}/${INDEX}`]) {
      const reply = await served(path);
      expect(reply.status, path).toBe(200);
      expect(reply.bytes.equals(Buffer.from(firstTree.get(INDEX)!)), path).toBe(true);
    }
    const item = selectedPaths(products, 'amd64', 1)[0]!;
    for (const path of [item, `channels/candidate/${item}`, `channels/${DEFAULT_CHANNEL}/${item}`]) {
      const reply = await served(path);
      expect(reply.status, path).toBe(200);
      expect(reply.bytes.equals(Buffer.from(firstTree.get(item)!)), path).toBe(true);
    }
    expect((await served(`channels/edge/${INDEX}`)).status).toBe(404);
    expect((await served(`channels/Not_A_Channel/${INDEX}`)).status).toBe(404);
  });

  it('keeps stable where it was while candidate moves on; promote then rollback switch it back and forth', async () => {
    // Prepare
    await sync({ channel: 'candidate', keepGenerations: 2 });
    await promote(opened.backend.catalog, 'candidate', DEFAULT_CHANNEL);
    replaceFiles(live, secondTree);
    await sync({ channel: 'candidate', keepGenerations: 2 });

    // Act
    const stableWhileCandidateMoved = await served(INDEX);
    await promote(opened.backend.catalog, 'candidate', DEFAULT_CHANNEL);
    const afterPromote = await served(INDEX);
    const rolled = await rollBack(opened.backend.catalog, DEFAULT_CHANNEL);
    const afterRollback = await served(INDEX);

    // Assess
    expect(stableWhileCandidateMoved.bytes.equals(Buffer.from(firstTree.get(INDEX)!))).toBe(true);
    expect((await served(`channels/candidate/${INDEX}`)).bytes.equals(Buffer.from(secondTree.get(INDEX)!))).toBe(true);
    expect(afterPromote.bytes.equals(Buffer.from(secondTree.get(INDEX)!))).toBe(true);
    expect(rolled).toEqual({ from: 2, to: 1 });
    expect(afterRollback.bytes.equals(Buffer.from(firstTree.get(INDEX)!))).toBe(true);
    expect(await opened.backend.catalog.getChannel(DEFAULT_CHANNEL)).toMatchObject({ generation: 1, history: [] });
    await expect(rollBack(opened.backend.catalog, DEFAULT_CHANNEL)).rejects.toBeInstanceOf(ConflictError);
  });

  it('switches atomically under concurrent readers: every read is one whole generation, never a 404 or a mix', async () => {
    // Prepare
    await sync({ channel: 'candidate', keepGenerations: 2 });
    await promote(opened.backend.catalog, 'candidate', DEFAULT_CHANNEL);
    replaceFiles(live, secondTree);
    await sync({ channel: 'candidate', keepGenerations: 2 });
    const versions = [firstTree.get(INDEX)!, secondTree.get(INDEX)!].map((bytes) => Buffer.from(bytes));
    let switching = true;
    const bad: string[] = [];
    let reads = 0;
    const reader = async () => {
      while (switching) {
        const reply = await served(INDEX);
        reads++;
        if (reply.status !== 200 || !versions.some((version) => version.equals(reply.bytes))) bad.push(`${reply.status} (${reply.bytes.length} bytes)`);
      }
    };

    // Act
    const readers = Array.from({ length: 4 }, reader);
    // At least six round trips, and enough of them for the readers to land on both sides many times.
    for (let i = 0; i < 6 || (reads < 200 && i < 500); i++) {
      await promote(opened.backend.catalog, 'candidate', DEFAULT_CHANNEL);
      await new Promise((resolve) => setTimeout(resolve, 1));
      await rollBack(opened.backend.catalog, DEFAULT_CHANNEL);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    switching = false;
    await Promise.all(readers);

    // Assess
    expect(reads).toBeGreaterThanOrEqual(200);
    expect(bad).toEqual([]);
    expect((await opened.backend.catalog.getChannel(DEFAULT_CHANNEL))?.generation).toBe(1);
  });

  it('keeps every channel\'s generation out of pruning', async () => {
    // Prepare: a zero grace, one kept generation per channel.
    await sync({ channel: 'candidate', pruneGraceMs: 0 });
    await promote(opened.backend.catalog, 'candidate', DEFAULT_CHANNEL);
    replaceFiles(live, secondTree);

    // Act
    await sync({ channel: 'candidate', pruneGraceMs: 0 });
    await promote(opened.backend.catalog, 'candidate', 'edge');
    const attempt = rollBack(opened.backend.catalog, 'candidate');

    // Assess: generation 1 survives for stable, and candidate's history names it.
    expect((await opened.backend.catalog.listPublications()).map((p) => p.generation)).toEqual([2, 1]);
    await expect(attempt).resolves.toEqual({ from: 2, to: 1 });
    await sync({ channel: 'candidate', pruneGraceMs: 0 });
    expect((await served(`channels/edge/${INDEX}`)).bytes.equals(Buffer.from(secondTree.get(INDEX)!))).toBe(true);
  });

  it(`keeps at most ${MAX_CHANNELS} channels: a promote or sync to one more is refused and creates nothing; a generation can still be deleted`, async () => {
    // Prepare
    await sync({ pruneGraceMs: 0 });
    for (let i = 1; i < MAX_CHANNELS; i++) await promote(opened.backend.catalog, DEFAULT_CHANNEL, `c${i}`);
    expect(await opened.backend.catalog.listChannels()).toHaveLength(MAX_CHANNELS);

    // Act
    const promoted = promote(opened.backend.catalog, DEFAULT_CHANNEL, 'one-more');
    const synced = sync({ channel: 'one-more', pruneGraceMs: 0 });

    // Assess
    await expect(promoted).rejects.toThrow(ConfigError);
    await expect(promoted).rejects.toThrow(`channel one-more: the mirror has ${MAX_CHANNELS} channels, the most it keeps`);
    await expect(synced).rejects.toThrow(ConfigError);
    expect(await opened.backend.catalog.getChannel('one-more')).toBeUndefined();
    expect(await opened.backend.catalog.listChannels()).toHaveLength(MAX_CHANNELS);
    // A generation no channel points at can still be deleted with every channel re-checked (one transaction on DynamoDB).
    replaceFiles(live, secondTree);
    await sync({ channel: 'c1', pruneGraceMs: 0 });
    await promote(opened.backend.catalog, DEFAULT_CHANNEL, 'c1');
    await opened.backend.catalog.deletePublication(2);
    expect((await opened.backend.catalog.listPublications()).map((p) => p.generation)).toEqual([1]);
  });

  it('refuses a rollback to a generation pruned meanwhile, saying how to keep it, and changes nothing', async () => {
    // Prepare: a zero grace and one kept generation: generation 1 goes once candidate moves on.
    await sync({ channel: 'candidate', pruneGraceMs: 0 });
    replaceFiles(live, secondTree);
    await sync({ channel: 'candidate', pruneGraceMs: 0 });

    // Act
    const attempt = rollBack(opened.backend.catalog, 'candidate');

    // Assess
    await expect(attempt).rejects.toThrow(ConflictError);
    await expect(attempt).rejects.toThrow(/generation 1: it was pruned.*--keep-generations 2/);
    expect((await opened.backend.catalog.listPublications()).map((p) => p.generation)).toEqual([2]);
    expect(await opened.backend.catalog.getChannel('candidate')).toMatchObject({ generation: 2, history: [1] });
  });

  it('pins a version beyond --max while upstream lists it; a pin of something never mirrored is refused', async () => {
    // Prepare
    await sync();
    const oldVersion = Object.keys(products.find((doc) => doc.products[NOBLE_GA])!.products[NOBLE_GA]!.versions).sort().at(-1)!;

    // Act
    await addPin(opened.backend.catalog, { product: NOBLE_GA, version: oldVersion });
    const unknown = await addPin(opened.backend.catalog, { product: NOBLE_GA, version: '19700101' }).catch((error: unknown) => error);
    replaceFiles(live, secondTree);
    await sync({ pruneGraceMs: 0 });

    // Assess
    expect(unknown).toBeInstanceOf(ConfigError);
    expect(await listPins(opened.backend.catalog)).toEqual([{ product: NOBLE_GA, version: oldVersion }]);
    const current = (await opened.backend.catalog.getCurrent())!;
    const versions = new Set<string>();
    for await (const entry of opened.backend.catalog.listEntries(current.generation)) if (entry.product === NOBLE_GA) versions.add(entry.version);
    expect([...versions].sort()).toEqual([oldVersion, NEW_VERSION].sort());
    const pinnedItem = [...firstTree.keys()].find((path) => path.includes(`/${oldVersion}/`) && path.includes('ga-24.04'))!;
    expect((await served(pinnedItem)).status).toBe(200);
    expect(await removePin(opened.backend.catalog, { product: NOBLE_GA, version: oldVersion })).toEqual([]);
    expect(await listPins(opened.backend.catalog)).toEqual([]);
  });

  it('promote, rollback and pin from the CLI: exit codes and messages', async () => {
    // Prepare
    await sync({ channel: 'candidate' });
    const flags = opened.cliFlags;
    const env = opened.env;

    // Act
    const promoted = await cli(['promote', 'candidate', DEFAULT_CHANNEL, ...flags], env);
    const again = await cli(['promote', 'candidate', DEFAULT_CHANNEL, ...flags], env);
    const noHistory = await cli(['rollback', DEFAULT_CHANNEL, ...flags], env);
    const missing = await cli(['promote', 'nightly', DEFAULT_CHANNEL, ...flags], env);
    const badName = await cli(['promote', 'candidate', 'Stable!', ...flags], env);
    const status = await cli(['status', '--json', ...flags], env);
    const verified = await cli(['verify', '--channel', 'candidate', ...flags], env);

    // Assess
    expect(promoted).toMatchObject({ code: 0, stdout: `channel ${DEFAULT_CHANNEL} now serves generation 1 (from candidate)\n` });
    expect(again.stdout).toContain('unchanged');
    expect(noHistory.code).toBe(1);
    expect(noHistory.stderr).toContain(`channel ${DEFAULT_CHANNEL} has no earlier generation`);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('channel nightly does not exist');
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain('to: "Stable!" is not a channel name');
    expect(verified).toMatchObject({ code: 0, stdout: expect.stringMatching(/^generation 1: checked \d+ files .*, 0 bad\n$/) });
    expect(JSON.parse(status.stdout).channels).toEqual([
      { name: 'candidate', generation: 1, history: [] },
      { name: DEFAULT_CHANNEL, generation: 1, history: [] },
    ]);
  });
});
