/** A real ObjectStore passed through, for tests that inject one fault into one method. */
import type { ByteRange, ByteStream, ObjectBody, ObjectInfo, ObjectStore, PutOptions, WriterLeftovers } from '../../functions/core/ports.ts';

export class WrappedObjectStore implements ObjectStore {
  protected readonly inner: ObjectStore;
  constructor(inner: ObjectStore) {
    this.inner = inner;
  }

  put(key: string, body: ByteStream | Uint8Array, options?: PutOptions): Promise<ObjectInfo> {
    return this.inner.put(key, body, options);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }
  get(key: string, options?: { range?: ByteRange }): Promise<ObjectBody> {
    return this.inner.get(key, options);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }
  persist(): Promise<void> {
    return this.inner.persist();
  }
  removeLeftovers(of: WriterLeftovers): Promise<number> {
    return this.inner.removeLeftovers(of);
  }
}
