/** The local files of `skystreams upload`, as upload sources: each checked readable before anything is stored. */
import { constants, createReadStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { ConfigError } from '../../core/errors.ts';
import type { ValidatedUpload } from '../../core/custom-images.ts';
import type { UploadSource } from '../../core/uploads.ts';

/**
 * One source per file of `upload`, by item name. ConfigError naming the
 * file (and `label`, the flag it came from) when one is missing, not a
 * regular file, or unreadable.
 */
export async function openUploadFiles(upload: ValidatedUpload, label: string): Promise<Map<string, UploadSource>> {
  const sources = new Map<string, UploadSource>();
  for (const file of upload.files) {
    let size: number;
    try {
      const info = await stat(file.source);
      if (!info.isFile()) throw new ConfigError(`${label} ${file.item}=${file.source}: not a regular file`);
      await access(file.source, constants.R_OK);
      size = info.size;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new ConfigError(`${label} ${file.item}=${file.source}: cannot read it (${code})`, { cause: error });
    }
    sources.set(file.item, { size, open: async () => createReadStream(file.source) });
  }
  return sources;
}
