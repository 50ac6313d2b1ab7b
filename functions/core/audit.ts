/** `skystreams verify`: does the store hold, byte for byte, what the current publication promises? */
import { createHash } from 'node:crypto';
import { keys, type Catalog, type ObjectStore } from './ports.ts';

export interface AuditProblem {
  path: string;
  problem: string;
}

export interface AuditReport {
  generation: number | null;
  checkedFiles: number;
  checkedBytes: number;
  problems: AuditProblem[];
}

export async function auditPublication(
  objects: ObjectStore,
  catalog: Catalog,
  onFile: (path: string) => void = () => {},
): Promise<AuditReport> {
  const current = await catalog.getCurrent();
  const report: AuditReport = { generation: current?.generation ?? null, checkedFiles: 0, checkedBytes: 0, problems: [] };
  if (!current) return report;
  for (const file of current.files) {
    onFile(file);
    report.checkedFiles++;
    if (!(await objects.head(keys.metadata(current, file)))) {
      report.problems.push({ path: file, problem: 'metadata file missing from the store' });
    }
  }
  const expected = new Map<string, { size: number; sha256: string }>();
  for await (const entry of catalog.listEntries(current.generation)) {
    expected.set(entry.path, { size: entry.size, sha256: entry.sha256 });
  }
  for (const [path, want] of [...expected].sort(([a], [b]) => (a < b ? -1 : 1))) {
    onFile(path);
    report.checkedFiles++;
    const problem = await checkItem(objects, path, want);
    if (problem) report.problems.push({ path, problem });
    else report.checkedBytes += want.size;
  }
  return report;
}

async function checkItem(
  objects: ObjectStore,
  path: string,
  want: { size: number; sha256: string },
): Promise<string | undefined> {
  const info = await objects.head(keys.item(path));
  if (!info) return 'missing from the store';
  if (info.size !== want.size) return `size ${info.size}, expected ${want.size}`;
  const hash = createHash('sha256');
  const { body } = await objects.get(keys.item(path));
  for await (const chunk of body) hash.update(chunk);
  const sha256 = hash.digest('hex');
  return sha256 === want.sha256 ? undefined : `sha256 ${sha256}, expected ${want.sha256}`;
}
