/** `skystreams verify`: audit every file of a publication, and ask the next sync to repair the bad ones. */
import type { Command } from 'commander';
import { auditPublication } from '../../core/audit.ts';
import { channelName } from '../../core/channels.ts';
import { requestRepair } from '../../core/engine.ts';
import { ConfigError } from '../../core/errors.ts';
import { DEFAULT_CHANNEL } from '../../core/ports.ts';
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
    .action(async (flags: BackendFlags & { channel?: string }) => {
      const channel = flags.channel === undefined ? undefined : channelName(flags.channel, '--channel');
      // The audit only reads (it works on a full disk); the repair request is the one write, made only when needed.
      const report = await withMirror(flags, (backend) => auditPublication(backend.objects, backend.catalog, undefined, channel), { readOnly: true });
      if (report.generation === null) throw new ConfigError('nothing published yet: run `skystreams sync` first');
      for (const { path, problem } of report.problems) console.error(`BAD ${path}: ${problem}`);
      console.log(
        `generation ${report.generation}: checked ${report.checkedFiles} files (${bytes(report.checkedBytes)}), ${report.problems.length} bad`,
      );
      if (report.problems.length > 0) {
        await withMirror(flags, (backend) => requestRepair(backend.catalog, report.problems.map((problem) => problem.path)));
        console.log('the next sync fetches the bad files again from upstream and checks them before they replace these');
        process.exitCode = EXIT_CODES.failure.code;
      }
    });
}
