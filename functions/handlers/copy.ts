/** Step Functions Distributed Map item: copies one file from upstream, verified while it streams. */
import type { CopyTask } from '../core/planner.ts';
import { observed } from '../adapters/lambda/observability.ts';
import { syncRuntime } from '../adapters/lambda/sync-runtime.ts';

export const handler = observed(async ({ runId, task }: { runId: string; task: CopyTask }) => {
  const { engine } = await syncRuntime();
  return engine.copy(runId, task);
});
