//! `[jobs.retry]` in weft.toml (defaults, explicit schedule, unknown keys refused) and the `weft jobs`
//! command against a real store.

mod common;

use clap::Parser;
use common::*;
use serde::Deserialize;
use std::time::Duration;

use weft_jobs::{JobsCommand, JobsSettings, RetryPolicy, run};
use weft_store::system::JobStatus;

#[derive(Debug, Deserialize)]
struct WeftToml {
    jobs: Jobs,
}

#[derive(Debug, Deserialize)]
struct Jobs {
    #[serde(default)]
    retry: RetryPolicy,
}

fn parse(text: &str) -> Result<RetryPolicy, String> {
    toml::from_str::<WeftToml>(text)
        .map(|w| w.jobs.retry)
        .map_err(|e| e.to_string())
}

/// An empty table gives the documented defaults; set keys override them, integers read as seconds.
#[test]
fn retry_policy_from_toml() {
    assert_eq!(parse("[jobs.retry]\n").unwrap(), RetryPolicy::default());
    let p = parse("[jobs.retry]\nmax_attempts = 8\nschedule_s = [5, 300, 1800.5]\njitter = 0\n")
        .unwrap();
    assert_eq!(p.max_attempts, 8);
    assert_eq!(p.schedule_s, Some(vec![5.0, 300.0, 1800.5]));
    assert_eq!(p.validate(), Ok(()));
    assert_eq!(p.delay(3, 0.9).as_millis(), 1_800_500);
}

/// A misspelt key is refused with its name and position, not silently ignored.
#[test]
fn unknown_retry_keys_are_refused() {
    let e = parse("[jobs.retry]\nmax_attempt = 3\n").unwrap_err();
    assert!(e.contains("unknown field `max_attempt`"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    let e = parse("[jobs.retry]\nmultiplier = \"double\"\n").unwrap_err();
    assert!(e.contains("multiplier") || e.contains("line 2"), "{e}");
}

#[derive(Debug, Deserialize)]
struct WeftJobs {
    jobs: JobsSettings,
}

fn settings(text: &str) -> Result<JobsSettings, String> {
    toml::from_str::<WeftJobs>(text)
        .map(|w| w.jobs)
        .map_err(|e| e.to_string())
}

/// `[jobs]` becomes a checked service configuration; unknown keys and a run timeout not shorter than the
/// lease are refused with the reason.
#[test]
fn jobs_settings_from_toml() {
    let c = settings(
        "[jobs]\nworkers = 4\nlease_s = 60\nrun_timeout_s = 30.5\n[jobs.retry]\nmax_attempts = 3\n",
    )
    .unwrap()
    .into_config()
    .unwrap();
    assert_eq!((c.workers, c.batch_size), (4, 128));
    assert_eq!(
        (c.lease, c.run_timeout),
        (Duration::from_secs(60), Duration::from_millis(30_500))
    );
    assert_eq!(
        (c.poll_interval, c.retry.max_attempts),
        (Duration::from_millis(250), 3)
    );
    let e = settings("[jobs]\nworker = 4\n").unwrap_err();
    assert!(e.contains("unknown field `worker`"), "{e}");
    let e = settings("[jobs]\nlease_s = 60\nrun_timeout_s = 60\n")
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(
        e.contains("run_timeout") && e.contains("shorter than the lease"),
        "{e}"
    );
    let e = settings("[jobs]\nlease_s = -1\n")
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(e.starts_with("jobs.lease_s: -1 is not a duration"), "{e}");
    let e = settings("[jobs]\n[jobs.retry]\njitter = 2\n")
        .unwrap()
        .into_config()
        .unwrap_err();
    assert!(e.starts_with("jobs.retry.jitter"), "{e}");
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: JobsCommand,
}

fn cli(args: &[&str]) -> JobsCommand {
    Cli::try_parse_from(std::iter::once("weft-jobs").chain(args.iter().copied()))
        .unwrap()
        .cmd
}

/// The commands parse and act on the store; bad input gets an error that says what is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_command_acts_on_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open(dir.path(), &clock);
    let id = insert(&store, new_job("cli"));
    let sid = id.to_string();

    run(cli(&["list", "--status", "0"]), dyn_store(&store))
        .await
        .unwrap();
    run(cli(&["show", &sid, "--json"]), dyn_store(&store))
        .await
        .unwrap();
    run(
        cli(&["postpone", &sid, "--until", "+1h"]),
        dyn_store(&store),
    )
    .await
    .unwrap();
    let postponed = job(&store, id).unwrap().postpone_until.unwrap();
    assert!(
        postponed > weft_jobs::system_clock()() + 3_500_000,
        "{postponed}"
    );
    run(cli(&["retry", &sid]), dyn_store(&store)).await.unwrap();
    assert_eq!(job(&store, id).unwrap().postpone_until, None);

    let e = run(cli(&["pause", &sid]), dyn_store(&store))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot pause system job {id}: it is Ready")),
        "{e}"
    );
    run(cli(&["cancel", &sid]), dyn_store(&store))
        .await
        .unwrap();
    assert_eq!(job(&store, id).unwrap().status, JobStatus::Canceled);

    let e = run(cli(&["list", "--state", "done"]), dyn_store(&store))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("expected ready, suspended, locked, completed"),
        "{e}"
    );
    run(cli(&["delete", &sid]), dyn_store(&store))
        .await
        .unwrap();
    let e = run(cli(&["show", &sid]), dyn_store(&store))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), format!("system job {id} does not exist"));
    assert!(Cli::try_parse_from(["weft-jobs", "show", "not-a-guid"]).is_err());
}
