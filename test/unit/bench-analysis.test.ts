/**
 * The arithmetic the benchmarks report with: the least-squares line behind
 * the catalog-scale verdict and the CPU profile summary behind the sync profile.
 */
import { describe, expect, it } from 'vitest';
import { fitLine } from '../../bench/plan-scale.ts';
import { summarizeCpuProfile } from '../../bench/profile-sync.ts';

describe('Function: fitLine', () => {
  it('recovers the slope and intercept of points on a line, with R² 1', () => {
    // Act
    const fit = fitLine([1_000, 10_000, 100_000].map((n) => [n, 12 + 0.011 * n] as const));

    // Assess
    expect(fit.slope).toBeCloseTo(0.011, 9);
    expect(fit.intercept).toBeCloseTo(12, 6);
    expect(fit.r2).toBeCloseTo(1, 9);
  });

  it('gives R² below 1 for points that bend away from a line', () => {
    // Act
    const fit = fitLine([1, 2, 3, 4, 5].map((n) => [n, n * n] as const));

    // Assess
    expect(fit.slope).toBeCloseTo(6, 9);
    expect(fit.r2).toBeLessThan(0.99);
  });
});

describe('Function: summarizeCpuProfile', () => {
  it('ranks functions by self time, merging nodes of the same function and place', () => {
    // Prepare: 10 samples over 10 ms; `update` appears under two callers.
    const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });
    const profile = {
      startTime: 0,
      endTime: 10_000,
      samples: Array.from({ length: 10 }, () => 1),
      nodes: [
        { id: 1, callFrame: frame('(idle)'), hitCount: 2 },
        { id: 2, callFrame: frame('update', 'node:internal/crypto/hash', 185), hitCount: 3 },
        { id: 3, callFrame: frame('update', 'node:internal/crypto/hash', 185), hitCount: 4 },
        { id: 4, callFrame: frame('add', 'file:///work/functions/adapters/fs/fs-object-store.ts?x=1', 300), hitCount: 1 },
      ],
    };

    // Act
    const lines = summarizeCpuProfile(profile).split('\n');

    // Assess
    expect(lines[0]).toBe('profile 0.01 s, 10 samples');
    expect(lines[1]).toMatch(/^ 70\.0 %\s+0\.01 s  update hash:186$/);
    expect(lines[2]).toMatch(/^ 20\.0 %\s+0\.00 s  \(idle\)$/);
    expect(lines[3]).toMatch(/add fs-object-store\.ts:301$/);
  });
});
