/** OpenPGP checks of clearsigned simplestreams files (openpgp v6). */
import {
  readCleartextMessage,
  readKeys,
  readSignature,
  verify,
  type CleartextMessage,
  type Key,
  type KeyID,
  type PublicKey,
} from 'openpgp';
import { ConfigError, SignatureError } from './errors.ts';

export interface Keyring {
  /** Fingerprints, for messages. */
  fingerprints: string[];
  /** The public keys themselves (private parts, if any were given, are dropped). */
  keys: PublicKey[];
}

const CLEARSIGN_HEADER = '-----BEGIN PGP SIGNED MESSAGE-----';
const ARMOR_HEADER = /^\s*-----BEGIN PGP /;

/** Reads a binary (`gpg --export`) or ASCII-armored keyring holding one or many public keys. ConfigError naming `name` when unreadable or empty. */
export async function loadKeyring(name: string, bytes: Uint8Array): Promise<Keyring> {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, 64));
  let keys: Key[];
  try {
    keys = ARMOR_HEADER.test(text)
      ? await readKeys({ armoredKeys: new TextDecoder().decode(bytes) })
      : await readKeys({ binaryKeys: bytes });
  } catch (error) {
    throw new ConfigError(`keyring ${name}: not an OpenPGP keyring (${(error as Error).message})`, { cause: error });
  }
  if (keys.length === 0) throw new ConfigError(`keyring ${name}: holds no keys`);
  const publicKeys = keys.map((key) => key.toPublic());
  return { fingerprints: publicKeys.map((key) => key.getFingerprint().toUpperCase()), keys: publicKeys };
}

export function isClearsigned(text: string): boolean {
  return text.trimStart().startsWith(CLEARSIGN_HEADER);
}

/**
 * Verifies a clearsigned file against the keyring and returns the signed
 * body. SignatureError naming `file` when it is not clearsigned, the
 * signature is bad, or no key in the keyring made it.
 *
 * Expired and revoked keys. A revoked signing key is refused whatever the
 * signature's date (openpgp does so itself). An expired one is refused too,
 * although openpgp would accept a signature dated while the key was valid
 * (and gpgv, which python-simplestreams calls, only warns): the signature
 * date is written by whoever holds the private key, so "signed before it
 * expired" cannot be told apart from a backdated signature by a key that
 * leaked after its owner stopped vouching for it. Validity is judged at
 * `now`; when an upstream extends its key, the operator refreshes the keyring.
 */
export async function verifyClearsigned(file: string, text: string, keyring: Keyring, now = new Date()): Promise<string> {
  if (!isClearsigned(text)) throw new SignatureError(file, 'not an OpenPGP clearsigned message');
  const message = await readClearsigned(file, text);

  const usable = await usableSigners(file, message.getSigningKeyIDs(), keyring, now);
  try {
    const { data } = await verify({ message, verificationKeys: usable, expectSigned: true, date: now });
    return data;
  } catch (error) {
    throw new SignatureError(file, `bad signature (${(error as Error).message})`, { cause: error });
  }
}

/** A signature block is a few hundred bytes per signer; anything longer at the end of a file is not one. */
const MAX_SIGNATURE_BLOCK = 64 * 1024;
const SIGNATURE_HEADER = '-----BEGIN PGP SIGNATURE-----';

/**
 * verifyClearsigned over raw bytes. The signature block at the end is read
 * first: a file signed by no usable key of the keyring is refused before its
 * body, which may be hundreds of megabytes, is decoded or parsed.
 */
export async function verifyClearsignedBytes(
  file: string,
  bytes: Uint8Array,
  keyring: Keyring,
  now = new Date(),
): Promise<string> {
  if (!isClearsigned(new TextDecoder().decode(bytes.subarray(0, 256)))) {
    throw new SignatureError(file, 'not an OpenPGP clearsigned message');
  }
  const header = new TextEncoder().encode(SIGNATURE_HEADER);
  const start = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).lastIndexOf(header);
  if (start < 0) throw new SignatureError(file, 'malformed clearsigned message (no signature block)');
  if (bytes.byteLength - start > MAX_SIGNATURE_BLOCK) {
    throw new SignatureError(file, `malformed clearsigned message (signature block over ${MAX_SIGNATURE_BLOCK} bytes)`);
  }
  let signers: KeyID[];
  try {
    const signature = await readSignature({ armoredSignature: new TextDecoder().decode(bytes.subarray(start)) });
    signers = signature.getSigningKeyIDs();
  } catch (error) {
    throw new SignatureError(file, `malformed clearsigned message (${(error as Error).message})`, { cause: error });
  }
  await usableSigners(file, signers, keyring, now);
  return verifyClearsigned(file, new TextDecoder('utf-8', { fatal: false }).decode(bytes), keyring, now);
}

/**
 * The keys of the keyring that made one of the `signers` and are valid at
 * `now`. SignatureError naming the signers when there is none.
 */
async function usableSigners(file: string, signers: KeyID[], keyring: Keyring, now: Date): Promise<PublicKey[]> {
  // Name the unknown signer precisely rather than relay openpgp's generic failure.
  const signerIds = signers.map((id) => id.toHex().toUpperCase());
  if (signerIds.length === 0) throw new SignatureError(file, 'carries no signature');
  const known = new Set(
    keyring.keys.flatMap((key) => key.getKeyIDs().map((id) => id.toHex().toUpperCase())),
  );
  if (!signerIds.some((id) => known.has(id))) {
    throw new SignatureError(
      file,
      `signed by key ${signerIds.join(', ')}, which is not in the keyring (${keyring.fingerprints.join(', ')})`,
    );
  }

  // Only keys usable now may vouch: a signature by an expired key must not pass through another signer's.
  const usable: PublicKey[] = [];
  const unusable: string[] = [];
  for (const key of keyring.keys) {
    for (const signer of signers.filter((id) => key.getKeyIDs().some((own) => own.equals(id)))) {
      try {
        await key.getSigningKey(signer, now);
        usable.push(key);
        break;
      } catch (error) {
        unusable.push(`${key.getFingerprint().toUpperCase()}: ${(error as Error).message}`);
      }
    }
  }
  if (usable.length === 0) {
    throw new SignatureError(file, `signed by a key that is not valid now (${unusable.join('; ')}): expired or revoked`);
  }
  return usable;
}

/**
 * The body of a clearsigned file, its signature not checked: for metadata
 * this mirror verified before it published it, read back from its own store.
 */
export async function clearsignedBody(file: string, text: string): Promise<string> {
  if (!isClearsigned(text)) throw new SignatureError(file, 'not an OpenPGP clearsigned message');
  return (await readClearsigned(file, text)).getText();
}

async function readClearsigned(file: string, text: string): Promise<CleartextMessage> {
  try {
    return await readCleartextMessage({ cleartextMessage: text });
  } catch (error) {
    throw new SignatureError(file, `malformed clearsigned message (${(error as Error).message})`, { cause: error });
  }
}
