import { describe, expect, it } from 'vitest';
import type { SyncRun } from '../../functions/core/ports.ts';
import { syncDefaults } from '../../functions/core/settings.ts';
import { MISSED_INTERVALS, publicationMode, staleness } from '../../functions/http/reports.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = new Date('2026-12-01T12:00:00.000Z');

function run(fields: Partial<SyncRun> & Pick<SyncRun, 'id' | 'startedAt' | 'state'>): SyncRun {
  return { itemsCopied: 0, bytesCopied: 0, itemsPresent: 0, ...fields };
}

/** A publication of upstream metadata updated `updated`, published at 06:00 the same day as NOW. */
const published = (updated: string) => ({ upstreamUpdated: updated, publishedAt: '2026-12-01T06:00:00.000Z' });

describe('Function: staleness', () => {
  describe('upstream older than staleAfterMs', () => {
    it('is stale from the moment upstream\'s updated is staleAfterMs old, with that moment as since', () => {
      // Prepare
      const report = { publication: published('Sun, 15 Nov 2026 12:00:00 +0000'), runs: [] };

      // Act
      const atTheLimit = staleness(report, NOW, 16 * DAY);
      const justBefore = staleness(report, new Date(NOW.getTime() - 1), 16 * DAY);

      // Assess
      expect(atTheLimit).toEqual({ since: '2026-12-01T12:00:00.000Z', reason: "upstream's metadata was last updated 2026-11-15T12:00:00.000Z, more than 16 days ago" });
      expect(justBefore).toBeUndefined();
    });

    it('defaults to 14 days in syncDefaults', () => {
      expect(syncDefaults.staleAfterMs).toBe(14 * DAY);
    });

    it('is off with staleAfterMs 0: an air-gapped mirror fed by import serves what it was given', () => {
      expect(staleness({ publication: published('Mon, 01 Jan 2024 00:00:00 +0000'), runs: [] }, NOW, 0)).toBeUndefined();
    });

    it('cannot judge an updated that is not a date, nor a mirror that published nothing', () => {
      expect(staleness({ publication: published('yesterday-ish'), runs: [] }, NOW, DAY)).toBeUndefined();
      expect(staleness({ publication: null, runs: [] }, NOW, DAY)).toBeUndefined();
    });
  });

  describe('a schedule without a successful check for MISSED_INTERVALS intervals', () => {
    const fresh = published('Tue, 01 Dec 2026 00:00:00 +0000');

    it('counts from the newest succeeded or unchanged run, whatever failed since', () => {
      // Prepare: the last check that got through finished at 08:00; failures since.
      const runs = [
        run({ id: 'f2', startedAt: '2026-12-01T11:00:00.000Z', finishedAt: '2026-12-01T11:00:01.000Z', state: 'failed' }),
        run({ id: 'f1', startedAt: '2026-12-01T10:00:00.000Z', finishedAt: '2026-12-01T10:00:01.000Z', state: 'abandoned' }),
        run({ id: 'ok', startedAt: '2026-12-01T07:59:00.000Z', finishedAt: '2026-12-01T08:00:00.000Z', state: 'unchanged' }),
      ];

      // Act
      const hourly = staleness({ publication: fresh, runs }, NOW, syncDefaults.staleAfterMs, HOUR);
      const everyTwoHours = staleness({ publication: fresh, runs }, NOW, syncDefaults.staleAfterMs, 2 * HOUR);

      // Assess
      expect(MISSED_INTERVALS).toBe(3);
      expect(hourly).toEqual({
        since: '2026-12-01T11:00:00.000Z',
        reason: 'no check of upstream has succeeded since 2026-12-01T08:00:00.000Z: 3 sync intervals of 1 hour have passed',
      });
      expect(everyTwoHours).toBeUndefined();
    });

    it('does not apply to a mirror on no schedule (intervalMs undefined)', () => {
      const runs = [run({ id: 'ok', startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:01:00.000Z', state: 'succeeded' })];
      expect(staleness({ publication: fresh, runs }, NOW, 0)).toBeUndefined();
    });

    it('counts from the publication, or the oldest run listed, when no run listed succeeded', () => {
      // Prepare
      const failing = [
        run({ id: 'f2', startedAt: '2026-12-01T09:00:00.000Z', state: 'failed' }),
        run({ id: 'f1', startedAt: '2026-12-01T08:30:00.000Z', state: 'failed' }),
      ];

      // Act
      const withPublication = staleness({ publication: fresh, runs: failing }, NOW, 0, HOUR);
      const neverPublished = staleness({ publication: null, runs: failing }, NOW, 0, HOUR);

      // Assess
      expect(withPublication?.since).toBe('2026-12-01T09:00:00.000Z');
      expect(neverPublished?.since).toBe('2026-12-01T11:30:00.000Z');
      expect(staleness({ publication: null, runs: [] }, NOW, 0, HOUR)).toBeUndefined();
    });
  });

  it('gives the earlier since when both rules hold, and both reasons', () => {
    // Prepare
    const report = {
      publication: published('Sun, 01 Nov 2026 00:00:00 +0000'),
      runs: [run({ id: 'ok', startedAt: '2026-11-30T00:00:00.000Z', finishedAt: '2026-11-30T00:00:00.000Z', state: 'succeeded' })],
    };

    // Act
    const stale = staleness(report, NOW, 14 * DAY, HOUR);

    // Assess
    expect(stale?.since).toBe('2026-11-15T00:00:00.000Z');
    expect(stale?.reason).toBe(
      "upstream's metadata was last updated 2026-11-01T00:00:00.000Z, more than 14 days ago; " +
        'no check of upstream has succeeded since 2026-11-30T00:00:00.000Z: 3 sync intervals of 1 hour have passed',
    );
  });
});

describe('Function: publicationMode', () => {
  it.each([
    [['streams/v1/index.sjson', 'streams/v1/index.json'], 'verbatim'],
    [['keyring.asc', 'keyring.gpg', 'streams/v1/index.sjson', 'upstream/streams/v1/index.sjson'], 're-signed'],
    [['keyring.asc', 'keyring.gpg', 'sources/maas/streams/v1/index.sjson', 'sources/site/streams/v1/index.sjson', 'streams/v1/index.sjson'], 'merged'],
  ])('%j → %s', (files, mode) => {
    expect(publicationMode(files)).toBe(mode);
  });
});
