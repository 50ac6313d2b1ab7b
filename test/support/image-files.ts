/**
 * Tiny but well-formed files of each kind an uploaded image has, so that
 * upload tests pass the format check the way packer output does: each
 * carries `payloadBytes` of random content, so two calls give other bytes.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { TAR_BLOCK, tarHeader, tarPadding } from '../../functions/core/tar.ts';

/** A gzip-compressed tar holding one file: a `root-tgz`. */
export function rootTgz(payloadBytes = 4096): Uint8Array {
  const payload = randomBytes(payloadBytes);
  const tar = Buffer.concat([
    tarHeader({ path: 'etc/site-image', size: payload.byteLength }),
    payload,
    new Uint8Array(tarPadding(payload.byteLength)),
    new Uint8Array(2 * TAR_BLOCK),
  ]);
  return gzipSync(tar);
}

/** A squashfs superblock's magic, then content: a `squashfs`. */
export function squashfsImage(payloadBytes = 4096): Uint8Array {
  return Buffer.concat([Buffer.from('hsqs'), randomBytes(payloadBytes)]);
}

/** gzip-compressed data: a `root-image.gz`. */
export function rootImageGz(payloadBytes = 4096): Uint8Array {
  return gzipSync(randomBytes(payloadBytes));
}

/** An x86 bzImage: `MZ` (its EFI stub) at 0 and the setup header's `HdrS` at 0x202: a `boot-kernel`. */
export function bzImageKernel(payloadBytes = 4096): Uint8Array {
  const bytes = randomBytes(Math.max(payloadBytes, 0x400));
  bytes.write('MZ', 0, 'latin1');
  bytes.write('HdrS', 0x202, 'latin1');
  return bytes;
}

/** A newc cpio archive holding one file, ended by its trailer: a `boot-initrd`. */
export function newcInitrd(payloadBytes = 4096): Uint8Array {
  const payload = randomBytes(payloadBytes);
  return Buffer.concat([newcEntry('init', 0o100755, payload), newcEntry('TRAILER!!!', 0, new Uint8Array(0))]);
}

/** Package lines as MAAS's manifests have them: a `manifest`. */
export function manifestText(packages: Record<string, string> = { 'site-agent': '1.2.3', bash: '5.2.21-2ubuntu4' }): Uint8Array {
  return new TextEncoder().encode(Object.entries(packages).map(([name, version]) => `${name}\t${version}\n`).join(''));
}

function newcEntry(name: string, mode: number, data: Uint8Array): Uint8Array {
  const hex = (value: number) => value.toString(16).padStart(8, '0');
  const nameBytes = Buffer.from(`${name}\0`);
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  const header = `070701${[1, mode, 0, 0, 1, 0, data.byteLength, 0, 0, 0, 0, nameBytes.byteLength, 0].map(hex).join('')}`;
  const pad = (length: number) => new Uint8Array((4 - (length % 4)) % 4);
  return Buffer.concat([Buffer.from(header), nameBytes, pad(header.length + nameBytes.byteLength), data, pad(data.byteLength)]);
}
