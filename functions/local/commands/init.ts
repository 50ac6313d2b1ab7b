/** `skystreams init`: create (or check) the cloud backend's bucket and table. */
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import { cloudBackendOptions, type BackendFlags } from '../options.ts';
import { backendOptions, withExamples } from './support.ts';

export function addInitCommand(program: Command): void {
  withExamples(backendOptions(program.command('init').description('create (or check) the S3 bucket and DynamoDB table of the cloud backend')), [
    'skystreams init --bucket my-mirror --table my-mirror --region eu-west-1',
  ]).action(async (flags: BackendFlags) => {
    if (!flags.bucket && !flags.table) throw new ConfigError('init needs --bucket and --table');
    const { initCloudResources } = await import('../../adapters/cloud.ts');
    const lines = await initCloudResources(cloudBackendOptions(flags));
    for (const line of lines) console.log(line);
  });
}
