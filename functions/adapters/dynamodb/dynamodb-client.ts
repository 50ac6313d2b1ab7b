/**
 * One DynamoDB client per process and connection: clients hold sockets and
 * credential caches, so every catalog (and every Lambda invocation) opened
 * with the same settings shares one.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

export interface DynamoConnection {
  /** undefined: the SDK's chain (AWS_REGION, profile, …). */
  region?: string;
  /** A non-AWS endpoint (DynamoDB Local); undefined: AWS itself. */
  endpoint?: string;
  /** Static credentials instead of the default chain (stand-ins only). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export interface DynamoClients {
  /** For table management (CreateTable, DescribeTable). */
  client: DynamoDBClient;
  /** For items, as plain JavaScript values. */
  documents: DynamoDBDocumentClient;
}

const clients = new Map<string, DynamoClients>();

export function dynamoClients(connection: DynamoConnection): DynamoClients {
  const cacheKey = JSON.stringify([connection.region, connection.endpoint, connection.credentials?.accessKeyId]);
  let cached = clients.get(cacheKey);
  if (!cached) {
    const client = new DynamoDBClient({
      ...(connection.region && { region: connection.region }),
      ...(connection.endpoint && { endpoint: connection.endpoint }),
      ...(connection.credentials && { credentials: connection.credentials }),
    });
    const documents = DynamoDBDocumentClient.from(client, {
      // Optional record fields that are unset are simply not stored.
      marshallOptions: { removeUndefinedValues: true },
    });
    cached = { client, documents };
    clients.set(cacheKey, cached);
  }
  return cached;
}
