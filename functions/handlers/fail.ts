/** Step Functions Catch: records the run as failed and releases the lock; the published mirror is untouched. */
import { describeCaughtError, type CaughtError } from '../adapters/lambda/failure.ts';
import { observed } from '../adapters/lambda/observability.ts';
import { syncRuntime } from '../adapters/lambda/sync-runtime.ts';

export const handler = observed(async ({ runId, error }: { runId: string; error?: CaughtError }) => {
  const { engine } = await syncRuntime();
  const reason = describeCaughtError(error);
  await engine.fail(runId, new Error(reason));
  return { runId, recorded: reason };
});
