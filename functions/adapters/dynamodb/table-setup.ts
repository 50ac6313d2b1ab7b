/**
 * `skystreams init` for DynamoDB: creates the catalog table from
 * TABLE_KEY_SCHEMA when absent; when present, checks its keys and indexes
 * match, naming every difference. Either way, finished runs expire through
 * the table's TTL on EXPIRES_AT_ATTRIBUTE.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
  type DynamoDBClient,
  type KeySchemaElement,
  type TableDescription,
} from '@aws-sdk/client-dynamodb';
import { ConfigError } from '../../core/errors.ts';
import { toDomainError } from './errors.ts';
import { EXPIRES_AT_ATTRIBUTE } from './items.ts';
import { TABLE_KEY_SCHEMA, type KeyAttribute, type TableDesign } from './table-design.ts';

const CREATE_WAIT_SECONDS = 300;

/** Returns what it did, one human-readable line per step. */
export async function ensureTable(client: DynamoDBClient, table: string): Promise<string[]> {
  const where = `dynamodb:${table}`;
  const existing = await describeTable(client, table);
  if (existing) {
    const differences = tableDifferences(existing, TABLE_KEY_SCHEMA);
    if (differences.length > 0) {
      throw new ConfigError(`${where}: the table exists but does not have the catalog's layout: ${differences.join('; ')}`);
    }
    const found = `${where}: table exists with the expected keys and indexes (${existing.TableStatus})`;
    return (await enableExpiry(client, table)) ? [found, `${where}: turned on expiry of finished runs (TTL on ${EXPIRES_AT_ATTRIBUTE})`] : [found];
  }

  try {
    await client.send(new CreateTableCommand(createTableInput(table, TABLE_KEY_SCHEMA)));
  } catch (error) {
    // Another `init` created it meanwhile: check what it made instead.
    if ((error as { name?: string }).name === 'ResourceInUseException') return ensureTable(client, table);
    throw toDomainError(error, where);
  }
  await waitUntilTableExists({ client, maxWaitTime: CREATE_WAIT_SECONDS }, { TableName: table });
  await enableExpiry(client, table);
  const indexes = TABLE_KEY_SCHEMA.globalSecondaryIndexes.map((index) => index.indexName).join(', ');
  return [`${where}: created table (on-demand; keys PK, SK; index ${indexes})`];
}

/** Turns TTL on unless it is on (or turning on) already; says whether it changed anything. */
async function enableExpiry(client: DynamoDBClient, table: string): Promise<boolean> {
  try {
    const { TimeToLiveDescription: ttl } = await client.send(new DescribeTimeToLiveCommand({ TableName: table }));
    if (ttl?.AttributeName === EXPIRES_AT_ATTRIBUTE && (ttl.TimeToLiveStatus === 'ENABLED' || ttl.TimeToLiveStatus === 'ENABLING')) return false;
    await client.send(
      new UpdateTimeToLiveCommand({ TableName: table, TimeToLiveSpecification: { AttributeName: EXPIRES_AT_ATTRIBUTE, Enabled: true } }),
    );
    return true;
  } catch (error) {
    throw toDomainError(error, `dynamodb:${table}`);
  }
}

async function describeTable(client: DynamoDBClient, table: string): Promise<TableDescription | undefined> {
  try {
    return (await client.send(new DescribeTableCommand({ TableName: table }))).Table;
  } catch (error) {
    if ((error as { name?: string }).name === 'ResourceNotFoundException') return undefined;
    throw toDomainError(error, `dynamodb:${table}`);
  }
}

function createTableInput(table: string, design: TableDesign) {
  const keyAttributes = [
    design.partitionKey,
    design.sortKey,
    ...design.globalSecondaryIndexes.flatMap((index) => [index.partitionKey, index.sortKey]),
  ];
  return {
    TableName: table,
    BillingMode: design.billingMode,
    AttributeDefinitions: keyAttributes.map((attribute) => ({
      AttributeName: attribute.name,
      AttributeType: attribute.type,
    })),
    KeySchema: keySchema(design.partitionKey, design.sortKey),
    GlobalSecondaryIndexes: design.globalSecondaryIndexes.map((index) => ({
      IndexName: index.indexName,
      KeySchema: keySchema(index.partitionKey, index.sortKey),
      Projection: { ProjectionType: index.projectionType },
    })),
  };
}

function keySchema(partitionKey: KeyAttribute, sortKey: KeyAttribute): KeySchemaElement[] {
  return [
    { AttributeName: partitionKey.name, KeyType: 'HASH' },
    { AttributeName: sortKey.name, KeyType: 'RANGE' },
  ];
}

/** Human-readable differences between a table and the design; extra indexes are fine. */
export function tableDifferences(table: TableDescription, design: TableDesign): string[] {
  const typeOf = new Map((table.AttributeDefinitions ?? []).map((d) => [d.AttributeName, d.AttributeType]));
  const differences: string[] = [];
  const compareKeys = (where: string, actual: KeySchemaElement[] | undefined, partition: KeyAttribute, sort: KeyAttribute) => {
    const wanted = `partition key ${partition.name} (${partition.type}), sort key ${sort.name} (${sort.type})`;
    const found = (actual ?? [])
      .map((element) => `${element.KeyType === 'HASH' ? 'partition' : 'sort'} key ${element.AttributeName} (${typeOf.get(element.AttributeName ?? '') ?? '?'})`)
      .join(', ');
    if (found !== wanted) differences.push(`${where}: has ${found || 'no keys'}, expected ${wanted}`);
  };

  compareKeys('table', table.KeySchema, design.partitionKey, design.sortKey);
  for (const index of design.globalSecondaryIndexes) {
    const actual = table.GlobalSecondaryIndexes?.find((candidate) => candidate.IndexName === index.indexName);
    if (!actual) {
      differences.push(`index ${index.indexName}: missing`);
      continue;
    }
    compareKeys(`index ${index.indexName}`, actual.KeySchema, index.partitionKey, index.sortKey);
    const projection = actual.Projection?.ProjectionType;
    if (projection !== index.projectionType) {
      differences.push(`index ${index.indexName}: projects ${projection ?? 'nothing'}, expected ${index.projectionType}`);
    }
  }
  return differences;
}
