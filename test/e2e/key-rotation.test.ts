/**
 * Rotating the mirror's signing key from the CLI, as docs/key-rotation.md
 * tells an operator to, on both backends (data dir; S3 + DynamoDB + a
 * Secrets Manager secret), read as MAAS reads it: each signature verified
 * against the keyring a region controller holds (its own copy, fetched
 * once), each document held to MAAS's models, gpgv run with that keyring.
 * A MAAS that fetched the keyring before the rotation keeps verifying until
 * the new key signs; one that fetched it after the next publication
 * verifies everything from then on.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import { initCloudResources } from '../../functions/adapters/cloud.ts';
import { SignatureError } from '../../functions/core/errors.ts';
import { SIGNING_KEYS_FORMAT } from '../../functions/core/signing-keys.ts';
import { OPENAPI_DOCUMENT } from '../../functions/http/openapi.ts';
import { cli, startServing } from '../support/cli.ts';
import { useStandins } from '../support/global-standins.ts';
import { validate } from '../support/json-schema.ts';
import { useSignedFixtureUpstream } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror, type ResignedMirror } from '../support/resigned-mirror.ts';

const standins = useStandins();
/** About twenty CLI processes, each loading the SDK and OpenPGP: half a minute alone, much more beside the rest of the suite. */
const ROTATION_TIMEOUT_MS = 240_000;

interface RotationSetup {
  /** Flags naming the backend (and its key store). */
  backend: string[];
  env: Record<string, string>;
  /** How `key activate` is told to go ahead once the early attempt was refused. */
  activateFlags: string[];
}

/** What every MAAS checks: its keyring verifies every signature (gpgv too), its models accept every document, every item is there. */
async function expectAccepted(mirror: ResignedMirror): Promise<void> {
  expect(mirror.fetchProblems).toEqual([]);
  expect(mirror.maasProblems).toEqual([]);
  expect(mirror.signedFiles.size).toBeGreaterThan(1);
  expect(await gpgvProblems(mirror)).toEqual([]);
}

const fingerprintsOf = (mirror: ResignedMirror) => mirror.keyring.fingerprints.map((fingerprint) => fingerprint.toUpperCase());

describe('CLI: key rotate → activate → retire, no MAAS ever broken', () => {
  const fixture = useSignedFixtureUpstream('key-rotation');

  async function rotateAsDocumented({ backend, env, activateFlags }: RotationSetup): Promise<void> {
    const { upstream, keyring } = fixture();
    const run = (...args: string[]) => cli(args, env);
    const sync = async (expected: 'published' | 'unchanged') => {
      const result = await run('sync', ...backend, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1', '--resign');
      expect(result.code, result.stderr).toBe(0);
      if (expected === 'published') expect(result.stderr).toContain('"type":"published"');
      else expect(result.stderr).not.toContain('"type":"published"');
    };
    await sync('published');
    const server = await startServing(['serve', ...backend], env);
    try {
      // The MAAS region that fetched /keyring.gpg when it was first set up.
      const first = await readResignedMirror(server.url);
      await expectAccepted(first);
      const preRotation = first.keyringBytes;
      const [oldKey] = fingerprintsOf(first);

      // Rotate: a pending key, refused a second time; what is served is unchanged until the next sync.
      const rotate = await run('key', 'rotate', ...backend);
      expect(rotate.code, rotate.stderr).toBe(0);
      const pendingKey = /new pending key ([0-9A-F]{40})/.exec(rotate.stdout)?.[1];
      expect(pendingKey).toBeDefined();
      expect(rotate.stdout).toContain(`skystreams key activate ${pendingKey}`);
      const again = await run('key', 'rotate', ...backend);
      expect(again.code).toBe(2);
      expect(again.stderr).toContain(`${pendingKey} is already pending`);
      await expectAccepted(await readResignedMirror(server.url, { clientKeyring: preRotation }));

      // The next publication serves both keys, still signed by the old one: the pre-rotation keyring verifies it.
      await sync('published');
      const published = await readResignedMirror(server.url, { clientKeyring: preRotation });
      await expectAccepted(published);
      expect(fingerprintsOf(published)).toEqual([oldKey, pendingKey]);
      // A second MAAS fetches the keyring now, as the docs say: this copy must verify everything from here on.
      const postRotation = published.keyringBytes;
      await expectAccepted(await readResignedMirror(server.url, { clientKeyring: postRotation }));

      const show = await run('key', 'show', ...backend);
      expect(show.stdout).toContain(`active   ${oldKey}  signing since`);
      expect(show.stdout).toMatch(new RegExp(`pending  ${pendingKey}  pending since \\S+; in every channel's /keyring.gpg since `));
      const shown = JSON.parse((await run('key', 'show', '--json', ...backend)).stdout) as { keys: { fingerprint: string; state: string; servedSince?: string }[] };
      expect(shown.keys.map(({ fingerprint, state }) => [fingerprint, state])).toEqual([[oldKey, 'active'], [pendingKey, 'pending']]);
      expect(shown.keys[1]!.servedSince).toEqual(expect.any(String));

      // Too early (the default --min-published is a day): refused, saying how long is left; nothing changed.
      const early = await run('key', 'activate', pendingKey!, ...backend);
      expect(early.code).toBe(2);
      expect(early.stderr).toMatch(new RegExp(`${pendingKey} has been served in /keyring.gpg only since \\S+: (23h \\d+m|24h) left before it may sign`));
      const unknown = await run('key', 'activate', 'ABCDEF', ...backend);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain(`ABCDEF is not a key of`);
      const stillPending = JSON.parse((await run('key', 'show', '--json', ...backend)).stdout) as { keys: { state: string }[] };
      expect(stillPending.keys.map((key) => key.state)).toEqual(['active', 'pending']);
      await sync('unchanged');
      await expectAccepted(await readResignedMirror(server.url, { clientKeyring: preRotation }));

      // Activated: the next publication is signed by the new key, which the post-rotation keyring verifies.
      const activate = await run('key', 'activate', pendingKey!, ...activateFlags, ...backend);
      expect(activate.code, activate.stderr).toBe(0);
      expect(activate.stdout).toContain(`${oldKey} stays in the keyring until: skystreams key retire ${oldKey}`);
      await sync('published');
      const activated = await readResignedMirror(server.url, { clientKeyring: postRotation });
      await expectAccepted(activated);
      expect(fingerprintsOf(activated)).toEqual([pendingKey, oldKey]);
      // A MAAS that never fetched the keyring again is the one the docs' wait is for.
      await expect(readResignedMirror(server.url, { clientKeyring: preRotation })).rejects.toThrow(SignatureError);

      const status = (await (await fetch(`${server.url}api/v1/status`)).json()) as { signing?: { keys: { fingerprint: string; state: string }[] } };
      expect(status.signing?.keys.map(({ fingerprint, state }) => [fingerprint, state])).toEqual([[pendingKey, 'active'], [oldKey, 'previous']]);
      expect(JSON.stringify(status)).not.toContain('PRIVATE KEY');
      expect(validate(status, { $ref: '#/components/schemas/StatusReport' }, OPENAPI_DOCUMENT as unknown as Record<string, unknown>)).toEqual([]);

      // Retire: the active key is refused, the old one drops out of the next keyring.
      const refused = await run('key', 'retire', pendingKey!, ...backend);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(`${pendingKey} is the active signing key`);
      expect((await run('key', 'retire', oldKey!, ...backend)).code).toBe(0);
      await sync('published');
      const retired = await readResignedMirror(server.url, { clientKeyring: postRotation });
      await expectAccepted(retired);
      expect(fingerprintsOf(retired)).toEqual([pendingKey]);
    } finally {
      server.process.kill('SIGTERM');
    }
  }

  it('on the embedded backend (signing-keys.json in the data dir), activating with --force', async () => {
    await rotateAsDocumented({ backend: ['--data-dir', join(fixture().work, 'mirror')], env: {}, activateFlags: ['--force'] });
  }, ROTATION_TIMEOUT_MS);

  it('on the cloud backend (the keys in a Secrets Manager secret), activating once --min-published has passed', async () => {
    const { env, secretsManagerEndpoint, region, s3Endpoint, dynamodbEndpoint } = standins();
    const name = `rotation-${randomUUID().slice(0, 18)}`;
    await initCloudResources({ bucket: name, table: name, s3Endpoint, dynamodbEndpoint });
    const secrets = new SecretsManagerClient({ endpoint: secretsManagerEndpoint, region, credentials: { accessKeyId: 'standin', secretAccessKey: 'standin' } });
    // As the stack creates it: keyless.
    await secrets.send(new CreateSecretCommand({ Name: name, SecretString: JSON.stringify({ format: SIGNING_KEYS_FORMAT }) }));
    const backend = ['--bucket', name, '--table', name, '--signing-secret', name, '--s3-endpoint', s3Endpoint, '--dynamodb-endpoint', dynamodbEndpoint];
    await rotateAsDocumented({ backend, env, activateFlags: ['--min-published', '1ms'] });
  }, ROTATION_TIMEOUT_MS);
});
