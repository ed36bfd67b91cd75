//! `weft plugin run`: one plug-in, once, against a context built from flags (or a captured
//! RemoteExecutionContext, `--context`), with recording services; prints traces, calls, changes, the
//! outcome and a limits report. `weft plugin new` hands over to `scaffold`.

use super::rows::LocalOrganization;
use crate::context::{self, ContextSpec};
use crate::sandbox::wit::context::{ContextChanges, ExecutionContext, Mode};
use crate::sandbox::wit::types::{Entity, Image, Parameter, ParameterValue};
use crate::sandbox::{
    Invocation, Limits, OutboundPolicy, Outcome, RecordedCall, RecordingServices, Sandbox,
};
use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plug-in component once and report what it did.
    Run(Box<RunArgs>),
    /// Create a plug-in project of your own (a crate, native tests, a weft.toml, the SDK of this weft).
    New(NewArgs),
    /// Replace a registered plug-in's component without a restart (hot replacement), locally or on a
    /// running weft (`--server`).
    Push(super::registry::PushArgs),
    /// Run a recorded execution again (from the plug-in trace log) with the same context and the same
    /// host-call answers; `--component` tries another component against it.
    Replay(super::replay::ReplayArgs),
}

/// Flags of `weft plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plug-in's crate name, e.g. `tidy-names`.
    pub name: String,
    /// Where to create it [default: ./NAME]; must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn new_project(args: NewArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let created = super::scaffold::create(&args.name, &dir)?;
    let shown = created.dir.display();
    println!("created plug-in project `{}` in {shown}", args.name);
    println!("next:");
    println!("  cd {shown}");
    println!("  cargo test        # native unit tests");
    println!("  weft build        # writes {}", created.component);
    println!(
        "  weft plugin run {} --stage 20 --target '{{\"name\":\"  Fourth   Coffee \"}}'",
        created.component
    );
    println!("  weft up           # serves weft.toml (Web API and the local bus)");
    Ok(ExitCode::SUCCESS)
}

/// Flags of `weft plugin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The plug-in component (.wasm).
    pub component: PathBuf,
    /// Message name.
    #[arg(long, default_value = "Create")]
    pub message: String,
    /// Table logical name.
    #[arg(long, default_value = "account")]
    pub table: String,
    /// The Target entity's attributes as JSON (see `weft_host::context` for typed values).
    #[arg(long)]
    pub target: Option<String>,
    /// The Target's id (and the context's PrimaryEntityId).
    #[arg(long)]
    pub id: Option<String>,
    /// A pre-entity image, `ALIAS=JSON` (attributes as for `--target`); repeatable.
    #[arg(long = "pre-image", value_name = "ALIAS=JSON")]
    pub pre_images: Vec<String>,
    /// A post-entity image, `ALIAS=JSON`; repeatable.
    #[arg(long = "post-image", value_name = "ALIAS=JSON")]
    pub post_images: Vec<String>,
    /// A shared variable, `NAME=JSON` (a value as in `--target`); repeatable.
    #[arg(long = "shared", value_name = "NAME=JSON")]
    pub shared_variables: Vec<String>,
    /// Run on a captured RemoteExecutionContext instead: a message body in JSON, XML or .NET binary XML
    /// (e.g. saved by `weft listen … --count 1 --exec 'cat > ctx.bin'`); message, table, stage, mode,
    /// images and variables come from it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "id", "pre_images", "post_images", "shared_variables", "message", "table", "stage", "asynchronous"])]
    pub context: Option<PathBuf>,
    /// Stage: 10, 20, 30 or 40.
    #[arg(long, default_value_t = 40)]
    pub stage: i32,
    /// Run as an asynchronous step.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// The step's unsecure configuration.
    #[arg(long = "unsecure-config")]
    pub unsecure_config: Option<String>,
    /// The step's secure configuration (never printed).
    #[arg(long)]
    pub secure_config: Option<String>,
    /// What posts to service endpoints answer (as a two-way listener would).
    #[arg(long, default_value = "")]
    pub response: String,
    /// Rows for the organization service, a JSON file: `{"account": [{"id": "…", "name": "…"}], …}`.
    /// The plug-in's writes change them for this run only.
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    pub rows: Option<PathBuf>,
    /// Rows for the organization service from a weft data directory (with `--config`), read-only: the
    /// plug-in's writes change an in-memory copy for this run only.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The registration file whose tables `--data` holds.
    #[arg(long, default_value = "weft.toml", requires = "data")]
    pub config: PathBuf,
    /// Deadline in milliseconds.
    #[arg(long, default_value_t = Limits::default().deadline_ms)]
    pub deadline_ms: u64,
    /// Fuel limit (turns fuel metering on).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
    pub memory_mib: usize,
    /// The plug-in type to run, for a component holding several (weft:plugin@0.2.0).
    #[arg(long = "type")]
    pub plugin_type: Option<String>,
    /// A host the plug-in may call (repeatable; `*.contoso.com` for a domain). None: any named host
    /// with a public address, as in Dataverse's sandbox.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Lets the plug-in call this machine (`localhost`): for local development only.
    #[arg(long)]
    pub allow_loopback_for_development: bool,
    /// Outbound HTTP calls allowed (`[sandbox] http_calls`).
    #[arg(long, default_value_t = Limits::default().http_calls)]
    pub http_calls: u32,
    /// Time of one outbound HTTP call in milliseconds (`[sandbox] http_timeout_ms`).
    #[arg(long, default_value_t = Limits::default().http_timeout_ms)]
    pub http_timeout_ms: u64,
}

pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let args = match command {
        PluginCommand::Run(args) => args,
        PluginCommand::New(args) => return new_project(args),
        PluginCommand::Push(args) => return super::registry::push(args),
        PluginCommand::Replay(args) => return super::replay::replay(args),
    };
    let limits = Limits {
        deadline_ms: args.deadline_ms,
        fuel: args.fuel,
        memory_bytes: args.memory_mib << 20,
        max_instances: 4,
        http_calls: args.http_calls,
        http_timeout_ms: args.http_timeout_ms,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits, None)?;
    let name = args
        .component
        .file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
    let outbound = OutboundPolicy {
        allowed_hosts: args.allow_hosts.clone(),
        allow_loopback_for_development: args.allow_loopback_for_development,
        ..OutboundPolicy::default()
    };
    outbound
        .validate()
        .map_err(|why| anyhow::anyhow!("--allow-host: {why}"))?;
    let plugin = sandbox
        .load_file(&name, &args.component)?
        .with_outbound(std::sync::Arc::new(outbound));
    let plugin = match &args.plugin_type {
        Some(t) => plugin.for_type(t).map_err(anyhow::Error::msg)?,
        None => plugin,
    };
    let execution_context = match &args.context {
        Some(file) => captured_context(file)?,
        None => context_from_flags(&args)?,
    };
    let recording = || RecordingServices {
        response: args.response.clone(),
        ..RecordingServices::default()
    };
    let local = match (&args.rows, &args.data) {
        (Some(file), _) => Some(LocalOrganization::from_file(recording(), file)?),
        (None, Some(data)) => {
            let store = super::data::RuntimeArgs {
                config: args.config.clone(),
                data: data.clone(),
                store: None,
            }
            .store()?;
            Some(LocalOrganization::from_store(recording(), store))
        }
        // No rows: the organization service answers that there is none.
        (None, None) => None,
    };
    let unsecure_config = args.unsecure_config.clone();
    let secure_config = args.secure_config.clone();
    let outcome = match local {
        Some(local) => sandbox
            .invoke(
                &plugin,
                Invocation {
                    context: execution_context,
                    unsecure_config,
                    secure_config,
                    services: local,
                },
            )
            .map_services(|local| local.recording),
        None => sandbox.invoke(
            &plugin,
            Invocation {
                context: execution_context,
                unsecure_config,
                secure_config,
                services: recording(),
            },
        ),
    };
    print!("{}", report(&name, &outcome, &sandbox));
    Ok(if outcome.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The context `weft plugin run`'s flags describe.
fn context_from_flags(args: &RunArgs) -> anyhow::Result<ExecutionContext> {
    let entity = |flag: &str, text: &str| -> anyhow::Result<Entity> {
        let json =
            serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON"))?;
        context::entity_from_json(&args.table, &json).context(flag.to_owned())
    };
    let id = args
        .id
        .as_deref()
        .map(|text| context::parse_guid(text).context("--id"))
        .transpose()?;
    let mut target = args
        .target
        .as_deref()
        .map(|text| entity("--target", text))
        .transpose()?;
    if let Some(id) = id {
        target
            .get_or_insert_with(|| Entity {
                logical_name: args.table.clone(),
                id: None,
                attributes: Vec::new(),
                formatted_values: Vec::new(),
                row_version: None,
            })
            .id = Some(id);
    }
    let mut ctx = context::build_context(ContextSpec {
        message: args.message.clone(),
        table: args.table.clone(),
        stage: context::stage_from_number(args.stage)?,
        mode: if args.asynchronous {
            Mode::Asynchronous
        } else {
            Mode::Synchronous
        },
        target,
        depth: 1,
        created_on_ms: 0,
    });
    let images = |flag: &str, given: &[String]| -> anyhow::Result<Vec<Image>> {
        given
            .iter()
            .map(|pair| {
                let (alias, json) = split_pair(flag, pair)?;
                let mut image = entity(flag, json)?;
                image.id = image.id.or(id);
                Ok(Image {
                    alias: alias.to_owned(),
                    entity: image,
                })
            })
            .collect()
    };
    ctx.frame.pre_entity_images = images("--pre-image", &args.pre_images)?;
    ctx.frame.post_entity_images = images("--post-image", &args.post_images)?;
    ctx.frame.shared_variables = args
        .shared_variables
        .iter()
        .map(|pair| {
            let (name, json) = split_pair("--shared", pair)?;
            let json = serde_json::from_str(json)
                .with_context(|| format!("--shared {name}: not valid JSON"))?;
            Ok(Parameter {
                name: name.to_owned(),
                value: ParameterValue::Value(context::value_from_json(&json, name)?),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(ctx)
}

/// `NAME=JSON` split at the first `=`.
fn split_pair<'a>(flag: &str, pair: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    match pair.split_once('=') {
        Some((name, json)) if !name.is_empty() => Ok((name, json)),
        _ => anyhow::bail!("{flag} `{pair}`: expected NAME=JSON"),
    }
}

/// A RemoteExecutionContext saved to a file, in whichever of the three formats it is.
fn captured_context(file: &std::path::Path) -> anyhow::Result<ExecutionContext> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let format = weft_message::cli::sniff(&bytes);
    let mut remote = weft_message::decode(&bytes, format).with_context(|| {
        format!(
            "{} is not a RemoteExecutionContext in {format:?}",
            file.display()
        )
    })?;
    for dropped in drop_unrepresentable(&mut remote) {
        eprintln!("{}: {dropped}", file.display());
    }
    crate::convert::from_remote(&remote).with_context(|| format!("{}", file.display()))
}

/// Removes the parameters a plug-in cannot be given (Dataverse's `ChangedEntityTypes` shared variable,
/// a list of string pairs, is in every asynchronous context), saying which.
fn drop_unrepresentable(ctx: &mut weft_message::RemoteExecutionContext) -> Vec<String> {
    use weft_message::Value as V;
    let mut dropped = Vec::new();
    let mut level = Some(ctx);
    while let Some(c) = level {
        for (label, params) in [
            ("InputParameters", &mut c.input_parameters),
            ("OutputParameters", &mut c.output_parameters),
            ("SharedVariables", &mut c.shared_variables),
        ] {
            params.retain(|(name, value)| {
                let kind = match value {
                    V::StringPairs(_) => "KeyValuePairOfstringstring",
                    V::AliasedValue(_) => "AliasedValue",
                    V::Relationship(_) => "Relationship",
                    _ => return true,
                };
                dropped.push(format!(
                    "{label}.{name} left out: {kind} values have no plug-in representation"
                ));
                false
            });
        }
        level = c.parent_context.as_deref_mut();
    }
    dropped
}

fn changes_text(changes: &ContextChanges) -> String {
    let mut text = String::new();
    for (label, params) in [
        ("InputParameters", &changes.input_parameters),
        ("OutputParameters", &changes.output_parameters),
        ("SharedVariables", &changes.shared_variables),
    ] {
        if let Some(params) = params {
            text.push_str(&format!(
                "  {label}: {}\n",
                context::parameters_to_json(params)
            ));
        }
    }
    if text.is_empty() {
        text.push_str("  (none)\n");
    }
    text
}

/// The human report of one invocation: traces, calls, changes, outcome, limits.
pub fn report(name: &str, outcome: &Outcome<RecordingServices>, sandbox: &Sandbox) -> String {
    let calls = outcome
        .services
        .calls
        .iter()
        .map(|call| match call {
            RecordedCall::Notify {
                endpoint,
                shared_variables,
            } => format!(
                "notification-service.execute {} (shared variables sent: {})",
                context::format_guid(*endpoint),
                shared_variables
                    .as_ref()
                    .map_or("unchanged".to_owned(), |v| v.join(", "))
            ),
            RecordedCall::Organization(text) => format!("organization-service.{text}"),
        })
        .collect::<Vec<_>>();
    report_with_calls(name, outcome, &calls, sandbox)
}

/// [`report`] with the calls already described, one line each.
pub fn report_with_calls<S>(
    name: &str,
    outcome: &Outcome<S>,
    calls: &[String],
    sandbox: &Sandbox,
) -> String {
    let mut out = format!("plug-in {name}\n");
    out.push_str("traces:\n");
    for line in &outcome.traces {
        out.push_str(&format!("  | {line}\n"));
    }
    out.push_str("calls:\n");
    for call in calls {
        out.push_str(&format!("  {call}\n"));
    }
    match &outcome.result {
        Ok(changes) => {
            out.push_str("changes:\n");
            out.push_str(&changes_text(changes));
            out.push_str("outcome: succeeded\n");
        }
        Err(failure) => {
            out.push_str(&format!(
                "outcome: failed ({}): {}\n",
                failure.kind, failure.message
            ));
            if let Some(backtrace) = &failure.backtrace {
                // The plug-in's own frames: skip the standard library's panic
                // and abort machinery that sits on top of every panic.
                out.push_str("guest backtrace:\n");
                let frames = backtrace.lines().filter(|l| l.contains('!')).filter(|l| {
                    !["!std[", "!core[", "!__rustc[", "!abort"]
                        .iter()
                        .any(|m| l.contains(m))
                });
                for line in frames.take(12) {
                    out.push_str(&format!("  {}\n", line.trim()));
                }
            }
            if !failure.stderr_tail.is_empty() {
                out.push_str("stderr (tail):\n");
                for line in failure
                    .stderr_tail
                    .lines()
                    .rev()
                    .take(8)
                    .collect::<Vec<_>>()
                    .iter()
                    .rev()
                {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
    }
    let usage = &outcome.usage;
    let limits = sandbox.limits();
    out.push_str(&format!(
        "limits: time {:.3} ms of {} ms; fuel {}; peak memory {} KiB of {} MiB; \
         traces {}/{} ({} B); posts {}/{}; organization calls {}; returned ~{} B; output {} B; \
         outbound HTTP calls {}/{} (sent {} of {} B, received {} of {} B, {} ms each at most)\n",
        usage.elapsed.as_secs_f64() * 1e3,
        limits.deadline_ms,
        usage.fuel_consumed.map_or("off".to_owned(), |f| format!(
            "{f} of {}",
            limits.fuel.unwrap_or(0)
        )),
        usage.peak_memory_bytes >> 10,
        limits.memory_bytes >> 20,
        usage.calls.trace_calls,
        limits.trace_calls,
        usage.calls.trace_bytes,
        usage.calls.execute_calls,
        limits.execute_calls,
        usage.calls.organization_calls,
        usage.return_bytes,
        usage.output_bytes,
        usage.calls.http_calls,
        limits.http_calls,
        usage.calls.http_sent_bytes,
        limits.http_request_bytes,
        usage.calls.http_received_bytes,
        limits.http_response_bytes,
        limits.http_timeout_ms,
    ));
    out
}
