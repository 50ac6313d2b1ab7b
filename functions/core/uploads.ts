/**
 * Storing custom images (`skystreams upload`, `POST /api/v1/uploads`) over
 * the ports. No port of its own: each uploaded version is a small JSON
 * record under `UPLOADS_PREFIX` in the object store, written create-only,
 * and its items are ordinary items (`keys.item(path)`, create-only, in the
 * catalog once verified).
 *
 * Order of writes, so a sync running at the same time can never delete a
 * fresh upload: item bytes first (invisible to prune, which only deletes
 * what the catalog lists), then the record (which makes prune keep the
 * paths), then the catalog records, then `LATEST_UPLOAD_STATE` (which tells
 * the next check there is something to publish). Prune lists the catalog
 * before it reads the records, so any item it sees recorded is one whose
 * record it reads.
 */
import { verifyingStream } from './checksum.ts';
import {
  CUSTOM_PRODUCT_PREFIX,
  nextUploadVersion,
  parseUploadRecord,
  uploadItemPath,
  uploadRecordKey,
  UPLOADS_PREFIX,
  type UploadRecord,
  type ValidatedUpload,
} from './custom-images.ts';
import { contentTypeOf } from './content-types.ts';
import { ConfigError, ConflictError, FileFormatError, InputTooLargeError, ObjectExistsError } from './errors.ts';
import { formatProblem, LEADING_BYTES } from './file-formats.ts';
import { indexIfManifest, type ManifestIndexing } from './manifests.ts';
import { keys, type ByteStream, type ManifestIndex, type ObjectIndex, type ObjectStore, type Publications, type StateStore } from './ports.ts';

/** Custom images (`skystreams upload`). */
export const uploadLimits = Object.freeze({
  /** An upload record is well under a kilobyte; one past this is not a record skystreams wrote. */
  recordBytes: 64 * 1024,
  /** The JSON body of `POST /api/v1/uploads`: metadata and a few file entries, never the files themselves. */
  requestBytes: 64 * 1024,
});

/** Where one file's bytes come from, and what is known of them beforehand. */
export interface UploadSource {
  open(): Promise<ByteStream>;
  /**
   * The file's first `maxBytes` bytes (all of them when it is shorter), for
   * the format check; a store reads them with one ranged read.
   * @default the start of what `open()` streams
   */
  leading?(maxBytes: number): Promise<Uint8Array>;
  /** Its length: the bytes that arrive must be exactly this many. */
  size: number;
  /** When the caller promises one: the bytes must have it, or nothing is published. */
  sha256?: string;
}

/** Versions tried when another upload of the same product takes the chosen one first. */
const VERSION_ATTEMPTS = 5;

/** Every stored upload record, in key order. MetadataError (naming the key) for one that is not a record. */
export async function listUploadRecords(objects: ObjectStore): Promise<UploadRecord[]> {
  const records: UploadRecord[] = [];
  for await (const info of objects.list(UPLOADS_PREFIX)) {
    if (!info.key.endsWith('.json')) continue;
    if (info.size > uploadLimits.recordBytes) {
      throw new InputTooLargeError(info.key, uploadLimits.recordBytes, `${info.size} bytes is more than an upload record may have (${uploadLimits.recordBytes})`);
    }
    records.push(parseUploadRecord(info.key, await readText(objects, info.key)));
  }
  return records;
}

/**
 * Catalog state naming the newest upload's record. A re-signed publication
 * remembers the value it saw when planned (read before the records are
 * listed); the check compares, so an upload that arrives while a run is
 * under way is still published by the next one, even when upstream has not
 * changed. (A state the check can read without any access to the bucket.)
 */
export const LATEST_UPLOAD_STATE = 'latest-upload';

/** The newest upload's record key, '' when there has been none. */
export async function latestUpload(catalog: StateStore): Promise<string> {
  return (await catalog.getState(LATEST_UPLOAD_STATE)) ?? '';
}

/** Every item path an upload record lists: prune keeps them whether or not a generation publishes them yet. */
export async function uploadedPaths(objects: ObjectStore): Promise<Set<string>> {
  const paths = new Set<string>();
  for (const record of await listUploadRecords(objects)) for (const item of record.items) paths.add(item.path);
  return paths;
}

/**
 * Stores a validated upload as the product's next version: each file
 * streamed to its item key create-only while its size and sha256 are
 * checked (IntegrityError naming the file: nothing of the upload is left),
 * then its record, then the catalog records and the manifest's package
 * index. `sources` holds one entry per file of `upload`, by item name.
 */
export async function storeUpload(
  deps: ManifestIndexing & { catalog: ManifestIndex & ObjectIndex & Publications & StateStore },
  upload: ValidatedUpload,
  sources: ReadonlyMap<string, UploadSource>,
): Promise<UploadRecord> {
  const { objects, catalog, now } = deps;
  await refuseClashWithMirrored(catalog, upload);
  await refuseMisnamedFiles(upload, sources);
  const taken = new Set(
    (await listUploadRecords(objects)).filter((record) => record.product === upload.product).map((record) => record.version),
  );
  for (let attempt = 1; ; attempt++) {
    const version = nextUploadVersion(now(), taken);
    const written: string[] = [];
    let items: UploadRecord['items'];
    try {
      items = [];
      for (const file of upload.files) {
        const source = sources.get(file.item);
        if (!source) throw new Error(`storeUpload: no source for the ${file.item} file of ${upload.product}`);
        const path = uploadItemPath(upload, version, file.fileName);
        const verifier = verifyingStream(await source.open(), {
          path: file.source,
          size: source.size,
          ...(source.sha256 !== undefined && { sha256: source.sha256.toLowerCase() }),
        });
        await objects.put(keys.item(path), verifier.stream, { size: source.size, ifAbsent: true, contentType: contentTypeOf(path) });
        written.push(keys.item(path));
        const { size, sha256 } = verifier.result();
        items.push({ item: file.item, ftype: file.ftype, path, size, sha256 });
      }
    } catch (error) {
      // Only bytes this attempt created, which no record lists and the catalog does not know.
      for (const key of written) await objects.delete(key);
      // Bytes already under a path of this version: another upload (or a crashed one) took it.
      if (error instanceof ObjectExistsError && attempt < VERSION_ATTEMPTS) {
        taken.add(version);
        continue;
      }
      throw error;
    }
    const record: UploadRecord = { shape: upload.shape, product: upload.product, version, fields: upload.fields, uploadedAt: now().toISOString(), items };
    const recordKey = uploadRecordKey(upload.product, version);
    await objects.put(recordKey, new TextEncoder().encode(`${JSON.stringify(record, null, 1)}\n`), {
      contentType: 'application/json',
      ifAbsent: true,
    });
    await objects.persist();
    for (const item of items) {
      await catalog.recordObject({ path: item.path, size: item.size, sha256: item.sha256, digests: { sha256: item.sha256 }, storedAt: record.uploadedAt });
      await indexIfManifest(deps, item);
    }
    await catalog.setState(LATEST_UPLOAD_STATE, recordKey);
    return record;
  }
}

/**
 * Refuses, before anything is stored, an empty file or one whose leading
 * bytes are not what its item must be (FileFormatError naming the file and
 * what it looks like instead): MAAS would only find out while deploying.
 */
export async function refuseMisnamedFiles(upload: ValidatedUpload, sources: ReadonlyMap<string, UploadSource>): Promise<void> {
  for (const file of upload.files) {
    const source = sources.get(file.item);
    if (!source) throw new Error(`storeUpload: no source for the ${file.item} file of ${upload.product}`);
    const leading = source.size === 0 ? new Uint8Array(0) : await leadingBytes(source, Math.min(source.size, LEADING_BYTES));
    const problem = formatProblem(file.item, leading);
    if (problem !== undefined) throw new FileFormatError(file.source, file.item, problem);
  }
}

async function leadingBytes(source: UploadSource, maxBytes: number): Promise<Uint8Array> {
  if (source.leading) return source.leading(maxBytes);
  const chunks: Uint8Array[] = [];
  let length = 0;
  const iterator = (await source.open())[Symbol.asyncIterator]();
  try {
    while (length < maxBytes) {
      const { done, value } = await iterator.next();
      if (done) break;
      chunks.push(value);
      length += value.byteLength;
    }
  } finally {
    await iterator.return?.();
  }
  return Buffer.concat(chunks).subarray(0, maxBytes);
}

/**
 * Takes an uploaded version out of the stream: its record goes, so the next
 * sync publishes without it (the changed `LATEST_UPLOAD_STATE` makes it
 * publish even when upstream has not changed), and prune deletes its files
 * once no retained generation lists them. ConfigError naming the product and
 * version when no such upload is stored; nothing changes then.
 */
export async function removeUpload(
  deps: { objects: ObjectStore; catalog: StateStore; now: () => Date },
  product: string,
  version: string,
): Promise<UploadRecord> {
  const key = uploadRecordKey(product, version);
  const found = (await listUploadRecords(deps.objects)).find((record) => uploadRecordKey(record.product, record.version) === key);
  if (!found) {
    throw new ConfigError(`no uploaded image ${product} version ${version} is stored: \`skystreams images\` lists the uploaded ones (SOURCE uploaded)`);
  }
  await deps.objects.delete(key);
  await deps.catalog.setState(LATEST_UPLOAD_STATE, `removed ${key} at ${deps.now().toISOString()}`);
  return found;
}

/**
 * MAAS knows an image by os, release, arch and subarch: an upload named like
 * an image a channel already serves from upstream would leave MAAS with two
 * of one name. ConflictError naming the upstream product; uploaded products
 * (new versions of the same image) are fine.
 */
export async function refuseClashWithMirrored(catalog: Publications, upload: ValidatedUpload): Promise<void> {
  const { os, release, arch, subarch } = upload.fields;
  for (const channel of await catalog.listChannels()) {
    for await (const entry of catalog.listEntries(channel.generation)) {
      if (entry.product.startsWith(`${CUSTOM_PRODUCT_PREFIX}:`)) continue;
      if (entry.os === os && entry.release === release && entry.arch === arch && entry.subarch === subarch) {
        throw new ConflictError(
          `${os}/${release} ${arch}/${subarch} is already published from upstream as ${entry.product} (channel ${channel.name}): ` +
            'MAAS would see two images of one name; upload it under another release (or os) name. Nothing was stored.',
        );
      }
    }
  }
}

async function readText(objects: ObjectStore, key: string): Promise<string> {
  const { body } = await objects.get(key);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}
