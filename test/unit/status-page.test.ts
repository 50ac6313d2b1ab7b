import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import type { SourceConflict } from '../../functions/core/sources.ts';
import { keys, SOURCE_CONFLICTS_STATE, type Backend, type CatalogEntry, type Publication, type SyncRun } from '../../functions/core/ports.ts';
import { RESIGNED_MAAS_KEYRING, UBUNTU_CLOUDIMAGE_KEYRING } from '../../functions/core/settings.ts';
import { createApp, requestBaseUrl, type App } from '../../functions/http/app.ts';
import { statusPageReport } from '../../functions/http/reports.ts';
import { renderStatusPage } from '../../functions/http/status-page.ts';

const ORIGIN = 'http://mirror.test/';
const INDEX = 'streams/v1/index.sjson';
const CONTENT_ID = 'com.ubuntu.maas:stable:v3:download';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const NOW = new Date('2026-12-01T12:00:00.000Z');
const HOSTILE = '<script>alert(1)</script>';
const HOUR = 3_600_000;
/** What a re-signed publication holds besides its metadata: its keyring, and the upstream files it was made from (merged: per source). */
const RESIGNED_FILES = [INDEX, 'keyring.gpg', 'keyring.asc', 'upstream/streams/v1/index.sjson'];
const MERGED_FILES = [INDEX, 'keyring.gpg', 'keyring.asc', 'sources/maas/streams/v1/index.sjson', 'sources/site/streams/v1/index.sjson'];

let dataDir: string;
let backend: Backend;
let app: App;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'skystreams-status-page-'));
  backend = openEmbeddedBackend(dataDir);
  app = createApp({ ...backend, now: () => NOW });
});

afterEach(async () => {
  await backend.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function page(headers: Record<string, string> = {}): Promise<{ response: Response; text: string }> {
  const response = await app(new Request(ORIGIN, { headers }));
  return { response, text: await response.text() };
}

function entry(fields: Partial<CatalogEntry> & Pick<CatalogEntry, 'version' | 'item'>): CatalogEntry {
  const path = `noble/amd64/${fields.version}/${fields.item}`;
  return {
    contentId: CONTENT_ID,
    product: NOBLE,
    path,
    size: 1024,
    sha256: createHash('sha256').update(path).digest('hex'),
    os: 'ubuntu',
    release: 'noble',
    arch: 'amd64',
    subarch: 'ga-24.04',
    label: 'stable',
    ...fields,
  };
}

async function publish(
  generation: number,
  publishedAt: string,
  entries: CatalogEntry[],
  { files = [INDEX], upstreamUpdated = 'Tue, 01 Dec 2026 06:00:00 +0000' }: { files?: string[]; upstreamUpdated?: string } = {},
): Promise<Publication> {
  for (const file of files) await backend.objects.put(keys.metadata({ generation, runId: `run-${generation}` }, file), new TextEncoder().encode('{}'));
  await backend.catalog.putEntries(generation, entries);
  const publication: Publication = {
    generation,
    upstreamUpdated,
    publishedAt,
    runId: `run-${generation}`,
    files,
    itemCount: entries.length,
    totalBytes: entries.reduce((sum, e) => sum + e.size, 0),
  };
  await backend.catalog.publish(publication, (await backend.catalog.getCurrent())?.generation);
  return publication;
}

function run(fields: Partial<SyncRun> & Pick<SyncRun, 'id' | 'startedAt' | 'state'>): SyncRun {
  return { itemsCopied: 0, bytesCopied: 0, itemsPresent: 0, ...fields };
}

/** The text of the table's rows, cells separated by `|`, tags dropped. */
function rowsOf(html: string, tableId: string): string[] {
  const table = new RegExp(`<table id="${tableId}">[\\s\\S]*?<tbody>([\\s\\S]*?)</tbody>`).exec(html)?.[1] ?? '';
  return [...table.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) =>
    row[1]!
      .split(/<\/t[hd]>/)
      .filter((cell) => cell.trim())
      .map((cell) => cell.replace(/<[^>]+>/g, '').trim())
      .join('|'),
  );
}

describe('Status page', () => {
  it('lists each image with its versions, sizes and since when a retained publication serves each', async () => {
    // Prepare
    await publish(1, '2026-11-30T06:00:00.000Z', [entry({ version: '20261130', item: 'boot-kernel', size: 2048 })]);
    await publish(2, '2026-12-01T06:00:00.000Z', [
      entry({ version: '20261130', item: 'boot-kernel', size: 2048 }),
      entry({ version: '20261201', item: 'boot-kernel', size: 1024 }),
      entry({ version: '20261201', item: 'boot-initrd', size: 1024 }),
    ]);

    // Act
    const { response, text } = await page();

    // Assess
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(text).toMatch(/^<!doctype html>\n<html lang="en">/);
    expect(text).toContain('<caption>Generation 2: 1 image; sizes per image');
    expect(rowsOf(text, 'catalog-table')).toEqual([
      'ubuntu|noble|amd64|ga-24.04|stable|20261201 (2 files, 2.0 KiB)20261130 (1 file, 2.0 KiB)|4.0 KiB|2026-12-01 06:00:00 UTC',
    ]);
    expect(text).toContain('<th scope="col">Release</th>');
  });

  it('escapes every string from metadata and the catalog, so a hostile upstream cannot run script on the page', async () => {
    // Prepare
    await publish(1, '2026-12-01T06:00:00.000Z', [
      entry({ version: `2026${HOSTILE}`, item: 'boot-kernel', label: HOSTILE, release: '"><img src=x onerror=alert(2)>', product: `p${HOSTILE}` }),
    ]);
    await backend.catalog.putRun(run({ id: `r${HOSTILE}`, startedAt: '2026-12-01T11:00:00.000Z', state: 'failed', finishedAt: '2026-12-01T11:01:00.000Z', error: HOSTILE }));

    // Act
    const { response, text } = await page({ host: 'mirror.test' });

    // Assess
    expect(text).not.toContain(HOSTILE);
    expect(text).not.toContain('<img');
    expect(text).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(text).toContain('&#34;&#62;&#60;img src=x onerror=alert(2)&#62;');
    expect(text.match(/<script/g)).toHaveLength(1);
    const inline = /<script>([\s\S]*?)<\/script>/.exec(text)![1]!;
    const hash = createHash('sha256').update(inline).digest('base64');
    expect(response.headers.get('content-security-policy')).toContain(`script-src 'sha256-${hash}'`);
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
  });

  it('lists the products merged sources both offered, which source each came from, escaped; no section without any', async () => {
    // Prepare
    await publish(1, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })]);
    expect((await page()).text).not.toContain('id="conflicts"');
    const conflicts: SourceConflict[] = [
      { product: NOBLE, kept: { source: 'maas', product: NOBLE }, dropped: { source: 'site', product: NOBLE }, reason: 'product' },
      { product: `site${HOSTILE}`, kept: { source: 'maas', product: NOBLE }, dropped: { source: 'site', product: `site${HOSTILE}` }, reason: 'path', path: 'noble/k' },
    ];
    await backend.catalog.setState(SOURCE_CONFLICTS_STATE, JSON.stringify(conflicts));

    // Act
    const { text } = await page();

    // Assess
    expect(text).not.toContain(HOSTILE);
    expect(rowsOf(text, 'conflicts-table')).toEqual([
      `${NOBLE}|maas|site|the same product id`,
      `site&#60;script&#62;alert(1)&#60;/script&#62;|maas|site|lists noble/k, which ${NOBLE} lists with other bytes`,
    ]);
  });

  it('shows the runs newest first with a bar per run scaled to the largest, and a failed latest run under freshness', async () => {
    // Prepare
    await publish(1, '2026-12-01T06:01:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })]);
    await backend.catalog.putRun(
      run({ id: 'a', startedAt: '2026-12-01T06:00:00.000Z', finishedAt: '2026-12-01T06:01:00.000Z', state: 'succeeded', bytesCopied: 4096, itemsCopied: 2, generation: 1 }),
    );
    await backend.catalog.putRun(run({ id: 'b', startedAt: '2026-12-01T07:00:00.000Z', finishedAt: '2026-12-01T07:00:30.000Z', state: 'unchanged' }));
    await backend.catalog.putRun(
      run({ id: 'c', startedAt: '2026-12-01T08:00:00.000Z', finishedAt: '2026-12-01T08:00:10.000Z', state: 'failed', bytesCopied: 1024, error: 'upstream index: bad signature' }),
    );

    // Act
    const { text } = await page();

    // Assess
    expect(rowsOf(text, 'runs-table')).toEqual([
      '2026-12-01 08:00:00 UTC (4h00m ago)|failed|0 items, 1.0 KiB|0|10s||upstream index: bad signature',
      '2026-12-01 07:00:00 UTC (5h00m ago)|unchanged|0 items, 0 B|0|30s||',
      '2026-12-01 06:00:00 UTC (6h00m ago)|succeeded|2 items, 4.0 KiB|0|1m00s|1|',
    ]);
    const bytesChart = /<figure id="chart-bytes">([\s\S]*?)<\/figure>/.exec(text)![1]!;
    const heights = [...bytesChart.matchAll(/<rect class="bar"[^>]* height="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(heights).toEqual([118, 0, 29.5]);
    expect(text).toContain('Last checked upstream</dt><dd><time datetime="2026-12-01T07:00:30.000Z">');
    expect(text).toMatch(/Latest run<\/dt><dd><span class="state state-failed">failed<\/span>.*upstream index: bad signature/);
    expect(text).not.toContain('http-equiv="refresh"');
  });

  it('shows a running sync and reloads itself until it ends', async () => {
    // Prepare
    await backend.catalog.putRun(
      run({ id: 'live', startedAt: '2026-12-01T11:58:00.000Z', state: 'running', generation: 3, itemsPresent: 7, holder: { host: 'box', pid: 42 } }),
    );

    // Act
    const { text } = await page();

    // Assess
    expect(text).toContain('<meta http-equiv="refresh" content="5">');
    const progress = /<section aria-labelledby="progress">([\s\S]*?)<\/section>/.exec(text)![1]!;
    expect(progress).toContain('<dt>Running for</dt><dd>2m00s</dd>');
    expect(progress).toContain('<dt>Generation being built</dt><dd>3</dd>');
    expect(progress).toContain('<dt>Items already stored before</dt><dd>7</dd>');
    expect(progress).toContain('<dt>Copied</dt><dd>planning: reading and verifying upstream metadata</dd>');
    expect(progress).toContain('<dt>Process</dt><dd>box pid 42</dd>');
    expect(text).toContain('nothing yet: the first sync has not finished');
  });

  it('shows what each image\'s manifests say changed between its two newest versions, and how to ask about any package', async () => {
    // Prepare: two versions, each with a squashfs manifest the package index holds.
    const manifest = (version: string) => entry({ version, item: 'squashfs.manifest', ftype: 'squashfs.manifest' });
    const [older, newer] = [manifest('20250618'), manifest('20250709')];
    await backend.catalog.putManifest({
      sha256: older.sha256,
      path: older.path,
      packages: new Map([['openssl', '3.0.13-0ubuntu3.1'], ['bash', '5.2.21-2ubuntu4'], ['telnet', '0.17+2.5-3']]),
      indexedAt: NOW.toISOString(),
    });
    await backend.catalog.putManifest({
      sha256: newer.sha256,
      path: newer.path,
      packages: new Map([['openssl', '3.0.13-0ubuntu3.4'], ['bash', '5.2.21-2ubuntu4'], ['curl', '8.5.0-2ubuntu10.6']]),
      indexedAt: NOW.toISOString(),
    });
    await publish(1, '2026-12-01T10:00:00.000Z', [older, newer]);

    // Act
    const { text } = await page();

    // Assess
    expect(rowsOf(text, 'package-changes')).toEqual([
      `ubuntu noble amd64 ga-24.04${NOBLE}|20250618 → 20250709|1|1|openssl 3.0.13-0ubuntu3.1 → 3.0.13-0ubuntu3.4`,
    ]);
    expect(text).toContain('<a href="api/v1/packages/openssl">');
  });

  it('gives the MAAS command with the URL the client used and the configured keyring', async () => {
    // Prepare
    app = createApp({ ...backend, keyringFilename: '/etc/maas/mirror keyring.gpg' });

    // Act
    const { text } = await page({ host: 'internal:8080', 'x-forwarded-host': 'mirror.example.org', 'x-forwarded-proto': 'https' });

    // Assess
    expect(commandOf(text, 'maas-keyring-file')).toBe('maas $PROFILE boot-source update 1 url=https://mirror.example.org/ keyring_filename=/etc/maas/mirror keyring.gpg');
    expect(text).toContain('url=<span data-mirror-url>https://mirror.example.org/</span>');
  });

  it('names the Ubuntu cloud image keyring by default', async () => {
    // Act
    const { text } = await page({ host: 'mirror.test:8080' });

    // Assess
    expect(commandOf(text, 'maas-keyring-file')).toBe(`maas $PROFILE boot-source update 1 url=http://mirror.test:8080/ keyring_filename=${UBUNTU_CLOUDIMAGE_KEYRING}`);
    expect(text).toContain('No images are published yet.');
    expect(text).toContain('No sync has run yet.');
  });

  it('answers HEAD with the headers only', async () => {
    // Act
    const response = await app(new Request(ORIGIN, { method: 'HEAD' }));

    // Assess
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(Number(response.headers.get('content-length'))).toBeGreaterThan(1000);
    expect((await response.arrayBuffer()).byteLength).toBe(0);
  });
});

describe('Status page: MAAS commands per mode', () => {
  const mirror = { host: 'mirror.test:8080' };
  const base = 'http://mirror.test:8080/';

  it('names the configured upstream keyring for a verbatim publication, and no keyring_data', async () => {
    // Prepare
    app = createApp({ ...backend, keyringFilename: '/srv/upstream keyring.gpg', now: () => NOW });
    await publish(1, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })]);

    // Act
    const { text } = await page(mirror);
    const status = (await (await app(new Request(`${ORIGIN}api/v1/status`))).json()) as { mode: string };

    // Assess
    expect(status.mode).toBe('verbatim');
    expect(commandOf(text, 'maas-keyring-file')).toBe(`maas $PROFILE boot-source update 1 url=${base} keyring_filename=/srv/upstream keyring.gpg`);
    expect(text).not.toContain('keyring_data');
    expect(text).toContain("<dt>Mode</dt><dd>verbatim: upstream's metadata and signatures, unchanged</dd>");
    expect(commandOf(text, 'maas-selections')).toBe("maas $PROFILE boot-source-selections create 1 os=ubuntu release=noble arches=amd64 subarches='*' labels='*'");
  });

  it.each([
    ['re-signed', RESIGNED_FILES],
    ['merged', MERGED_FILES],
  ])("gives a %s publication the mirror's own keyring, as keyring_data and as a file for the snap and the deb, whatever keyring was configured", async (mode, files) => {
    // Prepare: a keyring configured for the verbatim mode must not be named once the publication is re-signed.
    app = createApp({ ...backend, keyringFilename: UBUNTU_CLOUDIMAGE_KEYRING, now: () => NOW });
    await publish(1, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })], { files });

    // Act
    const { text } = await page(mirror);
    const status = (await (await app(new Request(`${ORIGIN}api/v1/status`))).json()) as { mode: string };

    // Assess
    expect(status.mode).toBe(mode);
    expect(text).not.toContain(UBUNTU_CLOUDIMAGE_KEYRING);
    expect(commandOf(text, 'maas-keyring-data')).toBe(
      `curl -fsSo skystreams-keyring.gpg ${base}keyring.gpg\nmaas $PROFILE boot-source update 1 url=${base} keyring_filename="" keyring_data@=skystreams-keyring.gpg`,
    );
    expect(commandOf(text, 'maas-keyring-snap')).toBe(
      `sudo curl -fsSo ${RESIGNED_MAAS_KEYRING} ${base}keyring.gpg\nmaas $PROFILE boot-source update 1 url=${base} keyring_filename=${RESIGNED_MAAS_KEYRING}`,
    );
    expect(commandOf(text, 'maas-keyring-deb')).toBe(
      `sudo curl -fsSo /var/lib/maas/skystreams-keyring.gpg ${base}keyring.gpg\nmaas $PROFILE boot-source update 1 url=${base} keyring_filename=/var/lib/maas/skystreams-keyring.gpg`,
    );
    // The page's script sets every URL from the address bar.
    const urls = [...text.matchAll(/<span data-mirror-url>([^<]*)<\/span>/g)].map((m) => m[1]);
    expect(urls.length).toBeGreaterThanOrEqual(7);
    expect(new Set(urls)).toEqual(new Set([base]));
    expect(text).toContain(`<dt>Mode</dt><dd>${mode}: `);
    // Each command has a copy button, hidden until the page's script shows it.
    for (const id of ['maas-keyring-data', 'maas-keyring-snap', 'maas-keyring-deb']) expect(text).toContain(`<button type="button" data-copy="${id}" hidden>Copy</button>`);
  });

  it('keeps commands whole: no rule breaks them inside a word', async () => {
    // Act
    const { text } = await page();

    // Assess
    const preRule = /\npre\{([^}]*)\}/.exec(text)![1]!;
    expect(preRule).toContain('word-break:normal');
    expect(preRule).toContain('overflow-wrap:normal');
    expect(preRule).toContain('overflow-x:auto');
    expect(text).not.toMatch(/break-all|overflow-wrap:anywhere/);
  });

  it("lists the signing keys of a re-signed mirror, and none for a verbatim one", async () => {
    // Prepare
    await publish(1, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })], { files: RESIGNED_FILES });
    const report = await statusPageReport(backend.objects, backend.catalog, { now: NOW });
    const signing = {
      keys: [
        { fingerprint: 'AAAA1111BBBB2222CCCC3333DDDD4444EEEE5555', state: 'active' as const, since: '2026-11-01T00:00:00.000Z' },
        { fingerprint: `FFFF${HOSTILE}`, state: 'pending' as const },
      ],
    };
    const context = { mirrorUrl: ORIGIN, keyringFilename: UBUNTU_CLOUDIMAGE_KEYRING, now: NOW, refreshSeconds: 5 };

    // Act
    const resigned = renderStatusPage({ ...report, signing }, context);
    const verbatim = renderStatusPage({ ...report, mode: 'verbatim', signing }, context);

    // Assess
    expect(rowsOf(resigned, 'signing-keys')).toEqual([
      'AAAA1111BBBB2222CCCC3333DDDD4444EEEE5555|active|2026-11-01 00:00:00 UTC (30d12h ago)',
      'FFFF&#60;script&#62;alert(1)&#60;/script&#62;|pending|',
    ]);
    expect(resigned).not.toContain(HOSTILE);
    expect(verbatim).not.toContain('id="signing-keys"');
  });
});

describe('Status page: staleness', () => {
  const OLD_UPSTREAM = 'Sun, 01 Nov 2026 06:00:00 +0000';

  it('warns first thing when upstream has not updated its metadata for 14 days, since when, and says so in /api/v1/status', async () => {
    // Prepare
    await publish(1, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })], { upstreamUpdated: OLD_UPSTREAM });

    // Act
    const { text } = await page();
    const status = (await (await app(new Request(`${ORIGIN}api/v1/status`))).json()) as { stale?: { since: string; reason: string } };

    // Assess
    expect(status.stale).toEqual({
      since: '2026-11-15T06:00:00.000Z',
      reason: "upstream's metadata was last updated 2026-11-01T06:00:00.000Z, more than 14 days ago",
    });
    const warning = /<p class="warning" role="alert" id="stale">([\s\S]*?)<\/p>/.exec(text)![1]!;
    expect(warning).toContain('<time datetime="2026-11-15T06:00:00.000Z">');
    expect(warning).toContain('more than 14 days ago');
    expect(text.indexOf('id="stale"')).toBeLessThan(text.indexOf('id="freshness"'));
  });

  it('says nothing while upstream is newer than the stale-after setting, or with the rule off (0)', async () => {
    // Prepare
    await publish(1, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })], { upstreamUpdated: OLD_UPSTREAM });
    const withRuleOff = createApp({ ...backend, staleAfterMs: 0, now: () => NOW });
    const withLongerLimit = createApp({ ...backend, staleAfterMs: 31 * 24 * HOUR, now: () => NOW });

    // Act
    const pages = await Promise.all([withRuleOff, withLongerLimit].map(async (each) => (await each(new Request(ORIGIN))).text()));
    const status = await (await withRuleOff(new Request(`${ORIGIN}api/v1/status`))).json();

    // Assess
    for (const text of pages) expect(text).not.toContain('id="stale"');
    expect(status).not.toHaveProperty('stale');
  });

  it('warns a scheduled mirror once no check has succeeded for three intervals, and not before', async () => {
    // Prepare: hourly; the last good check finished 4 h before now, later runs failed.
    app = createApp({ ...backend, syncIntervalMs: HOUR, now: () => NOW });
    await publish(1, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })]);
    await backend.catalog.putRun(run({ id: 'ok', startedAt: '2026-12-01T07:59:00.000Z', finishedAt: '2026-12-01T08:00:00.000Z', state: 'unchanged' }));
    for (const hour of ['09', '10', '11']) {
      await backend.catalog.putRun(run({ id: `bad-${hour}`, startedAt: `2026-12-01T${hour}:00:00.000Z`, finishedAt: `2026-12-01T${hour}:00:05.000Z`, state: 'failed', error: 'upstream unreachable' }));
    }

    // Act
    const stale = await page();
    await backend.catalog.putRun(run({ id: 'ok-again', startedAt: '2026-12-01T11:30:00.000Z', finishedAt: '2026-12-01T11:31:00.000Z', state: 'unchanged' }));
    const fresh = await page();

    // Assess
    expect(stale.text).toMatch(/id="stale"><strong>Stale<\/strong> since <time datetime="2026-12-01T11:00:00.000Z">[^]*no check of upstream has succeeded since 2026-12-01T08:00:00.000Z: 3 sync intervals of 1 hour have passed/);
    expect(fresh.text).not.toContain('id="stale"');
  });
});

describe('Status page: channels', () => {
  it('lists each channel with its URL (the default also at /), its generation and where it pointed before', async () => {
    // Prepare: stable moved from 1 to 2; candidate made at 2; edge pointed at 2, then rolled back to 1.
    await publish(1, '2026-11-30T06:00:00.000Z', [entry({ version: '20261130', item: 'boot-kernel' })]);
    await publish(2, '2026-12-01T06:00:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })]);
    await backend.catalog.setChannel({ name: 'candidate', generation: 2, history: [] }, undefined);
    await backend.catalog.setChannel({ name: 'edge', generation: 1, history: [3, 2] }, undefined);

    // Act
    const { text } = await page({ host: 'mirror.test' });

    // Assess
    expect(rowsOf(text, 'channels-table')).toEqual([
      'stable|http://mirror.test/ (default)also http://mirror.test/channels/stable/|2|2026-12-01 06:00:00 UTC|generation 1|generation 1',
      'candidate|http://mirror.test/channels/candidate/|2|2026-12-01 06:00:00 UTC|never switched|nothing',
      'edge|http://mirror.test/channels/edge/|1|2026-11-30 06:00:00 UTC|generation 3|generations 3, 2',
    ]);
  });

  it('has no channels section before anything is published', async () => {
    expect((await page()).text).not.toContain('id="channels"');
  });
});

describe('Status page: counts and charts', () => {
  it('says 1 item, 1 file, 1 image and the one run in the singular, 2 in the plural', async () => {
    // Prepare
    await publish(1, '2026-12-01T06:01:00.000Z', [entry({ version: '20261201', item: 'boot-kernel' })]);
    await backend.catalog.putRun(run({ id: 'a', startedAt: '2026-12-01T06:00:00.000Z', finishedAt: '2026-12-01T06:01:00.000Z', state: 'succeeded', itemsCopied: 1, bytesCopied: 1024, generation: 1 }));

    // Act
    const one = (await page()).text;
    await backend.catalog.putRun(run({ id: 'b', startedAt: '2026-12-01T07:00:00.000Z', finishedAt: '2026-12-01T07:01:00.000Z', state: 'succeeded', itemsCopied: 2, bytesCopied: 2048 }));
    const two = (await page()).text;

    // Assess
    expect(one).toContain('<dt>Holds</dt><dd>1 item, 1.0 KiB</dd>');
    expect(one).toContain('<caption>Generation 1: 1 image;');
    expect(one).toContain('(1 file, 1.0 KiB)');
    expect(one).toContain('<caption>The one run so far</caption>');
    expect(one).toContain('<figcaption>Bytes copied, the last run</figcaption>');
    expect(rowsOf(one, 'runs-table')[0]).toContain('|1 item, 1.0 KiB|');
    expect(two).toContain('<caption>The 2 most recent runs, newest first</caption>');
    expect(two).toContain('<figcaption>Bytes copied, last 2 runs (oldest left)</figcaption>');
    expect(rowsOf(two, 'runs-table')[0]).toContain('|2 items, 2.0 KiB|');
  });

  it('draws no bar for a run shown as 0s, and scales the others to the longest from 0', async () => {
    // Prepare: 0.4 s (shown 0s), 10 s, and exactly 0 s.
    await backend.catalog.putRun(run({ id: 'a', startedAt: '2026-12-01T06:00:00.000Z', finishedAt: '2026-12-01T06:00:00.400Z', state: 'unchanged' }));
    await backend.catalog.putRun(run({ id: 'b', startedAt: '2026-12-01T07:00:00.000Z', finishedAt: '2026-12-01T07:00:10.000Z', state: 'succeeded' }));
    await backend.catalog.putRun(run({ id: 'c', startedAt: '2026-12-01T08:00:00.000Z', finishedAt: '2026-12-01T08:00:05.000Z', state: 'unchanged' }));
    await backend.catalog.putRun(run({ id: 'd', startedAt: '2026-12-01T09:00:00.000Z', finishedAt: '2026-12-01T09:00:00.000Z', state: 'unchanged' }));

    // Act
    const { text } = await page();

    // Assess
    expect(barHeights(text, 'chart-duration')).toEqual([0, 118, 59, 0]);
    expect(text).toContain('<text x="2" y="12" font-size="12" fill="#1a1a1a">max 10s</text>');
  });

  it('draws no full bar when every run took under half a second', async () => {
    // Prepare
    await backend.catalog.putRun(run({ id: 'quick', startedAt: '2026-12-01T06:00:00.000Z', finishedAt: '2026-12-01T06:00:00.300Z', state: 'unchanged' }));

    // Act
    const { text } = await page();

    // Assess
    expect(barHeights(text, 'chart-duration')).toEqual([0]);
    expect(text).toContain('max 0s');
  });
});

/** A command block's text as copied: its tags dropped. */
function commandOf(html: string, id: string): string {
  return new RegExp(`<code id="${id}">([\\s\\S]*?)</code>`).exec(html)![1]!.replace(/<[^>]+>/g, '');
}

function barHeights(html: string, chartId: string): number[] {
  const chart = new RegExp(`<figure id="${chartId}">([\\s\\S]*?)</figure>`).exec(html)![1]!;
  return [...chart.matchAll(/<rect class="bar"[^>]* height="([\d.]+)"/g)].map((m) => Number(m[1]));
}

describe('Function: requestBaseUrl', () => {
  const from = (headers: Record<string, string>) => requestBaseUrl({ header: (name) => headers[name] });

  it.each([
    [{ host: 'mirror.test' }, 'http://mirror.test/'],
    [{ host: '[::1]:8080' }, 'http://[::1]:8080/'],
    [{ host: 'a.example', 'cloudfront-forwarded-proto': 'https' }, 'https://a.example/'],
    [{ host: 'inner', 'x-forwarded-host': 'outer.example, proxy2', 'x-forwarded-proto': 'https,http' }, 'https://outer.example/'],
    [{ host: 'a.example', 'x-forwarded-proto': 'gopher' }, 'http://a.example/'],
  ])('%j → %s', (headers, url) => {
    expect(from(headers)).toBe(url);
  });

  it.each([[{}], [{ host: 'evil.example/"><script>' }], [{ host: 'a b' }]])('is undefined for %j', (headers) => {
    expect(from(headers)).toBeUndefined();
  });
});
