/** `skystreams init` for S3: creates the bucket when absent, checks it is reachable when present. */
import {
  CreateBucketCommand,
  HeadBucketCommand,
  PutBucketLifecycleConfigurationCommand,
  type BucketLocationConstraint,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ConfigError } from '../../core/errors.ts';
import { toDomainError } from './errors.ts';

/** Multipart uploads cut short (a killed process) are invisible but billed; S3 drops them after this. */
const ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS = 2;

/** Returns what it did, one human-readable line per step. */
export async function ensureBucket(client: S3Client, bucket: string): Promise<string[]> {
  const where = `s3://${bucket}`;
  const status = await bucketStatus(client, bucket);
  if (status === 'forbidden') {
    throw new ConfigError(`${where}: the bucket exists but these credentials may not use it (owned by another account?)`);
  }
  if (status === 'present') return [`${where}: bucket exists`];

  const region = await client.config.region();
  try {
    await client.send(
      new CreateBucketCommand({
        Bucket: bucket,
        // us-east-1 is the default location and must not be named.
        ...(region !== 'us-east-1' && {
          CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint },
        }),
      }),
    );
  } catch (error) {
    const name = (error as { name?: string }).name;
    // Another `init` won the race; the bucket is ours all the same.
    if (name === 'BucketAlreadyOwnedByYou') return [`${where}: bucket exists`];
    if (name === 'BucketAlreadyExists') throw new ConfigError(`${where}: the name is taken by another account`);
    throw toDomainError(error, where);
  }
  return [`${where}: created bucket in ${region}`, await addAbortIncompleteUploadsRule(client, bucket)];
}

async function bucketStatus(client: S3Client, bucket: string): Promise<'present' | 'absent' | 'forbidden'> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return 'present';
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404) return 'absent';
    if (status === 403) return 'forbidden';
    throw toDomainError(error, `s3://${bucket}`);
  }
}

/** Only on a bucket we just created: a lifecycle configuration is replaced whole, and someone else's would be lost. */
async function addAbortIncompleteUploadsRule(client: S3Client, bucket: string): Promise<string> {
  const where = `s3://${bucket}`;
  try {
    await client.send(
      new PutBucketLifecycleConfigurationCommand({
        Bucket: bucket,
        LifecycleConfiguration: {
          Rules: [
            {
              ID: 'AbortIncompleteUploads',
              Status: 'Enabled',
              Filter: { Prefix: '' },
              AbortIncompleteMultipartUpload: { DaysAfterInitiation: ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS },
            },
          ],
        },
      }),
    );
    return `${where}: incomplete multipart uploads are aborted after ${ABORT_INCOMPLETE_UPLOADS_AFTER_DAYS} days`;
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name !== 'NotImplemented') throw toDomainError(error, where);
    return `${where}: this endpoint has no lifecycle rules; incomplete multipart uploads are not aborted automatically`;
  }
}
