/** sstream-mirror's item filters (`key=val`, `key!=val`, `key~re`, `key!~re`) and `--max`. */
import { ConfigError } from './errors.ts';

export interface ItemFilter {
  key: string;
  op: '=' | '!=' | '~' | '!~';
  value: string;
  /** The expression as written, for messages. */
  source: string;
}

// As python-simplestreams parses them: a key of word characters and dashes,
// optional spaces around the operator, and everything else is the value.
const FILTER_EXPRESSION = /^([\w-]+) *(!?[=~]) *(.*)$/s;

/** Compiled regexes, so matching many items does not recompile per item. */
const compiledPatterns = new WeakMap<ItemFilter, RegExp>();

/** ConfigError naming the expression when it is not one of the four forms or the regex is invalid. */
export function parseFilter(expression: string): ItemFilter {
  const parsed = FILTER_EXPRESSION.exec(expression);
  if (!parsed) {
    throw new ConfigError(
      `invalid filter ${JSON.stringify(expression)}: expected key=value, key!=value, key~regex or key!~regex`,
    );
  }
  const [, key = '', op = '=', value = ''] = parsed;
  const filter: ItemFilter = { key, op: op as ItemFilter['op'], value, source: expression };
  if (op === '~' || op === '!~') {
    try {
      compiledPatterns.set(filter, new RegExp(value));
    } catch (error) {
      throw new ConfigError(`invalid filter ${JSON.stringify(expression)}: bad regular expression`, { cause: error });
    }
  }
  return filter;
}

/** All filters ANDed; a missing key compares as ""; `~` is an unanchored regex search. */
export function matchesAll(filters: readonly ItemFilter[], fields: Record<string, unknown>): boolean {
  // Own properties only: a filter on `constructor` must not see Object.prototype.
  const valueOf = (key: string) => (Object.hasOwn(fields, key) ? fields[key] : undefined);
  return filters.every((filter) => matches(filter, asComparableString(valueOf(filter.key))));
}

function matches(filter: ItemFilter, actual: string): boolean {
  switch (filter.op) {
    case '=':
      return actual === filter.value;
    case '!=':
      return actual !== filter.value;
    case '~':
      return patternOf(filter).test(actual);
    case '!~':
      return !patternOf(filter).test(actual);
  }
}

function patternOf(filter: ItemFilter): RegExp {
  let pattern = compiledPatterns.get(filter);
  if (!pattern) {
    // A filter built by hand rather than by parseFilter.
    pattern = new RegExp(filter.value);
    compiledPatterns.set(filter, pattern);
  }
  return pattern;
}

function asComparableString(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

/**
 * Byte-wise order of the UTF-8 encodings, i.e. code point order (what `LC_ALL=C
 * sort` and Python's string comparison give); unlike localeCompare and unlike
 * JavaScript's UTF-16 default sort for characters beyond the BMP.
 */
export function compareCLocale(a: string, b: string): number {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  for (;;) {
    const l = left.next();
    const r = right.next();
    if (l.done || r.done) return (l.done ? 0 : 1) - (r.done ? 0 : 1);
    const difference = (l.value.codePointAt(0) ?? 0) - (r.value.codePointAt(0) ?? 0);
    if (difference !== 0) return difference;
  }
}

/** The newest `max` names in C-locale (byte-wise) order, newest first; all of them when max is undefined. */
export function newestVersions(versionNames: readonly string[], max: number | undefined): string[] {
  if (max !== undefined && (!Number.isInteger(max) || max < 1)) {
    throw new ConfigError(`max must be a whole number of at least 1, not ${max}`);
  }
  const newestFirst = [...versionNames].sort((a, b) => compareCLocale(b, a));
  return max === undefined ? newestFirst : newestFirst.slice(0, max);
}
