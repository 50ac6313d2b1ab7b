/**
 * A protocol stand-in for AWS Secrets Manager, enough for the signing key
 * store: the JSON 1.1 protocol's CreateSecret, GetSecretValue and
 * PutSecretValue over HTTP (`X-Amz-Target: secretsmanager.<Operation>`),
 * secrets in memory, errors as AWS names them (ResourceNotFoundException,
 * ResourceExistsException). Signatures are not checked and there are no
 * versions beyond the current value: it stands in for the wire, not the
 * service's policies, which test/handlers/iam.test.ts checks.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

export interface SecretsManagerStandin {
  endpoint: string;
  stop(): Promise<void>;
}

interface Secret {
  arn: string;
  name: string;
  value: string | undefined;
  versionId: string;
  createdDate: number;
}

const ACCOUNT = '123456789012';
const REGION = 'us-east-1';

export async function startSecretsManagerStandin(): Promise<SecretsManagerStandin> {
  const secrets = new Map<string, Secret>();
  // By name, by ARN, or by an ARN whose name part is the name with any 6-character suffix (as AWS appends).
  const find = (id: unknown): Secret | undefined => {
    if (typeof id !== 'string') return undefined;
    const arnName = /:secret:(.+)-[A-Za-z0-9]{6}$/.exec(id)?.[1];
    return secrets.get(id) ?? [...secrets.values()].find((secret) => secret.arn === id || secret.name === arnName);
  };

  const operations: Record<string, (input: Record<string, unknown>) => [number, unknown]> = {
    CreateSecret: (input) => {
      if (typeof input.Name !== 'string' || input.Name === '') return failure('InvalidParameterException', 'Name is required');
      if (secrets.has(input.Name)) return failure('ResourceExistsException', `The secret ${input.Name} already exists.`);
      const secret: Secret = {
        arn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${input.Name}-${randomUUID().slice(0, 6)}`,
        name: input.Name,
        value: typeof input.SecretString === 'string' ? input.SecretString : undefined,
        versionId: randomUUID(),
        createdDate: Date.now() / 1000,
      };
      secrets.set(secret.name, secret);
      return [200, { ARN: secret.arn, Name: secret.name, VersionId: secret.versionId }];
    },
    GetSecretValue: (input) => {
      const secret = find(input.SecretId);
      if (!secret || secret.value === undefined) return failure('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
      return [
        200,
        {
          ARN: secret.arn,
          Name: secret.name,
          SecretString: secret.value,
          VersionId: secret.versionId,
          VersionStages: ['AWSCURRENT'],
          CreatedDate: secret.createdDate,
        },
      ];
    },
    PutSecretValue: (input) => {
      const secret = find(input.SecretId);
      if (!secret) return failure('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
      if (typeof input.SecretString !== 'string') return failure('InvalidParameterException', 'SecretString is required');
      secret.value = input.SecretString;
      secret.versionId = randomUUID();
      return [200, { ARN: secret.arn, Name: secret.name, VersionId: secret.versionId, VersionStages: ['AWSCURRENT'] }];
    },
  };

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const target = String(request.headers['x-amz-target'] ?? '');
      const operation = operations[target.replace(/^secretsmanager\./, '')];
      let result: [number, unknown];
      if (request.method !== 'POST' || !target.startsWith('secretsmanager.') || !operation) {
        result = failure('UnknownOperationException', `not offered by this stand-in: ${target}`);
      } else {
        try {
          result = operation(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>);
        } catch {
          result = failure('SerializationException', 'the request body is not JSON');
        }
      }
      const [status, body] = result;
      response.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function failure(type: string, message: string): [number, unknown] {
  return [400, { __type: type, message }];
}
