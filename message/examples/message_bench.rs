//! Runs the message benchmark: `cargo run --release --example message_bench [-- --json]`.
fn main() -> anyhow::Result<()> {
    weft_message::bench::run(std::env::args().any(|a| a == "--json"))
}
