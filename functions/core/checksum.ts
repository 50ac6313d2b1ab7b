/** Size and digest checks done while bytes stream through. */
import { createHash, type Hash } from 'node:crypto';
import { IntegrityError } from './errors.ts';
import type { ByteStream, Digests } from './ports.ts';

export type DigestAlgorithm = keyof Digests;

export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = ['sha256', 'sha512', 'md5'];

export interface ExpectedContent extends Digests {
  /** For messages. */
  path: string;
  size: number;
}

export interface VerifiedContent {
  size: number;
  sha256: string;
  /** Every declared digest (each checked) plus sha256, always computed. */
  digests: Digests;
}

/** The digests an item declares, hex lower-cased; empty strings count as undeclared. */
export function declaredDigests(item: Digests): Digests {
  const digests: Digests = {};
  for (const algorithm of DIGEST_ALGORITHMS) {
    const hex = item[algorithm];
    if (typeof hex === 'string' && hex !== '') digests[algorithm] = hex.toLowerCase();
  }
  return digests;
}

/**
 * Passes `source` through unchanged while hashing it. Throws IntegrityError
 * (naming the path) as soon as more than `size` bytes arrive, and after the
 * last chunk — before signalling the end — when the size is short or any
 * declared digest differs (MAAS checks sha256, so a right sha512 does not
 * excuse a wrong sha256); so a store `put` fed this stream never makes bad
 * bytes visible. `result()` is valid once the stream has ended cleanly.
 */
export function verifyingStream(
  source: ByteStream,
  expected: ExpectedContent,
): { stream: ByteStream; result: () => VerifiedContent } {
  let verified: VerifiedContent | undefined;
  const declared = declaredDigests(expected);

  async function* passThrough(): AsyncGenerator<Uint8Array> {
    // sha256 is always computed (MAAS checks it), declared or not.
    const algorithms = DIGEST_ALGORITHMS.filter((algorithm) => algorithm === 'sha256' || declared[algorithm]);
    const hashes: [DigestAlgorithm, Hash][] = algorithms.map((algorithm) => [algorithm, createHash(algorithm)]);
    let received = 0;
    for await (const chunk of source) {
      received += chunk.byteLength;
      if (received > expected.size) {
        throw new IntegrityError(expected.path, `received more than the ${expected.size} bytes the metadata declares`);
      }
      for (const [, hash] of hashes) hash.update(chunk);
      yield chunk;
    }
    if (received < expected.size) {
      throw new IntegrityError(expected.path, `received ${received} bytes, the metadata declares ${expected.size}`);
    }
    const digests: Digests = {};
    for (const [algorithm, hash] of hashes) {
      const hex = hash.digest('hex');
      const want = declared[algorithm];
      if (want !== undefined && hex !== want) {
        throw new IntegrityError(expected.path, `${algorithm} is ${hex}, the metadata declares ${want}`);
      }
      digests[algorithm] = hex;
    }
    verified = { size: received, sha256: digests.sha256 as string, digests };
  }

  return {
    stream: passThrough(),
    result: () => {
      if (!verified) throw new Error(`verifyingStream(${expected.path}): result() before the stream ended cleanly`);
      return verified;
    },
  };
}

/** Reads `source` to its end through the checks: its verified content, or IntegrityError. */
export async function verifyAll(source: ByteStream, expected: ExpectedContent): Promise<VerifiedContent> {
  const verifier = verifyingStream(source, expected);
  for await (const _chunk of verifier.stream) {
    // The checks run on the way through.
  }
  return verifier.result();
}

/** Whether `digests` agrees with every digest `declared` names (undeclared ones are not compared). */
export function satisfiesDigests(digests: Digests, declared: Digests): boolean {
  return DIGEST_ALGORITHMS.every((algorithm) => declared[algorithm] === undefined || digests[algorithm] === declared[algorithm]);
}

/** The sha256 of `bytes`, as hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
