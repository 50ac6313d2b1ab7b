/**
 * The cloud backend (S3 + DynamoDB) on the stand-ins (s3rver, DynamoDB
 * Local): both port contracts, plus what only this backend promises.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { DeleteTableCommand, CreateTableCommand, DescribeTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { initCloudResources, openCloudBackend } from '../../functions/adapters/cloud.ts';
import { DynamoCatalog } from '../../functions/adapters/dynamodb/dynamodb-catalog.ts';
import { dynamoClients, type DynamoConnection } from '../../functions/adapters/dynamodb/dynamodb-client.ts';
import { EXPIRES_AT_ATTRIBUTE } from '../../functions/adapters/dynamodb/items.ts';
import { ensureTable } from '../../functions/adapters/dynamodb/table-setup.ts';
import { s3Client, type S3Connection } from '../../functions/adapters/s3/s3-client.ts';
import { MIN_PART_SIZE, S3ObjectStore } from '../../functions/adapters/s3/s3-object-store.ts';
import { ConfigError, ConflictError, UnavailableError } from '../../functions/core/errors.ts';
import type { ByteStream, CatalogEntry } from '../../functions/core/ports.ts';
import { useStandins } from '../support/global-standins.ts';
import { freePort } from '../support/standins.ts';
import { catalogContract } from './catalog.contract.ts';
import { objectStoreContract } from './object-store.contract.ts';

const standins = useStandins();
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
const BUCKET = 'contract-objects';

const s3Connection = (): S3Connection => ({ region: 'us-east-1', endpoint: standins().s3Endpoint, credentials: CREDENTIALS });
const dynamoConnection = (): DynamoConnection => ({
  region: 'us-east-1',
  endpoint: standins().dynamodbEndpoint,
  credentials: CREDENTIALS,
});
const cloudOptions = (overrides: { bucket?: string; table?: string; prefix?: string } = {}) => ({
  bucket: overrides.bucket ?? BUCKET,
  table: overrides.table ?? `table-${randomUUID()}`,
  s3Endpoint: standins().s3Endpoint,
  dynamodbEndpoint: standins().dynamodbEndpoint,
  ...(overrides.prefix !== undefined && { prefix: overrides.prefix }),
});

beforeAll(async () => {
  await initCloudResources(cloudOptions(), {});
});

/** Smallest parts S3 allows, so the contract's 6 MiB bodies go multipart. */
const openS3Store = (prefix?: string) => async () => ({
  store: new S3ObjectStore({ client: s3Client(s3Connection()), bucket: BUCKET, partSize: MIN_PART_SIZE, prefix }),
  cleanup: async () => undefined,
});

objectStoreContract('S3ObjectStore (s3rver)', openS3Store(), { settlesCreateRaces: false, partedWrites: true });
objectStoreContract('S3ObjectStore with a key prefix (s3rver)', openS3Store('tenant-a/'), { manyObjects: 1001, settlesCreateRaces: false, partedWrites: true });

catalogContract('DynamoCatalog (DynamoDB Local)', async () => {
  // The contract wants an empty catalog per test: a fresh table is cheap on DynamoDB Local.
  const table = `contract-${randomUUID()}`;
  const { client, documents } = dynamoClients(dynamoConnection());
  await ensureTable(client, table);
  return {
    catalog: new DynamoCatalog({ documents, table }),
    cleanup: async () => {
      await client.send(new DeleteTableCommand({ TableName: table }));
    },
  };
});

describe('Class: S3ObjectStore', () => {
  describe('Method: put', () => {
    it('aborts the multipart upload when the body throws after the first part', async () => {
      // Prepare
      const { client, sent } = recordingS3Client();
      const store = new S3ObjectStore({ client, bucket: BUCKET, partSize: MIN_PART_SIZE, queueSize: 2 });
      const failure = new Error('sha256 mismatch');
      const key = `abort-${randomUUID()}/item`;

      // Act
      const attempt = store.put(key, failingAfter(3 * MIN_PART_SIZE + 1, failure));

      // Assess
      await expect(attempt).rejects.toBe(failure);
      const names = sent.map((request) => request.command);
      expect(names).toContain('CreateMultipartUploadCommand');
      expect(names).toContain('UploadPartCommand');
      expect(names).not.toContain('CompleteMultipartUploadCommand');
      expect(sent.find((request) => request.command === 'AbortMultipartUploadCommand')).toMatchObject({ status: 204 });
      expect(await store.head(key)).toBeUndefined();
    });

    it('sends nothing when the body throws within the first part', async () => {
      // Prepare
      const { client, sent } = recordingS3Client();
      const store = new S3ObjectStore({ client, bucket: BUCKET, partSize: MIN_PART_SIZE });
      const failure = new Error('size mismatch');

      // Act
      const attempt = store.put(`single-${randomUUID()}`, failingAfter(MIN_PART_SIZE - 1, failure));

      // Assess
      await expect(attempt).rejects.toBe(failure);
      expect(sent).toEqual([]);
    });

    it('rejects keys that are not clean relative paths', async () => {
      // Prepare
      const store = new S3ObjectStore({ client: s3Client(s3Connection()), bucket: BUCKET });

      // Act
      const outcomes = await Promise.allSettled(
        ['', '/abs', 'a/../b', 'a//b', 'a\\b'].map((key) => store.put(key, Buffer.from('x'))),
      );

      // Assess
      for (const outcome of outcomes) {
        expect(outcome.status === 'rejected' && String(outcome.reason)).toMatch(/invalid object key/);
      }
    });
  });

  describe('Option: prefix', () => {
    it('maps keys 1:1 onto S3 keys under the prefix', async () => {
      // Prepare
      const prefix = `p-${randomUUID()}`;
      const store = new S3ObjectStore({ client: s3Client(s3Connection()), bucket: BUCKET, prefix });

      // Act
      await store.put('items/server/jammy/boot-kernel', Buffer.from('kernel'));
      const raw = await s3Client(s3Connection()).send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/` }));
      const listed = [];
      for await (const info of store.list('items/')) listed.push(info.key);

      // Assess
      expect(store.prefix).toBe(`${prefix}/`);
      expect(raw.Contents?.map((object) => object.Key)).toEqual([`${prefix}/items/server/jammy/boot-kernel`]);
      expect(listed).toEqual(['items/server/jammy/boot-kernel']);
    });
  });

  describe('Method: get', () => {
    it('refuses a range past the end of the object instead of returning fewer bytes', async () => {
      // Prepare
      const store = new S3ObjectStore({ client: s3Client(s3Connection()), bucket: BUCKET });
      const key = `range-${randomUUID()}`;
      await store.put(key, randomBytes(100));

      // Act
      const outcomes = await Promise.allSettled([
        store.get(key, { range: { start: 50, end: 100 } }),
        store.get(key, { range: { start: 100, end: 120 } }),
      ]);

      // Assess
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected');
        expect(outcome.status === 'rejected' && outcome.reason).toBeInstanceOf(RangeError);
      }
    });
  });

  describe('Method: removeLeftovers', () => {
    it('aborts exactly the unfinished multipart uploads under the dead run\'s keys, leaving another writer\'s', async () => {
      // Prepare: two uploads started and never completed, as a killed run and a live one leave them.
      const prefix = `leftovers-${randomUUID()}/`;
      const store = new S3ObjectStore({ client: s3Client(s3Connection()), bucket: BUCKET, prefix });
      const dead = await store.parts.start('items/dead/root.squashfs');
      const live = await store.parts.start('items/live/root.squashfs');

      // Act
      const removed = await store.removeLeftovers({ keys: ['items/dead/root.squashfs', 'items/never-started'] });
      const again = await store.removeLeftovers({ keys: ['items/dead/root.squashfs'] });

      // Assess: the dead one is gone (completing it is refused), the live one still takes its part.
      expect(removed).toBe(1);
      expect(again).toBe(0);
      await expect(store.parts.complete(dead, [])).rejects.toThrow();
      const part = await store.parts.putPart(live, 1, (async function* () { yield new Uint8Array([1, 2, 3]); })(), 3);
      expect(part.partNumber).toBe(1);
      await store.parts.abort(live);
    });
  });

  describe('Errors', () => {
    it('reports a missing bucket as a configuration problem', async () => {
      // Prepare
      const store = new S3ObjectStore({ client: s3Client(s3Connection()), bucket: `missing-${randomUUID()}` });

      // Act
      const attempt = store.get('items/x');

      // Assess
      await expect(attempt).rejects.toBeInstanceOf(ConfigError);
      await expect(attempt).rejects.toThrow(/bucket does not exist/);
    });

    it('reports an unreachable endpoint as unavailable', async () => {
      // Prepare
      const endpoint = `http://127.0.0.1:${await freePort()}`;
      const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
      const store = new S3ObjectStore({ client, bucket: BUCKET });

      // Act
      const attempt = store.head('items/x');

      // Assess
      await expect(attempt).rejects.toBeInstanceOf(UnavailableError);
    });
  });
});

describe('Class: DynamoCatalog', () => {
  let catalog: DynamoCatalog;

  beforeAll(async () => {
    const table = `catalog-${randomUUID()}`;
    const { client, documents } = dynamoClients(dynamoConnection());
    await ensureTable(client, table);
    catalog = new DynamoCatalog({ documents, table });
  });

  describe('Method: putEntries', () => {
    it('keeps the last of two entries with the same key in one call', async () => {
      // Prepare
      const first: CatalogEntry = {
        contentId: 'c#1%',
        product: 'p#',
        version: 'v',
        item: 'i',
        path: 'a',
        size: 1,
        sha256: '1'.repeat(64),
      };
      const second = { ...first, path: 'b', size: 2 };

      // Act
      await catalog.putEntries(5, [first, second]);

      // Assess
      expect(await collect(catalog.listEntries(5))).toEqual([second]);
    });
  });

  describe('Method: publish', () => {
    it('says which condition failed', async () => {
      // Prepare
      const publication = {
        generation: 1,
        upstreamUpdated: 'Mon, 01 Jan 2024 00:00:00 +0000',
        publishedAt: '2024-01-01T00:00:00.000Z',
        runId: 'run-1',
        files: [],
        itemCount: 0,
        totalBytes: 0,
      };
      await catalog.publish(publication, undefined);

      // Act
      const attempt = catalog.publish({ ...publication, generation: 2 }, 7);

      // Assess
      await expect(attempt).rejects.toBeInstanceOf(ConflictError);
      await expect(attempt).rejects.toThrow(/channel stable no longer points at 7/);
    });
  });

  describe('Errors', () => {
    it('reports a missing table as a configuration problem', async () => {
      // Prepare
      const missing = new DynamoCatalog({ documents: dynamoClients(dynamoConnection()).documents, table: 'no-such-table' });

      // Act
      const attempt = missing.getState('k');

      // Assess
      await expect(attempt).rejects.toBeInstanceOf(ConfigError);
      await expect(attempt).rejects.toThrow(/dynamodb:no-such-table: the table does not exist/);
    });
  });
});

describe('Class: DynamoCatalog (run expiry)', () => {
  const table = `runs-${randomUUID()}`;
  const read = (id: string) =>
    dynamoClients(dynamoConnection()).documents.send(new GetCommand({ TableName: table, Key: { PK: 'RUN', SK: id } }));

  beforeAll(async () => {
    await ensureTable(dynamoClients(dynamoConnection()).client, table);
  });

  it('turns on TTL for the expiry attribute when it creates the table', async () => {
    // Act
    const { TimeToLiveDescription: ttl } = await dynamoClients(dynamoConnection()).client.send(
      new DescribeTimeToLiveCommand({ TableName: table }),
    );

    // Assess
    expect(ttl).toMatchObject({ AttributeName: EXPIRES_AT_ATTRIBUTE, TimeToLiveStatus: 'ENABLED' });
  });

  it('gives a finished run an expiry of its finish time plus the retention once a starting run pushes it past the newest kept, and none before', async () => {
    // Prepare: keep 2; a finished run (recent, so still readable once it has an expiry) and a running one.
    const retentionMs = 90 * 86_400_000;
    const catalog = new DynamoCatalog({ documents: dynamoClients(dynamoConnection()).documents, table, runRetention: { keep: 2, retentionMs } });
    const run = { itemsCopied: 0, bytesCopied: 0, itemsPresent: 0 };
    const startedAt = new Date(Date.now() - 3_600_000).toISOString();
    const finishedAt = new Date(Date.now() - 3_000_000).toISOString();
    await catalog.putRun({ ...run, id: 'finished', state: 'succeeded', startedAt, finishedAt });
    const beforeAnotherStart = (await read('finished')).Item;

    // Act: two runs start after it; the first is still running when the second starts.
    await catalog.putRun({ ...run, id: 'running', state: 'running', startedAt: new Date(Date.now() - 60_000).toISOString() });
    await catalog.putRun({ ...run, id: 'latest', state: 'running', startedAt: new Date().toISOString() });

    // Assess
    expect(beforeAnotherStart).not.toHaveProperty(EXPIRES_AT_ATTRIBUTE);
    const finished = (await read('finished')).Item;
    expect(finished?.[EXPIRES_AT_ATTRIBUTE]).toBe(Math.floor((Date.parse(finishedAt) + retentionMs) / 1000));
    expect((await read('running')).Item).not.toHaveProperty(EXPIRES_AT_ATTRIBUTE);
    expect((await read('latest')).Item).not.toHaveProperty(EXPIRES_AT_ATTRIBUTE);
    expect(await catalog.getRun('finished')).not.toHaveProperty(EXPIRES_AT_ATTRIBUTE);
    expect((await catalog.listRuns(10)).map((r) => r.id)).toEqual(['latest', 'running', 'finished']);
  });
});

describe('Function: initCloudResources', () => {
  it('creates the bucket and the table, then finds them in place', async () => {
    // Prepare
    const options = cloudOptions({ bucket: `init-${randomUUID()}` });

    // Act
    const first = await initCloudResources(options, {});
    const second = await initCloudResources(options, {});

    // Assess
    expect(first).toEqual([
      `s3://${options.bucket}: created bucket in us-east-1`,
      expect.stringMatching(new RegExp(`^s3://${options.bucket}: .*lifecycle`)),
      `dynamodb:${options.table}: created table (on-demand; keys PK, SK; index GSI1)`,
    ]);
    expect(second).toEqual([
      `s3://${options.bucket}: bucket exists`,
      `dynamodb:${options.table}: table exists with the expected keys and indexes (ACTIVE)`,
    ]);
  });

  it('names the table and the differences when its keys are not the catalog layout', async () => {
    // Prepare
    const options = cloudOptions();
    await dynamoClients(dynamoConnection()).client.send(
      new CreateTableCommand({
        TableName: options.table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      }),
    );

    // Act
    const attempt = initCloudResources(options, {});

    // Assess
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(
      `dynamodb:${options.table}: the table exists but does not have the catalog's layout: ` +
        'table: has partition key id (S), expected partition key PK (S), sort key SK (S); index GSI1: missing',
    );
  });
});

describe('Function: openCloudBackend', () => {
  it('opens both stores on the endpoints given by the environment', async () => {
    // Prepare
    const table = `env-${randomUUID()}`;
    await initCloudResources(cloudOptions({ table }), {});
    const env = {
      AWS_ENDPOINT_URL_S3: standins().s3Endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: standins().dynamodbEndpoint,
    };

    // Act
    const backend = openCloudBackend({ bucket: BUCKET, table, prefix: 'env-test' }, env);
    const written = await backend.objects.put('items/file', Buffer.from('bytes'));
    await backend.catalog.setState('k', 'v');
    await backend.close();

    // Assess
    expect(backend.description).toBe(`s3://${BUCKET}/env-test/ + dynamodb:${table}`);
    expect(written.size).toBe(5);
    const raw = await s3Client(s3Connection()).send(new GetObjectCommand({ Bucket: BUCKET, Key: 'env-test/items/file' }));
    expect(await raw.Body?.transformToString()).toBe('bytes');
    expect(await backend.catalog.getState('k')).toBe('v');
  });

  it.each([
    [{ bucket: '', table: 't' }, /needs a bucket/],
    [{ bucket: 'b', table: '' }, /needs a table/],
    [{ bucket: 'b', table: 't', s3Endpoint: 'not a url' }, /S3 endpoint "not a url" is not a URL/],
    [{ bucket: 'b', table: 't', dynamodbEndpoint: 'ftp://x' }, /^DynamoDB endpoint ftp:\/\/x: only http:\/\/ and https:\/\/ are supported/],
    [{ bucket: 'b', table: 't', buckets: 'typo' }, /unknown cloud backend option\(s\): buckets/],
  ])('rejects the options %j', (options, message) => {
    // Act
    const attempt = () => openCloudBackend(options as never, {});

    // Assess
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(message);
  });
});

/** An S3 client of its own (not the shared one) that records each command sent and the status it got. */
function recordingS3Client(): { client: S3Client; sent: { command: string; status?: number }[] } {
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: standins().s3Endpoint,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    credentials: CREDENTIALS,
  });
  const sent: { command: string; status?: number }[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const record: { command: string; status?: number } = { command: String(context.commandName) };
      sent.push(record);
      try {
        const result = await next(args);
        record.status = (result.response as { statusCode?: number }).statusCode;
        return result;
      } catch (error) {
        record.status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        throw error;
      }
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  return { client, sent };
}

/** `size` generated bytes, then `failure`: a verifying stream that found a bad digest at the end. */
async function* failingAfter(size: number, failure: Error): ByteStream {
  const chunk = randomBytes(256 * 1024);
  for (let sent = 0; sent < size; sent += chunk.length) yield chunk.subarray(0, Math.min(chunk.length, size - sent));
  throw failure;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const collected: T[] = [];
  for await (const item of items) collected.push(item);
  return collected;
}
