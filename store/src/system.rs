//! System tables: plug-in registration, service endpoints, the plug-in trace log and system jobs (asyncoperation).
//!
//! Owns the backend-neutral row types and Dataverse's option-set values for these tables (numbers exact, from
//! the fact sheet: steps §3, images §4, service endpoints §13, system jobs §18). It must not touch SQL; the
//! backends store these types. Secrets (secure step configuration, endpoint SAS keys/tokens/auth values) are
//! write-only: read types carry `is_…_set` flags, and the secret values only come back through the dedicated
//! `…_for_sandbox` / `…_for_delivery` reads, in types whose `Debug` redacts them.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::EntityRef;

macro_rules! option_set {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "i32", into = "i32")]
        pub enum $name {
            $($(#[$vm])* $var = $val),+
        }

        impl $name {
            /// The option's number, as Dataverse stores it.
            pub fn value(self) -> i32 {
                self as i32
            }
        }

        impl From<$name> for i32 {
            fn from(v: $name) -> i32 {
                v as i32
            }
        }

        impl TryFrom<i32> for $name {
            type Error = String;

            fn try_from(v: i32) -> Result<Self, String> {
                match v {
                    $($val => Ok($name::$var),)+
                    other => Err(format!(
                        "{other} is not a valid {} value (expected one of {:?})",
                        stringify!($name),
                        [$($val),+]
                    )),
                }
            }
        }
    };
}

option_set! {
    /// `sdkmessageprocessingstep.stage`.
    Stage { /// 10
        PreValidation = 10, /// 20
        PreOperation = 20, /// 30 (Custom API / data providers only)
        MainOperation = 30, /// 40
        PostOperation = 40 }
}

option_set! {
    /// `sdkmessageprocessingstep.mode`.
    StepMode { /// 0
        Synchronous = 0, /// 1
        Asynchronous = 1 }
}

option_set! {
    /// `sdkmessageprocessingstepimage.imagetype`.
    ImageType { /// 0
        PreImage = 0, /// 1
        PostImage = 1, /// 2
        Both = 2 }
}

option_set! {
    /// `sdkmessageprocessingstep.invocationsource`.
    InvocationSource { /// -1
        Internal = -1, /// 0 (default)
        Parent = 0, /// 1
        Child = 1 }
}

option_set! {
    /// `sdkmessageprocessingstep.statecode` (status follows: Enabled ↔ 1, Disabled ↔ 2).
    StepState { /// state 0, status 1
        Enabled = 0, /// state 1, status 2
        Disabled = 1 }
}

impl StepState {
    /// The `statuscode` paired with this state.
    pub fn status_code(self) -> i32 {
        match self {
            StepState::Enabled => 1,
            StepState::Disabled => 2,
        }
    }
}

option_set! {
    /// `serviceendpoint.contract`.
    Contract { /// 1
        OneWay = 1, /// 2
        Queue = 2, /// 3
        Rest = 3, /// 4
        TwoWay = 4, /// 5
        Topic = 5, /// 6
        QueuePersistent = 6, /// 7
        EventHub = 7, /// 8
        Webhook = 8, /// 9
        EventGrid = 9, /// 10
        ManagedDataLake = 10 }
}

option_set! {
    /// `serviceendpoint.messageformat`.
    MessageFormat { /// 1
        BinaryXml = 1, /// 2
        Json = 2, /// 3
        TextXml = 3 }
}

option_set! {
    /// `serviceendpoint.authtype`.
    AuthType { /// 1
        Acs = 1, /// 2
        SasKey = 2, /// 3
        SasToken = 3, /// 4
        WebhookKey = 4, /// 5
        HttpHeader = 5, /// 6
        HttpQueryString = 6, /// 7
        ConnectionString = 7, /// 8
        AccessKey = 8 }
}

option_set! {
    /// `serviceendpoint.connectionmode`.
    ConnectionMode { /// 1
        Normal = 1, /// 2
        Federated = 2 }
}

option_set! {
    /// `serviceendpoint.namespaceformat`.
    NamespaceFormat { /// 1
        NamespaceName = 1, /// 2
        NamespaceAddress = 2 }
}

option_set! {
    /// `serviceendpoint.userclaim`.
    UserClaim { /// 1
        None = 1, /// 2
        UserId = 2, /// 3
        UserInfo = 3 }
}

option_set! {
    /// `serviceendpoint.messagecharset`.
    MessageCharset { /// 0
        Default = 0, /// 1
        Utf8 = 1 }
}

option_set! {
    /// `asyncoperation.statecode`.
    JobState { /// 0
        Ready = 0, /// 1
        Suspended = 1, /// 2
        Locked = 2, /// 3
        Completed = 3 }
}

option_set! {
    /// `asyncoperation.statuscode`; each status belongs to exactly one [`JobState`].
    JobStatus { /// 0, state Ready
        WaitingForResources = 0, /// 10, state Suspended
        Waiting = 10, /// 20, state Locked
        InProgress = 20, /// 21, state Locked
        Pausing = 21, /// 22, state Locked
        Canceling = 22, /// 30, state Completed
        Succeeded = 30, /// 31, state Completed
        Failed = 31, /// 32, state Completed
        Canceled = 32 }
}

impl JobStatus {
    /// The state this status belongs to.
    pub fn state(self) -> JobState {
        match self {
            JobStatus::WaitingForResources => JobState::Ready,
            JobStatus::Waiting => JobState::Suspended,
            JobStatus::InProgress | JobStatus::Pausing | JobStatus::Canceling => JobState::Locked,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled => JobState::Completed,
        }
    }
}

option_set! {
    /// Outcome of one step execution in the trace log.
    TraceOutcome { /// The step returned normally.
        Succeeded = 0, /// The step failed (error set).
        Failed = 1 }
}

/// How a write changes a write-only secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum SecretUpdate {
    /// Leave the stored value as it is.
    #[default]
    Keep,
    /// Remove the stored value.
    Clear,
    /// Store this value.
    Set(String),
}

impl fmt::Debug for SecretUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretUpdate::Keep => f.write_str("Keep"),
            SecretUpdate::Clear => f.write_str("Clear"),
            SecretUpdate::Set(_) => f.write_str("Set(<redacted>)"),
        }
    }
}

/// A plug-in assembly: one WebAssembly component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginAssembly {
    /// `pluginassemblyid`.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Path of the component file.
    pub component_path: String,
    /// Expected SHA-256 of the component, lowercase hex.
    pub sha256: Option<String>,
}

/// A plug-in assembly's component as replaced at runtime (Dataverse keeps an assembly's `content` in the
/// database too): the bytes the host loads instead of the file `weft.toml` names. `Debug` shows its size only.
#[derive(Clone, PartialEq, Eq)]
pub struct AssemblyContent {
    /// sha256 of `content`, lowercase hex.
    pub sha256: String,
    /// The component's bytes.
    pub content: Vec<u8>,
}

impl fmt::Debug for AssemblyContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssemblyContent")
            .field("sha256", &self.sha256)
            .field("bytes", &self.content.len())
            .finish()
    }
}

/// What the configuration file last said about one registration entry, as applied at a start: the
/// fingerprint tells whether the file changed the entry since (then the file's version replaces runtime
/// changes) or not (then runtime changes stand). Entries without one were made at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// The entry's table: `sdkmessageprocessingstep`, `serviceendpoint`, `pluginassembly` or `workflow`.
    pub kind: String,
    /// The entry's id.
    pub id: Uuid,
    /// A digest of the declaration as the file gave it.
    pub fingerprint: String,
}

/// A background workflow (`workflow`, category 0 Workflow, type 1 Definition): the columns the store
/// answers by — id, name, table, state — and weft's definition as JSON, which the store keeps but never
/// reads (the host's `weft-workflows` model owns its shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWorkflow {
    /// `workflowid`.
    pub id: Uuid,
    /// `name`.
    pub name: String,
    /// `primaryentity`.
    pub primary_entity: String,
    /// `statecode` 1 Activated (statuscode 2) when true, 0 Draft (statuscode 1) when false.
    pub activated: bool,
    /// The definition (trigger, run-as, steps) as JSON.
    pub definition: String,
}

/// A plug-in type: an entry point inside an assembly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginType {
    /// `plugintypeid`.
    pub id: Uuid,
    /// The assembly holding it.
    pub assembly_id: Uuid,
    /// `typename`.
    pub type_name: String,
}

/// What a step runs: a plug-in type, or a service endpoint (the built-in Azure-aware plug-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventHandler {
    /// `eventhandler` → plugintype.
    PluginType(Uuid),
    /// `eventhandler` → serviceendpoint.
    ServiceEndpoint(Uuid),
}

/// An entity image registered on a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepImage {
    /// `sdkmessageprocessingstepimageid`.
    pub id: Uuid,
    /// `entityalias`: the key in Pre/PostEntityImages.
    pub entity_alias: String,
    /// `imagetype`.
    pub image_type: ImageType,
    /// `attributes`; empty = all attributes.
    pub attributes: Vec<String>,
    /// `messagepropertyname`, e.g. `Target`.
    pub message_property_name: String,
}

/// A step registration (sdkmessageprocessingstep) as written; the secure configuration travels separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDef {
    /// `sdkmessageprocessingstepid`.
    pub id: Uuid,
    /// `name`.
    pub name: String,
    /// Message name, e.g. `Create`.
    pub message: String,
    /// Table logical name; None = all tables.
    pub primary_entity: Option<String>,
    /// `stage`.
    pub stage: Stage,
    /// `mode`.
    pub mode: StepMode,
    /// `rank`: lowest runs first.
    pub rank: i32,
    /// `filteringattributes`; empty = any change.
    pub filtering_attributes: Vec<String>,
    /// `configuration` (unsecure).
    pub configuration: Option<String>,
    /// `sdkmessageprocessingstepimage` rows.
    pub images: Vec<StepImage>,
    /// `statecode`/`statuscode`.
    pub state: StepState,
    /// `impersonatinguserid`; None = calling user.
    pub impersonating_user_id: Option<Uuid>,
    /// `invocationsource`.
    pub invocation_source: InvocationSource,
    /// `asyncautodelete`.
    pub async_auto_delete: bool,
    /// `eventhandler`.
    pub event_handler: EventHandler,
}

impl StepDef {
    /// What registering this step requires on either backend: an asynchronous step is in stage 40, and its
    /// event handler is registered (`handler_exists(table, id)` asks the backend: `plugintype` or
    /// `serviceendpoint`). Returns the handler's id and table, as the step row stores them.
    pub(crate) fn check(
        &self,
        handler_exists: impl FnOnce(&'static str, Uuid) -> crate::Result<bool>,
    ) -> crate::Result<(Uuid, &'static str)> {
        if self.mode == StepMode::Asynchronous && self.stage != Stage::PostOperation {
            return Err(crate::StoreError::Invalid(format!(
                "step `{}`: asynchronous steps must be registered in stage 40 (PostOperation), not {}",
                self.name,
                self.stage.value()
            )));
        }
        let (handler, table) = match self.event_handler {
            EventHandler::PluginType(id) => (id, "plugintype"),
            EventHandler::ServiceEndpoint(id) => (id, "serviceendpoint"),
        };
        if !handler_exists(table, handler)? {
            return Err(crate::StoreError::Invalid(format!(
                "step `{}`: event handler {table} {handler} is not registered",
                self.name
            )));
        }
        Ok((handler, table))
    }
}

/// A step as read back: the registration plus whether a secure configuration is stored (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The registration.
    #[serde(flatten)]
    pub def: StepDef,
    /// Whether a secure configuration is stored.
    pub is_secure_configuration_set: bool,
}

/// A service endpoint's readable columns (dataverse.md §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpointDef {
    /// `serviceendpointid`.
    pub id: Uuid,
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `contract`.
    pub contract: Contract,
    /// `messageformat`.
    pub message_format: MessageFormat,
    /// `authtype`.
    pub auth_type: AuthType,
    /// `connectionmode`.
    pub connection_mode: ConnectionMode,
    /// `namespaceformat`.
    pub namespace_format: Option<NamespaceFormat>,
    /// `userclaim`.
    pub user_claim: UserClaim,
    /// `messagecharset`.
    pub message_charset: Option<MessageCharset>,
    /// `namespaceaddress`.
    pub namespace_address: Option<String>,
    /// `path`.
    pub path: Option<String>,
    /// `url`.
    pub url: Option<String>,
    /// `saskeyname`.
    pub sas_key_name: Option<String>,
    /// `solutionnamespace`.
    pub solution_namespace: Option<String>,
}

/// A service endpoint as read back: columns plus the `is…set` flags of its write-only secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEndpoint {
    /// The readable columns.
    #[serde(flatten)]
    pub def: ServiceEndpointDef,
    /// `issaskeyset`.
    pub is_sas_key_set: bool,
    /// `issastokenset`.
    pub is_sas_token_set: bool,
    /// `isauthvalueset`.
    pub is_auth_value_set: bool,
}

/// Changes to an endpoint's write-only secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSecretsUpdate {
    /// `saskey`.
    pub sas_key: SecretUpdate,
    /// `sastoken`.
    pub sas_token: SecretUpdate,
    /// `authvalue`.
    pub auth_value: SecretUpdate,
}

/// An endpoint's secrets, for the delivery service only; `Debug` redacts them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EndpointSecrets {
    /// `saskey`.
    pub sas_key: Option<String>,
    /// `sastoken`.
    pub sas_token: Option<String>,
    /// `authvalue`.
    pub auth_value: Option<String>,
}

impl fmt::Debug for EndpointSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |s: &Option<String>| if s.is_some() { "<redacted>" } else { "<unset>" };
        f.debug_struct("EndpointSecrets")
            .field("sas_key", &flag(&self.sas_key))
            .field("sas_token", &flag(&self.sas_token))
            .field("auth_value", &flag(&self.auth_value))
            .finish()
    }
}

/// One step execution to record in the plug-in trace log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTraceLog {
    /// `pluginstepid`.
    pub step_id: Option<Uuid>,
    /// `typename`: the plug-in that ran.
    pub plugin: String,
    /// `messagename`.
    pub message_name: String,
    /// `primaryentity`.
    pub primary_entity: Option<String>,
    /// `depth`.
    pub depth: i32,
    /// `correlationid`.
    pub correlation_id: Uuid,
    /// `mode`.
    pub mode: StepMode,
    /// `performanceexecutionduration`, ms.
    pub duration_ms: i64,
    /// Success or failure.
    pub outcome: TraceOutcome,
    /// `messageblock`: what the plug-in traced.
    pub trace: String,
    /// Captured standard error.
    pub stderr: String,
    /// `exceptiondetails`.
    pub error: Option<String>,
    /// The execution's recording (context and host-call answers, for `weft plugin replay`), when one was
    /// kept. Stored beside the row and read only by [`crate::Read::trace_recording`]: listings never load it.
    #[serde(skip)]
    pub recording: Option<String>,
}

/// A plug-in trace log row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceLog {
    /// `plugintracelogid`.
    pub id: Uuid,
    /// The recorded execution.
    #[serde(flatten)]
    pub entry: NewTraceLog,
    /// `createdon`, ms since the Unix epoch.
    pub created_on: i64,
}

/// Filters for [`crate::Read::trace_logs`]; newest first.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    /// Only this step.
    pub step_id: Option<Uuid>,
    /// Only this correlation id.
    pub correlation_id: Option<Uuid>,
    /// At most this many rows.
    pub limit: Option<u32>,
    /// Rows skipped first, newest first (a page's start).
    pub skip: u64,
}

/// A system job to write (the pipeline's outbox row for an async step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSystemJob {
    /// `asyncoperationid`; generated when None.
    pub id: Option<Uuid>,
    /// `name`.
    pub name: String,
    /// `operationtype`: 1 = System Event.
    pub operation_type: i32,
    /// `messagename`.
    pub message_name: String,
    /// `primaryentitytype`.
    pub primary_entity_type: Option<String>,
    /// `regardingobjectid`.
    pub regarding: Option<EntityRef>,
    /// `owningextensionid`: the step.
    pub owning_extension_id: Option<Uuid>,
    /// `correlationid`.
    pub correlation_id: Uuid,
    /// `depth`.
    pub depth: i32,
    /// `data`: the serialized execution context.
    pub data: Vec<u8>,
    /// Content type of `data`.
    pub data_content_type: String,
    /// `postponeuntil`, ms; the job is not claimed before.
    pub postpone_until: Option<i64>,
    /// `createdon`, ms; the store clock when None. Set it when `data` carries the same instant
    /// (the context's OperationCreatedOn must equal the job's creation time).
    pub created_on: Option<i64>,
}

/// A system job row (asyncoperation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemJob {
    /// `asyncoperationid`.
    pub id: Uuid,
    /// `name`.
    pub name: String,
    /// `operationtype`.
    pub operation_type: i32,
    /// `messagename`.
    pub message_name: String,
    /// `primaryentitytype`.
    pub primary_entity_type: Option<String>,
    /// `regardingobjectid`.
    pub regarding: Option<EntityRef>,
    /// `owningextensionid`.
    pub owning_extension_id: Option<Uuid>,
    /// `correlationid`.
    pub correlation_id: Uuid,
    /// `depth`.
    pub depth: i32,
    /// `data`.
    pub data: Vec<u8>,
    /// Content type of `data`.
    pub data_content_type: String,
    /// `createdon`, ms.
    pub created_on: i64,
    /// `startedon`, ms: first claim.
    pub started_on: Option<i64>,
    /// `completedon`, ms.
    pub completed_on: Option<i64>,
    /// `postponeuntil`, ms: not claimed before (also the next attempt of a Waiting job).
    pub postpone_until: Option<i64>,
    /// `retrycount`.
    pub retry_count: i32,
    /// `errorcode`.
    pub error_code: Option<i32>,
    /// `message`.
    pub message: Option<String>,
    /// `friendlymessage`.
    pub friendly_message: Option<String>,
    /// `sequence`: insertion order.
    pub sequence: i64,
    /// `statuscode` (the `statecode` is [`JobStatus::state`]).
    pub status: JobStatus,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends, ms; after it another worker may take the job over.
    pub lease_expires_on: Option<i64>,
}

/// What the asynchronous service re-reads of a job when it records an attempt
/// ([`crate::Read::system_job_lease`]): its state, lease, postponement and step, without the context and
/// texts a [`SystemJob`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    /// `statuscode` (the `statecode` is [`JobStatus::state`]).
    pub status: JobStatus,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// `postponeuntil`, ms.
    pub postpone_until: Option<i64>,
    /// `owningextensionid`: the job's step.
    pub owning_extension_id: Option<Uuid>,
}

impl From<SystemJob> for JobLease {
    fn from(j: SystemJob) -> Self {
        JobLease {
            status: j.status,
            lease_owner: j.lease_owner,
            postpone_until: j.postpone_until,
            owning_extension_id: j.owning_extension_id,
        }
    }
}

/// Filters for [`crate::Read::system_jobs`]; oldest first (`createdon`, `sequence`) unless `newest_first`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this step.
    pub owning_extension_id: Option<Uuid>,
    /// Only this correlation id.
    pub correlation_id: Option<Uuid>,
    /// Only jobs regarding this row id.
    pub regarding_id: Option<Uuid>,
    /// At most this many rows.
    pub limit: Option<u32>,
    /// Rows skipped first, in the listing's order (a page's start).
    pub skip: u64,
    /// Newest first (`createdon DESC, sequence DESC`): what an operator watching jobs wants to see first.
    pub newest_first: bool,
}

/// The error recorded on a failed or waiting job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobError {
    /// `errorcode`.
    pub code: Option<i32>,
    /// `message`.
    pub message: String,
    /// `friendlymessage`.
    pub friendly_message: Option<String>,
}

/// A change of a system job's state outside the worker's lease calls: user requests (cancel, pause, resume,
/// postpone, retry now) and outcomes the asynchronous service decides itself. Only `statecode`/`statuscode`,
/// `postponeuntil` and the error columns change (dataverse.md §18); leaving Locked releases the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    /// The new `statuscode` (the `statecode` follows).
    pub status: JobStatus,
    /// The new `postponeuntil`, ms (None clears it).
    pub postpone_until: Option<i64>,
    /// Sets `completedon`, ms, when Some; leaves it otherwise.
    pub completed_on: Option<i64>,
    /// Sets `errorcode`, `message`, `friendlymessage` when Some; leaves them otherwise.
    pub error: Option<JobError>,
    /// Adds one to `retrycount`.
    pub count_retry: bool,
}

/// One attempt at running a system job, to record (the job's attempt history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewJobAttempt {
    /// The job (`asyncoperationid`).
    pub job_id: Uuid,
    /// The worker that ran it.
    pub worker: String,
    /// When the attempt started, ms.
    pub started_on: i64,
    /// The service endpoint posted to, if any.
    pub endpoint_id: Option<Uuid>,
    /// The endpoint's HTTP status code, if one answered.
    pub http_status: Option<i32>,
    /// How long the attempt took, ms.
    pub latency_ms: i64,
    /// What came of it, in the service's words (e.g. `succeeded`, `transient`, `permanent`).
    pub outcome: String,
    /// The error code, if it failed.
    pub error_code: Option<i32>,
    /// The error message, if it failed.
    pub message: Option<String>,
}

/// A recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobAttempt {
    /// 1 for the job's first recorded attempt, then 2, 3…
    pub attempt: i32,
    /// What was recorded.
    #[serde(flatten)]
    pub entry: NewJobAttempt,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Option values keep Dataverse's exact numbers and unknown numbers are refused with the allowed list.
    #[test]
    fn option_values_are_exact() {
        assert_eq!(Contract::Webhook.value(), 8);
        assert_eq!(Contract::try_from(6), Ok(Contract::QueuePersistent));
        assert_eq!(AuthType::ConnectionString.value(), 7);
        assert_eq!(UserClaim::UserInfo.value(), 3);
        assert_eq!(InvocationSource::Internal.value(), -1);
        assert_eq!(JobStatus::Canceling.value(), 22);
        assert_eq!(JobStatus::Canceling.state(), JobState::Locked);
        assert_eq!(JobStatus::Waiting.state().value(), 1);
        assert_eq!(StepState::Disabled.status_code(), 2);
        assert_eq!(
            MessageFormat::try_from(4).unwrap_err(),
            "4 is not a valid MessageFormat value (expected one of [1, 2, 3])"
        );
    }

    /// Secrets never appear in Debug output.
    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = EndpointSecrets {
            sas_key: Some("k3y".into()),
            sas_token: None,
            auth_value: Some("v4l".into()),
        };
        let d = format!("{s:?} {:?}", SecretUpdate::Set("k3y".into()));
        assert!(!d.contains("k3y") && !d.contains("v4l"), "{d}");
        assert!(d.contains("<unset>"));
    }
}
