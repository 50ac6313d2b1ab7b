/**
 * Pinned versions: an operator's "keep this image": a pinned version stays
 * selected beyond `--max` (so in every generation a sync publishes, and its
 * files out of pruning) for as long as upstream lists it. Kept in the
 * catalog's state, so every process and Lambda sees the same pins.
 */
import { ConfigError } from './errors.ts';
import { pinKey } from './planner.ts';
import type { Publications, StateStore } from './ports.ts';

const PINS_STATE = 'pins';

export interface Pin {
  product: string;
  version: string;
}

export async function listPins(catalog: StateStore): Promise<Pin[]> {
  const raw = await catalog.getState(PINS_STATE);
  return raw ? (JSON.parse(raw) as Pin[]) : [];
}

/** The pins as `Selection.pinned` takes them. */
export async function pinnedVersions(catalog: StateStore): Promise<ReadonlySet<string>> {
  return new Set((await listPins(catalog)).map((pin) => pinKey(pin.product, pin.version)));
}

/**
 * Pins a version some retained generation lists: ConfigError naming it when
 * none does (a pin of something never mirrored would silently do nothing).
 */
export async function addPin(catalog: Publications & StateStore, pin: Pin): Promise<Pin[]> {
  if (!(await isMirrored(catalog, pin))) {
    throw new ConfigError(`${pin.product} version ${pin.version} is not in any publication of this mirror: \`skystreams images\` lists what it holds`);
  }
  const pins = await listPins(catalog);
  if (pins.some((known) => known.product === pin.product && known.version === pin.version)) return pins;
  const next = [...pins, pin].sort((a, b) => (pinKey(a.product, a.version) < pinKey(b.product, b.version) ? -1 : 1));
  await catalog.setState(PINS_STATE, JSON.stringify(next));
  return next;
}

/** ConfigError when the version is not pinned. */
export async function removePin(catalog: Publications & StateStore, pin: Pin): Promise<Pin[]> {
  const pins = await listPins(catalog);
  const next = pins.filter((known) => !(known.product === pin.product && known.version === pin.version));
  if (next.length === pins.length) throw new ConfigError(`${pin.product} version ${pin.version} is not pinned`);
  await catalog.setState(PINS_STATE, JSON.stringify(next));
  return next;
}

async function isMirrored(catalog: Publications, pin: Pin): Promise<boolean> {
  for (const publication of await catalog.listPublications()) {
    for await (const entry of catalog.listEntries(publication.generation)) {
      if (entry.product === pin.product && entry.version === pin.version) return true;
    }
  }
  return false;
}
