/**
 * The package index end to end on one backend: the demo upstream synced by
 * the real engine, then asked through the HTTP app (as API Gateway and
 * node:http call it) and the `skystreams` CLI.
 */
import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { SyncEvent } from '../../functions/core/engine.ts';
import { packagesNamed, type ImageDiff, type PackageReport } from '../../functions/core/packages.ts';
import { IntegrityError, UnavailableError } from '../../functions/core/errors.ts';
import { keys, type ByteRange, type ByteStream, type Catalog, type ObjectBody, type ObjectInfo, type ObjectStore, type PutOptions } from '../../functions/core/ports.ts';
import { createApp, type App } from '../../functions/http/app.ts';
import { demoItemContent, demoProducts } from '../support/demo-mirror.ts';
import { formatUpdated, type FlatItem } from '../../functions/core/simplestreams.ts';
import type { BackendFactory, OpenedBackend } from '../support/backends.ts';
import { cli } from '../support/cli.ts';
import { replaceFiles, syncMirror, withNewVersion } from '../support/mirror.ts';
import { generateSigningKey, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { WrappedObjectStore } from '../support/wrapped-store.ts';

const GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const HWE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04';
const OLDER = '20250618';
const NEWER = '20250709';
const manifestOf = (serial: string) => `noble/amd64/${serial}/squashfs.manifest`;
const image = (product: string, subarch: string, version: string) => ({
  product,
  version,
  os: 'ubuntu',
  release: 'noble',
  arch: 'amd64',
  subarch,
  label: 'stable',
});

/** What the demo's two root images differ by (functions/demo/demo-data.ts), as diff must report it. */
const DEMO_DIFF = {
  added: [
    { package: 'needrestart', version: '3.6-7ubuntu4.1' },
    { package: 'ubuntu-pro-client', version: '32.3.1~24.04' },
  ],
  removed: [{ package: 'python3-six', version: '1.16.0-4' }],
  changed: [
    { package: 'curl', from: '8.5.0-2ubuntu10.1', to: '8.5.0-2ubuntu10.6' },
    { package: 'libc6:amd64', from: '2.39-0ubuntu8.3', to: '2.39-0ubuntu8.4' },
    { package: 'libssl3t64:amd64', from: '3.0.13-0ubuntu3.4', to: '3.0.13-0ubuntu3.5' },
    { package: 'openssh-server', from: '1:9.6p1-3ubuntu13.5', to: '1:9.6p1-3ubuntu13.11' },
    { package: 'openssl', from: '3.0.13-0ubuntu3.4', to: '3.0.13-0ubuntu3.5' },
    { package: 'systemd', from: '255.4-1ubuntu8.1', to: '255.4-1ubuntu8.6' },
  ],
  unchanged: 9,
};

export function packagesSuite(factory: BackendFactory): void {
  describe(`Package index end to end on ${factory.name}`, () => {
    let key: SigningKey;
    let demoTree: Map<string, Uint8Array>;
    let live: Map<string, Uint8Array>;
    let upstream: ServedTree;
    let opened: OpenedBackend;
    let app: App;

    beforeAll(async () => {
      key = await generateSigningKey('package index upstream');
      demoTree = await synthesizeTree(demoProducts(), { key, itemContent: demoItemContent });
      live = new Map(demoTree);
      upstream = await serveTree(live);
    });
    afterAll(async () => {
      await upstream.close();
    });
    beforeEach(async () => {
      replaceFiles(live, demoTree);
      opened = await factory.open();
      app = createApp(opened.backend);
    });
    afterEach(async () => {
      await opened.cleanup();
    });

    const sync = (events: SyncEvent[] = [], catalog: Catalog = opened.backend.catalog, objects: ObjectStore = opened.backend.objects) =>
      syncMirror({ ...opened.backend, catalog, objects }, upstream.baseUrl, { filters: ['arch=amd64'], max: 2, keyring: key, events });
    /** The demo upstream with a newer version whose manifest lists one more package, so its record is its own. */
    const publishNewerVersion = async (version: string) => {
      const newer = (item: FlatItem) =>
        item.ftype === 'manifest' && item.versionName === version
          ? Buffer.concat([demoItemContent(item)!, Buffer.from('zsh\t5.9-6ubuntu2\n')])
          : demoItemContent(item);
      // Dated a minute on: a changed upstream must carry a newer date than the one just mirrored.
      const updated = formatUpdated(new Date(Date.now() + 60_000));
      replaceFiles(live, await synthesizeTree(withNewVersion(demoProducts(), version), { key, itemContent: newer, updated }));
    };
    const get = async (path: string) => {
      const response = await app(new Request(`http://mirror.test${path}`));
      return { status: response.status, body: (await response.json()) as any };
    };
    const unindexed = (events: SyncEvent[]) => events.filter((event) => event.type === 'manifest-unindexed');

    it('indexes the demo manifests while syncing and answers which images ship a package, over HTTP', async () => {
      // Act
      const events: SyncEvent[] = [];
      const run = await sync(events);
      const openssl = await get('/api/v1/packages/openssl');
      const libc6 = await get('/api/v1/packages/libc6');
      const unknown = await get('/api/v1/packages/no-such-package');
      const badName = await get('/api/v1/packages/two%20words');

      // Assess
      expect(run.state).toBe('succeeded');
      expect(unindexed(events)).toEqual([]);
      expect(openssl.status).toBe(200);
      expect(openssl.body).toEqual({
        package: 'openssl',
        generation: run.generation!,
        images: [
          { ...image(GA, 'ga-24.04', NEWER), package: 'openssl', packageVersion: '3.0.13-0ubuntu3.5', manifest: manifestOf(NEWER) },
          { ...image(GA, 'ga-24.04', OLDER), package: 'openssl', packageVersion: '3.0.13-0ubuntu3.4', manifest: manifestOf(OLDER) },
          { ...image(HWE, 'hwe-24.04', NEWER), package: 'openssl', packageVersion: '3.0.13-0ubuntu3.5', manifest: manifestOf(NEWER) },
          { ...image(HWE, 'hwe-24.04', OLDER), package: 'openssl', packageVersion: '3.0.13-0ubuntu3.4', manifest: manifestOf(OLDER) },
        ],
        unread: [],
      } satisfies PackageReport);
      expect((libc6.body as PackageReport).images.map((hit) => [hit.version, hit.package, hit.packageVersion])).toEqual([
        [NEWER, 'libc6:amd64', '2.39-0ubuntu8.4'],
        [OLDER, 'libc6:amd64', '2.39-0ubuntu8.3'],
        [NEWER, 'libc6:amd64', '2.39-0ubuntu8.4'],
        [OLDER, 'libc6:amd64', '2.39-0ubuntu8.3'],
      ]);
      expect(unknown).toEqual({ status: 200, body: { package: 'no-such-package', generation: run.generation, images: [], unread: [] } });
      expect(badName.status).toBe(400);
      expect(badName.body.error).toMatchObject({ code: 'bad_request', message: expect.stringContaining('"two words" is not a package name') });
    });

    it('answers what changed between two versions of an image, and 404 naming an unknown product or version', async () => {
      // Prepare
      const run = await sync();

      // Act
      const diff = await get(`/api/v1/diff/${GA}/${OLDER}/${NEWER}`);
      const backwards = await get(`/api/v1/diff/${encodeURIComponent(HWE)}/${NEWER}/${OLDER}`);
      const unknownProduct = await get(`/api/v1/diff/com.example:no-such-product/${OLDER}/${NEWER}`);
      const unknownVersion = await get(`/api/v1/diff/${GA}/${OLDER}/20991231`);
      const noManifest = await get(`/api/v1/diff/com.ubuntu.maas.stable:1:pxelinux:pxe:amd64/20230615.0/20230615.0`);
      const malformed = await get(`/api/v1/diff/${GA}/${OLDER}`);

      // Assess
      expect(diff.status).toBe(200);
      expect(diff.body).toEqual({
        product: GA,
        generation: run.generation!,
        from: { version: OLDER, manifest: manifestOf(OLDER) },
        to: { version: NEWER, manifest: manifestOf(NEWER) },
        ...DEMO_DIFF,
      } satisfies ImageDiff);
      expect(backwards.body.added).toEqual(DEMO_DIFF.removed);
      expect(backwards.body.removed).toEqual(DEMO_DIFF.added);
      expect(backwards.body.changed).toEqual(DEMO_DIFF.changed.map(({ package: name, from, to }) => ({ package: name, from: to, to: from })));
      expect(unknownProduct.status).toBe(404);
      expect(unknownProduct.body.error).toMatchObject({ code: 'not_found', message: expect.stringContaining('product com.example:no-such-product is not in the published catalog') });
      expect(unknownVersion.status).toBe(404);
      expect(unknownVersion.body.error.message).toContain(`product ${GA} has no version 20991231`);
      expect(noManifest.status).toBe(404);
      expect(noManifest.body.error.message).toContain('version 20230615.0 lists no package manifest');
      expect(malformed.status).toBe(400);
    });

    it('skystreams packages and diff answer on the synced demo mirror, as text and as JSON', async () => {
      // Prepare
      await sync();
      const backend = opened.cliFlags;

      // Act
      const packages = await cli(['packages', 'openssh-server', ...backend], opened.env);
      const packagesJson = await cli(['packages', 'openssh-server', '--json', ...backend], opened.env);
      const diff = await cli(['diff', GA, OLDER, NEWER, ...backend], opened.env);
      const diffJson = await cli(['diff', GA, OLDER, NEWER, '--json', ...backend], opened.env);
      const missing = await cli(['diff', GA, OLDER, '20991231', ...backend], opened.env);

      // Assess
      expect(packages.code).toBe(0);
      expect(packages.stdout.trim().split('\n')).toEqual([
        `${GA}  ${NEWER}  openssh-server 1:9.6p1-3ubuntu13.11`,
        `${GA}  ${OLDER}  openssh-server 1:9.6p1-3ubuntu13.5`,
        `${HWE}  ${NEWER}  openssh-server 1:9.6p1-3ubuntu13.11`,
        `${HWE}  ${OLDER}  openssh-server 1:9.6p1-3ubuntu13.5`,
      ]);
      expect(JSON.parse(packagesJson.stdout)).toEqual(await packagesNamed(opened.backend.catalog, 'openssh-server'));
      expect(diff.code).toBe(0);
      expect(diff.stdout).toContain(`${GA}: ${OLDER} → ${NEWER}`);
      expect(diff.stdout).toContain('  + needrestart 3.6-7ubuntu4.1');
      expect(diff.stdout).toContain('  - python3-six 1.16.0-4');
      expect(diff.stdout).toContain('  ~ openssl 3.0.13-0ubuntu3.4 → 3.0.13-0ubuntu3.5');
      expect(diff.stdout).toContain('2 added, 1 removed, 6 changed, 9 unchanged');
      expect(JSON.parse(diffJson.stdout)).toMatchObject(DEMO_DIFF);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(`skystreams: product ${GA} has no version 20991231`);
    });

    it('records a manifest that is not package lines as unparsed: the sync succeeds and the answers say why', async () => {
      // Prepare: the older root image's manifest is not a manifest at all.
      const broken = (item: FlatItem) =>
        item.ftype === 'manifest' && item.versionName === OLDER ? new TextEncoder().encode('this is not a manifest\n') : demoItemContent(item);
      replaceFiles(live, await synthesizeTree(demoProducts(), { key, itemContent: broken }));
      const events: SyncEvent[] = [];

      // Act
      const run = await sync(events);
      const openssl = await get('/api/v1/packages/openssl');
      const diff = await get(`/api/v1/diff/${GA}/${OLDER}/${NEWER}`);

      // Assess
      const problem = `${manifestOf(OLDER)}: line 1: expected "package<TAB>version", found 1 tab-separated field(s)`;
      expect(run.state).toBe('succeeded');
      expect(unindexed(events)).toEqual([{ type: 'manifest-unindexed', runId: run.id, path: manifestOf(OLDER), problem }]);
      expect((openssl.body as PackageReport).images.map((hit) => [hit.product, hit.version])).toEqual([
        [GA, NEWER],
        [HWE, NEWER],
      ]);
      expect((openssl.body as PackageReport).unread).toEqual([
        { ...image(GA, 'ga-24.04', OLDER), manifest: manifestOf(OLDER), reason: problem },
        { ...image(HWE, 'hwe-24.04', OLDER), manifest: manifestOf(OLDER), reason: problem },
      ]);
      expect(diff.status).toBe(409);
      expect(diff.body.error).toEqual({ code: 'conflict', message: `${manifestOf(OLDER)} (product ${GA} version ${OLDER}): ${problem}` });
    });

    it('indexes manifests stored before the package index existed, when the next sync plans', async () => {
      // Prepare: a first sync by a program that kept no package index.
      const withoutIndex = new Proxy(opened.backend.catalog, {
        get: (catalog, name) =>
          name === 'putManifest' ? async () => undefined : (catalog[name as keyof Catalog] as Function).bind(catalog),
      });
      await sync([], withoutIndex);
      const before = await packagesNamed(opened.backend.catalog, 'openssl');
      await publishNewerVersion('20250801');

      // Act
      const run = await sync();
      const after = await packagesNamed(opened.backend.catalog, 'openssl');

      // Assess
      expect(before.images).toEqual([]);
      expect(before.unread.map((unread) => unread.reason)).toEqual(Array(4).fill('not indexed yet: the next sync that finds upstream changed reads it'));
      expect(run.state).toBe('succeeded');
      expect(after.unread).toEqual([]);
      expect(after.images.map((hit) => [hit.product, hit.version, hit.packageVersion])).toEqual([
        [GA, '20250801', '3.0.13-0ubuntu3.5'],
        [GA, NEWER, '3.0.13-0ubuntu3.5'],
        [HWE, '20250801', '3.0.13-0ubuntu3.5'],
        [HWE, NEWER, '3.0.13-0ubuntu3.5'],
      ]);
    });

    it('keeps a copy whose manifest cannot be read back for indexing, reports it, and indexes it at the next plan', async () => {
      // Prepare: the store fails every read of a manifest during the first sync.
      const failingManifestReads = new (class extends WrappedObjectStore {
        override get(objectKey: string, options?: { range?: ByteRange }): Promise<ObjectBody> {
          if (objectKey.endsWith('squashfs.manifest')) return Promise.reject(new UnavailableError(`${objectKey}: store unavailable`));
          return super.get(objectKey, options);
        }
      })(opened.backend.objects);
      const events: SyncEvent[] = [];

      // Act
      const first = await sync(events, opened.backend.catalog, failingManifestReads);
      const before = await packagesNamed(opened.backend.catalog, 'bash');
      await publishNewerVersion('20250801');
      const second = await sync();
      const after = await packagesNamed(opened.backend.catalog, 'bash');

      // Assess
      expect(first.state).toBe('succeeded');
      expect(unindexed(events).map((event) => event.type === 'manifest-unindexed' && event.problem).sort()).toEqual(
        [OLDER, NEWER].map((serial) => `${manifestOf(serial)}: not indexed yet: items/${manifestOf(serial)}: store unavailable`),
      );
      expect(before.images).toEqual([]);
      expect(before.unread).toHaveLength(4);
      expect(second.state).toBe('succeeded');
      expect(after.unread).toEqual([]);
      expect(after.images.map((hit) => [hit.product, hit.version])).toEqual([
        [GA, '20250801'],
        [GA, NEWER],
        [HWE, '20250801'],
        [HWE, NEWER],
      ]);
    });

    it('forgets the records of manifests a failed run indexed but never published, and indexes them when a run publishes them', async () => {
      // Prepare: the newer version's manifest is copied and indexed, then another of its files fails.
      await sync();
      await publishNewerVersion('20250801');
      const manifest = createHash('sha256').update(live.get(manifestOf('20250801'))!).digest('hex');
      const failing = [...live.keys()].find((path) => path.includes('/20250801/') && !path.endsWith('manifest'))!;
      const catalog = opened.backend.catalog;
      const failAfterTheManifest = new (class extends WrappedObjectStore {
        override async put(objectKey: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
          if (objectKey !== keys.item(failing)) return super.put(objectKey, body, options);
          for (let waited = 0; !(await catalog.getManifest(manifest)) && waited < 10_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
          throw new IntegrityError(failing, 'refused by the test');
        }
      })(opened.backend.objects);

      // Act
      const failed = sync([], catalog, failAfterTheManifest);

      // Assess
      await expect(failed).rejects.toThrow(IntegrityError);
      expect(await catalog.getManifest(manifest)).toBeUndefined();
      expect(await catalog.getManifest(createHash('sha256').update(live.get(manifestOf(NEWER))!).digest('hex'))).toBeDefined();
      expect((await sync()).state).toBe('succeeded');
      expect((await catalog.getManifest(manifest))?.packages?.get('zsh')).toBe('5.9-6ubuntu2');
    });

    it('forgets the record of a manifest once no retained generation lists it', async () => {
      // Prepare
      const sha256Of = (path: string) => createHash('sha256').update(live.get(path)!).digest('hex');
      await sync();
      const older = sha256Of(manifestOf(OLDER));
      const newer = sha256Of(manifestOf(NEWER));
      const indexedBefore = [await opened.backend.catalog.getManifest(older), await opened.backend.catalog.getManifest(newer)];
      await publishNewerVersion('20250801');

      // Act: the older version leaves the selection (max 2), and its generation is pruned at once.
      const run = await syncMirror(opened.backend, upstream.baseUrl, { filters: ['arch=amd64'], max: 2, keyring: key, pruneGraceMs: 0 });

      // Assess
      expect(run.state).toBe('succeeded');
      expect(indexedBefore.map((manifest) => manifest?.packages?.size)).toEqual([16, 17]);
      expect(await opened.backend.catalog.getManifest(older)).toBeUndefined();
      expect((await opened.backend.catalog.getManifest(newer))?.packages?.get('openssl')).toBe('3.0.13-0ubuntu3.5');
      expect((await packagesNamed(opened.backend.catalog, 'zsh')).images.map((hit) => hit.version)).toEqual(['20250801', '20250801']);
    });
  });
}
