/**
 * The one place a SyncEngine is wired: every entry point (the CLI, the Lambda
 * runtime, the demo, the benches) hands over its validated SyncConfig and its
 * backend, and gets an engine whose upstreams, keyrings and settings all come
 * from that config, with no default applied on the way.
 */
import { SyncEngine, type EngineDeps, type SyncSettings } from '../core/engine.ts';
import type { Keyring } from '../core/pgp.ts';
import type { Backend, Upstream } from '../core/ports.ts';
import { engineSettings, type SyncConfig } from '../core/settings.ts';
import { openKeyring } from './fs/keyring-file.ts';
import { HttpUpstream } from './upstream/http-upstream.ts';

/** How an entry point names a keyring in its messages: the single source's (no argument), or that of source `index`. */
export type KeyringLabel = (index?: number) => string;

/** The keyrings a SyncConfig names, read and parsed. */
export interface SyncKeyrings {
  /** The single source's; undefined with several sources, or with verification off. */
  readonly keyring: Keyring | undefined;
  /** Each merged source's, by source name. */
  readonly sourceKeyrings: ReadonlyMap<string, Keyring>;
}

/**
 * Reads every keyring `config` names (relative files against `baseDir`),
 * so a missing one is a ConfigError in the entry point's words before any
 * work starts.
 */
export async function loadSyncKeyrings(config: SyncConfig, label: KeyringLabel, baseDir?: string): Promise<SyncKeyrings> {
  const sourceKeyrings = new Map<string, Keyring>();
  for (const [i, source] of (config.sources ?? []).entries()) {
    sourceKeyrings.set(source.name, await openKeyring(source.keyring, label(i), baseDir));
  }
  const keyring = !config.sources && config.keyring ? await openKeyring(config.keyring, label(), baseDir) : undefined;
  return { keyring, sourceKeyrings };
}

/** The complete settings the engine runs with. */
export function resolveSyncSettings(config: SyncConfig, keyrings: SyncKeyrings): SyncSettings {
  return config.sources ? engineSettings(config, undefined, keyrings.sourceKeyrings) : engineSettings(config, keyrings.keyring);
}

export interface SyncEngineExtras extends Pick<EngineDeps, 'onEvent' | 'sleep' | 'holder' | 'isAlive' | 'now'> {
  keyrings: SyncKeyrings;
  /** May this run publish in another mode than the mirror recorded (see SyncSettings.modeChange)? @default 'refuse' */
  modeChange?: SyncSettings['modeChange'];
  /** Names this mirror to upstream servers. */
  userAgent?: string;
  /** Told the size of every chunk of item body any upstream of this sync receives (an entry point's memory policy). */
  onBodyBytes?: (bytes: number) => void;
  /** Syncs from this upstream (an export bundle), restricted to `paths`, instead of the configured sources. */
  from?: { upstream: Upstream; paths: ReadonlySet<string> };
}

export function createSyncEngine(config: SyncConfig, backend: Backend, extras: SyncEngineExtras): SyncEngine {
  const { keyrings, userAgent, onBodyBytes, from, modeChange, ...hooks } = extras;
  const options = {
    itemIdleTimeoutMs: config.itemIdleTimeoutMs,
    minItemRate: config.minItemRate,
    allowCrossHostRedirects: config.allowCrossHostRedirects,
    ...(userAgent !== undefined && { userAgent }),
    ...(onBodyBytes && { onBodyBytes }),
  };
  const settings = resolveSyncSettings(config, keyrings);
  if (from) settings.selection = { ...settings.selection, paths: from.paths };
  if (modeChange) settings.modeChange = modeChange;
  return new SyncEngine(
    {
      upstream: from?.upstream ?? new HttpUpstream(config.source, options),
      ...(config.sources && !from && { upstreams: new Map(config.sources.map((source) => [source.name, new HttpUpstream(source.url, options)])) }),
      objects: backend.objects,
      catalog: backend.catalog,
      ...hooks,
      ...(backend.signingKeys && { signingKeys: backend.signingKeys }),
    },
    settings,
  );
}
