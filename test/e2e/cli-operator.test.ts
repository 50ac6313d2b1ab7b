import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYNC_LOCK } from '../../functions/core/engine.ts';
import { LockHeldError } from '../../functions/core/errors.ts';
import { EXIT_CODES } from '../../functions/local/options.ts';
import { cli, startServing } from '../support/cli.ts';
import { startDemoMirror, type DemoMirror } from '../support/demo-mirror.ts';

let mirror: DemoMirror;
/** Stands for `--data-dir <the demo mirror's directory>`, known only once it is synced. */
const DATA_DIR = '<data-dir>';

beforeAll(async () => {
  mirror = await startDemoMirror();
}, 120_000);

afterAll(async () => {
  await mirror?.close();
});

/** The commands `skystreams --help` lists, `help` aside. */
async function commands(): Promise<string[]> {
  const { stdout } = await cli(['--help']);
  const section = stdout.split('Commands:\n')[1]!.split('\n\n')[0]!;
  return [...section.matchAll(/^ {2}([a-z-]+)/gm)].map((match) => match[1]!).filter((name) => name !== 'help');
}

describe('CLI: help', () => {
  it('lists the exit codes and examples at the top level, and exits 0', async () => {
    // Act
    const help = await cli(['--help']);

    // Assess
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/\nExamples:\n {2}\$ skystreams /);
    for (const { code, meaning } of Object.values(EXIT_CODES)) expect(help.stdout).toContain(`  ${code}  ${meaning}`);
  });

  it('gives every command examples that run that command', async () => {
    // Prepare
    const names = await commands();
    expect(names).toEqual(expect.arrayContaining(['sync', 'serve', 'local', 'status', 'verify', 'init']));

    for (const name of names) {
      // Act
      const help = await cli([name, '--help']);

      // Assess
      expect(help.code, name).toBe(0);
      const examples = help.stdout.split('\nExamples:\n')[1];
      expect(examples, `${name} --help has no Examples`).toBeDefined();
      expect(examples!.trimEnd().split('\n').every((line) => line.startsWith(`  $ skystreams ${name}`)), `${name}: ${examples}`).toBe(true);
    }
  });
});

describe('CLI: exit codes', () => {
  it.each([
    ['an unknown option', ['status', DATA_DIR, '--bogus'], /unknown option '--bogus'/],
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['an option missing its value', ['status', DATA_DIR, '--runs'], /option '--runs <n>' argument missing/],
    ['a bad value', ['status', DATA_DIR, '--runs', 'many'], /--runs: expected a whole number/],
  ])('exits %s with 2 (usage) and says what is wrong', async (_name, args, message) => {
    // Act
    const result = await cli(args.flatMap((arg) => (arg === DATA_DIR ? ['--data-dir', mirror.dataDir] : [arg])));

    // Assess
    expect(result.code).toBe(EXIT_CODES.usage.code);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
  });

  it('exits 3 (locked) when another sync holds the lock, and leaves the publication as it was', async () => {
    // Prepare
    const before = await mirror.backend.catalog.getCurrent();
    const lease = await mirror.backend.catalog.acquireLock(SYNC_LOCK, 'another-run', 60_000, new Date());

    try {
      // Act
      const result = await cli(['sync', '--data-dir', mirror.dataDir, '--source', mirror.upstreamUrl, '--keyring', mirror.keyringFile]);

      // Assess
      expect(result.code).toBe(EXIT_CODES.locked.code);
      expect(result.stderr).toMatch(/another sync run \(another-run\) holds the lock until/);
      expect(await mirror.backend.catalog.getCurrent()).toEqual(before);
      await expect(mirror.backend.catalog.acquireLock(SYNC_LOCK, 'a-third-run', 60_000, new Date())).rejects.toThrow(LockHeldError);
    } finally {
      await mirror.backend.catalog.releaseLock(lease);
    }
  });
});

describe('CLI: status', () => {
  it('prints the publication and a table of runs', async () => {
    // Act
    const result = await cli(['status', '--data-dir', mirror.dataDir]);

    // Assess
    expect(result.code).toBe(0);
    const [summary, mode, blank, header, ...rows] = result.stdout.trimEnd().split('\n');
    const publication = (await mirror.backend.catalog.getCurrent())!;
    expect(summary).toBe(
      `generation ${publication.generation}: ${publication.itemCount} items, 156.5 KiB, published ${publication.publishedAt} (upstream updated ${publication.upstreamUpdated})`,
    );
    expect(mode).toBe('mode: verbatim');
    expect(blank).toBe('');
    expect(header).toMatch(/^STARTED +STATE +COPIED +PRESENT +DURATION +GENERATION +ERROR$/);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(new RegExp(`^${mirror.run.startedAt} +succeeded +${mirror.run.itemsCopied} \\(156\\.5 KiB\\) +0 +\\d+s +1$`));
    // Columns line up: each cell starts where its header does.
    expect(rows[0]!.indexOf('succeeded')).toBe(header!.indexOf('STATE'));
  });

  it('prints the same report as the API with --json', async () => {
    // Act
    const result = await cli(['status', '--data-dir', mirror.dataDir, '--json']);

    // Assess
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(await (await fetch(`${mirror.url}api/v1/status`)).json());
  });
});

describe('CLI: local', () => {
  it('serves the status page, whose MAAS command names the keyring the sync checks upstream with', async () => {
    // Prepare
    const dataDir = await mkdtemp(join(tmpdir(), 'skystreams-local-page-'));
    const local = await startServing(['local', '--data-dir', dataDir, '--source', mirror.upstreamUrl, '--keyring', mirror.keyringFile, '--filter', 'arch=amd64', '--max', '1']);

    try {
      // Act
      await expect
        .poll(async () => ((await (await fetch(`${local.url}api/v1/status`)).json()) as { publication: unknown }).publication, { timeout: 30_000 })
        .not.toBeNull();
      const page = await (await fetch(local.url)).text();

      // Assess
      expect(page).toContain(`url=<span data-mirror-url>${local.url}</span></span> <span class="arg">keyring_filename=${mirror.keyringFile}</span></code>`);
      expect(page).toMatch(/<table id="catalog-table">/);
    } finally {
      const exited = once(local.process, 'exit');
      local.process.kill('SIGTERM');
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
