import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openEmbeddedBackend } from '../../functions/adapters/embedded.ts';
import { ConfigError } from '../../functions/core/errors.ts';
import { PUBLISHING_MODE_STATE, modeOfPublishedFiles, parsePublishingMode, recordedPublishingMode, resolvePublishingMode } from '../../functions/core/publishing-mode.ts';

describe('Function: resolvePublishingMode', () => {
  it('takes the named mode, or verbatim, on a mirror that has recorded none', () => {
    expect(resolvePublishingMode(undefined, {})).toEqual({ mode: 'verbatim' });
    expect(resolvePublishingMode(undefined, { named: 're-signed', namedBy: '--resign' })).toEqual({ mode: 're-signed' });
  });

  it('follows the recorded mode when the command names none', () => {
    expect(resolvePublishingMode('re-signed', {})).toEqual({ mode: 're-signed' });
    expect(resolvePublishingMode('verbatim', {})).toEqual({ mode: 'verbatim' });
  });

  it('refuses a merged mirror synced without its sources file, naming --config and the switch', () => {
    expect(() => resolvePublishingMode('merged', {})).toThrow(ConfigError);
    expect(() => resolvePublishingMode('merged', {})).toThrow(/--config FILE, or change the mode with --switch-mode verbatim\|re-signed$/);
  });

  it.each([
    ['verbatim', 're-signed', '--resign'],
    ['re-signed', 'verbatim', '--no-verify'],
    ['merged', 're-signed', '--resign'],
  ] as const)('refuses a %s mirror asked for %s by %s, naming the recorded mode and the switch', (recorded, named, namedBy) => {
    // Act
    const attempt = () => resolvePublishingMode(recorded, { named, namedBy });

    // Assess
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(new RegExp(`^this mirror publishes .*; ${namedBy} would publish .*add --switch-mode ${named}$`));
  });

  it('switches when asked explicitly, and reports the switch', () => {
    expect(resolvePublishingMode('verbatim', { named: 're-signed', namedBy: '--resign', switchTo: 're-signed' })).toEqual({
      mode: 're-signed',
      switched: { from: 'verbatim', to: 're-signed' },
    });
    expect(resolvePublishingMode('re-signed', { switchTo: 'verbatim' })).toEqual({ mode: 'verbatim', switched: { from: 're-signed', to: 'verbatim' } });
    expect(resolvePublishingMode('re-signed', { switchTo: 're-signed' })).toEqual({ mode: 're-signed' });
  });

  it('refuses a switch that contradicts the flags', () => {
    expect(() => resolvePublishingMode('verbatim', { named: 're-signed', namedBy: '--resign', switchTo: 'verbatim' })).toThrow(
      /^--switch-mode verbatim contradicts --resign, which publish re-signed$/,
    );
  });

  it('treats a changed deployment config as the switch', () => {
    expect(resolvePublishingMode('verbatim', { named: 'merged', declarative: true })).toEqual({ mode: 'merged', switched: { from: 'verbatim', to: 'merged' } });
    expect(resolvePublishingMode('merged', { named: 'merged', declarative: true })).toEqual({ mode: 'merged' });
  });
});

describe('Function: modeOfPublishedFiles', () => {
  it('reads the mode of a publication made before modes were recorded', () => {
    expect(modeOfPublishedFiles(['streams/v1/index.sjson', 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson'])).toBe('verbatim');
    expect(modeOfPublishedFiles(['streams/v1/index.sjson', 'keyring.gpg', 'keyring.asc', 'upstream/streams/v1/index.sjson'])).toBe('re-signed');
    expect(modeOfPublishedFiles(['streams/v1/index.sjson', 'keyring.gpg', 'sources/uploads/streams/v1/index.json'])).toBe('re-signed');
    expect(modeOfPublishedFiles(['streams/v1/index.sjson', 'keyring.gpg', 'sources/canonical/streams/v1/index.sjson'])).toBe('merged');
  });
});

describe('Function: parsePublishingMode', () => {
  it('names the flag and the modes on a typo', () => {
    expect(parsePublishingMode('re-signed', '--switch-mode')).toBe('re-signed');
    expect(() => parsePublishingMode('resign', '--switch-mode')).toThrow(/^--switch-mode: expected one of verbatim, re-signed, merged, found "resign"$/);
  });
});

describe('Function: recordedPublishingMode', () => {
  it('reads the recorded mode, and for a mirror published before modes were recorded, the mode its default channel serves in', async () => {
    // Prepare: a real catalog with one re-signed publication and no recorded mode.
    const dir = await mkdtemp(join(tmpdir(), 'skystreams-mode-'));
    const backend = openEmbeddedBackend(dir);
    try {
      const empty = await recordedPublishingMode(backend.catalog);
      await backend.catalog.publish(
        { generation: 1, upstreamUpdated: 'Thu, 24 Jul 2025 08:01:49 +0000', publishedAt: '2026-01-01T00:00:00.000Z', runId: 'r1', files: ['streams/v1/index.sjson', 'keyring.gpg'], itemCount: 0, totalBytes: 0 },
        undefined,
      );

      // Act
      const legacy = await recordedPublishingMode(backend.catalog);
      await backend.catalog.setState(PUBLISHING_MODE_STATE, 'verbatim');
      const recorded = await recordedPublishingMode(backend.catalog);

      // Assess
      expect(empty).toBeUndefined();
      expect(legacy).toBe('re-signed');
      expect(recorded).toBe('verbatim');
    } finally {
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
