/** The `skystreams` command tree, built without side effects: each command room adds its commands. */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { EXIT_CODES } from '../options.ts';
import { addBundleCommands } from './bundles.ts';
import { addChannelCommands } from './channels.ts';
import { addImagesCommand } from './images.ts';
import { addInitCommand } from './init.ts';
import { addKeyCommands } from './keys.ts';
import { addPackageCommands } from './packages.ts';
import { addServeCommand } from './serve.ts';
import { addStatusCommand } from './status.ts';
import { withExamples } from './support.ts';
import { addLocalCommand, addSyncCommand } from './sync.ts';
import { addUploadCommands } from './uploads.ts';
import { addVerifyCommand } from './verify.ts';

export function buildProgram(): Command {
  const program = new Command('skystreams')
    .description('A verified mirror of MAAS boot images (simplestreams), on one machine or on S3 + DynamoDB.')
    .version(packageVersion(), '--version', 'print the version')
    // Usage errors throw (set before the commands are added, which inherit it), so their exit code is the one in EXIT_CODES.
    .exitOverride();
  withExamples(program, [
    "skystreams local --filter arch=amd64 --filter 'release~^(jammy|noble)?$' --max 2  # mirror and serve on :8080",
    'skystreams sync && skystreams serve --host 0.0.0.0                                # the same in two steps',
    'skystreams status',
  ]).addHelpText(
    'after',
    `\nExit codes:\n${Object.values(EXIT_CODES)
      .map(({ code, meaning }) => `  ${code}  ${meaning}`)
      .join('\n')}`,
  );
  // The order here is the order `--help` lists them in.
  addSyncCommand(program);
  addServeCommand(program);
  addLocalCommand(program);
  addStatusCommand(program);
  addImagesCommand(program);
  addVerifyCommand(program);
  addInitCommand(program);
  addBundleCommands(program);
  addChannelCommands(program);
  addPackageCommands(program);
  addUploadCommands(program);
  addKeyCommands(program);
  pointUsageErrorsAtHelp(program, 'skystreams');
  return program;
}

/** A usage error is one line and where to read more, not the whole help. */
function pointUsageErrorsAtHelp(command: Command, path: string): void {
  command.showHelpAfterError(`(see: ${path} --help)`);
  for (const sub of command.commands) pointUsageErrorsAtHelp(sub, `${path} ${sub.name()}`);
}

function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return version;
}
