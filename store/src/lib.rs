//! weft's data store: declared tables with typed rows, the system tables (registration, trace log, system jobs)
//! and durable group commit.
//!
//! Owns the backend-neutral API the pipeline and the asynchronous service program against ([`Store`],
//! [`StoreExt`], [`Tx`], [`Read`]) and the embedded SQLite backend ([`SqliteStore`]). It must not know about
//! plug-ins, messages or HTTP: it stores what it is given, checked against the declared [`schema::Schema`].
//!
//! # Why group commit
//! Every operation must be durable (`synchronous=FULL`: an fsync per commit) before its caller hears back. One
//! fsync per operation caps throughput at the disk's fsync rate. So all writes go to one writer thread that owns
//! the write connection; it takes every queued work (a batch), runs `BEGIN`, then for each work
//! `SAVEPOINT` → run → `RELEASE` (Ok) or `ROLLBACK TO` + `RELEASE` (Err or panic), then one `COMMIT`, and
//! only then answers every caller of the batch. Many operations share one fsync; each is isolated by its
//! savepoint, so a failed one is rolled back alone while its batch-mates commit.
//!
//! # Operations run beside the writer
//! A work on the writer runs serially with every other write, so a pipeline operation — which may wait on a
//! plug-in for up to its time limit — does not run there. [`Store::operate_with`] runs it on the caller's
//! thread against committed data (a read connection, statement by statement) with its writes buffered in
//! memory under in-process row locks (`operation`, `row_lock`); at the end its write set goes to the writer
//! and is committed with the next batch. Child operations use the `Tx` they were given, which keeps them in
//! the parent's operation. `submit`/`transact` remain for short system-table works (registration, job
//! transitions); a work must never call `transact` itself (the writer would wait for itself). Reads that need
//! no transaction go through [`StoreExt::read`] on a pool of read connections, which WAL lets run
//! concurrently with the writer and which see only committed data. The store README states the isolation.

/// The system-table reads of [`Read`] answered by `self.$field`: for the readers whose own data is the
/// declared tables (a transaction, an operation's buffer) and whose system rows are those of the reader
/// they wrap.
macro_rules! delegate_system_reads {
    ($field:ident) => {
        fn plugin_assemblies(&self) -> Result<Vec<PluginAssembly>> {
            self.$field.plugin_assemblies()
        }
        fn plugin_types(&self) -> Result<Vec<PluginType>> {
            self.$field.plugin_types()
        }
        fn plugin_assembly_content(&self, assembly_id: Uuid) -> Result<Option<AssemblyContent>> {
            self.$field.plugin_assembly_content(assembly_id)
        }
        fn declarations(&self) -> Result<Vec<Declaration>> {
            self.$field.declarations()
        }
        fn steps(&self) -> Result<Vec<Step>> {
            self.$field.steps()
        }
        fn workflows(&self) -> Result<Vec<StoredWorkflow>> {
            self.$field.workflows()
        }
        fn step_secure_configuration_for_sandbox(&self, step_id: Uuid) -> Result<Option<String>> {
            self.$field.step_secure_configuration_for_sandbox(step_id)
        }
        fn service_endpoints(&self) -> Result<Vec<ServiceEndpoint>> {
            self.$field.service_endpoints()
        }
        fn service_endpoint(&self, id: Uuid) -> Result<Option<ServiceEndpoint>> {
            self.$field.service_endpoint(id)
        }
        fn service_endpoint_secrets_for_delivery(
            &self,
            id: Uuid,
        ) -> Result<Option<EndpointSecrets>> {
            self.$field.service_endpoint_secrets_for_delivery(id)
        }
        fn system_job(&self, id: Uuid) -> Result<Option<SystemJob>> {
            self.$field.system_job(id)
        }
        fn system_job_lease(&self, id: Uuid) -> Result<Option<JobLease>> {
            self.$field.system_job_lease(id)
        }
        fn system_jobs(&self, filter: &JobFilter) -> Result<Vec<SystemJob>> {
            self.$field.system_jobs(filter)
        }
        fn system_job_count(&self, status: JobStatus) -> Result<(u64, Option<i64>)> {
            self.$field.system_job_count(status)
        }
        fn trace_logs(&self, filter: &TraceFilter) -> Result<Vec<TraceLog>> {
            self.$field.trace_logs(filter)
        }
        fn trace_recording(&self, trace_id: Uuid) -> Result<Option<String>> {
            self.$field.trace_recording(trace_id)
        }
        fn job_attempts(&self, job_id: Uuid) -> Result<Vec<JobAttempt>> {
            self.$field.job_attempts(job_id)
        }
        fn step_async_auto_delete(&self, step_id: Uuid) -> Result<Option<bool>> {
            self.$field.step_async_auto_delete(step_id)
        }
        fn expired_job_leases(&self, now_ms: i64) -> Result<Vec<SystemJob>> {
            self.$field.expired_job_leases(now_ms)
        }
    };
}

pub mod bench;
pub mod copy;
mod error;
pub mod lock;
mod operation;
mod postgres;
pub mod query;
mod row_lock;
mod rows;
mod runtime_tables;
pub mod schema;
mod sqlite;
pub mod system;
pub mod value;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

pub use crate::postgres::{
    PgOptions, PgStore, REQUIRE_POSTGRES_VAR, TEST_POSTGRES_VAR, TestDatabase, is_postgres_url,
    redact_url,
};
pub use error::StoreError;
pub use lock::{DirLock, LOCK_FILE};
pub use query::{Condition, Link, Order, Query};
pub use schema::{AttributeDef, AttributeKind, KeyDef, RelationshipDef, Schema, TableDef};
pub use sqlite::{Clock, SqliteOptions, SqliteStore};
use system::*;
pub use value::Value;

/// A new id for a stored row (a record, a system job, a trace-log row): a time-ordered GUID (UUID version
/// 7), ordered by creation within this process.
///
/// Why not a random one: ids are keys of B-trees (a table's primary key, `asyncoperation`'s id index, the
/// attempt history keyed by job id). A random key lands on a random page, so a commit of a hundred rows
/// wrote a hundred pages of WAL (and the checkpoint wrote them again); ordered keys append to the same few
/// pages. Dataverse assigns sequential GUIDs to new records for the same reason. They are ordinary GUIDs to
/// every client, and ids a caller supplies are kept as they are.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Trace-log rows a transaction holds back (id, entry, time) and writes after its work ends, so they
/// survive a rollback.
pub(crate) type HeldTraces = Vec<(Uuid, NewTraceLog, i64)>;

/// Holds `entry` back in `traces` at `at` under a new id, and returns the id: `Tx::insert_trace_log` of every
/// backend and of a buffered operation.
pub(crate) fn hold_trace(traces: &mut HeldTraces, entry: NewTraceLog, at: i64) -> Uuid {
    let id = new_id();
    traces.push((id, entry, at));
    id
}

/// Result with [`StoreError`] by default.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attribute values by logical name.
pub type Attributes = BTreeMap<String, Value>;

/// A reference to a row: table logical name and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// Table logical name.
    pub logical_name: String,
    /// Row id.
    pub id: Uuid,
}

impl EntityRef {
    /// A reference to row `id` of `logical_name`.
    pub fn new(logical_name: impl Into<String>, id: Uuid) -> Self {
        EntityRef {
            logical_name: logical_name.into(),
            id,
        }
    }
}

/// A row as read: its table, id and non-null attribute values (null attributes are omitted, as Dataverse does).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Table logical name.
    pub table: String,
    /// Primary id.
    pub id: Uuid,
    /// Attribute values, including the primary id attribute when selected.
    pub attributes: Attributes,
}

/// Reads, inside a transaction ([`Tx`]) or on a read connection.
pub trait Read {
    /// The declared schema.
    fn schema(&self) -> &Schema;
    /// One row by id, with the given columns (None = all); None when it does not exist.
    fn retrieve(&self, table: &str, id: Uuid, columns: Option<&[String]>) -> Result<Option<Row>>;
    /// Rows matching a query.
    fn retrieve_multiple(&self, query: &Query) -> Result<Vec<Row>>;
    /// Rows related to `row` through relationship `relationship` (N:N: the other side; 1:N from the referenced
    /// side: the referencing rows; from the referencing side: the referenced row).
    fn related(&self, relationship: &str, row: &EntityRef) -> Result<Vec<EntityRef>>;

    /// Registered plug-in assemblies.
    fn plugin_assemblies(&self) -> Result<Vec<PluginAssembly>>;
    /// Registered plug-in types.
    fn plugin_types(&self) -> Result<Vec<PluginType>>;
    /// The component an assembly was given at runtime, if any (see [`system::AssemblyContent`]).
    fn plugin_assembly_content(&self, assembly_id: Uuid) -> Result<Option<AssemblyContent>>;
    /// What the configuration file said about each entry it declared, as last applied.
    fn declarations(&self) -> Result<Vec<Declaration>>;
    /// Registered steps with their images, ordered by message, stage, rank; never the secure configuration.
    fn steps(&self) -> Result<Vec<Step>>;
    /// Every stored background workflow, by id.
    fn workflows(&self) -> Result<Vec<StoredWorkflow>>;
    /// A step's secure configuration: for handing to the sandbox only, never to API callers.
    fn step_secure_configuration_for_sandbox(&self, step_id: Uuid) -> Result<Option<String>>;
    /// Registered service endpoints (secrets as `is…set` flags only).
    fn service_endpoints(&self) -> Result<Vec<ServiceEndpoint>>;
    /// One service endpoint.
    fn service_endpoint(&self, id: Uuid) -> Result<Option<ServiceEndpoint>>;
    /// An endpoint's secrets: for the delivery service signing a request only, never to API callers.
    fn service_endpoint_secrets_for_delivery(&self, id: Uuid) -> Result<Option<EndpointSecrets>>;
    /// One system job.
    fn system_job(&self, id: Uuid) -> Result<Option<SystemJob>>;
    /// A system job's state and lease without its context: what the asynchronous service re-reads for
    /// every attempt it records. A backend without a narrower query reads the whole job (and so locks it
    /// where [`Read::system_job`] does).
    fn system_job_lease(&self, id: Uuid) -> Result<Option<JobLease>> {
        Ok(self.system_job(id)?.map(JobLease::from))
    }
    /// System jobs matching the filter, oldest first.
    fn system_jobs(&self, filter: &JobFilter) -> Result<Vec<SystemJob>>;
    /// How many system jobs have `status`, and the oldest one's `createdon` (the console's `/metrics`
    /// gauges, every scrape). A backend without a narrower query reads the jobs, contexts included.
    fn system_job_count(&self, status: JobStatus) -> Result<(u64, Option<i64>)> {
        let jobs = self.system_jobs(&JobFilter {
            status: Some(status),
            ..JobFilter::default()
        })?;
        Ok((jobs.len() as u64, jobs.first().map(|j| j.created_on)))
    }
    /// Plug-in trace log rows matching the filter, newest first (without their recordings).
    fn trace_logs(&self, filter: &TraceFilter) -> Result<Vec<TraceLog>>;
    /// The execution recording kept with a trace log row, if any.
    fn trace_recording(&self, trace_id: Uuid) -> Result<Option<String>>;
    /// A system job's recorded attempts, first attempt first.
    fn job_attempts(&self, job_id: Uuid) -> Result<Vec<JobAttempt>>;
    /// A step's `asyncautodelete` (None when the step does not exist): read by the asynchronous service on
    /// every success, so it is one indexed lookup rather than [`Read::steps`].
    fn step_async_auto_delete(&self, step_id: Uuid) -> Result<Option<bool>>;
    /// Locked jobs (any Locked status) whose lease ended at or before `now_ms`, oldest first: the jobs of
    /// workers that died or hung.
    fn expired_job_leases(&self, now_ms: i64) -> Result<Vec<SystemJob>>;
}

/// Writes inside one transaction (one savepoint of a group commit). All changes of a work become durable
/// together when its batch commits, or vanish together if the work fails.
pub trait Tx: Read {
    /// The store clock (ms since the Unix epoch) used for `createdon`/`modifiedon` and job times.
    fn now_ms(&self) -> i64;
    /// Creates a row; generates the id when None (or takes it from the primary id attribute). Returns the id.
    fn create(&mut self, table: &str, id: Option<Uuid>, attributes: Attributes) -> Result<Uuid>;
    /// Updates a row; returns the previous values of the attributes in `attributes` (Null when unset).
    fn update(&mut self, table: &str, id: Uuid, attributes: Attributes) -> Result<Attributes>;
    /// Deletes a row (and its N:N links); returns the deleted row.
    fn delete(&mut self, table: &str, id: Uuid) -> Result<Row>;
    /// Links `target` with each of `related` through a relationship (N:N row, or 1:N lookup set).
    fn associate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()>;
    /// Removes the links made by [`Tx::associate`].
    fn disassociate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()>;
    /// Sets `statecode`/`statuscode` (the status must belong to the state); returns the previous pair.
    fn set_state(&mut self, table: &str, id: Uuid, state: i32, status: i32) -> Result<Attributes> {
        use crate::schema::platform::{STATE_CODE, STATUS_CODE};
        let attrs = Attributes::from([
            (STATE_CODE.into(), Value::OptionSetValue(state)),
            (STATUS_CODE.into(), Value::OptionSetValue(status)),
        ]);
        self.update(table, id, attrs)
    }
    /// Sets `ownerid`; returns the previous owner.
    fn assign(&mut self, table: &str, id: Uuid, owner: EntityRef) -> Result<Attributes> {
        use crate::schema::{Ownership, platform::OWNER_ID};
        let t = self
            .schema()
            .table(table)
            .ok_or_else(|| StoreError::UnknownTable(table.to_string()))?;
        if t.ownership == Ownership::OrganizationOwned {
            return Err(StoreError::Invalid(format!(
                "table `{table}` is organization-owned: its rows cannot be assigned"
            )));
        }
        let value = Value::EntityReference {
            logical_name: owner.logical_name,
            id: owner.id,
        };
        self.update(table, id, Attributes::from([(OWNER_ID.into(), value)]))
    }

    /// Writes a system job (Ready / Waiting For Resources) in this transaction: the pipeline's outbox row.
    fn insert_system_job(&mut self, job: NewSystemJob) -> Result<Uuid>;
    /// Records a step execution. Trace rows are kept even when the work fails: they are written after the
    /// work's savepoint is released or rolled back, in the same commit.
    fn insert_trace_log(&mut self, entry: NewTraceLog) -> Result<Uuid>;
    /// Deletes at most `limit` trace-log rows created before `before_ms` (oldest first); returns how many.
    /// Retention runs it in bounded batches so the writer is never held long.
    fn purge_trace_logs(&mut self, before_ms: i64, limit: usize) -> Result<usize>;

    /// Inserts or replaces a plug-in assembly.
    fn put_plugin_assembly(&mut self, assembly: &PluginAssembly) -> Result<()>;
    /// Stores (Some) or removes (None) the component an assembly was given at runtime; the assembly must
    /// exist to be given one.
    fn put_plugin_assembly_content(
        &mut self,
        assembly_id: Uuid,
        content: Option<&AssemblyContent>,
    ) -> Result<()>;
    /// Records what the configuration file said about an entry.
    fn put_declaration(&mut self, declaration: &Declaration) -> Result<()>;
    /// Forgets what the configuration file said about an entry (it no longer declares it).
    fn delete_declaration(&mut self, kind: &str, id: Uuid) -> Result<()>;
    /// Inserts or replaces a plug-in type (its assembly must exist).
    fn put_plugin_type(&mut self, plugin_type: &PluginType) -> Result<()>;
    /// Inserts or replaces a step with its images; changes its secure configuration as told. Refuses async
    /// steps outside PostOperation and event handlers that do not exist.
    fn put_step(&mut self, step: &StepDef, secure_configuration: SecretUpdate) -> Result<()>;
    /// Deletes a step, its images and secure configuration; false when it did not exist.
    fn delete_step(&mut self, id: Uuid) -> Result<bool>;
    /// Inserts or replaces a background workflow (by id).
    fn put_workflow(&mut self, workflow: &StoredWorkflow) -> Result<()>;
    /// Deletes a background workflow; false when there was none.
    fn delete_workflow(&mut self, id: Uuid) -> Result<bool>;
    /// Inserts or replaces a service endpoint; changes its secrets as told.
    fn put_service_endpoint(
        &mut self,
        endpoint: &ServiceEndpointDef,
        secrets: &EndpointSecretsUpdate,
    ) -> Result<()>;
    /// Deletes a service endpoint; false when it did not exist. Refused while a step uses it.
    fn delete_service_endpoint(&mut self, id: Uuid) -> Result<bool>;

    /// Claims up to `limit` runnable jobs for `worker` until `now_ms + lease_ms`: Ready jobs whose
    /// `postponeuntil` has passed, Waiting jobs whose next attempt is due, and Locked jobs whose lease expired
    /// (takeover). They become Locked / In Progress. Oldest first (`createdon`, then `sequence`, as
    /// [`Read::system_jobs`] lists them).
    fn claim_jobs(
        &mut self,
        worker: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<SystemJob>>;
    /// Marks a job leased to `worker` Completed / Succeeded.
    fn complete_job(&mut self, id: Uuid, worker: &str, now_ms: i64) -> Result<()>;
    /// Marks a job leased to `worker` Completed / Failed with the error.
    fn fail_job(&mut self, id: Uuid, worker: &str, now_ms: i64, error: &JobError) -> Result<()>;
    /// Puts a job leased to `worker` in Suspended / Waiting until `next_attempt_ms`, counting a retry.
    fn wait_job(
        &mut self,
        id: Uuid,
        worker: &str,
        next_attempt_ms: i64,
        error: &JobError,
    ) -> Result<()>;
    /// Deletes a job and its recorded attempts; false when it did not exist.
    fn delete_job(&mut self, id: Uuid) -> Result<bool>;
    /// Changes a job's state as told (no lease check: the caller has read the job in this transaction and
    /// decided); NotFound when it does not exist. Leaving Locked releases the lease.
    fn update_job(&mut self, id: Uuid, update: &JobUpdate) -> Result<()>;
    /// Records one attempt at a job; returns its number (1 for the job's first). NotFound for an unknown job.
    fn insert_job_attempt(&mut self, attempt: &NewJobAttempt) -> Result<i32>;
}

/// What a boxed work tells the writer: whether to keep its changes, and the caller's answer.
pub struct WorkOutcome {
    /// Release the savepoint (true) or roll it back (false).
    pub commit: bool,
    /// The value handed back to the caller after the batch commits.
    pub payload: Box<dyn Any + Send>,
}

/// A unit of work for the writer, in object-safe form (see [`StoreExt::transact`] for the typed form).
pub type BoxedWork = Box<dyn FnOnce(&mut dyn Tx) -> WorkOutcome + Send>;

/// The answer to a submitted work, delivered after the commit that made it durable (or the failure).
/// Wait with [`Pending::wait`] on a plain thread or `.await` it in async code.
pub struct Pending(oneshot::Receiver<Result<Box<dyn Any + Send>>>);

impl Pending {
    /// Creates a pending answer and the sender a backend completes it with.
    pub fn channel() -> (oneshot::Sender<Result<Box<dyn Any + Send>>>, Pending) {
        let (tx, rx) = oneshot::channel();
        (tx, Pending(rx))
    }

    /// Blocks until the answer arrives. Must not be called from async code (await the `Pending` instead).
    pub fn wait(self) -> Result<Box<dyn Any + Send>> {
        self.0.blocking_recv().unwrap_or(Err(StoreError::Closed))
    }
}

impl Future for Pending {
    type Output = Result<Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// A store backend: a group-commit writer, operations that run concurrently on their callers' threads, and
/// concurrent readers. Object-safe; use [`StoreExt`] for the typed helpers. A PostgreSQL backend implements
/// this trait and [`Tx`]/[`Read`] on its connections (see the store README).
pub trait Store: Send + Sync {
    /// Queues a work for the writer; the answer comes after the commit of its batch. The work runs on the
    /// writer, serially with every other: short system-table changes only (registration, job transitions).
    fn submit(&self, work: BoxedWork) -> Pending;
    /// Runs `f` as one operation on the calling thread, concurrently with other operations: reads see
    /// committed data plus the operation's own writes; each row it writes is locked until it ends (a second
    /// writer waits, at most until its own `deadline`, then fails with [`StoreError::LockTimeout`]; a wait
    /// that would deadlock fails with [`StoreError::Deadlock`]). When `f` returns true the writes commit, in
    /// the next group commit, and this returns once they are durable; when it returns false (or panics:
    /// [`StoreError::WorkPanicked`]) they vanish, but its trace-log rows are still written. Blocking.
    fn operate_with(
        &self,
        deadline: Option<Instant>,
        f: &mut dyn FnMut(&mut dyn Tx) -> bool,
    ) -> Result<()>;
    /// Runs `f` on a read connection (committed data only). Blocking: call from a blocking context.
    fn read_with(&self, f: &mut dyn FnMut(&dyn Read) -> Result<()>) -> Result<()>;
    /// The schema as of now: `weft.toml`'s tables and those created at runtime. A transaction reads the
    /// schema it began with ([`Read::schema`]).
    fn schema(&self) -> Arc<Schema>;
    /// Creates a runtime table, or replaces one (a new column): creates its SQL table or columns and stores
    /// its definition (it survives a restart) in one transaction, then [`Store::schema`] answers with it.
    /// `table` is checked as a `[[table]]` declaration is ([`Schema::with_runtime_table`]).
    fn put_runtime_table(&self, table: TableDef) -> Result<()>;
    /// Deletes a runtime table: its SQL table, its rows and its stored definition.
    fn delete_runtime_table(&self, logical_name: &str) -> Result<()>;
    /// Calls `listener` when another host sharing this store commits what this host holds in memory or
    /// waits for: new system jobs ([`Change::Jobs`]) or registration changes ([`Change::Registration`]).
    /// Returns false when the backend has no other hosts (SQLite: one process owns the file), in which case
    /// `listener` is never called. A wake-up may be spurious or late; it never replaces polling.
    fn watch_changes(&self, listener: ChangeListener) -> bool {
        let _ = listener;
        false
    }
}

/// What another host changed in a shared store (see [`Store::watch_changes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// System jobs were committed: an idle asynchronous service should claim.
    Jobs,
    /// Steps, service endpoints or plug-in components were changed: a host should reload its registration.
    Registration,
}

/// Called with each [`Change`], on a thread of the store's own (it must not block for long).
pub type ChangeListener = Arc<dyn Fn(Change) + Send + Sync>;

/// A boxed or shared store is a store (the backend chosen at run time, e.g. by a URL).
macro_rules! forward_store {
    ($($ptr:ident),*) => {$(
        impl<S: Store + ?Sized> Store for $ptr<S> {
            fn submit(&self, work: BoxedWork) -> Pending {
                (**self).submit(work)
            }
            fn operate_with(
                &self,
                deadline: Option<Instant>,
                f: &mut dyn FnMut(&mut dyn Tx) -> bool,
            ) -> Result<()> {
                (**self).operate_with(deadline, f)
            }
            fn read_with(&self, f: &mut dyn FnMut(&dyn Read) -> Result<()>) -> Result<()> {
                (**self).read_with(f)
            }
            fn schema(&self) -> Arc<Schema> {
                (**self).schema()
            }
            fn put_runtime_table(&self, table: TableDef) -> Result<()> {
                (**self).put_runtime_table(table)
            }
            fn delete_runtime_table(&self, logical_name: &str) -> Result<()> {
                (**self).delete_runtime_table(logical_name)
            }
            fn watch_changes(&self, listener: ChangeListener) -> bool {
                (**self).watch_changes(listener)
            }
        }
    )*};
}

forward_store!(Box, Arc);

/// Typed helpers over any [`Store`].
pub trait StoreExt: Store {
    /// Runs `work` in a savepoint of the next group commit and returns its result once that commit is durable.
    ///
    /// Err from the work (or a panic in it) rolls back the work's changes only. If the commit itself fails,
    /// every work of the batch gets [`StoreError::CommitFailed`]. Blocking: from async code use
    /// [`StoreExt::transact_async`].
    fn transact<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        unbox(self.submit(box_work(work)).wait())
    }

    /// [`StoreExt::transact`] for async callers: the future resolves after the commit.
    fn transact_async<T, E, F>(
        &self,
        work: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        let pending = self.submit(box_work(work));
        async move { unbox(pending.await) }
    }

    /// Runs `work` as one operation (see [`Store::operate_with`]): `Ok` commits and returns once durable,
    /// `Err` rolls back. Blocking: call from a blocking context.
    fn operate<T, E, F>(&self, deadline: Option<Instant>, work: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&mut dyn Tx) -> Result<T, E>,
    {
        let mut work = Some(work);
        let mut out = None;
        self.operate_with(deadline, &mut |tx| {
            let Some(work) = work.take() else {
                return false;
            };
            let result = work(tx);
            let commit = result.is_ok();
            out = Some(result);
            commit
        })?;
        out.unwrap_or_else(|| Err(StoreError::Closed.into()))
    }

    /// Runs `f` on a read connection and returns its result.
    fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&dyn Read) -> Result<T, E>,
    {
        let mut f = Some(f);
        let mut out = None;
        self.read_with(&mut |r| {
            if let Some(f) = f.take() {
                out = Some(f(r));
            }
            Ok(())
        })?;
        out.unwrap_or_else(|| Err(StoreError::Closed.into()))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

fn box_work<T, E, F>(work: F) -> BoxedWork
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
{
    Box::new(move |tx: &mut dyn Tx| {
        let result = work(tx);
        WorkOutcome {
            commit: result.is_ok(),
            payload: Box::new(result),
        }
    })
}

fn unbox<T: 'static, E: From<StoreError> + 'static>(
    answer: Result<Box<dyn Any + Send>>,
) -> Result<T, E> {
    match answer?.downcast::<Result<T, E>>() {
        Ok(result) => *result,
        Err(_) => {
            Err(StoreError::Database("the writer answered with an unexpected type".into()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::new_id;

    /// New ids are GUIDs of version 7, and both they and their text (the form the SQLite keys hold) sort in
    /// the order they were made: what keeps a commit's new keys on the same few B-tree pages.
    #[test]
    fn new_ids_sort_in_creation_order() {
        let ids: Vec<_> = (0..10_000).map(|_| new_id()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids out of order");
        let texts: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        assert!(
            texts.windows(2).all(|w| w[0] < w[1]),
            "id texts out of order"
        );
    }
}
