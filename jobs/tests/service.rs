//! The asynchronous service against a real SQLite store: delivery, retries per failure class, leases,
//! wake-ups, auto-delete, shutdown and exactly-once success under concurrent workers.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use uuid::Uuid;
use weft_jobs::{AsyncService, FailureClass, JobAction, JobOutcome, apply, system_clock};
use weft_store::system::*;
use weft_store::{StoreError, StoreExt};

fn transient(status: u16) -> JobOutcome {
    JobOutcome::failed(
        FailureClass::Transient { retry_after: None },
        "endpoint unavailable",
    )
    .status(status)
    .error_code(0x8004_4306_u32 as i32)
}

/// While a job waits for its next attempt, move the clock to it and wake the service; returns the final job.
async fn drive_to_completion(
    store: &Arc<weft_store::SqliteStore>,
    svc: &AsyncService,
    clock: &TestClock,
    id: Uuid,
) -> SystemJob {
    let mut seen_retries = -1;
    loop {
        let j = wait_for(store, id, "waiting again or completed", |j| {
            j.is_some_and(|j| {
                j.status.state() == JobState::Completed
                    || (j.status == JobStatus::Waiting && j.retry_count > seen_retries)
            })
        })
        .await
        .unwrap();
        if j.status.state() == JobState::Completed {
            return j;
        }
        seen_retries = j.retry_count;
        clock.set(j.postpone_until.expect("a retry has a next attempt time"));
        svc.notify();
    }
}

/// A job that succeeds is Completed / Succeeded with one recorded attempt; id and createdon are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_path() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let endpoint = Uuid::new_v4();
    let runner = Scripted::new(move |_, _| {
        JobOutcome::succeeded()
            .endpoint(endpoint)
            .status(201)
            .latency(Duration::from_millis(12))
    });
    let id = insert(&store, new_job("ok"));
    let created = job(&store, id).unwrap().created_on;
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 2)).unwrap();
    let j = wait_for(&store, id, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await
    .unwrap();
    svc.shutdown().await;
    assert_eq!((j.status.state().value(), j.status.value()), (3, 30));
    assert_eq!((j.id, j.created_on), (id, created));
    assert_eq!((j.started_on, j.completed_on), (Some(T0), Some(T0)));
    assert_eq!((j.retry_count, j.lease_owner.as_deref()), (0, None));
    assert_eq!(runner.calls(id), 1);
    let attempts = store.read(|r| r.job_attempts(id)).unwrap();
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!((a.attempt, a.entry.outcome.as_str()), (1, "succeeded"));
    assert_eq!(
        (a.entry.endpoint_id, a.entry.http_status, a.entry.latency_ms),
        (Some(endpoint), Some(201), 12)
    );
    assert!(a.entry.worker.starts_with("test-"), "{}", a.entry.worker);
}

/// Transient failures put the job in Suspended / Waiting with the configured backoff (10 s, then 20 s); it is
/// delivered once the runner recovers, every attempt recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_wait_with_backoff_then_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|_, n| {
        if n <= 2 {
            transient(503)
        } else {
            JobOutcome::succeeded()
        }
    });
    let id = insert(&store, new_job("flaky"));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();

    let j = wait_for(&store, id, "waiting", |j| {
        j.is_some_and(|j| j.retry_count == 1)
    })
    .await
    .unwrap();
    assert_eq!((j.status.state().value(), j.status.value()), (1, 10));
    assert_eq!(j.postpone_until, Some(T0 + 10_000));
    assert_eq!(j.error_code, Some(0x8004_4306_u32 as i32));
    assert_eq!(j.message.as_deref(), Some("endpoint unavailable"));
    let friendly = j.friendly_message.unwrap();
    assert!(
        friendly.contains("Attempt 1 failed (transient) (HTTP 503); next attempt in 10.0 s"),
        "{friendly}"
    );

    clock.advance(9_999); // not yet due: a notify must not run it
    svc.notify();
    clock.advance(1);
    svc.notify();
    let j = wait_for(&store, id, "waiting twice", |j| {
        j.is_some_and(|j| j.retry_count == 2)
    })
    .await
    .unwrap();
    assert_eq!(j.postpone_until, Some(T0 + 10_000 + 20_000));
    clock.set(T0 + 30_000);
    svc.notify();
    let j = wait_for(&store, id, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await
    .unwrap();
    svc.shutdown().await;
    assert_eq!((j.retry_count, j.completed_on), (2, Some(T0 + 30_000)));
    assert_eq!(runner.calls(id), 3);
    let attempts = store.read(|r| r.job_attempts(id)).unwrap();
    let summary: Vec<(i32, &str, Option<i32>, i64)> = attempts
        .iter()
        .map(|a| {
            (
                a.attempt,
                a.entry.outcome.as_str(),
                a.entry.http_status,
                a.entry.started_on,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "transient", Some(503), T0),
            (2, "transient", Some(503), T0 + 10_000),
            (3, "succeeded", None, T0 + 30_000)
        ]
    );
}

/// A transient failure on every attempt ends Failed after max_attempts (5), with 5 attempts recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_fail_when_attempts_are_spent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|_, _| transient(500));
    let id = insert(&store, new_job("down"));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    let j = drive_to_completion(&store, &svc, &clock, id).await;
    svc.shutdown().await;
    assert_eq!((j.status.state().value(), j.status.value()), (3, 31));
    assert_eq!((runner.calls(id), j.retry_count), (5, 4));
    // 10 + 20 + 40 + 80 s of backoff.
    assert_eq!(j.completed_on, Some(T0 + 150_000));
    assert!(
        j.friendly_message
            .unwrap()
            .starts_with("Failed after 5 attempts (transient) (HTTP 500)")
    );
}

/// An internal (permanent) error fails the job at once: one attempt, no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|_, _| {
        JobOutcome::failed(
            FailureClass::Permanent,
            "plug-in threw InvalidPluginExecutionException",
        )
        .error_code(0x8004_0265_u32 as i32)
    });
    let id = insert(&store, new_job("bad"));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    let j = wait_for(&store, id, "completed", |j| {
        j.is_some_and(|j| j.status.state() == JobState::Completed)
    })
    .await
    .unwrap();
    svc.shutdown().await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!((j.retry_count, runner.calls(id)), (0, 1));
    assert_eq!(j.error_code, Some(0x8004_0265_u32 as i32));
    assert!(
        j.friendly_message
            .unwrap()
            .contains("internal errors are not retried")
    );
}

/// A runner that panics fails its attempt as an internal error (Failed, the panic's text recorded); the
/// worker goes on: the jobs claimed with the panicked one, and one written later, succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_runner_fails_the_attempt_not_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|j, _| {
        assert!(j.name != "explodes", "runner blew up on purpose");
        JobOutcome::succeeded()
    });
    let bad = insert(&store, new_job("explodes"));
    let good: Vec<Uuid> = (0..5)
        .map(|i| insert(&store, new_job(&format!("fine {i}"))))
        .collect();
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    let j = wait_for(&store, bad, "completed", |j| {
        j.is_some_and(|j| j.status.state() == JobState::Completed)
    })
    .await
    .unwrap();
    for id in &good {
        wait_for(&store, *id, "succeeded", |j| {
            j.is_some_and(|j| j.status == JobStatus::Succeeded)
        })
        .await;
    }
    // The worker still claims: a job written now is delivered too.
    let later = insert(&store, new_job("later"));
    svc.notify();
    wait_for(&store, later, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    svc.shutdown().await;
    assert_eq!((j.status, j.retry_count), (JobStatus::Failed, 0));
    let message = j.message.unwrap();
    assert!(
        message.contains("panicked") && message.contains("runner blew up on purpose"),
        "{message}"
    );
    let attempts = store.read(|r| r.job_attempts(bad)).unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].entry.outcome, "permanent");
}

/// OperationStatus.Retry from a plug-in gives exactly 4 attempts in total, whatever max_attempts says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_retry_gets_four_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner =
        Scripted::new(|_, _| JobOutcome::failed(FailureClass::PluginRetry, "try again later"));
    let id = insert(&store, new_job("retrying plug-in"));
    let mut cfg = config(&clock, 2);
    cfg.retry.max_attempts = 10;
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), cfg).unwrap();
    let j = drive_to_completion(&store, &svc, &clock, id).await;
    svc.shutdown().await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(runner.calls(id), 4);
    assert_eq!(store.read(|r| r.job_attempts(id)).unwrap().len(), 4);
    assert!(
        j.friendly_message
            .unwrap()
            .starts_with("Failed after 4 attempts (plugin-retry)")
    );
}

/// A webhook's 502/503/504 gets exactly one more attempt: two in total, then Failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gateway_gets_exactly_one_more_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|_, n| {
        JobOutcome::failed(FailureClass::WebhookGateway, "bad gateway").status(if n == 1 {
            502
        } else {
            504
        })
    });
    let id = insert(&store, new_job("webhook"));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    let j = drive_to_completion(&store, &svc, &clock, id).await;
    svc.shutdown().await;
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!((runner.calls(id), j.retry_count), (2, 1));
    let statuses: Vec<Option<i32>> = store
        .read(|r| r.job_attempts(id))
        .unwrap()
        .iter()
        .map(|a| a.entry.http_status)
        .collect();
    assert_eq!(statuses, [Some(502), Some(504)]);
}

/// HTTP 401 suspends the job with no next attempt (the clock moving on does not run it); a resume runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_suspends_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|j, n| {
        if j.name == "auth" && n == 1 {
            JobOutcome::failed(FailureClass::Auth, "401 Unauthorized: SAS token rejected")
                .status(401)
        } else {
            JobOutcome::succeeded()
        }
    });
    let id = insert(&store, new_job("auth"));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    let j = wait_for(&store, id, "suspended", |j| {
        j.is_some_and(|j| j.retry_count == 1)
    })
    .await
    .unwrap();
    assert_eq!(
        (j.status.state().value(), j.status.value(), j.postpone_until),
        (1, 10, None)
    );
    assert!(j.friendly_message.unwrap().contains("resume the job"));

    // Ten days later another job runs, and the suspended one is still untouched.
    clock.advance(10 * 86_400_000);
    let other = insert(&store, new_job("other"));
    svc.notify();
    wait_for(&store, other, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    let j = job(&store, id).unwrap();
    assert_eq!(
        (j.status, j.retry_count, runner.calls(id)),
        (JobStatus::Waiting, 1, 1)
    );

    apply(store.as_ref(), id, JobAction::Resume, clock.now())
        .await
        .unwrap();
    svc.notify();
    wait_for(&store, id, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    svc.shutdown().await;
    assert_eq!(runner.calls(id), 2);
}

/// A job claimed by a worker that died is taken over once its lease expires and runs once; the dead
/// worker, coming back, can no longer finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let id = insert(&store, new_job("orphan"));
    let claimed = transact(&store, |tx| tx.claim_jobs("dead-worker", T0, 1_000, 10)).unwrap();
    assert_eq!(claimed.len(), 1);
    // Within the lease nobody else may take it.
    assert!(
        transact(&store, |tx| tx.claim_jobs("other", T0 + 999, 1_000, 10))
            .unwrap()
            .is_empty()
    );

    let runner = Scripted::new(|_, _| JobOutcome::succeeded());
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 2)).unwrap();
    clock.advance(1_000);
    svc.notify();
    let j = wait_for(&store, id, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await
    .unwrap();
    svc.shutdown().await;
    assert_eq!(runner.calls(id), 1);
    assert_eq!(j.started_on, Some(T0), "startedon is the first claim's");
    let attempts = store.read(|r| r.job_attempts(id)).unwrap();
    let summary: Vec<(i32, &str, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.entry.outcome.as_str(), &a.entry.worker[..5]))
        .collect();
    assert_eq!(
        summary,
        [(1, "abandoned", "dead-"), (2, "succeeded", "test-")]
    );
    assert!(
        attempts[0]
            .entry
            .message
            .as_deref()
            .unwrap()
            .contains("did not finish the attempt within its lease")
    );
    let late = transact(&store, move |tx| {
        tx.complete_job(id, "dead-worker", T0 + 5_000)
    })
    .unwrap_err();
    assert!(matches!(late, StoreError::LeaseLost { .. }), "{late}");
}

/// A job whose worker dies on every attempt is not taken over forever: abandoned attempts count, and at
/// max_attempts the job is Failed without running it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_attempts_count_towards_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let id = insert(&store, new_job("kills its worker"));
    transact(&store, |tx| tx.claim_jobs("dead-worker", T0, 1_000, 10)).unwrap();
    let runner = Scripted::new(|_, _| JobOutcome::succeeded());
    let mut cfg = config(&clock, 1);
    cfg.retry.max_attempts = 1;
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), cfg).unwrap();
    clock.advance(1_000);
    svc.notify();
    let j = wait_for(&store, id, "failed", |j| {
        j.is_some_and(|j| j.status.state() == JobState::Completed)
    })
    .await
    .unwrap();
    svc.shutdown().await;
    assert_eq!(
        (j.status, j.completed_on, j.lease_owner),
        (JobStatus::Failed, Some(T0 + 1_000), None)
    );
    assert!(
        j.friendly_message
            .unwrap()
            .starts_with("Failed after 1 attempts; the last was abandoned")
    );
    assert_eq!(runner.calls(id), 0);
}

/// A dead worker's lost attempt is recorded once per job, even when the takeover needs several claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_attempt_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let ids: Vec<Uuid> = (0..3)
        .map(|i| insert(&store, new_job(&format!("orphan {i}"))))
        .collect();
    transact(&store, |tx| tx.claim_jobs("dead-worker", T0, 1_000, 10)).unwrap();
    let runner = Scripted::new(|_, _| JobOutcome::succeeded());
    let mut cfg = config(&clock, 1);
    cfg.batch_size = 1;
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), cfg).unwrap();
    clock.advance(1_000);
    svc.notify();
    for &id in &ids {
        wait_for(&store, id, "succeeded", |j| {
            j.is_some_and(|j| j.status == JobStatus::Succeeded)
        })
        .await;
    }
    svc.shutdown().await;
    for &id in &ids {
        let outcomes: Vec<String> = store
            .read(|r| r.job_attempts(id))
            .unwrap()
            .into_iter()
            .map(|a| a.entry.outcome)
            .collect();
        assert_eq!(outcomes, ["abandoned", "succeeded"], "job {id}");
        assert_eq!(
            (runner.calls(id), job(&store, id).unwrap().retry_count),
            (1, 1)
        );
    }
}

/// A notify wakes an idle worker at once even when its poll interval is an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_idle_workers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|_, _| JobOutcome::succeeded());
    let mut cfg = config(&clock, 2);
    cfg.poll_interval = Duration::from_secs(3600);
    let first = insert(&store, new_job("first"));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), cfg).unwrap();
    wait_for(&store, first, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await; // let the workers go idle
    let notifier = svc.notifier();
    let second = insert(&store, new_job("second"));
    notifier.notify();
    wait_for(&store, second, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    svc.shutdown().await;
}

/// A succeeded job of a step with asyncautodelete is deleted with its attempts; others are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_of_succeeded_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let deleting = register_step(&store, true, None);
    let keeping = register_step(&store, false, None);
    let runner = Scripted::new(|j, _| {
        if j.name == "fails" {
            JobOutcome::failed(FailureClass::Permanent, "no")
        } else {
            JobOutcome::succeeded()
        }
    });
    let gone = insert(&store, step_job("ok", deleting));
    let failed = insert(&store, step_job("fails", deleting));
    let kept = insert(&store, step_job("ok", keeping));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    wait_for(&store, kept, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    wait_for(&store, failed, "failed", |j| {
        j.is_some_and(|j| j.status == JobStatus::Failed)
    })
    .await;
    wait_for(&store, gone, "deleted", |j| j.is_none()).await;
    svc.shutdown().await;
    assert_eq!(runner.calls(gone), 1);
    assert!(store.read(|r| r.job_attempts(gone)).unwrap().is_empty());
    assert_eq!(store.read(|r| r.job_attempts(kept)).unwrap().len(), 1);
}

/// Shutdown lets an attempt in flight finish and be recorded: nothing is left Locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_attempts_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let (runner, mut started) = Gated::new(JobOutcome::succeeded());
    let id = insert(&store, new_job("in flight"));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    assert_eq!(started.recv().await, Some(id));
    let stopping = tokio::spawn(svc.shutdown());
    runner.release.add_permits(1);
    stopping.await.unwrap();
    assert_eq!(job(&store, id).unwrap().status, JobStatus::Succeeded);
}

/// Many jobs, several workers: every job succeeds, and each is run exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_run_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let runner = Scripted::new(|_, _| JobOutcome::succeeded());
    let mut cfg = config(&clock, 4);
    cfg.clock = system_clock();
    cfg.batch_size = 7;
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), cfg).unwrap();
    let mut ids = HashSet::new();
    for chunk in 0..10 {
        let batch: Vec<NewSystemJob> = (0..50)
            .map(|i| new_job(&format!("job {chunk}/{i}")))
            .collect();
        let inserted: Vec<Uuid> = transact(&store, move |tx| {
            batch.into_iter().map(|j| tx.insert_system_job(j)).collect()
        })
        .unwrap();
        ids.extend(inserted);
        svc.notify();
    }
    let filter = || JobFilter {
        status: Some(JobStatus::Succeeded),
        ..JobFilter::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while store.read(|r| r.system_jobs(&filter())).unwrap().len() < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "not every job succeeded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    svc.shutdown().await;
    let calls = runner.all_calls();
    assert_eq!(calls.len(), 500);
    assert!(
        calls.iter().all(|(id, &n)| n == 1 && ids.contains(id)),
        "a job ran twice"
    );
    for id in ids.iter().take(20) {
        assert_eq!(store.read(|r| r.job_attempts(*id)).unwrap().len(), 1);
    }
}

/// Holds the attempts at jobs named "slow" until the test releases them; every other job succeeds at once.
struct SlowOne {
    release: tokio::sync::Semaphore,
}

impl weft_jobs::JobRunner for SlowOne {
    async fn run(&self, job: &SystemJob) -> JobOutcome {
        if job.name == "slow"
            && let Ok(p) = self.release.acquire().await
        {
            p.forget();
        }
        JobOutcome::succeeded()
    }
}

/// One slow attempt holds one slot: the worker keeps claiming and finishing the jobs behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_attempt_does_not_stall_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let slow = insert(&store, new_job("slow"));
    let others: Vec<Uuid> = (0..12)
        .map(|i| insert(&store, new_job(&format!("quick {i}"))))
        .collect();
    let runner = Arc::new(SlowOne {
        release: tokio::sync::Semaphore::new(0),
    });
    let mut cfg = config(&clock, 1);
    cfg.batch_size = 4;
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), cfg).unwrap();
    for &id in &others {
        wait_for(&store, id, "succeeded", |j| {
            j.is_some_and(|j| j.status == JobStatus::Succeeded)
        })
        .await;
    }
    assert_eq!(
        job(&store, slow).unwrap().status,
        JobStatus::InProgress,
        "the slow attempt is still running"
    );
    runner.release.add_permits(1);
    wait_for(&store, slow, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;
    svc.shutdown().await;
}
