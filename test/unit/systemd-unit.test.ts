/**
 * deploy/systemd/skystreams.service: systemd itself accepts it, it keeps the
 * hardening the README promises, and the command line it runs, with the flags
 * of its environment file, really mirrors and serves.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveSyntheticUpstream } from '../../functions/demo/synthetic-upstream.ts';
import { demoItemContent, demoProducts } from '../support/demo-mirror.ts';
import { generateSigningKey, synthesizeTree } from '../support/signed-upstream.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const UNIT_FILE = join(REPO_ROOT, 'deploy/systemd/skystreams.service');
const ENV_FILE = join(REPO_ROOT, 'deploy/systemd/skystreams.env');
/** The paths the unit names on a server, which the README tells the operator to create. */
const INSTALLED = { node: '/opt/node/bin/node', checkout: '/opt/skystreams', envFile: '/etc/skystreams/skystreams.env' };

const systemdAnalyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const noSystemdAnalyze = systemdAnalyze.error ? `systemd-analyze is not installed (${systemdAnalyze.error.message})` : undefined;

let unitText: string;
let envText: string;

beforeAll(async () => {
  unitText = await readFile(UNIT_FILE, 'utf8');
  envText = await readFile(ENV_FILE, 'utf8');
});

/** The unit as it would be installed on this host: this Node, this checkout, this environment file. */
function forThisHost(unit: string): string {
  return unit.replaceAll(INSTALLED.node, process.execPath).replaceAll(INSTALLED.checkout, REPO_ROOT).replaceAll(INSTALLED.envFile, ENV_FILE);
}

/** Every `Key=value` line of one section, in order (a key may repeat). */
function directives(unit: string, section: string): [string, string][] {
  const body = unit.split(/^\[/m).find((part) => part.startsWith(`${section}]`)) ?? '';
  return body
    .split('\n')
    .slice(1)
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => {
      const at = line.indexOf('=');
      return [line.slice(0, at), line.slice(at + 1)];
    });
}

function service(unit: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const [key, value] of directives(unit, 'Service')) map.set(key, [...(map.get(key) ?? []), value]);
  return map;
}

/** `KEY=value` lines of an EnvironmentFile (no quoting is used in ours). */
function environment(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1).trim()]),
  );
}

/** ExecStart's words with systemd's expansion: `${NAME}` is one word, `$NAME` its value split at spaces. */
function commandLine(execStart: string, env: Record<string, string>): string[] {
  return execStart
    .trim()
    .split(/\s+/)
    .flatMap((word) => {
      const whole = /^\$\{([A-Z_]+)\}$/.exec(word);
      if (whole) return [env[whole[1]!] ?? ''];
      const split = /^\$([A-Z_]+)$/.exec(word);
      if (split) return (env[split[1]!] ?? '').split(/\s+/).filter(Boolean);
      return [word];
    });
}

async function verify(unit: string): Promise<{ status: number | null; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'skystreams-unit-'));
  try {
    await writeFile(join(dir, 'skystreams.service'), unit);
    const result = spawnSync('systemd-analyze', ['verify', '--man=no', join(dir, 'skystreams.service')], { encoding: 'utf8' });
    return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('Unit: deploy/systemd/skystreams.service', () => {
  describe.skipIf(noSystemdAnalyze)(`systemd-analyze verify${noSystemdAnalyze ? ` (skipped: ${noSystemdAnalyze})` : ''}`, () => {
    it('reports no problem with the unit, its paths set for this host', async () => {
      // Act
      const result = await verify(forThisHost(unitText));

      // Assess
      expect(result.output).toBe('');
      expect(result.status).toBe(0);
    });

    it('would report a directive systemd cannot parse, and a Node that is not there', async () => {
      // Prepare: the checks above are worth something only if these fail.
      const misspelled = forThisHost(unitText).replace('RestrictRealtime=yes', 'RestrictRealtime=maybe');
      const noNode = unitText.replaceAll(INSTALLED.checkout, REPO_ROOT).replace(INSTALLED.node, join(REPO_ROOT, 'no-such-node'));

      // Act
      const parsed = await verify(misspelled);
      const missing = await verify(noNode);

      // Assess
      expect(parsed.output).toContain('Failed to parse boolean value, ignoring: maybe');
      expect(missing.output).toContain('no-such-node');
      expect(missing.status).not.toBe(0);
    });
  });

  it('runs as its own user, writes only its state directory, and keeps the usual hardening', () => {
    // Act
    const directivesOf = service(unitText);

    // Assess
    const expected: Record<string, string> = {
      User: 'skystreams',
      Group: 'skystreams',
      StateDirectory: 'skystreams',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      NoNewPrivileges: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      CapabilityBoundingSet: '',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectControlGroups: 'yes',
      RestrictNamespaces: 'yes',
      RestrictSUIDSGID: 'yes',
      LockPersonality: 'yes',
      SystemCallArchitectures: 'native',
      Restart: 'on-failure',
    };
    for (const [key, value] of Object.entries(expected)) expect(directivesOf.get(key), key).toEqual([value]);
    expect(directivesOf.get('SystemCallFilter')).toContain('@system-service');
    expect(directivesOf.get('ReadWritePaths')).toBeUndefined();
    // Node's JIT compiler needs writable, executable memory.
    expect(directivesOf.get('MemoryDenyWriteExecute')).toBeUndefined();
  });

  it('starts Node by an absolute path, never npx, on the checkout, with the state directory as data dir', () => {
    // Act
    const [execStart, ...others] = service(unitText).get('ExecStart') ?? [];
    const words = commandLine(execStart!, {});

    // Assess
    expect(others).toEqual([]);
    expect(words[0]).toBe(INSTALLED.node);
    expect(words[0]).toMatch(/^\//);
    expect(words[0]).not.toMatch(/npx/);
    expect(words.slice(1, 5)).toEqual([`${INSTALLED.checkout}/bin/skystreams.mjs`, 'local', '--data-dir', '']);
    expect(execStart).toContain('--data-dir ${STATE_DIRECTORY}');
    expect(service(unitText).get('EnvironmentFile')).toEqual([INSTALLED.envFile]);
  });

  describe('the command line it runs, with its environment file', () => {
    let upstream: { baseUrl: string; close(): Promise<void> };
    let dir: string;
    let keyringFile: string;
    let child: ChildProcess | undefined;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'skystreams-unit-run-'));
      const key = await generateSigningKey('skystreams unit test');
      keyringFile = join(dir, 'keyring.gpg');
      await writeFile(keyringFile, key.publicKeyring);
      upstream = await serveSyntheticUpstream(await synthesizeTree(demoProducts(), { key, itemContent: demoItemContent }), join(dir, 'upstream'));
    }, 60_000);

    afterAll(async () => {
      if (child && child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      await upstream?.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('serves a mirror holding the selected images and the bootloaders, and stops cleanly on SIGTERM', async () => {
      // Prepare: the demo upstream instead of images.maas.io, on loopback; everything else as the unit says.
      const [execStart] = service(forThisHost(unitText)).get('ExecStart')!;
      const [node, ...args] = commandLine(execStart!, { ...environment(envText), STATE_DIRECTORY: join(dir, 'state') });
      const overrides = ['--source', upstream.baseUrl, '--keyring', keyringFile, '--host', '127.0.0.1', '--port', '0'];

      // Act
      child = spawn(node!, [...args, ...overrides], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setInterval(() => {
          const match = /at (http:\/\/\S+\/)/.exec(output);
          if (match) {
            clearInterval(timer);
            resolve(match[1]!);
          }
        }, 50);
        child!.once('exit', (code) => {
          clearInterval(timer);
          reject(new Error(`skystreams local exited with ${code}: ${output}`));
        });
      });
      let status: { publication: unknown; runs: { state: string }[] } = { publication: null, runs: [] };
      for (let tries = 0; tries < 600 && !status.publication && status.runs[0]?.state !== 'failed'; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        status = (await (await fetch(`${url}api/v1/status`)).json()) as typeof status;
      }
      const catalog = (await (await fetch(`${url}api/v1/images`)).json()) as { images: { os?: string; release?: string }[] };
      child.kill('SIGTERM');
      const [exitCode, signal] = (await once(child, 'exit')) as [number | null, string | null];

      // Assess
      expect(status.runs[0]?.state, output).toBe('succeeded');
      const oses = new Set(catalog.images.map((image) => image.os));
      expect(oses).toContain('grub-efi-signed');
      expect(oses).toContain('pxelinux');
      expect(catalog.images.filter((image) => image.os === 'ubuntu').map((image) => image.release)).toContain('noble');
      expect({ exitCode, signal }).toEqual({ exitCode: 0, signal: null });
    }, 90_000);
  });
});
