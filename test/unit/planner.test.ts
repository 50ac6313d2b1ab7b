import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MetadataError } from '../../functions/core/errors.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { planSync, selectItems, unreferencedPaths, type Selection } from '../../functions/core/planner.ts';
import type { StoredObject } from '../../functions/core/ports.ts';
import type { ProductsDocument, VersionEntry } from '../../functions/core/simplestreams.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';

const UBUNTU_ID = 'com.ubuntu.maas:stable:v3:download';
const BOOTLOADERS_ID = 'com.ubuntu.maas:stable:1:bootloader-download';
const CENTOS_ID = 'com.ubuntu.maas:stable:centos-bases-download';
const NOBLE_GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const NOBLE_HWE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04';
const PPC_GRUB = 'com.ubuntu.maas.stable:1:grub-ieee1275:open-firmware:ppc64el';
const CENTOS_8 = 'com.ubuntu.maas.stable:centos-bases:8:amd64';

const everything: Selection = { filters: [] };
const selection = (expressions: string[], max?: number): Selection => ({ filters: expressions.map(parseFilter), max });
const fileOf = (doc: ProductsDocument) => `streams/v1/${doc.content_id}.sjson`;
const asInput = (docs: ProductsDocument[]) => docs.map((doc) => ({ file: fileOf(doc), doc }));
const documentById = (docs: ProductsDocument[], contentId: string) => docs.find((doc) => doc.content_id === contentId)!;
const sha256Of = (text: string) => createHash('sha256').update(text).digest('hex');

/** Every item of every version of every product, straight from the documents (no inheritance). */
function rawItems(docs: ProductsDocument[]) {
  return docs.flatMap((doc) =>
    Object.entries(doc.products).flatMap(([product, entry]) =>
      Object.entries(entry.versions).flatMap(([version, { items }]) =>
        Object.entries(items).map(([item, fields]) => ({ contentId: doc.content_id, product, version, item, fields, entry })),
      ),
    ),
  );
}

/**
 * The fixtures with paths shared as on images.maas.io: an HWE product listing
 * the GA product's root images (squashfs, manifest) beside its own kernels,
 * and a ppc64el bootloader version that re-lists the previous version's file.
 */
function fixturesWithSharedPaths(): ProductsDocument[] {
  const docs = loadFixtureProducts();
  const ubuntu = documentById(docs, UBUNTU_ID);
  const hwe = structuredClone(ubuntu.products[NOBLE_GA]!);
  hwe.subarch = 'hwe-24.04';
  for (const version of Object.values(hwe.versions)) {
    for (const [name, item] of Object.entries(version.items)) {
      if (name.startsWith('boot-')) item.path = item.path.replace('/ga-24.04/', '/hwe-24.04/');
    }
  }
  ubuntu.products[NOBLE_HWE] = hwe;

  const grub = documentById(docs, BOOTLOADERS_ID).products[PPC_GRUB]!;
  const older = grub.versions['20201124.0']!.items.grub2!;
  const newer = grub.versions['20210509.0']!.items.grub2!;
  Object.assign(newer, { path: older.path, size: older.size, sha256: older.sha256 });
  return docs;
}

/** A copy of `product`'s newest version under `name`, its paths moved under `name`. */
function addVersion(docs: ProductsDocument[], contentId: string, product: string, name: string): void {
  const versions = documentById(docs, contentId).products[product]!.versions;
  const newest = Object.keys(versions).sort().at(-1)!;
  const copy: VersionEntry = structuredClone(versions[newest]!);
  for (const item of Object.values(copy.items)) {
    item.path = item.path.replace(newest, name);
    item.sha256 = sha256Of(`${product} ${name} ${item.path}`);
  }
  versions[name] = copy;
}

function storedAs(path: string, size: number, sha256: string): StoredObject {
  return { path, size, sha256, digests: { sha256 }, storedAt: '2025-08-01T10:00:00.000Z' };
}

describe('Function: selectItems', () => {
  it('keeps only the items whose inherited fields match every filter', () => {
    // Prepare
    const ubuntu = documentById(loadFixtureProducts(), UBUNTU_ID);
    const expected = rawItems([ubuntu])
      .filter(({ entry }) => entry.arch === 'amd64' && entry.release === 'noble')
      .map(({ fields }) => fields.path)
      .sort();

    // Act
    const selected = selectItems(fileOf(ubuntu), ubuntu, selection(['arch=amd64', 'release~^nob']));

    // Assess
    expect(expected.length).toBeGreaterThan(0);
    expect(selected.map((item) => item.path).sort()).toEqual(expected);
    expect(selected.every((item) => item.fields.arch === 'amd64' && item.fields.os === 'ubuntu')).toBe(true);
  });

  it('keeps every version of every product when there is no filter and no max', () => {
    // Prepare
    const docs = loadFixtureProducts();

    // Act
    const selected = docs.flatMap((doc) => selectItems(fileOf(doc), doc, everything));

    // Assess
    expect(selected).toHaveLength(rawItems(docs).length);
  });

  it('keeps the newest max versions of each product', () => {
    // Prepare
    const docs = loadFixtureProducts();
    const newestByProduct = new Map(
      docs.flatMap((doc) => Object.entries(doc.products).map(([name, product]) => [name, Object.keys(product.versions).sort().at(-1)])),
    );

    // Act
    const selected = docs.flatMap((doc) => selectItems(fileOf(doc), doc, selection([], 1)));

    // Assess
    const versionsByProduct = new Map<string, Set<string>>();
    for (const item of selected) {
      versionsByProduct.set(item.productName, (versionsByProduct.get(item.productName) ?? new Set()).add(item.versionName));
    }
    expect([...versionsByProduct.keys()].sort()).toEqual([...newestByProduct.keys()].sort());
    for (const [product, versions] of versionsByProduct) {
      expect([...versions], product).toEqual([newestByProduct.get(product)]);
    }
  });

  it('ranks versions byte-wise (C locale), so an upper-case suffix is older than a lower-case one', () => {
    // Prepare: a locale-aware sort ranks "B" after "a"; byte order ranks "a" (0x61) after "B" (0x42).
    const docs = loadFixtureProducts();
    addVersion(docs, UBUNTU_ID, NOBLE_GA, '20250709B');
    addVersion(docs, UBUNTU_ID, NOBLE_GA, '20250709a');
    const ubuntu = documentById(docs, UBUNTU_ID);

    // Act
    const selected = selectItems(fileOf(ubuntu), ubuntu, selection([`product_name=${NOBLE_GA}`], 1));

    // Assess
    expect(new Set(selected.map((item) => item.versionName))).toEqual(new Set(['20250709a']));
    expect(['20250709a', '20250709B'].sort((a, b) => a.localeCompare(b)).at(-1)).toBe('20250709B');
  });

  it('applies max to the versions left after filtering', () => {
    // Prepare
    const ubuntu = documentById(loadFixtureProducts(), UBUNTU_ID);

    // Act
    const selected = selectItems(fileOf(ubuntu), ubuntu, selection([`product_name=${NOBLE_GA}`, 'version_name!=20250709'], 1));

    // Assess
    expect(selected).toHaveLength(Object.keys(ubuntu.products[NOBLE_GA]!.versions['20250618']!.items).length);
    expect(selected.every((item) => item.versionName === '20250618')).toBe(true);
  });

  it('keeps only items at the given paths, before max (what an imported bundle carries)', () => {
    // Prepare
    const ubuntu = documentById(loadFixtureProducts(), UBUNTU_ID);
    const older = Object.values(ubuntu.products[NOBLE_GA]!.versions['20250618']!.items).map((item) => item.path);

    // Act
    const selected = selectItems(fileOf(ubuntu), ubuntu, { filters: [], max: 1, paths: new Set(older) });

    // Assess: the newest version is not in the set, so max keeps the one that is.
    expect(selected.map((item) => item.path).sort()).toEqual([...older].sort());
    expect(selected.every((item) => item.productName === NOBLE_GA && item.versionName === '20250618')).toBe(true);
  });
});

describe('Function: planSync', () => {
  it('lists a path shared by several products or versions once to copy, but as an entry for each listing', () => {
    // Prepare
    const docs = fixturesWithSharedPaths();
    const nobleGa = documentById(docs, UBUNTU_ID).products[NOBLE_GA]!;
    const sharedRootImage = nobleGa.versions['20250709']!.items.squashfs!.path;
    const sharedBootloader = documentById(docs, BOOTLOADERS_ID).products[PPC_GRUB]!.versions['20201124.0']!.items.grub2!;
    const listings = rawItems(docs);
    const uniqueSizes = new Map(listings.map(({ fields }) => [fields.path, fields.size ?? 0]));

    // Act
    const plan = planSync({ products: asInput(docs), selection: everything, stored: new Map() });

    // Assess
    expect(plan.entries).toHaveLength(listings.length);
    expect(plan.objects.map((task) => task.path)).toEqual([...uniqueSizes.keys()].sort());
    expect(plan.copy).toEqual(plan.objects);
    expect(plan.objects.length).toBeLessThan(plan.entries.length);
    expect(plan.entries.filter((entry) => entry.path === sharedRootImage).map((entry) => entry.product).sort()).toEqual([
      NOBLE_GA,
      NOBLE_HWE,
    ]);
    expect(plan.entries.filter((entry) => entry.path === sharedBootloader.path).map((entry) => entry.version).sort()).toEqual([
      '20201124.0',
      '20210509.0',
    ]);
    expect(plan.copy.filter((task) => task.path === sharedRootImage)).toHaveLength(1);
    expect(plan.copy.filter((task) => task.path === sharedBootloader.path)).toEqual([
      { path: sharedBootloader.path, size: sharedBootloader.size, sha256: sharedBootloader.sha256, ftype: sharedBootloader.ftype },
    ]);
    const uniqueBytes = [...uniqueSizes.values()].reduce((sum, size) => sum + size, 0);
    expect(plan.totalBytes).toBe(uniqueBytes);
    expect(plan.copyBytes).toBe(uniqueBytes);
    expect(plan.presentPaths).toBe(0);
  });

  it('describes each entry with its item, product and the fields MAAS filters on', () => {
    // Prepare
    const docs = loadFixtureProducts();
    const squashfs = documentById(docs, UBUNTU_ID).products[NOBLE_GA]!.versions['20250709']!.items.squashfs!;

    // Act
    const plan = planSync({ products: asInput(docs), selection: selection(['arch=amd64', 'ftype=squashfs']), stored: new Map() });

    // Assess
    expect(plan.entries.find((entry) => entry.path === squashfs.path)).toEqual({
      contentId: UBUNTU_ID,
      product: NOBLE_GA,
      version: '20250709',
      item: 'squashfs',
      path: squashfs.path,
      size: squashfs.size,
      sha256: squashfs.sha256,
      ftype: 'squashfs',
      os: 'ubuntu',
      release: 'noble',
      arch: 'amd64',
      subarch: 'ga-24.04',
      label: 'stable',
    });
    expect(plan.entries.every((entry) => entry.arch === 'amd64' && entry.ftype === 'squashfs')).toBe(true);
  });

  it('leaves out of copy the paths already stored with the same digest and size', () => {
    // Prepare
    const docs = loadFixtureProducts();
    const wanted = selection(['arch=amd64'], 1);
    const { objects } = planSync({ products: asInput(docs), selection: wanted, stored: new Map() });
    const alreadyStored = objects.filter((_task, position) => position % 2 === 0);
    const stored = new Map(alreadyStored.map((task) => [task.path, storedAs(task.path, task.size, task.sha256!)]));

    // Act
    const plan = planSync({ products: asInput(docs), selection: wanted, stored });

    // Assess
    expect(plan.copy).toEqual(objects.filter((task) => !stored.has(task.path)));
    expect(plan.presentPaths).toBe(alreadyStored.length);
    expect(plan.copyBytes).toBe(plan.copy.reduce((sum, task) => sum + task.size, 0));
    expect(plan.totalBytes).toBe(objects.reduce((sum, task) => sum + task.size, 0));
    expect(plan.entries.map((entry) => entry.path).sort()).toEqual(objects.map((task) => task.path).sort());
  });

  it('copies again a stored path whose digest or size differs from what the metadata promises', () => {
    // Prepare
    const docs = loadFixtureProducts();
    const wanted = selection(['arch=amd64', 'ftype=squashfs'], 1);
    const [first, second, ...rest] = planSync({ products: asInput(docs), selection: wanted, stored: new Map() }).objects;
    const stored = new Map([
      [first!.path, storedAs(first!.path, first!.size, sha256Of('other bytes'))],
      [second!.path, storedAs(second!.path, second!.size + 1, second!.sha256!)],
      ...rest.map((task) => [task.path, storedAs(task.path, task.size, task.sha256!)] as const),
    ]);

    // Act
    const plan = planSync({ products: asInput(docs), selection: wanted, stored });

    // Assess
    expect(plan.copy).toEqual([first, second]);
    expect(plan.presentPaths).toBe(rest.length);
  });

  it('refuses, naming both listings, a path listed twice with different digests', () => {
    // Prepare
    const docs = loadFixtureProducts();
    const ubuntuItem = documentById(docs, UBUNTU_ID).products[NOBLE_GA]!.versions['20250709']!.items.manifest!;
    const centosItem = documentById(docs, CENTOS_ID).products[CENTOS_8]!.versions['20211104_01']!.items.manifest!;
    Object.assign(centosItem, { path: ubuntuItem.path, size: ubuntuItem.size });

    // Act
    const act = () => planSync({ products: asInput(docs), selection: everything, stored: new Map() });

    // Assess
    expect(act).toThrow(MetadataError);
    expect(act).toThrow(ubuntuItem.path);
    expect(act).toThrow(fileOf(documentById(docs, UBUNTU_ID)));
    expect(act).toThrow(fileOf(documentById(docs, CENTOS_ID)));
    expect(act).toThrow(JSON.stringify(NOBLE_GA));
    expect(act).toThrow(JSON.stringify(CENTOS_8));
  });

  it('refuses a path listed twice with the same digest but different sizes', () => {
    // Prepare
    const docs = loadFixtureProducts();
    const grub = documentById(docs, BOOTLOADERS_ID).products[PPC_GRUB]!;
    const older = grub.versions['20201124.0']!.items.grub2!;
    Object.assign(grub.versions['20210509.0']!.items.grub2!, { path: older.path, sha256: older.sha256, size: (older.size ?? 0) + 1 });

    // Act
    const act = () => planSync({ products: asInput(docs), selection: everything, stored: new Map() });

    // Assess
    expect(act).toThrow(MetadataError);
    expect(act).toThrow(older.path);
  });

  // Listings agree when their sizes and every digest both declare are equal;
  // the copy then checks every digest either declares.
  it('accepts a path listed once with sha512 + sha256 and once with the same sha256 only, checking both', () => {
    // Prepare
    const docs = fixturesWithSharedPaths();
    const hweSquashfs = documentById(docs, UBUNTU_ID).products[NOBLE_HWE]!.versions['20250709']!.items.squashfs!;
    hweSquashfs.sha512 = createHash('sha512').update('the same bytes as the GA listing').digest('hex');

    // Act
    const plan = planSync({ products: asInput(docs), selection: selection(['release=noble', 'arch=amd64']), stored: new Map() });

    // Assess
    expect(plan.objects.filter((task) => task.path === hweSquashfs.path)).toEqual([
      { path: hweSquashfs.path, size: hweSquashfs.size, sha256: hweSquashfs.sha256, sha512: hweSquashfs.sha512, ftype: 'squashfs' },
    ]);
  });
});

describe('Function: planSync — prune and metadata', () => {
  it('lists as prunable the stored paths the new generation drops', () => {
    // Prepare
    const docs = loadFixtureProducts();
    const everyVersion = planSync({ products: asInput(docs), selection: selection(['arch=amd64']), stored: new Map() });
    const stored = new Map(everyVersion.objects.map((task) => [task.path, storedAs(task.path, task.size, task.sha256!)]));
    const newestOnly = selection(['arch=amd64'], 1);
    const newest = new Set(planSync({ products: asInput(docs), selection: newestOnly, stored: new Map() }).objects.map((t) => t.path));
    const dropped = [...stored.keys()].filter((path) => !newest.has(path)).sort();
    expect(dropped.length).toBeGreaterThan(1);

    // Act
    const plan = planSync({ products: asInput(docs), selection: newestOnly, stored });

    // Assess
    expect(plan.copy).toEqual([]);
    expect(plan.prune).toEqual(dropped);
  });

  it('lists the metadata files to publish, sorted', () => {
    const plan = planSync({
      products: asInput(loadFixtureProducts()),
      selection: everything,
      stored: new Map(),
      metadataFiles: ['streams/v1/index.sjson', 'streams/v1/a.sjson', 'streams/v1/index.json'],
    });

    expect(plan.metadata).toEqual(['streams/v1/a.sjson', 'streams/v1/index.json', 'streams/v1/index.sjson']);
  });
});

describe('Function: unreferencedPaths', () => {
  it('returns, sorted, the stored paths that no retained generation references', () => {
    // Prepare
    const stored = ['b/kernel', 'a/squashfs', 'c/initrd', 'a/manifest'];
    const referenced = new Set(['a/squashfs', 'c/initrd', 'never/stored']);

    // Act
    const unreferenced = unreferencedPaths(stored, referenced);

    // Assess
    expect(unreferenced).toEqual(['a/manifest', 'b/kernel']);
  });

  it('returns nothing when every stored path is referenced', () => {
    // Act
    const unreferenced = unreferencedPaths(new Set(['a', 'b']), new Set(['a', 'b']));

    // Assess
    expect(unreferenced).toEqual([]);
  });
});
