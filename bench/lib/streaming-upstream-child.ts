/**
 * Child-process entry of the bench upstream (see streaming-upstream.ts): the
 * tests' upstream server (test/support/upstream-server.ts) serving a signed
 * simplestreams tree whose single item is generated while it streams. Run
 * apart from the syncing process so its memory and CPU are not counted
 * against the sync being measured.
 */
import { formatUpdated, type ProductsDocument } from '../../functions/core/simplestreams.ts';
import { generateSigningKey, writeMetadata } from '../../test/support/signed-upstream.ts';
import { serveTree, type ServedFile } from '../../test/support/upstream-server.ts';
import { generatedStream, sha256OfGenerated } from './generated-bytes.ts';
import type { ChildMessage, ParentMessage, UpstreamConfig } from './streaming-upstream.ts';

const ITEM_PATH = 'noble/amd64/20250709/squashfs';

function productsFor(size: number, sha256: string): ProductsDocument {
  return {
    content_id: 'com.ubuntu.maas:stable:v3:download',
    datatype: 'image-ids',
    format: 'products:1.0',
    products: {
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04': {
        arch: 'amd64',
        label: 'stable',
        os: 'ubuntu',
        release: 'noble',
        subarch: 'ga-24.04',
        version: '24.04',
        versions: { '20250709': { items: { squashfs: { ftype: 'squashfs', path: ITEM_PATH, size, sha256 } } } },
      },
    },
  };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.BENCH_UPSTREAM_CONFIG ?? '{}') as UpstreamConfig;
  const send = (message: ChildMessage) => process.send?.(message);
  const sha256 = sha256OfGenerated(config.itemBytes, config.seed);
  const key = await generateSigningKey('skystreams bench upstream');
  const products = [productsFor(config.itemBytes, sha256)];
  const metadata = new Map<string, Uint8Array>();
  let updatedAt = Date.parse('2025-07-25T08:00:00Z');
  await writeMetadata(metadata, products, { key, updated: formatUpdated(new Date(updatedAt)) });
  const files = new Map<string, ServedFile>(metadata);
  files.set(ITEM_PATH, { size: config.itemBytes, sha256, open: () => generatedStream(config.itemBytes, config.seed) });
  const upstream = await serveTree(files);

  process.on('message', (message: ParentMessage) => {
    void (async () => {
      if (message.type === 'requests') {
        send({ type: 'requests', requests: upstream.requests.map(({ path, status }) => ({ path, status: status ?? 0 })) });
      }
      if (message.type === 'touch-metadata') {
        // Re-signed metadata with a later `updated`; the item is unchanged.
        updatedAt += 60_000;
        await writeMetadata(metadata, products, { key, updated: formatUpdated(new Date(updatedAt)) });
        for (const [path, bytes] of metadata) files.set(path, bytes);
        send({ type: 'metadata-touched' });
      }
      if (message.type === 'exit') {
        await upstream.close();
        process.exit(0);
      }
    })();
  });
  send({
    type: 'ready',
    baseUrl: upstream.baseUrl,
    itemPath: ITEM_PATH,
    sha256,
    publicKeyring: Buffer.from(key.publicKeyring).toString('base64'),
  });
}

void main();
