/**
 * What the app answers, before it becomes a web `Response` (Lambda, tests)
 * or is written straight to a node:http response (one machine): a status,
 * headers and a body that is either bytes already in memory or a stream of
 * an object's bytes.
 */
import { SkystreamsError } from '../core/errors.ts';
import type { ByteStream } from '../core/ports.ts';

export interface Reply {
  status: number;
  /** Lower-case names. Shared between replies: never modify. */
  headers: Readonly<Record<string, string>>;
  /** None for HEAD, 304, 416 and empty bodies. */
  body?: Uint8Array | ByteStream;
}

/** A request that ended in a 5xx, as the log receives it. */
export interface RequestFailure {
  requestId: string;
  method: string;
  path: string;
  status: number;
  error: unknown;
}

export const ALLOWED_METHODS = 'GET, HEAD';

export function json(body: unknown, status: number, extra: Record<string, string> = {}, method = 'GET'): Reply {
  const bytes = Buffer.from(JSON.stringify(body, null, 2));
  const headers = {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': String(bytes.byteLength),
    ...extra,
  };
  return method === 'HEAD' ? { status, headers } : { status, headers, body: bytes };
}

/** The machine-readable `error.code` of each status the app answers with. */
export const ERROR_CODES: Readonly<Record<number, string>> = {
  400: 'bad_request',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  422: 'unprocessable_content',
  500: 'internal_error',
  502: 'bad_gateway',
  503: 'unavailable',
};

/** Every 4xx and 5xx body: `{"error": {"code", "message"}}`, and for a 5xx the `requestId` the log has too. */
export interface ErrorBody {
  error: { code: string; message: string; requestId?: string };
}

export function errorBody(status: number, message: string, requestId?: string): ErrorBody {
  const code = ERROR_CODES[status] ?? (status >= 500 ? 'internal_error' : 'bad_request');
  return { error: { code, message, ...(requestId !== undefined && { requestId }) } };
}

/** An HTML page; never cached, it shows the catalog as it is now. */
export function html(page: string, extra: Record<string, string> = {}, method = 'GET'): Reply {
  const bytes = Buffer.from(page);
  const headers = {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': String(bytes.byteLength),
    'x-content-type-options': 'nosniff',
    ...extra,
  };
  return method === 'HEAD' ? { status: 200, headers } : { status: 200, headers, body: bytes };
}

export function methodNotAllowed(method: string): Reply {
  return json(errorBody(405, `method ${method} not allowed`), 405, { allow: ALLOWED_METHODS });
}

export function badRequest(problem: string): Reply {
  return json(errorBody(400, problem), 400);
}

export function notFound(path: string, method?: string): Reply {
  return json(errorBody(404, `${path || '/'} is not published here`), 404, {}, method);
}

/** What a client may learn of a 5xx: the kind of failure, never the adapter's words. */
const SERVER_ERROR_MESSAGES: Record<number, string> = {
  503: 'temporarily unavailable, retry later',
};

/** An error class a route lets reach its client as a 4xx. */
export type ExposedError = abstract new (...args: never[]) => Error;

/**
 * Only the request's own errors reach the client as a 4xx: those of the
 * classes in `exposed`, which each route lists for what it raises about the
 * request (a path, a conflict: safe and useful). Anything else (a store,
 * configuration or adapter error, whatever status it carries) is a 5xx whose
 * detail goes to `log` under a request id the client also gets, in the body
 * and in `x-request-id`: its message may name buckets, keys or credentials.
 */
export function errorReply(error: unknown, log: (failure: Omit<RequestFailure, 'method' | 'path'>) => void, exposed: readonly ExposedError[] = []): Reply {
  const declared = error instanceof SkystreamsError ? error.statusCode : 500;
  if (declared < 500 && exposed.some((kind) => error instanceof kind)) return json(errorBody(declared, (error as Error).message), declared);
  const status = declared < 500 ? 500 : declared;
  const requestId = crypto.randomUUID();
  log({ requestId, status, error });
  const message = SERVER_ERROR_MESSAGES[status] ?? 'internal error';
  return json(errorBody(status, message, requestId), status, { 'x-request-id': requestId });
}

/** The reply as a web-standard Response. */
export function toResponse(reply: Reply): Response {
  const { body } = reply;
  const webBody = body === undefined ? null : body instanceof Uint8Array ? body : toWebStream(body);
  return new Response(webBody as BodyInit | null, { status: reply.status, headers: reply.headers });
}

function toWebStream(body: ByteStream): ReadableStream<Uint8Array> {
  if (body instanceof ReadableStream) return body as ReadableStream<Uint8Array>;
  const iterator = body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}
