import { gunzipSync } from 'node:zlib';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { MAX_RESPONSE_BODY_BYTES, toProxyResult, toRequest } from '../../functions/adapters/lambda/api-gateway.ts';
import { ENV, readSyncEnvironment, syncEnvironment } from '../../functions/adapters/lambda/environment.ts';
import { describeCaughtError } from '../../functions/adapters/lambda/failure.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { namesFrom, parseSyncConfig } from '../../functions/core/settings.ts';

const event = (overrides: Partial<APIGatewayProxyEvent> = {}): APIGatewayProxyEvent =>
  ({
    resource: '/streams/{proxy+}',
    path: '/streams/v1/index.sjson',
    httpMethod: 'GET',
    headers: { Host: 'abc.execute-api.eu-west-1.amazonaws.com' },
    multiValueHeaders: { Host: ['abc.execute-api.eu-west-1.amazonaws.com'] },
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    requestContext: { domainName: 'abc.execute-api.eu-west-1.amazonaws.com' } as APIGatewayProxyEvent['requestContext'],
    body: null,
    isBase64Encoded: false,
    ...overrides,
  }) as APIGatewayProxyEvent;

describe('Function: toRequest', () => {
  it('keeps product names with colons, escaped or not, and every header and query value', () => {
    // Prepare
    const raw = event({ path: '/streams/v1/com.ubuntu.maas:stable:v3:download.sjson' });
    const escaped = event({
      path: '/streams/v1/com.ubuntu.maas%3Astable%3Av3%3Adownload.sjson',
      multiValueHeaders: { Host: ['h.example'], Accept: ['a', 'b'] },
      multiValueQueryStringParameters: { limit: ['5'], tag: ['x', 'y'] },
    });

    // Act
    const fromRaw = toRequest(raw);
    const fromEscaped = toRequest(escaped);

    // Assess
    expect(decodeURIComponent(new URL(fromRaw.url).pathname)).toBe('/streams/v1/com.ubuntu.maas:stable:v3:download.sjson');
    expect(new URL(fromEscaped.url).pathname).toBe(new URL(fromRaw.url).pathname);
    expect(fromEscaped.headers.get('accept')).toBe('a, b');
    expect(new URL(fromEscaped.url).searchParams.getAll('tag')).toEqual(['x', 'y']);
    expect(fromRaw.method).toBe('GET');
  });
});

describe('Function: toProxyResult', () => {
  const json = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ path: `item/${i}` })) });

  it('returns the body base64-encoded with its status and headers', async () => {
    const bytes = new Uint8Array([0, 1, 2, 255]);
    const response = new Response(bytes, { status: 206, headers: { 'content-range': 'bytes 0-3/10', etag: '"e"' } });

    const result = await toProxyResult(response, toRequest(event()));

    expect(result.statusCode).toBe(206);
    expect(result.isBase64Encoded).toBe(true);
    expect(new Uint8Array(Buffer.from(result.body, 'base64'))).toEqual(bytes);
    expect(result.multiValueHeaders).toMatchObject({ 'content-range': ['bytes 0-3/10'], etag: ['"e"'] });
  });

  it('gzips text when the request accepts it, with its own validator', async () => {
    const request = toRequest(event({ multiValueHeaders: { Host: ['h'], 'Accept-Encoding': ['gzip, br'] } }));
    const response = new Response(json, { headers: { 'content-type': 'application/json', etag: '"v1"' } });

    const result = await toProxyResult(response, request);

    expect(result.multiValueHeaders).toMatchObject({ 'content-encoding': ['gzip'], etag: ['"v1-gzip"'], vary: ['accept-encoding'] });
    expect(gunzipSync(Buffer.from(result.body, 'base64')).toString('utf8')).toBe(json);
  });

  it('leaves the body alone for clients that do not accept gzip (python-simplestreams)', async () => {
    const response = new Response(json, { headers: { 'content-type': 'text/plain; charset=utf-8' } });

    const result = await toProxyResult(response, toRequest(event()));

    expect(result.multiValueHeaders?.['content-encoding']).toBeUndefined();
    expect(Buffer.from(result.body, 'base64').toString('utf8')).toBe(json);
  });

  it('sends no body for HEAD', async () => {
    const response = new Response(null, { headers: { 'content-length': '1234' } });

    const result = await toProxyResult(response, toRequest(event({ httpMethod: 'HEAD' })));

    expect(result.body).toBe('');
    expect(result.multiValueHeaders).toMatchObject({ 'content-length': ['1234'] });
  });

  it('answers 502 with a reason when the body is too large for a buffered Lambda response', async () => {
    const response = new Response(new Uint8Array(MAX_RESPONSE_BODY_BYTES + 1), { headers: { 'content-type': 'application/octet-stream' } });

    const result = await toProxyResult(response, toRequest(event()));

    expect(result.statusCode).toBe(502);
    expect(JSON.parse(result.body)).toEqual({
      error: { code: 'bad_gateway', message: expect.stringMatching(/exceeds what API Gateway can relay/), requestId: result.headers!['x-request-id'] },
    });
  });
});

describe('Function: readSyncEnvironment', () => {
  const sync = parseSyncConfig(
    { source: 'https://u/', keyring: 'keyring.gpg', filters: ['arch=amd64'], max: 2, pruneGrace: 3 },
    { name: namesFrom({}), durationUnit: 'h', backend: 'cloud' },
  );
  const complete = { [ENV.bucket]: 'b', [ENV.table]: 't', ...syncEnvironment(sync) };

  it('reads back what infra sets, with one attempt per item (Step Functions retries)', () => {
    const read = readSyncEnvironment(complete);

    expect(read).toMatchObject({ bucket: 'b', table: 't' });
    expect(read.sync).toEqual({ ...sync, attempts: 1 });
    expect(readSyncEnvironment({ ...complete, [ENV.max]: '' }).sync.max).toBeUndefined();
  });

  it('reads re-signed mode, and the signing secret only where infra set it (the plan function)', () => {
    const resigned = { ...complete, ...syncEnvironment({ ...sync, resign: true }) };
    expect(readSyncEnvironment(resigned).sync.resign).toBe(true);
    expect(readSyncEnvironment(resigned).signingSecret).toBeUndefined();
    expect(readSyncEnvironment({ ...resigned, [ENV.signingSecret]: 'arn:s' }).signingSecret).toBe('arn:s');
  });

  it.each([
    [{ [ENV.bucket]: '' }, /^environment variable SKYSTREAMS_BUCKET is not set$/],
    [{ [ENV.sourceUrl]: '' }, /^environment variable SKYSTREAMS_SOURCE_URL is not set$/],
    [{ [ENV.filters]: '{' }, /^environment variable SKYSTREAMS_FILTERS: expected an array of strings/],
    [{ [ENV.filters]: '[1]' }, /^environment variable SKYSTREAMS_FILTERS: expected a string/],
    [{ [ENV.max]: '0' }, /^environment variable SKYSTREAMS_MAX: "0" is not an integer from 1 to 1000$/],
    [{ [ENV.pruneGraceHours]: '-2' }, /^environment variable SKYSTREAMS_PRUNE_GRACE_HOURS: "-2" is not a duration/],
    [{ [ENV.pruneGraceHours]: '' }, /^environment variable SKYSTREAMS_PRUNE_GRACE_HOURS is not set$/],
    [{ [ENV.resign]: 'yes' }, /^environment variable SKYSTREAMS_RESIGN: "yes" is not true or false$/],
  ])('names the variable when %j is wrong', (override, message) => {
    expect(() => readSyncEnvironment({ ...complete, ...override })).toThrow(ConfigError);
    expect(() => readSyncEnvironment({ ...complete, ...override })).toThrow(message);
  });
});

describe('Function: describeCaughtError', () => {
  it("uses a Lambda error's message and a States error's cause", () => {
    expect(describeCaughtError({ Error: 'IntegrityError', Cause: JSON.stringify({ errorType: 'IntegrityError', errorMessage: 'a/b: sha256 mismatch' }) })).toBe(
      'IntegrityError: a/b: sha256 mismatch',
    );
    expect(describeCaughtError({ Error: 'States.ExceedToleratedFailureThreshold', Cause: 'The specified tolerated failure threshold was exceeded' })).toBe(
      'States.ExceedToleratedFailureThreshold: The specified tolerated failure threshold was exceeded',
    );
    expect(describeCaughtError(undefined)).toBe('Error');
  });
});
