/**
 * Reads a served re-signed mirror the way a client does, from its base URL:
 * the keyring at /keyring.gpg, the signed index and every products file it
 * lists (each signature verified against that keyring, each document held
 * to MAAS's model rules, each `.json` twin equal to what was signed), then
 * every item those files list (200, with the size and sha256 they promise).
 * A client that keeps its own copy of the keyring (a MAAS region: the file
 * its boot source's keyring_filename names) verifies with that copy instead.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadKeyring, verifyClearsigned, type Keyring } from '../../functions/core/pgp.ts';
import { flattenItems, parseIndex, parseProducts, type ProductsDocument, type StreamIndex } from '../../functions/core/simplestreams.ts';
import { maasIndexProblems, maasProductsProblems } from './maas-models.ts';

const execFileAsync = promisify(execFile);
export const GPGV = ['/usr/bin/gpgv', '/bin/gpgv'].find((path) => existsSync(path));

export interface ResignedMirror {
  /** The keyring served at /keyring.gpg. */
  keyring: Keyring;
  keyringBytes: Uint8Array;
  /** The keyring the signatures were verified with (and gpgv runs with): the client's own, or else the served one. */
  verifiedWith: Uint8Array;
  index: StreamIndex;
  products: ProductsDocument[];
  /** Every item path the products files list, sorted, unique. */
  listedPaths: string[];
  /** Every problem MAAS's models would raise (empty when it would accept the stream). */
  maasProblems: string[];
  /** Every non-200 or digest mismatch, `path: problem`. */
  fetchProblems: string[];
  /** The signed files as served, by path, for gpgv. */
  signedFiles: Map<string, Uint8Array>;
}

async function get(url: string): Promise<{ status: number; bytes: Uint8Array }> {
  const response = await fetch(url);
  return { status: response.status, bytes: new Uint8Array(await response.arrayBuffer()) };
}

async function getOk(baseUrl: string, path: string): Promise<Uint8Array> {
  const { status, bytes } = await get(`${baseUrl}${path}`);
  if (status !== 200) throw new Error(`GET /${path}: ${status}`);
  return bytes;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

export async function readResignedMirror(baseUrl: string, options: { clientKeyring?: Uint8Array } = {}): Promise<ResignedMirror> {
  const keyringBytes = await getOk(baseUrl, 'keyring.gpg');
  const keyring = await loadKeyring('/keyring.gpg', keyringBytes);
  const verifiedWith = options.clientKeyring ?? keyringBytes;
  const trusted = options.clientKeyring ? await loadKeyring("the client's keyring", options.clientKeyring) : keyring;
  const signedFiles = new Map<string, Uint8Array>();
  const maasProblems: string[] = [];
  const fetchProblems: string[] = [];

  const verified = async (path: string) => {
    const bytes = await getOk(baseUrl, path);
    signedFiles.set(path, bytes);
    const body = await verifyClearsigned(path, text(bytes), trusted);
    const twinPath = path.replace(/\.sjson$/, '.json');
    const twin = text(await getOk(baseUrl, twinPath));
    return { body, twin };
  };

  const { body: indexBody, twin: indexTwin } = await verified('streams/v1/index.sjson');
  const index = parseIndex('index.sjson', indexBody);
  maasProblems.push(...maasIndexProblems('index.sjson', JSON.parse(indexBody)));
  // The unsigned index lists the unsigned products files, and says nothing else differently.
  const unsignedIndex = JSON.parse(indexTwin) as StreamIndex;
  for (const entry of Object.values(unsignedIndex.index)) entry.path = entry.path.replace(/\.json$/, '.sjson');
  if (JSON.stringify(unsignedIndex) !== JSON.stringify(index)) fetchProblems.push('streams/v1/index.json: differs from index.sjson');

  const products: ProductsDocument[] = [];
  const paths = new Map<string, { size: number; sha256?: string }>();
  for (const [contentId, entry] of Object.entries(index.index)) {
    const { body, twin } = await verified(entry.path);
    if (twin !== body) fetchProblems.push(`${entry.path}: its .json twin differs from what was signed`);
    const doc = parseProducts(entry.path, body);
    if (doc.content_id !== contentId) fetchProblems.push(`${entry.path}: content_id ${doc.content_id}, index says ${contentId}`);
    maasProblems.push(...maasProductsProblems(entry.path, JSON.parse(body)));
    products.push(doc);
    for (const item of flattenItems(entry.path, doc)) paths.set(item.path, { size: item.size, ...(item.sha256 && { sha256: item.sha256 }) });
  }
  for (const [path, promised] of paths) {
    const { status, bytes } = await get(`${baseUrl}${path}`);
    if (status !== 200) {
      fetchProblems.push(`${path}: ${status}`);
      continue;
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (bytes.byteLength !== promised.size || (promised.sha256 && sha256 !== promised.sha256)) {
      fetchProblems.push(`${path}: ${bytes.byteLength} bytes, sha256 ${sha256}; promised ${promised.size}, ${promised.sha256}`);
    }
  }
  return { keyring, keyringBytes, verifiedWith, index, products, listedPaths: [...paths.keys()].sort(), maasProblems, fetchProblems, signedFiles };
}

/**
 * `gpgv --keyring` over every signed file, with the keyring it was read with: what
 * python-simplestreams and MAAS run. Failures as `path: gpgv's output`;
 * undefined when gpgv is not installed.
 */
export async function gpgvProblems(mirror: ResignedMirror): Promise<string[] | undefined> {
  if (!GPGV) return undefined;
  const work = await mkdtemp(join(tmpdir(), 'skystreams-gpgv-'));
  try {
    const keyring = join(work, 'keyring.gpg');
    await writeFile(keyring, mirror.verifiedWith);
    const problems: string[] = [];
    for (const [path, bytes] of mirror.signedFiles) {
      const file = join(work, path.replaceAll('/', '_'));
      await writeFile(file, bytes);
      try {
        await execFileAsync(GPGV, ['--keyring', keyring, file]);
      } catch (error) {
        problems.push(`${path}: ${(error as { stderr?: string }).stderr ?? String(error)}`);
      }
    }
    return problems;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
