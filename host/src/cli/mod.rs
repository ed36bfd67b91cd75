//! The `weft` command line: parses arguments and hands each command to the
//! module that owns the work. No business logic lives here.

mod data;
mod plugin;
mod quickstart;
mod registry;
mod remote;
mod replay;
mod rows;
mod scaffold;
mod seed;
mod store;
mod summary;
mod trace;
mod up;
mod watch;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// weft: an open plug-in runtime for event-driven business data.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with one plug-in component.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Serve a configured weft: HTTP API, asynchronous service, and the local bus when `weft.toml` has `[bus]`.
    Up(up::UpArgs),
    /// Run one operation through the pipeline (in-process) and show the steps that ran; `custom-api` calls
    /// a Custom API, in-process or on a running weft (`--server`).
    Exec(data::ExecArgs),
    /// Registered plug-ins (assemblies) with the sha256 each runs.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Registered steps: list, enable, disable (by name or id).
    Steps {
        #[command(subcommand)]
        command: registry::StepsCommand,
    },
    /// Registered service endpoints.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Show the plug-in trace log.
    Trace(trace::TraceArgs),
    /// System jobs (asyncoperation): list, show, retry, cancel, pause, resume, postpone, delete.
    Jobs {
        #[command(flatten)]
        runtime: data::RuntimeArgs,
        #[command(subcommand)]
        command: weft_jobs::cli::JobsCommand,
    },
    /// The data store: `copy` moves a weft's data between SQLite and PostgreSQL.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Build the plug-in crates of a plug-in workspace for wasm32-wasip2.
    Build(BuildArgs),
    /// Build the example plug-ins from source and run them: the first thing to try.
    Quickstart(quickstart::QuickstartArgs),
    /// Convert and inspect Dataverse messages (RemoteExecutionContext as JSON, XML, .NET binary XML).
    Message {
        #[command(subcommand)]
        command: weft_message::cli::MessageCommand,
    },
    /// Run the embedded local bus: Service Bus, Event Hubs and Relay REST protocols, and Service Bus over AMQP
    /// 1.0 for the official Azure SDKs, on one machine.
    Bus(BusCommandArgs),
    /// Listen to a queue, topic subscription, Event Hub partition or relay and print each Dataverse message.
    Listen(weft_bus::cli::ListenArgs),
    /// Capacity measurements to run on your own hardware.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// Where plug-ins come from and go.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The plug-in crate or workspace [default: the current directory when its Cargo.toml uses weft-sdk
    /// (a project made by `weft plugin new`), else this weft checkout's `plugins/`].
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Where to put the build [default: the project's own `target/`, or `target/plugins` of the checkout].
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Packages to build (all when none are named).
    pub packages: Vec<String>,
}

/// Whether `dir`'s Cargo.toml depends on weft-sdk (a plug-in project or workspace of one's own).
fn is_plugin_project(dir: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return false;
    };
    let Ok(manifest) = text.parse::<toml::Table>() else {
        return false;
    };
    let has_sdk = |deps: Option<&toml::Value>| deps.and_then(|d| d.get("weft-sdk")).is_some();
    has_sdk(manifest.get("dependencies"))
        || has_sdk(
            manifest
                .get("workspace")
                .and_then(|w| w.get("dependencies")),
        )
}

/// `weft plugins …`.
#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// The registered plug-ins with their ids and sha256.
    List(registry::Target),
}

/// `weft endpoints …`.
#[derive(Debug, Subcommand)]
enum EndpointsCommand {
    /// The registered service endpoints with their ids (secrets never shown).
    List(registry::Target),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Sandbox floor, plug-in step and host-import costs (p50/p99).
    Sandbox {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Timed runs per figure (a tenth of them warm up first); fewer make a short run to profile,
        /// e.g. under `valgrind --tool=callgrind`.
        #[arg(long, default_value_t = crate::bench::sandbox::RUNS, value_parser = clap::value_parser!(u32).range(10..))]
        runs: u32,
    },
    /// Encode and decode MB/s of a 64 KB context in each message format.
    Message {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Creates per second through the pipeline (2 sync steps, 1 async step, 64 callers), with its floors.
    Pipeline {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Measure on this PostgreSQL database (empty of accounts and jobs) instead of SQLite files.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Hosts sharing the PostgreSQL database (each with its own connection pool, sandbox and pipeline,
        /// in this process), the 64 callers spread over them.
        #[arg(long, default_value_t = 1, requires = "store", value_parser = clap::value_parser!(u16).range(1..=16))]
        hosts: u16,
    },
    /// Durable 1 KB sends and receive-and-deletes per second on the local bus over REST and over AMQP, with an
    /// HTTP echo floor.
    Bus {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// System jobs posted per second to the local bus, with the bus's own ceiling for the same bodies.
    Delivery {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Workers of the asynchronous service [default: `[jobs]`'s default].
        #[arg(long)]
        workers: Option<usize>,
        /// Attempts in flight per worker [default: `[jobs]`'s default].
        #[arg(long)]
        batch_size: Option<u32>,
    },
    /// Durable Creates per second over the Web API next to the same Creates in-process, and the latency of a
    /// 50-row page with one `$expand`.
    Api {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Creates per run [default: 5000].
        #[arg(long)]
        ops: Option<u64>,
    },
    /// Latency from an operation's commit to a queue listener at 500 operations/s (p50/p99).
    E2e {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an async command on a multi-threaded runtime.
fn block_on(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(work)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the command line; errors print as `error: …` with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin { command } => plugin::run(command),
        Command::Up(args) => {
            init_logging(args.log_format);
            up::up(args)
        }
        Command::Exec(args) => data::exec(args),
        Command::Trace(args) => trace::trace(args),
        Command::Store { command } => store::run(command),
        Command::Plugins {
            command: PluginsCommand::List(target),
        } => registry::plugins_list(target),
        Command::Steps { command } => registry::steps_command(command),
        Command::Endpoints {
            command: EndpointsCommand::List(target),
        } => registry::endpoints_list(target),
        Command::Jobs { runtime, command } => data::jobs(runtime, command),
        Command::Build(args) => build(args),
        Command::Quickstart(args) => quickstart::run(args),
        Command::Message { command } => weft_message::cli::run(command).map(|()| ExitCode::SUCCESS),
        Command::Bus(BusCommandArgs { bus, log_format }) => {
            init_logging(log_format);
            block_on(weft_amqp::cli::run_bus(bus))
        }
        Command::Listen(args) => block_on(weft_bus::cli::run_listen(args)),
        Command::Bench { which } => match which {
            BenchCommand::Sandbox { json, runs } => crate::bench::sandbox::run(json, runs as usize),
            BenchCommand::Message { json } => {
                weft_message::bench::run(json).map(|()| ExitCode::SUCCESS)
            }
            BenchCommand::Bus { json } => block_on(weft_amqp::bench::run(json)),
            BenchCommand::Delivery {
                json,
                workers,
                batch_size,
            } => block_on(crate::bench::delivery::run_delivery(
                json, workers, batch_size,
            )),
            BenchCommand::E2e { json } => block_on(crate::bench::delivery::run_e2e(json)),
            BenchCommand::Api { json, ops } => block_on(crate::bench::api::run(json, ops)),
            BenchCommand::Pipeline { json, store, hosts } => match store {
                Some(url) => crate::pipeline::bench::run_postgres(&url, usize::from(hosts), json),
                None => crate::pipeline::bench::run(json),
            }
            .map(|()| ExitCode::SUCCESS),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// How the long-running commands write their log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields, message), for log collectors.
    Json,
}

/// `weft bus`'s flags: the bus's own and the log format.
#[derive(Debug, clap::Args)]
struct BusCommandArgs {
    #[command(flatten)]
    bus: weft_bus::cli::BusArgs,
    /// Log lines as text or as JSON objects (one per line) on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Warnings and errors of the long-running commands on stderr (`RUST_LOG` tunes, e.g. `RUST_LOG=info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let (plugins, target_dir) = match (args.plugins, args.target_dir) {
        (Some(plugins), Some(target)) => (plugins, target),
        (Some(plugins), None) => {
            let target = plugins.join("target");
            (plugins, target)
        }
        (None, target) if is_plugin_project(&cwd) => {
            (cwd.clone(), target.unwrap_or_else(|| cwd.join("target")))
        }
        (None, target) => (
            crate::builder::default_plugins_dir(),
            target.unwrap_or_else(crate::builder::default_target_dir),
        ),
    };
    let artifacts = crate::builder::build(&plugins, &target_dir, &args.packages, |line| {
        eprintln!("{line}")
    })?;
    for artifact in artifacts {
        // Relative to the current directory where it can be: the path weft.toml uses.
        let path = artifact.path.strip_prefix(&cwd).unwrap_or(&artifact.path);
        println!("{}\t{}", artifact.package, path.display());
    }
    Ok(ExitCode::SUCCESS)
}
