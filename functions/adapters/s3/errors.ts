/**
 * S3 SDK errors → domain errors. The only place S3 error names are known;
 * the object store calls `toDomainError` around every request.
 */
import { ConfigError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { awsToDomainError, type AwsFailure, type ServiceErrorRules } from '../aws-errors.ts';

const NOT_FOUND = new Set(['NoSuchKey', 'NotFound', 'NoSuchUpload']);
const CONFLICT = new Set(['PreconditionFailed', 'ConditionalRequestConflict', 'OperationAborted']);
const UNAVAILABLE = new Set([
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'RequestTimeoutException',
  'ThrottlingException',
  'TooManyRequestsException',
  'TimeoutError',
]);

const S3_RULES: ServiceErrorRules = {
  specific({ what, name, status, detail, options }: AwsFailure): Error | undefined {
    if (name === 'NoSuchBucket') {
      return new ConfigError(`${what}: the bucket does not exist (run \`skystreams init\`)`, options);
    }
    if (NOT_FOUND.has(name) || status === 404) return new NotFoundError(detail, options);
    if (CONFLICT.has(name) || status === 409 || status === 412) return new ConflictError(detail, options);
    return undefined;
  },
  unavailable({ name, code }: AwsFailure): boolean {
    // A response body cut off mid-stream: the connection dropped, worth retrying like other network failures.
    return UNAVAILABLE.has(name) || code === 'ERR_STREAM_PREMATURE_CLOSE';
  },
};

/**
 * `what` names the object for messages (`s3://bucket/key`). Domain errors
 * pass through unchanged; anything unrecognised becomes a plain
 * SkystreamsError (500) that keeps the SDK error as its cause.
 */
export function toDomainError(error: unknown, what: string): Error {
  return awsToDomainError(error, what, S3_RULES);
}
