import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import { grantObjectAccess, KEY_PATTERNS } from '../bucket-access.ts';
import { MirrorFunction } from './mirror-function.ts';

export interface MirrorApiProps {
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  /** @default 'mirror' */
  readonly stageName?: string;
  /**
   * Steady-state requests per second the stage accepts; CloudFront caches
   * metadata, so only misses arrive here.
   * @default 50
   */
  readonly throttleRateLimit?: number;
  /** @default 100 */
  readonly throttleBurstLimit?: number;
}

/** Top-level paths the API serves; everything else is an item, served by CloudFront from S3. */
export const API_PREFIXES = ['streams', 'api'] as const;

/**
 * The mirror's read-only HTTP app (metadata under `/streams/` and reports
 * under `/api/`) on a REST API Gateway, behind CloudFront. The function can
 * read the catalog and published metadata, and write nothing.
 */
export class MirrorApi extends Construct {
  public readonly api: apigateway.RestApi;
  public readonly handler: MirrorFunction;

  constructor(scope: Construct, id: string, props: MirrorApiProps) {
    super(scope, id);
    this.handler = new MirrorFunction(this, 'Handler', {
      entry: fileURLToPath(new URL('../../functions/handlers/api.ts', import.meta.url)),
      description: 'Serves mirror metadata and status through API Gateway',
      memorySizeMb: 1024,
      // API Gateway gives up after 29 s.
      timeout: Duration.seconds(29),
      environment: { [ENV.bucket]: props.bucket.bucketName, [ENV.table]: props.table.tableName },
    });
    props.table.grantReadData(this.handler.role);
    grantObjectAccess(this.handler.role, props.bucket, { read: [KEY_PATTERNS.metadata] });

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.api = new apigateway.RestApi(this, 'Api', {
      description: 'skystreams mirror metadata (behind CloudFront)',
      endpointTypes: [apigateway.EndpointType.REGIONAL],
      // Bodies go out base64-encoded and API Gateway decodes them: bytes pass untouched whatever the type.
      binaryMediaTypes: ['*/*'],
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.DESTROY,
      deployOptions: {
        stageName: props.stageName ?? 'mirror',
        accessLogDestination: new apigateway.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigateway.AccessLogFormat.jsonWithStandardFields(),
        loggingLevel: apigateway.MethodLoggingLevel.ERROR,
        // Request and response bodies stay out of the logs.
        dataTraceEnabled: false,
        tracingEnabled: true,
        metricsEnabled: true,
        throttlingRateLimit: props.throttleRateLimit ?? 50,
        throttlingBurstLimit: props.throttleBurstLimit ?? 100,
      },
    });
    const integration = new apigateway.LambdaIntegration(this.handler.function, { proxy: true });
    for (const prefix of API_PREFIXES) {
      const everything = this.api.root.addResource(prefix).addResource('{proxy+}');
      everything.addMethod('GET', integration);
      everything.addMethod('HEAD', integration);
    }
  }
}
