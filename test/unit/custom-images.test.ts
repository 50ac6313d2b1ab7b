/**
 * Custom images (functions/core/custom-images.ts): what an upload request
 * must say, what is refused and why, and the products documents that
 * publish uploads, checked against MAAS's stream models (test/support/maas-models.ts).
 */
import { describe, expect, it } from 'vitest';
import {
  CUSTOM_CONTENT_IDS,
  nextUploadVersion,
  parseUploadRecord,
  uploadedProducts,
  uploadItemPath,
  validateUpload,
  type UploadRecord,
  type UploadRequest,
  type ValidatedUpload,
} from '../../functions/core/custom-images.ts';
import { ConfigError, MetadataError, UnsupportedImageError } from '../../functions/core/errors.ts';
import { buildPublishedStream } from '../../functions/core/publish-metadata.ts';
import { flattenItems } from '../../functions/core/simplestreams.ts';
import { maasIndexProblems, maasProductModel, maasProductsProblems } from '../support/maas-models.ts';

const WHERE = 'upload';
const UPDATED = 'Wed, 02 Dec 2026 01:00:00 +0000';

const multiFile: UploadRequest = {
  os: 'custom',
  release: 'noble-site',
  arch: 'amd64',
  subarch: 'generic',
  title: 'Ubuntu 24.04 (site build)',
  files: [
    { ftype: 'boot-kernel', source: './vmlinuz' },
    { ftype: 'boot-initrd', source: './initrd' },
    { ftype: 'squashfs', source: './root.squashfs' },
    { ftype: 'squashfs.manifest', source: './root.manifest' },
  ],
};

const singleFile: UploadRequest = {
  os: 'centos',
  release: 'mycentos9',
  arch: 'amd64',
  subarch: 'generic',
  title: 'CentOS 9 (site)',
  files: [
    { ftype: 'root-tgz', source: './image.tgz' },
    { ftype: 'manifest', source: './image.manifest' },
  ],
};

function refusal(request: UploadRequest): Error {
  try {
    validateUpload(request, WHERE);
  } catch (error) {
    return error as Error;
  }
  throw new Error('validateUpload accepted the request');
}

/** A record as storeUpload writes it, with made-up digests. */
function recordOf(upload: ValidatedUpload, version: string, digit: string): UploadRecord {
  return {
    shape: upload.shape,
    product: upload.product,
    version,
    fields: upload.fields,
    uploadedAt: '2026-12-02T01:00:00.000Z',
    items: upload.files.map((file, i) => ({
      item: file.item,
      ftype: file.ftype,
      path: uploadItemPath(upload, version, file.fileName),
      size: 100 + i,
      sha256: digit.repeat(64),
    })),
  };
}

describe('validateUpload', () => {
  it('accepts kernel + initrd + squashfs + manifest as a multi-file image, with MAAS’s item names and defaults', () => {
    const upload = validateUpload(multiFile, WHERE);
    expect(upload.shape).toBe('multi-file');
    expect(upload.product).toBe('com.skystreams.custom:v3:custom:noble-site:amd64:generic');
    expect(upload.files.map((file) => [file.item, file.fileName])).toEqual([
      ['boot-initrd', 'boot-initrd'],
      ['boot-kernel', 'boot-kernel'],
      ['manifest', 'squashfs.manifest'],
      ['squashfs', 'squashfs'],
    ]);
    expect(upload.fields).toEqual({
      os: 'custom',
      release: 'noble-site',
      arch: 'amd64',
      subarch: 'generic',
      subarches: 'generic',
      label: 'stable',
      release_title: 'Ubuntu 24.04 (site build)',
      version: 'noble-site',
      kflavor: 'generic',
    });
  });

  it('accepts root-image.gz in place of squashfs', () => {
    const files = multiFile.files.map((file) => (file.ftype === 'squashfs' ? { ftype: 'root-image.gz', source: './root.img.gz' } : file));
    expect(validateUpload({ ...multiFile, files }, WHERE).files.map((file) => file.item)).toContain('root-image.gz');
  });

  it('accepts root-tgz + manifest as a single-file image, without a kernel flavour', () => {
    const upload = validateUpload({ ...singleFile, label: 'candidate', supportEol: '2032-05-31', releaseVersion: '9' }, WHERE);
    expect(upload.shape).toBe('single-file');
    expect(upload.files.map((file) => [file.item, file.fileName])).toEqual([
      ['manifest', 'root-tgz.manifest'],
      ['root-tgz', 'root-tgz'],
    ]);
    expect(upload.fields).toMatchObject({ label: 'candidate', support_eol: '2032-05-31', version: '9' });
    expect(upload.fields).not.toHaveProperty('kflavor');
  });

  it.each([
    ['os', { os: '' }, /os is required/],
    ['release', { release: undefined as unknown as string }, /release is required/],
    ['arch', { arch: 'AMD64' }, /arch "AMD64" is not valid/],
    ['subarch', { subarch: 'ga/22.04' }, /subarch "ga\/22\.04" is not valid/],
    ['os with a path segment', { os: '..' }, /os "\.\." is not valid/],
    ['title', { title: '  ' }, /title is required/],
    ['title with a newline', { title: 'two\nlines' }, /title is not valid/],
    ['label', { label: 'Stable!' }, /label "Stable!" is not valid/],
    ['support EOL', { supportEol: '31/05/2032' }, /support EOL "31\/05\/2032" is not valid/],
    ['subarches', { subarches: 'generic,,hwe' }, /subarches "generic,,hwe" is not valid/],
  ])('refuses a missing or invalid %s, naming the field', (_field, change, message) => {
    const error = refusal({ ...multiFile, ...change });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/^upload: /);
    expect(error.message).toMatch(message);
  });

  it('refuses a multi-file image without its kernel, naming what is missing', () => {
    const error = refusal({ ...multiFile, files: multiFile.files.filter((file) => file.ftype !== 'boot-kernel') });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/a multi-file image needs a boot-kernel file/);
  });

  it('refuses a multi-file image without a root image, or with both kinds', () => {
    const without = refusal({ ...multiFile, files: multiFile.files.filter((file) => file.ftype !== 'squashfs') });
    expect(without).toBeInstanceOf(ConfigError);
    expect(without.message).toMatch(/exactly one of squashfs or root-image\.gz, found none/);
    const both = refusal({ ...multiFile, files: [...multiFile.files, { ftype: 'root-image.gz', source: './root.img.gz' }] });
    expect(both.message).toMatch(/found squashfs and root-image\.gz/);
  });

  it('refuses a single-file image without its manifest', () => {
    const error = refusal({ ...singleFile, files: [{ ftype: 'root-tgz', source: './image.tgz' }] });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/a single-file image needs a manifest file/);
  });

  it('refuses a file of the other shape (a kernel beside a root-tgz), naming it', () => {
    const error = refusal({ ...singleFile, files: [...singleFile.files, { ftype: 'boot-kernel', source: './vmlinuz' }] });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/\.\/vmlinuz: boot-kernel does not belong in a single-file image/);
  });

  it('refuses the same item twice, naming both files', () => {
    const error = refusal({ ...singleFile, files: [...singleFile.files, { ftype: 'root-tgz.manifest', source: './other.manifest' }] });
    expect(error.message).toMatch(/\.\/other\.manifest: manifest is also given as \.\/image\.manifest/);
  });

  it('refuses a kernel flavour on a root-tgz image', () => {
    expect(refusal({ ...singleFile, kflavor: 'generic' }).message).toMatch(/kflavor applies to images with their own kernel/);
  });

  it('refuses an unknown ftype, saying which shapes MAAS takes', () => {
    const error = refusal({ ...singleFile, files: [{ ftype: 'qcow2', source: './disk.qcow2' }, singleFile.files[1]!] });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).not.toBeInstanceOf(UnsupportedImageError);
    expect(error.message).toMatch(/\.\/disk\.qcow2: ftype "qcow2" is not one MAAS takes from a stream/);
    expect(error.message).toMatch(/root-tgz \+ manifest/);
  });

  it('refuses an ESXi ddgz disk image with why and the maas boot-resources create command that uploads it directly', () => {
    const error = refusal({
      os: 'esxi',
      release: '8.0',
      arch: 'amd64',
      subarch: 'generic',
      title: 'VMware ESXi 8.0',
      files: [{ ftype: 'ddgz', source: './vmware-esxi-8.dd.gz' }],
    });
    expect(error).toBeInstanceOf(UnsupportedImageError);
    expect(error.message).toMatch(/ddgz images cannot be published in a stream/);
    expect(error.message).toMatch(/reject the whole source/);
    const command = "maas $PROFILE boot-resources create name=esxi/8.0 'title=VMware ESXi 8.0' architecture=amd64/generic filetype=ddgz content@=./vmware-esxi-8.dd.gz";
    expect((error as UnsupportedImageError).maasCommand).toBe(command);
    expect(error.message).toContain(command);
  });

  it.each([
    ['root-dd.xz', 'ddxz'],
    ['ddraw', 'ddraw'],
    ['root-dd', 'ddtgz'],
    ['root-tbz', 'tbz'],
  ])('refuses %s (a format only a direct upload takes) with filetype=%s', (ftype, filetype) => {
    const error = refusal({ ...singleFile, files: [{ ftype, source: './disk' }] });
    expect(error).toBeInstanceOf(UnsupportedImageError);
    expect((error as UnsupportedImageError).maasCommand).toContain(` filetype=${filetype} `);
  });
});

describe('nextUploadVersion', () => {
  const now = new Date('2026-12-02T01:02:03Z');
  it('is the UTC day, then the day with the next two-digit number, sorting in upload order', () => {
    expect(nextUploadVersion(now, [])).toBe('20261202');
    expect(nextUploadVersion(now, ['20261202'])).toBe('20261202.01');
    expect(nextUploadVersion(now, ['20261202', '20261202.01', '20261201'])).toBe('20261202.02');
    const versions = ['20261202'];
    for (let i = 0; i < 12; i++) versions.push(nextUploadVersion(now, versions));
    expect([...versions].sort()).toEqual(versions);
  });

  it('refuses a hundredth upload of one image in a day', () => {
    const versions = ['20261202', ...Array.from({ length: 99 }, (_, i) => `20261202.${String(i + 1).padStart(2, '0')}`)];
    expect(() => nextUploadVersion(now, versions)).toThrow(ConfigError);
  });
});

describe('uploadedProducts', () => {
  it('is empty without uploads', () => {
    expect(uploadedProducts([])).toEqual([]);
  });

  it('publishes each shape in its own products file, every version listed, and MAAS’s models accept each', () => {
    const multi = validateUpload(multiFile, WHERE);
    const single = validateUpload(singleFile, WHERE);
    const documents = uploadedProducts([recordOf(multi, '20261202', 'a'), recordOf(multi, '20261202.01', 'b'), recordOf(single, '20261202', 'c')]);
    expect(documents.map((document) => document.doc.content_id)).toEqual([CUSTOM_CONTENT_IDS['multi-file'], CUSTOM_CONTENT_IDS['single-file']]);
    const stream = buildPublishedStream({ products: documents.map(({ file, doc }) => ({ base: file.replace(/\.json$/, ''), doc })), updated: UPDATED });
    expect(maasIndexProblems('index', stream.index.json as unknown as Record<string, unknown>)).toEqual([]);
    const [multiDoc, singleDoc] = stream.products.map((products) => products.doc as unknown as Record<string, unknown>);
    expect(maasProductsProblems('multi', multiDoc!)).toEqual([]);
    expect(maasProductModel('multi', multiDoc!)).toBe('multi-file');
    expect(maasProductsProblems('single', singleDoc!)).toEqual([]);
    expect(maasProductModel('single', singleDoc!)).toBe('single-file');
    expect(Object.keys(stream.products[0]!.doc.products[multi.product]!.versions)).toEqual(['20261202', '20261202.01']);
    expect(stream.products[0]!.doc['datatype']).toBe('image-downloads');
    // Every item is a valid simplestreams item under the uploads' own prefix.
    const items = documents.flatMap(({ file, doc }) => flattenItems(file, doc));
    expect(items).toHaveLength(4 + 4 + 2);
    expect(items.every((item) => item.path.startsWith('custom/') && item.sha256?.length === 64)).toBe(true);
  });

  it('would fail MAAS’s models if both shapes shared one file (why they never do)', () => {
    const multi = validateUpload(multiFile, WHERE);
    const single = validateUpload(singleFile, WHERE);
    const [multiDoc] = uploadedProducts([recordOf(multi, '20261202', 'a')]);
    const [singleDoc] = uploadedProducts([recordOf(single, '20261202', 'c')]);
    const mixed = { ...multiDoc!.doc, updated: UPDATED, products: { ...multiDoc!.doc.products, ...singleDoc!.doc.products } };
    expect(maasProductsProblems('mixed', mixed as unknown as Record<string, unknown>)).not.toEqual([]);
  });
});

describe('parseUploadRecord', () => {
  const record = recordOf(validateUpload(singleFile, WHERE), '20261202', 'c');
  it('reads back what storeUpload writes', () => {
    expect(parseUploadRecord('uploads/x.json', JSON.stringify(record))).toEqual(record);
  });

  it.each([
    ['not JSON', '{', '$'],
    ['a bad shape', JSON.stringify({ ...record, shape: 'disk' }), '$.shape'],
    ['a missing title', JSON.stringify({ ...record, fields: { ...record.fields, release_title: undefined } }), '$.fields.release_title'],
    ['a path outside custom/', JSON.stringify({ ...record, items: [{ ...record.items[0], path: 'jammy/amd64/squashfs' }] }), '$.items[0].path'],
    ['a bad sha256', JSON.stringify({ ...record, items: [{ ...record.items[0], sha256: 'XYZ' }] }), '$.items[0].sha256'],
  ])('refuses %s, naming the key and field', (_case, text, field) => {
    let error: unknown;
    try {
      parseUploadRecord('uploads/x.json', text);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(MetadataError);
    expect((error as MetadataError).message).toContain(`uploads/x.json: ${field}`);
  });
});
