/**
 * What one publication changed for MAAS: the product versions it added and
 * those it no longer lists, compared with the generation the channel served
 * before. MAAS imports the newest version of each product, so an added
 * version is what a region controller will download at its next import.
 */
import type { Catalog } from './ports.ts';

export interface ProductVersion {
  product: string;
  version: string;
}

export interface PublicationChanges {
  added: ProductVersion[];
  removed: ProductVersion[];
}

async function versionsOf(catalog: Pick<Catalog, 'listEntries'>, generation: number | undefined): Promise<Map<string, ProductVersion>> {
  const versions = new Map<string, ProductVersion>();
  if (generation === undefined) return versions;
  for await (const { product, version } of catalog.listEntries(generation)) versions.set(`${product}\u0000${version}`, { product, version });
  return versions;
}

function byName(a: ProductVersion, b: ProductVersion): number {
  return a.product < b.product ? -1 : a.product > b.product ? 1 : a.version < b.version ? -1 : a.version > b.version ? 1 : 0;
}

/** The versions `generation` lists that `previous` did not (added), and the other way round (removed). */
export async function publicationChanges(catalog: Pick<Catalog, 'listEntries'>, previous: number | undefined, generation: number): Promise<PublicationChanges> {
  const [before, after] = await Promise.all([versionsOf(catalog, previous), versionsOf(catalog, generation)]);
  return {
    added: [...after].filter(([key]) => !before.has(key)).map(([, version]) => version).sort(byName),
    removed: [...before].filter(([key]) => !after.has(key)).map(([, version]) => version).sort(byName),
  };
}
