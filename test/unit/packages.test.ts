import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../../functions/adapters/sqlite/sqlite-catalog.ts';
import { ConfigError, ManifestUnavailableError, NotFoundError } from '../../functions/core/errors.ts';
import { diffImages, packagesNamed } from '../../functions/core/packages.ts';
import type { CatalogEntry } from '../../functions/core/ports.ts';

const PRODUCT = 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04';
const sha = (n: number) => n.toString(16).padStart(64, '0');

function entry(version: string, item: string, ftype: string, sha256: string): CatalogEntry {
  return {
    contentId: 'com.ubuntu.maas:stable:v3:download',
    product: PRODUCT,
    version,
    item,
    path: `jammy/amd64/${version}/${item}`,
    size: 10,
    sha256,
    ftype,
    os: 'ubuntu',
    release: 'jammy',
    arch: 'amd64',
    subarch: 'ga-22.04',
    label: 'stable',
  };
}

describe('Functions: packagesNamed / diffImages', () => {
  let catalog: SqliteCatalog;

  beforeEach(async () => {
    catalog = new SqliteCatalog(':memory:');
  });
  afterEach(() => catalog.close());

  /** Publishes `entries` as generation 1 and records each manifest given. */
  async function publish(entries: CatalogEntry[], manifests: [string, Map<string, string> | string][]): Promise<void> {
    await catalog.putEntries(1, entries);
    await catalog.publish(
      { generation: 1, upstreamUpdated: 'x', publishedAt: '2025-07-09T12:00:00.000Z', runId: 'r', files: [], itemCount: entries.length, totalBytes: 0 },
      undefined,
    );
    for (const [sha256, packages] of manifests) {
      await catalog.putManifest({
        sha256,
        path: `manifest-${sha256.slice(-2)}`,
        indexedAt: '2025-07-09T12:00:00.000Z',
        ...(typeof packages === 'string' ? { problem: packages } : { packages }),
      });
    }
  }

  it('finds every architecture of a package by its bare name, and only the one asked for with :arch', async () => {
    // Prepare
    await publish([entry('20250709', 'squashfs.manifest', 'squashfs.manifest', sha(1))], [
      [sha(1), new Map([['libc6:amd64', '2.35-0ubuntu3.8'], ['libc6:i386', '2.35-0ubuntu3.8'], ['libc6-dev:amd64', '2.35-0ubuntu3.8']])],
    ]);

    // Act
    const bare = await packagesNamed(catalog, 'libc6');
    const qualified = await packagesNamed(catalog, 'libc6:i386');

    // Assess
    expect(bare.images.map((image) => image.package)).toEqual(['libc6:amd64', 'libc6:i386']);
    expect(qualified.images.map((image) => image.package)).toEqual(['libc6:i386']);
  });

  it('answers nothing published yet with generation null, and refuses a name no package can have', async () => {
    expect(await packagesNamed(catalog, 'bash')).toEqual({ package: 'bash', generation: null, images: [], unread: [] });
    await expect(packagesNamed(catalog, 'bash; rm')).rejects.toBeInstanceOf(ConfigError);
    await expect(diffImages(catalog, PRODUCT, 'a', 'b')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('diffs the squashfs manifest of each version when a version also lists a root-tgz one', async () => {
    // Prepare
    await publish(
      [
        entry('20250618', 'root-tgz.manifest', 'root-tgz.manifest', sha(2)),
        entry('20250618', 'squashfs.manifest', 'squashfs.manifest', sha(3)),
        entry('20250709', 'squashfs.manifest', 'squashfs.manifest', sha(4)),
        entry('20250709', 'squashfs', 'squashfs', sha(5)),
      ],
      [
        [sha(2), new Map([['bash', '0-from-the-tarball']])],
        [sha(3), new Map([['bash', '5.1-6ubuntu1'], ['gone', '1']])],
        [sha(4), new Map([['bash', '5.1-6ubuntu1.1'], ['new', '2']])],
      ],
    );

    // Act
    const diff = await diffImages(catalog, PRODUCT, '20250618', '20250709');

    // Assess
    expect(diff).toMatchObject({
      from: { version: '20250618', manifest: 'jammy/amd64/20250618/squashfs.manifest' },
      added: [{ package: 'new', version: '2' }],
      removed: [{ package: 'gone', version: '1' }],
      changed: [{ package: 'bash', from: '5.1-6ubuntu1', to: '5.1-6ubuntu1.1' }],
      unchanged: 0,
    });
  });

  it('lists a manifest not indexed yet as unread, and refuses to diff it with ManifestUnavailableError naming it', async () => {
    // Prepare: the older manifest has no record at all.
    await publish(
      [entry('20250618', 'squashfs.manifest', 'squashfs.manifest', sha(6)), entry('20250709', 'squashfs.manifest', 'squashfs.manifest', sha(7))],
      [[sha(7), new Map([['bash', '5.1']])]],
    );

    // Act
    const report = await packagesNamed(catalog, 'bash');
    const attempt = diffImages(catalog, PRODUCT, '20250618', '20250709');

    // Assess
    expect(report.images.map((image) => image.version)).toEqual(['20250709']);
    expect(report.unread).toEqual([
      expect.objectContaining({ version: '20250618', manifest: 'jammy/amd64/20250618/squashfs.manifest', reason: expect.stringMatching(/^not indexed yet/) }),
    ]);
    await expect(attempt).rejects.toBeInstanceOf(ManifestUnavailableError);
    await expect(attempt).rejects.toThrow(`jammy/amd64/20250618/squashfs.manifest (product ${PRODUCT} version 20250618): not indexed yet`);
  });
});
