/**
 * Child-process script: serves a validly signed index listing one huge
 * products `.sjson` whose signature is bad, reads it through the real
 * HttpUpstream and readUpstreamMetadata, and prints one JSON line:
 * `{ error, message, maxRssBytes }`. Run alone so its peak RSS is its own:
 *
 *   node test/support/hostile-metadata.ts <productsBytes|default> <bodyBytes> <foreign|forged> [lineBytes]
 *
 * `foreign`: signed by a key outside the keyring. `forged`: a real signature
 * by the keyring's key, over other text, so the key ID is right but the hash
 * is not, and the whole body is read. `lineBytes` (at least 4, default 1024):
 * the length of each padding line; short lines are what costs a line-by-line reader most.
 * The hostile bytes are generated while they are sent, never held whole.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { checkIndex, defaultMetadataLimits, readUpstreamMetadata } from '../../functions/core/metadata.ts';
import { loadKeyring } from '../../functions/core/pgp.ts';
import { formatUpdated } from '../../functions/core/simplestreams.ts';
import { clearsign, generateSigningKey } from './signed-upstream.ts';

const CONTENT_ID = 'com.example:hostile';
const PRODUCTS = `streams/v1/${CONTENT_ID}.sjson`;
const CHUNK = 1024 * 1024;

const [limitArg = 'default', bodyArg = String(250_000_000), variant = 'foreign', lineArg = '1024'] = process.argv.slice(2);
const bodyBytes = Number(bodyArg);
const lineBytes = Math.max(4, Number(lineArg));

const key = await generateSigningKey('hostile test upstream');
const keyring = await loadKeyring('hostile test keyring', key.publicKeyring);
const updated = formatUpdated(new Date());
const index = await clearsign(
  `${JSON.stringify({
    format: 'index:1.0',
    updated,
    index: { [CONTENT_ID]: { format: 'products:1.0', path: PRODUCTS, updated, products: [] } },
  })}\n`,
  key,
);
const signer = variant === 'forged' ? key : await generateSigningKey('not the upstream');
const signed = await clearsign('{"not": "the hostile body"}\n', signer);
const signatureBlock = signed.slice(signed.indexOf('-----BEGIN PGP SIGNATURE-----'));
const head = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{"format": "products:1.0", "content_id": "${CONTENT_ID}", "updated": "${updated}", "products": {}, "padding": [\n`;
const tail = `"end"]}\n${signatureBlock}`;
// One line of JSON padding, repeated to fill a chunk; the last chunk is cut short.
const line = `"${'x'.repeat(lineBytes - 4)}",\n`;
const chunk = Buffer.from(line.repeat(Math.ceil(CHUNK / line.length)).slice(0, CHUNK));

async function sendHostile(response: ServerResponse): Promise<void> {
  const total = Buffer.byteLength(head) + bodyBytes + Buffer.byteLength(tail);
  response.writeHead(200, { 'content-type': 'application/json', 'content-length': String(total) });
  response.write(head);
  for (let sent = 0; sent < bodyBytes && !response.destroyed; ) {
    const piece = Math.min(CHUNK, bodyBytes - sent);
    // The padding lines are whole at chunk boundaries only by luck; that does not matter to a signature check.
    const ok = response.write(piece === CHUNK ? chunk : chunk.subarray(0, piece));
    sent += piece;
    if (!ok) await drainedOrClosed(response);
  }
  response.end(tail);
}

function drainedOrClosed(response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      response.off('drain', done).off('close', done);
      resolve();
    };
    response.on('drain', done).on('close', done);
  });
}

const server = createServer((request, response) => {
  const path = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname.slice(1));
  if (path === 'streams/v1/index.sjson') response.end(index);
  else if (path === PRODUCTS) void sendHostile(response);
  else response.writeHead(404).end();
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const upstream = new HttpUpstream(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
const limits = limitArg === 'default' ? defaultMetadataLimits : { ...defaultMetadataLimits, productsBytes: Number(limitArg) };

let outcome: { error: string; message: string };
try {
  const fetched = await checkIndex(upstream, keyring, undefined, limits);
  if (!fetched.changed) throw new Error('304 to an unconditional GET');
  await readUpstreamMetadata(upstream, keyring, fetched, undefined, limits);
  outcome = { error: 'none', message: 'accepted' };
} catch (error) {
  outcome = { error: (error as Error).name, message: (error as Error).message.slice(0, 500) };
}
server.closeAllConnections();
server.close();
process.stdout.write(`${JSON.stringify({ ...outcome, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
