/**
 * Catalog in one SQLite file (better-sqlite3), for the single-machine mirror.
 *
 * WAL mode lets the HTTP server read while a sync writes; every check-then-write
 * (publish, locks) runs in a BEGIN IMMEDIATE transaction so two processes
 * sharing the file serialise on it instead of racing.
 */
import Database from 'better-sqlite3';
import { dirname } from 'node:path';
import { ConflictError, LeaseLostError, LockHeldError, StorageFullError, UnavailableError } from '../../core/errors.ts';
import { DEFAULT_CHANNEL, type Catalog, type CatalogEntry, type Channel, type Fence, type PackageManifest, type Lease, type Publication, type StoredObject, type SyncRun } from '../../core/ports.ts';
import { pointedAt } from '../../core/channels.ts';
import { syncDefaults, type RunRetention } from '../../core/settings.ts';
import { formatManifest, parseManifest } from '../../core/manifests.ts';
import { RECORD_FIELDS, pickSet } from '../records.ts';
import { ADDED_COLUMNS, MIGRATE_FROM_1, MIGRATE_FROM_2, SCHEMA, SCHEMA_VERSION } from './schema.ts';

/** Rows fetched per query while streaming a listing, so 100k rows never sit in memory at once. */
const PAGE_SIZE = 500;

/** How long a write waits for another process's transaction before giving up. */
const BUSY_TIMEOUT_MS = 10_000;

/** The state row holding the highest generation number handed out. */
const GENERATION_COUNTER = 'generation-counter';

/** A row as better-sqlite3 returns it: column name to value. */
type Row = Record<string, string | number | null>;

interface LockRow {
  name: string;
  owner: string;
  epoch: number;
  expires_at: number;
}

export class SqliteCatalog implements Catalog {
  private readonly db: Database.Database;
  private readonly runRetention: RunRetention;

  private readonly statements = new Map<string, Database.Statement>();
  private readonly filename: string;
  private readonly readOnly: boolean;

  /**
   * Opens (creating when absent) the catalog at `filename`; `':memory:'` works
   * for throwaway use. `readOnly` opens an existing catalog without writing a
   * byte, so serving and auditing work on a full disk; an older schema still
   * opens read-write, since migrating it is a write.
   */
  constructor(filename: string, options: { runRetention?: RunRetention; readOnly?: boolean } = {}) {
    this.runRetention = options.runRetention ?? syncDefaults.runRetention;
    this.filename = filename;
    const readOnlyDb = options.readOnly ? openReadOnlyAtCurrentSchema(filename) : undefined;
    this.readOnly = readOnlyDb !== undefined;
    if (readOnlyDb) {
      this.db = readOnlyDb;
      return;
    }
    this.db = new Database(filename, { timeout: BUSY_TIMEOUT_MS });
    this.mapFull(() => {
      // Another process may hold the file while it opens or closes (its switch back to rollback mode, see close):
      // switching to WAL needs the file to itself, and SQLite answers that busy at once rather than waiting.
      retryWhileBusy(() => this.db.pragma('journal_mode = WAL'), BUSY_TIMEOUT_MS);
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      // WAL + NORMAL stays consistent after a crash; only the last commits may be lost on power failure.
      this.db.pragma('synchronous = NORMAL');
      this.createSchema();
    });
  }

  /**
   * A writer leaves the file in rollback-journal mode when it is the last
   * connection: a reader of a WAL file needs its -shm file, which cannot be
   * created on a full disk, while a rollback-mode file reads without writing.
   * Another connection still open keeps WAL (the switch is then refused at once).
   */
  close(): void {
    if (!this.db.open) return;
    if (!this.readOnly && this.filename !== ':memory:') {
      try {
        this.db.pragma('busy_timeout = 0');
        this.db.pragma('journal_mode = DELETE');
      } catch {
        // Busy (another connection) or full: WAL stays, which is correct, only not readable without a write.
      }
    }
    this.db.close();
  }

  /** Prepared once per SQL text: preparing a statement costs more than running most of these. */
  private prepare<P extends unknown[] | {} = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement as unknown as Database.Statement<P, R>;
  }

  // ---------------------------------------------------------------- objects

  async getObject(path: string): Promise<StoredObject | undefined> {
    const row = this.run(() =>
      this.prepare<[string], Row>('SELECT * FROM objects WHERE path = ?').get(path),
    );
    return row && toStoredObject(row);
  }

  async recordObject(object: StoredObject, fence?: Fence): Promise<void> {
    this.fenced(fence, () =>
      this.prepare(
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
    this.fenced(fence, () => this.prepare('DELETE FROM objects WHERE path = ?').run(path));
  }

  async *listObjects(): AsyncIterable<StoredObject> {
    const page = this.prepare<[string, number], Row & { path: string }>(
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

  async getCurrent(channel = DEFAULT_CHANNEL): Promise<Publication | undefined> {
    const row = this.run(() =>
      this.prepare<[string], Row>(
          `SELECT p.* FROM publications p
           JOIN channels c ON c.generation = p.generation WHERE c.name = ?`,
        )
        .get(channel),
    );
    return row && toPublication(row);
  }

  async getPublication(generation: number): Promise<Publication | undefined> {
    const row = this.run(() =>
      this.prepare<[number], Row>('SELECT * FROM publications WHERE generation = ?').get(generation),
    );
    return row && toPublication(row);
  }

  async listPublications(): Promise<Publication[]> {
    const rows = this.run(() =>
      this.prepare<[], Row>('SELECT * FROM publications ORDER BY generation DESC').all(),
    );
    return rows.map(toPublication);
  }

  async reserveGeneration(fence?: Fence): Promise<number> {
    return this.fenced(fence, () => {
      const counter = this.prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?')
        .get(GENERATION_COUNTER);
      const published = this.prepare<[], { generation: number | null }>('SELECT MAX(generation) AS generation FROM publications')
        .get();
      const next = Math.max(Number(counter?.value ?? 0), published?.generation ?? 0) + 1;
      this.prepare('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run(GENERATION_COUNTER, String(next));
      return next;
    });
  }

  async putEntries(generation: number, entries: readonly CatalogEntry[], fence?: Fence): Promise<void> {
    const insert = this.prepare(insertInto('entries', ['generation', ...RECORD_FIELDS.entry]));
    this.fenced(fence, () => {
      for (const entry of entries) insert.run({ generation, ...toParams(entry, RECORD_FIELDS.entry) });
    });
  }

  async *listEntries(generation: number): AsyncIterable<CatalogEntry> {
    const page = this.prepare<[number, number, number], Row & { id: number }>(
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

  async publish(next: Publication, expectedCurrent: number | undefined, fence?: Fence, channel = DEFAULT_CHANNEL): Promise<void> {
    this.fenced(fence, () => {
      const pointer = this.channelRow(channel);
      if (pointer?.generation !== expectedCurrent) {
        throw new ConflictError(
          `cannot publish generation ${next.generation} to channel ${channel}: expected it at ${describeGeneration(expectedCurrent)}, found ${describeGeneration(pointer?.generation)}`,
        );
      }
      const taken = this.prepare('SELECT 1 FROM publications WHERE generation = ?').get(next.generation);
      if (taken) throw new ConflictError(`generation ${next.generation} is already used`);
      this.prepare(insertInto('publications', RECORD_FIELDS.publication))
        .run({ ...toParams(next, RECORD_FIELDS.publication), files: JSON.stringify(next.files) });
      this.writeChannel(pointedAt(pointer, channel, next.generation), (pointer?.revision ?? 0) + 1);
    });
  }

  async deletePublication(generation: number, fence?: Fence): Promise<void> {
    this.fenced(fence, () => {
      const pointing = this.prepare<[number], { name: string }>('SELECT name FROM channels WHERE generation = ?').get(generation);
      if (pointing) throw new ConflictError(`generation ${generation} is current in channel ${pointing.name} and cannot be deleted`);
      this.prepare('DELETE FROM entries WHERE generation = ?').run(generation);
      this.prepare('DELETE FROM publications WHERE generation = ?').run(generation);
    });
  }

  async listChannels(): Promise<Channel[]> {
    const rows = this.run(() => this.prepare<[], ChannelRow>('SELECT * FROM channels ORDER BY name').all());
    return rows.map(toChannel);
  }

  async getChannel(name: string): Promise<Channel | undefined> {
    return this.run(() => this.channelRow(name));
  }

  async setChannel(next: Omit<Channel, 'revision'>, expectedRevision: number | undefined, fence?: Fence): Promise<void> {
    this.fenced(fence, () => {
      const pointer = this.channelRow(next.name);
      if (pointer?.revision !== expectedRevision) {
        throw new ConflictError(`channel ${next.name} changed (revision ${describeGeneration(pointer?.revision)}, expected ${describeGeneration(expectedRevision)}): read it again`);
      }
      if (!this.prepare('SELECT 1 FROM publications WHERE generation = ?').get(next.generation)) {
        throw new ConflictError(`generation ${next.generation} is not published (any more): channel ${next.name} cannot point at it`);
      }
      this.writeChannel(next, (expectedRevision ?? 0) + 1);
    });
  }

  // ---------------------------------------------------------------- runs

  async putRun(run: SyncRun, fence?: Fence): Promise<void> {
    this.fenced(fence, () => {
      this.prepare(
          `${insertInto('runs', RUN_COLUMNS)}
           ON CONFLICT (id) DO UPDATE SET ${RUN_COLUMNS.map((field) => `${column(field)} = excluded.${column(field)}`).join(', ')}`,
        )
        .run({
          ...toParams(run, RUN_COLUMNS),
          holderHost: run.holder?.host ?? null,
          holderPid: run.holder?.pid ?? null,
          holderStart: run.holder?.startTime ?? null,
          warnings: run.warnings ? JSON.stringify(run.warnings) : null,
          modeSwitch: run.modeSwitch ? JSON.stringify(run.modeSwitch) : null,
        });
      if (run.state === 'running') this.expireRuns(run);
    });
  }

  /**
   * As a run starts: deletes the runs beyond the newest `keep` that finished
   * longer than the retention before it started.
   */
  private expireRuns(starting: SyncRun): void {
    const started = Date.parse(starting.startedAt);
    if (Number.isNaN(started)) return;
    const cutoff = new Date(started - this.runRetention.retentionMs).toISOString();
    this.prepare<[number, string]>(
      `DELETE FROM runs
       WHERE id NOT IN (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?)
         AND finished_at IS NOT NULL AND finished_at < ?`,
    ).run(this.runRetention.keep, cutoff);
  }

  async getRun(id: string): Promise<SyncRun | undefined> {
    const row = this.run(() => this.prepare<[string], Row>('SELECT * FROM runs WHERE id = ?').get(id));
    return row && toSyncRun(row);
  }

  async listRuns(limit: number): Promise<SyncRun[]> {
    const rows = this.run(() =>
      this.prepare<[number], Row>('SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT ?')
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
      this.prepare(`UPDATE locks SET owner = '', expires_at = 0 WHERE name = ? AND owner = ? AND epoch = ?`)
        .run(lease.name, lease.owner, lease.epoch),
    );
  }

  // ---------------------------------------------------------------- package manifests

  async putManifest(manifest: PackageManifest, fence?: Fence): Promise<void> {
    this.fenced(fence, () =>
      this.prepare(
          `INSERT INTO manifests (sha256, path, packages, problem, indexed_at) VALUES (@sha256, @path, @packages, @problem, @indexedAt)
           ON CONFLICT (sha256) DO UPDATE SET path = excluded.path, packages = excluded.packages,
             problem = excluded.problem, indexed_at = excluded.indexed_at`,
        )
        .run({
          sha256: manifest.sha256,
          path: manifest.path,
          packages: manifest.packages ? formatManifest(manifest.packages) : null,
          problem: manifest.problem ?? null,
          indexedAt: manifest.indexedAt,
        }),
    );
  }

  async getManifest(sha256: string): Promise<PackageManifest | undefined> {
    const row = this.run(() =>
      this.prepare<[string], { sha256: string; path: string; packages: string | null; problem: string | null; indexed_at: string }>(
          'SELECT * FROM manifests WHERE sha256 = ?',
        )
        .get(sha256),
    );
    if (!row) return undefined;
    return {
      sha256: row.sha256,
      path: row.path,
      ...(row.packages !== null && { packages: parseManifest(row.path, Buffer.from(row.packages)) }),
      ...(row.problem !== null && { problem: row.problem }),
      indexedAt: row.indexed_at,
    };
  }

  async forgetManifest(sha256: string, fence?: Fence): Promise<void> {
    this.fenced(fence, () => this.prepare('DELETE FROM manifests WHERE sha256 = ?').run(sha256));
  }

  // ---------------------------------------------------------------- state

  async getState(key: string): Promise<string | undefined> {
    const row = this.run(() =>
      this.prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?').get(key),
    );
    return row?.value;
  }

  async setState(key: string, value: string, fence?: Fence): Promise<void> {
    this.fenced(fence, () =>
      this.prepare('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run(key, value),
    );
  }

  // ---------------------------------------------------------------- internals

  private createSchema(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`catalog schema version ${version} is newer than this program understands (${SCHEMA_VERSION})`);
    }
    const hasTables = this.prepare("SELECT 1 FROM sqlite_master WHERE name = 'objects'").get() !== undefined;
    this.transaction(() => {
      if (hasTables && version < 2) this.db.exec(MIGRATE_FROM_1);
      this.db.exec(SCHEMA);
      for (const { table, column, type } of ADDED_COLUMNS) {
        const columns = this.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}')`).all();
        if (!columns.some(({ name }) => name === column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
      }
      const hasPointer = this.prepare("SELECT 1 FROM sqlite_master WHERE name = 'current_publication'").get() !== undefined;
      if (hasPointer && version < 3) this.db.exec(MIGRATE_FROM_2);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
  }

  private lockRow(name: string): LockRow | undefined {
    return this.prepare<[string], LockRow>('SELECT * FROM locks WHERE name = ?').get(name);
  }

  private writeLock(lease: { name: string; owner: string; epoch: number; expiresAt: number }): void {
    this.prepare(
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

  private channelRow(name: string): Channel | undefined {
    const row = this.prepare<[string], ChannelRow>('SELECT * FROM channels WHERE name = ?').get(name);
    return row && toChannel(row);
  }

  private writeChannel(channel: Omit<Channel, 'revision'>, revision: number): void {
    this.prepare(
        `INSERT INTO channels (name, generation, history, revision) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET generation = excluded.generation, history = excluded.history, revision = excluded.revision`,
      )
      .run(channel.name, channel.generation, JSON.stringify(channel.history), revision);
  }

  /** Runs a statement, turning "another process holds the database" into the retryable domain error. */
  private run<T>(statement: () => T): T {
    try {
      return this.mapFull(statement);
    } catch (error) {
      if (error instanceof Database.SqliteError && /^SQLITE_(BUSY|LOCKED)/.test(error.code)) {
        throw new UnavailableError(`catalog is busy: ${error.message}`, { cause: error });
      }
      throw error;
    }
  }

  /** SQLITE_FULL (and the shared-memory file that cannot grow) as the domain error naming the catalog's directory. */
  private mapFull<T>(statement: () => T): T {
    try {
      return statement();
    } catch (error) {
      if (error instanceof Database.SqliteError && /^SQLITE_(FULL|IOERR_SHMSIZE)/.test(error.code)) {
        throw new StorageFullError(dirname(this.filename), 'a few pages for the catalog', { cause: error });
      }
      throw error;
    }
  }
}

/**
 * The catalog opened read-only when it is already at this program's schema;
 * undefined when it needs a migration (a write) first.
 */
/** Runs `work` again while SQLite answers SQLITE_BUSY, for up to `timeoutMs`, sleeping a little more each time. */
function retryWhileBusy<T>(work: () => T, timeoutMs: number): T {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return work();
    } catch (error) {
      const busy = (error as { code?: string }).code === 'SQLITE_BUSY';
      if (!busy || Date.now() >= deadline) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(5 * attempt, 100));
    }
  }
}

function openReadOnlyAtCurrentSchema(filename: string): Database.Database | undefined {
  const db = new Database(filename, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new Error(`catalog schema version ${version} is newer than this program understands (${SCHEMA_VERSION})`);
  }
  if (version === SCHEMA_VERSION) return db;
  db.close();
  return undefined;
}

function describeGeneration(generation: number | undefined): string {
  return generation === undefined ? 'none' : String(generation);
}

function toStoredObject(row: Row): StoredObject {
  const digests = pickSet(row, ['sha256', 'sha512', 'md5']);
  return { ...pickSet(row, RECORD_FIELDS.object, column), digests } as unknown as StoredObject;
}

interface ChannelRow {
  name: string;
  generation: number;
  history: string;
  revision: number;
}

function toChannel(row: ChannelRow): Channel {
  return { name: row.name, generation: row.generation, history: JSON.parse(row.history) as number[], revision: row.revision };
}

function toLease(row: { name: string; owner: string; epoch: number; expiresAt: number }): Lease {
  return { name: row.name, owner: row.owner, epoch: row.epoch, expiresAt: new Date(row.expiresAt).toISOString() };
}

function toPublication(row: Row): Publication {
  return { ...pickSet(row, RECORD_FIELDS.publication, column), files: JSON.parse(String(row.files)) } as unknown as Publication;
}

function toCatalogEntry(row: Row): CatalogEntry {
  return pickSet(row, RECORD_FIELDS.entry, column) as unknown as CatalogEntry;
}

function toSyncRun(row: Row): SyncRun {
  const run = pickSet(row, RECORD_FIELDS.run, column) as unknown as SyncRun;
  if (row.holder_host != null && row.holder_pid != null) {
    run.holder = { host: String(row.holder_host), pid: Number(row.holder_pid), ...(row.holder_start != null && { startTime: Number(row.holder_start) }) };
  }
  if (row.warnings != null) run.warnings = JSON.parse(String(row.warnings)) as string[];
  if (row.mode_switch != null) run.modeSwitch = JSON.parse(String(row.mode_switch)) as NonNullable<SyncRun['modeSwitch']>;
  return run;
}

/** The run's fields as columns: its holder is stored as three, `holder_host`, `holder_pid` and `holder_start`. */
const RUN_COLUMNS = [...RECORD_FIELDS.run.filter((field) => field !== 'holder'), 'holderHost', 'holderPid', 'holderStart'];

/** A record field's column: `contentId` is stored in `content_id`. */
function column(field: string): string {
  return field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** `INSERT INTO <table> (content_id, …) VALUES (@contentId, …)`: one named parameter per field. */
function insertInto(table: string, fields: readonly string[]): string {
  return `INSERT INTO ${table} (${fields.map(column).join(', ')}) VALUES (${fields.map((field) => `@${field}`).join(', ')})`;
}

/** One parameter per field: an unset optional field is bound as NULL. */
function toParams(record: object, fields: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(fields.map((field) => [field, (record as Record<string, unknown>)[field] ?? null]));
}
