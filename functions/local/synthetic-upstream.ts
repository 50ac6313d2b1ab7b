/**
 * A synthetic, signed simplestreams upstream: deterministic item bytes, real
 * OpenPGP clearsigned metadata and a small node:http server. Used by the
 * offline demo and by tests; nothing here talks to the internet.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createCleartextMessage, generateKey, readKey, readPrivateKey, sign } from 'openpgp';
import {
  flattenItems,
  formatUpdated,
  parseProducts,
  type FlatItem,
  type IndexEntry,
  type ProductsDocument,
  type StreamIndex,
} from '../core/simplestreams.ts';

// ---------------------------------------------------------------- signing

export interface SigningKey {
  armoredPrivateKey: string;
  armoredPublicKey: string;
  /** Binary, like `gpg --export`, suitable for `gpgv --keyring`. */
  publicKeyring: Uint8Array;
  /** Upper-case hex. */
  fingerprint: string;
}

/** A fresh, unprotected Ed25519 signing key (with a Curve25519 subkey), as gpg 2.2 understands them. */
export async function generateSigningKey(name = 'skystreams synthetic upstream'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name, email: 'synthetic-upstream@skystreams.invalid' }],
    format: 'armored',
  });
  const key = await readKey({ armoredKey: publicKey });
  return {
    armoredPrivateKey: privateKey,
    armoredPublicKey: publicKey,
    publicKeyring: key.write(),
    fingerprint: key.getFingerprint().toUpperCase(),
  };
}

/** `text` as an OpenPGP clearsigned message, signed by `key`. */
export async function clearsign(text: string, key: SigningKey): Promise<string> {
  const signingKey = await readPrivateKey({ armoredKey: key.armoredPrivateKey });
  return sign({ message: await createCleartextMessage({ text }), signingKeys: signingKey });
}

// ---------------------------------------------------------------- the tree

export interface SynthesizeOptions {
  /** Sign: write `.sjson` beside every `.json`. Without it, only `.json` files. */
  key?: SigningKey;
  /** `updated` of the index, its entries and every products file. @default formatUpdated(now) */
  updated?: string;
  /** Bytes to synthesize for an item. @default 1–40 KiB, derived from the path */
  itemSize?: (item: FlatItem) => number;
  /** Changes every item's bytes (and so its digests) without changing its path. @default '' */
  contentSeed?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const INDEX_PATH = 'streams/v1/index.json';
export const SIGNED_INDEX_PATH = 'streams/v1/index.sjson';
export const productsPath = (contentId: string) => `streams/v1/${contentId}.json`;
export const signedProductsPath = (contentId: string) => `streams/v1/${contentId}.sjson`;

const hexDigest = (algorithm: string, bytes: Uint8Array) => createHash(algorithm).update(bytes).digest('hex');

/** Deterministic pseudo-random bytes for `path`: AES-256-CTR keystream keyed by seed and path. */
export function syntheticContent(path: string, size: number, contentSeed = ''): Uint8Array {
  const key = createHash('sha256').update(`skystreams-synthetic\0${contentSeed}\0${path}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return new Uint8Array(Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]));
}

function defaultItemSize(item: FlatItem, contentSeed: string): number {
  const spread = createHash('sha256').update(`${contentSeed}\0${item.path}`).digest().readUInt32BE(0);
  return 1024 + (spread % (39 * 1024 + 1));
}

/**
 * Every file of an upstream mirror, keyed by path relative to its root: each
 * item's synthetic bytes (its `size` and `sha256` rewritten to match, and any
 * `sha512`/`md5` it declared recomputed), the products files and the index,
 * clearsigned when `key` is given. The input documents are not modified.
 * Items sharing a path share their bytes.
 */
export async function synthesizeTree(
  products: ProductsDocument[],
  options: SynthesizeOptions = {},
): Promise<Map<string, Uint8Array>> {
  const contentSeed = options.contentSeed ?? '';
  const files = new Map<string, Uint8Array>();
  const documents = products.map((document) => structuredClone(document));
  for (const document of documents) {
    const file = productsPath(document.content_id);
    for (const flat of flattenItems(file, document)) {
      let bytes = files.get(flat.path);
      if (!bytes) {
        const size = options.itemSize?.(flat) ?? defaultItemSize(flat, contentSeed);
        bytes = syntheticContent(flat.path, size, contentSeed);
        files.set(flat.path, bytes);
      }
      const item = document.products[flat.productName]!.versions[flat.versionName]!.items[flat.itemName]!;
      item.size = bytes.length;
      item.sha256 = hexDigest('sha256', bytes);
      if (item.sha512 !== undefined) item.sha512 = hexDigest('sha512', bytes);
      if (item.md5 !== undefined) item.md5 = hexDigest('md5', bytes);
    }
  }
  await writeMetadata(files, documents, options);
  return files;
}

/**
 * (Re)writes the products files and the index for `products` into `files`,
 * as they are (item bytes untouched), signed when `key` is given. Handy after
 * a test edits a document: the metadata is then validly signed but may
 * promise bytes the tree does not hold. Leaves other files, including stale
 * `.sjson` files when unsigned, alone.
 */
export async function writeMetadata(
  files: Map<string, Uint8Array>,
  products: ProductsDocument[],
  options: Pick<SynthesizeOptions, 'key' | 'updated'> = {},
): Promise<void> {
  const updated = options.updated ?? formatUpdated(new Date());
  const unsignedIndex: StreamIndex = { format: 'index:1.0', updated, index: {} };
  const signedIndex: StreamIndex = { format: 'index:1.0', updated, index: {} };
  for (const original of products) {
    const document: ProductsDocument = { ...original, updated };
    const text = serialize(document);
    files.set(productsPath(document.content_id), encoder.encode(text));
    if (options.key) files.set(signedProductsPath(document.content_id), encoder.encode(await clearsign(text, options.key)));
    const entry: IndexEntry = {
      datatype: typeof document.datatype === 'string' ? document.datatype : 'image-ids',
      format: 'products:1.0',
      path: productsPath(document.content_id),
      products: Object.keys(document.products).sort(),
      updated,
    };
    unsignedIndex.index[document.content_id] = entry;
    signedIndex.index[document.content_id] = { ...entry, path: signedProductsPath(document.content_id) };
  }
  files.set(INDEX_PATH, encoder.encode(serialize(unsignedIndex)));
  if (options.key) files.set(SIGNED_INDEX_PATH, encoder.encode(await clearsign(serialize(signedIndex), options.key)));
}

/** The products documents of a tree (from its unsigned `.json` files), for a test to edit and pass to writeMetadata. */
export function productsIn(files: Map<string, Uint8Array>): ProductsDocument[] {
  const index = JSON.parse(decoder.decode(files.get(INDEX_PATH))) as StreamIndex;
  return Object.values(index.index).map((entry) =>
    parseProducts(entry.path, decoder.decode(files.get(entry.path) ?? new Uint8Array())),
  );
}

/** As simplestreams' tools write them: one-space indent, sorted keys, trailing newline. */
function serialize(value: unknown): string {
  return `${JSON.stringify(value, sortedKeys, 1)}\n`;
}

function sortedKeys(_key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---------------------------------------------------------------- serving

export interface ServedRequest {
  method: string;
  /** Relative to the root, percent-decoded, without query. */
  path: string;
  status: number;
}

export interface ServedTree {
  /** Ends with `/`. */
  baseUrl: string;
  /** Every request answered, in order. */
  requests: ServedRequest[];
  close(): Promise<void>;
}

/**
 * Serves `files` over HTTP on 127.0.0.1 (an ephemeral port). The map is read
 * on every request, so a test may change it between syncs. Strong ETags
 * (sha256 of the bytes) and Last-Modified (moves forward whenever a file's
 * bytes change), 304 for If-None-Match / If-Modified-Since, HEAD, 404.
 */
export async function serveTree(files: Map<string, Uint8Array>, options: { host?: string } = {}): Promise<ServedTree> {
  const host = options.host ?? '127.0.0.1';
  const requests: ServedRequest[] = [];
  const versions = new FileVersions(new Date());

  const server = createServer((request, response) => {
    const path = requestPath(request);
    const status = answer(request, response, path, files, versions);
    requests.push({ method: request.method ?? '', path: path ?? request.url ?? '', status });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  return {
    baseUrl: `http://${hostInUrl}:${port}/`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** Per-path validators: the ETag of the current bytes, and when they were first served. */
class FileVersions {
  private readonly seen = new Map<string, { etag: string; lastModified: number }>();
  constructor(private readonly startedAt: Date) {}

  of(path: string, bytes: Uint8Array): { etag: string; lastModified: number } {
    const etag = `"${hexDigest('sha256', bytes)}"`;
    const previous = this.seen.get(path);
    if (previous?.etag === etag) return previous;
    // HTTP dates have whole seconds: a change must move Last-Modified forward by at least one.
    const now = Math.floor((previous ? Date.now() : this.startedAt.getTime()) / 1000) * 1000;
    const lastModified = previous ? Math.max(now, previous.lastModified + 1000) : now;
    const version = { etag, lastModified };
    this.seen.set(path, version);
    return version;
  }
}

function requestPath(request: IncomingMessage): string | undefined {
  const rawPath = (request.url ?? '/').split('?')[0] ?? '/';
  try {
    return decodeURIComponent(rawPath.replace(/^\/+/, ''));
  } catch {
    return undefined;
  }
}

function contentTypeOf(path: string): string {
  if (path.endsWith('.json')) return 'application/json';
  if (path.endsWith('.sjson')) return 'text/plain; charset=utf-8';
  return 'application/octet-stream';
}

/** Writes the response; returns its status. */
function answer(
  request: IncomingMessage,
  response: ServerResponse,
  path: string | undefined,
  files: Map<string, Uint8Array>,
  versions: FileVersions,
): number {
  const finish = (status: number, body?: Uint8Array) => {
    response.statusCode = status;
    response.end(request.method === 'HEAD' ? undefined : body);
    return status;
  };
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('Allow', 'GET, HEAD');
    return finish(405);
  }
  if (path === undefined) return finish(400);
  const bytes = files.get(path);
  if (!bytes) return finish(404, encoder.encode(`${path}: not found\n`));

  const { etag, lastModified } = versions.of(path, bytes);
  response.setHeader('ETag', etag);
  response.setHeader('Last-Modified', new Date(lastModified).toUTCString());
  response.setHeader('Content-Type', contentTypeOf(path));
  if (isNotModified(request, etag, lastModified)) return finish(304);
  response.setHeader('Content-Length', bytes.length);
  return finish(200, bytes);
}

/** RFC 9110: If-None-Match, when present, decides; If-Modified-Since only otherwise. */
function isNotModified(request: IncomingMessage, etag: string, lastModified: number): boolean {
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    return ifNoneMatch.split(',').some((candidate) => {
      const tag = candidate.trim();
      return tag === '*' || tag.replace(/^W\//, '') === etag;
    });
  }
  const ifModifiedSince = request.headers['if-modified-since'];
  if (ifModifiedSince === undefined) return false;
  const since = Date.parse(ifModifiedSince);
  return !Number.isNaN(since) && lastModified <= since;
}

// ---------------------------------------------------------------- demo data

// sha256 of nothing: a placeholder that synthesizeTree replaces.
const PLACEHOLDER_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const DEMO_UPDATED = 'Wed, 09 Jul 2025 12:00:00 +0000';

const placeholderItem = (fields: Record<string, unknown> & { ftype: string; path: string }) => ({
  ...fields,
  sha256: PLACEHOLDER_SHA256,
  size: 0,
});

function bootloaderVersion(items: Record<string, { path: string; release: string; version: string }>) {
  return {
    items: Object.fromEntries(
      Object.entries(items).map(([name, { path, release, version }]) => [
        name,
        placeholderItem({
          ftype: 'archive.tar.xz',
          path,
          src_package: name,
          src_release: release,
          src_version: version,
        }),
      ]),
    ),
  };
}

function nobleVersion(serial: string, subarch: string, kpackage: string) {
  const kernelDirectory = `noble/amd64/${serial}/${subarch}/generic`;
  return {
    items: {
      'boot-initrd': placeholderItem({ ftype: 'boot-initrd', kpackage, path: `${kernelDirectory}/boot-initrd` }),
      'boot-kernel': placeholderItem({ ftype: 'boot-kernel', kpackage, path: `${kernelDirectory}/boot-kernel` }),
      // The root image is shared by the GA and HWE products, as on images.maas.io.
      manifest: placeholderItem({ ftype: 'manifest', path: `noble/amd64/${serial}/squashfs.manifest` }),
      squashfs: placeholderItem({ ftype: 'squashfs', path: `noble/amd64/${serial}/squashfs` }),
    },
  };
}

function nobleProduct(subarch: 'ga-24.04' | 'hwe-24.04', kpackage: string) {
  return {
    arch: 'amd64',
    kflavor: 'generic',
    krel: 'noble',
    label: 'stable',
    os: 'ubuntu',
    release: 'noble',
    release_codename: 'Noble Numbat',
    release_title: '24.04 LTS',
    subarch,
    subarches: `generic,hwe-p,hwe-q,hwe-r,hwe-s,hwe-t,hwe-u,hwe-v,hwe-w,ga-16.04,ga-18.04,ga-20.04,ga-22.04,ga-24.04${
      subarch === 'hwe-24.04' ? ',hwe-24.04' : ''
    }`,
    support_eol: '2029-05-31',
    support_esm_eol: '2034-04-25',
    version: '24.04',
    versions: {
      '20250618': nobleVersion('20250618', subarch, kpackage),
      '20250709': nobleVersion('20250709', subarch, kpackage),
    },
  };
}

/**
 * A small MAAS-shaped upstream, modelled on images.maas.io, with every field
 * MAAS's simplestreams models require: bootloaders (pxelinux, grub-efi-signed)
 * and Ubuntu 24.04 amd64 GA + HWE kernels, two versions each. Sizes and
 * digests are placeholders; pass the documents to synthesizeTree.
 */
export function demoProducts(): ProductsDocument[] {
  const bootloaders: ProductsDocument = {
    content_id: 'com.ubuntu.maas:stable:1:bootloader-download',
    datatype: 'image-ids',
    format: 'products:1.0',
    updated: DEMO_UPDATED,
    products: {
      'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64': {
        arch: 'amd64',
        arches: 'amd64',
        'bootloader-type': 'uefi',
        label: 'stable',
        os: 'grub-efi-signed',
        versions: {
          '20230222.0': bootloaderVersion({
            'grub2-signed': {
              path: 'bootloaders/uefi/amd64/20230222.0/grub2-signed.tar.xz',
              release: 'focal',
              version: '1.187.3~20.04.1+2.06-2ubuntu14.1',
            },
            'shim-signed': {
              path: 'bootloaders/uefi/amd64/20230222.0/shim-signed.tar.xz',
              release: 'focal',
              version: '1.40.7+15.4-0ubuntu9',
            },
          }),
          '20231004.0': bootloaderVersion({
            'grub2-signed': {
              path: 'bootloaders/uefi/amd64/20231004.0/grub2-signed.tar.xz',
              release: 'jammy',
              version: '1.187.6+2.06-2ubuntu14.4',
            },
            'shim-signed': {
              path: 'bootloaders/uefi/amd64/20231004.0/shim-signed.tar.xz',
              release: 'jammy',
              version: '1.51.3+15.7-0ubuntu1',
            },
          }),
        },
      },
      'com.ubuntu.maas.stable:1:pxelinux:pxe:amd64': {
        arch: 'amd64',
        arches: 'amd64, i386',
        'bootloader-type': 'pxe',
        label: 'stable',
        os: 'pxelinux',
        versions: {
          '20230615.0': bootloaderVersion({
            syslinux: {
              path: 'bootloaders/pxe/amd64/20230615.0/syslinux.tar.xz',
              release: 'jammy',
              version: '3:6.04~git20190206.bf6db5b4+dfsg1-3ubuntu1',
            },
          }),
        },
      },
    },
  };
  const ubuntu: ProductsDocument = {
    content_id: 'com.ubuntu.maas:stable:v3:download',
    datatype: 'image-ids',
    format: 'products:1.0',
    updated: DEMO_UPDATED,
    products: {
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04': nobleProduct('ga-24.04', 'linux-generic'),
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04': nobleProduct('hwe-24.04', 'linux-generic-hwe-24.04'),
    },
  };
  return [bootloaders, ubuntu];
}
