/**
 * (h) Lambda cold import: each function's bundle, as `cdk synth` builds it,
 * imported in a fresh Node process (the part of a cold start the code
 * controls), median of BENCH_IMPORT_REPEATS (default 5) runs.
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { synthMirror } from '../test/infra/synth.ts';
import type { BenchRow } from './lib/report.ts';

const run = promisify(execFile);
const IMPORT_TIMER = 'const t=performance.now();await import(process.argv[1]);console.log(performance.now()-t)';

export async function benchLambdaImport(): Promise<BenchRow[]> {
  const repeats = Number(process.env.BENCH_IMPORT_REPEATS ?? 5);
  const synthesized = await synthMirror();
  try {
    const rows: BenchRow[] = [];
    for (const resources of Object.values(synthesized.template.findResources('AWS::Lambda::Function'))) {
      const { Properties } = resources as { Properties: { Code: { S3Key: string }; Description?: string } };
      const bundle = join(synthesized.outdir, `asset.${Properties.Code.S3Key.replace(/\.zip$/, '')}`, 'index.mjs');
      const times: number[] = [];
      for (let i = 0; i < repeats; i++) {
        const { stdout } = await run(process.execPath, ['--input-type=module', '-e', IMPORT_TIMER, pathToFileURL(bundle).href]);
        times.push(Number(stdout.trim()));
      }
      times.sort((a, b) => a - b);
      const median = times[Math.floor(times.length / 2)]!;
      rows.push({
        benchmark: `h. Lambda cold import: ${Properties.Description ?? bundle}`,
        size: `${(statSync(bundle).size / 2 ** 20).toFixed(2)} MB`,
        time: `${median.toFixed(0)} ms`,
        rate: '—',
        notes: `median of ${repeats} fresh processes (${times.map((t) => t.toFixed(0)).join(', ')} ms); goal ≤ 300 ms`,
      });
    }
    return rows;
  } finally {
    synthesized.dispose();
  }
}

