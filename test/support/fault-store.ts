/**
 * A real ObjectStore with a full disk injected: once `budgetBytes` of item
 * bytes have been written, the body of the put in progress throws ENOSPC,
 * as a write(2) on a full filesystem would. The store underneath does all
 * the real work, including cleaning up after the failed write.
 */
import { keys, type ByteStream, type ObjectInfo, type ObjectStore, type PutOptions } from '../../functions/core/ports.ts';
import { WrappedObjectStore } from './wrapped-store.ts';

export class DiskFullError extends Error {
  readonly code = 'ENOSPC';
  readonly errno = -28;
  constructor(key: string) {
    super(`ENOSPC: no space left on device, write (${key})`);
  }
}

export class DiskFullObjectStore extends WrappedObjectStore {
  /** Item bytes accepted so far, across puts. */
  written = 0;
  /** Puts that hit the full disk. */
  failedPuts: string[] = [];

  private readonly budgetBytes: number;
  private readonly prefix;
  constructor(
    inner: ObjectStore,
    budgetBytes: number,
    /** Only keys under this prefix fill the disk. @default items/ */
    prefix = keys.item(''),
  ) {
    super(inner);
    this.budgetBytes = budgetBytes;
    this.prefix = prefix;
  }

  override put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    if (!key.startsWith(this.prefix)) return this.inner.put(key, body, options);
    return this.inner.put(key, this.filling(key, body instanceof Uint8Array ? [body] : body), options);
  }

  private async *filling(key: string, body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of body) {
      const room = this.budgetBytes - this.written;
      if (chunk.byteLength > room) {
        // The part that fits lands; the rest finds the disk full.
        if (room > 0) {
          this.written += room;
          yield chunk.subarray(0, room);
        }
        this.failedPuts.push(key);
        throw new DiskFullError(key);
      }
      this.written += chunk.byteLength;
      yield chunk;
    }
  }
}

/** The error of a delete refused by FailingDeletesObjectStore, as a store that went away mid-prune would refuse it. */
export class DeleteRefusedError extends Error {
  constructor(key: string) {
    super(`delete refused: ${key}`);
  }
}

/**
 * A real ObjectStore whose item deletes fail once `allowed` have gone
 * through: a prune stopped between deletes, as a kill would stop it.
 */
export class FailingDeletesObjectStore extends WrappedObjectStore {
  /** Item keys deleted, then refused. */
  deleted: string[] = [];
  refused: string[] = [];
  private readonly allowed: number;
  constructor(inner: ObjectStore, allowed: number) {
    super(inner);
    this.allowed = allowed;
  }

  override async delete(key: string): Promise<void> {
    if (!key.startsWith(keys.item(''))) return this.inner.delete(key);
    if (this.deleted.length >= this.allowed) {
      this.refused.push(key);
      throw new DeleteRefusedError(key);
    }
    await this.inner.delete(key);
    this.deleted.push(key);
  }
}
