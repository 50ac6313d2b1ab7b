/** API Gateway, IAM-authorized: `POST /api/v1/uploads` adds a custom image from files already under incoming/ (functions/http/upload-route.ts). */
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { openCloudBackend } from '../adapters/cloud.ts';
import { toProxyResult, toRequest } from '../adapters/lambda/api-gateway.ts';
import { ENV, readStoreSettings } from '../adapters/lambda/environment.ts';
import { observed } from '../adapters/lambda/observability.ts';
import { resignSetting } from '../core/settings.ts';
import { createUploadRoute } from '../http/upload-route.ts';

let route: ((request: Request) => Promise<Response>) | undefined;

export const handler = observed(
  async (event: APIGatewayProxyEvent) => {
    route ??= createUploadRoute({
      ...openCloudBackend(readStoreSettings()),
      resign: resignSetting(process.env[ENV.resign], `environment variable ${ENV.resign}`),
    });
    const request = toRequest(event);
    return toProxyResult(await route(request), request);
  },
  { withMetrics: false },
);
