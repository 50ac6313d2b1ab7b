import { Duration, Stack } from 'aws-cdk-lib';
import type * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';
import { METRIC, METRICS_NAMESPACE, SERVICE_NAME } from '../../functions/adapters/lambda/telemetry-names.ts';

export interface OperationsProps {
  readonly stateMachine: sfn.IStateMachine;
  /** Every function by a short name (check, plan, copy, …, api). */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  readonly api: apigateway.RestApi;
  /** Minutes between upstream checks: the period the staleness alarm counts in. */
  readonly scheduleMinutes: number;
  /** Alarm when upstream has been ahead of the mirror for this many consecutive checks. @default 24 */
  readonly staleAfterChecks?: number;
  /** Subscribed to the alarm topic. @default no subscription */
  readonly email?: string;
  /** Notified besides the stack's own topic. @default none */
  readonly extraTopicArn?: string;
  /**
   * Function errors tolerated in 5 minutes before alarming, by function name;
   * copy errors are retried by the state machine, so a few are normal.
   * @default { copy: 5 }, 1 for every other function
   */
  readonly errorThresholds?: Readonly<Record<string, number>>;
  /** @default the stack's name */
  readonly dashboardName?: string;
}

const FIVE_MINUTES = Duration.minutes(5);

/**
 * Alarms (a run failed, the mirror is stale, function errors and throttles,
 * API 5xx) notifying an SNS topic, and one dashboard.
 */
export class Operations extends Construct {
  public readonly topic: sns.Topic;
  public readonly alarms: cloudwatch.Alarm[] = [];
  public readonly dashboard: cloudwatch.Dashboard;

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
      for (const action of notify) created.addAlarmAction(action);
      this.alarms.push(created);
      return created;
    };

    const runsFailed = new cloudwatch.MathExpression({
      label: 'Sync runs failed, timed out or aborted',
      expression: 'FILL(failed, 0) + FILL(timedOut, 0) + FILL(aborted, 0)',
      usingMetrics: {
        failed: props.stateMachine.metricFailed(),
        timedOut: props.stateMachine.metricTimedOut(),
        aborted: props.stateMachine.metricAborted(),
      },
      period: FIVE_MINUTES,
    });
    alarm('SyncRunFailed', {
      alarmDescription: 'A sync run failed: the previous publication is still served. See the state machine execution and the run record (/api/v1/status).',
      metric: runsFailed,
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const upstreamAhead = this.metric(METRIC.upstreamAhead, 'Minimum', Duration.minutes(props.scheduleMinutes));
    alarm('MirrorStale', {
      alarmDescription: `Upstream has been ahead of the mirror for ${staleAfterChecks} checks in a row (or the check stopped reporting).`,
      metric: upstreamAhead,
      threshold: 1,
      evaluationPeriods: staleAfterChecks,
      datapointsToAlarm: staleAfterChecks,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // No report at all means the check is not running: that is stale too.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });

    const thresholds: Record<string, number> = { copy: 5, ...props.errorThresholds };
    for (const [name, fn] of Object.entries(props.functions)) {
      alarm(`${capitalized(name)}Errors`, {
        alarmDescription: `The ${name} function failed.`,
        metric: fn.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum' }),
        threshold: thresholds[name] ?? 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }
    const throttleTerms = Object.keys(props.functions).map((_, i) => `FILL(t${i}, 0)`);
    alarm('LambdaThrottles', {
      alarmDescription: 'Lambda throttled skystreams functions: raise the account concurrency or lower copyConcurrency.',
      metric: new cloudwatch.MathExpression({
        label: 'Throttles, all functions',
        expression: throttleTerms.join(' + '),
        usingMetrics: Object.fromEntries(
          Object.values(props.functions).map((fn, i) => [`t${i}`, fn.metricThrottles({ period: FIVE_MINUTES, statistic: 'Sum' })]),
        ),
        period: FIVE_MINUTES,
      }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm('Api5xx', {
      alarmDescription: 'The metadata API answered 5xx: MAAS cannot read the mirror.',
      metric: props.api.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    this.dashboard = this.buildDashboard(props, runsFailed, upstreamAhead);
  }

  private metric(name: string, statistic: string, period: Duration): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: name,
      dimensionsMap: { service: SERVICE_NAME },
      statistic,
      period,
    });
  }

  private buildDashboard(props: OperationsProps, runsFailed: cloudwatch.IMetric, upstreamAhead: cloudwatch.IMetric): cloudwatch.Dashboard {
    const hour = Duration.hours(1);
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName ?? Stack.of(this).stackName,
      defaultInterval: Duration.days(7),
    });
    const functions = Object.entries(props.functions);
    dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 4 }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Sync runs',
        left: [
          props.stateMachine.metricStarted({ period: hour }),
          props.stateMachine.metricSucceeded({ period: hour }),
          runsFailed,
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Upstream ahead of the mirror (1 = a run is due or running)',
        left: [upstreamAhead],
        leftYAxis: { min: 0, max: 1 },
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Copied',
        left: [this.metric(METRIC.itemsCopied, 'Sum', hour), this.metric(METRIC.itemsSkipped, 'Sum', hour)],
        right: [this.metric(METRIC.bytesCopied, 'Sum', hour)],
        width: 8,
      }),
    );
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

function capitalized(name: string): string {
  return `${name[0]?.toUpperCase() ?? ''}${name.slice(1)}`;
}
