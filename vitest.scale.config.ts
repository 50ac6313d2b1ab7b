import { defineConfig } from 'vitest/config';
import { SCALE_TESTS } from './vitest.config.ts';

/** `npm run test:scale`: sizes that break naive adapters, too slow for every `npm test`. */
export default defineConfig({
  test: {
    include: [SCALE_TESTS],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
