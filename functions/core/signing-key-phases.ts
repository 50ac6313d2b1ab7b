/**
 * Which of the mirror's signing keys is in which phase, as public facts: no
 * key material, only fingerprints and dates. Kept in the catalog beside the
 * key document (which only the signing process may read) so that the status
 * API can show them; apart from signing-keys.ts so that it does not load
 * OpenPGP.
 */
import type { Catalog } from './ports.ts';

/**
 * `pending`: published in the keyring, not signing yet (`key rotate`);
 * `active`: signs every publication; `previous`: signed before, still
 * published until `key retire`.
 */
export type SigningKeyState = 'pending' | 'active' | 'previous';

export interface SigningKeyPhase {
  /** Upper-case hex, no spaces: as `key show` prints it. */
  fingerprint: string;
  state: SigningKeyState;
  /** ISO 8601: when the key entered this phase, where known. */
  since?: string;
}

/** Catalog state holding the phases (a JSON array of SigningKeyPhase), written whenever the key document changes. */
export const SIGNING_KEY_PHASES_STATE = 'signing-keys';

const STATES: readonly SigningKeyState[] = ['pending', 'active', 'previous'];

/** The recorded phases; undefined when none were recorded (no key yet) or the record is not readable. */
export async function readSigningKeyPhases(catalog: Pick<Catalog, 'getState'>): Promise<SigningKeyPhase[] | undefined> {
  const text = await catalog.getState(SIGNING_KEY_PHASES_STATE);
  if (!text) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const phases: SigningKeyPhase[] = [];
  for (const entry of parsed as Record<string, unknown>[]) {
    const { fingerprint, state, since } = entry ?? {};
    if (typeof fingerprint !== 'string' || !STATES.includes(state as SigningKeyState)) return undefined;
    phases.push({ fingerprint, state: state as SigningKeyState, ...(typeof since === 'string' && { since }) });
  }
  return phases;
}

/** Records `phases` unless the catalog already holds exactly them. */
export async function recordSigningKeyPhases(catalog: Pick<Catalog, 'getState' | 'setState'>, phases: readonly SigningKeyPhase[]): Promise<void> {
  const text = JSON.stringify(phases);
  if ((await catalog.getState(SIGNING_KEY_PHASES_STATE)) !== text) await catalog.setState(SIGNING_KEY_PHASES_STATE, text);
}
