/** Step Functions: checks every listed file is stored as promised, then switches the current publication. */
import { observed } from '../adapters/lambda/observability.ts';
import { syncRuntime } from '../adapters/lambda/sync-runtime.ts';

export const handler = observed(async ({ runId }: { runId: string }) => {
  const { engine } = await syncRuntime();
  const { generation, itemCount, totalBytes, upstreamUpdated } = await engine.publish(runId);
  return { generation, itemCount, totalBytes, upstreamUpdated };
});
