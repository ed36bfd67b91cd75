//! [`Runtime`]: one configured weft — registration from `weft.toml`, the data
//! store and component cache under a data directory, the sandbox and the
//! pipeline — opened the same way by every command that needs them
//! (`weft exec`, `weft up`; `weft trace` and `weft jobs` open only the store).
//! Owns the on-disk layout of the data directory — created owner-only, locked
//! while a runtime has it open — and must not hold business logic.

use crate::pipeline::Pipeline;
use crate::registration::Registration;
use crate::sandbox::Sandbox;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weft_store::{DirLock, LOCK_FILE, SqliteOptions, SqliteStore, Store, StoreError, StoreExt, Tx};

/// The data directory's database file.
pub const DATABASE_FILE: &str = "weft.db";
/// The data directory's precompiled-component cache.
pub const CACHE_DIR: &str = "cache";

/// A configured weft, ready to run operations.
pub struct Runtime {
    /// The validated `weft.toml`.
    pub registration: Registration,
    /// The data store (SQLite under the data directory).
    pub store: Arc<dyn Store>,
    /// The plug-in sandbox.
    pub sandbox: Arc<Sandbox>,
    /// The event execution pipeline.
    pub pipeline: Pipeline,
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// The data directory's lock, held as long as the runtime lives.
    _lock: DirLock,
}

/// How often `weft up` deletes trace-log rows past their retention.
pub const TRACE_PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// Rows deleted per write when purging, so the writer is never held long.
const TRACE_PURGE_BATCH: usize = 5_000;

/// Creates `dir` owner-only (0700 on Unix) and narrows an existing one's permissions to that: it holds
/// secure configurations and endpoint secrets.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

impl Runtime {
    /// Loads `config`, opens (creating if needed) the store in `data_dir`,
    /// builds the sandbox with the configured limits and the pipeline with the
    /// registered steps.
    pub fn open(config: &Path, data_dir: &Path) -> anyhow::Result<Runtime> {
        let registration = Registration::load(config)?;
        create_private_dir(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        // A lock file is left by every runtime that opened this directory before.
        let opened_before = data_dir.join(LOCK_FILE).exists();
        let lock = DirLock::acquire(data_dir)?;
        let database = data_dir.join(DATABASE_FILE);
        if opened_before && std::fs::metadata(&database).is_ok_and(|m| m.len() == 0) {
            anyhow::bail!(
                "{} is empty, but a weft ran on {} before ({LOCK_FILE} is there): the database was \
                 truncated or replaced, and weft will not start an empty store over it. Restore the file \
                 from a backup (or, to start afresh on purpose, remove the data directory)",
                database.display(),
                data_dir.display()
            );
        }
        let options = SqliteOptions {
            max_rollback_trace_rows: registration.pipeline.max_rollback_trace_rows,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&database, registration.schema.clone(), options)
            .with_context(|| format!("opening the store in {}", data_dir.display()))?;
        let store: Arc<dyn Store> = Arc::new(store);
        let sandbox = Arc::new(Sandbox::new(
            registration.limits.clone(),
            Some(data_dir.join(CACHE_DIR)),
        )?);
        let pipeline = Pipeline::new(Arc::clone(&store), Arc::clone(&sandbox), &registration)?;
        Ok(Runtime {
            registration,
            store,
            sandbox,
            pipeline,
            data_dir: data_dir.to_owned(),
            _lock: lock,
        })
    }

    /// Deletes the trace-log rows created more than `[pipeline] trace_retention_hours` before `now_ms`
    /// (none when it is 0), in bounded batches; returns how many. `weft up` runs it at start and every
    /// [`TRACE_PURGE_INTERVAL`].
    pub fn purge_trace_logs(&self, now_ms: i64) -> Result<usize, StoreError> {
        let hours = self.registration.pipeline.trace_retention_hours;
        if hours == 0 {
            return Ok(0);
        }
        let keep_ms = i64::try_from(hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
        let before = now_ms.saturating_sub(keep_ms);
        let mut purged = 0;
        loop {
            let n = self
                .store
                .transact(move |tx: &mut dyn Tx| tx.purge_trace_logs(before, TRACE_PURGE_BATCH))?;
            purged += n;
            if n < TRACE_PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}
