import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { METRICS_NAMESPACE, SERVICE_NAME } from '../../functions/adapters/lambda/telemetry-names.ts';

export interface MirrorFunctionProps {
  /** Absolute path of the handler module (exports `handler`). */
  readonly entry: string;
  /** What the function does, shown in the console. */
  readonly description: string;
  /** @default 1024 */
  readonly memorySizeMb?: number;
  /** @default Duration.minutes(1) */
  readonly timeout?: Duration;
  /** Plain settings only: never secrets (they would be readable by anyone who can read the function). */
  readonly environment?: Record<string, string>;
  /** Extra files copied next to the bundle, by file name (e.g. the keyring). @default none */
  readonly bundledFiles?: Record<string, Uint8Array>;
  /** Powertools service name, for logs, metrics and traces. @default 'skystreams' */
  readonly serviceName?: string;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * A Lambda handler bundled by the local esbuild (no Docker) as one ESM file,
 * on Node 24 / arm64, traced with X-Ray, logging as JSON to its own log group
 * through a role that can write only there; every other permission is
 * granted by whoever uses the function.
 */
export class MirrorFunction extends Construct {
  public readonly function: NodejsFunction;
  public readonly role: iam.Role;
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: MirrorFunctionProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Our own role rather than the managed AWSLambdaBasicExecutionRole, which may write to any log group.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `${props.description} (skystreams)`,
    });
    this.logGroup.grantWrite(this.role);

    const stagedFiles = stageBundledFiles(props.bundledFiles ?? {});
    this.function = new NodejsFunction(this, 'Function', {
      entry: props.entry,
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySizeMb ?? 1024,
      timeout: props.timeout ?? Duration.minutes(1),
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      environment: {
        POWERTOOLS_SERVICE_NAME: props.serviceName ?? SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        POWERTOOLS_LOG_LEVEL: 'INFO',
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node24',
        mainFields: ['module', 'main'],
        // Some dependencies still call require(); give the ESM bundle one.
        banner: "import { createRequire as __skystreamsRequire } from 'node:module'; const require = __skystreamsRequire(import.meta.url);",
        minify: true,
        sourceMap: true,
        // Domain errors are told apart by `name` (Step Functions retries UpstreamError by name): keep class names.
        keepNames: true,
        // Pin the SDK we test against rather than the runtime's copy.
        bundleAwsSDK: true,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (_inputDir: string, outputDir: string) =>
            stagedFiles.map(({ name, path }) => `cp ${shellQuote(path)} ${shellQuote(join(outputDir, name))}`),
        },
      },
    });
  }
}

/** Writes extra bundle files to content-addressed temporary paths, so bundling can copy them in. */
function stageBundledFiles(files: Record<string, Uint8Array>): { name: string; path: string }[] {
  return Object.entries(files).map(([name, bytes]) => {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`bundled file name ${JSON.stringify(name)} must be a plain file name`);
    const dir = join(tmpdir(), 'skystreams-bundle-files', createHash('sha256').update(bytes).digest('hex'));
    mkdirSync(dir, { recursive: true });
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return { name, path };
  });
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
