//! Registration: `weft.toml` → a validated, typed [`Registration`] (tables, plug-in assemblies, steps, service
//! endpoints, sandbox limits, pipeline settings), and its persistence into the store's system tables.
//!
//! Owns the file format and every check that can be made before the first operation: unknown keys, missing
//! component files, sha256 mismatches, async steps outside PostOperation, images on messages or stages that
//! have none, unknown tables, messages, plug-ins and endpoints, Custom API bindings that disagree with their
//! table and functions without a response. Each error names the file, the entry and the
//! reason. It must not run plug-ins, open the store or talk HTTP; `[bus]` belongs to the bus and is only
//! allowed here, never read.
//!
//! # Shape
//! ```toml
//! [[table]]                      # weft-store's table declarations (see store/README.md)
//! [[relationship]]
//!
//! [[plugin]]
//! name = "validator"
//! component = "plugins/target/wasm32-wasip2/release/validator.wasm"   # relative to this file
//! sha256 = "…"                   # optional: refused when the file differs
//!
//! [[step]]
//! name = "validate account"
//! message = "Create"             # Create, Retrieve, RetrieveMultiple, Update, Delete, Associate,
//!                                # Disassociate, SetState, Assign, or a custom_api unique_name
//! table = "account"              # absent = every table
//! stage = 10                     # 10, 20 or 40 (30 is Custom API only)
//! mode = 0                       # 0 sync, 1 async (stage 40 only)
//! rank = 1
//! plugin = "validator"           # or service_endpoint = "<endpoint name>"
//! filtering_attributes = ["name"]            # Update only
//! configuration = "…"            # unsecure
//! secure_configuration = "…"     # write-only
//! impersonating_user_id = "…"    # UserId seen by the plug-in; InitiatingUserId stays the caller
//! invocation_source = 0          # -1 internal, 0 parent, 1 child
//! async_auto_delete = false
//! enabled = true
//!   [[step.image]]
//!   alias = "pre"
//!   type = "pre"                 # pre, post, both
//!   attributes = ["name"]        # empty = all
//!
//! [[custom_api]]                 # a message whose stage 30 is a plug-in; steps may use it at 10/20/40
//! unique_name = "weft_Greet"
//! plugin = "greet"
//! binding_type = 1               # 0 Global (unbound), 1 Entity (a row: the `Target` reference),
//!                                # 2 EntityCollection (the table); absent = 1 with bound_table, else 0
//! bound_table = "account"        # the table a binding_type 1 or 2 API is bound to
//! is_function = false            # true: a function (GET, at least one response property)
//!   [[custom_api.request_parameter]]
//!   name = "Name"
//!   type = "String"              # Boolean, DateTime, Decimal, Float, Integer, Money, Picklist, String,
//!                                # StringArray, Guid, EntityReference
//!   optional = false
//!   [[custom_api.response_property]]
//!   name = "Greeting"
//!   type = "String"
//!
//! [[service_endpoint]]           # dataverse.md §13 columns, numbers exact
//! [sandbox]                      # host/src/sandbox/limits.rs
//! [pipeline]                     # max_depth = 8, operation_limit_ms = 120000
//! [jobs]                         # the asynchronous service (jobs/README.md), with [jobs.retry]
//! [bus]                          # read by the bus, ignored here
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use uuid::Uuid;
use weft_store::system::{
    AuthType, ConnectionMode, Contract, EndpointSecretsUpdate, EventHandler, ImageType,
    InvocationSource, MessageCharset, MessageFormat, NamespaceFormat, PluginAssembly, PluginType,
    SecretUpdate, ServiceEndpointDef, Stage, StepDef, StepImage, StepMode, StepState, UserClaim,
};
use weft_store::{RelationshipDef, Schema, TableDef, Tx};

use crate::sandbox::{Limits, sha256_hex};

mod custom_api;
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
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            max_depth: 8,
            operation_limit_ms: 120_000,
        }
    }
}

/// A plug-in assembly: one component file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDecl {
    /// The assembly row (id derived from the name).
    pub assembly: PluginAssembly,
    /// Its single plug-in type (same name).
    pub plugin_type: PluginType,
    /// The component file, resolved against the file's folder.
    pub path: PathBuf,
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
    /// The asynchronous service's settings (`[jobs]`, `[jobs.retry]`).
    pub jobs: weft_jobs::JobsSettings,
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
    jobs: weft_jobs::JobsSettings,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
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
            .map_err(|e| error("document".into(), e.to_string().trim_end().to_owned()))?;
        let schema = Schema::new(raw.table, raw.relationship)
            .map_err(|e| error("tables".into(), e.to_string()))?;
        raw.sandbox
            .validate()
            .map_err(|why| error("[sandbox]".into(), why))?;
        if raw.pipeline.max_depth < 1 || raw.pipeline.operation_limit_ms == 0 {
            return Err(error(
                "[pipeline]".into(),
                "max_depth and operation_limit_ms must be above 0".into(),
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
            let path = base.join(&p.component);
            let bytes = std::fs::read(&path).map_err(|e| {
                error(
                    entry.clone(),
                    format!("cannot read component {}: {e}", path.display()),
                )
            })?;
            if let Some(expected) = &p.sha256 {
                let actual = sha256_hex(&bytes);
                if !actual.eq_ignore_ascii_case(expected) {
                    return Err(error(
                        entry,
                        format!(
                            "component {} has sha256 {actual}, the registration expects {expected}",
                            path.display()
                        ),
                    ));
                }
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
                    id: derived_id("plugintype", &p.name),
                    assembly_id,
                    type_name: p.name,
                },
                path,
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
            let secret =
                |s: Option<String>| s.map(SecretUpdate::Set).unwrap_or(SecretUpdate::Clear);
            endpoints.push(EndpointDecl {
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
            });
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
                return fail(format!("plug-in `{}` is not declared", c.plugin));
            };
            let binding = match Binding::from_raw(c.binding_type, c.bound_table) {
                Ok(b) => b,
                Err(why) => return fail(why),
            };
            if let Some(t) = binding.table()
                && schema.table(t).is_none()
            {
                return fail(format!("bound_table `{t}` is not declared"));
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
            if !MESSAGES.contains(&s.message.as_str())
                && !custom_apis.iter().any(|c| c.unique_name == s.message)
            {
                return fail(format!(
                    "unknown message `{}` (weft runs {} and the declared custom APIs)",
                    s.message,
                    MESSAGES.join(", ")
                ));
            }
            if let Some(api) = custom_apis.iter().find(|c| c.unique_name == s.message)
                && s.table.is_some()
                && s.table.as_deref() != api.binding.table()
            {
                return fail(format!(
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
            let table =
                match &s.table {
                    Some(t) => Some(schema.table(t).ok_or_else(|| {
                        error(entry.clone(), format!("table `{t}` is not declared"))
                    })?),
                    None => None,
                };
            if s.stage == Stage::MainOperation {
                return fail(
                    "stage 30 (MainOperation) is for Custom API plug-ins only; use 10, 20 or 40"
                        .into(),
                );
            }
            if s.mode == StepMode::Asynchronous && s.stage != Stage::PostOperation {
                return fail(format!(
                    "an asynchronous step must be registered in stage 40 (PostOperation), not {}",
                    s.stage.value()
                ));
            }
            if !s.filtering_attributes.is_empty() && s.message != "Update" {
                return fail("filtering_attributes apply to the Update message only".into());
            }
            for a in s
                .filtering_attributes
                .iter()
                .chain(s.images.iter().flat_map(|i| &i.attributes))
            {
                if let Some(t) = table
                    && t.attribute(a).is_none()
                {
                    return fail(format!("table `{}` has no attribute `{a}`", t.logical_name));
                }
            }
            let mut images = Vec::new();
            let mut aliases = HashSet::new();
            for i in &s.images {
                let Some((pre_ok, post_ok)) = image_support(&s.message) else {
                    return fail(format!("message {} has no entity images", s.message));
                };
                let wants_pre = i.image_type != RawImageType::Post;
                let wants_post = i.image_type != RawImageType::Pre;
                if wants_pre && !pre_ok {
                    return fail(format!(
                        "image \"{}\": {} has no pre-image (there is no row before it)",
                        i.alias, s.message
                    ));
                }
                if wants_post && !post_ok {
                    return fail(format!(
                        "image \"{}\": {} has no post-image (there is no row after it)",
                        i.alias, s.message
                    ));
                }
                if wants_post && s.stage != Stage::PostOperation {
                    return fail(format!(
                        "image \"{}\": post-images exist only in stage 40 (PostOperation)",
                        i.alias
                    ));
                }
                if !aliases.insert(i.alias.clone()) {
                    return fail(format!("image alias \"{}\" is used twice", i.alias));
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
            let event_handler = match (&s.plugin, &s.service_endpoint) {
                (Some(p), None) => EventHandler::PluginType(
                    plugins
                        .iter()
                        .find(|d| &d.assembly.name == p)
                        .ok_or_else(|| {
                            error(entry.clone(), format!("plug-in `{p}` is not declared"))
                        })?
                        .plugin_type
                        .id,
                ),
                (None, Some(e)) => EventHandler::ServiceEndpoint(
                    endpoints
                        .iter()
                        .find(|d| &d.def.name == e)
                        .ok_or_else(|| {
                            error(
                                entry.clone(),
                                format!("service endpoint `{e}` is not declared"),
                            )
                        })?
                        .def
                        .id,
                ),
                _ => {
                    return fail("name exactly one handler: `plugin` or `service_endpoint`".into());
                }
            };
            if matches!(event_handler, EventHandler::ServiceEndpoint(_))
                && s.mode == StepMode::Synchronous
            {
                // The pipeline queues endpoint posts as system jobs; a synchronous post from inside the
                // transaction needs the endpoint clients, which the pipeline does not call (yet).
                return fail(
                    "a service-endpoint step must be asynchronous (mode = 1) in this version"
                        .into(),
                );
            }
            steps.push(StepDecl {
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
            });
        }
        Ok(Registration {
            file: file.to_owned(),
            schema,
            plugins,
            steps,
            endpoints,
            custom_apis,
            limits: raw.sandbox,
            pipeline: raw.pipeline,
            jobs: raw.jobs,
        })
    }

    /// Writes the registration into the system tables (in the caller's transaction): assemblies, types,
    /// endpoints and steps are inserted or replaced; steps and endpoints no longer declared are deleted.
    pub fn persist(&self, tx: &mut dyn Tx) -> weft_store::Result<()> {
        for p in &self.plugins {
            tx.put_plugin_assembly(&p.assembly)?;
            tx.put_plugin_type(&p.plugin_type)?;
        }
        for e in &self.endpoints {
            tx.put_service_endpoint(&e.def, &e.secrets)?;
        }
        let declared: HashSet<Uuid> = self.steps.iter().map(|s| s.def.id).collect();
        for old in tx.steps()? {
            if !declared.contains(&old.def.id) {
                tx.delete_step(old.def.id)?;
            }
        }
        for s in &self.steps {
            let secure = match &s.secure_configuration {
                Some(v) => SecretUpdate::Set(v.clone()),
                None => SecretUpdate::Clear,
            };
            tx.put_step(&s.def, secure)?;
        }
        let endpoints: HashSet<Uuid> = self.endpoints.iter().map(|e| e.def.id).collect();
        for old in tx.service_endpoints()? {
            if !endpoints.contains(&old.def.id) {
                tx.delete_service_endpoint(old.def.id)?;
            }
        }
        Ok(())
    }
}
