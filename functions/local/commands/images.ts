/** `skystreams images`: what the mirror serves, with the product ids and versions the other commands take. */
import type { Command } from 'commander';
import { imagesReport, type ImagesReport } from '../../http/images-report.ts';
import type { BackendFlags } from '../options.ts';
import { bytes } from '../progress.ts';
import { formatTable } from '../table.ts';
import { backendOptions, withMirror, withExamples } from './support.ts';

export function addImagesCommand(program: Command): void {
  withExamples(backendOptions(program.command('images').description('list the images the mirror serves: product ids, versions (newest first), pins and uploads')), [
    'skystreams images',
    "skystreams images --json | jq -r '.images[] | select(.uploaded) | .product'",
  ])
    .option('--json', 'print JSON')
    .action(async (flags: BackendFlags & { json?: boolean }) =>
      withMirror(flags, async (backend) => {
        const report = await imagesReport(backend.catalog, backend.objects);
        console.log(flags.json ? JSON.stringify(report, null, 2) : imagesText(report));
      }),
    );
}

/** One row per version, the product's fields on its newest; `*` marks a pinned version. */
export function imagesText(report: ImagesReport): string {
  if (report.generation === null) return 'nothing published yet';
  const rows = report.images.flatMap((image) =>
    image.versions.map((version, i) => [
      i === 0 ? image.product : '',
      i === 0 ? [image.os, image.release].filter(Boolean).join(' ') : '',
      i === 0 ? [image.arch, image.subarch].filter(Boolean).join('/') : '',
      i === 0 ? (image.label ?? '') : '',
      `${version.version}${version.pinned ? ' *' : ''}`,
      bytes(version.bytes),
      i === 0 && image.uploaded ? 'uploaded' : '',
    ]),
  );
  const pinned = report.images.some((image) => image.versions.some((version) => version.pinned));
  const table = formatTable(['PRODUCT', 'OS', 'ARCH', 'LABEL', 'VERSION', 'SIZE', 'SOURCE'], rows);
  return `generation ${report.generation}: ${report.images.length} ${report.images.length === 1 ? 'image' : 'images'}\n\n${table}${pinned ? '\n\n* pinned: kept beyond --max while upstream lists it' : ''}`;
}
