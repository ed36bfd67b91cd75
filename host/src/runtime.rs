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
use weft_store::{
    DirLock, LOCK_FILE, PgOptions, PgStore, SqliteOptions, SqliteStore, Store, StoreError,
    StoreExt, Tx,
};

/// The data directory's database file.
pub const DATABASE_FILE: &str = "weft.db";
/// The data directory's precompiled-component cache.
pub const CACHE_DIR: &str = "cache";

/// A configured weft, ready to run operations.
pub struct Runtime {
    /// The validated `weft.toml`.
    pub registration: Registration,
    /// The data store (SQLite under the data directory, or PostgreSQL when `[store] url` / `--store` says).
    pub store: Arc<dyn Store>,
    /// The plug-in sandbox.
    pub sandbox: Arc<Sandbox>,
    /// The event execution pipeline.
    pub pipeline: Pipeline,
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// The data directory's lock, held as long as the runtime lives.
    _lock: DirLock,
    /// The bus `weft up` embeds, once started: the console's Bus page and `/metrics` read it.
    bus: std::sync::OnceLock<Arc<weft_bus::server::Bus>>,
}

impl Runtime {
    /// The tables as of now: `weft.toml`'s (`registration.schema`) and those created at runtime through the
    /// Web API (`POST EntityDefinitions`), which the store keeps.
    pub fn schema(&self) -> Arc<weft_store::Schema> {
        self.store.schema()
    }
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
        Runtime::open_with_store(config, data_dir, None)
    }

    /// [`Runtime::open`] with the store at `store_url` (a PostgreSQL URL) when given, else where
    /// `[store] url` says, else the data directory's SQLite file. The data directory still holds the
    /// component cache and its lock: hosts sharing one database each have their own.
    pub fn open_with_store(
        config: &Path,
        data_dir: &Path,
        store_url: Option<&str>,
    ) -> anyhow::Result<Runtime> {
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
        let store = open_store(&registration, data_dir, store_url)?;
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
            bus: std::sync::OnceLock::new(),
        })
    }

    /// Records the bus this process embeds (`weft up` with a `[bus]` section), so the console shows it.
    /// Once: a second call is ignored and returns false.
    pub fn attach_bus(&self, bus: Arc<weft_bus::server::Bus>) -> bool {
        self.bus.set(bus).is_ok()
    }

    /// The embedded bus, when one was attached.
    pub fn bus(&self) -> Option<Arc<weft_bus::server::Bus>> {
        self.bus.get().cloned()
    }

    /// Where the store is, for the start-up summary (a PostgreSQL URL without its password).
    pub fn store_location(&self, store_url: Option<&str>) -> String {
        match store_url.or(self.registration.store.url.as_deref()) {
            Some(url) => weft_store::redact_url(url),
            None => self.data_dir.join(DATABASE_FILE).display().to_string(),
        }
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

/// Opens the store `registration` and `store_url` name: PostgreSQL for a URL, else `<data_dir>/weft.db`.
pub fn open_store(
    registration: &Registration,
    data_dir: &Path,
    store_url: Option<&str>,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = store_url.or(registration.store.url.as_deref()) {
        if !weft_store::is_postgres_url(url) {
            anyhow::bail!(
                "store `{}`: only postgres:// (or postgresql://) URLs are supported; without a URL the \
                 store is the data directory's SQLite file",
                weft_store::redact_url(url)
            );
        }
        let defaults = PgOptions::default();
        let options = PgOptions {
            max_rollback_trace_rows: registration.pipeline.max_rollback_trace_rows,
            connections: registration
                .store
                .pool_size
                .map_or(defaults.connections, |n| n.get()),
            ..defaults
        };
        let store = PgStore::open(url, registration.schema.clone(), options)
            .with_context(|| format!("opening the store {}", weft_store::redact_url(url)))?;
        return Ok(Arc::new(store));
    }
    let options = SqliteOptions {
        max_rollback_trace_rows: registration.pipeline.max_rollback_trace_rows,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(
        data_dir.join(DATABASE_FILE),
        registration.schema.clone(),
        options,
    )
    .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    Ok(Arc::new(store))
}
