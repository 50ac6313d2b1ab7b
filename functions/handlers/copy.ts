/**
 * Step Functions Distributed Map item: copies one file from upstream, verified
 * while it streams, or (a large one) as many of its ranged parts as this
 * invocation has time for. `previous` is this item's last result: when it
 * carries a continuation, the state machine loops back here with it.
 */
import type { Context } from 'aws-lambda';
import type { RangedCopy } from '../core/engine.ts';
import type { CopyTask } from '../core/planner.ts';
import { copyBudgetMs } from '../adapters/lambda/environment.ts';
import { observed } from '../adapters/lambda/observability.ts';
import { syncRuntime } from '../adapters/lambda/sync-runtime.ts';
import { youngCollection } from '../runtime/young-collection.ts';

interface CopyEvent {
  runId: string;
  task: CopyTask;
  previous?: { continuation?: RangedCopy };
}

// Copying is where item bodies stream through: free their chunks young (functions/runtime/young-collection.ts).
const onBodyBytes = youngCollection();

export const handler = observed(async ({ runId, task, previous }: CopyEvent, context: Context) => {
  const { engine } = await syncRuntime(process.env, { onBodyBytes });
  return engine.copyWithinBudget(runId, task, copyBudgetMs(context.getRemainingTimeInMillis()), previous?.continuation);
});
