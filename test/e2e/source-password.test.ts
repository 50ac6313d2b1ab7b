/**
 * A source behind basic authentication, its password given so that it never
 * shows on the command line (`ps`, /proc/PID/cmdline): from a file, from the
 * environment, or from a sources file's `passwordFile`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.ts';
import { readPasswordFile, withSourcePassword } from '../../functions/local/options.ts';
import { cli } from '../support/cli.ts';
import { useSignedFixtureUpstream } from '../support/mirror.ts';

const USER = 'mirror';
const PASSWORD = 's3cret-Pa55:word';

describe('CLI: a source password kept out of the command line', () => {
  const fixture = useSignedFixtureUpstream('source-password');
  let server: Server;
  let base: string;
  const seen: string[] = [];

  beforeAll(async () => {
    // The fixture's files behind basic authentication.
    const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
    server = createServer((request, response) => {
      seen.push(request.headers.authorization ?? '');
      if (request.headers.authorization !== expected) {
        response.writeHead(401, { 'www-authenticate': 'Basic realm="mirror"' }).end();
        return;
      }
      const body = fixture().files.get(decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname.slice(1)));
      if (!body) response.writeHead(404).end();
      else response.writeHead(200, { 'content-length': body.byteLength }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://${USER}@127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const selection = ['--filter', 'arch=amd64', '--filter', 'release~^(noble)?$', '--max', '1'];

  it('syncs with the password from --source-password-file, and fails naming no password when it is wrong', async () => {
    // Prepare
    const { work, keyring } = fixture();
    const good = join(work, 'password.txt');
    const bad = join(work, 'wrong.txt');
    await writeFile(good, `${PASSWORD}\n`, { mode: 0o600 });
    await writeFile(bad, 'wrong\n', { mode: 0o600 });

    // Act
    const synced = await cli(['sync', '--data-dir', join(work, 'file'), '--source', base, '--keyring', keyring, ...selection, '--source-password-file', good]);
    const refused = await cli(['sync', '--data-dir', join(work, 'wrong'), '--source', base, '--keyring', keyring, ...selection, '--source-password-file', bad]);

    // Assess
    expect(synced.stderr).toContain('"type":"published"');
    expect(synced.code).toBe(0);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/401/);
    expect(refused.stderr + refused.stdout + synced.stderr + synced.stdout).not.toContain(PASSWORD);
    expect(refused.stderr).not.toContain('wrong\n');
  });

  it('takes the password from SKYSTREAMS_SOURCE_PASSWORD', async () => {
    const { work, keyring } = fixture();
    const synced = await cli(['sync', '--data-dir', join(work, 'env'), '--source', base, '--keyring', keyring, ...selection], { SKYSTREAMS_SOURCE_PASSWORD: PASSWORD });
    expect(synced.code).toBe(0);
    expect(synced.stderr).not.toContain(PASSWORD);
  });

  it('takes each merged source\'s password from the sources file\'s passwordFile, relative to it', async () => {
    // Prepare
    const { work, keyring } = fixture();
    await writeFile(join(work, 'merged-password'), PASSWORD, { mode: 0o600 });
    const config = join(work, 'sources.json');
    await writeFile(config, JSON.stringify({ sources: [{ name: 'site', url: base, keyring, passwordFile: 'merged-password', filters: ['arch=amd64', 'release~^(noble)?$'], max: 1 }] }));

    // Act
    const synced = await cli(['sync', '--data-dir', join(work, 'merged'), '--config', config]);
    const both = await cli(['sync', '--data-dir', join(work, 'merged'), '--config', config], { SKYSTREAMS_SOURCE_PASSWORD: PASSWORD });

    // Assess
    expect(synced.code).toBe(0);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--config: give each source its password with "passwordFile"/);
  });
});

describe('Function: withSourcePassword', () => {
  it('puts the password in a URL that names its user, and refuses one that names none or already has one', () => {
    expect(withSourcePassword('https://u@host/p/', 'p@ss/w:rd', '--source')).toBe('https://u:p%40ss%2Fw%3Ard@host/p/');
    expect(withSourcePassword('https://u@host/p/', undefined, '--source')).toBe('https://u@host/p/');
    expect(() => withSourcePassword('https://host/p/', 'x', '--source')).toThrow(ConfigError);
    expect(() => withSourcePassword('https://host/p/', 'x', '--source')).toThrow('--source: the source URL names no user: write it as https://USER@host/path/');
    expect(() => withSourcePassword('https://u:inline@host/p/', 'x', '--source')).toThrow(/already holds a password/);
  });

  it('reads the first line of a password file, refusing an empty or missing one by name', async () => {
    const work = tmpdir();
    const empty = join(work, `empty-${process.pid}`);
    await writeFile(empty, '\n');
    expect(() => readPasswordFile(empty, '--source-password-file')).toThrow(`--source-password-file: ${empty} is empty: expected the password on its first line`);
    expect(() => readPasswordFile(join(work, 'no-such-password-file'), '--source-password-file')).toThrow(/cannot be read \(ENOENT\)/);
  });
});
