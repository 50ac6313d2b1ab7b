/**
 * What the API Gateway handlers load: neither the public API nor the uploads
 * route may pull in OpenPGP or the sync engine (their cold start, and what a
 * request-facing function could do). Follows the value imports (not
 * `import type`, which bundling drops) of the source, from each handler.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
// `import … from '…'`, `export … from '…'` and `import('…')`, except `import type` / `export type`.
const IMPORT = /(?:^|\n)\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Every module `entry` loads, relative files by path and packages by name. */
function moduleGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(IMPORT)) {
      const specifier = (match[1] ?? match[2])!;
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier));
      else seen.add(specifier);
    }
  };
  visit(resolve(ROOT, entry));
  return seen;
}

describe('API Gateway handlers', () => {
  it.each(['functions/handlers/api.ts', 'functions/handlers/upload.ts'])('%s loads neither openpgp nor the sync engine', (entry) => {
    const graph = [...moduleGraph(entry)];
    expect(graph.filter((module) => module === 'openpgp' || module.startsWith('openpgp/'))).toEqual([]);
    expect(graph.filter((module) => module.endsWith('/functions/core/engine.ts') || module.endsWith('/functions/core/pgp.ts'))).toEqual([]);
    // The walk does reach what the handler is about.
    expect(graph.some((module) => module.endsWith('/functions/adapters/cloud.ts'))).toBe(true);
  });

  it('sees a value import of the engine where there is one (the plan handler)', () => {
    expect([...moduleGraph('functions/handlers/plan.ts')].some((module) => module.endsWith('/functions/core/engine.ts'))).toBe(true);
  });
});
