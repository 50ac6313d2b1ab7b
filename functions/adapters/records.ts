/**
 * The fields of each catalog record, for the adapters that store a record
 * field by field (DynamoDB items, SQLite rows), and the one copy both make
 * between a record and what they store: set fields only, so an unset
 * optional field is left out rather than stored or read back as null.
 */
import type { CatalogEntry, Publication, StoredObject, SyncRun } from '../core/ports.ts';

/** Every field of `T`, each listed once: a field added to a record and not listed here fails to compile. */
function fieldsOf<T>() {
  return <const F extends readonly (keyof T & string)[]>(
    fields: F & ([Exclude<keyof T, F[number]>] extends [never] ? unknown : { missingFields: Exclude<keyof T, F[number]> }),
  ): F => fields;
}

export const RECORD_FIELDS = {
  object: fieldsOf<StoredObject>()(['path', 'size', 'sha256', 'digests', 'storedAt']),
  publication: fieldsOf<Publication>()(['generation', 'upstreamUpdated', 'publishedAt', 'runId', 'files', 'itemCount', 'totalBytes']),
  entry: fieldsOf<CatalogEntry>()(
    ['contentId', 'product', 'version', 'item', 'path', 'size', 'sha256', 'ftype', 'os', 'release', 'arch', 'subarch', 'label'],
  ),
  run: fieldsOf<SyncRun>()(
    ['id', 'state', 'startedAt', 'finishedAt', 'itemsCopied', 'bytesCopied', 'itemsPresent', 'generation', 'error', 'holder', 'warnings', 'modeSwitch'],
  ),
} as const;

/**
 * The listed fields of `source` that are set (neither undefined nor null),
 * each read from `nameIn(field)`: the field itself, or e.g. its column.
 */
export function pickSet(
  source: object,
  fields: readonly string[],
  nameIn: (field: string) => string = (field) => field,
): Record<string, unknown> {
  const picked: Record<string, unknown> = {};
  for (const field of fields) {
    const value = (source as Record<string, unknown>)[nameIn(field)];
    if (value !== undefined && value !== null) picked[field] = value;
  }
  return picked;
}
