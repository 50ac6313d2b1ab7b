import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadKeyring, verifyClearsigned } from '../../functions/core/pgp.ts';
import { flattenItems, parseIndex, parseProducts, parseUpdated } from '../../functions/core/simplestreams.ts';
import { buildFixtureUpstream, loadFixtureProducts } from '../support/fixtures.ts';
import {
  clearsign,
  generateSigningKey,
  productsIn,
  synthesizeTree,
  writeMetadata,
  type SigningKey,
} from '../support/signed-upstream.ts';

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
