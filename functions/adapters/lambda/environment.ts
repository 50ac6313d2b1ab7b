/**
 * The settings a Lambda handler gets from its environment: the names are
 * shared with the CDK constructs that set them; the sync settings parse
 * through settings.ts, so every mistake is a ConfigError naming the variable.
 */
import { ConfigError } from '../../core/errors.ts';
import { integerWithin } from '../../core/validators.ts';
import { namesFrom, parseSyncConfig, syncDefaults, type EntryPoint, type SyncConfig } from '../../core/settings.ts';

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
  /** The channel a sync publishes to. */
  channel: 'SKYSTREAMS_CHANNEL',
  keepGenerations: 'SKYSTREAMS_KEEP_GENERATIONS',
  /** Path of the upstream keyring; relative paths resolve against the bundle directory. */
  keyringFile: 'SKYSTREAMS_KEYRING_FILE',
  /** `true`: publish the mirror's own metadata, re-signed. */
  resign: 'SKYSTREAMS_RESIGN',
  /**
   * JSON array of `{ name, url, keyring, filters, max, priority }`: several
   * sources merged into one re-signed stream, each keyring a file bundled
   * beside the handler (`bundledSourceKeyring`). Replaces the source URL,
   * keyring, filters and max.
   */
  sources: 'SKYSTREAMS_SOURCES',
  /** The secret with the signing keys: set on the signing (planning) function only. */
  signingSecret: 'SKYSTREAMS_SIGNING_SECRET',
  stateMachineArn: 'SKYSTREAMS_STATE_MACHINE_ARN',
  /** Optional, bytes: items larger are copied in ranged parts across invocations. @default syncDefaults.rangedCopy */
  rangedCopyThreshold: 'SKYSTREAMS_RANGED_COPY_THRESHOLD_BYTES',
  /** Optional, bytes per ranged part. @default syncDefaults.rangedCopy */
  copyPartSize: 'SKYSTREAMS_COPY_PART_BYTES',
  /**
   * Optional, milliseconds: caps what one copy invocation spends before it
   * hands back a continuation, below what its remaining time allows (tests
   * force it small). @default the remaining time less syncDefaults.copyInvocationReserveMs
   */
  copyBudgetMs: 'SKYSTREAMS_COPY_BUDGET_MS',
} as const;

/** The file name the keyring is bundled under, next to the handler's code. */
export const BUNDLED_KEYRING = 'keyring.gpg';

/** The file name one merged source's keyring is bundled under. */
export function bundledSourceKeyring(source: string): string {
  return `keyring-${source}.gpg`;
}

type Environment = Readonly<Record<string, string | undefined>>;

export interface StoreSettings {
  bucket: string;
  table: string;
  /** Only where the function signs. */
  signingSecret?: string;
}

export interface SyncEnvironment extends StoreSettings {
  sync: SyncConfig;
}

/** How the sync settings are named here, for messages. */
export const SYNC_ENTRY: EntryPoint = {
  name: namesFrom(
    {
      source: ENV.sourceUrl,
      filters: ENV.filters,
      max: ENV.max,
      pruneGrace: ENV.pruneGraceHours,
      keyring: ENV.keyringFile,
      channel: ENV.channel,
      keepGenerations: ENV.keepGenerations,
      rangedCopyThreshold: ENV.rangedCopyThreshold,
      copyPartSize: ENV.copyPartSize,
      resign: ENV.resign,
      sources: ENV.sources,
    },
    'environment variable ',
  ),
  durationUnit: 'h',
  backend: 'cloud',
};

export function readStoreSettings(env: Environment = process.env): StoreSettings {
  const signingSecret = env[ENV.signingSecret];
  return { bucket: required(env, ENV.bucket), table: required(env, ENV.table), ...(signingSecret && { signingSecret }) };
}

export function readSyncEnvironment(env: Environment = process.env): SyncEnvironment {
  const sources = env[ENV.sources] || undefined;
  const sync = parseSyncConfig(
    {
      ...(sources
        ? { sources }
        : // infra always writes the source: without it the deployment is broken, and syncing the default source would hide that.
          { source: required(env, ENV.sourceUrl), keyring: env[ENV.keyringFile] || BUNDLED_KEYRING, filters: env[ENV.filters], max: env[ENV.max] }),
      // The grace depends on the deployment (see infra/config.ts): no default fits here.
      pruneGrace: required(env, ENV.pruneGraceHours),
      channel: env[ENV.channel],
      keepGenerations: env[ENV.keepGenerations],
      rangedCopyThreshold: env[ENV.rangedCopyThreshold],
      copyPartSize: env[ENV.copyPartSize],
      // Step Functions retries items itself, with backoff: one attempt per invocation.
      attempts: 1,
      resign: env[ENV.resign],
    },
    SYNC_ENTRY,
  );
  return { ...readStoreSettings(env), sync };
}

/** What a copy invocation may spend before it hands back a continuation, given the time it has left. */
export function copyBudgetMs(remainingMs: number, env: Environment = process.env): number {
  const available = remainingMs - syncDefaults.copyInvocationReserveMs;
  const cap = env[ENV.copyBudgetMs];
  if (cap === undefined || cap === '') return available;
  const capMs = integerWithin(cap, [1, 15 * 60_000], (problem) => {
    throw new ConfigError(`environment variable ${ENV.copyBudgetMs}: ${problem}`);
  });
  return Math.min(available, capMs);
}

export function readStateMachineArn(env: Environment = process.env): string {
  return required(env, ENV.stateMachineArn);
}

function required(env: Environment, name: string): string {
  const value = env[name];
  if (value === undefined || value === '') throw new ConfigError(`environment variable ${name} is not set`);
  return value;
}

/** The environment infra sets for the sync functions, from the validated deployment config. */
export function syncEnvironment(sync: SyncConfig): Record<string, string> {
  const where: Record<string, string> = sync.sources
    ? {
        [ENV.sources]: JSON.stringify(
          sync.sources.map((source) => ({
            name: source.name,
            url: source.url,
            keyring: bundledSourceKeyring(source.name),
            filters: source.filters.map((filter) => filter.source),
            ...(source.max !== undefined && { max: source.max }),
            priority: source.priority,
          })),
        ),
      }
    : {
        [ENV.sourceUrl]: sync.source,
        [ENV.filters]: JSON.stringify(sync.filters.map((filter) => filter.source)),
        [ENV.max]: sync.max === undefined ? '' : String(sync.max),
        [ENV.keyringFile]: BUNDLED_KEYRING,
      };
  return {
    ...where,
    [ENV.pruneGraceHours]: String(sync.pruneGraceMs / 3_600_000),
    [ENV.channel]: sync.channel,
    [ENV.keepGenerations]: String(sync.keepGenerations),
    [ENV.resign]: String(sync.resign),
  };
}
