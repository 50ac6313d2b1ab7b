/**
 * The CDK app: reads the validated config and creates the mirror stack, with
 * cdk-nag's AwsSolutions checks on every synth. Run by `cdk synth` / `cdk
 * deploy` through cdk.json (`node infra/app.ts`).
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../functions/core/errors.ts';
import { loadConfig } from './config.ts';
import { MirrorStack } from './stacks/mirror-stack.ts';

const app = new App();
try {
  const config = loadConfig({
    context: app.node.tryGetContext('skystreams'),
    configFile: app.node.tryGetContext('skystreamsConfigFile'),
    baseDir: process.cwd(),
  });
  new MirrorStack(app, app.node.tryGetContext('skystreamsStackName') ?? 'Skystreams', {
    config,
    description: 'skystreams: a verified mirror of MAAS boot images (S3 + DynamoDB + Lambda + Step Functions + CloudFront)',
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  // One clear line instead of a stack trace: the message names the setting.
  console.error(`skystreams: invalid configuration: ${error.message}`);
  process.exit(1);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
