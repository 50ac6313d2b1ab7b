/** A simplestreams source over HTTP(S), with the platform fetch (undici). */
import { Readable } from 'node:stream';
import { NotFoundError, UpstreamError } from '../../core/errors.ts';
import type { ByteStream, FetchedFile, Upstream, Validators } from '../../core/ports.ts';

export interface HttpUpstreamOptions {
  /** Per metadata request. @default 60 s */
  metadataTimeoutMs?: number;
  /** Metadata files larger than this are refused rather than buffered. @default 256 MiB */
  maxMetadataBytes?: number;
  userAgent?: string;
}

export class HttpUpstream implements Upstream {
  private readonly base: string;
  private readonly metadataTimeoutMs: number;
  private readonly maxMetadataBytes: number;
  private readonly userAgent: string;

  constructor(baseUrl: string, options: HttpUpstreamOptions = {}) {
    this.base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
    this.metadataTimeoutMs = options.metadataTimeoutMs ?? 60_000;
    this.maxMetadataBytes = options.maxMetadataBytes ?? 256 * 1024 * 1024;
    this.userAgent = options.userAgent ?? 'skystreams';
  }

  url(path: string): string {
    // Escape each segment but keep `:` readable: product file names are full of them.
    return this.base + path.split('/').map((s) => encodeURIComponent(s).replaceAll('%3A', ':')).join('/');
  }

  async fetchFile(path: string, validators?: Validators): Promise<FetchedFile> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    if (validators?.etag) headers['if-none-match'] = validators.etag;
    if (validators?.lastModified) headers['if-modified-since'] = validators.lastModified;
    const response = await this.request(path, headers, AbortSignal.timeout(this.metadataTimeoutMs));
    if (response.status === 304) return { notModified: true };
    const declared = Number(response.headers.get('content-length') ?? '0');
    if (declared > this.maxMetadataBytes) {
      await response.body?.cancel();
      throw new UpstreamError(this.url(path), `metadata file of ${declared} bytes exceeds the ${this.maxMetadataBytes}-byte limit`);
    }
    const bytes = await this.read(path, response);
    return {
      notModified: false,
      bytes,
      validators: dropEmpty({
        etag: response.headers.get('etag') ?? undefined,
        lastModified: response.headers.get('last-modified') ?? undefined,
      }),
    };
  }

  async openStream(path: string): Promise<{ body: ByteStream; size?: number }> {
    const response = await this.request(path, { 'user-agent': this.userAgent });
    if (!response.body) throw new UpstreamError(this.url(path), 'empty response body');
    const length = response.headers.get('content-length');
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
    return { body: this.wrapErrors(path, body), size: length === null ? undefined : Number(length) };
  }

  private async request(path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const url = this.url(path);
    let response: Response;
    try {
      response = await fetch(url, { headers, signal, redirect: 'follow' });
    } catch (error) {
      throw new UpstreamError(url, `request failed: ${describe(error)}`, { cause: error });
    }
    if (response.status === 404) {
      await response.body?.cancel();
      throw new NotFoundError(`${url}: 404 Not Found`);
    }
    if (response.status !== 200 && response.status !== 304) {
      await response.body?.cancel();
      throw new UpstreamError(url, `HTTP ${response.status} ${response.statusText}`);
    }
    return response;
  }

  /** The whole body, refused past the limit even when no Content-Length announced its size. */
  private async read(path: string, response: Response): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let received = 0;
    try {
      const body = response.body ? Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>) : [];
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        received += chunk.byteLength;
        if (received > this.maxMetadataBytes) {
          throw new UpstreamError(this.url(path), `metadata file exceeds the ${this.maxMetadataBytes}-byte limit`);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      if (error instanceof UpstreamError) throw error;
      throw new UpstreamError(this.url(path), `reading the body failed: ${describe(error)}`, { cause: error });
    }
    return Buffer.concat(chunks);
  }

  private async *wrapErrors(path: string, body: AsyncIterable<Uint8Array>): ByteStream {
    try {
      yield* body;
    } catch (error) {
      throw new UpstreamError(this.url(path), `download interrupted: ${describe(error)}`, { cause: error });
    }
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

function dropEmpty(validators: Validators): Validators {
  return Object.fromEntries(Object.entries(validators).filter(([, v]) => v)) as Validators;
}
