//! Background workflows registered through the Web API as `workflows` rows (issue 15), over real HTTP on
//! loopback: a row POSTed with a custom activity step fires on the next Create like a `[[workflow]]` of
//! weft.toml (a type-10 system job whose activity posts to a webhook served here), deactivating it stops
//! new runs, a restart keeps it (state included), what weft cannot run is refused with a precise 400, and
//! the routes take the same bearer key as every other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use uuid::Uuid;
use weft_host::api::{self, ApiServer};
use weft_host::delivery::{Delivery, DeliveryRunner};
use weft_host::registration::{EXAMPLE_ACCOUNT_TABLE, derived_id};
use weft_host::runtime::Runtime;
use weft_jobs::{AsyncService, RetryPolicy, ServiceConfig};
use weft_store::system::{JobFilter, JobState, JobStatus, SystemJob};
use weft_store::{Read, StoreExt};

use crate::delivery::{CONTACT_TABLE, Hook};
use crate::fixtures;

const WORKFLOW_NAME: &str = "Post accounts (Web API)";
/// A `[[workflow]]` of the file, so GET lists both kinds.
const FILE_WORKFLOW: &str = r#"
[[workflow]]
name = "File workflow"
table = "account"
on = ["delete"]
  [[workflow.step]]
  kind = "stop"
  status = "succeeded"
"#;

/// A data directory, its weft.toml (account and contact tables, the Azure-aware component, a webhook
/// endpoint, one file workflow) and the API serving it; restarted as one host would be.
struct Host {
    dir: tempfile::TempDir,
    runtime: Option<Arc<Runtime>>,
    server: Option<ApiServer>,
    delivery: Arc<Delivery>,
    base: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl Host {
    async fn start(hook_url: &str, key: Option<&str>) -> Host {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), hook_url, FILE_WORKFLOW);
        let mut host = Host {
            dir,
            runtime: None,
            server: None,
            delivery: Delivery::new("weft.test.local").unwrap(),
            base: String::new(),
            key: key.map(str::to_owned),
            client: reqwest::Client::new(),
        };
        host.open().await;
        host
    }

    async fn open(&mut self) {
        let config = self.dir.path().join("weft.toml");
        let data = self.dir.path().join("data");
        let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &data))
            .await
            .unwrap()
            .unwrap();
        assert!(runtime.pipeline.set_delivery(self.delivery.clone()));
        let runtime = Arc::new(runtime);
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (addr, server) = api::serve(Arc::clone(&runtime), bind, self.key.clone())
            .await
            .unwrap();
        self.base = format!("http://{addr}/api/data/v9.2");
        self.runtime = Some(runtime);
        self.server = Some(server);
    }

    async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
        self.runtime = None;
        self.open().await;
    }

    fn runtime(&self) -> &Arc<Runtime> {
        self.runtime.as_ref().unwrap()
    }

    /// The asynchronous service with the host's runner; a retry comes `retry_s` after a failure.
    fn jobs(&self, retry_s: f64) -> AsyncService {
        let runner = Arc::new(DeliveryRunner::new(
            self.runtime().pipeline.clone(),
            self.delivery.clone(),
        ));
        let config = ServiceConfig {
            workers: 1,
            batch_size: 8,
            poll_interval: Duration::from_millis(50),
            retry: RetryPolicy {
                schedule_s: Some(vec![retry_s]),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            ..ServiceConfig::default()
        };
        AsyncService::start(self.runtime().store.clone(), runner, config).unwrap()
    }

    /// Sends `body` (JSON) with the host's key, if any; returns the status and the OData-EntityId or body.
    async fn send(&self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let mut request = self
            .client
            .request(method, format!("{}/{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let r = request.send().await.unwrap();
        let location = r
            .headers()
            .get("OData-EntityId")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, location.unwrap_or(text))
    }

    async fn get(&self, path: &str) -> Json {
        let (status, body) = self.send(Method::GET, path, "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Creates an account over the Web API; returns its id.
    async fn create_account(&self, name: &str) -> Uuid {
        let (status, location) = self
            .send(
                Method::POST,
                "accounts",
                &json!({ "name": name }).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
        id_in(&location)
    }

    /// The Workflow (type 10) system jobs, newest first.
    fn workflow_jobs(&self) -> Vec<SystemJob> {
        tokio::task::block_in_place(|| {
            self.runtime()
                .store
                .read(|r: &dyn Read| r.system_jobs(&JobFilter::default()))
        })
        .unwrap()
        .into_iter()
        .filter(|j| j.operation_type == 10)
        .collect()
    }

    /// Waits (at most 30 s) until `job` satisfies `done`.
    async fn wait_job(&self, job: Uuid, done: impl Fn(&SystemJob) -> bool) -> SystemJob {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let j = self
                .runtime()
                .store
                .read(|r: &dyn Read| r.system_job(job))
                .unwrap()
                .expect("the job exists");
            if done(&j) {
                return j;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the job never got there: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

/// Writes weft.toml into `dir` with `workflows` as its `[[workflow]]` entries.
fn write_config(dir: &std::path::Path, hook_url: &str, workflows: &str) {
    let config = format!(
        "{EXAMPLE_ACCOUNT_TABLE}\n{CONTACT_TABLE}\n[[plugin]]\nname = \"azure-aware\"\ncomponent = \"{}\"\n\
         [[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\nauth_type = 4\n\
         url = \"{hook_url}\"\nauth_value = \"hook-key-51c2\"\n{workflows}",
        fixtures::component("azure-aware").display()
    );
    std::fs::write(dir.join("weft.toml"), config).unwrap();
}

fn id_in(location: &str) -> Uuid {
    let inner = location
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not an entity URL: {location}"));
    Uuid::parse_str(inner).unwrap()
}

fn error_message(body: &str) -> String {
    let v: Json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// The steps of the workflow under test, as `clientdata`: the Azure-aware `PostContext` activity posting
/// the context to the webhook endpoint, its `Response` feeding an Update of the account.
fn client_data(activity: &str) -> String {
    json!({
        "step": [
            {
                "kind": "activity",
                "plugin": "azure-aware",
                "activity": activity,
                "inputs": { "ServiceEndpoint": format!("serviceendpoint:{}", derived_id("serviceendpoint", "hook")) },
                "outputs": { "Response": "answer" }
            },
            {
                "kind": "update",
                "values": { "emailaddress1": "posted@example.com", "accountnumber": { "variable": "answer" } }
            }
        ]
    })
    .to_string()
}

/// A `workflows` row: Create of account, Background, activated, with [`client_data`].
fn workflow_row(extra: Json) -> String {
    let mut row = json!({
        "name": WORKFLOW_NAME,
        "category": 0,
        "mode": 0,
        "type": 1,
        "primaryentity": "account",
        "scope": 4,
        "runas": 0,
        "triggeroncreate": true,
        "statecode": 1,
        "statuscode": 2,
        "clientdata": client_data("PostContext"),
    });
    for (k, v) in extra.as_object().unwrap() {
        row[k] = v.clone();
    }
    row.to_string()
}

/// A workflow POSTed as a `workflows` row runs on the next Create without a restart: a type-10 job whose
/// custom activity posts the workflow's context to the webhook, then the job Succeeds. GET lists it with
/// Dataverse's columns beside the file's workflow. Deactivated (PATCH statecode 0) it starts no new run;
/// a restart keeps it and its state; activated again it fires again; an active one cannot be deleted, a
/// Draft one can, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_posted_through_the_web_api_runs_and_survives_a_restart() {
    let (hook, url) = Hook::start(&[StatusCode::OK]).await;
    let mut host = Host::start(&url, None).await;
    let (status, location) = host
        .send(Method::POST, "workflows", &workflow_row(json!({})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    let id = id_in(&location);
    assert_eq!(
        id,
        weft_workflows::id_for(WORKFLOW_NAME),
        "a row without workflowid gets the id the same name gets in weft.toml"
    );

    let list = host.get("workflows").await;
    let rows = list["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(rows.iter().any(|r| r["name"] == "File workflow"
        && r["triggerondelete"] == true
        && r["statecode"] == 1));
    // The list pages like every collection: one row per page here, the next link covering the other.
    let first: Json = host
        .client
        .get(format!("{}/workflows", host.base))
        .header("Prefer", "odata.maxpagesize=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["value"].as_array().unwrap().len(), 1, "{first}");
    let next = first["@odata.nextLink"].as_str().expect("a next link");
    let second: Json = host
        .client
        .get(next)
        .header("Prefer", "odata.maxpagesize=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["value"].as_array().unwrap().len(), 1, "{second}");
    assert_ne!(
        first["value"][0]["workflowid"],
        second["value"][0]["workflowid"]
    );
    assert!(second.get("@odata.nextLink").is_none());
    let row = host.get(&format!("workflows({id})")).await;
    for (column, value) in [
        ("workflowid", json!(id)),
        ("category", json!(0)),
        ("mode", json!(0)),
        ("type", json!(1)),
        ("primaryentity", json!("account")),
        ("scope", json!(4)),
        ("runas", json!(0)),
        ("triggeroncreate", json!(true)),
        ("triggerondelete", json!(false)),
        ("triggeronupdateattributelist", Json::Null),
        ("statecode", json!(1)),
        ("statuscode", json!(2)),
    ] {
        assert_eq!(row[column], value, "{column}: {row}");
    }
    let steps: Json = serde_json::from_str(row["clientdata"].as_str().unwrap()).unwrap();
    assert_eq!(steps["step"][0]["activity"], "PostContext");

    // Fires like a [[workflow]]: a type-10 job, run by the asynchronous service.
    let account = host.create_account("Fourth Coffee").await;
    let jobs = host.workflow_jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.owning_extension_id, Some(id));
    assert_eq!(job.name, WORKFLOW_NAME);
    let service = host.jobs(0.3);
    let done = host
        .wait_job(job.id, |j| j.status.state() == JobState::Completed)
        .await;
    service.shutdown().await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let seen = hook.requests();
    assert_eq!(seen.len(), 1, "exactly one post");
    let ctx = weft_message::parse(&seen[0].body, "application/json").unwrap();
    assert_eq!(ctx.operation_id, job.id);
    assert_eq!(ctx.primary_entity_id, account);
    assert_eq!(ctx.owning_extension.as_ref().map(|o| o.id), Some(id));
    let stored = host.get(&format!("accounts({account})")).await;
    assert_eq!(stored["emailaddress1"], "posted@example.com", "{stored}");

    // Deactivated: no new job.
    let (status, body) = host
        .send(
            Method::PATCH,
            &format!("workflows({id})"),
            r#"{"statecode":0,"statuscode":1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.create_account("Draft Co").await;
    assert_eq!(
        host.workflow_jobs().len(),
        1,
        "a Draft workflow started a run"
    );

    // A restart keeps the row and its state.
    host.restart().await;
    let row = host.get(&format!("workflows({id})")).await;
    assert_eq!(
        (row["statecode"].clone(), row["statuscode"].clone()),
        (json!(0), json!(1))
    );
    host.create_account("Still Draft Co").await;
    assert_eq!(host.workflow_jobs().len(), 1);
    let (status, body) = host
        .send(
            Method::PATCH,
            &format!("workflows({id})"),
            r#"{"statecode":1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.create_account("Active Again Co").await;
    assert_eq!(
        host.workflow_jobs().len(),
        2,
        "the activated workflow fires after the restart"
    );

    // Deleting: refused while active, then for good.
    let (status, body) = host
        .send(Method::DELETE, &format!("workflows({id})"), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(&body).contains("Cannot delete an active workflow definition"),
        "{body}"
    );
    host.send(
        Method::PATCH,
        &format!("workflows({id})"),
        r#"{"statecode":0}"#,
    )
    .await;
    let (status, body) = host
        .send(Method::DELETE, &format!("workflows({id})"), "")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = host
        .send(Method::GET, &format!("workflows({id})"), "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    host.restart().await;
    let (status, _) = host
        .send(Method::GET, &format!("workflows({id})"), "")
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the deleted workflow came back"
    );
    assert_eq!(
        host.get("workflows").await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    host.stop().await;
}

/// What weft cannot run is refused with a 400 naming the column or the step, and nothing is registered:
/// XAML, real-time mode, another category, a step naming an activity the component does not hold (the
/// workflows crate's message, naming workflow and step), a column the table lacks, a malformed
/// `clientdata`, a second workflow of the same name; a definition PATCHed while Activated, or wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_weft_cannot_run_are_refused_precisely() {
    let (_hook, url) = Hook::start(&[StatusCode::OK]).await;
    let host = Host::start(&url, None).await;
    let cases = [
        (
            workflow_row(json!({ "xaml": "<Activity x:Class=\"XrmWorkflow\"/>" })),
            "'xaml' is not supported: weft cannot run XAML workflow definitions. Send the steps as JSON in \
             'clientdata'",
        ),
        (
            workflow_row(json!({ "mode": 1 })),
            "mode 1 (Real-time) is not supported",
        ),
        (
            workflow_row(json!({ "category": 3 })),
            "category 3 (Action) is not supported: only 0 (Workflow",
        ),
        (
            workflow_row(json!({ "clientdata": client_data("PostContxt") })),
            "workflow \"Post accounts (Web API)\", step 1 (activity): plug-in `azure-aware` holds no \
             activity type `PostContxt` (it holds PostContext)",
        ),
        (
            workflow_row(json!({ "triggeronupdateattributelist": "nmae" })),
            "workflow \"Post accounts (Web API)\", `attributes`: table `account` has no column `nmae`",
        ),
        (
            workflow_row(json!({ "clientdata": "{\"step\": [{\"kind\": \"wait\"}]}" })),
            "'clientdata' is not a workflow definition",
        ),
        (
            // Another id (the same name alone derives the file workflow's id: a duplicate key, 412).
            workflow_row(json!({ "name": "File workflow", "workflowid": Uuid::new_v4() })),
            "a workflow named \"File workflow\" is already registered",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = host.send(Method::POST, "workflows", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expected}: {answer}");
        let message = error_message(&answer);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
    assert_eq!(
        host.get("workflows").await["value"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a refused row was registered"
    );
    // A definition changes only as a Draft, validated as a new one.
    let file = format!("workflows({})", weft_workflows::id_for("File workflow"));
    let (status, body) = host
        .send(Method::PATCH, &file, r#"{"triggeroncreate":true}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&body).contains("is Activated: its definition cannot be changed"),
        "{body}"
    );
    host.send(Method::PATCH, &file, r#"{"statecode":0}"#).await;
    let (status, body) = host
        .send(
            Method::PATCH,
            &file,
            &json!({ "clientdata": client_data("PostContxt") }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&body)
            .contains("step 1 (activity): plug-in `azure-aware` holds no activity type"),
        "{body}"
    );
    let (status, body) = host
        .send(
            Method::PATCH,
            &file,
            r#"{"triggeronupdateattributelist":"name","statecode":1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let row = host.get(&file).await;
    assert_eq!(
        (
            row["triggeronupdateattributelist"].clone(),
            row["triggerondelete"].clone(),
            row["statecode"].clone()
        ),
        (json!("name"), json!(true), json!(1)),
        "{row}"
    );
    host.stop().await;
}

/// The `workflows` routes take the bearer key like every registration route: without it a POST is a 401
/// and registers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_take_the_api_key() {
    let (_hook, url) = Hook::start(&[StatusCode::OK]).await;
    let host = Host::start(&url, Some("wf-key-7d1e")).await;
    for (method, path) in [
        (Method::POST, "workflows".to_owned()),
        (Method::GET, "workflows".to_owned()),
        (
            Method::DELETE,
            format!("workflows({})", weft_workflows::id_for("File workflow")),
        ),
    ] {
        let r = host
            .client
            .request(method.clone(), format!("{}/{path}", host.base))
            .header("Content-Type", "application/json")
            .body(workflow_row(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert!(host.runtime().pipeline.workflows().len() == 1);
    let (status, body) = host
        .send(Method::POST, "workflows", &workflow_row(json!({})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.stop().await;
}

/// A failed activity post retries the activity as Dataverse does: the job goes Waiting with the failed
/// attempt recorded (the webhook's 503), retries while the endpoint fails, and Succeeds once it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_activity_post_waits_then_succeeds_when_the_endpoint_recovers() {
    let (hook, url) = Hook::start(&[StatusCode::SERVICE_UNAVAILABLE]).await;
    let host = Host::start(&url, None).await;
    let (status, body) = host
        .send(Method::POST, "workflows", &workflow_row(json!({})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.create_account("Flaky Endpoint Co").await;
    let job = host.workflow_jobs().remove(0);
    let service = host.jobs(1.0);
    let waiting = host
        .wait_job(job.id, |j| j.status == JobStatus::Waiting)
        .await;
    assert!(waiting.retry_count >= 1, "{waiting:?}");
    let attempts = tokio::task::block_in_place(|| {
        host.runtime()
            .store
            .read(|r: &dyn Read| r.job_attempts(job.id))
    })
    .unwrap();
    assert!(!attempts.is_empty());
    assert_eq!(attempts[0].entry.http_status, Some(503), "{attempts:?}");
    hook.answer(StatusCode::OK);
    let done = host
        .wait_job(job.id, |j| j.status.state() == JobState::Completed)
        .await;
    service.shutdown().await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let attempts = host
        .runtime()
        .store
        .read(|r: &dyn Read| r.job_attempts(job.id))
        .unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts.last().unwrap().entry.http_status, Some(200));
    assert!(hook.requests().len() >= 2);
    host.stop().await;
}

/// A `[[workflow]]` of weft.toml follows the restart rule of other registration: deactivated through the
/// API it stays Draft across a restart while the file leaves it alone; once the file changes it, the
/// file's version (Activated) wins; deleted through the API it stays deleted until the file changes it
/// again; removed from the file, it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_workflow_keeps_runtime_changes_until_the_file_changes_it() {
    let (_hook, url) = Hook::start(&[StatusCode::OK]).await;
    let mut host = Host::start(&url, None).await;
    let id = weft_workflows::id_for("File workflow");
    let path = format!("workflows({id})");
    let state = |row: &Json| row["statecode"].as_i64().unwrap();
    let (status, body) = host.send(Method::PATCH, &path, r#"{"statecode":0}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.restart().await;
    assert_eq!(
        state(&host.get(&path).await),
        0,
        "the runtime change was lost"
    );

    let changed = FILE_WORKFLOW.replace("\"succeeded\"", "\"canceled\"");
    write_config(host.dir.path(), &url, &changed);
    host.restart().await;
    let row = host.get(&path).await;
    assert_eq!(state(&row), 1, "the file's edit did not win: {row}");
    assert!(row["clientdata"].as_str().unwrap().contains("canceled"));

    host.send(Method::PATCH, &path, r#"{"statecode":0}"#).await;
    let (status, body) = host.send(Method::DELETE, &path, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.restart().await;
    let (status, _) = host.send(Method::GET, &path, "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the file brought back a workflow deleted at runtime"
    );

    write_config(host.dir.path(), &url, FILE_WORKFLOW);
    host.restart().await;
    assert_eq!(
        state(&host.get(&path).await),
        1,
        "the file's new edit did not bring it back"
    );
    write_config(host.dir.path(), &url, "");
    host.restart().await;
    assert!(
        host.get("workflows").await["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    host.stop().await;
}
