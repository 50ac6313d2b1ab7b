import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.ts';
import { compareCLocale, matchesAll, newestVersions, parseFilter } from '../../functions/core/filters.ts';
import { flattenItems } from '../../functions/core/simplestreams.ts';
import { loadFixtureProducts } from '../support/fixtures.ts';

// Inherited fields of a real item (simplestreams_ubuntu.json, 24.04 amd64 squashfs).
const nobleSquashfs: Record<string, unknown> = {
  arch: 'amd64',
  os: 'ubuntu',
  release: 'noble',
  subarch: 'ga-24.04',
  label: 'stable',
  version: '24.04',
  ftype: 'squashfs',
  size: 455872512,
  'bootloader-type': undefined,
};
// And one from simplestreams_bootloaders.json.
const pxelinux: Record<string, unknown> = {
  arch: 'amd64',
  arches: 'amd64, i386',
  'bootloader-type': 'pxe',
  label: 'stable',
  os: 'pxelinux',
  ftype: 'archive.tar.xz',
};

const matching = (expressions: string[], fields: Record<string, unknown>) =>
  matchesAll(expressions.map(parseFilter), fields);

describe('Function: parseFilter', () => {
  it.each([
    ['arch=amd64', { key: 'arch', op: '=', value: 'amd64' }],
    ['arch!=arm64', { key: 'arch', op: '!=', value: 'arm64' }],
    ['release~(jammy|noble)', { key: 'release', op: '~', value: '(jammy|noble)' }],
    ['ftype!~^boot-', { key: 'ftype', op: '!~', value: '^boot-' }],
    ['bootloader-type=uefi', { key: 'bootloader-type', op: '=', value: 'uefi' }],
    ['arch = amd64', { key: 'arch', op: '=', value: 'amd64' }],
    ['src_version=3:6.03+dfsg1-2', { key: 'src_version', op: '=', value: '3:6.03+dfsg1-2' }],
    ['label=', { key: 'label', op: '=', value: '' }],
    // As sstream-mirror reads it: the value is "=amd64".
    ['arch==amd64', { key: 'arch', op: '=', value: '=amd64' }],
  ])('parses %j', (expression, expected) => {
    // Act
    const filter = parseFilter(expression);

    // Assess
    expect(filter).toEqual({ ...expected, source: expression });
  });

  it.each(['arch', '=amd64', 'arch<amd64', '', 'ar ch=amd64'])(
    'rejects %j with a ConfigError naming the expression',
    (expression) => {
      // Act
      const act = () => parseFilter(expression);

      // Assess
      expect(act).toThrow(ConfigError);
      expect(act).toThrow(JSON.stringify(expression));
    },
  );

  it('rejects an invalid regular expression, naming the expression', () => {
    // Act
    const act = () => parseFilter('release~(noble');

    // Assess
    expect(act).toThrow(ConfigError);
    expect(act).toThrow('"release~(noble"');
  });
});

describe('Function: matchesAll', () => {
  it('compares = and != as whole strings', () => {
    // Assess
    expect(matching(['arch=amd64'], nobleSquashfs)).toBe(true);
    expect(matching(['arch=amd'], nobleSquashfs)).toBe(false);
    expect(matching(['arch!=amd64'], nobleSquashfs)).toBe(false);
    expect(matching(['arch!=arm64'], nobleSquashfs)).toBe(true);
  });

  it('searches with ~ and !~ anywhere in the value (unanchored)', () => {
    // Assess
    expect(matching(['subarch~24'], nobleSquashfs)).toBe(true);
    expect(matching(['subarch~^24'], nobleSquashfs)).toBe(false);
    expect(matching(['subarch!~hwe'], nobleSquashfs)).toBe(true);
    expect(matching(['arches~i386'], pxelinux)).toBe(true);
    expect(matching(['arches!~i386'], pxelinux)).toBe(false);
  });

  it('compares non-string values as strings', () => {
    // Assess
    expect(matching(['size=455872512'], nobleSquashfs)).toBe(true);
    expect(matching(['size~^4558'], nobleSquashfs)).toBe(true);
  });

  it('treats a missing key as the empty string', () => {
    // Assess
    expect(matching(['bootloader-type='], nobleSquashfs)).toBe(true);
    expect(matching(['kflavor='], nobleSquashfs)).toBe(true);
    expect(matching(['kflavor!=generic'], nobleSquashfs)).toBe(true);
    expect(matching(['kflavor~^$'], nobleSquashfs)).toBe(true);
    expect(matching(['kflavor~.'], nobleSquashfs)).toBe(false);
    expect(matching(['bootloader-type='], pxelinux)).toBe(false);
    expect(matching(['constructor='], pxelinux)).toBe(true);
  });

  it('ANDs all filters, and matches everything when there are none', () => {
    // Assess
    expect(matching(['arch=amd64', 'release~^(jammy|noble)$', 'ftype!~^boot-'], nobleSquashfs)).toBe(true);
    expect(matching(['arch=amd64', 'release=jammy'], nobleSquashfs)).toBe(false);
    expect(matching(['os=ubuntu', 'arch=amd64'], pxelinux)).toBe(false);
    expect(matching([], pxelinux)).toBe(true);
  });
});

describe('Function: matchesAll over the real captures', () => {
  const items = loadFixtureProducts().flatMap((doc) => flattenItems(doc.content_id, doc));
  const select = (...expressions: string[]) => {
    const filters = expressions.map(parseFilter);
    return items.filter((item) => matchesAll(filters, item.fields));
  };

  it('selects what an sstream-mirror filter set would', () => {
    // Act
    const nobleAmd64 = select('os=ubuntu', 'release=noble', 'arch=amd64');
    const uefi = select('bootloader-type=uefi');
    const notUbuntu = select('os!=ubuntu', 'arch~^(amd|ppc)64');
    const bootFiles = select('ftype~^boot-', 'arch!~arm');

    // Assess
    expect(nobleAmd64).toHaveLength(2 * 4);
    expect(new Set(nobleAmd64.map((i) => i.productName))).toEqual(
      new Set(['com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04']),
    );
    expect(uefi.map((i) => i.itemName).sort()).toEqual(Array(4).fill('grub2-signed').concat(Array(4).fill('shim-signed')));
    expect(new Set(notUbuntu.map((i) => i.fields.os))).toEqual(new Set(['grub-efi-signed', 'grub-ieee1275', 'pxelinux', 'centos']));
    expect(bootFiles.every((i) => i.fields.arch === 'amd64' && i.fields.os === 'ubuntu')).toBe(true);
    expect(bootFiles).toHaveLength(2 * 2 * 2);
  });

  it('selects nothing by a key no item has, unless it tests for the empty string', () => {
    // Assess
    expect(select('no-such-field=x')).toEqual([]);
    expect(select('no-such-field=')).toHaveLength(items.length);
  });
});

describe('Function: newestVersions', () => {
  it('orders the real version names newest first', () => {
    // Act
    const newest = newestVersions(['20250615', '20250718'], 1);

    // Assess
    expect(newest).toEqual(['20250718']);
  });

  it('sorts byte-wise: a longer name with the same prefix is newer', () => {
    // Act
    const ordered = newestVersions(['20250615.1', '20250615', '20250614.9'], undefined);

    // Assess
    expect(ordered).toEqual(['20250615.1', '20250615', '20250614.9']);
  });

  it('sorts byte-wise: lowercase after uppercase, digits before letters', () => {
    // Act
    const ordered = newestVersions(['b', 'B', 'a', 'A', '1', '_'], undefined);

    // Assess
    expect(ordered).toEqual(['b', 'a', '_', 'B', 'A', '1']);
  });

  it('sorts characters beyond the BMP by code point, as UTF-8 bytes would', () => {
    // Prepare: U+1F600 is UTF-16 \uD83D\uDE00, which a UTF-16 sort would put before U+FF21.
    const emoji = '\u{1F600}';
    const fullwidthA = '\uFF21';

    // Act
    const ordered = newestVersions([emoji, fullwidthA], undefined);

    // Assess
    expect(ordered).toEqual([emoji, fullwidthA]);
    expect(Buffer.compare(Buffer.from(emoji), Buffer.from(fullwidthA))).toBe(1);
    expect(compareCLocale(emoji, fullwidthA)).toBeGreaterThan(0);
  });

  it('keeps every name when max is undefined or larger than the list, without mutating the input', () => {
    // Prepare
    const names = ['20231004.0', '20230222.0'];

    // Act
    const all = newestVersions(names, undefined);
    const more = newestVersions(names, 5);

    // Assess
    expect(all).toEqual(['20231004.0', '20230222.0']);
    expect(more).toEqual(all);
    expect(names).toEqual(['20231004.0', '20230222.0']);
  });

  it.each([0, -1, 1.5, Number.NaN])('rejects max %s with a ConfigError', (max) => {
    // Act
    const act = () => newestVersions(['a'], max);

    // Assess
    expect(act).toThrow(ConfigError);
  });
});
