import { createCleartextMessage, generateKey, readKey, readPrivateKey, revokeKey, sign } from 'openpgp';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, SignatureError } from '../../functions/core/errors.ts';
import { clearsignedBody, isClearsigned, loadKeyring, verifyClearsigned } from '../../functions/core/pgp.ts';
import { clearsign, generateSigningKey, type SigningKey } from '../support/signed-upstream.ts';
import { fixtureText } from '../support/fixtures.ts';

const FILE = 'streams/v1/index.sjson';
const encode = (text: string) => new TextEncoder().encode(text);

let upstreamKey: SigningKey;
let otherKey: SigningKey;
let indexText: string;
let signedIndex: string;

beforeAll(async () => {
  [upstreamKey, otherKey] = await Promise.all([generateSigningKey('upstream'), generateSigningKey('someone else')]);
  indexText = fixtureText('simplestreams_index.json');
  signedIndex = await clearsign(indexText, upstreamKey);
});

const DAY_SECONDS = 24 * 60 * 60;

/** Like generateSigningKey, but made at `created` and expiring `lifetimeSeconds` later. */
async function generateKeyAt(created: Date, lifetimeSeconds: number): Promise<{ armoredPrivateKey: string; armoredPublicKey: string }> {
  const { privateKey, publicKey } = await generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: 'short-lived upstream', email: 'expiring@skystreams.invalid' }],
    date: created,
    keyExpirationTime: lifetimeSeconds,
    format: 'armored',
  });
  return { armoredPrivateKey: privateKey, armoredPublicKey: publicKey };
}

/** Clearsigns `text` with a signature dated `date`. */
async function clearsignAt(text: string, armoredPrivateKey: string, date: Date): Promise<string> {
  const signingKeys = await readPrivateKey({ armoredKey: armoredPrivateKey });
  return sign({ message: await createCleartextMessage({ text }), signingKeys, date });
}

/** Awaits `promise`, expecting it to reject with an error of `type`. */
async function rejection<E extends Error>(type: new (...args: never[]) => E, promise: Promise<unknown>): Promise<E> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(type);
  return error as E;
}

describe('Function: loadKeyring', () => {
  it('reads a binary keyring (gpg --export)', async () => {
    // Act
    const keyring = await loadKeyring('upstream.gpg', upstreamKey.publicKeyring);

    // Assess
    expect(keyring.fingerprints).toEqual([upstreamKey.fingerprint]);
    expect(keyring.keys).toHaveLength(1);
    expect(keyring.keys[0]?.isPrivate()).toBe(false);
  });

  it('reads an ASCII-armored keyring', async () => {
    // Act
    const keyring = await loadKeyring('upstream.asc', encode(upstreamKey.armoredPublicKey));

    // Assess
    expect(keyring.fingerprints).toEqual([upstreamKey.fingerprint]);
  });

  it('reads several keys from one binary keyring', async () => {
    // Prepare: `gpg --export a b` is the concatenation of both key blocks.
    const both = new Uint8Array([...upstreamKey.publicKeyring, ...otherKey.publicKeyring]);

    // Act
    const keyring = await loadKeyring('both.gpg', both);

    // Assess
    expect(keyring.fingerprints).toEqual([upstreamKey.fingerprint, otherKey.fingerprint]);
  });

  it('keeps only the public half of a private key', async () => {
    // Act
    const keyring = await loadKeyring('secret.asc', encode(upstreamKey.armoredPrivateKey));

    // Assess
    expect(keyring.fingerprints).toEqual([upstreamKey.fingerprint]);
    expect(keyring.keys[0]?.isPrivate()).toBe(false);
  });

  it.each([
    ['empty', new Uint8Array(0)],
    ['garbage', encode('this is not a key')],
    ['a broken armored block', encode('-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n')],
  ])('rejects %s input with a ConfigError naming the keyring', async (_case, bytes) => {
    // Act
    const error = await rejection(ConfigError, loadKeyring('maas-keyring.gpg', bytes));

    // Assess
    expect(error.message).toContain('maas-keyring.gpg');
  });
});

describe('Function: isClearsigned', () => {
  it('recognises clearsigned text and plain JSON', () => {
    // Assess
    expect(isClearsigned(signedIndex)).toBe(true);
    expect(isClearsigned(`\n${signedIndex}`)).toBe(true);
    expect(isClearsigned(indexText)).toBe(false);
  });
});

describe('Function: verifyClearsigned', () => {
  it('returns the signed body of a good signature', async () => {
    // Prepare
    const keyring = await loadKeyring('upstream.gpg', upstreamKey.publicKeyring);

    // Act
    const body = await verifyClearsigned(FILE, signedIndex, keyring);

    // Assess
    expect(JSON.parse(body)).toEqual(JSON.parse(indexText));
  });

  it('accepts a signature by any key of a two-key keyring', async () => {
    // Prepare
    const keyring = await loadKeyring(
      'both.gpg',
      new Uint8Array([...otherKey.publicKeyring, ...upstreamKey.publicKeyring]),
    );

    // Act
    const body = await verifyClearsigned(FILE, signedIndex, keyring);

    // Assess
    expect(JSON.parse(body).format).toBe('index:1.0');
  });

  it('rejects a tampered body', async () => {
    // Prepare
    const keyring = await loadKeyring('upstream.gpg', upstreamKey.publicKeyring);
    const tampered = signedIndex.replace('"updated": "Thu, 24 Jul 2025 08:01:49 +0000"', '"updated": "Fri, 25 Jul 2025 08:01:49 +0000"');
    expect(tampered).not.toBe(signedIndex);

    // Act
    const error = await rejection(SignatureError, verifyClearsigned(FILE, tampered, keyring));

    // Assess
    expect(error.file).toBe(FILE);
    expect(error.message).toContain('bad signature');
  });

  it('rejects a signature by a key that is not in the keyring, naming it', async () => {
    // Prepare
    const keyring = await loadKeyring('other.gpg', otherKey.publicKeyring);

    // Act
    const error = await rejection(SignatureError, verifyClearsigned(FILE, signedIndex, keyring));

    // Assess
    expect(error.file).toBe(FILE);
    expect(error.message).toContain('not in the keyring');
    expect(error.message).toContain(otherKey.fingerprint);
    // A v4 key ID is the low 64 bits of the fingerprint.
    expect(error.message).toContain(`signed by key ${upstreamKey.fingerprint.slice(-16)}`);
  });

  it('rejects unsigned text', async () => {
    // Prepare
    const keyring = await loadKeyring('upstream.gpg', upstreamKey.publicKeyring);

    // Act
    const error = await rejection(SignatureError, verifyClearsigned(FILE, indexText, keyring));

    // Assess
    expect(error.file).toBe(FILE);
    expect(error.message).toContain('not an OpenPGP clearsigned message');
  });

  it('rejects a clearsigned header with no signature block', async () => {
    // Prepare
    const keyring = await loadKeyring('upstream.gpg', upstreamKey.publicKeyring);
    const truncated = signedIndex.slice(0, signedIndex.indexOf('-----BEGIN PGP SIGNATURE-----'));

    // Act
    const error = await rejection(SignatureError, verifyClearsigned(FILE, truncated, keyring));

    // Assess
    expect(error.file).toBe(FILE);
    expect(error.message).toContain('malformed');
  });
});

describe('Function: verifyClearsigned, keys that expired or were revoked', () => {
  it('refuses a signature made while the key was valid once the key has expired', async () => {
    // Prepare: a key made ten days ago that lived one day; the signature dates from its first hour.
    const created = new Date(Date.now() - 10 * DAY_SECONDS * 1000);
    const expiring = await generateKeyAt(created, DAY_SECONDS);
    const signed = await clearsignAt(indexText, expiring.armoredPrivateKey, new Date(created.getTime() + 3_600_000));
    const keyring = await loadKeyring('expired.asc', encode(expiring.armoredPublicKey));

    // Act
    const error = await rejection(SignatureError, verifyClearsigned(FILE, signed, keyring));

    // Assess
    expect(error.file).toBe(FILE);
    expect(error.message).toContain('expired');
    expect(error.message).toContain(keyring.fingerprints[0]);
  });

  it('accepts the same signature judged at a time the key was valid, so only the expiry refuses it', async () => {
    // Prepare
    const created = new Date(Date.now() - 10 * DAY_SECONDS * 1000);
    const expiring = await generateKeyAt(created, DAY_SECONDS);
    const signed = await clearsignAt(indexText, expiring.armoredPrivateKey, new Date(created.getTime() + 3_600_000));
    const keyring = await loadKeyring('expired.asc', encode(expiring.armoredPublicKey));

    // Act
    const body = await verifyClearsigned(FILE, signed, keyring, new Date(created.getTime() + 7_200_000));

    // Assess
    expect(JSON.parse(body)).toEqual(JSON.parse(indexText));
  });

  it('accepts a signature by a key that expires later', async () => {
    // Prepare
    const created = new Date(Date.now() - DAY_SECONDS * 1000);
    const living = await generateKeyAt(created, 365 * DAY_SECONDS);
    const signed = await clearsignAt(indexText, living.armoredPrivateKey, new Date());
    const keyring = await loadKeyring('living.asc', encode(living.armoredPublicKey));

    // Act
    const body = await verifyClearsigned(FILE, signed, keyring);

    // Assess
    expect(JSON.parse(body).format).toBe('index:1.0');
  });

  it('refuses a signature by a revoked key, though made before the revocation', async () => {
    // Prepare
    const keyring = await loadKeyring('upstream.gpg', upstreamKey.publicKeyring);
    const { publicKey: revoked } = await revokeKey({
      key: await readPrivateKey({ armoredKey: upstreamKey.armoredPrivateKey }),
      format: 'armored',
    });
    const revokedKeyring = await loadKeyring('revoked.asc', encode(revoked));
    await expect(verifyClearsigned(FILE, signedIndex, keyring)).resolves.toContain('index:1.0');

    // Act
    const error = await rejection(SignatureError, verifyClearsigned(FILE, signedIndex, revokedKeyring));

    // Assess
    expect(error.file).toBe(FILE);
    expect(error.message).toContain('revoked');
  });

  it('refuses a signature by an expired key even beside a valid key of the keyring', async () => {
    // Prepare
    const created = new Date(Date.now() - 10 * DAY_SECONDS * 1000);
    const expiring = await generateKeyAt(created, DAY_SECONDS);
    const signed = await clearsignAt(indexText, expiring.armoredPrivateKey, new Date(created.getTime() + 3_600_000));
    const expiringBinary = (await readKey({ armoredKey: expiring.armoredPublicKey })).write();
    const keyring = await loadKeyring('both.gpg', new Uint8Array([...expiringBinary, ...upstreamKey.publicKeyring]));
    expect(keyring.fingerprints).toHaveLength(2);

    // Act
    const error = await rejection(SignatureError, verifyClearsigned(FILE, signed, keyring));

    // Assess
    expect(error.message).toContain('expired');
  });
});

describe('Function: clearsignedBody', () => {
  it('returns what verifyClearsigned returns, without a keyring', async () => {
    // Prepare
    const keyring = await loadKeyring('upstream.gpg', upstreamKey.publicKeyring);

    // Act
    const body = await clearsignedBody(FILE, signedIndex);

    // Assess
    expect(body).toBe(await verifyClearsigned(FILE, signedIndex, keyring));
  });

  it('refuses text that is not clearsigned, naming the file', async () => {
    // Act
    const error = await rejection(SignatureError, clearsignedBody(FILE, indexText));

    // Assess
    expect(error.file).toBe(FILE);
  });
});
