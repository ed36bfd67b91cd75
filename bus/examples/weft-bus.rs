//! Stand-alone driver for the bus crate's entry points until the host wires `weft bus`, `weft listen` and
//! `weft bench bus`: `cargo run -p weft-bus --example weft-bus -- bus --queue orders`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the local bus.
    Bus(weft_bus::cli::BusArgs),
    /// Run the listener.
    Listen(weft_bus::cli::ListenArgs),
    /// Benchmark the bus.
    Bench {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Bus(a) => weft_bus::cli::run_bus(a).await,
        Cmd::Listen(a) => weft_bus::cli::run_listen(a).await,
        Cmd::Bench { json } => weft_bus::bench::run(json).await,
    }
}
