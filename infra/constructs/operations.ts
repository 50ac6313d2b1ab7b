import { Duration, Stack } from 'aws-cdk-lib';
import type * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';
import { METRIC, METRICS_NAMESPACE, SERVICE_NAME } from '../../functions/adapters/lambda/telemetry-names.ts';

export interface OperationsProps {
  readonly stateMachine: sfn.IStateMachine;
  /** Every function by a short name (check, plan, copy, …, api); graphed on the dashboard. */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  readonly api: apigateway.RestApi;
  /** Minutes between upstream checks: the period the staleness alarm counts in. */
  readonly scheduleMinutes: number;
  /** Alarm when upstream has been ahead of the mirror for this many consecutive checks. @default 24 */
  readonly staleAfterChecks?: number;
  /** Alarm when the upstream metadata the mirror serves was updated more than this many days ago; 0: no such alarm. @default 14 */
  readonly staleAfterDays?: number;
  /** Subscribed to the alarm topic. @default no subscription */
  readonly email?: string;
  /** Notified besides the stack's own topic. @default none */
  readonly extraTopicArn?: string;
  /** Build the CloudWatch dashboard ($3 a month beyond the account's first three). @default false */
  readonly dashboard?: boolean;
  /** @default the stack's name */
  readonly dashboardName?: string;
  /** The copy function's log group, which the dashboard queries for items and bytes copied. @default no such widget */
  readonly copyLogGroup?: logs.ILogGroup;
}

const FIVE_MINUTES = Duration.minutes(5);

/** A failed run keeps its alarm this many 5-minute periods after the last failure, so retries do not flap it. */
export const RUN_FAILED_PERIODS = 12;

/** API 5xx in this many of the last API_5XX_PERIODS 5-minute periods: errors that last, not one. */
export const API_5XX_DATAPOINTS = 3;
export const API_5XX_PERIODS = 6;

/**
 * Three alarms, each one a reason for an operator to act, notifying an SNS
 * topic when they fire and when they clear:
 *
 * - **SyncRunFailed**: a run failed or timed out (the previous publication
 *   is still served). Any function error, throttle or timeout inside a run
 *   ends there, so no per-function alarm is needed.
 * - **MirrorStale**: upstream stayed ahead of the mirror for
 *   `staleAfterChecks` checks, or the check stopped reporting (a failing or
 *   throttled check function, a deleted schedule).
 * - **ApiErrors**: the metadata API answered 5xx in several periods out of
 *   the last half hour (API function errors and throttles show up as 5xx).
 * - **UpstreamFrozen**: the upstream metadata served was updated more than
 *   `staleAfterDays` ago (TUF's freeze attack, or an upstream that stopped):
 *   the same rule as the status page's stale warning.
 *
 * The dashboard is optional and off by default.
 */
export class Operations extends Construct {
  public readonly topic: sns.Topic;
  public readonly alarms: cloudwatch.Alarm[] = [];
  public readonly dashboard: cloudwatch.Dashboard | undefined;

  constructor(scope: Construct, id: string, props: OperationsProps) {
    super(scope, id);
    const staleAfterChecks = props.staleAfterChecks ?? 24;
    if (props.scheduleMinutes * staleAfterChecks > 24 * 60) {
      // CloudWatch evaluates at most one day of 1-minute-or-longer periods.
      throw new ConfigError(
        `alarms.staleAfterChecks: ${staleAfterChecks} checks of ${props.scheduleMinutes} minutes exceed the one day a CloudWatch alarm can look back`,
      );
    }
    this.topic = new sns.Topic(this, 'Topic', { displayName: 'skystreams alarms', enforceSSL: true });
    if (props.email) this.topic.addSubscription(new subscriptions.EmailSubscription(props.email));
    const notify = [
      new actions.SnsAction(this.topic),
      ...(props.extraTopicArn ? [new actions.SnsAction(sns.Topic.fromTopicArn(this, 'ExtraTopic', props.extraTopicArn))] : []),
    ];
    const alarm = (alarmId: string, alarmProps: cloudwatch.AlarmProps) => {
      const created = new cloudwatch.Alarm(this, alarmId, alarmProps);
      for (const action of notify) {
        created.addAlarmAction(action);
        created.addOkAction(action);
      }
      this.alarms.push(created);
      return created;
    };

    const runsFailed = new cloudwatch.MathExpression({
      label: 'Sync runs failed or timed out',
      expression: 'FILL(failed, 0) + FILL(timedOut, 0)',
      usingMetrics: {
        failed: props.stateMachine.metricFailed({ period: FIVE_MINUTES, statistic: 'Sum' }),
        timedOut: props.stateMachine.metricTimedOut({ period: FIVE_MINUTES, statistic: 'Sum' }),
      },
      period: FIVE_MINUTES,
    });
    alarm('SyncRunFailed', {
      alarmDescription:
        'A sync run failed or timed out within the last hour; the previous publication is still served. ' +
        'See the execution in Step Functions and the run record (/api/v1/status). OK: an hour without a failed run ' +
        '(MirrorStale says whether the mirror has caught up).',
      metric: runsFailed,
      threshold: 1,
      evaluationPeriods: RUN_FAILED_PERIODS,
      datapointsToAlarm: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const upstreamAhead = new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: METRIC.upstreamAhead,
      dimensionsMap: { service: SERVICE_NAME },
      statistic: 'Minimum',
      period: Duration.minutes(props.scheduleMinutes),
    });
    const staleAfterDays = props.staleAfterDays ?? 14;
    if (staleAfterDays > 0) {
      alarm('UpstreamFrozen', {
        alarmDescription:
          `The upstream metadata the mirror serves was updated more than ${staleAfterDays} days ago: upstream stopped publishing, or something serves old signed metadata. ` +
          'OK: a publication of newer metadata.',
        metric: new cloudwatch.Metric({
          namespace: METRICS_NAMESPACE,
          metricName: METRIC.upstreamAgeDays,
          dimensionsMap: { service: SERVICE_NAME },
          statistic: 'Minimum',
          period: Duration.hours(1),
        }),
        threshold: staleAfterDays,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        // A check that stopped reporting is MirrorStale's to say.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    alarm('MirrorStale', {
      alarmDescription:
        `Upstream has been ahead of the mirror for ${staleAfterChecks} checks in a row, or the check stopped reporting. ` +
        'OK: a check found the mirror current.',
      metric: upstreamAhead,
      threshold: 1,
      evaluationPeriods: staleAfterChecks,
      datapointsToAlarm: staleAfterChecks,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // No report at all means the check is not running: that is stale too.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    alarm('ApiErrors', {
      alarmDescription:
        `The metadata API answered 5xx in ${API_5XX_DATAPOINTS} of the last ${API_5XX_PERIODS} five-minute periods: MAAS cannot read the mirror. ` +
        'OK: errors stopped.',
      metric: props.api.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' }),
      threshold: 1,
      evaluationPeriods: API_5XX_PERIODS,
      datapointsToAlarm: API_5XX_DATAPOINTS,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.dashboard = props.dashboard ? this.buildDashboard(props, runsFailed, upstreamAhead) : undefined;
  }

  private buildDashboard(props: OperationsProps, runsFailed: cloudwatch.IMetric, upstreamAhead: cloudwatch.IMetric): cloudwatch.Dashboard {
    const hour = Duration.hours(1);
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName ?? Stack.of(this).stackName,
      defaultInterval: Duration.days(7),
    });
    const functions = Object.entries(props.functions);
    dashboard.addWidgets(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 4 }));
    const runWidgets: cloudwatch.IWidget[] = [
      new cloudwatch.GraphWidget({
        title: 'Sync runs',
        left: [props.stateMachine.metricStarted({ period: hour }), props.stateMachine.metricSucceeded({ period: hour }), runsFailed],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Upstream ahead of the mirror (1 = a run is due or running)',
        left: [upstreamAhead],
        leftYAxis: { min: 0, max: 1 },
        width: 8,
      }),
    ];
    if (props.copyLogGroup) {
      // Progress is logged, not metered: a Logs Insights query costs only when the dashboard is viewed.
      runWidgets.push(new cloudwatch.LogQueryWidget({
        title: 'Copied (from the copy function logs)',
        logGroupNames: [props.copyLogGroup.logGroupName],
        view: cloudwatch.LogQueryVisualizationType.TABLE,
        queryLines: [
          "filter message = 'item-stored'",
          'stats count(*) as items, sum(size) / 1e9 as gigabytes by bin(1d) as day, skipped',
          'sort day desc',
        ],
        width: 8,
      }));
    }
    dashboard.addWidgets(...runWidgets);
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Function errors',
        left: functions.map(([name, fn]) => fn.metricErrors({ label: name, period: FIVE_MINUTES, statistic: 'Sum' })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Function duration (p95)',
        left: functions.map(([name, fn]) => fn.metricDuration({ label: name, period: FIVE_MINUTES, statistic: 'p95' })),
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Metadata API',
        left: [props.api.metricCount({ period: FIVE_MINUTES }), props.api.metricServerError({ period: FIVE_MINUTES })],
        right: [props.api.metricLatency({ period: FIVE_MINUTES, statistic: 'p95' })],
        width: 8,
      }),
    );
    return dashboard;
  }
}
