/**
 * The catalog's SQLite schema, and how an older file is brought up to it:
 * a file written by an older skystreams opens and is migrated in place.
 */
import { DEFAULT_CHANNEL } from '../../core/ports.ts';

export const SCHEMA_VERSION = 4;

const objectsTable = (name: string) => `
  CREATE TABLE IF NOT EXISTS ${name} (
    path       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    sha512     TEXT,
    md5        TEXT,
    stored_at  TEXT NOT NULL
  ) WITHOUT ROWID;`;

export const SCHEMA = `
  ${objectsTable('objects')}

  CREATE TABLE IF NOT EXISTS publications (
    generation        INTEGER PRIMARY KEY,
    upstream_updated  TEXT NOT NULL,
    published_at      TEXT NOT NULL,
    run_id            TEXT NOT NULL,
    files             TEXT NOT NULL,
    item_count        INTEGER NOT NULL,
    total_bytes       INTEGER NOT NULL
  );

  -- Entries may be written before their publication exists, so no foreign key.
  CREATE TABLE IF NOT EXISTS entries (
    id          INTEGER PRIMARY KEY,
    generation  INTEGER NOT NULL,
    content_id  TEXT NOT NULL,
    product     TEXT NOT NULL,
    version     TEXT NOT NULL,
    item        TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    ftype       TEXT,
    os          TEXT,
    release     TEXT,
    arch        TEXT,
    subarch     TEXT,
    label       TEXT
  );
  CREATE INDEX IF NOT EXISTS entries_by_generation ON entries (generation, id);

  -- Named pointers to publications; history is a JSON array of earlier generations, newest first.
  CREATE TABLE IF NOT EXISTS channels (
    name        TEXT PRIMARY KEY,
    generation  INTEGER NOT NULL,
    history     TEXT NOT NULL DEFAULT '[]',
    revision    INTEGER NOT NULL
  );

  CREATE TABLE IF NOT EXISTS runs (
    id              TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    items_copied    INTEGER NOT NULL,
    bytes_copied    INTEGER NOT NULL,
    items_present   INTEGER NOT NULL,
    generation      INTEGER,
    error           TEXT,
    holder_host     TEXT,
    holder_pid      INTEGER,
    holder_start    INTEGER,
    -- JSON: an array of strings, and { from, to }.
    warnings        TEXT,
    mode_switch     TEXT
  );
  CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);

  -- A released lock keeps its row (owner '') so the next epoch is still one higher.
  CREATE TABLE IF NOT EXISTS locks (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    epoch       INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL
  );

  CREATE TABLE IF NOT EXISTS state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
  );

  -- One row per distinct package manifest; packages as the manifest text, sorted (NULL when unparsed).
  CREATE TABLE IF NOT EXISTS manifests (
    sha256      TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    packages    TEXT,
    problem     TEXT,
    indexed_at  TEXT NOT NULL
  ) WITHOUT ROWID;
`;

/** Schema 1 kept one `digest` column (the strongest declared) and had no lock epochs or run holders. */
export const MIGRATE_FROM_1 = `
  ${objectsTable('objects_v2')}
  INSERT INTO objects_v2 (path, size, sha256, sha512, md5, stored_at)
    SELECT path, size, sha256,
           CASE WHEN digest LIKE 'sha512:%' THEN substr(digest, 8) END,
           CASE WHEN digest LIKE 'md5:%' THEN substr(digest, 5) END,
           stored_at
    FROM objects;
  DROP TABLE objects;
  ALTER TABLE objects_v2 RENAME TO objects;
  ALTER TABLE locks ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE runs ADD COLUMN holder_host TEXT;
  ALTER TABLE runs ADD COLUMN holder_pid INTEGER;
`;

/** Columns later schemas added to a table earlier ones created: added where a catalog lacks them. */
export const ADDED_COLUMNS: readonly { table: string; column: string; type: string }[] = [
  // A run's holder's process start time, so a reused PID is not taken for the holder.
  { table: 'runs', column: 'holder_start', type: 'INTEGER' },
  // Schema 4: what a run leaves the operator beyond its state.
  { table: 'runs', column: 'warnings', type: 'TEXT' },
  { table: 'runs', column: 'mode_switch', type: 'TEXT' },
];

/** Schema 2 had one current pointer; it becomes the default channel. */
export const MIGRATE_FROM_2 = `
  INSERT INTO channels (name, generation, history, revision)
    SELECT '${DEFAULT_CHANNEL}', generation, '[]', 1 FROM current_publication;
  DROP TABLE current_publication;
`;
