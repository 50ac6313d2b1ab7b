/**
 * What the status page and /api/v1/status say of a real synced mirror, on
 * both backends: the mode read from the publication (verbatim, re-signed),
 * the MAAS commands each needs (and that the keyring URL they name serves
 * the keyring that verifies the index), the channels and where they pointed
 * before, and staleness.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SigningKeyFile } from '../../functions/adapters/fs/signing-key-file.ts';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { promote } from '../../functions/core/channels.ts';
import { SyncEngine } from '../../functions/core/engine.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { loadKeyring, verifyClearsigned } from '../../functions/core/pgp.ts';
import { DEFAULT_CHANNEL } from '../../functions/core/ports.ts';
import { defaultEngineSettings, RESIGNED_MAAS_KEYRING, UBUNTU_CLOUDIMAGE_KEYRING } from '../../functions/core/settings.ts';
import { createApp } from '../../functions/http/app.ts';
import { cloudBackend, embeddedBackend, type BackendFactory, type OpenedBackend } from '../support/backends.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { useStandins } from '../support/global-standins.ts';
import { replaceFiles, syncMirror, withNewVersion } from '../support/mirror.ts';
import { generateSigningKey, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

const ORIGIN = 'http://mirror.test/';
const FIRST = 'Mon, 01 Jun 2026 00:00:00 +0000';
const SECOND = 'Tue, 02 Jun 2026 00:00:00 +0000';
/** Two weeks and a day after SECOND: the default stale-after of 14 days has passed. */
const LATER = new Date('2026-06-17T00:00:00.000Z');
const INDEX = 'streams/v1/index.sjson';

const backends: BackendFactory[] = [embeddedBackend, cloudBackend(useStandins())];

describe.each(backends)('Status page of a synced mirror: $name', (factory) => {
  let key: SigningKey;
  let firstTree: Map<string, Uint8Array>;
  let secondTree: Map<string, Uint8Array>;
  const live = new Map<string, Uint8Array>();
  let upstream: ServedTree;
  let opened: OpenedBackend;
  let work: string;

  beforeAll(async () => {
    key = await generateSigningKey('status page upstream');
    const products = loadFixtureProducts();
    firstTree = await synthesizeTree(products, { key, updated: FIRST });
    secondTree = await synthesizeTree(withNewVersion(products, '20990101'), { key, updated: SECOND });
    upstream = await serveTree(live);
    work = await mkdtemp(join(tmpdir(), 'skystreams-status-modes-'));
  });
  afterAll(async () => {
    await upstream?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });
  beforeEach(async () => {
    replaceFiles(live, firstTree);
    opened = await factory.open();
  });
  afterEach(async () => {
    await opened.cleanup();
  });

  const sync = (channel?: string) =>
    syncMirror(opened.backend, upstream.baseUrl, { keyring: key, filters: ['arch=amd64'], max: 1, keepGenerations: 3, ...(channel && { channel }) });
  const get = async (app: ReturnType<typeof createApp>, path: string) => app(new Request(`${ORIGIN}${path}`, { headers: { host: 'mirror.test' } }));

  it('shows a verbatim mirror\'s channels, where each pointed before, and the upstream keyring; stale once upstream is 14 days old', async () => {
    // Prepare: candidate gets generation 1, promoted to stable; the next sync moves stable to 2.
    expect((await sync('candidate')).state).toBe('succeeded');
    await promote(opened.backend.catalog, 'candidate', DEFAULT_CHANNEL);
    replaceFiles(live, secondTree);
    expect((await sync()).state).toBe('succeeded');
    const app = createApp({ ...opened.backend, now: () => LATER });

    // Act
    const page = await (await get(app, '')).text();
    const status = (await (await get(app, 'api/v1/status')).json()) as { mode: string; channels: unknown[]; stale?: { since: string } };

    // Assess
    expect(status.mode).toBe('verbatim');
    expect(status.channels).toEqual([
      { name: 'candidate', generation: 1, history: [] },
      { name: DEFAULT_CHANNEL, generation: 2, history: [1] },
    ]);
    const channelRows = [...page.matchAll(/<tr><th scope="row">(\w+)<\/th><td>[^]*?<\/td><td class="num">(\d+)<\/td><td>[^]*?<\/td><td>([^<]*)<\/td><td>([^<]*)<\/td><\/tr>/g)].map((m) => m.slice(1).join('|'));
    expect(channelRows).toEqual(['stable|2|generation 1|generation 1', 'candidate|1|never switched|nothing']);
    expect(page).toContain('<code><span data-mirror-url>http://mirror.test/</span>channels/candidate/</code>');
    expect(commandsOf(page)['maas-keyring-file']).toBe(`maas $PROFILE boot-source update 1 url=http://mirror.test/ keyring_filename=${UBUNTU_CLOUDIMAGE_KEYRING}`);
    expect(page).not.toContain('keyring_data');
    expect(status.stale?.since).toBe('2026-06-16T00:00:00.000Z');
    expect(page).toContain('id="stale"');
  });

  it('tells MAAS to fetch a re-signed mirror\'s own keyring from the URL that serves it, and that keyring verifies the index', async () => {
    // Prepare
    const engine = new SyncEngine(
      {
        upstream: new HttpUpstream(upstream.baseUrl),
        objects: opened.backend.objects,
        catalog: opened.backend.catalog,
        sleep: async () => {},
        signingKeys: new SigningKeyFile(join(work, `${factory.name.split(' ')[0]}-keys.json`)),
      },
      {
        ...defaultEngineSettings,
        keyring: await loadKeyring('upstream keyring', key.publicKeyring),
        selection: { filters: [parseFilter('arch=amd64')], max: 1 },
        resign: true,
      },
    );
    expect((await engine.run()).state).toBe('succeeded');
    const app = createApp({ ...opened.backend, keyringFilename: UBUNTU_CLOUDIMAGE_KEYRING });

    // Act
    const page = await (await get(app, '')).text();
    const status = (await (await get(app, 'api/v1/status')).json()) as { mode: string };
    const commands = commandsOf(page);
    const keyringPath = /^curl -fsSo skystreams-keyring\.gpg http:\/\/mirror\.test\/(\S+)\n/.exec(commands['maas-keyring-data'] ?? '')?.[1];
    const keyring = await get(app, keyringPath ?? 'missing');
    const index = await (await get(app, INDEX)).text();

    // Assess
    expect(status.mode).toBe('re-signed');
    expect(keyringPath).toBe('keyring.gpg');
    expect(keyring.status).toBe(200);
    const verified = await verifyClearsigned(INDEX, index, await loadKeyring('served keyring', new Uint8Array(await keyring.arrayBuffer())));
    expect(verified).toContain('"format"');
    expect(commands['maas-keyring-data']).toMatch(/\nmaas \$PROFILE boot-source update 1 url=http:\/\/mirror\.test\/ keyring_filename="" keyring_data@=skystreams-keyring\.gpg$/);
    expect(commands['maas-keyring-snap']).toMatch(new RegExp(`\\nmaas \\$PROFILE boot-source update 1 url=http://mirror\\.test/ keyring_filename=${RESIGNED_MAAS_KEYRING}$`));
    expect(page).not.toContain(UBUNTU_CLOUDIMAGE_KEYRING);
  });
});

/** Each command block of the page by id, as its text is copied. */
function commandsOf(page: string): Record<string, string> {
  return Object.fromEntries([...page.matchAll(/<code id="([\w-]+)">([\s\S]*?)<\/code>/g)].map((m) => [m[1]!, m[2]!.replace(/<[^>]+>/g, '')]));
}
