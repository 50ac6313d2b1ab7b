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

/**
 * Records the sha256 of each of a generation's metadata files, from the bytes
 * the plan verified and stored, beside them (create-only, like them).
 */
export async function recordMetadataDigests(objects: ObjectStore, owner: MetadataOwner, staged: ReadonlyMap<string, Uint8Array>): Promise<void> {
  const sha256: MetadataDigests = {};
  for (const [file, bytes] of staged) sha256[file] = sha256Hex(bytes);
  const body = new TextEncoder().encode(JSON.stringify({ sha256 }));
  await objects.put(keys.metadata(owner, METADATA_DIGESTS_FILE), body, { contentType: 'application/json', ifAbsent: true });
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
