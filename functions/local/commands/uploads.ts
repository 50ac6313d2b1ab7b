/** `skystreams upload` and `skystreams remove-upload`: custom images in the mirror's re-signed stream. */
import { Option, type Command } from 'commander';
import { validateUpload, type UploadFile, type UploadRequest } from '../../core/custom-images.ts';
import { ConfigError } from '../../core/errors.ts';
import { removeUpload, storeUpload } from '../../core/uploads.ts';
import { openUploadFiles } from '../../adapters/fs/upload-files.ts';
import { DEFAULT_DATA_DIR, syncConfig, syncKeyrings, type SyncFlags } from '../options.ts';
import { bytes } from '../progress.ts';
import { inRecordedMode, refuseResignWithoutKeys, syncOnce, syncOptions, syncRunOptions, withBackend, withExamples } from './support.ts';

interface UploadFlags extends SyncFlags, Omit<UploadRequest, 'files'> {
  file: string[];
  /** commander's `--no-sync` sets sync=false. */
  sync: boolean;
}

export function addUploadCommands(program: Command): void {
  withExamples(syncOptions(program.command('remove-upload').description('take an uploaded custom image version out of the stream, then sync')), [
    'skystreams remove-upload com.skystreams.custom:v3:centos:mycentos9:amd64:generic 20261202',
    'skystreams remove-upload com.skystreams.custom:v3:centos:mycentos9:amd64:generic 20261202.01 --config sources.json --no-sync',
  ])
    .argument('<product>', 'the uploaded product id, as `skystreams images` shows it')
    .argument('<version>', 'the version to remove')
    .option('--no-sync', 'only remove it; the next sync publishes without it')
    .action(async (product: string, version: string, flags: SyncFlags & { sync: boolean }) => {
      const requested = syncConfig(flags);
      const options = syncRunOptions(flags);
      if (flags.sync) await syncKeyrings(requested);
      await withBackend(flags, async (backend) => {
        // Refused before anything is removed when the flags name another mode than the mirror's.
        const { config } = await inRecordedMode(requested, backend, options.switchMode);
        const record = await removeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => new Date() }, product, version);
        console.log(`removed ${record.product} version ${record.version}: its ${record.items.length} files go once no kept generation lists them`);
        if (!flags.sync) {
          console.log('the next sync publishes without it');
          return;
        }
        refuseResignWithoutKeys(config, backend);
        const run = await syncOnce(requested, backend, options);
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
      const requested = syncConfig(flags);
      const { os, release, arch, subarch, title, label, kflavor, subarches, releaseVersion, supportEol } = flags;
      const upload = validateUpload(
        { os, release, arch, subarch, title, label, kflavor, subarches, releaseVersion, supportEol, files: flags.file.map(uploadFileFlag) },
        'upload',
      );
      const options = syncRunOptions(flags);
      // The files and the keyrings first: a mistyped path is reported before the mirror is opened.
      const sources = await openUploadFiles(upload, '--file', { dataDir: flags.dataDir ?? DEFAULT_DATA_DIR });
      if (flags.sync) await syncKeyrings(requested);
      await withBackend(flags, async (backend) => {
        refuseResignWithoutKeys(requested, backend);
        const { config } = await inRecordedMode(requested, backend, options.switchMode);
        if (!config.resign) {
          throw new ConfigError(
            'upload: custom images are published only in re-signed mode: add --resign (the mirror then stays re-signed); ' +
              "verbatim mode serves upstream's signed files unchanged and cannot add products to them. Nothing was stored.",
          );
        }
        refuseResignWithoutKeys(config, backend);
        const record = await storeUpload({ objects: backend.objects, catalog: backend.catalog, now: () => new Date() }, upload, sources);
        const total = record.items.reduce((sum, item) => sum + item.size, 0);
        console.log(`stored ${record.product} version ${record.version}: ${record.items.length} files (${bytes(total)})`);
        if (!flags.sync) {
          console.log('the next sync publishes it');
          return;
        }
        const run = await syncOnce(config, backend, options);
        console.log(`published in generation ${run.generation ?? (await backend.catalog.getCurrent(config.channel))?.generation}`);
      });
    });
}

/** `--file FTYPE=PATH`. */
function uploadFileFlag(value: string): UploadFile {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new ConfigError(`--file ${value}: expected FTYPE=PATH, e.g. root-tgz=./image.tgz`);
  return { ftype: value.slice(0, at), source: value.slice(at + 1) };
}
