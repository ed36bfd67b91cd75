//! `weft bench …`: capacity measurements a user can run on their own hardware,
//! each with its floor measured in the same run.

pub mod api;
pub mod delivery;
pub mod sandbox;

use std::time::Duration;
use weft_store::system::{JobFilter, JobStatus};
use weft_store::{Store, StoreExt};

/// Percentiles of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// p50 and p99 of `samples` (sorted in place). Empty input gives zeros.
pub fn percentiles(samples: &mut [Duration]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles {
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        };
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Whether a system job still waits or runs (a status of state Ready, Suspended or Locked).
pub(crate) fn jobs_pending(store: &dyn Store) -> anyhow::Result<bool> {
    Ok(store.read(|r| {
        let mut any = false;
        for status in [
            JobStatus::WaitingForResources,
            JobStatus::Waiting,
            JobStatus::InProgress,
            JobStatus::Pausing,
            JobStatus::Canceling,
        ] {
            any |= !r
                .system_jobs(&JobFilter {
                    status: Some(status),
                    limit: Some(1),
                    ..JobFilter::default()
                })?
                .is_empty();
        }
        Ok::<_, weft_store::StoreError>(any)
    })?)
}

/// How many system jobs succeeded.
pub(crate) fn jobs_succeeded(store: &dyn Store) -> anyhow::Result<usize> {
    Ok(store
        .read(|r| {
            r.system_jobs(&JobFilter {
                status: Some(JobStatus::Succeeded),
                ..JobFilter::default()
            })
        })?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles pick the right ranks whatever the input order.
    #[test]
    fn percentiles_pick_ranks() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let p = percentiles(&mut samples);
        assert_eq!(p.p50, Duration::from_micros(51));
        assert_eq!(p.p99, Duration::from_micros(99));
        assert_eq!(percentiles(&mut []).p50, Duration::ZERO);
    }
}
