/**
 * The mirror's own OpenPGP keys, for re-signed publishing. A key goes
 * through three phases: **pending** (`rotateSigningKey`: its public half is
 * published in the keyring, the active key still signs), **active**
 * (`activateSigningKey`: it signs) and **previous** (its public half stays in
 * the keyring until `retireSigningKey`). So a MAAS always holds a keyring
 * with the signing key in it before that key signs anything, and keeps
 * verifying metadata signed by the key before it. The whole set is one JSON
 * document kept by a SigningKeyStore (a 0600 file under the data dir, or a
 * Secrets Manager secret).
 */
import { readKeys, type PrivateKey, type PublicKey } from 'openpgp';
import { ConfigError, NotFoundError } from './errors.ts';
import { generateSigningKey, loadKeyring, loadSigningKey } from './pgp.ts';
import { keys, type Catalog, type ObjectStore, type Publication, type SigningKeyStore } from './ports.ts';
import { PUBLISHED_KEYRING } from './published-files.ts';
import { describeDuration } from './settings.ts';
import { recordSigningKeyPhases, type SigningKeyPhase } from './signing-key-phases.ts';

export const SIGNING_KEYS_FORMAT = 'skystreams-signing-keys:1';

/** The user id of keys the mirror generates. */
export const SIGNING_KEY_USER_ID = 'skystreams mirror signing key';

/**
 * The stored document. No `active` yet: a store prepared empty (the secret
 * infra creates), filled on first use. Documents written before keys had
 * phases hold `format`, `active` and `previous` only, and still load.
 */
export interface SigningKeysDocument {
  format: typeof SIGNING_KEYS_FORMAT;
  /** Armored private key that signs the next publication. */
  active?: string;
  /** ISO 8601: when `active` began signing. Absent: since its creation. */
  activeSince?: string;
  /** Armored private key published in the keyring but not signing yet. */
  pending?: string;
  /** ISO 8601: when `pending` was made (with `pending` only). */
  pendingSince?: string;
  /** Armored public keys of earlier active keys, still published in the keyring, oldest first. */
  previous?: string[];
}

const FIELDS = ['format', 'active', 'activeSince', 'pending', 'pendingSince', 'previous'] as const;

/** A loaded key set. */
export interface SigningKeys {
  /** The active key. */
  signer: PrivateKey;
  /** Every key the served keyring carries: the active key's public half first, then the pending one, then the previous ones. */
  published: PublicKey[];
  /** The same keys' fingerprints and phases, in the same order. */
  phases: SigningKeyPhase[];
}

/** Where the mirror publishes, to tell how long a keyring holding a key has been served. */
export interface PublishedMirror {
  objects: ObjectStore;
  catalog: Catalog;
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
  const fields = parsed as Record<string, unknown>;
  const { format, active, activeSince, pending, pendingSince, previous } = fields;
  if (format !== SIGNING_KEYS_FORMAT) {
    throw new ConfigError(`${name}: format: expected ${JSON.stringify(SIGNING_KEYS_FORMAT)}, found ${JSON.stringify(format)}`);
  }
  const extra = Object.keys(fields).find((field) => !(FIELDS as readonly string[]).includes(field));
  if (extra !== undefined) throw new ConfigError(`${name}: ${extra}: unknown field (known: ${FIELDS.join(', ')})`);
  if (active !== undefined && typeof active !== 'string') throw new ConfigError(`${name}: active: expected an armored private key`);
  if (pending !== undefined && typeof pending !== 'string') throw new ConfigError(`${name}: pending: expected an armored private key`);
  if (pending !== undefined && active === undefined) throw new ConfigError(`${name}: pending: a pending key needs an active key beside it`);
  if (pending !== undefined && pendingSince === undefined) throw new ConfigError(`${name}: pendingSince: needed with a pending key`);
  if (pendingSince !== undefined && pending === undefined) throw new ConfigError(`${name}: pendingSince: there is no pending key`);
  for (const [field, value] of [['activeSince', activeSince], ['pendingSince', pendingSince]] as const) {
    if (value !== undefined && (typeof value !== 'string' || Number.isNaN(Date.parse(value)))) {
      throw new ConfigError(`${name}: ${field}: expected an ISO 8601 time, found ${JSON.stringify(value)}`);
    }
  }
  if (previous !== undefined && (!Array.isArray(previous) || previous.some((key) => typeof key !== 'string'))) {
    throw new ConfigError(`${name}: previous: expected an array of armored public keys`);
  }
  return {
    format,
    ...(active !== undefined && { active }),
    ...(activeSince !== undefined && { activeSince: activeSince as string }),
    ...(pending !== undefined && { pending, pendingSince: pendingSince as string }),
    ...(previous !== undefined && { previous: previous as string[] }),
  };
}

export function serializeSigningKeysDocument(document: SigningKeysDocument): string {
  return `${JSON.stringify(document, null, 2)}\n`;
}

/**
 * The stored keys, generating the first key when the store has none (the
 * only write a sync makes to it). With `catalog`, the keys' phases are
 * recorded there for the status API.
 */
export async function openSigningKeys(store: SigningKeyStore, now = new Date(), catalog?: Pick<Catalog, 'getState' | 'setState'>): Promise<SigningKeys> {
  let document = await readDocument(store);
  if (document?.active === undefined) {
    const { armoredPrivate } = await generateSigningKey(SIGNING_KEY_USER_ID, now);
    const created: SigningKeysDocument = { ...(document ?? { format: SIGNING_KEYS_FORMAT }), active: armoredPrivate, activeSince: now.toISOString() };
    // Create-only: when two processes race here, the one that loses reads the winner's key.
    const written = await store.create(serializeSigningKeysDocument(created), document !== undefined);
    document = written ? created : await readDocument(store);
    if (document?.active === undefined) throw new ConfigError(`${store.description}: holds no active key after creating one`);
  }
  const loaded = await loadDocument(store.description, document);
  if (catalog) await recordSigningKeyPhases(catalog, loaded.phases);
  return loaded;
}

/**
 * Makes a new key, pending: the next publication serves its public half in
 * the keyring while the active key keeps signing; `activateSigningKey` makes
 * it sign. On a store with no key yet, the new key is active at once
 * (nothing was signed, so no MAAS holds a keyring to keep working).
 * ConfigError while another key is pending.
 */
export async function rotateSigningKey(store: SigningKeyStore, now = new Date()): Promise<SigningKeyPhase> {
  const document = (await readDocument(store)) ?? { format: SIGNING_KEYS_FORMAT };
  if (document.pending !== undefined) {
    const pending = await loadSigningKey(`${store.description}: pending`, document.pending);
    const fingerprint = fingerprintOf(pending);
    throw new ConfigError(
      `${fingerprint} is already pending (since ${document.pendingSince}): activate it first (skystreams key activate ${fingerprint})`,
    );
  }
  const { armoredPrivate, fingerprint } = await generateSigningKey(SIGNING_KEY_USER_ID, now);
  const since = now.toISOString();
  const next: SigningKeysDocument =
    document.active === undefined
      ? { ...document, active: armoredPrivate, activeSince: since }
      : { ...document, pending: armoredPrivate, pendingSince: since };
  await store.replace(serializeSigningKeysDocument(next));
  return { fingerprint, state: document.active === undefined ? 'active' : 'pending', since };
}

export interface ActivateOptions {
  /** Where the mirror publishes: the key must have been served in its keyring for `minPublishedMs` first. */
  mirror: PublishedMirror;
  minPublishedMs: number;
  /** Skips the `minPublishedMs` check. */
  force?: boolean;
  now?: Date;
}

/**
 * Makes the pending key `fingerprint` sign from the next publication on; the
 * active key becomes previous (still in the keyring until retired).
 * ConfigError, the document unchanged, when `fingerprint` is not the pending
 * key, or (without `force`) when not every channel has served a keyring
 * holding it for `minPublishedMs`. Returns the key that stopped signing.
 */
export async function activateSigningKey(store: SigningKeyStore, fingerprint: string, options: ActivateOptions): Promise<{ previous: string }> {
  const wanted = normalFingerprint(fingerprint);
  const now = options.now ?? new Date();
  const document = await readDocument(store);
  if (document?.active === undefined) throw new ConfigError(`${store.description}: holds no signing keys`);
  const keys = await loadDocument(store.description, document);
  const phase = keys.phases.find((key) => key.fingerprint === wanted);
  if (phase?.state !== 'pending') {
    const pending = keys.phases.find((key) => key.state === 'pending');
    const which = phase ? `is the ${phase.state} signing key` : `is not a key of ${store.description}`;
    throw new ConfigError(
      `${wanted} ${which}: only a pending key can be activated (${pending ? `pending: ${pending.fingerprint}` : 'none is pending: skystreams key rotate makes one'})`,
    );
  }
  if (!options.force) await refuseUntilServed(wanted, options.mirror, options.minPublishedMs, now);
  const retiring = keys.signer.toPublic();
  const { pending: _pending, pendingSince: _pendingSince, ...rest } = document;
  await store.replace(
    serializeSigningKeysDocument({ ...rest, active: document.pending!, activeSince: now.toISOString(), previous: [...(document.previous ?? []), retiring.armor()] }),
  );
  return { previous: fingerprintOf(retiring) };
}

/** Drops a previous key from the keyring the next publication serves. ConfigError for the active key, the pending one or an unknown one. */
export async function retireSigningKey(store: SigningKeyStore, fingerprint: string): Promise<void> {
  const wanted = normalFingerprint(fingerprint);
  const document = await readDocument(store);
  if (document === undefined) throw new ConfigError(`${store.description}: holds no signing keys`);
  const keys = await loadDocument(store.description, document);
  const phase = keys.phases.find((key) => key.fingerprint === wanted);
  if (phase?.state === 'active') {
    throw new ConfigError(`${wanted} is the active signing key: rotate to a new key and activate it first (skystreams key rotate, then key activate)`);
  }
  if (phase?.state === 'pending') {
    throw new ConfigError(`${wanted} is the pending signing key: only a previous key can be retired (activate it with skystreams key activate ${wanted})`);
  }
  const previous = document.previous ?? [];
  const kept: string[] = [];
  for (const armored of previous) {
    const [key] = await readKeys({ armoredKeys: armored });
    if (key === undefined || fingerprintOf(key) !== wanted) kept.push(armored);
  }
  if (kept.length === previous.length) {
    const known = keys.phases.map((key) => `${key.fingerprint} (${key.state})`).join(', ');
    throw new ConfigError(`${wanted} is not a key of ${store.description} (keys: ${known})`);
  }
  await store.replace(serializeSigningKeysDocument({ ...document, previous: kept }));
}

/** The stored keys' fingerprints and phases, the active one first; undefined when none was created yet. */
export async function describeSigningKeys(store: SigningKeyStore): Promise<SigningKeyPhase[] | undefined> {
  const document = await readDocument(store);
  if (document?.active === undefined) return undefined;
  return (await loadDocument(store.description, document)).phases;
}

/**
 * Since when every channel has served a keyring holding `fingerprint`: for
 * each channel, the earliest publication of the unbroken run, back from the
 * one it serves, whose keyring holds the key (a generation already pruned
 * ends the run, so the answer errs late, never early); the latest of those.
 * `lacking` names a channel whose current keyring does not hold the key.
 */
export async function keyringServedSince(
  mirror: PublishedMirror,
  fingerprint: string,
): Promise<{ since?: Date; lacking?: { channel: string; generation: number } }> {
  const wanted = normalFingerprint(fingerprint);
  const holds = new Map<number, Promise<boolean>>();
  const holdsKey = (publication: Publication) => {
    let answer = holds.get(publication.generation);
    if (!answer) holds.set(publication.generation, (answer = keyringHolds(mirror.objects, publication, wanted)));
    return answer;
  };
  let latest: Date | undefined;
  for (const channel of await mirror.catalog.listChannels()) {
    let since: Date | undefined;
    for (const generation of [channel.generation, ...channel.history]) {
      const publication = await mirror.catalog.getPublication(generation);
      if (!publication || !(await holdsKey(publication))) break;
      since = new Date(publication.publishedAt);
    }
    if (since === undefined) return { lacking: { channel: channel.name, generation: channel.generation } };
    if (latest === undefined || since > latest) latest = since;
  }
  return latest === undefined ? {} : { since: latest };
}

/** `rotate` and `retire` print fingerprints in this form; accepts what gpg prints (spaces, lower case). */
export function normalFingerprint(text: string): string {
  return text.replace(/\s+/g, '').toUpperCase();
}

async function refuseUntilServed(fingerprint: string, mirror: PublishedMirror, minPublishedMs: number, now: Date): Promise<void> {
  const { since, lacking } = await keyringServedSince(mirror, fingerprint);
  const wait = `(--min-published ${describeDuration(minPublishedMs)}; --force activates it anyway)`;
  if (lacking) {
    throw new ConfigError(
      `${fingerprint} is not in the keyring channel ${lacking.channel} serves (generation ${lacking.generation}) yet: ` +
        `sync with --resign to publish it (or promote a generation that has it), give every MAAS the new /keyring.gpg, then activate ${wait}`,
    );
  }
  if (since === undefined) {
    throw new ConfigError(`${fingerprint}: nothing is published yet: sync with --resign to publish a keyring holding it, then activate ${wait}`);
  }
  const left = since.getTime() + minPublishedMs - now.getTime();
  if (left > 0) {
    throw new ConfigError(
      `${fingerprint} has been served in /keyring.gpg only since ${since.toISOString()}: ${roughDuration(left)} left before it may sign ${wait}`,
    );
  }
}

async function keyringHolds(objects: ObjectStore, publication: Publication, fingerprint: string): Promise<boolean> {
  if (!publication.files.includes(PUBLISHED_KEYRING)) return false;
  let bytes: Uint8Array;
  try {
    const { body } = await objects.get(keys.metadata(publication, PUBLISHED_KEYRING));
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    bytes = Buffer.concat(chunks);
  } catch (error) {
    // A generation pruned meanwhile serves nothing any more.
    if (error instanceof NotFoundError) return false;
    throw error;
  }
  const keyring = await loadKeyring(`generation ${publication.generation}: ${PUBLISHED_KEYRING}`, bytes);
  return keyring.fingerprints.map(normalFingerprint).includes(fingerprint);
}

/** `2d 3h`, `23h 59m`, `4m`: rounded up to the minute, for a wait; days only from two on. */
function roughDuration(ms: number): string {
  const minutes = Math.max(1, Math.ceil(ms / 60_000));
  const [hours, mins] = [Math.floor(minutes / 60), minutes % 60];
  if (hours >= 48) return [`${Math.floor(hours / 24)}d`, hours % 24 > 0 ? `${hours % 24}h` : ''].filter(Boolean).join(' ');
  return [hours > 0 ? `${hours}h` : '', mins > 0 || hours === 0 ? `${mins}m` : ''].filter(Boolean).join(' ');
}

function fingerprintOf(key: PublicKey | PrivateKey): string {
  return key.getFingerprint().toUpperCase();
}

async function readDocument(store: SigningKeyStore): Promise<SigningKeysDocument | undefined> {
  const text = await store.read();
  return text === undefined ? undefined : parseSigningKeysDocument(store.description, text);
}

async function loadDocument(name: string, document: SigningKeysDocument): Promise<SigningKeys> {
  if (document.active === undefined) throw new ConfigError(`${name}: holds no active key`);
  const signer = await loadSigningKey(`${name}: active`, document.active);
  const published: PublicKey[] = [signer.toPublic()];
  const phases: SigningKeyPhase[] = [
    { fingerprint: fingerprintOf(signer), state: 'active', since: document.activeSince ?? signer.getCreationTime().toISOString() },
  ];
  if (document.pending !== undefined) {
    const pending = await loadSigningKey(`${name}: pending`, document.pending);
    published.push(pending.toPublic());
    phases.push({ fingerprint: fingerprintOf(pending), state: 'pending', since: document.pendingSince! });
  }
  for (const [position, armored] of (document.previous ?? []).entries()) {
    let keys: PublicKey[];
    try {
      keys = (await readKeys({ armoredKeys: armored })).map((key) => key.toPublic());
    } catch (error) {
      throw new ConfigError(`${name}: previous[${position}]: not an OpenPGP public key (${(error as Error).message})`, { cause: error });
    }
    published.push(...keys);
    phases.push(...keys.map((key) => ({ fingerprint: fingerprintOf(key), state: 'previous' as const })));
  }
  return { signer, published, phases };
}
