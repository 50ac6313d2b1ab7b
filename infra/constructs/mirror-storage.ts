import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { entriesPartition, EXPIRES_AT_ATTRIBUTE, keyOf, manifestPartition, partitionOf } from '../../functions/adapters/dynamodb/items.ts';
import { RUNS_BY_TIME_INDEX, TABLE_KEY_SCHEMA, type KeyAttribute } from '../../functions/adapters/dynamodb/table-design.ts';

export interface MirrorStorageProps {
  /** Days an incomplete multipart upload (a copy cut short) is kept before S3 aborts it. @default 2 */
  readonly abortIncompleteUploadsAfterDays?: number;
  /** Days S3 and CloudFront access logs are kept. @default 90 */
  readonly accessLogRetentionDays?: number;
  /** What happens to the mirror's data when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * Where the mirror lives: a private, encrypted, TLS-only bucket for item
 * bytes and metadata generations, a DynamoDB table for the catalog, and a
 * bucket for access logs. Data survives stack deletion unless told otherwise.
 */
export class MirrorStorage extends Construct {
  public readonly bucket: s3.Bucket;
  public readonly table: dynamodb.Table;
  /** S3 server access logs (`s3/`) and CloudFront standard logs (`cloudfront/`). */
  public readonly logBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: MirrorStorageProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    this.logBucket = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      // CloudFront standard logging writes with ACLs.
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [
        {
          id: 'ExpireAccessLogs',
          expiration: Duration.days(props.accessLogRetentionDays ?? 90),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      removalPolicy,
    });

    this.bucket = new s3.Bucket(this, 'Mirror', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.logBucket,
      serverAccessLogsPrefix: 's3/',
      lifecycleRules: [
        {
          id: 'AbortIncompleteUploads',
          abortIncompleteMultipartUploadAfter: Duration.days(props.abortIncompleteUploadsAfterDays ?? 2),
        },
      ],
      removalPolicy,
    });

    // The key design the DynamoDB catalog adapter reads and writes: one definition for both.
    this.table = new dynamodb.Table(this, 'Catalog', {
      partitionKey: attribute(TABLE_KEY_SCHEMA.partitionKey),
      sortKey: attribute(TABLE_KEY_SCHEMA.sortKey),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      // Finished runs carry an expiry (the adapter's runItem); nothing else does.
      timeToLiveAttribute: EXPIRES_AT_ATTRIBUTE,
      removalPolicy,
    });
    for (const index of TABLE_KEY_SCHEMA.globalSecondaryIndexes) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.indexName,
        partitionKey: attribute(index.partitionKey),
        sortKey: attribute(index.sortKey),
        projectionType: dynamodb.ProjectionType[index.projectionType],
      });
    }
  }
}

const ATTRIBUTE_TYPES = {
  S: dynamodb.AttributeType.STRING,
  N: dynamodb.AttributeType.NUMBER,
  B: dynamodb.AttributeType.BINARY,
} as const;

function attribute(key: KeyAttribute): dynamodb.Attribute {
  return { name: key.name, type: ATTRIBUTE_TYPES[key.type] };
}

/** The catalog's partition keys (functions/adapters/dynamodb/items.ts), as `dynamodb:LeadingKeys` patterns. */
export const CATALOG_PARTITIONS = {
  objects: keyOf.object('any').PK,
  publications: keyOf.publication(0).PK,
  /** The channels' pointers: whoever may write them decides what is served. */
  current: partitionOf.channels,
  /** Every generation's entries (`ENTRIES#<generation>`). */
  entries: entriesPartition(0).replace(/0$/, '*'),
  runs: keyOf.run('any').PK,
  lock: keyOf.lock('any').PK,
  state: keyOf.state('any').PK,
  /** Every package manifest's record (`MANIFEST#<sha256>`). */
  manifests: manifestPartition('*'),
} as const;

export type CatalogPartition = keyof typeof CATALOG_PARTITIONS;

/** What the DynamoDB catalog adapter calls, by kind; transactions are authorized item by item. */
const CATALOG_ACTIONS = {
  read: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:ConditionCheckItem'],
  put: ['dynamodb:PutItem'],
  update: ['dynamodb:UpdateItem'],
  delete: ['dynamodb:DeleteItem'],
  batchWrite: ['dynamodb:BatchWriteItem'],
} as const;

export type CatalogAccess = {
  /** Partitions each kind of call may touch. */
  readonly [kind in keyof typeof CATALOG_ACTIONS]?: readonly CatalogPartition[];
} & {
  /** Query the runs-by-time index, which holds run items only. @default false */
  readonly runsIndex?: boolean;
};

/**
 * Grants `grantee` exactly the listed calls on the listed partitions of the
 * catalog table (`dynamodb:LeadingKeys`, which must be present: a Scan or a
 * request without keys is refused).
 */
export function grantCatalogAccess(grantee: iam.IGrantable, table: dynamodb.ITable, access: CatalogAccess): void {
  const statements = (Object.keys(CATALOG_ACTIONS) as (keyof typeof CATALOG_ACTIONS)[])
    .filter((kind) => (access[kind] ?? []).length > 0)
    .map(
      (kind) =>
        new iam.PolicyStatement({
          actions: [...CATALOG_ACTIONS[kind]],
          resources: [table.tableArn],
          conditions: {
            'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': (access[kind] ?? []).map((partition) => CATALOG_PARTITIONS[partition]) },
            Null: { 'dynamodb:LeadingKeys': 'false' },
          },
        }),
    );
  if (access.runsIndex) {
    statements.push(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${table.tableArn}/index/${RUNS_BY_TIME_INDEX}`] }));
  }
  for (const statement of statements) grantee.grantPrincipal.addToPrincipalPolicy(statement);
}
