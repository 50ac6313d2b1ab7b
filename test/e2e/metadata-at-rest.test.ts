/**
 * Metadata damaged at rest, through the CLI as an operator meets it: a byte
 * flipped in a stored products file (verbatim, and re-signed with the
 * mirror's key), `verify` names it and exits 1, the next sync publishes the
 * metadata sound again and `verify` passes; gpgv and MAAS's models accept it.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { METADATA_DIGESTS_FILE } from '../../functions/core/metadata-digests.ts';
import { keys, type Publication } from '../../functions/core/ports.ts';
import { cli, startServing } from '../support/cli.ts';
import { useSignedFixtureUpstream } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror } from '../support/resigned-mirror.ts';

const fixture = useSignedFixtureUpstream('metadata-at-rest');
let dataDirs = 0;

const syncArgs = (dataDir: string, ...extra: string[]) => [
  'sync', '--data-dir', dataDir, '--source', fixture().upstream.baseUrl, '--keyring', fixture().keyring, '--filter', 'arch=amd64', '--max', '1', ...extra,
];

async function currentPublication(dataDir: string): Promise<Publication> {
  const backend = openEmbeddedBackend(dataDir, { readOnly: true });
  try {
    return (await backend.catalog.getCurrent())!;
  } finally {
    await backend.close();
  }
}

/** Flips one byte in the middle of the stored file; returns the file's mirror path. */
async function damageProductsFile(dataDir: string): Promise<string> {
  const publication = await currentPublication(dataDir);
  const file = publication.files.find((path) => path.startsWith('streams/') && path.endsWith('.sjson') && !path.endsWith('index.sjson'))!;
  const stored = join(dataDir, 'objects', ...keys.metadata(publication, file).split('/'));
  const bytes = await readFile(stored);
  bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
  await writeFile(stored, bytes);
  return file;
}

describe('Metadata at rest', () => {
  it.each([
    ['verbatim', []],
    ['re-signed', ['--resign']],
  ])('R-verify-metadata: %s: verify names a products file damaged on disk and exits 1; the next sync publishes it sound; verify passes', async (mode, extra) => {
    // Prepare
    const dataDir = join(fixture().work, `data-${++dataDirs}`);
    const first = await cli(syncArgs(dataDir, ...extra));
    expect(first.code, first.stderr).toBe(0);
    const before = await currentPublication(dataDir);
    const damaged = await damageProductsFile(dataDir);

    // Act
    const found = await cli(['verify', '--data-dir', dataDir]);
    const repair = await cli(syncArgs(dataDir, ...extra));
    const healed = await cli(['verify', '--data-dir', dataDir]);

    // Assess
    expect(found.code).toBe(1);
    expect(found.stderr).toContain(`BAD ${damaged}: sha256 `);
    expect(found.stderr).toContain('damaged at rest');
    expect(repair.code, repair.stderr).toBe(0);
    expect((await currentPublication(dataDir)).generation).toBe(before.generation + 1);
    expect(healed.code, healed.stdout + healed.stderr).toBe(0);
    expect(healed.stdout).toMatch(/, 0 bad/);
    const server = await startServing(['serve', '--data-dir', dataDir]);
    onTestFinished(() => void server.process.kill('SIGTERM'));
    const served = new Uint8Array(await (await fetch(new URL(damaged, server.url))).arrayBuffer());
    if (mode === 'verbatim') {
      expect(Buffer.from(served).equals(Buffer.from(fixture().files.get(damaged)!))).toBe(true);
    } else {
      const mirror = await readResignedMirror(server.url);
      expect(mirror.maasProblems).toEqual([]);
      expect(mirror.fetchProblems).toEqual([]);
      expect((await gpgvProblems(mirror)) ?? []).toEqual([]);
    }
  }, 120_000);

  it.each([
    ['verbatim, with upstream\'s keyring', [], true],
    ['re-signed, with the keyring the generation publishes', ['--resign'], false],
  ])('R-verify-signatures: a generation with no recorded digests, %s: verify names a products file whose signature a flipped byte broke', async (_mode, extra, withKeyring) => {
    // Prepare: as published before digests were recorded, then damaged.
    const dataDir = join(fixture().work, `data-${++dataDirs}`);
    const first = await cli(syncArgs(dataDir, ...extra));
    expect(first.code, first.stderr).toBe(0);
    const publication = await currentPublication(dataDir);
    await rm(join(dataDir, 'objects', ...keys.metadata(publication, METADATA_DIGESTS_FILE).split('/')));
    const sound = await cli(['verify', '--data-dir', dataDir, ...(withKeyring ? ['--keyring', fixture().keyring] : [])]);
    const damaged = await damageProductsFile(dataDir);

    // Act
    const found = await cli(['verify', '--data-dir', dataDir, ...(withKeyring ? ['--keyring', fixture().keyring] : [])]);

    // Assess
    expect(sound.code, sound.stderr).toBe(0);
    expect(found.code).toBe(1);
    expect(found.stderr).toMatch(new RegExp(`BAD ${damaged.replace(/[.]/g, '\\.')}: .*signature.*damaged at rest`));
  }, 120_000);
});
