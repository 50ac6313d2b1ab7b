/**
 * The settings a Lambda handler gets from its environment: the names are
 * shared with the CDK constructs that set them, and each reader fails with
 * a ConfigError naming the variable.
 */
import { ConfigError } from '../../core/errors.ts';

/** Environment variable names, set by infra/constructs and read here only. */
export const ENV = {
  bucket: 'SKYSTREAMS_BUCKET',
  table: 'SKYSTREAMS_TABLE',
  sourceUrl: 'SKYSTREAMS_SOURCE_URL',
  /** JSON array of filter expressions. */
  filters: 'SKYSTREAMS_FILTERS',
  /** Positive integer, or empty for all versions. */
  max: 'SKYSTREAMS_MAX',
  pruneGraceHours: 'SKYSTREAMS_PRUNE_GRACE_HOURS',
  /** Path of the upstream keyring; relative paths resolve against the bundle directory. */
  keyringFile: 'SKYSTREAMS_KEYRING_FILE',
  stateMachineArn: 'SKYSTREAMS_STATE_MACHINE_ARN',
} as const;

/** The file name the keyring is bundled under, next to the handler's code. */
export const BUNDLED_KEYRING = 'keyring.gpg';

type Environment = Readonly<Record<string, string | undefined>>;

export interface StoreSettings {
  bucket: string;
  table: string;
}

export interface SyncEnvironment extends StoreSettings {
  sourceUrl: string;
  filters: string[];
  max: number | undefined;
  pruneGraceMs: number;
  keyringFile: string;
}

export function readStoreSettings(env: Environment = process.env): StoreSettings {
  return { bucket: required(env, ENV.bucket), table: required(env, ENV.table) };
}

export function readSyncEnvironment(env: Environment = process.env): SyncEnvironment {
  const max = env[ENV.max];
  return {
    ...readStoreSettings(env),
    sourceUrl: required(env, ENV.sourceUrl),
    filters: stringArray(env, ENV.filters),
    max: max === undefined || max === '' ? undefined : nonNegativeInteger(ENV.max, max, 1),
    pruneGraceMs: nonNegativeInteger(ENV.pruneGraceHours, required(env, ENV.pruneGraceHours), 0) * 3_600_000,
    keyringFile: env[ENV.keyringFile] || BUNDLED_KEYRING,
  };
}

export function readStateMachineArn(env: Environment = process.env): string {
  return required(env, ENV.stateMachineArn);
}

function required(env: Environment, name: string): string {
  const value = env[name];
  if (value === undefined || value === '') throw new ConfigError(`environment variable ${name} is not set`);
  return value;
}

function nonNegativeInteger(name: string, value: string, min: number): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < min) throw new ConfigError(`environment variable ${name}: ${JSON.stringify(value)} is not an integer ≥ ${min}`);
  return number;
}

function stringArray(env: Environment, name: string): string[] {
  const value = env[name];
  if (value === undefined || value === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new ConfigError(`environment variable ${name}: not JSON`);
  }
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
    throw new ConfigError(`environment variable ${name}: expected a JSON array of strings`);
  }
  return parsed;
}

/** The environment infra sets for the sync functions, from the validated deployment config. */
export function syncEnvironment(settings: {
  sourceUrl: string;
  filters: readonly string[];
  max: number | undefined;
  pruneGraceHours: number;
}): Record<string, string> {
  return {
    [ENV.sourceUrl]: settings.sourceUrl,
    [ENV.filters]: JSON.stringify(settings.filters),
    [ENV.max]: settings.max === undefined ? '' : String(settings.max),
    [ENV.pruneGraceHours]: String(settings.pruneGraceHours),
    [ENV.keyringFile]: BUNDLED_KEYRING,
  };
}
