/**
 * How a mirror publishes is part of what its MAAS clients hold: a MAAS
 * configured for a re-signed mirror keeps the mirror's keyring, and one for a
 * verbatim mirror keeps upstream's. A sync that silently published the other
 * way would leave every such MAAS unable to verify. So the mode is recorded
 * with the first publication, later runs follow the record, and changing it
 * takes an explicit switch.
 */
import { ConfigError } from './errors.ts';
import { PUBLISHED_KEYRING, upstreamCopyPrefix } from './published-files.ts';
import { DEFAULT_CHANNEL, PRIMARY_SOURCE, UPLOADS_SOURCE, type Publications, type PublishingMode, type StateStore } from './ports.ts';

export type { PublishingMode };

export const PUBLISHING_MODES: readonly PublishingMode[] = ['verbatim', 're-signed', 'merged'];

/** The catalog state key the recorded mode is kept under. */
export const PUBLISHING_MODE_STATE = 'publishing-mode';

/** What a run's settings ask for, and how firmly. */
export interface ModeRequest {
  /** The mode the command's flags (or the deployment's config) name; undefined when they name none. */
  named?: PublishingMode;
  /** The flag that named it, for messages (`--resign`, `--config`, `--no-verify`). */
  namedBy?: string;
  /** The operator's explicit switch (`--switch-mode`). */
  switchTo?: PublishingMode;
  /**
   * The settings always state the mode, as a deployment's config does: a
   * change of mode there is itself the switch, reported with the run.
   */
  declarative?: boolean;
}

export interface ResolvedMode {
  mode: PublishingMode;
  /** Set when this run changes the recorded mode. */
  switched?: { from: PublishingMode; to: PublishingMode };
}

const DESCRIPTION: Record<PublishingMode, string> = {
  verbatim: "upstream's metadata verbatim (MAAS holds upstream's keyring)",
  're-signed': "its own re-signed metadata (MAAS holds the mirror's /keyring.gpg)",
  merged: "a merged stream of several sources, re-signed (MAAS holds the mirror's /keyring.gpg)",
};

export function describeMode(mode: PublishingMode): string {
  return DESCRIPTION[mode];
}

export function parsePublishingMode(value: string, label: string): PublishingMode {
  if ((PUBLISHING_MODES as readonly string[]).includes(value)) return value as PublishingMode;
  throw new ConfigError(`${label}: expected one of ${PUBLISHING_MODES.join(', ')}, found ${JSON.stringify(value)}`);
}

/** The mode a publication made before modes were recorded was published in, from the files it serves. */
export function modeOfPublishedFiles(files: Iterable<string>): PublishingMode {
  const list = [...files];
  if (!list.includes(PUBLISHED_KEYRING)) return 'verbatim';
  const sourcePrefixes = list
    .filter((file) => file.startsWith('sources/'))
    .map((file) => file.split('/')[1])
    .filter((source) => source !== undefined && source !== UPLOADS_SOURCE && upstreamCopyPrefix(source) !== upstreamCopyPrefix(PRIMARY_SOURCE));
  return sourcePrefixes.length > 0 ? 'merged' : 're-signed';
}

/**
 * The mode this run publishes in, given the recorded one. ConfigError
 * (a usage error) when the request names another mode without the switch,
 * naming the recorded mode and the switch that changes it.
 */
export function resolvePublishingMode(recorded: PublishingMode | undefined, request: ModeRequest): ResolvedMode {
  const { named, switchTo } = request;
  if (switchTo !== undefined) {
    if (named !== undefined && named !== switchTo) {
      throw new ConfigError(`--switch-mode ${switchTo} contradicts ${request.namedBy ?? 'the settings'}, which publish ${named}`);
    }
    return withSwitch(recorded, switchTo);
  }
  if (request.declarative || recorded === undefined) return withSwitch(recorded, named ?? 'verbatim');
  if (named === undefined) {
    if (recorded === 'merged') {
      throw new ConfigError(
        `this mirror publishes ${describeMode('merged')}: give the sources file it was published from with --config FILE, or change the mode with --switch-mode verbatim|re-signed`,
      );
    }
    return { mode: recorded };
  }
  if (named === recorded) return { mode: recorded };
  throw new ConfigError(
    `this mirror publishes ${describeMode(recorded)}; ${request.namedBy ?? 'these settings'} would publish ${describeMode(named)}, and every MAAS holding the current keyring would fail to import. To change the mode, add --switch-mode ${named}`,
  );
}

function withSwitch(recorded: PublishingMode | undefined, mode: PublishingMode): ResolvedMode {
  return recorded !== undefined && recorded !== mode ? { mode, switched: { from: recorded, to: mode } } : { mode };
}

/** The mode settings publish in: several sources are merged, one re-signed or verbatim. */
export function modeOfSettings(settings: { resign: boolean; sources?: readonly unknown[] | undefined }): PublishingMode {
  return settings.sources ? 'merged' : settings.resign ? 're-signed' : 'verbatim';
}

/** The mode the mirror recorded; for a mirror published before modes were recorded, the one its default channel serves in. */
export async function recordedPublishingMode(catalog: StateStore & Pick<Publications, 'getCurrent'>): Promise<PublishingMode | undefined> {
  const recorded = await catalog.getState(PUBLISHING_MODE_STATE);
  if (recorded) return parsePublishingMode(recorded, `catalog state ${PUBLISHING_MODE_STATE}`);
  const current = await catalog.getCurrent(DEFAULT_CHANNEL);
  return current && modeOfPublishedFiles(current.files);
}
