/** Which process runs a sync, and whether a recorded one still lives: lets a crashed run's lock go at once. */
import { hostname } from 'node:os';
import type { LockHolder } from '../core/ports.ts';

export function thisProcess(): LockHolder {
  return { host: hostname(), pid: process.pid };
}

/** False only when the holder ran on this host and its process is gone; undefined when another host's. */
export function isAliveOnThisHost(holder: LockHolder): boolean | undefined {
  if (holder.host !== hostname()) return undefined;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
