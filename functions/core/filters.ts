/** sstream-mirror's item filters (`key=val`, `key!=val`, `key~re`, `key!~re`) and `--max`. */

export interface ItemFilter {
  key: string;
  op: '=' | '!=' | '~' | '!~';
  value: string;
  /** The expression as written, for messages. */
  source: string;
}

/** ConfigError naming the expression when it is not one of the four forms or the regex is invalid. */
export function parseFilter(expression: string): ItemFilter {
  throw new Error(`parseFilter(${expression}) not implemented`);
}

/** All filters ANDed; a missing key compares as ""; `~` is an unanchored regex search. */
export function matchesAll(filters: readonly ItemFilter[], fields: Record<string, unknown>): boolean {
  throw new Error(`matchesAll(${filters.length}, ${Object.keys(fields).length}) not implemented`);
}

/** The newest `max` names in C-locale (byte-wise) order, newest first; all of them when max is undefined. */
export function newestVersions(versionNames: readonly string[], max: number | undefined): string[] {
  throw new Error(`newestVersions(${versionNames.length}, ${max}) not implemented`);
}
