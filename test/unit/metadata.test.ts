import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../functions/adapters/fs/fs-object-store.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { InputTooLargeError, MetadataError, RollbackError } from '../../functions/core/errors.ts';
import {
  SIGNED_INDEX,
  checkIndex,
  defaultMetadataLimits,
  loadPublishedMetadata,
  readUpstreamMetadata,
  type MetadataLimits,
  type PublishedMetadata,
  type UpstreamMetadata,
} from '../../functions/core/metadata.ts';
import { loadKeyring, type Keyring } from '../../functions/core/pgp.ts';
import { keys, type Publication } from '../../functions/core/ports.ts';
import type { ProductsDocument, StreamIndex } from '../../functions/core/simplestreams.ts';
import {
  INDEX_PATH,
  SIGNED_INDEX_PATH,
  clearsign,
  generateSigningKey,
  productsPath,
  signedProductsPath,
  writeMetadata,
  type SigningKey,
} from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';

const EARLIER = 'Wed, 23 Jul 2025 08:01:49 +0000';
const FIRST = 'Thu, 24 Jul 2025 08:01:49 +0000';
const SECOND = 'Fri, 25 Jul 2025 08:01:49 +0000';
const UBUNTU = 'com.ubuntu.maas:stable:v3:download';
const BOOTLOADERS = 'com.ubuntu.maas:stable:1:bootloader-download';
const UBUNTU_FILE = signedProductsPath(UBUNTU);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let key: SigningKey;
let keyring: Keyring;
let products: ProductsDocument[];
/** What the upstream serves right now; tests replace its contents. */
let live: Map<string, Uint8Array>;
let upstream: ServedTree;
let storeDir: string;
let objects: FsObjectStore;

beforeAll(async () => {
  key = await generateSigningKey('metadata test upstream');
  keyring = await loadKeyring('metadata test keyring', key.publicKeyring);
  products = loadFixtureProducts();
  live = new Map();
  upstream = await serveTree(live);
});

afterAll(async () => {
  await upstream.close();
});

beforeEach(async () => {
  storeDir = await mkdtemp(join(tmpdir(), 'skystreams-metadata-'));
  objects = new FsObjectStore(storeDir);
});

afterEach(async () => {
  await rm(storeDir, { recursive: true, force: true });
});

/** Signed metadata (no item bytes) for the fixture products, every `updated` set to `updated`. */
async function metadataTree(updated: string, documents = products): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  await writeMetadata(files, documents, { key, updated });
  return files;
}

/** Rewrites one products file (`.json` and signed `.sjson`) of `tree` as `edit` leaves it. */
async function editProducts(tree: Map<string, Uint8Array>, contentId: string, edit: (doc: ProductsDocument) => void): Promise<void> {
  const doc = JSON.parse(decoder.decode(tree.get(productsPath(contentId)))) as ProductsDocument;
  edit(doc);
  const text = `${JSON.stringify(doc, null, 1)}\n`;
  tree.set(productsPath(contentId), encoder.encode(text));
  tree.set(signedProductsPath(contentId), encoder.encode(await clearsign(text, key)));
}

/** Rewrites the index (`.json` and signed `.sjson`) of `tree` as `edit` leaves it; `edit` sees the `.json` paths. */
async function editIndex(tree: Map<string, Uint8Array>, edit: (index: StreamIndex) => void): Promise<void> {
  const index = JSON.parse(decoder.decode(tree.get(INDEX_PATH))) as StreamIndex;
  edit(index);
  tree.set(INDEX_PATH, encoder.encode(`${JSON.stringify(index, null, 1)}\n`));
  const signed = structuredClone(index);
  for (const entry of Object.values(signed.index)) entry.path = entry.path.replace(/\.json$/, '.sjson');
  tree.set(SIGNED_INDEX_PATH, encoder.encode(await clearsign(`${JSON.stringify(signed, null, 1)}\n`, key)));
}

/** Copies one products file (both forms) from `from` into `into`: a replay. */
function replayProducts(into: Map<string, Uint8Array>, from: Map<string, Uint8Array>, contentId: string): void {
  for (const path of [productsPath(contentId), signedProductsPath(contentId)]) into.set(path, from.get(path)!);
}

/** Stages `tree`'s metadata as generation 1 of the object store, as the engine does, and reads it back. */
async function publish(tree: Map<string, Uint8Array>): Promise<PublishedMetadata> {
  const publication: Publication = {
    generation: 1,
    upstreamUpdated: FIRST,
    publishedAt: new Date().toISOString(),
    runId: 'run-1',
    files: [...tree.keys()].filter((file) => file.startsWith('streams/')).sort(),
    itemCount: 0,
    totalBytes: 0,
  };
  for (const file of publication.files) await objects.put(keys.metadata(publication, file), tree.get(file)!);
  return loadPublishedMetadata(objects, publication);
}

/** Serves `tree` and reads it as the engine does: checkIndex, then readUpstreamMetadata. */
async function readServed(
  tree: Map<string, Uint8Array>,
  published?: PublishedMetadata,
  partialLimits: Partial<MetadataLimits> = {},
): Promise<UpstreamMetadata> {
  live.clear();
  for (const [path, bytes] of tree) live.set(path, bytes);
  const source = new HttpUpstream(upstream.baseUrl);
  const limits = { ...defaultMetadataLimits, ...partialLimits };
  const index = await checkIndex(source, keyring, undefined, limits);
  if (!index.changed) throw new Error('unconditional index GET answered 304');
  return readUpstreamMetadata(source, keyring, index, published, limits);
}

/** Awaits `promise`, expecting it to reject with an error of `type`. */
async function rejection<E extends Error>(type: new (...args: never[]) => E, promise: Promise<unknown>): Promise<E> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(type);
  return error as E;
}

describe('Function: readUpstreamMetadata', () => {
  describe('freshness against the publication and the index', () => {
    it('accepts a legitimate newer upstream', async () => {
      // Prepare
      const published = await publish(await metadataTree(FIRST));

      // Act
      const metadata = await readServed(await metadataTree(SECOND), published);

      // Assess
      expect(metadata.updated).toBe(SECOND);
      expect(metadata.products.map((p) => p.doc.content_id).sort()).toEqual(
        [BOOTLOADERS, 'com.ubuntu.maas:stable:centos-bases-download', UBUNTU].sort(),
      );
      expect([...metadata.files.keys()]).toContain(productsPath(UBUNTU));
    });

    it('accepts a newer index whose products files did not change, re-signed or not', async () => {
      // Prepare: only the index moves on; ubuntu's products file gets a new signature over the same body.
      const first = await metadataTree(FIRST);
      const published = await publish(first);
      const next = new Map(first);
      await editProducts(next, UBUNTU, () => {});
      expect(decoder.decode(next.get(UBUNTU_FILE))).not.toBe(decoder.decode(first.get(UBUNTU_FILE)));
      await editIndex(next, (index) => {
        index.updated = SECOND;
      });

      // Act
      const metadata = await readServed(next, published);

      // Assess
      expect(metadata.updated).toBe(SECOND);
    });

    it('refuses an index older than the published one', async () => {
      // Prepare
      const published = await publish(await metadataTree(FIRST));

      // Act
      const error = await rejection(RollbackError, readServed(await metadataTree(EARLIER), published));

      // Assess
      expect(error.upstreamUpdated).toBe(EARLIER);
      expect(error.publishedUpdated).toBe(FIRST);
    });

    it('refuses an older products file replayed under a newer index', async () => {
      // Prepare: the index moves on and does not vouch for ubuntu's date; ubuntu's file is from before the publication.
      const published = await publish(await metadataTree(FIRST));
      const next = await metadataTree(SECOND);
      replayProducts(next, await metadataTree(EARLIER), UBUNTU);
      await editIndex(next, (index) => {
        delete index.index[UBUNTU]!.updated;
      });

      // Act
      const error = await rejection(RollbackError, readServed(next, published));

      // Assess
      expect(error.file).toBe(UBUNTU_FILE);
      expect(error.contentId).toBe(UBUNTU);
      expect(error.upstreamUpdated).toBe(EARLIER);
      expect(error.publishedUpdated).toBe(FIRST);
      expect(error.message).toContain(`updated ${EARLIER} is older than the published ${FIRST}`);
    });

    it('refuses a products file older than its index entry says, with nothing published yet', async () => {
      // Prepare
      const next = await metadataTree(SECOND);
      replayProducts(next, await metadataTree(FIRST), UBUNTU);

      // Act
      const error = await rejection(RollbackError, readServed(next));

      // Assess
      expect(error.file).toBe(UBUNTU_FILE);
      expect(error.contentId).toBe(UBUNTU);
      expect(error.upstreamUpdated).toBe(FIRST);
      expect(error.publishedUpdated).toBe(SECOND);
      expect(error.message).toContain(`older than ${SIGNED_INDEX}`);
    });

    it('refuses a products file as old as the published one whose content differs', async () => {
      // Prepare: ubuntu's file changes but keeps its date, and the newer index does not claim a newer one.
      const first = await metadataTree(FIRST);
      const published = await publish(first);
      const next = new Map(first);
      await editProducts(next, UBUNTU, (doc) => {
        delete doc.products[Object.keys(doc.products)[0]!];
      });
      await editIndex(next, (index) => {
        index.updated = SECOND;
      });

      // Act
      const error = await rejection(RollbackError, readServed(next, published));

      // Assess
      expect(error.file).toBe(UBUNTU_FILE);
      expect(error.contentId).toBe(UBUNTU);
      expect(error.message).toContain('content differs');
    });

    it('refuses a products file without `updated` once something is published', async () => {
      // Prepare
      const published = await publish(await metadataTree(FIRST));
      const next = await metadataTree(SECOND);
      await editProducts(next, UBUNTU, (doc) => {
        delete doc.updated;
      });

      // Act
      const error = await rejection(MetadataError, readServed(next, published));

      // Assess
      expect(error.file).toBe(UBUNTU_FILE);
      expect(error.jsonPath).toBe('$.updated');
      expect(error.message).toContain('missing');
    });

    it('refuses an index without `updated`, rather than let a date be invented for it', async () => {
      // Prepare
      const published = await publish(await metadataTree(FIRST));
      const next = await metadataTree(SECOND);
      await editIndex(next, (index) => {
        delete index.updated;
      });

      // Act
      const error = await rejection(MetadataError, readServed(next, published));

      // Assess
      expect(error.file).toBe(SIGNED_INDEX);
      expect(error.jsonPath).toBe('$.updated');
      expect(error.message).toContain('missing');
    });
  });

  describe('products files must be the ones the index lists', () => {
    it('refuses a products file whose content_id is not its index key', async () => {
      // Prepare: the bootloaders entry points at ubuntu's (validly signed) file.
      const next = await metadataTree(SECOND);
      await editIndex(next, (index) => {
        index.index[BOOTLOADERS]!.path = productsPath(UBUNTU);
      });

      // Act
      const error = await rejection(MetadataError, readServed(next));

      // Assess
      expect(error.file).toBe(UBUNTU_FILE);
      expect(error.jsonPath).toBe('$.content_id');
      expect(error.message).toContain(BOOTLOADERS);
    });

    it('refuses a products file the index lists in another format', async () => {
      // Prepare
      const next = await metadataTree(SECOND);
      await editIndex(next, (index) => {
        index.index[UBUNTU]!.format = 'products:2.0';
      });

      // Act
      const error = await rejection(MetadataError, readServed(next));

      // Assess
      expect(error.file).toBe(UBUNTU_FILE);
      expect(error.jsonPath).toBe('$.format');
    });
  });

  describe('bounded inputs', () => {
    it('defaults: 1 MiB index, 32 MiB products file, 512 MiB a run, 32 levels of JSON', () => {
      // Assess
      expect(defaultMetadataLimits).toEqual({
        indexBytes: 1024 * 1024,
        productsBytes: 32 * 1024 * 1024,
        runBytes: 512 * 1024 * 1024,
        jsonDepth: 32,
      });
    });

    it('refuses an index over its limit, at checkIndex and at readUpstreamMetadata', async () => {
      // Prepare
      const tree = await metadataTree(SECOND);
      const indexBytes = tree.get(SIGNED_INDEX_PATH)!.byteLength - 1;
      live.clear();
      for (const [path, bytes] of tree) live.set(path, bytes);
      const source = new HttpUpstream(upstream.baseUrl);

      // Act
      const checked = await rejection(InputTooLargeError, checkIndex(source, keyring, undefined, { ...defaultMetadataLimits, indexBytes }));
      const read = await rejection(
        InputTooLargeError,
        readUpstreamMetadata(source, keyring, { bytes: tree.get(SIGNED_INDEX_PATH)!, validators: {} }, undefined, { ...defaultMetadataLimits, indexBytes }),
      );

      // Assess
      for (const error of [checked, read]) {
        expect(error.source).toContain(SIGNED_INDEX);
        expect(error.limit).toBe(indexBytes);
      }
    });

    it('refuses a products file over its limit', async () => {
      // Prepare
      const tree = await metadataTree(SECOND);
      const productsBytes = tree.get(UBUNTU_FILE)!.byteLength - 1;
      expect(Math.max(...[BOOTLOADERS].map((id) => tree.get(signedProductsPath(id))!.byteLength))).toBeLessThan(productsBytes);

      // Act
      const error = await rejection(InputTooLargeError, readServed(tree, undefined, { productsBytes }));

      // Assess
      expect(error.source).toContain(UBUNTU_FILE);
      expect(error.limit).toBe(productsBytes);
    });

    it('refuses JSON nested deeper than the limit before parsing it', async () => {
      // Prepare: a field 40 objects deep in a validly signed products file.
      const tree = await metadataTree(SECOND);
      await editProducts(tree, UBUNTU, (doc) => {
        let deep: Record<string, unknown> = {};
        for (let level = 0; level < 40; level++) deep = { nested: deep };
        doc.deep = deep;
      });

      // Act
      const error = await rejection(InputTooLargeError, readServed(tree));

      // Assess
      expect(error.source).toBe(UBUNTU_FILE);
      expect(error.limit).toBe(32);
    });

    it('counts brackets inside strings as text, not nesting', async () => {
      // Prepare
      const tree = await metadataTree(SECOND);
      await editProducts(tree, UBUNTU, (doc) => {
        doc.note = `${'['.repeat(100)}"\\${'{'.repeat(100)}`;
      });

      // Act
      const metadata = await readServed(tree);

      // Assess
      expect(metadata.products.find((p) => p.doc.content_id === UBUNTU)?.doc.note).toMatch(/^\[{100}/);
    });

    it("refuses once the run's metadata exceeds its total, though each file is within its own limit", async () => {
      // Prepare: room for the index and the first products file (bootloaders, read first) and its twin, not for more.
      const tree = await metadataTree(SECOND);
      const size = (path: string) => tree.get(path)!.byteLength;
      const runBytes = size(SIGNED_INDEX_PATH) + size(signedProductsPath(BOOTLOADERS)) + size(productsPath(BOOTLOADERS)) + 100;

      // Act
      const error = await rejection(InputTooLargeError, readServed(tree, undefined, { runBytes }));

      // Assess
      expect(error.limit).toBe(runBytes);
      expect(error.source).toContain('centos-bases-download');
      expect(error.message).toContain('total');
    });
  });
});

describe('Function: loadPublishedMetadata', () => {
  it("reads the publication's index and products dates back from the object store", async () => {
    // Act
    const published = await publish(await metadataTree(FIRST));

    // Assess
    expect(published.indexUpdated).toBe(FIRST);
    expect([...published.products.keys()].sort()).toEqual(
      [BOOTLOADERS, 'com.ubuntu.maas:stable:centos-bases-download', UBUNTU].sort(),
    );
    expect(published.products.get(UBUNTU)).toMatchObject({ updated: FIRST, source: `meta/1-run-1/${UBUNTU_FILE}` });
  });

  it('refuses a published products file over the products limit without reading it all', async () => {
    // Prepare
    const tree = await metadataTree(FIRST);
    await publish(tree);
    const publication = {
      generation: 1,
      upstreamUpdated: FIRST,
      publishedAt: new Date().toISOString(),
      runId: 'run-1',
      files: [...tree.keys()].sort(),
      itemCount: 0,
      totalBytes: 0,
    };

    // Act
    const error = await rejection(
      InputTooLargeError,
      loadPublishedMetadata(objects, publication, { ...defaultMetadataLimits, productsBytes: tree.get(UBUNTU_FILE)!.byteLength - 1 }),
    );

    // Assess
    expect(error.source).toBe(`meta/1-run-1/${UBUNTU_FILE}`);
  });

  it('refuses a publication that lists no index, rather than skip the checks', async () => {
    // Prepare
    const publication = {
      generation: 7,
      upstreamUpdated: FIRST,
      publishedAt: new Date().toISOString(),
      runId: 'run-7',
      files: [productsPath(UBUNTU)],
      itemCount: 0,
      totalBytes: 0,
    };

    // Act
    const error = await rejection(MetadataError, loadPublishedMetadata(objects, publication));

    // Assess
    expect(error.file).toBe('publication 7');
  });
});

describe('Function: readUpstreamMetadata, a 250 MB hostile products file (child process)', () => {
  const script = fileURLToPath(new URL('../support/hostile-metadata.ts', import.meta.url));
  const MAX_RSS = 512 * 1024 * 1024;

  /** Runs the script in a fresh node, so the peak RSS it reports is that of this one read. */
  async function readHostile(
    productsBytes: number | 'default',
    { bodyBytes = 250_000_000, variant = 'foreign', lineBytes = 1024 }: { bodyBytes?: number; variant?: 'foreign' | 'forged'; lineBytes?: number } = {},
  ): Promise<{ error: string; message: string; maxRssBytes: number }> {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [script, String(productsBytes), String(bodyBytes), variant, String(lineBytes)],
      { timeout: 120_000, maxBuffer: 1024 * 1024 },
    );
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as { error: string; message: string; maxRssBytes: number };
  }

  it('refuses it past the default products limit (InputTooLargeError) within 512 MB', async () => {
    // Act
    const outcome = await readHostile('default');

    // Assess
    expect(outcome.error).toBe('InputTooLargeError');
    expect(outcome.message).toContain('com.example:hostile.sjson');
    expect(outcome.maxRssBytes).toBeLessThanOrEqual(MAX_RSS);
  }, 130_000);

  it('refuses its bad signature (SignatureError) within 512 MB when the limit lets it through', async () => {
    // Act
    const outcome = await readHostile(300_000_000);

    // Assess
    expect(outcome.error).toBe('SignatureError');
    expect(outcome.message).toContain('com.example:hostile.sjson');
    expect(outcome.maxRssBytes).toBeLessThanOrEqual(MAX_RSS);
  }, 130_000);

  it('refuses a forged signature (SignatureError) over a body just under the default products limit within 512 MB, however short its lines', async () => {
    // Prepare: the signature names the keyring's key, so the whole body is read, unescaped and hashed.
    const bodyBytes = defaultMetadataLimits.productsBytes - 8 * 1024;

    // Act
    const outcome = await readHostile('default', { bodyBytes, variant: 'forged', lineBytes: 4 });

    // Assess
    expect(outcome.error).toBe('SignatureError');
    expect(outcome.message).toContain('com.example:hostile.sjson: bad signature');
    expect(outcome.maxRssBytes).toBeLessThanOrEqual(MAX_RSS);
  }, 130_000);
});
