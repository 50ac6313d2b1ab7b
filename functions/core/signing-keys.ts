/**
 * The mirror's own OpenPGP keys, for re-signed publishing: one active key
 * that signs, and the public halves of earlier keys that stay in the served
 * keyring until the operator retires them (so clients that still hold an
 * old keyring, or metadata signed by the old key, keep verifying during a
 * rotation). The whole set is one JSON document kept by a SigningKeyStore
 * (a 0600 file under the data dir, or a Secrets Manager secret).
 */
import { readKeys, type PrivateKey, type PublicKey } from 'openpgp';
import { ConfigError } from './errors.ts';
import { generateSigningKey, loadSigningKey } from './pgp.ts';
import type { SigningKeyStore } from './ports.ts';

export const SIGNING_KEYS_FORMAT = 'skystreams-signing-keys:1';

/** The user id of keys the mirror generates. */
export const SIGNING_KEY_USER_ID = 'skystreams mirror signing key';

/** The stored document. No `active` yet: a store prepared empty (the secret infra creates), filled on first use. */
export interface SigningKeysDocument {
  format: typeof SIGNING_KEYS_FORMAT;
  /** Armored private key that signs the next publication. */
  active?: string;
  /** Armored public keys of earlier active keys, still published in the keyring, oldest first. */
  previous?: string[];
}

/** A loaded key set. */
export interface SigningKeys {
  signer: PrivateKey;
  /** Every key the served keyring carries: the active key's public half first, then the previous ones. */
  published: PublicKey[];
}

export function parseSigningKeysDocument(name: string, text: string): SigningKeysDocument {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse quotes the text it failed on, and this text holds private keys: neither the message nor the cause is kept.
    throw new ConfigError(`${name}: not a JSON document`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`${name}: expected a JSON object`);
  const { format, active, previous, ...unknown } = parsed as Record<string, unknown>;
  if (format !== SIGNING_KEYS_FORMAT) {
    throw new ConfigError(`${name}: format: expected ${JSON.stringify(SIGNING_KEYS_FORMAT)}, found ${JSON.stringify(format)}`);
  }
  const [extra] = Object.keys(unknown);
  if (extra !== undefined) throw new ConfigError(`${name}: ${extra}: unknown field (known: format, active, previous)`);
  if (active !== undefined && typeof active !== 'string') throw new ConfigError(`${name}: active: expected an armored private key`);
  if (previous !== undefined && (!Array.isArray(previous) || previous.some((key) => typeof key !== 'string'))) {
    throw new ConfigError(`${name}: previous: expected an array of armored public keys`);
  }
  return { format, ...(active !== undefined && { active }), ...(previous !== undefined && { previous: previous as string[] }) };
}

export function serializeSigningKeysDocument(document: SigningKeysDocument): string {
  return `${JSON.stringify(document, null, 2)}\n`;
}

/** The stored keys, generating the first key when the store has none (the only write a sync makes to it). */
export async function openSigningKeys(store: SigningKeyStore, now = new Date()): Promise<SigningKeys> {
  let document = await readDocument(store);
  if (document?.active === undefined) {
    const { armoredPrivate } = await generateSigningKey(SIGNING_KEY_USER_ID, now);
    const created: SigningKeysDocument = { ...(document ?? { format: SIGNING_KEYS_FORMAT }), active: armoredPrivate };
    // Create-only: when two processes race here, the one that loses reads the winner's key.
    const written = await store.create(serializeSigningKeysDocument(created), document !== undefined);
    document = written ? created : await readDocument(store);
    if (document?.active === undefined) throw new ConfigError(`${store.description}: holds no active key after creating one`);
  }
  return loadDocument(store.description, document);
}

/**
 * Starts signing with a new key: the current key's public half stays in the
 * keyring (as a previous key) until `retireSigningKey`. Returns both fingerprints.
 */
export async function rotateSigningKey(store: SigningKeyStore, now = new Date()): Promise<{ retiring: string | undefined; active: string }> {
  const document = (await readDocument(store)) ?? { format: SIGNING_KEYS_FORMAT };
  const current = document.active === undefined ? undefined : await loadSigningKey(store.description, document.active);
  const { armoredPrivate, fingerprint } = await generateSigningKey(SIGNING_KEY_USER_ID, now);
  const previous = [...(document.previous ?? []), ...(current ? [current.toPublic().armor()] : [])];
  await store.replace(serializeSigningKeysDocument({ format: SIGNING_KEYS_FORMAT, active: armoredPrivate, previous }));
  return { retiring: current?.getFingerprint().toUpperCase(), active: fingerprint };
}

/** Drops a previous key from the keyring the next publication serves. ConfigError for the active key or an unknown one. */
export async function retireSigningKey(store: SigningKeyStore, fingerprint: string): Promise<void> {
  const wanted = fingerprint.replace(/\s+/g, '').toUpperCase();
  const document = await readDocument(store);
  if (document === undefined) throw new ConfigError(`${store.description}: holds no signing keys`);
  const keys = await loadDocument(store.description, document);
  if (keys.signer.getFingerprint().toUpperCase() === wanted) {
    throw new ConfigError(`${wanted} is the active signing key: rotate to a new key first (skystreams key rotate)`);
  }
  const previous = document.previous ?? [];
  const kept: string[] = [];
  for (const armored of previous) {
    const [key] = await readKeys({ armoredKeys: armored });
    if (key?.getFingerprint().toUpperCase() !== wanted) kept.push(armored);
  }
  if (kept.length === previous.length) {
    const known = keys.published.map((key) => key.getFingerprint().toUpperCase()).join(', ');
    throw new ConfigError(`${wanted} is not a key of ${store.description} (keys: ${known})`);
  }
  await store.replace(serializeSigningKeysDocument({ ...document, previous: kept }));
}

/** Fingerprints of the stored keys, the active one first; undefined when none was created yet. */
export async function describeSigningKeys(store: SigningKeyStore): Promise<{ active: string; previous: string[] } | undefined> {
  const document = await readDocument(store);
  if (document?.active === undefined) return undefined;
  const keys = await loadDocument(store.description, document);
  const [active, ...previous] = keys.published.map((key) => key.getFingerprint().toUpperCase());
  return { active: active!, previous };
}

async function readDocument(store: SigningKeyStore): Promise<SigningKeysDocument | undefined> {
  const text = await store.read();
  return text === undefined ? undefined : parseSigningKeysDocument(store.description, text);
}

async function loadDocument(name: string, document: SigningKeysDocument): Promise<SigningKeys> {
  if (document.active === undefined) throw new ConfigError(`${name}: holds no active key`);
  const signer = await loadSigningKey(`${name}: active`, document.active);
  const published: PublicKey[] = [signer.toPublic()];
  for (const [position, armored] of (document.previous ?? []).entries()) {
    let keys: PublicKey[];
    try {
      keys = (await readKeys({ armoredKeys: armored })).map((key) => key.toPublic());
    } catch (error) {
      throw new ConfigError(`${name}: previous[${position}]: not an OpenPGP public key (${(error as Error).message})`, { cause: error });
    }
    published.push(...keys);
  }
  return { signer, published };
}
