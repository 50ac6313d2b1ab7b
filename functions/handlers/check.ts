/**
 * Scheduled: a conditional GET of the upstream index; starts a sync run only
 * when upstream changed, no run holds the lock and no back-off after failed runs is in force.
 */
import { mayStartRun } from '../core/backoff.ts';
import { newRunId } from '../core/engine.ts';
import { readStateMachineArn } from '../adapters/lambda/environment.ts';
import { logger, metrics, MetricUnit, observed } from '../adapters/lambda/observability.ts';
import { startSyncRun } from '../adapters/lambda/step-functions.ts';
import { syncRuntime } from '../adapters/lambda/sync-runtime.ts';
import { METRIC } from '../adapters/lambda/telemetry-names.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

/** What EventBridge Scheduler sends (infra/constructs/sync-pipeline.ts). */
export interface ScheduledCheck {
  source?: string;
  scheduledTime?: string;
}

export const handler = observed(async (event: ScheduledCheck) => {
  const { engine, backend } = await syncRuntime();
  const { changed } = await engine.check();
  // The staleness alarm watches this: 1 for as long as the mirror lags upstream.
  metrics.addMetric(METRIC.upstreamAhead, MetricUnit.Count, changed ? 1 : 0);
  const served = await backend.catalog.getCurrent();
  const updated = served ? Date.parse(served.upstreamUpdated) : Number.NaN;
  if (!Number.isNaN(updated)) metrics.addMetric(METRIC.upstreamAgeDays, MetricUnit.Count, (Date.now() - updated) / DAY_MS);
  if (!changed) return { changed };
  const now = new Date();
  const decision = await mayStartRun(backend.catalog, now);
  if (!decision.start) {
    logger.info('upstream changed: no run started', { ...decision, scheduledTime: event.scheduledTime });
    return { changed, ...decision };
  }
  const runId = newRunId(now);
  const execution = await startSyncRun(readStateMachineArn(), runId);
  metrics.addMetric(METRIC.syncStarted, MetricUnit.Count, 1);
  logger.info('upstream changed: sync run started', { runId, execution, scheduledTime: event.scheduledTime });
  return { changed, runId };
});
