/**
 * `--on-publish CMD`: a command run after each publication, for what should
 * follow it on the operator's side, most often `maas $PROFILE
 * boot-resources import` so region controllers fetch the new images now
 * rather than at their next scheduled import. The publication has happened
 * whatever the command does: its failure is reported, never undone.
 */
import { spawn } from 'node:child_process';
import type { PublicationChanges, ProductVersion } from '../core/publication-changes.ts';

export interface PublishedNotice extends PublicationChanges {
  channel: string;
  generation: number;
  /** The generation the channel served before; undefined for its first publication. */
  previousGeneration?: number;
}

export interface HookResult {
  /** The command's exit code; null when a signal (or the time limit) ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

/** A hook that outlives this is killed, so a hung command cannot hold the next sync. */
export const ON_PUBLISH_TIMEOUT_MS = 10 * 60 * 1_000;

function lines(versions: readonly ProductVersion[]): string {
  return versions.map(({ product, version }) => `${product} ${version}`).join('\n');
}

/** The variables the command sees, besides the process's own environment. */
export function onPublishEnvironment(notice: PublishedNotice): Record<string, string> {
  return {
    SKYSTREAMS_CHANNEL: notice.channel,
    SKYSTREAMS_GENERATION: String(notice.generation),
    SKYSTREAMS_PREVIOUS_GENERATION: notice.previousGeneration === undefined ? '' : String(notice.previousGeneration),
    // One "PRODUCT VERSION" per line.
    SKYSTREAMS_ADDED: lines(notice.added),
    SKYSTREAMS_REMOVED: lines(notice.removed),
  };
}

/** Runs `command` through /bin/sh with the notice in its environment; its output goes to this process's. */
export function runOnPublish(command: string, notice: PublishedNotice, timeoutMs = ON_PUBLISH_TIMEOUT_MS): Promise<HookResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: { ...process.env, ...onPublishEnvironment(notice) },
      // stdout is the CLI's progress stream (JSON lines when piped): the hook writes to stderr so it never breaks that format.
      stdio: ['ignore', process.stderr, process.stderr],
      // Its own process group, so the time limit ends whatever the command started too.
      detached: true,
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut });
    });
  });
}

/** One line for the operator when the hook did not succeed. */
export function describeHookFailure(command: string, result: HookResult): string | undefined {
  if (result.code === 0) return undefined;
  const how = result.timedOut ? 'was killed at its time limit' : result.code === null ? `was ended by ${result.signal}` : `exited ${result.code}`;
  return `--on-publish ${JSON.stringify(command)} ${how}; the publication stands`;
}
