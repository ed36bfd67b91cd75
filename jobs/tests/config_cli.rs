//! `[jobs.retry]` in weft.toml (defaults, explicit schedule, unknown keys refused) and the `weft jobs`
//! command against a real store.

mod common;

use clap::Parser;
use common::*;
use serde::Deserialize;
use weft_jobs::{JobsCommand, RetryPolicy, run};
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
