/**
 * The real `skystreams` bin as a child process a test can watch and kill:
 * its JSON-lines progress (stderr when not a terminal) is parsed as it
 * arrives, so a test can SIGKILL it at a chosen event.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const BIN = new URL('../../bin/skystreams.mjs', import.meta.url).pathname;

/** One JSON-lines progress record (a SyncEvent, or an aggregated `progress` line). */
export type ProgressLine = { type: string; runId?: string; [field: string]: unknown };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WatchedCli {
  child: ChildProcess;
  /** Every progress line parsed so far, in order. */
  events: ProgressLine[];
  stdout(): string;
  stderr(): string;
  /** Resolves with the first line (already seen or still to come) matching `predicate`; rejects if the process exits first or `timeoutMs` passes. */
  waitFor(predicate: (line: ProgressLine) => boolean, timeoutMs?: number): Promise<ProgressLine>;
  exited: Promise<Exit>;
}

export function spawnCli(args: string[], env: Record<string, string> = {}): WatchedCli {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  const events: ProgressLine[] = [];
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    stderr += text;
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        events.push(JSON.parse(line) as ProgressLine);
      } catch {
        // Not a progress line: an error message that happens to start with a brace.
      }
    }
    for (const wake of waiters) wake();
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const wake of waiters) wake();
    });
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const waitFor = (predicate: (line: ProgressLine) => boolean, timeoutMs = 60_000) =>
    new Promise<ProgressLine>((resolve, reject) => {
      const check = () => {
        const found = events.find(predicate);
        if (found) {
          done();
          resolve(found);
        } else if (hasExited || child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`skystreams ${args[0]} exited before the awaited progress line:\n${stderr}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no awaited progress line within ${timeoutMs} ms:\n${stderr}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  return { child, events, stdout: () => stdout, stderr: () => stderr, waitFor, exited };
}

/** SIGKILL: no handler, no finally block, no lock release runs. Resolves once the process is gone. */
export async function killHard(run: WatchedCli): Promise<Exit> {
  run.child.kill('SIGKILL');
  return run.exited;
}
