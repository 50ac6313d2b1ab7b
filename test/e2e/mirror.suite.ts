import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auditPublication } from '../../functions/core/audit.ts';
import { IntegrityError, RollbackError, SignatureError, UnsafePathError } from '../../functions/core/errors.ts';
import { keys, type ObjectStore } from '../../functions/core/ports.ts';
import { SYNC_LOCK, requestRepublish } from '../../functions/core/engine.ts';
import { DeleteRefusedError, FailingDeletesObjectStore } from '../support/fault-store.ts';
import type { ProductsDocument } from '../../functions/core/simplestreams.ts';
import { generateSigningKey, productsIn, synthesizeTree, writeMetadata, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree } from '../support/upstream-server.ts';
import type { RunningServer } from '../../functions/local/server.ts';
import { type BackendFactory, type OpenedBackend } from '../support/backends.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { GPGV } from '../support/resigned-mirror.ts';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { validate } from '../support/json-schema.ts';
import { OPENAPI_DOCUMENT } from '../../functions/http/openapi.ts';
import {
  fetchBytes,
  replaceFiles,
  selectedPaths,
  serveMirror,
  syncMirror,
  withNewVersion,
} from '../support/mirror.ts';

const FIRST = 'Thu, 24 Jul 2025 08:01:49 +0000';
const SECOND = 'Fri, 25 Jul 2025 08:01:49 +0000';
const EARLIER = 'Wed, 23 Jul 2025 08:01:49 +0000';
const NEW_VERSION = '20991231';

export function mirrorSuite(factory: BackendFactory): void {
  describe(`End-to-end mirror on ${factory.name}`, () => {
    let key: SigningKey;
    let products: ProductsDocument[];
    let firstTree: Map<string, Uint8Array>;
    let live: Map<string, Uint8Array>;
    let upstream: Awaited<ReturnType<typeof serveTree>>;
    let opened: OpenedBackend;
    let server: RunningServer;

    beforeAll(async () => {
      key = await generateSigningKey('e2e upstream');
      products = loadFixtureProducts();
      firstTree = await synthesizeTree(products, { key, updated: FIRST });
      live = new Map(firstTree);
      upstream = await serveTree(live);
    });
    afterAll(async () => {
      await upstream.close();
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

    const sync = (options: { filters?: string[]; max?: number; keyring?: SigningKey | null; pruneGraceMs?: number; objects?: ObjectStore } = {}) =>
      syncMirror(opened.backend, upstream.baseUrl, {
        filters: options.filters ?? ['arch=amd64'],
        max: options.max ?? 1,
        keyring: options.keyring === null ? undefined : (options.keyring ?? key),
        pruneGraceMs: options.pruneGraceMs,
        ...(options.objects && { objects: options.objects }),
      });

    it('refuses an unsigned source unless verification is explicitly off', async () => {
      replaceFiles(live, await synthesizeTree(products, { updated: FIRST }));

      const unsigned = await sync().catch((error: unknown) => error);
      expect(unsigned).toBeInstanceOf(SignatureError);
      expect((unsigned as Error).message).toMatch(/index\.sjson: not found.*--no-verify/);
      expect(await opened.backend.catalog.getCurrent()).toBeUndefined();

      const run = await sync({ keyring: null });
      expect(run.state).toBe('succeeded');
      const served = await fetchBytes(`${server.url}streams/v1/index.json`);
      expect(served.bytes.equals(Buffer.from(live.get('streams/v1/index.json')!))).toBe(true);
      expect((await fetchBytes(`${server.url}streams/v1/index.sjson`)).status).toBe(404);
    });

    it('mirrors the selected items and serves every file byte-identical to upstream', async () => {
      // Act
      const run = await sync();

      // Assess
      expect(run.state).toBe('succeeded');
      const metadata = [...firstTree.keys()].filter((path) => path.startsWith('streams/'));
      expect(metadata).toContain('streams/v1/index.sjson');
      for (const path of metadata) {
        const served = await fetchBytes(server.url + path);
        expect(served.status, path).toBe(200);
        expect(served.bytes.equals(Buffer.from(firstTree.get(path)!)), path).toBe(true);
      }
      const wanted = selectedPaths(products, 'amd64', 1);
      expect(wanted.length).toBeGreaterThan(5);
      for (const path of wanted) {
        const served = await fetchBytes(server.url + path);
        expect(served.status, path).toBe(200);
        expect(served.bytes.equals(Buffer.from(firstTree.get(path)!)), path).toBe(true);
      }
      const notSelected = selectedPaths(products, 'arm64', 1)[0]!;
      expect((await fetchBytes(server.url + notSelected)).status).toBe(404);
    });

    it('R-metadata-at-rest: a byte flipped in a stored products file is named by the audit; after the republish verify requests, the next sync publishes it sound and gpgv accepts it', async () => {
      // Prepare: a mirror, then one byte of its signed products file flipped where it is stored.
      const first = await sync();
      const published = (await opened.backend.catalog.getCurrent())!;
      const productsFile = published.files.find((file) => file.endsWith('.sjson') && !file.endsWith('index.sjson'))!;
      const stored = keys.metadata(published, productsFile);
      const bytes = Buffer.from(firstTree.get(productsFile)!);
      bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
      await opened.backend.objects.put(stored, bytes);

      // Act
      const found = await auditPublication(opened.backend.objects, opened.backend.catalog);
      await requestRepublish(opened.backend.catalog, `metadata damaged at rest: ${productsFile}`);
      const repaired = await sync();
      const healed = await auditPublication(opened.backend.objects, opened.backend.catalog);

      // Assess
      expect(first.state).toBe('succeeded');
      expect(found.problems).toEqual([{ path: productsFile, problem: expect.stringContaining('damaged at rest'), kind: 'metadata' }]);
      expect(repaired).toMatchObject({ state: 'succeeded', generation: published.generation + 1 });
      expect(healed.problems).toEqual([]);
      // Items only the damaged file declared are checked once it is sound again.
      expect(healed.checkedFiles).toBeGreaterThan(found.checkedFiles);
      const signed = [...firstTree.keys()].filter((path) => path.endsWith('.sjson'));
      const work = await mkdtemp(join(tmpdir(), 'skystreams-at-rest-'));
      try {
        await writeFile(join(work, 'keyring.gpg'), key.publicKeyring);
        for (const path of signed) {
          const served = await fetchBytes(server.url + path);
          expect(served.bytes.equals(Buffer.from(firstTree.get(path)!)), path).toBe(true);
          if (!GPGV) continue;
          const file = join(work, path.replaceAll('/', '_'));
          await writeFile(file, served.bytes);
          await expect(promisify(execFile)(GPGV, ['--keyring', join(work, 'keyring.gpg'), file])).resolves.toBeDefined();
        }
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });

    it('answers Range with 206, HEAD with the length, escaped colons, 405 for writes', async () => {
      await sync();
      const path = selectedPaths(products, 'amd64', 1)[0]!;
      const original = Buffer.from(firstTree.get(path)!);

      const ranged = await fetchBytes(server.url + path, { headers: { range: 'bytes=10-19' } });
      expect(ranged.status).toBe(206);
      expect(ranged.headers.get('content-range')).toBe(`bytes 10-19/${original.length}`);
      expect(ranged.bytes.equals(original.subarray(10, 20))).toBe(true);

      const head = await fetch(server.url + path, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(original.length));

      const productFile = [...firstTree.keys()].find((p) => p.endsWith('v3:download.sjson'))!;
      const escaped = await fetchBytes(server.url + productFile.replaceAll(':', '%3A'));
      expect(escaped.status).toBe(200);
      expect(escaped.bytes.equals(Buffer.from(firstTree.get(productFile)!))).toBe(true);

      expect((await fetch(server.url + path, { method: 'POST' })).status).toBe(405);
      expect((await fetch(`${server.url}streams/v1/nope.sjson`)).status).toBe(404);
    });

    it('reports status and the mirrored catalog over the API', async () => {
      await sync();
      const status = (await (await fetch(`${server.url}api/v1/status`)).json()) as {
        publication: { generation: number; upstreamUpdated: string };
        runs: { state: string; itemsCopied: number }[];
      };
      expect(status.publication.upstreamUpdated).toBe(FIRST);
      expect(status.runs[0]).toMatchObject({ state: 'succeeded', itemsCopied: selectedPaths(products, 'amd64', 1).length });

      const images = (await (await fetch(`${server.url}api/v1/images`)).json()) as {
        images: { product: string; arch: string; os: string; versions: { version: string }[] }[];
      };
      const noble = images.images.find((i) => i.product === 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04');
      expect(noble).toMatchObject({ arch: 'amd64', os: 'ubuntu' });
      expect(noble!.versions).toHaveLength(1);
      expect(images.images.every((i) => i.arch === 'amd64')).toBe(true);
    });

    it('answers the JSON API as the OpenAPI document says and shows the catalog on the status page', async () => {
      await sync();
      const document = OPENAPI_DOCUMENT as unknown as Record<string, unknown>;
      const status = await (await fetch(`${server.url}api/v1/status`)).json();
      const images = (await (await fetch(`${server.url}api/v1/images`)).json()) as { images: unknown[] };
      expect(validate(status, { $ref: '#/components/schemas/StatusReport' }, document)).toEqual([]);
      expect(validate(images, { $ref: '#/components/schemas/CatalogReport' }, document)).toEqual([]);

      const page = await fetch(server.url);
      const html = await page.text();
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
      const catalogRows = /<table id="catalog-table">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/.exec(html)![1]!.match(/<tr>/g);
      expect(catalogRows).toHaveLength(images.images.length);
      expect(html).toContain(`<dt>Upstream updated</dt><dd>${FIRST}</dd>`);
      expect(/<table id="runs-table">[\s\S]*?<tbody>\s*<tr>.*?<span class="state state-succeeded">/.test(html)).toBe(true);
    });

    it('re-syncs an unchanged upstream with one conditional request and no item bytes', async () => {
      await sync();
      const before = upstream.requests.length;

      const run = await sync();

      const made = upstream.requests.slice(before);
      expect(run.state).toBe('unchanged');
      expect(made.map((r) => [r.path, r.status])).toEqual([['streams/v1/index.sjson', 304]]);
    });

    it('keeps serving the replaced version through the default grace period', async () => {
      await sync();
      const next = withNewVersion(products, NEW_VERSION);
      replaceFiles(live, await synthesizeTree(next, { key, updated: SECOND }));
      const oldPaths = selectedPaths(products, 'amd64', 1);
      const newPaths = selectedPaths(next, 'amd64', 1);

      const run = await sync();

      expect(run.state).toBe('succeeded');
      for (const path of [...oldPaths, ...newPaths]) {
        expect((await fetchBytes(server.url + path)).status, path).toBe(200);
      }
      expect((await opened.backend.catalog.listPublications()).length).toBe(2);
    });

    it('picks up a new upstream version and, with no grace, prunes the one beyond --max', async () => {
      await sync({ pruneGraceMs: 0 });
      const next = withNewVersion(products, NEW_VERSION);
      replaceFiles(live, await synthesizeTree(next, { key, updated: SECOND }));
      const oldPaths = selectedPaths(products, 'amd64', 1);
      const newPaths = selectedPaths(next, 'amd64', 1);

      const run = await sync({ pruneGraceMs: 0 });

      expect(run.state).toBe('succeeded');
      for (const path of newPaths) {
        const served = await fetchBytes(server.url + path);
        expect(served.status, path).toBe(200);
        expect(served.bytes.equals(Buffer.from(live.get(path)!)), path).toBe(true);
      }
      for (const path of oldPaths.filter((p) => !newPaths.includes(p))) {
        expect((await fetchBytes(server.url + path)).status, path).toBe(404);
        expect(await opened.backend.objects.head(keys.item(path)), path).toBeUndefined();
      }
      const served = await fetchBytes(`${server.url}streams/v1/index.sjson`);
      expect(served.bytes.equals(Buffer.from(live.get('streams/v1/index.sjson')!))).toBe(true);
      const audit = await auditPublication(opened.backend.objects, opened.backend.catalog);
      expect(audit.problems).toEqual([]);
    });

    it('R-interrupted-prune: a prune stopped between deletes is finished by the next run, though upstream is unchanged', async () => {
      // Prepare: the old version goes at once (no grace), but the store stops after one item delete.
      await sync({ pruneGraceMs: 0 });
      const next = withNewVersion(products, NEW_VERSION);
      replaceFiles(live, await synthesizeTree(next, { key, updated: SECOND }));
      const newPaths = selectedPaths(next, 'amd64', 1);
      const oldPaths = selectedPaths(products, 'amd64', 1).filter((p) => !newPaths.includes(p));
      expect(oldPaths.length).toBeGreaterThan(2);
      const stopping = new FailingDeletesObjectStore(opened.backend.objects, 1);
      const stopped = await sync({ pruneGraceMs: 0, objects: stopping }).catch((error: unknown) => error);
      expect(stopped).toBeInstanceOf(DeleteRefusedError);
      expect(stopping.refused).toHaveLength(1);
      const left = oldPaths.filter((path) => !stopping.deleted.includes(keys.item(path)));
      expect(left.length).toBeGreaterThan(1);
      // The refused path was forgotten before its delete: bytes no catalog record vouches for.
      const forgotten = stopping.refused[0]!.slice(keys.item('').length);
      expect(await opened.backend.catalog.getObject(forgotten)).toBeUndefined();
      expect(await opened.backend.objects.head(stopping.refused[0]!)).toBeDefined();

      // Act: a fresh engine, upstream unchanged
      const run = await sync({ pruneGraceMs: 0 });

      // Assess
      expect(run.state).toBe('unchanged');
      for (const path of left) {
        expect(await opened.backend.objects.head(keys.item(path)), path).toBeUndefined();
        expect(await opened.backend.catalog.getObject(path), path).toBeUndefined();
        expect((await fetchBytes(server.url + path)).status, path).toBe(404);
      }
      const stored: string[] = [];
      for await (const object of opened.backend.catalog.listObjects()) stored.push(object.path);
      expect(stored.sort()).toEqual([...new Set(newPaths)].sort());
      for (const path of newPaths) expect((await fetchBytes(server.url + path)).status, path).toBe(200);
      const runFiles: string[] = [];
      for await (const object of opened.backend.objects.list('runs/')) runFiles.push(object.key);
      expect(runFiles).toEqual([]);
      expect((await auditPublication(opened.backend.objects, opened.backend.catalog)).problems).toEqual([]);
      expect(await opened.backend.catalog.getLock(SYNC_LOCK)).toBeUndefined();
    });

    describe('refuses a bad upstream and keeps serving the previous publication', () => {
      const newItemPath = () => selectedPaths(withNewVersion(products, NEW_VERSION), 'amd64', 1).find((p) => p.includes(NEW_VERSION))!;
      const newerTree = (signer = key, updated = SECOND) =>
        synthesizeTree(withNewVersion(products, NEW_VERSION), { key: signer, updated });

      const badUpstreams: [string, () => Promise<Map<string, Uint8Array>>, RegExp, new (...args: never[]) => Error][] = [
        [
          'a tampered signed index',
          async () => {
            const tree = await newerTree();
            const text = Buffer.from(tree.get('streams/v1/index.sjson')!).toString('utf8');
            tree.set('streams/v1/index.sjson', Buffer.from(text.replace(SECOND, 'Sat, 26 Jul 2025 08:01:49 +0000')));
            return tree;
          },
          /index\.sjson.*signature|signature.*index\.sjson/i,
          SignatureError,
        ],
        [
          'an unsigned index',
          async () => {
            const tree = await newerTree();
            tree.set('streams/v1/index.sjson', tree.get('streams/v1/index.json')!);
            return tree;
          },
          /index\.sjson: not an OpenPGP clearsigned message/,
          SignatureError,
        ],
        ['a signature by an unknown key', async () => newerTree(await generateSigningKey('intruder')), /index\.sjson/, SignatureError],
        [
          'a wrong sha256',
          async () => {
            const tree = await newerTree();
            const path = newItemPath();
            const bytes = tree.get(path)!;
            tree.set(path, Buffer.concat([Buffer.from([bytes[0]! ^ 0xff]), Buffer.from(bytes.subarray(1))]));
            return tree;
          },
          /sha256|digest/i,
          IntegrityError,
        ],
        [
          'a short file',
          async () => {
            const tree = await newerTree();
            const path = newItemPath();
            tree.set(path, tree.get(path)!.subarray(0, 100));
            return tree;
          },
          /size|short|bytes/i,
          IntegrityError,
        ],
        [
          'a ../ path',
          async () => {
            const tree = await newerTree();
            const docs = productsIn(tree);
            const item = Object.values(Object.values(docs[0]!.products)[0]!.versions[NEW_VERSION]!.items)[0]!;
            item.path = `../${item.path}`;
            await writeMetadata(tree, docs, { key, updated: SECOND });
            return tree;
          },
          /\.\.|unsafe/i,
          UnsafePathError,
        ],
        ['a rollback to an older index', async () => synthesizeTree(products, { key, updated: EARLIER }), /roll/i, RollbackError],
      ];

      it.each(badUpstreams)('%s', async (_name, build, message, errorClass) => {
        // Prepare
        await sync();
        const publishedIndex = (await fetchBytes(`${server.url}streams/v1/index.sjson`)).bytes;
        const current = await opened.backend.catalog.getCurrent();
        replaceFiles(live, await build());

        // Act
        const failure = await sync().then(
          () => undefined,
          (error: Error) => error,
        );

        // Assess
        expect(failure, 'sync must fail').toBeInstanceOf(errorClass);
        expect(failure!.message).toMatch(message);
        expect((await opened.backend.catalog.getCurrent())?.generation).toBe(current?.generation);
        const servedIndex = (await fetchBytes(`${server.url}streams/v1/index.sjson`)).bytes;
        expect(servedIndex.equals(publishedIndex)).toBe(true);
        const [lastRun] = await opened.backend.catalog.listRuns(1);
        expect(lastRun).toMatchObject({ state: 'failed', error: failure!.message });
        const audit = await auditPublication(opened.backend.objects, opened.backend.catalog);
        expect(audit.problems).toEqual([]);
      });
    });
  });
}

