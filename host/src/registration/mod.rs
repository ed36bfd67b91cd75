//! Registration: `weft.toml` → a validated, typed [`Registration`] (tables, plug-in assemblies, steps, service
//! endpoints, sandbox limits, pipeline settings), and its persistence into the store's system tables.
//!
//! The file and runtime changes (the Web API's) meet at start-up in [`Registration::apply`]: a runtime
//! change stands until the file changes the same entry, then the file's version wins.
//!
//! Owns the file format and every check that can be made before the first operation: unknown keys, missing
//! component files, sha256 mismatches, async steps outside PostOperation, images on messages or stages that
//! have none, unknown tables, messages, plug-ins and endpoints, endpoints that could not be posted to
//! (a missing address, key name or secret), Custom API bindings that disagree with their table and
//! functions without a response. Each error names the file, the entry and the
//! reason. It must not run plug-ins, open the store or talk HTTP; `[bus]` belongs to the bus and is only
//! allowed here, never read.
//!
//! # The file format
//! Every section and key the file accepts — type, default, meaning, Dataverse's name and numbers — is
//! documented in `docs/weft-toml.md`, with a local-bus example of each endpoint kind; `tests/all/docs.rs`
//! fails when a key of the structs below is missing there.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use uuid::Uuid;
use weft_store::system::{
    AuthType, ConnectionMode, Contract, EndpointSecretsUpdate, EventHandler, ImageType,
    InvocationSource, MessageCharset, MessageFormat, NamespaceFormat, PluginAssembly, PluginType,
    SecretUpdate, ServiceEndpointDef, Stage, StepDef, StepImage, StepMode, StepState, UserClaim,
};
use weft_store::system::{Declaration, EndpointSecrets, ServiceEndpoint, StoredWorkflow};
use weft_store::{RelationshipDef, Schema, TableDef, Tx};

use crate::sandbox::{Limits, OutboundPolicy, sha256_hex};

mod custom_api;
pub mod toml_error;
pub use custom_api::{Binding, CustomApiDecl, ParameterType, RequestParameter, ResponseProperty};

/// The messages the pipeline runs.
pub const MESSAGES: &[&str] = &[
    "Create",
    "Retrieve",
    "RetrieveMultiple",
    "Update",
    "Delete",
    "Associate",
    "Disassociate",
    "SetState",
    "Assign",
    "CreateMultiple",
    "UpdateMultiple",
    "UpsertMultiple",
];

/// Namespace of the ids derived from entry names, so an entry keeps its id across restarts.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x8f3c_52e1_7a4d_4c2b_9e61_0d5a_77b3_c901);

/// An entry `weft.toml` refuses: the file, the entry (`step "validate account"`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {entry}: {reason}")]
pub struct RegistrationError {
    /// The file.
    pub file: String,
    /// The entry, e.g. `step "validate account"`, or `document` for the file as a whole.
    pub entry: String,
    /// Why it is refused.
    pub reason: String,
}

/// Pipeline settings (`[pipeline]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Deepest allowed Depth; a request that would go deeper fails with 0x80044182. Default 8.
    pub max_depth: i32,
    /// Time limit of one operation with all its sync steps, ms. Default 120 000 (2 minutes).
    pub operation_limit_ms: u64,
    /// Child operations (organization-service calls, at any depth) one top-level operation, or one async
    /// plug-in run, may issue; one more fails the operation with 0x80044182 (fan-out protection).
    /// Default 5 000.
    pub max_child_operations: u32,
    /// Hours a plug-in trace-log row is kept (Dataverse keeps them 24 hours); `weft up` deletes older
    /// rows at start and then every 10 minutes. 0 keeps them forever. Default 24.
    pub trace_retention_hours: u64,
    /// Trace-log rows an operation that rolls back may leave (the last ones, nearest the failure); the
    /// rest are dropped with a warning. Default 1 000.
    pub max_rollback_trace_rows: usize,
    /// Which plug-in executions keep a recording (context and host-call answers) with their trace-log row,
    /// for `weft plugin replay`: `failures` (default), `all` or `off`.
    pub record_replays: RecordReplays,
}

/// Where the data lives (`[store]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// A PostgreSQL database (`postgres://user@host:port/database`) instead of the data directory's SQLite
    /// file; `--store URL` overrides it. Several hosts may share one database.
    pub url: Option<String>,
    /// PostgreSQL only: the most connections this host opens at once (each running operation, read and
    /// worker holds one while it runs; beyond it a caller waits for one). Hosts sharing a database need
    /// their sums, plus two each for LISTEN/NOTIFY, within the server's `max_connections`. Default 64.
    pub pool_size: Option<std::num::NonZeroUsize>,
}

/// `[pipeline] record_replays`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordReplays {
    /// Failed executions only: a production failure can be replayed; successes cost nothing to store.
    #[default]
    Failures,
    /// Every execution (each trace-log row grows by its context and answers).
    All,
    /// None.
    Off,
}

impl RecordReplays {
    /// Whether an execution that `succeeded` (or not) keeps its recording.
    pub fn keeps(self, succeeded: bool) -> bool {
        match self {
            RecordReplays::Failures => !succeeded,
            RecordReplays::All => true,
            RecordReplays::Off => false,
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            max_depth: 8,
            operation_limit_ms: 120_000,
            max_child_operations: 5_000,
            trace_retention_hours: 24,
            max_rollback_trace_rows: 1_000,
            record_replays: RecordReplays::Failures,
        }
    }
}

/// A plug-in assembly: one component file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDecl {
    /// The assembly row (id derived from the name).
    pub assembly: PluginAssembly,
    /// Its default plug-in type (same name): what a step naming no `type` runs —
    /// a 0.1.0 component, or the only type of a 0.2.0 one.
    pub plugin_type: PluginType,
    /// The plug-in types steps name with `type` (weft:plugin@0.2.0), each once;
    /// the host checks them against the component's `plugin-types` when it
    /// loads it.
    pub named_types: Vec<PluginType>,
    /// The component file, resolved against the file's folder.
    pub path: PathBuf,
    /// sha256 of the component file as read at load, lowercase hex: tells at start-up whether the file
    /// changed since a component was replaced at runtime.
    pub file_sha256: String,
    /// Where its outbound HTTP calls may go (`[plugin.outbound]`; weft:plugin@0.2.0 components).
    pub outbound: OutboundPolicy,
}

/// A step with its write-only secure configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct StepDecl {
    /// The registration row.
    pub def: StepDef,
    /// Secure configuration (never logged: `Debug` redacts it).
    pub secure_configuration: Option<String>,
}

impl fmt::Debug for StepDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepDecl")
            .field("def", &self.def)
            .field(
                "secure_configuration",
                &self.secure_configuration.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A service endpoint with its write-only secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDecl {
    /// The readable columns.
    pub def: ServiceEndpointDef,
    /// Secrets (`Debug` of [`SecretUpdate`] redacts them).
    pub secrets: EndpointSecretsUpdate,
}

/// A validated `weft.toml`.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The file it was read from.
    pub file: String,
    /// Declared tables and relationships.
    pub schema: Schema,
    /// Plug-in assemblies.
    pub plugins: Vec<PluginDecl>,
    /// Steps.
    pub steps: Vec<StepDecl>,
    /// Service endpoints.
    pub endpoints: Vec<EndpointDecl>,
    /// Custom APIs.
    pub custom_apis: Vec<CustomApiDecl>,
    /// Sandbox limits.
    pub limits: Limits,
    /// Pipeline settings.
    pub pipeline: PipelineSettings,
    /// Where the data lives (`[store]`).
    pub store: StoreSettings,
    /// The asynchronous service's settings (`[jobs]`, `[jobs.retry]`).
    pub jobs: weft_jobs::JobsSettings,
    /// OpenTelemetry traces (`[telemetry]`; the `OTEL_*` environment fills in what it leaves out).
    pub telemetry: crate::telemetry::TelemetrySettings,
    /// Background workflows (`[[workflow]]`), each with its id. Their steps are checked against the
    /// loaded components' activity types when the pipeline starts (`weft_workflows::validate`).
    pub workflows: Vec<weft_workflows::WorkflowDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    table: Vec<TableDef>,
    #[serde(default)]
    relationship: Vec<RelationshipDef>,
    #[serde(default)]
    plugin: Vec<RawPlugin>,
    #[serde(default)]
    step: Vec<RawStep>,
    #[serde(default)]
    service_endpoint: Vec<RawEndpoint>,
    #[serde(default)]
    custom_api: Vec<custom_api::RawCustomApi>,
    #[serde(default)]
    sandbox: Limits,
    #[serde(default)]
    pipeline: PipelineSettings,
    #[serde(default)]
    store: StoreSettings,
    #[serde(default)]
    jobs: weft_jobs::JobsSettings,
    #[serde(default)]
    telemetry: crate::telemetry::TelemetrySettings,
    #[serde(default)]
    workflow: Vec<weft_workflows::WorkflowDef>,
    /// Read by the bus (another issue); allowed, not read here.
    #[serde(default, rename = "bus")]
    _bus: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    component: PathBuf,
    sha256: Option<String>,
    /// `[plugin.outbound]`: where its outbound HTTP calls may go.
    #[serde(default)]
    outbound: OutboundPolicy,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawImageType {
    Pre,
    Post,
    Both,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    alias: String,
    #[serde(rename = "type")]
    image_type: RawImageType,
    #[serde(default)]
    attributes: Vec<String>,
}

/// One `[[step]]` as written, in `weft.toml` or as the JSON body that creates a step through the API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    id: Option<Uuid>,
    name: String,
    message: String,
    table: Option<String>,
    stage: Stage,
    #[serde(default = "default_mode")]
    mode: StepMode,
    #[serde(default = "default_rank")]
    rank: i32,
    #[serde(default)]
    filtering_attributes: Vec<String>,
    #[serde(default, rename = "image")]
    images: Vec<RawImage>,
    configuration: Option<String>,
    secure_configuration: Option<String>,
    impersonating_user_id: Option<Uuid>,
    #[serde(default = "default_invocation_source")]
    invocation_source: InvocationSource,
    #[serde(default)]
    async_auto_delete: bool,
    #[serde(default = "default_true")]
    enabled: bool,
    plugin: Option<String>,
    /// The plug-in type of `plugin` to run, for a component holding several.
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    service_endpoint: Option<String>,
}

fn default_mode() -> StepMode {
    StepMode::Synchronous
}
fn default_rank() -> i32 {
    1
}
fn default_invocation_source() -> InvocationSource {
    InvocationSource::Parent
}
fn default_true() -> bool {
    true
}
fn default_connection_mode() -> ConnectionMode {
    ConnectionMode::Normal
}
fn default_user_claim() -> UserClaim {
    UserClaim::None
}

/// One `[[service_endpoint]]` as written (the API maps Dataverse's column names onto these keys).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    id: Option<Uuid>,
    name: String,
    description: Option<String>,
    contract: Contract,
    message_format: MessageFormat,
    auth_type: AuthType,
    #[serde(default = "default_connection_mode")]
    connection_mode: ConnectionMode,
    namespace_format: Option<NamespaceFormat>,
    #[serde(default = "default_user_claim")]
    user_claim: UserClaim,
    message_charset: Option<MessageCharset>,
    namespace_address: Option<String>,
    path: Option<String>,
    url: Option<String>,
    sas_key_name: Option<String>,
    solution_namespace: Option<String>,
    sas_key: Option<String>,
    sas_token: Option<String>,
    auth_value: Option<String>,
}

/// The `account` table the example plug-ins (validator, enricher,
/// azure-aware) work on, as `weft.toml` declares it: shared by the
/// quickstart's seed scenario and `weft bench pipeline`.
pub const EXAMPLE_ACCOUNT_TABLE: &str = r#"[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"
  [[table.attribute]]
  logical_name = "accountnumber"
  type = "String"
  [[table.attribute]]
  logical_name = "emailaddress1"
  type = "String"
  [[table.attribute]]
  logical_name = "creditlimit"
  type = "Money"
"#;

/// The `kind` of a step's [`Declaration`].
const STEP: &str = "sdkmessageprocessingstep";
/// The `kind` of a service endpoint's [`Declaration`].
const ENDPOINT: &str = "serviceendpoint";
/// The `kind` of a plug-in component's [`Declaration`] (its fingerprint is the file's sha256).
const ASSEMBLY: &str = "pluginassembly";
/// The `kind` of a background workflow's [`Declaration`].
const WORKFLOW: &str = "workflow";

/// A workflow as the store keeps it: its columns, and the definition as JSON (weft-workflows' model, the
/// same one `[[workflow]]` and the Web API's `workflows` rows are read into). `def.id` must be set.
pub(crate) fn stored_workflow(def: &weft_workflows::WorkflowDef) -> StoredWorkflow {
    StoredWorkflow {
        id: def.id.unwrap_or_else(|| weft_workflows::id_for(&def.name)),
        name: def.name.clone(),
        primary_entity: def.table.clone(),
        activated: def.enabled,
        // Plain serde types (strings, numbers, maps): serializing cannot fail.
        definition: serde_json::to_string(def).unwrap_or_default(),
    }
}

/// A digest of a workflow as the file declares it.
fn workflow_fingerprint(w: &weft_workflows::WorkflowDef) -> String {
    sha256_hex(stored_workflow(w).definition.as_bytes())
}

/// A digest of a step as the file declares it. Secrets enter as their own digests. A change of weft's
/// row types changes it too; then the file's version is applied once more, the safe side.
fn step_fingerprint(s: &StepDecl) -> String {
    let def = serde_json::to_string(&s.def).unwrap_or_default();
    let secure = s
        .secure_configuration
        .as_deref()
        .map(str::as_bytes)
        .map(sha256_hex);
    sha256_hex(format!("{def}\n{secure:?}").as_bytes())
}

/// A digest of a service endpoint as the file declares it (secrets as their digests).
fn endpoint_fingerprint(e: &EndpointDecl) -> String {
    let def = serde_json::to_string(&e.def).unwrap_or_default();
    let secret = |u: &SecretUpdate| match u {
        SecretUpdate::Set(v) => sha256_hex(v.as_bytes()),
        SecretUpdate::Clear => "-".to_owned(),
        SecretUpdate::Keep => "=".to_owned(),
    };
    let s = &e.secrets;
    sha256_hex(
        format!(
            "{def}\n{}\n{}\n{}",
            secret(&s.sas_key),
            secret(&s.sas_token),
            secret(&s.auth_value)
        )
        .as_bytes(),
    )
}

/// The id weft gives an entry of `kind` named `name` when the file gives none (stable across restarts).
pub fn derived_id(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{kind}:{name}").as_bytes())
}

/// Whether `message` carries entity images, and which: (pre-image possible, post-image possible).
pub(crate) fn image_support(message: &str) -> Option<(bool, bool)> {
    match message {
        "Create" => Some((false, true)),
        "Update" | "Assign" | "SetState" => Some((true, true)),
        "Delete" => Some((true, false)),
        _ => None,
    }
}

/// What a step may refer to: the tables, plug-ins (name → plug-in type id), service endpoints (name → id) and
/// Custom APIs there are. Built from `weft.toml` at load, and from the running registration when a step is
/// created through the API, so both go through [`step_decl`].
pub(crate) struct Catalog<'a> {
    pub(crate) schema: &'a Schema,
    pub(crate) plugins: Vec<CatalogPlugin<'a>>,
    pub(crate) endpoints: Vec<(String, Uuid)>,
    pub(crate) custom_apis: Vec<&'a CustomApiDecl>,
}

/// A plug-in a step may name.
pub(crate) struct CatalogPlugin<'a> {
    /// The assembly's name.
    pub(crate) name: &'a str,
    /// Its default plug-in type's id.
    pub(crate) default_type: Uuid,
    /// The types its component holds, when it is loaded (a running host); a
    /// file is read before any component loads, so start-up checks them then.
    pub(crate) types: Option<Vec<String>>,
}

/// The id of plug-in type `type_name` of plug-in `plugin` (the default type,
/// named like the plug-in, keeps the id it always had).
pub fn plugin_type_id(plugin: &str, type_name: &str) -> Uuid {
    if type_name == plugin {
        return derived_id("plugintype", plugin);
    }
    derived_id("plugintype", &format!("{plugin}/{type_name}"))
}

/// Validates one step declaration against `catalog`; the error says why (the caller names the entry).
/// Names must be unique among steps: the caller checks that, as only it knows the others.
pub(crate) fn step_decl(s: RawStep, catalog: &Catalog<'_>) -> Result<StepDecl, String> {
    if !MESSAGES.contains(&s.message.as_str())
        && !catalog
            .custom_apis
            .iter()
            .any(|c| c.unique_name == s.message)
    {
        return Err(format!(
            "unknown message `{}` (weft runs {} and the declared custom APIs)",
            s.message,
            MESSAGES.join(", ")
        ));
    }
    if let Some(api) = catalog
        .custom_apis
        .iter()
        .find(|c| c.unique_name == s.message)
        && s.table.is_some()
        && s.table.as_deref() != api.binding.table()
    {
        return Err(format!(
            "custom API {} is {}: the step's table must be {}",
            api.unique_name,
            api.binding
                .table()
                .map_or("unbound".to_owned(), |t| format!("bound to `{t}`")),
            api.binding
                .table()
                .map_or("absent".to_owned(), |t| format!("`{t}` or absent")),
        ));
    }
    let table = match &s.table {
        Some(t) => Some(catalog.schema.table(t).ok_or_else(|| {
            format!(
                "table `{t}` is not declared{}",
                crate::suggest::table_hint(catalog.schema, t)
            )
        })?),
        None => None,
    };
    if s.stage == Stage::MainOperation {
        return Err(
            "stage 30 (MainOperation) is for Custom API plug-ins only; use 10, 20 or 40".into(),
        );
    }
    if s.mode == StepMode::Asynchronous && s.stage != Stage::PostOperation {
        return Err(format!(
            "an asynchronous step must be registered in stage 40 (PostOperation), not {}",
            s.stage.value()
        ));
    }
    if !s.filtering_attributes.is_empty() && s.message != "Update" {
        return Err("filtering_attributes apply to the Update message only".into());
    }
    for a in s
        .filtering_attributes
        .iter()
        .chain(s.images.iter().flat_map(|i| &i.attributes))
    {
        if let Some(t) = table
            && t.attribute(a).is_none()
        {
            return Err(format!("table `{}` has no attribute `{a}`", t.logical_name));
        }
    }
    let mut images = Vec::new();
    let mut aliases = HashSet::new();
    for i in &s.images {
        let Some((pre_ok, post_ok)) = image_support(&s.message) else {
            return Err(format!("message {} has no entity images", s.message));
        };
        let wants_pre = i.image_type != RawImageType::Post;
        let wants_post = i.image_type != RawImageType::Pre;
        if wants_pre && !pre_ok {
            return Err(format!(
                "image \"{}\": {} has no pre-image (there is no row before it)",
                i.alias, s.message
            ));
        }
        if wants_post && !post_ok {
            return Err(format!(
                "image \"{}\": {} has no post-image (there is no row after it)",
                i.alias, s.message
            ));
        }
        if wants_post && s.stage != Stage::PostOperation {
            return Err(format!(
                "image \"{}\": post-images exist only in stage 40 (PostOperation)",
                i.alias
            ));
        }
        if !aliases.insert(i.alias.clone()) {
            return Err(format!("image alias \"{}\" is used twice", i.alias));
        }
        images.push(StepImage {
            id: derived_id(
                "sdkmessageprocessingstepimage",
                &format!("{}:{}", s.name, i.alias),
            ),
            entity_alias: i.alias.clone(),
            image_type: match i.image_type {
                RawImageType::Pre => ImageType::PreImage,
                RawImageType::Post => ImageType::PostImage,
                RawImageType::Both => ImageType::Both,
            },
            attributes: i.attributes.clone(),
            message_property_name: if s.message == "SetState" {
                "EntityMoniker".into()
            } else {
                "Target".into()
            },
        });
    }
    if s.plugin_type.is_some() && s.plugin.is_none() {
        return Err("`type` names a plug-in type of `plugin`; name the plug-in too".into());
    }
    let event_handler = match (&s.plugin, &s.service_endpoint) {
        (Some(p), None) => {
            let plugin = catalog
                .plugins
                .iter()
                .find(|c| c.name == p)
                .ok_or_else(|| {
                    format!(
                        "plug-in `{p}` is not declared{}",
                        crate::suggest::did_you_mean(p, catalog.plugins.iter().map(|c| c.name))
                    )
                })?;
            EventHandler::PluginType(match &s.plugin_type {
                None => plugin.default_type,
                Some(t) => {
                    if let Some(types) = &plugin.types
                        && !types.contains(t)
                    {
                        return Err(format!(
                            "plug-in `{p}` holds no plug-in type `{t}` (it holds {}){}",
                            types.join(", "),
                            crate::suggest::did_you_mean(t, types.iter().map(String::as_str))
                        ));
                    }
                    plugin_type_id(p, t)
                }
            })
        }
        (None, Some(e)) => EventHandler::ServiceEndpoint(
            catalog
                .endpoints
                .iter()
                .find(|(name, _)| name == e)
                .ok_or_else(|| {
                    format!(
                        "service endpoint `{e}` is not declared{}",
                        crate::suggest::did_you_mean(
                            e,
                            catalog.endpoints.iter().map(|(n, _)| n.as_str())
                        )
                    )
                })?
                .1,
        ),
        _ => {
            return Err("name exactly one handler: `plugin` or `service_endpoint`".into());
        }
    };
    Ok(StepDecl {
        def: StepDef {
            id: s
                .id
                .unwrap_or_else(|| derived_id("sdkmessageprocessingstep", &s.name)),
            name: s.name,
            message: s.message,
            primary_entity: s.table,
            stage: s.stage,
            mode: s.mode,
            rank: s.rank,
            filtering_attributes: s.filtering_attributes,
            configuration: s.configuration,
            images,
            state: if s.enabled {
                StepState::Enabled
            } else {
                StepState::Disabled
            },
            impersonating_user_id: s.impersonating_user_id,
            invocation_source: s.invocation_source,
            async_auto_delete: s.async_auto_delete,
            event_handler,
        },
        secure_configuration: s.secure_configuration,
    })
}

/// Reads one service endpoint declaration (a secret left out is cleared); callers check it can be posted
/// to with [`check_endpoint`] once they know the secrets it keeps.
pub(crate) fn endpoint_decl(e: RawEndpoint) -> EndpointDecl {
    let secret = |s: Option<String>| s.map(SecretUpdate::Set).unwrap_or(SecretUpdate::Clear);
    EndpointDecl {
        def: ServiceEndpointDef {
            id: e
                .id
                .unwrap_or_else(|| derived_id("serviceendpoint", &e.name)),
            name: e.name,
            description: e.description,
            contract: e.contract,
            message_format: e.message_format,
            auth_type: e.auth_type,
            connection_mode: e.connection_mode,
            namespace_format: e.namespace_format,
            user_claim: e.user_claim,
            message_charset: e.message_charset,
            namespace_address: e.namespace_address,
            path: e.path,
            url: e.url,
            sas_key_name: e.sas_key_name,
            solution_namespace: e.solution_namespace,
        },
        secrets: EndpointSecretsUpdate {
            sas_key: secret(e.sas_key),
            sas_token: secret(e.sas_token),
            auth_value: secret(e.auth_value),
        },
    }
}

/// Checks an endpoint can be posted to with its secrets after `secrets` is applied over `stored` (the
/// secrets it has now; None for a new endpoint): what the delivery service would refuse at the first post is
/// refused when it is registered. The error names the column at fault, never a secret.
pub(crate) fn check_endpoint(
    def: &ServiceEndpointDef,
    secrets: &EndpointSecretsUpdate,
    stored: Option<&EndpointSecrets>,
) -> Result<(), String> {
    let merge = |update: &SecretUpdate, old: Option<&String>| match update {
        SecretUpdate::Keep => old.cloned(),
        SecretUpdate::Clear => None,
        SecretUpdate::Set(v) => Some(v.clone()),
    };
    let merged = EndpointSecrets {
        sas_key: merge(&secrets.sas_key, stored.and_then(|s| s.sas_key.as_ref())),
        sas_token: merge(
            &secrets.sas_token,
            stored.and_then(|s| s.sas_token.as_ref()),
        ),
        auth_value: merge(
            &secrets.auth_value,
            stored.and_then(|s| s.auth_value.as_ref()),
        ),
    };
    let row = ServiceEndpoint {
        def: def.clone(),
        is_sas_key_set: merged.sas_key.is_some(),
        is_sas_token_set: merged.sas_token.is_some(),
        is_auth_value_set: merged.auth_value.is_some(),
    };
    weft_endpoints::Endpoint::new(&row, &merged)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Registration {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Registration, RegistrationError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RegistrationError {
            file: file.clone(),
            entry: "document".into(),
            reason: format!("cannot read the file: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Registration::from_toml_str(&file, base, &text)
    }

    /// Validates a document; `file` names it in errors and component paths are resolved against `base`.
    pub fn from_toml_str(
        file: &str,
        base: &Path,
        text: &str,
    ) -> Result<Registration, RegistrationError> {
        let error = |entry: String, reason: String| RegistrationError {
            file: file.to_owned(),
            entry,
            reason,
        };
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| error("document".into(), toml_error::render(text, &e)))?;
        let schema = Schema::new(raw.table, raw.relationship)
            .map_err(|e| error("tables".into(), e.to_string()))?;
        raw.sandbox
            .validate()
            .map_err(|why| error("[sandbox]".into(), why))?;
        if raw.pipeline.max_depth < 1
            || raw.pipeline.operation_limit_ms == 0
            || raw.pipeline.max_child_operations == 0
            || raw.pipeline.max_rollback_trace_rows == 0
        {
            return Err(error(
                "[pipeline]".into(),
                "max_depth, operation_limit_ms, max_child_operations and max_rollback_trace_rows \
                 must be above 0"
                    .into(),
            ));
        }

        let mut plugins = Vec::new();
        let mut names = HashSet::new();
        for p in raw.plugin {
            let entry = format!("plugin \"{}\"", p.name);
            if !names.insert(p.name.clone()) {
                return Err(error(
                    entry,
                    "a plug-in with this name is already declared".into(),
                ));
            }
            p.outbound
                .validate()
                .map_err(|why| error(entry.clone(), format!("outbound: {why}")))?;
            let path = base.join(&p.component);
            let bytes = std::fs::read(&path).map_err(|e| {
                error(
                    entry.clone(),
                    format!(
                        "cannot read component {}: {e}{}",
                        path.display(),
                        crate::suggest::file_hint(&path)
                    ),
                )
            })?;
            let actual = sha256_hex(&bytes);
            if let Some(expected) = &p.sha256
                && !actual.eq_ignore_ascii_case(expected)
            {
                return Err(error(
                    entry,
                    format!(
                        "component {} has sha256 {actual}, the registration expects {expected}",
                        path.display()
                    ),
                ));
            }
            let assembly_id = derived_id("pluginassembly", &p.name);
            plugins.push(PluginDecl {
                assembly: PluginAssembly {
                    id: assembly_id,
                    name: p.name.clone(),
                    component_path: path.display().to_string(),
                    sha256: p.sha256.map(|s| s.to_ascii_lowercase()),
                },
                plugin_type: PluginType {
                    id: plugin_type_id(&p.name, &p.name),
                    assembly_id,
                    type_name: p.name,
                },
                named_types: Vec::new(),
                path,
                file_sha256: actual,
                outbound: p.outbound,
            });
        }

        let mut endpoints = Vec::new();
        let mut endpoint_names = HashSet::new();
        for e in raw.service_endpoint {
            let entry = format!("service_endpoint \"{}\"", e.name);
            if !endpoint_names.insert(e.name.clone()) {
                return Err(error(
                    entry,
                    "an endpoint with this name is already declared".into(),
                ));
            }
            let decl = endpoint_decl(e);
            check_endpoint(&decl.def, &decl.secrets, None).map_err(|why| error(entry, why))?;
            endpoints.push(decl);
        }

        let mut custom_apis: Vec<CustomApiDecl> = Vec::new();
        for c in raw.custom_api {
            let entry = format!("custom_api \"{}\"", c.unique_name);
            let fail = |reason: String| Err(error(entry.clone(), reason));
            if MESSAGES.contains(&c.unique_name.as_str())
                || custom_apis.iter().any(|d| d.unique_name == c.unique_name)
            {
                return fail("a message with this name already exists".into());
            }
            // The name is a Web API path segment (`/{unique_name}`, `…/Microsoft.Dynamics.CRM.{unique_name}`).
            if c.unique_name.is_empty()
                || !c
                    .unique_name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            {
                return fail("unique_name must be ASCII letters, digits and `_`".into());
            }
            let Some(plugin) = plugins.iter().find(|d| d.assembly.name == c.plugin) else {
                return fail(format!(
                    "plug-in `{}` is not declared{}",
                    c.plugin,
                    crate::suggest::did_you_mean(
                        &c.plugin,
                        plugins.iter().map(|d| d.assembly.name.as_str())
                    )
                ));
            };
            let binding = match Binding::from_raw(c.binding_type, c.bound_table) {
                Ok(b) => b,
                Err(why) => return fail(why),
            };
            if let Some(t) = binding.table()
                && schema.table(t).is_none()
            {
                return fail(format!(
                    "bound_table `{t}` is not declared{}",
                    crate::suggest::table_hint(&schema, t)
                ));
            }
            let mut seen = HashSet::new();
            for p in &c.request_parameter {
                if p.name == "Target" && matches!(binding, Binding::Entity(_)) {
                    return fail(
                        "request parameter `Target` is the bound row's reference, which an Entity-bound API \
                         gets without declaring it"
                            .into(),
                    );
                }
                if !seen.insert(p.name.clone()) {
                    return fail(format!("request parameter `{}` is declared twice", p.name));
                }
            }
            let mut seen = HashSet::new();
            for p in &c.response_property {
                if !seen.insert(p.name.clone()) {
                    return fail(format!("response property `{}` is declared twice", p.name));
                }
            }
            if c.is_function && c.response_property.is_empty() {
                return fail(
                    "a function (is_function = true) must declare a response property".into(),
                );
            }
            custom_apis.push(CustomApiDecl {
                id: derived_id("customapi", &c.unique_name),
                unique_name: c.unique_name,
                plugin_type: plugin.plugin_type.id,
                binding,
                is_function: c.is_function,
                request_parameters: c.request_parameter,
                response_properties: c.response_property,
            });
        }

        let mut steps = Vec::new();
        let mut step_names = HashSet::new();
        for s in raw.step {
            let entry = format!("step \"{}\"", s.name);
            let fail = |reason: String| Err(error(entry.clone(), reason));
            if !step_names.insert(s.name.clone()) {
                return fail("a step with this name is already declared".into());
            }
            let catalog = Catalog {
                schema: &schema,
                plugins: plugins
                    .iter()
                    .map(|p| CatalogPlugin {
                        name: p.assembly.name.as_str(),
                        default_type: p.plugin_type.id,
                        types: None,
                    })
                    .collect(),
                endpoints: endpoints
                    .iter()
                    .map(|e| (e.def.name.clone(), e.def.id))
                    .collect(),
                custom_apis: custom_apis.iter().collect(),
            };
            let named = s.plugin.clone().zip(s.plugin_type.clone());
            steps.push(step_decl(s, &catalog).map_err(|why| error(entry, why))?);
            if let Some((plugin, type_name)) = named
                && let Some(decl) = plugins.iter_mut().find(|p| p.assembly.name == plugin)
                && !decl.named_types.iter().any(|t| t.type_name == type_name)
            {
                decl.named_types.push(PluginType {
                    id: plugin_type_id(&plugin, &type_name),
                    assembly_id: decl.assembly.id,
                    type_name,
                });
            }
        }
        let mut workflows: Vec<weft_workflows::WorkflowDef> = Vec::new();
        for mut w in raw.workflow {
            let entry = format!("workflow \"{}\"", w.name);
            if workflows.iter().any(|d| d.name == w.name) {
                return Err(error(
                    entry,
                    "a workflow with this name is already declared".into(),
                ));
            }
            if schema.table(&w.table).is_none() {
                return Err(error(
                    entry,
                    format!(
                        "table `{}` is not declared{}",
                        w.table,
                        crate::suggest::table_hint(&schema, &w.table)
                    ),
                ));
            }
            let id = *w.id.get_or_insert_with(|| weft_workflows::id_for(&w.name));
            if workflows.iter().any(|d| d.id == Some(id)) {
                return Err(error(entry, format!("another workflow has the id {id}")));
            }
            workflows.push(w);
        }
        raw.telemetry
            .validate()
            .map_err(|why| error("[telemetry]".into(), why))?;
        Ok(Registration {
            telemetry: raw.telemetry,
            workflows,
            file: file.to_owned(),
            schema,
            plugins,
            steps,
            endpoints,
            custom_apis,
            limits: raw.sandbox,
            pipeline: raw.pipeline,
            store: raw.store,
            jobs: raw.jobs,
        })
    }

    /// Applies the file to the system tables (in the caller's transaction), keeping what was changed at
    /// runtime unless the file changed it too. For each step, service endpoint and plug-in component the file
    /// declares, the store remembers a fingerprint of the declaration it last applied:
    ///
    /// - the file's declaration is new or differs from that fingerprint → the file's version is written
    ///   (an edit of `weft.toml` wins over earlier runtime changes of the same entry);
    /// - it is the same → the stored entry stands as runtime changes left it (changed, disabled, deleted,
    ///   its component replaced), so API changes survive a restart;
    /// - an entry the file declared before but no longer does is deleted; entries created at runtime (no
    ///   fingerprint) are kept — unless the file now declares the same entry (same id: a name without an
    ///   id derives the same id in the file and the API), which it then takes over;
    /// - an endpoint deleted at runtime is written again when a step the file writes posts to it;
    ///   a file endpoint whose name another stored endpoint has stops the start with an error.
    ///
    /// Background workflows follow the steps' rule.
    ///
    /// The returned [`ApplyReport`] names every stored entry the file replaced or deleted.
    ///
    /// Assembly and plug-in type rows are always written from the file (their names and paths).
    pub fn apply(&self, tx: &mut dyn Tx) -> weft_store::Result<ApplyReport> {
        let mut report = ApplyReport::default();
        let applied: HashMap<(String, Uuid), String> = tx
            .declarations()?
            .into_iter()
            .map(|d| ((d.kind, d.id), d.fingerprint))
            .collect();
        let unchanged = |kind: &str, id: Uuid, fingerprint: &str| {
            applied
                .get(&(kind.to_owned(), id))
                .is_some_and(|f| f == fingerprint)
        };
        let declared_before = |kind: &str, id: Uuid| applied.contains_key(&(kind.to_owned(), id));
        let remember = |tx: &mut dyn Tx, kind: &str, id: Uuid, fingerprint: String| {
            tx.put_declaration(&Declaration {
                kind: kind.to_owned(),
                id,
                fingerprint,
            })
        };
        let plugins: HashSet<Uuid> = self.plugins.iter().map(|p| p.assembly.id).collect();
        for p in &self.plugins {
            tx.put_plugin_assembly(&p.assembly)?;
            tx.put_plugin_type(&p.plugin_type)?;
            for t in &p.named_types {
                tx.put_plugin_type(t)?;
            }
            if !unchanged(ASSEMBLY, p.assembly.id, &p.file_sha256) {
                if tx.plugin_assembly_content(p.assembly.id)?.is_some() {
                    report.replaced.push(format!(
                        "plug-in \"{}\": its component file changed, so it replaces the component \
                         given at runtime",
                        p.assembly.name
                    ));
                    tx.put_plugin_assembly_content(p.assembly.id, None)?;
                }
                remember(tx, ASSEMBLY, p.assembly.id, p.file_sha256.clone())?;
            }
        }
        // Steps the file dropped go first: one may use an endpoint the file dropped too.
        let steps: HashSet<Uuid> = self.steps.iter().map(|s| s.def.id).collect();
        let endpoints: HashSet<Uuid> = self.endpoints.iter().map(|e| e.def.id).collect();
        let stored_steps = tx.steps()?;
        let workflows: HashSet<Uuid> = self.workflows.iter().filter_map(|w| w.id).collect();
        let stored_workflows = tx.workflows()?;
        for (kind, id) in applied.keys() {
            match kind.as_str() {
                STEP if !steps.contains(id) => {
                    if let Some(old) = stored_steps.iter().find(|s| s.def.id == *id) {
                        tx.delete_step(*id)?;
                        report.removed.push(format!("step \"{}\"", old.def.name));
                    }
                    tx.delete_declaration(STEP, *id)?;
                }
                WORKFLOW if !workflows.contains(id) => {
                    if let Some(old) = stored_workflows.iter().find(|w| w.id == *id) {
                        tx.delete_workflow(*id)?;
                        report.removed.push(format!("workflow \"{}\"", old.name));
                    }
                    tx.delete_declaration(WORKFLOW, *id)?;
                }
                ASSEMBLY if !plugins.contains(id) => {
                    // A plug-in declared again later starts from its file, not from an old replacement.
                    tx.put_plugin_assembly_content(*id, None)?;
                    tx.delete_declaration(ASSEMBLY, *id)?;
                }
                _ => {}
            }
        }
        // An endpoint deleted at runtime stays deleted while the file leaves it alone, unless a step the
        // file writes now posts to it: then the file's endpoint is written again.
        let needed: HashSet<Uuid> = self
            .steps
            .iter()
            .filter(|s| !unchanged(STEP, s.def.id, &step_fingerprint(s)))
            .filter_map(|s| match s.def.event_handler {
                EventHandler::ServiceEndpoint(id) => Some(id),
                EventHandler::PluginType(_) => None,
            })
            .collect();
        for e in &self.endpoints {
            let fingerprint = endpoint_fingerprint(e);
            let stored = tx.service_endpoint(e.def.id)?;
            // Only an endpoint the file wrote before can have been deleted at runtime: on a fresh data
            // directory nothing is stored yet, and that is no restoration.
            let restore = stored.is_none()
                && declared_before(ENDPOINT, e.def.id)
                && needed.contains(&e.def.id);
            if unchanged(ENDPOINT, e.def.id, &fingerprint) && !restore {
                continue;
            }
            if let Some(other) = tx
                .service_endpoints()?
                .into_iter()
                .find(|o| o.def.name == e.def.name && o.def.id != e.def.id)
            {
                return Err(weft_store::StoreError::Invalid(format!(
                    "{}: service endpoint \"{}\" ({}) has the name of one registered at runtime ({}): \
                     give the file's entry that id, or rename one of them",
                    self.file, e.def.name, e.def.id, other.def.id
                )));
            }
            let entry = format!("service endpoint \"{}\"", e.def.name);
            if restore {
                report.replaced.push(format!(
                    "{entry}: deleted at runtime, written again for a step that posts to it"
                ));
            } else if stored.is_some() && !declared_before(ENDPOINT, e.def.id) {
                report.replaced.push(format!(
                    "{entry}: registered at runtime, now declared by the file"
                ));
            } else if stored.is_some() {
                report.replaced.push(format!(
                    "{entry}: changed in the file, replacing the stored one"
                ));
            }
            tx.put_service_endpoint(&e.def, &e.secrets)?;
            remember(tx, ENDPOINT, e.def.id, fingerprint)?;
        }
        for s in &self.steps {
            let fingerprint = step_fingerprint(s);
            if unchanged(STEP, s.def.id, &fingerprint) {
                continue;
            }
            let entry = format!("step \"{}\"", s.def.name);
            let stored = stored_steps.iter().any(|o| o.def.id == s.def.id);
            if stored && !declared_before(STEP, s.def.id) {
                report.replaced.push(format!(
                    "{entry}: registered at runtime, now declared by the file"
                ));
            } else if stored {
                report.replaced.push(format!(
                    "{entry}: changed in the file, replacing the stored one"
                ));
            }
            let secure = match &s.secure_configuration {
                Some(v) => SecretUpdate::Set(v.clone()),
                None => SecretUpdate::Clear,
            };
            tx.put_step(&s.def, secure)?;
            remember(tx, STEP, s.def.id, fingerprint)?;
        }
        // Workflows follow the steps' rule: a runtime change (deactivated, deleted) stands until the file
        // changes the workflow; a file workflow takes over a runtime one of the same id.
        for w in &self.workflows {
            let row = stored_workflow(w);
            let fingerprint = workflow_fingerprint(w);
            if unchanged(WORKFLOW, row.id, &fingerprint) {
                continue;
            }
            if let Some(other) = stored_workflows
                .iter()
                .find(|o| o.name == row.name && o.id != row.id)
            {
                return Err(weft_store::StoreError::Invalid(format!(
                    "{}: workflow \"{}\" ({}) has the name of one registered at runtime ({}): give the \
                     file's entry that id, or rename one of them",
                    self.file, row.name, row.id, other.id
                )));
            }
            let entry = format!("workflow \"{}\"", row.name);
            let stored = stored_workflows.iter().any(|o| o.id == row.id);
            if stored && !declared_before(WORKFLOW, row.id) {
                report.replaced.push(format!(
                    "{entry}: registered at runtime, now declared by the file"
                ));
            } else if stored {
                report.replaced.push(format!(
                    "{entry}: changed in the file, replacing the stored one"
                ));
            }
            tx.put_workflow(&row)?;
            remember(tx, WORKFLOW, row.id, fingerprint)?;
        }
        for (kind, id) in applied.keys() {
            if kind == ENDPOINT && !endpoints.contains(id) {
                let name = tx.service_endpoint(*id)?.map(|e| e.def.name);
                tx.delete_service_endpoint(*id).map_err(|e| {
                    weft_store::StoreError::Invalid(format!(
                        "{}: service endpoint {id} is no longer declared but cannot be deleted ({e}): \
                         declare it again, start, delete the steps registered at runtime that use it, \
                         then remove it",
                        self.file
                    ))
                })?;
                if let Some(name) = name {
                    report.removed.push(format!("service endpoint \"{name}\""));
                }
                tx.delete_declaration(ENDPOINT, *id)?;
            }
        }
        Ok(report)
    }
}

/// What [`Registration::apply`] changed at a start beyond writing new entries, for the operator to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Stored entries the file's version replaced, each with why (e.g. `step "enrich": changed in the
    /// file, replacing the stored one`).
    pub replaced: Vec<String>,
    /// Entries the file declared before and no longer does, deleted.
    pub removed: Vec<String>,
}
