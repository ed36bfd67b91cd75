//! `weft up` on a PostgreSQL store (`[store] url` and `--store URL`): the pipeline with synchronous plug-ins
//! through the Web API, system jobs delivered once by two hosts sharing one database, and `weft store copy`
//! from a data directory. Each test has a database of its own (`TestDatabase`); without
//! `WEFT_TEST_POSTGRES` they report themselves skipped (they fail instead when `WEFT_REQUIRE_POSTGRES=1`).

use crate::fixtures;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_host::registration::EXAMPLE_ACCOUNT_TABLE;
use weft_store::TestDatabase;

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// Starts `weft up` with `flags` on a free loopback port; returns the child and its base URL.
fn spawn_up(config: &Path, data: &Path, flags: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = weft()
        .args(["up", "--bind", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
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

/// Kills the child when dropped, so a failed assertion leaves no host running.
struct Host(std::process::Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The stdout of a command that must have succeeded.
fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A webhook on 127.0.0.1 counting the POSTs it answers with 200.
async fn start_hook() -> (Arc<Mutex<Vec<Vec<u8>>>>, String) {
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(seen): axum::extract::State<Arc<Mutex<Vec<Vec<u8>>>>>,
                 body: axum::body::Bytes| async move {
                    seen.lock().unwrap().push(body.to_vec());
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, url)
}

/// The validator (stage 10 on Create and Update), the enricher (20 on Create) and an asynchronous step
/// posting every Create to the webhook at `hook`; `store` goes in as `[store] url` when given.
fn config(dir: &Path, hook: &str, store: Option<&str>) -> std::path::PathBuf {
    let config = dir.join("weft.toml");
    let store = store.map_or(String::new(), |url| format!("[store]\nurl = \"{url}\"\n"));
    std::fs::write(
        &config,
        format!(
            r#"{store}
{EXAMPLE_ACCOUNT_TABLE}
[[plugin]]
name = "validator"
component = "{}"

[[plugin]]
name = "enricher"
component = "{}"

[[service_endpoint]]
name = "hook"
contract = 8
message_format = 2
auth_type = 4
url = "{hook}"
auth_value = "hook-code"

[[step]]
name = "validate"
message = "Create"
table = "account"
stage = 10
plugin = "validator"

[[step]]
name = "validate update"
message = "Update"
table = "account"
stage = 10
plugin = "validator"

[[step]]
name = "number"
message = "Create"
table = "account"
stage = 20
plugin = "enricher"

[[step]]
name = "to hook"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "hook"
"#,
            fixtures::component("validator").display(),
            fixtures::component("enricher").display(),
        ),
    )
    .unwrap();
    config
}

/// The system jobs on the store, as `weft jobs list --json` prints them.
fn jobs(config: &Path, data: &Path, url: &str) -> Vec<serde_json::Value> {
    let out = weft()
        .args(["jobs", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(["--store", url, "list", "--json", "--limit", "1000"])
        .output()
        .unwrap();
    serde_json::from_str(&succeeded(&out)).unwrap()
}

/// Two `weft up` hosts on one PostgreSQL database (one told by `[store] url`, one by `--store`): each sees
/// the other's writes through the Web API, synchronous plug-ins run on Create and Update (a rejected Update
/// changes nothing), and every Create's system job is delivered to the webhook exactly once although both
/// hosts' asynchronous services claim jobs.
#[test]
fn two_hosts_on_one_postgres_database_share_rows_and_deliver_each_job_once() {
    let Some(db) = TestDatabase::create(
        "postgres::two_hosts_on_one_postgres_database_share_rows_and_deliver_each_job_once",
    ) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (seen, hook) = runtime.block_on(start_hook());
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let config_a = config(&dir_a, &hook, Some(db.url()));
    let config_b = config(&dir_b, &hook, None);
    let (data_a, data_b) = (dir_a.join("data"), dir_b.join("data"));
    let (a, base_a) = spawn_up(&config_a, &data_a, &[]);
    let _a = Host(a);
    let (b, base_b) = spawn_up(&config_b, &data_b, &["--store", db.url()]);
    let _b = Host(b);
    assert!(!data_b.join("weft.db").exists(), "host b used SQLite");

    const CREATES: usize = 6;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let api = |base: &str, path: &str| format!("{base}/api/data/v9.2/{path}");
        let mut ids = Vec::new();
        for n in 0..CREATES {
            let base = if n % 2 == 0 { &base_a } else { &base_b };
            let created = client
                .post(api(base, "accounts"))
                .json(&serde_json::json!({"name": format!("Fourth Coffee {n}")}))
                .send()
                .await
                .unwrap();
            assert!(created.status().is_success(), "{}", created.status());
            let entity = created.headers()["odata-entityid"]
                .to_str()
                .unwrap()
                .to_owned();
            ids.push(
                entity
                    .rsplit_once('(')
                    .unwrap()
                    .1
                    .trim_end_matches(')')
                    .to_owned(),
            );
        }
        // Host b sees host a's row with the enricher's number (written by a's stage 20).
        let row: serde_json::Value = client
            .get(api(&base_b, &format!("accounts({})", ids[0])))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            row["accountnumber"]
                .as_str()
                .unwrap_or_default()
                .starts_with("ACC-FC0-"),
            "{row}"
        );
        // An Update the validator refuses on host b changes nothing; a valid one on b is seen on a.
        let refused = client
            .patch(api(&base_b, &format!("accounts({})", ids[0])))
            .json(&serde_json::json!({"name": ""}))
            .send()
            .await
            .unwrap();
        assert!(refused.status().is_client_error(), "{}", refused.status());
        let body = refused.text().await.unwrap();
        assert!(body.contains("Account name is required."), "{body}");
        let updated = client
            .patch(api(&base_b, &format!("accounts({})", ids[0])))
            .json(&serde_json::json!({"name": "Fifth Coffee"}))
            .send()
            .await
            .unwrap();
        assert!(updated.status().is_success(), "{}", updated.status());
        let row: serde_json::Value = client
            .get(api(&base_a, &format!("accounts({})?$select=name", ids[0])))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(row["name"], "Fifth Coffee", "{row}");
    });

    // Every job ends Succeeded (statuscode 30); the deadline only bounds a hang.
    let deadline = Instant::now() + Duration::from_secs(120);
    let listed = loop {
        let listed = jobs(&config_b, &data_b, db.url());
        if listed.len() == CREATES && listed.iter().all(|j| j["statuscode"] == 30) {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not finish: {listed:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let posted = seen.lock().unwrap().clone();
    assert_eq!(posted.len(), CREATES, "each job is posted once");
    for job in &listed {
        let id = job["asyncoperationid"].as_str().unwrap();
        assert_eq!(
            posted
                .iter()
                .filter(|b| String::from_utf8_lossy(b).contains(id))
                .count(),
            1,
            "job {id} posted once"
        );
    }
}

/// `weft store copy` moves a data directory's SQLite store into PostgreSQL, where `weft exec --store` reads
/// it; a second copy into the now-filled database is refused, and `--force` replaces its rows.
#[test]
fn store_copy_moves_a_data_directory_into_postgres() {
    let Some(db) =
        TestDatabase::create("postgres::store_copy_moves_a_data_directory_into_postgres")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "http://127.0.0.1:9/hook", None);
    let data = dir.path().join("data");
    let on = |args: &[&str]| {
        weft()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let with_data = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data", data.to_str().unwrap()]);
        on(&all)
    };
    succeeded(&with_data(&[
        "exec",
        "create",
        "account",
        "--attributes",
        r#"{"name":"Fourth Coffee"}"#,
    ]));
    let copied = succeeded(&on(&[
        "store",
        "copy",
        "--from",
        data.to_str().unwrap(),
        "--to",
        db.url(),
    ]));
    assert!(copied.contains("account"), "{copied}");
    let listed = succeeded(&with_data(&[
        "exec",
        "retrieve-multiple",
        "account",
        "--store",
        db.url(),
    ]));
    assert!(
        listed.contains("Fourth Coffee") && listed.contains("ACC-FC-"),
        "{listed}"
    );

    let again = on(&[
        "store",
        "copy",
        "--from",
        data.to_str().unwrap(),
        "--to",
        db.url(),
    ]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    succeeded(&on(&[
        "store",
        "copy",
        "--from",
        data.to_str().unwrap(),
        "--to",
        db.url(),
        "--force",
    ]));
}

/// The quickstart scenario on PostgreSQL (`weft quickstart --store URL`): the same run and the same checks as
/// on SQLite (`cli::quickstart_succeeds`).
#[test]
fn quickstart_succeeds_on_postgres() {
    let Some(db) = TestDatabase::create("postgres::quickstart_succeeds_on_postgres") else {
        return;
    };
    crate::cli::run_quickstart(&["--store", db.url()]);
}

/// Registration changed through one host's Web API reaches the other without a restart (its NOTIFY makes
/// the other reload the stored steps): the Update validator disabled on host a stops refusing on host b,
/// and enabled again on host b refuses on host a.
#[test]
fn a_step_changed_through_one_host_applies_on_the_other() {
    let Some(db) =
        TestDatabase::create("postgres::a_step_changed_through_one_host_applies_on_the_other")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "http://127.0.0.1:9/hook", Some(db.url()));
    let (a, base_a) = spawn_up(&config, &dir.path().join("a"), &[]);
    let _a = Host(a);
    let (b, base_b) = spawn_up(&config, &dir.path().join("b"), &[]);
    let _b = Host(b);
    let step = weft_host::registration::derived_id("sdkmessageprocessingstep", "validate update");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let api = |base: &str, path: &str| format!("{base}/api/data/v9.2/{path}");
        let created = client
            .post(api(&base_a, "accounts"))
            .json(&serde_json::json!({"name": "Fourth Coffee 0"}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        let account = created.headers()["odata-entityid"]
            .to_str()
            .unwrap()
            .rsplit_once('(')
            .unwrap()
            .1
            .trim_end_matches(')')
            .to_owned();
        let rename = |base: &str| {
            client
                .patch(api(base, &format!("accounts({account})")))
                .json(&serde_json::json!({"name": ""}))
                .send()
        };
        let set_step = |base: &str, enabled: bool| {
            let body = if enabled {
                r#"{"statecode":0,"statuscode":1}"#
            } else {
                r#"{"statecode":1,"statuscode":2}"#
            };
            client
                .patch(api(base, &format!("sdkmessageprocessingsteps({step})")))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
        };
        // Until `done` answers true for a rename through `base` (bounded: a hang, not a timing goal).
        let until = |base: String, accepted: bool| {
            let rename = &rename;
            async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let r = rename(&base).await.unwrap();
                    if r.status().is_success() == accepted {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "after 20 s the rename on {base} still answered {}",
                        r.status()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        // Both hosts run the validator at first.
        for base in [&base_a, &base_b] {
            let r = rename(base).await.unwrap();
            assert!(r.status().is_client_error(), "{}", r.status());
        }
        let r = set_step(&base_a, false).await.unwrap();
        assert_eq!(r.status(), 204);
        until(base_b.clone(), true).await;
        let r = set_step(&base_b, true).await.unwrap();
        assert_eq!(r.status(), 204);
        until(base_a.clone(), false).await;
    });
}

/// A workflow created, changed and deleted through one host's Web API (`workflows` rows) reaches the other
/// without a restart (its NOTIFY makes the other reload the stored workflows): host b lists it once host a
/// created it and starts it on its own Creates; deactivated on a, b lists it as Draft and starts it no
/// more; renamed on a, b lists the new name; deleted on a, b no longer knows it.
#[test]
fn a_workflow_changed_through_one_host_applies_on_the_other() {
    let Some(db) =
        TestDatabase::create("postgres::a_workflow_changed_through_one_host_applies_on_the_other")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "http://127.0.0.1:9/hook", Some(db.url()));
    let (a, base_a) = spawn_up(&config, &dir.path().join("a"), &[]);
    let _a = Host(a);
    let (b, base_b) = spawn_up(&config, &dir.path().join("b"), &[]);
    let _b = Host(b);
    let id = weft_workflows::id_for("Stamp accounts");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let api = |base: &str, path: &str| format!("{base}/api/data/v9.2/{path}");
        let send = |method: reqwest::Method, base: &str, path: &str, body: serde_json::Value| {
            client.request(method, api(base, path)).json(&body).send()
        };
        // Until host b's view of the workflow (GET workflows(id): its registration, not the store) passes
        // `check` (bounded: a hang, not a timing goal).
        let until_b = |check: &'static (
                                    dyn Fn(reqwest::StatusCode, &serde_json::Value) -> bool + Sync
                                ),
                       what: &'static str| {
            let (client, url) = (&client, api(&base_b, &format!("workflows({id})")));
            async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let r = client.get(&url).send().await.unwrap();
                    let status = r.status();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    if check(status, &body) {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "after 20 s host b still does not see the workflow {what}: {status} {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        // The workflow jobs host b started: one Create of an account on b, then the jobs of the workflow.
        let jobs_after_a_create_on_b = || async {
            let created = send(
                reqwest::Method::POST,
                &base_b,
                "accounts",
                serde_json::json!({"name": "Fourth Coffee"}),
            )
            .await
            .unwrap();
            assert!(created.status().is_success(), "{}", created.status());
            let jobs: serde_json::Value = client
                .get(api(
                    &base_b,
                    &format!("asyncoperations?$filter=_owningextensionid_value eq {id}"),
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            jobs["value"].as_array().unwrap().len()
        };

        let r = client
            .get(api(&base_b, &format!("workflows({id})")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "no workflow yet");
        let r = send(
            reqwest::Method::POST,
            &base_a,
            "workflows",
            serde_json::json!({
                "name": "Stamp accounts",
                "category": 0,
                "mode": 0,
                "type": 1,
                "primaryentity": "account",
                "scope": 4,
                "triggeroncreate": true,
                "statecode": 1,
                "statuscode": 2,
                "clientdata": r#"{"step": [{"kind": "stop", "status": "succeeded"}]}"#,
            }),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
        until_b(
            &|s, w| s == 200 && w["statecode"] == 1 && w["name"] == "Stamp accounts",
            "created",
        )
        .await;
        assert_eq!(jobs_after_a_create_on_b().await, 1, "b starts the workflow");

        let r = send(
            reqwest::Method::PATCH,
            &base_a,
            &format!("workflows({id})"),
            serde_json::json!({"statecode": 0, "statuscode": 1}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
        until_b(&|s, w| s == 200 && w["statecode"] == 0, "deactivated").await;
        assert_eq!(
            jobs_after_a_create_on_b().await,
            1,
            "b no longer starts the deactivated workflow"
        );

        let r = send(
            reqwest::Method::PATCH,
            &base_a,
            &format!("workflows({id})"),
            serde_json::json!({"name": "Stamp accounts (renamed)"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
        until_b(
            &|s, w| s == 200 && w["name"] == "Stamp accounts (renamed)",
            "renamed",
        )
        .await;

        let r = client
            .delete(api(&base_a, &format!("workflows({id})")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
        until_b(&|s, _| s == 404, "deleted").await;
    });
}

/// A job committed through one host wakes the asynchronous service of another (LISTEN/NOTIFY): host b's
/// workers poll every 60 s, host a has no service, and the job is still delivered within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_on_one_host_wakes_the_service_of_another() {
    // The test database's own client is a blocking one: created and dropped (also when an assertion
    // fails) off the async threads.
    let Some(db) = tokio::task::block_in_place(|| {
        TestDatabase::create("postgres::a_job_committed_on_one_host_wakes_the_service_of_another")
    }) else {
        return;
    };
    let _db = DropBlocking(Some(db));
    let db = _db.0.as_ref().unwrap();
    let (seen, hook) = start_hook().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = config(dir.path(), &hook, Some(db.url()));
    let mut text = std::fs::read_to_string(&config_path).unwrap();
    text.push_str("\n[jobs]\npoll_interval_ms = 60000\n");
    std::fs::write(&config_path, text).unwrap();
    let open = |data: &str| {
        let (config, data) = (config_path.clone(), dir.path().join(data));
        tokio::task::spawn_blocking(move || {
            Arc::new(weft_host::runtime::Runtime::open(&config, &data).unwrap())
        })
    };
    let a = open("a").await.unwrap();
    let b = open("b").await.unwrap();
    let delivery = weft_host::delivery::Delivery::new("weft.test").unwrap();
    b.pipeline.set_delivery(Arc::clone(&delivery));
    let runner = Arc::new(weft_host::delivery::DeliveryRunner::new(
        b.pipeline.clone(),
        delivery,
    ));
    let jobs = b.registration.jobs.clone().into_config().unwrap();
    let service = weft_jobs::AsyncService::start(Arc::clone(&b.store), runner, jobs).unwrap();
    assert!(b.pipeline.set_job_notifier(service.notifier()));
    let following =
        tokio::task::block_in_place(|| b.pipeline.follow_other_hosts(Some(service.notifier())));
    assert!(following, "a PostgreSQL store has other hosts to follow");
    // Let b's workers find the empty store and go to sleep for their 60 s poll.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let on_a = Arc::clone(&a);
    tokio::task::spawn_blocking(move || {
        let target = weft_host::context::entity_from_json(
            "account",
            &serde_json::json!({ "name": "Fourth Coffee" }),
        )
        .unwrap();
        on_a.pipeline
            .execute(weft_host::pipeline::OrganizationRequest::new(
                weft_host::pipeline::Message::Create { target },
            ))
            .unwrap()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "host b did not deliver host a's job within 20 s (its workers poll every 60 s)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.shutdown().await;
    tokio::task::block_in_place(|| drop((a, b)));
}

/// Drops its value inside `block_in_place` (a blocking client must not be closed on an async thread).
struct DropBlocking<T>(Option<T>);

impl<T> Drop for DropBlocking<T> {
    fn drop(&mut self) {
        let value = self.0.take();
        tokio::task::block_in_place(|| drop(value));
    }
}
