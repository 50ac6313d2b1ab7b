/**
 * S3 SDK errors → domain errors. The only place S3 error names are known;
 * the object store calls `toDomainError` around every request.
 */
import {
  ConfigError,
  ConflictError,
  NotFoundError,
  SkystreamsError,
  UnavailableError,
} from '../../core/errors.ts';

/** The parts of an SDK (or Node socket) error we classify by. */
interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

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
/** Node socket / DNS failures: the store is unreachable, which is worth retrying. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/**
 * `what` names the object for messages (`s3://bucket/key`). Domain errors
 * pass through unchanged; anything unrecognised becomes a plain
 * SkystreamsError (500) that keeps the SDK error as its cause.
 */
export function toDomainError(error: unknown, what: string): Error {
  if (error instanceof SkystreamsError) return error;
  const sdk = (typeof error === 'object' && error !== null ? error : {}) as SdkErrorShape;
  const name = sdk.name ?? 'Error';
  const status = sdk.$metadata?.httpStatusCode;
  const detail = `${what}: ${name}${sdk.message ? `: ${sdk.message}` : ''}`;
  const options = { cause: error };

  if (name === 'CredentialsProviderError') {
    return new ConfigError(`${what}: no AWS credentials found (environment, profile, SSO or instance role)`, options);
  }

  if (name === 'NoSuchBucket') {
    return new ConfigError(`${what}: the bucket does not exist (run \`skystreams init\`)`, options);
  }
  if (NOT_FOUND.has(name) || status === 404) return new NotFoundError(detail, options);
  if (CONFLICT.has(name) || status === 409 || status === 412) return new ConflictError(detail, options);
  if (
    UNAVAILABLE.has(name) ||
    (sdk.code !== undefined && NETWORK_CODES.has(sdk.code)) ||
    status === 429 ||
    (status !== undefined && status >= 500)
  ) {
    return new UnavailableError(detail, options);
  }
  return new SkystreamsError(detail, options);
}
