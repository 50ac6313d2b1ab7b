/**
 * The part of AWS SDK error mapping every service shares: missing
 * credentials, network failures, throttling and 5xx answers, and the message
 * and cause every mapped error carries. Each service's `errors.ts` adds the
 * error names only it knows.
 */
import { ConfigError, SkystreamsError, UnavailableError } from '../core/errors.ts';

/** The parts of an SDK (or Node socket) error we classify by. */
interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** An SDK error, reduced to what a service's rules look at. */
export interface AwsFailure {
  /** The error as thrown. */
  readonly error: unknown;
  /** The resource, as named in messages. */
  readonly what: string;
  /** The SDK's error name; `Error` when it has none. */
  readonly name: string;
  /** A Node socket / DNS error code such as `ECONNRESET`, when there is one. */
  readonly code: string | undefined;
  readonly status: number | undefined;
  /** `<what>: <name>[: <message>]`: the message of every error not given a clearer one. */
  readonly detail: string;
  /** Options for the domain error, keeping the SDK error as its cause. */
  readonly options: { cause: unknown };
}

/** What one service knows about its own errors. */
export interface ServiceErrorRules {
  /** The service's own answer for a failure, or undefined to fall through to throttling and the rest. */
  specific(failure: AwsFailure): Error | undefined;
  /** Failures, beyond network errors, 429 and 5xx, that mean throttled or unavailable. */
  unavailable(failure: AwsFailure): boolean;
}

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

/**
 * `what` names the resource for messages. Domain errors pass through
 * unchanged; missing credentials become a ConfigError; then the service's
 * own rules; then network failures, throttling, 429 and 5xx become an
 * UnavailableError; anything else becomes a plain SkystreamsError (500) that
 * keeps the SDK error as its cause.
 */
export function awsToDomainError(error: unknown, what: string, rules: ServiceErrorRules): Error {
  if (error instanceof SkystreamsError) return error;
  const failure = describeFailure(error, what);
  if (failure.name === 'CredentialsProviderError') {
    return new ConfigError(`${what}: no AWS credentials found (environment, profile, SSO or instance role)`, failure.options);
  }
  const specific = rules.specific(failure);
  if (specific !== undefined) return specific;
  const { code, status } = failure;
  if (
    rules.unavailable(failure) ||
    (code !== undefined && NETWORK_CODES.has(code)) ||
    status === 429 ||
    (status !== undefined && status >= 500)
  ) {
    return new UnavailableError(failure.detail, failure.options);
  }
  return new SkystreamsError(failure.detail, failure.options);
}

function describeFailure(error: unknown, what: string): AwsFailure {
  const sdk = (typeof error === 'object' && error !== null ? error : {}) as SdkErrorShape;
  const name = sdk.name ?? 'Error';
  return {
    error,
    what,
    name,
    code: sdk.code,
    status: sdk.$metadata?.httpStatusCode,
    detail: `${what}: ${name}${sdk.message ? `: ${sdk.message}` : ''}`,
    options: { cause: error },
  };
}
