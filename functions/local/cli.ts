/** The `skystreams` command: parses argv with the program tree, and turns what went wrong into an exit code. */
import { CommanderError } from 'commander';
import { ConfigError, LockHeldError, SkystreamsError } from '../core/errors.ts';
import { buildProgram } from './commands/program.ts';
import { EXIT_CODES } from './options.ts';

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  process.exitCode = exitCodeOf(error);
  // Commander has already printed its own message (and the help, for a usage error).
  if (!(error instanceof CommanderError)) console.error(`skystreams: ${error instanceof Error ? error.message : String(error)}`);
  if (!(error instanceof SkystreamsError) && !(error instanceof CommanderError) && process.env.SKYSTREAMS_DEBUG) console.error(error);
}

function exitCodeOf(error: unknown): number {
  // `--help` and `--version` end parsing with a CommanderError too, of exit code 0.
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_CODES.ok.code : EXIT_CODES.usage.code;
  if (error instanceof ConfigError) return EXIT_CODES.usage.code;
  if (error instanceof LockHeldError) return EXIT_CODES.locked.code;
  return EXIT_CODES.failure.code;
}
