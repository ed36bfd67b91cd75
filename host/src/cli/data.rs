//! `weft exec`, `weft trace` and `weft jobs`: commands that act on a configured
//! weft (a `weft.toml` and a data directory), in-process — except `weft exec … --server URL`, which
//! makes the operation against a running `weft up` over its Web API (`super::remote`). In-process
//! `weft exec` applies `weft.toml` to the data directory as `weft up` does at start: beside a running
//! host, use `--server` instead (the host would not see a file edit the exec applied).
//!
//! A Custom API's parameters and response properties are the Web API's JSON in both cases: the
//! translation is the API's (`crate::api`), not a copy.

use super::remote;
use crate::api::{body_object, custom_api_parameters, response_object};
use crate::context;
use crate::pipeline::{Message, OrganizationRequest, OrganizationResponse};
use crate::registration::{Binding, CustomApiDecl, Registration};
use crate::runtime::{DATABASE_FILE, Runtime};
use anyhow::{Context as _, anyhow, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use weft_store::system::{TraceFilter, TraceLog};
use weft_store::{Query, Store, StoreExt};

/// Which weft to act on.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// The registration file.
    #[arg(long, default_value = "weft.toml")]
    pub config: PathBuf,
    /// The data directory (database, component cache).
    #[arg(long, default_value = ".weft")]
    pub data: PathBuf,
    /// The store: a PostgreSQL URL (`postgres://user@host:port/database`) instead of the data directory's
    /// SQLite file; overrides `[store] url` of the registration file.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

impl RuntimeArgs {
    /// Opens only the store (no plug-ins loaded): enough to read logs and jobs.
    pub(super) fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        let registration = Registration::load(&self.config)?;
        let url = self.store.as_deref().or(registration.store.url.as_deref());
        if url.is_none() && !self.data.join(DATABASE_FILE).exists() {
            bail!(
                "no weft data in {} (run an operation first)",
                self.data.display()
            );
        }
        crate::runtime::open_store(&registration, &self.data, self.store.as_deref())
    }
}

/// The operations `weft exec` runs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Operation {
    /// Create a row from `--attributes`.
    Create,
    /// Retrieve the row `--id`.
    Retrieve,
    /// Retrieve rows (`--columns`, `--top`).
    RetrieveMultiple,
    /// Update the row `--id` with `--attributes`.
    Update,
    /// Delete the row `--id`.
    Delete,
    /// Call the Custom API named in place of the table, with `--parameters` (and `--id` when bound to a
    /// row); prints its response properties.
    CustomApi,
}

/// Flags of `weft exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// The message.
    #[arg(value_enum)]
    pub(super) operation: Operation,
    /// The table's logical name; for custom-api, the Custom API's unique name.
    #[arg(value_name = "TABLE|API")]
    pub(super) table: String,
    /// The row id (Retrieve, Update, Delete; custom-api bound to a row).
    #[arg(long)]
    id: Option<String>,
    /// custom-api: the request parameters as the Web API's JSON object, e.g. '{"Name":"Ada"}'.
    #[arg(long)]
    parameters: Option<String>,
    /// Call a running weft's Web API at this URL (e.g. http://127.0.0.1:5380) instead of running
    /// in-process: the same operation as a Web API client makes it.
    #[arg(long)]
    server: Option<String>,
    /// With --server: the key sent as `Authorization: Bearer …`. Never printed.
    #[arg(long, env = "WEFT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Attributes as JSON (typed values as in `weft plugin run --target`).
    #[arg(long)]
    pub(super) attributes: Option<String>,
    /// Columns to return, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(super) columns: Option<Vec<String>>,
    /// At most this many rows (RetrieveMultiple).
    #[arg(long)]
    pub(super) top: Option<u32>,
    /// The `tag` request parameter (reaches plug-ins as a shared variable).
    #[arg(long)]
    tag: Option<String>,
    /// `BypassBusinessLogicExecution`: CustomSync, CustomAsync or both.
    #[arg(long)]
    bypass: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `weft exec`: one operation through the pipeline, then the steps that ran.
pub fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let id = args
        .id
        .as_deref()
        .map(|text| {
            text.parse::<uuid::Uuid>()
                .with_context(|| format!("--id `{text}` is not a GUID"))
        })
        .transpose()?;
    let custom = matches!(args.operation, Operation::CustomApi);
    if !custom && args.parameters.is_some() {
        bail!("--parameters applies to custom-api only");
    }
    if let Some(server) = &args.server {
        let registration = Registration::load(&args.runtime.config)?;
        let remote = remote::Remote::new(server, args.api_key.clone(), &args.tag, &args.bypass)?;
        return if custom {
            let api = custom_api(&registration, &args.table, id)?;
            remote.custom_api(&registration, api, id, args.parameters.as_deref())
        } else {
            remote.table_operation(&registration, &args, id)
        };
    }
    let runtime = Runtime::open_with_store(
        &args.runtime.config,
        &args.runtime.data,
        args.runtime.store.as_deref(),
    )?;
    let schema = &runtime.schema();
    if !custom && schema.table(&args.table).is_none() {
        bail!(
            "table `{}` is not declared in {}{}",
            args.table,
            runtime.registration.file,
            crate::suggest::table_hint(schema, &args.table)
        );
    }
    let need_id = || id.context("this operation needs --id");
    let target = || -> anyhow::Result<_> {
        let text = args.attributes.as_deref().unwrap_or("{}");
        let json = serde_json::from_str(text).context("--attributes is not valid JSON")?;
        let mut entity = context::entity_from_json(&args.table, &json).context("--attributes")?;
        if let Some(id) = id {
            entity.id = Some(crate::convert::guid(id));
        }
        Ok(entity)
    };
    let message = match args.operation {
        Operation::Create => Message::Create { target: target()? },
        Operation::Update => {
            need_id()?;
            Message::Update { target: target()? }
        }
        Operation::Retrieve => Message::Retrieve {
            table: args.table.clone(),
            id: need_id()?,
            columns: args.columns.clone(),
        },
        Operation::RetrieveMultiple => Message::RetrieveMultiple {
            query: Query {
                columns: args.columns.clone(),
                top: args.top,
                ..Query::new(args.table.clone())
            },
        },
        Operation::Delete => Message::Delete {
            table: args.table.clone(),
            id: need_id()?,
        },
        Operation::CustomApi => {
            let registration = &runtime.registration;
            let api = custom_api(registration, &args.table, id)?;
            let body = args.parameters.as_deref().unwrap_or("{}");
            let mut parameters = body_object(body.as_bytes())
                .and_then(|fields| custom_api_parameters(&runtime.schema(), api, fields))
                .map_err(|e| anyhow!("--parameters: {}", e.message))?;
            parameters.extend(id.and_then(|id| api.target(id)));
            Message::Custom {
                name: api.unique_name.clone(),
                parameters,
            }
        }
    };
    let mut request = OrganizationRequest::new(message);
    request.tag = args.tag.clone();
    if let Some(bypass) = &args.bypass {
        request = request.bypass_business_logic(bypass)?;
    }
    let started = now_ms();
    let result = runtime.pipeline.execute(request);
    let traces: Vec<TraceLog> = runtime
        .store
        .read(|r| r.trace_logs(&TraceFilter::default()))?;
    match &result {
        Ok(OrganizationResponse::Custom { outputs }) => {
            let body = response_object(&runtime.schema(), outputs)
                .map_err(|e| anyhow!("{}", e.message))?;
            println!("{}", serde_json::Value::Object(body));
        }
        Ok(response) => println!("{}", response_json(response)),
        Err(error) => println!("error {}: {error}", error.code()),
    }
    println!("steps:");
    let names: std::collections::HashMap<uuid::Uuid, String> = runtime
        .pipeline
        .steps()
        .into_iter()
        .map(|s| (s.def.id, s.def.name))
        .collect();
    // Newest first from the store; the steps ran in the reverse order.
    for log in traces.iter().rev().filter(|t| t.created_on >= started) {
        print!("{}", super::trace::entry_text(log, &names));
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The declared Custom API `name`; `--id` must be given exactly when it is bound to a row.
pub(super) fn custom_api<'r>(
    registration: &'r Registration,
    name: &str,
    id: Option<uuid::Uuid>,
) -> anyhow::Result<&'r CustomApiDecl> {
    let api = registration
        .custom_apis
        .iter()
        .find(|c| c.unique_name == name)
        .with_context(|| format!("{}: no custom API `{name}` is declared", registration.file))?;
    match (&api.binding, id) {
        (Binding::Entity(t), None) => bail!("{name} is bound to a `{t}` row: give its --id"),
        (Binding::Global | Binding::EntityCollection(_), Some(_)) => {
            bail!("{name} is not bound to a row: --id does not apply")
        }
        _ => Ok(api),
    }
}

fn response_json(response: &OrganizationResponse) -> serde_json::Value {
    match response {
        OrganizationResponse::Create { id } => serde_json::json!({ "id": id.to_string() }),
        OrganizationResponse::Retrieve { entity } => context::entity_to_json(entity),
        OrganizationResponse::RetrieveMultiple { collection } => serde_json::Value::Array(
            collection
                .entities
                .iter()
                .map(context::entity_to_json)
                .collect(),
        ),
        other => serde_json::json!({ "done": format!("{other:?}") }),
    }
}

/// `weft jobs …`.
pub fn jobs(
    runtime: RuntimeArgs,
    command: weft_jobs::cli::JobsCommand,
) -> anyhow::Result<ExitCode> {
    let store = runtime.store()?;
    super::block_on(weft_jobs::cli::run(command, store))
}
