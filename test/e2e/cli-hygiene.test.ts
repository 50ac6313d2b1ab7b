/** The CLI as an operator meets it before anything works: versions, usage errors, closed pipes, missing mirrors, first-sync hints. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../support/cli.ts';

const BIN = new URL('../../bin/skystreams.mjs', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'skystreams-hygiene-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('CLI: hygiene', () => {
  it('prints the package version with --version', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const result = await cli(['--version']);
    expect(result).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  it('answers a usage error with one line and where the help is, exit 2, not the whole help', async () => {
    // Act
    const unknownOption = await cli(['sync', '--bogus']);
    const unknownCommand = await cli(['frob']);

    // Assess
    expect(unknownOption).toEqual({ code: 2, stdout: '', stderr: "error: unknown option '--bogus'\n(see: skystreams sync --help)\n" });
    expect(unknownCommand).toEqual({ code: 2, stdout: '', stderr: "error: unknown command 'frob'\n(see: skystreams --help)\n" });
  });

  it('exits quietly when its reader closes the pipe early (skystreams --help | head -1)', async () => {
    // Prepare: a reader that takes one chunk and closes.
    const child = spawn(process.execPath, [BIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.once('data', () => child.stdout.destroy());

    // Act
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));

    // Assess
    expect(code).toBe(0);
    expect(stderr).toBe('');
  });

  it.each([['status'], ['verify'], ['serve'], ['images'], ['packages', 'openssl'], ['diff', 'p', 'a', 'b'], ['export', '--out', join(work, 'b.tar')], ['key', 'show']])(
    '%s refuses a data dir that holds no mirror, exit 2, and creates nothing',
    async (...command: string[]) => {
      // Prepare
      const missing = join(work, `missing-${command[0]}-${command[1] ?? ''}`.replace(/[^a-z0-9-]/gi, '_'));

      // Act
      const result = await cli([...command, '--data-dir', missing]);

      // Assess
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(`skystreams: ${missing}: no mirror here (no catalog.sqlite): name the mirror's directory with --data-dir, or make one with skystreams sync\n`);
      expect(existsSync(missing)).toBe(false);
    },
  );

  it('names the next step when the first sync cannot reach its source', async () => {
    // Prepare: a source nothing listens on (unsigned, so no keyring is needed to get that far).
    const dataDir = join(work, 'unreachable');

    // Act
    const result = await cli(['sync', '--data-dir', dataDir, '--source', 'http://127.0.0.1:9/', '--no-verify']);

    // Assess
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^skystreams: next: behind a proxy, set https_proxy \(and no_proxy\); with no internet, `npm run demo` mirrors a local upstream/m);
  });

  it('names the demo when the default keyring is not installed', async () => {
    // Prepare: the sync's default keyring, which this machine may or may not have.
    const result = await cli(['sync', '--data-dir', join(work, 'no-keyring'), '--source', 'http://127.0.0.1:9/']);

    // Assess
    if (existsSync('/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg')) {
      expect(result.stderr).not.toMatch(/cannot be read/);
    } else {
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^skystreams: next: to try skystreams without that keyring or the internet, `npm run demo` mirrors a signed upstream it serves itself$/m);
    }
  });
});
