/** Step Functions: takes the lock, verifies upstream metadata, stages it and writes the copy list to the bucket. */
import { observed } from '../adapters/lambda/observability.ts';
import { syncRuntime } from '../adapters/lambda/sync-runtime.ts';

export const handler = observed(async ({ runId }: { runId: string }) => {
  const { engine } = await syncRuntime();
  return engine.plan(runId);
});
