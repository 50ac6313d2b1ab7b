/**
 * What the Lambda runtime, API Gateway and Step Functions hand the handlers,
 * for tests that invoke them directly: an invocation context, a REST API
 * proxy event as CloudFront's requests arrive, and a Step Functions
 * stand-in that answers StartExecution.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';

const ACCOUNT = '123456789012';
const REGION = 'us-east-1';
const API_HOST = 'abc123.execute-api.us-east-1.amazonaws.com';

/** The context of one invocation of function `skystreams-<name>`, with `remainingMs` of its time left. */
export function lambdaContext(name: string, remainingMs = 60_000): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: `skystreams-${name}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:skystreams-${name}`,
    memoryLimitInMB: '1024',
    awsRequestId: `request-${name}-${Date.now()}`,
    logGroupName: `/aws/lambda/skystreams-${name}`,
    logStreamName: 'test',
    getRemainingTimeInMillis: () => remainingMs,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/**
 * A REST API Lambda proxy event as API Gateway sends it for `GET <path>`
 * (or `request.method`, with `request.body`) through CloudFront: `/{prefix}/{proxy+}` for a path of several segments,
 * the path's own resource (`/`, `/keyring.gpg`) otherwise.
 */
export function apiGatewayEvent(path: string, request: { method?: string; body?: string } = {}): APIGatewayProxyEvent {
  const httpMethod = request.method ?? 'GET';
  const segments = path.split('/').filter(Boolean);
  const proxied = segments.length > 1;
  const resource = proxied ? `/${segments[0]}/{proxy+}` : path;
  const cloudFront = { Host: API_HOST, 'User-Agent': 'Amazon CloudFront', Via: '2.0 x.cloudfront.net (CloudFront)' };
  return {
    resource,
    path,
    httpMethod,
    headers: cloudFront,
    multiValueHeaders: Object.fromEntries(Object.entries(cloudFront).map(([name, value]) => [name, [value]])),
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: proxied ? { proxy: segments.slice(1).join('/') } : null,
    stageVariables: null,
    requestContext: {
      accountId: ACCOUNT,
      apiId: 'abc123',
      domainName: API_HOST,
      httpMethod,
      path: `/mirror${path}`,
      protocol: 'HTTP/1.1',
      requestId: 'request-1',
      requestTimeEpoch: Date.now(),
      resourceId: 'res',
      resourcePath: resource,
      stage: 'mirror',
      identity: { sourceIp: '192.0.2.1', userAgent: 'Amazon CloudFront' },
    } as APIGatewayProxyEvent['requestContext'],
    body: request.body ?? null,
    isBase64Encoded: false,
  };
}

export interface StepFunctionsStandin {
  endpoint: string;
  started: { stateMachineArn: string; name: string; input: string }[];
  close(): Promise<void>;
}

/** Answers StartExecution the way Step Functions does (JSON 1.0 protocol) and records each call. */
export async function startStepFunctionsStandin(): Promise<StepFunctionsStandin> {
  const started: StepFunctionsStandin['started'] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const target = request.headers['x-amz-target'];
      if (target !== 'AWSStepFunctions.StartExecution') {
        response.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' }).end(JSON.stringify({ __type: 'UnknownOperationException' }));
        return;
      }
      const call = JSON.parse(Buffer.concat(chunks).toString('utf8')) as StepFunctionsStandin['started'][number];
      started.push(call);
      response
        .writeHead(200, { 'content-type': 'application/x-amz-json-1.0' })
        .end(JSON.stringify({ executionArn: `${call.stateMachineArn.replace(':stateMachine:', ':execution:')}:${call.name}`, startDate: Date.now() / 1000 }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    started,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
