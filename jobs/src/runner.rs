//! What running one system job came to, and the trait the host implements to run jobs.
//!
//! Owns [`JobRunner`], [`JobOutcome`] and [`FailureClass`]. It must not know any transport: the runner
//! (the host's built-in Azure-aware plug-in, the sandbox for custom plug-ins) classifies its own failures,
//! and the service decides retries from the class alone.

use std::future::Future;
use std::time::Duration;

use uuid::Uuid;
use weft_store::system::SystemJob;

/// Runs system jobs. Implemented by the host (built-in Azure-aware plug-in, sandboxed plug-ins); tests
/// write their own.
///
/// `run` may be called again for the same job after a failure (retry) or after a worker died holding it
/// (lease takeover): delivery is at least once, and listeners de-duplicate by `OperationId` (the job id).
pub trait JobRunner: Send + Sync + 'static {
    /// Runs one attempt at `job` and says how it went.
    fn run(&self, job: &SystemJob) -> impl Future<Output = JobOutcome> + Send;
}

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureClass {
    /// Network error, timeout, 5xx, 429, server busy: retried with backoff (`Retry-After` honoured when
    /// longer than the schedule's delay).
    Transient {
        /// The endpoint's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Internal error (invalid plug-in exception, bad data, missing endpoint…): Failed at once, no retry.
    Permanent,
    /// HTTP 401/403: the job is Suspended until a user resumes it (after fixing the credentials).
    Auth,
    /// A plug-in threw with `OperationStatus.Retry`: 4 attempts in total, then Failed.
    PluginRetry,
    /// A webhook answered 502/503/504: exactly one more attempt, then Failed.
    WebhookGateway,
}

impl FailureClass {
    /// The word recorded in the attempt history.
    pub fn label(&self) -> &'static str {
        match self {
            FailureClass::Transient { .. } => "transient",
            FailureClass::Permanent => "permanent",
            FailureClass::Auth => "auth",
            FailureClass::PluginRetry => "plugin-retry",
            FailureClass::WebhookGateway => "webhook-gateway",
        }
    }
}

/// How one attempt went: success or a classified failure, with what the attempt history records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// None = succeeded; Some = failed with this class.
    pub failure: Option<FailureClass>,
    /// The job ran to an end of its own choosing that is not success: a workflow's Stop step with status
    /// Canceled. The job becomes Completed / Canceled (3/32) with `message`; only without a failure.
    pub canceled: bool,
    /// The service endpoint posted to, if any.
    pub endpoint_id: Option<Uuid>,
    /// The endpoint's HTTP status code, if one answered.
    pub status_code: Option<u16>,
    /// How long the post (or the plug-in) took; the service measures the whole run when None.
    pub latency: Option<Duration>,
    /// Dataverse error code (e.g. `0x80044306` as i32) for a failure.
    pub error_code: Option<i32>,
    /// What went wrong (or a note on success). Never a secret.
    pub message: Option<String>,
}

impl JobOutcome {
    /// A successful attempt.
    pub fn succeeded() -> Self {
        JobOutcome {
            failure: None,
            canceled: false,
            endpoint_id: None,
            status_code: None,
            latency: None,
            error_code: None,
            message: None,
        }
    }

    /// A failed attempt of `class` with `message`.
    pub fn failed(class: FailureClass, message: impl Into<String>) -> Self {
        JobOutcome {
            failure: Some(class),
            message: Some(message.into()),
            ..JobOutcome::succeeded()
        }
    }

    /// An attempt that ended the job as Canceled, with `message` (a workflow's Stop step).
    pub fn canceled(message: impl Into<String>) -> Self {
        JobOutcome {
            canceled: true,
            message: Some(message.into()),
            ..JobOutcome::succeeded()
        }
    }

    /// With the endpoint posted to.
    pub fn endpoint(mut self, id: Uuid) -> Self {
        self.endpoint_id = Some(id);
        self
    }

    /// With the endpoint's HTTP status code.
    pub fn status(mut self, code: u16) -> Self {
        self.status_code = Some(code);
        self
    }

    /// With the measured latency.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// With a Dataverse error code.
    pub fn error_code(mut self, code: i32) -> Self {
        self.error_code = Some(code);
        self
    }

    /// Whether the attempt succeeded.
    pub fn is_success(&self) -> bool {
        self.failure.is_none()
    }
}
