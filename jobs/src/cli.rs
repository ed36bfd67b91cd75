//! `weft jobs list|show|retry|cancel|pause|resume|postpone|delete`: the command line over [`crate::views`] and
//! [`crate::ops`].
//!
//! Owns argument parsing and printing. It must not hold rules of its own: transitions are [`crate::ops`]'s.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use uuid::Uuid;
use weft_store::system::{JobState, JobStatus};
use weft_store::{Store, StoreExt};

use crate::ops::{JobAction, apply};
use crate::service::system_clock;
use crate::views::{self, JobView, ListFilter, format_code, format_ms};

/// `weft jobs …`: system jobs (asyncoperation).
#[derive(Debug, Clone, Subcommand)]
pub enum JobsCommand {
    /// Lists system jobs, newest first; `--follow` then prints each new job and each status change.
    List(ListArgs),
    /// Shows one job with its attempts.
    Show {
        /// `asyncoperationid`.
        id: Uuid,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Runs a Suspended (or postponed) job again now.
    Retry {
        /// `asyncoperationid`.
        id: Uuid,
    },
    /// Cancels a Ready, Suspended or Locked job.
    Cancel {
        /// `asyncoperationid`.
        id: Uuid,
    },
    /// Pauses a running (Locked / In Progress) job.
    Pause {
        /// `asyncoperationid`.
        id: Uuid,
    },
    /// Resumes a Suspended job.
    Resume {
        /// `asyncoperationid`.
        id: Uuid,
    },
    /// Postpones a Ready or running job.
    Postpone {
        /// `asyncoperationid`.
        id: Uuid,
        /// When: `+30s`, `+15m`, `+2h`, `+1d` from now, or ms since the Unix epoch.
        #[arg(long)]
        until: String,
    },
    /// Deletes a job and its attempts.
    Delete {
        /// `asyncoperationid`.
        id: Uuid,
    },
}

/// Filters of `weft jobs list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// State: ready, suspended, locked, completed, or its number (0–3).
    #[arg(long)]
    pub state: Option<String>,
    /// Status: waitingforresources, waiting, inprogress, pausing, canceling, succeeded, failed, canceled, or
    /// its number (0, 10, 20, 21, 22, 30, 31, 32).
    #[arg(long)]
    pub status: Option<String>,
    /// Only jobs of this step (`owningextensionid`).
    #[arg(long)]
    pub step: Option<Uuid>,
    /// Only jobs posting to this service endpoint.
    #[arg(long)]
    pub endpoint: Option<Uuid>,
    /// Only this correlation id.
    #[arg(long)]
    pub correlation: Option<Uuid>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Oldest first instead of newest first.
    #[arg(long)]
    pub oldest_first: bool,
    /// Keep printing: a line for each new job and each status change (Ctrl-C to stop).
    #[arg(long, short = 'f', conflicts_with = "json")]
    pub follow: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How often `--follow` looks for new jobs and status changes.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(300);
/// Jobs `--follow` re-reads each poll (the newest): a burst larger than this between two polls is shown
/// by its newest part.
const FOLLOW_WINDOW: u32 = 500;

fn parse_state(s: &str) -> anyhow::Result<JobState> {
    let by_name = match s.to_ascii_lowercase().as_str() {
        "ready" => Some(JobState::Ready),
        "suspended" => Some(JobState::Suspended),
        "locked" => Some(JobState::Locked),
        "completed" => Some(JobState::Completed),
        _ => None,
    };
    match by_name {
        Some(st) => Ok(st),
        None => {
            let n: i32 = s.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--state `{s}`: expected ready, suspended, locked, completed or 0–3"
                )
            })?;
            JobState::try_from(n).map_err(|e| anyhow::anyhow!("--state: {e}"))
        }
    }
}

fn parse_status(s: &str) -> anyhow::Result<JobStatus> {
    let by_name = match s.to_ascii_lowercase().replace([' ', '-', '_'], "").as_str() {
        "waitingforresources" => Some(JobStatus::WaitingForResources),
        "waiting" => Some(JobStatus::Waiting),
        "inprogress" => Some(JobStatus::InProgress),
        "pausing" => Some(JobStatus::Pausing),
        "canceling" => Some(JobStatus::Canceling),
        "succeeded" => Some(JobStatus::Succeeded),
        "failed" => Some(JobStatus::Failed),
        "canceled" => Some(JobStatus::Canceled),
        _ => None,
    };
    match by_name {
        Some(st) => Ok(st),
        None => {
            let n: i32 = s.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--status `{s}`: expected waitingforresources, waiting, inprogress, pausing, canceling, \
                     succeeded, failed, canceled or their numbers"
                )
            })?;
            JobStatus::try_from(n).map_err(|e| anyhow::anyhow!("--status: {e}"))
        }
    }
}

/// Parses `--until`: `+<n>s|m|h|d` from `now`, or ms since the Unix epoch.
pub fn parse_until(s: &str, now: i64) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!(
            "--until `{s}`: expected +<n>s, +<n>m, +<n>h, +<n>d, or ms since the Unix epoch"
        )
    };
    if let Some(rel) = s.strip_prefix('+') {
        let unit = rel.chars().last().ok_or_else(bad)?;
        let scale: i64 = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => bail!(bad()),
        };
        let n: i64 = rel[..rel.len() - 1].parse().map_err(|_| bad())?;
        n.checked_mul(scale)
            .and_then(|d| now.checked_add(d))
            .ok_or_else(bad)
    } else {
        s.parse().map_err(|_| bad())
    }
}

/// One job's line of `weft jobs list`.
fn list_line(j: &JobView) -> String {
    format!(
        "{:<36}  {:<30}  {:<10}  {:>5}  {:<24}  {}",
        j.asyncoperationid,
        format!("{} ({}/{})", j.status, j.statecode, j.statuscode),
        j.messagename,
        j.retrycount,
        j.createdon,
        j.name
    )
}

fn print_list(jobs: &[JobView]) {
    println!(
        "{:<36}  {:<30}  {:<10}  {:>5}  {:<24}  NAME",
        "ASYNCOPERATIONID", "STATUS", "MESSAGE", "RETRY", "CREATEDON"
    );
    for j in jobs {
        println!("{}", list_line(j));
    }
    println!("{} job(s)", jobs.len());
}

/// What `--follow` compares to tell a job changed: status and retries (a retried job keeps its status).
fn follow_key(j: &JobView) -> (i32, i32, i32) {
    (j.statecode, j.statuscode, j.retrycount)
}

/// `--follow`: polls the newest jobs matching `filter` and prints a line for each one not seen before and
/// each one whose status or retry count changed, oldest change first, until the process is stopped.
async fn follow(
    store: Arc<dyn Store>,
    mut filter: ListFilter,
    shown: &[JobView],
) -> anyhow::Result<()> {
    use std::collections::HashMap;
    use std::io::Write as _;
    filter.newest_first = true;
    filter.limit = Some(FOLLOW_WINDOW);
    let mut seen: HashMap<Uuid, (i32, i32, i32)> = shown
        .iter()
        .map(|j| (j.asyncoperationid, follow_key(j)))
        .collect();
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        let f = filter.clone();
        let jobs = read(Arc::clone(&store), move |r| views::list(r, &f)).await?;
        // Newest first from the store; printed oldest first, as a log reads.
        for j in jobs.iter().rev() {
            let key = follow_key(j);
            if seen.insert(j.asyncoperationid, key) != Some(key) {
                println!("{}", list_line(j));
            }
        }
        // Only the window can change what is printed next: the map stays bounded however long this runs.
        if seen.len() > jobs.len() {
            let window: std::collections::HashSet<Uuid> =
                jobs.iter().map(|j| j.asyncoperationid).collect();
            seen.retain(|id, _| window.contains(id));
        }
        std::io::stdout().flush()?;
    }
}

fn print_job(j: &JobView) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("asyncoperationid  {}", j.asyncoperationid);
    println!("name              {}", j.name);
    println!(
        "status            {} ({}/{})",
        j.status, j.statecode, j.statuscode
    );
    println!("messagename       {}", j.messagename);
    println!("primaryentitytype {}", opt(&j.primaryentitytype));
    println!(
        "regardingobjectid {}",
        opt(&j.regardingobjectid.map(|u| u.to_string()))
    );
    println!(
        "owningextensionid {}",
        opt(&j.owningextensionid.map(|u| u.to_string()))
    );
    println!("correlationid     {}", j.correlationid);
    println!("depth             {}", j.depth);
    println!("createdon         {}", j.createdon);
    println!("startedon         {}", opt(&j.startedon));
    println!("completedon       {}", opt(&j.completedon));
    println!("postponeuntil     {}", opt(&j.postponeuntil));
    println!("retrycount        {}", j.retrycount);
    println!("errorcode         {}", opt(&j.errorcode));
    println!("message           {}", opt(&j.message));
    println!("friendlymessage   {}", opt(&j.friendlymessage));
    println!(
        "lease             {} until {}",
        opt(&j.leaseowner),
        opt(&j.leaseexpireson)
    );
    println!("data              {} bytes", j.data_bytes);
    let attempts = j.attempts.as_deref().unwrap_or_default();
    println!("attempts          {}", attempts.len());
    for a in attempts {
        let e = &a.entry;
        println!(
            "  #{:<3} {}  {:<15} http {:<4} {:>6} ms  endpoint {}  worker {}  {}{}",
            a.attempt,
            format_ms(e.started_on),
            e.outcome,
            e.http_status.map_or("-".into(), |c| c.to_string()),
            e.latency_ms,
            e.endpoint_id.map_or("-".into(), |u| u.to_string()),
            e.worker,
            e.error_code
                .map(|c| format!("{} ", format_code(c)))
                .unwrap_or_default(),
            e.message.as_deref().unwrap_or("")
        );
    }
}

/// Runs a `weft jobs` command against `store`, printing to standard output.
pub async fn run(cmd: JobsCommand, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let now = system_clock()();
    let (id, action) = match cmd {
        JobsCommand::List(a) => {
            let filter = ListFilter {
                state: a.state.as_deref().map(parse_state).transpose()?,
                status: a.status.as_deref().map(parse_status).transpose()?,
                step_id: a.step,
                endpoint_id: a.endpoint,
                correlation_id: a.correlation,
                limit: Some(a.limit),
                skip: 0,
                newest_first: !a.oldest_first,
            };
            let f = filter.clone();
            let jobs = read(Arc::clone(&store), move |r| views::list(r, &f)).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print_list(&jobs);
            }
            if a.follow {
                follow(store, filter, &jobs).await?;
            }
            return Ok(());
        }
        JobsCommand::Show { id, json } => {
            let job = read(store, move |r| views::show(r, id))
                .await?
                .with_context(|| format!("system job {id} does not exist"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print_job(&job);
            }
            return Ok(());
        }
        JobsCommand::Retry { id } => (id, JobAction::RetryNow),
        JobsCommand::Cancel { id } => (id, JobAction::Cancel),
        JobsCommand::Pause { id } => (id, JobAction::Pause),
        JobsCommand::Resume { id } => (id, JobAction::Resume),
        JobsCommand::Postpone { id, until } => (
            id,
            JobAction::Postpone {
                until_ms: parse_until(&until, now)?,
            },
        ),
        JobsCommand::Delete { id } => (id, JobAction::Delete),
    };
    match apply(store.as_ref(), id, action, now).await? {
        None => println!("system job {id} deleted"),
        Some(j) => {
            let v = JobView::of(&j);
            println!(
                "system job {id}: {} ({}/{}){}",
                v.status,
                v.statecode,
                v.statuscode,
                v.postponeuntil
                    .map(|p| format!(", postponed until {p}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Runs a read on a blocking thread (the store's reads block).
async fn read<T, F>(store: Arc<dyn Store>, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn weft_store::Read) -> Result<T, weft_store::StoreError> + Send + 'static,
{
    let r = tokio::task::spawn_blocking(move || store.read(f)).await?;
    Ok(r?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--until` accepts relative and absolute times and refuses anything else with the accepted forms.
    #[test]
    fn until_forms() {
        assert_eq!(parse_until("+90s", 1_000).unwrap(), 91_000);
        assert_eq!(parse_until("+2h", 0).unwrap(), 7_200_000);
        assert_eq!(parse_until("1700000000000", 5).unwrap(), 1_700_000_000_000);
        for bad in ["+", "+5x", "+s", "soon", "+99999999999999999d"] {
            let e = parse_until(bad, 0).unwrap_err().to_string();
            assert!(e.contains("expected +<n>s"), "{bad}: {e}");
        }
    }

    /// States and statuses parse by Dataverse name or number; unknown ones say what is accepted.
    #[test]
    fn state_and_status_names() {
        assert_eq!(parse_state("Suspended").unwrap(), JobState::Suspended);
        assert_eq!(parse_state("3").unwrap(), JobState::Completed);
        assert!(
            parse_state("7")
                .unwrap_err()
                .to_string()
                .contains("expected one of")
        );
        assert_eq!(parse_status("in-progress").unwrap(), JobStatus::InProgress);
        assert_eq!(parse_status("31").unwrap(), JobStatus::Failed);
        assert!(
            parse_status("done")
                .unwrap_err()
                .to_string()
                .contains("succeeded")
        );
    }
}
