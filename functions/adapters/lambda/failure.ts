/** The error a Step Functions Catch hands the fail step, as one readable line. */

/** `{ Error, Cause }` as a Catch with ResultPath `$.error` records it. */
export interface CaughtError {
  Error?: string;
  /** For a Lambda error, its JSON (`errorType`, `errorMessage`, `trace`); otherwise plain text. */
  Cause?: string;
}

export function describeCaughtError(caught: CaughtError | undefined): string {
  const name = caught?.Error ?? 'Error';
  const cause = caught?.Cause ?? '';
  let message = cause;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (typeof parsed.errorMessage === 'string') message = parsed.errorMessage;
  } catch {
    // Not JSON: a States.* error's plain-text cause.
  }
  return message ? `${name}: ${message}` : name;
}
