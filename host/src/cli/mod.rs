//! The `weft` command line: parses arguments and hands each command to the
//! module that owns the work. No business logic lives here.

mod plugin;
mod quickstart;

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
    /// Build the plug-in crates of a plug-in workspace for wasm32-wasip2.
    Build(BuildArgs),
    /// Build the example plug-ins from source and run them: the first thing to try.
    Quickstart(quickstart::QuickstartArgs),
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
}

/// Runs the command line; errors print as `error: …` with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin { command } => plugin::run(command),
        Command::Build(args) => build(args),
        Command::Quickstart(args) => quickstart::run(args),
        Command::Bench { which } => match which {
            BenchCommand::Sandbox { json } => crate::bench::sandbox::run(json),
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
