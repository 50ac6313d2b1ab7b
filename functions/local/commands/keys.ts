/** `skystreams key show|rotate|retire`: the mirror's own signing keys (re-signed mode). */
import type { Command } from 'commander';
import { requestRepublish } from '../../core/engine.ts';
import { ConfigError } from '../../core/errors.ts';
import type { Backend, SigningKeyStore } from '../../core/ports.ts';
import { describeSigningKeys, retireSigningKey, rotateSigningKey } from '../../core/signing-keys.ts';
import type { BackendFlags } from '../options.ts';
import { backendOptions, withBackend, withExamples, withMirror } from './support.ts';

export function addKeyCommands(program: Command): void {
  const keyCommand = withExamples(program.command('key').description("the mirror's own signing keys (re-signed mode; docs/key-rotation.md)"), [
    'skystreams key show --data-dir /srv/skystreams',
    'skystreams key rotate --signing-secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:skystreams-signing --bucket my-mirror --table my-mirror',
  ]);

  withExamples(backendOptions(keyCommand.command('show').description('fingerprints of the active key and of the previous keys still published')), [
    'skystreams key show --data-dir /srv/skystreams',
  ]).action(async (flags: BackendFlags) =>
    withMirror(flags, async (backend) => {
      const keys = await describeSigningKeys(keyStoreOf(backend));
      if (!keys) {
        console.log('no signing key yet: the first sync with --resign creates one');
        return;
      }
      console.log(`active   ${keys.active}`);
      for (const fingerprint of keys.previous) console.log(`previous ${fingerprint}`);
    }),
  );

  withExamples(backendOptions(keyCommand.command('rotate').description('sign from the next publication on with a new key; the old public key stays in /keyring.gpg')), [
    'skystreams key rotate --data-dir /srv/skystreams   # then sync, and give MAAS the new /keyring.gpg',
  ]).action(async (flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const { retiring, active } = await rotateSigningKey(keyStoreOf(backend));
      await requestRepublish(backend.catalog, 'signing key rotated');
      console.log(`new active key ${active}; the next sync publishes with it`);
      if (retiring) console.log(`${retiring} stays in the keyring until: skystreams key retire ${retiring}`);
    }),
  );

  withExamples(backendOptions(keyCommand.command('retire').description('drop a previous key from the keyring the next publication serves')), [
    'skystreams key retire 0123456789ABCDEF0123456789ABCDEF01234567 --data-dir /srv/skystreams',
  ])
    .argument('<fingerprint>', 'a previous key, as `key show` prints it')
    .action(async (fingerprint: string, flags: BackendFlags) =>
      withBackend(flags, async (backend) => {
        await retireSigningKey(keyStoreOf(backend), fingerprint);
        await requestRepublish(backend.catalog, 'signing key retired');
        console.log(`${fingerprint} retired; the next sync publishes a keyring without it`);
      }),
    );
}

/** The backend's key store, or a ConfigError saying how to name one. */
function keyStoreOf(backend: Backend): SigningKeyStore {
  if (!backend.signingKeys) throw new ConfigError(`${backend.description} has no signing key store: name one with --signing-secret`);
  return backend.signingKeys;
}
