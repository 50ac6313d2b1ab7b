/**
 * The rules of channels (ports.ts `Channel`): valid names, and how a
 * channel's history moves when it is pointed elsewhere or rolled back. Every
 * backend and the engine use these, so a switch means the same everywhere.
 */
import { ConfigError, ConflictError } from './errors.ts';
import { CHANNEL_HISTORY_LIMIT, CHANNEL_NAME, type Channel } from './ports.ts';

/** `name`, or ConfigError saying what a channel name may be. */
export function channelName(name: string, label = 'channel'): string {
  if (!CHANNEL_NAME.test(name)) {
    throw new ConfigError(`${label}: ${JSON.stringify(name)} is not a channel name (lower-case letters, digits and dashes, starting with a letter, at most 32)`);
  }
  return name;
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
