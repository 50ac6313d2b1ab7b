/**
 * The checks every entry point's settings go through (settings.ts for sync
 * settings, infra/config.ts for the deployment's own, options.ts for a
 * `--config` file): each takes a `fail` that throws in the entry point's
 * words, so one rule reads the same wherever it is broken.
 */
import { CHANNEL_NAME } from './ports.ts';

/** Throws: the setting's label is added by whoever made it. */
export type Fail = (problem: string) => never;

/** A value as a message shows it: strings quoted. */
export function shown(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

/** `null` and `''` mean "not given", like an absent key. */
export function absentAsUndefined(value: unknown): unknown {
  return value === null || value === '' ? undefined : value;
}

/** `value` (a number, or digits as text) when it is an integer in range; otherwise `fail` says why. */
export function integerWithin(value: unknown, [min, max]: readonly [number, number], fail: Fail): number {
  const number = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) {
    return fail(`${shown(value)} is not an integer from ${min} to ${max}`);
  }
  return number;
}

/** true or false, as a boolean or as the text of an environment variable; `fallback` when absent. */
export function booleanOf(value: unknown, fallback: boolean, fail: Fail): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === 'false') return value === 'true';
  return fail(`${shown(value)} is not true or false`);
}

/** A channel's name, as ports.ts CHANNEL_NAME allows it. */
export function channelOf(value: unknown, fail: Fail): string {
  if (typeof value !== 'string' || !CHANNEL_NAME.test(value)) {
    return fail(`${shown(value)} is not a channel name (lower-case letters, digits and dashes, starting with a letter, at most 32)`);
  }
  return value;
}

/** `value` as a JSON object's fields; `fail` when it is not one. */
export function objectOf(value: unknown, fail: Fail, expected = 'expected an object'): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(expected);
  return value as Record<string, unknown>;
}

/** Fails on the first key of `object` not in `known`, naming it (`fail`'s first argument) and listing the known ones. */
export function rejectUnknownKeys(object: Record<string, unknown>, known: readonly string[], fail: (key: string, problem: string) => never): void {
  const unknownKey = Object.keys(object).find((key) => !known.includes(key));
  if (unknownKey !== undefined) fail(unknownKey, `unknown setting (known: ${known.join(', ')})`);
}
