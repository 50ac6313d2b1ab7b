import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { declaredDigests, satisfiesDigests, verifyingStream, type ExpectedContent } from '../../functions/core/checksum.ts';
import { IntegrityError } from '../../functions/core/errors.ts';
import type { ByteStream } from '../../functions/core/ports.ts';

const PATH = 'noble/amd64/20250709/boot-kernel';
const CONTENT = new Uint8Array(Array.from({ length: 10_000 }, (_, n) => (n * 31) % 251));
const hexOf = (algorithm: string, bytes: Uint8Array) => createHash(algorithm).update(bytes).digest('hex');

/** `bytes` in chunks of `chunkSize`, recording how many chunks the consumer pulled. */
function chunked(bytes: Uint8Array, chunkSize: number): { source: ByteStream; pulled: () => number } {
  let pulled = 0;
  async function* generate() {
    for (let offset = 0; offset < bytes.length; offset += chunkSize) {
      pulled += 1;
      yield bytes.subarray(offset, offset + chunkSize);
    }
  }
  return { source: generate(), pulled: () => pulled };
}

/** Drains `stream`, returning what came out before it ended or threw. */
async function drain(stream: ByteStream): Promise<{ bytes: number; chunks: number; error?: unknown }> {
  let bytes = 0;
  let chunks = 0;
  try {
    for await (const chunk of stream) {
      bytes += chunk.byteLength;
      chunks += 1;
    }
    return { bytes, chunks };
  } catch (error) {
    return { bytes, chunks, error };
  }
}

const expectedSha256 = (overrides: Partial<ExpectedContent> = {}): ExpectedContent => ({
  path: PATH,
  size: CONTENT.length,
  sha256: hexOf('sha256', CONTENT),
  ...overrides,
});

describe('Function: declaredDigests', () => {
  it('keeps every declared digest, lower-cased, and drops empty ones', () => {
    // Assess
    expect(declaredDigests({ sha512: 'A'.repeat(128), sha256: 'b'.repeat(64), md5: '' })).toEqual({
      sha512: 'a'.repeat(128),
      sha256: 'b'.repeat(64),
    });
    expect(declaredDigests({})).toEqual({});
  });
});

describe('Function: satisfiesDigests', () => {
  it('needs every declared digest to match, and ignores what is not declared', () => {
    // Prepare
    const stored = { sha256: 'b'.repeat(64), sha512: 'a'.repeat(128) };

    // Assess
    expect(satisfiesDigests(stored, { sha256: 'b'.repeat(64) })).toBe(true);
    expect(satisfiesDigests(stored, { sha256: 'b'.repeat(64), sha512: 'a'.repeat(128) })).toBe(true);
    expect(satisfiesDigests(stored, { sha256: 'b'.repeat(64), sha512: 'f'.repeat(128) })).toBe(false);
    expect(satisfiesDigests(stored, { md5: 'c'.repeat(32) })).toBe(false);
  });
});

describe('Function: verifyingStream', () => {
  it('passes exact content through unchanged and reports sha256 and the checked digest', async () => {
    // Prepare
    const { source } = chunked(CONTENT, 4096);
    const { stream, result } = verifyingStream(source, expectedSha256());

    // Act
    const chunks: Uint8Array[] = [];
    for await (const chunk of stream) chunks.push(chunk);

    // Assess
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(CONTENT));
    expect(result()).toEqual({
      size: CONTENT.length,
      sha256: hexOf('sha256', CONTENT),
      digests: { sha256: hexOf('sha256', CONTENT) },
    });
  });

  it('checks every declared digest (upper-case hex too) and records each', async () => {
    // Prepare
    const { stream, result } = verifyingStream(Readable.from([Buffer.from(CONTENT)]), {
      path: PATH,
      size: CONTENT.length,
      sha512: hexOf('sha512', CONTENT).toUpperCase(),
      sha256: hexOf('sha256', CONTENT),
      md5: hexOf('md5', CONTENT),
    });

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome.error).toBeUndefined();
    expect(result()).toEqual({
      size: CONTENT.length,
      sha256: hexOf('sha256', CONTENT),
      digests: { sha256: hexOf('sha256', CONTENT), sha512: hexOf('sha512', CONTENT), md5: hexOf('md5', CONTENT) },
    });
  });

  it('rejects content whose sha512 matches when the declared sha256 differs: MAAS checks sha256', async () => {
    // Prepare
    const { stream, result } = verifyingStream(chunked(CONTENT, 4096).source, {
      path: PATH,
      size: CONTENT.length,
      sha512: hexOf('sha512', CONTENT),
      sha256: '0'.repeat(64),
    });

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome.error).toBeInstanceOf(IntegrityError);
    expect((outcome.error as Error).message).toContain(`sha256 is ${hexOf('sha256', CONTENT)}, the metadata declares ${'0'.repeat(64)}`);
    expect(result).toThrow('result() before the stream ended cleanly');
  });

  it('verifies an md5-only item', async () => {
    // Prepare
    const { source } = chunked(CONTENT, 999);
    const { stream, result } = verifyingStream(source, { path: PATH, size: CONTENT.length, md5: hexOf('md5', CONTENT) });

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome.error).toBeUndefined();
    expect(result().digests).toEqual({ md5: hexOf('md5', CONTENT), sha256: hexOf('sha256', CONTENT) });
    expect(result().sha256).toBe(hexOf('sha256', CONTENT));
  });

  it('verifies empty content', async () => {
    // Prepare
    const empty = new Uint8Array(0);
    const { stream, result } = verifyingStream(chunked(empty, 10).source, {
      path: PATH,
      size: 0,
      sha256: hexOf('sha256', empty),
    });

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome).toEqual({ bytes: 0, chunks: 0 });
    expect(result().size).toBe(0);
  });

  it('throws after the last chunk, before the end, when content is short', async () => {
    // Prepare
    const short = CONTENT.subarray(0, CONTENT.length - 1);
    const { stream, result } = verifyingStream(chunked(short, 4096).source, expectedSha256());

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome.bytes).toBe(short.length);
    expect(outcome.error).toBeInstanceOf(IntegrityError);
    expect((outcome.error as IntegrityError).path).toBe(PATH);
    expect((outcome.error as Error).message).toContain(`received ${short.length} bytes`);
    expect(result).toThrow('result() before the stream ended cleanly');
  });

  it('throws as soon as too many bytes arrive, without reading on', async () => {
    // Prepare: 3 chunks of 4096 bytes against a declared 5000.
    const long = new Uint8Array(3 * 4096);
    const { source, pulled } = chunked(long, 4096);
    const { stream } = verifyingStream(source, expectedSha256({ size: 5000 }));

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome.error).toBeInstanceOf(IntegrityError);
    expect((outcome.error as Error).message).toContain('more than the 5000 bytes');
    expect(outcome.bytes).toBe(4096);
    expect(pulled()).toBe(2);
  });

  it('throws after the last chunk, before the end, when the digest differs', async () => {
    // Prepare: same size, one byte flipped.
    const tampered = CONTENT.slice();
    tampered[5000] = (tampered[5000]! + 1) % 256;
    const { stream, result } = verifyingStream(chunked(tampered, 4096).source, expectedSha256());

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome.bytes).toBe(CONTENT.length);
    expect(outcome.error).toBeInstanceOf(IntegrityError);
    expect((outcome.error as Error).message).toContain(`sha256 is ${hexOf('sha256', tampered)}`);
    expect((outcome.error as Error).message).toContain(PATH);
    expect(result).toThrow('result() before the stream ended cleanly');
  });

  it('rejects content whose sha256 matches when sha512 is declared and differs', async () => {
    // Prepare
    const { stream } = verifyingStream(chunked(CONTENT, 4096).source, {
      path: PATH,
      size: CONTENT.length,
      sha256: hexOf('sha256', CONTENT),
      sha512: 'f'.repeat(128),
    });

    // Act
    const outcome = await drain(stream);

    // Assess
    expect(outcome.error).toBeInstanceOf(IntegrityError);
    expect((outcome.error as Error).message).toContain('sha512 is');
  });
});
