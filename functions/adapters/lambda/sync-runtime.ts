/**
 * What every sync handler needs, built once per Lambda container from its
 * environment: the cloud backend, the upstream, the bundled keyring and the
 * engine, reporting to Powertools.
 */
import type { SyncEngine } from '../../core/engine.ts';
import type { Backend } from '../../core/ports.ts';
import { openCloudBackend } from '../cloud.ts';
import { createSyncEngine, loadSyncKeyrings } from '../sync-engine.ts';
import type { HttpUpstreamOptions } from '../upstream/http-upstream.ts';
import { readSyncEnvironment, SYNC_ENTRY } from './environment.ts';
import { recordSyncEvent } from './observability.ts';

export interface SyncRuntime {
  engine: SyncEngine;
  backend: Backend;
}

let runtime: Promise<SyncRuntime> | undefined;

/** The container's engine; the first call builds it, its upstreams given `hooks` (and a failed build is retried by the next call). */
export function syncRuntime(
  env: Readonly<Record<string, string | undefined>> = process.env,
  hooks: Pick<HttpUpstreamOptions, 'onBodyBytes'> = {},
): Promise<SyncRuntime> {
  runtime ??= buildRuntime(env, hooks).catch((error: unknown) => {
    runtime = undefined;
    throw error;
  });
  return runtime;
}

async function buildRuntime(
  env: Readonly<Record<string, string | undefined>>,
  hooks: Pick<HttpUpstreamOptions, 'onBodyBytes'>,
): Promise<SyncRuntime> {
  const { bucket, table, signingSecret, sync } = readSyncEnvironment(env);
  // The keyrings ship inside the bundle, next to the handler (LAMBDA_TASK_ROOT).
  const bundleDir = env.LAMBDA_TASK_ROOT ?? process.cwd();
  const keyrings = await loadSyncKeyrings(
    sync,
    (index) => (index === undefined ? SYNC_ENTRY.name('keyring') : `${SYNC_ENTRY.name('sources', index)}.keyring`),
    bundleDir,
  );
  const backend = openCloudBackend({ bucket, table, ...(signingSecret && { signingSecret }) }, env);
  const engine = createSyncEngine(sync, backend, {
    keyrings,
    onEvent: recordSyncEvent,
    userAgent: 'skystreams (AWS Lambda)',
    // The deployment's config always states its mode: a changed config is the operator's switch, recorded with the run.
    modeChange: 'allow',
    ...hooks,
  });
  return { engine, backend };
}
