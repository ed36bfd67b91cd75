//! `weft store copy`: moves a weft's data between stores (a data directory's SQLite file and a PostgreSQL
//! database, either way). Owns the flags and the naming of a location; the copy itself is
//! `weft_store::copy`'s. It must not open a runtime (no plug-ins, no pipeline: rows keep what they are).

use crate::registration::Registration;
use crate::runtime::DATABASE_FILE;
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use weft_store::copy::{Location, copy};

/// `weft store …`.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy every row (tables, links, registration, secrets, jobs, trace log) from one store into an empty
    /// one: SQLite ↔ PostgreSQL.
    Copy(CopyArgs),
}

/// Flags of `weft store copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The registration file whose tables both stores hold.
    #[arg(long, default_value = "weft.toml")]
    config: PathBuf,
    /// The source: a data directory, a SQLite database file or a postgres:// URL.
    #[arg(long, value_name = "PATH_OR_URL")]
    from: String,
    /// The destination: a data directory, a SQLite database file or a postgres:// URL; must hold no rows.
    #[arg(long, value_name = "PATH_OR_URL")]
    to: String,
    /// Replace the destination's rows instead of refusing a destination that has some.
    #[arg(long)]
    force: bool,
}

/// A data directory stands for its database file.
fn location(text: &str, must_exist: bool) -> anyhow::Result<Location> {
    if weft_store::is_postgres_url(text) {
        return Ok(Location::Postgres(text.to_string()));
    }
    let path = PathBuf::from(text);
    let file = if path.is_dir() {
        path.join(DATABASE_FILE)
    } else {
        path
    };
    if must_exist && !file.exists() {
        bail!("{}: no weft database there", file.display());
    }
    Ok(Location::Sqlite(file))
}

/// Runs `weft store …`.
pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Copy(args) = command;
    let registration = Registration::load(&args.config)?;
    let from = location(&args.from, true)?;
    let to = location(&args.to, false)?;
    let report = copy(&from, &to, &registration.schema, args.force)
        .with_context(|| format!("copying {from} to {to}"))?;
    let total: u64 = report.tables.iter().map(|(_, n)| n).sum();
    for (table, n) in report.tables.iter().filter(|(_, n)| *n > 0) {
        println!("{table:<40} {n}");
    }
    println!("copied {total} rows from {from} to {to}");
    Ok(ExitCode::SUCCESS)
}
