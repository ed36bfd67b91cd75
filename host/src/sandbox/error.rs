//! [`PluginFailure`]: every way a plug-in invocation (or loading one) can fail,
//! as one typed error callers match on by [`FailureKind`].

use super::Usage;
use std::fmt;

/// Which per-invocation quota a plug-in exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Number of `tracing.trace` calls.
    TraceCalls,
    /// Bytes of trace text.
    TraceBytes,
    /// Number of `notification-service.execute` calls.
    ExecuteCalls,
    /// Bytes sent through `notification-service.execute`.
    ExecuteBytes,
    /// Number of organization-service calls.
    OrganizationCalls,
    /// Bytes of the returned context changes.
    ReturnBytes,
    /// Number of outbound HTTP calls.
    HttpCalls,
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quota::TraceCalls => "trace calls",
            Quota::TraceBytes => "trace bytes",
            Quota::ExecuteCalls => "notification-service execute calls",
            Quota::ExecuteBytes => "notification-service execute bytes",
            Quota::OrganizationCalls => "organization-service calls",
            Quota::ReturnBytes => "returned context bytes",
            Quota::HttpCalls => "outbound HTTP calls",
        })
    }
}

/// A quota overrun, raised by a host function as a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quota exceeded: {quota} (limit {limit})")]
pub struct QuotaExceeded {
    /// The quota.
    pub quota: Quota,
    /// Its limit.
    pub limit: u64,
}

/// The kind of a plug-in failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The invocation ran past its wall-clock deadline.
    Timeout,
    /// The invocation ran out of fuel.
    OutOfFuel,
    /// The plug-in tried to grow memory past its limit.
    MemoryLimit,
    /// The wasm stack overflowed.
    StackOverflow,
    /// Any other trap (a panic shows as `wasm trap: wasm 'unreachable' …`).
    Trap,
    /// A per-invocation quota was exceeded.
    Quota(Quota),
    /// Every plug-in instance stayed busy for the whole wait: the host's
    /// capacity, not the plug-in's fault (the caller may retry).
    Capacity,
    /// The component could not be loaded: not a component, wrong exports, or an
    /// import the sandbox does not provide.
    InvalidComponent,
    /// The plug-in returned an InvalidPluginExecution error.
    Plugin {
        /// OperationStatus number (Failed 0 … Succeeded 4).
        status: u8,
        /// The plug-in's error code, if any.
        error_code: Option<i32>,
    },
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::OutOfFuel => f.write_str("out of fuel"),
            FailureKind::MemoryLimit => f.write_str("memory limit"),
            FailureKind::StackOverflow => f.write_str("stack overflow"),
            FailureKind::Trap => f.write_str("trap"),
            FailureKind::Quota(q) => write!(f, "quota ({q})"),
            FailureKind::Capacity => f.write_str("host at capacity"),
            FailureKind::InvalidComponent => f.write_str("invalid component"),
            FailureKind::Plugin { status, .. } => write!(f, "plug-in error (status {status})"),
        }
    }
}

/// A failed invocation or load, with everything known about it.
#[derive(Debug, Clone)]
pub struct PluginFailure {
    /// The plug-in's name.
    pub plugin: String,
    /// What went wrong.
    pub kind: FailureKind,
    /// The message: the plug-in's own for [`FailureKind::Plugin`], else the host's.
    pub message: String,
    /// The guest backtrace (function names demangled), when the failure was a trap.
    pub backtrace: Option<String>,
    /// The end of what the plug-in wrote to stderr.
    pub stderr_tail: String,
    /// Time, fuel, memory and host calls used until the failure.
    pub usage: Usage,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plug-in `{}` failed ({}): {}",
            self.plugin, self.kind, self.message
        )
    }
}

impl std::error::Error for PluginFailure {}

/// The message of a Rust panic in a plug-in's captured stderr — `panicked at src/lib.rs:23:48: names are
/// long` — when there is one (the standard library prints `thread '…' panicked at FILE:LINE:COL:` and the
/// message on the lines after it, up to the `note:` line).
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    let location = lines.find_map(|l| l.split_once(" panicked at ").map(|(_, at)| at))?;
    let text: Vec<&str> = lines
        .take_while(|l| !l.starts_with("note: "))
        .take(8)
        .collect();
    Some(format!(
        "panicked at {} {}",
        location.trim_end(),
        text.join("\n").trim()
    ))
}

#[cfg(test)]
mod panic_tests {
    use super::panic_message;

    /// The location and the message, not the thread name or the backtrace note; nothing without a panic.
    #[test]
    fn panic_message_from_stderr() {
        let stderr = "\nthread '<unnamed>' (1) panicked at src/lib.rs:23:48:\nnames are long\nnote: run with \
                      `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at src/lib.rs:23:48: names are long")
        );
        assert_eq!(panic_message("just some output\n"), None);
    }
}
