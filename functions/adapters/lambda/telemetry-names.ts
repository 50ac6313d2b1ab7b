/**
 * Names the handlers emit metrics under and the CDK alarms watch: one list,
 * so a renamed metric cannot silently leave an alarm watching nothing.
 */

/** Powertools service name of every skystreams function (the metrics' `service` dimension). */
export const SERVICE_NAME = 'skystreams';

export const METRICS_NAMESPACE = 'Skystreams';

export const METRIC = {
  /** Each check: 1 when upstream differs from what is published, 0 when the mirror is current. */
  upstreamAhead: 'UpstreamAhead',
  /** A check started a sync run. */
  syncStarted: 'SyncStarted',
  /** A run published a new generation. */
  published: 'Published',
  /** A run was recorded as failed. */
  syncFailed: 'SyncFailed',
  itemsCopied: 'ItemsCopied',
  bytesCopied: 'BytesCopied',
  itemsSkipped: 'ItemsSkipped',
  filesPruned: 'FilesPruned',
} as const;
