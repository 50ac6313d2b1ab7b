/**
 * The cloud backend: objects in an S3 bucket, catalog in a DynamoDB table.
 * `openCloudBackend` for the CLI and the Lambda handlers, and
 * `initCloudResources` for `skystreams init`. See docs/cloud-backend.md.
 *
 * Endpoints come from the options, else from the SDK's own variables
 * AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL. The SDK
 * would read those by itself, but a custom endpoint also needs path-style
 * buckets and plain (not aws-chunked) uploads, so they are resolved here.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigError } from '../core/errors.ts';
import type { Backend } from '../core/ports.ts';
import { httpUrl } from '../core/settings.ts';
import { DynamoCatalog } from './dynamodb/dynamodb-catalog.ts';
import { dynamoClients, type DynamoConnection } from './dynamodb/dynamodb-client.ts';
import { ensureTable } from './dynamodb/table-setup.ts';
import { ensureBucket } from './s3/bucket-setup.ts';
import { s3Client, type S3Connection } from './s3/s3-client.ts';
import { S3ObjectStore } from './s3/s3-object-store.ts';
import { SecretsManagerSigningKeys } from './secrets/secrets-manager-signing-keys.ts';

export interface CloudBackendOptions {
  bucket: string;
  table: string;
  /** @default the SDK chain (AWS_REGION, profile); us-east-1 with a custom endpoint and no region set */
  region?: string;
  /** @default AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS */
  s3Endpoint?: string;
  /** @default AWS_ENDPOINT_URL_DYNAMODB, else AWS_ENDPOINT_URL, else AWS */
  dynamodbEndpoint?: string;
  /** Prepended to every object key (`mirror/` puts items at `mirror/items/…`). @default '' */
  prefix?: string;
  /** The Secrets Manager secret (ARN or name) holding the mirror's signing keys, for re-signed mode. @default none */
  signingSecret?: string;
}

type Environment = Readonly<Record<string, string | undefined>>;

const OPTION_NAMES = new Set(['bucket', 'table', 'region', 's3Endpoint', 'dynamodbEndpoint', 'prefix', 'signingSecret']);
/** Endpoints on this machine are stand-ins, which accept any credentials. */
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
// DynamoDB Local accepts access keys of letters and digits only.
const STAND_IN_CREDENTIALS = { accessKeyId: 'skystreams', secretAccessKey: 'skystreams' };

/** Sees an SDK client a backend is opened on: how a caller adds middleware (test/handlers/iam.test.ts records every call). */
export type ClientHook = (client: S3Client | DynamoDBClient | SecretsManagerClient) => void;

export interface CloudClientOptions {
  /**
   * Each gets every SDK client the backend uses, when the backend is opened
   * (the Secrets Manager client when first used). The clients are shared by
   * every backend of the process, so a hook sees them again on each open: a
   * hook that must act once per client keeps its own record.
   * @default none
   */
  clientHooks?: readonly ClientHook[];
}

export function openCloudBackend(options: CloudBackendOptions, env: Environment = process.env, { clientHooks = [] }: CloudClientOptions = {}): Backend {
  const settings = resolveSettings(options, env);
  const hooked = <T extends S3Client | DynamoDBClient | SecretsManagerClient>(client: T): T => {
    for (const hook of clientHooks) hook(client);
    return client;
  };
  const objects = new S3ObjectStore({
    client: hooked(s3Client(settings.s3)),
    bucket: options.bucket,
    prefix: options.prefix ?? '',
  });
  const dynamo = dynamoClients(settings.dynamodb);
  hooked(dynamo.client);
  const catalog = new DynamoCatalog({ documents: dynamo.documents, table: options.table });
  return {
    objects,
    catalog,
    description: `${objects.describe('')} + ${catalog.describe()}`,
    ...(options.signingSecret && { signingKeys: new SecretsManagerSigningKeys({ secretId: options.signingSecret, onClient: hooked }) }),
    // The SDK clients are shared by every backend in this process, so there is nothing of ours to close.
    close: async () => undefined,
  };
}

/** Creates the bucket and the table where absent, checks them where present; returns what it did. */
export async function initCloudResources(
  options: CloudBackendOptions,
  env: Environment = process.env,
  { clientHooks = [] }: CloudClientOptions = {},
): Promise<string[]> {
  const settings = resolveSettings(options, env);
  const s3 = s3Client(settings.s3);
  const dynamodb = dynamoClients(settings.dynamodb).client;
  for (const hook of clientHooks) {
    hook(s3);
    hook(dynamodb);
  }
  const [bucketLines, tableLines] = await Promise.all([ensureBucket(s3, options.bucket), ensureTable(dynamodb, options.table)]);
  return [...bucketLines, ...tableLines];
}

interface Settings {
  s3: S3Connection;
  dynamodb: DynamoConnection;
}

function resolveSettings(options: CloudBackendOptions, env: Environment): Settings {
  const unknown = Object.keys(options).filter((name) => !OPTION_NAMES.has(name));
  if (unknown.length > 0) throw new ConfigError(`unknown cloud backend option(s): ${unknown.join(', ')}`);
  if (!options.bucket) throw new ConfigError('the cloud backend needs a bucket');
  if (!options.table) throw new ConfigError('the cloud backend needs a table');

  const s3Endpoint = endpointUrl('S3', options.s3Endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL);
  const dynamodbEndpoint = endpointUrl(
    'DynamoDB',
    options.dynamodbEndpoint ?? env.AWS_ENDPOINT_URL_DYNAMODB ?? env.AWS_ENDPOINT_URL,
  );
  const connection = (endpoint: URL | undefined) => ({
    region: options.region || env.AWS_REGION || (endpoint ? 'us-east-1' : undefined),
    endpoint: endpoint?.href.replace(/\/$/, ''),
    credentials: endpoint && isStandIn(endpoint, env) ? STAND_IN_CREDENTIALS : undefined,
  });
  return { s3: connection(s3Endpoint), dynamodb: connection(dynamodbEndpoint) };
}

function endpointUrl(service: string, value: string | undefined): URL | undefined {
  if (!value) return undefined;
  return httpUrl(value, (problem) => {
    throw new ConfigError(`${service} endpoint ${problem}`);
  });
}

/** A loopback endpoint with no credentials configured: give the stand-in dummy ones rather than probe for real ones. */
function isStandIn(endpoint: URL, env: Environment): boolean {
  const configured = env.AWS_ACCESS_KEY_ID || env.AWS_PROFILE || env.AWS_WEB_IDENTITY_TOKEN_FILE;
  return LOOPBACK_HOSTS.has(endpoint.hostname) && !configured;
}
