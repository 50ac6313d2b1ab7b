/** `skystreams promote`, `rollback`, `pin` and `unpin`: what each channel serves, and what pruning keeps. */
import type { Command } from 'commander';
import { promote, rollBack } from '../../core/channels.ts';
import { addPin, removePin } from '../../core/pins.ts';
import { DEFAULT_CHANNEL } from '../../core/ports.ts';
import type { BackendFlags } from '../options.ts';
import { backendOptions, withBackend, withExamples } from './support.ts';

export function addChannelCommands(program: Command): void {
  withExamples(backendOptions(program.command('promote').description('point channel TO at exactly the generation channel FROM serves, atomically')), [
    'skystreams promote candidate stable --data-dir /srv/skystreams',
    'skystreams promote candidate stable --bucket my-mirror --table my-mirror',
  ])
    .argument('<from>', 'the channel to take the generation from, e.g. candidate')
    .argument('<to>', 'the channel to point at it, e.g. stable (created if absent)')
    .action(async (from: string, to: string, flags: BackendFlags) =>
      withBackend(flags, async (backend) => {
        const { generation, changed } = await promote(backend.catalog, from, to);
        console.log(changed ? `channel ${to} now serves generation ${generation} (from ${from})` : `unchanged: channel ${to} already serves generation ${generation}`);
      }),
    );

  withExamples(backendOptions(program.command('rollback').description('point a channel back at the generation it served before, atomically')), [
    'skystreams rollback stable --data-dir /srv/skystreams   # exit code 1 when there is nothing to go back to',
  ])
    .argument('<channel>', `the channel, e.g. ${DEFAULT_CHANNEL}`)
    .action(async (name: string, flags: BackendFlags) =>
      withBackend(flags, async (backend) => {
        const { from, to } = await rollBack(backend.catalog, name);
        console.log(`channel ${name} now serves generation ${to} again (was ${from})`);
      }),
    );

  withExamples(backendOptions(program.command('pin').description('keep a mirrored version beyond --max, and its files out of pruning, while upstream lists it')), [
    'skystreams pin com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250709',
  ])
    .argument('<product>', 'the product id, as `skystreams images` shows it')
    .argument('<version>', 'the version name, e.g. 20250709')
    .action(async (product: string, version: string, flags: BackendFlags) =>
      withBackend(flags, async (backend) => {
        const pins = await addPin(backend.catalog, { product, version });
        console.log(`pinned ${product} ${version} (${pins.length} pinned); the next sync keeps it`);
      }),
    );

  withExamples(backendOptions(program.command('unpin').description('let --max and pruning apply to a pinned version again')), [
    'skystreams unpin com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250709',
  ])
    .argument('<product>')
    .argument('<version>')
    .action(async (product: string, version: string, flags: BackendFlags) =>
      withBackend(flags, async (backend) => {
        const pins = await removePin(backend.catalog, { product, version });
        console.log(`unpinned ${product} ${version} (${pins.length} pinned)`);
      }),
    );
}
