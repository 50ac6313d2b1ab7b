import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpUpstream } from '../../functions/adapters/upstream/http-upstream.ts';
import { proxyFor } from '../../functions/adapters/upstream/proxy.ts';
import { ConfigError, UpstreamError } from '../../functions/core/errors.ts';
import type { ByteStream } from '../../functions/core/ports.ts';
import { closedPort, generateCertificate, startForwardProxy, startTlsFront, type ForwardProxy, type TestCertificate, type TlsFront } from '../support/forward-proxy.ts';
import { serveTree, type ServedTree } from '../support/upstream-server.ts';

const INDEX = 'streams/v1/index.json';
const ITEM = 'server/releases/noble/release-20260101/ubuntu-24.04-server-cloudimg-amd64.img';
const ITEM_BYTES = Buffer.alloc(3 * 1024 * 1024 + 17, 0x5a).map((_, i) => i % 251);
/** Only the proxies know this name: a request that reaches the upstream by it went through one. */
const UPSTREAM_NAME = 'images.maas.test';
const PROXY_USER = { username: 'mirror', password: 'pr0xy-s3cret' };

async function bytesOf(body: ByteStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function failureOf(attempt: Promise<unknown>): Promise<Error> {
  try {
    await attempt;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

/** Metadata, a whole item and a byte range of it: every way the engine reads an upstream. */
async function readAll(upstream: HttpUpstream): Promise<void> {
  const index = await upstream.fetchFile(INDEX);
  expect(index.notModified).toBe(false);
  expect(JSON.parse(Buffer.from(index.notModified ? [] : index.bytes).toString())).toEqual({ format: 'index:1.0' });
  const { body, size } = await upstream.openStream(ITEM);
  expect(size).toBe(ITEM_BYTES.byteLength);
  expect((await bytesOf(body)).equals(ITEM_BYTES)).toBe(true);
  const range = await upstream.openRange(ITEM, { start: 1000, end: 1999 });
  expect((await bytesOf(range.body)).equals(ITEM_BYTES.subarray(1000, 2000))).toBe(true);
}

describe('Function: proxyFor', () => {
  const env = { https_proxy: 'http://secure-proxy:3128', http_proxy: 'http://plain-proxy:8080' };

  it('sends https URLs to https_proxy and http URLs to http_proxy', () => {
    expect(proxyFor('https://images.maas.io/streams/v1/index.sjson', env)).toMatchObject({ hostname: 'secure-proxy', port: 3128, shown: 'http://secure-proxy:3128' });
    expect(proxyFor('http://images.maas.io/streams/v1/index.sjson', env)).toMatchObject({ hostname: 'plain-proxy', port: 8080 });
    expect(proxyFor('https://images.maas.io/', { http_proxy: env.http_proxy })).toBeUndefined();
    expect(proxyFor('http://images.maas.io/', {})).toBeUndefined();
  });

  it('takes the lower-case variable over the upper-case one, and the upper-case one when the lower is unset or empty', () => {
    expect(proxyFor('https://a.example/', { https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:2' })?.hostname).toBe('lower');
    expect(proxyFor('https://a.example/', { HTTPS_PROXY: 'http://upper:2' })?.hostname).toBe('upper');
    expect(proxyFor('https://a.example/', { https_proxy: '', HTTPS_PROXY: 'http://upper:2' })?.hostname).toBe('upper');
    expect(proxyFor('http://a.example/', { HTTP_PROXY: 'http://upper:2' })?.hostname).toBe('upper');
    expect(proxyFor('https://a.example/', { ...env, no_proxy: 'b.example', NO_PROXY: 'a.example' })).toBeDefined();
    expect(proxyFor('https://a.example/', { ...env, NO_PROXY: 'a.example' })).toBeUndefined();
  });

  it.each([
    ['*', 'https://anything.example/', true],
    ['images.maas.io', 'https://images.maas.io/', true],
    ['maas.io', 'https://images.maas.io/', true],
    ['.maas.io', 'https://images.maas.io/', true],
    ['.maas.io', 'https://maas.io/', true],
    ['maas.io', 'https://notmaas.io/', false],
    ['other.example, maas.io', 'https://images.maas.io/', true],
    ['IMAGES.MAAS.IO', 'https://images.maas.io./', true],
    ['images.maas.io:8443', 'https://images.maas.io:8443/', true],
    ['images.maas.io:8443', 'https://images.maas.io/', false],
    ['images.maas.io:443', 'https://images.maas.io/', true],
    ['10.1.2.3', 'http://10.1.2.3/', true],
    ['10.1.2.3', 'http://10.1.2.4/', false],
    ['10.0.0.0/8', 'http://10.200.0.1:8080/', true],
    ['10.0.0.0/8', 'http://11.0.0.1/', false],
    ['::1', 'http://[::1]:8080/', true],
    ['[::1]:8080', 'http://[::1]:8080/', true],
    ['[::1]:8080', 'http://[::1]:9090/', false],
    ['fd00::/8', 'http://[fd12::5]/', true],
  ])('no_proxy=%j for %s goes direct: %s', (noProxy, url, direct) => {
    expect(proxyFor(url, { ...env, no_proxy: noProxy }) === undefined).toBe(direct);
  });

  it('reads a proxy without a scheme as http://, its credentials as Basic, and shows them redacted', () => {
    const proxy = proxyFor('https://images.maas.io/', { https_proxy: 'user:p%40ss@proxy.corp:3128' });
    expect(proxy).toEqual({
      shown: 'http://***@proxy.corp:3128',
      hostname: 'proxy.corp',
      port: 3128,
      authorization: `Basic ${Buffer.from('user:p@ss').toString('base64')}`,
    });
  });

  it('refuses a proxy it cannot use with ConfigError, naming the variable and not the password', () => {
    const attempt = () => proxyFor('https://images.maas.io/', { https_proxy: 'socks5://user:secret@proxy:1080' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/https_proxy "socks5:\/\/\*\*\*@proxy:1080": only http:\/\/ proxies are supported/);
    expect(attempt).not.toThrow(/secret/);
  });
});

describe('Class: HttpUpstream through a proxy', () => {
  let upstream: ServedTree;
  let certificate: TestCertificate;
  let front: TlsFront;
  let open: ForwardProxy;
  let guarded: ForwardProxy;
  let httpsBase: string;
  let httpBase: string;

  beforeAll(async () => {
    upstream = await serveTree(new Map<string, Uint8Array>([[INDEX, Buffer.from('{"format":"index:1.0"}')], [ITEM, ITEM_BYTES]]));
    certificate = await generateCertificate([UPSTREAM_NAME]);
    front = await startTlsFront(upstream.baseUrl, certificate);
    const hosts = { [UPSTREAM_NAME]: '127.0.0.1', 'other.maas.test': '127.0.0.1' };
    open = await startForwardProxy({ hosts });
    guarded = await startForwardProxy({ hosts, credentials: PROXY_USER });
    httpsBase = `https://${UPSTREAM_NAME}:${front.port}/`;
    httpBase = `http://${UPSTREAM_NAME}:${new URL(upstream.baseUrl).port}/`;
  });
  afterAll(async () => {
    await Promise.all([open?.close(), guarded?.close(), front?.close()]);
    await upstream?.close();
  });

  const reset = () => {
    for (const proxy of [open, guarded]) {
      proxy.connects.length = 0;
      proxy.forwarded.length = 0;
    }
    upstream.requests.length = 0;
  };

  describe('Method: fetchFile, openStream, openRange', () => {
    it('reach an HTTPS upstream through a CONNECT tunnel, the certificate checked against the upstream name', async () => {
      reset();
      await readAll(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: open.url }, ca: certificate.cert }));
      expect(open.connects.length).toBeGreaterThan(0);
      expect(new Set(open.connects)).toEqual(new Set([`${UPSTREAM_NAME}:${front.port}`]));
      expect(open.forwarded).toEqual([]);
      expect(upstream.requests.map((r) => r.path)).toEqual([INDEX, ITEM, ITEM]);
    });

    it('reach a plain-HTTP upstream by asking the proxy for each URL in full', async () => {
      reset();
      await readAll(new HttpUpstream(httpBase, { proxyEnv: { http_proxy: open.url } }));
      expect(open.forwarded).toEqual([`${httpBase}${INDEX}`, `${httpBase}${ITEM}`, `${httpBase}${ITEM}`]);
      expect(open.connects).toEqual([]);
    });

    it('go direct to a host no_proxy names: the proxy sees nothing', async () => {
      reset();
      const direct = `https://127.0.0.1:${front.port}/`;
      await readAll(new HttpUpstream(direct, { proxyEnv: { https_proxy: open.url, no_proxy: 'localhost,127.0.0.1' }, ca: certificate.cert }));
      await readAll(new HttpUpstream(upstream.baseUrl, { proxyEnv: { HTTP_PROXY: open.url, NO_PROXY: '127.0.0.0/8' } }));
      expect(open.connects).toEqual([]);
      expect(open.forwarded).toEqual([]);
      expect(upstream.requests).toHaveLength(6);
    });

    it('follow a redirect to a no_proxy host directly, after asking the proxy for the first hop', async () => {
      reset();
      upstream.faults.set('moved/index.json', { kind: 'redirect', location: `http://127.0.0.1:${new URL(upstream.baseUrl).port}/${INDEX}` });
      try {
        const http = new HttpUpstream(httpBase, { proxyEnv: { http_proxy: open.url, no_proxy: '127.0.0.1' }, allowCrossHostRedirects: true });
        const fetched = await http.fetchFile('moved/index.json');
        expect(fetched.notModified).toBe(false);
        expect(open.forwarded).toEqual([`${httpBase}moved/index.json`]);
        expect(upstream.requests.map((r) => r.path)).toEqual(['moved/index.json', INDEX]);
      } finally {
        upstream.faults.delete('moved/index.json');
      }
    });

    it('use the lower-case variable when both cases are set', async () => {
      reset();
      const down = `http://127.0.0.1:${await closedPort()}`;
      await readAll(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: open.url, HTTPS_PROXY: down }, ca: certificate.cert }));
      expect(open.connects.length).toBeGreaterThan(0);
      const error = await failureOf(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: down, HTTPS_PROXY: open.url }, ca: certificate.cert }).fetchFile(INDEX));
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toContain(`proxy ${down} could not be reached`);
    });

    it('send the proxy credentials from the proxy URL, and never show them', async () => {
      reset();
      const withCredentials = `http://${PROXY_USER.username}:${PROXY_USER.password}@127.0.0.1:${guarded.port}`;
      await readAll(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: withCredentials }, ca: certificate.cert }));
      await readAll(new HttpUpstream(httpBase, { proxyEnv: { http_proxy: withCredentials } }));
      expect(guarded.connects.length).toBeGreaterThan(0);
      expect(guarded.forwarded).toHaveLength(3);
    });
  });

  describe('Failures', () => {
    it('a proxy that wants credentials fails the HTTPS request with UpstreamError naming the proxy, the target and the status', async () => {
      reset();
      const error = await failureOf(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: guarded.url }, ca: certificate.cert }).fetchFile(INDEX));
      expect(error).toBeInstanceOf(UpstreamError);
      expect((error as UpstreamError).url).toBe(`${httpsBase}${INDEX}`);
      expect(error.message).toContain(`proxy ${guarded.url} refused CONNECT to ${UPSTREAM_NAME}:${front.port}: 407 Proxy Authentication Required`);
      expect(upstream.requests).toEqual([]);
    });

    it('wrong proxy credentials are refused, and the message shows them redacted', async () => {
      reset();
      const wrong = `http://${PROXY_USER.username}:not-the-password@127.0.0.1:${guarded.port}`;
      const tunneled = await failureOf(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: wrong }, ca: certificate.cert }).openStream(ITEM));
      const forwarded = await failureOf(new HttpUpstream(httpBase, { proxyEnv: { http_proxy: wrong } }).openStream(ITEM));
      expect(tunneled).toBeInstanceOf(UpstreamError);
      expect(tunneled.message).toContain(`proxy http://***@127.0.0.1:${guarded.port} refused CONNECT to ${UPSTREAM_NAME}:${front.port}: 407`);
      expect(forwarded).toBeInstanceOf(UpstreamError);
      expect(forwarded.message).toContain(`proxy http://***@127.0.0.1:${guarded.port} refused GET ${httpBase}${ITEM}: 407 Proxy Authentication Required`);
      for (const error of [tunneled, forwarded]) {
        expect(`${error.message} ${String(error.cause)}`).not.toContain('not-the-password');
        expect(error.message).not.toContain(PROXY_USER.username);
      }
      expect(upstream.requests).toEqual([]);
    });

    it('a proxy that is down fails with UpstreamError naming the proxy and the URL', async () => {
      const down = `http://127.0.0.1:${await closedPort()}`;
      const tunneled = await failureOf(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: down } }).fetchFile(INDEX));
      const forwarded = await failureOf(new HttpUpstream(httpBase, { proxyEnv: { http_proxy: down } }).openRange(ITEM, { start: 0, end: 9 }));
      expect(tunneled).toBeInstanceOf(UpstreamError);
      expect(tunneled.message).toMatch(new RegExp(`^${httpsBase}${INDEX}: request failed: proxy ${down} could not be reached for CONNECT to ${UPSTREAM_NAME}:${front.port}: .*ECONNREFUSED`));
      expect(forwarded).toBeInstanceOf(UpstreamError);
      expect(forwarded.message).toMatch(new RegExp(`^${httpBase}${ITEM}: request failed: proxy ${down} could not be reached: .*ECONNREFUSED`));
    });

    it('a proxy that never answers CONNECT fails within the deadline, with UpstreamError', async () => {
      const silent = await startForwardProxy({ silent: true });
      try {
        const started = Date.now();
        const http = new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: silent.url }, metadataTimeoutMs: 300, itemHeadersTimeoutMs: 300 });
        const error = await failureOf(http.fetchFile(INDEX));
        expect(error).toBeInstanceOf(UpstreamError);
        expect(error.message).toMatch(/within 300 ms/);
        expect(Date.now() - started).toBeLessThan(2_000);
        expect(silent.connects).toEqual([`${UPSTREAM_NAME}:${front.port}`]);
      } finally {
        await silent.close();
      }
    });

    it('an origin whose certificate is not for the name asked for is refused through the tunnel', async () => {
      reset();
      const misnamed = `https://other.maas.test:${front.port}/`;
      const error = await failureOf(new HttpUpstream(misnamed, { proxyEnv: { https_proxy: open.url }, ca: certificate.cert }).fetchFile(INDEX));
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toMatch(/other\.maas\.test.*(altnames|does not match)/i);
      expect(open.connects).toEqual([`other.maas.test:${front.port}`]);
      expect(upstream.requests).toEqual([]);
    });

    it('an origin certificate no trusted authority signed is refused', async () => {
      const error = await failureOf(new HttpUpstream(httpsBase, { proxyEnv: { https_proxy: open.url } }).fetchFile(INDEX));
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error.message).toMatch(/self[- ]signed/i);
    });
  });
});
