/**
 * The backends the end-to-end suites run on. Each opens an empty mirror and
 * says which CLI flags reach the same stores.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCloudResources, openCloudBackend } from '../../functions/adapters/cloud.ts';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import type { Backend } from '../../functions/core/ports.ts';
import type { StandinEndpoints } from './global-standins.ts';

export interface OpenedBackend {
  backend: Backend;
  /** CLI flags selecting these stores. */
  cliFlags: string[];
  /** Extra environment for CLI child processes. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

export interface BackendFactory {
  name: string;
  open(): Promise<OpenedBackend>;
}

export const embeddedBackend: BackendFactory = {
  name: 'embedded (directory + SQLite)',
  async open() {
    const dataDir = await mkdtemp(join(tmpdir(), 'skystreams-e2e-'));
    const backend = openEmbeddedBackend(dataDir);
    return {
      backend,
      cliFlags: ['--data-dir', dataDir],
      env: {},
      async cleanup() {
        await backend.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  },
};

/** S3 + DynamoDB on the stand-ins: a fresh bucket and table per mirror. */
export function cloudBackend(endpoints: () => StandinEndpoints): BackendFactory {
  return {
    name: 'cloud (S3 on s3rver + DynamoDB Local)',
    async open() {
      const { s3Endpoint, dynamodbEndpoint, env } = endpoints();
      const name = `e2e-${randomUUID().slice(0, 18)}`;
      const options = { bucket: name, table: name, s3Endpoint, dynamodbEndpoint };
      await initCloudResources(options);
      const backend = openCloudBackend(options);
      return {
        backend,
        cliFlags: ['--bucket', name, '--table', name, '--s3-endpoint', s3Endpoint, '--dynamodb-endpoint', dynamodbEndpoint],
        env,
        // The stand-ins' data goes when they stop; nothing to delete per mirror.
        cleanup: () => backend.close(),
      };
    },
  };
}
