/** Helpers the end-to-end suites share: a signed upstream to mutate, a sync, a server. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { SyncEngine, type SyncEvent } from '../../functions/core/engine.ts';
import { defaultEngineSettings as defaultSettings } from '../../functions/core/settings.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { loadKeyring } from '../../functions/core/pgp.ts';
import type { Backend, ObjectStore, SyncRun } from '../../functions/core/ports.ts';
import type { ProductsDocument } from '../../functions/core/simplestreams.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { createApp } from '../../functions/http/app.ts';
import { startServer, type RunningServer } from '../../functions/local/server.ts';
import { generateSigningKey, synthesizeTree, type SigningKey } from './signed-upstream.ts';
import { serveTree, type ServedTree } from './upstream-server.ts';
import { loadFixtureProducts } from './fixtures.ts';

export interface SyncOptions {
  filters?: string[];
  max?: number;
  /** undefined: `--no-verify`. */
  keyring: SigningKey | undefined;
  events?: SyncEvent[];
  /** @default defaultSettings.pruneGraceMs */
  pruneGraceMs?: number;
  /** @default DEFAULT_CHANNEL */
  channel?: string;
  /** @default 1 */
  keepGenerations?: number;
  /** The store the engine writes through. @default backend.objects */
  objects?: ObjectStore;
}

export async function syncMirror(backend: Backend, sourceUrl: string, options: SyncOptions): Promise<SyncRun> {
  const engine = new SyncEngine(
    {
      upstream: new HttpUpstream(sourceUrl),
      objects: options.objects ?? backend.objects,
      catalog: backend.catalog,
      onEvent: (event) => options.events?.push(event),
      sleep: async () => {},
    },
    {
      ...defaultSettings,
      keyring: options.keyring && (await loadKeyring('test keyring', options.keyring.publicKeyring)),
      selection: { filters: (options.filters ?? []).map(parseFilter), max: options.max },
      pruneGraceMs: options.pruneGraceMs ?? defaultSettings.pruneGraceMs,
      ...(options.channel !== undefined && { channel: options.channel }),
      ...(options.keepGenerations !== undefined && { keepGenerations: options.keepGenerations }),
    },
  );
  return engine.run();
}

export function serveMirror(backend: Backend): Promise<RunningServer> {
  return startServer(createApp(backend), { port: 0, host: '127.0.0.1' });
}

export async function fetchBytes(url: string, init?: RequestInit): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const response = await fetch(url, init);
  return { status: response.status, bytes: Buffer.from(await response.arrayBuffer()), headers: response.headers };
}

/** Replaces a live upstream's files in place (the test server reads the same Map). */
export function replaceFiles(live: Map<string, Uint8Array>, next: Map<string, Uint8Array>): void {
  live.clear();
  for (const [path, bytes] of next) live.set(path, bytes);
}

/**
 * Adds a newer version to every product, cloned from its newest one with
 * paths moved under the new version name — what a daily upstream build looks like.
 */
export function withNewVersion(products: ProductsDocument[], version: string): ProductsDocument[] {
  return products.map((doc) => {
    const copy = structuredClone(doc);
    for (const product of Object.values(copy.products)) {
      const newest = Object.keys(product.versions).sort().at(-1);
      if (!newest) continue;
      const clone = structuredClone(product.versions[newest]!);
      for (const item of Object.values(clone.items)) item.path = item.path.replace(newest, version);
      product.versions[version] = clone;
    }
    return copy;
  });
}

/** Paths of the items a filter + max selection keeps, computed independently of the engine. */
export function selectedPaths(products: ProductsDocument[], arch: string, max: number): string[] {
  const paths = new Set<string>();
  for (const doc of products) {
    for (const product of Object.values(doc.products)) {
      if (product.arch !== arch) continue;
      for (const name of Object.keys(product.versions).sort().slice(-max)) {
        for (const item of Object.values(product.versions[name]!.items)) paths.add(item.path);
      }
    }
  }
  return [...paths].sort();
}

export interface SignedFixtureUpstream {
  /** A temp directory the test file may use; removed afterwards. */
  work: string;
  key: SigningKey;
  /** The binary public keyring, written to `work`. */
  keyring: string;
  files: Map<string, Uint8Array>;
  upstream: ServedTree;
}

/**
 * For one test file: the real captures as a signed upstream on loopback, and
 * its keyring on disk for the CLI. Valid inside tests and later hooks.
 */
export function useSignedFixtureUpstream(label: string): () => SignedFixtureUpstream {
  let fixture: SignedFixtureUpstream | undefined;
  beforeAll(async () => {
    const work = await mkdtemp(join(tmpdir(), `skystreams-${label}-`));
    const key = await generateSigningKey(`${label} upstream`);
    const keyring = join(work, 'keyring.gpg');
    await writeFile(keyring, key.publicKeyring);
    const files = await synthesizeTree(loadFixtureProducts(), { key });
    fixture = { work, key, keyring, files, upstream: await serveTree(files) };
  });
  afterAll(async () => {
    await fixture?.upstream.close();
    if (fixture) await rm(fixture.work, { recursive: true, force: true });
  });
  return () => {
    if (!fixture) throw new Error('useSignedFixtureUpstream: read it inside a test or a later hook');
    return fixture;
  };
}
