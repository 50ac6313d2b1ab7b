import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleUpstream } from '../../functions/adapters/fs/bundle-file.ts';
import { BUNDLE_MANIFEST, BUNDLE_MIRROR_ROOT } from '../../functions/core/bundle.ts';
import { BundleError, InputTooLargeError, NotFoundError } from '../../functions/core/errors.ts';
import { parseTarBlock, parsePaxRecords, tarHeader, tarPadding, TAR_BLOCK, writeTar } from '../../functions/core/tar.ts';
import { cli as runCli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { replaceFiles, selectedPaths, withNewVersion } from '../support/mirror.ts';
import { generateSigningKey, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

const execFileAsync = promisify(execFile);
const cli = (...args: string[]) => runCli(args);
const FIRST = 'Mon, 01 Jun 2026 00:00:00 +0000';
const SECOND = 'Tue, 02 Jun 2026 00:00:00 +0000';
const SELECT = ['--filter', 'arch=amd64', '--max', '1'];

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

interface TarFile {
  path: string;
  bytes: Uint8Array;
}

/** The regular files of a tar archive, in order, pax paths and sizes applied. */
async function tarFiles(archive: string): Promise<TarFile[]> {
  const bytes = new Uint8Array(await readFile(archive));
  const files: TarFile[] = [];
  let pending: { path?: string; size?: number } = {};
  for (let offset = 0; offset < bytes.byteLength; ) {
    const at = { archive, offset };
    const header = parseTarBlock(bytes.subarray(offset, offset + TAR_BLOCK), at);
    if (header.kind === 'end') break;
    const data = offset + TAR_BLOCK;
    if (header.kind === 'pax') {
      pending = parsePaxRecords(bytes.subarray(data, data + header.size), at);
    } else {
      const size = pending.size ?? header.size;
      files.push({ path: pending.path ?? header.path, bytes: bytes.slice(data, data + size) });
      pending = {};
    }
    const size = header.kind === 'pax' ? header.size : (files.at(-1)!.bytes.byteLength);
    offset = data + size + tarPadding(size);
  }
  return files;
}

/** `files` as a tar archive, with raw `extra` header blocks after the first file. */
function tarArchive(files: TarFile[], ...extra: Uint8Array[]): Uint8Array {
  const parts = files.flatMap((file, index) => [
    tarHeader({ path: file.path, size: file.bytes.byteLength }),
    file.bytes,
    new Uint8Array(tarPadding(file.bytes.byteLength)),
    ...(index === 0 ? extra : []),
  ]);
  return Buffer.concat([...parts, new Uint8Array(2 * TAR_BLOCK)]);
}

/** A ustar header block for a link of `type` ('1' hard, '2' symbolic) to `target`. */
function linkEntry(path: string, type: '1' | '2', target: string): Uint8Array {
  const block = tarHeader({ path, size: 0 }).slice(0, TAR_BLOCK);
  block[156] = type.charCodeAt(0);
  block.set(new TextEncoder().encode(target), 157);
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, '0')}\0 `), 148);
  return block;
}

async function* chunks(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* parts;
}

describe('tar framing of bundles', () => {
  it('round-trips a long, non-ASCII path and a size beyond ustar through a pax header', () => {
    const path = `${BUNDLE_MIRROR_ROOT}${'deep/'.repeat(30)}ünïcode-squashfs`;
    const size = 9 * 1024 ** 3;
    const header = tarHeader({ path, size });
    const at = { archive: 'b.tar', offset: 0 };

    const pax = parseTarBlock(header.subarray(0, TAR_BLOCK), at);
    expect(pax.kind).toBe('pax');
    const recordsSize = pax.kind === 'pax' ? pax.size : 0;
    expect(parsePaxRecords(header.subarray(TAR_BLOCK, TAR_BLOCK + recordsSize), at)).toEqual({ path, size });
    expect(parseTarBlock(header.subarray(header.byteLength - TAR_BLOCK), at)).toMatchObject({ kind: 'file' });
  });

  it('is read by the system tar, names and bytes', async (context) => {
    if (!existsSync('/bin/tar') && !existsSync('/usr/bin/tar')) return context.skip('no system tar');
    const work = await mkdtemp(join(tmpdir(), 'skystreams-tar-'));
    try {
      const long = `${'x'.repeat(120)}/item`;
      const files = new Map([
        ['a.txt', new TextEncoder().encode('hello')],
        [long, new Uint8Array(1000).fill(7)],
        ['empty', new Uint8Array(0)],
      ]);
      const sources = [...files].map(([path, bytes]) => ({ path, size: bytes.byteLength, open: async () => chunks(bytes) }));
      await writeFile(join(work, 'b.tar'), await collect(writeTar(sources)));

      const { stdout } = await execFileAsync('tar', ['-tf', join(work, 'b.tar')]);
      expect(stdout.trim().split('\n')).toEqual(['a.txt', long, 'empty']);
      await execFileAsync('tar', ['-xf', join(work, 'b.tar'), '-C', work]);
      expect(await readFile(join(work, long))).toEqual(Buffer.from(files.get(long)!));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('refuses a source that yields other than the size its header announced, naming it', async () => {
    const short = [{ path: 'short', size: 10, open: async () => chunks(new Uint8Array(4)) }];
    await expect(collect(writeTar(short))).rejects.toThrow(/short: 4 bytes, its tar header announces 10/);
  });
});

describe('CLI: skystreams export / import (air-gap bundles)', () => {
  let work: string;
  let key: SigningKey;
  let keyring: string;
  let live: Map<string, Uint8Array>;
  let upstream: ServedTree;
  let firstTree: Map<string, Uint8Array>;
  let secondTree: Map<string, Uint8Array>;
  const products = loadFixtureProducts();

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'skystreams-airgap-'));
    key = await generateSigningKey('airgap upstream');
    keyring = join(work, 'keyring.gpg');
    await writeFile(keyring, key.publicKeyring);
    firstTree = await synthesizeTree(products, { key, updated: FIRST });
    secondTree = await synthesizeTree(withNewVersion(products, '20990101'), { key, updated: SECOND });
    live = new Map(firstTree);
    upstream = await serveTree(live);
  });
  afterAll(async () => {
    await upstream?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** Syncs the live upstream into a fresh data dir and exports it; returns the bundle's path. */
  async function exportedBundle(name: string): Promise<{ dataDir: string; bundle: string }> {
    const dataDir = join(work, `online-${name}`);
    expect((await cli('sync', '--data-dir', dataDir, '--source', upstream.baseUrl, '--keyring', keyring, ...SELECT)).code).toBe(0);
    const bundle = join(work, `${name}.tar`);
    const exported = await cli('export', '--data-dir', dataDir, '--out', bundle, '--keyring', keyring);
    expect(exported.stderr).toBe('');
    expect(exported.code).toBe(0);
    expect(exported.stdout).toMatch(/exported generation 1 .*metadata files, \d+ items/);
    expect(existsSync(`${bundle}.partial`)).toBe(false);
    return { dataDir, bundle };
  }

  it('imports on an empty data dir and serves every file byte-identically', async () => {
    replaceFiles(live, firstTree);
    const { dataDir, bundle } = await exportedBundle('identical');
    const offline = join(work, 'offline-identical');

    const imported = await cli('import', bundle, '--data-dir', offline, '--keyring', keyring);
    expect(imported.stderr).toContain('"type":"published"');
    expect(imported.code).toBe(0);
    expect(imported.stdout).toMatch(/imported .* as generation 1/);

    const online = await startServing(['serve', '--data-dir', dataDir]);
    const airgapped = await startServing(['serve', '--data-dir', offline]);
    try {
      const paths = ['streams/v1/index.sjson', 'streams/v1/index.json', ...selectedPaths(products, 'amd64', 1)];
      for (const path of paths) {
        const [a, b] = await Promise.all([fetch(online.url + path), fetch(airgapped.url + path)]);
        expect(b.status, path).toBe(200);
        const served = Buffer.from(await b.arrayBuffer());
        expect(served.equals(Buffer.from(await a.arrayBuffer())), path).toBe(true);
        expect(served.equals(Buffer.from(live.get(path)!)), path).toBe(true);
      }
    } finally {
      online.process.kill('SIGTERM');
      airgapped.process.kill('SIGTERM');
    }

    const again = await cli('import', bundle, '--data-dir', offline, '--keyring', keyring);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/unchanged: generation 1 already serves/);
  });

  it('ships the keyring it was given, and any tar lists the mirror tree', async () => {
    replaceFiles(live, firstTree);
    const { bundle } = await exportedBundle('listing');
    const opened = await BundleUpstream.open(bundle);
    expect(Buffer.from(opened.keyring!).equals(Buffer.from(key.publicKeyring))).toBe(true);
    expect(opened.manifest).toMatchObject({ format: 1, generation: 1, upstreamUpdated: FIRST, keyring: true });
    await expect(opened.fetchFile('streams/v1/index.sjson', undefined, { maxBytes: 10 })).rejects.toBeInstanceOf(InputTooLargeError);
    await expect(opened.fetchFile('streams/v1/missing.json')).rejects.toBeInstanceOf(NotFoundError);
    const { stdout } = await execFileAsync('tar', ['-tf', bundle]);
    const names = stdout.trim().split('\n');
    expect(names[0]).toBe(BUNDLE_MANIFEST);
    expect(names).toContain(`${BUNDLE_MIRROR_ROOT}streams/v1/index.sjson`);
    for (const path of selectedPaths(products, 'amd64', 1)) expect(names).toContain(BUNDLE_MIRROR_ROOT + path);
  });

  it('refuses a bundle whose item bytes were altered, naming the item, and publishes nothing', async () => {
    replaceFiles(live, firstTree);
    const { bundle } = await exportedBundle('tampered');
    const victim = selectedPaths(products, 'amd64', 1).find((path) => path.endsWith('squashfs'))!;
    const bytes = await readFile(bundle);
    const original = Buffer.from(live.get(victim)!);
    const at = bytes.indexOf(original);
    expect(at).toBeGreaterThan(0);
    bytes[at + 10] = (bytes[at + 10]! + 1) % 256;
    await writeFile(bundle, bytes);
    const offline = join(work, 'offline-tampered');

    const imported = await cli('import', bundle, '--data-dir', offline, '--keyring', keyring);

    expect(imported.code).toBe(1);
    expect(imported.stderr).toContain(`${victim}: sha256 is`);
    const status = await cli('status', '--data-dir', offline, '--json');
    expect(JSON.parse(status.stdout)).toMatchObject({ publication: null, runs: [{ state: 'failed' }] });
  });

  it('refuses a bundle signed by a key the offline mirror does not trust', async () => {
    replaceFiles(live, firstTree);
    const { bundle } = await exportedBundle('untrusted');
    const stranger = await generateSigningKey('stranger');
    const strangerKeyring = join(work, 'stranger.gpg');
    await writeFile(strangerKeyring, stranger.publicKeyring);
    const offline = join(work, 'offline-untrusted');

    const imported = await cli('import', bundle, '--data-dir', offline, '--keyring', strangerKeyring);

    expect(imported.code).toBe(1);
    expect(imported.stderr).toMatch(/index\.sjson: .*(signature|key)/i);
    const status = await cli('status', '--data-dir', offline, '--json');
    expect(JSON.parse(status.stdout).publication).toBeNull();
  });

  it('refuses a bundle older than the publication served, which stays', async () => {
    replaceFiles(live, firstTree);
    const older = await exportedBundle('older');
    replaceFiles(live, secondTree);
    const newer = await exportedBundle('newer');
    const offline = join(work, 'offline-rollback');
    expect((await cli('import', newer.bundle, '--data-dir', offline, '--keyring', keyring)).code).toBe(0);

    const imported = await cli('import', older.bundle, '--data-dir', offline, '--keyring', keyring);

    expect(imported.code).toBe(1);
    expect(imported.stderr).toContain(`${older.bundle}: holds an older publication than the one served`);
    const status = JSON.parse((await cli('status', '--data-dir', offline, '--json')).stdout);
    expect(status.publication).toMatchObject({ generation: 1, upstreamUpdated: SECOND });
  });

  describe('hostile bundles', () => {
    let genuine: TarFile[];
    let indexed = '';

    beforeAll(async () => {
      replaceFiles(live, firstTree);
      genuine = await tarFiles((await exportedBundle('genuine')).bundle);
      indexed = genuine.find((file) => file.path.endsWith('.sjson') && !file.path.endsWith('index.sjson'))!.path.slice(BUNDLE_MIRROR_ROOT.length);
    });

    /** The genuine bundle's files, with `change` applied to its manifest. */
    const withManifest = (files: TarFile[], change: (manifest: Record<string, number>) => void): TarFile[] =>
      files.map((file) => {
        if (file.path !== BUNDLE_MANIFEST) return file;
        const manifest = JSON.parse(new TextDecoder().decode(file.bytes));
        change(manifest);
        return { path: file.path, bytes: new TextEncoder().encode(JSON.stringify(manifest)) };
      });
    const plus = (files: TarFile[], ...extra: TarFile[]) => [files[0]!, ...extra, ...files.slice(1)];
    const bumped = (files: TarFile[]) => withManifest(files, (manifest) => (manifest.items = (manifest.items ?? 0) + 1));
    const payload = new TextEncoder().encode('not from upstream');

    it.each<[string, () => Uint8Array, string | (() => string)]>([
      ['a path escaping mirror/ with ..', () => tarArchive(bumped(plus(genuine, { path: `${BUNDLE_MIRROR_ROOT}../../x`, bytes: payload }))), 'mirror/../../x: not a mirror path'],
      ['an absolute path', () => tarArchive(plus(genuine, { path: '/etc/cron.d/x', bytes: payload })), '/etc/cron.d/x: outside mirror/'],
      ['a symbolic link', () => tarArchive(genuine, linkEntry(`${BUNDLE_MIRROR_ROOT}noble/link`, '2', '/etc/shadow')), '"mirror/noble/link": entry type "2" (a symbolic link)'],
      ['a hard link', () => tarArchive(genuine, linkEntry(`${BUNDLE_MIRROR_ROOT}noble/hard`, '1', 'skystreams-bundle.json')), '"mirror/noble/hard": entry type "1" (a hard link)'],
      ['an extra file its metadata does not list, counts bumped', () => tarArchive(bumped(plus(genuine, { path: `${BUNDLE_MIRROR_ROOT}noble/extra`, bytes: payload }))), 'mirror/noble/extra: not listed by the bundle\'s metadata'],
      ['a products file its index lists, missing', () => tarArchive(withManifest(genuine.filter((file) => file.path !== BUNDLE_MIRROR_ROOT + indexed), (manifest) => (manifest.metadataFiles = (manifest.metadataFiles ?? 0) - 1))), () => `${indexed}: listed by its index, missing from the bundle`],
      ['a count that lies', () => tarArchive(bumped(genuine)), `${BUNDLE_MANIFEST}: $.items is`],
    ])('R-hostile-bundle: refuses %s, naming the bundle and the entry, and publishes nothing', async (_name, build, message) => {
      // Prepare
      const bundle = join(work, `hostile-${_name.replace(/\W+/g, '-')}.tar`);
      await writeFile(bundle, build());
      const offline = join(work, `offline-hostile-${_name.replace(/\W+/g, '-')}`);

      // Act
      const imported = await cli('import', bundle, '--data-dir', offline, '--keyring', keyring);

      // Assess
      expect(imported.code).toBe(1);
      expect(imported.stderr).toContain(`${bundle}: `);
      expect(imported.stderr).toContain(typeof message === 'string' ? message : message());
      expect(existsSync(join(offline, 'catalog.sqlite'))).toBe(false);
      expect(existsSync(join(offline, 'objects'))).toBe(false);
    });
  });

  it('refuses a file that is not a bundle, naming it', async () => {
    const notBundle = join(work, 'not-a-bundle.tar');
    await writeFile(notBundle, Buffer.alloc(4096, 'x'));
    const offline = join(work, 'offline-garbage');

    const imported = await cli('import', notBundle, '--data-dir', offline, '--keyring', keyring);

    expect(imported.code).toBe(1);
    expect(imported.stderr).toContain(`${notBundle}: at byte 0: `);
    await expect(BundleUpstream.open(notBundle)).rejects.toBeInstanceOf(BundleError);
    expect(existsSync(join(offline, 'catalog.sqlite'))).toBe(false);
  });
});
