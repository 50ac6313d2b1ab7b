/**
 * Powertools for AWS Lambda, created once per container: JSON logs with the
 * Lambda context, CloudWatch metrics (EMF) and X-Ray traces, applied to a
 * handler as middy middleware. Metrics are kept to what the alarms need
 * (telemetry-names.ts); sync progress goes to the logs only.
 */
import middy, { type MiddlewareObj } from '@middy/core';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { Context } from 'aws-lambda';
import type { SyncEvent } from '../../core/engine.ts';
import { METRICS_NAMESPACE, SERVICE_NAME } from './telemetry-names.ts';

export const logger = new Logger({ serviceName: SERVICE_NAME });
export const metrics = new Metrics({ serviceName: SERVICE_NAME, namespace: METRICS_NAMESPACE });
export const tracer = new Tracer({ serviceName: SERVICE_NAME });

export { MetricUnit };

/**
 * Wraps a handler with context-aware logs, a trace segment and, unless
 * `withMetrics` is false (the API emits none of its own), the metrics it
 * added flushed after each call.
 */
export function observed<Event, Result>(handler: (event: Event, context: Context) => Promise<Result>, options: { withMetrics?: boolean } = {}) {
  const wrapped = middy(handler).use(captureLambdaHandler(tracer, { captureResponse: false })).use(injectLambdaContext(logger));
  return options.withMetrics === false ? wrapped : wrapped.use(flushMetrics());
}

/**
 * Publishes the metrics a call added, and nothing (not even Powertools'
 * "no application metrics" warning) when it added none: most sync calls add none.
 */
function flushMetrics(): MiddlewareObj {
  const flush = () => {
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  };
  return { after: flush, onError: flush };
}

/** Engine progress as logs; per-chunk progress is too chatty even for those. */
export function recordSyncEvent(event: SyncEvent): void {
  switch (event.type) {
    case 'item-progress':
      return;
    case 'failed':
      logger.error('sync run failed', { ...event });
      return;
    default:
      logger.info(event.type, { ...event });
  }
}
