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
import { SignatureError } from '../../functions/core/errors.ts';
import { verifyClearsigned } from '../../functions/core/pgp.ts';
import { parseUpdated } from '../../functions/core/simplestreams.ts';
import { cli as runCli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { selectedPaths, useSignedFixtureUpstream } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror } from '../support/resigned-mirror.ts';

const cli = (...args: string[]) => runCli(args);
const standins = useStandins();

describe('CLI: sync --resign', () => {
  const fixture = useSignedFixtureUpstream('resign-cli');

  it('publishes exactly what it stores, signed with its own key, served with /keyring.gpg; rotation keeps both keys until retired', async () => {
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
      expect(show.stdout).toContain(`active   ${first.keyring.fingerprints[0]}`);

      // Rotation: the next sync publishes with the new key although upstream did not change; both keys are served.
      const rotate = await cli('key', 'rotate', '--data-dir', dataDir);
      expect(rotate.code).toBe(0);
      expect((await cli('sync', ...syncFlags)).code).toBe(0);
      const rotated = await readResignedMirror(server.url);
      expect(rotated.keyring.fingerprints).toHaveLength(2);
      expect(rotated.keyring.fingerprints[1]).toBe(first.keyring.fingerprints[0]);
      // Signed by the new key only: the old keyring alone does not verify it.
      const newIndex = new TextDecoder().decode(rotated.signedFiles.get('streams/v1/index.sjson'));
      await expect(verifyClearsigned('index.sjson', newIndex, first.keyring)).rejects.toThrow(SignatureError);
      expect(parseUpdated('', '', rotated.index.updated!)).toBeGreaterThan(parseUpdated('', '', first.index.updated!));
      expect(rotated.listedPaths).toEqual(first.listedPaths);

      // Retiring the active key is refused; retiring the old one drops it from the next keyring.
      const refused = await cli('key', 'retire', rotated.keyring.fingerprints[0]!, '--data-dir', dataDir);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('is the active signing key');
      expect((await cli('key', 'retire', first.keyring.fingerprints[0]!, '--data-dir', dataDir)).code).toBe(0);
      expect((await cli('sync', ...syncFlags)).code).toBe(0);
      const retired = await readResignedMirror(server.url);
      expect(retired.keyring.fingerprints).toEqual([rotated.keyring.fingerprints[0]]);
      expect(retired.fetchProblems).toEqual([]);
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
