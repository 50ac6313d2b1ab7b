import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { closedPort, generateCertificate, startForwardProxy, startTlsFront, type ForwardProxy, type TlsFront } from '../support/forward-proxy.ts';
import { selectedPaths, useSignedFixtureUpstream } from '../support/mirror.ts';

/** Only the proxy resolves this name: a sync that reaches the upstream by it went through the proxy. */
const UPSTREAM_NAME = 'images.maas.test';

describe('CLI: skystreams sync behind a proxy', () => {
  const fixture = useSignedFixtureUpstream('cli-proxy');
  let proxy: ForwardProxy;
  let front: TlsFront;
  let caFile: string;

  beforeAll(async () => {
    const { work, upstream } = fixture();
    const certificate = await generateCertificate([UPSTREAM_NAME]);
    caFile = join(work, 'upstream-ca.pem');
    await writeFile(caFile, certificate.cert);
    front = await startTlsFront(upstream.baseUrl, certificate);
    proxy = await startForwardProxy({ hosts: { [UPSTREAM_NAME]: '127.0.0.1' } });
  });
  afterAll(async () => {
    await Promise.all([proxy?.close(), front?.close()]);
  });

  const sync = (dataDir: string, source: string, env: Record<string, string>) => {
    const { keyring } = fixture();
    return cli(['sync', '--data-dir', dataDir, '--source', source, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1'], env);
  };
  const itemPaths = () => selectedPaths(loadFixtureProducts(), 'amd64', 1);
  const reset = () => {
    proxy.connects.length = 0;
    proxy.forwarded.length = 0;
    fixture().upstream.requests.length = 0;
  };

  it('mirrors an HTTPS upstream through the CONNECT tunnel https_proxy names', async () => {
    reset();
    const { work, upstream } = fixture();
    const result = await sync(join(work, 'https'), `https://${UPSTREAM_NAME}:${front.port}/`, {
      https_proxy: proxy.url,
      // The upstream's self-signed certificate, trusted explicitly; verification stays on.
      NODE_EXTRA_CA_CERTS: caFile,
    });
    expect(result.stderr).toContain('"type":"published"');
    expect(result.code).toBe(0);
    expect(proxy.connects.length).toBeGreaterThan(0);
    expect(new Set(proxy.connects)).toEqual(new Set([`${UPSTREAM_NAME}:${front.port}`]));
    const served = new Set(upstream.requests.map((r) => r.path));
    for (const path of ['streams/v1/index.sjson', ...itemPaths()]) expect(served, path).toContain(path);
  });

  it('mirrors a plain-HTTP upstream through http_proxy, asking for each URL in full', async () => {
    reset();
    const { work, upstream } = fixture();
    const source = `http://${UPSTREAM_NAME}:${new URL(upstream.baseUrl).port}/`;
    const result = await sync(join(work, 'http'), source, { http_proxy: proxy.url });
    expect(result.stderr).toContain('"type":"published"');
    expect(result.code).toBe(0);
    for (const path of ['streams/v1/index.sjson', ...itemPaths()]) expect(proxy.forwarded, path).toContain(source + path);
    expect(proxy.connects).toEqual([]);
  });

  it('goes direct to an upstream no_proxy matches: the proxy sees nothing', async () => {
    reset();
    const { work, upstream } = fixture();
    const result = await sync(join(work, 'direct'), upstream.baseUrl, { http_proxy: proxy.url, https_proxy: proxy.url, no_proxy: '127.0.0.1' });
    expect(result.stderr).toContain('"type":"published"');
    expect(result.code).toBe(0);
    expect(proxy.forwarded).toEqual([]);
    expect(proxy.connects).toEqual([]);
    expect(upstream.requests.map((r) => r.path)).toContain('streams/v1/index.sjson');
  });

  it('fails (exit 1) naming the proxy when the proxy is down, credentials redacted', async () => {
    const { work, upstream } = fixture();
    const down = `http://mirror:pr0xy-s3cret@127.0.0.1:${await closedPort()}`;
    const result = await sync(join(work, 'down'), upstream.baseUrl, { http_proxy: down });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`proxy ${down.replace('mirror:pr0xy-s3cret@', '***@')} could not be reached`);
    expect(result.stderr + result.stdout).not.toContain('pr0xy-s3cret');
  });
});
