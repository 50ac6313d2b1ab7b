/** OpenPGP checks of clearsigned simplestreams files (openpgp v6). */
import { readCleartextMessage, readKeys, verify, type Key, type PublicKey } from 'openpgp';
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
 */
export async function verifyClearsigned(file: string, text: string, keyring: Keyring): Promise<string> {
  if (!isClearsigned(text)) throw new SignatureError(file, 'not an OpenPGP clearsigned message');
  let message: Awaited<ReturnType<typeof readCleartextMessage>>;
  try {
    message = await readCleartextMessage({ cleartextMessage: text });
  } catch (error) {
    throw new SignatureError(file, `malformed clearsigned message (${(error as Error).message})`, { cause: error });
  }

  // Name the unknown signer precisely rather than relay openpgp's generic failure.
  const signerIds = message.getSigningKeyIDs().map((id) => id.toHex().toUpperCase());
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

  try {
    const { data } = await verify({ message, verificationKeys: keyring.keys, expectSigned: true });
    return data;
  } catch (error) {
    throw new SignatureError(file, `bad signature (${(error as Error).message})`, { cause: error });
  }
}
