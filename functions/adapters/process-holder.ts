/** Which process runs a sync, and whether a recorded one still lives: lets a crashed run's lock go at once. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { LockHolder } from '../core/ports.ts';

export function thisProcess(): LockHolder {
  const startTime = processStatus(process.pid)?.startTime;
  return { host: hostname(), pid: process.pid, ...(startTime !== undefined && { startTime }) };
}

/**
 * False only when the holder ran on this host and its process is gone: no
 * such process, a zombie (killed, its parent gone, and no init reaping it,
 * as in a container without one), or another process with the same pid
 * (its start time differs from the recorded one). Undefined when another
 * host's. A holder recorded without a start time, or a system without
 * /proc, is judged by whether a process has its pid.
 */
export function isAliveOnThisHost(holder: LockHolder): boolean | undefined {
  if (holder.host !== hostname()) return undefined;
  const status = processStatus(holder.pid);
  if (status !== undefined) {
    if (status.state === 'Z' || status.state === 'X') return false;
    if (holder.startTime !== undefined && status.startTime !== holder.startTime) return false;
  }
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface ProcessStatus {
  /** One letter: R running, S sleeping, Z zombie, X dead, … */
  state: string;
  /** Clock ticks after boot when the process started: with the pid, names one process for the life of the host. */
  startTime: number;
}

/** The state and start time /proc/PID/stat gives, or undefined without /proc or such a process. */
export function processStatus(pid: number): ProcessStatus | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces or `)`: fields are counted after its last `)`.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const startTime = Number(fields[22 - 3]);
  if (state === undefined || !Number.isSafeInteger(startTime)) return undefined;
  return { state, startTime };
}
