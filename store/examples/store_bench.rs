//! Measures the durable-insert floor and group-commit Create throughput with 64 concurrent callers.
//!
//! `cargo run -p weft-store --release --example store_bench -- [ops] [concurrency] [dir]`

use std::path::PathBuf;

use weft_store::bench::{Throughput, floor_inserts, group_commit_creates};

fn show(label: &str, t: &Throughput) {
    println!(
        "{label:<36} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ops in {:.2} s)",
        t.ops_per_s,
        t.p50_ms,
        t.p99_ms,
        t.ops,
        t.elapsed.as_secs_f64()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ops: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let concurrency: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let base = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base)?;
    println!(
        "{ops} operations, {concurrency} concurrent callers, WAL + synchronous=FULL, in {}",
        dir.path().display()
    );
    show(
        "floor (1 txn per bare insert)",
        &floor_inserts(dir.path(), ops, concurrency)?,
    );
    show(
        "store, 1 txn per Create",
        &group_commit_creates(dir.path(), ops, concurrency, 1)?,
    );
    show(
        "store, group commit",
        &group_commit_creates(dir.path(), ops, concurrency, 512)?,
    );
    Ok(())
}
