/**
 * The directory store's temp files: each named after the process that
 * writes it (`w<pid>-<start time>-<random>`), so the run that settles a dead
 * run removes exactly that process's files at once; files of writers that
 * died unseen (or of older names) go once untouched for an hour.
 */
import { randomUUID } from 'node:crypto';
import { readdir, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { LockHolder } from '../../core/ports.ts';
import { processStatus } from '../process-holder.ts';

/**
 * A temp file untouched this long belongs to a writer that died (a live
 * writer keeps its file's mtime fresh), so the first put of a process removes it.
 */
export const ABANDONED_TEMP_AGE_MS = 60 * 60_000;

/** The prefix of every temp file a process writes; `startTime` as /proc gives it, absent without /proc. */
export function writerTag(writer: Pick<LockHolder, 'pid' | 'startTime'>): string {
  return `w${writer.pid}-${writer.startTime ?? 'x'}-`;
}

const thisWriter = { pid: process.pid, startTime: processStatus(process.pid)?.startTime };

/** A fresh temp file name for this process. */
export function tempName(): string {
  return `${writerTag(thisWriter)}${randomUUID()}`;
}

/**
 * Removes the temp files `writer` named after itself, unless it is this
 * process or ran on another host (a pid names a process only on its own).
 * Returns how many went.
 */
export async function removeTempFilesOf(tempDir: string, writer: LockHolder | undefined): Promise<number> {
  if (!writer || writer.host !== hostname()) return 0;
  if (writer.pid === thisWriter.pid && writer.startTime === thisWriter.startTime) return 0;
  const tag = writerTag(writer);
  let removed = 0;
  for (const name of await namesIn(tempDir)) {
    if (!name.startsWith(tag)) continue;
    if (await unlinkIfPresent(join(tempDir, name))) removed++;
  }
  return removed;
}

/** Removes every temp file untouched for ABANDONED_TEMP_AGE_MS, whoever wrote it. */
export async function removeAbandonedTempFiles(tempDir: string): Promise<void> {
  const cutoff = Date.now() - ABANDONED_TEMP_AGE_MS;
  for (const name of await namesIn(tempDir)) {
    const path = join(tempDir, name);
    const stats = await stat(path).catch((error: unknown) => (isAbsent(error) ? undefined : Promise.reject(error)));
    if (stats?.isFile() && stats.mtimeMs < cutoff) await unlinkIfPresent(path);
  }
}

async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (isAbsent(error)) return [];
    throw error;
  }
}

async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (error) {
    if (isAbsent(error)) return false;
    throw error;
  }
}

function isAbsent(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
