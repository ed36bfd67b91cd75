//! User operations on system jobs (dataverse.md §18): cancel, pause, resume, postpone, retry now, delete.
//!
//! Owns the transition rules and their error messages. Each operation reads the job and writes its new state
//! in one store transaction, so it cannot race a worker recording an attempt. It must not run jobs.
//!
//! A job that is running (Locked / In Progress) cannot be stopped mid-post, so cancel and pause on it go
//! through Dataverse's own intermediate statuses, Canceling (22) and Pausing (21); the worker applies them
//! when it records the attempt (a success stays Succeeded: the post happened).

use std::fmt;

use uuid::Uuid;
use weft_store::system::{JobState, JobStatus, JobUpdate, SystemJob};
use weft_store::{Store, StoreError, StoreExt};

/// A user's request on a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// Ready / Suspended → Completed / Canceled (32); Locked → Locked / Canceling (22), then Canceled.
    Cancel,
    /// Locked / In Progress → Locked / Pausing (21), then Suspended / Waiting when the attempt ends.
    Pause,
    /// Suspended → Ready (the next claim runs it).
    Resume,
    /// Ready or Locked / In Progress: sets `postponeuntil` (ms); the job is not run again before then.
    Postpone {
        /// `postponeuntil`, ms since the Unix epoch; must be in the future.
        until_ms: i64,
    },
    /// Suspended, or Ready but postponed → Ready now.
    RetryNow,
    /// Deletes the job and its attempts, in any state.
    Delete,
}

impl JobAction {
    fn verb(self) -> &'static str {
        match self {
            JobAction::Cancel => "cancel",
            JobAction::Pause => "pause",
            JobAction::Resume => "resume",
            JobAction::Postpone { .. } => "postpone",
            JobAction::RetryNow => "retry",
            JobAction::Delete => "delete",
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            JobAction::Cancel => "Ready, Suspended and Locked / In Progress or Pausing jobs",
            JobAction::Pause => "Locked / In Progress jobs",
            JobAction::Resume => "Suspended jobs",
            JobAction::Postpone { .. } => "Ready and Locked / In Progress jobs",
            JobAction::RetryNow => {
                "Suspended jobs and postponed Ready jobs (completed jobs are final)"
            }
            JobAction::Delete => "any job",
        }
    }
}

/// Why a job operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobOpError {
    /// No such job.
    #[error("system job {0} does not exist")]
    NotFound(Uuid),
    /// The job's state does not allow the operation.
    #[error("cannot {action} system job {id}: it is {status}; {action} applies to {allowed}")]
    InvalidTransition {
        /// The job.
        id: Uuid,
        /// The operation's verb.
        action: &'static str,
        /// Its state and status, e.g. `Completed / Succeeded (3/30)`.
        status: StatusName,
        /// Which states allow it.
        allowed: &'static str,
    },
    /// Postpone to a time that is not in the future.
    #[error("cannot postpone system job {id}: {until} is not in the future (now is {now})")]
    PostponeNotInFuture {
        /// The job.
        id: Uuid,
        /// Requested `postponeuntil`, formatted.
        until: String,
        /// The clock now, formatted.
        now: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A status with its state, printed as Dataverse shows them: `Locked / In Progress (2/20)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusName(pub JobStatus);

impl fmt::Display for StatusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "{} / {} ({}/{})",
            state_label(s.state()),
            status_label(s),
            s.state().value(),
            s.value()
        )
    }
}

/// Dataverse's label of a `statecode`.
pub fn state_label(s: JobState) -> &'static str {
    match s {
        JobState::Ready => "Ready",
        JobState::Suspended => "Suspended",
        JobState::Locked => "Locked",
        JobState::Completed => "Completed",
    }
}

/// Dataverse's label of a `statuscode`.
pub fn status_label(s: JobStatus) -> &'static str {
    match s {
        JobStatus::WaitingForResources => "Waiting For Resources",
        JobStatus::Waiting => "Waiting",
        JobStatus::InProgress => "In Progress",
        JobStatus::Pausing => "Pausing",
        JobStatus::Canceling => "Canceling",
        JobStatus::Succeeded => "Succeeded",
        JobStatus::Failed => "Failed",
        JobStatus::Canceled => "Canceled",
    }
}

/// The update `action` makes to `job` at `now` (None = delete), or why it is refused.
pub fn transition(
    job: &SystemJob,
    action: JobAction,
    now: i64,
) -> Result<Option<JobUpdate>, JobOpError> {
    let refuse = || JobOpError::InvalidTransition {
        id: job.id,
        action: action.verb(),
        status: StatusName(job.status),
        allowed: action.allowed(),
    };
    let to = |status, postpone_until, completed_on| {
        Ok(Some(JobUpdate {
            status,
            postpone_until,
            completed_on,
            error: None,
            count_retry: false,
        }))
    };
    use JobStatus::*;
    match (action, job.status) {
        (JobAction::Delete, _) => Ok(None),
        (JobAction::Cancel, WaitingForResources | Waiting) => to(Canceled, None, Some(now)),
        (JobAction::Cancel, InProgress | Pausing) => to(Canceling, job.postpone_until, None),
        (JobAction::Pause, InProgress) => to(Pausing, job.postpone_until, None),
        (JobAction::Resume, Waiting) => to(WaitingForResources, None, None),
        (JobAction::Postpone { until_ms }, WaitingForResources | InProgress) => {
            if until_ms <= now {
                return Err(JobOpError::PostponeNotInFuture {
                    id: job.id,
                    until: crate::views::format_ms(until_ms),
                    now: crate::views::format_ms(now),
                });
            }
            to(job.status, Some(until_ms), None)
        }
        (JobAction::RetryNow, Waiting) => to(WaitingForResources, None, None),
        (JobAction::RetryNow, WaitingForResources)
            if job.postpone_until.is_some_and(|p| p > now) =>
        {
            to(WaitingForResources, None, None)
        }
        _ => Err(refuse()),
    }
}

/// Applies `action` to job `id` in one transaction; returns the job as it is afterwards (None once deleted).
pub async fn apply(
    store: &dyn Store,
    id: Uuid,
    action: JobAction,
    now: i64,
) -> Result<Option<SystemJob>, JobOpError> {
    store
        .transact_async(move |tx| {
            let job = tx.system_job(id)?.ok_or(JobOpError::NotFound(id))?;
            match transition(&job, action, now)? {
                None => {
                    tx.delete_job(id)?;
                    Ok(None)
                }
                Some(update) => {
                    tx.update_job(id, &update)?;
                    Ok(tx.system_job(id)?)
                }
            }
        })
        .await
}
