/**
 * Signed synthetic upstreams for tests and the bench. The synthesizer itself
 * is the demo's (functions/local/synthetic-upstream.ts), offered here so that
 * tests reach it through test/support; what only tests need lives here.
 * Serve a tree with serveTree (./upstream-server.ts).
 */
import { parseProducts, type ProductsDocument, type StreamIndex } from '../../functions/core/simplestreams.ts';
import { INDEX_PATH } from '../../functions/local/synthetic-upstream.ts';

export {
  INDEX_PATH,
  SIGNED_INDEX_PATH,
  clearsign,
  generateSigningKey,
  productsPath,
  serializeMetadata,
  signedProductsPath,
  synthesizeTree,
  syntheticContent,
  writeMetadata,
  type SigningKey,
  type SynthesizeOptions,
} from '../../functions/local/synthetic-upstream.ts';

const decoder = new TextDecoder();

/** The products documents of a tree (from its unsigned `.json` files), for a test to edit and pass to writeMetadata. */
export function productsIn(files: Map<string, Uint8Array>): ProductsDocument[] {
  const index = JSON.parse(decoder.decode(files.get(INDEX_PATH))) as StreamIndex;
  return Object.values(index.index).map((entry) =>
    parseProducts(entry.path, decoder.decode(files.get(entry.path) ?? new Uint8Array())),
  );
}
