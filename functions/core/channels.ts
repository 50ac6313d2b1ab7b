/**
 * The rules of channels (ports.ts `Channel`): valid names, and how a
 * channel's history moves when it is pointed elsewhere or rolled back. Every
 * backend and the engine use these, so a switch means the same everywhere.
 */
import { ConfigError, ConflictError } from './errors.ts';
import { CHANNEL_HISTORY_LIMIT, MAX_CHANNELS, type Channel, type Publications } from './ports.ts';
import { channelOf } from './validators.ts';

/** `name`, or ConfigError saying what a channel name may be. */
export function channelName(name: string, label = 'channel'): string {
  return channelOf(name, (problem) => {
    throw new ConfigError(`${label}: ${problem}`);
  });
}

/** `channel` (or a new channel `name`) pointed at `generation`: where it pointed goes to the front of its history. */
export function pointedAt(channel: Channel | undefined, name: string, generation: number): Omit<Channel, 'revision'> {
  if (!channel) return { name, generation, history: [] };
  if (channel.generation === generation) return { name, generation, history: channel.history };
  const history = [channel.generation, ...channel.history.filter((previous) => previous !== channel.generation)];
  return { name, generation, history: history.slice(0, CHANNEL_HISTORY_LIMIT) };
}

/** `channel` back at the generation it pointed at before: ConflictError when it has none. */
export function rolledBack(channel: Channel): Omit<Channel, 'revision'> {
  const [previous, ...older] = channel.history;
  if (previous === undefined) {
    throw new ConflictError(`channel ${channel.name} has no earlier generation to go back to (it points at ${channel.generation})`);
  }
  return { name: channel.name, generation: previous, history: older };
}

/** ConfigError when `name` would be a new channel beyond MAX_CHANNELS: nothing is created. */
export async function assertRoomForChannel(catalog: Publications, name: string): Promise<void> {
  const channels = await catalog.listChannels();
  if (channels.length >= MAX_CHANNELS && !channels.some((channel) => channel.name === name)) {
    throw new ConfigError(`channel ${name}: the mirror has ${channels.length} channels, the most it keeps; publish to an existing one`);
  }
}

/**
 * Points channel `to` at the generation channel `from` points at, exactly:
 * one atomic switch. ConfigError when `from` does not exist; ConflictError
 * when `to` moved meanwhile (nothing changes: run it again).
 */
export async function promote(catalog: Publications, from: string, to: string): Promise<{ generation: number; changed: boolean }> {
  const source = await catalog.getChannel(channelName(from, 'from'));
  if (!source) throw new ConfigError(`channel ${from} does not exist: nothing to promote (a sync with --channel ${from} creates it)`);
  const target = await catalog.getChannel(channelName(to, 'to'));
  if (target?.generation === source.generation) return { generation: source.generation, changed: false };
  if (!target) await assertRoomForChannel(catalog, to);
  await catalog.setChannel(pointedAt(target, to, source.generation), target?.revision);
  return { generation: source.generation, changed: true };
}

/**
 * Points `name` back at the generation it pointed at before. ConflictError
 * when it has none, when that generation was pruned, or when the channel
 * moved meanwhile; nothing changes then.
 */
export async function rollBack(catalog: Publications, name: string): Promise<{ from: number; to: number }> {
  const channel = await catalog.getChannel(channelName(name));
  if (!channel) throw new ConfigError(`channel ${name} does not exist`);
  const previous = rolledBack(channel);
  if (!(await catalog.getPublication(previous.generation))) {
    throw new ConflictError(
      `channel ${name} cannot go back to generation ${previous.generation}: it was pruned. ` +
        'To keep earlier generations for rollback, sync with --keep-generations 2 or more',
    );
  }
  await catalog.setChannel(previous, channel.revision);
  return { from: channel.generation, to: previous.generation };
}
