/** `skystreams export` and `skystreams import`: a publication as one tar archive, for an offline mirror. */
import type { Command } from 'commander';
import { exportPublication } from '../../core/bundle.ts';
import { channelName } from '../../core/channels.ts';
import { BundleError, RollbackError } from '../../core/errors.ts';
import { DEFAULT_CHANNEL, type SyncRun } from '../../core/ports.ts';
import { syncDefaults } from '../../core/settings.ts';
import { BundleUpstream, writeBundleFile } from '../../adapters/fs/bundle-file.ts';
import { readKeyringFile } from '../../adapters/fs/keyring-file.ts';
import { syncConfig, type BackendFlags, type SyncFlags } from '../options.ts';
import { bytes } from '../progress.ts';
import { backendOptions, pruneGraceHelp, syncOnce, withBackend, withExamples, withMirror } from './support.ts';

export function addBundleCommands(program: Command): void {
  withExamples(
    backendOptions(program.command('export').description('write the current publication (metadata, items, a keyring) to one tar archive, for an offline mirror')),
    [
      'skystreams export --out maas-images.tar --keyring /usr/share/keyrings/ubuntu-cloudimage-keyring.gpg',
      'skystreams export --channel candidate --out candidate.tar --data-dir /srv/skystreams',
    ],
  )
    .requiredOption('--out <file>', 'the bundle to write (written beside as FILE.partial, renamed when complete)')
    .option('--keyring <file>', 'a keyring to ship in the bundle for the offline MAAS (default: none)')
    .option('--channel <name>', `the channel whose publication to export (default ${DEFAULT_CHANNEL})`)
    .action(async (flags: BackendFlags & { out: string; keyring?: string; channel?: string }) =>
      withMirror(flags, async (backend) => {
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

  withExamples(
    backendOptions(program.command('import').description('verify a bundle written by `export` and publish it; refuses one older than what is served')),
    [
      'skystreams import maas-images.tar --data-dir /srv/skystreams --keyring /usr/share/keyrings/ubuntu-cloudimage-keyring.gpg',
      'skystreams import candidate.tar --channel candidate --keyring site-keyring.gpg',
    ],
  )
    .argument('<bundle>', 'the file `skystreams export` wrote')
    .option('--keyring <file>', 'the keyring the bundle\'s metadata must be signed with (the bundle\'s own is no proof)', syncDefaults.keyringFile)
    .option('--no-verify', 'accept a bundle of an unsigned source; never for production')
    .option('--channel <name>', `the channel to publish the bundle to (default ${DEFAULT_CHANNEL})`)
    .option('--prune-grace <duration>', pruneGraceHelp)
    .action(async (file: string, flags: BackendFlags & Pick<SyncFlags, 'keyring' | 'verify' | 'pruneGrace' | 'channel'>) => {
      // The bundle's items are the selection: it holds what the exporting mirror selected.
      const config = syncConfig({ ...flags, filter: [] });
      const upstream = await BundleUpstream.open(file);
      await withBackend(flags, async (backend) => {
        let run: SyncRun;
        try {
          run = await syncOnce(config, backend, { from: { upstream, paths: upstream.paths() } });
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
}
