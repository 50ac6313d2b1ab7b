/**
 * Re-signed mode on the embedded backend, from the CLI as an operator runs
 * it: `sync --resign` of the real captures (MAAS-shaped, signed upstream),
 * then `serve`, read as a client reads it (test/support/resigned-mirror.ts).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CreateSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { initCloudResources } from '../../functions/adapters/cloud.ts';
import { SIGNING_KEYS_FILE } from '../../functions/adapters/fs/signing-key-file.ts';
import { SIGNING_KEYS_FORMAT } from '../../functions/core/signing-keys.ts';
import { useStandins } from '../support/global-standins.ts';
import { cli as runCli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { selectedPaths, useSignedFixtureUpstream } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror } from '../support/resigned-mirror.ts';

const cli = (...args: string[]) => runCli(args);
const standins = useStandins();

describe('CLI: sync --resign', () => {
  const fixture = useSignedFixtureUpstream('resign-cli');

  it('publishes exactly what it stores, signed with its own key, served with /keyring.gpg (rotation: key-rotation.test.ts)', async () => {
    const { work, keyring, upstream } = fixture();
    const dataDir = join(work, 'mirror');
    const syncFlags = ['--data-dir', dataDir, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1', '--resign'];
    const sync = await cli('sync', ...syncFlags);
    expect(sync.stderr).toContain('"type":"published"');
    expect(sync.code).toBe(0);
    // The private key stays its owner's.
    expect((await stat(join(dataDir, SIGNING_KEYS_FILE))).mode & 0o777).toBe(0o600);

    const server = await startServing(['serve', '--data-dir', dataDir]);
    try {
      const first = await readResignedMirror(server.url);
      expect(first.listedPaths).toEqual(selectedPaths(loadFixtureProducts(), 'amd64', 1));
      expect(first.fetchProblems).toEqual([]);
      expect(first.maasProblems).toEqual([]);
      expect(first.keyring.fingerprints).toHaveLength(1);
      const armored = await fetch(`${server.url}keyring.asc`);
      expect(armored.status).toBe(200);
      expect(await armored.text()).toContain('-----BEGIN PGP PUBLIC KEY BLOCK-----');
      const gpgv = await gpgvProblems(first);
      if (gpgv === undefined) console.warn('gpgv is not installed: the gpgv check of the re-signed files is skipped');
      else expect(gpgv).toEqual([]);

      const show = await cli('key', 'show', '--data-dir', dataDir);
      expect(show.stdout).toContain(`active   ${first.keyring.fingerprints[0]!.toUpperCase()}`);
      // The status API names the key and its phase, and nothing of the key itself.
      const status = (await (await fetch(`${server.url}api/v1/status`)).json()) as { signing?: unknown };
      expect(status.signing).toEqual({ keys: [{ fingerprint: first.keyring.fingerprints[0]!.toUpperCase(), state: 'active', since: expect.any(String) }] });

    } finally {
      server.process.kill('SIGTERM');
    }
    const verify = await cli('verify', '--data-dir', dataDir);
    expect(verify.stdout).toMatch(/0 bad/);
  });

  it('refuses --resign with --no-verify, and on the cloud backend without --signing-secret, naming the flags', async () => {
    const { work, keyring, upstream } = fixture();
    const sync = await cli('sync', '--data-dir', join(work, 'unsigned'), '--source', upstream.baseUrl, '--no-verify', '--resign');
    expect(sync.code).toBe(2);
    expect(sync.stderr).toMatch(/--resign: needs a verified source: an unsigned one \(--no-verify\) cannot be re-signed/);

    const cloud = await cli('sync', '--bucket', 'b', '--table', 't', '--source', upstream.baseUrl, '--keyring', keyring, '--resign');
    expect(cloud.code).toBe(2);
    expect(cloud.stderr).toContain('--resign: the cloud backend keeps the signing keys in Secrets Manager: name the secret with --signing-secret ARN');
  });

  it('manages the signing keys in a Secrets Manager secret on the cloud backend (key show / rotate)', async () => {
    const { env, secretsManagerEndpoint, region, s3Endpoint, dynamodbEndpoint } = standins();
    const secret = `skystreams-cli-${process.pid}`;
    await initCloudResources({ bucket: secret, table: secret, s3Endpoint, dynamodbEndpoint });
    const client = new SecretsManagerClient({ endpoint: secretsManagerEndpoint, region, credentials: { accessKeyId: 'standin', secretAccessKey: 'standin' } });
    // As the stack creates it: keyless.
    await client.send(new CreateSecretCommand({ Name: secret, SecretString: JSON.stringify({ format: SIGNING_KEYS_FORMAT }) }));
    const flags = ['--bucket', secret, '--table', secret, '--signing-secret', secret, '--s3-endpoint', s3Endpoint, '--dynamodb-endpoint', dynamodbEndpoint];

    const empty = await runCli(['key', 'show', ...flags], env);
    expect(empty.stdout).toContain('no signing key yet');
    const rotated = await runCli(['key', 'rotate', ...flags], env);
    expect(rotated.stderr).toBe('');
    const active = /new active key ([0-9A-F]{40})/.exec(rotated.stdout)?.[1];
    expect(active).toBeDefined();
    const shown = await runCli(['key', 'show', ...flags], env);
    expect(shown.stdout).toContain(`active   ${active}`);
    const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: secret }));
    expect(JSON.parse(SecretString!).active).toContain('-----BEGIN PGP PRIVATE KEY BLOCK-----');
  });

});
