/**
 * What every sync handler needs, built once per Lambda container from its
 * environment: the cloud backend, the upstream, the bundled keyring and the
 * engine, reporting to Powertools.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { defaultSettings, SyncEngine } from '../../core/engine.ts';
import { ConfigError } from '../../core/errors.ts';
import { parseFilter } from '../../core/filters.ts';
import { loadKeyring } from '../../core/pgp.ts';
import type { Backend } from '../../core/ports.ts';
import { openCloudBackend } from '../cloud.ts';
import { HttpUpstream } from '../http/http-upstream.ts';
import { readSyncEnvironment } from './environment.ts';
import { recordSyncEvent } from './observability.ts';

export interface SyncRuntime {
  engine: SyncEngine;
  backend: Backend;
}

let runtime: Promise<SyncRuntime> | undefined;

/** The container's engine; the first call builds it (and a failed build is retried by the next call). */
export function syncRuntime(env: Readonly<Record<string, string | undefined>> = process.env): Promise<SyncRuntime> {
  runtime ??= buildRuntime(env).catch((error: unknown) => {
    runtime = undefined;
    throw error;
  });
  return runtime;
}

async function buildRuntime(env: Readonly<Record<string, string | undefined>>): Promise<SyncRuntime> {
  const settings = readSyncEnvironment(env);
  // The keyring ships inside the bundle, next to the handler (LAMBDA_TASK_ROOT).
  const keyringPath = isAbsolute(settings.keyringFile) ? settings.keyringFile : resolve(env.LAMBDA_TASK_ROOT ?? process.cwd(), settings.keyringFile);
  const keyringBytes = await readFile(keyringPath).catch((error: unknown) => {
    throw new ConfigError(
      `keyring ${keyringPath} is unreadable: deploy with keyring.file (or keyring.armored) set to the keyring that signs the upstream`,
      { cause: error },
    );
  });
  const keyring = await loadKeyring(keyringPath, new Uint8Array(keyringBytes));
  const backend = openCloudBackend({ bucket: settings.bucket, table: settings.table }, env);
  const engine = new SyncEngine(
    { upstream: new HttpUpstream(settings.sourceUrl, { userAgent: 'skystreams (AWS Lambda)' }), objects: backend.objects, catalog: backend.catalog, onEvent: recordSyncEvent },
    {
      ...defaultSettings,
      keyring,
      selection: { filters: settings.filters.map(parseFilter), ...(settings.max !== undefined && { max: settings.max }) },
      pruneGraceMs: settings.pruneGraceMs,
      // Step Functions retries items itself, with backoff: one attempt per invocation.
      attempts: 1,
    },
  );
  return { engine, backend };
}
