//! Tables created at runtime (the Web API's `POST EntityDefinitions`): how their definitions are kept in the
//! `weft_table` system table and merged with `weft.toml`'s declarations when a store opens.
//!
//! Owns the stored form (one row per table: its logical name and the table's declaration as TOML, the
//! `[[table]]` shape, platform attributes included) and the restart rule. It must not run DDL: each backend
//! creates and drops the SQL tables in its own transaction.
//!
//! The restart rule is the registration's: a table `weft.toml` declares wins over a runtime table of the same
//! logical name or entity set name (the runtime one is forgotten, its SQL table becomes the file's); the
//! others stand. A stored table that no longer fits (a lookup to a table the file dropped) is left out with a
//! warning, its row kept for when it fits again.

use std::sync::{Arc, Mutex, RwLock};

use crate::schema::{Schema, TableDef};
use crate::{Result, StoreError};

/// A runtime table's stored definition.
fn encode(table: &TableDef) -> Result<String> {
    toml::to_string(table).map_err(|e| {
        StoreError::Invalid(format!("cannot store table `{}`: {e}", table.logical_name))
    })
}

/// The runtime tables `next` holds that `current` does not hold as they are (new or changed), each with its
/// stored definition: what a backend writes to `weft_table` after a change.
fn changed(current: &Schema, next: &Schema) -> Result<Vec<(String, String)>> {
    next.tables()
        .iter()
        .filter(|t| next.is_runtime_table(&t.logical_name))
        .filter(|t| current.table(&t.logical_name) != Some(*t))
        .map(|t| Ok((t.logical_name.clone(), encode(t)?)))
        .collect()
}

/// `file` with the stored runtime tables added. Returns the schema and the stored tables the file now
/// declares (their rows are to be deleted).
pub(crate) fn merge(file: Schema, stored: Vec<(String, String)>) -> (Schema, Vec<String>) {
    let mut schema = file;
    let mut superseded = Vec::new();
    for (name, definition) in stored {
        let table: TableDef = match toml::from_str(&definition) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(table = %name, "a runtime table's stored definition does not parse: {e}");
                continue;
            }
        };
        if schema.name_taken(&table) {
            tracing::info!(table = %name, "weft.toml declares this runtime table's name: the file's wins");
            superseded.push(name);
            continue;
        }
        match schema.with_runtime_table(table) {
            Ok(next) => schema = next,
            Err(e) => tracing::warn!(table = %name, "a runtime table is left out: {e}"),
        }
    }
    (schema, superseded)
}

/// The schema a store answers with now, swapped whole when a runtime table is created, changed or deleted:
/// readers take the `Arc` and keep the schema their work began with.
#[derive(Default)]
pub(crate) struct SchemaCell {
    current: RwLock<Arc<Schema>>,
    /// Serialises runtime table changes: each builds on the schema the previous one left.
    changing: Mutex<()>,
}

impl SchemaCell {
    pub(crate) fn new(schema: Schema) -> Self {
        SchemaCell {
            current: RwLock::new(Arc::new(schema)),
            changing: Mutex::new(()),
        }
    }

    /// The schema as of now.
    pub(crate) fn get(&self) -> Arc<Schema> {
        // A poisoned lock still holds a whole schema: it is only ever replaced, never edited in place.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs `change` on the current schema while no other change runs; `change` makes the new schema durable
    /// and returns it, and the cell then answers with it.
    pub(crate) fn change(&self, change: impl FnOnce(&Schema) -> Result<Schema>) -> Result<()> {
        let _one_at_a_time = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = change(&self.get())?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// Adds (or replaces) the runtime table `table`: `write` makes it durable, given the schema it makes and
    /// the runtime tables whose stored definitions change ([`changed`]).
    pub(crate) fn put_table(
        &self,
        table: TableDef,
        write: impl FnOnce(&Schema, Vec<(String, String)>) -> Result<()>,
    ) -> Result<()> {
        self.change(|current| {
            let next = current.with_runtime_table(table).map_err(invalid)?;
            write(&next, changed(current, &next)?)?;
            Ok(next)
        })
    }

    /// Removes the runtime table `logical_name`: `write` drops it and its stored definition.
    pub(crate) fn delete_table(
        &self,
        logical_name: &str,
        write: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.change(|current| {
            let next = current
                .without_runtime_table(logical_name)
                .map_err(invalid)?;
            write()?;
            Ok(next)
        })
    }
}

/// A schema the caller's change makes invalid, as a store error.
pub(crate) fn invalid(e: crate::schema::SchemaError) -> StoreError {
    StoreError::Invalid(e.0)
}
