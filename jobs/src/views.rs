//! Read views of system jobs for the CLI and the API (`asyncoperations`): list with filters, show with attempts.
//!
//! Owns [`JobView`] (Dataverse column names, both codes and labels) and [`ListFilter`]. It must not write.

use std::collections::HashSet;

use serde::Serialize;
use uuid::Uuid;
use weft_store::system::{EventHandler, JobAttempt, JobFilter, JobState, JobStatus, SystemJob};
use weft_store::{Read, StoreError};

use crate::ops::{state_label, status_label};

/// Which jobs to list; all set filters must match. Oldest first unless `newest_first`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this step (`owningextensionid`).
    pub step_id: Option<Uuid>,
    /// Only jobs for this service endpoint: of a step whose event handler is it, or with an attempt posted to it.
    pub endpoint_id: Option<Uuid>,
    /// Only this correlation id.
    pub correlation_id: Option<Uuid>,
    /// At most this many.
    pub limit: Option<u32>,
    /// Skip this many matching jobs first (a page's start).
    pub skip: u64,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

/// A system job as shown to users (column names as Dataverse's `asyncoperation`); never the context itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// `asyncoperationid`.
    pub asyncoperationid: Uuid,
    /// `name`.
    pub name: String,
    /// `operationtype`.
    pub operationtype: i32,
    /// `messagename`.
    pub messagename: String,
    /// `primaryentitytype`.
    pub primaryentitytype: Option<String>,
    /// `regardingobjectid`.
    pub regardingobjectid: Option<Uuid>,
    /// `owningextensionid`.
    pub owningextensionid: Option<Uuid>,
    /// `correlationid`.
    pub correlationid: Uuid,
    /// `depth`.
    pub depth: i32,
    /// `statecode`.
    pub statecode: i32,
    /// `statuscode`.
    pub statuscode: i32,
    /// State and status labels, e.g. `Suspended / Waiting`.
    pub status: String,
    /// `createdon` (ISO 8601 UTC).
    pub createdon: String,
    /// `startedon`.
    pub startedon: Option<String>,
    /// `completedon`.
    pub completedon: Option<String>,
    /// `postponeuntil`: also the next attempt of a Waiting job.
    pub postponeuntil: Option<String>,
    /// `retrycount`.
    pub retrycount: i32,
    /// `errorcode`, as Dataverse prints it (`0x80044306`).
    pub errorcode: Option<String>,
    /// `message`.
    pub message: Option<String>,
    /// `friendlymessage`.
    pub friendlymessage: Option<String>,
    /// Worker holding the lease.
    pub leaseowner: Option<String>,
    /// When the lease ends.
    pub leaseexpireson: Option<String>,
    /// Size of the posted context, bytes.
    pub data_bytes: usize,
    /// Recorded attempts (show only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<JobAttempt>>,
}

impl JobView {
    /// The view of `job`, without attempts.
    pub fn of(job: &SystemJob) -> Self {
        JobView {
            asyncoperationid: job.id,
            name: job.name.clone(),
            operationtype: job.operation_type,
            messagename: job.message_name.clone(),
            primaryentitytype: job.primary_entity_type.clone(),
            regardingobjectid: job.regarding.as_ref().map(|r| r.id),
            owningextensionid: job.owning_extension_id,
            correlationid: job.correlation_id,
            depth: job.depth,
            statecode: job.status.state().value(),
            statuscode: job.status.value(),
            status: format!(
                "{} / {}",
                state_label(job.status.state()),
                status_label(job.status)
            ),
            createdon: format_ms(job.created_on),
            startedon: job.started_on.map(format_ms),
            completedon: job.completed_on.map(format_ms),
            postponeuntil: job.postpone_until.map(format_ms),
            retrycount: job.retry_count,
            errorcode: job.error_code.map(format_code),
            message: job.message.clone(),
            friendlymessage: job.friendly_message.clone(),
            leaseowner: job.lease_owner.clone(),
            leaseexpireson: job.lease_expires_on.map(format_ms),
            data_bytes: job.data.len(),
            attempts: None,
        }
    }
}

/// A Dataverse error code as printed: `0x80044306`.
pub fn format_code(code: i32) -> String {
    format!("0x{:08X}", code as u32)
}

/// ms since the Unix epoch as ISO 8601 UTC with milliseconds (`2026-11-25T21:37:00.000Z`).
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Jobs matching `filter`, oldest first.
pub fn list(r: &dyn Read, filter: &ListFilter) -> Result<Vec<JobView>, StoreError> {
    let jobs = r.system_jobs(&JobFilter {
        state: filter.state,
        status: filter.status,
        owning_extension_id: filter.step_id,
        correlation_id: filter.correlation_id,
        regarding_id: None,
        newest_first: filter.newest_first,
        limit: if filter.endpoint_id.is_some() {
            None
        } else {
            filter.limit
        },
        // With an endpoint the jobs are matched here, so the skip is too.
        skip: if filter.endpoint_id.is_some() {
            0
        } else {
            filter.skip
        },
    })?;
    let mut to_skip = if filter.endpoint_id.is_some() {
        filter.skip
    } else {
        0
    };
    let mut out = Vec::new();
    let endpoint_steps: Option<(Uuid, HashSet<Uuid>)> = match filter.endpoint_id {
        None => None,
        Some(e) => Some((
            e,
            r.steps()?
                .into_iter()
                .filter(|s| s.def.event_handler == EventHandler::ServiceEndpoint(e))
                .map(|s| s.def.id)
                .collect(),
        )),
    };
    for job in &jobs {
        if let Some((endpoint, steps)) = &endpoint_steps {
            let by_step = job.owning_extension_id.is_some_and(|s| steps.contains(&s));
            if !by_step
                && !r
                    .job_attempts(job.id)?
                    .iter()
                    .any(|a| a.entry.endpoint_id == Some(*endpoint))
            {
                continue;
            }
        }
        if to_skip > 0 {
            to_skip -= 1;
            continue;
        }
        out.push(JobView::of(job));
        if filter.limit.is_some_and(|n| out.len() >= n as usize) {
            break;
        }
    }
    Ok(out)
}

/// One job with its attempts; None when it does not exist.
pub fn show(r: &dyn Read, id: Uuid) -> Result<Option<JobView>, StoreError> {
    let Some(job) = r.system_job(id)? else {
        return Ok(None);
    };
    let mut view = JobView::of(&job);
    view.attempts = Some(r.job_attempts(id)?);
    Ok(Some(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times print as ISO 8601 UTC and error codes as Dataverse's hex.
    #[test]
    fn formats() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_642_620_123), "2026-11-25T21:37:00.123Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_code(0x8004_4306_u32 as i32), "0x80044306");
    }
}
