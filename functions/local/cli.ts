/** The `skystreams` command. Each action: parse flags, open a backend, hand over to the engine or the app. */
import { Command, Option } from 'commander';
import { auditPublication } from '../core/audit.ts';
import { SyncEngine, requestRepair, requestRepublish } from '../core/engine.ts';
import { describeSigningKeys, retireSigningKey, rotateSigningKey } from '../core/signing-keys.ts';
import { ConfigError, SkystreamsError } from '../core/errors.ts';
import { HttpUpstream } from '../adapters/http/http-upstream.ts';
import { createApp } from '../http/app.ts';
import { statusReport } from '../http/reports.ts';
import type { Backend, SigningKeyStore } from '../core/ports.ts';
import { describeDuration, parseDuration, syncDefaults, type SyncConfig } from '../core/settings.ts';
import { DEFAULT_DATA_DIR, cloudBackendOptions, openBackend, syncConfig, syncSettings, type BackendFlags, type SyncFlags } from './options.ts';
import { bytes, progressReporter } from './progress.ts';
import { isAliveOnThisHost, thisProcess } from './holder.ts';
import { startServer, startWorkers } from './server.ts';
import { redactUrl } from '../core/redact.ts';

const program = new Command('skystreams')
  .description('A verified mirror of MAAS boot images (simplestreams), on one machine or on S3 + DynamoDB.')
  .showHelpAfterError();

function backendOptions(command: Command): Command {
  return command
    .option('--data-dir <dir>', `embedded backend: directory + SQLite (default ${DEFAULT_DATA_DIR})`)
    .option('--bucket <name>', 'cloud backend: S3 bucket (with --table)')
    .option('--table <name>', 'cloud backend: DynamoDB table (with --bucket)')
    .option('--region <region>', 'cloud backend: AWS region (default: the SDK chain)')
    .option('--s3-endpoint <url>', 'cloud backend: S3 endpoint (also AWS_ENDPOINT_URL_S3)')
    .option('--dynamodb-endpoint <url>', 'cloud backend: DynamoDB endpoint (also AWS_ENDPOINT_URL_DYNAMODB)')
    .option('--signing-secret <arn>', "cloud backend: Secrets Manager secret with the mirror's signing keys (--resign, key)");
}

function syncOptions(command: Command): Command {
  return backendOptions(command)
    .option('--source <url>', 'simplestreams mirror root to copy (credentials allowed, never shown)', syncDefaults.source)
    .option('--keyring <file>', 'OpenPGP keyring (binary or armored) the metadata must be signed with', syncDefaults.keyringFile)
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
    .option(
      '--prune-grace <duration>',
      `keep replaced generations this long for clients mid-download (default ${describeDuration(syncDefaults.pruneGraceMs.direct)})`,
    )
    .option('--allow-cross-host-redirects', 'follow upstream redirects to another scheme, host or port')
    .option('--resign', "publish the mirror's own metadata, listing exactly what it stores, signed with its own key (served at /keyring.gpg)");
}

async function withBackend<T>(flags: BackendFlags, work: (backend: Backend) => Promise<T>): Promise<T> {
  const backend = await openBackend(flags);
  try {
    return await work(backend);
  } finally {
    await backend.close();
  }
}

/** Re-signed mode needs somewhere to keep the keys: the data dir has it, the cloud backend only when given a secret. */
function refuseResignWithoutKeys(config: SyncConfig, backend: Backend): void {
  if (config.resign && !backend.signingKeys) {
    throw new ConfigError('--resign: the cloud backend keeps the signing keys in Secrets Manager: name the secret with --signing-secret ARN');
  }
}

async function syncOnce(config: SyncConfig, backend: Backend): Promise<void> {
  refuseResignWithoutKeys(config, backend);
  const settings = await syncSettings(config);
  const progress = progressReporter();
  const engine = new SyncEngine(
    {
      // SyncConfig carries the upstream's options (redirects, idle timeout) under the upstream's own names.
      upstream: new HttpUpstream(config.source, config),
      objects: backend.objects,
      catalog: backend.catalog,
      onEvent: (e) => progress.onEvent(e),
      holder: thisProcess(),
      isAlive: isAliveOnThisHost,
      ...(backend.signingKeys && { signingKeys: backend.signingKeys }),
    },
    settings,
  );
  try {
    await engine.run();
  } finally {
    progress.finish();
  }
}

syncOptions(program.command('sync').description('run one sync: verify upstream, copy new items, publish atomically, prune')).action(
  async (flags: SyncFlags) => {
    const config = syncConfig(flags);
    await withBackend(flags, (backend) => syncOnce(config, backend));
  },
);

backendOptions(program.command('serve').description('serve the current publication over HTTP'))
  .option('--port <port>', 'TCP port', '8080')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--workers <n>', 'server processes sharing the port (node:cluster), for more than one core', '1')
  .action(async (flags: BackendFlags & { port: string; host: string; workers: string }) => {
    // With --workers above 1, each worker opens the backend; this process only supervises them.
    let backend: Backend | undefined;
    const server = await startWorkers(Number(flags.workers), async () => {
      backend = await openBackend(flags);
      return startServer(createApp(backend), { port: Number(flags.port), host: flags.host });
    });
    console.log(`serving ${backend?.description ?? `with ${flags.workers} workers`} at ${server.url}`);
    await untilSignal();
    await server.close();
    await backend?.close();
  });

syncOptions(program.command('local').description('serve, and sync now and every --interval'))
  .option('--port <port>', 'TCP port', '8080')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--interval <duration>', 'time between syncs', '1h')
  .action(async (flags: SyncFlags & { port: string; host: string; interval: string }) => {
    const interval = parseDuration('--interval', flags.interval);
    // Fail fast on bad flags, before serving anything.
    const config = syncConfig(flags);
    await syncSettings(config);
    const backend = await openBackend(flags);
    refuseResignWithoutKeys(config, backend);
    const server = await startServer(createApp(backend), { port: Number(flags.port), host: flags.host });
    console.log(`serving ${backend.description} at ${server.url}; syncing ${redactUrl(config.source)} every ${flags.interval}`);
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        try {
          await syncOnce(config, backend);
        } catch (error) {
          // The previous publication keeps being served; the next interval tries again.
          console.error(`skystreams: sync failed: ${(error as Error).message}`);
        }
        await sleepUnless(interval, () => stopped);
      }
    })();
    await untilSignal();
    stopped = true;
    await server.close();
    await loop;
    await backend.close();
  });

backendOptions(program.command('status').description('show the current publication and the last sync runs'))
  .option('--json', 'print JSON')
  .action(async (flags: BackendFlags & { json?: boolean }) =>
    withBackend(flags, async (backend) => {
      const report = await statusReport(backend.catalog, { isAlive: isAliveOnThisHost });
      if (flags.json) {
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      const p = report.publication;
      console.log(
        p
          ? `generation ${p.generation}: upstream updated ${p.upstreamUpdated}, published ${p.publishedAt}, ${p.itemCount} items, ${bytes(p.totalBytes)}`
          : 'nothing published yet',
      );
      for (const run of report.runs) {
        const counts = `${run.itemsCopied} copied (${bytes(run.bytesCopied)}), ${run.itemsPresent} present`;
        console.log(`  ${run.startedAt}  ${run.state.padEnd(9)}  ${counts}${run.error ? `  error: ${run.error}` : ''}`);
      }
    }),
  );

backendOptions(program.command('verify').description('audit every file of the current publication: present, right size, right sha256')).action(
  async (flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const report = await auditPublication(backend.objects, backend.catalog);
      if (report.generation === null) throw new ConfigError('nothing published yet: run `skystreams sync` first');
      for (const { path, problem } of report.problems) console.error(`BAD ${path}: ${problem}`);
      console.log(
        `generation ${report.generation}: checked ${report.checkedFiles} files (${bytes(report.checkedBytes)}), ${report.problems.length} bad`,
      );
      if (report.problems.length > 0) {
        await requestRepair(backend.catalog, report.problems.map((problem) => problem.path));
        console.log('the next sync fetches the bad files again from upstream and checks them before they replace these');
        process.exitCode = 1;
      }
    }),
);

backendOptions(program.command('init').description('create (or check) the S3 bucket and DynamoDB table of the cloud backend')).action(
  async (flags: BackendFlags) => {
    if (!flags.bucket && !flags.table) throw new ConfigError('init needs --bucket and --table');
    const { initCloudResources } = await import('../adapters/cloud.ts');
    const lines = await initCloudResources(cloudBackendOptions(flags));
    for (const line of lines) console.log(line);
  },
);

// ---------------------------------------------------------------- the mirror's signing keys (re-signed mode)

const keyCommand = program.command('key').description("the mirror's own signing keys (re-signed mode; docs/key-rotation.md)");

/** The backend's key store, or a ConfigError saying how to name one. */
function keyStoreOf(backend: Backend): SigningKeyStore {
  if (!backend.signingKeys) throw new ConfigError(`${backend.description} has no signing key store: name one with --signing-secret`);
  return backend.signingKeys;
}

backendOptions(keyCommand.command('show').description('fingerprints of the active key and of the previous keys still published')).action(
  async (flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const keys = await describeSigningKeys(keyStoreOf(backend));
      if (!keys) {
        console.log('no signing key yet: the first sync with --resign creates one');
        return;
      }
      console.log(`active   ${keys.active}`);
      for (const fingerprint of keys.previous) console.log(`previous ${fingerprint}`);
    }),
);

backendOptions(keyCommand.command('rotate').description('sign from the next publication on with a new key; the old public key stays in /keyring.gpg')).action(
  async (flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const { retiring, active } = await rotateSigningKey(keyStoreOf(backend));
      await requestRepublish(backend.catalog, 'signing key rotated');
      console.log(`new active key ${active}; the next sync publishes with it`);
      if (retiring) console.log(`${retiring} stays in the keyring until: skystreams key retire ${retiring}`);
    }),
);

backendOptions(keyCommand.command('retire').description('drop a previous key from the keyring the next publication serves'))
  .argument('<fingerprint>', 'a previous key, as `key show` prints it')
  .action(async (fingerprint: string, flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      await retireSigningKey(keyStoreOf(backend), fingerprint);
      await requestRepublish(backend.catalog, 'signing key retired');
      console.log(`${fingerprint} retired; the next sync publishes a keyring without it`);
    }),
  );

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

async function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!stop() && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(1000, until - Date.now())));
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  console.error(`skystreams: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = error instanceof ConfigError ? 2 : 1;
  if (!(error instanceof SkystreamsError) && process.env.SKYSTREAMS_DEBUG) console.error(error);
}
