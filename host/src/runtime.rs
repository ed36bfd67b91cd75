//! [`Runtime`]: one configured weft — registration from `weft.toml`, the data
//! store and component cache under a data directory, the sandbox and the
//! pipeline — opened the same way by every command that needs them
//! (`weft exec`, `weft trace`, `weft jobs`, `weft up`). Owns the on-disk
//! layout of the data directory; must not hold business logic.

use crate::pipeline::Pipeline;
use crate::registration::Registration;
use crate::sandbox::Sandbox;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_store::Store;
use weft_store::{SqliteOptions, SqliteStore};

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
}

impl Runtime {
    /// Loads `config`, opens (creating if needed) the store in `data_dir`,
    /// builds the sandbox with the configured limits and the pipeline with the
    /// registered steps.
    pub fn open(config: &Path, data_dir: &Path) -> anyhow::Result<Runtime> {
        let registration = Registration::load(config)?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let store = SqliteStore::open(
            data_dir.join(DATABASE_FILE),
            registration.schema.clone(),
            SqliteOptions::default(),
        )
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
        })
    }
}
