/** Turns command-line flags into validated settings and an opened backend. */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../core/errors.ts';
import type { Backend } from '../core/ports.ts';
import { objectOf, rejectUnknownKeys } from '../core/validators.ts';
import { namesFrom, parseSyncConfig, type SyncConfig } from '../core/settings.ts';
import type { CloudBackendOptions } from '../adapters/cloud.ts';
import { openEmbeddedBackend, type EmbeddedBackendOptions } from '../adapters/embedded.ts';
import { loadSyncKeyrings, type SyncKeyrings } from '../adapters/sync-engine.ts';

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
  minItemRate: '--min-item-rate',
  minItemRateWindow: '--min-item-rate-window',
  channel: '--channel',
  keepGenerations: '--keep-generations',
  resign: '--resign',
  sources: '--config',
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
  /** Absent: the default source, unless `config` lists sources. */
  source?: string;
  keyring?: string;
  /** A JSON file listing several sources to merge. */
  config?: string;
  /** commander's `--no-verify` sets verify=false. */
  verify: boolean;
  filter: string[];
  max?: string;
  concurrency?: string;
  pruneGrace?: string;
  allowCrossHostRedirects?: boolean;
  minItemRate?: string;
  minItemRateWindow?: string;
  channel?: string;
  keepGenerations?: string;
  resign?: boolean;
  /** `--switch-mode`: publish in this mode from now on, though the mirror recorded another. */
  switchMode?: string;
  /** `--on-publish`: a shell command run after each publication. */
  onPublish?: string;
  /** `--source-password-file`: the source's password, kept out of the command line. */
  sourcePasswordFile?: string;
}

/** `existing`: the embedded backend opens only a mirror that is there (the cloud one's bucket and table always are). */
export async function openBackend(flags: BackendFlags, options: EmbeddedBackendOptions = {}): Promise<Backend> {
  if (flags.bucket || flags.table) {
    if (flags.dataDir) throw new ConfigError('--data-dir is for the embedded backend; drop it with --bucket/--table');
    const { openCloudBackend } = await import('../adapters/cloud.ts');
    return openCloudBackend(cloudBackendOptions(flags));
  }
  if (flags.signingSecret) throw new ConfigError('--signing-secret is for the cloud backend: the embedded one keeps its keys under --data-dir');
  return openEmbeddedBackend(resolve(flags.dataDir ?? DEFAULT_DATA_DIR), options);
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

/**
 * A source's password from a file (`--source-password-file`, or a sources
 * file's `passwordFile`) or from SKYSTREAMS_SOURCE_PASSWORD, put into its URL
 * in memory only: a password on the command line shows in `ps` and in
 * /proc/PID/cmdline to every user of the host.
 */
export function withSourcePassword(url: string | undefined, password: string | undefined, label: string): string | undefined {
  if (password === undefined || url === undefined) return url;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url; // parseSyncConfig names the bad URL
  }
  if (!parsed.username) throw new ConfigError(`${label}: the source URL names no user: write it as https://USER@host/path/`);
  if (parsed.password) throw new ConfigError(`${label}: the source URL already holds a password: give it in one place only`);
  parsed.password = password;
  return parsed.href;
}

/** The first line of a password file; ConfigError naming the file when it cannot be read or is empty. */
export function readPasswordFile(path: string, label: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${label}: ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
  const password = text.split(/\r?\n/, 1)[0] ?? '';
  if (password === '') throw new ConfigError(`${label}: ${path} is empty: expected the password on its first line`);
  return password;
}

function withPasswordFile(source: Record<string, unknown>, base: string, label: string): Record<string, unknown> {
  const { passwordFile, ...rest } = source;
  if (passwordFile === undefined) return source;
  if (typeof passwordFile !== 'string' || passwordFile === '') throw new ConfigError(`${label}.passwordFile: expected the path of a file holding the password`);
  const password = readPasswordFile(resolve(base, passwordFile), `${label}.passwordFile`);
  return { ...rest, url: withSourcePassword(typeof rest.url === 'string' ? rest.url : undefined, password, `${label}.url`) };
}

/** The password SKYSTREAMS_SOURCE_PASSWORD or --source-password-file gives; undefined when neither does. */
function sourcePassword(flags: SyncFlags, env: NodeJS.ProcessEnv): string | undefined {
  if (flags.sourcePasswordFile !== undefined) return readPasswordFile(flags.sourcePasswordFile, '--source-password-file');
  const fromEnv = env.SKYSTREAMS_SOURCE_PASSWORD;
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/** The sync settings the flags give; a SettingError naming the flag when one is wrong. */
export function syncConfig(flags: SyncFlags, env: NodeJS.ProcessEnv = process.env): SyncConfig {
  const sources = flags.config === undefined ? undefined : readSourcesFile(flags.config);
  const password = sourcePassword(flags, env);
  if (password !== undefined && flags.config !== undefined) {
    throw new ConfigError('--config: give each source its password with "passwordFile" in the sources file, not --source-password-file or SKYSTREAMS_SOURCE_PASSWORD');
  }
  return parseSyncConfig(
    {
      source: withSourcePassword(flags.source, password, '--source'),
      verify: flags.verify,
      keyring: flags.keyring,
      sources,
      filters: flags.filter,
      max: flags.max,
      concurrency: flags.concurrency,
      pruneGrace: flags.pruneGrace,
      allowCrossHostRedirects: flags.allowCrossHostRedirects,
      minItemRate: flags.minItemRate,
      minItemRateWindow: flags.minItemRateWindow,
      channel: flags.channel,
      keepGenerations: flags.keepGenerations,
      resign: flags.resign,
    },
    {
      name: (setting, item) =>
        setting === 'sources' && flags.config !== undefined
          ? `${flags.config}: $.sources${item === undefined ? '' : `[${item}]`}`
          : namesFrom(SYNC_FLAGS)(setting),
      durationUnit: 's',
      backend: flags.bucket || flags.table ? 'cloud' : 'embedded',
    },
  );
}

/** Top-level keys of a `--config` file. */
const CONFIG_FILE_KEYS = ['sources'] as const;

/**
 * The `sources` of a `--config` JSON file, with each relative keyring path
 * made relative to the file. ConfigError naming the file when it cannot be
 * read or is not such an object; parseSyncConfig checks the sources.
 */
export function readSourcesFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`--config: ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file}: not valid JSON: ${(error as Error).message}`);
  }
  const fields = objectOf(raw, (problem) => {
    throw new ConfigError(`${file}: $: ${problem}`);
  }, 'expected an object with "sources"');
  rejectUnknownKeys(fields, CONFIG_FILE_KEYS, (key, problem) => {
    throw new ConfigError(`${file}: $.${key}: ${problem}`);
  });
  const { sources } = fields;
  if (sources === undefined) throw new ConfigError(`${file}: $.sources: required: the sources to merge`);
  if (!Array.isArray(sources)) return sources;
  const base = dirname(resolve(file));
  return sources.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return entry;
    const source = withPasswordFile(entry as Record<string, unknown>, base, `${file}: $.sources[${i}]`);
    const { keyring } = source as { keyring?: unknown };
    if (typeof keyring === 'string' && keyring !== '') return { ...source, keyring: resolve(base, keyring) };
    if (typeof keyring === 'object' && keyring !== null && typeof (keyring as { file?: unknown }).file === 'string') {
      return { ...source, keyring: { ...keyring, file: resolve(base, (keyring as { file: string }).file) } };
    }
    return source;
  });
}

/** The keyrings the flags name, read from disk (again on every call, so a replaced keyring is picked up). */
export function syncKeyrings(config: SyncConfig): Promise<SyncKeyrings> {
  return loadSyncKeyrings(config, (index) => (index === undefined ? SYNC_FLAGS.keyring : `${SYNC_FLAGS.sources}: sources[${index}].keyring`));
}
