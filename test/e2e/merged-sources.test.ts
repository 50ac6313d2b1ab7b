/**
 * Several sources, one stream, on the embedded backend from the CLI: two
 * signed upstreams with their own keys merged by `sync --config FILE`,
 * served, and read as MAAS and gpgv read them; conflicts resolved by
 * priority and shown by `status`; an uploaded image joining them; the
 * integrity rules still holding per source (a replayed older index, other
 * bytes at a served path).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatUpdated, type ProductsDocument } from '../../functions/core/simplestreams.ts';
import type { SourceConflict } from '../../functions/core/sources.ts';
import { cli as runCli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { replaceFiles } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror } from '../support/resigned-mirror.ts';
import { generateSigningKey, synthesizeTree } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';
import { rootTgz } from '../support/image-files.ts';

const cli = (...args: string[]) => runCli(args);

/** In both sources: maas's copy and the site's own build, at other paths. */
const SHARED = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
/** The site's product whose files sit at the paths of maas's SHARED, with other bytes. */
const CLASHING = 'com.example.site:v3:boot:24.04:amd64:rebuilt';

interface Upstream {
  keyring: string;
  tree: ServedTree;
  files: Map<string, Uint8Array>;
}

/** The site's documents: CentOS, its own build of SHARED under site/, and (unless left out) CLASHING at maas's paths. */
function siteProducts(options: { clashing: boolean }): ProductsDocument[] {
  const [ubuntu, , centos] = loadFixtureProducts();
  const original = ubuntu!.products[SHARED]!;
  const rebuilt = structuredClone(original);
  for (const version of Object.values(rebuilt.versions)) for (const item of Object.values(version.items)) item.path = `site/${item.path}`;
  const products: ProductsDocument['products'] = { [SHARED]: rebuilt };
  if (options.clashing) products[CLASHING] = structuredClone(original);
  return [centos!, { ...ubuntu!, content_id: 'com.example.site:v3:download', products }];
}

describe('CLI: sync --config merges several sources into one re-signed stream', () => {
  let work: string;
  let maas: Upstream;
  let site: Upstream;
  let siteKey: Awaited<ReturnType<typeof generateSigningKey>>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'skystreams-merged-'));
    const maasKey = await generateSigningKey('maas upstream');
    siteKey = await generateSigningKey('site upstream');
    const [ubuntu, bootloaders] = loadFixtureProducts();
    const maasFiles = await synthesizeTree([ubuntu!, bootloaders!], { key: maasKey, updated: formatUpdated(new Date(Date.now() - 3_600_000)) });
    // Other bytes at the same paths: what a rebuild under the same names looks like.
    const siteFiles = await synthesizeTree(siteProducts({ clashing: true }), { key: siteKey, contentSeed: 'site', updated: formatUpdated(new Date(Date.now() - 3_600_000)) });
    await writeFile(join(work, 'maas.gpg'), maasKey.publicKeyring);
    await writeFile(join(work, 'site.gpg'), siteKey.publicKeyring);
    maas = { keyring: join(work, 'maas.gpg'), tree: await serveTree(maasFiles), files: maasFiles };
    site = { keyring: join(work, 'site.gpg'), tree: await serveTree(siteFiles), files: siteFiles };
  });
  afterAll(async () => {
    await maas?.tree.close();
    await site?.tree.close();
    await rm(work, { recursive: true, force: true });
  });

  async function writeConfig(name: string, priorities: { maas: number; site: number }): Promise<string> {
    const file = join(work, name);
    await writeFile(
      file,
      JSON.stringify({
        sources: [
          // Keyring paths relative to the config file.
          { name: 'maas', url: maas.tree.baseUrl, keyring: 'maas.gpg', filters: ['arch=amd64'], max: 1, priority: priorities.maas },
          { name: 'site', url: site.tree.baseUrl, keyring: 'site.gpg', max: 1, priority: priorities.site },
        ],
      }),
    );
    return file;
  }

  const pathsOf = (mirror: Awaited<ReturnType<typeof readResignedMirror>>, product: string) =>
    mirror.products
      .flatMap((doc) => Object.entries(doc.products))
      .filter(([name]) => name === product)
      .flatMap(([, entry]) => Object.values(entry.versions).flatMap((version) => Object.values(version.items).map((item) => item.path)));

  it('serves both sources as one stream MAAS and gpgv accept; status names the conflicts; priorities decide again when they change', async () => {
    const dataDir = join(work, 'mirror');
    const config = await writeConfig('sources.json', { maas: 10, site: 0 });
    const first = await cli('sync', '--config', config, '--data-dir', dataDir);
    expect(first.stderr).toContain('"type":"published"');
    expect(first.code).toBe(0);

    const server = await startServing(['serve', '--data-dir', dataDir]);
    try {
      const mirror = await readResignedMirror(server.url);
      expect(mirror.fetchProblems).toEqual([]);
      expect(mirror.maasProblems).toEqual([]);
      const gpgv = await gpgvProblems(mirror);
      if (gpgv === undefined) console.warn('gpgv is not installed: the gpgv check of the merged stream is skipped');
      else expect(gpgv).toEqual([]);
      const published = mirror.products.flatMap((doc) => Object.keys(doc.products));
      // Ubuntu amd64 and bootloaders (amd64) from maas, CentOS from the site; the site's SHARED and CLASHING gave way.
      expect(published).toContain(SHARED);
      expect(published).not.toContain(CLASHING);
      expect(published.filter((name) => name.includes('centos-bases')).sort()).toEqual([
        'com.ubuntu.maas.stable:centos-bases:7.0:amd64',
        'com.ubuntu.maas.stable:centos-bases:8:amd64',
      ]);
      expect(published.filter((name) => name.includes(':arm64'))).toEqual([]);
      // SHARED is maas's build: its paths, with maas's bytes (readResignedMirror checked every digest).
      const sharedPaths = pathsOf(mirror, SHARED);
      expect(sharedPaths.length).toBeGreaterThan(0);
      expect(sharedPaths.every((path) => maas.files.has(path) && !path.startsWith('site/'))).toBe(true);

      const expectedConflicts: SourceConflict[] = [
        {
          product: CLASHING,
          kept: { source: 'maas', product: SHARED },
          dropped: { source: 'site', product: CLASHING },
          reason: 'path',
          path: expect.any(String) as string,
        },
        { product: SHARED, kept: { source: 'maas', product: SHARED }, dropped: { source: 'site', product: SHARED }, reason: 'product' },
      ];
      const statusJson = await cli('status', '--json', '--data-dir', dataDir);
      const conflicts = (JSON.parse(statusJson.stdout) as { conflicts: SourceConflict[] }).conflicts;
      expect(conflicts).toEqual(expectedConflicts);
      expect(sharedPaths).toContain(conflicts[0]!.path);
      const status = await cli('status', '--data-dir', dataDir);
      expect(status.stdout).toContain(`conflict: ${SHARED} from source site gave way to source maas (higher priority, or listed first)`);
      expect(status.stdout).toContain(`conflict: ${conflicts[0]!.path} (in ${CLASHING}) from source site gave way to source maas's ${SHARED}`);

      // Nothing changed upstream: one conditional request per source, no new generation.
      const again = await cli('sync', '--config', config, '--data-dir', dataDir);
      expect(again.code).toBe(0);
      expect(again.stderr).toContain('"type":"unchanged"');

      // The site first: its CLASHING would put other bytes at paths the served generation lists. Refused, nothing changes.
      const siteFirst = await writeConfig('site-first.json', { maas: 0, site: 10 });
      const refused = await cli('sync', '--config', siteFirst, '--data-dir', dataDir);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(conflicts[0]!.path);
      const unchanged = await readResignedMirror(server.url);
      expect(unchanged.index.updated).toBe(mirror.index.updated);
      expect(pathsOf(unchanged, SHARED)).toEqual(sharedPaths);

      // Without CLASHING upstream, the changed priorities alone publish again: SHARED is now the site's build.
      replaceFiles(site.files, await synthesizeTree(siteProducts({ clashing: false }), { key: siteKey, contentSeed: 'site' }));
      const swapped = await cli('sync', '--config', siteFirst, '--data-dir', dataDir);
      expect(swapped.stderr).toContain('"type":"published"');
      expect(swapped.code).toBe(0);
      const now = await readResignedMirror(server.url);
      expect(now.fetchProblems).toEqual([]);
      expect(now.maasProblems).toEqual([]);
      expect(pathsOf(now, SHARED).every((path) => path.startsWith('site/'))).toBe(true);
      const swappedStatus = JSON.parse((await cli('status', '--json', '--data-dir', dataDir)).stdout) as { conflicts: SourceConflict[] };
      expect(swappedStatus.conflicts).toEqual([
        { product: SHARED, kept: { source: 'site', product: SHARED }, dropped: { source: 'maas', product: SHARED }, reason: 'product' },
      ]);

      // The site's own packer-built image joins the merged stream.
      await writeFile(join(work, 'image.tgz'), rootTgz(40_000));
      await writeFile(join(work, 'image.manifest'), 'site-agent\t1.2.3\n');
      const upload = await cli(
        'upload', '--config', siteFirst, '--data-dir', dataDir,
        '--os', 'centos', '--release', 'sitecentos9', '--arch', 'amd64', '--subarch', 'generic', '--title', 'CentOS 9 (site)',
        '--file', `root-tgz=${join(work, 'image.tgz')}`, '--file', `manifest=${join(work, 'image.manifest')}`,
      );
      expect(upload.stderr).toContain('"type":"published"');
      expect(upload.code).toBe(0);
      const withUpload = await readResignedMirror(server.url);
      expect(withUpload.fetchProblems).toEqual([]);
      expect(withUpload.maasProblems).toEqual([]);
      expect(withUpload.products.flatMap((doc) => Object.keys(doc.products))).toContain('com.skystreams.custom:v3:centos:sitecentos9:amd64:generic');
      expect(pathsOf(withUpload, SHARED)).toEqual(pathsOf(now, SHARED));
    } finally {
      server.process.kill('SIGTERM');
    }
  });

  it('refuses one source going back in time, naming its file, and keeps serving what it served', async () => {
    const dataDir = join(work, 'rollback');
    const config = await writeConfig('rollback.json', { maas: 10, site: 0 });
    const newer = await synthesizeTree(siteProducts({ clashing: false }), { key: siteKey, contentSeed: 'site' });
    replaceFiles(site.files, newer);
    expect((await cli('sync', '--config', config, '--data-dir', dataDir)).code).toBe(0);
    const before = JSON.parse((await cli('status', '--json', '--data-dir', dataDir)).stdout) as { publication: { generation: number } };

    // A replay of an older, validly signed site index.
    replaceFiles(site.files, await synthesizeTree(siteProducts({ clashing: false }), { key: siteKey, contentSeed: 'site', updated: formatUpdated(new Date(Date.now() - 86_400_000)) }));
    const replayed = await cli('sync', '--config', config, '--data-dir', dataDir);
    expect(replayed.code).toBe(1);
    expect(replayed.stderr).toContain(`${site.tree.baseUrl}streams/v1/index.sjson: updated `);
    expect(replayed.stderr).toContain('refusing to roll back');
    const after = JSON.parse((await cli('status', '--json', '--data-dir', dataDir)).stdout) as { publication: { generation: number } };
    expect(after.publication.generation).toBe(before.publication.generation);
  });

  it('refuses a bad config file naming the file and the field, and --source beside it', async () => {
    const bad = join(work, 'bad.json');
    await writeFile(bad, JSON.stringify({ sources: [{ name: 'maas', url: maas.tree.baseUrl, keyring: 'maas.gpg', prioriy: 1 }] }));
    const unknown = await cli('sync', '--config', bad, '--data-dir', join(work, 'bad'));
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(`${bad}: $.sources[0].prioriy: unknown setting`);

    await writeFile(bad, JSON.stringify({ sources: [{ name: 'a', url: maas.tree.baseUrl, keyring: 'maas.gpg' }, { name: 'a', url: site.tree.baseUrl, keyring: 'site.gpg' }] }));
    const twice = await cli('sync', '--config', bad, '--data-dir', join(work, 'bad'));
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain(`${bad}: $.sources[1].name: "a" names another source too`);

    await writeFile(bad, JSON.stringify({ sources: [{ name: 'maas', url: maas.tree.baseUrl, keyring: 'missing.gpg' }] }));
    const missing = await cli('sync', '--config', bad, '--data-dir', join(work, 'bad'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(join(work, 'missing.gpg'));

    const good = await writeConfig('good.json', { maas: 1, site: 0 });
    const both = await cli('sync', '--config', good, '--source', maas.tree.baseUrl, '--data-dir', join(work, 'bad'));
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--source cannot be given too');
  });
});
