/** What `npm run demo` mirrors: a small MAAS-shaped upstream, as products documents to pass to synthesizeTree. */
import type { ProductsDocument } from '../core/simplestreams.ts';

// sha256 of nothing: a placeholder that synthesizeTree replaces.
const PLACEHOLDER_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const DEMO_UPDATED = 'Wed, 09 Jul 2025 12:00:00 +0000';

const placeholderItem = (fields: Record<string, unknown> & { ftype: string; path: string }) => ({
  ...fields,
  sha256: PLACEHOLDER_SHA256,
  size: 0,
});

function bootloaderVersion(items: Record<string, { path: string; release: string; version: string }>) {
  return {
    items: Object.fromEntries(
      Object.entries(items).map(([name, { path, release, version }]) => [
        name,
        placeholderItem({
          ftype: 'archive.tar.xz',
          path,
          src_package: name,
          src_release: release,
          src_version: version,
        }),
      ]),
    ),
  };
}

function nobleVersion(serial: string, subarch: string, kpackage: string) {
  const kernelDirectory = `noble/amd64/${serial}/${subarch}/generic`;
  return {
    items: {
      'boot-initrd': placeholderItem({ ftype: 'boot-initrd', kpackage, path: `${kernelDirectory}/boot-initrd` }),
      'boot-kernel': placeholderItem({ ftype: 'boot-kernel', kpackage, path: `${kernelDirectory}/boot-kernel` }),
      // The root image is shared by the GA and HWE products, as on images.maas.io.
      manifest: placeholderItem({ ftype: 'manifest', path: `noble/amd64/${serial}/squashfs.manifest` }),
      squashfs: placeholderItem({ ftype: 'squashfs', path: `noble/amd64/${serial}/squashfs` }),
    },
  };
}

function nobleProduct(subarch: 'ga-24.04' | 'hwe-24.04', kpackage: string) {
  return {
    arch: 'amd64',
    kflavor: 'generic',
    krel: 'noble',
    label: 'stable',
    os: 'ubuntu',
    release: 'noble',
    release_codename: 'Noble Numbat',
    release_title: '24.04 LTS',
    subarch,
    subarches: `generic,hwe-p,hwe-q,hwe-r,hwe-s,hwe-t,hwe-u,hwe-v,hwe-w,ga-16.04,ga-18.04,ga-20.04,ga-22.04,ga-24.04${
      subarch === 'hwe-24.04' ? ',hwe-24.04' : ''
    }`,
    support_eol: '2029-05-31',
    support_esm_eol: '2034-04-25',
    version: '24.04',
    versions: {
      '20250618': nobleVersion('20250618', subarch, kpackage),
      '20250709': nobleVersion('20250709', subarch, kpackage),
    },
  };
}

/**
 * A small MAAS-shaped upstream, modelled on images.maas.io, with every field
 * MAAS's simplestreams models require: bootloaders (pxelinux, grub-efi-signed)
 * and Ubuntu 24.04 amd64 GA + HWE kernels, two versions each. Sizes and
 * digests are placeholders; pass the documents to synthesizeTree.
 */
export function demoProducts(): ProductsDocument[] {
  const bootloaders: ProductsDocument = {
    content_id: 'com.ubuntu.maas:stable:1:bootloader-download',
    datatype: 'image-ids',
    format: 'products:1.0',
    updated: DEMO_UPDATED,
    products: {
      'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64': {
        arch: 'amd64',
        arches: 'amd64',
        'bootloader-type': 'uefi',
        label: 'stable',
        os: 'grub-efi-signed',
        versions: {
          '20230222.0': bootloaderVersion({
            'grub2-signed': {
              path: 'bootloaders/uefi/amd64/20230222.0/grub2-signed.tar.xz',
              release: 'focal',
              version: '1.187.3~20.04.1+2.06-2ubuntu14.1',
            },
            'shim-signed': {
              path: 'bootloaders/uefi/amd64/20230222.0/shim-signed.tar.xz',
              release: 'focal',
              version: '1.40.7+15.4-0ubuntu9',
            },
          }),
          '20231004.0': bootloaderVersion({
            'grub2-signed': {
              path: 'bootloaders/uefi/amd64/20231004.0/grub2-signed.tar.xz',
              release: 'jammy',
              version: '1.187.6+2.06-2ubuntu14.4',
            },
            'shim-signed': {
              path: 'bootloaders/uefi/amd64/20231004.0/shim-signed.tar.xz',
              release: 'jammy',
              version: '1.51.3+15.7-0ubuntu1',
            },
          }),
        },
      },
      'com.ubuntu.maas.stable:1:pxelinux:pxe:amd64': {
        arch: 'amd64',
        arches: 'amd64, i386',
        'bootloader-type': 'pxe',
        label: 'stable',
        os: 'pxelinux',
        versions: {
          '20230615.0': bootloaderVersion({
            syslinux: {
              path: 'bootloaders/pxe/amd64/20230615.0/syslinux.tar.xz',
              release: 'jammy',
              version: '3:6.04~git20190206.bf6db5b4+dfsg1-3ubuntu1',
            },
          }),
        },
      },
    },
  };
  const ubuntu: ProductsDocument = {
    content_id: 'com.ubuntu.maas:stable:v3:download',
    datatype: 'image-ids',
    format: 'products:1.0',
    updated: DEMO_UPDATED,
    products: {
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04': nobleProduct('ga-24.04', 'linux-generic'),
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04': nobleProduct('hwe-24.04', 'linux-generic-hwe-24.04'),
    },
  };
  return [bootloaders, ubuntu];
}
