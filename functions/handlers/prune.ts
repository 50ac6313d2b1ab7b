/** Step Functions: drops replaced generations past the grace period and files nothing references; frees the lock. */
import { observed } from '../adapters/lambda/observability.ts';
import { syncRuntime } from '../adapters/lambda/sync-runtime.ts';

export const handler = observed(async ({ runId }: { runId: string }) => {
  const { engine } = await syncRuntime();
  const { deletedPaths, deletedGenerations } = await engine.prune(runId);
  // Counts only: the path list could outgrow a state's payload.
  return { deletedFiles: deletedPaths.length, deletedGenerations };
});
