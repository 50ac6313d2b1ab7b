/** The `skystreams` command: parses argv with the program tree, and turns what went wrong into an exit code. */
import { CommanderError } from 'commander';
import { ConfigError, LockHeldError, SkystreamsError, UpstreamError } from '../core/errors.ts';
import { UBUNTU_CLOUDIMAGE_KEYRING } from '../core/settings.ts';
import { buildProgram } from './commands/program.ts';
import { EXIT_CODES } from './options.ts';

// A reader that stops early (`skystreams --help | head -1`) is not an error of ours.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(process.exitCode ?? 0);
  });
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  process.exitCode = exitCodeOf(error);
  // Commander has already printed its own message (and the help, for a usage error).
  if (!(error instanceof CommanderError)) console.error(`skystreams: ${error instanceof Error ? error.message : String(error)}`);
  const hint = nextStep(error);
  if (hint) console.error(`skystreams: next: ${hint}`);
  if (!(error instanceof SkystreamsError) && !(error instanceof CommanderError) && process.env.SKYSTREAMS_DEBUG) console.error(error);
}

/** What to try when the first sync of a new machine cannot reach or trust its source. */
function nextStep(error: unknown): string | undefined {
  if (error instanceof ConfigError && error.message.includes(UBUNTU_CLOUDIMAGE_KEYRING)) {
    return 'to try skystreams without that keyring or the internet, `npm run demo` mirrors a signed upstream it serves itself';
  }
  // Only when the source could not be reached at all: a slow or broken download is no network setup problem.
  if (error instanceof UpstreamError && /request failed|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|could not be reached/.test(error.message)) {
    return 'behind a proxy, set https_proxy (and no_proxy); with no internet, `npm run demo` mirrors a local upstream, and --source URL names a mirror you can reach';
  }
  return undefined;
}

function exitCodeOf(error: unknown): number {
  // `--help` and `--version` end parsing with a CommanderError too, of exit code 0.
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_CODES.ok.code : EXIT_CODES.usage.code;
  if (error instanceof ConfigError) return EXIT_CODES.usage.code;
  if (error instanceof LockHeldError) return EXIT_CODES.locked.code;
  return EXIT_CODES.failure.code;
}
