//! The retry policy: when a failed attempt is tried again, and when a job has had enough.
//!
//! Owns [`RetryPolicy`] (the `[jobs.retry]` table of `weft.toml`) and the pure decision [`decide`] from a
//! failure class and an attempt number to Retry / Suspend / Fail. It must not touch the store or the clock:
//! the service hands it `now` and records what it decides.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runner::FailureClass;

/// Attempts in total for a plug-in that throws `InvalidPluginExecutionException(OperationStatus.Retry, …)`
/// (dataverse.md §8, §18: "the async service tries the plug-in 4 times in total").
pub const PLUGIN_RETRY_ATTEMPTS: u32 = 4;

/// Attempts in total for a webhook answering 502/503/504 (dataverse.md §17: "exactly one more attempt").
pub const WEBHOOK_GATEWAY_ATTEMPTS: u32 = 2;

/// How transient failures are retried: exponential backoff with jitter, capped, then Failed.
///
/// Defaults (Dataverse publishes neither its interval formula nor its attempt count, dataverse.md §18, so
/// they come from the anchors in azure-messaging.md §8): first retry after **5 s** (Svix and Standard
/// Webhooks both wait 5 s before their first retry), each delay **×4** (so the 2 h cap is reached at the 7th
/// retry, near Svix's 5 min → 30 min → 2 h climb), delays **capped at 2 h** (Convoy's cap, 7200 s), **±20 %
/// jitter** (Svix), **16 attempts** in total: about 20 h of retrying, so an endpoint down overnight still
/// gets its messages, between Svix's 27.5 h and Convoy/graphile-worker's hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in total (the first one included) before a transiently failing job is Failed.
    pub max_attempts: u32,
    /// Delay before the first retry, seconds.
    pub initial_delay_s: f64,
    /// Each further delay is the previous one times this.
    pub multiplier: f64,
    /// No delay (jitter included) is longer than this, seconds.
    pub max_delay_s: f64,
    /// Each delay is moved by a random fraction in `[-jitter, +jitter]` of itself, so jobs failed together
    /// do not all come back together.
    pub jitter: f64,
    /// Explicit delays before retry 1, 2, … (seconds), replacing `initial_delay_s`/`multiplier`; retries
    /// past its end reuse its last delay. Still capped by `max_delay_s` and jittered.
    pub schedule_s: Option<Vec<f64>>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 16,
            initial_delay_s: 5.0,
            multiplier: 4.0,
            max_delay_s: 7200.0,
            jitter: 0.2,
            schedule_s: None,
        }
    }
}

/// What to do with a job after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Put it in Suspended / Waiting and try again after this delay.
    Retry(Duration),
    /// Put it in Suspended / Waiting with no next attempt: it waits for a user's resume.
    Suspend,
    /// Completed / Failed.
    Fail,
}

impl RetryPolicy {
    /// Checks the values; the error names the field and says why (for `weft.toml` loaders).
    pub fn validate(&self) -> Result<(), String> {
        let secs = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 && Duration::try_from_secs_f64(v).is_ok() {
                Ok(())
            } else {
                Err(format!(
                    "jobs.retry.{name}: {v} is not a duration in seconds (expected a finite number ≥ 0)"
                ))
            }
        };
        if self.max_attempts == 0 {
            return Err(
                "jobs.retry.max_attempts: must be at least 1 (the first attempt counts)".into(),
            );
        }
        secs("initial_delay_s", self.initial_delay_s)?;
        secs("max_delay_s", self.max_delay_s)?;
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "jobs.retry.multiplier: {} must be a finite number ≥ 1 (delays must not shrink)",
                self.multiplier
            ));
        }
        if !(self.jitter.is_finite() && (0.0..1.0).contains(&self.jitter)) {
            return Err(format!(
                "jobs.retry.jitter: {} must be in [0, 1) (a fraction of the delay)",
                self.jitter
            ));
        }
        if let Some(schedule) = &self.schedule_s {
            if schedule.is_empty() {
                return Err(
                    "jobs.retry.schedule_s: must list at least one delay, or be left out".into(),
                );
            }
            for (i, &d) in schedule.iter().enumerate() {
                secs(&format!("schedule_s[{i}]"), d)?;
            }
        }
        Ok(())
    }

    /// The delay before retry `retry` (1 = the retry after the first attempt), before jitter, capped.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let secs = match &self.schedule_s {
            Some(s) if !s.is_empty() => s[(n as usize - 1).min(s.len() - 1)],
            _ => {
                let exp = i32::try_from(n - 1).unwrap_or(i32::MAX);
                self.initial_delay_s * self.multiplier.powi(exp)
            }
        };
        secs_capped(secs, self.max_delay_s)
    }

    /// The jittered delay before retry `retry`; `unit` is a random number in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry).as_secs_f64();
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        secs_capped(base * factor, self.max_delay_s)
    }
}

fn secs_capped(secs: f64, cap: f64) -> Duration {
    let s = if secs.is_finite() {
        secs.clamp(0.0, cap.max(0.0))
    } else {
        cap.max(0.0)
    };
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// Decides what follows failed attempt number `attempt` (1 = the first) of class `class`.
///
/// - Permanent (internal errors): Fail at once — Dataverse does not retry internal errors (§18).
/// - Auth (HTTP 401/403): Suspend — the 2009 error table says "HTTP 401 → Suspend"; 403 is treated the same,
///   because both need someone to fix the endpoint's credentials and retrying on a timer cannot succeed.
/// - PluginRetry: retry until [`PLUGIN_RETRY_ATTEMPTS`] attempts, then Fail.
/// - WebhookGateway: retry until [`WEBHOOK_GATEWAY_ATTEMPTS`] attempts, then Fail.
/// - Transient: retry until `max_attempts`, then Fail.
///
/// The limit is that of the latest failure's class, counted over all the job's attempts. Retries wait the
/// policy's delay; a transient failure's `Retry-After` is honoured when longer (still capped).
pub fn decide(policy: &RetryPolicy, class: &FailureClass, attempt: u32, unit: f64) -> Decision {
    let limit = match class {
        FailureClass::Permanent => return Decision::Fail,
        FailureClass::Auth => return Decision::Suspend,
        FailureClass::PluginRetry => PLUGIN_RETRY_ATTEMPTS,
        FailureClass::WebhookGateway => WEBHOOK_GATEWAY_ATTEMPTS,
        FailureClass::Transient { .. } => policy.max_attempts,
    };
    if attempt >= limit {
        return Decision::Fail;
    }
    let mut delay = policy.delay(attempt, unit);
    if let FailureClass::Transient {
        retry_after: Some(after),
    } = class
    {
        let cap = secs_capped(f64::INFINITY, policy.max_delay_s);
        delay = delay.max((*after).min(cap));
    }
    Decision::Retry(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> FailureClass {
        FailureClass::Transient { retry_after: None }
    }

    /// The default schedule grows ×4 from 5 s and stops at the 2 h cap.
    #[test]
    fn default_schedule_grows_and_caps() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| p.base_delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 20, 80, 320, 1280, 5120, 7200, 7200]);
        assert_eq!(p.validate(), Ok(()));
    }

    /// Jitter stays within ±jitter of the base and never passes the cap.
    #[test]
    fn jitter_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.0).as_millis(), 4000);
        assert_eq!(p.delay(1, 0.5).as_millis(), 5000);
        assert_eq!(p.delay(1, 0.999_999_999).as_secs(), 5); // < 6 s
        assert!(p.delay(1, 0.999_999_999) > Duration::from_millis(5999));
        assert_eq!(p.delay(9, 0.999), Duration::from_secs(7200));
    }

    /// An explicit schedule replaces the exponential one and its last delay repeats.
    #[test]
    fn explicit_schedule_repeats_last() {
        let p = RetryPolicy {
            schedule_s: Some(vec![1.0, 2.5]),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let d: Vec<Duration> = (1..=3).map(|n| p.delay(n, 0.3)).collect();
        assert_eq!(
            d,
            [
                Duration::from_secs(1),
                Duration::from_millis(2500),
                Duration::from_millis(2500)
            ]
        );
    }

    /// Each class gets its rule: permanent fails, auth suspends, plug-in Retry gets 4 attempts, gateway 2.
    #[test]
    fn classes_decide() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(decide(&p, &FailureClass::Permanent, 1, 0.5), Decision::Fail);
        assert_eq!(decide(&p, &FailureClass::Auth, 1, 0.5), Decision::Suspend);
        assert_eq!(
            decide(&p, &FailureClass::PluginRetry, 3, 0.5),
            Decision::Retry(Duration::from_secs(80))
        );
        assert_eq!(
            decide(&p, &FailureClass::PluginRetry, 4, 0.5),
            Decision::Fail
        );
        assert_eq!(
            decide(&p, &FailureClass::WebhookGateway, 1, 0.5),
            Decision::Retry(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&p, &FailureClass::WebhookGateway, 2, 0.5),
            Decision::Fail
        );
        assert_eq!(
            decide(&p, &transient(), 15, 0.5),
            Decision::Retry(Duration::from_secs(7200))
        );
        assert_eq!(decide(&p, &transient(), 16, 0.5), Decision::Fail);
    }

    /// A longer Retry-After wins over the schedule but not over the cap; a shorter one is ignored.
    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let after = |s| FailureClass::Transient {
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            decide(&p, &after(60), 1, 0.5),
            Decision::Retry(Duration::from_secs(60))
        );
        assert_eq!(
            decide(&p, &after(1), 1, 0.5),
            Decision::Retry(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&p, &after(86_400), 1, 0.5),
            Decision::Retry(Duration::from_secs(7200))
        );
    }

    /// Bad values are refused with the field and the reason.
    #[test]
    fn validation_names_the_field() {
        let bad = |p: RetryPolicy| p.validate().unwrap_err();
        assert!(
            bad(RetryPolicy {
                max_attempts: 0,
                ..Default::default()
            })
            .starts_with("jobs.retry.max_attempts")
        );
        assert!(
            bad(RetryPolicy {
                multiplier: 0.5,
                ..Default::default()
            })
            .starts_with("jobs.retry.multiplier")
        );
        assert!(
            bad(RetryPolicy {
                jitter: 1.0,
                ..Default::default()
            })
            .starts_with("jobs.retry.jitter")
        );
        assert!(
            bad(RetryPolicy {
                initial_delay_s: f64::NAN,
                ..Default::default()
            })
            .contains("initial_delay_s")
        );
        assert!(
            bad(RetryPolicy {
                schedule_s: Some(vec![1.0, -2.0]),
                ..Default::default()
            })
            .contains("schedule_s[1]")
        );
        assert!(
            bad(RetryPolicy {
                schedule_s: Some(vec![]),
                ..Default::default()
            })
            .contains("at least one")
        );
    }
}
