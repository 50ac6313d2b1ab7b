/**
 * The re-signed metadata builder (functions/core/publish-metadata.ts), the
 * mirror's signing keys (functions/core/signing-keys.ts on the key file of
 * the embedded backend) and what the engine does with them: freshness
 * checked upstream against upstream, `updated` that never goes back.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { SigningKeyFile } from '../../functions/adapters/fs/signing-key-file.ts';
import { requestRepublish, SyncEngine } from '../../functions/core/engine.ts';
import { ConfigError, MetadataError, RollbackError, SignatureError } from '../../functions/core/errors.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { clearsign, loadKeyring, loadSigningKey, verifyClearsigned } from '../../functions/core/pgp.ts';
import { keys, type Backend } from '../../functions/core/ports.ts';
import {
  buildPublishedStream,
  curateProducts,
  keyringFiles,
  nextUpdated,
  serializePublishedStream,
  UPSTREAM_COPY_PREFIX,
} from '../../functions/core/publish-metadata.ts';
import { defaultEngineSettings } from '../../functions/core/settings.ts';
import {
  activateSigningKey,
  describeSigningKeys,
  openSigningKeys,
  parseSigningKeysDocument,
  retireSigningKey,
  rotateSigningKey,
  SIGNING_KEYS_FORMAT,
} from '../../functions/core/signing-keys.ts';
import { statusReport } from '../../functions/http/reports.ts';
import { flattenItems, parseIndex, parseProducts, parseUpdated } from '../../functions/core/simplestreams.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { maasIndexProblems, maasProductModel, maasProductsProblems } from '../support/maas-models.ts';
import { replaceFiles } from '../support/mirror.ts';
import { generateSigningKey, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

const UPDATED = 'Tue, 01 Dec 2026 10:00:00 +0000';

describe('curateProducts', () => {
  it('keeps only the chosen items, drops emptied versions and products, and keeps every level’s own fields', () => {
    const [ubuntu] = loadFixtureProducts();
    const [productName, product] = Object.entries(ubuntu!.products)[0]!;
    const versionName = Object.keys(product.versions).sort().at(-1)!;
    const itemName = Object.keys(product.versions[versionName]!.items)[0]!;

    const curated = curateProducts(ubuntu!, (p, v, i) => p === productName && v === versionName && i === itemName);

    expect(Object.keys(curated!.products)).toEqual([productName]);
    expect(Object.keys(curated!.products[productName]!.versions)).toEqual([versionName]);
    expect(Object.keys(curated!.products[productName]!.versions[versionName]!.items)).toEqual([itemName]);
    const { versions: _kept, ...productFields } = curated!.products[productName]!;
    const { versions: _all, ...sourceFields } = product;
    expect(productFields).toEqual(sourceFields);
    expect(curated!.content_id).toBe(ubuntu!.content_id);
    // The source document is not changed.
    expect(Object.keys(ubuntu!.products).length).toBeGreaterThan(1);
  });

  it('is undefined when nothing is chosen', () => {
    expect(curateProducts(loadFixtureProducts()[0]!, () => false)).toBeUndefined();
  });
});

describe('nextUpdated', () => {
  it('is now, in the one form MAAS accepts', () => {
    expect(nextUpdated(new Date('2026-12-01T10:00:00.900Z'), undefined)).toBe(UPDATED);
  });

  it('never goes back, nor stays, when the clock is behind what was published', () => {
    const later = 'Wed, 02 Dec 2026 10:00:00 +0000';
    expect(nextUpdated(new Date('2026-12-01T10:00:00Z'), later)).toBe('Wed, 02 Dec 2026 10:00:01 +0000');
    expect(nextUpdated(new Date('2026-12-01T10:00:00Z'), UPDATED)).toBe('Tue, 01 Dec 2026 10:00:01 +0000');
  });
});

describe('buildPublishedStream + serializePublishedStream', () => {
  let key: SigningKey;
  beforeAll(async () => {
    key = await generateSigningKey('builder test');
  });

  it('builds index and products MAAS’s models accept, each .json the very text the .sjson signs', async () => {
    const documents = loadFixtureProducts();
    const stream = buildPublishedStream({
      products: documents.map((doc) => ({ base: `streams/v1/${doc.content_id}`, doc })),
      updated: UPDATED,
    });
    const signer = await loadSigningKey('test key', key.armoredPrivateKey);
    const files = await serializePublishedStream(stream, (text) => clearsign(text, signer));
    const keyring = await loadKeyring('test', key.publicKeyring);

    const indexBody = await verifyClearsigned('index.sjson', new TextDecoder().decode(files.get('streams/v1/index.sjson')), keyring);
    expect(maasIndexProblems('index.sjson', JSON.parse(indexBody))).toEqual([]);
    const index = parseIndex('index.sjson', indexBody);
    expect(Object.values(index.index).map((entry) => entry.format)).toEqual(['products:1.0', 'products:1.0', 'products:1.0']);
    const models = [];
    for (const [contentId, entry] of Object.entries(index.index)) {
      expect(entry.updated).toBe(UPDATED);
      const body = await verifyClearsigned(entry.path, new TextDecoder().decode(files.get(entry.path)), keyring);
      expect(new TextDecoder().decode(files.get(entry.path.replace(/\.sjson$/, '.json')))).toBe(body);
      const doc = JSON.parse(body) as Record<string, unknown>;
      expect(doc.content_id).toBe(contentId);
      expect(doc.updated).toBe(UPDATED);
      expect(maasProductsProblems(entry.path, doc)).toEqual([]);
      models.push(maasProductModel(entry.path, doc));
      expect(entry.products).toEqual(Object.keys(doc.products as object).sort());
    }
    // The three shapes MAAS knows, each in its own file.
    expect(models.sort()).toEqual(['bootloader', 'multi-file', 'single-file']);
    // The unsigned index lists the unsigned products files.
    const unsigned = JSON.parse(new TextDecoder().decode(files.get('streams/v1/index.json'))) as { index: Record<string, { path: string }> };
    expect(Object.values(unsigned.index).every((entry) => entry.path.endsWith('.json'))).toBe(true);
  });

  it('refuses two products files with one content id, naming both', () => {
    const [doc] = loadFixtureProducts();
    const build = () =>
      buildPublishedStream({ products: [{ base: 'streams/v1/a', doc: doc! }, { base: 'streams/v1/b', doc: doc! }], updated: UPDATED });
    expect(build).toThrow(MetadataError);
    expect(build).toThrow(/streams\/v1\/b: \$\.content_id: .* is also the content id of streams\/v1\/a/);
  });

  it('the MAAS model check fails a products file MAAS would reject', () => {
    const [ubuntu] = loadFixtureProducts();
    const broken = structuredClone(ubuntu!) as unknown as { products: Record<string, Record<string, unknown>> };
    delete Object.values(broken.products)[0]!.release_title;
    expect(maasProductsProblems('ubuntu', broken as unknown as Record<string, unknown>).join('\n')).toMatch(/release_title: str required/);
    expect(maasIndexProblems('index', { updated: 'Tue, 01 Dec 2026 10:00:00 GMT', index: {} })).toEqual([
      'index: $.updated: not "%a, %d %b %Y %H:%M:%S %z": "Tue, 01 Dec 2026 10:00:00 GMT"',
    ]);
  });

  it('writes every public key into the keyring files, binary and armored', async () => {
    const other = await generateSigningKey('other');
    const keyring = await loadKeyring('test', key.publicKeyring);
    const both = [...keyring.keys, ...(await loadKeyring('other', other.publicKeyring)).keys];
    const files = keyringFiles(both);
    expect((await loadKeyring('keyring.gpg', files.get('keyring.gpg')!)).fingerprints).toEqual([key.fingerprint, other.fingerprint]);
    expect((await loadKeyring('keyring.asc', files.get('keyring.asc')!)).fingerprints).toEqual([key.fingerprint, other.fingerprint]);
  });
});

describe('signing keys in a file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'skystreams-keys-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates one key on first use, readable by its owner only, and reads the same key afterwards', async () => {
    const store = new SigningKeyFile(join(dir, 'signing-keys.json'));
    const [first, racing] = await Promise.all([openSigningKeys(store), openSigningKeys(store)]);
    expect(racing.signer.getFingerprint()).toBe(first.signer.getFingerprint());
    expect((await stat(store.path)).mode & 0o777).toBe(0o600);
    expect((await openSigningKeys(store)).signer.getFingerprint()).toBe(first.signer.getFingerprint());
  });

  it('fills a prepared keyless document (the secret infra creates)', async () => {
    const store = new SigningKeyFile(join(dir, 'signing-keys.json'));
    await writeFile(store.path, JSON.stringify({ format: SIGNING_KEYS_FORMAT }));
    const keys = await openSigningKeys(store);
    expect(JSON.parse(await readFile(store.path, 'utf8')).active).toBe(keys.signer.armor());
  });

  it('names the file and field of a damaged document, and creates nothing over it', async () => {
    const store = new SigningKeyFile(join(dir, 'signing-keys.json'));
    await writeFile(store.path, JSON.stringify({ format: SIGNING_KEYS_FORMAT, active: 'not a key' }));
    await expect(openSigningKeys(store)).rejects.toThrow(ConfigError);
    await expect(openSigningKeys(store)).rejects.toThrow(`${store.path}: active: not an OpenPGP private key`);
    // JSON.parse would quote this text in its message: `Unexpected token 's', "{"active": secret…" is not valid JSON`.
    await writeFile(store.path, '{"active": secret-key-material}');
    const unparsable = await openSigningKeys(store).catch((error: Error) => error);
    expect(unparsable).toBeInstanceOf(ConfigError);
    expect(`${(unparsable as Error).message} ${String((unparsable as Error).cause)}`).not.toContain('secret');
    await writeFile(store.path, JSON.stringify({ format: 'something else' }));
    await expect(openSigningKeys(store)).rejects.toThrow(`${store.path}: format: expected "${SIGNING_KEYS_FORMAT}"`);
    expect(JSON.parse(await readFile(store.path, 'utf8'))).toEqual({ format: 'something else' });
  });

  const fingerprints = (keys: { published: { getFingerprint(): string }[] }) => keys.published.map((key) => key.getFingerprint().toUpperCase());

  it('rotates to a pending key: published beside the active key, which keeps signing; a second rotation is refused naming it', async () => {
    // Prepare
    const store = new SigningKeyFile(join(dir, 'signing-keys.json'));
    const before = await openSigningKeys(store);
    const active = before.signer.getFingerprint().toUpperCase();

    // Act
    const pending = await rotateSigningKey(store, new Date('2026-12-01T10:00:00Z'));

    // Assess
    expect(pending).toEqual({ fingerprint: expect.stringMatching(/^[0-9A-F]{40}$/), state: 'pending', since: '2026-12-01T10:00:00.000Z' });
    const after = await openSigningKeys(store);
    expect(after.signer.getFingerprint().toUpperCase()).toBe(active);
    expect(fingerprints(after)).toEqual([active, pending.fingerprint]);
    expect(await describeSigningKeys(store)).toEqual([
      { fingerprint: active, state: 'active', since: expect.any(String) },
      { fingerprint: pending.fingerprint, state: 'pending', since: '2026-12-01T10:00:00.000Z' },
    ]);
    const again = await rotateSigningKey(store).catch((error: Error) => error);
    expect(again).toBeInstanceOf(ConfigError);
    expect((again as Error).message).toContain(`${pending.fingerprint} is already pending (since 2026-12-01T10:00:00.000Z)`);
    expect(fingerprints(await openSigningKeys(store))).toEqual([active, pending.fingerprint]);
  });

  it('activates only the pending key; retires only previous keys, refusing the active and the pending one', async () => {
    // Prepare: a store whose pending key was never published (force skips the check of what is served).
    const store = new SigningKeyFile(join(dir, 'signing-keys.json'));
    const first = (await openSigningKeys(store)).signer.getFingerprint().toUpperCase();
    const pending = await rotateSigningKey(store);
    const mirror = openEmbeddedBackend(join(dir, 'mirror'));
    try {
      const activate = (fingerprint: string) => activateSigningKey(store, fingerprint, { mirror, minPublishedMs: 0, force: true });

      // Act + Assess: refusals leave the document as it was.
      await expect(activate(first)).rejects.toThrow(`${first} is the active signing key: only a pending key can be activated (pending: ${pending.fingerprint})`);
      await expect(activate('ABCDEF')).rejects.toThrow(ConfigError);
      await expect(retireSigningKey(store, first)).rejects.toThrow(/is the active signing key/);
      await expect(retireSigningKey(store, pending.fingerprint)).rejects.toThrow(`${pending.fingerprint} is the pending signing key`);
      expect((await describeSigningKeys(store))?.map((key) => key.state)).toEqual(['active', 'pending']);

      const { previous } = await activate(pending.fingerprint.toLowerCase());
      expect(previous).toBe(first);
      const rotated = await openSigningKeys(store);
      expect(rotated.signer.getFingerprint().toUpperCase()).toBe(pending.fingerprint);
      expect(rotated.phases.map((key) => [key.fingerprint, key.state])).toEqual([[pending.fingerprint, 'active'], [first, 'previous']]);
      await expect(activate(first)).rejects.toThrow(`${first} is the previous signing key: only a pending key can be activated (none is pending`);

      await retireSigningKey(store, first.toLowerCase());
      expect(fingerprints(await openSigningKeys(store))).toEqual([pending.fingerprint]);
      await expect(retireSigningKey(store, 'ABCDEF')).rejects.toThrow(ConfigError);
    } finally {
      await mirror.close();
    }
  });

  it('loads a document written before keys had phases (active + previous), and still refuses unknown or inconsistent fields', async () => {
    // Prepare: what rotation wrote before: the new key active, the old public key previous, no dates.
    const store = new SigningKeyFile(join(dir, 'signing-keys.json'));
    const old = await loadSigningKey('old', (await generateSigningKey('old')).armoredPrivateKey);
    const current = await loadSigningKey('current', (await generateSigningKey('current')).armoredPrivateKey);
    const legacy = { format: SIGNING_KEYS_FORMAT, active: current.armor(), previous: [old.toPublic().armor()] };
    await writeFile(store.path, JSON.stringify(legacy));

    // Act
    const phases = await describeSigningKeys(store);

    // Assess: active since its creation, when that rotation made it active.
    expect(phases).toEqual([
      { fingerprint: current.getFingerprint().toUpperCase(), state: 'active', since: current.getCreationTime().toISOString() },
      { fingerprint: old.getFingerprint().toUpperCase(), state: 'previous' },
    ]);
    expect(parseSigningKeysDocument('legacy', JSON.stringify(legacy))).toEqual(legacy);
    // And it rotates from there.
    const pending = await rotateSigningKey(store);
    expect((await describeSigningKeys(store))?.map((key) => key.state)).toEqual(['active', 'pending', 'previous']);
    expect(JSON.parse(await readFile(store.path, 'utf8'))).toMatchObject({ ...legacy, pendingSince: pending.since });

    expect(() => parseSigningKeysDocument('doc', JSON.stringify({ ...legacy, colour: 'blue' }))).toThrow(
      'doc: colour: unknown field (known: format, active, activeSince, pending, pendingSince, previous)',
    );
    expect(() => parseSigningKeysDocument('doc', JSON.stringify({ ...legacy, pendingSince: '2026-12-01T10:00:00Z' }))).toThrow('doc: pendingSince: there is no pending key');
    expect(() => parseSigningKeysDocument('doc', JSON.stringify({ ...legacy, pending: current.armor() }))).toThrow('doc: pendingSince: needed with a pending key');
    expect(() => parseSigningKeysDocument('doc', JSON.stringify({ ...legacy, activeSince: 'yesterday' }))).toThrow(ConfigError);
  });
});

describe('engine in re-signed mode', () => {
  const FIRST = 'Thu, 24 Jul 2025 08:00:00 +0000';
  let upstreamKey: SigningKey;
  let live: Map<string, Uint8Array>;
  let upstream: ServedTree;
  let dataDir: string;
  let backend: Backend;
  let clock: number;

  beforeAll(async () => {
    upstreamKey = await generateSigningKey('engine resign upstream');
    live = new Map();
    upstream = await serveTree(live);
  });
  afterAll(async () => {
    await upstream.close();
  });
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'skystreams-resign-engine-'));
    backend = openEmbeddedBackend(dataDir);
    clock = Date.parse('2025-07-24T09:00:00Z');
  });
  afterEach(async () => {
    await backend.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const publishUpstream = async (updated: string) => replaceFiles(live, await synthesizeTree(loadFixtureProducts(), { key: upstreamKey, updated }));
  const sync = async () =>
    new SyncEngine(
      {
        upstream: new HttpUpstream(upstream.baseUrl),
        objects: backend.objects,
        catalog: backend.catalog,
        now: () => new Date(clock),
        signingKeys: backend.signingKeys!,
        sleep: async () => {},
      },
      {
        ...defaultEngineSettings,
        keyring: await loadKeyring('upstream', upstreamKey.publicKeyring),
        selection: { filters: [parseFilter('arch=amd64')], max: 1 },
        resign: true,
      },
    ).run();
  const servedUpdated = async () => {
    const current = (await backend.catalog.getCurrent())!;
    const { body } = await backend.objects.get(keys.metadata(current, 'streams/v1/index.json'));
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    return parseIndex('index.json', Buffer.concat(chunks).toString('utf8')).updated!;
  };

  it('compares upstream with the upstream files it kept, not with its own later dates; refuses an older upstream', async () => {
    await publishUpstream(FIRST);
    await sync();
    const current = (await backend.catalog.getCurrent())!;
    expect(current.files).toContain(`${UPSTREAM_COPY_PREFIX}streams/v1/index.sjson`);
    const firstServed = await servedUpdated();
    expect(parseUpdated('', '', firstServed)).toBeGreaterThan(parseUpdated('', '', FIRST));

    // Newer than upstream's first index, older than the mirror's own date: a valid upstream change.
    await publishUpstream('Thu, 24 Jul 2025 08:30:00 +0000');
    clock += 60_000;
    await expect(sync()).resolves.toMatchObject({ state: 'succeeded', generation: 2 });

    // Older than what upstream published before: a replay.
    await publishUpstream('Wed, 23 Jul 2025 08:00:00 +0000');
    clock += 60_000;
    await expect(sync()).rejects.toThrow(RollbackError);
    expect((await backend.catalog.getCurrent())?.generation).toBe(2);
  });

  it('serves a rotated key in the keyring before it signs; activation waits until the keyring has been served --min-published', async () => {
    // Prepare
    const HOUR = 3_600_000;
    const servedFile = async (file: string) => {
      const { body } = await backend.objects.get(keys.metadata((await backend.catalog.getCurrent())!, file));
      const chunks: Uint8Array[] = [];
      for await (const chunk of body) chunks.push(chunk);
      return new Uint8Array(Buffer.concat(chunks));
    };
    const servedIndexVerifies = async (keyring: Uint8Array) =>
      verifyClearsigned('index.sjson', new TextDecoder().decode(await servedFile('streams/v1/index.sjson')), await loadKeyring('client', keyring));
    const store = backend.signingKeys!;
    await publishUpstream(FIRST);
    await sync();
    const preRotation = await servedFile('keyring.gpg');
    const first = (await describeSigningKeys(store))![0]!.fingerprint;
    const pending = await rotateSigningKey(store, new Date(clock));
    const activate = () => activateSigningKey(store, pending.fingerprint, { mirror: backend, minPublishedMs: 24 * HOUR, now: new Date(clock) });

    // Act + Assess: the keyring that holds it is not served yet.
    await expect(activate()).rejects.toThrow(`${pending.fingerprint} is not in the keyring channel stable serves (generation 1) yet`);
    await requestRepublish(backend.catalog, 'signing key rotated');
    clock += 60_000;
    await expect(sync()).resolves.toMatchObject({ state: 'succeeded', generation: 2 });
    const postRotation = await servedFile('keyring.gpg');
    expect((await loadKeyring('served', postRotation)).fingerprints.map((f) => f.toUpperCase())).toEqual([first, pending.fingerprint]);
    await expect(servedIndexVerifies(preRotation)).resolves.toContain('"index"');

    // An hour later: refused, saying how long is left; nothing changed.
    clock += HOUR;
    const early = await activate().catch((error: Error) => error);
    expect(early).toBeInstanceOf(ConfigError);
    expect((early as Error).message).toContain(`${pending.fingerprint} has been served in /keyring.gpg only since ${new Date(clock - HOUR).toISOString()}: 23h left`);
    expect((await openSigningKeys(store)).signer.getFingerprint().toUpperCase()).toBe(first);
    expect((await describeSigningKeys(store))?.map((key) => key.state)).toEqual(['active', 'pending']);

    // A day after it was first served: it signs from the next publication on, and the old key stays published.
    clock += 23 * HOUR;
    await expect(activate()).resolves.toEqual({ previous: first });
    await requestRepublish(backend.catalog, 'signing key activated');
    await expect(sync()).resolves.toMatchObject({ state: 'succeeded', generation: 3 });
    await expect(servedIndexVerifies(postRotation)).resolves.toContain('"index"');
    await expect(servedIndexVerifies(preRotation)).rejects.toThrow(SignatureError);
    // The status API tells the phases from what the sync recorded, with no access to the keys.
    expect((await statusReport(backend.catalog)).signing).toEqual({
      keys: [
        { fingerprint: pending.fingerprint, state: 'active', since: new Date(clock).toISOString() },
        { fingerprint: first, state: 'previous' },
      ],
    });
  });

  it('dates each publication after the last even when the clock went back', async () => {
    await publishUpstream(FIRST);
    await sync();
    const firstServed = await servedUpdated();
    await publishUpstream('Thu, 24 Jul 2025 08:30:00 +0000');
    clock -= 3_600_000;
    await sync();
    expect(parseUpdated('', '', await servedUpdated())).toBe(parseUpdated('', '', firstServed) + 1000);
  });

  it('lists in the products files exactly the items of the catalog entries', async () => {
    await publishUpstream(FIRST);
    await sync();
    const current = (await backend.catalog.getCurrent())!;
    const entries: string[] = [];
    for await (const entry of backend.catalog.listEntries(current.generation)) entries.push(`${entry.contentId} ${entry.product} ${entry.version} ${entry.item}`);
    const listed: string[] = [];
    for (const file of current.files.filter((f) => /^streams\/v1\/.*\.json$/.test(f) && !f.endsWith('index.json'))) {
      const { body } = await backend.objects.get(keys.metadata(current, file));
      const chunks: Uint8Array[] = [];
      for await (const chunk of body) chunks.push(chunk);
      const doc = parseProducts(file, Buffer.concat(chunks).toString('utf8'));
      for (const item of flattenItems(file, doc)) listed.push(`${item.contentId} ${item.productName} ${item.versionName} ${item.itemName}`);
    }
    expect(listed.sort()).toEqual(entries.sort());
    expect(listed.length).toBeGreaterThan(0);
  });
});
