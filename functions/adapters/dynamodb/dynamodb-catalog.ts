/**
 * Catalog in one DynamoDB table (single-table design: table-design.ts for
 * the keys, docs/cloud-backend.md for the item shapes and access patterns).
 *
 * Every read of the base table is strongly consistent, so a sync run always
 * sees its own writes and the latest pointer. Only `listRuns` reads a GSI,
 * which DynamoDB keeps eventually consistent (typically within a second).
 */
import {
  DeleteCommand,
  GetCommand,
  UpdateCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ConflictError, LeaseLostError, LockHeldError, UnavailableError } from '../../core/errors.ts';
import { DEFAULT_CHANNEL, type Catalog, type CatalogEntry, type Channel, type Fence, type PackageManifest, type Lease, type Publication, type StoredObject, type SyncRun } from '../../core/ports.ts';
import { pointedAt } from '../../core/channels.ts';
import { batchWrite } from './batch-write.ts';
import { cancellationReasons, isConditionalCheckFailure, isTransactionConflict, toDomainError } from './errors.ts';
import {
  channelItem,
  EXPIRES_AT_ATTRIBUTE,
  entriesPartition,
  entryItem,
  hasExpired,
  keyAttributesOf,
  keyOf,
  manifestItems,
  manifestPartition,
  objectItem,
  partitionOf,
  publicationItem,
  runExpiry,
  runItem,
  toCatalogEntry,
  toChannel,
  toPackageManifest,
  toPublication,
  toStoredObject,
  toSyncRun,
  type Item,
  type ItemKey,
} from './items.ts';
import { RUNS_BY_TIME_INDEX } from './table-design.ts';
import { syncDefaults, type RunRetention } from '../../core/settings.ts';

/** A transaction that collides with a concurrent one is retried this often before giving up as unavailable. */
const TRANSACTION_ATTEMPTS = 6;
/** Entry keys read per query while deleting a generation. */
const DELETE_PAGE_SIZE = 1_000;
/** Attempts at taking a lock whose holder let go between our write and our look at it. */
const LOCK_ATTEMPTS = 3;
/** The state item holding the highest generation number handed out. */
const GENERATION_COUNTER = 'generation-counter';

export interface DynamoCatalogOptions {
  documents: DynamoDBDocumentClient;
  table: string;
  /** @default syncDefaults.runRetention */
  runRetention?: RunRetention;
}

/** Runs past the newest kept that a starting run looks at for ones still without an expiry. */
const RUNS_TO_EXPIRE_PER_START = 25;

export class DynamoCatalog implements Catalog {
  readonly table: string;
  private readonly documents: DynamoDBDocumentClient;

  private readonly runRetention: RunRetention;

  constructor(options: DynamoCatalogOptions) {
    this.documents = options.documents;
    this.table = options.table;
    this.runRetention = options.runRetention ?? syncDefaults.runRetention;
  }

  // ---------------------------------------------------------------- objects

  async getObject(path: string): Promise<StoredObject | undefined> {
    const item = await this.getItem(keyOf.object(path));
    return item && toStoredObject(item);
  }

  async recordObject(object: StoredObject, fence?: Fence): Promise<void> {
    await this.write(`record ${object.path}`, fence, { Put: { TableName: this.table, Item: objectItem(object) } });
  }

  async forgetObject(path: string, fence?: Fence): Promise<void> {
    await this.write(`forget ${path}`, fence, { Delete: { TableName: this.table, Key: keyOf.object(path) } });
  }

  async *listObjects(): AsyncIterable<StoredObject> {
    for await (const item of this.query(partitionQuery(partitionOf.objects))) yield toStoredObject(item);
  }

  // ---------------------------------------------------------------- publications

  async getCurrent(channel = DEFAULT_CHANNEL): Promise<Publication | undefined> {
    // The pointer item carries a copy of the publication, so serving needs one read.
    const item = await this.getItem(keyOf.channel(channel));
    return item && toPublication(item);
  }

  async getPublication(generation: number): Promise<Publication | undefined> {
    const item = await this.getItem(keyOf.publication(generation));
    return item && toPublication(item);
  }

  async listPublications(): Promise<Publication[]> {
    const publications: Publication[] = [];
    const newestFirst = { ...partitionQuery(partitionOf.publications), ScanIndexForward: false };
    for await (const item of this.query(newestFirst)) publications.push(toPublication(item));
    return publications;
  }

  async reserveGeneration(fence?: Fence): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      const counter = await this.getItem(keyOf.state(GENERATION_COUNTER));
      const [newest] = await this.listPublications();
      const previous = counter === undefined ? undefined : Number(counter.value);
      const next = Math.max(previous ?? 0, newest?.generation ?? 0) + 1;
      const unchanged =
        previous === undefined
          ? { ConditionExpression: 'attribute_not_exists(PK)' }
          : { ConditionExpression: '#value = :previous', ExpressionAttributeNames: { '#value': 'value' }, ExpressionAttributeValues: { ':previous': String(previous) } };
      try {
        await this.write(`reserve generation ${next}`, fence, {
          Put: { TableName: this.table, Item: { ...keyOf.state(GENERATION_COUNTER), value: String(next) }, ...unchanged },
        });
        return next;
      } catch (error) {
        // Another reservation got in between: read the counter again.
        if (!(error instanceof ConflictError) || error instanceof LeaseLostError || attempt >= LOCK_ATTEMPTS) throw error;
      }
    }
  }

  /**
   * BatchWriteItem takes no conditions, so the fence is checked before each
   * batch rather than with it: a run fenced out in between can only add
   * entries to its own reserved generation, which is never published.
   */
  async putEntries(generation: number, entries: readonly CatalogEntry[], fence?: Fence): Promise<void> {
    if (fence) await this.assertFence(fence);
    const requests = entries.map((entry) => ({ PutRequest: { Item: entryItem(generation, entry) } }));
    await batchWrite(this.documents, this.table, requests);
  }

  async *listEntries(generation: number): AsyncIterable<CatalogEntry> {
    for await (const item of this.query(partitionQuery(entriesPartition(generation)))) yield toCatalogEntry(item);
  }

  async publish(next: Publication, expectedCurrent: number | undefined, fence?: Fence, channel = DEFAULT_CHANNEL): Promise<void> {
    const pointer = await this.getChannel(channel);
    const what = `publish generation ${next.generation} to channel ${channel} over ${expectedCurrent ?? 'none'}`;
    const moved = `channel ${channel} no longer points at ${expectedCurrent ?? 'nothing'}`;
    if (pointer?.generation !== expectedCurrent) {
      // A run that lost its lease must learn that first, as the transaction would tell it.
      if (fence) await this.assertFence(fence);
      throw new ConflictError(`${this.describe(what)}: ${moved}`);
    }
    await this.transact(what, [`generation ${next.generation} already exists`, moved], fence, {
      TransactItems: [
        {
          Put: {
            TableName: this.table,
            Item: publicationItem(next, keyOf.publication(next.generation)),
            ConditionExpression: 'attribute_not_exists(PK)',
          },
        },
        {
          Put: {
            TableName: this.table,
            Item: channelItem(pointedAt(pointer, channel, next.generation), (pointer?.revision ?? 0) + 1, next),
            ...revisionCondition(pointer?.revision, pointer === undefined),
          },
        },
      ],
    });
  }

  async listChannels(): Promise<Channel[]> {
    const channels: Channel[] = [];
    for await (const item of this.query(partitionQuery(partitionOf.channels))) channels.push(toChannel(item));
    return channels.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async getChannel(name: string): Promise<Channel | undefined> {
    const item = await this.getItem(keyOf.channel(name));
    return item && toChannel(item);
  }

  async setChannel(next: Omit<Channel, 'revision'>, expectedRevision: number | undefined, fence?: Fence): Promise<void> {
    const publication = await this.getPublication(next.generation);
    const gone = `generation ${next.generation} is not published (any more): channel ${next.name} cannot point at it`;
    if (!publication) {
      if (fence) await this.assertFence(fence);
      throw new ConflictError(gone);
    }
    const what = `point channel ${next.name} at generation ${next.generation}`;
    await this.transact(what, [gone, `channel ${next.name} changed since it was read: read it again`], fence, {
      TransactItems: [
        { ConditionCheck: { TableName: this.table, Key: keyOf.publication(next.generation), ConditionExpression: 'attribute_exists(PK)' } },
        {
          Put: {
            TableName: this.table,
            Item: channelItem(next, (expectedRevision ?? 0) + 1, publication),
            ...revisionCondition(expectedRevision, expectedRevision === undefined),
          },
        },
      ],
    });
  }

  async deletePublication(generation: number, fence?: Fence): Promise<void> {
    const channels = await this.listChannels();
    const pointing = channels.find((channel) => channel.generation === generation);
    if (pointing) {
      if (fence) await this.assertFence(fence);
      throw new ConflictError(`generation ${generation} is current in channel ${pointing.name} and cannot be deleted`);
    }
    // Each channel re-checked in the transaction: a switch in between fails it instead of leaving a channel on nothing.
    const unchanged = channels.map((channel) => ({
      ConditionCheck: {
        TableName: this.table,
        Key: keyOf.channel(channel.name),
        ConditionExpression: 'generation <> :generation',
        ExpressionAttributeValues: { ':generation': generation },
      },
    }));
    await this.transact(
      `delete generation ${generation}`,
      [...channels.map((channel) => `generation ${generation} became current in channel ${channel.name}`)],
      fence,
      { TransactItems: [...unchanged, { Delete: { TableName: this.table, Key: keyOf.publication(generation) } }] },
    );
    // The record goes first: a generation without its record is never served, whatever entries remain.
    await this.deleteEntries(generation);
  }

  /**
   * Deletes a generation's entries a page of keys at a time, each page read
   * afresh from the start of the partition: what was deleted is gone, so no
   * cursor is needed, and memory stays at one page whatever the generation's size.
   */
  private async deleteEntries(generation: number): Promise<void> {
    for (;;) {
      const page = await this.call(
        this.documents.send(
          new QueryCommand({
            ...partitionQuery(entriesPartition(generation)),
            TableName: this.table,
            ProjectionExpression: 'PK, SK',
            ConsistentRead: true,
            Limit: DELETE_PAGE_SIZE,
          }),
        ),
      );
      const keys = (page.Items ?? []).map(keyAttributesOf);
      if (keys.length === 0) return;
      await batchWrite(this.documents, this.table, keys.map((Key) => ({ DeleteRequest: { Key } })));
    }
  }

  // ---------------------------------------------------------------- runs

  /**
   * As a run starts (is put `running`), the finished runs it pushes past the
   * newest kept get an expiry (the table's TTL): the retention after they
   * finished. Runs among the newest kept have none, so they never expire.
   */
  async putRun(run: SyncRun, fence?: Fence): Promise<void> {
    await this.write(`record run ${run.id}`, fence, { Put: { TableName: this.table, Item: runItem(run) } });
    if (run.state === 'running') await this.expireRunsPastKept();
  }

  async getRun(id: string): Promise<SyncRun | undefined> {
    const item = await this.getItem(keyOf.run(id));
    return item && !hasExpired(item, new Date()) ? toSyncRun(item) : undefined;
  }

  /**
   * Gives an expiry to the finished runs just past the newest kept that have
   * none. Each start pushes runs down one place, so looking a little past
   * the kept ones finds every run that needs one (also a run that finished
   * after it was pushed past them).
   */
  private async expireRunsPastKept(): Promise<void> {
    const { keep, retentionMs } = this.runRetention;
    const newestFirst = runsNewestFirst(this.table, keep + RUNS_TO_EXPIRE_PER_START);
    let position = 0;
    for await (const item of this.query(newestFirst)) {
      if (position++ >= keep + RUNS_TO_EXPIRE_PER_START) break;
      if (position <= keep || item[EXPIRES_AT_ATTRIBUTE] !== undefined) continue;
      const expiresAt = runExpiry(item, retentionMs);
      if (expiresAt === undefined) continue;
      try {
        await this.documents.send(
          new UpdateCommand({
            TableName: this.table,
            Key: keyAttributesOf(item),
            UpdateExpression: 'SET #expiresAt = :expiresAt',
            // Only a run still recorded: an expiry must not create a stub of a run deleted meanwhile.
            ConditionExpression: 'attribute_exists(PK)',
            ExpressionAttributeNames: { '#expiresAt': EXPIRES_AT_ATTRIBUTE },
            ExpressionAttributeValues: { ':expiresAt': expiresAt },
          }),
        );
      } catch (error) {
        if (!isConditionalCheckFailure(error)) throw toDomainError(error, this.describe(`expire run ${String(item.SK)}`));
      }
    }
  }

  async listRuns(limit: number): Promise<SyncRun[]> {
    const runs: SyncRun[] = [];
    if (limit <= 0) return runs;
    const newestFirst = runsNewestFirst(this.table, limit);
    const now = new Date();
    for await (const item of this.query(newestFirst)) {
      if (hasExpired(item, now)) continue;
      runs.push(toSyncRun(item));
      if (runs.length >= limit) break;
    }
    return runs;
  }

  // ---------------------------------------------------------------- locks

  async acquireLock(name: string, owner: string, ttlMs: number, now: Date, evict?: string): Promise<Lease> {
    for (let attempt = 1; ; attempt++) {
      const held = await this.getItem(keyOf.lock(name));
      const free =
        !held || held.owner === '' || Number(held.expiresAtMs) <= now.getTime() || (evict !== undefined && held.owner === evict);
      if (held && !free) throw new LockHeldError(String(held.owner), String(held.expiresAt));
      const epoch = Number(held?.epoch ?? 0) + 1;
      const expiresAt = new Date(now.getTime() + ttlMs);
      try {
        await this.documents.send(
          new PutCommand({
            TableName: this.table,
            Item: { ...keyOf.lock(name), owner, epoch, expiresAt: expiresAt.toISOString(), expiresAtMs: expiresAt.getTime() },
            // Exactly the row we judged free: a concurrent taker bumps the epoch and makes this fail.
            ...(held
              ? {
                  ConditionExpression: '#owner = :owner AND (attribute_not_exists(epoch) OR epoch = :epoch)',
                  ExpressionAttributeNames: { '#owner': 'owner' },
                  ExpressionAttributeValues: { ':owner': held.owner, ':epoch': held.epoch ?? 0 },
                }
              : { ConditionExpression: 'attribute_not_exists(PK)' }),
          }),
        );
        return { name, owner, epoch, expiresAt: expiresAt.toISOString() };
      } catch (error) {
        if (!isConditionalCheckFailure(error)) throw toDomainError(error, this.describe(`lock ${name}`));
      }
      if (attempt >= LOCK_ATTEMPTS) {
        throw new UnavailableError(`${this.describe(`lock ${name}`)}: changed hands ${attempt} times while taking it`);
      }
    }
  }

  async renewLock(lease: Fence, ttlMs: number, now: Date): Promise<Lease> {
    const expiresAt = new Date(now.getTime() + ttlMs);
    const renewed = await this.updateHeldLock(lease, 'SET expiresAt = :expiresAt, expiresAtMs = :expiresAtMs', {
      ':expiresAt': expiresAt.toISOString(),
      ':expiresAtMs': expiresAt.getTime(),
    });
    if (!renewed) throw new LeaseLostError(lease.owner, lease.epoch);
    return { ...lease, expiresAt: expiresAt.toISOString() };
  }

  async getLock(name: string): Promise<Lease | undefined> {
    const held = await this.getItem(keyOf.lock(name));
    if (!held || held.owner === '') return undefined;
    return { name, owner: String(held.owner), epoch: Number(held.epoch ?? 0), expiresAt: String(held.expiresAt) };
  }

  async releaseLock(lease: Fence): Promise<void> {
    // The row stays, so the next holder's epoch is still one higher.
    await this.updateHeldLock(lease, 'SET #owner = :free, expiresAtMs = :zero REMOVE expiresAt', { ':free': '', ':zero': 0 });
  }

  /** Updates the lock item while it still has the lease's owner and epoch; false when it no longer has. */
  private async updateHeldLock(lease: Fence, update: string, values: Record<string, unknown>): Promise<boolean> {
    const condition = fenceCondition(lease);
    try {
      await this.documents.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keyOf.lock(lease.name),
          UpdateExpression: update,
          ...condition,
          ExpressionAttributeValues: { ...condition.ExpressionAttributeValues, ...values },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailure(error)) return false;
      throw toDomainError(error, this.describe(`lock ${lease.name}`));
    }
  }

  // ---------------------------------------------------------------- package manifests

  /**
   * The parts after the first go first (checked against the fence before,
   * as putEntries does), then part 0, fenced: a reader sees the record only
   * once every part it counts is there.
   */
  async putManifest(manifest: PackageManifest, fence?: Fence): Promise<void> {
    const [head, ...rest] = manifestItems(manifest);
    if (rest.length > 0) {
      if (fence) await this.assertFence(fence);
      await batchWrite(this.documents, this.table, rest.map((Item) => ({ PutRequest: { Item } })));
    }
    await this.write(`index manifest ${manifest.path}`, fence, { Put: { TableName: this.table, Item: head! } });
  }

  async getManifest(sha256: string): Promise<PackageManifest | undefined> {
    const items: Item[] = [];
    for await (const item of this.query(partitionQuery(manifestPartition(sha256)))) items.push(item);
    return toPackageManifest(items);
  }

  /** Part 0 goes first, fenced: from then on the record reads as absent, whatever parts remain. */
  async forgetManifest(sha256: string, fence?: Fence): Promise<void> {
    const keys: ItemKey[] = [];
    const partsOnly = { ...partitionQuery(manifestPartition(sha256)), ProjectionExpression: 'PK, SK' };
    for await (const item of this.query(partsOnly)) keys.push(keyAttributesOf(item));
    const [head, ...rest] = keys;
    if (!head) return;
    await this.write(`forget manifest ${sha256}`, fence, { Delete: { TableName: this.table, Key: head } });
    await batchWrite(this.documents, this.table, rest.map((Key) => ({ DeleteRequest: { Key } })));
  }

  // ---------------------------------------------------------------- state

  async getState(key: string): Promise<string | undefined> {
    const item = await this.getItem(keyOf.state(key));
    return item && String(item.value);
  }

  async setState(key: string, value: string, fence?: Fence): Promise<void> {
    await this.write(`set ${key}`, fence, { Put: { TableName: this.table, Item: { ...keyOf.state(key), value } } });
  }

  // ---------------------------------------------------------------- plumbing

  /** `dynamodb:table`, for messages. */
  describe(what?: string): string {
    return what ? `dynamodb:${this.table} ${what}` : `dynamodb:${this.table}`;
  }

  private async getItem(key: ItemKey): Promise<Item | undefined> {
    const response = await this.call(
      this.documents.send(new GetCommand({ TableName: this.table, Key: key, ConsistentRead: true })),
    );
    return response.Item;
  }

  /** Every item a query matches, across all pages. */
  private async *query(input: Omit<QueryCommandInput, 'TableName'>): AsyncIterable<Item> {
    const consistent = input.IndexName === undefined;
    let exclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.call(
        this.documents.send(
          new QueryCommand({
            ...input,
            TableName: this.table,
            ...(consistent && { ConsistentRead: true }),
            ...(exclusiveStartKey && { ExclusiveStartKey: exclusiveStartKey }),
          }),
        ),
      );
      for (const item of page.Items ?? []) yield item;
      exclusiveStartKey = page.LastEvaluatedKey;
    } while (exclusiveStartKey);
  }

  /** One write, alone or (fenced) in a transaction with a check of the lease. */
  private async write(what: string, fence: Fence | undefined, action: WriteAction): Promise<void> {
    if (fence) {
      await this.transact(what, ['its condition failed'], fence, { TransactItems: [action] });
      return;
    }
    try {
      if (action.Put) await this.documents.send(new PutCommand(action.Put));
      else if (action.Delete) await this.documents.send(new DeleteCommand(action.Delete));
    } catch (error) {
      if (isConditionalCheckFailure(error)) throw new ConflictError(`${this.describe(what)}: its condition failed`, { cause: error });
      throw toDomainError(error, this.describe(what));
    }
  }

  /** A consistent read of the lock: LeaseLostError unless it still has the fence's owner and epoch. */
  private async assertFence(fence: Fence): Promise<void> {
    const held = await this.getItem(keyOf.lock(fence.name));
    if (held?.owner !== fence.owner || Number(held.epoch ?? 0) !== fence.epoch) {
      throw new LeaseLostError(fence.owner, fence.epoch);
    }
  }

  /**
   * A transaction lost to a concurrent one touching the same item
   * (TransactionConflict) is tried again: the retry then either succeeds or
   * fails its condition, which is the answer the caller needs.
   */
  private async transact(
    what: string,
    /** Why each action's condition may fail, in TransactItems order. */
    refusals: readonly string[],
    fence: Fence | undefined,
    input: TransactWriteCommandInput,
  ): Promise<void> {
    const items = input.TransactItems ?? [];
    const fenced: TransactWriteCommandInput = fence
      ? { ...input, TransactItems: [...items, { ConditionCheck: { TableName: this.table, Key: keyOf.lock(fence.name), ...fenceCondition(fence) } }] }
      : input;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.documents.send(new TransactWriteCommand(fenced));
        return;
      } catch (error) {
        if (isConditionalCheckFailure(error)) {
          const reasons = cancellationReasons(error);
          if (fence && reasons[items.length] === 'ConditionalCheckFailed') {
            throw new LeaseLostError(fence.owner, fence.epoch);
          }
          const why = refusals.filter((_, index) => reasons[index] === 'ConditionalCheckFailed').join('; ');
          throw new ConflictError(`${this.describe(what)}: ${why || 'a condition failed'}`, { cause: error });
        }
        if (!isTransactionConflict(error) || attempt >= TRANSACTION_ATTEMPTS) {
          throw toDomainError(error, this.describe(what));
        }
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * 2 ** attempt));
      }
    }
  }

  /** Awaits a request, translating its failure into a domain error. */
  private async call<T>(request: Promise<T>): Promise<T> {
    try {
      return await request;
    } catch (error) {
      throw toDomainError(error, this.describe());
    }
  }
}

type WriteAction = {
  Put?: NonNullable<NonNullable<TransactWriteCommandInput['TransactItems']>[number]['Put']>;
  Delete?: NonNullable<NonNullable<TransactWriteCommandInput['TransactItems']>[number]['Delete']>;
};

/** The lock item still has the fence's owner and epoch. */
function fenceCondition(fence: Fence) {
  return {
    ConditionExpression: '#owner = :fenceOwner AND epoch = :fenceEpoch',
    ExpressionAttributeNames: { '#owner': 'owner' },
    ExpressionAttributeValues: { ':fenceOwner': fence.owner, ':fenceEpoch': fence.epoch } as Record<string, unknown>,
  };
}

/**
 * A channel item is written only over the revision read: `absent` for a
 * channel not created yet. Items from before channels have no revision (0).
 */
function revisionCondition(revision: number | undefined, absent: boolean) {
  if (absent) return { ConditionExpression: 'attribute_not_exists(PK)' };
  if (!revision) return { ConditionExpression: 'attribute_exists(PK) AND attribute_not_exists(revision)' };
  return { ConditionExpression: 'revision = :revision', ExpressionAttributeValues: { ':revision': revision } as Record<string, unknown> };
}

/** The runs-by-time index, newest first, `limit` to a page. */
function runsNewestFirst(table: string, limit: number): QueryCommandInput {
  return {
    TableName: table,
    IndexName: RUNS_BY_TIME_INDEX,
    KeyConditionExpression: 'GSI1PK = :pk',
    ExpressionAttributeValues: { ':pk': partitionOf.runs },
    ScanIndexForward: false,
    Limit: limit,
  };
}

function partitionQuery(partition: string): Omit<QueryCommandInput, 'TableName'> {
  return {
    KeyConditionExpression: 'PK = :pk',
    ExpressionAttributeValues: { ':pk': partition },
  };
}
