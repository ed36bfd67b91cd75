//! `weft plugin run`: one plug-in, once, against a context built from flags,
//! with recording services; prints traces, calls, changes, the outcome and a
//! limits report. `weft plugin new` hands over to `scaffold`.

use crate::context::{self, ContextSpec};
use crate::sandbox::wit::context::{ContextChanges, Mode};
use crate::sandbox::{Invocation, Limits, Outcome, RecordedCall, RecordingServices, Sandbox};
use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plug-in component once and report what it did.
    Run(RunArgs),
    /// Create a plug-in project of your own (a crate, native tests, a weft.toml, the SDK of this weft).
    New(NewArgs),
    /// Replace a registered plug-in's component without a restart (hot replacement), locally or on a
    /// running weft (`--server`).
    Push(super::registry::PushArgs),
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
    /// Stage: 10, 20, 30 or 40.
    #[arg(long, default_value_t = 40)]
    pub stage: i32,
    /// Run as an asynchronous step.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// The step's unsecure configuration.
    #[arg(long)]
    pub config: Option<String>,
    /// The step's secure configuration (never printed).
    #[arg(long)]
    pub secure_config: Option<String>,
    /// What posts to service endpoints answer (as a two-way listener would).
    #[arg(long, default_value = "")]
    pub response: String,
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
}

pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let args = match command {
        PluginCommand::Run(args) => args,
        PluginCommand::New(args) => return new_project(args),
        PluginCommand::Push(args) => return super::registry::push(args),
    };
    let limits = Limits {
        deadline_ms: args.deadline_ms,
        fuel: args.fuel,
        memory_bytes: args.memory_mib << 20,
        max_instances: 4,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits, None)?;
    let name = args
        .component
        .file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
    let plugin = sandbox.load_file(&name, &args.component)?;
    let plugin = match &args.plugin_type {
        Some(t) => plugin.for_type(t).map_err(anyhow::Error::msg)?,
        None => plugin,
    };
    let target = args
        .target
        .as_deref()
        .map(|text| {
            let json = serde_json::from_str(text).context("--target is not valid JSON")?;
            context::entity_from_json(&args.table, &json).context("--target")
        })
        .transpose()?;
    let spec = ContextSpec {
        message: args.message,
        table: args.table,
        stage: context::stage_from_number(args.stage)?,
        mode: if args.asynchronous {
            Mode::Asynchronous
        } else {
            Mode::Synchronous
        },
        target,
        depth: 1,
        created_on_ms: 0,
    };
    let outcome = sandbox.invoke(
        &plugin,
        Invocation {
            context: context::build_context(spec),
            unsecure_config: args.config,
            secure_config: args.secure_config,
            services: RecordingServices {
                response: args.response,
                ..RecordingServices::default()
            },
        },
    );
    print!("{}", report(&name, &outcome, &sandbox));
    Ok(if outcome.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    let mut out = format!("plug-in {name}\n");
    out.push_str("traces:\n");
    for line in &outcome.traces {
        out.push_str(&format!("  | {line}\n"));
    }
    out.push_str("calls:\n");
    for call in &outcome.services.calls {
        match call {
            RecordedCall::Notify {
                endpoint,
                shared_variables,
            } => out.push_str(&format!(
                "  notification-service.execute {} (shared variables sent: {})\n",
                context::format_guid(*endpoint),
                shared_variables
                    .as_ref()
                    .map_or("unchanged".to_owned(), |v| v.join(", "))
            )),
            RecordedCall::Organization(text) => {
                out.push_str(&format!("  organization-service.{text}\n"))
            }
        }
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
         traces {}/{} ({} B); posts {}/{}; organization calls {}; returned ~{} B; output {} B\n",
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
    ));
    out
}
