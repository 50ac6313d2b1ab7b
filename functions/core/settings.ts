/**
 * Every sync setting in one place: its schema, its default and its rules.
 * The CLI flags, the Lambda environment and the CDK config each hand their
 * raw values (strings from a command line or an environment, numbers from
 * JSON) to `parseSyncConfig`, with an `EntryPoint` saying how that entry
 * point names each setting, so a mistake is reported in its user's words:
 * `--prune-grace`, `environment variable SKYSTREAMS_PRUNE_GRACE_HOURS`,
 * `pruneGraceHours`.
 */
import { ConfigError } from './errors.ts';
import { parseFilter, type ItemFilter } from './filters.ts';
import { defaultMetadataLimits, type MetadataLimits } from './metadata-limits.ts';
import type { Keyring } from './pgp.ts';
import type { RangedCopySettings, SyncSettings } from './sync/types.ts';
import { redactUrl } from './redact.ts';
import { absentAsUndefined, booleanOf, channelOf, integerWithin, objectOf, rejectUnknownKeys, shown, type Fail } from './validators.ts';
import { CHANNEL_HISTORY_LIMIT, DEFAULT_CHANNEL, SOURCE_NAME, UPLOADS_SOURCE } from './ports.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const MiB = 1024 * 1024;

/** Where the mirror keeps its objects: one disk gains little past a few writers, S3 keeps gaining with more in flight. */
export type BackendKind = 'embedded' | 'cloud';

/** The keyring on Ubuntu machines and MAAS region controllers (package ubuntu-cloudimage-keyring). */
export const UBUNTU_CLOUDIMAGE_KEYRING = '/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg';

/** Re-signed mode: where MAAS region controllers keep the mirror's own keyring, fetched from its /keyring.gpg (never over the Ubuntu one). */
export const RESIGNED_MAAS_KEYRING = '/var/snap/maas/common/skystreams-keyring.gpg';

/** Every default of a sync setting. */
export const syncDefaults = Object.freeze({
  source: 'https://images.maas.io/ephemeral-v3/stable/',
  keyringFile: UBUNTU_CLOUDIMAGE_KEYRING,
  verify: true,
  filters: Object.freeze([]) as readonly string[],
  /** Newest versions kept per product: undefined keeps all. */
  max: undefined as number | undefined,
  concurrency: Object.freeze({ embedded: 4, cloud: 8 }) as Readonly<Record<BackendKind, number>>,
  pruneGraceMs: Object.freeze({
    // A MAAS import reads the index, then its products, then items for minutes: a replaced generation must outlive that.
    direct: 1 * HOUR,
    // Behind a CDN, clients may also hold a replaced generation's metadata from the edge: keep its items a day.
    edgeCached: 24 * HOUR,
  }),
  lockTtlMs: 5 * MINUTE,
  attempts: 3,
  limits: defaultMetadataLimits,
  allowCrossHostRedirects: false,
  itemIdleTimeoutMs: 60 * SECOND,
  /**
   * An item download whose upstream delivers less than `bytesPerSecond`,
   * averaged over `windowMs` of waiting for it, fails (transiently): a
   * trickling upstream cannot hold the lock for days. A 10 Mbit/s link shared
   * by 4 items gives each about 300 KiB/s, ten times the floor.
   * `bytesPerSecond` 0 turns the rule off.
   */
  minItemRate: Object.freeze({ bytesPerSecond: 32 * 1024, windowMs: 60 * SECOND }) as MinItemRate,
  channel: DEFAULT_CHANNEL,
  /** Only the generation a channel points at outlives the grace period: keep more to roll back later. */
  keepGenerations: 1,
  /**
   * Items above `thresholdBytes` are copied in ranged parts of `partBytes`
   * over as many copy invocations as they need (cloud backend), so no item
   * size or upstream speed needs more than one invocation's time per part.
   * A part must arrive within an invocation: 256 MiB in 13 minutes is about
   * 0.35 MB/s of upstream.
   */
  rangedCopy: Object.freeze({ thresholdBytes: 1_024 * MiB, partBytes: 256 * MiB }),
  /**
   * What a copy invocation keeps of its remaining time, unspent: the reply
   * and the misjudged length of its last part. Its budget is the rest.
   */
  copyInvocationReserveMs: 2 * MINUTE,
  /** The newest `keep` sync runs are kept however old; older ones go `retentionMs` after they finished. */
  runRetention: Object.freeze({ keep: 20, retentionMs: 90 * DAY }) as RunRetention,
  /** Publish upstream's metadata verbatim unless asked to publish the mirror's own, re-signed. */
  resign: false,
  /** Upstream metadata older than this makes the mirror stale (status page, API, `status --check`); 0 turns the rule off. */ staleAfterMs: 14 * DAY,
});

/** The slowest an item download may be, averaged over a window of waiting for upstream (see syncDefaults.minItemRate). */
export interface MinItemRate {
  readonly bytesPerSecond: number;
  readonly windowMs: number;
}

/** Which sync runs a catalog keeps: the newest `keep` always, older ones until `retentionMs` after they finished. */
export interface RunRetention {
  readonly keep: number;
  readonly retentionMs: number;
}

/** Every default SyncSetting, for code that makes a SyncSettings by hand: it adds the source's keyring and selection. */
export const defaultEngineSettings: Readonly<Omit<SyncSettings, 'keyring' | 'selection' | 'sources'>> = Object.freeze({
  concurrency: syncDefaults.concurrency.embedded,
  pruneGraceMs: syncDefaults.pruneGraceMs.direct,
  lockTtlMs: syncDefaults.lockTtlMs,
  attempts: syncDefaults.attempts,
  limits: syncDefaults.limits,
  channel: syncDefaults.channel,
  keepGenerations: syncDefaults.keepGenerations,
  rangedCopy: syncDefaults.rangedCopy,
  resign: syncDefaults.resign,
  modeChange: 'refuse',
});

/** Where the upstream's OpenPGP public keyring comes from. */
export type KeyringSource = { readonly file: string } | { readonly armored: string };

/** One of several sources merged into one stream. */
export interface SourceConfig {
  /** Names its state and its kept upstream metadata: lowercase, as SOURCE_NAME. */
  readonly name: string;
  /** Simplestreams root, ending in `/`. */
  readonly url: string;
  readonly keyring: KeyringSource;
  readonly filters: readonly ItemFilter[];
  readonly max: number | undefined;
  /** Higher wins a product id (or a path) two sources both list; on a tie, the earlier source. */
  readonly priority: number;
}

/** A validated sync configuration. */
export interface SyncConfig {
  /**
   * Upstream simplestreams root, ending in `/`; may carry credentials, so
   * show it only through `redactUrl`. With `sources`, the first source's.
   */
  readonly source: string;
  /** Undefined only when verification was turned off (unsigned `.json` sources). */
  readonly keyring: KeyringSource | undefined;
  /** sstream-mirror item filters, ANDed. */
  readonly filters: readonly ItemFilter[];
  /** Newest versions kept per product; undefined keeps all. */
  readonly max: number | undefined;
  /** Items copied at once. */
  readonly concurrency: number;
  /** How long a replaced generation (and files only it references) stays, for clients mid-download. */
  readonly pruneGraceMs: number;
  /** Lease of the sync lock; every phase renews it, and a copy renews it every third of it. */
  readonly lockTtlMs: number;
  /** Attempts per item for transient upstream or store errors. */
  readonly attempts: number;
  /** Bounds on the metadata one run reads. */
  readonly limits: MetadataLimits;
  /** Follow upstream redirects to another scheme, host or port. */
  readonly allowCrossHostRedirects: boolean;
  /** An item download fails (transiently) once no byte has arrived for this long. */
  readonly itemIdleTimeoutMs: number;
  /** An item download slower than this fails transiently (see syncDefaults.minItemRate). */
  readonly minItemRate: MinItemRate;
  /** The channel a sync publishes to. */
  readonly channel: string;
  /** Generations each channel keeps beyond the grace period: the current one and those before it. */
  readonly keepGenerations: number;
  /** Items larger than `thresholdBytes` are copied in ranged parts of `partBytes` across invocations. */
  readonly rangedCopy: RangedCopySettings;
  /** Publish the mirror's own metadata (exactly what it stores), signed with its own key. */
  readonly resign: boolean;
  /**
   * Several sources merged into one re-signed stream; undefined for the one
   * source of `source`, `keyring`, `filters` and `max`.
   */
  readonly sources?: readonly SourceConfig[];
}

/** Raw values as an entry point has them: strings, numbers, booleans, arrays, or absent (`undefined`, `null`, `''`). */
export interface RawSyncSettings {
  source?: unknown;
  /** false: accept an unsigned source and read no keyring. @default true */
  verify?: unknown;
  /** A file path, or `{ file }` / `{ armored }`. */
  keyring?: unknown;
  /** An array of expressions, or a JSON array of them as text. */
  filters?: unknown;
  max?: unknown;
  concurrency?: unknown;
  pruneGrace?: unknown;
  lockTtl?: unknown;
  attempts?: unknown;
  indexBytes?: unknown;
  productsBytes?: unknown;
  runBytes?: unknown;
  jsonDepth?: unknown;
  allowCrossHostRedirects?: unknown;
  itemIdleTimeout?: unknown;
  /** Bytes a second: a number, or text like `32KiB/s`, `1MiB`; 0 turns the rule off. */
  minItemRate?: unknown;
  minItemRateWindow?: unknown;
  channel?: unknown;
  keepGenerations?: unknown;
  /** Bytes: items larger are copied in ranged parts across invocations. */
  rangedCopyThreshold?: unknown;
  /** Bytes per ranged part. */
  copyPartSize?: unknown;
  /** true: publish re-signed metadata. @default false */
  resign?: unknown;
  /**
   * An array of `{ name, url, keyring, filters?, max?, priority? }`: several
   * sources merged into one stream, instead of `source`, `keyring`, `filters`
   * and `max`. Implies `resign`.
   */
  sources?: unknown;
}

export type SettingKey = keyof RawSyncSettings;

export type DurationUnit = 'ms' | 's' | 'h';

/** How an entry point names its settings and which of its rules apply. */
export interface EntryPoint {
  /** The setting as the entry point's user writes it; `item` is the position in a list setting. */
  name(setting: SettingKey, item?: number): string;
  /** What a bare number counts in a duration setting: CLI flags count seconds, the CDK config hours. */
  durationUnit: DurationUnit;
  /** Picks the default concurrency. */
  backend: BackendKind;
  /**
   * The mirror is served through a CDN: the prune grace defaults to a day
   * and may not be shorter than `minPruneGraceMs`, for `reason`.
   */
  edge?: { minPruneGraceMs: number; reason: string };
  /** Why this entry point refuses a source URL with credentials in it; undefined: they are allowed. */
  refuseSourceCredentials?: string;
}

/** A ConfigError that names the setting in the entry point's words (its message starts with that name). */
export class SettingError extends ConfigError {
  readonly setting: SettingKey;
  constructor(
    setting: SettingKey,
    label: string,
    problem: string,
  ) {
    super(`${label}: ${problem}`);
    this.setting = setting;
  }
}

/** Names from a map: CLI flags, environment variables. */
export function namesFrom(map: Partial<Record<SettingKey, string>>, prefix = ''): EntryPoint['name'] {
  return (setting) => `${prefix}${map[setting] ?? setting}`;
}

/** For code that configures a sync itself (the demo, the benches): each setting named by its key, a bare duration in milliseconds. */
export function codeEntryPoint(backend: BackendKind = 'embedded'): EntryPoint {
  return { name: (setting) => setting, durationUnit: 'ms', backend };
}

const RANGES = {
  max: [1, 1_000],
  // Distributed Map's MaxConcurrency ceiling.
  concurrency: [1, 10_000],
  attempts: [1, 100],
  indexBytes: [1, 64 * MiB],
  productsBytes: [1, 1_024 * MiB],
  runBytes: [1, 16 * 1_024 * MiB],
  jsonDepth: [1, 1_000],
  keepGenerations: [1, CHANNEL_HISTORY_LIMIT + 1],
  // S3's part sizes: at least 5 MiB, at most 5 GiB.
  rangedCopyThreshold: [5 * MiB, 5 * 1_024 * 1_024 * MiB],
  copyPartSize: [5 * MiB, 5 * 1_024 * MiB],
} as const satisfies Partial<Record<SettingKey, readonly [number, number]>>;

const DURATION_RANGES = {
  pruneGrace: [0, 365 * DAY],
  lockTtl: [10 * SECOND, DAY],
  itemIdleTimeout: [SECOND, HOUR],
  minItemRateWindow: [100, HOUR],
} as const satisfies Partial<Record<SettingKey, readonly [number, number]>>;

const UNIT_MS: Record<DurationUnit, number> = { ms: 1, s: SECOND, h: HOUR };

/** Validates raw settings from one entry point; throws a SettingError naming the first bad one. */
export function parseSyncConfig(raw: RawSyncSettings, entry: EntryPoint): SyncConfig {
  const fail = (setting: SettingKey, problem: string, item?: number): never => {
    throw new SettingError(setting, entry.name(setting, item), problem);
  };
  const value = (setting: SettingKey) => absentAsUndefined(raw[setting]);
  const integer = (setting: keyof typeof RANGES, fallback: number) => {
    const given = value(setting);
    return given === undefined ? fallback : integerWithin(given, RANGES[setting], (problem) => fail(setting, problem));
  };
  const duration = (setting: keyof typeof DURATION_RANGES, fallback: number) => {
    const given = value(setting);
    return given === undefined
      ? fallback
      : durationIn(given, DURATION_RANGES[setting], entry.durationUnit, (problem) => fail(setting, problem));
  };

  const verify = booleanOf(value('verify'), syncDefaults.verify, (problem) => fail('verify', problem));
  const sources = value('sources') === undefined ? undefined : parseSources(value('sources'), entry, raw);
  // Only the mirror's own metadata can list what several sources offer as one stream.
  const resign = sources ? true : booleanOf(value('resign'), syncDefaults.resign, (problem) => fail('resign', problem));
  if (sources && value('resign') !== undefined && !booleanOf(value('resign'), true, (problem) => fail('resign', problem))) {
    fail('resign', `is false, but ${entry.name('sources')} merges sources into one stream, which only re-signed mode publishes`);
  }
  if (sources && !verify) fail('verify', `cannot turn verification off for ${entry.name('sources')}: each source is verified with its own keyring`);
  // The mirror's signature vouches for what upstream signed: it cannot vouch for what nobody verified.
  if (resign && !verify) fail('resign', `needs a verified source: an unsigned one (${entry.name('verify')}) cannot be re-signed`);
  const pruneGraceMs = duration('pruneGrace', entry.edge ? syncDefaults.pruneGraceMs.edgeCached : syncDefaults.pruneGraceMs.direct);
  if (entry.edge && pruneGraceMs < entry.edge.minPruneGraceMs) {
    fail('pruneGrace', `${shown(value('pruneGrace'))} is shorter than the minimum of ${describeDuration(entry.edge.minPruneGraceMs)}: ${entry.edge.reason}`);
  }
  const [firstSource] = sources ?? [];
  return {
    source: firstSource
      ? firstSource.url
      : parseSource(value('source') ?? syncDefaults.source, entry.refuseSourceCredentials, (problem) => fail('source', problem)),
    keyring: firstSource ? firstSource.keyring : verify ? parseKeyring(value('keyring') ?? syncDefaults.keyringFile, fail) : undefined,
    filters: firstSource ? [] : parseFilters(value('filters'), fail),
    max: firstSource || value('max') === undefined ? syncDefaults.max : integer('max', 0),
    concurrency: integer('concurrency', syncDefaults.concurrency[entry.backend]),
    pruneGraceMs,
    lockTtlMs: duration('lockTtl', syncDefaults.lockTtlMs),
    attempts: integer('attempts', syncDefaults.attempts),
    limits: Object.freeze({
      indexBytes: integer('indexBytes', defaultMetadataLimits.indexBytes),
      productsBytes: integer('productsBytes', defaultMetadataLimits.productsBytes),
      runBytes: integer('runBytes', defaultMetadataLimits.runBytes),
      jsonDepth: integer('jsonDepth', defaultMetadataLimits.jsonDepth),
    }),
    allowCrossHostRedirects: booleanOf(value('allowCrossHostRedirects'), syncDefaults.allowCrossHostRedirects, (problem) =>
      fail('allowCrossHostRedirects', problem),
    ),
    itemIdleTimeoutMs: duration('itemIdleTimeout', syncDefaults.itemIdleTimeoutMs),
    minItemRate: Object.freeze({
      bytesPerSecond: value('minItemRate') === undefined
        ? syncDefaults.minItemRate.bytesPerSecond
        : byteRateOf(value('minItemRate'), (problem) => fail('minItemRate', problem)),
      windowMs: duration('minItemRateWindow', syncDefaults.minItemRate.windowMs),
    }),
    channel: parseChannel(value('channel'), (problem) => fail('channel', problem)),
    keepGenerations: integer('keepGenerations', syncDefaults.keepGenerations),
    rangedCopy: Object.freeze({
      thresholdBytes: integer('rangedCopyThreshold', syncDefaults.rangedCopy.thresholdBytes),
      partBytes: integer('copyPartSize', syncDefaults.rangedCopy.partBytes),
    }),
    resign,
    ...(sources && { sources }),
  };
}

const RATE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1000, kb: 1000, kib: 1024, m: 1000 ** 2, mb: 1000 ** 2, mib: MiB };
/** At most 1 GiB/s: a floor above that fails every download. */
const MAX_ITEM_RATE = 1024 * MiB;

/** Bytes a second from `32768`, `32KiB/s`, `64 kB/s`, `1MiB`: whole bytes, 0 to 1 GiB/s. */
function byteRateOf(value: unknown, fail: Fail): number {
  const expected = 'is not a rate like 32KiB/s, 1MiB/s or a number of bytes a second (0 turns the rule off)';
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value : undefined;
  const match = text === undefined ? null : /^(\d+(?:\.\d+)?)\s*([a-z]*?)(?:\/s)?$/i.exec(text.trim());
  const unit = match ? RATE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) return fail(`${shown(value)} ${expected}`);
  const bytes = Math.round(Number(match[1]) * unit);
  if (bytes > MAX_ITEM_RATE) return fail(`${shown(value)} is more than 1 GiB/s`);
  return bytes;
}

const PRIORITY_RANGE = [-1_000_000, 1_000_000] as const;
/** Each source is read and verified in full by every plan: a bound on that work. */
const MAX_SOURCES = 32;
const SOURCE_KEYS = ['name', 'url', 'keyring', 'filters', 'max', 'priority'] as const;
/** Settings that say where a single-source mirror syncs from: `sources` replaces them all. */
const SINGLE_SOURCE_SETTINGS = ['source', 'keyring', 'filters', 'max'] as const satisfies readonly SettingKey[];

/** The `sources` list: every entry checked, names unique, each mistake named as `<sources>[i].field`. */
function parseSources(value: unknown, entry: EntryPoint, raw: RawSyncSettings): SourceConfig[] {
  const fail = (problem: string, item?: number, field?: string): never => {
    const label = item === undefined ? entry.name('sources') : `${entry.name('sources', item)}${field === undefined ? '' : `.${field}`}`;
    throw new SettingError('sources', label, problem);
  };
  for (const setting of SINGLE_SOURCE_SETTINGS) {
    if (absentAsUndefined(raw[setting]) !== undefined && !(setting === 'filters' && Array.isArray(raw[setting]) && raw[setting].length === 0)) {
      fail(`lists the sources, so ${entry.name(setting)} cannot be given too: set it on each source instead`);
    }
  }
  const list = typeof value === 'string' ? jsonOrUndefined(value) : value;
  if (!Array.isArray(list)) return fail('expected an array of sources such as [{ "name": "maas", "url": "https://…/", "keyring": "…" }]');
  if (list.length < 1 || list.length > MAX_SOURCES) fail(`expected 1 to ${MAX_SOURCES} sources, found ${list.length}`);
  const names = new Set<string>();
  return list.map((item: unknown, i) => {
    const fields = objectOf(item, (problem) => fail(problem, i));
    rejectUnknownKeys(fields, SOURCE_KEYS, (key, problem) => fail(problem, i, key));
    const name = fields.name;
    if (typeof name !== 'string' || !SOURCE_NAME.test(name)) {
      fail(`${shown(name)} is not a source name (lowercase letters, digits and -, starting with a letter, at most 32)`, i, 'name');
    }
    if (names.has(name as string)) fail(`${shown(name)} names another source too`, i, 'name');
    if (name === UPLOADS_SOURCE) fail(`${shown(name)} is reserved for the images \`skystreams upload\` adds`, i, 'name');
    names.add(name as string);
    const field = (key: string) => absentAsUndefined(fields[key]);
    return {
      name: name as string,
      url: parseSource(field('url'), entry.refuseSourceCredentials, (problem) => fail(problem, i, 'url')),
      keyring: parseKeyring(field('keyring'), (_setting, problem) => fail(problem, i, 'keyring')),
      filters: parseFilters(field('filters'), (_setting, problem, n) => fail(problem, i, n === undefined ? 'filters' : `filters[${n}]`)),
      max: field('max') === undefined ? syncDefaults.max : integerWithin(field('max'), RANGES.max, (problem) => fail(problem, i, 'max')),
      priority: field('priority') === undefined ? 0 : integerWithin(field('priority'), PRIORITY_RANGE, (problem) => fail(problem, i, 'priority')),
    };
  });
}

/**
 * What the engine runs with: the validated settings and the keyring loaded
 * from `config.keyring` (with `config.sources`, each source's, by name).
 */
export function engineSettings(config: SyncConfig, keyring: Keyring | undefined, sourceKeyrings?: ReadonlyMap<string, Keyring>): SyncSettings {
  const sources = config.sources?.map((source) => {
    const loaded = sourceKeyrings?.get(source.name);
    if (!loaded) throw new ConfigError(`source ${source.name}: its keyring was not loaded`);
    return {
      name: source.name,
      keyring: loaded,
      selection: { filters: [...source.filters], ...(source.max !== undefined && { max: source.max }) },
      priority: source.priority,
    };
  });
  return {
    ...(sources && { sources }),
    keyring,
    selection: { filters: [...config.filters], ...(config.max !== undefined && { max: config.max }) },
    concurrency: config.concurrency,
    pruneGraceMs: config.pruneGraceMs,
    lockTtlMs: config.lockTtlMs,
    attempts: config.attempts,
    limits: config.limits,
    channel: config.channel,
    keepGenerations: config.keepGenerations,
    rangedCopy: config.rangedCopy,
    resign: config.resign,
    modeChange: 'refuse',
  };
}

/** The message for a keyring file that cannot be read, whichever entry point named it. */
export function unreadableKeyring(label: string, path: string, reason: string, options?: { cause?: unknown }): ConfigError {
  return new ConfigError(
    `${label}: ${path} cannot be read (${reason}). Install the ubuntu-cloudimage-keyring package, copy ` +
      `${UBUNTU_CLOUDIMAGE_KEYRING} from a MAAS region controller, or point ${label} at the keyring that signs your upstream`,
    options,
  );
}

/** `90s`, `15m`, `1h`, `2d`, `250ms`, or a bare number of `unit`. */
export function parseDuration(label: string, text: string, options: { unit?: DurationUnit; allowZero?: boolean } = {}): number {
  const ms = durationMs(text, options.unit ?? 's');
  if (ms === undefined || (!options.allowZero && ms === 0)) {
    throw new ConfigError(`${label}: ${JSON.stringify(text)} ${DURATION_EXPECTED(options.unit ?? 's')}`);
  }
  return ms;
}

const DURATION_EXPECTED = (unit: DurationUnit) => `is not a duration like 90s, 15m or 1h (a bare number counts ${UNIT_NAMES[unit]})`;
const UNIT_NAMES: Record<DurationUnit, string> = { ms: 'milliseconds', s: 'seconds', h: 'hours' };

function durationMs(text: string, unit: DurationUnit): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  const units = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: DAY } as const;
  const ms = Number(match[1]) * (match[2] ? units[match[2] as keyof typeof units] : UNIT_MS[unit]);
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** `2 hours`, `90 minutes`, `10 seconds`, `250 ms`: for messages. */
export function describeDuration(ms: number): string {
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (ms % HOUR === 0) return plural(ms / HOUR, 'hour');
  if (ms % MINUTE === 0) return plural(ms / MINUTE, 'minute');
  if (ms % SECOND === 0) return plural(ms / SECOND, 'second');
  return `${ms} ms`;
}

function durationIn(
  value: unknown,
  [min, max]: readonly [number, number],
  unit: DurationUnit,
  fail: (problem: string) => never,
): number {
  if (typeof value === 'number') {
    const [low, high] = [Math.ceil(min / UNIT_MS[unit]), Math.floor(max / UNIT_MS[unit])];
    if (!Number.isInteger(value) || value < low || value > high) {
      return fail(`${value} is not an integer number of ${UNIT_NAMES[unit]} from ${low} to ${high}`);
    }
    return value * UNIT_MS[unit];
  }
  const ms = typeof value === 'string' ? durationMs(value, unit) : undefined;
  if (ms === undefined) return fail(`${shown(value)} ${DURATION_EXPECTED(unit)}`);
  if (ms < min || ms > max) return fail(`${shown(value)} is not from ${describeDuration(min)} to ${describeDuration(max)}`);
  return ms;
}

/** `text` as an http(s) URL; otherwise `fail` says why, showing the text with its credentials redacted. */
export function httpUrl(text: string, fail: (problem: string) => never): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail(`${JSON.stringify(redactUrl(text))} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(`${redactUrl(text)}: only http:// and https:// are supported`);
  return url;
}

function parseChannel(value: unknown, fail: Fail): string {
  return value === undefined ? syncDefaults.channel : channelOf(value, fail);
}

function parseSource(value: unknown, refuseCredentials: string | undefined, fail: (problem: string) => never): string {
  if (typeof value !== 'string') return fail('required: the upstream simplestreams root URL');
  const url = httpUrl(value, fail);
  // The mirror appends `streams/v1/…` and item paths to the root: they would land inside a query or a fragment.
  if (/[?#]/.test(value)) return fail(`${redactUrl(value)}: must not have a query string or fragment`);
  if (refuseCredentials !== undefined && (url.username || url.password)) {
    return fail(`${redactUrl(value)}: must not embed credentials (${refuseCredentials})`);
  }
  // Index and item paths resolve against the root: it must end in a slash.
  return value.endsWith('/') ? value : `${value}/`;
}

function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseKeyring(value: unknown, fail: (setting: SettingKey, problem: string) => never): KeyringSource {
  const problem = (text: string) => fail('keyring', text);
  if (value === undefined) return problem('required: a keyring file, or an ASCII-armored public key block');
  if (typeof value === 'string') return { file: value };
  if (typeof value !== 'object' || Array.isArray(value)) return problem('expected a file path, { "file": … } or { "armored": … }');
  const { file, armored } = value as Record<string, unknown>;
  rejectUnknownKeys(value as Record<string, unknown>, ['file', 'armored'], (key, text) => problem(`${key}: ${text}`));
  if ((absentAsUndefined(file) === undefined) === (absentAsUndefined(armored) === undefined)) {
    return problem('set exactly one of "file" and "armored"');
  }
  if (armored !== undefined && armored !== null && armored !== '') {
    if (typeof armored !== 'string' || !armored.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) {
      return problem('armored: expected an ASCII-armored public key block');
    }
    return { armored };
  }
  if (typeof file !== 'string') return problem('file: expected a path');
  return { file };
}

function parseFilters(value: unknown, fail: (setting: SettingKey, problem: string, item?: number) => never): ItemFilter[] {
  if (value === undefined) return syncDefaults.filters.map(parseFilter);
  const list = typeof value === 'string' ? jsonOrUndefined(value) : value;
  if (!Array.isArray(list)) return fail('filters', 'expected an array of strings such as ["arch=amd64"]');
  return list.map((expression: unknown, i) => {
    if (typeof expression !== 'string') return fail('filters', 'expected a string', i);
    try {
      return parseFilter(expression);
    } catch (error) {
      return fail('filters', (error as Error).message, i);
    }
  });
}

/** Whether the mirror publishes re-signed, as an entry point other than a sync (the upload function) reads it; a ConfigError naming `label` when it is not a boolean. */
export function resignSetting(value: unknown, label: string): boolean {
  return booleanOf(value, syncDefaults.resign, (problem) => {
    throw new ConfigError(`${label}: ${problem}`);
  });
}
