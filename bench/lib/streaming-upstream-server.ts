/**
 * Child-process entry of the bench upstream (see streaming-upstream.ts): a
 * signed simplestreams tree whose single item is generated while it streams.
 * Run apart from the syncing process so its memory and CPU are not counted
 * against the sync being measured.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatUpdated, type ProductsDocument } from '../../functions/core/simplestreams.ts';
import { generateSigningKey, writeMetadata, type SigningKey } from '../../functions/local/synthetic-upstream.ts';
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
  const key: SigningKey = await generateSigningKey('skystreams bench upstream');
  const products = [productsFor(config.itemBytes, sha256)];
  const metadata = new Map<string, Uint8Array>();
  let updatedAt = Date.parse('2025-07-25T08:00:00Z');
  await writeMetadata(metadata, products, { key, updated: formatUpdated(new Date(updatedAt)) });
  const requests: { path: string; status: number }[] = [];

  const server = createServer((request, response) => {
    const path = decodeURIComponent((request.url ?? '/').split('?')[0]!.replace(/^\/+/, ''));
    requests.push({ path, status: answer(request, response, path, metadata, config) });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  process.on('message', (message: ParentMessage) => {
    void (async () => {
      if (message.type === 'requests') send({ type: 'requests', requests: [...requests] });
      if (message.type === 'touch-metadata') {
        // Re-signed metadata with a later `updated`; the item is unchanged.
        updatedAt += 60_000;
        await writeMetadata(metadata, products, { key, updated: formatUpdated(new Date(updatedAt)) });
        send({ type: 'metadata-touched' });
      }
      if (message.type === 'exit') {
        server.closeAllConnections();
        server.close(() => process.exit(0));
      }
    })();
  });
  send({
    type: 'ready',
    baseUrl: `http://127.0.0.1:${port}/`,
    itemPath: ITEM_PATH,
    sha256,
    publicKeyring: Buffer.from(key.publicKeyring).toString('base64'),
  });
}

/** Writes the response; returns its status. */
function answer(
  request: IncomingMessage,
  response: ServerResponse,
  path: string,
  metadata: Map<string, Uint8Array>,
  config: UpstreamConfig,
): number {
  const bytes = metadata.get(path);
  if (bytes) {
    const etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
    response.setHeader('ETag', etag);
    if (request.headers['if-none-match'] === etag) {
      response.writeHead(304).end();
      return 304;
    }
    response.writeHead(200, { 'Content-Length': bytes.length }).end(bytes);
    return 200;
  }
  if (path === ITEM_PATH) {
    response.writeHead(200, { 'Content-Length': config.itemBytes, 'Content-Type': 'application/octet-stream' });
    generatedStream(config.itemBytes, config.seed).pipe(response);
    return 200;
  }
  response.writeHead(404).end();
  return 404;
}

void main();
