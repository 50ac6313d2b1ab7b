/** `skystreams packages NAME` and `skystreams diff PRODUCT FROM TO`: the package index, from the command line. */
import type { Command } from 'commander';
import { diffImages, packagesNamed, type ImageDiff, type PackageReport } from '../../core/packages.ts';
import type { BackendFlags } from '../options.ts';
import { backendOptions, withMirror, withExamples } from './support.ts';

export function addPackageCommands(program: Command): void {
  withExamples(backendOptions(
    program
      .command('packages')
      .description('which mirrored images ship which version of a package (from their manifests)')
      .argument('<name>', 'package name; `libc6` also finds `libc6:amd64`'),
  ), [
    'skystreams packages openssl --data-dir /srv/skystreams',
    'skystreams packages libc6 --json --bucket my-mirror --table my-mirror',
  ])
    .option('--json', 'print JSON')
    .action(async (name: string, flags: BackendFlags & { json?: boolean }) =>
      withMirror(flags, async (backend) => {
        const report = await packagesNamed(backend.catalog, name);
        console.log(flags.json ? JSON.stringify(report, null, 2) : formatPackageReport(report));
      }),
    );

  withExamples(backendOptions(
    program
      .command('diff')
      .description('packages added, removed and changed between two versions of a mirrored image')
      .argument('<product>', 'product id, e.g. com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04')
      .argument('<from>', 'the older version, e.g. 20250618')
      .argument('<to>', 'the newer version'),
  ), [
    'skystreams diff com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250618 20250709 --data-dir /srv/skystreams',
  ])
    .option('--json', 'print JSON')
    .action(async (product: string, from: string, to: string, flags: BackendFlags & { json?: boolean }) =>
      withMirror(flags, async (backend) => {
        const diff = await diffImages(backend.catalog, product, from, to);
        console.log(flags.json ? JSON.stringify(diff, null, 2) : formatImageDiff(diff));
      }),
    );
}

export function formatPackageReport(report: PackageReport): string {
  if (report.generation === null) return 'nothing published yet';
  const lines =
    report.images.length === 0
      ? [`no mirrored image lists ${report.package} (generation ${report.generation})`]
      : report.images.map((image) => `${image.product}  ${image.version}  ${image.package} ${image.packageVersion}`);
  for (const unread of report.unread) {
    lines.push(`not searched: ${unread.product} ${unread.version}: ${unread.reason}`);
  }
  return lines.join('\n');
}

export function formatImageDiff(diff: ImageDiff): string {
  return [
    `${diff.product}: ${diff.from.version} → ${diff.to.version}`,
    ...diff.added.map((p) => `  + ${p.package} ${p.version}`),
    ...diff.removed.map((p) => `  - ${p.package} ${p.version}`),
    ...diff.changed.map((p) => `  ~ ${p.package} ${p.from} → ${p.to}`),
    `${diff.added.length} added, ${diff.removed.length} removed, ${diff.changed.length} changed, ${diff.unchanged} unchanged`,
  ].join('\n');
}
