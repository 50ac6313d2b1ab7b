/**
 * Sizes that break naive adapters, on the stand-ins: a 2 GiB object streamed
 * through the S3 object store with bounded memory, and a 100,000-entry
 * generation in the DynamoDB catalog. Slow by nature (about four minutes on 2 cores);
 * bench/s3-large-object.ts times the object round trip on its own. Run by
 * `npm run test:scale`, not by `npm test`.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DynamoCatalog } from '../../functions/adapters/dynamodb/dynamodb-catalog.ts';
import { dynamoClients } from '../../functions/adapters/dynamodb/dynamodb-client.ts';
import { ensureTable } from '../../functions/adapters/dynamodb/table-setup.ts';
import { ensureBucket } from '../../functions/adapters/s3/bucket-setup.ts';
import { s3Client } from '../../functions/adapters/s3/s3-client.ts';
import { S3ObjectStore } from '../../functions/adapters/s3/s3-object-store.ts';
import type { CatalogEntry } from '../../functions/core/ports.ts';
import { largeObjectRoundTrip, rssBound } from '../../bench/s3-large-object.ts';
import { useStandins } from '../support/global-standins.ts';

const standins = useStandins();
const MiB = 2 ** 20;
const CREDENTIALS = { accessKeyId: 'large', secretAccessKey: 'large' };

describe('Class: S3ObjectStore', () => {
  it('streams a 2 GiB object in and out with bounded memory', { timeout: 600_000 }, async () => {
    // Prepare
    const client = s3Client({ region: 'us-east-1', endpoint: standins().s3Endpoint, credentials: CREDENTIALS });
    await ensureBucket(client, 'large-objects');
    const store = new S3ObjectStore({ client, bucket: 'large-objects' });
    const key = `items/large/${randomUUID()}.img`;
    const size = 2048 * MiB;

    // Act
    const result = await largeObjectRoundTrip(store, key, size);
    await store.delete(key);

    // Assess
    console.log(
      `2 GiB round trip: up ${result.uploadSeconds.toFixed(1)} s, down ${result.downloadSeconds.toFixed(1)} s, ` +
        `${result.parts} parts; peak RSS ${(result.peakRss / MiB).toFixed(0)} MB ` +
        `(baseline ${(result.baselineRss / MiB).toFixed(0)} MB, bound ${(rssBound(store) / MiB).toFixed(0)} MB)`,
    );
    expect(result.parts).toBeGreaterThan(5);
    expect(result.receivedSha256).toBe(result.sentSha256);
    expect(result.peakRss).toBeLessThan(rssBound(store));
  });
});

describe('Class: DynamoCatalog', () => {
  it('stores, lists and deletes a generation of 100,000 entries', { timeout: 600_000 }, async () => {
    // Prepare
    const { client, documents } = dynamoClients({
      region: 'us-east-1',
      endpoint: standins().dynamodbEndpoint,
      credentials: CREDENTIALS,
    });
    const table = `large-${randomUUID()}`;
    await ensureTable(client, table);
    const catalog = new DynamoCatalog({ documents, table });
    const count = 100_000;
    const entries = Array.from({ length: count }, (_, n) => maasEntry(n));

    // Act
    for (let start = 0; start < count; start += 20_000) await catalog.putEntries(1, entries.slice(start, start + 20_000));
    let listed = 0;
    let sizes = 0;
    for await (const entry of catalog.listEntries(1)) {
      listed += 1;
      sizes += entry.size;
    }
    await catalog.deletePublication(1);
    const remaining = [];
    for await (const entry of catalog.listEntries(1)) remaining.push(entry);

    // Assess
    expect(listed).toBe(count);
    expect(sizes).toBe(entries.reduce((total, entry) => total + entry.size, 0));
    expect(remaining).toEqual([]);
  });
});

/** Shaped like a MAAS stable stream entry: 500 products × 25 versions × 8 items. */
function maasEntry(n: number): CatalogEntry {
  const product = `com.ubuntu.maas.stable:v3:boot:${20 + (n % 5)}.04:amd64:ga-${n % 500}`;
  const version = `2024${String(Math.floor(n / 4000)).padStart(4, '0')}`;
  return {
    contentId: 'com.ubuntu.maas:stable:v3:download',
    product,
    version,
    item: `item-${n % 8}-${n}`,
    path: `server/releases/r${n % 500}/amd64/${version}/item-${n}`,
    size: 1_000_000 + n,
    sha256: n.toString(16).padStart(64, '0'),
    ftype: 'squashfs',
    os: 'ubuntu',
    release: 'jammy',
    arch: 'amd64',
    subarch: `ga-${n % 500}`,
    label: 'stable',
  };
}
