/**
 * DynamoDB SDK errors → domain errors. The only place DynamoDB error names
 * are known; the catalog calls `toDomainError` around every request.
 */
import { ConfigError, ConflictError } from '../../core/errors.ts';
import { awsToDomainError, type AwsFailure, type ServiceErrorRules } from '../aws-errors.ts';

/** The parts of a cancelled transaction we look at. */
interface TransactionErrorShape {
  name?: string;
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
/** Cancellation reasons that mean a transaction may succeed if tried again. */
const UNAVAILABLE_REASONS = ['TransactionConflict', 'ThrottlingError', 'ProvisionedThroughputExceeded'];

/** Why a transaction was cancelled, one code per action (`None` for the ones that were fine). */
export function cancellationReasons(error: unknown): string[] {
  const sdk = error as TransactionErrorShape | undefined;
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
    (error as TransactionErrorShape | undefined)?.name === 'ConditionalCheckFailedException' ||
    cancellationReasons(error).includes('ConditionalCheckFailed')
  );
}

const DYNAMODB_RULES: ServiceErrorRules = {
  specific({ error, what, name, detail, options }: AwsFailure): Error | undefined {
    if (name === 'ResourceNotFoundException') {
      return new ConfigError(`${what}: the table does not exist (run \`skystreams init\`)`, options);
    }
    if (isConditionalCheckFailure(error)) return new ConflictError(detail, options);
    return undefined;
  },
  unavailable({ error, name }: AwsFailure): boolean {
    const reasons = cancellationReasons(error);
    return UNAVAILABLE.has(name) || UNAVAILABLE_REASONS.some((reason) => reasons.includes(reason));
  },
};

/**
 * `what` names the table (and item) for messages. Domain errors pass through
 * unchanged; anything unrecognised becomes a plain SkystreamsError (500) that
 * keeps the SDK error as its cause.
 */
export function toDomainError(error: unknown, what: string): Error {
  return awsToDomainError(error, what, DYNAMODB_RULES);
}
