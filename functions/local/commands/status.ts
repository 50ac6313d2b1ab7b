/** `skystreams status`: the current publication, the channels and the last sync runs. */
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import type { SourceConflict } from '../../core/sources.ts';
import { formatDuration } from '../../http/format.ts';
import { statusReport, type StatusReport } from '../../http/reports.ts';
import { isAliveOnThisHost } from '../../adapters/process-holder.ts';
import { describeDuration, parseDuration, syncDefaults } from '../../core/settings.ts';
import { EXIT_CODES, type BackendFlags } from '../options.ts';
import { bytes } from '../progress.ts';
import { formatTable } from '../table.ts';
import { backendOptions, withMirror, withExamples } from './support.ts';

export function addStatusCommand(program: Command): void {
  withExamples(backendOptions(program.command('status').description('show the current publication and the last sync runs')), [
    'skystreams status',
    "skystreams status --json | jq '.runs[0].state'",
    'skystreams status --bucket my-mirror --table my-mirror',
  ])
    .option('--json', 'print JSON (the same as GET /api/v1/status)')
    .option('--runs <n>', 'sync runs listed', '10')
    .option('--check', 'for monitoring: exit 1 when the mirror is stale (see --stale-after and --interval)')
    .option('--stale-after <duration>', `upstream metadata older than this is stale; 0 turns the rule off, e.g. for an air-gapped mirror (default ${describeDuration(syncDefaults.staleAfterMs)})`)
    .option('--interval <duration>', 'the mirror syncs on this schedule (skystreams local --interval): stale when no check succeeded for 3 of them')
    .action(async (flags: BackendFlags & { json?: boolean; runs: string; check?: boolean; staleAfter?: string; interval?: string }) =>
      withMirror(flags, async (backend) => {
        const runs = Number(flags.runs);
        if (!Number.isInteger(runs) || runs < 1) throw new ConfigError(`--runs: expected a whole number of runs, got ${flags.runs}`);
        const report = await statusReport(backend.catalog, {
          isAlive: isAliveOnThisHost,
          runs,
          ...(flags.staleAfter !== undefined && { staleAfterMs: parseDuration('--stale-after', flags.staleAfter, { allowZero: true }) }),
          ...(flags.interval !== undefined && { syncIntervalMs: parseDuration('--interval', flags.interval) }),
        });
        console.log(flags.json ? JSON.stringify(report, null, 2) : statusText(report, new Date()));
        if (flags.check && report.stale) {
          console.error(`skystreams: stale since ${report.stale.since}: ${report.stale.reason}`);
          process.exitCode = EXIT_CODES.failure.code;
        }
      }, { readOnly: true }),
    );
}

/** The status report as a person reads it: the publication, the channels, then a table of runs, newest first. */
export function statusText(report: StatusReport, now: Date): string {
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
  const mode = report.mode ? [`mode: ${report.mode}`] : [];
  const stale = report.stale ? [`STALE since ${report.stale.since}: ${report.stale.reason}`] : [];
  const head = [summary, ...mode, ...stale, ...channels, ...conflicts].join('\n');
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
  // The newest run's warnings still apply; a mode switch is worth seeing as long as its run is listed.
  const notes = [
    ...(report.runs[0]?.warnings ?? []).map((warning) => `warning (run ${report.runs[0]!.id}): ${warning}`),
    ...report.runs.filter((run) => run.modeSwitch).map((run) => `run ${run.id} switched the publishing mode from ${run.modeSwitch!.from} to ${run.modeSwitch!.to}`),
  ];
  const table = formatTable(['STARTED', 'STATE', 'COPIED', 'PRESENT', 'DURATION', 'GENERATION', 'ERROR'], rows);
  return `${head}\n\n${table}${notes.length > 0 ? `\n\n${notes.join('\n')}` : ''}`;
}
