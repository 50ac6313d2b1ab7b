/**
 * Synthesizes the mirror stack the way `cdk synth` does (cdk.json's feature
 * flags, the config validated by infra/config.ts) but with a freshly
 * generated test keyring, and runs cdk-nag's AwsSolutions pack over it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type Environment, type PolicyValidationPluginReport } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseConfig, type SkystreamsConfig } from '../../infra/config.ts';
import { MirrorStack } from '../../infra/stacks/mirror-stack.ts';
import { generateSigningKey } from '../support/signed-upstream.ts';

const CDK_JSON = new URL('../../cdk.json', import.meta.url);

export interface SynthesizedMirror {
  app: App;
  stack: MirrorStack;
  template: Template;
  config: SkystreamsConfig;
  /** The binary public keyring the stack was given. */
  keyring: Uint8Array;
  /** Where the app wrote assets and templates. */
  outdir: string;
  nag: PolicyValidationPluginReport;
  /** Removes the output directory. */
  dispose(): void;
}

/** cdk.json's context, split into the feature flags and the `skystreams` config. */
export function cdkJsonContext(): { flags: Record<string, unknown>; skystreams: Record<string, unknown> } {
  const { context } = JSON.parse(readFileSync(CDK_JSON, 'utf8')) as { context: Record<string, unknown> };
  const { skystreams, ...flags } = context;
  return { flags, skystreams: skystreams as Record<string, unknown> };
}

export interface SynthOptions {
  /**
   * Bundle the Lambda code with esbuild, as `cdk synth` does. Without it the
   * functions get a placeholder asset: the template is the same but for the
   * asset hashes, and a synth takes seconds instead of most of a minute.
   * @default true
   */
  readonly bundle?: boolean;
}

/** cdk.json's default config with `overrides` on top, keyring replaced by a generated test key. */
export async function synthMirror(
  overrides: Record<string, unknown> = {},
  env: Environment = { account: '123456789012', region: 'eu-west-1' },
  { bundle = true }: SynthOptions = {},
): Promise<SynthesizedMirror> {
  const outdir = mkdtempSync(join(tmpdir(), 'skystreams-synth-'));
  const key = await generateSigningKey('skystreams infra test');
  writeFileSync(join(outdir, 'test-keyring.gpg'), key.publicKeyring);
  const { flags, skystreams } = cdkJsonContext();
  const config = parseConfig({ ...skystreams, keyring: { file: 'test-keyring.gpg' }, ...overrides }, { baseDir: outdir });
  // CDK skips bundling for stacks that match no pattern in this list.
  const app = new App({ context: { ...flags, ...(!bundle && { 'aws:cdk:bundling-stacks': [] }) }, outdir });
  const stack = new MirrorStack(app, 'SkystreamsTest', { config, env });
  const template = Template.fromStack(stack);
  const nag = new AwsSolutionsChecks(app).validateScope(stack);
  const dispose = () => rmSync(outdir, { recursive: true, force: true });
  return { app, stack, template, config, keyring: key.publicKeyring, outdir, nag, dispose };
}

/** `{ "Fn::GetAtt": [id, "Arn"] }` and `{ Ref: id }` → `<id>`, so a joined string can be read as text. */
export function flattenIntrinsics(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    if (Array.isArray(object['Fn::Join'])) {
      const [delimiter, parts] = object['Fn::Join'] as [string, unknown[]];
      return parts.map(flattenIntrinsics).join(delimiter);
    }
    if (Array.isArray(object['Fn::GetAtt'])) return `<${(object['Fn::GetAtt'] as string[])[0]}>`;
    if (typeof object.Ref === 'string') return `<${object.Ref}>`;
  }
  return JSON.stringify(value);
}

/** The state machine's Amazon States Language definition, with resources as `<logicalId>`. */
export function stateMachineDefinition(template: Template): StatesDefinition {
  const [machine] = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
  const definition = (machine as { Properties: { DefinitionString: unknown } }).Properties.DefinitionString;
  return JSON.parse(flattenIntrinsics(definition)) as StatesDefinition;
}

export interface StatesDefinition {
  StartAt: string;
  States: Record<string, StateJson>;
}

export interface StateJson {
  Type: string;
  Next?: string;
  End?: boolean;
  Resource?: string;
  Parameters?: Record<string, unknown>;
  Retry?: { ErrorEquals: string[]; MaxAttempts?: number; BackoffRate?: number; IntervalSeconds?: number }[];
  Catch?: { ErrorEquals: string[]; Next: string; ResultPath?: string }[];
  Choices?: { Variable: string; StringEquals?: string; Next: string }[];
  Default?: string;
  ItemReader?: { Resource: string; ReaderConfig?: Record<string, unknown>; Parameters?: Record<string, unknown> };
  ItemSelector?: Record<string, unknown>;
  ItemProcessor?: { ProcessorConfig: Record<string, unknown>; StartAt: string; States: Record<string, StateJson> };
  MaxConcurrency?: number;
  ResultPath?: string | null;
  OutputPath?: string | null;
  [field: string]: unknown;
}

/** The logical id of a CloudFormation resource, or of an L2 construct's main resource. */
export function logicalIdOf(stack: MirrorStack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.resolve(stack.getLogicalId((construct.node.defaultChild ?? construct) as never)) as string;
}

export interface PolicyStatementJson {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  NotResource?: unknown;
  Principal?: unknown;
  Condition?: unknown;
}

/** Every Allow statement of the policies attached to `roleLogicalId`, with resources flattened. */
export function allowedFor(template: Template, roleLogicalId: string): { actions: string[]; resources: string[] }[] {
  const policies = Object.values(template.findResources('AWS::IAM::Policy')) as {
    Properties: { Roles: { Ref: string }[]; PolicyDocument: { Statement: PolicyStatementJson[] } };
  }[];
  return policies
    .filter((policy) => policy.Properties.Roles.some((role) => role.Ref === roleLogicalId))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
    .filter((statement) => statement.Effect === 'Allow')
    .map((statement) => ({
      actions: [statement.Action].flat(),
      resources: [statement.Resource].flat().map(flattenIntrinsics),
    }));
}
