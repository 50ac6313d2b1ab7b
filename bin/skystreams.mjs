#!/usr/bin/env node
// Node (>= 22.18) runs the TypeScript sources itself by stripping their types,
// so `npx skystreams` works right after `npm ci` with no build step.
import './node-version.mjs';

await import('../functions/local/cli.ts');
