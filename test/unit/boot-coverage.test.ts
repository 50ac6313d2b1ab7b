import { describe, expect, it } from 'vitest';
import { bootloaderGaps, describeBootloaderGap } from '../../functions/core/boot-coverage.ts';
import { parseFilter } from '../../functions/core/filters.ts';
import { selectItems } from '../../functions/core/planner.ts';
import { flattenItems } from '../../functions/core/simplestreams.ts';
import { FIXTURE_PRODUCT_FILES, loadFixtureProducts } from '../support/fixtures.ts';

/** The captured upstream, and what a selection of `filters` keeps of it, as the planner selects. */
function select(expressions: readonly string[], max = 1) {
  const filters = expressions.map(parseFilter);
  const documents = loadFixtureProducts();
  const upstream = documents.flatMap((doc, i) => flattenItems(FIXTURE_PRODUCT_FILES[i]!, doc));
  const selected = documents.flatMap((doc, i) => selectItems(FIXTURE_PRODUCT_FILES[i]!, doc, { filters, max }));
  return { upstream, selected, filters };
}

describe('Function: bootloaderGaps', () => {
  it('finds none when the selection keeps the bootloaders (release~^(noble)?$)', () => {
    // Prepare
    const { upstream, selected, filters } = select(['arch=amd64', 'release~^(noble)?$']);

    // Act
    const gaps = bootloaderGaps(upstream, selected, filters);

    // Assess
    expect(selected.some((item) => item.fields['bootloader-type'] === 'uefi')).toBe(true);
    expect(gaps).toEqual([]);
  });

  it('names each architecture and the filter that dropped its bootloaders (release~^(jammy|noble)$)', () => {
    // Prepare
    const { upstream, selected, filters } = select(['release~^(jammy|noble)$']);

    // Act
    const gaps = bootloaderGaps(upstream, selected, filters);

    // Assess: arm64 needs its own grub-efi, amd64 has pxelinux and signed grub.
    expect(gaps.map((gap) => gap.arch)).toEqual(['amd64', 'arm64']);
    expect(gaps[0]).toMatchObject({
      droppedBy: ['release~^(jammy|noble)$'],
      available: ['com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64', 'com.ubuntu.maas.stable:1:pxelinux:pxe:amd64', 'com.ubuntu.maas.stable:1:pxelinux:pxe:i386'],
    });
    expect(gaps[1]).toMatchObject({ droppedBy: ['release~^(jammy|noble)$'], available: ['com.ubuntu.maas.stable:1:grub-efi:uefi:arm64'] });
    expect(gaps[1]!.images).toEqual(['com.ubuntu.maas.stable:v3:boot:22.04:arm64:ga-22.04', 'com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04']);
    expect(describeBootloaderGap(gaps[1]!)).toBe(
      'no bootloader selected for arm64 (2 images of arm64 selected): MAAS cannot network-boot arm64 machines; filter "release~^(jammy|noble)$" drops com.ubuntu.maas.stable:1:grub-efi:uefi:arm64 (bootloaders have no release: write release~^(noble)?$ to keep them)',
    );
  });

  it('counts a bootloader for the architectures its `arches` lists, and reports only the one left without', () => {
    // Prepare: amd64's bootloaders kept (pxelinux serves amd64 and i386), arm64's dropped by os.
    const { upstream, selected, filters } = select(['os~^(ubuntu|pxelinux|grub-efi-signed)$']);

    // Act
    const gaps = bootloaderGaps(upstream, selected, filters);

    // Assess
    expect(gaps.map((gap) => [gap.arch, gap.droppedBy])).toEqual([['arm64', ['os~^(ubuntu|pxelinux|grub-efi-signed)$']]]);
  });

  it('says upstream lists no bootloader when a source has images only', () => {
    // Prepare: the bootloaders' products file is not part of this upstream.
    const { upstream, selected, filters } = select(['arch=arm64']);
    const withoutBootloaders = upstream.filter((item) => item.fields['bootloader-type'] === undefined);
    const selectedWithout = selected.filter((item) => item.fields['bootloader-type'] === undefined);

    // Act
    const [gap, ...rest] = bootloaderGaps(withoutBootloaders, selectedWithout, filters);

    // Assess
    expect(rest).toEqual([]);
    expect(gap).toMatchObject({ arch: 'arm64', droppedBy: [], available: [] });
    expect(describeBootloaderGap(gap!)).toMatch(/upstream lists no bootloader for arm64$/);
  });

  it('ignores images MAAS does not network-boot through these bootloaders (custom os)', () => {
    // Prepare
    const { upstream, selected, filters } = select(['release~^(noble)$']);
    const custom = selected.filter((item) => item.fields.os === 'ubuntu').map((item) => ({ ...item, fields: { ...item.fields, os: 'custom' } }));

    // Act
    const gaps = bootloaderGaps(upstream, custom, filters);

    // Assess
    expect(gaps).toEqual([]);
  });
});
