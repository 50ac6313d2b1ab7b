/**
 * Storing custom images (functions/core/uploads.ts) and what the engine
 * does with them, on both backends: items verified while they stream and
 * stored create-only, a record under uploads/, the manifest indexed; a
 * wrong digest leaves nothing; a sync that was already running when the
 * image arrived does not prune it, and the next one publishes it (re-signed
 * mode only).
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKeyFile } from '../../functions/adapters/fs/signing-key-file.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { uploadRecordKey, UPLOADS_PREFIX, validateUpload, type UploadRequest } from '../../functions/core/custom-images.ts';
import { requestRepublish, SyncEngine, type SyncSettings } from '../../functions/core/engine.ts';
import { ConfigError, ConflictError, FileFormatError, IntegrityError } from '../../functions/core/errors.ts';
import { WrappedObjectStore } from '../support/wrapped-store.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { loadKeyring } from '../../functions/core/pgp.ts';
import type { CopyTask } from '../../functions/core/planner.ts';
import { keys, type Backend, type ByteStream } from '../../functions/core/ports.ts';
import { defaultEngineSettings } from '../../functions/core/settings.ts';
import { listUploadRecords, removeUpload, storeUpload, type UploadSource } from '../../functions/core/uploads.ts';
import { createUploadRoute, UPLOADS_ROUTE } from '../../functions/http/upload-route.ts';
import { cloudBackend, embeddedBackend, type OpenedBackend } from '../support/backends.ts';
import { buildFixtureUpstream } from '../support/fixtures.ts';
import { useStandins } from '../support/global-standins.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { rootTgz } from '../support/image-files.ts';

const standins = useStandins();
const NOW = new Date('2026-12-02T01:00:00Z');

const request: UploadRequest = {
  os: 'centos',
  release: 'mycentos9',
  arch: 'amd64',
  subarch: 'generic',
  title: 'CentOS 9 (site)',
  files: [
    { ftype: 'root-tgz', source: 'image.tgz' },
    { ftype: 'manifest', source: 'image.manifest' },
  ],
};
const upload = validateUpload(request, 'test');

function sourceOf(bytes: Uint8Array, sha256?: string): UploadSource {
  return {
    size: bytes.byteLength,
    ...(sha256 !== undefined && { sha256 }),
    open: async (): Promise<ByteStream> =>
      (async function* () {
        // Two chunks: the digest is checked across chunk boundaries.
        yield bytes.subarray(0, bytes.byteLength >> 1);
        yield bytes.subarray(bytes.byteLength >> 1);
      })(),
  };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function keysUnder(backend: Backend, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const info of backend.objects.list(prefix)) found.push(info.key);
  return found;
}

let upstream: ServedTree;
let upstreamKey: Awaited<ReturnType<typeof buildFixtureUpstream>>['key'];
let work: string;

beforeAll(async () => {
  const built = await buildFixtureUpstream();
  upstreamKey = built.key;
  upstream = await serveTree(built.files);
  work = await mkdtemp(join(tmpdir(), 'skystreams-uploads-'));
});

afterAll(async () => {
  await upstream?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe.each([embeddedBackend, cloudBackend(standins)])('uploads on $name', (factory) => {
  let opened: OpenedBackend;
  beforeAll(async () => {
    opened = await factory.open();
  });
  afterAll(async () => opened?.cleanup());

  async function engine(resign: boolean, keyFile: string, modeChange: SyncSettings['modeChange'] = 'refuse'): Promise<SyncEngine> {
    const settings: SyncSettings = {
      ...defaultEngineSettings,
      modeChange,
      keyring: await loadKeyring('upstream keyring', upstreamKey.publicKeyring),
      selection: { filters: [parseFilter('arch=amd64')], max: 1 },
      pruneGraceMs: 0,
      resign,
    };
    const { objects, catalog } = opened.backend;
    return new SyncEngine(
      { upstream: new HttpUpstream(upstream.baseUrl), objects, catalog, sleep: async () => {}, signingKeys: new SigningKeyFile(keyFile) },
      settings,
    );
  }

  it('refuses bytes whose sha256 is not the promised one, naming the file, and stores nothing', async () => {
    const { backend } = opened;
    const tgz = rootTgz(10_000);
    const manifest = new TextEncoder().encode('bash\t5.1\n');
    const sources = new Map([
      ['manifest', sourceOf(manifest, sha256(manifest))],
      ['root-tgz', sourceOf(tgz, 'f'.repeat(64))],
    ]);
    const error = await storeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => NOW }, upload, sources).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).message).toMatch(/^image\.tgz: sha256 is [0-9a-f]{64}, the metadata declares f{64}/);
    // The manifest stored before the failure is gone too; nothing is recorded.
    expect(await keysUnder(backend, keys.item('custom/'))).toEqual([]);
    expect(await keysUnder(backend, UPLOADS_PREFIX)).toEqual([]);
    const recorded: string[] = [];
    for await (const object of backend.catalog.listObjects()) if (object.path.startsWith('custom/')) recorded.push(object.path);
    expect(recorded).toEqual([]);
  });

  it('keeps a fresh upload through a prune of a sync that planned before it, and the next sync publishes it', async () => {
    const { backend } = opened;
    const keyFile = join(work, `${factory.name.split(' ')[0]}-keys.json`);
    const first = await engine(true, keyFile);
    expect((await first.run()).state).toBe('succeeded');

    // A sync is under way (planned, with upstream changed as far as it knows) when the image arrives.
    const { catalog } = backend;
    await requestRepublish(catalog, 'test: plan again');
    const running = await engine(true, keyFile);
    const planned = await running.plan('run-before-upload');
    expect(planned.outcome).toBe('planned');

    const tgz = rootTgz(20_000);
    const manifest = new TextEncoder().encode('site-agent\t1.2.3\nbash\t5.1.8\n');
    const record = await storeUpload({ objects: backend.objects, catalog, now: () => NOW }, upload, new Map([
      ['root-tgz', sourceOf(tgz, sha256(tgz))],
      ['manifest', sourceOf(manifest)],
    ]));
    expect(record.version).toBe('20261202');
    expect(record.items.map((item) => [item.item, item.path, item.size, item.sha256])).toEqual([
      ['manifest', 'custom/centos/mycentos9/amd64/generic/20261202/root-tgz.manifest', manifest.byteLength, sha256(manifest)],
      ['root-tgz', 'custom/centos/mycentos9/amd64/generic/20261202/root-tgz', tgz.byteLength, sha256(tgz)],
    ]);
    expect(await keysUnder(backend, UPLOADS_PREFIX)).toEqual([uploadRecordKey(upload.product, '20261202')]);
    expect((await listUploadRecords(backend.objects))[0]).toEqual(record);
    expect((await catalog.getManifest(sha256(manifest)))?.packages?.get('site-agent')).toBe('1.2.3');

    // The running sync finishes: its generation does not list the upload, and its prune must not take it.
    if (planned.outcome !== 'planned') return;
    const { body } = await backend.objects.get(planned.copyKey);
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    for (const task of JSON.parse(Buffer.concat(chunks).toString()) as CopyTask[]) await running.copy('run-before-upload', task);
    await running.publish('run-before-upload');
    const pruned = await running.prune('run-before-upload');
    expect(pruned.deletedPaths.filter((path) => path.startsWith('custom/'))).toEqual([]);
    for (const item of record.items) {
      expect(await backend.objects.head(keys.item(item.path))).toMatchObject({ size: item.size });
      expect(await catalog.getObject(item.path)).toMatchObject({ sha256: item.sha256 });
    }
    const before = await catalog.getCurrent();
    const listedBefore: string[] = [];
    for await (const entry of catalog.listEntries(before!.generation)) listedBefore.push(entry.path);
    expect(listedBefore.some((path) => path.startsWith('custom/'))).toBe(false);

    // Upstream has not changed, yet the next check and sync see the new upload and publish it.
    const next = await engine(true, keyFile);
    expect(await next.check()).toEqual({ changed: true });
    const run = await next.run();
    expect(run.state).toBe('succeeded');
    const listed: string[] = [];
    for await (const entry of catalog.listEntries(run.generation!)) listed.push(entry.path);
    expect(listed.filter((path) => path.startsWith('custom/')).sort()).toEqual(record.items.map((item) => item.path).sort());
    // Published, it is then unchanged until something else changes.
    expect(await (await engine(true, keyFile)).check()).toEqual({ changed: false });
  });

  it.each<[string, Uint8Array, string]>([
    ['text', new TextEncoder().encode('hello'), 'image.tgz: the root-tgz file looks like ASCII text, not a gzip-compressed tar'],
    ['an empty file', new Uint8Array(0), 'image.tgz: the root-tgz file is empty'],
    ['gzip without a tar inside', gzipSync(new TextEncoder().encode('hello')), 'image.tgz: the root-tgz file looks like gzip-compressed data, not a gzip-compressed tar'],
  ])('R-upload-format: refuses a root-tgz that is %s, from a local source and from incoming/ (ranged read), storing nothing', async (_case, bytes, message) => {
    // Prepare
    const { backend } = opened;
    const manifest = new TextEncoder().encode('bash\t5.1\n');
    await backend.objects.put('incoming/format/image.tgz', bytes);
    await backend.objects.put('incoming/format/image.manifest', manifest);
    const before = await keysUnder(backend, '');
    const route = createUploadRoute({ objects: backend.objects, catalog: backend.catalog, resign: true, now: () => NOW });
    const body = {
      os: 'centos', release: 'format9', arch: 'amd64', subarch: 'generic', title: 'Format 9',
      files: [
        { ftype: 'root-tgz', key: 'incoming/format/image.tgz', sha256: sha256(bytes), size: bytes.byteLength },
        { ftype: 'manifest', key: 'incoming/format/image.manifest', sha256: sha256(manifest), size: manifest.byteLength },
      ],
    };

    // Act
    const local = await storeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => NOW }, upload, new Map([
      ['root-tgz', sourceOf(bytes)],
      ['manifest', sourceOf(manifest)],
    ])).catch((e: unknown) => e);
    const response = await route(new Request(`https://api.example${UPLOADS_ROUTE}`, { method: 'POST', body: JSON.stringify(body) }));

    // Assess
    expect(local).toBeInstanceOf(FileFormatError);
    expect((local as Error).message).toBe(message);
    expect(response.status).toBe(422);
    expect(((await response.json()) as { error: { message: string } }).error.message).toBe(`incoming/format/${message}`);
    expect(await keysUnder(backend, '')).toEqual(before);
    await backend.objects.delete('incoming/format/image.tgz');
    await backend.objects.delete('incoming/format/image.manifest');
  });

  it('R-upload-internal-500: answers a store\'s own configuration error with 500 and a request id, and the request\'s own mistakes with 400', async () => {
    // Prepare: a store that fails as a misconfigured deployment does.
    const { backend } = opened;
    class MisconfiguredStore extends WrappedObjectStore {
      override async head(): Promise<never> {
        throw new ConfigError('no AWS credentials found for s3://skystreams-prod-bucket/incoming/');
      }
    }
    const logged: unknown[] = [];
    const route = createUploadRoute({ objects: new MisconfiguredStore(backend.objects), catalog: backend.catalog, resign: true, now: () => NOW, log: (failure) => logged.push(failure) });
    const post = (body: unknown) => route(new Request(`https://api.example${UPLOADS_ROUTE}`, { method: 'POST', body: JSON.stringify(body) }));
    const valid = {
      os: 'centos', release: 'internal9', arch: 'amd64', subarch: 'generic', title: 'Internal 9',
      files: [
        { ftype: 'root-tgz', key: 'incoming/internal/image.tgz', sha256: 'a'.repeat(64), size: 10 },
        { ftype: 'manifest', key: 'incoming/internal/image.manifest', sha256: 'b'.repeat(64), size: 10 },
      ],
    };

    // Act
    const internal = await post(valid);
    const internalBody = await internal.text();
    const invalid = await post({ ...valid, colour: 'blue' });

    // Assess
    expect(internal.status).toBe(500);
    expect(internalBody).not.toMatch(/credentials|s3:\/\/|skystreams-prod-bucket/);
    expect(JSON.parse(internalBody)).toMatchObject({ error: { code: 'internal_error', requestId: expect.any(String) } });
    expect(logged).toHaveLength(1);
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { error: { message: string } }).error.message).toMatch(/unknown field "colour"/);
  });

  it('refuses an image named like a mirrored one (MAAS would see two), storing nothing', async () => {
    const { backend } = opened;
    const clash = validateUpload({ ...request, os: 'ubuntu', release: 'noble', subarch: 'ga-24.04' }, 'test');
    const tgz = rootTgz(1_000);
    const manifest = new TextEncoder().encode('bash\t5.1\n');
    const before = await keysUnder(backend, '');
    const error = await storeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => NOW }, clash, new Map([
      ['root-tgz', sourceOf(tgz)],
      ['manifest', sourceOf(manifest)],
    ])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as Error).message).toMatch(/^ubuntu\/noble amd64\/ga-24\.04 is already published from upstream as com\.ubuntu\.maas\.stable:v3:boot:24\.04:amd64:ga-24\.04 \(channel stable\)/);
    expect(await keysUnder(backend, '')).toEqual(before);
  });

  it('takes the next version when bytes are already under the one it chose (a crashed or concurrent upload)', async () => {
    const { backend } = opened;
    // The first upload of the day is 20261202; bytes a crashed upload left sit where 20261202.01 would go.
    const [manifestFile] = upload.files;
    const strayKey = keys.item(`custom/centos/mycentos9/amd64/generic/20261202.01/${manifestFile!.fileName}`);
    await backend.objects.put(strayKey, new TextEncoder().encode('left by a crashed upload'));
    const tgz = rootTgz(3_000);
    const manifest = new TextEncoder().encode('bash\t5.2\n');
    const record = await storeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => NOW }, upload, new Map([
      ['root-tgz', sourceOf(tgz)],
      ['manifest', sourceOf(manifest)],
    ]));
    expect(record.version).toBe('20261202.02');
    // The stray bytes are not this upload's: left as they were, listed by no record.
    expect(await backend.objects.head(strayKey)).toBeDefined();
    expect((await listUploadRecords(backend.objects)).map((stored) => stored.version).sort()).toEqual(['20261202', '20261202.02']);
  });

  it('takes a removed upload out of the next generation, even with upstream unchanged; prune then deletes its files; removing it again is refused', async () => {
    // Prepare: an upload of its own, published.
    const { objects, catalog } = opened.backend;
    const keyFile = join(work, `${factory.name.split(' ')[0]}-keys.json`);
    const listedBy = async (generation: number) => {
      const paths: string[] = [];
      for await (const entry of catalog.listEntries(generation)) paths.push(entry.path);
      return paths;
    };
    const removable = validateUpload({ ...request, release: 'removeme9' }, 'test');
    const manifest = new TextEncoder().encode('bash\t5.3\n');
    const record = await storeUpload({ objects, catalog, now: () => NOW }, removable, new Map([
      ['root-tgz', sourceOf(rootTgz(5_000))],
      ['manifest', sourceOf(manifest)],
    ]));
    const published = await (await engine(true, keyFile)).run();
    expect(await listedBy(published.generation!)).toEqual(expect.arrayContaining(record.items.map((item) => item.path)));

    // Act
    const removed = await removeUpload({ objects, catalog, now: () => NOW }, record.product, record.version);
    const changed = await (await engine(true, keyFile)).check();
    const after = await (await engine(true, keyFile)).run();
    const again = await removeUpload({ objects, catalog, now: () => NOW }, record.product, record.version).catch((error: unknown) => error);

    // Assess
    expect(removed).toEqual(record);
    expect(changed).toEqual({ changed: true });
    expect(after.state).toBe('succeeded');
    const listed = await listedBy(after.generation!);
    expect(listed.filter((path) => path.includes('/removeme9/'))).toEqual([]);
    expect(listed.some((path) => path.includes('/mycentos9/'))).toBe(true);
    for (const item of record.items) {
      expect(await objects.head(keys.item(item.path))).toBeUndefined();
      expect(await catalog.getObject(item.path)).toBeUndefined();
    }
    expect(again).toBeInstanceOf(ConfigError);
    expect((again as Error).message).toContain(`no uploaded image ${record.product} version ${record.version} is stored`);
    expect(await (await engine(true, keyFile)).check()).toEqual({ changed: false });
  });

  it('publishes no upload in verbatim mode, and still keeps the uploaded files', async () => {
    const { backend } = opened;
    // A deliberate switch of mode, as an operator's --switch-mode verbatim.
    const verbatim = await engine(false, join(work, 'unused-keys.json'), 'allow');
    const run = await verbatim.run();
    expect(run.state).toBe('succeeded');
    const listed: string[] = [];
    for await (const entry of backend.catalog.listEntries(run.generation!)) listed.push(entry.path);
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.some((path) => path.startsWith('custom/'))).toBe(false);
    const records = await listUploadRecords(backend.objects);
    expect(records).toHaveLength(2);
    for (const item of records.flatMap((record) => record.items)) expect(await backend.objects.head(keys.item(item.path))).toBeDefined();
  });
});
