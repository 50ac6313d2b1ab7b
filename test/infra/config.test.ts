import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.ts';
import { matchesAll } from '../../functions/core/filters.ts';
import { SettingError, type SyncConfig } from '../../functions/core/settings.ts';
import { syncConfig, type SyncFlags } from '../../functions/local/options.ts';
import { bundledSourceKeyring, ENV, readSyncEnvironment, syncEnvironment } from '../../functions/adapters/lambda/environment.ts';
import { loadConfig, MIN_PRUNE_GRACE_HOURS, parseConfig } from '../../infra/config.ts';
import { METADATA_MAX_TTL_SECONDS } from '../../infra/edge-cache.ts';
import { cdkJsonContext } from './synth.ts';

const ARMORED = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n';
const UBUNTU_KEYRING = '/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'skystreams-config-'));
  writeFileSync(join(dir, 'keyring.gpg'), new Uint8Array([0x99, 0x01, 0x0d]));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const minimal = (extra: Record<string, unknown> = {}) => ({
  sourceUrl: 'https://images.maas.io/ephemeral-v3/stable/',
  keyring: { file: 'keyring.gpg' },
  ...extra,
});
const parse = (raw: unknown) => parseConfig(raw, { baseDir: dir, origin: 'test' });
const problemOf = (raw: unknown): string => {
  try {
    parse(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('Function: parseConfig', () => {
  it('fills every optional setting from the defaults', () => {
    const config = parse(minimal());

    expect(config.sync).toMatchObject({
      source: 'https://images.maas.io/ephemeral-v3/stable/',
      keyring: { file: 'keyring.gpg' },
      filters: [],
      max: undefined,
      concurrency: 8,
      pruneGraceMs: 24 * 3_600_000,
    });
    expect(config).toMatchObject({
      scheduleMinutes: 5,
      accessControl: { allowedCidrs: [], basicAuth: false },
      alarms: { staleAfterChecks: 24, dashboard: false },
      customDomain: undefined,
      maasKeyringPath: '/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg',
    });
    expect(config.keyring).toEqual(new Uint8Array([0x99, 0x01, 0x0d]));
    expect(config.keyringSource).toBe(join(dir, 'keyring.gpg'));
  });

  it("accepts cdk.json's default config once its keyring exists", () => {
    const { skystreams } = cdkJsonContext();

    const config = parse({ ...skystreams, keyring: { file: 'keyring.gpg' } });

    expect(config.sync.filters.map((filter) => filter.source)).toEqual(['arch=amd64']);
    expect(config.sync.max).toBe(1);
  });

  it.skipIf(existsSync(UBUNTU_KEYRING))("synths cdk.json's default config without the Ubuntu keyring, bundling none", () => {
    const { skystreams } = cdkJsonContext();

    const config = parse(skystreams);

    expect(config.keyring).toBeUndefined();
    expect(config.keyringSource).toBe(UBUNTU_KEYRING);
  });

  it('builds the dashboard only when alarms.dashboard is true', () => {
    expect(parse(minimal({ alarms: { dashboard: true } })).alarms).toEqual({ staleAfterChecks: 24, staleAfterDays: 14, dashboard: true });
    expect(parse(minimal({ alarms: { email: 'ops@example.com' } })).alarms.dashboard).toBe(false);
  });

  it('turns the frozen-upstream alarm off with alarms.staleAfterDays 0, and names the setting when it is out of range', () => {
    expect(parse(minimal({ alarms: { staleAfterDays: 0 } })).alarms.staleAfterDays).toBe(0);
    expect(() => parse(minimal({ alarms: { staleAfterDays: 400 } }))).toThrow(/alarms\.staleAfterDays/);
  });

  it('adds the trailing slash the engine resolves index paths against', () => {
    expect(parse(minimal({ sourceUrl: 'http://mirror.internal/maas/stable' })).sync.source).toBe('http://mirror.internal/maas/stable/');
  });

  it('takes an inline ASCII-armored keyring', () => {
    const config = parse(minimal({ keyring: { armored: ARMORED } }));

    expect(new TextDecoder().decode(config.keyring)).toBe(ARMORED);
    expect(config.keyringSource).toBe('keyring.armored');
  });

  it.each([
    [{ sourceUrl: 'ftp://example.com/' }, /^test: sourceUrl: ftp:\/\/example\.com\/: only http:\/\/ and https:\/\/ are supported$/],
    [{ sourceUrl: 'https://example.com/maas?token=1' }, /^test: sourceUrl: https:\/\/example\.com\/maas\?token=1: must not have a query string or fragment$/],
    [{ sourceUrl: 'https://user:pw@example.com/' }, /^test: sourceUrl: https:\/\/\*\*\*@example\.com\/: must not embed credentials \(they would end up in Lambda/],
    [{ keyring: { file: 'missing.gpg' } }, /^test: keyring: .*missing\.gpg cannot be read \(ENOENT\)\. Install the ubuntu-cloudimage-keyring package/],
    [{ keyring: { file: 'keyring.gpg', armored: ARMORED } }, /^test: keyring: set exactly one of "file" and "armored"/],
    [{ keyring: { armored: 'not a key' } }, /^test: keyring: armored: expected an ASCII-armored public key block/],
    [{ keyring: { path: 'x' } }, /^test: keyring: path: unknown setting/],
    [{ filters: 'arch=amd64' }, /^test: filters: expected an array/],
    [{ filters: ['arch=amd64', 'no operator'] }, /^test: filters\[1\]: invalid filter "no operator"/],
    [{ filters: ['release~(unclosed'] }, /^test: filters\[0\]: .*bad regular expression/],
    [{ max: 0 }, /^test: max: 0 is not an integer from 1 to 1000/],
    [{ scheduleMinutes: 2.5 }, /^test: scheduleMinutes: 2\.5 is not an integer/],
    [{ copyConcurrency: 20_000 }, /^test: copyConcurrency: 20000 is not an integer from 1 to 10000/],
    [{ pruneGraceHours: -1 }, /^test: pruneGraceHours: -1 is not an integer number of hours from 0 to 8760$/],
    [{ accessControl: { allowedCidrs: ['10.0.0.0/33'] } }, /^test: accessControl\.allowedCidrs\[0\]: "10\.0\.0\.0\/33" is not an IPv4 or IPv6 CIDR/],
    [{ accessControl: { allowedCidrs: ['2001:db8:::/32'] } }, /^test: accessControl\.allowedCidrs\[0\]/],
    [{ accessControl: { basicAuth: 'yes' } }, /^test: accessControl\.basicAuth: "yes" is not true or false/],
    [{ alarms: { email: 'ops' } }, /^test: alarms\.email: ops is not an e-mail address/],
    [{ alarms: { topicArn: 'arn:aws:sqs:eu-west-1:123456789012:q' } }, /^test: alarms\.topicArn: .* is not an SNS topic ARN/],
    [{ alarms: { staleAfterChecks: 300 } }, /^test: alarms\.staleAfterChecks: 300 checks every 5 minutes exceed the 24 hours/],
    [{ alarms: { dashboard: 'yes' } }, /^test: alarms\.dashboard: "yes" is not true or false/],
    [
      { customDomain: { domainName: 'mirror.example.com', certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/x' } },
      /^test: customDomain\.certificateArn: expected an ACM certificate ARN in us-east-1/,
    ],
    [{ customDomain: { domainName: 'not a name', certificateArn: 'x' } }, /^test: customDomain\.domainName: "not a name" is not a DNS name/],
    [{ maasKeyringPath: 'relative.gpg' }, /^test: maasKeyringPath: expected an absolute path/],
    [{ signingKeySecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:k-AbCdEf' }, /^test: signingKeySecretArn: only used with "resign": true/],
    [{ resign: true, signingKeySecretArn: 'my-secret' }, /^test: signingKeySecretArn: "my-secret" is not a Secrets Manager secret ARN/],
    [{ resign: 'yes' }, /^test: resign: "yes" is not true or false/],
    [{ resign: true, maasKeyringPath: UBUNTU_KEYRING }, /^test: maasKeyringPath: a re-signed mirror is verified with its own keyring/],
    [{ schedule: 'rate(5 minutes)' }, /^test: schedule: unknown setting \(known: sourceUrl, keyring,/],
  ])('rejects %j naming the setting', (override, message) => {
    expect(problemOf({ ...minimal(), ...override })).toMatch(message);
  });
});

describe('Setting: resign', () => {
  it('is off by default; on, it takes an existing secret for the signing keys or leaves the stack to create one', () => {
    expect(parse(minimal()).sync.resign).toBe(false);
    expect(parse(minimal({ resign: true }))).toMatchObject({
      sync: { resign: true },
      signingKeySecretArn: undefined,
      // MAAS is pointed at the mirror's own keyring, never written over the Ubuntu one.
      maasKeyringPath: '/var/snap/maas/common/skystreams-keyring.gpg',
    });
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:skystreams-signing-AbCdEf';
    expect(parse(minimal({ resign: true, signingKeySecretArn: arn })).signingKeySecretArn).toBe(arn);
  });
});

describe('Setting: sources', () => {
  const sources = [
    { name: 'maas', url: 'https://images.maas.io/ephemeral-v3/stable', keyring: 'keyring.gpg', filters: ['arch=amd64'], max: 1, priority: 10 },
    { name: 'site', url: 'https://images.example.com/maas/', keyring: { armored: ARMORED } },
  ];

  it('merges several sources into one re-signed stream, each keyring bundled under its own name, round trip through the Lambda environment', () => {
    const config = parse({ sources });
    expect(config.sync.resign).toBe(true);
    expect(config.sync.sources?.map(({ name, url, max, priority }) => ({ name, url, max, priority }))).toEqual([
      { name: 'maas', url: 'https://images.maas.io/ephemeral-v3/stable/', max: 1, priority: 10 },
      { name: 'site', url: 'https://images.example.com/maas/', max: undefined, priority: 0 },
    ]);
    expect([...config.sourceKeyrings.keys()]).toEqual(['maas', 'site']);
    expect(config.sourceKeyrings.get('maas')).toEqual(new Uint8Array([0x99, 0x01, 0x0d]));
    expect(config.keyring).toBeUndefined();

    const environment: Record<string, string> = { ...syncEnvironment(config.sync), [ENV.bucket]: 'b', [ENV.table]: 't' };
    expect(environment[ENV.sourceUrl]).toBeUndefined();
    const { sync } = readSyncEnvironment(environment);
    expect(sync.sources?.map((source) => [source.name, source.url, source.keyring, source.filters.map((f) => f.source), source.max, source.priority])).toEqual([
      ['maas', 'https://images.maas.io/ephemeral-v3/stable/', { file: bundledSourceKeyring('maas') }, ['arch=amd64'], 1, 10],
      ['site', 'https://images.example.com/maas/', { file: bundledSourceKeyring('site') }, [], undefined, 0],
    ]);
    expect(sync.resign).toBe(true);
  });

  it('names the source and field of a mistake, and refuses the single-source settings beside it', () => {
    expect(problemOf({ sources: [{ ...sources[0], url: 'ftp://x/' }] })).toBe('test: sources[0].url: ftp://x/: only http:// and https:// are supported');
    expect(problemOf({ sources: [sources[0], { ...sources[1], name: 'maas' }] })).toBe('test: sources[1].name: "maas" names another source too');
    expect(problemOf({ sources: [{ ...sources[0], keyring: 'absent.gpg' }] })).toContain('test: sources[0].keyring');
    expect(problemOf({ sources: [{ ...sources[0], priority: 1.5 }] })).toBe('test: sources[0].priority: 1.5 is not an integer from -1000000 to 1000000');
    expect(problemOf({ ...minimal(), sources })).toMatch(/^test: sources: lists the sources, so test: sourceUrl cannot be given too/);
    expect(problemOf({ sources, resign: false })).toMatch(/^test: resign: is false, but test: sources merges sources/);
    expect(problemOf({ sources: [] })).toBe('test: sources: expected 1 to 32 sources, found 0');
    expect(problemOf({ sources: [{ ...sources[0], name: 'uploads' }] })).toBe('test: sources[0].name: "uploads" is reserved for the images `skystreams upload` adds');
  });
});

describe('Sync settings', () => {
  it('are checked by settings.ts and named as this config names them', () => {
    const error = (() => {
      try {
        parse(minimal({ copyConcurrency: 0 }));
      } catch (caught) {
        return caught;
      }
    })();

    expect(error).toBeInstanceOf(SettingError);
    expect(error).toMatchObject({ setting: 'concurrency', message: 'test: copyConcurrency: 0 is not an integer from 1 to 10000' });
  });
});

describe('Entry points: the CDK config, the CLI flags and the Lambda environment', () => {
  /** What a deployment's sync functions run with: the config, written to their environment by infra, read back there. */
  const throughLambda = (sync: SyncConfig): SyncConfig =>
    readSyncEnvironment({ ...syncEnvironment(sync), [ENV.bucket]: 'b', [ENV.table]: 't' }).sync;
  const cloudFlags = (extra: Partial<SyncFlags>): SyncFlags => ({ bucket: 'b', table: 't', verify: true, filter: [], ...extra });
  /** The keyring is bundled beside the functions under its own name; a Lambda makes one attempt per item (Step Functions retries). */
  const asDeployed = (config: SyncConfig): SyncConfig => ({ ...config, keyring: { file: 'keyring.gpg' }, attempts: 1 });

  it('resolve the same settings from the same inputs', () => {
    const keyring = join(dir, 'keyring.gpg');
    const cdk = parse({
      sourceUrl: 'https://mirror.example/maas/',
      keyring: { file: keyring },
      filters: ['arch=amd64', 'release~^(noble)?$'],
      max: 2,
      copyConcurrency: 8,
      pruneGraceHours: 36,
      channel: 'candidate',
      keepGenerations: 3,
    }).sync;
    const cli = syncConfig(
      cloudFlags({
        source: 'https://mirror.example/maas/',
        keyring,
        filter: ['arch=amd64', 'release~^(noble)?$'],
        max: '2',
        concurrency: '8',
        pruneGrace: '36h',
        channel: 'candidate',
        keepGenerations: '3',
      }),
    );
    const lambda = throughLambda(cdk);

    expect(cli).toEqual(cdk);
    expect(lambda).toEqual(asDeployed(cdk));
    expect(lambda.filters.map((filter) => filter.source)).toEqual(['arch=amd64', 'release~^(noble)?$']);
  });

  it('fill what is not given from the one default set, but for the prune grace a CDN needs', () => {
    const cdk = parse({ keyring: { file: 'keyring.gpg' } }).sync;
    const cli = syncConfig(cloudFlags({ keyring: join(dir, 'keyring.gpg') }));

    expect({ ...cli, keyring: cdk.keyring, pruneGraceMs: cdk.pruneGraceMs }).toEqual(cdk);
    expect(cli.pruneGraceMs).toBe(3_600_000);
    expect(cdk.pruneGraceMs).toBe(24 * 3_600_000);
    expect(throughLambda(cdk)).toEqual(asDeployed(cdk));
  });

  it("keep cdk.json's selection: amd64 only, the newest version, bootloaders included", () => {
    const { skystreams } = cdkJsonContext();
    const deployed = throughLambda(parse({ ...skystreams, keyring: { file: 'keyring.gpg' } }).sync);
    const pxelinux = { arch: 'amd64', os: 'pxelinux', 'bootloader-type': 'pxe', ftype: 'archive.tar.xz' };
    const arm64Squashfs = { arch: 'arm64', os: 'ubuntu', release: 'noble', ftype: 'squashfs' };

    expect(matchesAll(deployed.filters, pxelinux)).toBe(true);
    expect(matchesAll(deployed.filters, arm64Squashfs)).toBe(false);
    expect(deployed.max).toBe(1);
  });
});

describe('Setting: pruneGraceHours', () => {
  it('requires the edge metadata TTL plus an hour for an import in progress', () => {
    expect(MIN_PRUNE_GRACE_HOURS * 3_600).toBeGreaterThanOrEqual(METADATA_MAX_TTL_SECONDS + 3_600);
    expect(MIN_PRUNE_GRACE_HOURS).toBe(2);
  });

  it.each([0, MIN_PRUNE_GRACE_HOURS - 1])('refuses %i hours, naming the minimum and why', (hours) => {
    const problem = problemOf(minimal({ pruneGraceHours: hours }));

    expect(problem).toMatch(new RegExp(`^test: pruneGraceHours: ${hours} is shorter than the minimum of ${MIN_PRUNE_GRACE_HOURS} hours: `));
    expect(problem).toContain(`metadata for up to ${METADATA_MAX_TTL_SECONDS / 60} minutes (the /streams/* max TTL)`);
    expect(problem).toContain('a MAAS import');
  });

  it('accepts the minimum', () => {
    expect(parse(minimal({ pruneGraceHours: MIN_PRUNE_GRACE_HOURS })).sync.pruneGraceMs).toBe(MIN_PRUNE_GRACE_HOURS * 3_600_000);
  });

  it('defaults to a day, which is at least the minimum', () => {
    expect(parse(minimal()).sync.pruneGraceMs).toBe(24 * 3_600_000);
    expect(24).toBeGreaterThanOrEqual(MIN_PRUNE_GRACE_HOURS);
  });

  it("accepts cdk.json's grace", () => {
    const { skystreams } = cdkJsonContext();

    expect(parse({ ...skystreams, keyring: { file: 'keyring.gpg' } }).sync.pruneGraceMs).toBeGreaterThanOrEqual(MIN_PRUNE_GRACE_HOURS * 3_600_000);
  });
});

describe('Function: loadConfig', () => {
  it('reads the file skystreamsConfigFile names, resolving the keyring next to it', () => {
    // Prepare
    const file = join(dir, 'mirror.json');
    writeFileSync(file, JSON.stringify(minimal({ filters: ['release=noble'] })));

    // Act
    const config = loadConfig({ context: { sourceUrl: 'ignored' }, configFile: 'mirror.json', baseDir: dir });

    // Assess
    expect(config.sync.filters.map((filter) => filter.source)).toEqual(['release=noble']);
    expect(config.keyringSource).toBe(join(dir, 'keyring.gpg'));
  });

  it('names the file when it is missing or not JSON', () => {
    writeFileSync(join(dir, 'broken.json'), '{ nope');

    const absent = () => loadConfig({ context: undefined, configFile: 'absent.json', baseDir: dir });
    const broken = () => loadConfig({ context: undefined, configFile: 'broken.json', baseDir: dir });

    expect(absent).toThrow(ConfigError);
    expect(absent).toThrow(`skystreamsConfigFile: ${join(dir, 'absent.json')} does not exist`);
    expect(broken).toThrow(ConfigError);
    expect(broken).toThrow(`skystreamsConfigFile: ${join(dir, 'broken.json')} is not valid JSON: `);
  });

  it('names cdk.json as the origin of context settings', () => {
    const attempt = () => loadConfig({ context: { ...minimal(), max: 'one' }, baseDir: dir });

    expect(attempt).toThrow(SettingError);
    expect(attempt).toThrow(/^cdk\.json context "skystreams": max: /);
  });
});

describe('App: infra/app.ts', () => {
  it('fails the synth with one line naming the setting', async () => {
    // Prepare: the cdk CLI hands context to the app in CDK_CONTEXT_JSON.
    const bad = { ...minimal({ keyring: { file: join(dir, 'keyring.gpg') } }), copyConcurrency: 0 };
    const app = fileURLToPath(new URL('../../infra/app.ts', import.meta.url));
    const outdir = mkdtempSync(join(tmpdir(), 'skystreams-app-'));

    // Act
    const failure = await promisify(execFile)(process.execPath, [app], {
      env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify({ skystreams: bad }), CDK_OUTDIR: outdir },
    }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    rmSync(outdir, { recursive: true, force: true });

    // Assess
    expect(failure?.code).toBe(1);
    expect(failure?.stderr.trim()).toBe(
      'skystreams: invalid configuration: cdk.json context "skystreams": copyConcurrency: 0 is not an integer from 1 to 10000',
    );
  });

  it('synthesizes cdk.json\'s own configuration, cdk-nag finding nothing, as cdk synth runs it (bundling aside)', async () => {
    // Prepare: cdk.json's context as the cdk CLI hands it over, with bundling off (the pipeline test runs the bundles).
    const { flags, skystreams } = cdkJsonContext();
    const context = { ...flags, skystreams, 'aws:cdk:bundling-stacks': [] };
    const app = fileURLToPath(new URL('../../infra/app.ts', import.meta.url));
    const outdir = mkdtempSync(join(tmpdir(), 'skystreams-app-'));

    // Act
    const run = await promisify(execFile)(process.execPath, [app], {
      env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify(context), CDK_OUTDIR: outdir },
    }).then(
      ({ stderr }) => ({ code: 0, stderr }),
      (error: { code: number; stderr: string }) => error,
    );
    const template = existsSync(join(outdir, 'Skystreams.template.json'));
    rmSync(outdir, { recursive: true, force: true });

    // Assess
    expect(run).toMatchObject({ code: 0 });
    expect(template).toBe(true);
  });
});
