/** Size and digest checks done while bytes stream through. */
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

/** sha512 > sha256 > md5; undefined when the item declares none. Hex compared lower-case. */
export function strongestDigest(item: { sha512?: string; sha256?: string; md5?: string }):
  | { algorithm: DigestAlgorithm; hex: string }
  | undefined {
  throw new Error(`strongestDigest(${Object.keys(item).length}) not implemented`);
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
  throw new Error(`verifyingStream(${String(source)}, ${expected.path}) not implemented`);
}
