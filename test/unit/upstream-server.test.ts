import { createHash } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { flattenItems, parseIndex, parseProducts } from '../../functions/core/simplestreams.ts';
import { buildFixtureUpstream } from '../support/fixtures.ts';
import { generateSigningKey, type SigningKey } from '../support/signed-upstream.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

const UPDATED = 'Fri, 01 Aug 2025 10:00:00 +0000';
const UBUNTU_ID = 'com.ubuntu.maas:stable:v3:download';
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

let key: SigningKey;
beforeAll(async () => {
  key = await generateSigningKey();
});

describe('Function: serveTree', () => {
  let served: ServedTree | undefined;
  afterEach(async () => {
    await served?.close();
    served = undefined;
  });

  const files = () =>
    new Map<string, Uint8Array>([
      ['streams/v1/com.ubuntu.maas:stable:v3:download.json', new TextEncoder().encode('{"a":1}')],
      ['noble/amd64/20250709/squashfs', new Uint8Array([1, 2, 3, 4])],
    ]);

  it('serves files with a strong sha256 ETag and Last-Modified, decoding escaped paths', async () => {
    // Prepare
    served = await serveTree(files());

    // Act
    const response = await fetch(`${served.baseUrl}streams/v1/com.ubuntu.maas%3Astable%3Av3%3Adownload.json`);

    // Assess
    expect(served.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"a":1}');
    expect(response.headers.get('etag')).toBe(`"${sha256(new TextEncoder().encode('{"a":1}'))}"`);
    expect(response.headers.get('content-length')).toBe('7');
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(Date.parse(response.headers.get('last-modified')!)).not.toBeNaN();
    expect(served.requests).toEqual([
      { method: 'GET', path: 'streams/v1/com.ubuntu.maas:stable:v3:download.json', status: 200 },
    ]);
  });

  it('answers If-None-Match and If-Modified-Since with 304, and 200 once the file changes', async () => {
    // Prepare
    const tree = files();
    served = await serveTree(tree);
    const url = `${served.baseUrl}noble/amd64/20250709/squashfs`;
    const first = await fetch(url);
    await first.arrayBuffer();
    const etag = first.headers.get('etag')!;
    const lastModified = first.headers.get('last-modified')!;

    // Act
    const byEtag = await fetch(url, { headers: { 'If-None-Match': etag } });
    const byDate = await fetch(url, { headers: { 'If-Modified-Since': lastModified } });
    tree.set('noble/amd64/20250709/squashfs', new Uint8Array([9, 9]));
    const changedByEtag = await fetch(url, { headers: { 'If-None-Match': etag } });
    const changedByDate = await fetch(url, { headers: { 'If-Modified-Since': lastModified } });

    // Assess
    expect(byEtag.status).toBe(304);
    expect(byDate.status).toBe(304);
    expect(changedByEtag.status).toBe(200);
    expect(new Uint8Array(await changedByEtag.arrayBuffer())).toEqual(new Uint8Array([9, 9]));
    expect(changedByEtag.headers.get('etag')).not.toBe(etag);
    expect(Date.parse(changedByEtag.headers.get('last-modified')!)).toBeGreaterThan(Date.parse(lastModified));
    expect(changedByDate.status).toBe(200);
    await changedByDate.arrayBuffer();
    expect(served.requests.map((r) => r.status)).toEqual([200, 304, 304, 200, 200]);
  });

  it('answers HEAD with headers only, 404 for unknown paths and 405 for other methods', async () => {
    // Prepare
    const tree = files();
    served = await serveTree(tree);

    // Act
    const head = await fetch(`${served.baseUrl}noble/amd64/20250709/squashfs`, { method: 'HEAD' });
    const missing = await fetch(`${served.baseUrl}noble/amd64/20250709/boot-kernel`);
    tree.delete('noble/amd64/20250709/squashfs');
    const removed = await fetch(`${served.baseUrl}noble/amd64/20250709/squashfs`);
    const post = await fetch(`${served.baseUrl}noble/amd64/20250709/squashfs`, { method: 'POST' });

    // Assess
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('4');
    expect(await head.text()).toBe('');
    expect(missing.status).toBe(404);
    expect(removed.status).toBe(404);
    expect(post.status).toBe(405);
    await Promise.all([missing.text(), removed.text(), post.text()]);
    expect(served.requests.map((r) => `${r.method} ${r.status}`)).toEqual(['HEAD 200', 'GET 404', 'GET 404', 'POST 405']);
  });

  it('serves a whole synthetic upstream that a client can walk from the index', async () => {
    // Prepare
    const { files: tree } = await buildFixtureUpstream({ key, updated: UPDATED });
    served = await serveTree(tree);

    // Act
    const index = parseIndex('index.json', await (await fetch(`${served.baseUrl}streams/v1/index.json`)).text());
    const entry = index.index[UBUNTU_ID]!;
    const products = parseProducts(entry.path, await (await fetch(new URL(entry.path, served.baseUrl))).text());
    const item = flattenItems(entry.path, products)[0]!;
    const bytes = new Uint8Array(await (await fetch(new URL(item.path, served.baseUrl))).arrayBuffer());

    // Assess
    expect(sha256(bytes)).toBe(item.sha256);
    expect(served.requests.every((r) => r.status === 200)).toBe(true);
  });
});
