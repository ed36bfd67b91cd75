//! Hardening of the pipeline, sandbox, store and start-up (issue #10): fan-out and trace-row caps,
//! trace-log retention, waiting for a plug-in instance (503, never a plug-in trap), element overhead in
//! the return quota, the precompiled-component cache bound to its source, the data-directory lock,
//! owner-only data files, refusing a truncated database, a quiet fresh start, and TOML errors that do
//! not quote secrets back.

use crate::fixtures;
use axum::response::IntoResponse;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_host::api::ApiError;
use weft_host::context::{self, ContextSpec};
use weft_host::pipeline::{Message, OrganizationRequest, PipelineError};
use weft_host::registration::Registration;
use weft_host::runtime::{DATABASE_FILE, Runtime};
use weft_host::sandbox::wit::context::{Mode, Stage};
use weft_host::sandbox::wit::types::{Attribute, Entity, Value};
use weft_host::sandbox::{
    CacheOutcome, FailureKind, Invocation, Limits, Quota, RecordingServices, Sandbox,
};
use weft_store::system::TraceFilter;
use weft_store::{Query, Read, StoreExt};

const TABLES: &str = r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"

[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
"#;

/// `weft.toml` with the tables, these plug-ins and `rest` (steps, settings).
fn write_config(dir: &Path, plugins: &[&str], rest: &str) -> PathBuf {
    let plugins: String = plugins
        .iter()
        .map(|p| {
            format!(
                "[[plugin]]\nname = \"{p}\"\ncomponent = \"{}\"\n",
                fixtures::component(p).display()
            )
        })
        .collect();
    let path = dir.join("weft.toml");
    std::fs::write(&path, format!("{TABLES}\n{plugins}\n{rest}")).unwrap();
    path
}

fn create(table: &str, attribute: &str, name: &str) -> OrganizationRequest {
    OrganizationRequest::new(Message::Create {
        target: Entity {
            logical_name: table.into(),
            id: None,
            attributes: vec![Attribute {
                name: attribute.into(),
                value: Value::String(name.into()),
            }],
            formatted_values: Vec::new(),
            row_version: None,
        },
    })
}

fn rows(runtime: &Runtime, table: &str) -> usize {
    runtime
        .store
        .read(|r: &dyn Read| r.retrieve_multiple(&Query::new(table)))
        .unwrap()
        .len()
}

fn trace_rows(runtime: &Runtime) -> usize {
    runtime
        .store
        .read(|r: &dyn Read| r.trace_logs(&TraceFilter::default()))
        .unwrap()
        .len()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Findings 5 and 4: a plug-in creating 3 children per level (3 + 9 + … + 3^7 operations until the
/// depth limit) is stopped at the child-operation cap with the loop-protection code, rolls back, and leaves
/// at most `max_rollback_trace_rows` trace rows; the host keeps serving.
#[test]
fn fan_out_is_capped_and_leaves_bounded_traces() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &["org-caller"],
        "[[step]]\nname = \"fan out\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\n\
         plugin = \"org-caller\"\nconfiguration = \"fan-out=3\"\n\n\
         [pipeline]\nmax_child_operations = 100\nmax_rollback_trace_rows = 30\n",
    );
    let runtime = Runtime::open(&config, &dir.path().join("data")).unwrap();
    let started = Instant::now();
    let err = runtime
        .pipeline
        .execute(create("account", "name", "root"))
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::ChildOperationLimit { limit: 100, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "0x80044182");
    assert!(err.to_string().contains("more than 100 child operations"));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(rows(&runtime, "account"), 0, "everything rolled back");
    let traces = trace_rows(&runtime);
    assert!(
        (1..=30).contains(&traces),
        "{traces} trace rows after the rollback"
    );
    // The host keeps serving.
    let mut plain = create("account", "name", "plain");
    plain.bypass_sync = true;
    runtime.pipeline.execute(plain).unwrap();
    assert_eq!(rows(&runtime, "account"), 1);
}

/// Finding 4: trace-log rows go once they are older than the retention (24 hours by default).
#[test]
fn trace_logs_are_kept_for_the_retention_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &["org-caller"],
        "[[step]]\nname = \"spawn\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\n\
         plugin = \"org-caller\"\nconfiguration = \"create=contact:lastname\"\n",
    );
    let runtime = Runtime::open(&config, &dir.path().join("data")).unwrap();
    assert_eq!(runtime.registration.pipeline.trace_retention_hours, 24);
    runtime
        .pipeline
        .execute(create("account", "name", "a"))
        .unwrap();
    assert_eq!(trace_rows(&runtime), 1);
    let now = now_ms();
    assert_eq!(runtime.purge_trace_logs(now).unwrap(), 0);
    assert_eq!(
        runtime.purge_trace_logs(now + 23 * 3_600_000).unwrap(),
        0,
        "23 hours on, the row stays"
    );
    assert_eq!(runtime.purge_trace_logs(now + 25 * 3_600_000).unwrap(), 1);
    assert_eq!(trace_rows(&runtime), 0);
}

/// Finding 6: with every instance busy, an operation waits the bounded time, then fails as the host's
/// capacity — 503 with `Retry-After` — never as a plug-in failure; once the instance is free it succeeds.
#[test]
fn a_full_sandbox_answers_503_after_a_bounded_wait() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &["infinite-loop", "validator"],
        "[[step]]\nname = \"spin\"\nmessage = \"Create\"\ntable = \"contact\"\nstage = 10\n\
         plugin = \"infinite-loop\"\n\n\
         [[step]]\nname = \"validate\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 10\n\
         plugin = \"validator\"\n\n\
         [sandbox]\nmax_instances = 1\ninstance_wait_ms = 200\ndeadline_ms = 2000\n",
    );
    let runtime = std::sync::Arc::new(Runtime::open(&config, &dir.path().join("data")).unwrap());
    let spinning = {
        let runtime = std::sync::Arc::clone(&runtime);
        std::thread::spawn(move || runtime.pipeline.execute(create("contact", "lastname", "x")))
    };
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let err = runtime
        .pipeline
        .execute(create("account", "name", "Fourth Coffee"))
        .unwrap_err();
    let waited = asked.elapsed();
    assert!(
        matches!(
            err,
            PipelineError::Busy {
                limit: 1,
                wait_ms: 200
            }
        ),
        "{err:?}"
    );
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    let api = ApiError::from_pipeline(&err);
    assert_eq!(api.status.as_u16(), 503);
    assert_eq!(api.code, "0x80072326");
    let response = api.into_response();
    assert_eq!(response.headers()["retry-after"], "1");

    // The spinning plug-in is stopped at its deadline (its own failure), then the instance is free again.
    let spun = spinning.join().unwrap().unwrap_err();
    assert!(
        matches!(spun, PipelineError::IsvUnexpected { .. }),
        "{spun:?}"
    );
    runtime
        .pipeline
        .execute(create("account", "name", "Fourth Coffee"))
        .unwrap();
}

/// Finding 7: a returned entity with 300,000 empty formatted values carries no text but 5 MB of
/// elements: it exceeds the 4 MiB return quota.
#[test]
fn empty_elements_count_against_the_return_quota() {
    let sandbox = Sandbox::new(Limits::default(), None).unwrap();
    let plugin = sandbox
        .load_file("huge-return", &fixtures::component("huge-return"))
        .unwrap();
    let outcome = sandbox.invoke(
        &plugin,
        Invocation {
            context: context::build_context(ContextSpec {
                message: "Create".into(),
                table: "account".into(),
                stage: Stage::PreOperation,
                mode: Mode::Synchronous,
                target: None,
                depth: 1,
                created_on_ms: 1_700_000_000_000,
            }),
            unsecure_config: Some("formatted=300000".into()),
            secure_config: None,
            services: RecordingServices::default(),
        },
    );
    let failure = outcome.result.expect_err("over the quota");
    assert_eq!(failure.kind, FailureKind::Quota(Quota::ReturnBytes));
    assert!(outcome.usage.return_bytes > Limits::default().return_bytes);
}

/// The cache entry (artifact and digest) of component `sha256`.
fn cache_entry(dir: &Path, sha256: &str) -> (PathBuf, PathBuf) {
    let stem = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "cwasm")
                && p.file_name().unwrap().to_string_lossy().starts_with(sha256)
        })
        .expect("a cache entry")
        .with_extension("");
    (stem.with_extension("cwasm"), stem.with_extension("sha256"))
}

/// Finding 13: swapping two cache entries together with their digests does not run the other component:
/// the entry is bound to the component it was compiled from, so it is recompiled.
#[test]
fn a_swapped_cache_entry_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let limits = Limits {
        deadline_ms: 300,
        max_instances: 2,
        ..Limits::default()
    };
    let (good, looping) = {
        let sandbox = Sandbox::new(limits.clone(), Some(cache.clone())).unwrap();
        let good = sandbox
            .load_file("validator", &fixtures::component("validator"))
            .unwrap();
        let looping = sandbox
            .load_file("infinite-loop", &fixtures::component("infinite-loop"))
            .unwrap();
        (good.sha256().to_owned(), looping.sha256().to_owned())
    };
    let (good_art, good_sum) = cache_entry(&cache, &good);
    let (loop_art, loop_sum) = cache_entry(&cache, &looping);
    let swap = |a: &Path, b: &Path| {
        let tmp = a.with_extension("swap");
        std::fs::rename(a, &tmp).unwrap();
        std::fs::rename(b, a).unwrap();
        std::fs::rename(&tmp, b).unwrap();
    };
    swap(&good_art, &loop_art);
    swap(&good_sum, &loop_sum);

    let sandbox = Sandbox::new(limits, Some(cache)).unwrap();
    let plugin = sandbox
        .load_file("validator", &fixtures::component("validator"))
        .unwrap();
    assert_eq!(plugin.cache_outcome(), Some(CacheOutcome::Replaced));
    let json = serde_json::json!({"name": "Fourth Coffee"});
    let outcome = sandbox.invoke(
        &plugin,
        Invocation {
            context: context::build_context(ContextSpec {
                message: "Create".into(),
                table: "account".into(),
                stage: Stage::PreValidation,
                mode: Mode::Synchronous,
                target: Some(context::entity_from_json("account", &json).unwrap()),
                depth: 1,
                created_on_ms: 1_700_000_000_000,
            }),
            unsecure_config: None,
            secure_config: None,
            services: RecordingServices::default(),
        },
    );
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    // And the rewritten entry is trusted next time.
    let again = sandbox
        .load_file("validator", &fixtures::component("validator"))
        .unwrap();
    assert_eq!(again.cache_outcome(), Some(CacheOutcome::Hit));
}

fn weft(args: &[&str], config: &Path, data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

/// A weft in `dir` (tables only) whose runtime has written one account named `name`; the runtime
/// is returned open, so it still holds the data directory.
fn used_data_dir(dir: &Path, name: &str) -> (PathBuf, PathBuf, Runtime) {
    let config = write_config(dir, &[], "");
    let data = dir.join("data");
    let runtime = Runtime::open(&config, &data).unwrap();
    runtime
        .pipeline
        .execute(create("account", "name", name))
        .unwrap();
    (config, data, runtime)
}

/// Finding 11: a second runtime (`weft up`) on a data directory in use is refused naming the holder's
/// pid; the read-only commands keep working beside it; once released, the directory opens again.
#[test]
fn a_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data, runtime) = used_data_dir(dir.path(), "a");

    let err = Runtime::open(&config, &data).err().expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );

    let up = weft(&["up", "--bind", "127.0.0.1:0"], &config, &data);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(!up.status.success());
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    let trace = weft(&["trace"], &config, &data);
    let jobs = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["jobs", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .arg("list")
        .output()
        .unwrap();
    for out in [trace, jobs] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(runtime);
    Runtime::open(&config, &data).unwrap();
}

/// Finding 12: the data directory, the database and the component cache are owner-only, and an existing
/// world-readable directory is narrowed.
#[cfg(unix)]
#[test]
fn data_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &["validator"],
        "[[step]]\nname = \"validate\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 10\n\
         plugin = \"validator\"\n",
    );
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = Runtime::open(&config, &data).unwrap();
    runtime
        .pipeline
        .execute(create("account", "name", "Fourth Coffee"))
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("cache")), 0o700);
    let mut files = vec![data.join(DATABASE_FILE), data.join("weft.db-wal")];
    files.extend(
        std::fs::read_dir(data.join("cache"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

/// Finding 14: a `weft.db` emptied after a runtime used the directory is refused at start, never opened
/// as an empty store.
#[test]
fn an_emptied_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data, runtime) = used_data_dir(dir.path(), "kept");
    drop(runtime);
    std::fs::File::create(data.join(DATABASE_FILE)).unwrap();
    let err = Runtime::open(&config, &data).err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("is empty"), "{text}");
    assert_eq!(
        std::fs::metadata(data.join(DATABASE_FILE)).unwrap().len(),
        0,
        "nothing written over it"
    );
}

/// Finding 18: a first start over a fresh data directory (and the next one) reports no replacement.
#[test]
fn a_fresh_start_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &[],
        "[[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\nauth_type = 4\n\
         url = \"http://127.0.0.1:9/a\"\nauth_value = \"secret\"\n\n\
         [[step]]\nname = \"to hook\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\n\
         mode = 1\nservice_endpoint = \"hook\"\n",
    );
    let data = dir.path().join("data");
    for _ in 0..2 {
        let runtime = Runtime::open(&config, &data).unwrap();
        let report = runtime.pipeline.startup_report();
        assert!(report.replaced.is_empty(), "{:?}", report.replaced);
        assert!(report.removed.is_empty(), "{:?}", report.removed);
    }
}

/// Finding 2 (TOML part): a parse error in `weft.toml` names the place but never quotes a secret's value,
/// at the API (Registration) and at `weft up`.
#[test]
fn a_toml_error_does_not_quote_a_secret() {
    let secret = "Sp+ace*Key~Secret";
    let text = format!(
        "{TABLES}\n[[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\n\
         auth_type = 4\nurl = \"http://127.0.0.1:9/a\"\nauth_value = \"{secret}\n"
    );
    let err =
        Registration::from_toml_str("weft.toml", Path::new("."), &text).expect_err("a parse error");
    let shown = err.to_string();
    assert!(
        !shown.contains("Space") && !shown.contains("Sp+ace"),
        "{shown}"
    );
    assert!(shown.contains("auth_value = <redacted>"), "{shown}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, &text).unwrap();
    let up = weft(
        &["up", "--bind", "127.0.0.1:0"],
        &config,
        &dir.path().join("data"),
    );
    assert!(!up.status.success());
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(!output.contains("Sp+ace"), "{output}");
    assert!(output.contains("line"), "{output}");
}

/// Finding 11 (bus part): a second bus on a data directory in use is refused naming the holder's pid; the
/// directory opens again once the first bus is shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = || weft_bus::BusConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data: dir.path().join("bus"),
        ..weft_bus::BusConfig::default()
    };
    let first = weft_bus::start(config()).await.unwrap();
    let err = weft_bus::start(config()).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    first.shutdown().await.unwrap();
    let again = weft_bus::start(config()).await.unwrap();
    again.shutdown().await.unwrap();
}
