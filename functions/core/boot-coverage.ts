/**
 * Whether a selection can boot: MAAS network-boots a machine with a
 * bootloader of the machine's architecture (PXE or UEFI for amd64, UEFI grub
 * for arm64, open firmware for ppc64el) before it loads any kernel. A
 * selection that keeps Ubuntu or CentOS images of an architecture but no
 * bootloader for it imports, and then no machine of that architecture boots.
 * Bootloader products carry no `release`, so a filter such as
 * `release~^(jammy|noble)$` drops them all.
 */
import { matchesAll, type ItemFilter } from './filters.ts';
import type { FlatItem } from './simplestreams.ts';

/** The operating systems whose images MAAS boots through its bootloaders. */
const NETWORK_BOOTED_OS = new Set(['ubuntu', 'centos']);

/** One architecture whose images were selected without a bootloader. */
export interface BootloaderGap {
  arch: string;
  /** The selected image products of that architecture, sorted. */
  images: string[];
  /** The filters (as written) that each drop every bootloader upstream lists for the architecture; empty when upstream lists none. */
  droppedBy: string[];
  /** Bootloader products upstream lists for the architecture, sorted. */
  available: string[];
}

function isBootloader(item: FlatItem): boolean {
  return typeof item.fields['bootloader-type'] === 'string';
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Every architecture a bootloader item serves: its `arch`, and those its `arches` list (pxelinux for amd64 also boots i386). */
function bootloaderArches(item: FlatItem): string[] {
  const listed = text(item.fields.arches)?.split(',').map((arch) => arch.trim()) ?? [];
  return [...new Set([text(item.fields.arch), ...listed].filter((arch): arch is string => arch !== undefined && arch !== ''))];
}

/**
 * The architectures whose Ubuntu or CentOS images `selected` holds with no
 * bootloader for them, each with the filters that dropped upstream's
 * bootloaders (`upstream`: every item the sources list, before filtering).
 */
export function bootloaderGaps(upstream: readonly FlatItem[], selected: readonly FlatItem[], filters: readonly ItemFilter[]): BootloaderGap[] {
  const imagesByArch = new Map<string, Set<string>>();
  const covered = new Set<string>();
  for (const item of selected) {
    if (isBootloader(item)) {
      for (const arch of bootloaderArches(item)) covered.add(arch);
      continue;
    }
    const os = text(item.fields.os);
    const arch = text(item.fields.arch);
    if (os === undefined || arch === undefined || !NETWORK_BOOTED_OS.has(os)) continue;
    const images = imagesByArch.get(arch) ?? new Set<string>();
    images.add(item.productName);
    imagesByArch.set(arch, images);
  }
  const gaps: BootloaderGap[] = [];
  for (const [arch, images] of [...imagesByArch].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (covered.has(arch)) continue;
    const candidates = upstream.filter((item) => isBootloader(item) && bootloaderArches(item).includes(arch));
    const droppedBy = filters.filter((filter) => candidates.length > 0 && candidates.every((item) => !matchesAll([filter], item.fields)));
    gaps.push({
      arch,
      images: [...images].sort(),
      droppedBy: droppedBy.map((filter) => filter.source),
      available: [...new Set(candidates.map((item) => item.productName))].sort(),
    });
  }
  return gaps;
}

/** One line an operator can act on. */
export function describeBootloaderGap(gap: BootloaderGap): string {
  const images = `${gap.images.length} ${gap.images.length === 1 ? 'image' : 'images'}`;
  const head = `no bootloader selected for ${gap.arch} (${images} of ${gap.arch} selected): MAAS cannot network-boot ${gap.arch} machines`;
  if (gap.available.length === 0) return `${head}; upstream lists no bootloader for ${gap.arch}`;
  if (gap.droppedBy.length === 0) return `${head}; the filters together drop ${gap.available.join(', ')}`;
  const filters = gap.droppedBy.map((filter) => JSON.stringify(filter)).join(', ');
  return `${head}; ${gap.droppedBy.length === 1 ? 'filter' : 'filters'} ${filters} ${gap.droppedBy.length === 1 ? 'drops' : 'drop'} ${gap.available.join(', ')} (bootloaders have no release: write release~^(noble)?$ to keep them)`;
}
