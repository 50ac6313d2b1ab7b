/** Turns command-line flags into validated settings and an opened backend. */
import { resolve } from 'node:path';
import type { SyncSettings } from '../core/engine.ts';
import { ConfigError } from '../core/errors.ts';
import type { Backend } from '../core/ports.ts';
import { engineSettings, namesFrom, parseSyncConfig, type SyncConfig } from '../core/settings.ts';
import type { CloudBackendOptions } from '../adapters/cloud.ts';
import { openEmbeddedBackend } from '../adapters/embedded.ts';
import { openKeyring } from '../adapters/fs/keyring-file.ts';

export const DEFAULT_DATA_DIR = './.skystreams';

/** What `skystreams` exits with; `--help` and the README list them. */
export const EXIT_CODES = Object.freeze({
  ok: { code: 0, meaning: 'done (verify: every file checked out)' },
  failure: { code: 1, meaning: 'failed: upstream, store or verification (verify: bad files found, repair requested)' },
  usage: { code: 2, meaning: 'bad command line or configuration: nothing was done' },
  locked: { code: 3, meaning: 'another sync holds the lock: nothing was done, try again later' },
});

/** The flag that sets each sync setting, for messages. */
export const SYNC_FLAGS = {
  source: '--source',
  verify: '--no-verify',
  keyring: '--keyring',
  filters: '--filter',
  max: '--max',
  concurrency: '--concurrency',
  pruneGrace: '--prune-grace',
  allowCrossHostRedirects: '--allow-cross-host-redirects',
  channel: '--channel',
  keepGenerations: '--keep-generations',
  resign: '--resign',
} as const;

export interface BackendFlags {
  dataDir?: string;
  bucket?: string;
  table?: string;
  region?: string;
  s3Endpoint?: string;
  dynamodbEndpoint?: string;
  signingSecret?: string;
}

export interface SyncFlags extends BackendFlags {
  source: string;
  keyring: string;
  /** commander's `--no-verify` sets verify=false. */
  verify: boolean;
  filter: string[];
  max?: string;
  concurrency?: string;
  pruneGrace?: string;
  allowCrossHostRedirects?: boolean;
  channel?: string;
  keepGenerations?: string;
  resign?: boolean;
}

export async function openBackend(flags: BackendFlags): Promise<Backend> {
  if (flags.bucket || flags.table) {
    if (flags.dataDir) throw new ConfigError('--data-dir is for the embedded backend; drop it with --bucket/--table');
    const { openCloudBackend } = await import('../adapters/cloud.ts');
    return openCloudBackend(cloudBackendOptions(flags));
  }
  if (flags.signingSecret) throw new ConfigError('--signing-secret is for the cloud backend: the embedded one keeps its keys under --data-dir');
  return openEmbeddedBackend(resolve(flags.dataDir ?? DEFAULT_DATA_DIR));
}

/** The cloud backend the flags name. */
export function cloudBackendOptions(flags: BackendFlags): CloudBackendOptions {
  if (!flags.bucket || !flags.table) throw new ConfigError('--bucket and --table go together');
  return {
    bucket: flags.bucket,
    table: flags.table,
    region: flags.region,
    s3Endpoint: flags.s3Endpoint,
    dynamodbEndpoint: flags.dynamodbEndpoint,
    ...(flags.signingSecret && { signingSecret: flags.signingSecret }),
  };
}

/** The sync settings the flags give; a SettingError naming the flag when one is wrong. */
export function syncConfig(flags: SyncFlags): SyncConfig {
  return parseSyncConfig(
    {
      source: flags.source,
      verify: flags.verify,
      keyring: flags.keyring,
      filters: flags.filter,
      max: flags.max,
      concurrency: flags.concurrency,
      pruneGrace: flags.pruneGrace,
      allowCrossHostRedirects: flags.allowCrossHostRedirects,
      channel: flags.channel,
      keepGenerations: flags.keepGenerations,
      resign: flags.resign,
    },
    { name: namesFrom(SYNC_FLAGS), durationUnit: 's', backend: flags.bucket || flags.table ? 'cloud' : 'embedded' },
  );
}

/** What the engine runs with, the keyring read from disk (again on every call, so a replaced keyring is picked up). */
export async function syncSettings(config: SyncConfig): Promise<SyncSettings> {
  const keyring = config.keyring && (await openKeyring(config.keyring, SYNC_FLAGS.keyring));
  return engineSettings(config, keyring);
}
