import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { useStandins } from '../support/global-standins.ts';
import { selectedPaths, useSignedFixtureUpstream } from '../support/mirror.ts';

const standins = useStandins();

describe('CLI on the cloud backend: init, sync, serve, verify against S3 + DynamoDB stand-ins', () => {
  const fixture = useSignedFixtureUpstream('cli-cloud');

  it('mirrors into S3 + DynamoDB, serves byte-identical files and verifies them', async () => {
    const { upstream, keyring, files } = fixture();
    const { s3Endpoint, dynamodbEndpoint, env } = standins();
    const name = `cli-${randomUUID().slice(0, 18)}`;
    const backend = ['--bucket', name, '--table', name, '--s3-endpoint', s3Endpoint, '--dynamodb-endpoint', dynamodbEndpoint];

    const init = await cli(['init', ...backend], env);
    expect(init.stderr).not.toMatch(/skystreams:/);
    expect(init.code).toBe(0);
    expect(init.stdout).toMatch(new RegExp(`s3://${name}: created bucket`));
    const again = await cli(['init', ...backend], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`s3://${name}: bucket exists`));

    const sync = await cli(['sync', ...backend, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1'], env);
    expect(sync.stderr).toContain('"type":"published"');
    expect(sync.code).toBe(0);

    const server = await startServing(['serve', ...backend], env);
    try {
      for (const path of ['streams/v1/index.sjson', 'streams/v1/index.json', ...selectedPaths(loadFixtureProducts(), 'amd64', 1)]) {
        const response = await fetch(server.url + path);
        expect(response.status, path).toBe(200);
        expect(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(files.get(path)!)), path).toBe(true);
      }
    } finally {
      server.process.kill('SIGTERM');
    }

    const verify = await cli(['verify', ...backend], env);
    expect(verify.stdout).toMatch(/0 bad/);
    expect(verify.code).toBe(0);
    const status = await cli(['status', ...backend, '--json'], env);
    expect(JSON.parse(status.stdout)).toMatchObject({ publication: { generation: 1 }, runs: [{ state: 'succeeded' }] });
  });

  it('takes the endpoints from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB', async () => {
    const { s3Endpoint, dynamodbEndpoint, env } = standins();
    const name = `env-${randomUUID().slice(0, 18)}`;
    const viaEnv = { ...env, AWS_ENDPOINT_URL_S3: s3Endpoint, AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint };

    expect((await cli(['init', '--bucket', name, '--table', name], viaEnv)).code).toBe(0);
    const status = await cli(['status', '--bucket', name, '--table', name, '--json'], viaEnv);

    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({ publication: null, mode: null, channels: [], runs: [], conflicts: [] });
  });

  it('refuses half a cloud backend with a clear message', async () => {
    const result = await cli(['status', '--bucket', 'only-a-bucket']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--bucket and --table go together/);
  });
});
