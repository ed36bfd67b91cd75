//! [`PipelineError`]: how an operation fails, with the Dataverse error code and the text the caller may see.
//!
//! Owns the mapping from failures (plug-in, sandbox, store, loop, time limit) to caller-facing errors. Details
//! the caller must not see (traps, backtraces) stay in the trace log, never in `Display`.

use weft_store::StoreError;

/// Dataverse's text for a plug-in failure that is not an InvalidPluginExecutionException (weft's answer
/// starts with it and adds the correlation id).
pub const ISV_UNEXPECTED_MESSAGE: &str = "An unexpected error occurred from ISV code.";

/// Seconds a caller is told to wait (`Retry-After`) when every plug-in instance was busy.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Why an operation failed. Every variant rolls back the whole operation (data and queued jobs).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// A plug-in threw InvalidPluginExecutionException: its message reaches the caller verbatim.
    #[error("{message}")]
    Plugin {
        /// The step that failed.
        step: String,
        /// The plug-in's message.
        message: String,
        /// The plug-in's error code, if it gave one.
        error_code: Option<i32>,
    },
    /// Any other plug-in failure (trap, timeout, quota…): the caller sees Dataverse's generic text and the
    /// correlation id under which `detail` is in the plug-in trace log (`weft trace --correlation ID`).
    #[error(
        "An unexpected error occurred from ISV code. (correlation id {correlation_id}: the plug-in trace \
         log has the details)"
    )]
    IsvUnexpected {
        /// The step that failed.
        step: String,
        /// What happened (for the trace log and operators, not the caller).
        detail: String,
        /// The operation's correlation id, to find `detail` with.
        correlation_id: uuid::Uuid,
    },
    /// The chain of requests went deeper than the depth limit (Dataverse's infinite-loop protection).
    #[error(
        "This operation was canceled because it reached the maximum depth of {max_depth} (infinite loop \
         protection, correlation id {correlation_id})."
    )]
    DepthLimit {
        /// The configured limit.
        max_depth: i32,
        /// The chain's correlation id.
        correlation_id: uuid::Uuid,
    },
    /// The operation and the operations its plug-ins issued made more child operations than the limit
    /// (fan-out protection; Dataverse's infinite-loop code, as the depth limit's).
    #[error(
        "This operation was canceled because its plug-ins issued more than {limit} child operations \
         (fan-out protection, correlation id {correlation_id})."
    )]
    ChildOperationLimit {
        /// The configured limit (`[pipeline] max_child_operations`).
        limit: u32,
        /// The chain's correlation id.
        correlation_id: uuid::Uuid,
    },
    /// Every plug-in instance stayed busy for the whole wait: the host's capacity, not the plug-in's fault.
    /// The API answers 503 with `Retry-After`.
    #[error(
        "Number of concurrent plug-in executions exceeded the limit of {limit}: no instance came free \
         within {wait_ms} ms. Retry the request later."
    )]
    Busy {
        /// Plug-in instances (`[sandbox] max_instances`).
        limit: u32,
        /// How long the operation waited, ms (`[sandbox] instance_wait_ms`).
        wait_ms: u64,
    },
    /// The operation with its sync steps ran past the operation time limit.
    #[error("The operation exceeded its time limit of {limit_ms} ms.")]
    Timeout {
        /// The limit, ms.
        limit_ms: u64,
    },
    /// An Update or Delete conditional on a row version (the Web API's `If-Match` with an ETag) found the
    /// row at another version: nothing was written.
    #[error("The version of the existing record doesn't match the RowVersion property provided.")]
    RowVersionMismatch,
    /// The request is malformed (unknown table, missing Target, wrong parameter type…).
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PipelineError {
    /// The Dataverse error code (`0x…`) for an API answer.
    pub fn code(&self) -> String {
        match self {
            PipelineError::Plugin {
                error_code: Some(c),
                ..
            } => format!("0x{:08x}", *c as u32),
            // InvalidPluginExecutionException without its own code (dataverse.md §18).
            PipelineError::Plugin { .. } => "0x80040265".into(),
            PipelineError::IsvUnexpected { .. } => "0x80040224".into(),
            PipelineError::DepthLimit { .. } | PipelineError::ChildOperationLimit { .. } => {
                "0x80044182".into()
            }
            // Dataverse's service-protection code for too many concurrent requests.
            PipelineError::Busy { .. } => "0x80072326".into(),
            PipelineError::Timeout { .. } => "0x80040224".into(),
            PipelineError::Invalid(_) => "0x80040203".into(),
            // ConcurrencyVersionMismatch.
            PipelineError::RowVersionMismatch => "0x80060882".into(),
            PipelineError::Store(e) => e.dataverse_code().into(),
        }
    }
}
