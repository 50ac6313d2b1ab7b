/**
 * Several sources merged into one stream (functions/core/sources.ts): who
 * wins a product id or a path, and that joined documents of one content id
 * give every item exactly the fields it had in its own source.
 */
import { describe, expect, it } from 'vitest';
import { MetadataError } from '../../functions/core/errors.ts';
import { mergeSources, type SelectedProducts } from '../../functions/core/sources.ts';
import { flattenItems, type ProductsDocument } from '../../functions/core/simplestreams.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { maasProductsProblems } from '../support/maas-models.ts';

const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);

function doc(contentId: string, products: Record<string, { path: string; sha256?: string; label?: string }>, top: Record<string, unknown> = {}): ProductsDocument {
  return {
    format: 'products:1.0',
    content_id: contentId,
    ...top,
    products: Object.fromEntries(
      Object.entries(products).map(([name, { path, sha256 = SHA_A, label }]) => [
        name,
        { ...(label && { label }), versions: { '20250101': { items: { root: { path, size: 10, sha256, ftype: 'root-tgz' } } } } },
      ]),
    ),
  } as ProductsDocument;
}

function source(name: string, priority: number, ...docs: ProductsDocument[]): SelectedProducts {
  return { source: name, priority, products: docs.map((d) => ({ file: `streams/v1/${d.content_id}.json`, doc: d })) };
}

/** Every item's inherited fields, by path: what a client sees of it. */
function itemFields(docs: readonly ProductsDocument[]): Map<string, Record<string, unknown>> {
  const fields = new Map<string, Record<string, unknown>>();
  for (const d of docs) for (const item of flattenItems('test', d)) fields.set(`${item.productName} ${item.path}`, item.fields);
  return fields;
}

describe('mergeSources', () => {
  it('keeps the product of the higher-priority source and reports the one that gave way', () => {
    const high = source('site', 10, doc('site:images', { 'p:one': { path: 'site/one.tgz' }, 'p:shared': { path: 'site/shared.tgz' } }));
    const low = source('vendor', 1, doc('vendor:images', { 'p:shared': { path: 'vendor/shared.tgz' }, 'p:two': { path: 'vendor/two.tgz' } }));
    // Listed low first: priority, not order, decides.
    const merged = mergeSources([low, high]);
    const published = merged.products.map((p) => p.doc);
    expect(published.flatMap((d) => Object.keys(d.products)).sort()).toEqual(['p:one', 'p:shared', 'p:two']);
    expect(merged.sourceOfPath.get('site/shared.tgz')).toBe('site');
    expect(merged.sourceOfPath.has('vendor/shared.tgz')).toBe(false);
    expect(merged.sourceOfPath.get('vendor/two.tgz')).toBe('vendor');
    expect(merged.conflicts).toEqual([
      { product: 'p:shared', kept: { source: 'site', product: 'p:shared' }, dropped: { source: 'vendor', product: 'p:shared' }, reason: 'product' },
    ]);
  });

  it('on equal priority, the source listed first wins', () => {
    const first = source('first', 0, doc('a:images', { 'p:x': { path: 'first/x.tgz' } }));
    const second = source('second', 0, doc('b:images', { 'p:x': { path: 'second/x.tgz' } }));
    const merged = mergeSources([first, second]);
    expect([...merged.sourceOfPath.entries()]).toEqual([['first/x.tgz', 'first']]);
    expect(merged.conflicts.map((c) => [c.kept.source, c.dropped.source])).toEqual([['first', 'second']]);
  });

  it('drops a lower product that lists a kept path with other bytes, but shares a path with the same bytes', () => {
    const high = source('maas', 5, doc('maas:boot', { 'p:boot': { path: 'bootloaders/grub.tgz' }, 'p:same': { path: 'common/shim.tgz' } }));
    const low = source('mirror', 1, doc('mirror:boot', { 'p:other': { path: 'bootloaders/grub.tgz', sha256: SHA_B }, 'p:twin': { path: 'common/shim.tgz' } }));
    const merged = mergeSources([high, low]);
    expect(merged.conflicts).toEqual([
      {
        product: 'p:other',
        kept: { source: 'maas', product: 'p:boot' },
        dropped: { source: 'mirror', product: 'p:other' },
        reason: 'path',
        path: 'bootloaders/grub.tgz',
      },
    ]);
    // Same bytes at the same path: both products are published, the file is fetched once, from the source that listed it first.
    const names = merged.products.flatMap((p) => Object.keys(p.doc.products)).sort();
    expect(names).toEqual(['p:boot', 'p:same', 'p:twin']);
    expect(merged.sourceOfPath.get('common/shim.tgz')).toBe('maas');
  });

  it('drops a lower product that MAAS would know by the same os/release arch/subarch as a kept one, under another product id', () => {
    const image = { os: 'centos', release: 'centos9', arch: 'amd64', subarch: 'generic' };
    const uploads = source('uploads', Number.MAX_SAFE_INTEGER, doc('site:custom', { 'site:centos9': { path: 'custom/c9.tgz' } }, image));
    const vendor = source('vendor', 5, doc('vendor:images', { 'vendor:centos9': { path: 'vendor/c9.tgz' }, 'vendor:centos8': { path: 'vendor/c8.tgz' } }, image));
    const merged = mergeSources([vendor, uploads]);
    expect(merged.products.flatMap((p) => Object.keys(p.doc.products)).sort()).toEqual(['site:centos9']);
    expect(merged.conflicts).toEqual([
      { product: 'vendor:centos8', kept: { source: 'uploads', product: 'site:centos9' }, dropped: { source: 'vendor', product: 'vendor:centos8' }, reason: 'name', image: 'centos/centos9 amd64/generic' },
      { product: 'vendor:centos9', kept: { source: 'uploads', product: 'site:centos9' }, dropped: { source: 'vendor', product: 'vendor:centos9' }, reason: 'name', image: 'centos/centos9 amd64/generic' },
    ]);
    // Within one source, naming is that source's business; without all four fields (bootloaders) there is no such name.
    const alone = mergeSources([vendor]);
    expect(alone.conflicts).toEqual([]);
    const bootloaders = mergeSources([source('a', 1, doc('a:boot', { 'a:grub': { path: 'a/grub' } }, { os: 'grub-efi', arch: 'amd64' })), source('b', 0, doc('b:boot', { 'b:grub': { path: 'b/grub' } }, { os: 'grub-efi', arch: 'amd64' }))]);
    expect(bootloaders.conflicts).toEqual([]);
  });

  it('joins documents of one content id so that every item inherits exactly what it did in its own source', () => {
    const a = doc('shared:images', { 'p:a': { path: 'a.tgz' } }, { datatype: 'image-downloads', label: 'stable', os: 'ubuntu' });
    const b = doc('shared:images', { 'p:b': { path: 'b.tgz', label: 'candidate' } }, { datatype: 'image-downloads', os: 'centos', arch: 'amd64' });
    const before = itemFields([a, b]);
    const merged = mergeSources([source('one', 2, a), source('two', 1, b)]);
    expect(merged.products).toHaveLength(1);
    const [joined] = merged.products;
    // Only what both agree on stays at the top; the rest moved down into the products that had it.
    expect(Object.keys(joined!.doc).filter((key) => key !== 'products').sort()).toEqual(['content_id', 'datatype', 'format']);
    expect(itemFields([joined!.doc])).toEqual(before);
  });

  it('publishes two content ids whose sources used the same file name at separate paths', () => {
    const a = { source: 'one', priority: 1, products: [{ file: 'streams/v1/images.sjson', doc: doc('one:images', { 'p:a': { path: 'a.tgz' } }) }] };
    const b = { source: 'two', priority: 0, products: [{ file: 'streams/v1/images.sjson', doc: doc('two:images', { 'p:b': { path: 'b.tgz' } }) }] };
    const merged = mergeSources([a, b]);
    expect(merged.products.map((p) => [p.doc.content_id, p.base])).toEqual([
      ['one:images', 'streams/v1/images'],
      ['two:images', 'streams/v1/two:images'],
    ]);
  });

  it('publishes a products file whose source kept it outside streams/v1/, or at the index\'s name, where the mirror serves metadata', () => {
    const at = (file: string, d: ProductsDocument): SelectedProducts => ({ source: d.content_id, priority: 0, products: [{ file, doc: d }] });
    const merged = mergeSources([
      at('v1/products.sjson', doc('elsewhere', { 'p:a': { path: 'a.tgz' } })),
      at('streams/v1/index.sjson', doc('index', { 'p:b': { path: 'b.tgz' } })),
      at('streams/v1/odd.sjson', doc('odd/../name', { 'p:c': { path: 'c.tgz' } })),
      at('streams/v1/odd.sjson', doc('odd_.._name', { 'p:d': { path: 'd.tgz' } })),
      at('streams/v1/odd.sjson', doc('..', { 'p:e': { path: 'e.tgz' } })),
    ]);
    expect(merged.products.map((p) => [p.doc.content_id, p.base])).toEqual([
      ['elsewhere', 'streams/v1/elsewhere'],
      ['index', 'streams/v1/index_'],
      ['odd/../name', 'streams/v1/odd'],
      ['odd_.._name', 'streams/v1/odd_.._name'],
      ['..', 'streams/v1/_'],
    ]);
  });

  it('refuses to join documents of one content id whose _aliases differ, naming the file', () => {
    const a = { ...doc('shared:images', { 'p:a': { path: 'a.tgz' } }), _aliases: { label: { s: { label: 'stable' } } } };
    const b = doc('shared:images', { 'p:b': { path: 'b.tgz' } });
    const merge = () => mergeSources([source('one', 1, a), source('two', 0, b)]);
    expect(merge).toThrow(MetadataError);
    expect(merge).toThrow(/streams\/v1\/shared:images\.json: \$\._aliases/);
  });

  it('merges the real captures from two sources into documents MAAS accepts', () => {
    const [ubuntu, bootloaders, centos] = loadFixtureProducts();
    const merged = mergeSources([source('maas', 10, ubuntu!, bootloaders!), source('centos', 0, centos!, ubuntu!)]);
    expect(merged.products.map((p) => p.doc.content_id).sort()).toEqual([centos!.content_id, bootloaders!.content_id, ubuntu!.content_id].sort());
    // The second source's copy of every Ubuntu product gave way.
    expect(merged.conflicts.map((c) => c.product).sort()).toEqual(Object.keys(ubuntu!.products).sort());
    for (const { base, doc: published } of merged.products) expect(maasProductsProblems(base, published)).toEqual([]);
  });
});
