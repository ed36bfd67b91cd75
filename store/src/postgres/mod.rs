//! The PostgreSQL backend: real server transactions and row locks, many hosts on one database.
//!
//! Owns the connection pool, the opening migration, the transaction bracket of an operation
//! ([`crate::Store::operate_with`]: BEGIN, `lock_timeout` = the operation's remaining time, the work,
//! COMMIT or ROLLBACK, then the trace rows) and of a submitted work (the same on a pool of worker threads),
//! and the [`crate::Read`]/[`crate::Tx`] implementations over a connection. Table SQL lives in `tables.rs`
//! and `system.rs`; this module must not build row SQL itself.
//!
//! Differences from the SQLite backend, by design: writes go straight to the server inside the operation's
//! transaction (no buffer, no in-process row locks: the server locks the rows it writes, and a row is
//! locked with `SELECT … FOR UPDATE` before an update reads its previous values); a submitted work runs in
//! a transaction of its own beside the others (no single writer), with the job rows it reads locked; the
//! server's WAL writer groups commits. A statement that fails on the server ends the transaction (PostgreSQL
//! refuses everything after it): the operation then fails as a whole even if the caller went on, as
//! Dataverse does when a plug-in ignores a failed service call inside the transaction.

mod conn;
mod notify;
mod system;
mod tables;
mod testdb;
pub(crate) mod tls;

pub use testdb::{REQUIRE_POSTGRES_VAR, TEST_POSTGRES_VAR, TestDatabase};

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_postgres::Config;
use uuid::Uuid;

use crate::runtime_tables::{self, SchemaCell};
use crate::sqlite::Clock;
use crate::system::*;
use crate::{
    Attributes, BoxedWork, ChangeListener, EntityRef, Pending, Query, Read, Result, Row, Schema,
    Store, StoreError, TableDef, Tx,
};
pub(crate) use conn::causes;
use conn::{Conn, Db, connect};
use notify::Signals;

/// Tuning of a [`PgStore`].
#[derive(Clone)]
pub struct PgOptions {
    /// The most connections open at once (`[store] pool_size`): each running operation, read and worker
    /// holds one while it runs, and a caller beyond it waits for one (at most until its operation's deadline,
    /// else two minutes). Opened on demand, then kept. Nothing in weft holds one connection while it waits
    /// for another, so a full pool only queues callers.
    pub connections: usize,
    /// Threads running submitted works (registration changes, job transitions), each in a transaction of
    /// its own.
    pub workers: usize,
    /// The clock for `createdon`/`modifiedon`, trace logs and job creation.
    pub clock: Clock,
    /// Trace-log rows a work that rolls back may leave (the last ones are kept), as on SQLite.
    pub max_rollback_trace_rows: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        let sqlite = crate::SqliteOptions::default();
        PgOptions {
            // The pipeline bench drives 64 concurrent operations; PostgreSQL's default max_connections is 100.
            connections: 64,
            workers: 8,
            clock: sqlite.clock,
            max_rollback_trace_rows: sqlite.max_rollback_trace_rows,
        }
    }
}

/// How long a caller without an operation deadline (a read, a submitted work) waits for a free connection
/// when [`PgOptions::connections`] are all in use: the pipeline's operation limit.
const POOL_WAIT: Duration = Duration::from_secs(120);

/// `postgres://user:***@host/db`: a URL fit for messages and logs (the password never is).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Whether a store location names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

struct Pool {
    config: Config,
    state: Mutex<PoolState>,
    /// Signalled when a connection goes back to the pool or is closed.
    freed: Condvar,
    size: usize,
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections open, idle or in use.
    open: usize,
}

impl Pool {
    /// A connection: an idle one, a new one while fewer than `size` are open, else the first one given
    /// back before `deadline` (or [`POOL_WAIT`]).
    fn get(&self, deadline: Option<Instant>) -> Result<Conn> {
        let until = deadline.unwrap_or_else(|| Instant::now() + POOL_WAIT);
        let mut state = self.state.lock().map_err(|_| StoreError::Closed)?;
        loop {
            if let Some(c) = state.idle.pop() {
                if !c.is_closed() {
                    return Ok(c);
                }
                state.open -= 1;
                drop(state);
                drop(c);
                state = self.state.lock().map_err(|_| StoreError::Closed)?;
                continue;
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return connect(&self.config).inspect_err(|_| self.closed());
            }
            let now = Instant::now();
            if now >= until {
                return Err(StoreError::Database(format!(
                    "no PostgreSQL connection became free: all {} of this host's connections ([store] \
                     pool_size) stayed in use",
                    self.size
                )));
            }
            state = self
                .freed
                .wait_timeout(state, until - now)
                .map_err(|_| StoreError::Closed)?
                .0;
        }
    }

    /// Gives a connection back, unless the server closed it.
    fn put(&self, mut conn: Conn) {
        if conn.is_closed() {
            drop(conn);
            self.closed();
            return;
        }
        conn.reset();
        if let Ok(mut state) = self.state.lock() {
            state.idle.push(conn);
        }
        self.freed.notify_one();
    }

    /// Counts a connection that was closed (or never opened).
    fn closed(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.open = state.open.saturating_sub(1);
        }
        self.freed.notify_one();
    }
}

type Answer = tokio::sync::oneshot::Sender<Result<Box<dyn Any + Send>>>;

struct Job {
    work: BoxedWork,
    answer: Answer,
}

/// The PostgreSQL store. Dropping it finishes queued works, then stops the workers.
pub struct PgStore {
    url: String,
    schema: Arc<SchemaCell>,
    pool: Arc<Pool>,
    queue: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    clock: Clock,
    max_rollback_trace_rows: usize,
    /// NOTIFY after commits that wrote jobs or registration; LISTEN for the other hosts'.
    signals: Arc<Signals>,
}

/// Serialises the opening migrations of hosts that start at once on one database (an arbitrary constant
/// of weft's own).
const MIGRATION_LOCK: i64 = 0x7765_6674_0001;

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`), creates or migrates the system
    /// and declared tables for `schema` in one transaction (as the SQLite backend does, the same rules), and
    /// starts the workers.
    pub fn open(url: &str, schema: Schema, options: PgOptions) -> Result<Self> {
        let shown = redact_url(url);
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::Database(format!("{shown} is not a PostgreSQL URL: {e}")))?;
        let conn = RefCell::new(
            connect(&config).map_err(|e| StoreError::Database(format!("{shown}: {e}")))?,
        );
        let migrated = (|| {
            let db = Db(&conn);
            conn.borrow_mut().batch("BEGIN")?;
            db.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            system::migrate(db)?;
            let (schema, superseded) = runtime_tables::merge(schema, system::runtime_tables(db)?);
            for name in superseded {
                system::delete_runtime_table(db, &name)?;
            }
            tables::migrate(db, &schema)?;
            conn.borrow_mut().batch("COMMIT")?;
            Ok::<_, StoreError>(schema)
        })();
        let schema = match migrated {
            Ok(schema) => schema,
            Err(e) => {
                let _ = conn.borrow_mut().batch("ROLLBACK");
                return Err(e);
            }
        };
        let signals = Signals::start(::postgres::Config::from(config.clone()))
            .map_err(|e| StoreError::Database(format!("cannot start the NOTIFY thread: {e}")))?;
        let pool = Arc::new(Pool {
            config,
            state: Mutex::new(PoolState {
                idle: vec![conn.into_inner()],
                open: 1,
            }),
            freed: Condvar::new(),
            size: options.connections.max(1),
        });
        let schema = Arc::new(SchemaCell::new(schema));
        let (queue, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let max_rollback_trace_rows = options.max_rollback_trace_rows.max(1);
        let mut workers = Vec::new();
        for n in 0..options.workers.max(1) {
            let (rx, pool, schema, clock, signals) = (
                rx.clone(),
                pool.clone(),
                schema.clone(),
                options.clock.clone(),
                signals.clone(),
            );
            let worker = std::thread::Builder::new()
                .name(format!("weft-pg-worker-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let answer = run_work(
                            &pool,
                            &schema.get(),
                            &clock,
                            &signals,
                            max_rollback_trace_rows,
                            job.work,
                        );
                        let _ = job.answer.send(answer);
                    }
                })
                .map_err(|e| StoreError::Database(format!("cannot start a worker thread: {e}")))?;
            workers.push(worker);
        }
        Ok(PgStore {
            url: shown,
            schema,
            pool,
            queue: Some(queue),
            workers,
            clock: options.clock,
            max_rollback_trace_rows,
            signals,
        })
    }

    /// The database's URL, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs a table change (DDL and the stored definitions) in one transaction under the migration lock,
    /// so it never interleaves with another host's opening migration. Other hosts on the database see the
    /// table after their next start.
    fn change_tables(&self, f: impl FnOnce(Db<'_>) -> Result<()>) -> Result<()> {
        let conn = RefCell::new(self.pool.get(None)?);
        let changed = (|| {
            let db = Db(&conn);
            // Bounded: the DDL waits for every transaction holding the table, and a caller waits for it.
            conn.borrow_mut()
                .batch("BEGIN; SET LOCAL lock_timeout = '30s'")?;
            db.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            f(db)?;
            conn.borrow_mut().batch("COMMIT")?;
            Ok::<_, StoreError>(())
        })();
        if changed.is_err() {
            let _ = conn.borrow_mut().batch("ROLLBACK");
        }
        self.pool.put(conn.into_inner());
        changed
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.queue.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.signals.stop();
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".into())
}

/// One transaction around `f`: BEGIN (read committed), the lock timeout, `f`, then COMMIT when it says so
/// and nothing failed on the server, else ROLLBACK; trace rows are written either way (in the transaction
/// when it commits, after the rollback in one of their own). Returns whether it committed, or why the commit
/// failed.
#[allow(clippy::too_many_arguments)]
fn transaction(
    conn: Conn,
    pool: &Pool,
    schema: &Schema,
    clock: &Clock,
    signals: &Signals,
    deadline: Option<Instant>,
    max_rollback_trace_rows: usize,
    f: &mut dyn FnMut(&mut dyn Tx) -> bool,
) -> (Result<bool>, Option<Box<dyn Any + Send>>) {
    let mut conn = conn;
    // BEGIN and, with a deadline, the row lock wait it bounds (55P03 → LockTimeout): sent with the
    // transaction's first statement, not on their own.
    conn.begin(match deadline {
        // PostgreSQL takes an int (ms): at most ~24 days, far beyond any operation limit.
        Some(d) => format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .clamp(1, i32::MAX as u128)
        ),
        None => "BEGIN".to_owned(),
    });
    let cell = RefCell::new(conn);
    let mut tx = PgTx {
        read: PgRead {
            db: Db(&cell),
            schema,
            lock: true,
        },
        clock,
        traces: Vec::new(),
        wrote_jobs: false,
        wrote_registration: false,
    };
    let ran = catch_unwind(AssertUnwindSafe(|| f(&mut tx)));
    let mut traces = std::mem::take(&mut tx.traces);
    let (wrote_jobs, wrote_registration) = (tx.wrote_jobs, tx.wrote_registration);
    let wants_commit = matches!(ran, Ok(true));
    let failed = cell.borrow_mut().failed.take();
    let result = if wants_commit && failed.is_none() {
        // A statement takes at most 65,535 parameters (14 a row). The trace rows go with the COMMIT.
        let written = traces
            .chunks(1000)
            .try_for_each(|rows| system::insert_trace_logs(Db(&cell), rows));
        let mut conn = cell.borrow_mut();
        match written {
            // A failed COMMIT (or a deferred write failing with it) rolled back already.
            Ok(()) => conn.commit(),
            Err(e) => {
                conn.rollback();
                Err(e)
            }
        }
        .map(|()| true)
    } else {
        cell.borrow_mut().rollback();
        match failed {
            // The work went on after a statement failed on the server: the transaction could not commit.
            Some(e) if wants_commit => Err(e),
            _ => Ok(false),
        }
    };
    if let Ok(true) = result {
        signals.committed(wrote_jobs, wrote_registration);
    } else {
        if traces.len() > max_rollback_trace_rows {
            let dropped = traces.len() - max_rollback_trace_rows;
            tracing::warn!(
                dropped,
                kept = max_rollback_trace_rows,
                "a rolled-back work left more plug-in trace log rows than the limit: the earliest were dropped"
            );
            traces.drain(..dropped);
        }
        // The trace of a failed operation is kept (as Dataverse does): written after the rollback.
        cell.borrow_mut().reset();
        for (id, entry, at) in traces {
            if let Err(e) = system::insert_trace_log(Db(&cell), id, &entry, at) {
                tracing::warn!(error = %e, plugin = %entry.plugin, "cannot record a plug-in trace log row");
            }
        }
    }
    let conn = cell.into_inner();
    pool.put(conn);
    match ran {
        Ok(_) => (result, None),
        Err(p) => (
            Err(StoreError::WorkPanicked(panic_message(p.as_ref()))),
            Some(p),
        ),
    }
}

fn run_work(
    pool: &Pool,
    schema: &Schema,
    clock: &Clock,
    signals: &Signals,
    max_rollback_trace_rows: usize,
    work: BoxedWork,
) -> Result<Box<dyn Any + Send>> {
    let conn = pool.get(None)?;
    let mut work = Some(work);
    let mut payload = None;
    let (result, _) = transaction(
        conn,
        pool,
        schema,
        clock,
        signals,
        None,
        max_rollback_trace_rows,
        &mut |tx| match work.take() {
            Some(w) => {
                let outcome = w(tx);
                payload = Some(outcome.payload);
                outcome.commit
            }
            None => false,
        },
    );
    result?;
    payload.ok_or(StoreError::Closed)
}

impl Store for PgStore {
    fn submit(&self, work: BoxedWork) -> Pending {
        let (answer, pending) = Pending::channel();
        match &self.queue {
            Some(q) => {
                if let Err(mpsc::SendError(job)) = q.send(Job { work, answer }) {
                    let _ = job.answer.send(Err(StoreError::Closed));
                }
            }
            None => {
                let _ = answer.send(Err(StoreError::Closed));
            }
        }
        pending
    }

    fn operate_with(
        &self,
        deadline: Option<Instant>,
        f: &mut dyn FnMut(&mut dyn Tx) -> bool,
    ) -> Result<()> {
        let conn = self.pool.get(deadline)?;
        let (result, _) = transaction(
            conn,
            &self.pool,
            &self.schema.get(),
            &self.clock,
            &self.signals,
            deadline,
            self.max_rollback_trace_rows,
            f,
        );
        result.map(drop)
    }

    fn read_with(&self, f: &mut dyn FnMut(&dyn Read) -> Result<()>) -> Result<()> {
        let cell = RefCell::new(self.pool.get(None)?);
        let result = catch_unwind(AssertUnwindSafe(|| {
            f(&PgRead {
                db: Db(&cell),
                schema: &self.schema.get(),
                lock: false,
            })
        }));
        match result {
            Ok(result) => {
                self.pool.put(cell.into_inner());
                result
            }
            Err(panic) => {
                // The connection may be mid-statement: close it, and count it closed so the pool can open
                // another (else every panicking read would take one of `pool_size` for good).
                drop(cell);
                self.pool.closed();
                std::panic::resume_unwind(panic)
            }
        }
    }

    fn schema(&self) -> Arc<Schema> {
        self.schema.get()
    }

    fn put_runtime_table(&self, table: TableDef) -> Result<()> {
        self.schema.put_table(table, |next, changed| {
            self.change_tables(|db| {
                tables::migrate(db, next)?;
                for (name, definition) in changed {
                    system::put_runtime_table(db, &name, &definition)?;
                }
                Ok(())
            })
        })
    }

    fn delete_runtime_table(&self, logical_name: &str) -> Result<()> {
        self.schema.delete_table(logical_name, || {
            self.change_tables(|db| {
                tables::drop_table(db, logical_name)?;
                system::delete_runtime_table(db, logical_name)
            })
        })
    }

    fn watch_changes(&self, listener: ChangeListener) -> bool {
        self.signals.watch(listener)
    }
}

/// Reads over one connection: autocommit statements (committed data, per statement), or inside a
/// transaction (`lock`: rows read to be changed are locked first).
struct PgRead<'a> {
    db: Db<'a>,
    schema: &'a Schema,
    lock: bool,
}

impl Read for PgRead<'_> {
    fn schema(&self) -> &Schema {
        self.schema
    }
    fn retrieve(&self, table: &str, id: Uuid, columns: Option<&[String]>) -> Result<Option<Row>> {
        tables::retrieve(self.db, self.schema, table, id, columns)
    }
    fn retrieve_multiple(&self, query: &Query) -> Result<Vec<Row>> {
        tables::retrieve_multiple(self.db, self.schema, query)
    }
    fn related(&self, relationship: &str, row: &EntityRef) -> Result<Vec<EntityRef>> {
        tables::related(self.db, self.schema, relationship, row)
    }
    fn plugin_assemblies(&self) -> Result<Vec<PluginAssembly>> {
        system::plugin_assemblies(self.db)
    }
    fn plugin_types(&self) -> Result<Vec<PluginType>> {
        system::plugin_types(self.db)
    }
    fn plugin_assembly_content(&self, assembly_id: Uuid) -> Result<Option<AssemblyContent>> {
        system::plugin_assembly_content(self.db, assembly_id)
    }
    fn declarations(&self) -> Result<Vec<Declaration>> {
        system::declarations(self.db)
    }
    fn steps(&self) -> Result<Vec<Step>> {
        system::steps(self.db)
    }
    fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
        system::workflows(self.db)
    }
    fn step_secure_configuration_for_sandbox(&self, step_id: Uuid) -> Result<Option<String>> {
        system::step_secure_configuration(self.db, step_id)
    }
    fn service_endpoints(&self) -> Result<Vec<ServiceEndpoint>> {
        system::service_endpoints(self.db)
    }
    fn service_endpoint(&self, id: Uuid) -> Result<Option<ServiceEndpoint>> {
        system::service_endpoint(self.db, id)
    }
    fn service_endpoint_secrets_for_delivery(&self, id: Uuid) -> Result<Option<EndpointSecrets>> {
        system::service_endpoint_secrets(self.db, id)
    }
    fn system_job(&self, id: Uuid) -> Result<Option<SystemJob>> {
        system::system_job(self.db, id, self.lock)
    }
    fn system_jobs(&self, filter: &JobFilter) -> Result<Vec<SystemJob>> {
        system::system_jobs(self.db, filter)
    }
    fn trace_logs(&self, filter: &TraceFilter) -> Result<Vec<TraceLog>> {
        system::trace_logs(self.db, filter)
    }
    fn trace_recording(&self, trace_id: Uuid) -> Result<Option<String>> {
        system::trace_recording(self.db, trace_id)
    }
    fn job_attempts(&self, job_id: Uuid) -> Result<Vec<JobAttempt>> {
        system::job_attempts(self.db, job_id)
    }
    fn expired_job_leases(&self, now_ms: i64) -> Result<Vec<SystemJob>> {
        system::expired_job_leases(self.db, now_ms)
    }
    fn step_async_auto_delete(&self, step_id: Uuid) -> Result<Option<bool>> {
        system::step_async_auto_delete(self.db, step_id)
    }
    fn system_job_count(&self, status: JobStatus) -> Result<(u64, Option<i64>)> {
        system::system_job_count(self.db, status)
    }
}

/// Writes inside one server transaction.
struct PgTx<'a> {
    read: PgRead<'a>,
    clock: &'a Clock,
    /// Trace rows, written when the transaction ends so they survive a rollback.
    traces: crate::HeldTraces,
    /// Whether it inserted system jobs / changed registration: announced to other hosts after the commit.
    wrote_jobs: bool,
    wrote_registration: bool,
}

impl Read for PgTx<'_> {
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

impl Tx for PgTx<'_> {
    fn now_ms(&self) -> i64 {
        (self.clock)()
    }
    fn create(&mut self, table: &str, id: Option<Uuid>, attributes: Attributes) -> Result<Uuid> {
        let now = self.now_ms();
        tables::create(self.read.db, self.read.schema, now, table, id, attributes)
    }
    fn update(&mut self, table: &str, id: Uuid, attributes: Attributes) -> Result<Attributes> {
        let now = self.now_ms();
        tables::update(self.read.db, self.read.schema, now, table, id, attributes)
    }
    fn delete(&mut self, table: &str, id: Uuid) -> Result<Row> {
        tables::delete(self.read.db, self.read.schema, table, id)
    }
    fn associate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()> {
        let now = self.now_ms();
        tables::associate(
            self.read.db,
            self.read.schema,
            now,
            relationship,
            target,
            related,
            true,
            true,
        )
    }
    fn disassociate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()> {
        let now = self.now_ms();
        tables::associate(
            self.read.db,
            self.read.schema,
            now,
            relationship,
            target,
            related,
            false,
            true,
        )
    }
    fn insert_system_job(&mut self, job: NewSystemJob) -> Result<Uuid> {
        let now = self.now_ms();
        self.wrote_jobs = true;
        system::insert_system_job(self.read.db, job, now)
    }
    fn insert_trace_log(&mut self, entry: NewTraceLog) -> Result<Uuid> {
        let at = self.now_ms();
        Ok(crate::hold_trace(&mut self.traces, entry, at))
    }
    fn purge_trace_logs(&mut self, before_ms: i64, limit: usize) -> Result<usize> {
        system::purge_trace_logs(self.read.db, before_ms, limit)
    }
    fn put_plugin_assembly(&mut self, assembly: &PluginAssembly) -> Result<()> {
        system::put_plugin_assembly(self.read.db, assembly)
    }
    fn put_plugin_type(&mut self, plugin_type: &PluginType) -> Result<()> {
        system::put_plugin_type(self.read.db, plugin_type)
    }
    fn put_plugin_assembly_content(
        &mut self,
        assembly_id: Uuid,
        content: Option<&AssemblyContent>,
    ) -> Result<()> {
        self.wrote_registration = true;
        system::put_plugin_assembly_content(self.read.db, assembly_id, content)
    }
    fn put_declaration(&mut self, declaration: &Declaration) -> Result<()> {
        system::put_declaration(self.read.db, declaration)
    }
    fn delete_declaration(&mut self, kind: &str, id: Uuid) -> Result<()> {
        system::delete_declaration(self.read.db, kind, id)
    }
    fn put_step(&mut self, step: &StepDef, secure_configuration: SecretUpdate) -> Result<()> {
        self.wrote_registration = true;
        system::put_step(self.read.db, step, secure_configuration)
    }
    fn delete_step(&mut self, id: Uuid) -> Result<bool> {
        self.wrote_registration = true;
        system::delete_step(self.read.db, id)
    }
    fn put_workflow(&mut self, workflow: &StoredWorkflow) -> Result<()> {
        self.wrote_registration = true;
        system::put_workflow(self.read.db, workflow)
    }
    fn delete_workflow(&mut self, id: Uuid) -> Result<bool> {
        self.wrote_registration = true;
        system::delete_workflow(self.read.db, id)
    }
    fn put_service_endpoint(
        &mut self,
        endpoint: &ServiceEndpointDef,
        secrets: &EndpointSecretsUpdate,
    ) -> Result<()> {
        self.wrote_registration = true;
        system::put_service_endpoint(self.read.db, endpoint, secrets)
    }
    fn delete_service_endpoint(&mut self, id: Uuid) -> Result<bool> {
        self.wrote_registration = true;
        system::delete_service_endpoint(self.read.db, id)
    }
    fn claim_jobs(
        &mut self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<SystemJob>> {
        system::claim_jobs(self.read.db, worker, now_ms, lease_ms, limit)
    }
    fn complete_job(&mut self, id: Uuid, worker: &str, now_ms: i64) -> Result<()> {
        system::complete_job(self.read.db, id, worker, now_ms)
    }
    fn fail_job(&mut self, id: Uuid, worker: &str, now_ms: i64, error: &JobError) -> Result<()> {
        system::fail_job(self.read.db, id, worker, now_ms, error)
    }
    fn wait_job(
        &mut self,
        id: Uuid,
        worker: &str,
        next_attempt_ms: i64,
        error: &JobError,
    ) -> Result<()> {
        system::wait_job(self.read.db, id, worker, next_attempt_ms, error)
    }
    fn delete_job(&mut self, id: Uuid) -> Result<bool> {
        system::delete_job(self.read.db, id)
    }
    fn update_job(&mut self, id: Uuid, update: &JobUpdate) -> Result<()> {
        system::update_job(self.read.db, id, update)
    }
    fn insert_job_attempt(&mut self, attempt: &NewJobAttempt) -> Result<i32> {
        system::insert_job_attempt(self.read.db, attempt)
    }
}
