//! The asynchronous service: workers that claim system jobs with a lease, run them and record what came of it.
//!
//! Owns the worker loop (claim due jobs → run each under a timeout → record the attempt and the job's next
//! state in one transaction; a worker keeps up to `batch_size` attempts in flight and claims more as they are
//! recorded), wake-ups ([`Notifier`]), graceful shutdown, and the settling of jobs whose
//! worker died while they were Pausing/Canceling. It must not know transports (the [`JobRunner`] classifies
//! failures) nor the retry arithmetic (that is [`crate::policy`]).
//!
//! Lease model: a claim makes a job Locked / In Progress for `lease`; the worker must record the outcome
//! before the lease ends (the run timeout is shorter than the lease, which [`ServiceConfig::validate`]
//! checks). If the worker dies, the job's lease expires and the next claim anywhere takes it over: no job is
//! lost and none stays Locked. A worker that comes back late finds the lease gone (its attempt is still
//! recorded, the job's state is not touched), so a job is never finished twice.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;
use weft_store::system::{
    JobError, JobLease, JobState, JobStatus, JobUpdate, NewJobAttempt, SystemJob,
};
use weft_store::{Store, StoreError, StoreExt, Tx};

use crate::policy::{Decision, RetryPolicy, decide};
use crate::runner::{FailureClass, JobOutcome, JobRunner};

/// A clock in ms since the Unix epoch; injectable so tests move time instead of sleeping.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// How the service runs.
#[derive(Clone)]
pub struct ServiceConfig {
    /// Concurrent workers, each claiming its own jobs.
    pub workers: usize,
    /// Most attempts one worker has in flight (and so most jobs one claim takes); it claims again once half
    /// of them are recorded.
    pub batch_size: u32,
    /// How long a claim holds a job; after it another worker may take the job over.
    pub lease: Duration,
    /// An attempt still running after this is abandoned and counted as a transient failure (timeout).
    pub run_timeout: Duration,
    /// How often an idle worker looks for due jobs (retries coming due, postponed jobs) without a notify.
    pub poll_interval: Duration,
    /// Retry schedule and limits.
    pub retry: RetryPolicy,
    /// Worker ids are `<prefix>-<n>`; unique per process so leases name who holds them.
    pub worker_prefix: String,
    /// The clock deciding claims, leases and next attempts.
    pub clock: Clock,
}

impl Default for ServiceConfig {
    /// 2 workers (the dev machine has 2 cores) with 128 attempts in flight each (`weft bench delivery`: 64
    /// took about 10 % less CPU per job than 32, from larger group commits in the store and the bus; 128
    /// delivered 19 % more jobs per second than 64, median of seven alternated runs, where the two cores are
    /// not busy but wait on the writers' fsyncs; 256 no more than 128), 5 min lease over a
    /// 2 min run timeout (the webhook's 60 s timeout plus the pipeline's 2-minute operation limit fit),
    /// 250 ms poll.
    fn default() -> Self {
        ServiceConfig {
            workers: 2,
            batch_size: 128,
            lease: Duration::from_secs(300),
            run_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(250),
            retry: RetryPolicy::default(),
            worker_prefix: format!(
                "weft-{}-{}",
                std::process::id(),
                &Uuid::new_v4().simple().to_string()[..8]
            ),
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("workers", &self.workers)
            .field("batch_size", &self.batch_size)
            .field("lease", &self.lease)
            .field("run_timeout", &self.run_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("retry", &self.retry)
            .field("worker_prefix", &self.worker_prefix)
            .finish_non_exhaustive()
    }
}

impl ServiceConfig {
    /// Checks the values; the error says which and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == 0 || self.batch_size == 0 {
            return Err("jobs: workers and batch_size must be at least 1".into());
        }
        if self.run_timeout >= self.lease {
            return Err(format!(
                "jobs: run_timeout ({:?}) must be shorter than the lease ({:?}), or a slow attempt would be taken \
                 over and run twice",
                self.run_timeout, self.lease
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(
                "jobs: poll_interval must be more than 0 (an idle worker would spin)".into(),
            );
        }
        self.retry.validate()
    }
}

/// Wakes idle workers at once (e.g. the pipeline, after committing an operation that wrote jobs).
#[derive(Clone, Default)]
pub struct Notifier(Arc<Notify>);

impl Notifier {
    /// Wakes every idle worker; a worker busy claiming looks again before it sleeps.
    pub fn notify(&self) {
        self.0.notify_waiters();
    }
}

struct Shared<R> {
    store: Arc<dyn Store>,
    runner: Arc<R>,
    config: ServiceConfig,
    notify: Notifier,
}

/// The running service. Stop it with [`AsyncService::shutdown`]; dropping it also stops the workers, without
/// waiting for them.
pub struct AsyncService {
    notify: Notifier,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl AsyncService {
    /// Starts `config.workers` workers on the current tokio runtime.
    pub fn start<R: JobRunner>(
        store: Arc<dyn Store>,
        runner: Arc<R>,
        config: ServiceConfig,
    ) -> Result<Self, String> {
        config.validate()?;
        let notify = Notifier::default();
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            runner,
            notify: notify.clone(),
            config,
        });
        let workers = (0..shared.config.workers)
            .map(|n| {
                let id = format!("{}-{n}", shared.config.worker_prefix);
                tokio::spawn(worker(shared.clone(), id, stopped.clone()))
            })
            .collect();
        Ok(AsyncService {
            notify,
            stop,
            workers,
        })
    }

    /// A handle that wakes the workers; cheap to clone and keep (the pipeline calls it after commit).
    pub fn notifier(&self) -> Notifier {
        self.notify.clone()
    }

    /// Wakes idle workers now.
    pub fn notify(&self) {
        self.notify.notify();
    }

    /// Stops claiming, lets every attempt in flight finish and be recorded (at most the run timeout), then
    /// returns. Nothing is left Locked by this service.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for w in self.workers.drain(..) {
            if let Err(e) = w.await {
                tracing::error!(error = %e, "a jobs worker ended abnormally");
            }
        }
    }
}

impl Drop for AsyncService {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One worker: keeps up to `batch_size` attempts in flight, claiming more as soon as half of them are
/// recorded, so one slow attempt holds one slot instead of stalling every claim behind it (a worker that waited
/// for its whole batch ran claim, posts and records one after the other, each its own fsync).
async fn worker<R: JobRunner>(shared: Arc<Shared<R>>, id: String, mut stop: watch::Receiver<bool>) {
    let capacity = shared.config.batch_size as usize;
    // Claim again once this many slots are free: fewer, larger claims than one per finished attempt.
    let refill = capacity.div_ceil(2);
    let mut running = JoinSet::new();
    // The last claim found fewer due jobs than it asked for: claim again only when woken (a notify or the
    // poll interval), not each time an attempt ends.
    let mut drained = false;
    // Registered before each claim and kept until it fires, so a notify landing while we claim or wait on an
    // attempt is not lost.
    let notify = Arc::clone(&shared.notify.0);
    let mut notified = Box::pin(notify.notified());
    notified.as_mut().enable();
    let poll = tokio::time::sleep(shared.config.poll_interval);
    tokio::pin!(poll);
    loop {
        if *stop.borrow() {
            break;
        }
        let free = capacity - running.len();
        if !drained && free >= refill {
            match claim(&shared, &id, free).await {
                Ok(jobs) => {
                    drained = jobs.len() < free;
                    for job in jobs {
                        running.spawn(attempt(Arc::clone(&shared), id.clone(), job));
                    }
                }
                Err(StoreError::Closed) => break,
                Err(e) => {
                    tracing::warn!(worker = %id, error = %e, "cannot claim system jobs");
                    drained = true;
                }
            }
            continue;
        }
        tokio::select! {
            Some(ended) = running.join_next(), if !running.is_empty() => {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "a job task ended abnormally");
                }
            }
            _ = notified.as_mut() => {
                drained = false;
                notified.set(notify.notified());
                notified.as_mut().enable();
            }
            _ = poll.as_mut() => {
                drained = false;
                poll.as_mut()
                    .reset(tokio::time::Instant::now() + shared.config.poll_interval);
            }
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    // Shutting down: claim nothing more, let every attempt in flight finish and be recorded.
    while let Some(ended) = running.join_next().await {
        if let Err(e) = ended {
            tracing::error!(error = %e, "a job task ended abnormally");
        }
    }
}

async fn claim<R>(
    shared: &Shared<R>,
    worker: &str,
    limit: usize,
) -> Result<Vec<SystemJob>, StoreError> {
    let now = (shared.config.clock)();
    let lease_ms = i64::try_from(shared.config.lease.as_millis()).unwrap_or(i64::MAX);
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let max_attempts = shared.config.retry.max_attempts;
    let worker = worker.to_string();
    shared
        .store
        .transact_async(move |tx| {
            settle_abandoned(tx, now, max_attempts)?;
            tx.claim_jobs(&worker, now, lease_ms, limit)
        })
        .await
}

/// Locked jobs whose lease expired (their worker died or hung), settled before a claim:
/// - In Progress: the lost attempt is recorded (`abandoned`), so every attempt shows in the history and a
///   job that kills its worker every time cannot loop forever — once its attempts reach `max_attempts` it is
///   Failed instead of taken over again; otherwise it goes back to Ready and a claim takes it over.
/// - Pausing → Suspended / Waiting (waiting for a resume); Canceling → Completed / Canceled. The claim does
///   not take these over, so without this they would stay Locked.
fn settle_abandoned(tx: &mut dyn Tx, now: i64, max_attempts: u32) -> Result<(), StoreError> {
    let expired = tx.expired_job_leases(now)?;
    for j in expired {
        let update = |status, completed_on, error| JobUpdate {
            status,
            postpone_until: None,
            completed_on,
            error,
            count_retry: false,
        };
        match j.status {
            JobStatus::Pausing => tx.update_job(j.id, &update(JobStatus::Waiting, None, None))?,
            JobStatus::Canceling => {
                tx.update_job(j.id, &update(JobStatus::Canceled, Some(now), None))?
            }
            _ => {
                let owner = j.lease_owner.clone().unwrap_or_default();
                let message = format!(
                    "worker `{owner}` did not finish the attempt within its lease (it died or hung); taken over"
                );
                let number = tx.insert_job_attempt(&NewJobAttempt {
                    job_id: j.id,
                    worker: owner,
                    started_on: j.started_on.unwrap_or(now),
                    endpoint_id: None,
                    http_status: None,
                    latency_ms: 0,
                    outcome: "abandoned".into(),
                    error_code: None,
                    message: Some(message.clone()),
                })?;
                if u32::try_from(number).unwrap_or(u32::MAX) >= max_attempts {
                    let friendly = format!(
                        "Failed after {number} attempts; the last was abandoned: {message}"
                    );
                    let error = JobError {
                        code: None,
                        message,
                        friendly_message: Some(friendly),
                    };
                    tx.update_job(j.id, &update(JobStatus::Failed, Some(now), Some(error)))?;
                } else {
                    // Back to Ready (lease released) so the abandoned attempt is recorded once, whichever
                    // claim takes the job over.
                    tx.update_job(
                        j.id,
                        &JobUpdate {
                            count_retry: true,
                            ..update(JobStatus::WaitingForResources, None, None)
                        },
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// One claimed job: runs the attempt, then records it.
async fn attempt<R: JobRunner>(shared: Arc<Shared<R>>, worker: String, job: SystemJob) {
    let id = job.id;
    let started_on = (shared.config.clock)();
    let t0 = Instant::now();
    let outcome = run_one(&shared, job).await;
    let elapsed = t0.elapsed();
    if let Err(e) = record(&shared, &worker, id, started_on, elapsed, outcome).await {
        tracing::warn!(job = %id, worker = %worker, error = %e, "cannot record a job attempt; the lease will expire and the job run again");
    }
}

/// Runs one attempt under the run timeout, in the attempt's own task: a panicking runner fails the attempt
/// instead of the worker (caught here rather than by a task of its own, which cost a spawn and a wake-up
/// per job).
async fn run_one<R: JobRunner>(shared: &Arc<Shared<R>>, job: SystemJob) -> JobOutcome {
    let mut run = std::pin::pin!(shared.runner.run(&job));
    let caught =
        std::future::poll_fn(
            |cx| match catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx))) {
                Ok(Poll::Ready(outcome)) => Poll::Ready(Ok(outcome)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(panic) => Poll::Ready(Err(panic)),
            },
        );
    match tokio::time::timeout(shared.config.run_timeout, caught).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => JobOutcome::failed(
            FailureClass::Permanent,
            format!(
                "the job runner failed: it panicked: {}",
                panic_text(&*panic)
            ),
        ),
        // The attempt's future is dropped here, which stops it.
        Err(_) => JobOutcome::failed(
            FailureClass::Transient { retry_after: None },
            format!(
                "the attempt timed out after {:?}",
                shared.config.run_timeout
            ),
        ),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// What recording an attempt did to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Done,
    LeaseLost,
    Gone,
}

/// Records one attempt in one store transaction: its attempt row, and the job's next state while this
/// worker still holds the lease (a lost lease or a deleted job is logged, not an error).
async fn record<R>(
    shared: &Shared<R>,
    worker: &str,
    id: Uuid,
    started_on: i64,
    elapsed: Duration,
    outcome: JobOutcome,
) -> Result<(), StoreError> {
    let now = (shared.config.clock)();
    let policy = shared.config.retry.clone();
    let unit = fastrand::f64();
    let attempt = NewJobAttempt {
        job_id: id,
        worker: worker.to_string(),
        started_on,
        endpoint_id: outcome.endpoint_id,
        http_status: outcome.status_code.map(i32::from),
        latency_ms: i64::try_from(outcome.latency.unwrap_or(elapsed).as_millis())
            .unwrap_or(i64::MAX),
        outcome: match &outcome.failure {
            Some(class) => class.label(),
            None if outcome.canceled => "canceled",
            None => "succeeded",
        }
        .to_string(),
        error_code: outcome.error_code,
        message: outcome.message.clone(),
    };
    // weft-console's /metrics: attempts by outcome and the post's latency (outcome labels only).
    metrics::counter!("weft_job_attempts_total", "outcome" => attempt.outcome.clone()).increment(1);
    metrics::histogram!("weft_delivery_latency_seconds", "outcome" => attempt.outcome.clone())
        .record(attempt.latency_ms as f64 / 1000.0);
    if let Some(class) = &outcome.failure {
        // The attempt's message may quote an endpoint's answer: it stays in the attempt row, where
        // secrets are redacted; the log line names the class and status only.
        tracing::warn!(job = %id, endpoint = ?outcome.endpoint_id, http_status = ?outcome.status_code,
            "system job attempt failed ({})", class.label());
    }
    let worker = worker.to_string();
    let recorded = shared
        .store
        .transact_async(move |tx| {
            let Some(job) = tx.system_job_lease(id)? else {
                return Ok(Recorded::Gone); // deleted while it ran
            };
            let number = tx.insert_job_attempt(&attempt)?;
            if job.status.state() != JobState::Locked
                || job.lease_owner.as_deref() != Some(worker.as_str())
            {
                return Ok(Recorded::LeaseLost);
            }
            let update = next_state(&job, &outcome, number, &policy, now, unit);
            tx.update_job(id, &update)?;
            if update.status == JobStatus::Succeeded && auto_delete(tx, &job)? {
                tx.delete_job(id)?;
            }
            Ok::<_, StoreError>(Recorded::Done)
        })
        .await?;
    if recorded == Recorded::LeaseLost {
        tracing::warn!(job = %id, "attempt finished after the lease was taken over; recorded, job state left alone");
    }
    Ok(())
}

fn auto_delete(tx: &dyn Tx, job: &JobLease) -> Result<bool, StoreError> {
    match job.owning_extension_id {
        Some(step) => Ok(tx.step_async_auto_delete(step)? == Some(true)),
        None => Ok(false),
    }
}

/// The job's state after attempt `attempt` ended with `outcome` (the job as read in the recording transaction,
/// so a pause, cancel or postpone requested while it ran is honoured).
fn next_state(
    job: &JobLease,
    outcome: &JobOutcome,
    attempt: i32,
    policy: &RetryPolicy,
    now: i64,
    unit: f64,
) -> JobUpdate {
    let Some(class) = &outcome.failure else {
        if outcome.canceled {
            return JobUpdate {
                status: JobStatus::Canceled,
                postpone_until: None,
                completed_on: Some(now),
                error: Some(JobError {
                    code: None,
                    message: outcome.message.clone().unwrap_or_default(),
                    friendly_message: None,
                }),
                count_retry: false,
            };
        }
        // Done is done: a pause or cancel that came while the post succeeded cannot undo it.
        return JobUpdate {
            status: JobStatus::Succeeded,
            postpone_until: None,
            completed_on: Some(now),
            error: None,
            count_retry: false,
        };
    };
    let message = outcome
        .message
        .clone()
        .unwrap_or_else(|| class.label().to_string());
    let http = outcome
        .status_code
        .map(|c| format!(" (HTTP {c})"))
        .unwrap_or_default();
    let error = |friendly: String| {
        Some(JobError {
            code: outcome.error_code,
            message: message.clone(),
            friendly_message: Some(friendly),
        })
    };
    let n = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
    let completed = |status, friendly: String| JobUpdate {
        status,
        postpone_until: None,
        completed_on: Some(now),
        error: error(friendly),
        count_retry: false,
    };
    if job.status == JobStatus::Canceling {
        return completed(
            JobStatus::Canceled,
            format!("Canceled by a user while attempt {n} ran; it failed{http}: {message}"),
        );
    }
    let suspended = |friendly: String| JobUpdate {
        status: JobStatus::Waiting,
        postpone_until: None,
        completed_on: None,
        error: error(friendly),
        count_retry: true,
    };
    match decide(policy, class, n, unit) {
        Decision::Fail if matches!(class, FailureClass::Permanent) => completed(
            JobStatus::Failed,
            format!(
                "Attempt {n} failed with an internal error{http}; internal errors are not retried: {message}"
            ),
        ),
        Decision::Fail => completed(
            JobStatus::Failed,
            format!(
                "Failed after {n} attempts ({}){http}: {message}",
                class.label()
            ),
        ),
        Decision::Suspend => suspended(format!(
            "Suspended: the endpoint refused the credentials{http}. Fix the service endpoint's authentication, \
             then resume the job."
        )),
        Decision::Retry(_) if job.status == JobStatus::Pausing => suspended(format!(
            "Paused by a user while attempt {n} ran; it failed{http}: {message}. Resume to try again."
        )),
        Decision::Retry(delay) => {
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            let mut at = now.saturating_add(delay_ms);
            // A user postponed it while it ran: not before then.
            if let Some(p) = job.postpone_until.filter(|&p| p > at) {
                at = p;
            }
            JobUpdate {
                status: JobStatus::Waiting,
                postpone_until: Some(at),
                completed_on: None,
                error: error(format!(
                    "Attempt {n} failed ({}){http}; next attempt in {:.1} s: {message}",
                    class.label(),
                    (at - now) as f64 / 1000.0
                )),
                count_retry: true,
            }
        }
    }
}
