/**
 * The cdk-nag AwsSolutions findings we accept, each with its one-line reason.
 * Anything not listed here fails `cdk synth` and the infra tests: a new
 * wildcard permission or an unexpected finding must be fixed or argued for
 * here, never acknowledged wholesale.
 */
import { Validations, type CfnElement, type Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference.js';
import type { IConstruct } from 'constructs';
import { KEY_PATTERNS } from './bucket-access.ts';
import type { MirrorApi } from './constructs/mirror-api.ts';
import type { MirrorDistribution } from './constructs/mirror-distribution.ts';
import type { MirrorStorage } from './constructs/mirror-storage.ts';
import type { SigningKey } from './constructs/signing-key.ts';
import type { SyncPipeline } from './constructs/sync-pipeline.ts';

/** The stack whose findings are judged, by the constructs the reasons below are about. */
export interface AuditedStack extends Stack {
  readonly storage: MirrorStorage;
  readonly sync: SyncPipeline;
  readonly signingKey: SigningKey | undefined;
  readonly api: MirrorApi;
  readonly delivery: MirrorDistribution;
}

const REASONS = {
  requestValidation: 'Lambda proxy for a read-only GET/HEAD app with no request bodies; the app validates every path itself.',
  apiAuthorization:
    "Read-only mirror metadata (upstream's own signed files) and status; only CloudFront holds the API key, and access control, when configured, is enforced there.",
  apiWaf: 'The API only answers requests carrying the API key CloudFront adds; the allow-list and basic auth run at CloudFront.',
  geoRestriction: 'A mirror for the operator’s MAAS servers wherever they are; restrict by network with accessControl.allowedCidrs.',
  distributionWaf:
    'The IPv4/IPv6 allow-list (accessControl.allowedCidrs) runs in the viewer-request CloudFront Function; a web ACL would cost from $5/month.',
  originKeyRotation:
    'The API key is shared by two AWS services only (CloudFront and API Gateway); rotating it means a deploy that changes both, not a Lambda.',
  defaultCertificate: 'The default *.cloudfront.net certificate only allows the TLSv1 policy; set customDomain to get TLSv1.2_2021.',
  xray: 'X-Ray trace submission accepts no resource-level permissions.',
  stepFunctionsLogging: 'Step Functions log delivery and X-Ray accept no resource-level permissions.',
  functionVersions: "Invoking our own function's versions and aliases (`<arn>:*`, added by CDK's invoke grant).",
  objectPrefix: (prefix: string) => `Objects under the ${prefix} prefix of the mirror bucket only (key layout: functions/core/ports.ts).`,
  tableIndexes: "The catalog table's secondary index (sync runs by time), same table only.",
  mapChildren: "The Distributed Map's child executions, whose names are only known at run time.",
  signingKeyRotation:
    'An OpenPGP signing key that MAAS keyrings trust: rotated with `skystreams key rotate`, which keeps the old public key published until it is retired (docs/key-rotation.md).',
} as const;

export function suppressAcceptedFindings(stack: AuditedStack): void {
  const acknowledge = (construct: IConstruct, id: string, reason: string) => Validations.of(construct).acknowledge({ id, reason });
  const functions = [...Object.values(stack.sync.functions), stack.api.handler.function];

  acknowledge(stack.api.api, 'AwsSolutions-APIG2', REASONS.requestValidation);
  acknowledge(stack.api.api, 'AwsSolutions-APIG3', REASONS.apiWaf);
  acknowledge(stack.api.api, 'AwsSolutions-APIG4', REASONS.apiAuthorization);
  acknowledge(stack.api.api, 'AwsSolutions-COG4', REASONS.apiAuthorization);

  const distribution = stack.delivery.distribution;
  acknowledge(distribution, 'AwsSolutions-CFR1', REASONS.geoRestriction);
  acknowledge(distribution, 'AwsSolutions-CFR2', REASONS.distributionWaf);
  acknowledge(stack.api.originKey, 'AwsSolutions-SMG4', REASONS.originKeyRotation);
  if (stack.signingKey) acknowledge(stack.signingKey.secret, 'AwsSolutions-SMG4', REASONS.signingKeyRotation);
  if (stack.delivery.usesDefaultCertificate) acknowledge(distribution, 'AwsSolutions-CFR4', REASONS.defaultCertificate);

  acknowledgeAcceptedWildcards(stack, acceptedWildcards(stack, functions));
}

/** A wildcard permission we accept: which resource (flattened as cdk-nag does) and which actions. */
interface AcceptedWildcard {
  resource: string | RegExp;
  actions: RegExp;
  reason: string;
}

function acceptedWildcards(stack: AuditedStack, functions: { functionArn: string }[]): AcceptedWildcard[] {
  const flat = (value: string) => flattenCfnReference(stack.resolve(value));
  const bucketArn = flat(stack.storage.bucket.bucketArn);
  const stateMachineId = stack.resolve(stack.getLogicalId(stack.sync.stateMachine.node.defaultChild as CfnElement)) as string;
  return [
    { resource: '*', actions: /^xray:(PutTraceSegments|PutTelemetryRecords|GetSamplingRules|GetSamplingTargets)$/, reason: REASONS.xray },
    {
      resource: '*',
      actions: /^(logs:(CreateLogDelivery|DeleteLogDelivery|DescribeLogGroups|DescribeResourcePolicies|GetLogDelivery|ListLogDeliveries|PutResourcePolicy|UpdateLogDelivery)|xray:\w+)$/,
      reason: REASONS.stepFunctionsLogging,
    },
    ...functions.map((fn) => ({ resource: `${flat(fn.functionArn)}:*`, actions: /^lambda:InvokeFunction$/, reason: REASONS.functionVersions })),
    ...Object.values(KEY_PATTERNS).map((pattern) => ({
      resource: `${bucketArn}/${pattern}`,
      actions: /^s3:(GetObject|PutObject|AbortMultipartUpload|DeleteObject)$/,
      reason: REASONS.objectPrefix(`${pattern.slice(0, -1)}`),
    })),
    { resource: `${flat(stack.storage.table.tableArn)}/index/*`, actions: /^dynamodb:\w+$/, reason: REASONS.tableIndexes },
    {
      resource: new RegExp(`:execution:.*"Ref":"${stateMachineId}".*:\\*$`),
      actions: /^states:(DescribeExecution|StopExecution|RedriveExecution)$/,
      reason: REASONS.mapChildren,
    },
  ];
}

interface PolicyStatementJson {
  Effect?: string;
  Action?: string | string[];
  Resource?: unknown;
}

/**
 * Acknowledges AwsSolutions-IAM5 findings of each policy in the stack, one
 * by one, when every Allow statement that produces the finding is accepted;
 * wildcard actions are never accepted.
 */
function acknowledgeAcceptedWildcards(stack: Stack, accepted: AcceptedWildcard[]): void {
  const policies = stack.node.findAll().filter((construct): construct is iam.CfnPolicy => construct instanceof iam.CfnPolicy);
  for (const policy of policies) {
    const document = stack.resolve(policy.policyDocument) as { Statement?: PolicyStatementJson[] };
    const verdicts = new Map<string, string | undefined>();
    for (const statement of document.Statement ?? []) {
      if (statement.Effect !== 'Allow') continue;
      const actions = toArray(statement.Action);
      for (const resource of toArray(statement.Resource).map((value) => flattenCfnReference(value))) {
        if (!resource.includes('*')) continue;
        const finding = `Resource::${resource}`;
        const match = accepted.find((rule) => matches(rule.resource, resource) && actions.every((action) => rule.actions.test(action)));
        const previous = verdicts.has(finding) ? verdicts.get(finding) : match?.reason;
        verdicts.set(finding, previous !== undefined && match ? previous : undefined);
      }
    }
    for (const [finding, reason] of verdicts) {
      if (reason !== undefined) Validations.of(policy).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
    }
  }
}

function matches(expected: string | RegExp, actual: string): boolean {
  return typeof expected === 'string' ? expected === actual : expected.test(actual);
}

function toArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
