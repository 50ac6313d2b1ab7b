/** Size and digest checks done while bytes stream through. */
import { createHash, type Hash } from 'node:crypto';
import { IntegrityError } from './errors.ts';
import type { ByteStream } from './ports.ts';

export type DigestAlgorithm = 'sha512' | 'sha256' | 'md5';

export interface ExpectedContent {
  /** For messages. */
  path: string;
  size: number;
  /** The strongest digest the item declares. */
  algorithm: DigestAlgorithm;
  hex: string;
}

export interface VerifiedContent {
  size: number;
  sha256: string;
  /** `algorithm:hex` of the digest that was checked. */
  digest: string;
}

const STRONGEST_FIRST: readonly DigestAlgorithm[] = ['sha512', 'sha256', 'md5'];

/** sha512 > sha256 > md5; undefined when the item declares none. Hex compared lower-case. */
export function strongestDigest(item: { sha512?: string; sha256?: string; md5?: string }):
  | { algorithm: DigestAlgorithm; hex: string }
  | undefined {
  for (const algorithm of STRONGEST_FIRST) {
    const hex = item[algorithm];
    if (typeof hex === 'string' && hex !== '') return { algorithm, hex: hex.toLowerCase() };
  }
  return undefined;
}

/**
 * Passes `source` through unchanged while hashing it. Throws IntegrityError
 * (naming the path) as soon as more than `size` bytes arrive, and after the
 * last chunk — before signalling the end — when the size is short or the
 * digest differs; so a store `put` fed this stream never makes bad bytes
 * visible. `result()` is valid once the stream has ended cleanly.
 */
export function verifyingStream(
  source: ByteStream,
  expected: ExpectedContent,
): { stream: ByteStream; result: () => VerifiedContent } {
  let verified: VerifiedContent | undefined;

  async function* passThrough(): AsyncGenerator<Uint8Array> {
    // sha256 is always recorded (MAAS checks it); the declared digest is what we verify.
    const sha256 = createHash('sha256');
    const declared: Hash = expected.algorithm === 'sha256' ? sha256 : createHash(expected.algorithm);
    let received = 0;
    for await (const chunk of source) {
      received += chunk.byteLength;
      if (received > expected.size) {
        throw new IntegrityError(expected.path, `received more than the ${expected.size} bytes the metadata declares`);
      }
      sha256.update(chunk);
      if (declared !== sha256) declared.update(chunk);
      yield chunk;
    }
    if (received < expected.size) {
      throw new IntegrityError(expected.path, `received ${received} bytes, the metadata declares ${expected.size}`);
    }
    const sha256Hex = sha256.digest('hex');
    const declaredHex = declared === sha256 ? sha256Hex : declared.digest('hex');
    if (declaredHex !== expected.hex.toLowerCase()) {
      throw new IntegrityError(
        expected.path,
        `${expected.algorithm} is ${declaredHex}, the metadata declares ${expected.hex.toLowerCase()}`,
      );
    }
    verified = { size: received, sha256: sha256Hex, digest: `${expected.algorithm}:${declaredHex}` };
  }

  return {
    stream: passThrough(),
    result: () => {
      if (!verified) throw new Error(`verifyingStream(${expected.path}): result() before the stream ended cleanly`);
      return verified;
    },
  };
}
