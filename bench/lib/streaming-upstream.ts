/** Starts the bench upstream (streaming-upstream-child.ts) in a child process and talks to it over IPC. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface UpstreamConfig {
  itemBytes: number;
  seed: string;
}

export type ParentMessage = { type: 'requests' } | { type: 'touch-metadata' } | { type: 'exit' };

export type ChildMessage =
  | { type: 'ready'; baseUrl: string; itemPath: string; sha256: string; publicKeyring: string }
  | { type: 'requests'; requests: { path: string; status: number }[] }
  | { type: 'metadata-touched' };

export interface StreamingUpstream {
  baseUrl: string;
  itemPath: string;
  sha256: string;
  /** Binary public key the metadata is signed with. */
  publicKeyring: Uint8Array;
  /** Every request answered so far. */
  requests(): Promise<{ path: string; status: number }[]>;
  /** Re-signs the metadata with a later `updated`, leaving the item as it is. */
  touchMetadata(): Promise<void>;
  close(): Promise<void>;
}

const SERVER_ENTRY = fileURLToPath(new URL('./streaming-upstream-child.ts', import.meta.url));

export async function startStreamingUpstream(config: UpstreamConfig): Promise<StreamingUpstream> {
  const child = fork(SERVER_ENTRY, [], {
    env: { ...process.env, BENCH_UPSTREAM_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await nextMessage(child, 'ready');
  return {
    baseUrl: ready.baseUrl,
    itemPath: ready.itemPath,
    sha256: ready.sha256,
    publicKeyring: new Uint8Array(Buffer.from(ready.publicKeyring, 'base64')),
    async requests() {
      const reply = nextMessage(child, 'requests');
      child.send({ type: 'requests' } satisfies ParentMessage);
      return (await reply).requests;
    },
    async touchMetadata() {
      const reply = nextMessage(child, 'metadata-touched');
      child.send({ type: 'touch-metadata' } satisfies ParentMessage);
      await reply;
    },
    async close() {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.send({ type: 'exit' } satisfies ParentMessage);
      await exited;
    },
  };
}

function nextMessage<T extends ChildMessage['type']>(child: ChildProcess, type: T): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ChildMessage) => {
      if (message.type !== type) return;
      cleanup();
      resolve(message as Extract<ChildMessage, { type: T }>);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`bench upstream exited (code ${code}) before answering ${type}`));
    };
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}
