/**
 * Custom images on the embedded backend, from the CLI as an operator runs
 * it: a re-signed mirror of the signed captures, then `skystreams upload` of
 * a multi-file and a single-file image, then `serve`, read as a client reads
 * it (test/support/resigned-mirror.ts: signatures with /keyring.gpg, MAAS's
 * model rules, every listed item fetched and hashed); then the same on the
 * cloud backend (S3 + DynamoDB + Secrets Manager stand-ins).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { initCloudResources } from '../../functions/adapters/cloud.ts';
import { SIGNING_KEYS_FORMAT } from '../../functions/core/signing-keys.ts';
import { useStandins } from '../support/global-standins.ts';
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CUSTOM_CONTENT_IDS } from '../../functions/core/custom-images.ts';
import { cli as runCli, startServing } from '../support/cli.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';
import { bzImageKernel, newcInitrd, rootImageGz, rootTgz, squashfsImage } from '../support/image-files.ts';
import { maasProductModel } from '../support/maas-models.ts';
import { selectedPaths, useSignedFixtureUpstream } from '../support/mirror.ts';
import { gpgvProblems, readResignedMirror } from '../support/resigned-mirror.ts';

const cli = (...args: string[]) => runCli(args);
const execFileAsync = promisify(execFile);
const standins = useStandins();
const MULTI_PRODUCT = 'com.skystreams.custom:v3:custom:noble-site:amd64:generic';
const SINGLE_PRODUCT = 'com.skystreams.custom:v3:centos:mycentos9:amd64:generic';

/** An image's files on disk, as packer leaves them. */
async function imageFiles(dir: string): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true });
  const files: Record<string, string> = {};
  const write = async (name: string, bytes: Uint8Array | string) => {
    files[name] = join(dir, name);
    await writeFile(files[name], bytes);
  };
  await write('vmlinuz', bzImageKernel(4096));
  await write('initrd', newcInitrd(8192));
  await write('root.squashfs', squashfsImage(64 * 1024));
  await write('root.image.gz', rootImageGz(64 * 1024));
  await write('root.manifest', 'site-agent\t1.2.3\nopenssl\t3.0.13-0ubuntu3\n');
  await write('image.tgz', rootTgz(32 * 1024));
  await write('image.manifest', 'site-agent\t1.2.4\nbash\t5.1.8-6.el9\n');
  await write('esxi.dd.gz', randomBytes(1024));
  return files;
}

describe('CLI: upload', () => {
  const fixture = useSignedFixtureUpstream('upload-cli');

  it('publishes a multi-file and a single-file image in the re-signed stream, each item served as hashed, and MAAS’s models accept it', async () => {
    const { work, keyring, upstream } = fixture();
    const dataDir = join(work, 'mirror');
    const syncFlags = ['--data-dir', dataDir, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1', '--resign'];
    expect((await cli('sync', ...syncFlags)).code).toBe(0);
    const files = await imageFiles(join(work, 'images'));

    const multi = await cli(
      'upload', ...syncFlags,
      '--os', 'custom', '--release', 'noble-site', '--arch', 'amd64', '--subarch', 'generic', '--title', 'Ubuntu 24.04 (site build)',
      '--file', `boot-kernel=${files['vmlinuz']}`, '--file', `boot-initrd=${files['initrd']}`,
      '--file', `squashfs=${files['root.squashfs']}`, '--file', `squashfs.manifest=${files['root.manifest']}`,
    );
    expect(multi.stderr).toContain('"type":"published"');
    expect(multi.code).toBe(0);
    const multiVersion = /stored \S+ version (\d{8})\b/.exec(multi.stdout)?.[1];
    expect(multi.stdout).toContain(`stored ${MULTI_PRODUCT} version ${multiVersion}: 4 files`);
    // Upstream did not change, and the image is published: no separate sync needed.
    expect(multi.stdout).toMatch(/published in generation 2/);

    // Stored only, then a plain sync publishes it.
    const single = await cli(
      'upload', ...syncFlags, '--no-sync',
      '--os', 'centos', '--release', 'mycentos9', '--arch', 'amd64', '--subarch', 'generic', '--title', 'CentOS 9 (site)', '--release-version', '9',
      '--file', `root-tgz=${files['image.tgz']}`, '--file', `manifest=${files['image.manifest']}`,
    );
    expect(single.code).toBe(0);
    expect(single.stdout).toContain('the next sync publishes it');
    const sync = await cli('sync', ...syncFlags);
    expect(sync.stderr).toContain('"type":"published"');

    // The same image again: a new version the same day, sorting after the first.
    const again = await cli(
      'upload', ...syncFlags,
      '--os', 'custom', '--release', 'noble-site', '--arch', 'amd64', '--subarch', 'generic', '--title', 'Ubuntu 24.04 (site build)',
      '--file', `boot-kernel=${files['vmlinuz']}`, '--file', `boot-initrd=${files['initrd']}`,
      '--file', `squashfs=${files['root.squashfs']}`, '--file', `manifest=${files['root.manifest']}`,
    );
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`version ${multiVersion}.01`);

    const server = await startServing(['serve', '--data-dir', dataDir]);
    try {
      const mirror = await readResignedMirror(server.url);
      expect(mirror.fetchProblems).toEqual([]);
      expect(mirror.maasProblems).toEqual([]);
      const custom = mirror.listedPaths.filter((path) => path.startsWith('custom/'));
      expect(custom).toEqual(
        [
          ...['boot-initrd', 'boot-kernel', 'squashfs', 'squashfs.manifest'].flatMap((file) => [
            `custom/custom/noble-site/amd64/generic/${multiVersion}/${file}`,
            `custom/custom/noble-site/amd64/generic/${multiVersion}.01/${file}`,
          ]),
          `custom/centos/mycentos9/amd64/generic/${multiVersion}/root-tgz`,
          `custom/centos/mycentos9/amd64/generic/${multiVersion}/root-tgz.manifest`,
        ].sort(),
      );
      // Upstream's selection is still exactly what it was.
      expect(mirror.listedPaths.filter((path) => !path.startsWith('custom/'))).toEqual(selectedPaths(loadFixtureProducts(), 'amd64', 1));
      const byContentId = new Map(mirror.products.map((doc) => [doc.content_id, doc]));
      const multiDoc = byContentId.get(CUSTOM_CONTENT_IDS['multi-file'])!;
      const singleDoc = byContentId.get(CUSTOM_CONTENT_IDS['single-file'])!;
      expect(maasProductModel('multi', multiDoc as unknown as Record<string, unknown>)).toBe('multi-file');
      expect(maasProductModel('single', singleDoc as unknown as Record<string, unknown>)).toBe('single-file');
      expect(Object.keys(multiDoc.products[MULTI_PRODUCT]!.versions)).toEqual([multiVersion, `${multiVersion}.01`]);
      expect(singleDoc.products[SINGLE_PRODUCT]).toMatchObject({ os: 'centos', release: 'mycentos9', release_title: 'CentOS 9 (site)', version: '9', label: 'stable' });
      const gpgv = await gpgvProblems(mirror);
      if (gpgv !== undefined) expect(gpgv).toEqual([]);
    } finally {
      server.process.kill('SIGTERM');
    }

    // The uploaded manifests are in the package index like mirrored ones.
    const packages = await cli('packages', 'site-agent', '--json', '--data-dir', dataDir);
    expect(packages.code).toBe(0);
    const report = JSON.stringify(JSON.parse(packages.stdout));
    expect(report).toContain(MULTI_PRODUCT);
    expect(report).toContain(SINGLE_PRODUCT);
    expect(report).toContain('1.2.4');
    expect((await cli('verify', '--data-dir', dataDir)).stdout).toMatch(/0 bad/);
    // Where the refusals below look for leftovers.
    expect(existsSync(join(dataDir, 'objects', 'uploads'))).toBe(true);
    expect(existsSync(join(dataDir, 'objects', 'items', 'custom'))).toBe(true);

    // The second build withdrawn: the next generation lists the first one only; an unknown version is refused (exit 2).
    const removed = await cli('remove-upload', MULTI_PRODUCT, `${multiVersion}.01`, ...syncFlags);
    expect(removed.stdout).toContain(`removed ${MULTI_PRODUCT} version ${multiVersion}.01: its 4 files go once no kept generation lists them`);
    expect(removed.code).toBe(0);
    const images = JSON.parse((await cli('status', '--json', '--data-dir', dataDir)).stdout) as { publication: { generation: number } };
    expect(images.publication.generation).toBe(5);
    const unknown = await cli('remove-upload', MULTI_PRODUCT, '19990101', ...syncFlags);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(`no uploaded image ${MULTI_PRODUCT} version 19990101 is stored`);
    const server2 = await startServing(['serve', '--data-dir', dataDir]);
    try {
      const after = await readResignedMirror(server2.url);
      expect(after.fetchProblems).toEqual([]);
      expect(after.maasProblems).toEqual([]);
      const multiDoc = after.products.find((doc) => doc.content_id === CUSTOM_CONTENT_IDS['multi-file'])!;
      expect(Object.keys(multiDoc.products[MULTI_PRODUCT]!.versions)).toEqual([multiVersion]);
    } finally {
      server2.process.kill('SIGTERM');
    }
  });

  it('uploads on the cloud backend too (S3 + DynamoDB, keys in Secrets Manager), served signed with every item hashed', async () => {
    const { work, keyring, upstream } = fixture();
    const { env, secretsManagerEndpoint, region, s3Endpoint, dynamodbEndpoint } = standins();
    const name = `upload-${randomUUID().slice(0, 18)}`;
    await initCloudResources({ bucket: name, table: name, s3Endpoint, dynamodbEndpoint });
    const secrets = new SecretsManagerClient({ endpoint: secretsManagerEndpoint, region, credentials: { accessKeyId: 'standin', secretAccessKey: 'standin' } });
    // As the stack creates it: keyless.
    await secrets.send(new CreateSecretCommand({ Name: name, SecretString: JSON.stringify({ format: SIGNING_KEYS_FORMAT }) }));
    const backend = ['--bucket', name, '--table', name, '--signing-secret', name, '--s3-endpoint', s3Endpoint, '--dynamodb-endpoint', dynamodbEndpoint];
    const syncFlags = [...backend, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1', '--resign'];
    expect((await runCli(['sync', ...syncFlags], env)).code).toBe(0);
    const files = await imageFiles(join(work, 'images-cloud'));

    const upload = await runCli(
      [
        'upload', ...syncFlags,
        '--os', 'custom', '--release', 'noble-site', '--arch', 'arm64', '--subarch', 'generic', '--title', 'Ubuntu 24.04 (site, arm64)',
        '--file', `boot-kernel=${files['vmlinuz']}`, '--file', `boot-initrd=${files['initrd']}`,
        '--file', `root-image.gz=${files['root.image.gz']}`, '--file', `manifest=${files['root.manifest']}`,
      ],
      env,
    );
    expect(upload.stderr).toContain('"type":"published"');
    expect(upload.code).toBe(0);

    const server = await startServing(['serve', ...backend], env);
    try {
      const mirror = await readResignedMirror(server.url);
      expect(mirror.fetchProblems).toEqual([]);
      expect(mirror.maasProblems).toEqual([]);
      expect(mirror.listedPaths.filter((path) => path.startsWith('custom/')).map((path) => path.split('/').pop()).sort()).toEqual([
        'boot-initrd',
        'boot-kernel',
        'root-image.gz',
        'squashfs.manifest',
      ]);
    } finally {
      server.process.kill('SIGTERM');
    }
  });

  it('refuses an upload into a verbatim mirror, a dd disk image and a missing file, storing nothing', async () => {
    const { work, keyring, upstream } = fixture();
    const dataDir = join(work, 'verbatim');
    const syncFlags = ['--data-dir', dataDir, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1'];
    expect((await cli('sync', ...syncFlags)).code).toBe(0);
    const files = await imageFiles(join(work, 'images-refused'));
    const image = ['--os', 'centos', '--release', 'mycentos9', '--arch', 'amd64', '--subarch', 'generic', '--title', 'CentOS 9 (site)'];

    const verbatim = await cli('upload', ...syncFlags, ...image, '--file', `root-tgz=${files['image.tgz']}`, '--file', `manifest=${files['image.manifest']}`);
    expect(verbatim.code).toBe(2);
    expect(verbatim.stderr).toContain('custom images are published only in re-signed mode: add --resign');
    expect(verbatim.stderr).toContain('Nothing was stored.');

    const esxi = await cli('upload', ...syncFlags, '--resign', '--os', 'esxi', '--release', '8.0', '--arch', 'amd64', '--subarch', 'generic', '--title', 'ESXi 8.0', '--file', `ddgz=${files['esxi.dd.gz']}`);
    expect(esxi.code).toBe(2);
    expect(esxi.stderr).toContain('ddgz images cannot be published in a stream');
    expect(esxi.stderr).toContain(`maas $PROFILE boot-resources create name=esxi/8.0 'title=ESXi 8.0' architecture=amd64/generic filetype=ddgz content@=${files['esxi.dd.gz']}`);

    const missing = join(work, 'no-such.tgz');
    const absent = await cli('upload', ...syncFlags, '--resign', ...image, '--file', `root-tgz=${missing}`, '--file', `manifest=${files['image.manifest']}`);
    expect(absent.code).toBe(2);
    expect(absent.stderr).toContain(`--file root-tgz=${missing}: cannot read it (ENOENT)`);

    const malformed = await cli('upload', ...syncFlags, '--resign', ...image, '--file', files['image.tgz']!);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('expected FTYPE=PATH');

    // Nothing of any of them is in the store, and the verbatim stream is unchanged.
    expect(existsSync(join(dataDir, 'objects', 'uploads'))).toBe(false);
    expect(existsSync(join(dataDir, 'objects', 'items', 'custom'))).toBe(false);
    const status = JSON.parse((await cli('status', '--json', '--data-dir', dataDir)).stdout);
    expect(status.publication.generation).toBe(1);
  });
  it('R-upload-hostile-files: refuses a link to a secret, the data dir\'s own files, a device, a FIFO, a directory, an empty file and text posing as a root-tgz, storing nothing', async () => {
    // Prepare: a re-signed mirror (its signing keys in the data dir) and the hostile files beside real ones.
    const { work, keyring, upstream } = fixture();
    const dataDir = join(work, 'hostile-files');
    const syncFlags = ['--data-dir', dataDir, '--source', upstream.baseUrl, '--keyring', keyring, '--filter', 'arch=amd64', '--max', '1', '--resign'];
    expect((await cli('sync', ...syncFlags)).code).toBe(0);
    const signingKeys = join(dataDir, 'signing-keys.json');
    expect(existsSync(signingKeys)).toBe(true);
    const files = await imageFiles(join(work, 'images-hostile'));
    const dir = join(work, 'hostile');
    await mkdir(dir, { recursive: true });
    const secret = existsSync('/etc/shadow') ? '/etc/shadow' : '/etc/passwd';
    const at = (name: string) => join(dir, name);
    await symlink(secret, at('secret-link'));
    await symlink(signingKeys, at('keys-link'));
    await symlink(files['image.tgz']!, at('packer-link'));
    await writeFile(at('empty.tgz'), '');
    await writeFile(at('hello.tgz'), 'hello');
    await execFileAsync('mkfifo', [at('fifo')]);
    const image = ['--os', 'centos', '--release', 'hostile9', '--arch', 'amd64', '--subarch', 'generic', '--title', 'Hostile 9', '--no-sync'];
    const cases: [string, string][] = [
      [at('secret-link'), `${at('secret-link')}: the root-tgz file looks like ASCII text, not a gzip-compressed tar`],
      [at('keys-link'), `--file root-tgz=${at('keys-link')}: lies in the mirror's data dir (${signingKeys})`],
      [join(dataDir, 'catalog.sqlite'), `--file root-tgz=${join(dataDir, 'catalog.sqlite')}: lies in the mirror's data dir`],
      ['/dev/null', '--file root-tgz=/dev/null: not a regular file (a device)'],
      [at('fifo'), `--file root-tgz=${at('fifo')}: not a regular file (a FIFO`],
      [dir, `--file root-tgz=${dir}: not a regular file (a directory`],
      [at('empty.tgz'), `--file root-tgz=${at('empty.tgz')}: is empty`],
      [at('hello.tgz'), `${at('hello.tgz')}: the root-tgz file looks like ASCII text, not a gzip-compressed tar`],
    ];

    // Act
    const refused: Awaited<ReturnType<typeof cli>>[] = [];
    for (const [path] of cases) refused.push(await cli('upload', ...syncFlags, ...image, '--file', `root-tgz=${path}`, '--file', `manifest=${files['image.manifest']}`));
    const uploadsBefore = existsSync(join(dataDir, 'objects', 'uploads'));
    const itemsBefore = existsSync(join(dataDir, 'objects', 'items', 'custom'));
    const packer = await cli('upload', ...syncFlags, ...image, '--file', `root-tgz=${at('packer-link')}`, '--file', `manifest=${files['image.manifest']}`);

    // Assess: each refused with usage's exit code and its reason; nothing stored until the packer link, which is taken.
    expect(refused.map((result) => result.code)).toEqual(cases.map(() => 2));
    for (const [index, [, message]] of cases.entries()) expect(refused[index]!.stderr, cases[index]![0]).toContain(message);
    expect(uploadsBefore).toBe(false);
    expect(itemsBefore).toBe(false);
    expect(packer.code).toBe(0);
    expect(packer.stdout).toMatch(/stored com\.skystreams\.custom:v3:centos:hostile9:amd64:generic version \d{8}: 2 files/);
  });
});
