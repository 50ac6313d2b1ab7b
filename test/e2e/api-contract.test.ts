import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createApp } from '../../functions/http/app.ts';
import { createUploadRoute, UPLOADS_ROUTE } from '../../functions/http/upload-route.ts';
import { OPENAPI_DOCUMENT } from '../../functions/http/openapi.ts';
import { errorBody } from '../../functions/http/reply.ts';
import { startDemoMirror, type DemoMirror } from '../support/demo-mirror.ts';
import { validate } from '../support/json-schema.ts';
import { rootTgz } from '../support/image-files.ts';

type Schema = Record<string, unknown>;
interface Operation {
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
}

const document = OPENAPI_DOCUMENT as unknown as { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Schema> } };
const root = document as unknown as Schema;
/** The paths the read-only app answers (GET and HEAD); the uploads route only takes POST. */
const readPaths = Object.keys(document.paths).filter((path) => document.paths[path]?.['get']);
const errorSchema = { $ref: '#/components/schemas/Error' };

let mirror: DemoMirror;
/** A concrete URL path for each templated path of the document. */
let examples: Record<string, string>;

beforeAll(async () => {
  // Two versions per image, so the diff route has two to compare.
  mirror = await startDemoMirror({ max: 2 });
  const images = (await (await fetch(`${mirror.url}api/v1/images`)).json()) as { images: { versions: { items: { path: string }[] }[] }[] };
  examples = {
    '/streams/v1/{file}': '/streams/v1/index.sjson',
    '/{itemPath}': `/${images.images[0]!.versions[0]!.items[0]!.path}`,
    // The demo syncs into the default channel, which is also at /channels/stable/.
    '/channels/{channel}/streams/v1/{file}': '/channels/stable/streams/v1/index.sjson',
    '/channels/{channel}/{itemPath}': `/channels/stable/${images.images[0]!.versions[0]!.items[0]!.path}`,
    '/api/v1/packages/{name}': '/api/v1/packages/openssl',
    '/api/v1/diff/{product}/{from}/{to}': '/api/v1/diff/com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04/20250618/20250709',
  };
}, 120_000);

afterAll(async () => {
  await mirror?.close();
});

/** The documented response for `status`, and the problems of the real body against its schema. */
async function checkAgainstDocument(documentedPath: string, method: string, response: Response): Promise<string[]> {
  const documented = document.paths[documentedPath]?.[method.toLowerCase()]?.responses[String(response.status)];
  if (!documented) return [`${method} ${documentedPath}: status ${response.status} is not documented`];
  const body = await response.text();
  const mediaType = response.headers.get('content-type')?.split(';')[0]?.trim() ?? '';
  if (!documented.content) return body === '' || method === 'HEAD' ? [] : [`${method} ${documentedPath} ${response.status}: a body where none is documented`];
  const media = documented.content[mediaType];
  if (!media) return [`${method} ${documentedPath} ${response.status}: content type ${mediaType} is not documented`];
  if (method === 'HEAD') return body === '' ? [] : [`HEAD ${documentedPath}: has a body`];
  if (mediaType !== 'application/json') return validate(body, media.schema, root);
  return validate(JSON.parse(body), media.schema, root).map((problem) => `${method} ${documentedPath} ${response.status}: ${problem}`);
}

describe('API contract (OpenAPI 3.1 at /api/v1/openapi.json)', () => {
  it('is served as the document the code holds', async () => {
    // Act
    const response = await fetch(`${mirror.url}api/v1/openapi.json`);

    // Assess
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(JSON.parse(JSON.stringify(OPENAPI_DOCUMENT)));
    expect(OPENAPI_DOCUMENT.openapi).toBe('3.1.0');
  });

  it('documents every route the app answers whatever is published, and no route it does not have', () => {
    // Prepare
    const routes = createApp(mirror.backend).routes.map((path) => `/${path}`);
    const documentedFixed = readPaths.filter((path) => !path.includes('{'));

    // Assess
    expect(documentedFixed.sort()).toEqual([...routes].sort());
    // The one route that writes is the uploads route, apart from the read-only app.
    expect(Object.keys(document.paths).filter((path) => !readPaths.includes(path))).toEqual([UPLOADS_ROUTE]);
  });

  it.each(readPaths)('answers GET and HEAD %s from a synced mirror as documented', async (documentedPath) => {
    // Prepare
    const path = examples[documentedPath] ?? documentedPath;

    for (const method of ['GET', 'HEAD']) {
      // Act
      const response = await fetch(new URL(path.slice(1), mirror.url), { method });

      // Assess
      expect(response.status, `${method} ${path}`).toBe(200);
      expect(await checkAgainstDocument(documentedPath, method, response)).toEqual([]);
    }
  });

  it.each([
    ['a path nothing is published at', 'GET', 'noble/amd64/20990101/squashfs', 404, 'not_found'],
    ['a method the mirror does not take', 'DELETE', examplesKey('/{itemPath}'), 405, 'method_not_allowed'],
    ['a path no mirror file can have', 'GET', 'a/%ZZ', 400, 'bad_request'],
  ])('answers %s with the documented JSON error', async (_name, method, path, status, code) => {
    // Act
    const response = await fetch(new URL(resolveExample(path), mirror.url), { method });

    // Assess
    expect(response.status).toBe(status);
    const body = (await response.clone().json()) as { error: { code: string } };
    expect(body.error.code).toBe(code);
    // A refused method has no operation of its own: its answer is documented with the item's GET.
    expect(await checkAgainstDocument('/{itemPath}', 'GET', response)).toEqual([]);
  });

  it('answers a metadata file the publication does not hold with the documented 404', async () => {
    // Act
    const response = await fetch(`${mirror.url}streams/v1/nothing.sjson`);

    // Assess
    expect(response.status).toBe(404);
    expect(await checkAgainstDocument('/streams/v1/{file}', 'GET', response)).toEqual([]);
  });

  it('answers POST /api/v1/uploads as documented: 202, 422 for a wrong sha256, 400 for a dd image or an extra field, 409 when not re-signed, 405 for GET', async () => {
    // Prepare: the files an operator copied to incoming/, on the demo mirror's stores.
    const { objects, catalog } = mirror.backend;
    const tgz = rootTgz();
    const manifest = new TextEncoder().encode('bash\t5.1\n');
    const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
    await objects.put('incoming/contract/image.tgz', tgz);
    await objects.put('incoming/contract/image.manifest', manifest);
    const image = { os: 'centos', release: 'contract9', arch: 'amd64', subarch: 'generic', title: 'Contract 9' };
    const files = (tgzSha256: string) => [
      { ftype: 'root-tgz', key: 'incoming/contract/image.tgz', sha256: tgzSha256, size: tgz.byteLength },
      { ftype: 'manifest', key: 'incoming/contract/image.manifest', sha256: sha256(manifest), size: manifest.byteLength },
    ];
    const route = createUploadRoute({ objects, catalog, resign: true });
    const post = (body: unknown, to = route) => to(new Request(`https://api.example${UPLOADS_ROUTE}`, { method: 'POST', body: JSON.stringify(body) }));
    const requests: [Promise<Response>, number][] = [
      [post({ ...image, files: files('0'.repeat(64)) }), 422],
      [post({ ...image, files: [{ ...files(sha256(tgz))[0]!, ftype: 'ddgz' }] }), 400],
      [post({ ...image, files: files(sha256(tgz)), colour: 'blue' }), 400],
      [post({ ...image, files: files(sha256(tgz)) }, createUploadRoute({ objects, catalog, resign: false })), 409],
      [route(new Request(`https://api.example${UPLOADS_ROUTE}`)), 405],
    ];
    for (const [pending, status] of requests) {
      const response = await pending;
      // Assess
      expect(response.status).toBe(status);
      expect(await checkAgainstDocument(UPLOADS_ROUTE, 'POST', response)).toEqual([]);
    }
    const accepted = await post({ ...image, files: files(sha256(tgz)) });
    expect(accepted.status).toBe(202);
    expect(await checkAgainstDocument(UPLOADS_ROUTE, 'POST', accepted)).toEqual([]);
    // The request body the document describes is the one the route takes.
    expect(validate({ ...image, files: files(sha256(tgz)) }, { $ref: '#/components/schemas/UploadRequest' }, root)).toEqual([]);
  });

  it('documents `stale`: absent while the mirror is fresh, `{ since, reason }` once upstream is older than the stale-after setting', async () => {
    // Prepare: the demo upstream's metadata was updated when the demo synced; an app allowing 1 ms finds it stale.
    const strict = createApp({ ...mirror.backend, staleAfterMs: 1 });

    // Act
    const fresh = await fetch(`${mirror.url}api/v1/status`);
    const stale = await strict(new Request(`${mirror.url}api/v1/status`));

    // Assess
    expect(await fresh.clone().json()).not.toHaveProperty('stale');
    expect(await checkAgainstDocument('/api/v1/status', 'GET', fresh)).toEqual([]);
    const body = (await stale.clone().json()) as { stale?: { since: string; reason: string } };
    expect(body.stale?.reason).toMatch(/^upstream's metadata was last updated .*, more than 1 ms ago$/);
    expect(await checkAgainstDocument('/api/v1/status', 'GET', stale)).toEqual([]);
    // The schema holds `stale` to its two fields.
    expect(validate({ ...body, stale: { ...body.stale, extra: 1 } }, { $ref: '#/components/schemas/StatusReport' }, root)).toEqual(['$.stale: "extra" is not in the schema']);
  });

  it('documents the 5xx body, request id included', () => {
    // Act
    const problems = validate(errorBody(503, 'temporarily unavailable, retry later', 'a-request-id'), errorSchema, root);

    // Assess
    expect(problems).toEqual([]);
  });
});

describe('The contract checker', () => {
  it('reports a real response that drifted from the document, with the JSON path', async () => {
    // Prepare
    const status = (await (await fetch(`${mirror.url}api/v1/status`)).json()) as { runs: Record<string, unknown>[] };
    status.runs[0]!.itemsCopied = 'three';
    status.runs[0]!.surprise = true;

    // Act
    const problems = validate(status, { $ref: '#/components/schemas/StatusReport' }, root);

    // Assess
    expect(problems).toEqual(['$.runs[0].itemsCopied: expected integer, got string', '$.runs[0]: "surprise" is not in the schema']);
  });

  it('holds a re-signed status to the signing keys it documents: fingerprint, phase and date, never more', async () => {
    // Prepare: the demo publishes verbatim, so its status has no signing field; add one as re-signed mode reports it.
    const status = (await (await fetch(`${mirror.url}api/v1/status`)).json()) as Record<string, unknown>;
    expect(status.signing).toBeUndefined();
    const keys = [
      { fingerprint: '31D0E5C2A4B7F0091E3D6C8A5B2F4E7D90C10B2A', state: 'active', since: '2026-12-08T00:00:00.000Z' },
      { fingerprint: '7A1C0E5C2A4B7F0091E3D6C8A5B2F4E7D90CE94F', state: 'pending', since: '2026-12-09T00:00:00.000Z' },
      { fingerprint: '0123456789ABCDEF0123456789ABCDEF01234567', state: 'previous' },
    ];

    // Act
    const good = validate({ ...status, signing: { keys } }, { $ref: '#/components/schemas/StatusReport' }, root);
    const leaky = validate(
      { ...status, signing: { keys: [{ ...keys[0], armored: '-----BEGIN PGP PRIVATE KEY BLOCK-----' }, { ...keys[1], state: 'revoked' }] } },
      { $ref: '#/components/schemas/StatusReport' },
      root,
    );

    // Assess
    expect(good).toEqual([]);
    expect(leaky).toEqual(['$.signing.keys[0]: "armored" is not in the schema', expect.stringMatching(/^\$\.signing\.keys\[1\]\.state: /)]);
  });

  it('refuses a schema keyword it does not implement rather than pass it', () => {
    expect(validate('x', { type: 'string', maxLength: 0 }, root)).toEqual(['$: the schema uses "maxLength", which this checker does not implement']);
  });

  it('reports an error body in the old shape', () => {
    expect(validate({ error: 'x is not published here' }, errorSchema, root)).toEqual(['$.error: expected object, got string']);
  });
});

/** Marks a test path that is only known once the mirror is synced. */
function examplesKey(documentedPath: string): string {
  return `example:${documentedPath}`;
}

function resolveExample(path: string): string {
  return path.startsWith('example:') ? examples[path.slice('example:'.length)]!.slice(1) : path;
}
