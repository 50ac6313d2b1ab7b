/**
 * `npm run bench`: what this machine does with the embedded backend.
 *
 *   a. sync throughput for one large item (BENCH_ITEM_MB, default 1024) from
 *      a loopback upstream that generates the bytes as it streams them;
 *   b. OpenPGP verification of clearsigned metadata, per MB;
 *   c. a re-sync with nothing to copy: wall time and upstream requests;
 *   d. planning a 100k-item catalog;
 *   f. a ~2 GB MAAS-shaped selection against the machine limit (curl, sha256,
 *      dd conv=fsync) and sstream-mirror, measured in the same run, and
 *   g. peak RSS by item size (bench/sync-peers.ts; BENCH_SYNC=0 skips both);
 *   h. each Lambda bundle's cold import (bench/lambda-import.ts; BENCH_LAMBDA=0 skips it);
 *   i. parse + plan time and memory for 1k to 100k items, with a plot
 *      (bench/plan-scale.ts; BENCH_SCALE=0 skips it).
 *
 * With BENCH_S3=1 it also runs bench/s3-large-object.ts's round trip of one
 * large object through the S3 object store on the local S3 stand-in (size:
 * BENCH_OBJECT_MB, else BENCH_ITEM_MB).
 *
 * Prints a markdown table and records it, dated, in BENCHMARKS.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEmbeddedBackend } from '../functions/adapters/embedded.ts';
import { HttpUpstream } from '../functions/adapters/http/http-upstream.ts';
import { SyncEngine } from '../functions/core/engine.ts';
import { defaultEngineSettings as defaultSettings } from '../functions/core/settings.ts';
import { parseFilter } from '../functions/core/filters.ts';
import { loadKeyring, verifyClearsigned } from '../functions/core/pgp.ts';
import { planSync, type Selection } from '../functions/core/planner.ts';
import { keys, type StoredObject } from '../functions/core/ports.ts';
import { parseProducts } from '../functions/core/simplestreams.ts';
import { markdownTable, recordSection, thisMachine, type BenchRow } from './lib/report.ts';
import { benchLambdaImport } from './lambda-import.ts';
import { benchSyncAgainstPeers } from './sync-peers.ts';
import { benchPlanScale } from './plan-scale.ts';
import { startRssSampler } from './lib/rss-sampler.ts';
import { startStreamingUpstream } from './lib/streaming-upstream.ts';
import { productsTextOfSize, syntheticProducts } from './lib/synthetic-catalog.ts';
import { clearsign, generateSigningKey, serializeMetadata } from '../test/support/signed-upstream.ts';

const MB = 2 ** 20;
const BENCHMARKS_FILE = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));
const VERIFY_SIZES_MB = [1, 5, 20] as const;
const PLAN_SHAPE = { products: 1_000, versionsPerProduct: 10, itemsPerVersion: 10 } as const;
const REPEATS = 5;

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const millis = (ms: number) => `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
const megabytes = (bytes: number) => `${(bytes / MB).toFixed(bytes < 10 * MB ? 1 : 0)} MB`;

function itemMegabytes(): number {
  const raw = process.env.BENCH_ITEM_MB ?? '1024';
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`BENCH_ITEM_MB must be a whole number ≥ 1, not ${JSON.stringify(raw)}`);
  return value;
}

async function timed<T>(work: () => Promise<T> | T): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

/** Median wall time of `repeats` runs, after one unmeasured warm-up run. */
async function medianMs(work: () => Promise<unknown> | unknown, repeats = REPEATS): Promise<number> {
  await work();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) times.push((await timed(work)).ms);
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`benchmark precondition failed: ${message}`);
}

// ---------------------------------------------------------------- a + c

async function benchSync(itemMB: number): Promise<BenchRow[]> {
  const itemBytes = itemMB * MB;
  const upstream = await startStreamingUpstream({ itemBytes, seed: 'skystreams bench' });
  const dataDir = await mkdtemp(join(tmpdir(), 'skystreams-bench-'));
  const backend = openEmbeddedBackend(dataDir);
  try {
    const engine = new SyncEngine(
      { upstream: new HttpUpstream(upstream.baseUrl), objects: backend.objects, catalog: backend.catalog, sleep: async () => {} },
      {
        ...defaultSettings,
        keyring: await loadKeyring('bench upstream', upstream.publicKeyring),
        selection: { filters: [] },
        attempts: 1,
      },
    );

    const rssBefore = process.memoryUsage().rss;
    const sampler = startRssSampler(50);
    const first = await timed(() => engine.run());
    const memory = sampler.stop();
    check(first.value.state === 'succeeded', `first sync ${first.value.state}: ${first.value.error ?? ''}`);
    check(first.value.bytesCopied === itemBytes, `copied ${first.value.bytesCopied} bytes, expected ${itemBytes}`);
    const stored = await backend.catalog.getObject(upstream.itemPath);
    check(stored?.sha256 === upstream.sha256, 'stored sha256 differs from the generated bytes');
    check((await backend.objects.head(keys.item(upstream.itemPath)))?.size === itemBytes, 'stored size differs');

    const beforeNoop = (await upstream.requests()).length;
    const noop = await timed(() => engine.run());
    const noopRequests = (await upstream.requests()).slice(beforeNoop);
    check(noop.value.state === 'unchanged', `no-op re-sync ${noop.value.state}`);

    await upstream.touchMetadata();
    const beforeMetadataOnly = (await upstream.requests()).length;
    const metadataOnly = await timed(() => engine.run());
    const metadataOnlyRequests = (await upstream.requests()).slice(beforeMetadataOnly);
    check(metadataOnly.value.state === 'succeeded' && metadataOnly.value.itemsCopied === 0, 'metadata-only re-sync copied items');

    const describeRequests = (requests: { path: string; status: number }[]) =>
      `${requests.length} request${requests.length === 1 ? '' : 's'} (${requests.map((r) => r.status).join(', ')}), ` +
      `${requests.filter((r) => r.path === upstream.itemPath).length} for the item`;
    return [
      {
        benchmark: 'a. Sync one item, embedded backend (verify sha256 while streaming, fsync, rename)',
        size: megabytes(itemBytes),
        time: seconds(first.ms),
        rate: `${(itemBytes / MB / (first.ms / 1000)).toFixed(0)} MB/s`,
        notes:
          `peak RSS ${megabytes(memory.sampledPeakRss)} sampled every 50 ms (${megabytes(rssBefore)} before), ` +
          `maxRSS ${megabytes(memory.maxRss)}`,
      },
      {
        benchmark: 'c. Re-sync, upstream unchanged',
        size: '—',
        time: millis(noop.ms),
        rate: '—',
        notes: describeRequests(noopRequests),
      },
      {
        benchmark: 'c′. Re-sync, metadata re-signed, items unchanged (new generation, nothing copied)',
        size: '—',
        time: millis(metadataOnly.ms),
        rate: '—',
        notes: describeRequests(metadataOnlyRequests),
      },
    ];
  } finally {
    await backend.close();
    await rm(dataDir, { recursive: true, force: true });
    await upstream.close();
  }
}

// ---------------------------------------------------------------- b

async function benchVerification(): Promise<BenchRow[]> {
  const key = await generateSigningKey('skystreams bench signer');
  const keyring = await loadKeyring('bench signer', key.publicKeyring);
  const rows: BenchRow[] = [];
  for (const sizeMB of VERIFY_SIZES_MB) {
    const text = productsTextOfSize(sizeMB * MB);
    const signing = await timed(() => clearsign(text, key));
    const signed = signing.value;
    const verified = await verifyClearsigned('bench.sjson', signed, keyring);
    check(verified.length >= text.length - 2, 'verified body is shorter than what was signed');
    const ms = await medianMs(() => verifyClearsigned('bench.sjson', signed, keyring));
    const actualMB = Buffer.byteLength(signed) / MB;
    rows.push({
      benchmark: 'b. OpenPGP verify, clearsigned products file (Ed25519)',
      size: megabytes(Buffer.byteLength(signed)),
      time: millis(ms),
      rate: `${(ms / actualMB).toFixed(0)} ms/MB`,
      notes: `median of ${REPEATS} after a warm-up; signing took ${millis(signing.ms)}`,
    });
  }
  return rows;
}

// ---------------------------------------------------------------- d

async function benchPlanning(): Promise<BenchRow[]> {
  const doc = syntheticProducts(PLAN_SHAPE);
  const file = 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson';
  const products = [{ file, doc }];
  const everything: Selection = { filters: [] };
  const filtered: Selection = { filters: [parseFilter('arch=amd64'), parseFilter('ftype~^(boot-|squashfs$)')], max: 2 };

  // Cheapest state first: the stored map and the JSON text are built only when needed, so their
  // garbage does not slow the earlier measurements.
  const emptyStore = planSync({ products, selection: everything, stored: new Map() });
  const itemCount = emptyStore.entries.length;
  check(emptyStore.copy.length === itemCount, 'expected every item to be copied into an empty store');
  const planEmptyMs = await medianMs(() => planSync({ products, selection: everything, stored: new Map() }));
  const selected = planSync({ products, selection: filtered, stored: new Map() }).entries.length;
  const planFilteredMs = await medianMs(() => planSync({ products, selection: filtered, stored: new Map() }));

  const stored = new Map<string, StoredObject>(
    emptyStore.objects.map((task) => [
      task.path,
      { path: task.path, size: task.size, sha256: task.sha256 ?? '', digests: { ...task }, storedAt: '2025-07-25T08:00:00.000Z' },
    ]),
  );
  const fullStore = planSync({ products, selection: everything, stored });
  check(fullStore.copy.length === 0, 'expected nothing to copy into a full store');
  const planFullMs = await medianMs(() => planSync({ products, selection: everything, stored }));

  const text = serializeMetadata(doc);
  const parseMs = await medianMs(() => parseProducts(file, text));

  const perItem = (ms: number) => `${((ms * 1000) / itemCount).toFixed(1)} µs/item`;
  const count = `${(itemCount / 1000).toFixed(0)}k items`;
  return [
    {
      benchmark: 'd. Parse + validate the products JSON',
      size: `${count}, ${megabytes(Buffer.byteLength(text))}`,
      time: millis(parseMs),
      rate: perItem(parseMs),
      notes: `median of ${REPEATS}`,
    },
    {
      benchmark: 'd. planSync, no filter, empty store',
      size: count,
      time: millis(planEmptyMs),
      rate: perItem(planEmptyMs),
      notes: `${emptyStore.copy.length} to copy`,
    },
    {
      benchmark: 'd. planSync, no filter, every item already stored',
      size: count,
      time: millis(planFullMs),
      rate: perItem(planFullMs),
      notes: '0 to copy',
    },
    {
      benchmark: 'd. planSync, arch=amd64 + ftype regex, max 2',
      size: count,
      time: millis(planFilteredMs),
      rate: perItem(planFilteredMs),
      notes: `${selected} selected`,
    },
  ];
}

// ---------------------------------------------------------------- e (BENCH_S3=1)

/** bench/s3-large-object.ts measures; this only runs it on the stand-ins and turns its result into a row. */
async function benchS3LargeObject(sizeMB: number): Promise<BenchRow[]> {
  const { roundTripOnStandins, rssBound } = await import('./s3-large-object.ts');
  const { result, store } = await roundTripOnStandins(sizeMB * MB);
  const totalSeconds = result.uploadSeconds + result.downloadSeconds;
  return [
    {
      benchmark: 'e. S3 object store: put then get one object (s3rver stand-in on loopback)',
      size: megabytes(result.bytes),
      time: `${totalSeconds.toFixed(2)} s (up ${result.uploadSeconds.toFixed(2)}, down ${result.downloadSeconds.toFixed(2)})`,
      rate: `up ${(result.bytes / MB / result.uploadSeconds).toFixed(0)} MB/s, down ${(result.bytes / MB / result.downloadSeconds).toFixed(0)} MB/s`,
      notes:
        `${result.parts} parts of ${megabytes(store.partSize)}, ${store.queueSize} in flight; peak RSS ${megabytes(result.peakRss)} ` +
        `(${megabytes(result.baselineRss)} before, bound ${megabytes(rssBound(store))})`,
    },
  ];
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const itemMB = itemMegabytes();
  const loadAtStart = loadavg()[0] ?? 0;
  const rows: BenchRow[] = [];
  // The sync runs first, so the process's lifetime maxRSS it reports is the sync's own.
  console.error(`a/c: syncing one ${itemMB} MB item…`);
  rows.push(...(await benchSync(itemMB)));
  // Before the in-memory benchmarks, whose garbage would inflate its RSS baseline.
  if (process.env.BENCH_S3 === '1') {
    const objectMB = Number(process.env.BENCH_OBJECT_MB ?? itemMB);
    console.error(`e: S3 round trip of ${objectMB} MB on the stand-ins…`);
    rows.push(...(await benchS3LargeObject(objectMB)));
  }
  const peerNotes: string[] = [];
  if (process.env.BENCH_SYNC !== '0') {
    console.error('f/g: a MAAS-shaped selection against the machine limit and the peers, then RSS by item size…');
    const peers = await benchSyncAgainstPeers();
    rows.push(...peers.rows);
    peerNotes.push('', ...peers.notes);
  }
  if (process.env.BENCH_LAMBDA !== '0') {
    console.error('h: Lambda bundles, cold import…');
    rows.push(...(await benchLambdaImport()));
  }
  console.error('b: OpenPGP verification…');
  rows.push(...(await benchVerification()));
  console.error('d: planning…');
  rows.push(...(await benchPlanning()));
  const scaleNotes: string[] = [];
  if (process.env.BENCH_SCALE !== '0') {
    console.error('i: parse + plan by catalog size…');
    const scale = await benchPlanScale();
    rows.push(...scale.rows);
    scaleNotes.push('', ...scale.notes);
  }

  // Measured in the order that keeps them independent; shown in the order of their letters.
  const table = markdownTable([...rows].sort((a, b) => a.benchmark.charCodeAt(0) - b.benchmark.charCodeAt(0)));
  console.log(table);
  const notes = [
    '',
    'The upstream of (a) and (c) is a node:http server in a child process on',
    '127.0.0.1 serving clearsigned metadata and one item whose bytes (an AES-CTR',
    'keystream) are generated as they stream; its CPU and memory are not in the',
    'figures. The sync verifies the signature, the size and sha256 while',
    'streaming, writes to a temp file, fsyncs and renames. RSS is that of the',
    'syncing process.',
    ...peerNotes,
    ...scaleNotes,
    '',
    `1-minute load average when the run started: ${loadAtStart.toFixed(1)} on ${thisMachine().cores} cores` +
      (loadAtStart >= thisMachine().cores / 2 ? ' (other work was running: expect the times to be pessimistic and noisy).' : '.'),
  ].join('\n');
  const date = new Date().toISOString().slice(0, 10);
  recordSection(BENCHMARKS_FILE, date, thisMachine(), `${table}\n${notes}`);
  console.error(`recorded in ${BENCHMARKS_FILE}`);
}

await main();
