import { describe, expect, it } from 'vitest';
import { MetadataError, UnsafePathError } from '../../functions/core/errors.ts';
import {
  flattenItems,
  formatUpdated,
  itemJsonPath,
  parseIndex,
  parseProducts,
  parseUpdated,
  type ProductsDocument,
} from '../../functions/core/simplestreams.ts';
import { fixtureText, loadFixtureProducts } from '../support/fixtures.ts';

const UBUNTU_FILE = 'streams/v1/com.ubuntu.maas:stable:v3:download.json';
const CENTOS_ITEM_COUNT = 8;
const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

/** A deep copy of the real ubuntu capture, to mutate. */
function ubuntuDocument(): ProductsDocument {
  const [ubuntu] = loadFixtureProducts();
  return structuredClone(ubuntu!);
}

/** Runs `act`, expecting an error of `type`; returns it for further checks. */
function thrownBy<E extends Error>(type: new (...args: never[]) => E, act: () => unknown): E {
  try {
    act();
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as E;
  }
  throw new Error('expected an error, none was thrown');
}

describe('Function: parseIndex', () => {
  it('parses the real images.maas.io index, keeping every entry', () => {
    // Act
    const index = parseIndex('streams/v1/index.json', fixtureText('simplestreams_index.json'));

    // Assess
    expect(index.format).toBe('index:1.0');
    expect(index.updated).toBe('Thu, 24 Jul 2025 08:01:49 +0000');
    expect(Object.keys(index.index).sort()).toEqual([
      'com.ubuntu.maas:stable:1:bootloader-download',
      'com.ubuntu.maas:stable:centos-bases-download',
      'com.ubuntu.maas:stable:v3:download',
    ]);
    expect(index.index['com.ubuntu.maas:stable:v3:download']).toMatchObject({
      datatype: 'image-ids',
      format: 'products:1.0',
      path: 'streams/v1/com.ubuntu.maas:stable:v3:download.json',
    });
    expect(index.index['com.ubuntu.maas:stable:v3:download']?.products).toHaveLength(4);
  });

  it('keeps unknown fields', () => {
    // Prepare
    const text = JSON.stringify({ format: 'index:1.0', index: { a: { path: 'a.json', extra: [1] } }, mirror: 'x' });

    // Act
    const index = parseIndex('index.json', text);

    // Assess
    expect(index.mirror).toBe('x');
    expect(index.index.a?.extra).toEqual([1]);
  });

  const entry = (fields: Record<string, unknown>) =>
    JSON.stringify({ format: 'index:1.0', index: { 'com.example:x': { path: 'streams/v1/x.json', ...fields } } });

  it.each([
    ['not JSON', '{"format": ', '$', 'not valid JSON'],
    ['an array', '[]', '$', 'expected an object'],
    ['the wrong format', '{"format": "products:1.0", "index": {}}', '$.format', 'index:1.0'],
    ['no index', '{"format": "index:1.0"}', '$.index', 'expected an object'],
    ['a bad top-level updated', '{"format": "index:1.0", "index": {}, "updated": "yesterday"}', '$.updated', 'RFC 2822'],
    ['an entry without path', entry({ path: undefined }), '$.index["com.example:x"].path', 'expected a string'],
    ['a non-string format', entry({ format: 1 }), '$.index["com.example:x"].format', 'expected a string'],
    ['products that are not a list', entry({ products: 'a' }), '$.index["com.example:x"].products', 'expected an array'],
    ['a non-string product', entry({ products: ['a', 2] }), '$.index["com.example:x"].products[1]', 'expected a string'],
    ['a bad entry updated', entry({ updated: '2025-07-24' }), '$.index["com.example:x"].updated', 'RFC 2822'],
  ])('rejects %s, naming file and JSON path', (_case, text, path, problem) => {
    // Act
    const error = thrownBy(MetadataError, () => parseIndex('streams/v1/index.json', text));

    // Assess
    expect(error.file).toBe('streams/v1/index.json');
    expect(error.jsonPath).toBe(path);
    expect(error.message).toContain(problem);
    expect(error.message).toContain(`streams/v1/index.json: ${path}`);
  });

  it('rejects an entry path that could escape the mirror', () => {
    // Act
    const error = thrownBy(UnsafePathError, () => parseIndex('index.json', entry({ path: '../../etc/passwd' })));

    // Assess
    expect(error.file).toBe('index.json');
    expect(error.jsonPath).toBe('$.index["com.example:x"].path');
  });
});

describe('Function: parseProducts', () => {
  it.each([
    ['simplestreams_ubuntu.json', 'com.ubuntu.maas:stable:v3:download', 4],
    ['simplestreams_bootloaders.json', 'com.ubuntu.maas:stable:1:bootloader-download', 5],
    ['simplestreams_centos.json', 'com.ubuntu.maas:stable:centos-bases-download', 2],
  ] as const)('parses the real capture %s', (name, contentId, productCount) => {
    // Act
    const doc = parseProducts(name, fixtureText(name));

    // Assess
    expect(doc.format).toBe('products:1.0');
    expect(doc.content_id).toBe(contentId);
    expect(doc.datatype).toBe('image-ids');
    expect(Object.keys(doc.products)).toHaveLength(productCount);
  });

  it('keeps unknown fields at every level', () => {
    // Act
    const doc = parseProducts(UBUNTU_FILE, fixtureText('simplestreams_ubuntu.json'));

    // Assess
    const product = doc.products[NOBLE_AMD64];
    expect(product?.release_codename).toBe('Noble Numbat');
    expect(product?.versions['20250709']?.items['boot-kernel']?.kpackage).toBe('linux-generic');
  });

  const mutated = (mutate: (doc: Record<string, any>) => void) => {
    const doc = ubuntuDocument() as Record<string, any>;
    mutate(doc);
    return JSON.stringify(doc);
  };

  it.each([
    ['the wrong format', (d: any) => (d.format = 'index:1.0'), '$.format'],
    ['no content_id', (d: any) => delete d.content_id, '$.content_id'],
    ['an unparseable updated', (d: any) => (d.updated = 'Thu, 24 Jul 2025'), '$.updated'],
    ['products that are a list', (d: any) => (d.products = []), '$.products'],
    ['a product without versions', (d: any) => delete d.products[NOBLE_AMD64].versions, `$.products["${NOBLE_AMD64}"].versions`],
    ['a product that is a string', (d: any) => (d.products[NOBLE_AMD64] = 'x'), `$.products["${NOBLE_AMD64}"]`],
    [
      'a version without items',
      (d: any) => (d.products[NOBLE_AMD64].versions['20250709'] = {}),
      `$.products["${NOBLE_AMD64}"].versions["20250709"].items`,
    ],
    [
      'an item that is null',
      (d: any) => (d.products[NOBLE_AMD64].versions['20250709'].items.squashfs = null),
      itemJsonPath(NOBLE_AMD64, '20250709', 'squashfs'),
    ],
    ['aliases that are not objects', (d: any) => (d._aliases = { arch: { amd64: 'x' } }), '$._aliases["arch"]["amd64"]'],
  ])('rejects %s, naming file and JSON path', (_case, mutate, path) => {
    // Prepare
    const text = mutated(mutate);

    // Act
    const error = thrownBy(MetadataError, () => parseProducts(UBUNTU_FILE, text));

    // Assess
    expect(error.file).toBe(UBUNTU_FILE);
    expect(error.jsonPath).toBe(path);
    expect(error.message.startsWith(`${UBUNTU_FILE}: ${path}: `)).toBe(true);
  });
});

describe('Function: flattenItems', () => {
  it('lists every item of the real captures with its inherited fields', () => {
    // Prepare
    const [ubuntu, bootloaders, centos] = loadFixtureProducts();

    // Act
    const ubuntuItems = flattenItems(UBUNTU_FILE, ubuntu!);
    const bootloaderItems = flattenItems('bootloaders.json', bootloaders!);
    const centosItems = flattenItems('centos.json', centos!);

    // Assess
    expect(ubuntuItems).toHaveLength(4 * 2 * 4);
    expect(bootloaderItems).toHaveLength(2 * 2 + 2 * 2 + 2 + 1 + 2);
    expect(centosItems.map((item) => item.fields.os)).toEqual(Array(CENTOS_ITEM_COUNT).fill('centos'));
    const squashfs = ubuntuItems.find(
      (item) => item.productName === NOBLE_AMD64 && item.versionName === '20250709' && item.itemName === 'squashfs',
    );
    expect(squashfs).toMatchObject({
      contentId: 'com.ubuntu.maas:stable:v3:download',
      path: 'noble/amd64/20250709/squashfs',
      ftype: 'squashfs',
    });
    expect(squashfs?.size).toBeGreaterThan(0);
    expect(squashfs?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(squashfs?.fields).toMatchObject({
      // top level
      content_id: 'com.ubuntu.maas:stable:v3:download',
      datatype: 'image-ids',
      format: 'products:1.0',
      // product
      arch: 'amd64',
      os: 'ubuntu',
      release: 'noble',
      subarch: 'ga-24.04',
      label: 'stable',
      version: '24.04',
      // item
      ftype: 'squashfs',
      path: 'noble/amd64/20250709/squashfs',
      // names
      product_name: NOBLE_AMD64,
      version_name: '20250709',
      item_name: 'squashfs',
    });
    expect(squashfs?.fields).not.toHaveProperty('products');
    expect(squashfs?.fields).not.toHaveProperty('versions');
    expect(squashfs?.fields).not.toHaveProperty('items');
  });

  it('lets each level override the one above: item over version over product over top', () => {
    // Prepare
    const doc = ubuntuDocument();
    doc.label = 'top';
    doc.probe = 'top';
    const product = doc.products[NOBLE_AMD64]!;
    product.label = 'product';
    product.probe = 'product';
    const version = product.versions['20250709']!;
    version.label = 'version';
    version.probe = 'version';
    version.pubname = 'version';
    version.items['squashfs']!.probe = 'item';

    // Act
    const items = flattenItems(UBUNTU_FILE, doc);

    // Assess
    const at = (versionName: string, itemName: string) =>
      items.find((i) => i.productName === NOBLE_AMD64 && i.versionName === versionName && i.itemName === itemName)!
        .fields;
    expect(at('20250709', 'squashfs')).toMatchObject({ label: 'version', probe: 'item', pubname: 'version' });
    expect(at('20250709', 'manifest')).toMatchObject({ label: 'version', probe: 'version', pubname: 'version' });
    expect(at('20250618', 'manifest')).toMatchObject({ label: 'product', probe: 'product' });
    expect(at('20250618', 'manifest')).not.toHaveProperty('pubname');
    const otherProduct = items.find((i) => i.productName === 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04')!;
    expect(otherProduct.fields).toMatchObject({ label: 'stable', probe: 'top' });
  });

  it('does not let an item be renamed by a field called item_name', () => {
    // Prepare
    const doc = ubuntuDocument();
    doc.products[NOBLE_AMD64]!.versions['20250709']!.items['squashfs']!.item_name = 'other';

    // Act
    const items = flattenItems(UBUNTU_FILE, doc);

    // Assess
    const squashfs = items.find((i) => i.path === 'noble/amd64/20250709/squashfs')!;
    expect(squashfs.itemName).toBe('squashfs');
    expect(squashfs.fields.item_name).toBe('squashfs');
  });

  it('expands _aliases at every level, the alias fields overriding the level that names them', () => {
    // Prepare: python-simplestreams' alias form, as the old cloud-images streams used it.
    const doc = ubuntuDocument();
    doc._aliases = {
      crsn: { noble: { release: 'noble', release_title: '24.04 LTS (aliased)', support_eol: '2029-05-31' } },
      maas_cloud: { prod: { label: 'stable-aliased', region: 'images' } },
    };
    doc.maas_cloud = 'prod';
    const product = doc.products[NOBLE_AMD64]!;
    product.crsn = 'noble';
    product.release_title = 'overridden by the alias';
    product.versions['20250709']!.items['squashfs']!.release_title = 'item wins';

    // Act
    const items = flattenItems(UBUNTU_FILE, doc);

    // Assess
    const squashfs = items.find((i) => i.path === 'noble/amd64/20250709/squashfs')!;
    const kernel = items.find((i) => i.productName === NOBLE_AMD64 && i.itemName === 'boot-kernel')!;
    expect(kernel.fields).toMatchObject({
      crsn: 'noble',
      release_title: '24.04 LTS (aliased)',
      support_eol: '2029-05-31',
      maas_cloud: 'prod',
      // The product's own label beats the top level's (aliased) one.
      label: 'stable',
      region: 'images',
    });
    expect(squashfs.fields.release_title).toBe('item wins');
    const jammy = items.find((i) => i.productName === 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04')!;
    expect(jammy.fields).toMatchObject({ release_title: '22.04 LTS', support_eol: '2027-04-21', region: 'images' });
  });

  it('rejects a field naming an alias that does not exist', () => {
    // Prepare
    const doc = ubuntuDocument();
    doc._aliases = { crsn: { noble: { release: 'noble' } } };
    doc.products[NOBLE_AMD64]!.crsn = 'jammy';

    // Act
    const error = thrownBy(MetadataError, () => flattenItems(UBUNTU_FILE, doc));

    // Assess
    expect(error.jsonPath).toBe(`$.products["${NOBLE_AMD64}"].crsn`);
  });

  it('accepts an item that declares only md5, or only sha512', () => {
    // Prepare
    const doc = ubuntuDocument();
    const items = doc.products[NOBLE_AMD64]!.versions['20250709']!.items;
    delete items['manifest']!.sha256;
    items['manifest']!.md5 = 'D41D8CD98F00B204E9800998ECF8427E';
    delete items['squashfs']!.sha256;
    items['squashfs']!.sha512 = 'ab'.repeat(64);

    // Act
    const flat = flattenItems(UBUNTU_FILE, doc);

    // Assess
    const manifest = flat.find((i) => i.path === 'noble/amd64/20250709/squashfs.manifest')!;
    expect(manifest.md5).toBe('D41D8CD98F00B204E9800998ECF8427E');
    expect(manifest.sha256).toBeUndefined();
    expect(flat.find((i) => i.path === 'noble/amd64/20250709/squashfs')!.sha512).toBe('ab'.repeat(64));
  });

  const squashfsPath = itemJsonPath(NOBLE_AMD64, '20250709', 'squashfs');

  it.each([
    ['no path', { path: undefined }, `${squashfsPath}.path`],
    ['a numeric path', { path: 7 }, `${squashfsPath}.path`],
    ['no size', { size: undefined }, `${squashfsPath}.size`],
    ['a string size', { size: '100' }, `${squashfsPath}.size`],
    ['a negative size', { size: -1 }, `${squashfsPath}.size`],
    ['a fractional size', { size: 1.5 }, `${squashfsPath}.size`],
    ['no digest at all', { sha256: undefined }, squashfsPath],
    ['a short sha256', { sha256: 'abc' }, `${squashfsPath}.sha256`],
    ['a sha256 that is not hex', { sha256: 'g'.repeat(64) }, `${squashfsPath}.sha256`],
    ['a sha512 of sha256 length', { sha512: 'a'.repeat(64) }, `${squashfsPath}.sha512`],
    ['a bad md5 beside a good sha256', { md5: 'x' }, `${squashfsPath}.md5`],
  ])('rejects an item with %s, naming file and JSON path', (_case, changes, path) => {
    // Prepare
    const doc = ubuntuDocument();
    const item = doc.products[NOBLE_AMD64]!.versions['20250709']!.items['squashfs']! as Record<string, unknown>;
    for (const [field, value] of Object.entries(changes)) {
      if (value === undefined) delete item[field];
      else item[field] = value;
    }

    // Act
    const error = thrownBy(MetadataError, () => flattenItems(UBUNTU_FILE, doc));

    // Assess
    expect(error.file).toBe(UBUNTU_FILE);
    expect(error.jsonPath).toBe(path);
    expect(error.message).toContain(`${UBUNTU_FILE}: ${path}: `);
  });

  it.each(['../../../etc/shadow', '/srv/x', 'noble//squashfs'])('rejects the unsafe item path %j', (path) => {
    // Prepare
    const doc = ubuntuDocument();
    doc.products[NOBLE_AMD64]!.versions['20250709']!.items['squashfs']!.path = path;

    // Act
    const error = thrownBy(UnsafePathError, () => flattenItems(UBUNTU_FILE, doc));

    // Assess
    expect(error.file).toBe(UBUNTU_FILE);
    expect(error.jsonPath).toBe(`${squashfsPath}.path`);
    expect(error.path).toBe(path);
  });
});

describe('Function: parseUpdated', () => {
  it.each([
    ['Thu, 24 Jul 2025 08:01:49 +0000', Date.UTC(2025, 6, 24, 8, 1, 49)],
    ['Thu, 24 Jul 2025 10:01:49 +0200', Date.UTC(2025, 6, 24, 8, 1, 49)],
    ['Wed, 23 Jul 2025 23:31:49 -0830', Date.UTC(2025, 6, 24, 8, 1, 49)],
    ['Thu, 24 Jul 2025 08:01:49 GMT', Date.UTC(2025, 6, 24, 8, 1, 49)],
    ['24 Jul 2025 08:01:49 UT', Date.UTC(2025, 6, 24, 8, 1, 49)],
    ['Thu, 4 Jul 2025 08:01 +0000', Date.UTC(2025, 6, 4, 8, 1, 0)],
    ['Sat, 29 Feb 2020 00:00:00 +0000', Date.UTC(2020, 1, 29)],
  ])('parses %j', (value, expected) => {
    // Act
    const epochMs = parseUpdated('index.json', '$.updated', value);

    // Assess
    expect(epochMs).toBe(expected);
  });

  it('orders the real captures: the ubuntu products file is newer than the index', () => {
    // Prepare
    const index = parseIndex('index.json', fixtureText('simplestreams_index.json'));
    const [ubuntu] = loadFixtureProducts();

    // Act
    const indexUpdated = parseUpdated('index.json', '$.updated', index.updated!);
    const ubuntuUpdated = parseUpdated('ubuntu.json', '$.updated', ubuntu!.updated!);

    // Assess
    expect(ubuntuUpdated - indexUpdated).toBe(59 * 60_000 + 54_000);
  });

  it.each([
    '2025-07-24T08:01:49Z',
    'Thu, 24 Jul 2025',
    'Thu, 24 Jly 2025 08:01:49 +0000',
    'Thu, 31 Jun 2025 08:01:49 +0000',
    'Thu, 24 Jul 2025 25:01:49 +0000',
    'Thu, 24 Jul 2025 08:61:49 +0000',
    'Thu, 24 Jul 2025 08:01:49 +00',
    '',
  ])('rejects %j with a MetadataError naming file and JSON path', (value) => {
    // Act
    const error = thrownBy(MetadataError, () => parseUpdated('index.json', '$.index["x"].updated', value));

    // Assess
    expect(error.file).toBe('index.json');
    expect(error.jsonPath).toBe('$.index["x"].updated');
    expect(error.message).toContain(JSON.stringify(value));
  });
});

describe('Function: formatUpdated', () => {
  it('writes the exact form of the real captures', () => {
    // Act
    const text = formatUpdated(new Date(Date.UTC(2025, 6, 24, 8, 1, 49)));

    // Assess
    expect(text).toBe('Thu, 24 Jul 2025 08:01:49 +0000');
  });

  it('zero-pads day, hours, minutes and seconds, in UTC whatever the offset', () => {
    // Act
    const text = formatUpdated(new Date('2024-03-01T01:02:03.999+05:00'));

    // Assess
    expect(text).toBe('Thu, 29 Feb 2024 20:02:03 +0000');
    expect(formatUpdated(new Date(Date.UTC(2026, 0, 4, 0, 0, 0)))).toBe('Sun, 04 Jan 2026 00:00:00 +0000');
  });

  it('round-trips through parseUpdated and never says GMT', () => {
    // Prepare
    const dates = Array.from({ length: 60 }, (_, n) => new Date(Date.UTC(2000 + n, n % 12, (n % 28) + 1, n % 24, n, n)));

    // Act
    const texts = dates.map(formatUpdated);

    // Assess
    texts.forEach((text, n) => {
      expect(text).toMatch(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
      expect(parseUpdated('x', '$', text)).toBe(dates[n]!.getTime());
    });
  });
});
