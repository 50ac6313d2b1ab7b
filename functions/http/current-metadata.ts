/**
 * The current publication's metadata, held in memory: its bytes, validators
 * and response headers are read from the store once per generation and file,
 * and dropped when another generation becomes current.
 */
import { contentTypeOf } from '../core/content-types.ts';
import { keys, type ByteStream, type Catalog, type ObjectInfo, type ObjectStore, type Publication } from '../core/ports.ts';

/** A metadata file of one generation, ready to send. */
export interface HeldFile {
  info: ObjectInfo;
  bytes: Uint8Array;
  /** The headers of a 200 (content-length included), built once. */
  headers: Readonly<Record<string, string>>;
}

/** Metadata changes with every generation; clients and caches re-check it after a minute. */
export const METADATA_CACHE = 'public, max-age=60';

/**
 * Which publication is current, asked of the catalog once per batch of
 * requests rather than once per request. A request never joins a check that
 * had already started when it arrived, so a request that follows a publish
 * always sees it; requests that arrive together (in one turn of the event
 * loop, or while a check is in flight) share the next check.
 */
export class CurrentPublication {
  private next: Promise<Publication | undefined> | undefined;
  private inFlight: Promise<unknown> = Promise.resolve();

  private readonly catalog: Catalog;
  private readonly channel: string;
  constructor(
    catalog: Catalog,
    channel: string,
  ) {
    this.catalog = catalog;
    this.channel = channel;
  }

  /** The channel's publication, as of a check that started after this call. */
  get(): Promise<Publication | undefined> {
    this.next ??= this.scheduleCheck();
    return this.next;
  }

  private scheduleCheck(): Promise<Publication | undefined> {
    const previous = this.inFlight;
    const check = (async () => {
      // One check at a time; then let every request that arrived in this turn join.
      await previous.catch(() => undefined);
      await new Promise((resolve) => setImmediate(resolve));
      // From here on, new arrivals need a check that starts after them.
      this.next = undefined;
      return this.catalog.getCurrent(this.channel);
    })();
    this.inFlight = check;
    return check;
  }
}

/** The files of the generation last asked for, each loaded on its first request. */
export class MetadataFiles {
  private held: { generation: number; prefix: string } | undefined;
  private files = new Map<string, Promise<HeldFile | undefined>>();

  private readonly objects: ObjectStore;
  constructor(objects: ObjectStore) {
    this.objects = objects;
  }

  /** `file` of `publication` (which must list it), or undefined when its bytes are not in the store. */
  get(publication: Publication, file: string): Promise<HeldFile | undefined> {
    const prefix = keys.metadataPrefix(publication);
    if (prefix !== this.held?.prefix) {
      // A request that raced a publish asks for the older generation: served, never held again.
      if (this.held && publication.generation < this.held.generation) return this.load(keys.metadata(publication, file), file);
      // Another generation is current: the previous one's bytes go.
      this.held = { generation: publication.generation, prefix };
      this.files = new Map();
    }
    let held = this.files.get(file);
    if (!held) {
      const files = this.files;
      const loading = this.load(keys.metadata(publication, file), file);
      held = loading;
      files.set(file, loading);
      // Absence and failures are not remembered: the next request asks the store again.
      const forget = () => {
        if (files.get(file) === loading) files.delete(file);
      };
      loading.then((loaded) => loaded ?? forget(), forget);
    }
    return held;
  }

  private async load(key: string, file: string): Promise<HeldFile | undefined> {
    if (!(await this.objects.head(key))) return undefined;
    const object = await this.objects.get(key);
    const bytes = await readFully(object.body, object.size, key);
    const info: ObjectInfo = { key, size: object.size, etag: object.etag, lastModified: object.lastModified };
    return { info, bytes, headers: { ...objectHeaders(info, contentTypeOf(file), METADATA_CACHE), 'content-length': String(info.size) } };
  }
}

/** The headers every reply about an object carries (200, 206, 304, 416 alike). */
export function objectHeaders(info: ObjectInfo, contentType: string, cacheControl: string): Record<string, string> {
  return {
    'content-type': contentType,
    'cache-control': cacheControl,
    etag: info.etag,
    'last-modified': info.lastModified.toUTCString(),
    'accept-ranges': 'bytes',
  };
}

/** The whole body in one buffer of the announced size; a body of another length is an error. */
async function readFully(body: ByteStream, size: number, key: string): Promise<Uint8Array> {
  const bytes = Buffer.allocUnsafe(size);
  let filled = 0;
  for await (const chunk of body) {
    if (filled + chunk.byteLength > size) throw new Error(`${key} holds more than the ${size} bytes its store announced`);
    bytes.set(chunk, filled);
    filled += chunk.byteLength;
  }
  if (filled !== size) throw new Error(`${key} holds ${filled} bytes, not the ${size} its store announced`);
  return bytes;
}
