import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MANIFEST_PART_BYTES, manifestItems, toPackageManifest } from '../../functions/adapters/dynamodb/items.ts';
import { ManifestError } from '../../functions/core/errors.ts';
import { formatManifest, isManifest, manifestLimits, manifestRecord, parseManifest } from '../../functions/core/manifests.ts';

const PATH = 'noble/amd64/20250709/squashfs.manifest';
const bytes = (text: string) => new TextEncoder().encode(text);

/** The ManifestError `parse` throws, so its fields can be checked. */
function refusal(parse: () => unknown): ManifestError {
  try {
    parse();
  } catch (error) {
    if (error instanceof ManifestError) return error;
    throw error;
  }
  throw new Error('expected a ManifestError, but the manifest was accepted');
}

describe('Function: parseManifest', () => {
  it('reads package<TAB>version lines, with architectures, CRLF endings, blank lines and snaps listed with their channel', () => {
    // Prepare
    const text = 'adduser\t3.137ubuntu1\r\n\nlibc6:amd64\t2.39-0ubuntu8.4\n  \nopenssh-server\t1:9.6p1-3ubuntu13.11\nsnap:lxd\t5.21/stable/ubuntu-24.04\t29351\n';

    // Act
    const packages = parseManifest(PATH, bytes(text));

    // Assess
    expect([...packages]).toEqual([
      ['adduser', '3.137ubuntu1'],
      ['libc6:amd64', '2.39-0ubuntu8.4'],
      ['openssh-server', '1:9.6p1-3ubuntu13.11'],
      ['snap:lxd', '29351 (5.21/stable/ubuntu-24.04)'],
    ]);
  });

  it('accepts an empty manifest and the same line listed twice', () => {
    expect(parseManifest(PATH, bytes('')).size).toBe(0);
    expect([...parseManifest(PATH, bytes('bash\t5.2\nbash\t5.2\n'))]).toEqual([['bash', '5.2']]);
  });

  it.each([
    ['a line without a tab', 'bash\t5.2\nbash 5.2\n', 2, 'expected "package<TAB>version", found 1 tab-separated field(s)'],
    ['three fields for a package', 'bash\t5.2\textra\n', 1, 'found 3 tab-separated field(s)'],
    ['a name with a space', 'bash\t5.2\nmy package\t1.0\n', 2, '"my package" is not a package name'],
    ['an empty name', '\t1.0\n', 1, '"" is not a package name'],
    ['an empty version', 'bash\t\n', 1, '"" is not a version (of bash)'],
    ['a version with a control character', 'bash\t5.2\u0007\n', 1, 'is not a version (of bash)'],
    ['two versions of one package', 'bash\t5.2\ncurl\t8.5\nbash\t5.3\n', 3, 'bash is listed again with another version (5.2, then 5.3)'],
  ])('refuses %s, naming the file and line', (_case, text, line, problem) => {
    // Act
    const error = refusal(() => parseManifest(PATH, bytes(text)));

    // Assess
    expect(error.path).toBe(PATH);
    expect(error.line).toBe(line);
    expect(error.message).toContain(`${PATH}: line ${line}: `);
    expect(error.message).toContain(problem);
  });

  it('refuses bytes that are not UTF-8', () => {
    const error = refusal(() => parseManifest(PATH, new Uint8Array([0x62, 0x61, 0xff, 0x09, 0x31])));
    expect(error.message).toBe(`${PATH}: not UTF-8 text`);
  });

  it('refuses a manifest over its byte limit before reading a line', () => {
    const error = refusal(() => parseManifest(PATH, bytes('bash\t5.2\n'.repeat(10)), { ...manifestLimits, bytes: 50 }));
    expect(error.line).toBeUndefined();
    expect(error.message).toBe(`${PATH}: 90 bytes is more than a manifest may have (50)`);
  });

  it('refuses more packages than the limit, naming the line that passes it', () => {
    const text = Array.from({ length: 5 }, (_, i) => `pkg${i}\t1.${i}`).join('\n');
    const error = refusal(() => parseManifest(PATH, bytes(text), { ...manifestLimits, packages: 3 }));
    expect(error.line).toBe(4);
    expect(error.message).toContain('more than 3 packages');
  });

  it('refuses a field longer than the limit', () => {
    const error = refusal(() => parseManifest(PATH, bytes(`bash\t${'9'.repeat(20)}\n`), { ...manifestLimits, fieldLength: 10 }));
    expect(error.message).toContain('is not a version (of bash)');
  });
});

describe('Function: formatManifest', () => {
  it('writes sorted lines that parse back to the same packages', () => {
    // Prepare
    const packages = new Map([['zlib1g:amd64', '1:1.3'], ['bash', '5.2'], ['snap:lxd', '29351 (5.21/stable)']]);

    // Act
    const text = formatManifest(packages);

    // Assess
    expect(text).toBe('bash\t5.2\nsnap:lxd\t29351 (5.21/stable)\nzlib1g:amd64\t1:1.3\n');
    expect(parseManifest(PATH, bytes(text))).toEqual(packages);
  });
});

describe('Function: manifestRecord', () => {
  it('records why a manifest could not be parsed instead of throwing', () => {
    // Act
    const record = manifestRecord(PATH, 'a'.repeat(64), bytes('bash\t5.2\ngarbage\n'), new Date('2025-07-09T12:00:00Z'));

    // Assess
    expect(record).toEqual({
      sha256: 'a'.repeat(64),
      path: PATH,
      problem: `${PATH}: line 2: expected "package<TAB>version", found 1 tab-separated field(s)`,
      indexedAt: '2025-07-09T12:00:00.000Z',
    });
  });
});

describe('Function: isManifest', () => {
  it.each([
    ['manifest', true],
    ['squashfs.manifest', true],
    ['root-tgz.manifest', true],
    ['squashfs', false],
    ['manifest.json', false],
    [undefined, false],
  ])('%s → %s', (ftype, expected) => {
    expect(isManifest(ftype)).toBe(expected);
  });
});

describe('Functions: manifestItems / toPackageManifest (DynamoDB item shapes)', () => {
  const large = () => {
    const packages = new Map<string, string>();
    for (let i = 0; i < 50_000; i++) packages.set(`pkg-${i}`, createHash('sha256').update(String(i)).digest('hex').slice(0, 24));
    return { sha256: 'b'.repeat(64), path: PATH, packages, indexedAt: '2025-07-09T12:00:00.000Z' };
  };

  it('splits a manifest whose packages compress past one item into parts, each under the part size', () => {
    // Act
    const items = manifestItems(large());

    // Assess
    expect(items.length).toBeGreaterThan(1);
    expect(items[0]).toMatchObject({ PK: `MANIFEST#${'b'.repeat(64)}`, SK: '0000', parts: items.length, packageCount: 50_000 });
    for (const item of items) expect((item.data as Uint8Array).byteLength).toBeLessThanOrEqual(MANIFEST_PART_BYTES);
    expect(toPackageManifest(items)).toEqual(large());
  });

  it('reads no record while a part it counts is missing, or without part 0', () => {
    // Prepare
    const items = manifestItems(large());

    // Act / Assess
    expect(toPackageManifest(items.slice(0, -1))).toBeUndefined();
    expect(toPackageManifest(items.slice(1))).toBeUndefined();
    expect(toPackageManifest([])).toBeUndefined();
  });
});
