import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpUpstream } from '../../functions/adapters/http/http-upstream.ts';
import { NotFoundError, UpstreamError } from '../../functions/core/errors.ts';

let server: Server;
let base: string;

beforeAll(async () => {
  // Chunked answers carry no Content-Length, so only a bounded read can stop an oversized one.
  server = createServer((req, res) => {
    if (req.url === '/streams/v1/big.json') {
      res.writeHead(200, { etag: '"v1"' });
      for (let i = 0; i < 3; i++) res.write(Buffer.alloc(100, 0x61));
      res.end();
      return;
    }
    if (req.url === '/streams/v1/cached.json' && req.headers['if-none-match'] === '"v1"') {
      res.writeHead(304).end();
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

describe('Class: HttpUpstream', () => {
  describe('Method: fetchFile', () => {
    it('reads a chunked body whole, with its validators', async () => {
      const fetched = await new HttpUpstream(base).fetchFile('streams/v1/big.json');

      expect(fetched).toMatchObject({ notModified: false, validators: { etag: '"v1"' } });
      expect(fetched.notModified === false && fetched.bytes.length).toBe(300);
    });

    it('refuses a body past the metadata limit even without a Content-Length', async () => {
      const attempt = new HttpUpstream(base, { maxMetadataBytes: 150 }).fetchFile('streams/v1/big.json');

      await expect(attempt).rejects.toThrow(UpstreamError);
      await expect(attempt).rejects.toThrow(/big\.json: metadata file exceeds the 150-byte limit/);
    });

    it('answers a conditional GET with notModified, and 404 with NotFoundError', async () => {
      const upstream = new HttpUpstream(base);

      await expect(upstream.fetchFile('streams/v1/cached.json', { etag: '"v1"' })).resolves.toEqual({ notModified: true });
      await expect(upstream.fetchFile('streams/v1/missing.json')).rejects.toThrow(NotFoundError);
    });
  });
});
