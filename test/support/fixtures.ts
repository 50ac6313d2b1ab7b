/**
 * Real captures of images.maas.io metadata (/work/shared/fixtures/maas-stream),
 * and a signed synthetic upstream built from them.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseProducts, type ProductsDocument } from '../../functions/core/simplestreams.ts';

const FIXTURE_DIRECTORY = fileURLToPath(new URL('../../../shared/fixtures/maas-stream/', import.meta.url));

export const FIXTURE_PRODUCT_FILES = [
  'simplestreams_ubuntu.json',
  'simplestreams_bootloaders.json',
  'simplestreams_centos.json',
] as const;

export type FixtureFile = (typeof FIXTURE_PRODUCT_FILES)[number] | 'simplestreams_index.json';

/** The raw text of one capture. */
export function fixtureText(name: FixtureFile): string {
  return readFileSync(`${FIXTURE_DIRECTORY}${name}`, 'utf8');
}

/** The three captured products documents (ubuntu, bootloaders, centos), parsed; fresh copies on every call. */
export function loadFixtureProducts(): ProductsDocument[] {
  return FIXTURE_PRODUCT_FILES.map((name) => parseProducts(name, fixtureText(name)));
}
