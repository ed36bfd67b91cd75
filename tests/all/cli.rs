//! The `weft` binary, run as a user would.

use crate::fixtures;
use std::path::Path;
use std::process::Command;

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// Starts `weft up` on a free loopback port; returns the child and the base URL its first line names.
fn spawn_up(config: &Path, data: &Path) -> (std::process::Child, String) {
    spawn_up_with(config, data, &[], std::process::Stdio::inherit())
}

/// [`spawn_up`] with more flags, and stderr where the caller wants it.
fn spawn_up_with(
    config: &Path,
    data: &Path,
    flags: &[&str],
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = weft()
        .args(["up", "--bind", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
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
    (child, base)
}

/// Runs `weft ARGS… --config CONFIG --data DATA` to completion.
fn weft_on(config: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    weft()
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

/// The stdout of a command that must have succeeded; on failure the assertion shows both streams.
fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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

/// `weft plugin run` builds the context from `--id`, images and shared variables, or takes a captured
/// RemoteExecutionContext with `--context` (the probe traces what it sees).
#[test]
fn plugin_run_with_images_variables_and_a_captured_context() {
    let id = "6d81597f-0f9f-e711-8122-000d3aa2331c";
    let out = weft()
        .args(["plugin", "run"])
        .arg(fixtures::component("probe"))
        .args(["--message", "Update", "--stage", "20", "--id", id])
        .args(["--target", r#"{"name":"New"}"#])
        .args(["--pre-image", r#"before={"name":"Old"}"#])
        .args([
            "--post-image",
            r#"after={"name":"New","revenue":{"money":"10.50"}}"#,
        ])
        .args(["--shared", r#"flag=true"#, "--shared", r#"count=3"#])
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(stdout.contains(&format!("| primaryid={id}")), "{stdout}");
    assert!(stdout.contains("| pre=before[name=Old]"), "{stdout}");
    assert!(
        stdout.contains("| post=after[name=New,revenue="),
        "{stdout}"
    );
    assert!(stdout.contains("| shared=count=3,flag=true"), "{stdout}");
    assert!(
        stdout.contains("| input=Target=entity[name=New]"),
        "{stdout}"
    );

    let bad = weft()
        .args(["plugin", "run"])
        .arg(fixtures::component("probe"))
        .args(["--shared", "novalue"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--shared `novalue`: expected NAME=JSON")
    );

    // A Dataverse sample (an asynchronous Update of a contact, as a webhook received it), as JSON and
    // converted to .NET binary XML.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ctx.json");
    std::fs::write(
        &json,
        include_bytes!("../../message/tests/samples/webhook-update-contact-async.json"),
    )
    .unwrap();
    let binary = dir.path().join("ctx.bin");
    let converted = weft()
        .args(["message", "convert", "--from", "json", "--to", "binary"])
        .arg(&json)
        .output()
        .unwrap();
    succeeded(&converted);
    std::fs::write(&binary, &converted.stdout).unwrap();
    for file in [&json, &binary] {
        let out = weft()
            .args(["plugin", "run"])
            .arg(fixtures::component("probe"))
            .arg("--context")
            .arg(file)
            .output()
            .unwrap();
        let stdout = succeeded(&out);
        assert!(
            stdout.contains("| correlation=b374239d-4233-41a9-8b17-a86cb4f737b5"),
            "{}: {stdout}",
            file.display()
        );
        assert!(stdout.contains("| mode=Asynchronous"), "{stdout}");
        assert!(
            stdout.contains("| input=Target=entity[contactid="),
            "{stdout}"
        );
    }
    let clash = weft()
        .args(["plugin", "run"])
        .arg(fixtures::component("probe"))
        .arg("--context")
        .arg(&json)
        .args(["--stage", "10"])
        .output()
        .unwrap();
    assert!(!clash.status.success(), "--context with --stage is refused");
}

/// `weft plugin run` serves the organization service from `--rows FILE` or a weft data directory
/// (`--data`), never writing back; without either, the plug-in's call is refused and it says so.
#[test]
fn plugin_run_serves_the_organization_service_from_rows() {
    let id = "00000000-0000-4000-8000-0000000000aa";
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.json");
    std::fs::write(
        &rows,
        format!(r#"{{"account": [{{"id": "{id}", "name": "Contoso"}}]}}"#),
    )
    .unwrap();
    let run = |extra: &[&std::ffi::OsStr]| {
        weft()
            .args(["plugin", "run"])
            .arg(fixtures::component("org-caller"))
            .args(["--message", "Update", "--stage", "20", "--id", id])
            .args(["--unsecure-config", "touch-self=accountnumber"])
            .args(extra)
            .output()
            .unwrap()
    };
    let stdout = succeeded(&run(&["--rows".as_ref(), rows.as_os_str()]));
    assert!(
        stdout.contains(&format!("organization-service.update account {id}")),
        "{stdout}"
    );
    let none = run(&[]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stdout).contains("no organization service"),
        "{}",
        String::from_utf8_lossy(&none.stdout)
    );
    let missing = run(&["--rows".as_ref(), dir.path().join("empty.json").as_os_str()]);
    assert!(!missing.status.success());

    // A weft data directory: one account created through the pipeline, then updated by the plug-in in
    // memory only.
    let (wdir, config) = sample_weft();
    let data = wdir.path().join("data");
    let created = succeeded(&weft_on(
        &config,
        &data,
        &[
            "exec",
            "create",
            "account",
            "--attributes",
            r#"{"name":"Fourth Coffee"}"#,
        ],
    ));
    let created: serde_json::Value = serde_json::from_str(created.lines().next().unwrap()).unwrap();
    let account = created["id"].as_str().unwrap();
    let out = weft()
        .args(["plugin", "run"])
        .arg(fixtures::component("org-caller"))
        .args(["--message", "Update", "--stage", "20", "--id", account])
        .args(["--unsecure-config", "touch-self=accountnumber"])
        .arg("--data")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(&format!("organization-service.update account {account}")),
        "{stdout}"
    );
    let stored = succeeded(&weft_on(
        &config,
        &data,
        &["exec", "retrieve", "account", "--id", account],
    ));
    assert!(
        stored.contains("ACC-FC-") && !stored.contains("depth 1"),
        "the store keeps the pipeline's number, not the plug-in run's write: {stored}"
    );
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

/// The quickstart runs end to end and says so on its last line; its weft.toml and
/// data stay in `--dir` for a look afterwards, and `weft trace` reads them.
#[test]
fn quickstart_succeeds() {
    run_quickstart(&[]);
}

/// `weft quickstart` with `extra` flags (e.g. `--store URL`) in a fresh `--dir`, and what a successful run
/// shows: every part of the scenario ran, and `weft trace` on its weft.toml reads the trace log.
pub(crate) fn run_quickstart(extra: &[&str]) {
    fixtures::component("enricher"); // build once, shared with the other tests
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("quickstart");
    let out = weft()
        .arg("quickstart")
        .arg("--dir")
        .arg(&kept)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("quickstart ok:"), "{stdout}");
    // The seed scenario ran end to end: the two steps' jobs and the workflow's delivered, each listener got
    // its messages (the queue one from its step and one from the workflow's custom activity).
    assert!(last.contains("3 system jobs succeeded"), "{last}");
    assert!(last.contains("2 queue messages, 1 webhook call"), "{last}");
    assert!(last.contains("; 1 workflow run;"), "{last}");
    // External endpoint access: the outbound plug-in reached the local receiver, the opt-in said so.
    assert!(last.ends_with("; 1 outbound HTTP call"), "{last}");
    assert!(
        stdout.contains("allow_loopback_for_development = true"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[weft] outbound POST http://localhost:"),
        "{stdout}"
    );
    assert!(stdout.contains("| Response: Success"), "{stdout}");
    let config = kept.join("weft.toml");
    assert!(
        stdout.contains(&format!("weft.toml written to {}", config.display())),
        "{stdout}"
    );
    let trace = weft_on(&config, &kept.join("data"), &["trace"]);
    assert!(trace.status.success());
    assert!(
        String::from_utf8_lossy(&trace.stdout).contains("Enricher"),
        "{}",
        String::from_utf8_lossy(&trace.stdout)
    );
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
{}
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
            weft_host::registration::EXAMPLE_ACCOUNT_TABLE,
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
    let run = |args: &[&str]| weft_on(&config, &data, args);
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
        stdout.contains("FAILED: Account name is required."),
        "{stdout}"
    );
    assert!(stdout.contains("Validator: account is valid."), "{stdout}");
}

/// `weft up` serves the HTTP API over the configured pipeline until
/// interrupted; its first line names the address.
#[test]
fn up_serves_the_api_until_interrupted() {
    let (dir, config) = sample_weft();
    let (mut child, base) = spawn_up(&config, &dir.path().join("data"));
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

/// [`sample_weft`] plus `greet` as a Custom API bound to an account row (`weft_GreetAccount`, an action)
/// answering `Greeting` and `Bound`, and as an unbound function (`weft_GreetFn`) answering `Greeting`.
fn greet_weft() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, config) = sample_weft();
    let api = |name: &str, extra: &str, bound: &str| {
        format!(
            "[[custom_api]]\nunique_name = \"{name}\"\nplugin = \"greet\"\n{extra}\n\
             [[custom_api.request_parameter]]\nname = \"Name\"\ntype = \"String\"\n\
             [[custom_api.response_property]]\nname = \"Greeting\"\ntype = \"String\"\n{bound}"
        )
    };
    let bound = "[[custom_api.response_property]]\nname = \"Bound\"\ntype = \"String\"\n";
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!(
        "[[plugin]]\nname = \"greet\"\ncomponent = \"{}\"\n{}{}",
        fixtures::component("greet").display(),
        api(
            "weft_GreetAccount",
            "binding_type = 1\nbound_table = \"account\"",
            bound
        ),
        api("weft_GreetFn", "is_function = true", ""),
    );
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

/// `weft exec custom-api` calls a Custom API in-process with `--parameters` (and `--id` for a row-bound
/// one), printing the response properties; bad parameters and a missing `--id` are refused precisely.
#[test]
fn exec_calls_a_custom_api_in_process() {
    let (dir, config) = greet_weft();
    let data = dir.path().join("data");
    let run = |args: &[&str]| weft_on(&config, &data, args);
    let out = run(&[
        "exec",
        "create",
        "account",
        "--attributes",
        r#"{"name":"Fourth Coffee"}"#,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let created: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let out = run(&[
        "exec",
        "custom-api",
        "weft_GreetAccount",
        "--id",
        &id,
        "--parameters",
        r#"{"Name":"Ada"}"#,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["Greeting"], "Hello, Ada");
    assert_eq!(first["Bound"], format!("account {id} Target=account({id})"));
    assert!(stdout.contains("step greet"), "{stdout}");

    for (args, needle) in [
        (
            vec![
                "exec",
                "custom-api",
                "weft_GreetAccount",
                "--parameters",
                r#"{"Name":"Ada"}"#,
            ],
            "weft_GreetAccount is bound to a `account` row: give its --id",
        ),
        (
            vec![
                "exec",
                "custom-api",
                "weft_GreetFn",
                "--parameters",
                r#"{"Name":7}"#,
            ],
            "--parameters: The parameter 'Name' of weft_GreetFn expects a String value, got 7.",
        ),
        (
            vec!["exec", "custom-api", "weft_Nope"],
            "no custom API `weft_Nope` is declared",
        ),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

/// `weft exec … --server` makes the Web API call a client makes against a running `weft up`: a Custom API
/// (POST for an action on `accounts(<id>)/Microsoft.Dynamics.CRM.…`, GET with parameter aliases for a
/// function), printing the response properties, or the error and exit 1; and create, update, retrieve,
/// retrieve-multiple and delete on a table.
#[test]
fn exec_calls_a_custom_api_on_a_server() {
    let (dir, config) = greet_weft();
    let (mut child, base) = spawn_up(&config, &dir.path().join("served"));
    let created = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/api/data/v9.2/accounts"))
            .json(&serde_json::json!({"name": "Fourth Coffee"}))
            .send()
            .await
            .unwrap()
    });
    let id = created.headers()["OData-EntityId"]
        .to_str()
        .unwrap()
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    // The in-process data directory stays untouched: the server holds the row.
    let unused = dir.path().join("unused");
    let run = |args: &[&str]| weft_on(&config, &unused, &[args, &["--server", &base]].concat());
    let bound = run(&[
        "exec",
        "custom-api",
        "weft_GreetAccount",
        "--id",
        &id,
        "--parameters",
        r#"{"Name":"Ada"}"#,
    ]);
    let function = run(&[
        "exec",
        "custom-api",
        "weft_GreetFn",
        "--parameters",
        r#"{"Name":"O'Brien, Jr."}"#,
        "--tag",
        "t1",
    ]);
    let unknown = uuid::Uuid::new_v4().to_string();
    let missing = run(&[
        "exec",
        "custom-api",
        "weft_GreetAccount",
        "--id",
        &unknown,
        "--parameters",
        r#"{"Name":"Ada"}"#,
    ]);
    // Table operations go over the same Web API: typed --attributes become its JSON.
    let json_of = |out: &std::process::Output| -> serde_json::Value {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    let created = json_of(&run(&[
        "exec",
        "create",
        "account",
        "--attributes",
        r#"{"name":"Litware"}"#,
    ]));
    let row_id = created["id"].as_str().unwrap().to_owned();
    let updated = json_of(&run(&[
        "exec",
        "update",
        "account",
        "--id",
        &row_id,
        "--attributes",
        r#"{"name":"Litware, Inc."}"#,
    ]));
    let row = json_of(&run(&[
        "exec",
        "retrieve",
        "account",
        "--id",
        &row_id,
        "--columns",
        "name",
    ]));
    let rows = json_of(&run(&[
        "exec",
        "retrieve-multiple",
        "account",
        "--top",
        "5",
    ]));
    json_of(&run(&["exec", "delete", "account", "--id", &row_id]));
    let gone = run(&["exec", "retrieve", "account", "--id", &row_id]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(updated["done"], true);
    assert_eq!(row["name"], "Litware, Inc.");
    assert_eq!(row["accountid"], row_id.as_str());
    assert_eq!(rows["value"].as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stdout).contains("(HTTP 404 Not Found)"),
        "{}",
        String::from_utf8_lossy(&gone.stdout)
    );

    let stdout = String::from_utf8_lossy(&bound.stdout);
    assert!(
        bound.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&bound.stderr)
    );
    let body: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(body["Greeting"], "Hello, Ada");
    assert_eq!(body["Bound"], format!("account {id} Target=account({id})"));

    let stdout = String::from_utf8_lossy(&function.stdout);
    assert!(
        function.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&function.stderr)
    );
    let body: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(body["Greeting"], "Hello, O'Brien, Jr.");

    let stdout = String::from_utf8_lossy(&missing.stdout);
    assert_eq!(missing.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "error 0x80040217: account with id {unknown} does not exist (HTTP 404 Not Found)"
        )),
        "{stdout}"
    );
    assert!(!dir.path().join("unused").exists());
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A toolchain without the wasm target (a fake `rustc` whose sysroot has none):
/// `weft build` asks rustup for it, saying so in one line; with no rustup on the
/// PATH it says what to do in one line instead of a cargo error.
#[test]
fn build_installs_the_wasm_target_through_rustup_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib")).unwrap();
    let rustc = script(dir.path(), "rustc", &format!("echo {}", sysroot.display()));
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();

    // No rustup anywhere on the PATH.
    let out = weft()
        .args(["build", "--plugins"])
        .arg(&plugins)
        .env("RUSTC", &rustc)
        .env("PATH", &bin)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("wasm32-wasip2 target is not installed and rustup is not on the PATH"),
        "{stderr}"
    );

    // A rustup that records its arguments and installs the target into the sysroot.
    let log = dir.path().join("rustup.log");
    script(
        &bin,
        "rustup",
        &format!(
            "echo \"$@\" >> {}; /bin/mkdir -p {}/lib/rustlib/wasm32-wasip2",
            log.display(),
            sysroot.display()
        ),
    );
    let out = weft()
        .args(["build", "--plugins"])
        .arg(&plugins)
        .env("RUSTC", &rustc)
        .env("PATH", &bin)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("installing the wasm32-wasip2 target with rustup"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        "target add wasm32-wasip2"
    );
    assert!(sysroot.join("lib/rustlib/wasm32-wasip2").exists());
}

/// `weft plugin new` outside any checkout: the project's native tests pass as
/// generated, `weft build` run inside it writes the component into its own
/// `target/` and prints the path weft.toml uses, the component succeeds under
/// `weft plugin run` with the command's defaults and with the README's example,
/// and its weft.toml loads.
#[test]
fn a_new_plugin_project_tests_builds_and_runs_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("demo");
    let out = weft()
        .args(["plugin", "new", "demo", "--dir"])
        .arg(&project)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(stdout.contains("weft build"), "{stdout}");
    // Nothing in it points back into a checkout.
    for file in [
        "Cargo.toml",
        "weft-sdk/Cargo.toml",
        "weft.toml",
        "README.md",
    ] {
        let text = std::fs::read_to_string(project.join(file)).unwrap();
        assert!(!text.contains(env!("CARGO_MANIFEST_DIR")), "{file}");
        assert!(!text.contains("../"), "{file}: {text}");
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tested = Command::new(&cargo)
        .arg("test")
        .current_dir(&project)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let text = succeeded(&tested);
    assert!(text.contains("test result: ok. 2 passed"), "{text}");

    let built = weft().arg("build").current_dir(&project).output().unwrap();
    let listed = succeeded(&built);
    assert_eq!(
        listed.trim(),
        "demo\ttarget/wasm32-wasip2/release/demo.wasm",
        "{listed}"
    );
    let component = project.join("target/wasm32-wasip2/release/demo.wasm");
    assert!(component.exists());

    let ran = weft()
        .args(["plugin", "run"])
        .arg(&component)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{report}");
    assert!(report.contains("outcome: succeeded"), "{report}");
    let ran = weft()
        .args(["plugin", "run"])
        .arg(&component)
        .args([
            "--stage",
            "20",
            "--target",
            r#"{"name":"  Fourth   Coffee "}"#,
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&ran.stdout);
    assert!(
        report.contains("name tidied to 'Fourth Coffee'"),
        "{report}"
    );

    weft_host::registration::Registration::load(&project.join("weft.toml"))
        .expect("the generated weft.toml loads");
    let bus = std::fs::read_to_string(project.join("weft.toml")).unwrap();
    weft_bus::BusConfig::from_toml_str(&bus).expect("its [bus] section parses");
}

/// Registration from the command line, on a data directory: steps and plug-ins listed
/// with ids (plug-ins with the sha256 they run), a step disabled and enabled again by
/// name (the validator stops and restarts refusing a nameless account), a near miss
/// answered with "did you mean", and a plug-in's component replaced by `plugin push`.
#[test]
fn steps_and_plugins_from_the_command_line() {
    let (dir, config) = sample_weft();
    let data = dir.path().join("data");
    let run = |args: &[&str]| weft_on(&config, &data, args);
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let nameless = [
        "exec",
        "create",
        "account",
        "--attributes",
        r#"{"name":""}"#,
    ];
    assert!(!run(&nameless).status.success(), "the validator refuses it");

    let listed = run(&["steps", "list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let steps = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        steps.contains("\"validate\"  Create account  stage 10 mode 0 rank 1"),
        "{steps}"
    );
    assert!(
        steps.contains("\"number\"  Create account  stage 20"),
        "{steps}"
    );

    let typo = run(&["steps", "disable", "validat"]);
    assert!(!typo.status.success());
    assert!(
        text(&typo).contains("did you mean \"validate\"?"),
        "{}",
        text(&typo)
    );

    let disabled = run(&["steps", "disable", "validate"]);
    assert!(disabled.status.success(), "{}", text(&disabled));
    assert!(String::from_utf8_lossy(&run(&["steps", "list"]).stdout).contains("(disabled)"));
    let out = run(&nameless);
    assert!(
        out.status.success(),
        "a disabled step does not fire: {}",
        text(&out)
    );
    assert!(run(&["steps", "enable", "validate"]).status.success());
    assert!(!run(&nameless).status.success(), "enabled again");

    let plugins = run(&["plugins", "list"]);
    let plugins = String::from_utf8_lossy(&plugins.stdout).into_owned();
    let enricher_sha = weft_host::sandbox::sha256_hex(&fixtures::bytes("enricher"));
    assert!(
        plugins.contains(&format!("enricher  sha256 {enricher_sha}")),
        "{plugins}"
    );

    // The validator's component replaced by the enricher's: the nameless account now passes
    // and gets a number.
    let pushed = weft_on(
        &config,
        &data,
        &[
            "plugin",
            "push",
            "validator",
            fixtures::component("enricher").to_str().unwrap(),
        ],
    );
    assert!(pushed.status.success(), "{}", text(&pushed));
    assert!(
        String::from_utf8_lossy(&pushed.stdout)
            .contains(&format!("validator now runs sha256 {enricher_sha}")),
        "{}",
        text(&pushed)
    );
    let plugins = String::from_utf8_lossy(&run(&["plugins", "list"]).stdout).into_owned();
    assert!(
        plugins.contains(&format!("validator  sha256 {enricher_sha}")),
        "{plugins}"
    );
}

/// The lines of a child's output stream, read on a thread so the child never blocks on a full pipe.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Waits (bounded, generously: a component compiles first) for a line containing `needle`; the lines
/// seen before it are in the panic message when it never comes.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!(
        "no line with {needle:?}; lines so far:\n{}",
        seen.join("\n")
    )
}

/// `weft up --watch` hot-replaces a plug-in whose component file changes (the validator's file
/// overwritten with the enricher: a nameless account then passes), refuses a file that is not a
/// component and keeps the running one, and ignores a rewrite with the same content.
#[test]
fn up_watch_replaces_a_changed_component() {
    let (dir, config) = sample_weft();
    // The validator's component as a file of the test's own, to overwrite.
    let watched = dir.path().join("validator.wasm");
    std::fs::copy(fixtures::component("validator"), &watched).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &fixtures::component("validator").display().to_string(),
        &watched.display().to_string(),
    );
    std::fs::write(&config, text).unwrap();

    let (mut child, base) = spawn_up_with(
        &config,
        &dir.path().join("data"),
        &["--watch"],
        std::process::Stdio::piped(),
    );
    let lines = lines_of(child.stderr.take().unwrap());
    wait_for_line(&lines, &format!("watching {}", watched.display()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let create_nameless = || {
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .post(format!("{base}/api/data/v9.2/accounts"))
                .json(&serde_json::json!({"name": ""}))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        })
    };
    assert_eq!(
        create_nameless(),
        400,
        "the validator refuses a nameless account"
    );

    let enricher = fixtures::bytes("enricher");
    let enricher_sha = weft_host::sandbox::sha256_hex(&enricher);
    std::fs::write(&watched, &enricher).unwrap();
    wait_for_line(
        &lines,
        &format!("plug-in \"validator\" now runs sha256 {enricher_sha}"),
    );
    assert_eq!(
        create_nameless(),
        204,
        "the enricher now runs as the validator"
    );

    std::fs::write(&watched, b"not a component").unwrap();
    let refused = wait_for_line(&lines, "refused");
    assert!(
        refused.contains(&format!("keeps running sha256 {enricher_sha}")),
        "{refused}"
    );
    assert_eq!(create_nameless(), 204, "the refused file changed nothing");
    let _ = child.kill();
    let _ = child.wait();
}

/// `weft jobs list` shows the newest job first (`--oldest-first` the other way), and `--follow` prints a
/// line for a job created after it started.
#[test]
fn jobs_list_is_newest_first_and_follows() {
    let (dir, config) = sample_weft();
    // An asynchronous step: each Create queues one system job (nothing runs them here).
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        r#"
[[step]]
name = "later"
message = "Create"
table = "account"
stage = 40
mode = 1
plugin = "enricher"
"#,
    );
    std::fs::write(&config, text).unwrap();
    let data = dir.path().join("data");
    let create = |name: &str| {
        succeeded(&weft_on(
            &config,
            &data,
            &[
                "exec",
                "create",
                "account",
                "--attributes",
                &format!(r#"{{"name":"{name}"}}"#),
            ],
        ))
    };
    let id_of = |stdout: String| -> String {
        let created: serde_json::Value =
            serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        created["id"].as_str().unwrap().to_owned()
    };
    let first = id_of(create("First"));
    let second = id_of(create("Second"));
    let jobs = |flags: &[&str]| -> Vec<String> {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(flags);
        let out = weft()
            .args(["jobs", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .args(&args)
            .output()
            .unwrap();
        let listed: Vec<serde_json::Value> = serde_json::from_str(&succeeded(&out)).unwrap();
        listed
            .iter()
            .map(|j| j["regardingobjectid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(jobs(&[]), [second.clone(), first.clone()]);
    assert_eq!(jobs(&["--oldest-first"]), [first.clone(), second.clone()]);
    assert_eq!(jobs(&["--limit", "1"]), [second]);

    let mut follow = weft()
        .args(["jobs", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["list", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(follow.stdout.take().unwrap());
    wait_for_line(&lines, "2 job(s)");
    let third = id_of(create("Third"));
    // The new job's line names its system job, whose regarding row is the new account.
    let out = weft()
        .args(["jobs", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["list", "--json", "--limit", "1"])
        .output()
        .unwrap();
    let newest: Vec<serde_json::Value> = serde_json::from_str(&succeeded(&out)).unwrap();
    assert_eq!(newest[0]["regardingobjectid"], third.as_str());
    let job_id = newest[0]["asyncoperationid"].as_str().unwrap().to_owned();
    wait_for_line(&lines, &job_id);
    let _ = follow.kill();
    let _ = follow.wait();
}

/// Names a user gets wrong are answered with the right one: an entity set name typed for a table, a
/// component file named with `-` where cargo wrote `_`.
#[test]
fn wrong_names_get_did_you_mean() {
    let (dir, config) = sample_weft();
    let data = dir.path().join("data");
    let out = weft_on(&config, &data, &["exec", "create", "accounts"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("table `accounts` is not declared")
            && stderr.contains("the entity set name (Web API URLs) of the table \"account\""),
        "{stderr}"
    );

    std::fs::copy(
        fixtures::component("validator"),
        dir.path().join("my_validator.wasm"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &fixtures::component("validator").display().to_string(),
        "my-validator.wasm",
    );
    std::fs::write(&config, text).unwrap();
    let out = weft_on(&config, &data, &["exec", "retrieve-multiple", "account"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did you mean \"my_validator.wasm\"?"),
        "{stderr}"
    );
}

/// A failed execution under the pipeline is recorded with its trace row; `weft plugin replay` runs it
/// again with the recorded context and host-call answers — it fails the same way even after the data
/// changed (the table the plug-in wrote to now exists) — and `--component` tries another component.
#[test]
fn plugin_replay_reproduces_a_recorded_failure() {
    let (dir, config) = sample_weft();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[[plugin]]
name = "org-caller"
component = "{}"

[[step]]
name = "copy to contact"
message = "Create"
table = "account"
stage = 20
rank = 2
plugin = "org-caller"
configuration = "create=contact:lastname"
"#,
        fixtures::component("org-caller").display()
    ));
    std::fs::write(&config, &text).unwrap();
    let data = dir.path().join("data");
    let failed = weft_on(
        &config,
        &data,
        &[
            "exec",
            "create",
            "account",
            "--attributes",
            r#"{"name":"Ada"}"#,
        ],
    );
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("table `contact` is not declared"),
        "{}",
        String::from_utf8_lossy(&failed.stdout)
    );
    let trace = succeeded(&weft_on(&config, &data, &["trace"]));
    let id = trace
        .lines()
        .find_map(|l| l.split("weft plugin replay ").nth(1))
        .map(|rest| rest.trim_end_matches('`').to_owned())
        .unwrap_or_else(|| panic!("no replay line in: {trace}"));

    // Declare the missing table: a live call would now succeed, the replay answers as recorded.
    text.push_str(
        r#"
[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
"#,
    );
    std::fs::write(&config, &text).unwrap();
    let replayed = weft_on(&config, &data, &["plugin", "replay", &id]);
    let stdout = String::from_utf8_lossy(&replayed.stdout);
    assert!(!replayed.status.success(), "{stdout}");
    assert!(
        stdout.contains("organization-service.create contact"),
        "{stdout}"
    );
    assert!(
        stdout.contains("replay: reproduced: it fails as recorded: create failed"),
        "{stdout}"
    );

    let fixed = weft_on(
        &config,
        &data,
        &[
            "plugin",
            "replay",
            &id,
            "--component",
            fixtures::component("enricher").to_str().unwrap(),
        ],
    );
    let stdout = succeeded(&fixed);
    assert!(
        stdout.contains("replay: it succeeds now; the recorded execution failed"),
        "{stdout}"
    );

    let unknown = weft_on(
        &config,
        &data,
        &["plugin", "replay", "00000000-0000-4000-8000-000000000000"],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("has no recording"));
}
