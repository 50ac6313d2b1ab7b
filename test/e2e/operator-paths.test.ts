/**
 * The paths an operator walks after the first sync, on both backends: the
 * publishing mode is the mirror's state (commands follow it, a change takes
 * --switch-mode), a selection MAAS cannot boot is a warning that stays with
 * the run, --on-publish runs after each publication, and status --check
 * tells monitoring when the mirror is stale.
 */
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initCloudResources } from '../../functions/adapters/cloud.ts';
import { SIGNING_KEYS_FORMAT } from '../../functions/core/signing-keys.ts';
import { cli } from '../support/cli.ts';
import { manifestText, rootTgz } from '../support/image-files.ts';
import { useStandins } from '../support/global-standins.ts';
import { useSignedFixtureUpstream } from '../support/mirror.ts';

const standins = useStandins();

interface Mirror {
  /** The backend flags of a fresh mirror. */
  flags: string[];
  env: Record<string, string>;
}

const backends: [string, (work: string) => Promise<Mirror>][] = [
  ['embedded', async (work) => ({ flags: ['--data-dir', join(work, `mirror-${randomUUID().slice(0, 8)}`)], env: {} })],
  [
    'cloud',
    async () => {
      const { env, secretsManagerEndpoint, region, s3Endpoint, dynamodbEndpoint } = standins();
      const name = `paths-${randomUUID().slice(0, 18)}`;
      await initCloudResources({ bucket: name, table: name, s3Endpoint, dynamodbEndpoint });
      const secrets = new SecretsManagerClient({ endpoint: secretsManagerEndpoint, region, credentials: { accessKeyId: 'standin', secretAccessKey: 'standin' } });
      await secrets.send(new CreateSecretCommand({ Name: name, SecretString: JSON.stringify({ format: SIGNING_KEYS_FORMAT }) }));
      return { flags: ['--bucket', name, '--table', name, '--signing-secret', name, '--s3-endpoint', s3Endpoint, '--dynamodb-endpoint', dynamodbEndpoint], env };
    },
  ],
];

interface ImagesJson {
  generation: number | null;
  images: { product: string; os?: string; release?: string; arch?: string; subarch?: string; uploaded: boolean; versions: { version: string; bytes: number; items: number; pinned: boolean }[] }[];
}

interface StatusJson {
  publication: { generation: number } | null;
  mode: string | null;
  runs: { id: string; state: string; warnings?: string[]; modeSwitch?: { from: string; to: string } }[];
  stale?: { since: string; reason: string };
}

describe.each(backends)('CLI operator paths (%s backend)', (_name, freshMirror) => {
  const fixture = useSignedFixtureUpstream('operator-paths');
  const source = () => ['--source', fixture().upstream.baseUrl, '--keyring', fixture().keyring];
  const status = async (mirror: Mirror): Promise<StatusJson> => JSON.parse((await cli(['status', ...mirror.flags, '--json'], mirror.env)).stdout) as StatusJson;

  it('keeps a re-signed mirror re-signed when a later command names no mode (remove-upload), and refuses one that names another until --switch-mode', { timeout: 240_000 }, async () => {
    // Prepare: a re-signed publication with an uploaded image in it.
    const mirror = await freshMirror(fixture().work);
    const select = ['--filter', 'arch=amd64', '--filter', 'release~^(noble)?$', '--max', '1'];
    const image = join(fixture().work, `image-${randomUUID().slice(0, 8)}`);
    await writeFile(`${image}.tgz`, rootTgz());
    await writeFile(`${image}.manifest`, manifestText());
    const upload = await cli(
      ['upload', ...mirror.flags, ...source(), ...select, '--resign', '--os', 'centos', '--release', 'site9', '--arch', 'amd64', '--subarch', 'generic', '--title', 'CentOS 9 (site)',
        '--file', `root-tgz=${image}.tgz`, '--file', `manifest=${image}.manifest`],
      mirror.env,
    );
    expect(upload.code).toBe(0);
    const [product, version] = /stored (\S+) version (\S+):/.exec(upload.stdout)!.slice(1);
    const noble = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
    const pinned = await cli(['pin', noble, '20250709', ...mirror.flags], mirror.env);
    const images = JSON.parse((await cli(['images', '--json', ...mirror.flags], mirror.env)).stdout) as ImagesJson;
    const imagesText = await cli(['images', ...mirror.flags], mirror.env);

    // Act: remove-upload without --resign republishes, in the recorded mode.
    const removed = await cli(['remove-upload', product!, version!, ...mirror.flags, ...source(), ...select], mirror.env);
    const afterRemoval = await status(mirror);
    const unsigned = await cli(['sync', ...mirror.flags, '--source', fixture().upstream.baseUrl, '--no-verify'], mirror.env);
    const afterRefusal = await status(mirror);
    const switched = await cli(['sync', ...mirror.flags, ...source(), ...select, '--switch-mode', 'verbatim'], mirror.env);
    const afterSwitch = await status(mirror);

    // Assess: images names the ids the other commands take, with the pin and the upload.
    expect(pinned.code).toBe(0);
    expect(images.generation).toBe(1);
    expect(images.images.find((image) => image.product === product)).toMatchObject({ os: 'centos', release: 'site9', arch: 'amd64', subarch: 'generic', uploaded: true, versions: [{ version, pinned: false, items: 2 }] });
    expect(images.images.find((image) => image.product === noble)).toMatchObject({ os: 'ubuntu', release: 'noble', uploaded: false, versions: [{ version: '20250709', pinned: true }] });
    expect(images.images.every((image) => image.versions.every((v) => v.bytes > 0))).toBe(true);
    const uploadLine = imagesText.stdout.split('\n').find((line) => line.startsWith(`${product!} `));
    expect(uploadLine?.split(/ {2,}/)).toEqual([product, 'centos site9', 'amd64/generic', 'stable', version, expect.stringMatching(/B$/), 'uploaded']);
    expect(imagesText.stdout).toMatch(/20250709 \*/);
    // The republication is re-signed (it serves the mirror's keyring), with no switch recorded.
    expect(removed.code).toBe(0);
    expect(removed.stdout).toMatch(/published without it in generation 2/);
    expect(afterRemoval).toMatchObject({ publication: { generation: 2 }, mode: 're-signed' });
    expect(afterRemoval.runs[0]).toMatchObject({ state: 'succeeded' });
    expect(afterRemoval.runs.some((run) => run.modeSwitch)).toBe(false);
    // Refused, naming the recorded mode and the switch, with nothing published or recorded.
    expect(unsigned.code).toBe(2);
    expect(unsigned.stderr).toMatch(/this mirror publishes its own re-signed metadata .*--no-verify would publish upstream's metadata verbatim.*add --switch-mode verbatim/);
    expect(afterRefusal.publication).toEqual(afterRemoval.publication);
    expect(afterRefusal.runs.map((run) => run.id)).toEqual(afterRemoval.runs.map((run) => run.id));
    // The explicit switch publishes verbatim at once (upstream unchanged) and is recorded with its run.
    expect(switched.code).toBe(0);
    expect(afterSwitch).toMatchObject({ publication: { generation: 3 }, mode: 'verbatim' });
    expect(afterSwitch.runs[0]).toMatchObject({ state: 'succeeded', modeSwitch: { from: 're-signed', to: 'verbatim' } });
    const text = await cli(['status', ...mirror.flags], mirror.env);
    expect(text.stdout).toContain('mode: verbatim');
    expect(text.stdout).toContain(`run ${afterSwitch.runs[0]!.id} switched the publishing mode from re-signed to verbatim`);
  });

  it('refuses --resign on a verbatim mirror, changing nothing', async () => {
    // Prepare
    const mirror = await freshMirror(fixture().work);
    expect((await cli(['sync', ...mirror.flags, ...source(), '--filter', 'arch=amd64', '--max', '1'], mirror.env)).code).toBe(0);
    const before = await status(mirror);

    // Act
    const resign = await cli(['sync', ...mirror.flags, ...source(), '--filter', 'arch=amd64', '--max', '1', '--resign'], mirror.env);

    // Assess
    expect(resign.code).toBe(2);
    expect(resign.stderr).toMatch(/this mirror publishes upstream's metadata verbatim .*--resign would publish .*add --switch-mode re-signed/);
    expect(await status(mirror)).toEqual(before);
  });

  it('warns, without failing, when the selection drops every bootloader, naming the filter; the warning stays with the run', async () => {
    // Prepare
    const mirror = await freshMirror(fixture().work);

    // Act
    const sync = await cli(['sync', ...mirror.flags, ...source(), '--filter', 'release~^(jammy|noble)$', '--max', '1'], mirror.env);
    const after = await status(mirror);
    const text = await cli(['status', ...mirror.flags], mirror.env);

    // Assess
    expect(sync.code).toBe(0);
    const warnings = sync.stderr.split('\n').filter((line) => line.includes('"type":"warning"')).map((line) => (JSON.parse(line) as { message: string }).message);
    expect(warnings).toEqual([
      expect.stringMatching(/^no bootloader selected for amd64 .*filter "release~\^\(jammy\|noble\)\$" drops /),
      expect.stringMatching(/^no bootloader selected for arm64 .*grub-efi:uefi:arm64/),
    ]);
    expect(after.runs[0]).toMatchObject({ state: 'succeeded', warnings });
    expect(text.stdout).toContain(`warning (run ${after.runs[0]!.id}): no bootloader selected for arm64`);
  });

  it('runs --on-publish after a publication with what it changed, and not when nothing was published', async () => {
    // Prepare
    const mirror = await freshMirror(fixture().work);
    const out = join(fixture().work, `hook-${randomUUID().slice(0, 8)}.txt`);
    const hook = `printf '%s %s %s\\n%s\\n' "$SKYSTREAMS_CHANNEL" "$SKYSTREAMS_GENERATION" "$SKYSTREAMS_PREVIOUS_GENERATION" "$SKYSTREAMS_ADDED" >> ${out}`;

    // Act
    const first = await cli(['sync', ...mirror.flags, ...source(), '--filter', 'arch=amd64', '--filter', 'release~^(noble)?$', '--max', '1', '--on-publish', hook], mirror.env);
    const again = await cli(['sync', ...mirror.flags, ...source(), '--filter', 'arch=amd64', '--filter', 'release~^(noble)?$', '--max', '1', '--on-publish', hook], mirror.env);

    // Assess: one run of the hook, for generation 1, listing the added product versions.
    expect(first.code).toBe(0);
    expect(again.code).toBe(0);
    const [head, ...added] = (await readFile(out, 'utf8')).trimEnd().split('\n');
    expect(head).toBe('stable 1 ');
    expect(added).toContain('com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04 20250709');
    expect(added.every((line) => /^\S+ \S+$/.test(line))).toBe(true);
  });

  it('status --check exits 1 once upstream is older than --stale-after, and 0 while fresh or with the rule off', async () => {
    // Prepare
    const mirror = await freshMirror(fixture().work);
    expect((await cli(['sync', ...mirror.flags, ...source(), '--filter', 'arch=amd64', '--max', '1'], mirror.env)).code).toBe(0);

    // Act
    const fresh = await cli(['status', ...mirror.flags, '--check'], mirror.env);
    const stale = await cli(['status', ...mirror.flags, '--check', '--stale-after', '1ms'], mirror.env);
    const off = await cli(['status', ...mirror.flags, '--check', '--stale-after', '0'], mirror.env);

    // Assess
    expect(fresh.code).toBe(0);
    expect(fresh.stdout).not.toMatch(/STALE/);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/^skystreams: stale since \S+: upstream's metadata was last updated \S+, more than 1 ms ago/);
    expect(stale.stdout).toMatch(/^STALE since /m);
    expect(off.code).toBe(0);
    expect(off.stdout).not.toMatch(/STALE/);
  });
});
