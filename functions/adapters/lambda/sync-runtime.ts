/**
 * What every sync handler needs, built once per Lambda container from its
 * environment: the cloud backend, the upstream, the bundled keyring and the
 * engine, reporting to Powertools.
 */
import { SyncEngine } from '../../core/engine.ts';
import type { Keyring } from '../../core/pgp.ts';
import type { Backend } from '../../core/ports.ts';
import { engineSettings } from '../../core/settings.ts';
import { openCloudBackend } from '../cloud.ts';
import { openKeyring } from '../fs/keyring-file.ts';
import { HttpUpstream, type HttpUpstreamOptions } from '../http/http-upstream.ts';
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
  // The keyring ships inside the bundle, next to the handler (LAMBDA_TASK_ROOT).
  const bundleDir = env.LAMBDA_TASK_ROOT ?? process.cwd();
  const keyring = !sync.sources && sync.keyring ? await openKeyring(sync.keyring, SYNC_ENTRY.name('keyring'), bundleDir) : undefined;
  const sourceKeyrings = new Map<string, Keyring>();
  for (const [i, source] of (sync.sources ?? []).entries()) {
    sourceKeyrings.set(source.name, await openKeyring(source.keyring, `${SYNC_ENTRY.name('sources', i)}.keyring`, bundleDir));
  }
  const backend = openCloudBackend({ bucket, table, ...(signingSecret && { signingSecret }) }, env);
  // SyncConfig carries the upstream's options (redirects, idle timeout) under the upstream's own names.
  const options = { ...sync, userAgent: 'skystreams (AWS Lambda)', ...hooks };
  const engine = new SyncEngine(
    {
      upstream: new HttpUpstream(sync.source, options),
      ...(sync.sources && { upstreams: new Map(sync.sources.map((source) => [source.name, new HttpUpstream(source.url, options)])) }),
      objects: backend.objects,
      catalog: backend.catalog,
      onEvent: recordSyncEvent,
      ...(backend.signingKeys && { signingKeys: backend.signingKeys }),
    },
    engineSettings(sync, keyring, sourceKeyrings),
  );
  return { engine, backend };
}
