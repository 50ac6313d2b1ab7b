/**
 * The one deployment configuration: read from cdk.json's `skystreams` context
 * (or the JSON file `skystreamsConfigFile` names), validated before anything
 * is built. Every mistake is a ConfigError naming the setting, so `cdk synth`
 * fails with a message an operator can act on.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { keyringBytes } from '../functions/adapters/fs/keyring-file.ts';
import { ConfigError } from '../functions/core/errors.ts';
import {
  parseSyncConfig,
  RESIGNED_MAAS_KEYRING,
  UBUNTU_CLOUDIMAGE_KEYRING,
  type KeyringSource,
  type SettingKey,
  type SyncConfig,
} from '../functions/core/settings.ts';
import { booleanOf, integerWithin, objectOf, rejectUnknownKeys as rejectUnknown } from '../functions/core/validators.ts';
import { METADATA_MAX_TTL_SECONDS } from './edge-cache.ts';

export interface AccessControlConfig {
  /** IPv4 and IPv6 CIDRs the edge function lets through; empty: anyone. */
  readonly allowedCidrs: readonly string[];
  /** HTTP basic auth at the edge, users kept in a CloudFront KeyValueStore. */
  readonly basicAuth: boolean;
}

export interface AlarmConfig {
  /** E-mail subscribed to the alarm topic. */
  readonly email?: string;
  /** An existing SNS topic to notify as well. */
  readonly topicArn?: string;
  /** The mirror is stale when upstream has been ahead for this many consecutive checks. */
  readonly staleAfterChecks: number;
  /** Days after which the served upstream metadata counts as frozen; 0: no such alarm. */
  readonly staleAfterDays: number;
  /** A CloudWatch dashboard of runs, functions and the API ($3 a month beyond the account's first three). */
  readonly dashboard: boolean;
}

export interface CustomDomainConfig {
  readonly domainName: string;
  /** An ACM certificate in us-east-1 (CloudFront's region) covering `domainName`. */
  readonly certificateArn: string;
}

/** A validated configuration, keyring bytes included. */
export interface SkystreamsConfig {
  /** The sync settings: `sourceUrl`, `keyring`, `filters`, `max`, `copyConcurrency`, `pruneGraceHours`, `channel`, `keepGenerations`. */
  readonly sync: SyncConfig;
  /**
   * The upstream signing keyring (binary or ASCII-armored). Undefined only
   * when the default Ubuntu keyring path is absent on the synthesizing
   * machine: the stack then warns, and the sync functions refuse to run.
   */
  readonly keyring: Uint8Array | undefined;
  /** Where the keyring came from, for messages. */
  readonly keyringSource: string;
  /** Merged sources (`sources`): each one's keyring, by source name, bundled with the sync functions. */
  readonly sourceKeyrings: ReadonlyMap<string, Uint8Array>;
  readonly scheduleMinutes: number;
  readonly accessControl: AccessControlConfig;
  readonly alarms: AlarmConfig;
  readonly customDomain: CustomDomainConfig | undefined;
  /** Keyring path on the MAAS region controller, for the printed command. */
  readonly maasKeyringPath: string;
  /**
   * Re-signed mode (`resign: true`): an existing Secrets Manager secret with
   * the signing keys. @default undefined: the stack creates one
   */
  readonly signingKeySecretArn: string | undefined;
}

/**
 * How long a MAAS import keeps fetching the items a generation lists after
 * it read that generation's metadata.
 */
export const MAAS_IMPORT_MARGIN_SECONDS = 60 * 60;

/**
 * The shortest prune grace, in whole hours. A replaced generation's items
 * must outlive the longest an edge may still hand out its metadata (the
 * `/streams/*` max TTL), plus an import that started from that metadata.
 */
export const MIN_PRUNE_GRACE_HOURS = Math.ceil((METADATA_MAX_TTL_SECONDS + MAAS_IMPORT_MARGIN_SECONDS) / 3_600);

/** Defaults of the deployment's own settings (the sync settings' are in settings.ts); cdk.json sets only what differs from them. */
export const configDefaults = {
  scheduleMinutes: 5,
  accessControl: { allowedCidrs: [] as readonly string[], basicAuth: false },
  staleAfterChecks: 24,
  staleAfterDays: 14,
  dashboard: false,
  maasKeyringPath: UBUNTU_CLOUDIMAGE_KEYRING,
  /** Re-signed mode: where the region controllers keep the mirror's own keyring (never over the Ubuntu one). */
  resignedMaasKeyringPath: RESIGNED_MAAS_KEYRING,
} as const;

const TOP_LEVEL_KEYS = [
  'sourceUrl',
  'keyring',
  'filters',
  'max',
  'scheduleMinutes',
  'copyConcurrency',
  'pruneGraceHours',
  'accessControl',
  'alarms',
  'customDomain',
  'maasKeyringPath',
  'channel',
  'keepGenerations',
  'resign',
  'signingKeySecretArn',
  'sources',
] as const;

/** CloudWatch evaluates alarms over at most one day of 1-minute-or-longer periods. */
const MAX_ALARM_LOOKBACK_MINUTES = 24 * 60;

/** The sync settings as this config names them. */
const SYNC_SETTING_NAMES: Partial<Record<SettingKey, string>> = {
  source: 'sourceUrl',
  keyring: 'keyring',
  filters: 'filters',
  max: 'max',
  concurrency: 'copyConcurrency',
  pruneGrace: 'pruneGraceHours',
  resign: 'resign',
  sources: 'sources',
};

export interface ConfigSource {
  /** The `skystreams` context value. */
  context: unknown;
  /** The `skystreamsConfigFile` context value: a JSON file replacing `context`. */
  configFile?: unknown;
  /** Directory relative paths are resolved against (the one holding cdk.json). */
  baseDir: string;
}

/** Reads the config from CDK context, or the file it names, and validates it. */
export function loadConfig(source: ConfigSource): SkystreamsConfig {
  if (source.configFile === undefined || source.configFile === null || source.configFile === '') {
    return parseConfig(source.context, { baseDir: source.baseDir, origin: 'cdk.json context "skystreams"' });
  }
  if (typeof source.configFile !== 'string') {
    throw new ConfigError('skystreamsConfigFile: expected a path to a JSON file');
  }
  const file = resolve(source.baseDir, source.configFile);
  if (!existsSync(file)) throw new ConfigError(`skystreamsConfigFile: ${file} does not exist`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`skystreamsConfigFile: ${file} is not valid JSON: ${(error as Error).message}`);
  }
  return parseConfig(raw, { baseDir: dirname(file), origin: file });
}

/** Validates a raw config object; relative keyring paths resolve against `baseDir`. */
export function parseConfig(raw: unknown, options: { baseDir: string; origin?: string }): SkystreamsConfig {
  const origin = options.origin ?? 'config';
  const fail = (setting: string, problem: string): never => {
    throw new ConfigError(`${origin}: ${setting}: ${problem}`);
  };
  const root = asObject(raw, '(root)', fail);
  rejectUnknownKeys(root, TOP_LEVEL_KEYS, '', fail);

  const sync = parseSyncConfig(
    {
      source: root.sourceUrl,
      keyring: root.keyring,
      filters: root.filters,
      max: root.max,
      concurrency: root.copyConcurrency,
      pruneGrace: root.pruneGraceHours,
      channel: root.channel,
      keepGenerations: root.keepGenerations,
      resign: root.resign,
      sources: root.sources,
    },
    {
      name: (setting, item) => `${origin}: ${SYNC_SETTING_NAMES[setting] ?? setting}${item === undefined ? '' : `[${item}]`}`,
      durationUnit: 'h',
      backend: 'cloud',
      edge: {
        minPruneGraceMs: MIN_PRUNE_GRACE_HOURS * 3_600_000,
        reason:
          `CloudFront may serve a replaced generation's metadata for up to ${METADATA_MAX_TTL_SECONDS / 60} minutes (the /streams/* max TTL), ` +
          `and a MAAS import that started from it needs about ${MAAS_IMPORT_MARGIN_SECONDS / 3_600} hour more to fetch the items it lists; ` +
          'a shorter grace deletes those items under it',
      },
      refuseSourceCredentials: 'they would end up in Lambda environment variables',
    },
  );
  const { bytes: keyring, source: keyringSource } = sync.sources
    ? { bytes: undefined, source: `${origin}: sources` }
    : keyringToBundle(sync.keyring, options.baseDir, `${origin}: keyring`);
  const sourceKeyrings = new Map<string, Uint8Array>();
  for (const [i, source] of (sync.sources ?? []).entries()) {
    const label = `${origin}: sources[${i}].keyring`;
    const bundled = keyringToBundle(source.keyring, options.baseDir, label);
    if (!bundled.bytes) throw new ConfigError(`${label}: ${bundled.source} does not exist on this machine`);
    const { bytes } = bundled;
    sourceKeyrings.set(source.name, bytes);
  }
  const scheduleMinutes = optionalInteger(root.scheduleMinutes, 'scheduleMinutes', 1, 1_440, configDefaults.scheduleMinutes, fail);
  const maasKeyringPath =
    root.maasKeyringPath === undefined || root.maasKeyringPath === null
      ? sync.resign
        ? configDefaults.resignedMaasKeyringPath
        : configDefaults.maasKeyringPath
      : absolutePath(root.maasKeyringPath, 'maasKeyringPath', fail);

  const alarms = parseAlarms(root.alarms, fail);
  if (alarms.staleAfterChecks * scheduleMinutes > MAX_ALARM_LOOKBACK_MINUTES) {
    fail(
      'alarms.staleAfterChecks',
      `${alarms.staleAfterChecks} checks every ${scheduleMinutes} minutes exceed the ${MAX_ALARM_LOOKBACK_MINUTES / 60} hours a CloudWatch alarm can look back`,
    );
  }

  const signingKeySecretArn = parseSecretArn(root.signingKeySecretArn, sync.resign, fail);
  if (sync.resign && maasKeyringPath === UBUNTU_CLOUDIMAGE_KEYRING) {
    fail(
      'maasKeyringPath',
      `a re-signed mirror is verified with its own keyring (/keyring.gpg), which must not replace ${UBUNTU_CLOUDIMAGE_KEYRING}: ` +
        `name another path, or null for ${configDefaults.resignedMaasKeyringPath}`,
    );
  }

  return {
    sync,
    keyring,
    keyringSource,
    sourceKeyrings,
    scheduleMinutes,
    accessControl: parseAccessControl(root.accessControl, fail),
    alarms,
    customDomain: parseCustomDomain(root.customDomain, fail),
    maasKeyringPath,
    signingKeySecretArn,
  };
}

type Fail = (setting: string, problem: string) => never;

/** The keyring bytes to bundle with the sync functions; undefined when only the absent default was named. */
function keyringToBundle(
  source: KeyringSource | undefined,
  baseDir: string,
  label: string,
): { bytes: Uint8Array | undefined; source: string } {
  if (source === undefined) throw new ConfigError(`${label}: required`);
  if ('armored' in source) return { bytes: keyringBytes(source, label).bytes, source: 'keyring.armored' };
  const file = resolve(baseDir, source.file);
  // A fresh clone on a non-Ubuntu machine must still synth; what it deploys fails closed (see SkystreamsConfig.keyring).
  if (file === UBUNTU_CLOUDIMAGE_KEYRING && !existsSync(file)) return { bytes: undefined, source: file };
  return { bytes: keyringBytes({ file }, label).bytes, source: file };
}

function parseAccessControl(value: unknown, fail: Fail): AccessControlConfig {
  if (value === undefined || value === null) return configDefaults.accessControl;
  const setting = asObject(value, 'accessControl', fail);
  rejectUnknownKeys(setting, ['allowedCidrs', 'basicAuth'], 'accessControl.', fail);
  const allowedCidrs = setting.allowedCidrs ?? [];
  if (!Array.isArray(allowedCidrs)) return fail('accessControl.allowedCidrs', 'expected an array of CIDRs');
  allowedCidrs.forEach((cidr, i) => {
    if (typeof cidr !== 'string' || !isCidr(cidr)) {
      fail(`accessControl.allowedCidrs[${i}]`, `${JSON.stringify(cidr)} is not an IPv4 or IPv6 CIDR such as 203.0.113.0/24`);
    }
  });
  const basicAuth = booleanOf(setting.basicAuth, configDefaults.accessControl.basicAuth, (problem) => fail('accessControl.basicAuth', problem));
  return { allowedCidrs: allowedCidrs as string[], basicAuth };
}

function parseAlarms(value: unknown, fail: Fail): AlarmConfig {
  const { staleAfterChecks: defaultStaleAfterChecks, staleAfterDays: defaultStaleAfterDays, dashboard: defaultDashboard } = configDefaults;
  if (value === undefined || value === null) return { staleAfterChecks: defaultStaleAfterChecks, staleAfterDays: defaultStaleAfterDays, dashboard: defaultDashboard };
  const setting = asObject(value, 'alarms', fail);
  rejectUnknownKeys(setting, ['email', 'topicArn', 'staleAfterChecks', 'staleAfterDays', 'dashboard'], 'alarms.', fail);
  const email = optionalString(setting.email, 'alarms.email', fail);
  if (email !== undefined && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) fail('alarms.email', `${email} is not an e-mail address`);
  const topicArn = optionalString(setting.topicArn, 'alarms.topicArn', fail);
  if (topicArn !== undefined && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$/.test(topicArn)) {
    fail('alarms.topicArn', `${topicArn} is not an SNS topic ARN`);
  }
  const staleAfterChecks = optionalInteger(
    setting.staleAfterChecks,
    'alarms.staleAfterChecks',
    1,
    1_000,
    defaultStaleAfterChecks,
    fail,
  );
  const staleAfterDays = optionalInteger(setting.staleAfterDays, 'alarms.staleAfterDays', 0, 365, defaultStaleAfterDays, fail);
  const dashboard = booleanOf(setting.dashboard, defaultDashboard, (problem) => fail('alarms.dashboard', problem));
  return { ...(email && { email }), ...(topicArn && { topicArn }), staleAfterChecks, staleAfterDays, dashboard };
}

function parseCustomDomain(value: unknown, fail: Fail): CustomDomainConfig | undefined {
  if (value === undefined || value === null) return undefined;
  const setting = asObject(value, 'customDomain', fail);
  rejectUnknownKeys(setting, ['domainName', 'certificateArn'], 'customDomain.', fail);
  const { domainName, certificateArn } = setting;
  if (typeof domainName !== 'string' || !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i.test(domainName)) {
    fail('customDomain.domainName', `${JSON.stringify(domainName)} is not a DNS name`);
  }
  if (typeof certificateArn !== 'string' || !/^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate\/[\w-]+$/.test(certificateArn)) {
    fail('customDomain.certificateArn', 'expected an ACM certificate ARN in us-east-1 (CloudFront only uses certificates from there)');
  }
  return { domainName: domainName as string, certificateArn: certificateArn as string };
}

function asObject(value: unknown, setting: string, fail: Fail): Record<string, unknown> {
  return objectOf(value, (problem) => fail(setting, problem));
}

function rejectUnknownKeys(object: Record<string, unknown>, known: readonly string[], prefix: string, fail: Fail): void {
  rejectUnknown(object, known, (key, problem) => fail(`${prefix}${key}`, problem));
}

function optionalString(value: unknown, setting: string, fail: Fail): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') return fail(setting, 'expected a string');
  return value;
}

function parseSecretArn(value: unknown, resign: boolean, fail: Fail): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (!resign) return fail('signingKeySecretArn', 'only used with "resign": true');
  if (typeof value !== 'string' || !/^arn:aws[\w-]*:secretsmanager:[\w-]+:\d{12}:secret:.+$/.test(value)) {
    return fail('signingKeySecretArn', `${JSON.stringify(value)} is not a Secrets Manager secret ARN`);
  }
  return value;
}

function optionalInteger(value: unknown, setting: string, min: number, max: number, fallback: number, fail: Fail): number {
  return value === undefined || value === null ? fallback : integerIn(value, setting, min, max, fail);
}

function integerIn(value: unknown, setting: string, min: number, max: number, fail: Fail): number {
  return integerWithin(value, [min, max], (problem) => fail(setting, problem));
}

function absolutePath(value: unknown, setting: string, fail: Fail): string {
  if (typeof value !== 'string' || !value.startsWith('/')) return fail(setting, 'expected an absolute path');
  return value;
}

function isCidr(value: string): boolean {
  const [address = '', prefix, ...rest] = value.split('/');
  if (prefix === undefined || rest.length > 0 || !/^\d{1,3}$/.test(prefix)) return false;
  const bits = Number(prefix);
  if (address.includes(':')) return bits <= 128 && /^[0-9a-f:]+$/i.test(address) && isIpv6(address);
  const octets = address.split('.');
  return bits <= 32 && octets.length === 4 && octets.every((octet) => /^\d{1,3}$/.test(octet) && Number(octet) <= 255);
}

function isIpv6(address: string): boolean {
  const halves = address.split('::');
  if (halves.length > 2) return false;
  const groups = halves.flatMap((half) => (half === '' ? [] : half.split(':')));
  if (!groups.every((group) => /^[0-9a-f]{1,4}$/i.test(group))) return false;
  return halves.length === 2 ? groups.length < 8 : groups.length === 8;
}
