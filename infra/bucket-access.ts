/**
 * Exact S3 permissions over the object-store layout of functions/core/ports.ts
 * `keys`, instead of the CDK grant helpers' wildcard actions (s3:GetObject*,
 * s3:List*, …): a function gets only the calls the S3 adapter makes, on only
 * the prefixes its phase touches.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { CUSTOM_ITEMS_PREFIX, INCOMING_PREFIX, UPLOADS_PREFIX } from '../functions/core/custom-images.ts';
import { keys } from '../functions/core/ports.ts';

/** `items/a/b` → `items/*`: everything under a key's top-level prefix. */
const everythingUnder = (key: string) => `${key.split('/')[0]}/*`;

export const KEY_PATTERNS = {
  /** Verified item bytes, what CloudFront serves. */
  items: everythingUnder(keys.item('any')),
  /** Published and staged metadata generations. */
  metadata: everythingUnder(keys.metadata({ generation: 1, runId: 'any' }, 'any')),
  /** A run's plan, copy list and Distributed Map results. */
  runs: everythingUnder(keys.runFile('any', 'any')),
  /** Custom images' item bytes (a part of `items`): what the upload function may create. */
  uploadedItems: `${keys.item(CUSTOM_ITEMS_PREFIX)}*`,
  /** One record per uploaded custom image version. */
  uploads: `${UPLOADS_PREFIX}*`,
  /** Where operators copy an image's files before asking for its upload; never served. */
  incoming: `${INCOMING_PREFIX}*`,
} as const;

export type KeyPattern = (typeof KEY_PATTERNS)[keyof typeof KEY_PATTERNS];

/** The top-level prefix of item keys, CloudFront's origin path (`/items`). */
export const ITEMS_ORIGIN_PATH = `/${keys.item('any').split('/')[0]}`;

/** What the S3 adapter calls: GetObject (also HEAD), Upload (PutObject + multipart, abort), DeleteObject. */
const ACTIONS = {
  read: ['s3:GetObject'],
  write: ['s3:PutObject', 's3:AbortMultipartUpload'],
  delete: ['s3:DeleteObject'],
} as const;

export interface ObjectAccess {
  readonly read?: readonly KeyPattern[];
  readonly write?: readonly KeyPattern[];
  readonly delete?: readonly KeyPattern[];
  /**
   * Prefixes ListBucket may name (`s3:prefix`); those read or written are
   * always included, so a HEAD of a missing key there answers 404 (S3 checks
   * ListBucket with the key as the prefix). @default none beyond those
   */
  readonly list?: readonly KeyPattern[];
  /**
   * Writes may only create: PutObject and CompleteMultipartUpload must carry
   * `If-None-Match` (`s3:if-none-match`), so S3 refuses to replace an object;
   * the steps of a multipart upload that take no such header
   * (`s3:ObjectCreationOperation` false) stay allowed. @default false
   */
  readonly createOnly?: boolean;
  /**
   * Prefixes whose unfinished multipart uploads may be listed and aborted
   * (a dead run's leftovers: ListBucketMultipartUploads on the bucket,
   * AbortMultipartUpload on the keys). @default none
   */
  readonly abortUnfinished?: readonly KeyPattern[];
}

/**
 * Grants `grantee` the listed access, plus ListBucket limited to the
 * prefixes it reads, writes or lists.
 */
export function grantObjectAccess(grantee: iam.IGrantable, bucket: s3.IBucket, access: ObjectAccess): void {
  const resourcesOf = (patterns: readonly KeyPattern[] = []) => patterns.map((pattern) => bucket.arnForObjects(pattern));
  const statements = (Object.keys(ACTIONS) as (keyof typeof ACTIONS)[])
    .filter((kind) => (access[kind] ?? []).length > 0 && !(kind === 'write' && access.createOnly))
    .map((kind) => new iam.PolicyStatement({ actions: [...ACTIONS[kind]], resources: resourcesOf(access[kind]) }));
  if (access.createOnly && (access.write ?? []).length > 0) {
    const resources = resourcesOf(access.write);
    statements.push(
      new iam.PolicyStatement({ actions: ['s3:PutObject'], resources, conditions: { Null: { 's3:if-none-match': 'false' } } }),
      new iam.PolicyStatement({ actions: ['s3:PutObject'], resources, conditions: { Bool: { 's3:ObjectCreationOperation': 'false' } } }),
      new iam.PolicyStatement({ actions: ['s3:AbortMultipartUpload'], resources }),
    );
  }
  const listed = [...new Set([...(access.read ?? []), ...(access.write ?? []), ...(access.list ?? [])])];
  if (listed.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': listed } },
      }),
    );
  }
  if ((access.abortUnfinished ?? []).length > 0) {
    statements.push(
      new iam.PolicyStatement({ actions: ['s3:ListBucketMultipartUploads'], resources: [bucket.bucketArn] }),
      new iam.PolicyStatement({ actions: ['s3:AbortMultipartUpload'], resources: resourcesOf(access.abortUnfinished) }),
    );
  }
  for (const statement of statements) grantee.grantPrincipal.addToPrincipalPolicy(statement);
}
