import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { MetadataError, UnsafePathError } from '../../functions/core/errors.ts';
import { assertSafePath, MAX_MIRROR_PATH_BYTES, MAX_SEGMENT_BYTES, mirrorPathProblem } from '../../functions/core/paths.ts';
import { keys, type Backend, type CatalogEntry } from '../../functions/core/ports.ts';
import { createApp, type App } from '../../functions/http/app.ts';

const FILE = 'streams/v1/x.json';
const JSON_PATH = '$.products["p"].versions["v"].items["i"].path';

describe('Function: assertSafePath', () => {
  it.each([
    'jammy/amd64/20250615/squashfs',
    'bootloaders/pxe/amd64/20230615.0/syslinux.tar.xz',
    'a',
    'dir/file..name',
    'dir/.hidden',
    'a:b/c~d+e',
    'channels-archive/a',
  ])('returns the safe path %j unchanged', (path) => {
    // Act
    const result = assertSafePath(FILE, JSON_PATH, path);

    // Assess
    expect(result).toBe(path);
  });

  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'absolute'],
    ['../outside', '".." segment'],
    ['a/../../b', '".." segment'],
    ['a/..', '".." segment'],
    ['./a', '"." segment'],
    ['a/./b', '"." segment'],
    ['a//b', 'empty segment'],
    ['a/b/', 'empty segment'],
    ['a\\..\\b', 'backslash'],
    ['a\u0000b', 'control character'],
    ['a\nb', 'control character'],
    ['a\u007fb', 'control character'],
    ['channels/candidate/noble/squashfs', 'where the mirror serves its channels'],
    ['noble/%2e%2e/%2e%2e/x', 'percent-encoded'],
    ['a'.repeat(5000), 'more than the 1018 a mirror path may have'],
    [`${'a'.repeat(256)}/b`, 'segment of 256 bytes'],
  ])('rejects %j (%s), naming file and JSON path', (path, problem) => {
    // Act
    const act = () => assertSafePath(FILE, JSON_PATH, path);

    // Assess
    expect(act).toThrow(UnsafePathError);
    expect(act).toThrow(problem);
    try {
      act();
    } catch (error) {
      const unsafe = error as UnsafePathError;
      expect(unsafe.file).toBe(FILE);
      expect(unsafe.jsonPath).toBe(JSON_PATH);
      expect(unsafe.path).toBe(path);
      expect(unsafe.message).toContain(FILE);
      expect(unsafe.message).toContain(JSON_PATH);
    }
  });
});

describe('Function: mirrorPathProblem (the one rule of sync and serve)', () => {
  const LONGEST = `${'a'.repeat(MAX_SEGMENT_BYTES)}/${'b'.repeat(MAX_SEGMENT_BYTES)}/${'c'.repeat(MAX_SEGMENT_BYTES)}/${'d'.repeat(MAX_MIRROR_PATH_BYTES - 3 * (MAX_SEGMENT_BYTES + 1))}`;
  // Paths as upstream metadata could name them: [path, whether sync takes it].
  const PATHS: [string, boolean][] = [
    ['noble/amd64/20250709/ga-24.04/generic/boot-kernel', true],
    ['com.ubuntu.maas:stable:v3/a b/c+d~e', true],
    ['tools/100%/x', true],
    ['naïve/ünïcode', true],
    [LONGEST, true],
    [`${'é'.repeat(127)}/x`, true],
    ['noble/%2e%2e/%2e%2e/x', false],
    ['noble/%2E%2E/x', false],
    ['noble%2Famd64', false],
    ['a%00b', false],
    ['a%20b', false],
    ['a\tb', false],
    ['a\u001bb', false],
    [`${'x'.repeat(MAX_SEGMENT_BYTES + 1)}/y`, false],
    [`${'é'.repeat(128)}/x`, false],
    [`${LONGEST}e`, false],
    ['x/'.repeat(2500) + 'x', false],
    ['a'.repeat(5000), false],
    ['../x', false],
  ];
  // Request targets a client could send: raw, and each segment percent-encoded.
  const encoded = (path: string) => `/${path.split('/').map(encodeURIComponent).join('/')}`;
  const HOSTILE_TARGETS = ['/noble/%2e%2e/%2e%2e/x', '/noble/%252e%252e/x', '/a%2F..%2Fb', '/%00', '/a%0ab', `/${'a'.repeat(5000)}`, `/${'a'.repeat(256)}`, '/a\\b', '/%E0%A4%A'];

  let dataDir: string;
  let backend: Backend;

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'skystreams-path-rule-'));
    backend = openEmbeddedBackend(dataDir);
  });

  afterEach(async () => {
    await backend.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Publishes every path sync accepts as one generation's items, as a sync would. */
  async function publishAccepted(paths: string[]): Promise<void> {
    const body = new TextEncoder().encode('bytes');
    const sha256 = createHash('sha256').update(body).digest('hex');
    for (const path of paths) {
      await backend.objects.put(keys.item(path), body);
      await backend.catalog.recordObject({ path, size: body.length, sha256, digests: { sha256 }, storedAt: new Date().toISOString() });
    }
    const entries: CatalogEntry[] = paths.map((path, index) => ({
      contentId: 'com.ubuntu.maas:stable:v3:download',
      product: `p${index}`,
      version: '20250709',
      item: 'root-tgz',
      path,
      size: body.length,
      sha256,
      ftype: 'root-tgz',
    }));
    await backend.catalog.putEntries(1, entries);
    await backend.objects.put(keys.metadata({ generation: 1, runId: 'run-1' }, 'streams/v1/index.sjson'), body);
    await backend.catalog.publish(
      { generation: 1, upstreamUpdated: 'Wed, 09 Jul 2025 12:00:00 +0000', publishedAt: new Date().toISOString(), runId: 'run-1', files: ['streams/v1/index.sjson'], itemCount: entries.length, totalBytes: 5 * entries.length },
      undefined,
    );
  }

  async function status(app: App, pathname: string): Promise<number> {
    const reply = await app.resolve({ method: 'GET', pathname, header: () => undefined });
    if (reply.body instanceof ReadableStream) await reply.body.cancel();
    else if (reply.body && Symbol.asyncIterator in reply.body) await (reply.body as AsyncIterable<unknown>)[Symbol.asyncIterator]().return?.();
    return reply.status;
  }

  it('R-one-path-rule: serves (200) every path sync accepts and answers 400 for every one it refuses', async () => {
    // Prepare
    const syncAccepts = (path: string) => {
      try {
        assertSafePath(FILE, JSON_PATH, path);
        return true;
      } catch (error) {
        expect(error).toBeInstanceOf(MetadataError);
        expect((error as MetadataError).message).toContain(`${FILE}: ${JSON_PATH}: unsafe path`);
        return false;
      }
    };
    const verdicts = PATHS.map(([path]) => syncAccepts(path));
    await publishAccepted(PATHS.filter((_, index) => verdicts[index]).map(([path]) => path));
    const app = createApp(backend);

    // Act
    const served = await Promise.all(PATHS.map(([path]) => status(app, encoded(path))));

    // Assess
    expect(verdicts).toEqual(PATHS.map(([, accepted]) => accepted));
    expect(served).toEqual(verdicts.map((accepted) => (accepted ? 200 : 400)));
  });

  it('R-serve-refusals-unsyncable: refuses at sync every path behind a request target serve refuses', async () => {
    // Prepare
    const app = createApp(backend);

    // Act
    const statuses = await Promise.all(HOSTILE_TARGETS.map((target) => status(app, target)));
    const decoded = HOSTILE_TARGETS.map((target) => {
      try {
        return decodeURIComponent(target.slice(1));
      } catch {
        return undefined;
      }
    });

    // Assess: neither the path as written nor as decoded could be published.
    expect(statuses).toEqual(HOSTILE_TARGETS.map(() => 400));
    for (const [index, target] of HOSTILE_TARGETS.entries()) {
      expect(mirrorPathProblem(target.slice(1)), target).toBeDefined();
      if (decoded[index] !== undefined) expect(mirrorPathProblem(decoded[index]), target).toBeDefined();
    }
  });
});
