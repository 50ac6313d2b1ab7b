/**
 * DynamoDB SDK errors → domain errors. The only place DynamoDB error names
 * are known; the catalog calls `toDomainError` around every request.
 */
import {
  ConfigError,
  ConflictError,
  SkystreamsError,
  UnavailableError,
} from '../../core/errors.ts';

/** The parts of an SDK (or Node socket) error we classify by. */
interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  CancellationReasons?: { Code?: string }[];
}

const UNAVAILABLE = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'InternalServerError',
  'ServiceUnavailable',
  'TransactionInProgressException',
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
]);

/** Why a transaction was cancelled, one code per action (`None` for the ones that were fine). */
export function cancellationReasons(error: unknown): string[] {
  const sdk = error as SdkErrorShape | undefined;
  if (sdk?.name !== 'TransactionCanceledException') return [];
  return (sdk.CancellationReasons ?? []).map((reason) => reason.Code ?? 'None');
}

/** A transaction that lost to a concurrent one on the same item; trying again is the remedy. */
export function isTransactionConflict(error: unknown): boolean {
  const reasons = cancellationReasons(error);
  return reasons.includes('TransactionConflict') && !reasons.includes('ConditionalCheckFailed');
}

export function isConditionalCheckFailure(error: unknown): boolean {
  return (
    (error as SdkErrorShape | undefined)?.name === 'ConditionalCheckFailedException' ||
    cancellationReasons(error).includes('ConditionalCheckFailed')
  );
}

/**
 * `what` names the table (and item) for messages. Domain errors pass through
 * unchanged; anything unrecognised becomes a plain SkystreamsError (500) that
 * keeps the SDK error as its cause.
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

  if (name === 'ResourceNotFoundException') {
    return new ConfigError(`${what}: the table does not exist (run \`skystreams init\`)`, options);
  }
  if (isConditionalCheckFailure(error)) return new ConflictError(detail, options);
  const reasons = cancellationReasons(error);
  if (
    UNAVAILABLE.has(name) ||
    reasons.includes('TransactionConflict') ||
    reasons.includes('ThrottlingError') ||
    reasons.includes('ProvisionedThroughputExceeded') ||
    (sdk.code !== undefined && NETWORK_CODES.has(sdk.code)) ||
    status === 429 ||
    (status !== undefined && status >= 500)
  ) {
    return new UnavailableError(detail, options);
  }
  return new SkystreamsError(detail, options);
}
