import { beforeAll, describe, expect, it } from 'vitest';
import { flattenItems } from '../../functions/core/simplestreams.ts';
import { demoProducts } from '../../functions/demo/demo-data.ts';
import { generateSigningKey, productsIn, synthesizeTree, type SigningKey } from '../support/signed-upstream.ts';

const UPDATED = 'Fri, 01 Aug 2025 10:00:00 +0000';
const UBUNTU_ID = 'com.ubuntu.maas:stable:v3:download';

let key: SigningKey;
beforeAll(async () => {
  key = await generateSigningKey();
});

describe('Function: demoProducts', () => {
  it('is valid simplestreams that synthesizes into a small tree, GA and HWE sharing the root image', async () => {
    // Act
    const files = await synthesizeTree(demoProducts(), { key, updated: UPDATED });

    // Assess
    const documents = productsIn(files);
    const items = documents.flatMap((d) => flattenItems(d.content_id, d));
    expect(documents.map((d) => d.content_id)).toEqual([
      'com.ubuntu.maas:stable:1:bootloader-download',
      UBUNTU_ID,
    ]);
    const squashfsItems = items.filter((i) => i.path === 'noble/amd64/20250709/squashfs');
    expect(squashfsItems.map((i) => i.fields.subarch).sort()).toEqual(['ga-24.04', 'hwe-24.04']);
    expect(new Set(squashfsItems.map((i) => i.sha256)).size).toBe(1);
    for (const item of items) expect(files.get(item.path)?.length).toBe(item.size);
  });

  it('carries every field MAAS requires of bootloader and multi-file image products', () => {
    // Act
    const items = demoProducts().flatMap((d) => flattenItems(d.content_id, d));

    // Assess: the required fields of MAAS's simplestreams models.
    const common = ['product_name', 'arch', 'label', 'os', 'ftype', 'path', 'sha256', 'size'];
    const bootloader = [...common, 'arches', 'bootloader-type', 'src_package', 'src_release', 'src_version'];
    const image = [...common, 'release', 'release_title', 'subarch', 'subarches', 'support_eol', 'version', 'kflavor', 'krel', 'release_codename'];
    for (const item of items) {
      const required = item.contentId === UBUNTU_ID ? image : bootloader;
      for (const field of required) expect(item.fields, `${item.path} ${field}`).toHaveProperty([field]);
    }
    const itemNames = (contentId: string) => new Set(items.filter((i) => i.contentId === contentId).map((i) => i.itemName));
    expect(itemNames(UBUNTU_ID)).toEqual(new Set(['boot-kernel', 'boot-initrd', 'squashfs', 'manifest']));
    expect(itemNames('com.ubuntu.maas:stable:1:bootloader-download')).toEqual(
      new Set(['grub2-signed', 'shim-signed', 'syslinux']),
    );
  });
});
