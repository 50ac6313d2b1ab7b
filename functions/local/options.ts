/** Turns command-line flags into validated settings and an opened backend. */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConfigError } from '../core/errors.ts';
import { redactUrl } from '../core/redact.ts';
import { defaultSettings, type SyncSettings } from '../core/engine.ts';
import { parseFilter } from '../core/filters.ts';
import { loadKeyring } from '../core/pgp.ts';
import type { Backend } from '../core/ports.ts';
import { openEmbeddedBackend } from '../adapters/embedded.ts';

export const DEFAULT_SOURCE = 'https://images.maas.io/ephemeral-v3/stable/';
export const DEFAULT_KEYRING = '/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg';
export const DEFAULT_DATA_DIR = './.skystreams';
/** One disk gains little past a few writers; S3 multipart uploads keep gaining with more in flight. */
export const DEFAULT_CONCURRENCY = { embedded: 4, cloud: 8 } as const;

export interface BackendFlags {
  dataDir?: string;
  bucket?: string;
  table?: string;
  region?: string;
  s3Endpoint?: string;
  dynamodbEndpoint?: string;
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
}

export async function openBackend(flags: BackendFlags): Promise<Backend> {
  if (flags.bucket || flags.table) {
    if (!flags.bucket || !flags.table) throw new ConfigError('--bucket and --table go together');
    if (flags.dataDir) throw new ConfigError('--data-dir is for the embedded backend; drop it with --bucket/--table');
    const { openCloudBackend } = await import('../adapters/cloud.ts');
    return openCloudBackend({
      bucket: flags.bucket,
      table: flags.table,
      region: flags.region,
      s3Endpoint: flags.s3Endpoint,
      dynamodbEndpoint: flags.dynamodbEndpoint,
    });
  }
  return openEmbeddedBackend(resolve(flags.dataDir ?? DEFAULT_DATA_DIR));
}

export async function syncSettings(flags: SyncFlags): Promise<SyncSettings> {
  const filters = flags.filter.map(parseFilter);
  const max = optionalInteger('--max', flags.max, 1);
  const concurrency =
    optionalInteger('--concurrency', flags.concurrency, 1) ?? (flags.bucket ? DEFAULT_CONCURRENCY.cloud : DEFAULT_CONCURRENCY.embedded);
  const pruneGraceMs = flags.pruneGrace === undefined ? defaultSettings.pruneGraceMs : parseDuration('--prune-grace', flags.pruneGrace, true);
  return {
    ...defaultSettings,
    keyring: flags.verify ? await readKeyring(flags.keyring) : undefined,
    selection: { filters, max },
    concurrency,
    pruneGraceMs,
  };
}

export function checkSource(source: string): string {
  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw new ConfigError(`--source ${JSON.stringify(redactUrl(source))} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`--source ${redactUrl(source)}: only http:// and https:// sources are supported`);
  }
  return source;
}

async function readKeyring(path: string) {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const hint =
      path === DEFAULT_KEYRING
        ? ' (install it with `apt install ubuntu-cloudimage-keyring`, or pass --keyring FILE)'
        : '';
    throw new ConfigError(`--keyring ${path}: cannot read it (${code ?? String(error)})${hint}`);
  }
  return loadKeyring(path, bytes);
}

function optionalInteger(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${flag} ${JSON.stringify(value)}: expected an integer ≥ ${min}`);
  return n;
}

/** `90s`, `15m`, `1h`, `2d`, or plain seconds. */
export function parseDuration(flag: string, value: string, allowZero = false): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const ms = match ? Number(match[1]) * unit[(match[2] ?? 's') as keyof typeof unit] : Number.NaN;
  if (!Number.isFinite(ms) || ms < 0 || (!allowZero && ms === 0)) {
    throw new ConfigError(`${flag} ${JSON.stringify(value)}: expected a duration like 90s, 15m, 1h`);
  }
  return ms;
}
