/**
 * BatchWriteItem for any number of puts or deletes: chunks of 25 (the API's
 * limit), a few chunks in flight at once, and UnprocessedItems (what
 * DynamoDB sends back when throttled) retried with jittered exponential
 * backoff until done or out of attempts.
 */
import { BatchWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { UnavailableError } from '../../core/errors.ts';
import { toDomainError } from './errors.ts';
import type { Item, ItemKey } from './items.ts';

export type WriteRequest = { PutRequest: { Item: Item } } | { DeleteRequest: { Key: ItemKey } };

/** BatchWriteItem takes at most 25 requests. */
export const BATCH_SIZE = 25;
const CHUNKS_IN_FLIGHT = 4;
const MAX_ATTEMPTS = 10;
const BASE_DELAY_MS = 25;
const MAX_DELAY_MS = 2_000;

export async function batchWrite(
  documents: DynamoDBDocumentClient,
  table: string,
  requests: readonly WriteRequest[],
): Promise<void> {
  const chunks: WriteRequest[][] = [];
  const unique = uniqueByKey(requests);
  for (let start = 0; start < unique.length; start += BATCH_SIZE) chunks.push(unique.slice(start, start + BATCH_SIZE));
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      const chunk = chunks[next++];
      if (chunk) await writeChunk(documents, table, chunk);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CHUNKS_IN_FLIGHT, chunks.length) }, worker));
}

async function writeChunk(
  documents: DynamoDBDocumentClient,
  table: string,
  chunk: WriteRequest[],
): Promise<void> {
  let pending: WriteRequest[] = chunk;
  for (let attempt = 1; ; attempt++) {
    const response = await documents
      .send(new BatchWriteCommand({ RequestItems: { [table]: pending } }))
      .catch((error: unknown) => {
        throw toDomainError(error, `dynamodb:${table}`);
      });
    pending = (response.UnprocessedItems?.[table] ?? []) as WriteRequest[];
    if (pending.length === 0) return;
    if (attempt >= MAX_ATTEMPTS) {
      throw new UnavailableError(
        `dynamodb:${table}: ${pending.length} writes still unprocessed after ${MAX_ATTEMPTS} attempts (throttled)`,
      );
    }
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
    await sleep(Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One batch may not touch a key twice; the last request for a key wins, as sequential writes would. */
function uniqueByKey(requests: readonly WriteRequest[]): WriteRequest[] {
  const byKey = new Map<string, WriteRequest>();
  for (const request of requests) {
    const key = 'PutRequest' in request ? request.PutRequest.Item : request.DeleteRequest.Key;
    const id = JSON.stringify([key.PK, key.SK]);
    byKey.delete(id);
    byKey.set(id, request);
  }
  return [...byKey.values()];
}
