/**
 * The mirror's signing keys on AWS: one Secrets Manager secret (infra
 * creates it holding a keyless document, or the deployment names an
 * existing one). Only the planning function, which signs, may read or
 * write it. The secret's value is never logged nor put in an error.
 *
 * The SDK client is loaded on first use: every sync function shares the
 * backend code, and only the one that signs should pay for it at start.
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigError, NotFoundError } from '../../core/errors.ts';
import type { SigningKeyStore } from '../../core/ports.ts';
import { awsToDomainError, type ServiceErrorRules } from '../aws-errors.ts';

const RULES: ServiceErrorRules = {
  specific: ({ name, what, options }) => {
    if (name === 'ResourceNotFoundException') return new NotFoundError(`${what}: no such secret`, options);
    if (name === 'AccessDeniedException') return new ConfigError(`${what}: access denied (the signing function's role must allow it)`, options);
    if (name === 'DecryptionFailure') return new ConfigError(`${what}: cannot be decrypted with its KMS key`, options);
    return undefined;
  },
  unavailable: ({ name }) => name === 'InternalServiceError' || name === 'ThrottlingException',
};

export interface SecretsManagerSigningKeysOptions {
  /** The secret's ARN or name. */
  secretId: string;
  /** @default the process's client from the SDK chain (AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_REGION…), made on first use */
  client?: SecretsManagerClient;
  /** Sees the client once it is made (the backend's test seam, as for its other clients). */
  onClient?: (client: SecretsManagerClient) => void;
}

let shared: SecretsManagerClient | undefined;

/** One client per process, as for S3 and DynamoDB: every store reuses its connections and credentials. */
function sharedClient(Client: new (config: object) => SecretsManagerClient): SecretsManagerClient {
  shared ??= new Client({});
  return shared;
}

export class SecretsManagerSigningKeys implements SigningKeyStore {
  readonly description: string;
  private client: SecretsManagerClient | undefined;
  private readonly secretId: string;
  private readonly onClient: ((client: SecretsManagerClient) => void) | undefined;

  constructor(options: SecretsManagerSigningKeysOptions) {
    this.secretId = options.secretId;
    this.client = options.client;
    this.onClient = options.onClient;
    this.description = `secret ${options.secretId}`;
  }

  private async sdk() {
    const sdk = await import('@aws-sdk/client-secrets-manager');
    if (!this.client) {
      this.client = sharedClient(sdk.SecretsManagerClient);
      this.onClient?.(this.client);
    }
    return { client: this.client, sdk };
  }

  async read(): Promise<string | undefined> {
    try {
      const { client, sdk } = await this.sdk();
      const { SecretString } = await client.send(new sdk.GetSecretValueCommand({ SecretId: this.secretId }));
      if (SecretString === undefined) throw new ConfigError(`${this.description}: holds binary data, not the signing keys document`);
      return SecretString;
    } catch (error) {
      const mapped = awsToDomainError(error, this.description, RULES);
      if (mapped instanceof NotFoundError) return undefined;
      throw mapped;
    }
  }

  async create(text: string, overwrite: boolean): Promise<boolean> {
    if (overwrite) {
      await this.replace(text);
      return true;
    }
    try {
      const { client, sdk } = await this.sdk();
      await client.send(new sdk.CreateSecretCommand({ Name: this.secretId, SecretString: text }));
      return true;
    } catch (error) {
      if ((error as { name?: string }).name === 'ResourceExistsException') return false;
      throw awsToDomainError(error, this.description, RULES);
    }
  }

  async replace(text: string): Promise<void> {
    try {
      const { client, sdk } = await this.sdk();
      await client.send(new sdk.PutSecretValueCommand({ SecretId: this.secretId, SecretString: text }));
    } catch (error) {
      throw awsToDomainError(error, this.description, RULES);
    }
  }
}
