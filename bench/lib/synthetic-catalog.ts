/** Large products documents built in memory, for the planning and signature benchmarks. */
import type { ProductsDocument } from '../../functions/core/simplestreams.ts';
import { serializeMetadata } from '../../test/support/signed-upstream.ts';

const ARCHES = ['amd64', 'arm64', 'ppc64el', 's390x'] as const;
const FTYPES = ['boot-kernel', 'boot-initrd', 'squashfs', 'squashfs.manifest'] as const;

export interface CatalogShape {
  products: number;
  versionsPerProduct: number;
  itemsPerVersion: number;
}

/** A MAAS-shaped document with products × versions × items items, each with its own path. */
export function syntheticProducts(shape: CatalogShape): ProductsDocument {
  const products: ProductsDocument['products'] = {};
  let serial = 0;
  for (let p = 0; p < shape.products; p++) {
    const arch = ARCHES[p % ARCHES.length]!;
    const release = `release${Math.floor(p / ARCHES.length)}`;
    const versions: ProductsDocument['products'][string]['versions'] = {};
    for (let v = 0; v < shape.versionsPerProduct; v++) {
      const version = `2025${String(v + 1).padStart(4, '0')}`;
      const items: ProductsDocument['products'][string]['versions'][string]['items'] = {};
      for (let i = 0; i < shape.itemsPerVersion; i++) {
        const ftype = FTYPES[i % FTYPES.length]!;
        items[`${ftype}-${i}`] = {
          ftype,
          path: `${release}/${arch}/${version}/ga/${ftype}-${i}`,
          size: 1_000_000 + (serial % 997) * 1_000,
          sha256: (serial++).toString(16).padStart(64, '0'),
        };
      }
      versions[version] = { items };
    }
    products[`com.ubuntu.maas.stable:v3:boot:${release}:${arch}:ga`] = {
      arch,
      label: 'stable',
      os: 'ubuntu',
      release,
      subarch: 'ga',
      version: release,
      versions,
    };
  }
  return { content_id: 'com.ubuntu.maas:stable:v3:download', datatype: 'image-ids', format: 'products:1.0', products };
}

/** A serialized products document of about `bytes` bytes (never less). */
export function productsTextOfSize(bytes: number): string {
  const perItem = serializeMetadata(syntheticProducts({ products: 10, versionsPerProduct: 10, itemsPerVersion: 10 })).length / 1000;
  let items = Math.ceil(bytes / perItem);
  for (;;) {
    const text = serializeMetadata(syntheticProducts({ products: Math.ceil(items / 100), versionsPerProduct: 10, itemsPerVersion: 10 }));
    if (text.length >= bytes) return text;
    items = Math.ceil(items * 1.05);
  }
}
