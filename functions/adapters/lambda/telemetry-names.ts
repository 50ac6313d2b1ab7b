/**
 * Names the handlers emit metrics under and the CDK alarms watch: one list,
 * so a renamed metric cannot silently leave an alarm watching nothing.
 *
 * Every custom metric costs $0.30 a month for each month it is sent every
 * hour (docs/costs.md), so only what an alarm needs is a metric. Progress
 * (items and bytes copied, files pruned, publications) is in the JSON logs,
 * and run outcomes in the free Step Functions metrics.
 */

/** Powertools service name of every skystreams function (the metrics' `service` dimension). */
export const SERVICE_NAME = 'skystreams';

export const METRICS_NAMESPACE = 'Skystreams';

export const METRIC = {
  /** Each check: 1 when upstream differs from what is published, 0 when the mirror is current. The stale-mirror alarm watches it. */
  upstreamAhead: 'UpstreamAhead',
  /**
   * Each check: days since the `updated` of the upstream metadata the mirror
   * serves. The frozen-upstream alarm watches it: an upstream (or a man in the
   * middle) that keeps serving old signed metadata leaves the mirror current
   * by UpstreamAhead and still stale.
   */
  upstreamAgeDays: 'UpstreamAgeDays',
  /**
   * A check started a sync run. Watched by no alarm (Step Functions' own
   * ExecutionsStarted counts the same); sent at most once per upstream change,
   * so it costs about a cent a month.
   */
  syncStarted: 'SyncStarted',
} as const;
