//! Outcome classification: what went wrong with a post, in terms the asynchronous service can act on.
//!
//! Owns [`PostError`], its [`ErrorClass`] and the `Retry-After` parsing. It must not decide retries or
//! schedules: it says *what kind* of failure happened (transient / permanent / auth) and exposes Dataverse's
//! webhook rule as a fact ([`PostError::webhook_one_more_attempt`]); the job service decides what to do.
//! Every message here is secret-free: callers build them from redacted text only.

use std::time::{Duration, SystemTime};

/// How the job service should treat a failure (dataverse.md §18; azure-messaging.md §1.5, §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Worth retrying later: connection failure, timeout, 408, 429, 5xx, relay "no listener".
    Transient,
    /// Retrying cannot help: bad configuration, message too large, 4xx other than auth/408/429, 3xx.
    Permanent,
    /// The endpoint refused our credentials: 401, or 403 other than Service Bus "too large".
    /// Dataverse's table (HTTP 401 → Suspend) puts such jobs in Waiting until someone fixes the endpoint.
    Auth,
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The endpoint's configuration is unusable (contract, auth type, address, secrets).
    Config,
    /// The context is too large even after the size rule removed members; nothing was sent.
    TooLarge,
    /// No connection could be made (DNS, refused, TLS).
    Connect,
    /// No answer within the endpoint's timeout.
    Timeout,
    /// The service answered with a non-success status.
    Status,
    /// The request failed mid-way (connection reset, unreadable response).
    Transport,
    /// A two-way or REST answer was larger than the endpoint's `max_response_bytes`; the rest was not read.
    AnswerTooLarge,
}

/// A failed post or check. `Display` is a secret-free one-line message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PostError {
    kind: ErrorKind,
    status: Option<u16>,
    retry_after: Option<Duration>,
    webhook: bool,
    message: String,
}

impl PostError {
    /// A configuration error (permanent).
    pub(crate) fn config(message: impl Into<String>) -> PostError {
        PostError::new(ErrorKind::Config, message.into())
    }

    /// The size rule could not bring the message under `limit` bytes.
    pub(crate) fn too_large(size: usize, limit: usize) -> PostError {
        PostError::new(
            ErrorKind::TooLarge,
            format!(
                "message too large: {size} bytes after removing ParentContext, InputParameters and the entity images, limit {limit} bytes; nothing was sent"
            ),
        )
    }

    pub(crate) fn new(kind: ErrorKind, message: String) -> PostError {
        PostError {
            kind,
            status: None,
            retry_after: None,
            webhook: false,
            message,
        }
    }

    /// A non-success answer; `detail` must already be redacted.
    pub(crate) fn status(
        status: u16,
        retry_after: Option<Duration>,
        webhook: bool,
        detail: &str,
    ) -> PostError {
        let detail = detail.trim();
        let message = if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        };
        PostError {
            kind: ErrorKind::Status,
            status: Some(status),
            retry_after,
            webhook,
            message,
        }
    }

    pub(crate) fn for_webhook(mut self, webhook: bool) -> PostError {
        self.webhook = webhook;
        self
    }

    /// What failed.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status the service answered, if it answered.
    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// The delay the service asked for (`Retry-After` on 429/503), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The secret-free message (same as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Transient, permanent or auth; see the table in the crate README.
    pub fn class(&self) -> ErrorClass {
        match self.kind {
            // The same listener would give the same answer again.
            ErrorKind::Config | ErrorKind::TooLarge | ErrorKind::AnswerTooLarge => {
                ErrorClass::Permanent
            }
            ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Transport => ErrorClass::Transient,
            ErrorKind::Status => match self.status.unwrap_or(0) {
                401 => ErrorClass::Auth,
                // Service Bus overloads 403 with "quota exceeded or message too large" (§1.1); those are not
                // credential problems, and retrying the same bytes cannot succeed.
                403 if self.message.contains("too large")
                    || self.message.contains("exceeds the maximum") =>
                {
                    ErrorClass::Permanent
                }
                403 => ErrorClass::Auth,
                408 | 429 => ErrorClass::Transient,
                500..=599 => ErrorClass::Transient,
                _ => ErrorClass::Permanent,
            },
        }
    }

    /// Dataverse's webhook rule (dataverse.md §17): a webhook answering **502, 503 or 504** gets exactly one more
    /// attempt; any other failure of a webhook is final. True only for those three statuses from a webhook.
    pub fn webhook_one_more_attempt(&self) -> bool {
        self.webhook && matches!(self.status, Some(502..=504))
    }

    /// Whether this error came from a webhook endpoint (contract 8).
    pub fn is_webhook(&self) -> bool {
        self.webhook
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past gives zero;
/// anything else unreadable gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statuses map to the documented classes, and only webhook 502/503/504 get the one-more-attempt rule.
    #[test]
    fn classification_table() {
        let c = |s: u16, w: bool| PostError::status(s, None, w, "x");
        assert_eq!(c(401, false).class(), ErrorClass::Auth);
        assert_eq!(c(403, false).class(), ErrorClass::Auth);
        assert_eq!(c(429, false).class(), ErrorClass::Transient);
        assert_eq!(c(408, false).class(), ErrorClass::Transient);
        assert_eq!(c(500, false).class(), ErrorClass::Transient);
        assert_eq!(c(503, true).class(), ErrorClass::Transient);
        assert_eq!(c(400, false).class(), ErrorClass::Permanent);
        assert_eq!(c(404, false).class(), ErrorClass::Permanent);
        assert_eq!(c(410, false).class(), ErrorClass::Permanent);
        assert_eq!(c(302, true).class(), ErrorClass::Permanent);
        let big = PostError::status(403, None, false, "The message of 300000 bytes is too large");
        assert_eq!(big.class(), ErrorClass::Permanent);
        for s in [502, 503, 504] {
            assert!(c(s, true).webhook_one_more_attempt());
            assert!(!c(s, false).webhook_one_more_attempt());
        }
        assert!(!c(500, true).webhook_one_more_attempt());
        assert_eq!(PostError::config("x").class(), ErrorClass::Permanent);
        assert_eq!(PostError::too_large(2, 1).class(), ErrorClass::Permanent);
        assert_eq!(
            PostError::new(ErrorKind::Timeout, "t".into()).class(),
            ErrorClass::Transient
        );
    }

    /// Retry-After accepts seconds and HTTP dates; garbage is None.
    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
