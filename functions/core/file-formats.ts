/**
 * What a file is, told from its leading bytes: an uploaded image's files
 * must be what their item names claim before any of them is stored, since
 * MAAS would only find out while deploying a machine. Pure: works on a
 * buffer of a file's first bytes (LEADING_BYTES of them, or the whole file
 * when shorter), so a store can check a huge object with one ranged read.
 */
import { constants, gunzipSync } from 'node:zlib';

/** Bytes of a file's start every check needs: enough compressed data to hold a tar's first header block. */
export const LEADING_BYTES = 64 * 1024;

const TAR_BLOCK = 512;
const USTAR_MAGIC_OFFSET = 257;
const GUNZIP_INPUT_BYTES = 2 * 1024;

type Test = (bytes: Uint8Array) => boolean;

const startsWith =
  (magic: readonly number[] | string, offset = 0): Test =>
  (bytes) => {
    const expected = typeof magic === 'string' ? [...magic].map((char) => char.charCodeAt(0)) : magic;
    return bytes.byteLength >= offset + expected.length && expected.every((byte, index) => bytes[offset + index] === byte);
  };

const isGzip = startsWith([0x1f, 0x8b]);
const isZstd = startsWith([0x28, 0xb5, 0x2f, 0xfd]);
const isXz = startsWith([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const isLz4Legacy = startsWith([0x02, 0x21, 0x4c, 0x18]);
const isBzip2 = startsWith('BZh');
// newc and its checksummed variant; an early-cpio microcode prefix is a newc archive too.
const isCpio: Test = (bytes) => startsWith('070701')(bytes) || startsWith('070702')(bytes);
const isSquashfs = startsWith('hsqs');
const isElf = startsWith([0x7f, 0x45, 0x4c, 0x46]);
const isPe = startsWith('MZ');
const isBzImage = startsWith('HdrS', 0x202);
const isArm64Image = startsWith([0x41, 0x52, 0x4d, 0x64], 0x38);
const isTar: Test = startsWith('ustar', USTAR_MAGIC_OFFSET);
const isGzipTar: Test = (bytes) => isGzip(bytes) && isTar(gunzippedStart(bytes));

/** Each item MAAS takes from a stream: what its file must be, in words, and the test. */
const EXPECTED: Readonly<Record<string, { what: string; test: Test }>> = {
  'root-tgz': { what: 'a gzip-compressed tar', test: isGzipTar },
  squashfs: { what: 'a squashfs image', test: isSquashfs },
  'root-image.gz': { what: 'gzip-compressed data', test: isGzip },
  'boot-kernel': {
    what: 'a kernel (x86 bzImage, EFI PE, ELF, arm64 Image, gzip or zstd)',
    test: (bytes) => isBzImage(bytes) || isPe(bytes) || isElf(bytes) || isArm64Image(bytes) || isGzip(bytes) || isZstd(bytes),
  },
  'boot-initrd': {
    what: 'an initramfs (cpio, or cpio compressed with gzip, zstd, xz or lz4)',
    test: (bytes) => isCpio(bytes) || isGzip(bytes) || isZstd(bytes) || isXz(bytes) || isLz4Legacy(bytes),
  },
  manifest: { what: 'text lines (UTF-8, no NUL)', test: (bytes) => textKind(bytes) !== undefined },
};

/**
 * Why `leading` (a file's first bytes) is not what item `item` must be,
 * as "looks like ASCII text, not a gzip-compressed tar"; undefined when it
 * is, or when `item` is not one this module knows.
 */
export function formatProblem(item: string, leading: Uint8Array): string | undefined {
  if (leading.byteLength === 0) return 'is empty';
  const expected = EXPECTED[item];
  if (!expected || expected.test(leading)) return undefined;
  return `looks like ${describeBytes(leading)}, not ${expected.what}`;
}

/** What a file's first bytes look like, in words ("ASCII text", "an ELF binary", "data"). */
export function describeBytes(leading: Uint8Array): string {
  if (leading.byteLength === 0) return 'an empty file';
  if (isGzip(leading)) return isTar(gunzippedStart(leading)) ? 'a gzip-compressed tar' : 'gzip-compressed data';
  const known: [Test, string][] = [
    [isZstd, 'zstd-compressed data'],
    [isXz, 'xz-compressed data'],
    [isLz4Legacy, 'lz4-compressed data'],
    [isBzip2, 'bzip2-compressed data'],
    [isCpio, 'a cpio archive'],
    [isSquashfs, 'a squashfs image'],
    [isElf, 'an ELF binary'],
    [isBzImage, 'an x86 bzImage kernel'],
    [isPe, 'an EFI PE or DOS executable'],
    [isArm64Image, 'an arm64 Image kernel'],
    [isTar, 'an uncompressed tar'],
    [startsWith('PK\u0003\u0004'), 'a zip archive'],
    [startsWith('QFI\u00fb'), 'a qcow2 disk image'],
  ];
  for (const [test, description] of known) if (test(leading)) return description;
  return textKind(leading) ?? 'data';
}

/** 'ASCII text' or 'UTF-8 text' when the bytes are text lines, else undefined. */
function textKind(bytes: Uint8Array): string | undefined {
  if (bytes.includes(0)) return undefined;
  try {
    // stream: a multi-byte character cut off by the end of the leading bytes is not an error.
    new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
  } catch {
    return undefined;
  }
  return bytes.every((byte) => byte < 0x80) ? 'ASCII text' : 'UTF-8 text';
}

/**
 * Up to the first tar block of a gzip stream's content; fewer bytes (or
 * none) when the leading bytes hold less. Only the first 2 KiB are
 * inflated, far more than a tar's first block takes compressed, which
 * bounds what a hostile stream can inflate to at about 2 MiB (deflate
 * expands at most about 1,032 times).
 */
function gunzippedStart(bytes: Uint8Array): Uint8Array {
  try {
    // A sync flush takes what a truncated stream holds instead of failing for want of its end.
    return gunzipSync(bytes.subarray(0, GUNZIP_INPUT_BYTES), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, TAR_BLOCK);
  } catch {
    return new Uint8Array(0);
  }
}
