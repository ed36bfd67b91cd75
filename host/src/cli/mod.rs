//! The `weft` command line: parses arguments and hands each command to the
//! module that owns the work. No business logic lives here.

mod data;
mod plugin;
mod quickstart;
mod remote;
mod seed;
mod up;

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
    /// Show the plug-in trace log.
    Trace(data::TraceArgs),
    /// System jobs (asyncoperation): list, show, retry, cancel, pause, resume, postpone, delete.
    Jobs {
        #[command(flatten)]
        runtime: data::RuntimeArgs,
        #[command(subcommand)]
        command: weft_jobs::cli::JobsCommand,
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
    /// Run the embedded local bus: Service Bus, Event Hubs and Relay REST protocols on one machine.
    Bus(weft_bus::cli::BusArgs),
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
    /// The plug-in workspace (a Cargo workspace of plug-in crates).
    #[arg(long, default_value_os_t = crate::builder::default_plugins_dir())]
    pub plugins: PathBuf,
    /// Where to put the build.
    #[arg(long, default_value_os_t = crate::builder::default_target_dir())]
    pub target_dir: PathBuf,
    /// Packages to build (all when none are named).
    pub packages: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Sandbox floor, plug-in step and host-import costs (p50/p99).
    Sandbox {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
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
    },
    /// Durable 1 KB sends and receive-and-deletes per second on the local bus, with an HTTP echo floor.
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
        Command::Up(args) => up::up(args),
        Command::Exec(args) => data::exec(args),
        Command::Trace(args) => data::trace(args),
        Command::Jobs { runtime, command } => data::jobs(runtime, command),
        Command::Build(args) => build(args),
        Command::Quickstart(args) => quickstart::run(args),
        Command::Message { command } => weft_message::cli::run(command).map(|()| ExitCode::SUCCESS),
        Command::Bus(args) => block_on(weft_bus::cli::run_bus(args)),
        Command::Listen(args) => block_on(weft_bus::cli::run_listen(args)),
        Command::Bench { which } => match which {
            BenchCommand::Sandbox { json } => crate::bench::sandbox::run(json),
            BenchCommand::Message { json } => {
                weft_message::bench::run(json).map(|()| ExitCode::SUCCESS)
            }
            BenchCommand::Bus { json } => block_on(weft_bus::bench::run(json)),
            BenchCommand::Delivery {
                json,
                workers,
                batch_size,
            } => block_on(crate::bench::delivery::run_delivery(
                json, workers, batch_size,
            )),
            BenchCommand::E2e { json } => block_on(crate::bench::delivery::run_e2e(json)),
            BenchCommand::Pipeline { json } => {
                crate::pipeline::bench::run(json).map(|()| ExitCode::SUCCESS)
            }
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

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let artifacts =
        crate::builder::build(&args.plugins, &args.target_dir, &args.packages, |line| {
            eprintln!("{line}")
        })?;
    for artifact in artifacts {
        println!("{}\t{}", artifact.package, artifact.path.display());
    }
    Ok(ExitCode::SUCCESS)
}
