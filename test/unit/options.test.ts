import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.ts';
import { DEFAULT_CONCURRENCY, checkSource, parseDuration, syncSettings, type SyncFlags } from '../../functions/local/options.ts';

const flags = (extra: Partial<SyncFlags> = {}): SyncFlags => ({
  source: 'https://images.maas.io/ephemeral-v3/stable/',
  keyring: '/nonexistent/keyring.gpg',
  verify: false,
  filter: [],
  ...extra,
});

describe('Function: syncSettings', () => {
  it('copies 4 items at once on disk and 8 on S3 unless told otherwise', async () => {
    expect((await syncSettings(flags())).concurrency).toBe(DEFAULT_CONCURRENCY.embedded);
    expect((await syncSettings(flags({ bucket: 'b', table: 't' }))).concurrency).toBe(DEFAULT_CONCURRENCY.cloud);
    expect((await syncSettings(flags({ concurrency: '2', bucket: 'b', table: 't' }))).concurrency).toBe(2);
  });

  it('parses filters, max and the prune grace', async () => {
    const settings = await syncSettings(flags({ filter: ['arch=amd64', 'release~^noble$'], max: '2', pruneGrace: '1h' }));

    expect(settings.selection.filters.map((f) => f.source)).toEqual(['arch=amd64', 'release~^noble$']);
    expect(settings.selection.max).toBe(2);
    expect(settings.pruneGraceMs).toBe(3_600_000);
    expect(settings.keyring).toBeUndefined();
  });

  it.each([
    [{ concurrency: '0' }, /--concurrency "0"/],
    [{ max: '1.5' }, /--max "1.5"/],
    [{ pruneGrace: 'soon' }, /--prune-grace "soon"/],
    [{ filter: ['arch'] }, /arch/],
    [{ verify: true }, /--keyring \/nonexistent\/keyring\.gpg: cannot read it/],
  ])('rejects %o naming the flag', async (extra, message) => {
    await expect(syncSettings(flags(extra))).rejects.toThrow(ConfigError);
    await expect(syncSettings(flags(extra))).rejects.toThrow(message);
  });
});

describe('Function: parseDuration', () => {
  it.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
    ['30', 30_000],
    ['250ms', 250],
  ])('reads %s as %d ms', (text, ms) => {
    expect(parseDuration('--interval', text)).toBe(ms);
  });

  it('refuses zero unless allowed', () => {
    expect(() => parseDuration('--interval', '0s')).toThrow(/--interval "0s"/);
    expect(parseDuration('--prune-grace', '0', true)).toBe(0);
  });
});

describe('Function: checkSource', () => {
  it('accepts http(s) URLs and names the flag otherwise', () => {
    expect(checkSource('http://127.0.0.1:8000/')).toBe('http://127.0.0.1:8000/');
    expect(() => checkSource('ftp://mirror/')).toThrow(/--source ftp:\/\/mirror\/: only http/);
    expect(() => checkSource('images.maas.io')).toThrow(/--source "images\.maas\.io" is not a URL/);
  });
});
