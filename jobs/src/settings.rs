//! The `[jobs]` table of `weft.toml`: how many workers, batch size, lease, run timeout, poll interval and
//! the retry policy, turned into a checked [`ServiceConfig`].
//!
//! Owns only the file shape and its validation messages; the meaning of each value is [`ServiceConfig`]'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::RetryPolicy;
use crate::service::ServiceConfig;

/// `[jobs]` in weft.toml; every key optional (defaults are [`ServiceConfig::default`]'s), unknown keys refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSettings {
    /// Concurrent workers.
    pub workers: usize,
    /// Attempts in flight per worker (and most jobs per claim).
    pub batch_size: u32,
    /// Lease of a claim, seconds.
    pub lease_s: f64,
    /// Longest attempt, seconds; shorter than the lease.
    pub run_timeout_s: f64,
    /// Idle poll interval, milliseconds.
    pub poll_interval_ms: u64,
    /// `[jobs.retry]`.
    pub retry: RetryPolicy,
}

impl Default for JobsSettings {
    fn default() -> Self {
        let c = ServiceConfig::default();
        JobsSettings {
            workers: c.workers,
            batch_size: c.batch_size,
            lease_s: c.lease.as_secs_f64(),
            run_timeout_s: c.run_timeout.as_secs_f64(),
            poll_interval_ms: u64::try_from(c.poll_interval.as_millis()).unwrap_or(u64::MAX),
            retry: c.retry,
        }
    }
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 {
        Duration::try_from_secs_f64(v).map_err(|e| format!("jobs.{name}: {v}: {e}"))
    } else {
        Err(format!(
            "jobs.{name}: {v} is not a duration in seconds (expected a finite number > 0)"
        ))
    }
}

impl JobsSettings {
    /// The service configuration (system clock, fresh worker prefix), checked.
    pub fn into_config(self) -> Result<ServiceConfig, String> {
        let config = ServiceConfig {
            workers: self.workers,
            batch_size: self.batch_size,
            lease: secs("lease_s", self.lease_s)?,
            run_timeout: secs("run_timeout_s", self.run_timeout_s)?,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            retry: self.retry,
            ..ServiceConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}
