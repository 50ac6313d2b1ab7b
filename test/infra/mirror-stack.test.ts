import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import { METRIC, METRICS_NAMESPACE } from '../../functions/adapters/lambda/telemetry-names.ts';
import { EXPIRES_AT_ATTRIBUTE } from '../../functions/adapters/dynamodb/items.ts';
import { TABLE_KEY_SCHEMA } from '../../functions/adapters/dynamodb/table-design.ts';
import { MAAS_IMPORT_MARGIN_SECONDS, MIN_PRUNE_GRACE_HOURS } from '../../infra/config.ts';
import { API_5XX_DATAPOINTS, API_5XX_PERIODS, RUN_FAILED_PERIODS } from '../../infra/constructs/operations.ts';
import type { MirrorFunction } from '../../infra/constructs/mirror-function.ts';
import { METADATA_MAX_TTL_SECONDS } from '../../infra/edge-cache.ts';
import {
  allowedFor,
  flattenIntrinsics,
  logicalIdOf,
  stateMachineDefinition,
  synthMirror,
  type StatesDefinition,
  type SynthesizedMirror,
} from './synth.ts';

// One synth (and one round of esbuild bundling) for the whole file.
let mirror: SynthesizedMirror;
let template: Template;
let definition: StatesDefinition;

beforeAll(async () => {
  mirror = await synthMirror();
  template = mirror.template;
  definition = stateMachineDefinition(template);
});

afterAll(() => mirror?.dispose());

const syncFunctions = () => {
  const { sync } = mirror.stack;
  return {
    check: sync.checkFunction,
    plan: sync.planFunction,
    copy: sync.copyFunction,
    publish: sync.publishFunction,
    prune: sync.pruneFunction,
    fail: sync.failFunction,
  };
};
const functionId = (fn: MirrorFunction) => logicalIdOf(mirror.stack, fn.function);
const roleId = (fn: MirrorFunction) => logicalIdOf(mirror.stack, fn.role);
const distributionConfig = () =>
  (Object.values(template.findResources('AWS::CloudFront::Distribution'))[0] as { Properties: { DistributionConfig: Record<string, any> } })
    .Properties.DistributionConfig;
const actionsOf = (fn: MirrorFunction) => allowedFor(template, roleId(fn)).flatMap((statement) => statement.actions);

describe('Stack: MirrorStack (default config)', () => {
  describe('cdk-nag AwsSolutions', () => {
    it('reports no unacknowledged finding', () => {
      // Prepare / Act: the pack ran over the synthesized stack in beforeAll.
      const findings = mirror.nag.violations.map((violation) => `${violation.ruleName} at ${violation.violatingResources.map((r) => r.constructPath).join(', ')}`);

      // Assess
      expect(findings).toEqual([]);
      expect(mirror.nag.success).toBe(true);
    });
  });

  describe('Construct: MirrorStorage', () => {
    it('keeps the mirror bucket private, encrypted and retained, and aborts abandoned multipart uploads', () => {
      const bucketId = logicalIdOf(mirror.stack, mirror.stack.storage.bucket);

      template.hasResource('AWS::S3::Bucket', {
        Properties: Match.objectLike({
          PublicAccessBlockConfiguration: {
            BlockPublicAcls: true,
            BlockPublicPolicy: true,
            IgnorePublicAcls: true,
            RestrictPublicBuckets: true,
          },
          BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
          LifecycleConfiguration: {
            Rules: Match.arrayWith([Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 }, Status: 'Enabled' })]),
          },
        }),
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
      });
      expect(Object.keys(template.findResources('AWS::S3::Bucket'))).toContain(bucketId);
    });

    it('refuses every request over plain HTTP in the bucket policy', () => {
      const bucketId = logicalIdOf(mirror.stack, mirror.stack.storage.bucket);

      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: bucketId },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    });

    it('builds the catalog table from the adapter key design, on demand, with point-in-time recovery, deletion protection and run expiry', () => {
      const [index] = TABLE_KEY_SCHEMA.globalSecondaryIndexes;

      template.hasResource('AWS::DynamoDB::Table', {
        Properties: Match.objectLike({
          KeySchema: [
            { AttributeName: TABLE_KEY_SCHEMA.partitionKey.name, KeyType: 'HASH' },
            { AttributeName: TABLE_KEY_SCHEMA.sortKey.name, KeyType: 'RANGE' },
          ],
          BillingMode: 'PAY_PER_REQUEST',
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          DeletionProtectionEnabled: true,
          TimeToLiveSpecification: { AttributeName: EXPIRES_AT_ATTRIBUTE, Enabled: true },
          GlobalSecondaryIndexes: [
            Match.objectLike({
              IndexName: index?.indexName,
              KeySchema: [
                { AttributeName: index?.partitionKey.name, KeyType: 'HASH' },
                { AttributeName: index?.sortKey.name, KeyType: 'RANGE' },
              ],
            }),
          ],
        }),
        DeletionPolicy: 'Retain',
      });
    });
  });

  describe('Construct: SyncPipeline', () => {
    it('runs every function on Node 24 / arm64 with X-Ray tracing and JSON logs', () => {
      const functions = template.findResources('AWS::Lambda::Function');

      // Six sync phases, the API and the uploads route.
      expect(Object.keys(functions)).toHaveLength(8);
      for (const fn of Object.values(functions) as { Properties: Record<string, unknown> }[]) {
        expect(fn.Properties).toMatchObject({
          Runtime: 'nodejs24.x',
          Architectures: ['arm64'],
          TracingConfig: { Mode: 'Active' },
          LoggingConfig: { LogFormat: 'JSON' },
        });
      }
    });

    it('sizes the copy function for streaming multi-GB items within the 15-minute limit', () => {
      template.hasResourceProperties('AWS::Lambda::Function', {
        Description: Match.stringLikeRegexp('^Copies one item'),
        MemorySize: 2048,
        Timeout: 900,
      });
    });

    it('hands the sync functions their settings, and nothing secret, through the environment', () => {
      const { Properties } = template.findResources('AWS::Lambda::Function')[functionId(mirror.stack.sync.planFunction)] as {
        Properties: { Environment: { Variables: Record<string, unknown> } };
      };
      const variables = Properties.Environment.Variables;

      expect(variables).toMatchObject({
        [ENV.sourceUrl]: 'https://images.maas.io/ephemeral-v3/stable/',
        [ENV.filters]: JSON.stringify(['arch=amd64']),
        [ENV.max]: '1',
        [ENV.pruneGraceHours]: '24',
        [ENV.keyringFile]: 'keyring.gpg',
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      });
      expect(JSON.stringify(template.findResources('AWS::Lambda::Function'))).not.toMatch(/BEGIN PGP|password|secret/i);
    });

    it('bundles the configured keyring next to each sync handler', () => {
      const { Properties } = template.findResources('AWS::Lambda::Function')[functionId(mirror.stack.sync.planFunction)] as {
        Properties: { Code: { S3Key: string } };
      };
      const assetHash = Properties.Code.S3Key.replace(/\.zip$/, '');

      const bundled = readFileSync(join(mirror.outdir, `asset.${assetHash}`, 'keyring.gpg'));

      expect(new Uint8Array(bundled)).toEqual(mirror.keyring);
    });

    it('checks upstream every 5 minutes through an EventBridge Scheduler schedule invoking the check function', () => {
      template.hasResourceProperties('AWS::Scheduler::Schedule', {
        ScheduleExpression: 'rate(5 minutes)',
        State: 'ENABLED',
        Target: Match.objectLike({
          Arn: { 'Fn::GetAtt': [functionId(mirror.stack.sync.checkFunction), 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 },
        }),
      });
    });

    it('lets only the check function start the state machine, which it learns from its environment', () => {
      const stateMachineId = logicalIdOf(mirror.stack, mirror.stack.sync.stateMachine);
      const starters = Object.entries(syncFunctions()).filter(([, fn]) => actionsOf(fn).includes('states:StartExecution'));

      expect(starters.map(([name]) => name)).toEqual(['check']);
      template.hasResourceProperties('AWS::Lambda::Function', {
        Description: Match.stringLikeRegexp('^Conditional GET'),
        Environment: { Variables: Match.objectLike({ [ENV.stateMachineArn]: { Ref: stateMachineId } }) },
      });
    });

    it('orders the state machine settings → plan → copy map → publish → prune, each naming its function', () => {
      const { sync } = mirror.stack;
      const states = definition.States;

      expect(definition.StartAt).toBe('Settings');
      expect(states.Settings?.Next).toBe('Plan');
      expect(states.Plan?.Resource).toBe(`<${functionId(sync.planFunction)}>`);
      expect(states.Plan?.Next).toBe('AnythingToPublish');
      expect(states.AnythingToPublish?.Choices).toEqual([
        { Variable: '$.plan.outcome', StringEquals: 'planned', Next: 'CopyItems' },
        { Variable: '$.plan.outcome', StringEquals: 'locked', Next: 'AnotherRunHoldsTheLock' },
      ]);
      expect(states.AnythingToPublish?.Default).toBe('UpstreamUnchanged');
      expect(states.CopyItems?.Next).toBe('Publish');
      expect(states.CopyItems?.ItemProcessor?.States.CopyItem?.Resource).toBe(`<${functionId(sync.copyFunction)}>`);
      expect(states.Publish?.Resource).toBe(`<${functionId(sync.publishFunction)}>`);
      expect(states.Publish?.Next).toBe('Prune');
      expect(states.Prune?.Resource).toBe(`<${functionId(sync.pruneFunction)}>`);
      expect(states.Prune?.Next).toBe('Published');
      expect(states.RecordFailure?.Resource).toBe(`<${functionId(sync.failFunction)}>`);
      expect(states.RecordFailure?.Next).toBe('SyncFailed');
      expect(states.SyncFailed?.Type).toBe('Fail');
    });

    it('passes the execution name as the run id to every phase', () => {
      for (const name of ['Plan', 'Publish', 'Prune', 'RecordFailure']) {
        expect(definition.States[name]?.Parameters).toMatchObject({ 'runId.$': '$$.Execution.Name' });
      }
      expect(definition.States.RecordFailure?.Parameters).toMatchObject({ 'error.$': '$.error' });
    });

    it('reads the copy list from the bucket with a Distributed Map of bounded concurrency', () => {
      const copyItems = definition.States.CopyItems;

      expect(copyItems?.Type).toBe('Map');
      expect(copyItems?.ItemProcessor?.ProcessorConfig).toEqual({ Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
      expect(copyItems?.ItemReader).toMatchObject({
        Resource: 'arn:<AWS::Partition>:states:::s3:getObject',
        ReaderConfig: { InputType: 'JSON' },
        Parameters: { 'Bucket.$': '$.settings.bucket', 'Key.$': '$.plan.copyKey' },
      });
      expect(copyItems?.ItemSelector).toEqual({ 'runId.$': '$.plan.runId', 'task.$': '$$.Map.Item.Value' });
      expect(copyItems?.MaxConcurrency).toBe(mirror.config.sync.concurrency);
      // Thousands of items: neither the map nor an item may carry results forward.
      expect(copyItems?.ResultPath).toBeNull();
      expect(copyItems?.ItemProcessor?.States.ItemCopied).toMatchObject({ Type: 'Succeed', OutputPath: null });
    });

    it('loops an item back to CopyItem with its continuation until the copy hands back none', () => {
      const processor = definition.States.CopyItems?.ItemProcessor;
      const states = processor?.States ?? {};

      expect(processor?.StartAt).toBe('StartItem');
      expect(states.StartItem).toMatchObject({ Type: 'Pass', Result: {}, ResultPath: '$.copied', Next: 'CopyItem' });
      expect(states.CopyItem).toMatchObject({
        Parameters: { 'runId.$': '$.runId', 'task.$': '$.task', 'previous.$': '$.copied' },
        ResultPath: '$.copied',
        Next: 'MoreParts',
      });
      expect(states.MoreParts).toMatchObject({
        Type: 'Choice',
        Choices: [{ Variable: '$.copied.continuation', IsPresent: true, Next: 'CopyItem' }],
        Default: 'ItemCopied',
      });
    });

    it('retries transient item failures with backoff, a timed-out copy only once, and sends any failure to the fail step', () => {
      const copyItem = definition.States.CopyItems?.ItemProcessor?.States.CopyItem;

      expect(copyItem?.Retry).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ ErrorEquals: ['UpstreamError', 'UnavailableError'], MaxAttempts: 5, BackoffRate: 2 }),
          expect.objectContaining({ ErrorEquals: ['Sandbox.Timedout'], MaxAttempts: 1 }),
        ]),
      );
      const timeouts = (copyItem?.Retry ?? []).filter((retry) => retry.ErrorEquals.includes('Sandbox.Timedout'));
      expect(timeouts.map((retry) => retry.MaxAttempts)).toEqual([1]);
      for (const name of ['Plan', 'CopyItems', 'Publish', 'Prune']) {
        expect(definition.States[name]?.Catch).toEqual([{ ErrorEquals: ['States.ALL'], Next: 'RecordFailure', ResultPath: '$.error' }]);
      }
    });

    it('retries publish and prune on throttling and Lambda refusals only, never on a domain error', () => {
      for (const name of ['Publish', 'Prune']) {
        const retried = (definition.States[name]?.Retry ?? []).flatMap((retry) => retry.ErrorEquals);

        expect(retried).toEqual(expect.arrayContaining(['UnavailableError', 'Lambda.TooManyRequestsException', 'Lambda.ServiceException']));
        expect(retried.filter((error) => /IntegrityError|ConflictError|LeaseLostError|PublishedContentError|States\.ALL|States\.TaskFailed/.test(error))).toEqual([]);
      }
      expect(definition.States.Publish?.Retry).toEqual(
        expect.arrayContaining([expect.objectContaining({ ErrorEquals: ['UnavailableError', 'Lambda.TooManyRequestsException'], MaxAttempts: 4, BackoffRate: 2 })]),
      );
      // A publish cut short by its timeout is not started again blindly.
      expect((definition.States.Publish?.Retry ?? []).flatMap((retry) => retry.ErrorEquals)).not.toContain('Sandbox.Timedout');
    });

    it('names the bucket in the Settings state, so the map reader needs no bucket-wide access', () => {
      const settings = definition.States.Settings as { Result?: { bucket?: string } };

      expect(settings.Result?.bucket).toBe(`<${logicalIdOf(mirror.stack, mirror.stack.storage.bucket)}>`);
    });

    it('traces and fully logs the state machine', () => {
      template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
        TracingConfiguration: { Enabled: true },
        LoggingConfiguration: Match.objectLike({ Level: 'ALL' }),
      });
    });
  });

  describe('Least privilege', () => {
    const bucketArn = () => `<${logicalIdOf(mirror.stack, mirror.stack.storage.bucket)}>`;
    const s3Grants = (fn: MirrorFunction) =>
      allowedFor(template, roleId(fn))
        .filter((statement) => statement.actions.some((action) => action.startsWith('s3:')))
        .flatMap((statement) => statement.actions.map((action) => `${action} ${statement.resources.join(' ')}`))
        .sort();

    const deletes = (fn: MirrorFunction) =>
      allowedFor(template, roleId(fn))
        .filter((statement) => statement.actions.includes('s3:DeleteObject'))
        .flatMap((statement) => statement.resources.map((resource) => resource.replace(`${bucketArn()}/`, '')))
        .sort();
    /** The DynamoDB statements of a function's role: actions and the partitions (LeadingKeys) they may touch. */
    const catalogGrants = (fn: MirrorFunction) =>
      (Object.values(template.findResources('AWS::IAM::Policy')) as { Properties: { Roles: { Ref: string }[]; PolicyDocument: { Statement: { Action: string | string[]; Condition?: Record<string, Record<string, string[]>> }[] } } }[])
        .filter((policy) => policy.Properties.Roles.some((role) => role.Ref === roleId(fn)))
        .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
        .filter((statement) => [statement.Action].flat().some((action) => action.startsWith('dynamodb:')))
        .flatMap((statement) =>
          [statement.Action].flat().map((action) => ({ action, partitions: statement.Condition?.['ForAllValues:StringLike']?.['dynamodb:LeadingKeys'] })),
        );
    const writesTo = (fn: MirrorFunction, partition: string) =>
      catalogGrants(fn)
        .filter(({ action, partitions }) => /^dynamodb:(Put|Update|Delete|BatchWrite)/.test(action) && (partitions === undefined || partitions.includes(partition)))
        .map(({ action }) => action);

    it('lets each phase delete only what it cleans up: plan and prune everything unlisted, fail its staging, copy unvouched item bytes', () => {
      const { plan, copy, publish, prune, fail, check } = syncFunctions();

      expect(deletes(plan)).toEqual(['items/*', 'meta/*', 'runs/*']);
      expect(deletes(prune)).toEqual(['items/*', 'meta/*', 'runs/*']);
      expect(deletes(fail)).toEqual(['meta/*', 'runs/*']);
      expect(deletes(copy)).toEqual(['items/*']);
      expect(deletes(publish)).toEqual([]);
      expect(deletes(check)).toEqual([]);
      expect(actionsOf(mirror.stack.api.handler).filter((action) => action.startsWith('s3:Delete'))).toEqual([]);
    });

    it('lets the copy function write item bytes and nothing else in the bucket, listing only under items/', () => {
      expect(s3Grants(mirror.stack.sync.copyFunction)).toEqual(
        [
          `s3:AbortMultipartUpload ${bucketArn()}/items/*`,
          `s3:DeleteObject ${bucketArn()}/items/*`,
          `s3:GetObject ${bucketArn()}/items/*`,
          `s3:ListBucket ${bucketArn()}`,
          `s3:PutObject ${bucketArn()}/items/*`,
          `s3:PutObject ${bucketArn()}/items/*`,
        ].sort(),
      );
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: roleId(mirror.stack.sync.copyFunction) }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            // Create-only: the object-creating calls must carry If-None-Match; multipart's other steps carry none.
            Match.objectLike({ Action: 's3:PutObject', Condition: { Null: { 's3:if-none-match': 'false' } } }),
            Match.objectLike({ Action: 's3:PutObject', Condition: { Bool: { 's3:ObjectCreationOperation': 'false' } } }),
            Match.objectLike({ Action: 's3:ListBucket', Condition: { StringLike: { 's3:prefix': ['items/*'] } } }),
          ]),
        },
      });
    });

    it('scopes every sync function\'s ListBucket by s3:prefix', () => {
      for (const [name, fn] of Object.entries(syncFunctions())) {
        const statements = (Object.values(template.findResources('AWS::IAM::Policy')) as { Properties: { Roles: { Ref: string }[]; PolicyDocument: { Statement: { Action: string | string[]; Condition?: unknown }[] } } }[])
          .filter((policy) => policy.Properties.Roles.some((role) => role.Ref === roleId(fn)))
          .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
          .filter((statement) => [statement.Action].flat().includes('s3:ListBucket'));

        for (const statement of statements) expect(statement.Condition, name).toMatchObject({ StringLike: { 's3:prefix': expect.any(Array) } });
      }
    });

    it('lets only publish write the current pointer, each function only the partitions its phase writes', () => {
      const { check, plan, copy, publish, prune, fail } = syncFunctions();

      expect(writesTo(publish, 'CURRENT')).toEqual(['dynamodb:PutItem']);
      for (const fn of [check, plan, copy, prune, fail]) expect(writesTo(fn, 'CURRENT')).toEqual([]);
      expect(writesTo(copy, 'OBJECT').sort()).toEqual(['dynamodb:DeleteItem', 'dynamodb:PutItem']);
      for (const partition of ['PUBLICATION', 'ENTRIES#*', 'RUN', 'STATE']) expect(writesTo(copy, partition), partition).toEqual([]);
      expect(writesTo(copy, 'LOCK')).toEqual(['dynamodb:UpdateItem']);
      // Every catalog statement of a sync function names its partitions, and none may Scan.
      for (const fn of [check, plan, copy, publish, prune, fail]) {
        for (const grant of catalogGrants(fn)) expect(grant.action).not.toBe('dynamodb:Scan');
      }
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: roleId(publish) }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Action: 'dynamodb:PutItem',
              Condition: {
                'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['PUBLICATION', 'CURRENT', 'STATE', 'RUN'] },
                Null: { 'dynamodb:LeadingKeys': 'false' },
              },
            }),
          ]),
        },
      });
    });

    it('keeps the API read-only: published metadata, run files (a running sync\'s progress) and the catalog', () => {
      const api = mirror.stack.api.handler;
      const writes = actionsOf(api).filter((action) => /^(s3:(Put|Delete|Abort)|dynamodb:(Put|Update|Delete|BatchWrite))/.test(action));

      expect(writes).toEqual([]);
      expect(s3Grants(api)).toEqual([`s3:GetObject ${bucketArn()}/meta/* ${bucketArn()}/runs/*`, `s3:ListBucket ${bucketArn()}`]);
    });

    it('touches no account-level setting: no API Gateway CloudWatch role', () => {
      template.resourceCountIs('AWS::ApiGateway::Account', 0);
      template.hasResourceProperties('AWS::ApiGateway::Stage', { MethodSettings: Match.arrayWith([Match.objectLike({ LoggingLevel: 'ERROR' })]) });
    });

    it('lets the state machine read run files (the copy list) and no other object', () => {
      const roleIdOfMachine = logicalIdOf(mirror.stack, mirror.stack.sync.stateMachine.role);
      const s3 = allowedFor(template, roleIdOfMachine).filter((statement) => statement.actions.some((action) => action.startsWith('s3:')));

      expect(s3).toEqual([{ actions: ['s3:GetObject'], resources: [`${bucketArn()}/runs/*`] }]);
    });

    it('gives the check function read-only catalog access, no bucket access, and the start of its own executions', () => {
      const actions = actionsOf(mirror.stack.sync.checkFunction);

      expect(actions.filter((action) => action.startsWith('s3:'))).toEqual([]);
      expect(actions.filter((action) => /^dynamodb:(Put|Update|Delete|BatchWrite)/.test(action))).toEqual([]);
      expect(actions.filter((action) => action.startsWith('states:'))).toEqual(['states:StartExecution']);
    });

    it('grants no wildcard action and no wildcard resource except X-Ray and log delivery', () => {
      const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap(
        (policy) => (policy as { Properties: { PolicyDocument: { Statement: { Effect: string; Action: unknown; Resource: unknown }[] } } }).Properties.PolicyDocument.Statement,
      );
      const allows = statements.filter((statement) => statement.Effect === 'Allow');

      for (const statement of allows) {
        const actions = [statement.Action].flat() as string[];
        expect(actions.filter((action) => action.includes('*'))).toEqual([]);
        if ([statement.Resource].flat().includes('*')) {
          expect(actions.every((action) => /^(xray|logs):/.test(action))).toBe(true);
        }
      }
    });
  });

  describe('Construct: MirrorApi', () => {
    it('serves /streams/*, /api/*, /channels/* and the status page at / with GET and HEAD through a Lambda proxy that passes bytes untouched', () => {
      template.hasResourceProperties('AWS::ApiGateway::RestApi', {
        BinaryMediaTypes: ['*/*'],
        EndpointConfiguration: { Types: ['REGIONAL'] },
      });
      const methods = Object.values(template.findResources('AWS::ApiGateway::Method')) as {
        Properties: { HttpMethod: string; ResourceId: { Ref?: string; 'Fn::GetAtt'?: [string, string] }; Integration: { Type: string } };
      }[];
      const resources = template.findResources('AWS::ApiGateway::Resource') as Record<string, { Properties: { PathPart: string; ParentId: unknown } }>;
      const pathOf = (id: string): string => {
        const resource = resources[id];
        if (!resource) return '';
        const parent = resource.Properties.ParentId as { Ref?: string };
        return `${parent.Ref ? pathOf(parent.Ref) : ''}/${resource.Properties.PathPart}`;
      };

      const resourcePath = ({ Ref: ref, 'Fn::GetAtt': attribute }: { Ref?: string; 'Fn::GetAtt'?: [string, string] }) =>
        ref ? pathOf(ref) : attribute?.[1] === 'RootResourceId' ? '/' : `unknown ${JSON.stringify(attribute)}`;
      const routes = methods.map((method) => `${method.Properties.HttpMethod} ${resourcePath(method.Properties.ResourceId)}`).sort();

      expect(routes).toEqual([
        'GET /',
        'GET /api/{proxy+}',
        'GET /channels/{proxy+}',
        'GET /keyring.asc',
        'GET /keyring.gpg',
        'GET /streams/{proxy+}',
        'HEAD /',
        'HEAD /api/{proxy+}',
        'HEAD /channels/{proxy+}',
        'HEAD /keyring.asc',
        'HEAD /keyring.gpg',
        'HEAD /streams/{proxy+}',
        'POST /api/v1/uploads',
      ]);
      expect(methods.every((method) => method.Properties.Integration.Type === 'AWS_PROXY')).toBe(true);
    });

    it('takes custom image uploads on POST /api/v1/uploads only SigV4-signed (AWS_IAM), in a function of their own', () => {
      const methods = template.findResources('AWS::ApiGateway::Method', { Properties: { HttpMethod: 'POST' } });
      expect(Object.values(methods)).toHaveLength(1);
      const [post] = Object.values(methods) as { Properties: { AuthorizationType: string; ApiKeyRequired?: boolean; Integration: { Uri: unknown } } }[];
      expect(post!.Properties.AuthorizationType).toBe('AWS_IAM');
      expect(post!.Properties.ApiKeyRequired).toBe(false);
      // Not the public API's function: that one writes nothing.
      expect(JSON.stringify(post!.Properties.Integration.Uri)).toContain(functionId(mirror.stack.api.uploadHandler));
      expect(JSON.stringify(post!.Properties.Integration.Uri)).not.toContain(functionId(mirror.stack.api.handler));
      // Every other method stays GET/HEAD with no authorizer but CloudFront's API key.
      const others = Object.values(template.findResources('AWS::ApiGateway::Method')) as { Properties: { HttpMethod: string; AuthorizationType: string } }[];
      expect(others.filter((method) => method.Properties.HttpMethod !== 'POST').every((method) => method.Properties.AuthorizationType === 'NONE')).toBe(true);
      template.hasResourceProperties('AWS::Lambda::Function', {
        Description: Match.stringLikeRegexp('^Adds a custom image'),
        Timeout: 900,
        Environment: { Variables: Match.objectLike({ SKYSTREAMS_RESIGN: 'false' }) },
      });
      template.hasOutput('UploadsUrl', Match.anyValue());
    });

    it('logs access and throttles the stage', () => {
      template.hasResourceProperties('AWS::ApiGateway::Stage', {
        StageName: 'mirror',
        AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
        TracingEnabled: true,
        MethodSettings: [Match.objectLike({ DataTraceEnabled: false, ThrottlingRateLimit: 100, ThrottlingBurstLimit: 200 })],
      });
    });

    it('answers only requests with the API key CloudFront sends, generated by Secrets Manager and never written in the template', () => {
      // Prepare
      // Every method CloudFront reaches (GET and HEAD); the uploads POST is SigV4-signed instead.
      const methods = (Object.values(template.findResources('AWS::ApiGateway::Method')) as { Properties: { HttpMethod: string; ApiKeyRequired?: boolean } }[]).filter(
        (method) => method.Properties.HttpMethod !== 'POST',
      );
      const secretId = logicalIdOf(mirror.stack, mirror.stack.api.originKey);
      const keyValue = { 'Fn::Join': ['', ['{{resolve:secretsmanager:', { Ref: secretId }, ':SecretString:::}}']] };

      // Act
      const apiOrigin = distributionConfig().Origins.find((origin: any) => origin.CustomOriginConfig);

      // Assess
      expect(methods).toHaveLength(12);
      expect(methods.every((method) => method.Properties.ApiKeyRequired === true)).toBe(true);
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        GenerateSecretString: Match.objectLike({ PasswordLength: 64, ExcludePunctuation: true }),
      });
      template.hasResourceProperties('AWS::ApiGateway::ApiKey', { Enabled: true, Value: keyValue });
      expect(apiOrigin.OriginCustomHeaders).toEqual([{ HeaderName: 'x-api-key', HeaderValue: keyValue }]);
    });

    it('puts the stage in a usage plan with CloudFront\'s key, throttled like the stage', () => {
      template.hasResourceProperties('AWS::ApiGateway::UsagePlan', {
        ApiStages: [Match.objectLike({ Stage: Match.anyValue() })],
        Throttle: { RateLimit: 100, BurstLimit: 200 },
      });
      template.hasResourceProperties('AWS::ApiGateway::UsagePlanKey', { KeyType: 'API_KEY' });
    });
  });

  describe('Construct: MirrorDistribution', () => {

    it('reads items from S3 through origin access control with origin path /items', () => {
      template.hasResourceProperties('AWS::CloudFront::OriginAccessControl', {
        OriginAccessControlConfig: { OriginAccessControlOriginType: 's3', SigningBehavior: 'always', SigningProtocol: 'sigv4' },
      });
      const s3Origin = distributionConfig().Origins.find((origin: any) => origin.S3OriginConfig);

      expect(s3Origin.OriginPath).toBe('/items');
      expect(s3Origin.OriginAccessControlId).toEqual({ 'Fn::GetAtt': [expect.any(String), 'Id'] });
      expect(s3Origin.S3OriginConfig).toEqual({ OriginAccessIdentity: '' });
    });

    it('routes /streams/*, /api/*, / (the status page) and a channel\'s streams to the API stage and everything else to the items', () => {
      const config = distributionConfig();
      const apiOrigin = config.Origins.find((origin: any) => origin.CustomOriginConfig);
      const s3Origin = config.Origins.find((origin: any) => origin.S3OriginConfig);
      const behaviors = Object.fromEntries(config.CacheBehaviors.map((behavior: any) => [behavior.PathPattern, behavior.TargetOriginId]));
      const order = config.CacheBehaviors.map((behavior: any) => behavior.PathPattern);

      const stageId = logicalIdOf(mirror.stack, mirror.stack.api.api.deploymentStage);
      // The origin path is the stage segment of the API's URL (stage "mirror", asserted below).
      expect(flattenIntrinsics(apiOrigin.OriginPath)).toMatch(new RegExp(`^/.*"Ref":"${stageId}"`));
      expect(apiOrigin.CustomOriginConfig.OriginProtocolPolicy).toBe('https-only');
      expect(behaviors).toEqual({
        '/': apiOrigin.Id,
        '/streams/*': apiOrigin.Id,
        '/api/*': apiOrigin.Id,
        '/keyring.gpg': apiOrigin.Id,
        '/keyring.asc': apiOrigin.Id,
        '/channels/*/streams/*': apiOrigin.Id,
        '/channels/*/keyring.gpg': apiOrigin.Id,
        '/channels/*/keyring.asc': apiOrigin.Id,
        '/channels/*': s3Origin.Id,
      });
      // CloudFront takes the first match: a channel's metadata must not fall to the channel item behavior.
      expect(order.indexOf('/channels/*/streams/*')).toBeLessThan(order.indexOf('/channels/*'));
      expect(order.indexOf('/channels/*/keyring.gpg')).toBeLessThan(order.indexOf('/channels/*'));
      expect(config.DefaultCacheBehavior.TargetOriginId).not.toBe(apiOrigin.Id);
    });

    it('serves HTTP and HTTPS alike without basic auth: MAAS never gets a redirect', () => {
      const config = distributionConfig();

      for (const behavior of [config.DefaultCacheBehavior, ...config.CacheBehaviors]) {
        expect(behavior.ViewerProtocolPolicy).toBe('allow-all');
        expect(behavior.AllowedMethods).toEqual(['GET', 'HEAD']);
      }
    });

    it('caches items for long and metadata briefly', () => {
      const policies = Object.values(template.findResources('AWS::CloudFront::CachePolicy')).map(
        (policy: any) => policy.Properties.CachePolicyConfig,
      );
      const items = policies.find((policy) => /items/.test(policy.Comment));
      const metadata = policies.find((policy) => /metadata/.test(policy.Comment));

      expect(items).toMatchObject({ DefaultTTL: 30 * 86_400, MaxTTL: 365 * 86_400 });
      expect(metadata).toMatchObject({ DefaultTTL: 60, MaxTTL: 300 });
    });

    it('keys and forwards /, /streams/* and /api/* on the path alone: a query string neither skips the cache nor reaches the API', () => {
      // Prepare
      const config = distributionConfig();
      const apiBehaviors = (config.CacheBehaviors as { PathPattern: string; CachePolicyId: { Ref: string }; OriginRequestPolicyId?: unknown }[])
        .filter((behavior) => behavior.PathPattern !== '/channels/*');

      // Act
      const policies = apiBehaviors.map((behavior) => template.findResources('AWS::CloudFront::CachePolicy')[behavior.CachePolicyId.Ref]);

      // Assess
      expect(apiBehaviors.map((behavior) => behavior.PathPattern).sort()).toEqual([
        '/',
        '/api/*',
        '/channels/*/keyring.asc',
        '/channels/*/keyring.gpg',
        '/channels/*/streams/*',
        '/keyring.asc',
        '/keyring.gpg',
        '/streams/*',
      ]);
      for (const policy of policies) {
        expect(policy?.Properties.CachePolicyConfig.ParametersInCacheKeyAndForwardedToOrigin).toMatchObject({
          QueryStringsConfig: { QueryStringBehavior: 'none' },
          HeadersConfig: { HeaderBehavior: 'none' },
          CookiesConfig: { CookieBehavior: 'none' },
        });
      }
      expect(apiBehaviors.every((behavior) => behavior.OriginRequestPolicyId === undefined)).toBe(true);
      template.resourceCountIs('AWS::CloudFront::OriginRequestPolicy', 0);
    });

    it('caches /streams/* no longer than the minimum prune grace assumes', () => {
      // Prepare
      const [distribution] = Object.values(template.findResources('AWS::CloudFront::Distribution')) as any[];
      const streams = distribution.Properties.DistributionConfig.CacheBehaviors.find(
        (behavior: { PathPattern: string }) => behavior.PathPattern === '/streams/*',
      );

      // Act
      const policy = template.findResources('AWS::CloudFront::CachePolicy')[streams.CachePolicyId.Ref];
      const maxTtl = policy?.Properties.CachePolicyConfig.MaxTTL;

      // Assess
      expect(maxTtl).toBe(METADATA_MAX_TTL_SECONDS);
      expect(MIN_PRUNE_GRACE_HOURS * 3_600).toBeGreaterThanOrEqual(maxTtl + MAAS_IMPORT_MARGIN_SECONDS);
    });

    it('allows CloudFront to read the items prefix only', () => {
      const bucketId = logicalIdOf(mirror.stack, mirror.stack.storage.bucket);
      const [policy] = Object.values(template.findResources('AWS::S3::BucketPolicy', { Properties: { Bucket: { Ref: bucketId } } })) as {
        Properties: { PolicyDocument: { Statement: { Effect: string; Principal?: { Service?: string }; Action: string; Resource?: unknown; NotResource?: unknown; Condition?: unknown }[] } };
      }[];
      const cloudfront = policy?.Properties.PolicyDocument.Statement.filter((statement) => statement.Principal?.Service === 'cloudfront.amazonaws.com') ?? [];

      expect(cloudfront).toHaveLength(2);
      const allow = cloudfront.find((statement) => statement.Effect === 'Allow');
      const deny = cloudfront.find((statement) => statement.Effect === 'Deny');
      // ListBucket only makes a missing item a 404 rather than a 403.
      expect([allow?.Action].flat().sort()).toEqual(['s3:GetObject', 's3:ListBucket']);
      expect(JSON.stringify(allow?.Condition)).toContain('AWS:SourceArn');
      expect(deny?.Action).toBe('s3:GetObject');
      expect(flattenIntrinsics(deny?.NotResource)).toBe(`<${bucketId}>/items/*`);
    });
  });

  describe('Construct: Operations', () => {
    const alarms = () => Object.values(template.findResources('AWS::CloudWatch::Alarm')) as { Properties: Record<string, any> }[];
    const topicRef = () => ({ Ref: logicalIdOf(mirror.stack, mirror.stack.operations.topic) });

    it('raises four alarms, each notifying the topic when it fires and when it clears', () => {
      const all = alarms();

      expect(all).toHaveLength(4);
      for (const alarm of all) {
        expect(alarm.Properties.AlarmActions).toEqual([topicRef()]);
        expect(alarm.Properties.OKActions).toEqual([topicRef()]);
      }
    });

    it('alarms for an hour after a sync run fails or times out', () => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        Threshold: 1,
        EvaluationPeriods: RUN_FAILED_PERIODS,
        DatapointsToAlarm: 1,
        TreatMissingData: 'notBreaching',
        Metrics: Match.arrayWith([
          Match.objectLike({ Expression: 'FILL(failed, 0) + FILL(timedOut, 0)' }),
          Match.objectLike({ Id: 'failed', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'ExecutionsFailed' }) }) }),
          Match.objectLike({ Id: 'timedOut', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'ExecutionsTimedOut' }) }) }),
        ]),
      });
      expect(RUN_FAILED_PERIODS * 5).toBe(60);
    });

    it('alarms when upstream stays ahead of the mirror for staleAfterChecks checks, or the check stops reporting', () => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: METRICS_NAMESPACE,
        MetricName: METRIC.upstreamAhead,
        Dimensions: [{ Name: 'service', Value: 'skystreams' }],
        Statistic: 'Minimum',
        Period: 300,
        EvaluationPeriods: 24,
        DatapointsToAlarm: 24,
        TreatMissingData: 'breaching',
      });
    });

    it('alarms when the upstream metadata served is older than staleAfterDays (14), and leaves a silent check to the stale alarm', () => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: METRICS_NAMESPACE,
        MetricName: METRIC.upstreamAgeDays,
        Dimensions: [{ Name: 'service', Value: 'skystreams' }],
        Statistic: 'Minimum',
        Period: 3600,
        Threshold: 14,
        EvaluationPeriods: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'notBreaching',
      });
    });

    it('alarms on API 5xx only when they last: in several five-minute periods of the last half hour', () => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/ApiGateway',
        MetricName: '5XXError',
        Statistic: 'Sum',
        Period: 300,
        Threshold: 1,
        EvaluationPeriods: API_5XX_PERIODS,
        DatapointsToAlarm: API_5XX_DATAPOINTS,
        TreatMissingData: 'notBreaching',
      });
      expect(API_5XX_DATAPOINTS).toBeGreaterThan(1);
    });

    it('has no per-function error or throttle alarm: a failed run, a silent check or API 5xx already say it', () => {
      const watched = JSON.stringify(alarms());

      expect(watched).not.toContain('"Errors"');
      expect(watched).not.toContain('"Throttles"');
    });

    it('watches two custom metrics, the ones the stale-mirror and frozen-upstream alarms need', () => {
      const custom = new Set(
        alarms()
          .flatMap((alarm) => [alarm.Properties, ...(alarm.Properties.Metrics ?? []).map((m: any) => m.MetricStat?.Metric ?? {})])
          .filter((metric) => metric.Namespace && !String(metric.Namespace).startsWith('AWS/'))
          .map((metric) => `${metric.Namespace}/${metric.MetricName}`),
      );

      expect([...custom].sort()).toEqual([`${METRICS_NAMESPACE}/${METRIC.upstreamAgeDays}`, `${METRICS_NAMESPACE}/${METRIC.upstreamAhead}`]);
    });

    it('notifies a TLS-only SNS topic, with no e-mail subscription unless configured', () => {
      template.resourceCountIs('AWS::SNS::Topic', 1);
      template.resourceCountIs('AWS::SNS::Subscription', 0);
      template.hasResourceProperties('AWS::SNS::TopicPolicy', {
        PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
      });
    });

    it('builds no dashboard by default', () => {
      template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
      expect(mirror.stack.operations.dashboard).toBeUndefined();
    });

    it('builds one dashboard when alarms.dashboard is true, with copy progress read from the logs', async () => {
      const withDashboard = await synthMirror({ alarms: { dashboard: true } });
      try {
        withDashboard.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
        const body = JSON.stringify(Object.values(withDashboard.template.findResources('AWS::CloudWatch::Dashboard'))[0]);
        expect(body).toContain('item-stored');
        withDashboard.template.resourceCountIs('AWS::CloudWatch::Alarm', 4);
      } finally {
        withDashboard.dispose();
      }
    }, 120_000);
  });

  describe('Outputs', () => {
    it('prints the base URL and the exact MAAS command pointing at it', () => {
      const outputs = template.findOutputs('*') as Record<string, { Value: unknown }>;
      const distributionId = logicalIdOf(mirror.stack, mirror.stack.delivery.distribution);

      expect(flattenIntrinsics(outputs.BaseUrl?.Value)).toBe(`https://<${distributionId}>/`);
      expect(flattenIntrinsics(outputs.MaasUpdateBootSource?.Value)).toBe(
        `maas $PROFILE boot-source update 1 url=https://<${distributionId}>/ keyring_filename=/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg`,
      );
      expect(flattenIntrinsics(outputs.MaasCreateBootSource?.Value)).toMatch(/^maas \$PROFILE boot-sources create url=https:\/\//);
    });
  });
});

describe('Stack: MirrorStack (re-signed)', () => {
  let resigned: SynthesizedMirror;
  beforeAll(async () => {
    // cdk.json names the Ubuntu keyring for MAAS; a re-signed mirror's keyring goes elsewhere.
    resigned = await synthMirror({ resign: true, maasKeyringPath: null }, undefined, { bundle: false });
  }, 120_000);
  afterAll(() => resigned?.dispose());

  it('creates the signing key secret keyless and retained, passes cdk-nag, and names it to the plan function only', () => {
    const { stack, template: resignedTemplate } = resigned;
    const secretId = logicalIdOf(stack, stack.signingKey!.secret);
    const secret = resignedTemplate.findResources('AWS::SecretsManager::Secret')[secretId] as { DeletionPolicy: string; Properties: Record<string, unknown> };
    expect(secret.DeletionPolicy).toBe('Retain');
    expect(JSON.parse(secret.Properties.SecretString as string)).toEqual({ format: 'skystreams-signing-keys:1' });
    expect(resigned.nag.violations.map((violation) => violation.ruleName)).toEqual([]);

    const functions = resignedTemplate.findResources('AWS::Lambda::Function') as Record<string, { Properties: { Environment?: { Variables: Record<string, unknown> } } }>;
    const { sync } = stack;
    for (const fn of [sync.checkFunction, sync.planFunction, sync.copyFunction, sync.publishFunction, sync.pruneFunction, sync.failFunction, stack.api.handler]) {
      const variables = functions[logicalIdOf(stack, fn.function)]!.Properties.Environment!.Variables;
      if (fn === sync.planFunction) expect(variables[ENV.signingSecret]).toEqual({ Ref: secretId });
      else expect(variables[ENV.signingSecret], fn.node.id).toBeUndefined();
      if (fn !== stack.api.handler) expect(variables[ENV.resign]).toBe('true');
    }
    const secretActions = (fn: MirrorFunction) =>
      allowedFor(resignedTemplate, logicalIdOf(stack, fn.role))
        .filter((statement) => JSON.stringify(statement.resources).includes(secretId))
        .flatMap((statement) => statement.actions);
    expect(secretActions(sync.planFunction)).toEqual(expect.arrayContaining(['secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue']));
    for (const fn of [sync.checkFunction, sync.copyFunction, sync.publishFunction, sync.pruneFunction, sync.failFunction, stack.api.handler]) {
      expect(secretActions(fn), fn.node.id).toEqual([]);
    }
    const outputs = resignedTemplate.findOutputs('*') as Record<string, { Value: unknown }>;
    expect(flattenIntrinsics(outputs.FetchMirrorKeyring?.Value)).toMatch(/^curl -fsSo \/var\/snap\/maas\/common\/skystreams-keyring\.gpg https:\/\/.*\/keyring\.gpg$/);
    expect(flattenIntrinsics(outputs.MaasUpdateBootSourceKeyringData?.Value)).toMatch(
      /^curl -fsSo skystreams-keyring\.gpg https:\/\/.*\/keyring\.gpg && maas \$PROFILE boot-source update 1 url=https:\/\/.*\/ keyring_filename="" keyring_data@=skystreams-keyring\.gpg$/,
    );
    expect(flattenIntrinsics(outputs.MaasUpdateBootSource?.Value)).toMatch(/keyring_filename=\/var\/snap\/maas\/common\/skystreams-keyring\.gpg$/);
  });
});
