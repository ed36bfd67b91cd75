//! Converts a file between formats: `cargo run --example convert -- FROM TO FILE`.
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: weft_message::cli::MessageCommand,
}

fn main() -> anyhow::Result<()> {
    weft_message::cli::run(Args::parse().cmd)
}
