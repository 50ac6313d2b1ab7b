import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeHookFailure, runOnPublish, type PublishedNotice } from '../../functions/local/on-publish.ts';
import { publicationChanges } from '../../functions/core/publication-changes.ts';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import type { CatalogEntry } from '../../functions/core/ports.ts';

const notice: PublishedNotice = {
  channel: 'stable',
  generation: 7,
  previousGeneration: 6,
  added: [
    { product: 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04', version: '20250709' },
    { product: 'com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04', version: '20250709' },
  ],
  removed: [{ product: 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04', version: '20250618' }],
};

const dirs: string[] = [];
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'skystreams-hook-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('Function: runOnPublish', () => {
  it('runs the command through the shell with the channel, generation and changed versions in its environment', async () => {
    // Prepare
    const out = join(scratch(), 'env.txt');

    // Act
    const result = await runOnPublish(
      `printf '%s|%s|%s\\n%s\\n--\\n%s' "$SKYSTREAMS_CHANNEL" "$SKYSTREAMS_GENERATION" "$SKYSTREAMS_PREVIOUS_GENERATION" "$SKYSTREAMS_ADDED" "$SKYSTREAMS_REMOVED" > ${out}`,
      notice,
    );

    // Assess
    expect(result).toEqual({ code: 0, signal: null, timedOut: false });
    expect(readFileSync(out, 'utf8')).toBe(
      [
        'stable|7|6',
        'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250709',
        'com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04 20250709',
        '--',
        'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250618',
      ].join('\n'),
    );
    expect(describeHookFailure('true', result)).toBeUndefined();
  });

  it('reports a failing command without throwing: the publication stands', async () => {
    // Act
    const result = await runOnPublish('exit 3', notice);

    // Assess
    expect(result.code).toBe(3);
    expect(describeHookFailure('exit 3', result)).toBe('--on-publish "exit 3" exited 3; the publication stands');
  });

  it('kills a command that outlives its time limit', async () => {
    // Act
    const result = await runOnPublish('sleep 30', notice, 200);

    // Assess
    expect(result).toMatchObject({ code: null, signal: 'SIGKILL', timedOut: true });
    expect(describeHookFailure('sleep 30', result)).toBe('--on-publish "sleep 30" was killed at its time limit; the publication stands');
  });
});

describe('Function: publicationChanges', () => {
  const entry = (product: string, version: string, item: string): CatalogEntry => ({
    contentId: 'com.ubuntu.maas:stable:v3:download',
    product,
    version,
    item,
    path: `${product}/${version}/${item}`,
    size: 1,
    sha256: '0'.repeat(64),
  });

  it('lists the versions a generation added and those it dropped, against the one before (and all as added for a first one)', async () => {
    // Prepare: a real catalog with two generations.
    const backend = openEmbeddedBackend(scratch());
    try {
      const first = await backend.catalog.reserveGeneration();
      await backend.catalog.putEntries(first, [entry('a', '1', 'root'), entry('a', '1', 'kernel'), entry('b', '1', 'root')]);
      const second = await backend.catalog.reserveGeneration();
      await backend.catalog.putEntries(second, [entry('a', '2', 'root'), entry('b', '1', 'root')]);

      // Act
      const changes = await publicationChanges(backend.catalog, first, second);
      const initial = await publicationChanges(backend.catalog, undefined, first);

      // Assess
      expect(changes).toEqual({ added: [{ product: 'a', version: '2' }], removed: [{ product: 'a', version: '1' }] });
      expect(initial).toEqual({ added: [{ product: 'a', version: '1' }, { product: 'b', version: '1' }], removed: [] });
    } finally {
      await backend.close();
    }
  });
});
