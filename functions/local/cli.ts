/** The `skystreams` command. Each action: parse flags, open a backend, hand over to the engine or the app. */
import { resolve as resolvePath } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { auditPublication } from '../core/audit.ts';
import { SyncEngine, requestRepair, requestRepublish } from '../core/engine.ts';
import { describeSigningKeys, retireSigningKey, rotateSigningKey } from '../core/signing-keys.ts';
import { BundleError, ConfigError, LockHeldError, RollbackError, SkystreamsError } from '../core/errors.ts';
import { exportPublication } from '../core/bundle.ts';
import { channelName, promote, rollBack } from '../core/channels.ts';
import { addPin, removePin } from '../core/pins.ts';
import { validateUpload, type UploadFile, type UploadRequest } from '../core/custom-images.ts';
import type { SourceConflict } from '../core/sources.ts';
import { removeUpload, storeUpload } from '../core/uploads.ts';
import { openUploadFiles } from '../adapters/fs/upload-files.ts';
import { BundleUpstream, writeBundleFile } from '../adapters/fs/bundle-file.ts';
import { readKeyringFile } from '../adapters/fs/keyring-file.ts';
import { HttpUpstream } from '../adapters/http/http-upstream.ts';
import { createApp } from '../http/app.ts';
import { formatDuration } from '../http/format.ts';
import { statusReport, type StatusReport } from '../http/reports.ts';
import { DEFAULT_CHANNEL, type Backend, type SigningKeyStore, type SyncRun, type Upstream } from '../core/ports.ts';
import { RESIGNED_MAAS_KEYRING, describeDuration, parseDuration, syncDefaults, type SyncConfig } from '../core/settings.ts';
import { DEFAULT_DATA_DIR, EXIT_CODES, cloudBackendOptions, openBackend, syncConfig, syncSettings, type BackendFlags, type SyncFlags } from './options.ts';
import { bytes, progressReporter } from './progress.ts';
import { isAliveOnThisHost, thisProcess } from './holder.ts';
import { addPackageCommands } from './package-commands.ts';
import { startServer, startWorkers } from './server.ts';
import { redactUrl } from '../core/redact.ts';
import { formatTable } from './table.ts';

const program = new Command('skystreams')
  .description('A verified mirror of MAAS boot images (simplestreams), on one machine or on S3 + DynamoDB.')
  .showHelpAfterError()
  // Usage errors throw (set before the commands are added, which inherit it), so their exit code is the one in EXIT_CODES.
  .exitOverride();
withExamples(program, [
  "skystreams local --filter arch=amd64 --filter 'release~^(jammy|noble)$' --max 2   # mirror and serve on :8080",
  'skystreams sync && skystreams serve --host 0.0.0.0                                # the same in two steps',
  'skystreams status',
]).addHelpText(
  'after',
  `\nExit codes:\n${Object.values(EXIT_CODES)
    .map(({ code, meaning }) => `  ${code}  ${meaning}`)
    .join('\n')}`,
);

/** `--help` ends with these command lines, one per line. */
function withExamples(command: Command, examples: readonly string[]): Command {
  return command.addHelpText('after', `\nExamples:\n${examples.map((example) => `  $ ${example}`).join('\n')}`);
}

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
    .option(
      '--prune-grace <duration>',
      `keep replaced generations this long for clients mid-download (default ${describeDuration(syncDefaults.pruneGraceMs.direct)})`,
    )
    .option('--allow-cross-host-redirects', 'follow upstream redirects to another scheme, host or port')
    .option('--channel <name>', `the channel to publish to (default ${syncDefaults.channel}, the one served at /)`)
    .option(
      '--keep-generations <n>',
      `generations each channel keeps after the prune grace, for rollback (default ${syncDefaults.keepGenerations})`,
    )
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

/** A sync from the configured source, or from `from.upstream` restricted to `from.paths`. */
async function syncOnce(config: SyncConfig, backend: Backend, from?: { upstream: Upstream; paths: ReadonlySet<string> }): Promise<SyncRun> {
  refuseResignWithoutKeys(config, backend);
  const settings = await syncSettings(config);
  if (from) settings.selection = { ...settings.selection, paths: from.paths };
  const progress = progressReporter();
  const engine = new SyncEngine(
    {
      // SyncConfig carries the upstream's options (redirects, idle timeout) under the upstream's own names.
      upstream: from?.upstream ?? new HttpUpstream(config.source, config),
      ...(config.sources && !from && { upstreams: new Map(config.sources.map((source) => [source.name, new HttpUpstream(source.url, config)])) }),
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
    return await engine.run();
  } finally {
    progress.finish();
  }
}

withExamples(syncOptions(program.command('sync').description('run one sync: verify upstream, copy new items, publish atomically, prune')), [
  "skystreams sync --filter arch=amd64 --filter 'release~^(jammy|noble)$' --max 2",
  'skystreams sync --source https://mirror.internal/maas/ --keyring ./upstream-keyring.gpg --data-dir /srv/skystreams',
  'skystreams sync --bucket my-mirror --table my-mirror --region eu-west-1',
]).action(
  async (flags: SyncFlags) => {
    const config = syncConfig(flags);
    await withBackend(flags, (backend) => syncOnce(config, backend));
  },
);

withExamples(backendOptions(program.command('serve').description('serve the current publication and the status page (/) over HTTP')), [
  'skystreams serve                                   # http://127.0.0.1:8080/',
  'skystreams serve --host 0.0.0.0 --port 80 --workers 2 --data-dir /srv/skystreams',
])
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

withExamples(syncOptions(program.command('local').description('serve, and sync now and every --interval')), [
  'skystreams local --filter arch=amd64 --max 1',
  "skystreams local --host 0.0.0.0 --interval 6h --filter 'release~^noble$'",
])
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
    // The status page's MAAS command names the keyring MAAS checks the served metadata with:
    // this sync's upstream keyring, or in re-signed mode the mirror's own, fetched from /keyring.gpg.
    const keyringFilename = config.resign
      ? RESIGNED_MAAS_KEYRING
      : config.keyring && 'file' in config.keyring
        ? resolvePath(config.keyring.file)
        : undefined;
    const server = await startServer(createApp({ ...backend, keyringFilename }), { port: Number(flags.port), host: flags.host });
    console.log(`serving ${backend.description} at ${server.url}; syncing ${config.sources ? config.sources.map((source) => `${source.name} (${redactUrl(source.url)})`).join(', ') : redactUrl(config.source)} every ${flags.interval}`);
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

withExamples(backendOptions(program.command('status').description('show the current publication and the last sync runs')), [
  'skystreams status',
  "skystreams status --json | jq '.runs[0].state'",
  'skystreams status --bucket my-mirror --table my-mirror',
])
  .option('--json', 'print JSON (the same as GET /api/v1/status)')
  .option('--runs <n>', 'sync runs listed', '10')
  .action(async (flags: BackendFlags & { json?: boolean; runs: string }) =>
    withBackend(flags, async (backend) => {
      const runs = Number(flags.runs);
      if (!Number.isInteger(runs) || runs < 1) throw new ConfigError(`--runs: expected a whole number of runs, got ${flags.runs}`);
      const report = await statusReport(backend.catalog, { isAlive: isAliveOnThisHost, runs });
      console.log(flags.json ? JSON.stringify(report, null, 2) : statusText(report, new Date()));
    }),
  );

/** The status report as a person reads it: the publication, the channels, then a table of runs, newest first. */
function statusText(report: StatusReport, now: Date): string {
  const p = report.publication;
  const summary = p
    ? `generation ${p.generation}: ${p.itemCount} items, ${bytes(p.totalBytes)}, published ${p.publishedAt} (upstream updated ${p.upstreamUpdated})`
    : 'nothing published yet';
  // A mirror that only ever used the default channel has nothing to add to the summary.
  const named = report.channels.length > 1 || report.channels.some((channel) => channel.history.length > 0);
  const channels = (named ? report.channels : []).map(
    (channel) => `channel ${channel.name}: generation ${channel.generation}${channel.history.length > 0 ? ` (before: ${channel.history.join(', ')})` : ''}`,
  );
  const why: Record<SourceConflict['reason'], (conflict: SourceConflict) => string> = {
    product: () => ' (higher priority, or listed first)',
    path: (conflict) => `'s ${conflict.kept.product}, which lists other bytes at that path`,
    name: (conflict) => `'s ${conflict.kept.product}, the same image ${conflict.image} to MAAS`,
  };
  const conflicts = report.conflicts.map(
    (conflict) =>
      `conflict: ${conflict.reason === 'path' ? `${conflict.path} (in ${conflict.dropped.product})` : conflict.product} ` +
      `from source ${conflict.dropped.source} gave way to source ${conflict.kept.source}${why[conflict.reason](conflict)}`,
  );
  const head = [summary, ...channels, ...conflicts].join('\n');
  if (report.runs.length === 0) return `${head}\nno sync has run yet`;
  const rows = report.runs.map((run) => [
    run.startedAt,
    run.state,
    `${run.itemsCopied} (${bytes(run.bytesCopied)})`,
    String(run.itemsPresent),
    formatDuration(Date.parse(run.finishedAt ?? now.toISOString()) - Date.parse(run.startedAt)) + (run.finishedAt ? '' : ' so far'),
    run.generation === undefined ? '' : String(run.generation),
    run.error ?? '',
  ]);
  return `${head}\n\n${formatTable(['STARTED', 'STATE', 'COPIED', 'PRESENT', 'DURATION', 'GENERATION', 'ERROR'], rows)}`;
}

withExamples(backendOptions(program.command('verify').description('audit every file of the current publication: present, right size, right sha256')), [
  'skystreams verify --data-dir /srv/skystreams',
  'skystreams verify --channel candidate --data-dir /srv/skystreams',
  'skystreams verify --bucket my-mirror --table my-mirror   # exit code 1 when a file is bad',
])
  .option('--channel <name>', `the channel whose publication to check (default ${DEFAULT_CHANNEL})`)
  .action(async (flags: BackendFlags & { channel?: string }) =>
    withBackend(flags, async (backend) => {
      const channel = flags.channel === undefined ? undefined : channelName(flags.channel, '--channel');
      const report = await auditPublication(backend.objects, backend.catalog, undefined, channel);
      if (report.generation === null) throw new ConfigError('nothing published yet: run `skystreams sync` first');
      for (const { path, problem } of report.problems) console.error(`BAD ${path}: ${problem}`);
      console.log(
        `generation ${report.generation}: checked ${report.checkedFiles} files (${bytes(report.checkedBytes)}), ${report.problems.length} bad`,
      );
      if (report.problems.length > 0) {
        await requestRepair(backend.catalog, report.problems.map((problem) => problem.path));
        console.log('the next sync fetches the bad files again from upstream and checks them before they replace these');
        process.exitCode = EXIT_CODES.failure.code;
      }
    }),
);

withExamples(backendOptions(program.command('init').description('create (or check) the S3 bucket and DynamoDB table of the cloud backend')), [
  'skystreams init --bucket my-mirror --table my-mirror --region eu-west-1',
]).action(
  async (flags: BackendFlags) => {
    if (!flags.bucket && !flags.table) throw new ConfigError('init needs --bucket and --table');
    const { initCloudResources } = await import('../adapters/cloud.ts');
    const lines = await initCloudResources(cloudBackendOptions(flags));
    for (const line of lines) console.log(line);
  },
);

withExamples(backendOptions(program.command('export').description('write the current publication (metadata, items, a keyring) to one tar archive, for an offline mirror')), [
  'skystreams export --out maas-images.tar --keyring /usr/share/keyrings/ubuntu-cloudimage-keyring.gpg',
  'skystreams export --channel candidate --out candidate.tar --data-dir /srv/skystreams',
])
  .requiredOption('--out <file>', 'the bundle to write (written beside as FILE.partial, renamed when complete)')
  .option('--keyring <file>', 'a keyring to ship in the bundle for the offline MAAS (default: none)')
  .option('--channel <name>', `the channel whose publication to export (default ${DEFAULT_CHANNEL})`)
  .action(async (flags: BackendFlags & { out: string; keyring?: string; channel?: string }) =>
    withBackend(flags, async (backend) => {
      const keyring = flags.keyring === undefined ? undefined : readKeyringFile(flags.keyring, '--keyring');
      const channel = flags.channel === undefined ? undefined : channelName(flags.channel, '--channel');
      const bundle = await exportPublication(backend.objects, backend.catalog, { keyring, now: new Date(), channel });
      await writeBundleFile(flags.out, bundle.stream);
      const { manifest } = bundle;
      console.log(
        `exported generation ${manifest.generation} (upstream updated ${manifest.upstreamUpdated}): ` +
          `${manifest.metadataFiles} metadata files, ${manifest.items} items (${bytes(manifest.itemBytes)}) to ${flags.out}`,
      );
    }),
  );

withExamples(backendOptions(program.command('import').description('verify a bundle written by `export` and publish it; refuses one older than what is served')), [
  'skystreams import maas-images.tar --data-dir /srv/skystreams --keyring /usr/share/keyrings/ubuntu-cloudimage-keyring.gpg',
  'skystreams import candidate.tar --channel candidate --keyring site-keyring.gpg',
])
  .argument('<bundle>', 'the file `skystreams export` wrote')
  .option('--keyring <file>', 'the keyring the bundle\'s metadata must be signed with (the bundle\'s own is no proof)', syncDefaults.keyringFile)
  .option('--no-verify', 'accept a bundle of an unsigned source; never for production')
  .option('--channel <name>', `the channel to publish the bundle to (default ${DEFAULT_CHANNEL})`)
  .option(
    '--prune-grace <duration>',
    `keep replaced generations this long for clients mid-download (default ${describeDuration(syncDefaults.pruneGraceMs.direct)})`,
  )
  .action(async (file: string, flags: BackendFlags & Pick<SyncFlags, 'keyring' | 'verify' | 'pruneGrace' | 'channel'>) => {
    // The bundle's items are the selection: it holds what the exporting mirror selected.
    const config = syncConfig({ ...flags, source: syncDefaults.source, filter: [] });
    const upstream = await BundleUpstream.open(file);
    await withBackend(flags, async (backend) => {
      let run: SyncRun;
      try {
        run = await syncOnce(config, backend, { upstream, paths: upstream.paths() });
      } catch (error) {
        if (error instanceof RollbackError) {
          throw new BundleError(file, `holds an older publication than the one served (${error.message})`, { cause: error });
        }
        throw error;
      }
      const current = await backend.catalog.getCurrent(config.channel);
      console.log(
        run.state === 'unchanged'
          ? `unchanged: generation ${current?.generation} already serves this bundle's publication`
          : `imported ${file} as generation ${run.generation} (upstream updated ${upstream.manifest.upstreamUpdated})`,
      );
    });
  });

withExamples(backendOptions(program.command('promote').description('point channel TO at exactly the generation channel FROM serves, atomically')), [
  'skystreams promote candidate stable --data-dir /srv/skystreams',
  'skystreams promote candidate stable --bucket my-mirror --table my-mirror',
])
  .argument('<from>', 'the channel to take the generation from, e.g. candidate')
  .argument('<to>', 'the channel to point at it, e.g. stable (created if absent)')
  .action(async (from: string, to: string, flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const { generation, changed } = await promote(backend.catalog, from, to);
      console.log(changed ? `channel ${to} now serves generation ${generation} (from ${from})` : `unchanged: channel ${to} already serves generation ${generation}`);
    }),
  );

withExamples(backendOptions(program.command('rollback').description('point a channel back at the generation it served before, atomically')), [
  'skystreams rollback stable --data-dir /srv/skystreams   # exit code 1 when there is nothing to go back to',
])
  .argument('<channel>', `the channel, e.g. ${DEFAULT_CHANNEL}`)
  .action(async (name: string, flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const { from, to } = await rollBack(backend.catalog, name);
      console.log(`channel ${name} now serves generation ${to} again (was ${from})`);
    }),
  );

withExamples(backendOptions(program.command('pin').description('keep a mirrored version beyond --max, and its files out of pruning, while upstream lists it')), [
  'skystreams pin com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250709',
])
  .argument('<product>', 'the product name, as `skystreams status` and /api/v1/images show it')
  .argument('<version>', 'the version name, e.g. 20250709')
  .action(async (product: string, version: string, flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const pins = await addPin(backend.catalog, { product, version });
      console.log(`pinned ${product} ${version} (${pins.length} pinned); the next sync keeps it`);
    }),
  );

withExamples(backendOptions(program.command('unpin').description('let --max and pruning apply to a pinned version again')), [
  'skystreams unpin com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250709',
])
  .argument('<product>')
  .argument('<version>')
  .action(async (product: string, version: string, flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const pins = await removePin(backend.catalog, { product, version });
      console.log(`unpinned ${product} ${version} (${pins.length} pinned)`);
    }),
  );
addPackageCommands(program, { backendOptions, withExamples, withBackend });

// ---------------------------------------------------------------- custom images (re-signed mode)

interface UploadFlags extends SyncFlags, Omit<UploadRequest, 'files'> {
  file: string[];
  /** commander's `--no-sync` sets sync=false. */
  sync: boolean;
}

withExamples(syncOptions(program.command('remove-upload').description('take an uploaded custom image version out of the stream, then sync')), [
  'skystreams remove-upload com.skystreams.custom:v3:centos:mycentos9:amd64:generic 20261202 --resign',
  'skystreams remove-upload com.skystreams.custom:v3:centos:mycentos9:amd64:generic 20261202.01 --config sources.json --no-sync',
])
  .argument('<product>', 'the uploaded product id (skystreams status --json, or GET /api/v1/images)')
  .argument('<version>', 'the version to remove')
  .option('--no-sync', 'only remove it; the next sync publishes without it')
  .action(async (product: string, version: string, flags: SyncFlags & { sync: boolean }) => {
    const config = syncConfig(flags);
    if (flags.sync) await syncSettings(config);
    await withBackend(flags, async (backend) => {
      const record = await removeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => new Date() }, product, version);
      console.log(`removed ${record.product} version ${record.version}: its ${record.items.length} files go once no kept generation lists them`);
      if (!flags.sync) {
        console.log('the next sync publishes without it');
        return;
      }
      refuseResignWithoutKeys(config, backend);
      const run = await syncOnce(config, backend);
      console.log(`published without it in generation ${run.generation ?? (await backend.catalog.getCurrent(config.channel))?.generation}`);
    });
  });

withExamples(
  syncOptions(program.command('upload').description("add a custom (packer-built) image to the mirror's re-signed stream, then sync to publish it")),
  [
    "skystreams upload --resign --os centos --release mycentos9 --arch amd64 --subarch generic --title 'CentOS 9 (site)' --file root-tgz=./image.tgz --file manifest=./image.manifest",
    "skystreams upload --resign --os custom --release noble-site --arch amd64 --subarch generic --title 'Ubuntu 24.04 (site)' --file boot-kernel=./vmlinuz --file boot-initrd=./initrd --file squashfs=./root.squashfs --file squashfs.manifest=./root.manifest",
    'skystreams upload --resign --no-sync … && skystreams sync --resign   # store now, publish with the next sync',
  ],
)
  .requiredOption('--os <name>', 'operating system MAAS shows the image under (e.g. custom, centos, rhel)')
  .requiredOption('--release <name>', 'release name, unique per os (e.g. mycentos9)')
  .requiredOption('--arch <arch>', 'architecture (amd64, arm64, …)')
  .requiredOption('--subarch <name>', 'subarchitecture (generic, or a kernel like ga-24.04)')
  .requiredOption('--title <text>', 'the title MAAS shows')
  .option('--label <name>', 'stream label (default stable)')
  .option('--kflavor <name>', 'kernel flavour of an image with its own kernel (default generic)')
  .option('--subarches <list>', 'comma-separated subarches the kernel supports (default: --subarch)')
  .option('--release-version <text>', "the release's version, e.g. 9 (default: --release)")
  .option('--support-eol <date>', 'end of support, YYYY-MM-DD')
  .addOption(
    new Option('--file <ftype=path>', 'a file of the image: boot-kernel, boot-initrd, squashfs or root-image.gz, root-tgz, manifest (repeatable)')
      .default([])
      .argParser((value: string, previous: string[]) => [...previous, value]),
  )
  .option('--no-sync', 'only store the image; the next sync publishes it')
  .action(async (flags: UploadFlags) => {
    const config = syncConfig(flags);
    if (!config.resign) {
      throw new ConfigError(
        'upload: custom images are published only in re-signed mode: add --resign (and use it for every sync of this mirror); ' +
          "verbatim mode serves upstream's signed files unchanged and cannot add products to them. Nothing was stored.",
      );
    }
    const { os, release, arch, subarch, title, label, kflavor, subarches, releaseVersion, supportEol } = flags;
    const upload = validateUpload(
      { os, release, arch, subarch, title, label, kflavor, subarches, releaseVersion, supportEol, files: flags.file.map(uploadFileFlag) },
      'upload',
    );
    if (flags.sync) await syncSettings(config);
    const sources = await openUploadFiles(upload, '--file', { dataDir: flags.dataDir ?? DEFAULT_DATA_DIR });
    await withBackend(flags, async (backend) => {
      refuseResignWithoutKeys(config, backend);
      const record = await storeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => new Date() }, upload, sources);
      const total = record.items.reduce((sum, item) => sum + item.size, 0);
      console.log(`stored ${record.product} version ${record.version}: ${record.items.length} files (${bytes(total)})`);
      if (!flags.sync) {
        console.log('the next sync with --resign publishes it');
        return;
      }
      const run = await syncOnce(config, backend);
      console.log(`published in generation ${run.generation ?? (await backend.catalog.getCurrent(config.channel))?.generation}`);
    });
  });

/** `--file FTYPE=PATH`. */
function uploadFileFlag(value: string): UploadFile {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new ConfigError(`--file ${value}: expected FTYPE=PATH, e.g. root-tgz=./image.tgz`);
  return { ftype: value.slice(0, at), source: value.slice(at + 1) };
}

// ---------------------------------------------------------------- the mirror's signing keys (re-signed mode)

const keyCommand = withExamples(program.command('key').description("the mirror's own signing keys (re-signed mode; docs/key-rotation.md)"), [
  'skystreams key show --data-dir /srv/skystreams',
  'skystreams key rotate --signing-secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:skystreams-signing --bucket my-mirror --table my-mirror',
]);

/** The backend's key store, or a ConfigError saying how to name one. */
function keyStoreOf(backend: Backend): SigningKeyStore {
  if (!backend.signingKeys) throw new ConfigError(`${backend.description} has no signing key store: name one with --signing-secret`);
  return backend.signingKeys;
}

withExamples(backendOptions(keyCommand.command('show').description('fingerprints of the active key and of the previous keys still published')), [
  'skystreams key show --data-dir /srv/skystreams',
]).action(
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

withExamples(backendOptions(keyCommand.command('rotate').description('sign from the next publication on with a new key; the old public key stays in /keyring.gpg')), [
  'skystreams key rotate --data-dir /srv/skystreams   # then sync, and give MAAS the new /keyring.gpg',
]).action(
  async (flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const { retiring, active } = await rotateSigningKey(keyStoreOf(backend));
      await requestRepublish(backend.catalog, 'signing key rotated');
      console.log(`new active key ${active}; the next sync publishes with it`);
      if (retiring) console.log(`${retiring} stays in the keyring until: skystreams key retire ${retiring}`);
    }),
);

withExamples(backendOptions(keyCommand.command('retire').description('drop a previous key from the keyring the next publication serves')), [
  'skystreams key retire 0123456789ABCDEF0123456789ABCDEF01234567 --data-dir /srv/skystreams',
])
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
  process.exitCode = exitCodeOf(error);
  // Commander has already printed its own message (and the help, for a usage error).
  if (!(error instanceof CommanderError)) console.error(`skystreams: ${error instanceof Error ? error.message : String(error)}`);
  if (!(error instanceof SkystreamsError) && !(error instanceof CommanderError) && process.env.SKYSTREAMS_DEBUG) console.error(error);
}

function exitCodeOf(error: unknown): number {
  // `--help` and `--version` end parsing with a CommanderError too, of exit code 0.
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_CODES.ok.code : EXIT_CODES.usage.code;
  if (error instanceof ConfigError) return EXIT_CODES.usage.code;
  if (error instanceof LockHeldError) return EXIT_CODES.locked.code;
  return EXIT_CODES.failure.code;
}
