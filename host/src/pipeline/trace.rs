//! Plug-in trace-log rows: one per plug-in execution, whether a synchronous
//! step in the pipeline or an asynchronous step run by the job service. Builds
//! the row only; writing it is the caller's (inside or outside a transaction).

use std::time::Duration;
use uuid::Uuid;
use weft_store::system::{NewTraceLog, StepMode, TraceOutcome};

/// Who ran: the identifying half of a trace-log row.
pub struct TraceSubject {
    /// The step.
    pub step_id: Uuid,
    /// The plug-in (assembly) name.
    pub plugin: String,
    /// The message.
    pub message_name: String,
    /// The primary table, if any.
    pub primary_entity: Option<String>,
    /// Pipeline depth.
    pub depth: i32,
    /// The operation chain's correlation id.
    pub correlation_id: Uuid,
    /// Sync or async step.
    pub mode: StepMode,
}

impl TraceSubject {
    /// The row for one execution: how long it took, what it traced and wrote
    /// to stderr (from the sandbox's outcome), whether it succeeded, and why not.
    pub fn row(
        self,
        elapsed: Duration,
        traces: &[String],
        stderr: String,
        succeeded: bool,
        error: Option<String>,
    ) -> NewTraceLog {
        // Every plug-in execution, sync or async, comes through here: `weft_plugin_duration_seconds`.
        metrics::histogram!(
            "weft_plugin_duration_seconds",
            "plugin" => self.plugin.clone(),
            "step" => self.step_id.to_string(),
            "outcome" => if succeeded { "succeeded" } else { "failed" },
        )
        .record(elapsed.as_secs_f64());
        NewTraceLog {
            step_id: Some(self.step_id),
            plugin: self.plugin,
            message_name: self.message_name,
            primary_entity: self.primary_entity,
            depth: self.depth,
            correlation_id: self.correlation_id,
            mode: self.mode,
            duration_ms: elapsed.as_millis() as i64,
            outcome: if succeeded {
                TraceOutcome::Succeeded
            } else {
                TraceOutcome::Failed
            },
            trace: traces.join("\n"),
            stderr,
            error,
            recording: None,
        }
    }
}
