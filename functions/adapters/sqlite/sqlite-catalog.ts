/**
 * Catalog in one SQLite file (better-sqlite3), for the single-machine mirror.
 *
 * WAL mode lets the HTTP server read while a sync writes; every check-then-write
 * (publish, locks) runs in a BEGIN IMMEDIATE transaction so two processes
 * sharing the file serialise on it instead of racing.
 */
import Database from 'better-sqlite3';
import { ConflictError, LeaseLostError, LockHeldError, UnavailableError } from '../../core/errors.ts';
import type { Catalog, CatalogEntry, Fence, Lease, Publication, RunState, StoredObject, SyncRun } from '../../core/ports.ts';

/** Rows fetched per query while streaming a listing, so 100k rows never sit in memory at once. */
const PAGE_SIZE = 500;

/** How long a write waits for another process's transaction before giving up. */
const BUSY_TIMEOUT_MS = 10_000;

const SCHEMA_VERSION = 2;

/** The state row holding the highest generation number handed out. */
const GENERATION_COUNTER = 'generation-counter';

const objectsTable = (name: string) => `
  CREATE TABLE IF NOT EXISTS ${name} (
    path       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    sha512     TEXT,
    md5        TEXT,
    stored_at  TEXT NOT NULL
  ) WITHOUT ROWID;`;

const SCHEMA = `
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

  -- At most one row: the current generation.
  CREATE TABLE IF NOT EXISTS current_publication (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    generation  INTEGER NOT NULL
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
    holder_pid      INTEGER
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
`;

interface ObjectRow {
  path: string;
  size: number;
  sha256: string;
  sha512: string | null;
  md5: string | null;
  stored_at: string;
}

interface PublicationRow {
  generation: number;
  upstream_updated: string;
  published_at: string;
  run_id: string;
  files: string;
  item_count: number;
  total_bytes: number;
}

interface EntryRow {
  id: number;
  content_id: string;
  product: string;
  version: string;
  item: string;
  path: string;
  size: number;
  sha256: string;
  ftype: string | null;
  os: string | null;
  release: string | null;
  arch: string | null;
  subarch: string | null;
  label: string | null;
}

interface RunRow {
  id: string;
  state: RunState;
  started_at: string;
  finished_at: string | null;
  items_copied: number;
  bytes_copied: number;
  items_present: number;
  generation: number | null;
  error: string | null;
  holder_host: string | null;
  holder_pid: number | null;
}

interface LockRow {
  name: string;
  owner: string;
  epoch: number;
  expires_at: number;
}

/** Schema 1 kept one `digest` column (the strongest declared) and had no lock epochs or run holders. */
const MIGRATE_FROM_1 = `
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

const OPTIONAL_ENTRY_FIELDS = ['ftype', 'os', 'release', 'arch', 'subarch', 'label'] as const;

export class SqliteCatalog implements Catalog {
  private readonly db: Database.Database;

  /** Opens (creating when absent) the catalog at `filename`; `':memory:'` works for throwaway use. */
  constructor(filename: string) {
    this.db = new Database(filename, { timeout: BUSY_TIMEOUT_MS });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // WAL + NORMAL stays consistent after a crash; only the last commits may be lost on power failure.
    this.db.pragma('synchronous = NORMAL');
    this.createSchema();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---------------------------------------------------------------- objects

  async getObject(path: string): Promise<StoredObject | undefined> {
    const row = this.run(() =>
      this.db.prepare<[string], ObjectRow>('SELECT * FROM objects WHERE path = ?').get(path),
    );
    return row && toStoredObject(row);
  }

  async recordObject(object: StoredObject, fence?: Fence): Promise<void> {
    this.fenced(fence, () =>
      this.db
        .prepare(
          `INSERT INTO objects (path, size, sha256, sha512, md5, stored_at)
           VALUES (@path, @size, @sha256, @sha512, @md5, @storedAt)
           ON CONFLICT (path) DO UPDATE SET
             size = excluded.size, sha256 = excluded.sha256, sha512 = excluded.sha512,
             md5 = excluded.md5, stored_at = excluded.stored_at`,
        )
        .run({
          path: object.path,
          size: object.size,
          sha256: object.sha256,
          sha512: object.digests.sha512 ?? null,
          md5: object.digests.md5 ?? null,
          storedAt: object.storedAt,
        }),
    );
  }

  async forgetObject(path: string, fence?: Fence): Promise<void> {
    this.fenced(fence, () => this.db.prepare('DELETE FROM objects WHERE path = ?').run(path));
  }

  async *listObjects(): AsyncIterable<StoredObject> {
    const page = this.db.prepare<[string, number], ObjectRow>(
      'SELECT * FROM objects WHERE path > ? ORDER BY path LIMIT ?',
    );
    let after = '';
    for (;;) {
      const rows = this.run(() => page.all(after, PAGE_SIZE));
      for (const row of rows) yield toStoredObject(row);
      const last = rows.at(-1);
      if (!last || rows.length < PAGE_SIZE) return;
      after = last.path;
    }
  }

  // ---------------------------------------------------------------- publications

  async getCurrent(): Promise<Publication | undefined> {
    const row = this.run(() =>
      this.db
        .prepare<[], PublicationRow>(
          `SELECT p.* FROM publications p
           JOIN current_publication c ON c.generation = p.generation`,
        )
        .get(),
    );
    return row && toPublication(row);
  }

  async getPublication(generation: number): Promise<Publication | undefined> {
    const row = this.run(() =>
      this.db.prepare<[number], PublicationRow>('SELECT * FROM publications WHERE generation = ?').get(generation),
    );
    return row && toPublication(row);
  }

  async listPublications(): Promise<Publication[]> {
    const rows = this.run(() =>
      this.db.prepare<[], PublicationRow>('SELECT * FROM publications ORDER BY generation DESC').all(),
    );
    return rows.map(toPublication);
  }

  async reserveGeneration(fence?: Fence): Promise<number> {
    return this.fenced(fence, () => {
      const counter = this.db
        .prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?')
        .get(GENERATION_COUNTER);
      const published = this.db
        .prepare<[], { generation: number | null }>('SELECT MAX(generation) AS generation FROM publications')
        .get();
      const next = Math.max(Number(counter?.value ?? 0), published?.generation ?? 0) + 1;
      this.db
        .prepare('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run(GENERATION_COUNTER, String(next));
      return next;
    });
  }

  async putEntries(generation: number, entries: readonly CatalogEntry[], fence?: Fence): Promise<void> {
    const insert = this.db.prepare(
      `INSERT INTO entries (generation, content_id, product, version, item, path, size, sha256,
                            ftype, os, release, arch, subarch, label)
       VALUES (@generation, @contentId, @product, @version, @item, @path, @size, @sha256,
               @ftype, @os, @release, @arch, @subarch, @label)`,
    );
    this.fenced(fence, () => {
      for (const entry of entries) insert.run(toEntryParams(generation, entry));
    });
  }

  async *listEntries(generation: number): AsyncIterable<CatalogEntry> {
    const page = this.db.prepare<[number, number, number], EntryRow>(
      'SELECT * FROM entries WHERE generation = ? AND id > ? ORDER BY id LIMIT ?',
    );
    let after = 0;
    for (;;) {
      const rows = this.run(() => page.all(generation, after, PAGE_SIZE));
      for (const row of rows) yield toCatalogEntry(row);
      const last = rows.at(-1);
      if (!last || rows.length < PAGE_SIZE) return;
      after = last.id;
    }
  }

  async publish(next: Publication, expectedCurrent: number | undefined, fence?: Fence): Promise<void> {
    this.fenced(fence, () => {
      const current = this.currentGeneration();
      if (current !== expectedCurrent) {
        throw new ConflictError(
          `cannot publish generation ${next.generation}: expected current ${describeGeneration(expectedCurrent)}, found ${describeGeneration(current)}`,
        );
      }
      const taken = this.db.prepare('SELECT 1 FROM publications WHERE generation = ?').get(next.generation);
      if (taken) throw new ConflictError(`generation ${next.generation} is already used`);
      this.db
        .prepare(
          `INSERT INTO publications (generation, upstream_updated, published_at, run_id, files, item_count, total_bytes)
           VALUES (@generation, @upstreamUpdated, @publishedAt, @runId, @files, @itemCount, @totalBytes)`,
        )
        .run({ ...next, files: JSON.stringify(next.files) });
      this.db
        .prepare(
          `INSERT INTO current_publication (singleton, generation) VALUES (1, ?)
           ON CONFLICT (singleton) DO UPDATE SET generation = excluded.generation`,
        )
        .run(next.generation);
    });
  }

  async deletePublication(generation: number, fence?: Fence): Promise<void> {
    this.fenced(fence, () => {
      if (this.currentGeneration() === generation) {
        throw new ConflictError(`generation ${generation} is current and cannot be deleted`);
      }
      this.db.prepare('DELETE FROM entries WHERE generation = ?').run(generation);
      this.db.prepare('DELETE FROM publications WHERE generation = ?').run(generation);
    });
  }

  // ---------------------------------------------------------------- runs

  async putRun(run: SyncRun, fence?: Fence): Promise<void> {
    this.fenced(fence, () =>
      this.db
        .prepare(
          `INSERT INTO runs (id, state, started_at, finished_at, items_copied, bytes_copied, items_present, generation, error,
                             holder_host, holder_pid)
           VALUES (@id, @state, @startedAt, @finishedAt, @itemsCopied, @bytesCopied, @itemsPresent, @generation, @error,
                   @holderHost, @holderPid)
           ON CONFLICT (id) DO UPDATE SET
             state = excluded.state, started_at = excluded.started_at, finished_at = excluded.finished_at,
             items_copied = excluded.items_copied, bytes_copied = excluded.bytes_copied,
             items_present = excluded.items_present, generation = excluded.generation, error = excluded.error,
             holder_host = excluded.holder_host, holder_pid = excluded.holder_pid`,
        )
        .run({
          id: run.id,
          state: run.state,
          startedAt: run.startedAt,
          itemsCopied: run.itemsCopied,
          bytesCopied: run.bytesCopied,
          itemsPresent: run.itemsPresent,
          finishedAt: run.finishedAt ?? null,
          generation: run.generation ?? null,
          error: run.error ?? null,
          holderHost: run.holder?.host ?? null,
          holderPid: run.holder?.pid ?? null,
        }),
    );
  }

  async getRun(id: string): Promise<SyncRun | undefined> {
    const row = this.run(() => this.db.prepare<[string], RunRow>('SELECT * FROM runs WHERE id = ?').get(id));
    return row && toSyncRun(row);
  }

  async listRuns(limit: number): Promise<SyncRun[]> {
    const rows = this.run(() =>
      this.db
        .prepare<[number], RunRow>('SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT ?')
        .all(Math.max(0, Math.floor(limit))),
    );
    return rows.map(toSyncRun);
  }

  // ---------------------------------------------------------------- locks

  async acquireLock(name: string, owner: string, ttlMs: number, now: Date, evict?: string): Promise<Lease> {
    return this.transaction(() => {
      const held = this.lockRow(name);
      const free = !held || held.owner === '' || held.expires_at <= now.getTime() || held.owner === evict;
      if (held && !free) throw new LockHeldError(held.owner, new Date(held.expires_at).toISOString());
      const lease = { name, owner, epoch: (held?.epoch ?? 0) + 1, expiresAt: now.getTime() + ttlMs };
      this.writeLock(lease);
      return toLease(lease);
    });
  }

  async renewLock(lease: Fence, ttlMs: number, now: Date): Promise<Lease> {
    return this.fenced(lease, () => {
      const renewed = { ...lease, expiresAt: now.getTime() + ttlMs };
      this.writeLock(renewed);
      return toLease(renewed);
    });
  }

  async getLock(name: string): Promise<Lease | undefined> {
    const held = this.run(() => this.lockRow(name));
    return held && held.owner !== '' ? toLease({ ...held, expiresAt: held.expires_at }) : undefined;
  }

  async releaseLock(lease: Fence): Promise<void> {
    this.run(() =>
      this.db
        .prepare(`UPDATE locks SET owner = '', expires_at = 0 WHERE name = ? AND owner = ? AND epoch = ?`)
        .run(lease.name, lease.owner, lease.epoch),
    );
  }

  // ---------------------------------------------------------------- state

  async getState(key: string): Promise<string | undefined> {
    const row = this.run(() =>
      this.db.prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?').get(key),
    );
    return row?.value;
  }

  async setState(key: string, value: string, fence?: Fence): Promise<void> {
    this.fenced(fence, () =>
      this.db
        .prepare('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run(key, value),
    );
  }

  // ---------------------------------------------------------------- internals

  private createSchema(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`catalog schema version ${version} is newer than this program understands (${SCHEMA_VERSION})`);
    }
    const hasTables = this.db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'objects'").get() !== undefined;
    this.transaction(() => {
      if (hasTables && version < 2) this.db.exec(MIGRATE_FROM_1);
      this.db.exec(SCHEMA);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
  }

  private lockRow(name: string): LockRow | undefined {
    return this.db.prepare<[string], LockRow>('SELECT * FROM locks WHERE name = ?').get(name);
  }

  private writeLock(lease: { name: string; owner: string; epoch: number; expiresAt: number }): void {
    this.db
      .prepare(
        `INSERT INTO locks (name, owner, epoch, expires_at) VALUES (@name, @owner, @epoch, @expiresAt)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, epoch = excluded.epoch, expires_at = excluded.expires_at`,
      )
      .run(lease);
  }

  /** Runs `write` in one immediate transaction, after checking the fence (when given) inside it. */
  private fenced<T>(fence: Fence | undefined, write: () => T): T {
    return this.transaction(() => {
      if (fence) {
        const held = this.lockRow(fence.name);
        if (held?.owner !== fence.owner || held.epoch !== fence.epoch) throw new LeaseLostError(fence.owner, fence.epoch);
      }
      return write();
    });
  }

  /** BEGIN IMMEDIATE: two processes sharing the file serialise on the write lock instead of racing. */
  private transaction<T>(body: () => T): T {
    return this.run(() => this.db.transaction(body).immediate());
  }

  private currentGeneration(): number | undefined {
    const row = this.db
      .prepare<[], { generation: number }>('SELECT generation FROM current_publication WHERE singleton = 1')
      .get();
    return row?.generation;
  }

  /** Runs a statement, turning "another process holds the database" into the retryable domain error. */
  private run<T>(statement: () => T): T {
    try {
      return statement();
    } catch (error) {
      if (error instanceof Database.SqliteError && /^SQLITE_(BUSY|LOCKED)/.test(error.code)) {
        throw new UnavailableError(`catalog is busy: ${error.message}`, { cause: error });
      }
      throw error;
    }
  }
}

function describeGeneration(generation: number | undefined): string {
  return generation === undefined ? 'none' : String(generation);
}

function toStoredObject(row: ObjectRow): StoredObject {
  const digests: StoredObject['digests'] = { sha256: row.sha256 };
  if (row.sha512 !== null) digests.sha512 = row.sha512;
  if (row.md5 !== null) digests.md5 = row.md5;
  return { path: row.path, size: row.size, sha256: row.sha256, digests, storedAt: row.stored_at };
}

function toLease(row: { name: string; owner: string; epoch: number; expiresAt: number }): Lease {
  return { name: row.name, owner: row.owner, epoch: row.epoch, expiresAt: new Date(row.expiresAt).toISOString() };
}

function toPublication(row: PublicationRow): Publication {
  return {
    generation: row.generation,
    upstreamUpdated: row.upstream_updated,
    publishedAt: row.published_at,
    runId: row.run_id,
    files: JSON.parse(row.files) as string[],
    itemCount: row.item_count,
    totalBytes: row.total_bytes,
  };
}

function toEntryParams(generation: number, entry: CatalogEntry): Record<string, string | number | null> {
  const params: Record<string, string | number | null> = {
    generation,
    contentId: entry.contentId,
    product: entry.product,
    version: entry.version,
    item: entry.item,
    path: entry.path,
    size: entry.size,
    sha256: entry.sha256,
  };
  for (const field of OPTIONAL_ENTRY_FIELDS) params[field] = entry[field] ?? null;
  return params;
}

function toCatalogEntry(row: EntryRow): CatalogEntry {
  const entry: CatalogEntry = {
    contentId: row.content_id,
    product: row.product,
    version: row.version,
    item: row.item,
    path: row.path,
    size: row.size,
    sha256: row.sha256,
  };
  for (const field of OPTIONAL_ENTRY_FIELDS) {
    const value = row[field];
    if (value !== null) entry[field] = value;
  }
  return entry;
}

function toSyncRun(row: RunRow): SyncRun {
  const run: SyncRun = {
    id: row.id,
    state: row.state,
    startedAt: row.started_at,
    itemsCopied: row.items_copied,
    bytesCopied: row.bytes_copied,
    itemsPresent: row.items_present,
  };
  if (row.finished_at !== null) run.finishedAt = row.finished_at;
  if (row.generation !== null) run.generation = row.generation;
  if (row.error !== null) run.error = row.error;
  if (row.holder_host !== null && row.holder_pid !== null) run.holder = { host: row.holder_host, pid: row.holder_pid };
  return run;
}
