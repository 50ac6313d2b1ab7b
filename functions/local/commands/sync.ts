/** `skystreams sync` (one run) and `skystreams local` (serve, and sync every interval). */
import { resolve as resolvePath } from 'node:path';
import type { Command } from 'commander';
import { redactUrl } from '../../core/redact.ts';
import { RESIGNED_MAAS_KEYRING, parseDuration } from '../../core/settings.ts';
import { createApp } from '../../http/app.ts';
import { openBackend, syncConfig, syncKeyrings, type SyncFlags } from '../options.ts';
import { startServer } from '../server.ts';
import { inRecordedMode, portFlag, refuseResignWithoutKeys, sleepUnless, syncOnce, syncOptions, syncRunOptions, untilSignal, withBackend, withExamples } from './support.ts';

export function addSyncCommand(program: Command): void {
  withExamples(syncOptions(program.command('sync').description('run one sync: verify upstream, copy new items, publish atomically, prune')), [
    "skystreams sync --filter arch=amd64 --filter 'release~^(jammy|noble)?$' --max 2",
    'skystreams sync --source https://mirror.internal/maas/ --keyring ./upstream-keyring.gpg --data-dir /srv/skystreams',
    'skystreams sync --bucket my-mirror --table my-mirror --region eu-west-1',
  ]).action(async (flags: SyncFlags) => {
    const config = syncConfig(flags);
    await withBackend(flags, (backend) => syncOnce(config, backend, syncRunOptions(flags)));
  });
}

export function addLocalCommand(program: Command): void {
  withExamples(syncOptions(program.command('local').description('serve, and sync now and every --interval')), [
    'skystreams local --filter arch=amd64 --max 1',
    "skystreams local --host 0.0.0.0 --interval 6h --filter 'release~^(noble)?$'",
  ])
    .option('--port <port>', 'TCP port', '8080')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--interval <duration>', 'time between syncs', '1h')
    .action(async (flags: SyncFlags & { port: string; host: string; interval: string }) => {
      const interval = parseDuration('--interval', flags.interval);
      const port = portFlag(flags.port);
      // Fail fast on bad flags, before serving anything.
      const requested = syncConfig(flags);
      const options = syncRunOptions(flags);
      await syncKeyrings(requested);
      const backend = await openBackend(flags);
      const { config } = await inRecordedMode(requested, backend, options.switchMode);
      refuseResignWithoutKeys(config, backend);
      // The status page's MAAS command names the keyring MAAS checks the served metadata with:
      // this sync's upstream keyring, or in re-signed mode the mirror's own, fetched from /keyring.gpg.
      const keyringFilename = config.resign
        ? RESIGNED_MAAS_KEYRING
        : config.keyring && 'file' in config.keyring
          ? resolvePath(config.keyring.file)
          : undefined;
      // The page warns when no check has succeeded for 3 intervals: this process is the schedule.
      const server = await startServer(createApp({ ...backend, keyringFilename, syncIntervalMs: interval }), { port, host: flags.host });
      const syncing = config.sources
        ? config.sources.map((source) => `${source.name} (${redactUrl(source.url)})`).join(', ')
        : redactUrl(config.source);
      console.log(`serving ${backend.description} at ${server.url}; syncing ${syncing} every ${flags.interval}`);
      let stopped = false;
      const loop = (async () => {
        while (!stopped) {
          try {
            await syncOnce(requested, backend, options);
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
}
