//! The event execution pipeline: runs Create, Retrieve, RetrieveMultiple, Update, Delete, Associate,
//! Disassociate, SetState, Assign, the bulk messages (CreateMultiple…, [`bulk`]) and declared Custom API
//! messages (whose stage 30 is their plug-in) through
//! Dataverse's stages (10 PreValidation, 20 PreOperation, 30 main operation, 40 PostOperation), firing the
//! registered steps in the sandbox, inside one store transaction, and queues async steps as system jobs (the
//! outbox) in that same transaction.
//!
//! Owns the operation semantics (dataverse.md §1–§11): transaction boundaries, step selection (message,
//! table, rank, enabled, filtering attributes, invocation source, bypass flags), the execution context each
//! step sees (images, shared variables, ParentContext, impersonation), child operations issued by plug-ins
//! (depth + 1, same transaction and correlation id, depth limit), the operation time limit, error mapping and
//! the plug-in trace log. It must not talk HTTP, run system jobs or deliver to endpoints, and it reaches the
//! store only through the `weft_store` traits and the sandbox only through `Sandbox::invoke_until`.
//! With traces on (`crate::telemetry`), each top-level operation, stage, step and organization-service call
//! is a span; off, each of those points costs one check of an unset `OnceLock`.
//!
//! # Transactions
//! A top-level operation runs its PreValidation steps on the caller's thread, outside any transaction (a
//! plug-in's organization-service calls there each get their own transaction), then runs stages 20, 30 and
//! 40 and the outbox writes as one store operation (`StoreExt::operate`), still on the caller's thread and
//! concurrently with other operations: its reads see committed data plus its own writes, each row it writes
//! is locked until it ends, and its writes go to the store's group-commit writer only when it succeeds. An
//! operation issued by a plug-in inside it runs all its stages, PreValidation included, in the same operation.
//! Any error discards the operation's writes (queued jobs included); trace-log rows survive. A sync step that
//! waits (a slow notification-service post) holds back only operations that need the rows it wrote.

//! # Differences from Dataverse
//! RetrieveMultiple's `Query` (a QueryExpression) is not among the InputParameters plug-ins see: the WIT
//! parameter values and weft-message's model have no QueryExpression yet, so a plug-in can neither read
//! nor change the query (it sees and may change `BusinessEntityCollection` in stage 40).

pub mod bench;
pub use bulk::{Bulk, MAX_TARGETS as MAX_BULK_TARGETS};
pub use trace::TraceSubject;
mod bulk;
mod changes;
mod custom_api;
mod error;
mod registry;
pub(crate) mod services;
mod trace;
pub(crate) mod workflow;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use uuid::Uuid;
use weft_store::system::{
    EventHandler, ImageType, InvocationSource, NewSystemJob, NewTraceLog, PluginAssembly,
    Stage as StoreStage, StepMode, StepState,
};
use weft_store::{EntityRef, Query, Read, Row, Store, StoreError, StoreExt, Tx};

pub use error::{BUSY_RETRY_AFTER_SECS, ISV_UNEXPECTED_MESSAGE, PipelineError};

use crate::convert::{self, guid, uuid};
use crate::delivery::Delivery;
use crate::registration::{
    ApplyReport, Binding, PipelineSettings, RecordReplays, Registration, StepDecl,
};
use crate::replay::{Recorder, Recording};
use crate::sandbox::wit::context::{ContextFrame, ExecutionContext, IsolationMode, Mode, Stage};
use crate::sandbox::wit::types::{
    Attribute, Entity, EntityCollection, EntityReference, Image, Parameter, ParameterValue, Value,
};
use crate::sandbox::{FailureKind, LoadedPlugin, Sandbox};
use registry::{RegisteredPlugin, Registries, Registry};

/// The plug-in a service-endpoint step runs as in the trace log: Dataverse's built-in Azure-aware plug-in.
const BUILT_IN_ENDPOINT_PLUGIN: &str = "Microsoft.Crm.ServiceBus.ServiceBusPlugin";

/// The user an [`OrganizationRequest`] runs as when the caller names none.
pub const DEFAULT_USER_ID: Uuid = Uuid::from_u128(0x7a1e_0000_0000_4000_8000_0000_0000_0001);
/// The organization every context names.
pub const ORGANIZATION_ID: Uuid = Uuid::from_u128(0x7a1e_0000_0000_4000_8000_0000_0000_0002);
/// The business unit every context names.
pub const BUSINESS_UNIT_ID: Uuid = Uuid::from_u128(0x7a1e_0000_0000_4000_8000_0000_0000_0003);
/// The organization's unique name.
pub const ORGANIZATION_NAME: &str = "weft";

/// What an operation does.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Create `target` (its id, if any, becomes the row id).
    Create {
        /// The row to create.
        target: Entity,
    },
    /// Retrieve one row.
    Retrieve {
        /// Table.
        table: String,
        /// Row id.
        id: Uuid,
        /// Columns; None = all.
        columns: Option<Vec<String>>,
    },
    /// Retrieve the rows matching a query.
    RetrieveMultiple {
        /// The query.
        query: Query,
    },
    /// Update the attributes present in `target` (its id is required).
    Update {
        /// The changes.
        target: Entity,
    },
    /// Delete one row.
    Delete {
        /// Table.
        table: String,
        /// Row id.
        id: Uuid,
    },
    /// Link a row with others through a relationship.
    Associate {
        /// The row.
        target: EntityRef,
        /// Relationship schema name.
        relationship: String,
        /// The rows to link.
        related: Vec<EntityRef>,
    },
    /// Remove links made by Associate.
    Disassociate {
        /// The row.
        target: EntityRef,
        /// Relationship schema name.
        relationship: String,
        /// The rows to unlink.
        related: Vec<EntityRef>,
    },
    /// Set a row's `statecode`/`statuscode`.
    SetState {
        /// The row (`EntityMoniker`).
        target: EntityRef,
        /// `State`.
        state: i32,
        /// `Status`.
        status: i32,
    },
    /// Give a row a new owner.
    Assign {
        /// The row.
        target: EntityRef,
        /// The new owner (`systemuser` or `team`).
        assignee: EntityRef,
    },
    /// CreateMultiple, UpdateMultiple or UpsertMultiple on `table`: `Targets`, each run as a Create or an
    /// Update of its own (see [`Bulk`]).
    Multiple {
        /// Which bulk message.
        bulk: Bulk,
        /// The table every target belongs to.
        table: String,
        /// The rows (an Update's and an existing Upsert's name their row by id).
        targets: Vec<Entity>,
    },
    /// A declared Custom API (`[[custom_api]]`): its plug-in is the main operation.
    Custom {
        /// Its unique name, e.g. `weft_Greet`.
        name: String,
        /// Request parameters (a bound API's `Target` reference among them).
        parameters: Vec<(String, Value)>,
    },
}

impl Message {
    /// Dataverse's message name.
    pub fn name(&self) -> &str {
        match self {
            Message::Create { .. } => "Create",
            Message::Retrieve { .. } => "Retrieve",
            Message::RetrieveMultiple { .. } => "RetrieveMultiple",
            Message::Update { .. } => "Update",
            Message::Delete { .. } => "Delete",
            Message::Associate { .. } => "Associate",
            Message::Disassociate { .. } => "Disassociate",
            Message::SetState { .. } => "SetState",
            Message::Assign { .. } => "Assign",
            Message::Multiple { bulk, .. } => bulk.name(),
            Message::Custom { name, .. } => name,
        }
    }
}

/// One request from a caller: the message and the optional request parameters Dataverse accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationRequest {
    /// What to do.
    pub message: Message,
    /// The calling user (`InitiatingUserId`, and `UserId` unless a step impersonates).
    pub user_id: Uuid,
    /// The `tag` request parameter: reaches every step as the shared variable `tag`.
    pub tag: Option<String>,
    /// `BypassBusinessLogicExecution` contains `CustomSync`: no synchronous step runs.
    pub bypass_sync: bool,
    /// `BypassBusinessLogicExecution` contains `CustomAsync`: no asynchronous step is queued.
    pub bypass_async: bool,
    /// `BypassBusinessLogicExecutionStepIds`: these steps do not run.
    pub bypass_step_ids: Vec<Uuid>,
    /// `ConcurrencyBehavior = IfRowVersionMatches` with this `RowVersion` (Update and Delete): the row is
    /// written only while its `versionnumber` is this one (the Web API's `If-Match` with an ETag).
    pub if_row_version: Option<i64>,
}

impl OrganizationRequest {
    /// A request by [`DEFAULT_USER_ID`] with no optional parameters.
    pub fn new(message: Message) -> Self {
        OrganizationRequest {
            message,
            user_id: DEFAULT_USER_ID,
            tag: None,
            bypass_sync: false,
            bypass_async: false,
            bypass_step_ids: Vec::new(),
            if_row_version: None,
        }
    }

    /// Applies a `BypassBusinessLogicExecution` value (`CustomSync`, `CustomAsync` or both, comma-separated).
    pub fn bypass_business_logic(mut self, value: &str) -> Result<Self, PipelineError> {
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "CustomSync" => self.bypass_sync = true,
                "CustomAsync" => self.bypass_async = true,
                other => {
                    return Err(PipelineError::Invalid(format!(
                        "BypassBusinessLogicExecution: `{other}` is not CustomSync or CustomAsync"
                    )));
                }
            }
        }
        Ok(self)
    }
}

/// The answer to a request, built from the final OutputParameters (so stage-40 steps may change it).
#[derive(Debug, Clone, PartialEq)]
pub enum OrganizationResponse {
    /// Create: `id`.
    Create {
        /// The new row's id.
        id: Uuid,
    },
    /// Retrieve: `BusinessEntity`.
    Retrieve {
        /// The row.
        entity: Entity,
    },
    /// RetrieveMultiple: `BusinessEntityCollection`.
    RetrieveMultiple {
        /// The rows.
        collection: EntityCollection,
    },
    /// Update.
    Update,
    /// Delete.
    Delete,
    /// Associate.
    Associate,
    /// Disassociate.
    Disassociate,
    /// SetState.
    SetState,
    /// Assign.
    Assign,
    /// CreateMultiple, UpdateMultiple, UpsertMultiple: the id of each target, in order.
    Multiple {
        /// The created or updated rows' ids.
        ids: Vec<Uuid>,
    },
    /// A Custom API: its declared response properties, in declaration order.
    Custom {
        /// Name and value of each response property.
        outputs: Vec<(String, Value)>,
    },
}

/// The pipeline: registered steps, loaded plug-ins, the store and the sandbox.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    sandbox: Arc<Sandbox>,
    /// The loaded plug-ins and ordered steps, replaceable while operations run.
    registries: Registries,
    settings: PipelineSettings,
    /// Where plug-ins' notification-service posts go (unset: they fail with `unavailable`).
    delivery: OnceLock<Arc<Delivery>>,
    /// Wakes the asynchronous service after a committed operation (unset: its workers find new jobs by
    /// polling).
    job_notifier: OnceLock<weft_jobs::Notifier>,
    /// What applying `weft.toml` at start-up replaced or removed.
    startup: ApplyReport,
    /// Bumped after every change to service endpoints this host makes or hears of: what keeps the job
    /// runner's endpoint cache honest (see [`Pipeline::endpoints_generation`]).
    endpoints_generation: AtomicU64,
}

/// A change to a step's runtime-writable columns; `None` leaves the column as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepChange {
    /// `statecode` (with its `statuscode`).
    pub state: Option<StepState>,
    /// `rank`.
    pub rank: Option<i32>,
    /// `configuration` (unsecure); `Some(None)` clears it.
    pub configuration: Option<Option<String>>,
}

/// The state of one operation while it moves through the stages.
struct Op {
    message: String,
    table: String,
    primary_id: Uuid,
    input: Vec<Parameter>,
    output: Vec<Parameter>,
    /// SharedVariables of stage 10.
    shared_pre_validation: Vec<Parameter>,
    /// SharedVariables of stages 20–40.
    shared: Vec<Parameter>,
    query: Option<Query>,
    depth: i32,
    correlation_id: Uuid,
    request_id: Uuid,
    created_on: i64,
    user_id: Uuid,
    initiating_user_id: Uuid,
    /// The contexts above this operation: the issuing plug-in's frame first.
    parents: Vec<ContextFrame>,
    bypass_sync: bool,
    bypass_async: bool,
    bypass_step_ids: Vec<Uuid>,
    /// The row version an Update or Delete is conditional on (`ConcurrencyBehavior` IfRowVersionMatches).
    if_row_version: Option<i64>,
    /// Whether this operation runs inside a transaction its issuer opened (then PreValidation does too).
    in_parent_tx: bool,
    deadline: Instant,
    pre_row: Option<Row>,
    post_row: Option<Row>,
    /// A bulk message's targets' ids, set by its main operation.
    bulk_ids: Vec<Uuid>,
    /// The registration this operation runs on: taken once by the top-level operation, inherited by its
    /// child operations, so a replacement never changes an operation midway.
    registry: Arc<Registry>,
    /// Child operations issued so far by the whole tree this operation belongs to: shared with the
    /// top-level operation and every child, checked against `max_child_operations`.
    children: Arc<AtomicU32>,
}

impl Op {
    /// Makes this Update or Delete conditional on the row's version, as `ConcurrencyBehavior`
    /// IfRowVersionMatches with the Target's `RowVersion` (both visible to plug-ins).
    fn require_row_version(&mut self, version: i64) -> Result<(), PipelineError> {
        if self.message != "Update" && self.message != "Delete" {
            return Err(PipelineError::Invalid(format!(
                "{}: a row version condition applies to Update and Delete only",
                self.message
            )));
        }
        self.if_row_version = Some(version);
        if let Some(p) = self.input.iter_mut().find(|p| p.name == "Target")
            && let ParameterValue::Entity(e) = &mut p.value
        {
            e.row_version = Some(version.to_string());
        }
        // Dataverse's ConcurrencyBehavior: 1 = IfRowVersionMatches.
        self.input.push(param(
            "ConcurrencyBehavior",
            ParameterValue::Value(Value::OptionSetValue(1)),
        ));
        Ok(())
    }

    /// Fails the operation (rolling back the write just made) when it was conditional on a row version
    /// and `replaced` — the row as the write found it, under its lock — had another.
    fn check_row_version(&self, replaced: &weft_store::Attributes) -> Result<(), PipelineError> {
        let Some(wanted) = self.if_row_version else {
            return Ok(());
        };
        let found = match replaced.get(weft_store::schema::platform::VERSION_NUMBER) {
            Some(weft_store::Value::BigInt(v)) => Some(*v),
            _ => None,
        };
        if found == Some(wanted) {
            Ok(())
        } else {
            Err(PipelineError::RowVersionMismatch)
        }
    }
}

/// Reborrows an optional transaction for a shorter call (shortening the trait object's lifetime, which
/// `Option::as_deref_mut` cannot).
fn reborrow<'s>(tx: &'s mut Option<&mut dyn Tx>) -> Option<&'s mut dyn Tx> {
    match tx {
        Some(t) => Some(&mut **t),
        None => None,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn param(name: &str, value: ParameterValue) -> Parameter {
    Parameter {
        name: name.into(),
        value,
    }
}

fn get_param<'a>(ps: &'a [Parameter], name: &str) -> Option<&'a ParameterValue> {
    ps.iter().find(|p| p.name == name).map(|p| &p.value)
}

fn set_param(ps: &mut Vec<Parameter>, name: &str, value: ParameterValue) {
    match ps.iter_mut().find(|p| p.name == name) {
        Some(p) => p.value = value,
        None => ps.push(param(name, value)),
    }
}

fn reference(table: &str, id: Uuid) -> ParameterValue {
    ParameterValue::Value(Value::EntityReference(EntityReference {
        logical_name: table.into(),
        id: guid(id),
        name: None,
    }))
}

fn project(row: &Row, attributes: &[String]) -> Entity {
    let mut e = convert::row_to_entity(row);
    if !attributes.is_empty() {
        e.attributes.retain(|a| attributes.contains(&a.name));
    }
    e
}

impl Pipeline {
    /// Applies the registration to the store's system tables (see [`Registration::apply`]: runtime changes
    /// the file did not override stand), then loads every plug-in — the component replaced at runtime when
    /// there is one, else the file — and runs on the steps as stored.
    pub fn new(
        store: Arc<dyn Store>,
        sandbox: Arc<Sandbox>,
        registration: &Registration,
    ) -> Result<Pipeline, PipelineError> {
        let (registry, startup) = changes::startup_registry(&store, &sandbox, registration)?;
        Ok(Pipeline {
            inner: Arc::new(Inner {
                store,
                sandbox,
                registries: Registries::new(registry),
                settings: registration.pipeline.clone(),
                delivery: OnceLock::new(),
                job_notifier: OnceLock::new(),
                startup,
                endpoints_generation: AtomicU64::new(0),
            }),
        })
    }

    /// What applying `weft.toml` at start-up did to entries changed at runtime or dropped from the file.
    pub fn startup_report(&self) -> &ApplyReport {
        &self.inner.startup
    }

    /// The store the pipeline writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Which executions keep a replay recording (`[pipeline] record_replays`).
    pub fn record_replays(&self) -> RecordReplays {
        self.inner.settings.record_replays
    }

    /// The sandbox plug-ins run in.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.inner.sandbox
    }

    /// The current version of a loaded plug-in by plug-in type id, with its name (the job runner runs
    /// async steps with it).
    pub fn plugin(&self, plugin_type: Uuid) -> Option<(String, Arc<LoadedPlugin>)> {
        self.inner
            .registries
            .snapshot()
            .plugins
            .get(&plugin_type)
            .map(|p| (p.assembly.name.clone(), Arc::clone(&p.loaded)))
    }

    /// The current version of a registered step by id, with its secure configuration (the job runner runs
    /// the step of a job).
    pub fn step(&self, id: Uuid) -> Option<StepDecl> {
        self.inner
            .registries
            .snapshot()
            .steps
            .iter()
            .find(|s| s.def.id == id)
            .cloned()
    }

    /// The current steps in execution order (stage, rank, id), with their secure configurations: callers
    /// that show them must leave those out.
    pub fn steps(&self) -> Vec<StepDecl> {
        self.inner.registries.snapshot().steps.clone()
    }

    /// The current plug-in assemblies with the sha256 of the component each runs, by name.
    pub fn assemblies(&self) -> Vec<PluginAssembly> {
        let mut all: Vec<PluginAssembly> = self
            .inner
            .registries
            .snapshot()
            .plugins
            .values()
            .map(|p| PluginAssembly {
                sha256: Some(p.loaded.sha256().to_owned()),
                ..p.assembly.clone()
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        // A component holding several plug-in types has an entry per type.
        all.dedup_by_key(|a| a.id);
        all
    }

    /// The organization service of an async step's plug-in run by the asynchronous service: each call an
    /// operation of its own at the context's depth + 1 (see `services::OrgServices::detached`).
    pub(crate) fn detached_services(
        &self,
        context: &ExecutionContext,
    ) -> services::OrgServices<'_> {
        services::OrgServices::detached(&self.inner, context)
    }

    /// Sends plug-ins' notification-service posts through `delivery` from now on (until then they fail
    /// with `unavailable`). Set once for all clones; false when one was already set.
    pub fn set_delivery(&self, delivery: Arc<Delivery>) -> bool {
        self.inner.delivery.set(delivery).is_ok()
    }

    /// The delivery plug-ins' posts go through, once set.
    pub fn delivery(&self) -> Option<&Arc<Delivery>> {
        self.inner.delivery.get()
    }

    /// Changes with every change to service endpoints: one made through this pipeline (counted once it is
    /// durable) or another host's registration change (counted when its notification arrives). What was
    /// read from the store under an older value may be stale.
    pub fn endpoints_generation(&self) -> u64 {
        self.inner.endpoints_generation.load(Ordering::Acquire)
    }

    /// Counts a change to service endpoints (see [`Pipeline::endpoints_generation`]).
    pub(crate) fn endpoints_changed(&self) {
        self.inner
            .endpoints_generation
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Wakes the asynchronous service through `notifier` once an operation that may have written system
    /// jobs is durable, so its idle workers claim them at once instead of at their next poll. Set once for
    /// all clones; false when one was already set.
    pub fn set_job_notifier(&self, notifier: weft_jobs::Notifier) -> bool {
        self.inner.job_notifier.set(notifier).is_ok()
    }

    /// Runs one top-level operation; returns after the transaction that holds it is durable.
    /// Blocking (it waits for the group commit): from async code, call it on a blocking thread.
    pub fn execute(
        &self,
        request: OrganizationRequest,
    ) -> Result<OrganizationResponse, PipelineError> {
        let op = self.inner.prepare(request)?;
        let may_write_jobs = op.may_write_jobs();
        let response = self.inner.run_request(op, None)?;
        if may_write_jobs && let Some(notifier) = self.inner.job_notifier.get() {
            notifier.notify();
        }
        Ok(response)
    }
}

/// Several requests in one transaction, as Dataverse's ExecuteTransaction runs them (and a Web API `$batch`
/// change set): each runs through the whole pipeline inside it, PreValidation included
/// (`IsInTransaction` is true), and all of them commit together or none does. Made by
/// [`Pipeline::transaction`].
pub struct Transaction<'t> {
    inner: &'t Arc<Inner>,
    tx: &'t mut dyn Tx,
    may_write_jobs: bool,
}

impl Transaction<'_> {
    /// Runs `request` inside the transaction. Its writes are visible to the requests after it and become
    /// durable only when the whole transaction commits.
    pub fn execute(
        &mut self,
        request: OrganizationRequest,
    ) -> Result<OrganizationResponse, PipelineError> {
        let op = self.inner.prepare(request)?;
        self.may_write_jobs |= op.may_write_jobs();
        self.inner.run_request(op, Some(&mut *self.tx))
    }
}

impl Transaction<'_> {
    /// Whether row `id` of `table` exists as the transaction sees it (its own writes included). A read
    /// of the store, not an operation: no Retrieve steps run.
    pub fn exists(&mut self, table: &str, id: Uuid) -> Result<bool, PipelineError> {
        let columns = self
            .inner
            .store
            .schema()
            .table(table)
            .map(|t| vec![t.primary_id_attribute.clone()])
            .ok_or_else(|| StoreError::UnknownTable(table.to_owned()))?;
        Ok(self.tx.retrieve(table, id, Some(&columns))?.is_some())
    }
}

impl Pipeline {
    /// Runs `body` with a [`Transaction`]: `Ok` commits everything it executed (returning once durable),
    /// `Err` rolls all of it back. The transaction has one operation time limit, counted from now.
    /// Blocking, like [`Pipeline::execute`].
    pub fn transaction<T>(
        &self,
        body: impl FnOnce(&mut Transaction<'_>) -> Result<T, PipelineError>,
    ) -> Result<T, PipelineError> {
        let deadline =
            Instant::now() + Duration::from_millis(self.inner.settings.operation_limit_ms);
        let mut may_write_jobs = false;
        let result = self.inner.store.operate(Some(deadline), |tx: &mut dyn Tx| {
            let mut transaction = Transaction {
                inner: &self.inner,
                tx,
                may_write_jobs: false,
            };
            let result = body(&mut transaction);
            may_write_jobs = transaction.may_write_jobs;
            result
        });
        if result.is_ok()
            && may_write_jobs
            && let Some(notifier) = self.inner.job_notifier.get()
        {
            notifier.notify();
        }
        result
    }
}

impl Op {
    /// Whether the operation may write system jobs. Reads and bypassed operations write none; others may
    /// (async steps, their own or their children's): a wake costs idle workers one claim, cheaper than
    /// tracking which operation wrote.
    fn may_write_jobs(&self) -> bool {
        !self.bypass_async && !matches!(self.message.as_str(), "Retrieve" | "RetrieveMultiple")
    }
}

impl Inner {
    /// Runs a caller's operation, on its own or inside a [`Transaction`], and counts it for /metrics.
    fn run_request(
        self: &Arc<Self>,
        op: Op,
        tx: Option<&mut dyn Tx>,
    ) -> Result<OrganizationResponse, PipelineError> {
        let correlation_id = op.correlation_id;
        // Labels for `weft_operations_total` (weft-console's /metrics): registered names only, so the
        // series stay few.
        let (message_name, table) = (op.message.clone(), op.table.clone());
        let span = crate::telemetry::operation(
            correlation_id,
            || format!("{message_name} {table}"),
            || op_attributes(&op),
        );
        let result = self.execute_op(op, tx);
        span.attributes(|| match &result {
            Ok(OrganizationResponse::Create { id }) => {
                vec![KeyValue::new("weft.row_id", id.to_string())]
            }
            _ => Vec::new(),
        });
        span.finish(&result);
        if let Err(e) = &result {
            span.attributes(|| vec![KeyValue::new("weft.error_code", e.code().to_string())]);
        }
        drop(span);
        let outcome = if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        metrics::counter!("weft_operations_total", "message" => message_name, "table" => table, "outcome" => outcome)
            .increment(1);
        result.inspect_err(|e| {
            // One line per failed operation for whoever watches `weft up`; message, table and the
            // plug-in's details are in the trace log under the same correlation id (cloning them
            // here would cost every operation, not just the failed ones).
            tracing::warn!(%correlation_id, code = %e.code(), "operation failed: {e}");
        })
    }

    /// The depth-1 operation a caller's `request` asks for.
    fn prepare(&self, request: OrganizationRequest) -> Result<Op, PipelineError> {
        let started = Instant::now();
        let request_id = Uuid::new_v4();
        let OrganizationRequest {
            message,
            user_id,
            tag,
            bypass_sync,
            bypass_async,
            bypass_step_ids,
            if_row_version,
        } = request;
        let registry = self.registries.snapshot();
        let mut op = self.new_op(message, started, request_id, registry)?;
        // With traces on, a Web API request's first operation takes the id of the trace the request
        // started, so the request is the root of the operation's trace (see `telemetry`).
        if let Some(id) = crate::telemetry::claim_correlation_id() {
            op.correlation_id = id;
        }
        op.user_id = user_id;
        op.initiating_user_id = user_id;
        op.bypass_sync = bypass_sync;
        op.bypass_async = bypass_async;
        op.bypass_step_ids = bypass_step_ids;
        if let Some(version) = if_row_version {
            op.require_row_version(version)?;
        }
        if let Some(tag) = tag {
            let tag = param("tag", ParameterValue::Value(Value::String(tag)));
            op.shared_pre_validation.push(tag.clone());
            op.shared.push(tag);
        }
        Ok(op)
    }

    /// A depth-1 operation for `message` (callers adjust user, parents, depth).
    fn new_op(
        &self,
        message: Message,
        started: Instant,
        request_id: Uuid,
        registry: Arc<Registry>,
    ) -> Result<Op, PipelineError> {
        let name = message.name().to_owned();
        let mut query = None;
        let (table, primary_id, input) = match message {
            Message::Create { target } | Message::Update { target } => {
                let id = target.id.map(uuid);
                if name == "Update" && id.is_none() {
                    return Err(PipelineError::Invalid(
                        "Update: the Target entity has no id".into(),
                    ));
                }
                (
                    target.logical_name.clone(),
                    id.unwrap_or_default(),
                    vec![param("Target", ParameterValue::Entity(target))],
                )
            }
            Message::Retrieve { table, id, columns } => {
                let mut input = vec![param("Target", reference(&table, id))];
                if let Some(columns) = columns {
                    input.push(param(
                        "ColumnSet",
                        ParameterValue::Value(Value::StringArray(columns)),
                    ));
                }
                (table, id, input)
            }
            Message::RetrieveMultiple { query: q } => {
                let table = q.table.clone();
                query = Some(q);
                (table, Uuid::nil(), Vec::new())
            }
            Message::Delete { table, id } => {
                let input = vec![param("Target", reference(&table, id))];
                (table, id, input)
            }
            Message::Associate {
                target,
                relationship,
                related,
            }
            | Message::Disassociate {
                target,
                relationship,
                related,
            } => {
                let input = vec![
                    param("Target", reference(&target.logical_name, target.id)),
                    // The WIT value model has no Relationship type: its schema name stands for it.
                    param(
                        "Relationship",
                        ParameterValue::Value(Value::String(relationship)),
                    ),
                    param(
                        "RelatedEntities",
                        ParameterValue::Value(Value::EntityReferenceCollection(
                            related
                                .iter()
                                .map(|r| EntityReference {
                                    logical_name: r.logical_name.clone(),
                                    id: guid(r.id),
                                    name: None,
                                })
                                .collect(),
                        )),
                    ),
                ];
                (target.logical_name, target.id, input)
            }
            Message::SetState {
                target,
                state,
                status,
            } => {
                let input = vec![
                    param("EntityMoniker", reference(&target.logical_name, target.id)),
                    param("State", ParameterValue::Value(Value::OptionSetValue(state))),
                    param(
                        "Status",
                        ParameterValue::Value(Value::OptionSetValue(status)),
                    ),
                ];
                (target.logical_name, target.id, input)
            }
            Message::Assign { target, assignee } => {
                let input = vec![
                    param("Target", reference(&target.logical_name, target.id)),
                    param("Assignee", reference(&assignee.logical_name, assignee.id)),
                ];
                (target.logical_name, target.id, input)
            }
            Message::Multiple {
                bulk,
                table,
                targets,
            } => {
                let (table, input) = bulk::input(bulk, table, targets)?;
                (table, Uuid::nil(), input)
            }
            Message::Custom { name, parameters } => {
                let api = registry.custom_apis.get(&name).ok_or_else(|| {
                    PipelineError::Invalid(format!("message `{name}` is not declared"))
                })?;
                custom_api::check_request(api, &parameters)?;
                let (table, id) = match (&api.binding, parameters.iter().find(|p| p.0 == "Target"))
                {
                    (Binding::Entity(_), Some((_, Value::EntityReference(r)))) => {
                        (r.logical_name.clone(), uuid(r.id))
                    }
                    (Binding::EntityCollection(t), _) => (t.clone(), Uuid::nil()),
                    // Dataverse names an unbound message's primary entity `none`.
                    _ => (custom_api::UNBOUND.to_owned(), Uuid::nil()),
                };
                let input = parameters
                    .into_iter()
                    .map(|(n, v)| param(&n, ParameterValue::Value(v)))
                    .collect();
                (table, id, input)
            }
        };
        if table != custom_api::UNBOUND && self.store.schema().table(&table).is_none() {
            return Err(StoreError::UnknownTable(table).into());
        }
        Ok(Op {
            message: name,
            table,
            primary_id,
            input,
            output: Vec::new(),
            shared_pre_validation: Vec::new(),
            shared: Vec::new(),
            query,
            depth: 1,
            correlation_id: Uuid::new_v4(),
            request_id,
            created_on: now_ms(),
            user_id: DEFAULT_USER_ID,
            initiating_user_id: DEFAULT_USER_ID,
            parents: Vec::new(),
            bypass_sync: false,
            bypass_async: false,
            bypass_step_ids: Vec::new(),
            if_row_version: None,
            in_parent_tx: false,
            deadline: started + Duration::from_millis(self.settings.operation_limit_ms),
            pre_row: None,
            post_row: None,
            bulk_ids: Vec::new(),
            registry,
            children: Arc::new(AtomicU32::new(0)),
        })
    }

    /// Runs `op`. With `tx`, every stage runs in it (a child operation); without, PreValidation runs here
    /// and the rest in a new transaction (a top-level operation, or one issued from a PreValidation step).
    fn execute_op(
        self: &Arc<Self>,
        mut op: Op,
        tx: Option<&mut dyn Tx>,
    ) -> Result<OrganizationResponse, PipelineError> {
        match tx {
            Some(tx) => {
                op.in_parent_tx = true;
                let mut traces = Vec::new();
                let mut tx = Some(tx);
                self.run_stages(&mut op, &mut tx, &mut traces)
            }
            None => {
                let mut traces = Vec::new();
                let pre_validation = self.pre_validation_outside(&mut op, &mut traces);
                if let Err(e) = pre_validation {
                    // No transaction was opened: record the traces in one of their own.
                    self.store.transact(move |tx| {
                        for t in traces {
                            tx.insert_trace_log(t)?;
                        }
                        Ok::<_, StoreError>(())
                    })?;
                    return Err(e);
                }
                // The operation runs here, on the caller's thread, concurrently with others: it holds only
                // the rows it writes (their locks) until its commit is durable, and waits for a row another
                // operation holds at most until its own deadline.
                let deadline = op.deadline;
                self.store.operate(Some(deadline), |tx: &mut dyn Tx| {
                    for t in traces.drain(..) {
                        tx.insert_trace_log(t)?;
                    }
                    let mut tx = Some(tx);
                    self.run_stages(&mut op, &mut tx, &mut traces)
                })
            }
        }
    }

    fn pre_validation_outside(
        self: &Arc<Self>,
        op: &mut Op,
        traces: &mut Vec<NewTraceLog>,
    ) -> Result<(), PipelineError> {
        let steps = self.sync_steps(op, StoreStage::PreValidation);
        if steps.is_empty() {
            return Ok(());
        }
        if self.needs_pre_image(op) {
            let (table, id) = (op.table.clone(), op.primary_id);
            op.pre_row = self
                .store
                .read(|r: &dyn Read| r.retrieve(&table, id, None))?;
        }
        self.run_steps(op, Stage::PreValidation, steps, &mut None, traces)
    }

    /// Runs `steps` in `stage`, in order, inside the stage's span; nothing when there are none.
    fn run_steps(
        self: &Arc<Self>,
        op: &mut Op,
        stage: Stage,
        steps: Vec<StepDecl>,
        tx: &mut Option<&mut dyn Tx>,
        traces: &mut Vec<NewTraceLog>,
    ) -> Result<(), PipelineError> {
        if steps.is_empty() {
            return Ok(());
        }
        in_stage(op, stage, |op| {
            for step in steps {
                self.run_step(op, stage, &step, tx, traces)?;
            }
            Ok(())
        })
    }

    /// Stages (10 when in a parent transaction), 20, 30, 40 and the outbox, in `tx`.
    fn run_stages(
        self: &Arc<Self>,
        op: &mut Op,
        tx: &mut Option<&mut dyn Tx>,
        traces: &mut Vec<NewTraceLog>,
    ) -> Result<OrganizationResponse, PipelineError> {
        let result = self.run_stages_inner(op, tx, traces);
        if let Some(tx) = reborrow(tx) {
            for t in traces.drain(..) {
                tx.insert_trace_log(t)?;
            }
        }
        result
    }

    fn run_stages_inner(
        self: &Arc<Self>,
        op: &mut Op,
        tx: &mut Option<&mut dyn Tx>,
        traces: &mut Vec<NewTraceLog>,
    ) -> Result<OrganizationResponse, PipelineError> {
        let Some(t) = reborrow(tx) else {
            return Err(PipelineError::Invalid("no transaction".into()));
        };
        // An Entity-bound Custom API acts on its Target row, which must exist (as a Retrieve's must).
        if op
            .registry
            .custom_apis
            .get(&op.message)
            .is_some_and(|api| matches!(api.binding, Binding::Entity(_)))
            && t.retrieve(&op.table, op.primary_id, None)?.is_none()
        {
            return Err(StoreError::NotFound {
                table: op.table.clone(),
                id: op.primary_id,
            }
            .into());
        }
        // Pre-image: the row as it is in this transaction, just before the main operation.
        if self.needs_pre_image(op) {
            op.pre_row = t.retrieve(&op.table, op.primary_id, None)?;
        }
        if op.in_parent_tx {
            let steps = self.sync_steps(op, StoreStage::PreValidation);
            self.run_steps(op, Stage::PreValidation, steps, tx, traces)?;
        }
        let steps = self.sync_steps(op, StoreStage::PreOperation);
        self.run_steps(op, Stage::PreOperation, steps, tx, traces)?;
        self.check_deadline(op)?;
        let registry = Arc::clone(&op.registry);
        in_stage(op, Stage::MainOperation, |op| {
            let Some(t) = reborrow(tx) else {
                return Err(PipelineError::Invalid("no transaction".into()));
            };
            match registry.custom_apis.get(&op.message) {
                Some(api) => {
                    let step = custom_api::main_step(api);
                    self.run_step(op, Stage::MainOperation, &step, tx, traces)
                }
                None => match Bulk::named(&op.message) {
                    Some(bulk) => self.main_multiple(bulk, op, t),
                    None => self.main_operation(op, t),
                },
            }
        })?;
        let steps = self.sync_steps(op, StoreStage::PostOperation);
        // Without PostOperation steps nothing changed the row since the main operation wrote it.
        let row_as_written = steps.is_empty();
        self.run_steps(op, Stage::PostOperation, steps, tx, traces)?;
        let Some(t) = reborrow(tx) else {
            return Err(PipelineError::Invalid("no transaction".into()));
        };
        self.queue_async(op, t, row_as_written)?;
        self.queue_workflows(op, t)?;
        self.response(op)
    }

    fn check_deadline(&self, op: &Op) -> Result<(), PipelineError> {
        if Instant::now() >= op.deadline {
            return Err(PipelineError::Timeout {
                limit_ms: self.settings.operation_limit_ms,
            });
        }
        Ok(())
    }

    /// Steps registered for this message and table that are enabled and fire for this operation.
    fn candidate_steps<'a>(
        &'a self,
        op: &'a Op,
        stage: StoreStage,
    ) -> impl Iterator<Item = &'a StepDecl> + 'a {
        let changed: Vec<&str> = match get_param(&op.input, "Target") {
            Some(ParameterValue::Entity(e)) if op.message == "Update" => {
                e.attributes.iter().map(|a| a.name.as_str()).collect()
            }
            _ => Vec::new(),
        };
        op.registry.steps.iter().filter(move |s| {
            let d = &s.def;
            d.stage == stage
                && d.message == op.message
                && d.primary_entity.as_deref().is_none_or(|t| t == op.table)
                && d.state == StepState::Enabled
                && !op.bypass_step_ids.contains(&d.id)
                // weft's reading of `invocationsource` (Dataverse leaves "both" undocumented): Parent steps
                // fire for every operation, Child steps only for operations a plug-in issued (depth > 1),
                // Internal steps are the platform's own and never fire here.
                && match d.invocation_source {
                    InvocationSource::Parent => true,
                    InvocationSource::Child => op.depth > 1,
                    InvocationSource::Internal => false,
                }
                && (d.filtering_attributes.is_empty()
                    || op.message != "Update"
                    || d.filtering_attributes
                        .iter()
                        .any(|a| changed.contains(&a.as_str())))
        })
    }

    fn sync_steps(&self, op: &Op, stage: StoreStage) -> Vec<StepDecl> {
        if op.bypass_sync {
            return Vec::new();
        }
        self.candidate_steps(op, stage)
            .filter(|s| s.def.mode == StepMode::Synchronous)
            .cloned()
            .collect()
    }

    fn needs_pre_image(&self, op: &Op) -> bool {
        self.needs_image(op, false) || workflow::needs_deleted_row(op)
    }

    fn needs_post_image(&self, op: &Op) -> bool {
        self.needs_image(op, true)
    }

    /// Whether a registered step of this operation takes a pre-image (any stage)
    /// or a post-image (PostOperation only), on a message that has one — the
    /// availability rules registration enforces (`registration::image_support`).
    fn needs_image(&self, op: &Op, post: bool) -> bool {
        let Some((pre_available, post_available)) = crate::registration::image_support(&op.message)
        else {
            return false;
        };
        let (available, other_kind) = if post {
            (post_available, ImageType::PreImage)
        } else {
            (pre_available, ImageType::PostImage)
        };
        available
            && op.registry.steps.iter().any(|s| {
                s.def.message == op.message
                    && (!post || s.def.stage == StoreStage::PostOperation)
                    && s.def
                        .primary_entity
                        .as_deref()
                        .is_none_or(|t| t == op.table)
                    && s.def.images.iter().any(|i| i.image_type != other_kind)
            })
    }

    fn images(&self, op: &Op, step: &StepDecl, stage: Stage) -> (Vec<Image>, Vec<Image>) {
        let (mut pre, mut post) = (Vec::new(), Vec::new());
        for i in &step.def.images {
            if i.image_type != ImageType::PostImage
                && let Some(row) = &op.pre_row
            {
                pre.push(Image {
                    alias: i.entity_alias.clone(),
                    entity: project(row, &i.attributes),
                });
            }
            if i.image_type != ImageType::PreImage
                && stage == Stage::PostOperation
                && let Some(row) = &op.post_row
            {
                post.push(Image {
                    alias: i.entity_alias.clone(),
                    entity: project(row, &i.attributes),
                });
            }
        }
        (pre, post)
    }

    /// The context `step` sees in `stage`.
    fn context(&self, op: &Op, step: &StepDecl, stage: Stage, mode: Mode) -> ExecutionContext {
        let (pre, post) = self.images(op, step, stage);
        let owning_extension = EntityReference {
            logical_name: "sdkmessageprocessingstep".into(),
            id: guid(step.def.id),
            name: (mode == Mode::Synchronous).then(|| step.def.name.clone()),
        };
        let user_id = step.def.impersonating_user_id.unwrap_or(op.user_id);
        self.context_for(op, stage, mode, user_id, owning_extension, (pre, post))
    }

    /// The context of an execution in `stage` by `owning_extension` (a step, or a workflow) running as
    /// `user_id`, with its images.
    fn context_for(
        &self,
        op: &Op,
        stage: Stage,
        mode: Mode,
        user_id: Uuid,
        owning_extension: EntityReference,
        (pre, post): (Vec<Image>, Vec<Image>),
    ) -> ExecutionContext {
        let in_transaction =
            mode == Mode::Synchronous && (stage != Stage::PreValidation || op.in_parent_tx);
        let shared = if stage == Stage::PreValidation {
            op.shared_pre_validation.clone()
        } else {
            op.shared.clone()
        };
        let frame = ContextFrame {
            message_name: op.message.clone(),
            primary_entity_name: op.table.clone(),
            secondary_entity_name: "none".into(),
            primary_entity_id: guid(op.primary_id),
            stage,
            mode,
            depth: op.depth,
            user_id: guid(user_id),
            initiating_user_id: guid(op.initiating_user_id),
            initiating_user_agent: Some(String::new()),
            initiating_user_azure_active_directory_object_id: Some(guid(Uuid::nil())),
            user_azure_active_directory_object_id: Some(guid(Uuid::nil())),
            business_unit_id: guid(BUSINESS_UNIT_ID),
            organization_id: guid(ORGANIZATION_ID),
            organization_name: ORGANIZATION_NAME.into(),
            correlation_id: guid(op.correlation_id),
            request_id: Some(guid(op.request_id)),
            operation_id: guid(op.request_id),
            operation_created_on: op.created_on,
            is_in_transaction: in_transaction,
            is_executing_offline: false,
            is_offline_playback: false,
            isolation_mode: IsolationMode::Sandbox,
            owning_extension,
            input_parameters: op.input.clone(),
            output_parameters: if stage == Stage::PostOperation {
                op.output.clone()
            } else {
                Vec::new()
            },
            shared_variables: shared,
            pre_entity_images: pre,
            post_entity_images: post,
        };
        let mut parents = Vec::with_capacity(op.parents.len() + 1);
        if stage != Stage::PreValidation {
            // Stages 20/40 see the PreValidation context (with its shared variables) as ParentContext.
            let mut pv = frame.clone();
            pv.stage = Stage::PreValidation;
            pv.mode = Mode::Synchronous;
            pv.is_in_transaction = op.in_parent_tx;
            pv.shared_variables = op.shared_pre_validation.clone();
            pv.pre_entity_images = Vec::new();
            pv.post_entity_images = Vec::new();
            pv.output_parameters = Vec::new();
            pv.user_id = guid(op.user_id);
            pv.owning_extension.name = None;
            parents.push(pv);
        }
        parents.extend(op.parents.iter().cloned());
        ExecutionContext { frame, parents }
    }

    /// Runs one synchronous step (a plug-in or a service endpoint) in a span of its own.
    fn run_step(
        self: &Arc<Self>,
        op: &mut Op,
        stage: Stage,
        step: &StepDecl,
        tx: &mut Option<&mut dyn Tx>,
        traces: &mut Vec<NewTraceLog>,
    ) -> Result<(), PipelineError> {
        crate::telemetry::in_span(
            || format!("plugin {}", step.def.name),
            || step_attributes(step, stage, "synchronous"),
            |_| self.run_step_inner(op, stage, step, tx, traces),
        )
    }

    fn run_step_inner(
        self: &Arc<Self>,
        op: &mut Op,
        stage: Stage,
        step: &StepDecl,
        tx: &mut Option<&mut dyn Tx>,
        traces: &mut Vec<NewTraceLog>,
    ) -> Result<(), PipelineError> {
        self.check_deadline(op)?;
        let type_id = match step.def.event_handler {
            EventHandler::PluginType(id) => id,
            EventHandler::ServiceEndpoint(endpoint) => {
                return self.endpoint_step(op, stage, step, endpoint, tx, traces);
            }
        };
        let registry = Arc::clone(&op.registry);
        let Some(RegisteredPlugin {
            assembly,
            loaded: plugin,
        }) = registry.plugins.get(&type_id)
        else {
            return Err(PipelineError::Invalid(format!(
                "step \"{}\": its plug-in is not loaded",
                step.def.name
            )));
        };
        let context = Arc::new(self.context(op, step, stage, Mode::Synchronous));
        let mut services = services::OrgServices::new(self, reborrow(tx), &context, op);
        let step_started = Instant::now();
        let mut recorder = Recorder::new(
            &mut services,
            self.settings.record_replays != RecordReplays::Off,
        );
        let outcome = self.sandbox.invoke_until(
            plugin,
            Arc::clone(&context),
            step.def.configuration.clone(),
            step.secure_configuration.clone(),
            &mut recorder,
            Some(op.deadline),
        );
        let calls = recorder.calls;
        crate::telemetry::annotate(|| {
            plugin_attributes(&assembly.name, plugin, outcome.usage.elapsed)
        });
        // The plug-in's own failure, as a replay will see it (the step may also fail for the host's reasons).
        let plugin_failure = outcome.result.as_ref().err().map(|f| f.message.clone());
        let doomed = services.doomed.take();
        drop(services);
        // The sandbox stops a plug-in within one epoch tick of the operation's
        // deadline, possibly just before it: a timeout whose binding deadline was
        // the operation's counts as the operation running late.
        let stopped_for_operation = matches!(&outcome.result, Err(f) if f.kind == FailureKind::Timeout)
            && op.deadline <= step_started + self.sandbox.limits().deadline();
        let late = stopped_for_operation || Instant::now() >= op.deadline;
        let result = match (outcome.result, doomed) {
            // A failed child operation dooms the transaction whatever the plug-in did with the error.
            (_, Some(e)) => Err(e),
            // Past the operation limit nothing the step did counts, whatever it returned.
            _ if late => Err(PipelineError::Timeout {
                limit_ms: self.settings.operation_limit_ms,
            }),
            (Err(f), None) => Err(match f.kind {
                FailureKind::Plugin { error_code, .. } => PipelineError::Plugin {
                    step: step.def.name.clone(),
                    message: f.message.clone(),
                    error_code,
                },
                // The host's capacity: the plug-in never ran (or could not start), so it is not blamed.
                FailureKind::Capacity => PipelineError::Busy {
                    limit: self.sandbox.limits().max_instances,
                    wait_ms: self.sandbox.limits().instance_wait_ms,
                },
                _ => PipelineError::IsvUnexpected {
                    step: step.def.name.clone(),
                    detail: match &f.backtrace {
                        Some(bt) => format!("{f}\n{bt}"),
                        None => f.to_string(),
                    },
                    correlation_id: op.correlation_id,
                },
            }),
            (Ok(changes), None) => {
                if let Some(input) = changes.input_parameters
                    && matches!(stage, Stage::PreValidation | Stage::PreOperation)
                {
                    op.input = input;
                }
                if let Some(output) = changes.output_parameters
                    && matches!(stage, Stage::MainOperation | Stage::PostOperation)
                {
                    op.output = output;
                }
                if let Some(shared) = changes.shared_variables {
                    if stage == Stage::PreValidation {
                        op.shared_pre_validation = shared;
                    } else {
                        op.shared = shared;
                    }
                }
                Ok(())
            }
        };
        // A Custom API's plug-in must answer with every declared response property, each of its type.
        let result = result.and_then(|()| match op.registry.custom_apis.get(&op.message) {
            Some(api) if stage == Stage::MainOperation => {
                custom_api::check_response(api, &op.output)
                    .map(|_| ())
                    .map_err(|detail| PipelineError::IsvUnexpected {
                        step: step.def.name.clone(),
                        detail,
                        correlation_id: op.correlation_id,
                    })
            }
            _ => Ok(()),
        });
        let error = match &result {
            Ok(()) => None,
            Err(PipelineError::IsvUnexpected { detail, .. }) => Some(detail.clone()),
            Err(e) => Some(format!("{} ({})", e, e.code())),
        };
        if let Some(error) = &error {
            let first = error.lines().next().unwrap_or_default();
            tracing::warn!(step = %step.def.name, correlation_id = %op.correlation_id, "plug-in step failed: {first}");
        }
        let recording = self
            .settings
            .record_replays
            .keeps(result.is_ok())
            .then(|| Recording {
                plugin: assembly.name.clone(),
                plugin_type: plugin.selected_type().map(str::to_owned),
                sha256: plugin.sha256().to_owned(),
                unsecure_config: step.def.configuration.clone(),
                failure: plugin_failure,
                ..Recording::new(Arc::unwrap_or_clone(context), calls)
            });
        let mut entry = TraceSubject {
            step_id: step.def.id,
            plugin: assembly.name.clone(),
            message_name: op.message.clone(),
            primary_entity: Some(op.table.clone()),
            depth: op.depth,
            correlation_id: op.correlation_id,
            mode: StepMode::Synchronous,
        }
        .row(
            outcome.usage.elapsed,
            &outcome.traces,
            outcome.stderr,
            result.is_ok(),
            error,
        );
        entry.recording = recording.as_ref().and_then(Recording::to_json);
        match reborrow(tx) {
            Some(tx) => {
                tx.insert_trace_log(entry)?;
            }
            None => traces.push(entry),
        }
        result
    }

    /// A synchronous service-endpoint step (stage 10, 20 or 40): the execution context is posted inside the
    /// operation, as the built-in Azure-aware plug-in posts an asynchronous step's from its system job. A
    /// failed post fails the operation with the endpoint's answer (a webhook's status and message); nothing
    /// is retried. The trace log records the post like a plug-in's execution.
    fn endpoint_step(
        self: &Arc<Self>,
        op: &mut Op,
        stage: Stage,
        step: &StepDecl,
        endpoint: Uuid,
        tx: &mut Option<&mut dyn Tx>,
        traces: &mut Vec<NewTraceLog>,
    ) -> Result<(), PipelineError> {
        let context = self.context(op, step, stage, Mode::Synchronous);
        let started = Instant::now();
        let unchanged = crate::sandbox::wit::context::ContextChanges {
            input_parameters: None,
            output_parameters: None,
            shared_variables: None,
        };
        let mut services = services::OrgServices::new(self, reborrow(tx), &context, op);
        let answer = crate::sandbox::HostServices::notify(
            &mut services,
            guid(endpoint),
            &context,
            &unchanged,
        );
        drop(services);
        let result = match &answer {
            Ok(_) => Ok(()),
            Err(e) => Err(PipelineError::Plugin {
                step: step.def.name.clone(),
                message: e.message.clone(),
                error_code: e.error_code,
            }),
        };
        let line = match &answer {
            Ok(_) => format!("posted the execution context to service endpoint {endpoint}"),
            Err(e) => format!(
                "the post to service endpoint {endpoint} failed: {}",
                e.message
            ),
        };
        let entry = TraceSubject {
            step_id: step.def.id,
            plugin: BUILT_IN_ENDPOINT_PLUGIN.to_owned(),
            message_name: op.message.clone(),
            primary_entity: Some(op.table.clone()),
            depth: op.depth,
            correlation_id: op.correlation_id,
            mode: StepMode::Synchronous,
        }
        .row(
            started.elapsed(),
            &[line],
            String::new(),
            result.is_ok(),
            result
                .as_ref()
                .err()
                .map(|e| format!("{} ({})", e, e.code())),
        );
        match reborrow(tx) {
            Some(tx) => {
                tx.insert_trace_log(entry)?;
            }
            None => traces.push(entry),
        }
        result
    }

    /// Stage 30: the platform's own operation, with the (possibly changed) InputParameters.
    fn main_operation(&self, op: &mut Op, tx: &mut dyn Tx) -> Result<(), PipelineError> {
        let target_entity = |op: &Op| match get_param(&op.input, "Target") {
            Some(ParameterValue::Entity(e)) => Ok(e.clone()),
            _ => Err(PipelineError::Invalid(format!(
                "{}: the Target input parameter must be an entity",
                op.message
            ))),
        };
        let reference_param = |op: &Op, name: &str| match get_param(&op.input, name) {
            Some(ParameterValue::Value(Value::EntityReference(r))) => {
                Ok((r.logical_name.clone(), uuid(r.id)))
            }
            _ => Err(PipelineError::Invalid(format!(
                "{}: the {name} input parameter must be an entity reference",
                op.message
            ))),
        };
        let target_ref = |op: &Op| reference_param(op, "Target");
        let option_param = |op: &Op, name: &str| match get_param(&op.input, name) {
            Some(ParameterValue::Value(Value::OptionSetValue(v) | Value::Integer(v))) => Ok(*v),
            _ => Err(PipelineError::Invalid(format!(
                "{}: the {name} input parameter must be an option value",
                op.message
            ))),
        };
        let attributes =
            |e: &Entity| convert::attributes_to_store(e).map_err(|e| PipelineError::Invalid(e.0));
        match op.message.as_str() {
            "Create" => {
                let target = target_entity(op)?;
                let id = tx.create(&op.table, target.id.map(uuid), attributes(&target)?)?;
                op.primary_id = id;
                set_param(
                    &mut op.output,
                    "id",
                    ParameterValue::Value(Value::Guid(guid(id))),
                );
            }
            "Update" => {
                let target = target_entity(op)?;
                let id = target.id.map(uuid).unwrap_or(op.primary_id);
                let mut attrs = attributes(&target)?;
                if let Some(t) = tx.schema().table(&op.table) {
                    attrs.remove(&t.primary_id_attribute);
                }
                let previous = tx.update(&op.table, id, attrs)?;
                op.check_row_version(&previous)?;
            }
            "Delete" => {
                let (table, id) = target_ref(op)?;
                let row = tx.delete(&table, id)?;
                op.check_row_version(&row.attributes)?;
            }
            "Retrieve" => {
                let (table, id) = target_ref(op)?;
                let columns = match get_param(&op.input, "ColumnSet") {
                    Some(ParameterValue::Value(Value::StringArray(cs))) => Some(cs.clone()),
                    _ => None,
                };
                let row = tx
                    .retrieve(&table, id, columns.as_deref())?
                    .ok_or(StoreError::NotFound { table, id })?;
                set_param(
                    &mut op.output,
                    "BusinessEntity",
                    ParameterValue::Entity(convert::row_to_entity(&row)),
                );
            }
            "RetrieveMultiple" => {
                let query = op.query.clone().unwrap_or_else(|| Query::new(&op.table));
                let rows = tx.retrieve_multiple(&query)?;
                set_param(
                    &mut op.output,
                    "BusinessEntityCollection",
                    ParameterValue::EntityCollection(EntityCollection {
                        entity_name: op.table.clone(),
                        total_record_count: -1,
                        entities: rows.iter().map(convert::row_to_entity).collect(),
                        more_records: false,
                        paging_cookie: None,
                    }),
                );
            }
            "Associate" | "Disassociate" => {
                let (table, id) = target_ref(op)?;
                let relationship = match get_param(&op.input, "Relationship") {
                    Some(ParameterValue::Value(Value::String(r))) => r.clone(),
                    _ => {
                        return Err(PipelineError::Invalid(format!(
                            "{}: the Relationship input parameter must be a relationship name",
                            op.message
                        )));
                    }
                };
                let related: Vec<EntityRef> = match get_param(&op.input, "RelatedEntities") {
                    Some(ParameterValue::Value(Value::EntityReferenceCollection(rs))) => rs
                        .iter()
                        .map(|r| EntityRef::new(&r.logical_name, uuid(r.id)))
                        .collect(),
                    _ => {
                        return Err(PipelineError::Invalid(format!(
                            "{}: the RelatedEntities input parameter must be a list of references",
                            op.message
                        )));
                    }
                };
                let target = EntityRef::new(table, id);
                if op.message == "Associate" {
                    tx.associate(&relationship, &target, &related)?;
                } else {
                    tx.disassociate(&relationship, &target, &related)?;
                }
            }
            "SetState" => {
                let (table, id) = reference_param(op, "EntityMoniker")?;
                let (state, status) = (option_param(op, "State")?, option_param(op, "Status")?);
                tx.set_state(&table, id, state, status)?;
            }
            "Assign" => {
                let (table, id) = target_ref(op)?;
                let (owner_table, owner_id) = reference_param(op, "Assignee")?;
                tx.assign(&table, id, EntityRef::new(owner_table, owner_id))?;
            }
            other => {
                return Err(PipelineError::Invalid(format!(
                    "message {other} is not supported"
                )));
            }
        }
        if self.needs_post_image(op) {
            op.post_row = tx.retrieve(&op.table, op.primary_id, None)?;
        }
        Ok(())
    }

    /// Writes one pending system job per async PostOperation step: the outbox, in the operation's savepoint.
    /// `row_as_written`: no step ran since the main operation (the row is as it wrote it).
    fn queue_async(
        &self,
        op: &Op,
        tx: &mut dyn Tx,
        row_as_written: bool,
    ) -> Result<(), PipelineError> {
        if op.bypass_async {
            return Ok(());
        }
        let steps: Vec<&StepDecl> = self
            .candidate_steps(op, StoreStage::PostOperation)
            .filter(|s| s.def.mode == StepMode::Asynchronous)
            .collect();
        if steps.is_empty() {
            return Ok(());
        }
        let primary_name = self.primary_name_image(op, tx, row_as_written)?;
        for step in steps {
            let job_id = weft_store::new_id();
            let created_on = tx.now_ms();
            let mut context = self.context(op, step, Stage::PostOperation, Mode::Asynchronous);
            context.frame.operation_id = guid(job_id);
            context.frame.operation_created_on = created_on;
            context.frame.is_in_transaction = false;
            if let Some(image) = &primary_name {
                context.frame.post_entity_images.push(image.clone());
            }
            let data =
                weft_message::encode(&convert::to_remote(&context), weft_message::Format::Json);
            tx.insert_system_job(NewSystemJob {
                id: Some(job_id),
                name: step.def.name.clone(),
                operation_type: 1,
                message_name: op.message.clone(),
                primary_entity_type: Some(op.table.clone()),
                regarding: (!op.primary_id.is_nil())
                    .then(|| EntityRef::new(&op.table, op.primary_id)),
                owning_extension_id: Some(step.def.id),
                correlation_id: op.correlation_id,
                depth: op.depth,
                data,
                data_content_type: weft_message::Format::Json.content_type().into(),
                postpone_until: None,
                created_on: Some(created_on),
            })?;
        }
        Ok(())
    }

    /// The `AsynchronousStepPrimaryName` post-image every captured async payload carries (dataverse.md §4,
    /// derived): the primary-name attribute (when set) and the primary id. None when the row is gone. A
    /// Create's row that no step changed since (`row_as_written`) holds what its Target gave: the name is
    /// taken from there rather than read back (a round trip on PostgreSQL).
    fn primary_name_image(
        &self,
        op: &Op,
        tx: &dyn Tx,
        row_as_written: bool,
    ) -> Result<Option<Image>, PipelineError> {
        let Some(table) = tx.schema().table(&op.table) else {
            return Ok(None);
        };
        if op.primary_id.is_nil() || op.message == "Delete" {
            return Ok(None);
        }
        let name = &table.primary_name_attribute;
        let written = match get_param(&op.input, "Target") {
            Some(ParameterValue::Entity(target)) if row_as_written && op.message == "Create" => {
                Some(target.attributes.iter().find(|a| &a.name == name))
            }
            _ => None,
        };
        let value = match written {
            // The value as the store keeps it (a null is not kept).
            Some(Some(a)) => {
                Some(convert::to_store(name, &a.value).map_err(|e| PipelineError::Invalid(e.0))?)
                    .filter(|v| !matches!(v, weft_store::Value::Null))
            }
            Some(None) => None,
            None => {
                let columns = [name.clone()];
                let Some(mut row) = tx.retrieve(&op.table, op.primary_id, Some(&columns))? else {
                    return Ok(None);
                };
                row.attributes.remove(name)
            }
        };
        let mut attributes = Vec::with_capacity(2);
        if let Some(name) = &value
            && !matches!(name, weft_store::Value::String(s) if s.is_empty())
        {
            attributes.push(Attribute {
                name: table.primary_name_attribute.clone(),
                value: convert::from_store(name),
            });
        }
        attributes.push(Attribute {
            name: table.primary_id_attribute.clone(),
            value: Value::Guid(guid(op.primary_id)),
        });
        Ok(Some(Image {
            alias: "AsynchronousStepPrimaryName".into(),
            entity: Entity {
                logical_name: op.table.clone(),
                id: Some(guid(op.primary_id)),
                attributes,
                formatted_values: Vec::new(),
                row_version: None,
            },
        }))
    }

    fn response(&self, op: &Op) -> Result<OrganizationResponse, PipelineError> {
        let missing = |name: &str| {
            PipelineError::Invalid(format!(
                "{}: the output parameter {name} was removed by a plug-in",
                op.message
            ))
        };
        if let Some(api) = op.registry.custom_apis.get(&op.message) {
            // A stage-40 step may have changed the outputs: they are checked again.
            return custom_api::check_response(api, &op.output)
                .map(|outputs| OrganizationResponse::Custom { outputs })
                .map_err(|detail| PipelineError::Invalid(format!("{}: {detail}", op.message)));
        }
        if Bulk::named(&op.message).is_some() {
            return Ok(OrganizationResponse::Multiple {
                ids: op.bulk_ids.clone(),
            });
        }
        Ok(match op.message.as_str() {
            "Create" => match get_param(&op.output, "id") {
                Some(ParameterValue::Value(Value::Guid(g))) => {
                    OrganizationResponse::Create { id: uuid(*g) }
                }
                _ => return Err(missing("id")),
            },
            "Retrieve" => match get_param(&op.output, "BusinessEntity") {
                Some(ParameterValue::Entity(e)) => {
                    OrganizationResponse::Retrieve { entity: e.clone() }
                }
                _ => return Err(missing("BusinessEntity")),
            },
            "RetrieveMultiple" => match get_param(&op.output, "BusinessEntityCollection") {
                Some(ParameterValue::EntityCollection(c)) => {
                    OrganizationResponse::RetrieveMultiple {
                        collection: c.clone(),
                    }
                }
                _ => return Err(missing("BusinessEntityCollection")),
            },
            "Update" => OrganizationResponse::Update,
            "Associate" => OrganizationResponse::Associate,
            "Disassociate" => OrganizationResponse::Disassociate,
            "SetState" => OrganizationResponse::SetState,
            "Assign" => OrganizationResponse::Assign,
            _ => OrganizationResponse::Delete,
        })
    }
}

/// Dataverse's stage number and name, for spans.
fn stage_number(stage: Stage) -> (i64, &'static str) {
    match stage {
        Stage::PreValidation => (10, "PreValidation"),
        Stage::PreOperation => (20, "PreOperation"),
        Stage::MainOperation => (30, "MainOperation"),
        Stage::PostOperation => (40, "PostOperation"),
    }
}

/// Runs one stage of `op` in a span `stage N Name` (telemetry).
fn in_stage<T>(
    op: &mut Op,
    stage: Stage,
    body: impl FnOnce(&mut Op) -> Result<T, PipelineError>,
) -> Result<T, PipelineError> {
    let (number, name) = stage_number(stage);
    let correlation_id = op.correlation_id;
    crate::telemetry::in_span(
        || format!("stage {number} {name}"),
        || {
            vec![
                KeyValue::new("weft.stage", number),
                KeyValue::new("weft.stage_name", name),
                KeyValue::new("weft.correlation_id", correlation_id.to_string()),
            ]
        },
        |_| body(op),
    )
}

/// An operation span's attributes.
fn op_attributes(op: &Op) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("weft.message", op.message.clone()),
        KeyValue::new("weft.table", op.table.clone()),
        KeyValue::new("weft.correlation_id", op.correlation_id.to_string()),
        KeyValue::new("weft.depth", i64::from(op.depth)),
    ];
    if !op.primary_id.is_nil() {
        attributes.push(KeyValue::new("weft.row_id", op.primary_id.to_string()));
    }
    attributes
}

/// A step span's attributes (never its configuration: the secure one is a secret, the unsecure one may
/// hold anything).
pub(crate) fn step_attributes(step: &StepDecl, stage: Stage, mode: &'static str) -> Vec<KeyValue> {
    let (number, _) = stage_number(stage);
    vec![
        KeyValue::new("weft.step", step.def.name.clone()),
        KeyValue::new("weft.step_id", step.def.id.to_string()),
        KeyValue::new("weft.stage", number),
        KeyValue::new("weft.mode", mode),
    ]
}

/// What a plug-in execution's span adds once it ran: the plug-in, its type and how long it ran.
pub(crate) fn plugin_attributes(
    assembly: &str,
    plugin: &LoadedPlugin,
    elapsed: Duration,
) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("weft.plugin", assembly.to_owned()),
        KeyValue::new("weft.duration_ms", elapsed.as_secs_f64() * 1000.0),
    ];
    if let Some(t) = plugin.selected_type() {
        attributes.push(KeyValue::new("weft.plugin_type", t.to_owned()));
    }
    attributes
}
