/**
 * One S3Client per process and connection: clients hold sockets and
 * credential caches, so every store (and every Lambda invocation) opened with
 * the same settings shares one.
 */
import { S3Client } from '@aws-sdk/client-s3';

export interface S3Connection {
  /** undefined: the SDK's chain (AWS_REGION, profile, …). */
  region?: string;
  /** A non-AWS endpoint (s3rver, MinIO, …); undefined: AWS itself. */
  endpoint?: string;
  /** Static credentials instead of the default chain (stand-ins only). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

const clients = new Map<string, S3Client>();

export function s3Client(connection: S3Connection): S3Client {
  const cacheKey = JSON.stringify([connection.region, connection.endpoint, connection.credentials?.accessKeyId]);
  let client = clients.get(cacheKey);
  if (!client) {
    client = new S3Client({
      ...(connection.region && { region: connection.region }),
      ...(connection.credentials && { credentials: connection.credentials }),
      ...(connection.endpoint && {
        endpoint: connection.endpoint,
        // Stand-ins and most S3-compatible servers have no virtual-host buckets.
        forcePathStyle: true,
        // WHEN_SUPPORTED would send streamed bodies aws-chunked with trailing checksums, which s3rver stores verbatim.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      }),
    });
    clients.set(cacheKey, client);
  }
  return client;
}
