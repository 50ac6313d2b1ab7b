/**
 * Bounds on the metadata one run reads. Apart from metadata.ts so that the
 * settings (and every function that reads them) can name the defaults
 * without loading the OpenPGP code that verifies metadata.
 */

/** Bounds on what one run reads; exceeding one is an InputTooLargeError naming the file. */
export interface MetadataLimits {
  /** Bytes of the index, signed or not. @default 1 MiB */
  readonly indexBytes: number;
  /**
   * Bytes of one products file or its `.json` twin: images.maas.io's largest
   * is a few MiB; the bound keeps a forged file's signature check within 512 MB. @default 32 MiB
   */
  readonly productsBytes: number;
  /** Bytes of all metadata files one run reads. @default 512 MiB */
  readonly runBytes: number;
  /** Nesting of objects and arrays in one JSON document (MAAS products nest 7 deep). @default 32 */
  readonly jsonDepth: number;
}

const MiB = 1024 * 1024;

export const defaultMetadataLimits: MetadataLimits = Object.freeze({
  indexBytes: 1 * MiB,
  productsBytes: 32 * MiB,
  runBytes: 512 * MiB,
  jsonDepth: 32,
});
