/** OpenPGP checks of clearsigned simplestreams files (openpgp v6). */

export interface Keyring {
  /** Fingerprints, for messages. */
  fingerprints: string[];
}

/** Reads a binary (`gpg --export`) or ASCII-armored keyring holding one or many public keys. ConfigError naming `name` when unreadable or empty. */
export async function loadKeyring(name: string, bytes: Uint8Array): Promise<Keyring> {
  throw new Error(`loadKeyring(${name}, ${bytes.length}) not implemented`);
}

export function isClearsigned(text: string): boolean {
  throw new Error(`isClearsigned(${text.length}) not implemented`);
}

/**
 * Verifies a clearsigned file against the keyring and returns the signed
 * body. SignatureError naming `file` when it is not clearsigned, the
 * signature is bad, or no key in the keyring made it.
 */
export async function verifyClearsigned(file: string, text: string, keyring: Keyring): Promise<string> {
  throw new Error(`verifyClearsigned(${file}, ${text.length}, ${keyring.fingerprints.length}) not implemented`);
}
