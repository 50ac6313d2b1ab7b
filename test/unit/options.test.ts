import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.ts';
import { SettingError } from '../../functions/core/settings.ts';
import { buildProgram } from '../../functions/local/commands/program.ts';
import { syncConfig, syncKeyrings, type SyncFlags } from '../../functions/local/options.ts';

const flags = (extra: Partial<SyncFlags> = {}): SyncFlags => ({
  source: 'https://images.maas.io/ephemeral-v3/stable/',
  keyring: '/nonexistent/keyring.gpg',
  verify: false,
  filter: [],
  ...extra,
});

describe('Function: syncConfig', () => {
  it('copies 4 items at once on disk and 8 on S3 unless told otherwise', () => {
    expect(syncConfig(flags()).concurrency).toBe(4);
    expect(syncConfig(flags({ bucket: 'b', table: 't' })).concurrency).toBe(8);
    expect(syncConfig(flags({ concurrency: '2', bucket: 'b', table: 't' })).concurrency).toBe(2);
  });

  it('parses filters, max, the prune grace and the redirect policy', () => {
    const config = syncConfig(
      flags({ filter: ['arch=amd64', 'release~^noble$'], max: '2', pruneGrace: '90m', allowCrossHostRedirects: true }),
    );

    expect(config.filters.map((f) => f.source)).toEqual(['arch=amd64', 'release~^noble$']);
    expect(config.max).toBe(2);
    expect(config.pruneGraceMs).toBe(90 * 60_000);
    expect(config.allowCrossHostRedirects).toBe(true);
    expect(config.keyring).toBeUndefined();
  });

  it('keeps replaced generations 1 hour and refuses cross-host redirects by default', () => {
    const config = syncConfig(flags());

    expect(config.pruneGraceMs).toBe(3_600_000);
    expect(config.allowCrossHostRedirects).toBe(false);
  });

  it('keeps the credentials of --source for the requests', () => {
    expect(syncConfig(flags({ source: 'https://user:s3cret@mirror.example/maas' })).source).toBe('https://user:s3cret@mirror.example/maas/');
  });

  it.each([
    [{ concurrency: '0' }, /^--concurrency: "0" is not an integer from 1 to 10000$/],
    [{ max: '1.5' }, /^--max: "1\.5" is not an integer from 1 to 1000$/],
    [{ pruneGrace: 'soon' }, /^--prune-grace: "soon" is not a duration like 90s/],
    [{ filter: ['arch'] }, /^--filter: invalid filter "arch"/],
    [{ source: 'ftp://mirror/' }, /^--source: ftp:\/\/mirror\/: only http:\/\/ and https:\/\/ are supported$/],
    [{ source: 'https://user:s3cret@mirror.example/?token=1' }, /^--source: https:\/\/\*\*\*@mirror\.example\/\?token=1: must not have a query string or fragment$/],
  ])('rejects %o naming the flag', (extra, message) => {
    expect(() => syncConfig(flags(extra))).toThrow(SettingError);
    expect(() => syncConfig(flags(extra))).toThrow(message);
  });
});

describe('Function: syncKeyrings', () => {
  it('reads no keyring with --no-verify', async () => {
    expect((await syncKeyrings(syncConfig(flags()))).keyring).toBeUndefined();
  });

  it('names --keyring when the file cannot be read', async () => {
    const config = syncConfig(flags({ verify: true }));

    await expect(syncKeyrings(config)).rejects.toThrow(ConfigError);
    await expect(syncKeyrings(config)).rejects.toThrow(/^--keyring: \/nonexistent\/keyring\.gpg cannot be read \(ENOENT\)\. Install the ubuntu-cloudimage-keyring package/);
  });
});

describe('Function: buildProgram', () => {
  it('builds the command tree without parsing anything, in the order --help lists it', () => {
    const program = buildProgram();

    expect(program.commands.map((command) => command.name())).toEqual([
      'sync', 'serve', 'local', 'status', 'images', 'verify', 'init', 'export', 'import', 'promote', 'rollback',
      'pin', 'unpin', 'packages', 'diff', 'remove-upload', 'upload', 'key',
    ]);
    expect(program.commands.find((command) => command.name() === 'key')?.commands.map((command) => command.name())).toEqual(['show', 'rotate', 'activate', 'retire']);
    expect(process.exitCode ?? 0).toBe(0);
  });

  it('refuses a --port that is not one, naming the flag, before opening anything', async () => {
    const program = buildProgram();

    const attempt = program.parseAsync(['node', 'skystreams', 'serve', '--port', '8o8o', '--data-dir', '/nonexistent/never-opened']);

    await expect(attempt).rejects.toThrow(ConfigError);
    expect(existsSync('/nonexistent/never-opened')).toBe(false);
    await expect(buildProgram().parseAsync(['node', 'skystreams', 'serve', '--port', '-1'])).rejects.toThrow(
      /^--port: "-1" is not an integer from 0 to 65535$/,
    );
  });
});
