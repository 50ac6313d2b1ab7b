/**
 * The sha256 of each metadata file of a generation as it was published, kept
 * beside those files (never one of them, so never served; pruned with them).
 * `verify` finds metadata damaged at rest with it, and a sync never trusts a
 * damaged published file for its freshness checks.
 */
import { createHash } from 'node:crypto';
import { keys, type MetadataOwner, type ObjectStore } from './ports.ts';

export const METADATA_DIGESTS_FILE = 'metadata-digests.json';

/** By metadata file (relative to the mirror root): its sha256, hex. */
export type MetadataDigests = Record<string, string>;

/** Records the sha256 of each of a generation's metadata files as stored, just before it is published. */
export async function recordMetadataDigests(objects: ObjectStore, owner: MetadataOwner, files: readonly string[]): Promise<void> {
  const sha256: MetadataDigests = {};
  for (const file of files) sha256[file] = await storedSha256(objects, keys.metadata(owner, file));
  await objects.put(keys.metadata(owner, METADATA_DIGESTS_FILE), new TextEncoder().encode(JSON.stringify({ sha256 })), { contentType: 'application/json' });
}

/** The digests recorded when `owner` was published; undefined for a generation published before they were recorded. */
export async function recordedMetadataDigests(objects: ObjectStore, owner: MetadataOwner): Promise<MetadataDigests | undefined> {
  const key = keys.metadata(owner, METADATA_DIGESTS_FILE);
  if (!(await objects.head(key))) return undefined;
  const chunks: Uint8Array[] = [];
  for await (const chunk of (await objects.get(key)).body) chunks.push(chunk);
  const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { sha256?: MetadataDigests };
  return parsed.sha256 ?? {};
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function storedSha256(objects: ObjectStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of (await objects.get(key)).body) hash.update(chunk);
  return hash.digest('hex');
}
