import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.ts';
import { channelName } from '../../functions/core/channels.ts';
import { booleanOf, rejectUnknownKeys } from '../../functions/core/validators.ts';
import {
  describeDuration,
  engineSettings,
  namesFrom,
  parseDuration,
  parseSyncConfig,
  SettingError,
  syncDefaults,
  unreadableKeyring,
  type EntryPoint,
  type RawSyncSettings,
} from '../../functions/core/settings.ts';

const SOURCE = 'https://images.maas.io/ephemeral-v3/stable/';
const ARMORED = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n';
const HOUR = 3_600_000;

const plain: EntryPoint = { name: namesFrom({}), durationUnit: 's', backend: 'embedded' };
const parse = (raw: RawSyncSettings, entry: EntryPoint = plain) => parseSyncConfig({ source: SOURCE, keyring: 'k.gpg', ...raw }, entry);
const failure = (raw: RawSyncSettings, entry: EntryPoint = plain): SettingError => {
  try {
    parse(raw, entry);
  } catch (error) {
    expect(error).toBeInstanceOf(SettingError);
    expect(error).toBeInstanceOf(ConfigError);
    return error as SettingError;
  }
  throw new Error('expected a SettingError');
};

describe('Function: parseSyncConfig', () => {
  describe('defaults', () => {
    it('fills every setting a local entry point leaves out', () => {
      const config = parse({});

      expect(config).toEqual({
        source: SOURCE,
        keyring: { file: 'k.gpg' },
        filters: [],
        max: undefined,
        concurrency: 4,
        pruneGraceMs: HOUR,
        lockTtlMs: 5 * 60_000,
        attempts: 3,
        limits: { indexBytes: 1024 * 1024, productsBytes: 32 * 1024 * 1024, runBytes: 512 * 1024 * 1024, jsonDepth: 32 },
        allowCrossHostRedirects: false,
        itemIdleTimeoutMs: 60_000,
        minItemRate: { bytesPerSecond: 32 * 1024, windowMs: 60_000 },
        channel: 'stable',
        keepGenerations: 1,
        rangedCopy: { thresholdBytes: 1024 * 1024 * 1024, partBytes: 256 * 1024 * 1024 },
        resign: false,
      });
    });

    it('takes the ranged-copy threshold and part size in bytes, from 5 MiB, naming a bad one', () => {
      const MiB = 1024 * 1024;

      expect(parse({ rangedCopyThreshold: String(8 * MiB), copyPartSize: 5 * MiB }).rangedCopy).toEqual({ thresholdBytes: 8 * MiB, partBytes: 5 * MiB });
      expect(() => parse({ copyPartSize: String(MiB) })).toThrow(SettingError);
      expect(() => parse({ copyPartSize: String(MiB) })).toThrow(/^copyPartSize: "1048576" is not an integer from 5242880/);
    });

    it('copies 8 items at once on the cloud backend', () => {
      expect(parse({}, { ...plain, backend: 'cloud' }).concurrency).toBe(8);
    });

    it('keeps replaced generations a day behind a CDN', () => {
      expect(parse({}, { ...plain, edge: { minPruneGraceMs: 2 * HOUR, reason: 'r' } }).pruneGraceMs).toBe(24 * HOUR);
    });

    it('mirrors images.maas.io, verified with the Ubuntu cloud image keyring, by default', () => {
      expect(syncDefaults.source).toBe(SOURCE);
      expect(syncDefaults.keyringFile).toBe('/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg');
      expect(parse({ source: undefined, keyring: null })).toMatchObject({ source: SOURCE, keyring: { file: syncDefaults.keyringFile } });
    });

    it('treats null and empty values as absent', () => {
      expect(parse({ max: '', filters: null, pruneGrace: '' })).toMatchObject({ max: undefined, filters: [], pruneGraceMs: HOUR });
    });
  });

  describe('source', () => {
    it('adds the trailing slash paths resolve against', () => {
      expect(parse({ source: 'http://mirror.internal/maas/stable' }).source).toBe('http://mirror.internal/maas/stable/');
    });

    it('keeps credentials for the requests', () => {
      expect(parse({ source: 'https://u:p%40ss@mirror.example/' }).source).toBe('https://u:p%40ss@mirror.example/');
    });

    it.each([
      ['images.maas.io', 'source: "images.maas.io" is not a URL'],
      ['ftp://mirror/', 'source: ftp://mirror/: only http:// and https:// are supported'],
      ['https://mirror/maas?x=1', 'source: https://mirror/maas?x=1: must not have a query string or fragment'],
      ['https://mirror/maas#top', 'source: https://mirror/maas#top: must not have a query string or fragment'],
      ['https://mirror/maas?', 'source: https://mirror/maas?: must not have a query string or fragment'],
    ])('refuses %j', (source, message) => {
      expect(failure({ source })).toMatchObject({ setting: 'source', message });
    });

    it('never echoes credentials', () => {
      for (const source of ['ftp://user:s3cret@mirror/', 'https://user:s3cret@mirror/?q', 'https://user:s3cret@[bad/']) {
        expect(failure({ source }).message).not.toContain('s3cret');
      }
    });

    it('refuses credentials where the entry point says why', () => {
      const entry = { ...plain, refuseSourceCredentials: 'they would be stored in plain text' };

      expect(failure({ source: 'https://user:s3cret@mirror/' }, entry).message).toBe(
        'source: https://***@mirror/: must not embed credentials (they would be stored in plain text)',
      );
    });
  });

  describe('keyring', () => {
    it('takes a file path, { file } or { armored }', () => {
      expect(parse({ keyring: '/k.gpg' }).keyring).toEqual({ file: '/k.gpg' });
      expect(parse({ keyring: { file: 'k.gpg' } }).keyring).toEqual({ file: 'k.gpg' });
      expect(parse({ keyring: { armored: ARMORED } }).keyring).toEqual({ armored: ARMORED });
    });

    it('is read while verifying, and ignored when not', () => {
      expect(parse({ keyring: undefined }).keyring).toEqual({ file: syncDefaults.keyringFile });
      expect(parse({ keyring: undefined, verify: false }).keyring).toBeUndefined();
      expect(parse({ keyring: 'k.gpg', verify: 'false' }).keyring).toBeUndefined();
    });

    it.each([
      [{ file: 'k.gpg', armored: ARMORED }, 'keyring: set exactly one of "file" and "armored"'],
      [{}, 'keyring: set exactly one of "file" and "armored"'],
      [{ armored: 'not a key' }, 'keyring: armored: expected an ASCII-armored public key block'],
      [{ file: 3 }, 'keyring: file: expected a path'],
      [{ path: 'x' }, 'keyring: path: unknown setting (known: file, armored)'],
      [['k.gpg'], 'keyring: expected a file path, { "file": … } or { "armored": … }'],
    ])('refuses %j', (keyring, message) => {
      expect(failure({ keyring })).toMatchObject({ setting: 'keyring', message });
    });

    it('words an unreadable file the same for every entry point', () => {
      const error = unreadableKeyring('--keyring', '/nope.gpg', 'ENOENT');

      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toBe(
        '--keyring: /nope.gpg cannot be read (ENOENT). Install the ubuntu-cloudimage-keyring package, copy ' +
          '/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg from a MAAS region controller, or point --keyring at the keyring that signs your upstream',
      );
    });
  });

  describe('resign', () => {
    it('is off unless asked for, and reaches the engine', () => {
      expect(parse({}).resign).toBe(false);
      expect(engineSettings(parse({ resign: 'true' }), undefined).resign).toBe(true);
    });

    it('refuses an unverified source, naming both settings', () => {
      const error = failure({ resign: true, verify: false });
      expect(error.setting).toBe('resign');
      expect(error.message).toBe('resign: needs a verified source: an unsigned one (verify) cannot be re-signed');
    });
  });

  describe('filters', () => {
    it('takes a list, or a JSON list as text', () => {
      expect(parse({ filters: ['arch=amd64', 'release~^noble$'] }).filters.map((f) => f.source)).toEqual(['arch=amd64', 'release~^noble$']);
      expect(parse({ filters: '["arch=amd64"]' }).filters.map((f) => f.source)).toEqual(['arch=amd64']);
    });

    it.each([
      ['arch=amd64', 'filters: expected an array of strings such as ["arch=amd64"]'],
      [{}, 'filters: expected an array of strings such as ["arch=amd64"]'],
      [[1], 'filters: expected a string'],
      [['no operator'], 'filters: invalid filter "no operator": expected key=value, key!=value, key~regex or key!~regex'],
      [['release~(unclosed'], 'filters: invalid filter "release~(unclosed": bad regular expression'],
    ])('refuses %j', (filters, message) => {
      expect(failure({ filters })).toMatchObject({ setting: 'filters', message });
    });
  });

  describe('integers', () => {
    it('take numbers, or digits as text', () => {
      expect(parse({ max: 2, concurrency: '16', attempts: 5, jsonDepth: '7' })).toMatchObject({
        max: 2,
        concurrency: 16,
        attempts: 5,
        limits: { jsonDepth: 7 },
      });
    });

    it.each([
      ['max', 0, 'max: 0 is not an integer from 1 to 1000'],
      ['max', 1001, 'max: 1001 is not an integer from 1 to 1000'],
      ['max', '1.5', 'max: "1.5" is not an integer from 1 to 1000'],
      ['concurrency', 0, 'concurrency: 0 is not an integer from 1 to 10000'],
      ['concurrency', 10_001, 'concurrency: 10001 is not an integer from 1 to 10000'],
      ['attempts', 0, 'attempts: 0 is not an integer from 1 to 100'],
      ['indexBytes', -1, 'indexBytes: -1 is not an integer from 1 to 67108864'],
      ['productsBytes', 2.5, 'productsBytes: 2.5 is not an integer from 1 to 1073741824'],
      ['runBytes', 'lots', 'runBytes: "lots" is not an integer from 1 to 17179869184'],
      ['jsonDepth', true, 'jsonDepth: true is not an integer from 1 to 1000'],
      ['keepGenerations', 0, 'keepGenerations: 0 is not an integer from 1 to 11'],
      ['channel', 'Stable', 'channel: "Stable" is not a channel name (lower-case letters, digits and dashes, starting with a letter, at most 32)'],
      ['channel', '../x', 'channel: "../x" is not a channel name (lower-case letters, digits and dashes, starting with a letter, at most 32)'],
    ] as const)('refuses %s %j', (setting, value, message) => {
      expect(failure({ [setting]: value })).toMatchObject({ setting, message });
    });
  });

  describe('durations', () => {
    it("count a bare number in the entry point's unit, and take units as text", () => {
      expect(parse({ pruneGrace: '90' }).pruneGraceMs).toBe(90_000);
      expect(parse({ pruneGrace: '2h', lockTtl: '10m', itemIdleTimeout: '30s' })).toMatchObject({
        pruneGraceMs: 2 * HOUR,
        lockTtlMs: 600_000,
        itemIdleTimeoutMs: 30_000,
      });
      expect(parse({ pruneGrace: 3 }, { ...plain, durationUnit: 'h' }).pruneGraceMs).toBe(3 * HOUR);
      expect(parse({ pruneGrace: '3' }, { ...plain, durationUnit: 'h' }).pruneGraceMs).toBe(3 * HOUR);
      expect(parse({ pruneGrace: '250' }, { ...plain, durationUnit: 'ms' }).pruneGraceMs).toBe(250);
    });

    it('take the minimum item rate as bytes a second or with a unit, and its window as a duration', () => {
      expect(parse({ minItemRate: '64KiB/s', minItemRateWindow: '200ms' }).minItemRate).toEqual({ bytesPerSecond: 64 * 1024, windowMs: 200 });
      expect(parse({ minItemRate: 1000 }).minItemRate.bytesPerSecond).toBe(1000);
      expect(parse({ minItemRate: '1MiB' }).minItemRate.bytesPerSecond).toBe(1024 * 1024);
      expect(parse({ minItemRate: '0' }).minItemRate.bytesPerSecond).toBe(0);
      expect(failure({ minItemRate: 'fast' })).toMatchObject({ setting: 'minItemRate', message: expect.stringContaining('"fast" is not a rate like 32KiB/s') });
      expect(failure({ minItemRate: '2GiB/s' })).toMatchObject({ setting: 'minItemRate' });
      expect(failure({ minItemRateWindow: '10ms' }, { ...plain, durationUnit: 'ms' })).toMatchObject({ setting: 'minItemRateWindow' });
    });

    it('allow a prune grace of zero', () => {
      expect(parse({ pruneGrace: '0' }).pruneGraceMs).toBe(0);
    });

    it.each([
      ['pruneGrace', 'soon', 's', 'pruneGrace: "soon" is not a duration like 90s, 15m or 1h (a bare number counts seconds)'],
      ['pruneGrace', '400d', 's', 'pruneGrace: "400d" is not from 0 hours to 8760 hours'],
      ['pruneGrace', -1, 'h', 'pruneGrace: -1 is not an integer number of hours from 0 to 8760'],
      ['pruneGrace', 1.5, 'h', 'pruneGrace: 1.5 is not an integer number of hours from 0 to 8760'],
      ['lockTtl', '5s', 's', 'lockTtl: "5s" is not from 10 seconds to 24 hours'],
      ['itemIdleTimeout', '2h', 's', 'itemIdleTimeout: "2h" is not from 1 second to 1 hour'],
      ['itemIdleTimeout', {}, 'ms', 'itemIdleTimeout: {} is not a duration like 90s, 15m or 1h (a bare number counts milliseconds)'],
    ] as const)('refuses %s %j (bare numbers in %s)', (setting, value, durationUnit, message) => {
      expect(failure({ [setting]: value }, { ...plain, durationUnit })).toMatchObject({ setting, message });
    });

    it('hold a CDN-served mirror to its minimum grace, saying why', () => {
      const entry = { ...plain, durationUnit: 'h' as const, edge: { minPruneGraceMs: 2 * HOUR, reason: 'the edge keeps metadata' } };

      expect(failure({ pruneGrace: 1 }, entry).message).toBe('pruneGrace: 1 is shorter than the minimum of 2 hours: the edge keeps metadata');
      expect(parse({ pruneGrace: 2 }, entry).pruneGraceMs).toBe(2 * HOUR);
    });
  });

  describe('booleans', () => {
    it.each([
      [true, true],
      ['true', true],
      [false, false],
      ['false', false],
    ])('read allowCrossHostRedirects %j as %s', (value, expected) => {
      expect(parse({ allowCrossHostRedirects: value }).allowCrossHostRedirects).toBe(expected);
    });

    it('refuses anything else', () => {
      expect(failure({ allowCrossHostRedirects: 'yes' }).message).toBe('allowCrossHostRedirects: "yes" is not true or false');
      expect(failure({ verify: 1 }).message).toBe('verify: 1 is not true or false');
    });
  });

  describe('naming', () => {
    // The same mistake, in the words of each entry point's user.
    const cli: EntryPoint = { name: namesFrom({ pruneGrace: '--prune-grace', filters: '--filter' }), durationUnit: 's', backend: 'embedded' };
    const env: EntryPoint = {
      name: namesFrom({ pruneGrace: 'SKYSTREAMS_PRUNE_GRACE_HOURS', filters: 'SKYSTREAMS_FILTERS' }, 'environment variable '),
      durationUnit: 'h',
      backend: 'cloud',
    };
    const cdk: EntryPoint = {
      name: (setting, item) => `cdk.json: ${setting === 'pruneGrace' ? 'pruneGraceHours' : setting}${item === undefined ? '' : `[${item}]`}`,
      durationUnit: 'h',
      backend: 'cloud',
    };

    it.each([
      [cli, '--prune-grace: "soon" is not a duration'],
      [env, 'environment variable SKYSTREAMS_PRUNE_GRACE_HOURS: "soon" is not a duration'],
      [cdk, 'cdk.json: pruneGraceHours: "soon" is not a duration'],
    ])('names the setting as the entry point does (%#)', (entry, start) => {
      expect(failure({ pruneGrace: 'soon' }, entry).message.startsWith(start)).toBe(true);
    });

    it('names a list item where the entry point numbers them', () => {
      expect(failure({ filters: ['arch=amd64', 'x'] }, cdk).message).toMatch(/^cdk\.json: filters\[1\]: invalid filter "x"/);
      expect(failure({ filters: ['arch=amd64', 'x'] }, cli).message).toMatch(/^--filter: invalid filter "x"/);
    });
  });
});

describe('Function: engineSettings', () => {
  it('hands the engine every validated setting and the loaded keyring', () => {
    const config = parse({ filters: ['arch=amd64'], max: 1, concurrency: 2, pruneGrace: '0', lockTtl: '1m', attempts: 4, channel: 'candidate', keepGenerations: '3' });
    const keyring = { fingerprints: ['F'] } as never;

    expect(engineSettings(config, keyring)).toEqual({
      keyring,
      selection: { filters: config.filters, max: 1 },
      concurrency: 2,
      pruneGraceMs: 0,
      lockTtlMs: 60_000,
      attempts: 4,
      limits: config.limits,
      channel: 'candidate',
      keepGenerations: 3,
      rangedCopy: config.rangedCopy,
      resign: false,
      modeChange: 'refuse',
    });
    expect(engineSettings(parse({}), undefined).selection).toEqual({ filters: [] });
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
    expect(() => parseDuration('--interval', '0s')).toThrow(ConfigError);
    expect(() => parseDuration('--interval', '0s')).toThrow(/^--interval: "0s" is not a duration like 90s/);
    expect(parseDuration('--prune-grace', '0', { allowZero: true })).toBe(0);
  });
});

describe('Function: describeDuration', () => {
  it.each([
    [2 * HOUR, '2 hours'],
    [HOUR, '1 hour'],
    [90 * 60_000, '90 minutes'],
    [10_000, '10 seconds'],
    [250, '250 ms'],
  ])('words %d ms as %s', (ms, text) => {
    expect(describeDuration(ms)).toBe(text);
  });
});

describe('Module: validators', () => {
  const thrown = (work: () => unknown): Error => {
    try {
      work();
    } catch (error) {
      return error as Error;
    }
    throw new Error('expected a failure');
  };
  const fail = (problem: string): never => {
    throw new ConfigError(`x: ${problem}`);
  };

  it('words a channel name the same for a sync setting and for a command-line channel', () => {
    const fromSettings = thrown(() => parseSyncConfig({ source: SOURCE, keyring: 'k.gpg', channel: 'Stable' }, plain));
    const fromCommand = thrown(() => channelName('Stable', 'channel'));

    expect(fromSettings).toBeInstanceOf(SettingError);
    expect(fromCommand).toBeInstanceOf(ConfigError);
    expect(fromCommand.message).toBe(fromSettings.message);
  });

  it('reads true and false as booleans or as text, absent as the fallback, and nothing else', () => {
    expect([true, 'true', false, 'false', undefined, null].map((value) => booleanOf(value, true, fail))).toEqual([true, true, false, false, true, true]);
    expect(thrown(() => booleanOf('yes', false, fail)).message).toBe('x: "yes" is not true or false');
  });

  it('names the first unknown key and lists the known ones', () => {
    const error = thrown(() => rejectUnknownKeys({ a: 1, typo: 2 }, ['a', 'b'], (key, problem) => fail(`${key}: ${problem}`)));

    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe('x: typo: unknown setting (known: a, b)');
  });
});
