/**
 * The Lambda handlers as the stack deploys them, on the stand-ins: their
 * bucket and table, the upstream's keyring where the bundle would hold it,
 * and their environment in process.env, which restore() puts back.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context } from 'aws-lambda';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { initCloudResources } from '../../functions/adapters/cloud.ts';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import { SIGNING_KEYS_FORMAT } from '../../functions/core/signing-keys.ts';
import type { StandinEndpoints } from './global-standins.ts';

export type Handler = (event: unknown, context: Context) => Promise<any>;

export type HandlerName = 'check' | 'plan' | 'copy' | 'publish' | 'prune' | 'fail' | 'api' | 'upload';

export interface HandlerEnvironmentOptions {
  standins: StandinEndpoints;
  /** The bucket and the table (same name), created on the stand-ins. */
  name: string;
  upstreamUrl: string;
  /** The upstream's public keyring, written where ENV.keyringFile points. */
  keyring: Uint8Array;
  /** More of the functions' environment, over: every image, one version, no prune grace. */
  env?: Record<string, string>;
  /** Powertools' logs and metrics off. @default true */
  quiet?: boolean;
}

export interface HandlerEnvironment {
  /** Where the keyring is: a directory of the test's own, removed by restore(). */
  workDir: string;
  restore(): void;
}

export async function setHandlerEnvironment(options: HandlerEnvironmentOptions): Promise<HandlerEnvironment> {
  const { standins, name } = options;
  await initCloudResources({ bucket: name, table: name, s3Endpoint: standins.s3Endpoint, dynamodbEndpoint: standins.dynamodbEndpoint });
  const workDir = mkdtempSync(join(tmpdir(), `${name}-`));
  writeFileSync(join(workDir, 'keyring.gpg'), options.keyring);
  const saved = { ...process.env };
  Object.assign(
    process.env,
    standins.env,
    {
      [ENV.bucket]: name,
      [ENV.table]: name,
      [ENV.sourceUrl]: options.upstreamUrl,
      [ENV.filters]: JSON.stringify([]),
      [ENV.max]: '1',
      [ENV.pruneGraceHours]: '0',
      [ENV.keyringFile]: join(workDir, 'keyring.gpg'),
      POWERTOOLS_TRACE_ENABLED: 'false',
      POWERTOOLS_SERVICE_NAME: 'skystreams',
    },
    (options.quiet ?? true) && { POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' },
    options.env,
  );
  return {
    workDir,
    restore() {
      process.env = saved;
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}

/** A handler module's export, loaded once the environment is set (the modules read it when first invoked). */
export async function loadHandler(name: HandlerName): Promise<Handler> {
  return ((await import(`../../functions/handlers/${name}.ts`)) as { handler: Handler }).handler;
}

export async function loadHandlers<Name extends HandlerName>(names: readonly Name[]): Promise<Record<Name, Handler>> {
  return Object.fromEntries(await Promise.all(names.map(async (name) => [name, await loadHandler(name)]))) as Record<Name, Handler>;
}

/** As the stack creates it: a keyless signing key document, which the plan function fills on its first run. */
export async function createSigningSecret(standins: StandinEndpoints, name: string): Promise<void> {
  const secrets = new SecretsManagerClient({
    endpoint: standins.secretsManagerEndpoint,
    region: standins.region,
    credentials: { accessKeyId: 'standin', secretAccessKey: 'standin' },
  });
  await secrets.send(new CreateSecretCommand({ Name: name, SecretString: JSON.stringify({ format: SIGNING_KEYS_FORMAT }) }));
  secrets.destroy();
}
