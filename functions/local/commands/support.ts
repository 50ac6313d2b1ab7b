/** What every command room shares: the backend and sync flags, help examples, and running a sync. */
import { Command, Option } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import type { Backend, SyncRun, Upstream } from '../../core/ports.ts';
import { describeDuration, syncDefaults, type SyncConfig } from '../../core/settings.ts';
import { integerWithin } from '../../core/validators.ts';
import { createSyncEngine } from '../../adapters/sync-engine.ts';
import { isAliveOnThisHost, thisProcess } from '../holder.ts';
import { DEFAULT_DATA_DIR, openBackend, syncKeyrings, type BackendFlags } from '../options.ts';
import { progressReporter } from '../progress.ts';
import { youngCollection } from '../../runtime/young-collection.ts';

function withYoungCollection(): { onBodyBytes?: (bytes: number) => void } {
  const onBodyBytes = youngCollection();
  return onBodyBytes ? { onBodyBytes } : {};
}

/** `--help` ends with these command lines, one per line. */
export function withExamples(command: Command, examples: readonly string[]): Command {
  return command.addHelpText('after', `\nExamples:\n${examples.map((example) => `  $ ${example}`).join('\n')}`);
}

export function backendOptions(command: Command): Command {
  return command
    .option('--data-dir <dir>', `embedded backend: directory + SQLite (default ${DEFAULT_DATA_DIR})`)
    .option('--bucket <name>', 'cloud backend: S3 bucket (with --table)')
    .option('--table <name>', 'cloud backend: DynamoDB table (with --bucket)')
    .option('--region <region>', 'cloud backend: AWS region (default: the SDK chain)')
    .option('--s3-endpoint <url>', 'cloud backend: S3 endpoint (also AWS_ENDPOINT_URL_S3)')
    .option('--dynamodb-endpoint <url>', 'cloud backend: DynamoDB endpoint (also AWS_ENDPOINT_URL_DYNAMODB)')
    .option('--signing-secret <arn>', "cloud backend: Secrets Manager secret with the mirror's signing keys (--resign, key)");
}

export const pruneGraceHelp = `keep replaced generations this long for clients mid-download (default ${describeDuration(syncDefaults.pruneGraceMs.direct)})`;

export function syncOptions(command: Command): Command {
  return backendOptions(command)
    .option('--source <url>', `simplestreams mirror root to copy (credentials allowed, never shown; default ${syncDefaults.source})`)
    .option('--keyring <file>', `OpenPGP keyring (binary or armored) the metadata must be signed with (default ${syncDefaults.keyringFile})`)
    .option('--config <file>', 'JSON file listing several sources to merge into one re-signed stream (instead of --source, --keyring, --filter, --max)')
    .option('--no-verify', 'accept an unsigned source (index.json); never for production')
    .addOption(
      new Option('--filter <expr>', 'item filter, sstream-mirror syntax: key=val, key!=val, key~re, key!~re (repeatable, ANDed)')
        .default([])
        .argParser((value: string, previous: string[]) => [...previous, value]),
    )
    .option('--max <n>', 'newest versions to keep per product (default: all)')
    .option(
      '--concurrency <n>',
      `items copied at once (default ${syncDefaults.concurrency.embedded} on disk, ${syncDefaults.concurrency.cloud} on S3)`,
    )
    .option('--prune-grace <duration>', pruneGraceHelp)
    .option('--allow-cross-host-redirects', 'follow upstream redirects to another scheme, host or port')
    .option('--channel <name>', `the channel to publish to (default ${syncDefaults.channel}, the one served at /)`)
    .option(
      '--keep-generations <n>',
      `generations each channel keeps after the prune grace, for rollback (default ${syncDefaults.keepGenerations})`,
    )
    .option('--resign', "publish the mirror's own metadata, listing exactly what it stores, signed with its own key (served at /keyring.gpg)");
}

export async function withBackend<T>(flags: BackendFlags, work: (backend: Backend) => Promise<T>, options: { existing?: boolean } = {}): Promise<T> {
  const backend = await openBackend(flags, options);
  try {
    return await work(backend);
  } finally {
    await backend.close();
  }
}

/** For commands that only read a mirror: a data dir that holds none is an error, never a new empty mirror. */
export function withMirror<T>(flags: BackendFlags, work: (backend: Backend) => Promise<T>): Promise<T> {
  return withBackend(flags, work, { existing: true });
}

/** Re-signed mode needs somewhere to keep the keys: the data dir has it, the cloud backend only when given a secret. */
export function refuseResignWithoutKeys(config: SyncConfig, backend: Backend): void {
  if (config.resign && !backend.signingKeys) {
    throw new ConfigError('--resign: the cloud backend keeps the signing keys in Secrets Manager: name the secret with --signing-secret ARN');
  }
}

/** A sync from the configured source, or from `from.upstream` restricted to `from.paths`. */
export async function syncOnce(config: SyncConfig, backend: Backend, from?: { upstream: Upstream; paths: ReadonlySet<string> }): Promise<SyncRun> {
  refuseResignWithoutKeys(config, backend);
  const keyrings = await syncKeyrings(config);
  const progress = progressReporter();
  const engine = createSyncEngine(config, backend, {
    keyrings,
    onEvent: (e) => progress.onEvent(e),
    holder: thisProcess(),
    isAlive: isAliveOnThisHost,
    // Item bodies stream through this process: free their chunks young (functions/runtime/young-collection.ts).
    ...withYoungCollection(),
    ...(from && { from }),
  });
  try {
    return await engine.run();
  } finally {
    progress.finish();
  }
}

/** `--port`: 0 lets the system pick a free port. */
export function portFlag(value: string): number {
  return integerFlag('--port', value, [0, 65_535]);
}

/** A whole-number flag within `range`; a ConfigError naming the flag otherwise. */
export function integerFlag(flag: string, value: string, range: readonly [number, number]): number {
  return integerWithin(value, range, (problem) => {
    throw new ConfigError(`${flag}: ${problem}`);
  });
}

export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

export async function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!stop() && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(1000, until - Date.now())));
}
