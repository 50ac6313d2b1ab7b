import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { describeBytes, formatProblem } from '../../functions/core/file-formats.ts';
import { bzImageKernel, manifestText, newcInitrd, rootImageGz, rootTgz, squashfsImage } from '../support/image-files.ts';

const ascii = (text: string) => new TextEncoder().encode(text);
const bytesAt = (length: number, magic: number[] | string, offset = 0) => {
  const bytes = new Uint8Array(length).fill(0x41);
  bytes.set(typeof magic === 'string' ? ascii(magic) : magic, offset);
  return bytes;
};

describe('Function: formatProblem', () => {
  it.each<[string, string, Uint8Array]>([
    ['root-tgz', 'a gzip-compressed tar', rootTgz()],
    ['root-tgz', 'a gzip-compressed tar cut to its first 256 bytes', rootTgz().subarray(0, 256)],
    ['squashfs', 'a squashfs superblock', squashfsImage()],
    ['root-image.gz', 'gzip', rootImageGz()],
    ['boot-kernel', 'an x86 bzImage', bzImageKernel()],
    ['boot-kernel', 'an EFI PE', bytesAt(1024, 'MZ')],
    ['boot-kernel', 'an ELF (s390x, ppc64el)', bytesAt(64, [0x7f, 0x45, 0x4c, 0x46])],
    ['boot-kernel', 'an arm64 Image', bytesAt(128, [0x41, 0x52, 0x4d, 0x64], 0x38)],
    ['boot-kernel', 'gzip', rootImageGz()],
    ['boot-kernel', 'zstd', bytesAt(64, [0x28, 0xb5, 0x2f, 0xfd])],
    ['boot-initrd', 'a newc cpio', newcInitrd()],
    ['boot-initrd', 'a newc cpio with checksums (an early microcode prefix too)', bytesAt(64, '070702')],
    ['boot-initrd', 'gzip', rootImageGz()],
    ['boot-initrd', 'zstd', bytesAt(64, [0x28, 0xb5, 0x2f, 0xfd])],
    ['boot-initrd', 'xz', bytesAt(64, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
    ['boot-initrd', 'lz4', bytesAt(64, [0x02, 0x21, 0x4c, 0x18])],
    ['manifest', 'package lines', manifestText()],
    ['manifest', 'UTF-8 text cut inside a character', ascii('naïve\tversion\n').subarray(0, 3)],
  ])('takes a %s that is %s', (item, _what, leading) => {
    // Act
    const problem = formatProblem(item, leading);

    // Assess
    expect(problem).toBeUndefined();
  });

  it.each<[string, Uint8Array, string]>([
    ['root-tgz', ascii('hello'), 'looks like ASCII text, not a gzip-compressed tar'],
    ['root-tgz', gzipSync(ascii('hello')), 'looks like gzip-compressed data, not a gzip-compressed tar'],
    ['root-tgz', new Uint8Array(0), 'is empty'],
    ['root-tgz', squashfsImage(), 'looks like a squashfs image, not a gzip-compressed tar'],
    ['squashfs', rootTgz(), 'looks like a gzip-compressed tar, not a squashfs image'],
    ['root-image.gz', bytesAt(64, [0x28, 0xb5, 0x2f, 0xfd]), 'looks like zstd-compressed data, not gzip-compressed data'],
    ['boot-kernel', ascii('root:x:0:0:root:/root:/bin/bash\n'), 'looks like ASCII text, not a kernel'],
    ['boot-kernel', newcInitrd(), 'looks like a cpio archive, not a kernel'],
    ['boot-initrd', bzImageKernel(), 'looks like an x86 bzImage kernel, not an initramfs'],
    ['boot-initrd', ascii('héllo'), 'looks like UTF-8 text, not an initramfs'],
    ['manifest', bytesAt(64, [0x7f, 0x45, 0x4c, 0x46, 0x00]), 'looks like an ELF binary, not text lines (UTF-8, no NUL)'],
    ['manifest', new Uint8Array([0x62, 0x61, 0x73, 0x68, 0xff, 0x0a]), 'looks like data, not text lines'],
  ])('refuses a %s whose bytes are otherwise, saying what they look like', (item, leading, message) => {
    // Act
    const problem = formatProblem(item, leading);

    // Assess
    expect(problem).toContain(message);
  });

  it('tells a gzip bomb from a tar by inflating only its start', () => {
    // Prepare: 64 KiB of gzip that inflates to 64 MiB of zeros.
    const bomb = gzipSync(new Uint8Array(64 * 1024 * 1024)).subarray(0, 64 * 1024);
    const started = performance.now();

    // Act
    const problem = formatProblem('root-tgz', bomb);

    // Assess
    expect(problem).toBe('looks like gzip-compressed data, not a gzip-compressed tar');
    expect(performance.now() - started).toBeLessThan(500);
  });
});

describe('Function: describeBytes', () => {
  it('names what it does not know as data', () => {
    // Act
    const description = describeBytes(new Uint8Array([0x00, 0x01, 0x02, 0xfe]));

    // Assess
    expect(description).toBe('data');
  });
});
