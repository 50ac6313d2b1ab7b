/**
 * `skystreams key show|rotate|activate|retire`: the mirror's own signing keys
 * (re-signed mode), rotated in two phases so that no MAAS is ever handed
 * metadata signed by a key its keyring lacks (docs/key-rotation.md).
 */
import type { Command } from 'commander';
import { requestRepublish } from '../../core/engine.ts';
import { ConfigError } from '../../core/errors.ts';
import type { Backend, SigningKeyStore } from '../../core/ports.ts';
import { parseDuration } from '../../core/settings.ts';
import { recordSigningKeyPhases, type SigningKeyPhase } from '../../core/signing-key-phases.ts';
import { activateSigningKey, describeSigningKeys, keyringServedSince, normalFingerprint, retireSigningKey, rotateSigningKey } from '../../core/signing-keys.ts';
import type { BackendFlags } from '../options.ts';
import { backendOptions, withBackend, withExamples, withMirror } from './support.ts';

/** How long a keyring holding a pending key must have been served before `key activate` lets it sign. */
export const DEFAULT_MIN_PUBLISHED = '24h';

export function addKeyCommands(program: Command): void {
  const keyCommand = withExamples(program.command('key').description("the mirror's own signing keys (re-signed mode; docs/key-rotation.md)"), [
    'skystreams key show --data-dir /srv/skystreams',
    'skystreams key rotate --data-dir /srv/skystreams     # a pending key, published in /keyring.gpg by the next sync',
    'skystreams key activate 31D0…0B2A --data-dir /srv/skystreams   # a day later, once every MAAS has the new keyring',
    'skystreams key rotate --signing-secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:skystreams-signing --bucket my-mirror --table my-mirror',
  ]);

  withExamples(backendOptions(keyCommand.command('show').description('each key and its phase: pending (published, not signing), active (signing), previous (still published)')), [
    'skystreams key show --data-dir /srv/skystreams',
    "skystreams key show --json --data-dir /srv/skystreams | jq '.keys[] | select(.state == \"pending\")'",
  ])
    .option('--json', 'print JSON (the keys as GET /api/v1/status lists them under signing, a pending key with servedSince)')
    .action(async (flags: BackendFlags & { json?: boolean }) =>
      withMirror(flags, async (backend) => {
        const phases = await describeSigningKeys(keyStoreOf(backend));
        if (!phases) {
          console.log(flags.json ? JSON.stringify({ keys: [] }, null, 2) : 'no signing key yet: the first sync with --resign creates one');
          return;
        }
        const shown = await Promise.all(phases.map(async (phase) => (phase.state === 'pending' ? { ...phase, ...(await servedSince(backend, phase)) } : phase)));
        console.log(flags.json ? JSON.stringify({ keys: shown }, null, 2) : shown.map(keyLine).join('\n'));
      }),
    );

  withExamples(
    backendOptions(keyCommand.command('rotate').description('make a new pending key: the next publication serves it in /keyring.gpg, the active key keeps signing')),
    ['skystreams key rotate --data-dir /srv/skystreams   # then sync, give every MAAS the new /keyring.gpg, then key activate'],
  ).action(async (flags: BackendFlags) =>
    withBackend(flags, async (backend) => {
      const store = keyStoreOf(backend);
      const made = await rotateSigningKey(store);
      await requestRepublish(backend.catalog, 'signing key rotated');
      await recordPhases(backend, store);
      if (made.state === 'active') {
        console.log(`new active key ${made.fingerprint}; the next sync publishes with it`);
        return;
      }
      console.log(`new pending key ${made.fingerprint}; the next sync publishes it in /keyring.gpg, the active key keeps signing`);
      console.log(`once every MAAS has that keyring: skystreams key activate ${made.fingerprint}`);
    }),
  );

  withExamples(
    backendOptions(keyCommand.command('activate').description('let the pending key sign from the next publication on; the active key stays in /keyring.gpg as previous')),
    [
      'skystreams key activate 31D0E5C2A4B7F0091E3D6C8A5B2F4E7D90C10B2A --data-dir /srv/skystreams',
      'skystreams key activate 31D0E5C2A4B7F0091E3D6C8A5B2F4E7D90C10B2A --min-published 7d --data-dir /srv/skystreams',
    ],
  )
    .argument('<fingerprint>', 'the pending key, as `key rotate` and `key show` print it')
    .option('--min-published <duration>', 'refuse until every channel has served a keyring holding the key this long', DEFAULT_MIN_PUBLISHED)
    .option('--force', 'activate now, however long the keyring has been served: a MAAS without it fails to import until it has it')
    .action(async (fingerprint: string, flags: BackendFlags & { minPublished: string; force?: boolean }) => {
      const minPublishedMs = parseDuration('--min-published', flags.minPublished, { allowZero: true });
      await withBackend(flags, async (backend) => {
        const store = keyStoreOf(backend);
        const { previous } = await activateSigningKey(store, fingerprint, { mirror: backend, minPublishedMs, force: flags.force });
        await requestRepublish(backend.catalog, 'signing key activated');
        await recordPhases(backend, store);
        console.log(`${normalFingerprint(fingerprint)} signs from the next sync on`);
        console.log(`${previous} stays in the keyring until: skystreams key retire ${previous}`);
      });
    });

  withExamples(backendOptions(keyCommand.command('retire').description('drop a previous key from the keyring the next publication serves')), [
    'skystreams key retire 0123456789ABCDEF0123456789ABCDEF01234567 --data-dir /srv/skystreams',
  ])
    .argument('<fingerprint>', 'a previous key, as `key show` prints it')
    .action(async (fingerprint: string, flags: BackendFlags) =>
      withBackend(flags, async (backend) => {
        const store = keyStoreOf(backend);
        await retireSigningKey(store, fingerprint);
        await requestRepublish(backend.catalog, 'signing key retired');
        await recordPhases(backend, store);
        console.log(`${fingerprint} retired; the next sync publishes a keyring without it`);
      }),
    );
}

/** The backend's key store, or a ConfigError saying how to name one. */
function keyStoreOf(backend: Backend): SigningKeyStore {
  if (!backend.signingKeys) throw new ConfigError(`${backend.description} has no signing key store: name one with --signing-secret`);
  return backend.signingKeys;
}

/** The status API reads the phases from the catalog: it may not read the keys themselves. */
async function recordPhases(backend: Backend, store: SigningKeyStore): Promise<void> {
  await recordSigningKeyPhases(backend.catalog, (await describeSigningKeys(store)) ?? []);
}

async function servedSince(backend: Backend, phase: SigningKeyPhase): Promise<{ servedSince?: string }> {
  const { since } = await keyringServedSince(backend, phase.fingerprint);
  return since ? { servedSince: since.toISOString() } : {};
}

function keyLine(key: SigningKeyPhase & { servedSince?: string }): string {
  const line = `${key.state.padEnd(8)} ${key.fingerprint}`;
  if (key.state === 'previous') return line;
  if (key.state === 'active') return `${line}  signing since ${key.since}`;
  const served = key.servedSince ? `in every channel's /keyring.gpg since ${key.servedSince}` : 'not in every served keyring yet: the next sync publishes it';
  return `${line}  pending since ${key.since}; ${served}`;
}
