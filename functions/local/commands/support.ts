/** What every command room shares: the backend and sync flags, help examples, and running a sync. */
import { Command, Option } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import type { SyncEvent } from '../../core/engine.ts';
import type { Backend, PublishingMode, SyncRun, Upstream } from '../../core/ports.ts';
import { publicationChanges } from '../../core/publication-changes.ts';
import { PUBLISHING_MODES, parsePublishingMode, recordedPublishingMode, resolvePublishingMode } from '../../core/publishing-mode.ts';
import { describeDuration, syncDefaults, type SyncConfig } from '../../core/settings.ts';
import { integerWithin } from '../../core/validators.ts';
import { createSyncEngine } from '../../adapters/sync-engine.ts';
import { isAliveOnThisHost, thisProcess } from '../../adapters/process-holder.ts';
import { describeHookFailure, runOnPublish } from '../on-publish.ts';
import { DEFAULT_DATA_DIR, openBackend, syncKeyrings, type BackendFlags, type SyncFlags } from '../options.ts';
import { bytes, progressReporter } from '../progress.ts';
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
    .option('--source-password-file <file>', "the source's password on the file's first line (with --source https://USER@host/…; or SKYSTREAMS_SOURCE_PASSWORD), kept out of ps")
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
    .option(
      '--min-item-rate <rate>',
      `fail (and retry) an item download slower than this, e.g. 64KiB/s; 0 turns it off (default ${bytes(syncDefaults.minItemRate.bytesPerSecond)}/s)`,
    )
    .option('--min-item-rate-window <duration>', `over how much waiting the item rate is averaged (default ${describeDuration(syncDefaults.minItemRate.windowMs)})`)
    .option('--channel <name>', `the channel to publish to (default ${syncDefaults.channel}, the one served at /)`)
    .option(
      '--keep-generations <n>',
      `generations each channel keeps after the prune grace, for rollback (default ${syncDefaults.keepGenerations})`,
    )
    .option('--resign', "publish the mirror's own metadata, listing exactly what it stores, signed with its own key (served at /keyring.gpg)")
    .option('--switch-mode <mode>', `publish in another mode than the mirror recorded (${PUBLISHING_MODES.join(', ')}); every MAAS then needs the matching keyring`)
    .option('--on-publish <command>', 'shell command run after each publication, with SKYSTREAMS_CHANNEL, _GENERATION, _ADDED and _REMOVED set (e.g. maas $PROFILE boot-resources import)');
}

/** What a command that runs syncs takes besides the sync settings. */
export interface SyncRunOptions {
  /** Syncs from this upstream (an export bundle), restricted to `paths`. */
  from?: { upstream: Upstream; paths: ReadonlySet<string> };
  switchMode?: PublishingMode;
  onPublish?: string;
}

/** The run options a command's flags give. */
export function syncRunOptions(flags: SyncFlags): SyncRunOptions {
  return {
    ...(flags.switchMode !== undefined && { switchMode: parsePublishingMode(flags.switchMode, '--switch-mode') }),
    ...(flags.onPublish !== undefined && { onPublish: flags.onPublish }),
  };
}

/**
 * The settings a sync runs with in the mode the mirror recorded: a command
 * that names no mode follows the record (so `remove-upload` on a re-signed
 * mirror stays re-signed); one that names another is refused unless it
 * also gives `--switch-mode`.
 */
export async function inRecordedMode(config: SyncConfig, backend: Backend, switchMode: PublishingMode | undefined): Promise<{ config: SyncConfig; modeChange: 'refuse' | 'allow' }> {
  const [named, namedBy] = config.sources
    ? (['merged', '--config'] as const)
    : config.resign
      ? (['re-signed', '--resign'] as const)
      : config.keyring === undefined
        ? (['verbatim', '--no-verify'] as const)
        : [undefined, undefined];
  const resolved = resolvePublishingMode(await recordedPublishingMode(backend.catalog), {
    ...(named && { named, namedBy }),
    ...(switchMode && { switchTo: switchMode }),
  });
  const adopted = resolved.mode === 're-signed' && !config.resign ? { ...config, resign: true } : config;
  return { config: adopted, modeChange: resolved.switched ? 'allow' : 'refuse' };
}

export async function withBackend<T>(flags: BackendFlags, work: (backend: Backend) => Promise<T>, options: { existing?: boolean; readOnly?: boolean } = {}): Promise<T> {
  const backend = await openBackend(flags, options);
  try {
    return await work(backend);
  } finally {
    await backend.close();
  }
}

/**
 * For commands that work on an existing mirror: a data dir that holds none is
 * an error, never a new empty mirror. `readOnly`: the command never writes, so
 * the mirror is opened without writing a byte and it works on a full disk.
 */
export function withMirror<T>(flags: BackendFlags, work: (backend: Backend) => Promise<T>, options: { readOnly?: boolean } = {}): Promise<T> {
  return withBackend(flags, work, { existing: true, ...options });
}

/** Re-signed mode needs somewhere to keep the keys: the data dir has it, the cloud backend only when given a secret. */
export function refuseResignWithoutKeys(config: SyncConfig, backend: Backend): void {
  if (config.resign && !backend.signingKeys) {
    throw new ConfigError('--resign: the cloud backend keeps the signing keys in Secrets Manager: name the secret with --signing-secret ARN');
  }
}

/** A sync from the configured source, or from `options.from.upstream` restricted to `options.from.paths`, in the recorded mode. */
export async function syncOnce(requested: SyncConfig, backend: Backend, options: SyncRunOptions = {}): Promise<SyncRun> {
  // Flags that cannot work are refused before the catalog is asked anything.
  refuseResignWithoutKeys(requested, backend);
  const { config, modeChange } = await inRecordedMode(requested, backend, options.switchMode);
  refuseResignWithoutKeys(config, backend);
  const keyrings = await syncKeyrings(config);
  const progress = progressReporter();
  let published: Extract<SyncEvent, { type: 'published' }> | undefined;
  const engine = createSyncEngine(config, backend, {
    keyrings,
    modeChange,
    onEvent: (event) => {
      if (event.type === 'published') published = event;
      progress.onEvent(event);
    },
    holder: thisProcess(),
    isAlive: isAliveOnThisHost,
    // Item bodies stream through this process: free their chunks young (functions/runtime/young-collection.ts).
    ...withYoungCollection(),
    ...(options.from && { from: options.from }),
  });
  let run: SyncRun;
  try {
    run = await engine.run();
  } finally {
    progress.finish();
  }
  if (published && options.onPublish) await announce(options.onPublish, published, backend);
  return run;
}

/** Runs the `--on-publish` command for a publication; its failure is reported, the publication stands. */
async function announce(command: string, event: Extract<SyncEvent, { type: 'published' }>, backend: Backend): Promise<void> {
  const changes = await publicationChanges(backend.catalog, event.previousGeneration, event.generation);
  const result = await runOnPublish(command, {
    channel: event.channel,
    generation: event.generation,
    ...(event.previousGeneration !== undefined && { previousGeneration: event.previousGeneration }),
    ...changes,
  });
  const failure = describeHookFailure(command, result);
  if (failure) console.error(`skystreams: ${failure}`);
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
