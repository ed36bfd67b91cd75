//! The store's error type: what went wrong, in words a caller can show, plus the Dataverse error code.
//!
//! Owns [`StoreError`]; it must not carry secrets or whole rows in its messages.

use uuid::Uuid;

use crate::schema::SchemaError;

/// Everything the store can refuse or fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The declared schema is invalid, or does not match the stored one.
    #[error("schema: {0}")]
    Schema(#[from] SchemaError),
    /// No table with this logical name is declared.
    #[error("table `{0}` is not declared")]
    UnknownTable(String),
    /// The table has no such attribute.
    #[error("attribute `{attribute}` is not declared on table `{table}`")]
    UnknownAttribute {
        /// Table logical name.
        table: String,
        /// Attribute logical name.
        attribute: String,
    },
    /// No relationship with this name is declared.
    #[error("relationship `{0}` is not declared")]
    UnknownRelationship(String),
    /// A value has the wrong type for its attribute.
    #[error("attribute `{attribute}` of table `{table}` expects {expected}, got {got}")]
    TypeMismatch {
        /// Table logical name.
        table: String,
        /// Attribute logical name.
        attribute: String,
        /// The attribute's type.
        expected: &'static str,
        /// The value's type.
        got: &'static str,
    },
    /// A request is malformed or violates a constraint; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The row does not exist.
    #[error("{table} with id {id} does not exist")]
    NotFound {
        /// Table logical name.
        table: String,
        /// Row id.
        id: Uuid,
    },
    /// A row with this id already exists.
    #[error("a record of table `{table}` with id {id} already exists")]
    DuplicateId {
        /// Table logical name.
        table: String,
        /// Row id.
        id: Uuid,
    },
    /// Another row of the table already has these values of an alternate key.
    #[error(
        "a record of table `{table}` with the same values of key `{key}` already exists: the key requires \
         unique values"
    )]
    DuplicateKey {
        /// Table logical name.
        table: String,
        /// The key's name.
        key: String,
    },
    /// A job operation by a worker that no longer holds the job's lease.
    #[error(
        "system job {id} is not leased to worker `{worker}` (lease expired and taken over, or job not locked)"
    )]
    LeaseLost {
        /// Job id.
        id: Uuid,
        /// The worker that tried.
        worker: String,
    },
    /// Another operation holds the row and did not finish within this operation's remaining time (Dataverse's
    /// "SQL timeout expired"). The whole operation is rolled back; the caller may retry.
    #[error(
        "SQL timeout expired: {table} with id {id} is locked by another operation that did not finish within \
         this operation's time limit; the operation was rolled back, retry it"
    )]
    LockTimeout {
        /// Table logical name.
        table: String,
        /// Row id.
        id: Uuid,
    },
    /// Waiting for the row would have closed a cycle of operations waiting for each other's rows (Dataverse's
    /// "Generic SQL error", SQL deadlock 1205). This operation was chosen as the victim and rolled back; the
    /// others go on. The caller may retry.
    #[error(
        "Generic SQL error: deadlock: {table} with id {id} is locked by an operation that waits for a row this \
         operation locked; this operation was chosen as the deadlock victim and rolled back, retry it"
    )]
    Deadlock {
        /// Table logical name.
        table: String,
        /// Row id.
        id: Uuid,
    },
    /// The work closure panicked; its savepoint was rolled back.
    #[error("the operation panicked and was rolled back: {0}")]
    WorkPanicked(String),
    /// The transaction holding this work could not commit (nothing of it is durable).
    #[error("the transaction could not be committed: {0}")]
    CommitFailed(String),
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// The Dataverse error code (`0x…`) a Web API answer should carry.
    pub fn dataverse_code(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "0x80040217",
            StoreError::DuplicateId { .. } | StoreError::DuplicateKey { .. } => "0x80040237",
            // Dataverse's "SQL timeout expired" (-2147204783) and "Generic SQL error" (-2147204784, SQL
            // number 1205: deadlock), as its bulk-operation troubleshooting page lists them.
            StoreError::LockTimeout { .. } => "0x80044151",
            StoreError::Deadlock { .. } => "0x80044150",
            StoreError::UnknownTable(_)
            | StoreError::UnknownAttribute { .. }
            | StoreError::UnknownRelationship(_)
            | StoreError::TypeMismatch { .. }
            | StoreError::Invalid(_) => "0x80040203",
            _ => "0x80040216",
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}
