/**
 * A mirror on a really full file system (a small tmpfs mounted for this file):
 * `serve`, `status` and `verify` read it without writing a byte, and a sync
 * that needs space fails naming the directory and the size it needed.
 * Needs root to mount; the file is skipped, saying so, where mounting is refused.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { FsObjectStore } from '../../functions/adapters/fs/fs-object-store.ts';
import { StorageFullError } from '../../functions/core/errors.ts';
import { SIGNED_INDEX_PATH, synthesizeTree } from '../support/signed-upstream.ts';
import { serveTree } from '../support/upstream-server.ts';
import { cli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { selectedPaths, useSignedFixtureUpstream, withNewVersion } from '../support/mirror.ts';

/** Room for one small mirror of the fixtures, and little else. */
const FILESYSTEM_SIZE = '48m';

const fixture = useSignedFixtureUpstream('full-disk');
let mountPoint: string;
let mounted = false;

function tryMount(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${FILESYSTEM_SIZE}`, 'tmpfs', dir], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => {
  mountPoint = mkdtempSync(join(tmpdir(), 'skystreams-full-disk-'));
  mounted = tryMount(mountPoint);
});

afterAll(() => {
  if (mounted) execFileSync('umount', ['-l', mountPoint]);
  rmSync(mountPoint, { recursive: true, force: true });
});

/** Writes zeros until the file system refuses: ENOSPC is the point. */
async function fillUp(dir: string): Promise<void> {
  const chunk = Buffer.alloc(1 << 20);
  for (let n = 0; ; n++) {
    try {
      await writeFile(join(dir, `filler-${n}`), chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
      throw error;
    }
  }
  // The last partial megabyte too, so not even a catalog page fits.
  for (let n = 0; ; n++) {
    try {
      await writeFile(join(dir, `crumb-${n}`), Buffer.alloc(4096));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOSPC') return;
      throw error;
    }
  }
}

const syncArgs = (dataDir: string, source: string) => [
  'sync', '--data-dir', dataDir, '--source', source, '--keyring', fixture().keyring, '--filter', 'arch=amd64', '--max', '1',
];

describe('A full disk', () => {
  it('R-full-disk-reads: serve, status and verify work on a full file system; a sync there fails naming the directory and the size it needed', async ({ skip }) => {
    if (!mounted) skip('mount -t tmpfs is refused here (not root, or no mount namespace)');
    // Prepare: a mirror on the small file system, then no byte left on it.
    const dataDir = join(mountPoint, 'mirror');
    mkdirSync(dataDir);
    const { upstream, files } = fixture();
    const first = await cli(syncArgs(dataDir, upstream.baseUrl));
    expect(first.code, first.stderr).toBe(0);
    const before = await readdir(dataDir);
    await fillUp(mountPoint);
    const next = await synthesizeTree(withNewVersion(loadFixtureProducts(), '20991231'), { key: fixture().key, updated: 'Fri, 25 Jul 2025 08:01:49 +0000' });
    const nextUpstream = await serveTree(next);
    onTestFinished(() => nextUpstream.close());

    // Act
    const status = await cli(['status', '--data-dir', dataDir, '--json']);
    const verify = await cli(['verify', '--data-dir', dataDir]);
    const server = await startServing(['serve', '--data-dir', dataDir]);
    onTestFinished(() => void server.process.kill('SIGTERM'));
    const item = selectedPaths(loadFixtureProducts(), 'amd64', 1)[0]!;
    const index = await fetch(new URL(SIGNED_INDEX_PATH, server.url));
    const itemBody = await fetch(new URL(item, server.url));
    const sync = await cli(syncArgs(dataDir, nextUpstream.baseUrl));

    // Assess
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).publication.generation).toBe(1);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/0 bad/);
    expect(index.status).toBe(200);
    expect(Buffer.from(await index.arrayBuffer()).equals(Buffer.from(files.get(SIGNED_INDEX_PATH)!))).toBe(true);
    expect(itemBody.status).toBe(200);
    expect(Buffer.from(await itemBody.arrayBuffer()).equals(Buffer.from(files.get(item)!))).toBe(true);
    expect(sync.code).not.toBe(0);
    expect(sync.stderr).toMatch(/StorageFullError|no space left on the device/);
    expect(sync.stderr).toContain(dataDir);
    expect(sync.stderr).toMatch(/needed (\d+ bytes|a few pages)/);
    // Reading left nothing behind (no -shm/-wal, no temp directory) and the sync kept no partial object.
    expect((await readdir(dataDir)).sort()).toEqual(before.sort());
    expect(await readFile(join(dataDir, 'catalog.sqlite'))).toBeTruthy();
  }, 120_000);

  it('R-full-disk-put: an object store put on a full file system fails with StorageFullError naming the directory and the bytes needed, storing nothing', async ({ skip }) => {
    if (!mounted) skip('mount -t tmpfs is refused here (not root, or no mount namespace)');
    // Prepare: the file system is full from the case above, or filled here.
    const root = join(mountPoint, 'objects-only');
    await fillUp(mountPoint);
    const objects = new FsObjectStore(root);
    const body = Buffer.alloc(256 * 1024, 7);

    // Act
    const attempt = objects.put('a/b/item.img', body);

    // Assess
    const error = await attempt.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageFullError);
    expect((error as StorageFullError).directory).toBe(root);
    expect((error as Error).message).toContain(`needed ${body.byteLength} bytes`);
    expect(await objects.head('a/b/item.img')).toBeUndefined();
    expect(await readdir(join(root, '.tmp')).catch(() => [])).toEqual([]);
  });
});
