//! User operations on system jobs (cancel, pause, resume, postpone, retry now, delete): the valid transitions,
//! the refusals with their messages, the ones that reach a running job through Pausing/Canceling, and the
//! list/show views.

mod common;

use std::sync::Arc;

use common::*;
use uuid::Uuid;
use weft_jobs::views::{self, ListFilter};
use weft_jobs::{AsyncService, FailureClass, JobAction, JobOpError, JobOutcome, apply};
use weft_store::system::*;
use weft_store::{SqliteStore, StoreExt};

async fn act(
    store: &Arc<SqliteStore>,
    id: Uuid,
    action: JobAction,
    now: i64,
) -> Result<Option<SystemJob>, JobOpError> {
    apply(store.as_ref(), id, action, now).await
}

fn codes(j: &SystemJob) -> (i32, i32) {
    (j.status.state().value(), j.status.value())
}

/// Ready jobs: cancel → Canceled (3/32) and final; pause/resume refused with the state and the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_job_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let id = insert(&store, new_job("a"));

    let e = act(&store, id, JobAction::Pause, T0).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot pause system job {id}: it is Ready / Waiting For Resources (0/0); pause applies to Locked / In \
             Progress jobs"
        )
    );
    let e = act(&store, id, JobAction::Resume, T0).await.unwrap_err();
    assert!(
        e.to_string().contains("resume applies to Suspended jobs"),
        "{e}"
    );
    let e = act(&store, id, JobAction::RetryNow, T0).await.unwrap_err();
    assert!(
        matches!(
            e,
            JobOpError::InvalidTransition {
                action: "retry",
                ..
            }
        ),
        "{e}"
    );

    let j = act(&store, id, JobAction::Cancel, T0 + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(codes(&j), (3, 32));
    assert_eq!(j.completed_on, Some(T0 + 5));
    for action in [
        JobAction::Cancel,
        JobAction::Resume,
        JobAction::RetryNow,
        JobAction::Pause,
    ] {
        let e = act(&store, id, action, T0).await.unwrap_err();
        assert!(
            e.to_string().contains("it is Completed / Canceled (3/32)"),
            "{e}"
        );
    }
    // Nothing claims a canceled job.
    assert!(
        transact(&store, |tx| tx.claim_jobs("w", T0 + 10_000, 1_000, 10))
            .unwrap()
            .is_empty()
    );
    assert_eq!(act(&store, id, JobAction::Delete, T0).await.unwrap(), None);
    assert_eq!(job(&store, id), None);
    assert_eq!(
        act(&store, id, JobAction::Delete, T0).await.unwrap_err(),
        JobOpError::NotFound(id)
    );
}

/// Postpone sets postponeuntil (nothing claims the job before it); retry now clears it; the past is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postpone_and_retry_now() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let id = insert(&store, new_job("later"));
    let e = act(&store, id, JobAction::Postpone { until_ms: T0 }, T0)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot postpone system job {id}: 2026-11-25T00:00:00.000Z is not in the future (now is \
             2026-11-25T00:00:00.000Z)"
        )
    );
    let j = act(
        &store,
        id,
        JobAction::Postpone {
            until_ms: T0 + 3_600_000,
        },
        T0,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (codes(&j), j.postpone_until),
        ((0, 0), Some(T0 + 3_600_000))
    );
    assert!(
        transact(&store, |tx| tx.claim_jobs("w", T0 + 3_599_999, 1_000, 10))
            .unwrap()
            .is_empty()
    );

    let j = act(&store, id, JobAction::RetryNow, T0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((codes(&j), j.postpone_until), ((0, 0), None));
    let claimed = transact(&store, |tx| tx.claim_jobs("w", T0 + 2, 1_000, 10)).unwrap();
    assert_eq!(claimed.len(), 1);
}

/// A Waiting (backoff) job: resume or retry now make it Ready; pause and postpone are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_job_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let id = insert(&store, new_job("backoff"));
    let err = JobError {
        code: None,
        message: "503".into(),
        friendly_message: None,
    };
    transact(&store, move |tx| {
        tx.claim_jobs("w", T0, 1_000, 1)?;
        tx.wait_job(id, "w", T0 + 60_000, &err)
    })
    .unwrap();
    let e = act(&store, id, JobAction::Pause, T0).await.unwrap_err();
    assert!(
        e.to_string().contains("it is Suspended / Waiting (1/10)"),
        "{e}"
    );
    let e = act(&store, id, JobAction::Postpone { until_ms: T0 + 1 }, T0)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("postpone applies to Ready and Locked / In Progress jobs"),
        "{e}"
    );
    let j = act(&store, id, JobAction::Resume, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (codes(&j), j.postpone_until, j.retry_count),
        ((0, 0), None, 1)
    );
}

/// A running job: pause → Pausing (2/21) and cancel → Canceling (2/22), lease kept; after a failed attempt the
/// worker makes them Suspended and Canceled; a succeeding attempt stays Succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_cancel_reach_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let failing = JobOutcome::failed(FailureClass::Transient { retry_after: None }, "timeout");
    let (runner, mut started) = Gated::new(failing.clone());
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();

    // Pause while running, attempt fails → Suspended with no next attempt; resume → runs again.
    let paused = insert(&store, new_job("paused"));
    svc.notify();
    assert_eq!(started.recv().await, Some(paused));
    let j = act(&store, paused, JobAction::Pause, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(codes(&j), (2, 21));
    assert!(j.lease_owner.is_some());
    let e = act(&store, paused, JobAction::Pause, T0).await.unwrap_err();
    assert!(e.to_string().contains("Locked / Pausing (2/21)"), "{e}");
    runner.release.add_permits(1);
    let j = wait_for(&store, paused, "suspended", |j| {
        j.is_some_and(|j| j.status == JobStatus::Waiting)
    })
    .await
    .unwrap();
    assert_eq!((j.postpone_until, j.lease_owner.as_deref()), (None, None));
    assert!(j.friendly_message.unwrap().starts_with("Paused by a user"));
    *runner.outcome.lock().unwrap() = JobOutcome::succeeded();
    act(&store, paused, JobAction::Resume, T0).await.unwrap();
    svc.notify();
    assert_eq!(started.recv().await, Some(paused));
    runner.release.add_permits(1);
    wait_for(&store, paused, "succeeded", |j| {
        j.is_some_and(|j| j.status == JobStatus::Succeeded)
    })
    .await;

    // Cancel while running, attempt fails → Canceled.
    *runner.outcome.lock().unwrap() = failing;
    let canceled = insert(&store, new_job("canceled"));
    svc.notify();
    assert_eq!(started.recv().await, Some(canceled));
    let j = act(&store, canceled, JobAction::Cancel, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(codes(&j), (2, 22));
    runner.release.add_permits(1);
    let j = wait_for(&store, canceled, "canceled", |j| {
        j.is_some_and(|j| j.status.state() == JobState::Completed)
    })
    .await
    .unwrap();
    assert_eq!(codes(&j), (3, 32));

    // Cancel while running, attempt succeeds → Succeeded (the post happened).
    *runner.outcome.lock().unwrap() = JobOutcome::succeeded();
    let done = insert(&store, new_job("done anyway"));
    svc.notify();
    assert_eq!(started.recv().await, Some(done));
    act(&store, done, JobAction::Cancel, T0).await.unwrap();
    runner.release.add_permits(1);
    let j = wait_for(&store, done, "completed", |j| {
        j.is_some_and(|j| j.status.state() == JobState::Completed)
    })
    .await
    .unwrap();
    assert_eq!(codes(&j), (3, 30));
    svc.shutdown().await;
}

/// A job postponed while it runs, whose attempt fails, waits at least until the postponement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postpone_while_running_holds_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let (runner, mut started) = Gated::new(JobOutcome::failed(
        FailureClass::Transient { retry_after: None },
        "busy",
    ));
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    let id = insert(&store, new_job("postponed"));
    svc.notify();
    assert_eq!(started.recv().await, Some(id));
    let until = T0 + 86_400_000;
    let j = act(&store, id, JobAction::Postpone { until_ms: until }, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((codes(&j), j.postpone_until), ((2, 20), Some(until)));
    runner.release.add_permits(1);
    let j = wait_for(&store, id, "waiting", |j| {
        j.is_some_and(|j| j.status == JobStatus::Waiting)
    })
    .await
    .unwrap();
    assert_eq!(
        j.postpone_until,
        Some(until),
        "the 10 s backoff must not undercut the postponement"
    );
    svc.shutdown().await;
}

/// A job paused or cancelled while its worker died is settled once the lease expires: Suspended / Canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_pausing_and_canceling_are_settled() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let pausing = insert(&store, new_job("pausing"));
    let canceling = insert(&store, new_job("canceling"));
    transact(&store, |tx| tx.claim_jobs("dead-worker", T0, 1_000, 10)).unwrap();
    act(&store, pausing, JobAction::Pause, T0).await.unwrap();
    act(&store, canceling, JobAction::Cancel, T0).await.unwrap();
    let runner = Scripted::new(|_, _| JobOutcome::succeeded());
    let svc = AsyncService::start(dyn_store(&store), runner.clone(), config(&clock, 1)).unwrap();
    clock.advance(1_000);
    svc.notify();
    let j = wait_for(&store, canceling, "canceled", |j| {
        j.is_some_and(|j| j.status == JobStatus::Canceled)
    })
    .await
    .unwrap();
    assert_eq!(j.completed_on, Some(T0 + 1_000));
    let j = wait_for(&store, pausing, "suspended", |j| {
        j.is_some_and(|j| j.status == JobStatus::Waiting)
    })
    .await
    .unwrap();
    assert_eq!((j.postpone_until, j.lease_owner), (None, None));
    svc.shutdown().await;
    assert_eq!((runner.calls(pausing), runner.calls(canceling)), (0, 0));
}

/// list filters by status, step, endpoint and correlation id; show carries the attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_filter_and_show_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let endpoint = Uuid::new_v4();
    let endpoint_step = register_step(&store, false, Some(endpoint));
    let plugin_step = register_step(&store, false, None);
    let by_step = insert(&store, step_job("to queue", endpoint_step));
    let by_attempt = insert(&store, step_job("custom plug-in", plugin_step));
    let unrelated = insert(&store, new_job("unrelated"));
    let runner = Scripted::new(move |j, _| {
        if j.name == "custom plug-in" {
            JobOutcome::failed(FailureClass::Permanent, "listener said no")
                .endpoint(endpoint)
                .status(400)
        } else {
            JobOutcome::succeeded()
        }
    });
    let svc = AsyncService::start(dyn_store(&store), runner, config(&clock, 1)).unwrap();
    for id in [by_step, by_attempt, unrelated] {
        wait_for(&store, id, "completed", |j| {
            j.is_some_and(|j| j.status.state() == JobState::Completed)
        })
        .await;
    }
    svc.shutdown().await;

    let ids = |f: ListFilter| -> Vec<Uuid> {
        store
            .read(|r| views::list(r, &f))
            .unwrap()
            .into_iter()
            .map(|v| v.asyncoperationid)
            .collect()
    };
    assert_eq!(ids(ListFilter::default()), [by_step, by_attempt, unrelated]);
    assert_eq!(
        ids(ListFilter {
            endpoint_id: Some(endpoint),
            ..Default::default()
        }),
        [by_step, by_attempt]
    );
    assert_eq!(
        ids(ListFilter {
            status: Some(JobStatus::Failed),
            ..Default::default()
        }),
        [by_attempt]
    );
    assert_eq!(
        ids(ListFilter {
            step_id: Some(plugin_step),
            ..Default::default()
        }),
        [by_attempt]
    );
    let correlation = job(&store, unrelated).unwrap().correlation_id;
    assert_eq!(
        ids(ListFilter {
            correlation_id: Some(correlation),
            ..Default::default()
        }),
        [unrelated]
    );
    assert_eq!(
        ids(ListFilter {
            endpoint_id: Some(endpoint),
            limit: Some(1),
            ..Default::default()
        }),
        [by_step]
    );
    assert!(
        ids(ListFilter {
            state: Some(JobState::Ready),
            ..Default::default()
        })
        .is_empty()
    );

    let v = store.read(|r| views::show(r, by_attempt)).unwrap().unwrap();
    assert_eq!(
        (v.statecode, v.statuscode, v.status.as_str()),
        (3, 31, "Completed / Failed")
    );
    let attempts = v.attempts.as_ref().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].entry.endpoint_id, attempts[0].entry.http_status),
        (Some(endpoint), Some(400))
    );
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["statuscode"], 31);
    assert_eq!(json["attempts"][0]["outcome"], "permanent");
    assert_eq!(json["createdon"], "2026-11-25T00:00:00.000Z");
    assert!(json.get("data").is_none(), "the context is not shown");
    assert_eq!(
        store.read(|r| views::show(r, Uuid::new_v4())).unwrap(),
        None
    );
}
