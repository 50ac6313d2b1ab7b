import { configDefaults, defineConfig } from 'vitest/config';

/** Scale tests take minutes each; `npm run test:scale` runs them (vitest.scale.config.ts). */
export const SCALE_TESTS = 'test/**/*.scale.test.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: [...configDefaults.exclude, SCALE_TESTS],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // s3rver and DynamoDB Local (a JVM) start once for the run, not once per test file (useStandins()).
    globalSetup: ['./test/support/global-standins.ts'],
    // vitest's default is one worker fewer than the cores: one on a 2-core machine. Most test
    // files wait on sockets, child processes and the stand-ins, so two workers fit two cores.
    maxWorkers: 2,
    // RELIABILITY.md's cases are shown by named tests: the run fails unless those it ran passed.
    reporters: ['default', './test/support/reliability-reporter.ts'],
  },
});
