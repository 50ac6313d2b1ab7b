/**
 * What a channel serves, one row per product, with the ids the operator's
 * commands take (`pin`, `unpin`, `remove-upload`, `diff`): the product id and
 * its versions, newest first, and whether each is pinned or was uploaded.
 */
import { listPins } from '../core/pins.ts';
import type { Catalog, ObjectStore } from '../core/ports.ts';
import { listUploadRecords } from '../core/uploads.ts';
import { catalogSummary } from './reports.ts';

export interface ImageVersionRow {
  version: string;
  bytes: number;
  items: number;
  pinned: boolean;
}

export interface ImageRow {
  product: string;
  contentId: string;
  os?: string;
  release?: string;
  arch?: string;
  subarch?: string;
  label?: string;
  /** Newest first. */
  versions: ImageVersionRow[];
  /** Published from `skystreams upload` (withdrawn with `remove-upload`), not from a source. */
  uploaded: boolean;
}

export interface ImagesReport {
  generation: number | null;
  images: ImageRow[];
}

export async function imagesReport(catalog: Catalog, objects: ObjectStore): Promise<ImagesReport> {
  const [summary, pins, uploads] = await Promise.all([catalogSummary(catalog), listPins(catalog), listUploadRecords(objects)]);
  const pinned = new Set(pins.map((pin) => `${pin.product}\u0000${pin.version}`));
  const uploadedProducts = new Set(uploads.map((record) => record.product));
  const images = summary.images.map(({ product, contentId, os, release, arch, subarch, label, versions }) => ({
    product,
    contentId,
    ...(os !== undefined && { os }),
    ...(release !== undefined && { release }),
    ...(arch !== undefined && { arch }),
    ...(subarch !== undefined && { subarch }),
    ...(label !== undefined && { label }),
    versions: versions.map((version) => ({
      version: version.version,
      bytes: version.items.reduce((total, item) => total + item.size, 0),
      items: version.items.length,
      pinned: pinned.has(`${product}\u0000${version.version}`),
    })),
    uploaded: uploadedProducts.has(product),
  }));
  return { generation: summary.generation, images };
}
