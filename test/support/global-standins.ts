/**
 * Stand-ins shared by every test file of a vitest run.
 *
 * As vitest's globalSetup, the default export starts s3rver and DynamoDB
 * Local once and hands their endpoints to the test workers. Test files call
 * `useStandins()`, which reads those endpoints, or — when this globalSetup is
 * not configured — starts stand-ins of its own for the file.
 *
 * A machine without Java must still be able to run the unit tests, so a
 * failed start is reported to the files that need the stand-ins, not thrown.
 */
import { afterAll, beforeAll, inject } from 'vitest';
import type { TestProject } from 'vitest/node';
import { startStandins, type Standins } from './standins.ts';

export type StandinEndpoints = Omit<Standins, 'stop'>;

declare module 'vitest' {
  export interface ProvidedContext {
    standins: StandinEndpoints | { unavailable: string } | undefined;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  try {
    const { stop, ...endpoints } = await startStandins();
    project.provide('standins', endpoints);
    return stop;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.warn(`stand-ins (s3rver, DynamoDB Local) did not start; cloud tests will fail: ${message}`);
    project.provide('standins', { unavailable: message });
    return async () => undefined;
  }
}

/**
 * Registers hooks for the calling test file and returns a getter for the
 * endpoints, valid inside tests and beforeEach/beforeAll hooks declared after it.
 */
export function useStandins(): () => StandinEndpoints {
  let endpoints: StandinEndpoints | undefined;
  let own: Standins | undefined;

  beforeAll(async () => {
    const shared = inject('standins');
    if (shared && 'unavailable' in shared) throw new Error(`stand-ins unavailable: ${shared.unavailable}`);
    if (shared) {
      endpoints = shared;
      return;
    }
    own = await startStandins();
    endpoints = own;
  });

  afterAll(async () => {
    await own?.stop();
  });

  return () => {
    if (!endpoints) throw new Error('useStandins(): endpoints are only available once beforeAll has run');
    return endpoints;
  };
}
