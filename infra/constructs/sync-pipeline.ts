import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { BUNDLED_KEYRING, bundledSourceKeyring, ENV, syncEnvironment } from '../../functions/adapters/lambda/environment.ts';
import type { SyncConfig } from '../../functions/core/settings.ts';
import { grantObjectAccess, KEY_PATTERNS } from '../bucket-access.ts';
import { MirrorFunction } from './mirror-function.ts';
import type { SigningKey } from './signing-key.ts';
import { grantCatalogAccess } from './mirror-storage.ts';

export interface SyncPipelineProps {
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  /** The validated sync settings (settings.ts); `concurrency` is the Distributed Map's. */
  readonly sync: SyncConfig;
  /** The upstream signing keyring, bundled with the functions. Without one, every sync fails closed. */
  readonly keyring: Uint8Array | undefined;
  /** Merged sources: each one's keyring, by source name. @default none */
  readonly sourceKeyrings?: ReadonlyMap<string, Uint8Array>;
  /** How often the check runs, validated with the rest of the deployment config. */
  readonly scheduleMinutes: number;
  /** A whole run, plan to prune, is stopped after this. @default Duration.hours(12) */
  readonly runTimeout?: Duration;
  /** Re-signed mode: the secret with the mirror's signing keys, for the plan function (which signs) only. */
  readonly signingKey?: SigningKey;
}

/** Where the state input carries the bucket name (see the Settings state). */
const BUCKET_PATH = '$.settings.bucket';

/** Errors a retry can cure: upstream hiccups, store throttling, a Lambda cut short. */
const TRANSIENT_ERRORS = ['UpstreamError', 'UnavailableError', 'Sandbox.Timedout'];
/** An item download's own hiccups; a copy that ran out of time is another matter (see COPY_TIMEOUT_RETRIES). */
const ITEM_TRANSIENT_ERRORS = ['UpstreamError', 'UnavailableError'];
/**
 * A copy that used its whole 15 minutes is tried once more (the upstream may
 * have been slow for a while), not five times: the same item would most
 * likely time out again, an hour of Lambda for nothing. The run then fails
 * once, and the check function backs off before the next attempt.
 */
const COPY_TIMEOUT_RETRIES = 1;
/**
 * What a retry cures in the catalog-only phases: store throttling and Lambda
 * refusing an invocation for now (its service exceptions are retried by
 * `retryOnServiceExceptions`). Never a domain error (IntegrityError,
 * ConflictError, LeaseLostError), which fails the run at once.
 */
const STORE_TRANSIENT_ERRORS = ['UnavailableError', 'Lambda.TooManyRequestsException'];

/** Each phase's function: what it does and how it is sized. */
const SYNC_FUNCTIONS = {
  // Longer than the upstream adapter's 60 s metadata timeout, so a hung upstream is reported as such.
  check: { memorySizeMb: 512, timeout: Duration.seconds(90), description: 'Conditional GET of the upstream index; starts a sync run when it changed' },
  // Verifies signatures and parses products files of several MB: a full vCPU.
  plan: { memorySizeMb: 1769, timeout: Duration.minutes(10), description: 'Locks, verifies upstream metadata, stages it and writes the copy list' },
  // Streams one item, or as many ranged parts of a large one as fit its time, from upstream into S3 with
  // bounded memory; network throughput grows with memory.
  copy: { memorySizeMb: 2048, timeout: Duration.minutes(15), description: 'Copies one item (or ranged parts of a large one) from upstream, verifying size and digests' },
  publish: { memorySizeMb: 1024, timeout: Duration.minutes(10), description: 'Checks every item is stored, then switches the current publication' },
  prune: { memorySizeMb: 1024, timeout: Duration.minutes(15), description: 'Deletes replaced generations and unreferenced files after the grace period' },
  fail: { memorySizeMb: 256, timeout: Duration.minutes(1), description: 'Records a sync run as failed and releases the lock' },
} satisfies Record<string, { memorySizeMb: number; timeout: Duration; description: string }>;
type SyncPhase = keyof typeof SYNC_FUNCTIONS;

const handlerEntry = (name: string) => fileURLToPath(new URL(`../../functions/handlers/${name}.ts`, import.meta.url));

/**
 * The sync as Step Functions drives it: a scheduled check starts a run only
 * when upstream changed; the run plans (writing the copy list to the bucket),
 * copies items through a Distributed Map that reads that list, publishes,
 * prunes, and on any failure records the run as failed and frees the lock.
 * Each function gets only the access its phase needs.
 */
export class SyncPipeline extends Construct {
  public readonly checkFunction: MirrorFunction;
  public readonly planFunction: MirrorFunction;
  public readonly copyFunction: MirrorFunction;
  public readonly publishFunction: MirrorFunction;
  public readonly pruneFunction: MirrorFunction;
  public readonly failFunction: MirrorFunction;
  public readonly stateMachine: sfn.StateMachine;
  public readonly schedule: scheduler.Schedule;
  public readonly scheduleMinutes: number;

  constructor(scope: Construct, id: string, props: SyncPipelineProps) {
    super(scope, id);
    const { bucket, table } = props;
    this.scheduleMinutes = props.scheduleMinutes;
    const environment = {
      [ENV.bucket]: bucket.bucketName,
      [ENV.table]: table.tableName,
      ...syncEnvironment(props.sync),
    };
    const bundledFiles: Record<string, Uint8Array> = {
      ...(props.keyring && { [BUNDLED_KEYRING]: props.keyring }),
      ...Object.fromEntries([...(props.sourceKeyrings ?? [])].map(([source, keyring]) => [bundledSourceKeyring(source), keyring])),
    };
    const syncFunction = (name: SyncPhase) =>
      new MirrorFunction(this, `${name[0]?.toUpperCase()}${name.slice(1)}Function`, {
        entry: handlerEntry(name),
        environment,
        bundledFiles,
        ...SYNC_FUNCTIONS[name],
      });

    this.checkFunction = syncFunction('check');
    this.planFunction = syncFunction('plan');
    this.copyFunction = syncFunction('copy');
    this.publishFunction = syncFunction('publish');
    this.pruneFunction = syncFunction('prune');
    this.failFunction = syncFunction('fail');
    this.grantPhaseAccess(bucket, table);
    props.signingKey?.grantSigning(this.planFunction);

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(this.definition(bucket, props.sync.concurrency)),
      timeout: props.runTimeout ?? Duration.hours(12),
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'StateMachineLogs', {
          retention: logs.RetentionDays.ONE_MONTH,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
        level: sfn.LogLevel.ALL,
        includeExecutionData: true,
      },
    });
    // The map's item reader names the bucket through the state input (see Settings), so CDK grants it
    // nothing: the state machine may read run files, and no other object.
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [bucket.arnForObjects(KEY_PATTERNS.runs)] }),
    );
    this.stateMachine.grantStartExecution(this.checkFunction.role);
    this.checkFunction.function.addEnvironment(ENV.stateMachineArn, this.stateMachine.stateMachineArn);

    this.schedule = new scheduler.Schedule(this, 'CheckSchedule', {
      description: 'Checks upstream for changes',
      schedule: scheduler.ScheduleExpression.rate(Duration.minutes(this.scheduleMinutes)),
      target: new schedulerTargets.LambdaInvoke(this.checkFunction.function, {
        input: scheduler.ScheduleTargetInput.fromObject({
          source: 'skystreams.schedule',
          scheduledTime: scheduler.ContextAttribute.scheduledTime,
        }),
        // The next tick comes soon enough: do not pile up late checks.
        retryAttempts: 0,
        maxEventAge: Duration.minutes(1),
      }),
    });
  }

  /** The sync functions, for alarms and dashboards. */
  get functions(): Record<string, lambda.IFunction> {
    return {
      check: this.checkFunction.function,
      plan: this.planFunction.function,
      copy: this.copyFunction.function,
      publish: this.publishFunction.function,
      prune: this.pruneFunction.function,
      fail: this.failFunction.function,
    };
  }

  /**
   * Least privilege per phase, item partition by item partition and prefix
   * by prefix. Only publish writes the current pointer; check reads and
   * writes nothing; copy creates item bytes (never overwrites: If-None-Match
   * is required) and their records, deletes bytes nobody vouches for before
   * its create-only put, and renews the lock;
   * plan, prune and fail delete what runs staged and what no generation
   * lists (plan prunes itself when upstream is unchanged, and settles
   * abandoned runs). test/handlers/iam.test.ts checks every call against these.
   */
  private grantPhaseAccess(bucket: s3.IBucket, table: dynamodb.ITable): void {
    const { items, metadata, runs, uploads } = KEY_PATTERNS;

    grantCatalogAccess(this.checkFunction.role, table, { read: ['current', 'state', 'lock'], runsIndex: true });

    // Plan also indexes stored manifests the package index lacks (stored before it existed): it reads them under items/.
    // (And it prunes when upstream is unchanged, forgetting manifest records as prune does.)
    grantCatalogAccess(this.planFunction.role, table, {
      read: ['lock', 'runs', 'current', 'state', 'publications', 'objects', 'entries', 'manifests'],
      runsIndex: true,
      put: ['lock', 'runs', 'state', 'manifests'],
      // A starting run gives the runs it pushes past the newest kept their expiry.
      update: ['lock', 'runs'],
      delete: ['publications', 'objects', 'manifests'],
      batchWrite: ['entries', 'manifests'],
    });
    // Uploaded custom images: plan publishes their records (re-signed mode), and its prune keeps what they list.
    // It also settles dead runs: their unfinished multipart uploads under items/ are aborted.
    grantObjectAccess(this.planFunction.role, bucket, {
      read: [items, metadata, runs, uploads],
      write: [metadata, runs],
      delete: [items, metadata, runs],
      abortUnfinished: [items],
    });

    // Copy indexes each manifest it stores into the package index.
    grantCatalogAccess(this.copyFunction.role, table, {
      read: ['lock', 'objects', 'manifests'],
      update: ['lock'],
      put: ['objects', 'manifests'],
      delete: ['objects'],
      batchWrite: ['manifests'],
    });
    // Create-only: copy can never overwrite an item in place (If-None-Match), only replace bytes it first deleted.
    grantObjectAccess(this.copyFunction.role, bucket, { read: [items], write: [items], delete: [items], createOnly: true });

    grantCatalogAccess(this.publishFunction.role, table, {
      read: ['lock', 'current', 'objects', 'runs', 'state', 'publications', 'entries'],
      put: ['publications', 'current', 'state', 'runs'],
      update: ['lock'],
      delete: ['publications'],
      batchWrite: ['entries'],
    });
    grantObjectAccess(this.publishFunction.role, bucket, { read: [runs] });

    // Prune forgets the package-index records of manifests only retired generations listed.
    grantCatalogAccess(this.pruneFunction.role, table, {
      read: ['lock', 'publications', 'current', 'entries', 'objects', 'manifests'],
      update: ['lock'],
      delete: ['publications', 'objects', 'manifests'],
      batchWrite: ['entries', 'manifests'],
    });
    // Prune keeps every item an upload record lists, published yet or not; it writes down what it deletes (runs/) first, and reads what a stopped prune wrote down.
    grantObjectAccess(this.pruneFunction.role, bucket, { read: [uploads, runs], write: [runs], delete: [items, metadata, runs], list: [metadata, runs] });

    // Fail forgets the package-index records of manifests the failed run indexed that no generation lists (from its plan file).
    grantCatalogAccess(this.failFunction.role, table, {
      read: ['lock', 'runs', 'publications', 'current', 'entries', 'manifests'],
      put: ['runs'],
      update: ['lock'],
      delete: ['publications', 'manifests'],
      batchWrite: ['entries', 'manifests'],
    });
    grantObjectAccess(this.failFunction.role, bucket, { read: [runs], delete: [metadata, runs], list: [metadata, runs] });
  }

  private definition(bucket: s3.IBucket, copyConcurrency: number): sfn.IChainable {
    const runId = sfn.JsonPath.executionName;
    const invoke = (id: string, fn: MirrorFunction, payload: Record<string, unknown>, resultPath: string) =>
      new tasks.LambdaInvoke(this, id, {
        lambdaFunction: fn.function,
        payload: sfn.TaskInput.fromObject(payload),
        payloadResponseOnly: true,
        resultPath,
        retryOnServiceExceptions: true,
      });
    const retry = (task: tasks.LambdaInvoke, errors: string[], maxAttempts: number) =>
      task.addRetry({
        errors,
        interval: Duration.seconds(5),
        backoffRate: 2,
        maxAttempts,
        jitterStrategy: sfn.JitterType.FULL,
      });
    const retryTransient = (task: tasks.LambdaInvoke, maxAttempts: number) => retry(task, TRANSIENT_ERRORS, maxAttempts);

    const recordFailure = invoke('RecordFailure', this.failFunction, { runId, error: sfn.JsonPath.objectAt('$.error') }, '$.failure');
    retryTransient(recordFailure, 3);
    const failed = recordFailure.next(
      new sfn.Fail(this, 'SyncFailed', { errorPath: '$.error.Error', causePath: '$.error.Cause' }),
    );
    const onError = { resultPath: '$.error' };

    const plan = invoke('Plan', this.planFunction, { runId }, '$.plan');
    retryTransient(plan, 3).addCatch(failed, onError);

    // An item above the ranged-copy threshold takes several invocations: each copies the parts its time
    // allows and hands back a continuation, which MoreParts feeds to the next. `$.copied` starts empty.
    const startItem = new sfn.Pass(this, 'StartItem', { result: sfn.Result.fromObject({}), resultPath: '$.copied' });
    const copyItem = new tasks.LambdaInvoke(this, 'CopyItem', {
      lambdaFunction: this.copyFunction.function,
      payload: sfn.TaskInput.fromObject({
        runId: sfn.JsonPath.stringAt('$.runId'),
        task: sfn.JsonPath.objectAt('$.task'),
        previous: sfn.JsonPath.objectAt('$.copied'),
      }),
      payloadResponseOnly: true,
      resultPath: '$.copied',
      retryOnServiceExceptions: true,
    });
    // A retry gets the same input, so a ranged copy retries the parts its failed attempt was on.
    retry(copyItem, ITEM_TRANSIENT_ERRORS, 5);
    retry(copyItem, ['Sandbox.Timedout'], COPY_TIMEOUT_RETRIES);
    const moreParts = new sfn.Choice(this, 'MoreParts')
      .when(sfn.Condition.isPresent('$.copied.continuation'), copyItem)
      // Thousands of items: keep each result out of the Map's output.
      .otherwise(new sfn.Succeed(this, 'ItemCopied', { outputPath: sfn.JsonPath.DISCARD }));
    const copyLoop = startItem.next(copyItem).next(moreParts);
    const copyItems = new sfn.DistributedMap(this, 'CopyItems', {
      // The copy list can be far larger than a state's 256 KB payload: read it from the bucket.
      itemReader: new sfn.S3JsonItemReader({ bucketNamePath: sfn.JsonPath.stringAt(BUCKET_PATH), key: sfn.JsonPath.stringAt('$.plan.copyKey') }),
      itemSelector: { runId: sfn.JsonPath.stringAt('$.plan.runId'), task: sfn.JsonPath.stringAt('$$.Map.Item.Value') },
      // Each item's result is `{}` (ItemCopied discards its output), so the gathered results stay
      // far below the payload limit: about 80,000 items per run.
      resultPath: sfn.JsonPath.DISCARD,
      maxConcurrency: copyConcurrency,
      // Copies run up to 15 minutes each, and a large item loops over several: longer than an Express child workflow may.
      mapExecutionType: sfn.StateMachineType.STANDARD,
      label: 'CopyItems',
    });
    copyItems.itemProcessor(copyLoop).addCatch(failed, onError);

    // Publish starts over cleanly (it rewrites its generation's entries), so a throttled one is retried;
    // one cut short by its timeout is not: 10 minutes of checking means something else is wrong.
    const publish = invoke('Publish', this.publishFunction, { runId }, '$.publication');
    retry(publish, STORE_TRANSIENT_ERRORS, 4).addCatch(failed, onError);
    // Prune deletes as it goes, so even a timed-out one makes progress on its retry.
    const prune = invoke('Prune', this.pruneFunction, { runId }, '$.pruned');
    retry(prune, [...STORE_TRANSIENT_ERRORS, 'Sandbox.Timedout'], 4).addCatch(failed, onError);

    const afterPlan = new sfn.Choice(this, 'AnythingToPublish')
      .when(sfn.Condition.stringEquals('$.plan.outcome', 'planned'), copyItems.next(publish).next(prune).next(new sfn.Succeed(this, 'Published')))
      .when(sfn.Condition.stringEquals('$.plan.outcome', 'locked'), new sfn.Succeed(this, 'AnotherRunHoldsTheLock'))
      .otherwise(new sfn.Succeed(this, 'UpstreamUnchanged'));
    // The bucket is named through the state's input, so CDK grants the item reader no bucket-wide access.
    const settings = new sfn.Pass(this, 'Settings', {
      result: sfn.Result.fromObject({ bucket: bucket.bucketName }),
      resultPath: '$.settings',
    });
    return settings.next(plan).next(afterPlan);
  }
}
