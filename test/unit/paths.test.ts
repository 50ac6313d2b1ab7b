import { describe, expect, it } from 'vitest';
import { UnsafePathError } from '../../functions/core/errors.ts';
import { assertSafePath } from '../../functions/core/paths.ts';

const FILE = 'streams/v1/x.json';
const JSON_PATH = '$.products["p"].versions["v"].items["i"].path';

describe('Function: assertSafePath', () => {
  it.each([
    'jammy/amd64/20250615/squashfs',
    'bootloaders/pxe/amd64/20230615.0/syslinux.tar.xz',
    'a',
    'dir/file..name',
    'dir/.hidden',
    'a:b/c~d+e',
    'channels-archive/a',
  ])('returns the safe path %j unchanged', (path) => {
    // Act
    const result = assertSafePath(FILE, JSON_PATH, path);

    // Assess
    expect(result).toBe(path);
  });

  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'absolute'],
    ['../outside', '".." segment'],
    ['a/../../b', '".." segment'],
    ['a/..', '".." segment'],
    ['./a', '"." segment'],
    ['a/./b', '"." segment'],
    ['a//b', 'empty segment'],
    ['a/b/', 'empty segment'],
    ['a\\..\\b', 'backslash'],
    ['a\u0000b', 'control character'],
    ['a\nb', 'control character'],
    ['a\u007fb', 'control character'],
    ['channels/candidate/noble/squashfs', 'where the mirror serves its channels'],
  ])('rejects %j (%s), naming file and JSON path', (path, problem) => {
    // Act
    const act = () => assertSafePath(FILE, JSON_PATH, path);

    // Assess
    expect(act).toThrow(UnsafePathError);
    expect(act).toThrow(problem);
    try {
      act();
    } catch (error) {
      const unsafe = error as UnsafePathError;
      expect(unsafe.file).toBe(FILE);
      expect(unsafe.jsonPath).toBe(JSON_PATH);
      expect(unsafe.path).toBe(path);
      expect(unsafe.message).toContain(FILE);
      expect(unsafe.message).toContain(JSON_PATH);
    }
  });
});
