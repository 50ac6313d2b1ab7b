/** The local files of `skystreams upload`, as upload sources: each checked before anything is stored. */
import { constants, createReadStream, type Stats } from 'node:fs';
import { access, open, realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import { ConfigError } from '../../core/errors.ts';
import type { ValidatedUpload } from '../../core/custom-images.ts';
import type { UploadSource } from '../../core/uploads.ts';

export interface UploadFileOptions {
  /**
   * The mirror's data dir: nothing under it is ever uploaded (its signing
   * keys must never become publishable), whatever path or link leads there.
   */
  dataDir?: string;
}

/**
 * One source per file of `upload`, by item name. ConfigError naming the
 * file (and `label`, the flag it came from) when one is missing, unreadable,
 * empty, not a regular file (a device, FIFO, socket or directory; a symbolic
 * link is followed to what it names, as packer output often is one), or
 * lies under the mirror's data dir. What the bytes are is checked by
 * storeUpload, on every backend.
 */
export async function openUploadFiles(upload: ValidatedUpload, label: string, options: UploadFileOptions = {}): Promise<Map<string, UploadSource>> {
  const dataDir = options.dataDir === undefined ? undefined : await realpath(options.dataDir).catch(() => undefined);
  const sources = new Map<string, UploadSource>();
  for (const file of upload.files) {
    const named = `${label} ${file.item}=${file.source}`;
    let real: string;
    let size: number;
    try {
      real = await realpath(file.source);
      const info = await stat(real);
      if (!info.isFile()) throw new ConfigError(`${named}: not a regular file (${kindOf(info)}${real === file.source ? '' : ` at ${real}`})`);
      await access(real, constants.R_OK);
      size = info.size;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new ConfigError(`${named}: cannot read it (${code})`, { cause: error });
    }
    if (dataDir !== undefined && isInside(dataDir, real)) {
      throw new ConfigError(`${named}: lies in the mirror's data dir (${real}): its files, signing keys included, are never uploaded`);
    }
    if (size === 0) throw new ConfigError(`${named}: is empty`);
    // The real path, not the link: a link changed after this check cannot lead elsewhere.
    sources.set(file.item, { size, open: async () => createReadStream(real), leading: (maxBytes) => readStart(real, maxBytes) });
  }
  return sources;
}

function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isSocket()) return 'a socket';
  return 'not a file';
}

async function readStart(path: string, maxBytes: number): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const bytes = new Uint8Array(maxBytes);
    const { bytesRead } = await handle.read(bytes, 0, maxBytes, 0);
    return bytes.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
