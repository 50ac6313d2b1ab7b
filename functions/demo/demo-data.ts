/**
 * What `npm run demo` mirrors: a small MAAS-shaped upstream, as products
 * documents to pass to synthesizeTree, with `demoItemContent` for the items
 * whose bytes matter (the package manifests).
 */
import type { FlatItem, ProductsDocument } from '../core/simplestreams.ts';

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

/**
 * The root image's packages in the older demo version. The newer one bumps
 * some (security updates), drops one and adds two, as a real point release
 * does, so `skystreams diff` has something to show.
 */
const NOBLE_20250618_PACKAGES: readonly (readonly [string, string])[] = [
  ['adduser', '3.137ubuntu1'],
  ['apt', '2.7.14build2'],
  ['bash', '5.2.21-2ubuntu4'],
  ['cloud-init', '24.1.3-0ubuntu3.3'],
  ['coreutils', '9.4-3ubuntu6'],
  ['curl', '8.5.0-2ubuntu10.1'],
  ['libc6:amd64', '2.39-0ubuntu8.3'],
  ['libssl3t64:amd64', '3.0.13-0ubuntu3.4'],
  ['netplan.io', '1.0-2ubuntu1.2'],
  ['openssh-server', '1:9.6p1-3ubuntu13.5'],
  ['openssl', '3.0.13-0ubuntu3.4'],
  ['python3', '3.12.3-0ubuntu1'],
  ['python3-six', '1.16.0-4'],
  ['snap:lxd', '29351 (5.21/stable/ubuntu-24.04)'],
  ['sudo', '1.9.15p5-3ubuntu5'],
  ['systemd', '255.4-1ubuntu8.1'],
];

const NOBLE_20250709_CHANGES = {
  bumped: {
    curl: '8.5.0-2ubuntu10.6',
    'libc6:amd64': '2.39-0ubuntu8.4',
    'libssl3t64:amd64': '3.0.13-0ubuntu3.5',
    'openssh-server': '1:9.6p1-3ubuntu13.11',
    openssl: '3.0.13-0ubuntu3.5',
    systemd: '255.4-1ubuntu8.6',
  } as Record<string, string>,
  removed: ['python3-six'],
  added: [
    ['needrestart', '3.6-7ubuntu4.1'],
    ['ubuntu-pro-client', '32.3.1~24.04'],
  ] as [string, string][],
};

/** The demo root image's packages in version `serial`, as its squashfs.manifest lists them. */
export function demoManifestPackages(serial: string): Map<string, string> {
  const packages = new Map(NOBLE_20250618_PACKAGES);
  if (serial >= '20250709') {
    for (const [name, version] of Object.entries(NOBLE_20250709_CHANGES.bumped)) packages.set(name, version);
    for (const name of NOBLE_20250709_CHANGES.removed) packages.delete(name);
    for (const [name, version] of NOBLE_20250709_CHANGES.added) packages.set(name, version);
  }
  return packages;
}

/**
 * Pass to synthesizeTree as `itemContent`: each manifest item gets its
 * version's package list, in the manifest format (`snap:` lines with their
 * channel, as image manifests list snaps); every other item, synthetic bytes.
 */
export function demoItemContent(item: FlatItem): Uint8Array | undefined {
  if (item.ftype !== 'manifest') return undefined;
  const lines = [...demoManifestPackages(item.versionName)].map(([name, version]) => {
    const snap = /^(\d+) \((.+)\)$/.exec(version);
    return snap ? `${name}\t${snap[2]}\t${snap[1]}` : `${name}\t${version}`;
  });
  return new TextEncoder().encode(`${lines.join('\n')}\n`);
}
