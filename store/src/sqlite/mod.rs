//! The embedded SQLite backend: WAL, `synchronous=FULL`, one group-commit writer thread, a pool of readers,
//! and operations that run on their callers' threads over a read connection with their writes buffered
//! (`crate::operation`), replayed by the writer at commit.
//!
//! Owns connections, pragmas, the writer loop (BEGIN, a SAVEPOINT per work or operation write set, one COMMIT,
//! then the answers) and the [`crate::Read`]/[`crate::Tx`] implementations over a connection. Table SQL lives in `tables.rs` and
//! `system.rs`; this module must not build row SQL itself.

mod system;
mod tables;

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use rusqlite::config::DbConfig;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::operation::{Buffered, Write, WriteSet};
use crate::row_lock::RowLocks;
use crate::runtime_tables::{self, SchemaCell};
use crate::system::*;
use crate::{
    Attributes, BoxedWork, EntityRef, Pending, Query, Read, Result, Row, Schema, Store, StoreError,
    TableDef, Tx,
};

/// A clock returning ms since the Unix epoch; injectable so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Tuning of a [`SqliteStore`].
#[derive(Clone)]
pub struct SqliteOptions {
    /// Read connections kept open for [`crate::StoreExt::read`] and for running operations (each holds one
    /// while it runs; more are opened on demand, then closed).
    pub read_connections: usize,
    /// Most works per group commit.
    pub max_batch: usize,
    /// The clock for `createdon`/`modifiedon`, trace logs and job creation.
    pub clock: Clock,
    /// Trace-log rows a work that rolls back may leave: the last ones (nearest the failure) are kept, the
    /// others dropped with a warning, so a runaway operation cannot flood the log it cannot commit to.
    pub max_rollback_trace_rows: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            // One per concurrent operation the pipeline bench drives (64 callers), so operations rarely open one.
            read_connections: 64,
            max_batch: 512,
            clock: Arc::new(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }),
            max_rollback_trace_rows: 1_000,
        }
    }
}

type Answer = oneshot::Sender<Result<Box<dyn Any + Send>>>;

/// What the writer runs in a savepoint.
enum Work {
    /// A closure over the write connection (registration, job transitions, tests).
    Boxed(BoxedWork),
    /// An operation's buffered writes and trace rows.
    Replay(WriteSet),
}

struct Job {
    work: Work,
    answer: Answer,
}

/// The SQLite store. Dropping it finishes queued works, then stops the writer.
pub struct SqliteStore {
    path: PathBuf,
    schema: Arc<SchemaCell>,
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    read_connections: usize,
    clock: Clock,
    locks: RowLocks,
    next_operation: AtomicU64,
}

/// Creates the database file owner-only (0600 on Unix) before SQLite opens it — SQLite gives its WAL and
/// shared-memory files the database file's permissions — and narrows an existing file's (and its WAL's)
/// to the same: the file holds secure step configurations and endpoint secrets.
fn create_private(path: &Path) -> Result<()> {
    let cannot = |e: std::io::Error| {
        StoreError::Database(format!(
            "{}: cannot create the database file: {e}",
            path.display()
        ))
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path).map_err(cannot)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(meta) = std::fs::metadata(&file)
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(cannot)?;
            }
        }
    }
    #[cfg(not(unix))]
    options.open(path).map_err(cannot)?;
    Ok(())
}

/// Refuses a database that lost its data: an empty `weft.db` beside a WAL or shared-memory file (the file
/// was truncated or replaced while a store used it: opening it would start an empty store over the
/// remains), or one whose pages fail `PRAGMA quick_check` (a damaged page shows up at start, not as a
/// failure of some later read).
fn check_intact(path: &Path, conn: Option<&Connection>) -> Result<()> {
    let Some(conn) = conn else {
        let empty = std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
        let companion = ["-wal", "-shm"]
            .into_iter()
            .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
            .find(|p| p.exists());
        if empty && let Some(companion) = companion {
            return Err(StoreError::Database(format!(
                "{} is empty but {} exists beside it: the database was truncated or replaced; \
                 weft will not start an empty store over it. Restore the file from a backup (or, to \
                 start afresh on purpose, remove the data directory)",
                path.display(),
                companion.display()
            )));
        }
        return Ok(());
    };
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if problems.iter().any(|p| p != "ok") {
        return Err(StoreError::Database(format!(
            "{} is damaged (PRAGMA quick_check: {}); weft will not start on it. Restore the file from \
             a backup",
            path.display(),
            problems.join("; ")
        )));
    }
    Ok(())
}

/// SQLite's words for a file it cannot read as a database, said as what they mean for weft.
fn damaged(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Database(why)
            if why.contains("not a database") || why.contains("malformed") =>
        {
            StoreError::Database(format!(
                "{} is damaged or not a weft database ({why}); weft will not start on it. Restore the \
                 file from a backup",
                path.display()
            ))
        }
        other => other,
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(format!(
            "{}: journal mode is `{mode}`, WAL is required",
            path.display()
        )));
    }
    // FULL: the WAL is fsynced at every commit, so an answered caller's work survives power loss.
    conn.execute_batch("PRAGMA synchronous = FULL;")?;
    conn.set_prepared_statement_cache_capacity(256);
    // Query planner stability: without it SQLite (built with STAT4) re-compiles a cached statement whenever a
    // parameter it looked at while planning is re-bound — every claim's `LIMIT ?` — so the statement cache
    // did not save the compile on the hottest statements.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creates or migrates tables for `schema`
    /// (see `tables::migrate` for what is migrated) and starts the writer thread.
    pub fn open(path: impl AsRef<Path>, schema: Schema, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        check_intact(&path, None)?;
        create_private(&path)?;
        let mut conn = open_connection(&path).map_err(|e| damaged(&path, e))?;
        check_intact(&path, Some(&conn)).map_err(|e| damaged(&path, e))?;
        let schema = (|| {
            let tx = conn.transaction()?;
            system::migrate(&tx)?;
            let (schema, superseded) = runtime_tables::merge(schema, system::runtime_tables(&tx)?);
            for name in superseded {
                system::delete_runtime_table(&tx, &name)?;
            }
            tables::migrate(&tx, &schema)?;
            tx.commit()?;
            Ok::<_, StoreError>(schema)
        })()
        .map_err(|e| damaged(&path, e))?;
        let schema = Arc::new(SchemaCell::new(schema));
        let (queue, rx) = mpsc::channel::<Job>();
        let writer_schema = schema.clone();
        let SqliteOptions {
            read_connections,
            max_batch,
            clock,
            max_rollback_trace_rows,
        } = options;
        let writer_clock = clock.clone();
        let writer = std::thread::Builder::new()
            .name("weft-store-writer".into())
            .spawn(move || {
                let writer = Writer {
                    conn,
                    schema: &writer_schema,
                    clock: &writer_clock,
                    max_rollback_trace_rows: max_rollback_trace_rows.max(1),
                };
                writer_loop(&writer, &rx, max_batch.max(1))
            })
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            path,
            schema,
            queue: Some(queue),
            writer: Some(writer),
            readers: Mutex::new(Vec::new()),
            read_connections,
            clock,
            locks: RowLocks::default(),
            next_operation: AtomicU64::new(1),
        })
    }

    /// Queues work for the writer.
    fn send(&self, work: Work) -> Pending {
        let (answer, pending) = Pending::channel();
        if let Some(q) = &self.queue
            && let Err(mpsc::SendError(job)) = q.send(Job { work, answer })
        {
            let _ = job.answer.send(Err(StoreError::Closed));
        }
        pending
    }

    /// A read connection from the pool (or a new one).
    fn reader(&self) -> Result<Connection> {
        let pooled = self.readers.lock().map_err(|_| StoreError::Closed)?.pop();
        match pooled {
            Some(c) => Ok(c),
            None => {
                let c = open_connection(&self.path)?;
                c.execute_batch("PRAGMA query_only = ON;")?;
                Ok(c)
            }
        }
    }

    /// Gives a read connection back to the pool (or closes it when the pool is full).
    fn give_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < self.read_connections
        {
            pool.push(conn);
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Store for SqliteStore {
    fn submit(&self, work: BoxedWork) -> Pending {
        self.send(Work::Boxed(work))
    }

    fn operate_with(
        &self,
        deadline: Option<Instant>,
        f: &mut dyn FnMut(&mut dyn Tx) -> bool,
    ) -> Result<()> {
        let conn = self.reader()?;
        let owner = self.next_operation.fetch_add(1, Ordering::Relaxed);
        let schema = self.schema.get();
        let read = SqlRead {
            conn: &conn,
            schema: &schema,
        };
        let mut op = Buffered::new(&read, &self.locks, owner, deadline, &*self.clock);
        let ran = catch_unwind(AssertUnwindSafe(|| f(&mut op)));
        let (set, held) = op.finish(matches!(ran, Ok(true)));
        self.give_back(conn);
        let answer = if set.is_empty() {
            Ok(())
        } else {
            // The locks are held until the writer answers: the next writer of a row then reads it committed.
            self.send(Work::Replay(set)).wait().and_then(|payload| {
                match payload.downcast::<Result<()>>() {
                    Ok(result) => *result,
                    Err(_) => Err(StoreError::Database(
                        "the writer answered with an unexpected type".into(),
                    )),
                }
            })
        };
        self.locks.release(owner, &held);
        match ran {
            Ok(_) => answer,
            Err(p) => Err(StoreError::WorkPanicked(panic_message(p.as_ref()))),
        }
    }

    fn read_with(&self, f: &mut dyn FnMut(&dyn Read) -> Result<()>) -> Result<()> {
        let conn = self.reader()?;
        let result = f(&SqlRead {
            conn: &conn,
            schema: &self.schema.get(),
        });
        self.give_back(conn);
        result
    }

    fn schema(&self) -> Arc<Schema> {
        self.schema.get()
    }

    fn put_runtime_table(&self, table: TableDef) -> Result<()> {
        self.schema.put_table(table, |next, changed| {
            self.change_tables(|tx| {
                tables::migrate(tx, next)?;
                for (name, definition) in changed {
                    system::put_runtime_table(tx, &name, &definition)?;
                }
                Ok(())
            })
        })
    }

    fn delete_runtime_table(&self, logical_name: &str) -> Result<()> {
        self.schema.delete_table(logical_name, || {
            self.change_tables(|tx| {
                tables::drop_table(tx, logical_name)?;
                system::delete_runtime_table(tx, logical_name)
            })
        })
    }
}

impl SqliteStore {
    /// Runs a table change (DDL and the stored definitions) in one immediate transaction on a connection of
    /// its own: it waits for the writer's current batch (SQLite's busy timeout) and never holds the writer.
    fn change_tables(&self, f: impl FnOnce(&Connection) -> Result<()>) -> Result<()> {
        let mut conn = open_connection(&self.path)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        f(&tx)?;
        tx.commit()?;
        Ok(())
    }
}

/// What the writer thread works with.
struct Writer<'a> {
    conn: Connection,
    /// Read at the start of each batch: a batch holds only works queued before it began, so an operation on
    /// a table created at runtime finds it.
    schema: &'a SchemaCell,
    clock: &'a Clock,
    max_rollback_trace_rows: usize,
}

fn writer_loop(writer: &Writer<'_>, rx: &mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(writer, batch);
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into())
}

/// A caller's answer, held until its batch commits.
struct Reply {
    answer: Answer,
    result: Result<Box<dyn Any + Send>>,
    /// The result reports changes that only exist once the batch commits.
    needs_commit: bool,
}

/// Answers every caller of a failed batch: works that changed data get CommitFailed (nothing is durable).
fn fail_all(replies: Vec<Reply>, why: &str) {
    for r in replies {
        let _ = r.answer.send(if r.needs_commit {
            Err(StoreError::CommitFailed(why.to_string()))
        } else {
            r.result
        });
    }
}

/// Runs one statement of the writer's per-work bracket from the statement cache: parsing SAVEPOINT/RELEASE
/// anew for every work was a measurable share of the writer's time.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// One group commit: BEGIN; per work SAVEPOINT, run, RELEASE or ROLLBACK TO; COMMIT; then answer everyone.
fn run_batch(writer: &Writer<'_>, batch: Vec<Job>) {
    let schema = writer.schema.get();
    let (conn, schema, clock) = (&writer.conn, &*schema, writer.clock);
    let max_rollback_trace_rows = writer.max_rollback_trace_rows;
    let mut answers: Vec<Reply> = Vec::with_capacity(batch.len());
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let why = e.to_string();
        for job in batch {
            let _ = job.answer.send(Err(StoreError::CommitFailed(why.clone())));
        }
        return;
    }
    for job in batch {
        if let Err(e) = exec(conn, "SAVEPOINT work") {
            answers.push(Reply {
                answer: job.answer,
                result: Err(e.into()),
                needs_commit: false,
            });
            continue;
        }
        let mut tx = SqlTx {
            read: SqlRead { conn, schema },
            clock,
            fixed_now: None,
            traces: Vec::new(),
        };
        let ran = catch_unwind(AssertUnwindSafe(|| match job.work {
            Work::Boxed(work) => work(&mut tx),
            Work::Replay(set) => replay(&mut tx, set),
        }));
        let mut traces = std::mem::take(&mut tx.traces);
        let (result, keep) = match ran {
            Ok(outcome) => (Ok(outcome.payload), outcome.commit),
            Err(p) => (
                Err(StoreError::WorkPanicked(panic_message(p.as_ref()))),
                false,
            ),
        };
        if !keep && traces.len() > max_rollback_trace_rows {
            let dropped = traces.len() - max_rollback_trace_rows;
            tracing::warn!(
                dropped,
                kept = max_rollback_trace_rows,
                "a rolled-back work left more plug-in trace log rows than the limit: the earliest were dropped"
            );
            traces.drain(..dropped);
        }
        let end = if keep {
            exec(conn, "RELEASE work")
        } else {
            conn.execute_batch("ROLLBACK TO work; RELEASE work")
        };
        match end {
            Ok(()) => answers.push(Reply {
                answer: job.answer,
                result,
                needs_commit: keep,
            }),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK TO work; RELEASE work");
                answers.push(Reply {
                    answer: job.answer,
                    result: Err(e.into()),
                    needs_commit: false,
                });
            }
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk full…): earlier works are gone too.
            fail_all(
                std::mem::take(&mut answers),
                "the database rolled back the transaction",
            );
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                tracing::error!(error = %e, "cannot restart the batch transaction");
            }
        }
        for (id, entry, at) in traces {
            if let Err(e) = system::insert_trace_log(conn, id, &entry, at) {
                tracing::warn!(error = %e, plugin = %entry.plugin, "cannot record a plug-in trace log row");
            }
        }
    }
    match exec(conn, "COMMIT") {
        Ok(()) => {
            for r in answers {
                let _ = r.answer.send(r.result);
            }
        }
        Err(e) => {
            let why = e.to_string();
            let _ = conn.execute_batch("ROLLBACK");
            fail_all(answers, &why);
        }
    }
}

/// Applies an operation's write set in the writer's savepoint (when it commits) and queues its trace rows
/// (either way). The writes were checked when the operation made them and their rows are still locked, so
/// they apply as the operation saw them; one that fails now (a row changed by a work outside any operation)
/// fails the operation as a whole.
fn replay(tx: &mut SqlTx<'_>, set: WriteSet) -> crate::WorkOutcome {
    tx.traces.extend(set.traces);
    let result = if set.commit {
        apply_writes(tx, set.writes)
    } else {
        Ok(())
    };
    tx.fixed_now = None;
    crate::WorkOutcome {
        commit: set.commit && result.is_ok(),
        payload: Box::new(result),
    }
}

fn apply_writes(tx: &mut SqlTx<'_>, writes: Vec<Write>) -> Result<()> {
    for w in writes {
        match w {
            Write::Create {
                table,
                id,
                attributes,
                now,
            } => {
                tx.fixed_now = Some(now);
                tx.create(&table, Some(id), attributes)?;
            }
            Write::Update {
                table,
                id,
                attributes,
                now,
            } => {
                tx.fixed_now = Some(now);
                tx.update(&table, id, attributes)?;
            }
            Write::Delete { table, id } => {
                tx.delete(&table, id)?;
            }
            Write::Link {
                relationship,
                target,
                related,
                now,
                link,
            } => {
                tx.fixed_now = Some(now);
                if link {
                    tx.associate(&relationship, &target, &related)?;
                } else {
                    tx.disassociate(&relationship, &target, &related)?;
                }
            }
            Write::SystemJob { job, now } => {
                system::insert_system_job(tx.read.conn, &job, now)?;
            }
        }
    }
    Ok(())
}

/// Reads over one connection (a read connection, or the writer's inside a transaction).
struct SqlRead<'a> {
    conn: &'a Connection,
    schema: &'a Schema,
}

impl Read for SqlRead<'_> {
    fn schema(&self) -> &Schema {
        self.schema
    }
    fn retrieve(&self, table: &str, id: Uuid, columns: Option<&[String]>) -> Result<Option<Row>> {
        tables::retrieve(self.conn, self.schema, table, id, columns)
    }
    fn retrieve_multiple(&self, query: &Query) -> Result<Vec<Row>> {
        tables::retrieve_multiple(self.conn, self.schema, query)
    }
    fn related(&self, relationship: &str, row: &EntityRef) -> Result<Vec<EntityRef>> {
        tables::related(self.conn, self.schema, relationship, row)
    }
    fn plugin_assemblies(&self) -> Result<Vec<PluginAssembly>> {
        system::plugin_assemblies(self.conn)
    }
    fn plugin_types(&self) -> Result<Vec<PluginType>> {
        system::plugin_types(self.conn)
    }
    fn plugin_assembly_content(&self, assembly_id: Uuid) -> Result<Option<AssemblyContent>> {
        system::plugin_assembly_content(self.conn, assembly_id)
    }
    fn declarations(&self) -> Result<Vec<Declaration>> {
        system::declarations(self.conn)
    }
    fn steps(&self) -> Result<Vec<Step>> {
        system::steps(self.conn)
    }
    fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        system::workflows(self.conn)
    }
    fn step_secure_configuration_for_sandbox(&self, step_id: Uuid) -> Result<Option<String>> {
        system::step_secure_configuration(self.conn, step_id)
    }
    fn service_endpoints(&self) -> Result<Vec<ServiceEndpoint>> {
        system::service_endpoints(self.conn)
    }
    fn service_endpoint(&self, id: Uuid) -> Result<Option<ServiceEndpoint>> {
        system::service_endpoint(self.conn, id)
    }
    fn service_endpoint_secrets_for_delivery(&self, id: Uuid) -> Result<Option<EndpointSecrets>> {
        system::service_endpoint_secrets(self.conn, id)
    }
    fn system_job(&self, id: Uuid) -> Result<Option<SystemJob>> {
        system::system_job(self.conn, id)
    }
    fn system_job_lease(&self, id: Uuid) -> Result<Option<JobLease>> {
        system::system_job_lease(self.conn, id)
    }
    fn system_jobs(&self, filter: &JobFilter) -> Result<Vec<SystemJob>> {
        system::system_jobs(self.conn, filter)
    }
    fn trace_logs(&self, filter: &TraceFilter) -> Result<Vec<TraceLog>> {
        system::trace_logs(self.conn, filter)
    }
    fn trace_recording(&self, trace_id: Uuid) -> Result<Option<String>> {
        system::trace_recording(self.conn, trace_id)
    }
    fn job_attempts(&self, job_id: Uuid) -> Result<Vec<JobAttempt>> {
        system::job_attempts(self.conn, job_id)
    }
    fn expired_job_leases(&self, now_ms: i64) -> Result<Vec<SystemJob>> {
        system::expired_job_leases(self.conn, now_ms)
    }
    fn step_async_auto_delete(&self, step_id: Uuid) -> Result<Option<bool>> {
        system::step_async_auto_delete(self.conn, step_id)
    }
    fn system_job_count(&self, status: JobStatus) -> Result<(u64, Option<i64>)> {
        system::system_job_count(self.conn, status)
    }
}

/// Writes inside the writer's current savepoint.
struct SqlTx<'a> {
    read: SqlRead<'a>,
    clock: &'a Clock,
    /// The time of the buffered write being replayed (its `createdon`/`modifiedon`), instead of the clock's.
    fixed_now: Option<i64>,
    /// Trace rows, written after the savepoint ends so they survive a rollback.
    traces: crate::HeldTraces,
}

impl Read for SqlTx<'_> {
    fn schema(&self) -> &Schema {
        self.read.schema
    }
    fn retrieve(&self, table: &str, id: Uuid, columns: Option<&[String]>) -> Result<Option<Row>> {
        self.read.retrieve(table, id, columns)
    }
    fn retrieve_multiple(&self, query: &Query) -> Result<Vec<Row>> {
        self.read.retrieve_multiple(query)
    }
    fn related(&self, relationship: &str, row: &EntityRef) -> Result<Vec<EntityRef>> {
        self.read.related(relationship, row)
    }
    delegate_system_reads!(read);
}

impl Tx for SqlTx<'_> {
    fn now_ms(&self) -> i64 {
        self.fixed_now.unwrap_or_else(|| (self.clock)())
    }
    fn create(&mut self, table: &str, id: Option<Uuid>, attributes: Attributes) -> Result<Uuid> {
        tables::create(
            self.read.conn,
            self.read.schema,
            self.now_ms(),
            table,
            id,
            attributes,
        )
    }
    fn update(&mut self, table: &str, id: Uuid, attributes: Attributes) -> Result<Attributes> {
        tables::update(
            self.read.conn,
            self.read.schema,
            self.now_ms(),
            table,
            id,
            attributes,
        )
    }
    fn delete(&mut self, table: &str, id: Uuid) -> Result<Row> {
        tables::delete(self.read.conn, self.read.schema, table, id)
    }
    fn associate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()> {
        tables::associate(
            self.read.conn,
            self.read.schema,
            self.now_ms(),
            relationship,
            target,
            related,
            true,
        )
    }
    fn disassociate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()> {
        tables::associate(
            self.read.conn,
            self.read.schema,
            self.now_ms(),
            relationship,
            target,
            related,
            false,
        )
    }
    fn insert_system_job(&mut self, job: NewSystemJob) -> Result<Uuid> {
        system::insert_system_job(self.read.conn, &job, self.now_ms())
    }
    fn insert_trace_log(&mut self, entry: NewTraceLog) -> Result<Uuid> {
        let at = self.now_ms();
        Ok(crate::hold_trace(&mut self.traces, entry, at))
    }
    fn purge_trace_logs(&mut self, before_ms: i64, limit: usize) -> Result<usize> {
        system::purge_trace_logs(self.read.conn, before_ms, limit)
    }
    fn put_plugin_assembly(&mut self, assembly: &PluginAssembly) -> Result<()> {
        system::put_plugin_assembly(self.read.conn, assembly)
    }
    fn put_plugin_type(&mut self, plugin_type: &PluginType) -> Result<()> {
        system::put_plugin_type(self.read.conn, plugin_type)
    }
    fn put_plugin_assembly_content(
        &mut self,
        assembly_id: Uuid,
        content: Option<&AssemblyContent>,
    ) -> Result<()> {
        system::put_plugin_assembly_content(self.read.conn, assembly_id, content)
    }
    fn put_declaration(&mut self, declaration: &Declaration) -> Result<()> {
        system::put_declaration(self.read.conn, declaration)
    }
    fn delete_declaration(&mut self, kind: &str, id: Uuid) -> Result<()> {
        system::delete_declaration(self.read.conn, kind, id)
    }
    fn put_step(&mut self, step: &StepDef, secure_configuration: SecretUpdate) -> Result<()> {
        system::put_step(self.read.conn, step, secure_configuration)
    }
    fn delete_step(&mut self, id: Uuid) -> Result<bool> {
        system::delete_step(self.read.conn, id)
    }
    fn put_workflow(&mut self, workflow: &StoredWorkflow) -> Result<()> {
        system::put_workflow(self.read.conn, workflow)
    }
    fn delete_workflow(&mut self, id: Uuid) -> Result<bool> {
        system::delete_workflow(self.read.conn, id)
    }
    fn put_service_endpoint(
        &mut self,
        endpoint: &ServiceEndpointDef,
        secrets: &EndpointSecretsUpdate,
    ) -> Result<()> {
        system::put_service_endpoint(self.read.conn, endpoint, secrets)
    }
    fn delete_service_endpoint(&mut self, id: Uuid) -> Result<bool> {
        system::delete_service_endpoint(self.read.conn, id)
    }
    fn claim_jobs(
        &mut self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<SystemJob>> {
        system::claim_jobs(self.read.conn, worker, now_ms, lease_ms, limit)
    }
    fn complete_job(&mut self, id: Uuid, worker: &str, now_ms: i64) -> Result<()> {
        system::complete_job(self.read.conn, id, worker, now_ms)
    }
    fn fail_job(&mut self, id: Uuid, worker: &str, now_ms: i64, error: &JobError) -> Result<()> {
        system::fail_job(self.read.conn, id, worker, now_ms, error)
    }
    fn wait_job(
        &mut self,
        id: Uuid,
        worker: &str,
        next_attempt_ms: i64,
        error: &JobError,
    ) -> Result<()> {
        system::wait_job(self.read.conn, id, worker, next_attempt_ms, error)
    }
    fn delete_job(&mut self, id: Uuid) -> Result<bool> {
        system::delete_job(self.read.conn, id)
    }
    fn update_job(&mut self, id: Uuid, update: &JobUpdate) -> Result<()> {
        system::update_job(self.read.conn, id, update)
    }
    fn insert_job_attempt(&mut self, attempt: &NewJobAttempt) -> Result<i32> {
        system::insert_job_attempt(self.read.conn, attempt)
    }
}
