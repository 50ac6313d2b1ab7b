import { describe, expect, it } from 'vitest';
import { leftoverPrunePaths, pruneDue, retainGenerations, unretainedMetadataKeys } from '../../functions/core/retention.ts';

const HOUR = 60 * 60 * 1_000;
const NOW = new Date('2026-03-01T12:00:00Z');

/** Publications newest first, each published `hoursAgo` before NOW. */
function published(...generations: [number, number][]) {
  return generations.map(([generation, hoursAgo]) => ({ generation, publishedAt: new Date(NOW.getTime() - hoursAgo * HOUR).toISOString() }));
}

describe('Function: retainGenerations', () => {
  it('retires a replaced generation once its successor has been published longer than the grace period', () => {
    // Prepare
    const publications = published([3, 1], [2, 5], [1, 10]);

    // Act
    const decision = retainGenerations({
      publications,
      channels: [{ generation: 3, history: [2, 1] }],
      keepGenerations: 1,
      pruneGraceMs: 2 * HOUR,
      now: NOW,
    });

    // Assess: 2 was replaced 1 h ago (within grace), 1 was replaced 5 h ago
    expect(decision).toEqual({ retained: [3, 2], retired: [1] });
  });

  it('keeps as many of each channel\'s earlier generations as keepGenerations asks, whatever their age', () => {
    // Prepare
    const publications = published([4, 10], [3, 20], [2, 30], [1, 40]);

    // Act
    const decision = retainGenerations({
      publications,
      channels: [{ generation: 4, history: [3, 2, 1] }],
      keepGenerations: 2,
      pruneGraceMs: HOUR,
      now: NOW,
    });

    // Assess
    expect(decision).toEqual({ retained: [4, 3], retired: [2, 1] });
  });

  it('keeps the generation every channel points at, even one older than a retired generation', () => {
    // Prepare
    const publications = published([3, 10], [2, 20], [1, 30]);

    // Act
    const decision = retainGenerations({
      publications,
      channels: [
        { generation: 3, history: [] },
        { generation: 1, history: [] },
      ],
      keepGenerations: 1,
      pruneGraceMs: HOUR,
      now: NOW,
    });

    // Assess
    expect(decision).toEqual({ retained: [3, 1], retired: [2] });
  });

  it('never retires the newest generation, which nothing has replaced, even with no channel', () => {
    // Act
    const decision = retainGenerations({ publications: published([7, 1_000]), channels: [], keepGenerations: 1, pruneGraceMs: 0, now: NOW });

    // Assess
    expect(decision).toEqual({ retained: [7], retired: [] });
  });
});

describe('Function: unretainedMetadataKeys', () => {
  it('returns the staged metadata keys of every run but the retained publications\'', () => {
    // Prepare
    const stagedKeys = [
      'meta/3-run-c/streams/v1/index.sjson',
      'meta/2-run-b/streams/v1/index.sjson',
      'meta/2-run-failed/streams/v1/index.sjson',
      'meta/1-run-a/streams/v1/products.sjson',
    ];

    // Act
    const doomed = unretainedMetadataKeys(stagedKeys, [
      { generation: 3, runId: 'run-c' },
      { generation: 2, runId: 'run-b' },
    ]);

    // Assess: a failed run's staging under a retained generation's number goes too
    expect(doomed).toEqual(['meta/2-run-failed/streams/v1/index.sjson', 'meta/1-run-a/streams/v1/products.sjson']);
  });

  it('returns every key when no publication is retained', () => {
    // Act
    const doomed = unretainedMetadataKeys(['meta/1-a/x', 'meta/2-b/y'], []);

    // Assess
    expect(doomed).toEqual(['meta/1-a/x', 'meta/2-b/y']);
  });
});

describe('Function: pruneDue', () => {
  it.each([
    [1, false, false],
    [2, false, true],
    [1, true, true],
  ])('with %i publications and run files left: %s, prunes: %s', (publications, runFilesLeft, due) => {
    expect(pruneDue({ publications, runFilesLeft })).toBe(due);
  });
});

describe('Function: leftoverPrunePaths', () => {
  it('keeps what is referenced again or recorded again, and lists each of the rest once', () => {
    // Act
    const leftovers = leftoverPrunePaths(['b', 'a', 'kept', 'fetched-again', 'a'], new Set(['kept']), new Set(['fetched-again']));

    // Assess
    expect(leftovers).toEqual(['a', 'b']);
  });
});
