//! Errors a plug-in raises ([`PluginError`], Dataverse's
//! InvalidPluginExecutionException) and errors host services return
//! ([`ServiceError`]).

use std::fmt;

/// `OperationStatus`: what the platform does with a failed plug-in.
/// The numbers are Dataverse's.
///
/// ```
/// use weft_sdk::OperationStatus;
/// assert_eq!(OperationStatus::Retry as i32, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationStatus {
    /// 0: fail the operation (or the system job).
    Failed = 0,
    /// 1: cancel the operation.
    Canceled = 1,
    /// 2: in an asynchronous step, try the plug-in again (4 attempts in all).
    Retry = 2,
    /// 3: suspend the system job.
    Suspended = 3,
    /// 4: end without error.
    Succeeded = 4,
}

/// An `InvalidPluginExecutionException`: its message reaches the caller verbatim.
///
/// ```
/// use weft_sdk::{OperationStatus, PluginError};
/// let e = PluginError::new("Account name is required.");
/// assert_eq!(e.status, OperationStatus::Failed);
/// let r = PluginError::retry("listener busy").with_code(0x8004_4306_u32 as i32);
/// assert_eq!(r.status, OperationStatus::Retry);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// The text the caller sees.
    pub message: String,
    /// What the platform does next.
    pub status: OperationStatus,
    /// Optional error code.
    pub error_code: Option<i32>,
}

impl PluginError {
    /// A failure with [`OperationStatus::Failed`].
    ///
    /// ```
    /// # use weft_sdk::PluginError;
    /// assert_eq!(PluginError::new("no").message, "no");
    /// ```
    pub fn new(message: impl Into<String>) -> PluginError {
        PluginError::with_status(OperationStatus::Failed, message)
    }

    /// A failure with [`OperationStatus::Retry`].
    ///
    /// ```
    /// # use weft_sdk::{OperationStatus, PluginError};
    /// assert_eq!(PluginError::retry("later").status, OperationStatus::Retry);
    /// ```
    pub fn retry(message: impl Into<String>) -> PluginError {
        PluginError::with_status(OperationStatus::Retry, message)
    }

    /// A failure with any status.
    ///
    /// ```
    /// # use weft_sdk::{OperationStatus, PluginError};
    /// let e = PluginError::with_status(OperationStatus::Canceled, "stop");
    /// assert_eq!(e.status, OperationStatus::Canceled);
    /// ```
    pub fn with_status(status: OperationStatus, message: impl Into<String>) -> PluginError {
        PluginError {
            message: message.into(),
            status,
            error_code: None,
        }
    }

    /// Adds an error code.
    ///
    /// ```
    /// # use weft_sdk::PluginError;
    /// assert_eq!(PluginError::new("x").with_code(7).error_code, Some(7));
    /// ```
    pub fn with_code(mut self, code: i32) -> PluginError {
        self.error_code = Some(code);
        self
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

/// A failed host-service call becomes a plug-in failure when `?` passes it on.
impl From<ServiceError> for PluginError {
    fn from(e: ServiceError) -> PluginError {
        PluginError {
            message: e.to_string(),
            status: OperationStatus::Failed,
            error_code: e.error_code,
        }
    }
}

/// Why a host service refused or failed a call.
///
/// ```
/// use weft_sdk::ServiceErrorKind;
/// assert_ne!(ServiceErrorKind::NotFound, ServiceErrorKind::Timeout);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceErrorKind {
    /// Malformed arguments.
    InvalidArgument,
    /// No such row or endpoint.
    NotFound,
    /// Not allowed here.
    Denied,
    /// The remote side could not be reached or failed.
    Unavailable,
    /// The call took too long.
    Timeout,
    /// A per-invocation quota is spent.
    QuotaExceeded,
    /// The operation ran and failed.
    Failed,
}

/// An error from a host service.
///
/// ```
/// use weft_sdk::{ServiceError, ServiceErrorKind};
/// let e = ServiceError::new(ServiceErrorKind::NotFound, "no endpoint 1234");
/// assert_eq!(e.to_string(), "not found: no endpoint 1234");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The kind of failure.
    pub kind: ServiceErrorKind,
    /// What went wrong.
    pub message: String,
    /// Dataverse error code, where one applies.
    pub error_code: Option<i32>,
    /// HTTP status of the remote answer, where there was one.
    pub status_code: Option<u16>,
}

impl ServiceError {
    /// An error of a kind with a message.
    ///
    /// ```
    /// # use weft_sdk::{ServiceError, ServiceErrorKind};
    /// assert_eq!(ServiceError::new(ServiceErrorKind::Denied, "x").kind, ServiceErrorKind::Denied);
    /// ```
    pub fn new(kind: ServiceErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind,
            message: message.into(),
            error_code: None,
            status_code: None,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ServiceErrorKind::InvalidArgument => "invalid argument",
            ServiceErrorKind::NotFound => "not found",
            ServiceErrorKind::Denied => "denied",
            ServiceErrorKind::Unavailable => "unavailable",
            ServiceErrorKind::Timeout => "timeout",
            ServiceErrorKind::QuotaExceeded => "quota exceeded",
            ServiceErrorKind::Failed => "failed",
        };
        write!(f, "{kind}: {}", self.message)?;
        if let Some(status) = self.status_code {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServiceError {}
