/**
 * API Gateway (REST, Lambda proxy) events ↔ web-standard Request/Response, so
 * the same app serves behind API Gateway and on node:http. Bodies go out
 * base64-encoded (the API declares every media type binary), so bytes pass
 * through untouched.
 */
import { gzipSync } from 'node:zlib';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { errorBody } from '../../http/reply.ts';

/** Lambda's buffered response limit is 6 MB, of which base64 leaves about three quarters for the body. */
export const MAX_RESPONSE_BODY_BYTES = Math.floor((6 * 1024 * 1024 * 3) / 4) - 64 * 1024;
/** Text worth compressing when the client (CloudFront) accepts gzip. */
const COMPRESSIBLE = /^(application\/json|text\/)/;
const COMPRESSION_THRESHOLD_BYTES = 1024;

/** The web Request the event describes. Each path segment is re-escaped, so `:` and `%3A` arrive alike. */
export function toRequest(event: APIGatewayProxyEvent): Request {
  const headers = new Headers();
  for (const [name, values] of Object.entries(event.multiValueHeaders ?? {})) {
    for (const value of values ?? []) headers.append(name, value);
  }
  for (const [name, value] of Object.entries(event.headers ?? {})) {
    if (value !== undefined && !headers.has(name)) headers.set(name, value);
  }
  const host = headers.get('host') ?? event.requestContext?.domainName ?? 'localhost';
  const path = event.path
    .split('/')
    .map((segment) => encodeURIComponent(safelyDecoded(segment)))
    .join('/');
  const url = new URL(`https://${host}${path.startsWith('/') ? path : `/${path}`}`);
  for (const [name, values] of Object.entries(event.multiValueQueryStringParameters ?? {})) {
    for (const value of values ?? []) url.searchParams.append(name, value);
  }
  if (!event.multiValueQueryStringParameters) {
    for (const [name, value] of Object.entries(event.queryStringParameters ?? {})) {
      if (value !== undefined) url.searchParams.append(name, value);
    }
  }
  const hasBody = event.body !== null && event.body !== undefined && !['GET', 'HEAD'].includes(event.httpMethod);
  return new Request(url, {
    method: event.httpMethod,
    headers,
    ...(hasBody && { body: event.isBase64Encoded ? Buffer.from(event.body as string, 'base64') : event.body }),
  });
}

/**
 * The proxy result for `response`: base64 body (gzip'd when the request
 * accepts it and it is worth it), headers with repeats kept. A body too large
 * for Lambda becomes a 502 that says so, rather than an opaque failure.
 */
export async function toProxyResult(response: Response, request: Request): Promise<APIGatewayProxyResult> {
  const headers = new Headers(response.headers);
  let body = request.method === 'HEAD' ? new Uint8Array() : new Uint8Array(await response.arrayBuffer());
  if (shouldCompress(response, request, body)) {
    body = new Uint8Array(gzipSync(body));
    headers.set('content-encoding', 'gzip');
    headers.set('content-length', String(body.byteLength));
    headers.append('vary', 'accept-encoding');
    // Another representation, so another validator.
    const etag = headers.get('etag');
    if (etag) headers.set('etag', etag.replace(/"$/, '-gzip"'));
  }
  if (body.byteLength > MAX_RESPONSE_BODY_BYTES) {
    const message = `response of ${body.byteLength} bytes exceeds what API Gateway can relay from Lambda (${MAX_RESPONSE_BODY_BYTES})`;
    const requestId = crypto.randomUUID();
    console.error(`[${requestId}] ${request.method} ${new URL(request.url).pathname} → 502: ${message}`);
    return {
      statusCode: 502,
      headers: { 'content-type': 'application/json', 'x-request-id': requestId },
      body: JSON.stringify(errorBody(502, message, requestId)),
    };
  }
  const multiValueHeaders: Record<string, string[]> = {};
  headers.forEach((value, name) => {
    (multiValueHeaders[name] ??= []).push(value);
  });
  return {
    statusCode: response.status,
    multiValueHeaders,
    body: Buffer.from(body).toString('base64'),
    isBase64Encoded: true,
  };
}

function shouldCompress(response: Response, request: Request, body: Uint8Array): boolean {
  return (
    response.status === 200 &&
    body.byteLength >= COMPRESSION_THRESHOLD_BYTES &&
    !response.headers.has('content-encoding') &&
    COMPRESSIBLE.test(response.headers.get('content-type') ?? '') &&
    /\bgzip\b/i.test(request.headers.get('accept-encoding') ?? '')
  );
}

function safelyDecoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
