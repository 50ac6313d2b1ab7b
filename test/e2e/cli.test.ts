import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { generateSigningKey } from '../support/signed-upstream.ts';
import { cli as runCli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { selectedPaths, useSignedFixtureUpstream } from '../support/mirror.ts';

const execFileAsync = promisify(execFile);
const GPGV = ['/usr/bin/gpgv', '/bin/gpgv'].find((path) => existsSync(path));
const cli = (...args: string[]) => runCli(args);
const serve = (dataDir: string, command: string[] = ['serve']) => startServing([...command, '--data-dir', dataDir]);

describe('CLI: skystreams sync / serve / status / verify', () => {
  const fixture = useSignedFixtureUpstream('cli');

  it('syncs, serves byte-identical files, reports status and verifies the store', async () => {
    const { work, keyring, files, upstream } = fixture();
    const dataDir = join(work, 'good');
    const sync = await cli('sync', '--data-dir', dataDir, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1');
    expect(sync.stderr).toContain('"type":"published"');
    expect(sync.code).toBe(0);

    const server = await serve(dataDir);
    try {
      for (const path of ['streams/v1/index.sjson', ...selectedPaths(loadFixtureProducts(), 'amd64', 1)]) {
        const response = await fetch(server.url + path);
        expect(response.status, path).toBe(200);
        expect(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(files.get(path)!)), path).toBe(true);
      }
      if (GPGV) {
        const signed = join(work, 'served-index.sjson');
        await writeFile(signed, Buffer.from(await (await fetch(`${server.url}streams/v1/index.sjson`)).arrayBuffer()));
        await expect(execFileAsync(GPGV, ['--keyring', keyring, signed])).resolves.toBeDefined();
      }
    } finally {
      server.process.kill('SIGTERM');
    }

    const status = await cli('status', '--data-dir', dataDir, '--json');
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ publication: { generation: 1 }, runs: [{ state: 'succeeded' }] });

    const verify = await cli('verify', '--data-dir', dataDir);
    expect(verify.stdout).toMatch(/0 bad/);
    expect(verify.code).toBe(0);
  });

  it('local serves at once, syncs now and again every --interval', async () => {
    const { work, keyring, files, upstream } = fixture();
    const dataDir = join(work, 'local');
    const local = await serve(dataDir, ['local', '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1', '--interval', '1s']);
    try {
      const status = async () =>
        (await (await fetch(`${local.url}api/v1/status`)).json()) as { publication: { generation: number } | null; runs: { state: string }[] };
      await expect.poll(async () => (await status()).publication?.generation, { timeout: 20_000 }).toBe(1);
      await expect.poll(async () => (await status()).runs.filter((r) => r.state === 'unchanged').length, { timeout: 20_000 }).toBeGreaterThan(0);
      const index = await fetch(`${local.url}streams/v1/index.sjson`);
      expect(Buffer.from(await index.arrayBuffer()).equals(Buffer.from(files.get('streams/v1/index.sjson')!))).toBe(true);
    } finally {
      local.process.kill('SIGTERM');
    }
  });

  it('verify names an item whose stored bytes were damaged, and exits non-zero', async () => {
    const { work, keyring, upstream } = fixture();
    const dataDir = join(work, 'damaged');
    expect((await cli('sync', '--data-dir', dataDir, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1')).code).toBe(0);
    const victim = selectedPaths(loadFixtureProducts(), 'amd64', 1)[0]!;
    await writeFile(join(dataDir, 'objects', 'items', victim), 'not the original bytes');

    const verify = await cli('verify', '--data-dir', dataDir);

    expect(verify.code).toBe(1);
    expect(verify.stderr).toContain(`BAD ${victim}: size`);
  });

  it('fails with a clear message and exit code for a keyring that did not sign upstream', async () => {
    const { work, keyring, upstream } = fixture();
    const other = join(work, 'other.gpg');
    await writeFile(other, (await generateSigningKey('someone else')).publicKeyring);

    const sync = await cli('sync', '--data-dir', join(work, 'wrong-key'), '--source', upstream.baseUrl, '--keyring', other);

    expect(sync.code).toBe(1);
    expect(sync.stderr).toMatch(/skystreams: streams\/v1\/index\.sjson: .*(key|signature)/i);
  });

  it('rejects bad flags with exit code 2 naming the flag', async () => {
    const { work, keyring, upstream } = fixture();
    const badFilter = await cli('sync', '--data-dir', join(work, 'x'), '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch');
    expect(badFilter.code).toBe(2);
    expect(badFilter.stderr).toMatch(/arch/);

    const missingKeyring = await cli('sync', '--data-dir', join(work, 'x'), '--source', upstream.baseUrl, '--keyring', join(work, 'nope.gpg'));
    expect(missingKeyring.code).toBe(2);
    expect(missingKeyring.stderr).toMatch(/--keyring: .*nope\.gpg cannot be read/);

    const badMax = await cli('sync', '--data-dir', join(work, 'x'), '--source', upstream.baseUrl, '--keyring', keyring, '--max', 'zero');
    expect(badMax.code).toBe(2);
    expect(badMax.stderr).toMatch(/--max/);

    // Nothing listens: the port is refused before the store is opened.
    const badPort = await cli('serve', '--data-dir', join(work, 'never-opened'), '--port', '80a');
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toBe('skystreams: --port: "80a" is not an integer from 0 to 65535\n');
    expect(existsSync(join(work, 'never-opened'))).toBe(false);

    const portTooHigh = await cli('local', '--data-dir', join(work, 'never-opened'), '--source', upstream.baseUrl, '--keyring', keyring, '--port', '65536');
    expect(portTooHigh.code).toBe(2);
    expect(portTooHigh.stderr).toMatch(/^skystreams: --port: "65536" is not an integer from 0 to 65535/);

    const badWorkers = await cli('serve', '--data-dir', join(work, 'never-opened'), '--workers', 'two');
    expect(badWorkers.code).toBe(2);
    expect(badWorkers.stderr).toMatch(/^skystreams: --workers: "two" is not an integer from 1 to 1024/);
  });
});
