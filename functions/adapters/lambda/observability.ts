/**
 * Powertools for AWS Lambda, created once per container: JSON logs with the
 * Lambda context, CloudWatch metrics (EMF) and X-Ray traces, applied to a
 * handler as middy middleware.
 */
import middy from '@middy/core';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { Context } from 'aws-lambda';
import type { SyncEvent } from '../../core/engine.ts';
import { METRIC, METRICS_NAMESPACE, SERVICE_NAME } from './telemetry-names.ts';

export const logger = new Logger({ serviceName: SERVICE_NAME });
export const metrics = new Metrics({ serviceName: SERVICE_NAME, namespace: METRICS_NAMESPACE });
export const tracer = new Tracer({ serviceName: SERVICE_NAME });

export { MetricUnit };

/**
 * Wraps a handler with context-aware logs, a trace segment and, unless
 * `withMetrics` is false (the API emits none of its own), metrics flushed
 * after each call.
 */
export function observed<Event, Result>(handler: (event: Event, context: Context) => Promise<Result>, options: { withMetrics?: boolean } = {}) {
  const wrapped = middy(handler).use(captureLambdaHandler(tracer, { captureResponse: false })).use(injectLambdaContext(logger));
  return options.withMetrics === false ? wrapped : wrapped.use(logMetrics(metrics));
}

/** Engine progress as logs and metrics; per-chunk progress is too chatty for either. */
export function recordSyncEvent(event: SyncEvent): void {
  switch (event.type) {
    case 'item-progress':
      return;
    case 'item-stored':
      if (event.skipped) {
        metrics.addMetric(METRIC.itemsSkipped, MetricUnit.Count, 1);
      } else {
        metrics.addMetric(METRIC.itemsCopied, MetricUnit.Count, 1);
        metrics.addMetric(METRIC.bytesCopied, MetricUnit.Bytes, event.size);
      }
      break;
    case 'published':
      metrics.addMetric(METRIC.published, MetricUnit.Count, 1);
      break;
    case 'pruned':
      metrics.addMetric(METRIC.filesPruned, MetricUnit.Count, event.paths);
      break;
    case 'failed':
      metrics.addMetric(METRIC.syncFailed, MetricUnit.Count, 1);
      logger.error('sync run failed', { ...event });
      return;
    default:
      break;
  }
  logger.info(event.type, { ...event });
}
