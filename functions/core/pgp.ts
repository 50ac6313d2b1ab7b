/** OpenPGP checks of clearsigned simplestreams files (openpgp v6). */
import {
  createCleartextMessage,
  createMessage,
  generateKey,
  readCleartextMessage,
  readPrivateKey,
  sign,
  readKeys,
  readSignature,
  verify,
  type CleartextMessage,
  type Key,
  type KeyID,
  type PrivateKey,
  type PublicKey,
  type Signature,
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

/** Armor headers (`Hash: SHA512`) take a line or two; a file that has not ended them by then has none. */
const MAX_ARMOR_HEADERS = 64 * 1024;

/**
 * verifyClearsigned over raw bytes, with the same outcome, and memory that
 * does not grow with the number of lines: a forged file of many short lines
 * would otherwise cost openpgp a string per line (gigabytes for 32 MiB).
 *
 * The signature block at the end is read first: a file signed by no usable
 * key of the keyring is refused before its body, which may be hundreds of
 * megabytes, is decoded. openpgp then reads the file with its body left
 * out (the armor headers and the signature, checked as it checks them); the
 * body is unescaped here, in bytes, as openpgp would, decoded once, and
 * verified as a detached signature over those bytes.
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
  const signatureText = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(start));
  let signature: Signature;
  try {
    signature = await readSignature({ armoredSignature: signatureText });
  } catch (error) {
    throw new SignatureError(file, `malformed clearsigned message (${(error as Error).message})`, { cause: error });
  }
  const usable = await usableSigners(file, signature.getSigningKeyIDs(), keyring, now);

  if (start === 0 || bytes[start - 1] !== LF) {
    throw new SignatureError(file, 'malformed clearsigned message (its signature block does not start a line)');
  }
  const bodyStart = signedTextStart(file, bytes, start);
  const headers = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, bodyStart));
  // Checks the armor headers (only Hash, naming the signature's algorithm) as for the whole file.
  const armor = await readClearsigned(file, headers + signatureText);
  // Nothing between the headers and the signature: openpgp ended the headers where this parser did.
  if (armor.getText() !== '') throw new SignatureError(file, 'malformed clearsigned message (armor headers openpgp reads otherwise)');

  // The line break before the signature block belongs to the armor, not to the text.
  const body = unescapeSignedText(file, bytes.subarray(bodyStart, Math.max(bodyStart, start - 1)));
  let text: string;
  let signed: Uint8Array;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body);
    signed = body;
  } catch {
    // Not UTF-8: what is verified is what is returned, the text with its replacement characters.
    text = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(body);
    signed = new TextEncoder().encode(text);
  }
  await verifyDetachedText(file, signature, withCrlf(signed), usable, now);
  return text;
}

/** `signature` over `canonical` (the text with CRLF line ends), judged as openpgp's verify with expectSigned judges it. */
async function verifyDetachedText(
  file: string,
  signature: Signature,
  canonical: Uint8Array,
  usable: PublicKey[],
  now: Date,
): Promise<void> {
  try {
    const literal = await createMessage({ binary: canonical, format: 'utf8' });
    // format 'binary' and no expectSigned: either would have openpgp copy the text once more.
    const { signatures } = await verify({ message: literal, signature, verificationKeys: usable, date: now, format: 'binary' });
    if (signatures.length === 0) throw new Error('Message is not signed');
    let failure: unknown;
    for (const verification of signatures) {
      try {
        await verification.verified;
        return;
      } catch (error) {
        failure = error;
      }
    }
    throw failure;
  } catch (error) {
    const reason = (error as Error).message;
    const message = reason.startsWith(VERIFY_FAILED) ? reason : `${VERIFY_FAILED}: ${reason}`;
    throw new SignatureError(file, `bad signature (${message})`, { cause: error });
  }
}

const VERIFY_FAILED = 'Error verifying signed message';

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const DASH = 0x2d;
/** openpgp's own patterns: an armor line (`-----BEGIN PGP SIGNATURE-----`), and the blank line that ends the armor headers. */
const ARMOR_LINE = /^-----[^-]+-----$/;
const BLANK_LINE = /^[ \f\r\t\u00a0\u2000-\u200a\u202f\u205f\u3000]*$/;

/**
 * Where the signed text starts: after the blank line that ends the armor
 * headers, found line by line as openpgp finds it (lines before the first
 * armor line are skipped, CRs and trailing spaces do not count).
 */
function signedTextStart(file: string, bytes: Uint8Array, signatureStart: number): number {
  const end = Math.min(signatureStart, MAX_ARMOR_HEADERS);
  let armored = false;
  for (let lineStart = 0; lineStart < end; ) {
    const newline = bytes.indexOf(LF, lineStart);
    const lineEnd = newline < 0 ? bytes.byteLength : newline;
    const line = new TextDecoder('utf-8', { fatal: false, ignoreBOM: lineStart > 0 })
      .decode(bytes.subarray(lineStart, lineEnd))
      .replaceAll('\r', '')
      .replace(/[ \t]+$/, '');
    if (!armored) {
      armored = ARMOR_LINE.test(line);
    } else if (ARMOR_LINE.test(line)) {
      throw new SignatureError(file, 'malformed clearsigned message (Mandatory blank line missing between armor headers and armor data)');
    } else if (BLANK_LINE.test(line)) {
      return lineEnd + 1;
    }
    lineStart = lineEnd + 1;
  }
  throw new SignatureError(file, 'malformed clearsigned message (no blank line after its armor headers)');
}

/**
 * The signed text of a clearsigned body, as openpgp reads it but in bytes:
 * per line, CRs and trailing spaces and tabs dropped and a leading `- `
 * (dash escape) removed; lines joined by LF. The body itself when none of
 * that changes anything, as in files gpg signs. An armor line inside it is
 * refused: openpgp would end the text there, so the text it verified would
 * not be the whole body.
 */
function unescapeSignedText(file: string, body: Uint8Array): Uint8Array {
  let out: Uint8Array | undefined;
  let written = 0;
  let nextCr = body.indexOf(CR);
  for (let lineStart = 0; ; ) {
    const newline = body.indexOf(LF, lineStart);
    const lineEnd = newline < 0 ? body.byteLength : newline;
    if (nextCr >= 0 && nextCr < lineStart) nextCr = body.indexOf(CR, lineStart);
    const hasCr = nextCr >= 0 && nextCr < lineEnd;
    let line = hasCr ? body.subarray(lineStart, lineEnd).filter((byte) => byte !== CR) : body;
    let from = hasCr ? 0 : lineStart;
    let to = hasCr ? line.byteLength : lineEnd;
    while (to > from && (line[to - 1] === SPACE || line[to - 1] === TAB)) to--;
    if (isArmorLine(line, from, to)) {
      throw new SignatureError(file, 'malformed clearsigned message (an armor line inside the signed text)');
    }
    if (to - from >= 2 && line[from] === DASH && line[from + 1] === SPACE) from += 2;
    if (!out && (hasCr || from !== lineStart || to !== lineEnd)) {
      out = new Uint8Array(body.byteLength);
      out.set(body.subarray(0, written));
    }
    if (out) out.set(line.subarray(from, to), written);
    written += to - from;
    if (newline < 0) break;
    if (out) out[written] = LF;
    written += 1;
    lineStart = newline + 1;
  }
  return out ? out.subarray(0, written) : body;
}

/** openpgp's armor line pattern over bytes: five dashes, at least one byte that is no dash, five dashes. */
function isArmorLine(line: Uint8Array, from: number, to: number): boolean {
  const fence = 5;
  if (to - from < 2 * fence + 1) return false;
  for (let i = 0; i < fence; i++) {
    if (line[from + i] !== DASH || line[to - 1 - i] !== DASH) return false;
  }
  const inner = line.subarray(from + fence, to - fence);
  return !inner.includes(DASH);
}

/** `text` with every LF preceded by a CR, as signatures over text are made (the text holds no CR). */
function withCrlf(text: Uint8Array): Uint8Array {
  let lines = 0;
  for (let at = text.indexOf(LF); at >= 0; at = text.indexOf(LF, at + 1)) lines++;
  if (lines === 0) return text;
  const out = new Uint8Array(text.byteLength + lines);
  let written = 0;
  let from = 0;
  for (let at = text.indexOf(LF); at >= 0; at = text.indexOf(LF, at + 1)) {
    out.set(text.subarray(from, at), written);
    written += at - from;
    out[written++] = CR;
    out[written++] = LF;
    from = at + 1;
  }
  out.set(text.subarray(from), written);
  return out;
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

// ---------------------------------------------------------------- signing (the mirror's own key)

/**
 * A new signing key for the mirror: Ed25519 in a v4 key, which gpgv (Debian
 * 12's 2.2 included) and so MAAS and python-simplestreams accept; RSA 4096
 * would take seconds to generate in JavaScript for no gain in what they accept.
 */
export async function generateSigningKey(userId: string, now = new Date()): Promise<{ armoredPrivate: string; fingerprint: string }> {
  const { privateKey } = await generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name: userId }],
    date: now,
    format: 'armored',
  });
  const key = await readPrivateKey({ armoredKey: privateKey });
  return { armoredPrivate: privateKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** Reads an armored private key; ConfigError naming `name` when it is not one, or is locked with a passphrase. */
export async function loadSigningKey(name: string, armored: string): Promise<PrivateKey> {
  let key: PrivateKey;
  try {
    key = await readPrivateKey({ armoredKey: armored });
  } catch (error) {
    throw new ConfigError(`${name}: not an OpenPGP private key (${(error as Error).message})`, { cause: error });
  }
  if (!key.isDecrypted()) throw new ConfigError(`${name}: the private key is protected by a passphrase, which the mirror cannot enter`);
  return key;
}

/**
 * `text` clearsigned with `key`, as gpg --clearsign writes it. Dated `now`,
 * or the key's creation when `now` is earlier (a clock set back, or a key
 * made on a machine whose clock runs ahead): openpgp refuses to sign before
 * a key existed.
 */
export async function clearsign(text: string, key: PrivateKey, now = new Date()): Promise<string> {
  const message = await createCleartextMessage({ text });
  const date = new Date(Math.max(now.getTime(), key.getCreationTime().getTime()));
  return sign({ message, signingKeys: key, date, format: 'armored' });
}
