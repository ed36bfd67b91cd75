//! The `weft` binary, run as a user would.

use crate::fixtures;
use std::process::Command;

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// `weft plugin run` prints traces, changes, outcome and the limits report.
#[test]
fn plugin_run_reports_changes() {
    let out = weft()
        .args(["plugin", "run"])
        .arg(fixtures::component("enricher"))
        .args(["--stage", "20", "--target", r#"{"name":"Fourth Coffee"}"#])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| Enricher: accountnumber = ACC-FC-"),
        "{stdout}"
    );
    assert!(stdout.contains("\"accountnumber\":\"ACC-FC-"), "{stdout}");
    assert!(stdout.contains("outcome: succeeded"), "{stdout}");
    assert!(stdout.contains("limits: time"), "{stdout}");
}

/// A failing plug-in exits non-zero with its message; the secure
/// configuration never appears in the output.
#[test]
fn plugin_run_failure_and_secret() {
    let out = weft()
        .args(["plugin", "run"])
        .arg(fixtures::component("validator"))
        .args(["--stage", "10", "--target", r#"{"name":""}"#])
        .args(["--secure-config", "s3cret-value"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("Account name is required."), "{stdout}");
    assert!(!stdout.contains("s3cret-value"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret-value"));
}

/// Malformed flags get a precise error, not a panic.
#[test]
fn plugin_run_rejects_bad_input() {
    let out = weft()
        .args(["plugin", "run"])
        .arg(fixtures::component("enricher"))
        .args(["--target", "{not json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("--target is not valid JSON"), "{stderr}");

    let out = weft()
        .args(["plugin", "run", "/nonexistent/plugin.wasm"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read component /nonexistent/plugin.wasm"),
        "{stderr}"
    );
}

/// The quickstart runs end to end and says so on its last line.
#[test]
fn quickstart_succeeds() {
    fixtures::component("enricher"); // build once, shared with the other tests
    let out = weft().arg("quickstart").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("quickstart ok:"), "{stdout}");
    // The seed scenario ran end to end: both jobs delivered, each listener got its message.
    assert!(last.contains("2 system jobs succeeded"), "{last}");
    assert!(last.contains("1 queue message, 1 webhook call"), "{last}");
    assert!(stdout.contains("| Response: Success"), "{stdout}");
}

/// A weft.toml with an account table, the validator at stage 10 and the
/// enricher at stage 20, in a fresh directory.
fn sample_weft() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"
  [[table.attribute]]
  logical_name = "accountnumber"
  type = "String"

[[plugin]]
name = "validator"
component = "{}"

[[plugin]]
name = "enricher"
component = "{}"

[[step]]
name = "validate"
message = "Create"
table = "account"
stage = 10
plugin = "validator"

[[step]]
name = "number"
message = "Create"
table = "account"
stage = 20
plugin = "enricher"
"#,
            fixtures::component("validator").display(),
            fixtures::component("enricher").display()
        ),
    )
    .unwrap();
    (dir, config)
}

/// `weft exec` runs an operation through the registered steps and shows them;
/// a rejection exits 1 with the plug-in's message; `weft trace` lists both.
#[test]
fn exec_and_trace_through_the_pipeline() {
    let (dir, config) = sample_weft();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        weft()
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = run(&[
        "exec",
        "create",
        "account",
        "--attributes",
        r#"{"name":"Fourth Coffee"}"#,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("{\"id\":"), "{stdout}");
    assert!(
        stdout.contains("| Enricher: accountnumber = ACC-FC-"),
        "{stdout}"
    );

    let out = run(&[
        "exec",
        "create",
        "account",
        "--attributes",
        r#"{"name":""}"#,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("error 0x80040265: Account name is required."),
        "{stdout}"
    );

    let out = run(&["exec", "retrieve-multiple", "account"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("\"@table\":\"account\"").count(),
        1,
        "{stdout}"
    );

    let out = run(&["trace"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("failed: Account name is required."),
        "{stdout}"
    );
    assert!(stdout.contains("Validator: account is valid."), "{stdout}");
}

/// `weft up` serves the HTTP API over the configured pipeline until
/// interrupted; its first line names the address.
#[test]
fn up_serves_the_api_until_interrupted() {
    use std::io::{BufRead, BufReader};
    let (dir, config) = sample_weft();
    let mut child = weft()
        .args(["up", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (created, listed) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{base}/api/data/v9.2/accounts"))
            .json(&serde_json::json!({"name": "Fourth Coffee"}))
            .send()
            .await
            .unwrap();
        let listed: serde_json::Value = client
            .get(format!(
                "{base}/api/data/v9.2/accounts?$select=accountnumber"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (created, listed)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(created.status().is_success(), "{}", created.status());
    assert!(created.headers().contains_key("odata-entityid"));
    let number = listed["value"][0]["accountnumber"]
        .as_str()
        .unwrap_or_default();
    assert!(number.starts_with("ACC-FC-"), "{listed}");
}
