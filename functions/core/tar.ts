/**
 * The POSIX tar (ustar + pax) framing of an air-gap bundle: any `tar` can
 * list or extract one, and both ends stream it without holding an entry in
 * memory. Only regular files are written or read; anything else in a bundle
 * is refused (BundleError naming the archive and byte offset), since a
 * bundle is never produced with it.
 */
import { BundleError } from './errors.ts';
import type { ByteStream } from './ports.ts';

export const TAR_BLOCK = 512;

/** ustar's 11 octal digits stop at 8 GiB − 1; larger sizes go in a pax header. */
const USTAR_MAX_SIZE = 0o77777777777;
const USTAR_NAME_BYTES = 100;
const END_OF_ARCHIVE = new Uint8Array(2 * TAR_BLOCK);

export interface TarEntryHeader {
  path: string;
  size: number;
}

/** Where a header was read, for messages: the archive's name and the header's byte offset. */
export interface TarPosition {
  archive: string;
  offset: number;
}

function malformed(at: TarPosition, problem: string): BundleError {
  return new BundleError(at.archive, `at byte ${at.offset}: ${problem}`);
}

/** Bytes of zero padding after an entry of `size` bytes. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** The header block(s) for one regular file: a pax header first when the path or size does not fit ustar. */
export function tarHeader(entry: TarEntryHeader): Uint8Array {
  const name = new TextEncoder().encode(entry.path);
  const pax: string[] = [];
  if (name.byteLength > USTAR_NAME_BYTES || !/^[\x20-\x7e]*$/.test(entry.path)) pax.push(paxRecord('path', entry.path));
  if (entry.size > USTAR_MAX_SIZE) pax.push(paxRecord('size', String(entry.size)));
  const main = ustarBlock({ name: pax.length > 0 ? fallbackName(entry.path) : entry.path, size: Math.min(entry.size, USTAR_MAX_SIZE), type: '0' });
  if (pax.length === 0) return main;
  const records = new TextEncoder().encode(pax.join(''));
  const paxHeader = ustarBlock({ name: 'PaxHeader', size: records.byteLength, type: 'x' });
  const out = new Uint8Array(TAR_BLOCK + records.byteLength + tarPadding(records.byteLength) + TAR_BLOCK);
  out.set(paxHeader, 0);
  out.set(records, TAR_BLOCK);
  out.set(main, out.byteLength - TAR_BLOCK);
  return out;
}

/** One file of an archive being written: its bytes are opened only when its turn comes. */
export interface TarSource extends TarEntryHeader {
  open(): Promise<ByteStream>;
}

/**
 * The archive of `sources`, streamed. Each source must yield exactly `size`
 * bytes (an Error naming the path otherwise: the header is already written).
 */
export async function* writeTar(sources: AsyncIterable<TarSource> | Iterable<TarSource>): AsyncGenerator<Uint8Array> {
  for await (const source of sources) {
    yield tarHeader(source);
    let written = 0;
    for await (const chunk of await source.open()) {
      written += chunk.byteLength;
      if (written > source.size) throw new Error(`${source.path}: more than the ${source.size} bytes its tar header announces`);
      yield chunk;
    }
    if (written !== source.size) throw new Error(`${source.path}: ${written} bytes, its tar header announces ${source.size}`);
    const padding = tarPadding(source.size);
    if (padding > 0) yield new Uint8Array(padding);
  }
  yield END_OF_ARCHIVE;
}

/** Names of the tar entry types a bundle refuses, for the message. */
const ENTRY_KINDS: Readonly<Record<string, string>> = { '1': 'a hard link', '2': 'a symbolic link', '3': 'a character device', '4': 'a block device', '5': 'a directory', '6': 'a FIFO', g: 'a global pax header', L: 'a GNU long name', K: 'a GNU long link name' };

/** What a header block says: an entry, the end of the archive, or pax records for the next entry. */
export type TarBlock =
  | { kind: 'end' }
  | { kind: 'file'; path: string; size: number }
  | { kind: 'pax'; size: number };

/** Reads one 512-byte header block at byte `offset` of the archive. */
export function parseTarBlock(block: Uint8Array, at: TarPosition): TarBlock {
  if (block.byteLength !== TAR_BLOCK) throw malformed(at, 'truncated header');
  if (block.every((byte) => byte === 0)) return { kind: 'end' };
  const stored = octal(block, 148, 8, at, 'checksum');
  if (stored !== headerChecksum(block)) throw malformed(at, 'header checksum mismatch: not a tar archive, or a damaged one');
  const size = octal(block, 124, 12, at, 'size');
  const type = String.fromCharCode(block[156] ?? 0);
  if (type === 'x') return { kind: 'pax', size };
  const name = text(block, 0, USTAR_NAME_BYTES);
  const prefix = text(block, 345, 155);
  const path = prefix ? `${prefix}/${name}` : name;
  if (type !== '0' && type !== '\0') {
    throw malformed(at, `${JSON.stringify(path)}: entry type ${JSON.stringify(type)}${ENTRY_KINDS[type] ? ` (${ENTRY_KINDS[type]})` : ''}: a bundle holds regular files only`);
  }
  return { kind: 'file', path, size };
}

/** The `path` and `size` overrides of a pax extended header's records. */
export function parsePaxRecords(records: Uint8Array, at: TarPosition): Partial<TarEntryHeader> {
  const out: Partial<TarEntryHeader> = {};
  const decoded = new TextDecoder('utf-8', { fatal: true });
  let cursor = 0;
  while (cursor < records.byteLength) {
    const space = records.indexOf(0x20, cursor);
    const length = space < 0 ? NaN : Number(new TextDecoder().decode(records.subarray(cursor, space)));
    if (!Number.isSafeInteger(length) || length <= 0 || cursor + length > records.byteLength || records[cursor + length - 1] !== 0x0a) {
      throw malformed(at, 'malformed pax record');
    }
    const record = decoded.decode(records.subarray(space + 1, cursor + length - 1));
    const equals = record.indexOf('=');
    const key = record.slice(0, equals);
    const value = record.slice(equals + 1);
    if (key === 'path') out.path = value;
    if (key === 'size') {
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw malformed(at, `pax size ${JSON.stringify(value)}`);
      out.size = Number(value);
    }
    cursor += length;
  }
  return out;
}

function paxRecord(key: string, value: string): string {
  // The length counts itself: add digits until it is stable.
  const body = ` ${key}=${value}\n`;
  const bodyBytes = new TextEncoder().encode(body).byteLength;
  let length = bodyBytes + 1;
  while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes;
  return `${length}${body}`;
}

/** The ustar name of an entry whose real path is in its pax header (what a pax-unaware tar shows). */
function fallbackName(path: string): string {
  const ascii = path.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length > USTAR_NAME_BYTES ? ascii.slice(ascii.length - USTAR_NAME_BYTES) : ascii;
}

function ustarBlock(fields: { name: string; size: number; type: '0' | 'x' }): Uint8Array {
  const block = new Uint8Array(TAR_BLOCK);
  const put = (at: number, value: string) => block.set(new TextEncoder().encode(value), at);
  put(0, fields.name);
  put(100, '0000644\0');
  put(108, '0000000\0');
  put(116, '0000000\0');
  put(124, `${fields.size.toString(8).padStart(11, '0')}\0`);
  put(136, '00000000000\0');
  put(156, fields.type);
  put(257, 'ustar\0');
  put(263, '00');
  put(148, '        ');
  put(148, `${headerChecksum(block).toString(8).padStart(6, '0')}\0 `);
  return block;
}

function headerChecksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i += 1) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
  return sum;
}

function octal(block: Uint8Array, start: number, length: number, at: TarPosition, field: string): number {
  const digits = text(block, start, length).trim();
  if (!/^[0-7]+$/.test(digits)) throw malformed(at, `${field} field is not octal`);
  return parseInt(digits, 8);
}

function text(block: Uint8Array, at: number, length: number): string {
  const field = block.subarray(at, at + length);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}
