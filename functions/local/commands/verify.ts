/** `skystreams verify`: audit every file of a publication, and ask the next sync to repair the bad ones. */
import type { Command } from 'commander';
import { auditPublication } from '../../core/audit.ts';
import { channelName } from '../../core/channels.ts';
import { requestRepair, requestRepublish } from '../../core/engine.ts';
import { ConfigError } from '../../core/errors.ts';
import { DEFAULT_CHANNEL } from '../../core/ports.ts';
import { openKeyring } from '../../adapters/fs/keyring-file.ts';
import { EXIT_CODES, type BackendFlags } from '../options.ts';
import { bytes } from '../progress.ts';
import { backendOptions, withMirror, withExamples } from './support.ts';

export function addVerifyCommand(program: Command): void {
  withExamples(backendOptions(program.command('verify').description('audit every file of the current publication: present, right size, right sha256')), [
    'skystreams verify --data-dir /srv/skystreams',
    'skystreams verify --channel candidate --data-dir /srv/skystreams',
    'skystreams verify --bucket my-mirror --table my-mirror   # exit code 1 when a file is bad',
  ])
    .option('--channel <name>', `the channel whose publication to check (default ${DEFAULT_CHANNEL})`)
    .option('--keyring <file>', "upstream's keyring: checks the signatures of verbatim metadata published before its digests were recorded")
    .action(async (flags: BackendFlags & { channel?: string; keyring?: string }) => {
      const channel = flags.channel === undefined ? undefined : channelName(flags.channel, '--channel');
      const keyring = flags.keyring === undefined ? undefined : await openKeyring({ file: flags.keyring }, '--keyring');
      // The audit only reads (it works on a full disk); the repair request is the one write, made only when needed.
      const report = await withMirror(flags, (backend) => auditPublication(backend.objects, backend.catalog, undefined, channel, keyring), { readOnly: true });
      if (report.generation === null) throw new ConfigError('nothing published yet: run `skystreams sync` first');
      for (const { path, problem } of report.problems) console.error(`BAD ${path}: ${problem}`);
      console.log(
        `generation ${report.generation}: checked ${report.checkedFiles} files (${bytes(report.checkedBytes)}), ${report.problems.length} bad`,
      );
      if (report.problems.length > 0) {
        const items = report.problems.filter((problem) => problem.kind !== 'metadata').map((problem) => problem.path);
        const metadata = report.problems.filter((problem) => problem.kind === 'metadata').map((problem) => problem.path);
        // Either request makes the next sync plan and publish again; fetching items again needs the item paths.
        await withMirror(flags, (backend) =>
          items.length > 0 ? requestRepair(backend.catalog, items) : requestRepublish(backend.catalog, `metadata damaged at rest: ${metadata.join(', ')}`),
        );
        console.log('the next sync fetches the bad files again from upstream (or rebuilds re-signed metadata) and checks them before they replace these');
        process.exitCode = EXIT_CODES.failure.code;
      }
    });
}
