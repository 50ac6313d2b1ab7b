/** API Gateway: the mirror's read-only HTTP app (metadata and status) over the cloud backend. */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { openCloudBackend } from '../adapters/cloud.ts';
import { toProxyResult, toRequest } from '../adapters/lambda/api-gateway.ts';
import { readStoreSettings } from '../adapters/lambda/environment.ts';
import { observed } from '../adapters/lambda/observability.ts';
import { createApp, type App } from '../http/app.ts';

let app: App | undefined;

export const handler = observed(
  async (event: APIGatewayProxyEvent) => {
    app ??= createApp(openCloudBackend(readStoreSettings()));
    const request = toRequest(event);
    return toProxyResult(await app(request), request);
  },
  { withMetrics: false },
);
