import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadKeyring, verifyClearsigned } from '../../functions/core/pgp.ts';
import { flattenItems, parseIndex, parseProducts, parseUpdated } from '../../functions/core/simplestreams.ts';
import {
  clearsign,
  demoProducts,
  generateSigningKey,
  productsIn,
  serveTree,
  synthesizeTree,
  writeMetadata,
  type ServedTree,
  type SigningKey,
} from '../../functions/local/synthetic-upstream.ts';
import { buildFixtureUpstream, loadFixtureProducts } from '../support/fixtures.ts';

const UPDATED = 'Fri, 01 Aug 2025 10:00:00 +0000';
const UBUNTU_ID = 'com.ubuntu.maas:stable:v3:download';
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const hasGpgv = spawnSync('gpgv', ['--version']).status === 0;

let key: SigningKey;
beforeAll(async () => {
  key = await generateSigningKey();
});

describe('Function: generateSigningKey', () => {
  it('makes a key whose clearsigned output our verifier accepts', async () => {
    // Act
    const signed = await clearsign('{"format": "index:1.0"}\n', key);

    // Assess
    expect(key.fingerprint).toMatch(/^[0-9A-F]{40}$/);
    expect(key.armoredPublicKey).toContain('BEGIN PGP PUBLIC KEY BLOCK');
    const keyring = await loadKeyring('synthetic.gpg', key.publicKeyring);
    expect(keyring.fingerprints).toEqual([key.fingerprint]);
    expect(await verifyClearsigned('x.sjson', signed, keyring)).toBe('{"format": "index:1.0"}\n');
  });

  it.skipIf(!hasGpgv)('makes a key and signatures that gpgv accepts', async () => {
    // Prepare
    const { files } = await buildFixtureUpstream({ key, updated: UPDATED });
    const directory = mkdtempSync(join(tmpdir(), 'skystreams-gpgv-'));
    try {
      const keyringFile = join(directory, 'upstream.gpg');
      writeFileSync(keyringFile, key.publicKeyring);
      const signedFiles = [...files.keys()].filter((path) => path.endsWith('.sjson'));

      // Act
      const verdicts = signedFiles.map((path, n) => {
        const file = join(directory, `${n}.sjson`);
        writeFileSync(file, files.get(path)!);
        return spawnSync('gpgv', ['--keyring', keyringFile, file], {
          env: { ...process.env, GNUPGHOME: directory },
          encoding: 'utf8',
        });
      });

      // Assess
      expect(signedFiles).toHaveLength(4);
      for (const verdict of verdicts) {
        expect(verdict.stderr).toContain('Good signature');
        expect(verdict.status).toBe(0);
      }
      const otherKeyring = join(directory, 'other.gpg');
      writeFileSync(otherKeyring, (await generateSigningKey('other')).publicKeyring);
      const rejected = spawnSync('gpgv', ['--keyring', otherKeyring, join(directory, '0.sjson')], {
        env: { ...process.env, GNUPGHOME: directory },
      });
      expect(rejected.status).not.toBe(0);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe('Function: synthesizeTree', () => {
  it('writes every item with bytes matching the size and sha256 its metadata declares', async () => {
    // Act
    const { files } = await buildFixtureUpstream({ key, updated: UPDATED });

    // Assess
    const documents = productsIn(files);
    expect(documents.map((d) => d.content_id).sort()).toEqual(loadFixtureProducts().map((d) => d.content_id).sort());
    const items = documents.flatMap((d) => flattenItems(`${d.content_id}.json`, d));
    expect(items).toHaveLength(32 + 13 + 8);
    for (const item of items) {
      const bytes = files.get(item.path);
      expect(bytes, item.path).toBeDefined();
      expect(bytes!.length).toBe(item.size);
      expect(item.size).toBeGreaterThanOrEqual(1024);
      expect(item.size).toBeLessThanOrEqual(40 * 1024);
      expect(item.sha256).toBe(sha256(bytes!));
    }
  });

  it('keeps every other field of the real captures', async () => {
    // Act
    const { files } = await buildFixtureUpstream({ key, updated: UPDATED });

    // Assess
    const ubuntu = parseProducts('u.json', text(files.get(`streams/v1/${UBUNTU_ID}.json`)));
    const fixture = loadFixtureProducts()[0]!;
    const withoutDigests = (d: typeof fixture) =>
      JSON.parse(JSON.stringify({ ...d, updated: undefined }, (k, v) => (k === 'sha256' || k === 'size' ? undefined : v)));
    expect(withoutDigests(ubuntu)).toEqual(withoutDigests(fixture));
    expect(ubuntu.updated).toBe(UPDATED);
  });

  it('writes index.json pointing at .json and index.sjson at .sjson, all signed bodies equal to the .json', async () => {
    // Prepare
    const keyring = await loadKeyring('k', key.publicKeyring);

    // Act
    const { files } = await buildFixtureUpstream({ key, updated: UPDATED });

    // Assess
    const index = parseIndex('index.json', text(files.get('streams/v1/index.json')));
    const signedIndex = parseIndex(
      'index.sjson',
      await verifyClearsigned('index.sjson', text(files.get('streams/v1/index.sjson')), keyring),
    );
    expect(index.updated).toBe(UPDATED);
    expect(Object.keys(signedIndex.index)).toEqual(Object.keys(index.index));
    for (const [contentId, entry] of Object.entries(index.index)) {
      const signedEntry = signedIndex.index[contentId]!;
      expect(entry.path).toBe(`streams/v1/${contentId}.json`);
      expect(signedEntry.path).toBe(`streams/v1/${contentId}.sjson`);
      expect({ ...signedEntry, path: entry.path }).toEqual(entry);
      expect(entry).toMatchObject({ format: 'products:1.0', datatype: 'image-ids', updated: UPDATED });
      const document = parseProducts(entry.path, text(files.get(entry.path)));
      expect(entry.products).toEqual(Object.keys(document.products).sort());
      const signedBody = await verifyClearsigned(signedEntry.path, text(files.get(signedEntry.path)), keyring);
      expect(JSON.parse(signedBody)).toEqual(document);
    }
  });

  it('writes only .json metadata without a key, with updated defaulting to now', async () => {
    // Prepare
    const before = Math.floor(Date.now() / 1000) * 1000;

    // Act
    const { files } = await buildFixtureUpstream({ signed: false });

    // Assess
    expect([...files.keys()].filter((path) => path.endsWith('.sjson'))).toEqual([]);
    const index = parseIndex('index.json', text(files.get('streams/v1/index.json')));
    const updated = parseUpdated('index.json', '$.updated', index.updated!);
    expect(updated).toBeGreaterThanOrEqual(before);
    expect(updated).toBeLessThanOrEqual(Date.now());
  });

  it('derives bytes from path and seed: the same inputs give the same tree, a new seed new bytes', async () => {
    // Act
    const first = await synthesizeTree(loadFixtureProducts(), { updated: UPDATED });
    const again = await synthesizeTree(loadFixtureProducts(), { updated: UPDATED });
    const reseeded = await synthesizeTree(loadFixtureProducts(), { updated: UPDATED, contentSeed: 'v2' });

    // Assess
    const digests = (tree: Map<string, Uint8Array>) => [...tree].map(([path, bytes]) => `${path} ${sha256(bytes)}`);
    expect(digests(again)).toEqual(digests(first));
    const path = 'noble/amd64/20250709/squashfs';
    expect(reseeded.get(path)).not.toEqual(first.get(path));
    expect(text(reseeded.get('streams/v1/index.json'))).toBe(text(first.get('streams/v1/index.json')));
    expect(text(reseeded.get(`streams/v1/${UBUNTU_ID}.json`))).not.toBe(text(first.get(`streams/v1/${UBUNTU_ID}.json`)));
  });

  it('sizes items with itemSize and leaves the input documents untouched', async () => {
    // Prepare
    const documents = loadFixtureProducts();
    const snapshot = structuredClone(documents);

    // Act
    const files = await synthesizeTree(documents, {
      updated: UPDATED,
      itemSize: (item) => (item.ftype === 'squashfs' ? 300_000 : 10),
    });

    // Assess
    expect(documents).toEqual(snapshot);
    expect(files.get('noble/amd64/20250709/squashfs')).toHaveLength(300_000);
    expect(files.get('noble/amd64/20250709/squashfs.manifest')).toHaveLength(10);
  });

  it('recomputes sha512 and md5 when an item declares them', async () => {
    // Prepare
    const documents = loadFixtureProducts();
    const item = documents[0]!.products['com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04']!.versions['20250709']!
      .items['boot-kernel']!;
    item.sha512 = '0'.repeat(128);
    item.md5 = '0'.repeat(32);

    // Act
    const files = await synthesizeTree(documents, { updated: UPDATED });

    // Assess
    const rewritten = productsIn(files)
      .find((d) => d.content_id === UBUNTU_ID)!
      .products['com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04']!.versions['20250709']!.items['boot-kernel']!;
    const bytes = files.get(item.path)!;
    expect(rewritten.sha512).toBe(createHash('sha512').update(bytes).digest('hex'));
    expect(rewritten.md5).toBe(createHash('md5').update(bytes).digest('hex'));
    expect(rewritten.sha256).toBe(sha256(bytes));
  });
});

describe('Function: writeMetadata', () => {
  it('re-signs edited metadata without touching item bytes (for tampering tests)', async () => {
    // Prepare
    const { files } = await buildFixtureUpstream({ key, updated: UPDATED });
    const documents = productsIn(files);
    const ubuntu = documents.find((d) => d.content_id === UBUNTU_ID)!;
    const squashfs = ubuntu.products['com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04']!.versions['20250709']!
      .items['squashfs']!;
    const originalBytes = files.get(squashfs.path);
    squashfs.sha256 = 'f'.repeat(64);

    // Act
    await writeMetadata(files, documents, { key, updated: 'Sat, 02 Aug 2025 10:00:00 +0000' });

    // Assess
    const keyring = await loadKeyring('k', key.publicKeyring);
    const signed = await verifyClearsigned('u.sjson', text(files.get(`streams/v1/${UBUNTU_ID}.sjson`)), keyring);
    expect(signed).toContain('f'.repeat(64));
    expect(files.get(squashfs.path)).toBe(originalBytes);
    expect(parseIndex('i', text(files.get('streams/v1/index.json'))).updated).toBe('Sat, 02 Aug 2025 10:00:00 +0000');
  });
});

describe('Function: demoProducts', () => {
  it('is valid simplestreams that synthesizes into a small tree, GA and HWE sharing the root image', async () => {
    // Act
    const files = await synthesizeTree(demoProducts(), { key, updated: UPDATED });

    // Assess
    const documents = productsIn(files);
    const items = documents.flatMap((d) => flattenItems(d.content_id, d));
    expect(documents.map((d) => d.content_id)).toEqual([
      'com.ubuntu.maas:stable:1:bootloader-download',
      UBUNTU_ID,
    ]);
    const squashfsItems = items.filter((i) => i.path === 'noble/amd64/20250709/squashfs');
    expect(squashfsItems.map((i) => i.fields.subarch).sort()).toEqual(['ga-24.04', 'hwe-24.04']);
    expect(new Set(squashfsItems.map((i) => i.sha256)).size).toBe(1);
    for (const item of items) expect(files.get(item.path)?.length).toBe(item.size);
  });

  it('carries every field MAAS requires of bootloader and multi-file image products', () => {
    // Act
    const items = demoProducts().flatMap((d) => flattenItems(d.content_id, d));

    // Assess: the required fields of MAAS's simplestreams models.
    const common = ['product_name', 'arch', 'label', 'os', 'ftype', 'path', 'sha256', 'size'];
    const bootloader = [...common, 'arches', 'bootloader-type', 'src_package', 'src_release', 'src_version'];
    const image = [...common, 'release', 'release_title', 'subarch', 'subarches', 'support_eol', 'version', 'kflavor', 'krel', 'release_codename'];
    for (const item of items) {
      const required = item.contentId === UBUNTU_ID ? image : bootloader;
      for (const field of required) expect(item.fields, `${item.path} ${field}`).toHaveProperty([field]);
    }
    const itemNames = (contentId: string) => new Set(items.filter((i) => i.contentId === contentId).map((i) => i.itemName));
    expect(itemNames(UBUNTU_ID)).toEqual(new Set(['boot-kernel', 'boot-initrd', 'squashfs', 'manifest']));
    expect(itemNames('com.ubuntu.maas:stable:1:bootloader-download')).toEqual(
      new Set(['grub2-signed', 'shim-signed', 'syslinux']),
    );
  });
});

describe('Function: serveTree', () => {
  let served: ServedTree | undefined;
  afterEach(async () => {
    await served?.close();
    served = undefined;
  });

  const files = () =>
    new Map<string, Uint8Array>([
      ['streams/v1/com.ubuntu.maas:stable:v3:download.json', new TextEncoder().encode('{"a":1}')],
      ['noble/amd64/20250709/squashfs', new Uint8Array([1, 2, 3, 4])],
    ]);

  it('serves files with a strong sha256 ETag and Last-Modified, decoding escaped paths', async () => {
    // Prepare
    served = await serveTree(files());

    // Act
    const response = await fetch(`${served.baseUrl}streams/v1/com.ubuntu.maas%3Astable%3Av3%3Adownload.json`);

    // Assess
    expect(served.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"a":1}');
    expect(response.headers.get('etag')).toBe(`"${sha256(new TextEncoder().encode('{"a":1}'))}"`);
    expect(response.headers.get('content-length')).toBe('7');
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(Date.parse(response.headers.get('last-modified')!)).not.toBeNaN();
    expect(served.requests).toEqual([
      { method: 'GET', path: 'streams/v1/com.ubuntu.maas:stable:v3:download.json', status: 200 },
    ]);
  });

  it('answers If-None-Match and If-Modified-Since with 304, and 200 once the file changes', async () => {
    // Prepare
    const tree = files();
    served = await serveTree(tree);
    const url = `${served.baseUrl}noble/amd64/20250709/squashfs`;
    const first = await fetch(url);
    await first.arrayBuffer();
    const etag = first.headers.get('etag')!;
    const lastModified = first.headers.get('last-modified')!;

    // Act
    const byEtag = await fetch(url, { headers: { 'If-None-Match': etag } });
    const byDate = await fetch(url, { headers: { 'If-Modified-Since': lastModified } });
    tree.set('noble/amd64/20250709/squashfs', new Uint8Array([9, 9]));
    const changedByEtag = await fetch(url, { headers: { 'If-None-Match': etag } });
    const changedByDate = await fetch(url, { headers: { 'If-Modified-Since': lastModified } });

    // Assess
    expect(byEtag.status).toBe(304);
    expect(byDate.status).toBe(304);
    expect(changedByEtag.status).toBe(200);
    expect(new Uint8Array(await changedByEtag.arrayBuffer())).toEqual(new Uint8Array([9, 9]));
    expect(changedByEtag.headers.get('etag')).not.toBe(etag);
    expect(Date.parse(changedByEtag.headers.get('last-modified')!)).toBeGreaterThan(Date.parse(lastModified));
    expect(changedByDate.status).toBe(200);
    await changedByDate.arrayBuffer();
    expect(served.requests.map((r) => r.status)).toEqual([200, 304, 304, 200, 200]);
  });

  it('answers HEAD with headers only, 404 for unknown paths and 405 for other methods', async () => {
    // Prepare
    const tree = files();
    served = await serveTree(tree);

    // Act
    const head = await fetch(`${served.baseUrl}noble/amd64/20250709/squashfs`, { method: 'HEAD' });
    const missing = await fetch(`${served.baseUrl}noble/amd64/20250709/boot-kernel`);
    tree.delete('noble/amd64/20250709/squashfs');
    const removed = await fetch(`${served.baseUrl}noble/amd64/20250709/squashfs`);
    const post = await fetch(`${served.baseUrl}noble/amd64/20250709/squashfs`, { method: 'POST' });

    // Assess
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('4');
    expect(await head.text()).toBe('');
    expect(missing.status).toBe(404);
    expect(removed.status).toBe(404);
    expect(post.status).toBe(405);
    await Promise.all([missing.text(), removed.text(), post.text()]);
    expect(served.requests.map((r) => `${r.method} ${r.status}`)).toEqual(['HEAD 200', 'GET 404', 'GET 404', 'POST 405']);
  });

  it('serves a whole synthetic upstream that a client can walk from the index', async () => {
    // Prepare
    const { files: tree } = await buildFixtureUpstream({ key, updated: UPDATED });
    served = await serveTree(tree);

    // Act
    const index = parseIndex('index.json', await (await fetch(`${served.baseUrl}streams/v1/index.json`)).text());
    const entry = index.index[UBUNTU_ID]!;
    const products = parseProducts(entry.path, await (await fetch(new URL(entry.path, served.baseUrl))).text());
    const item = flattenItems(entry.path, products)[0]!;
    const bytes = new Uint8Array(await (await fetch(new URL(item.path, served.baseUrl))).arrayBuffer());

    // Assess
    expect(sha256(bytes)).toBe(item.sha256);
    expect(served.requests.every((r) => r.status === 200)).toBe(true);
  });
});
