//! The web console, driven in a real headless Chromium over WebDriver (Debian's `chromium` and
//! `chromium-driver`), against a weft serving real data on loopback: sign-in with the API key, a job waiting
//! on an unreachable webhook shows its attempt and error, "Retry now" on its page moves it on once the
//! webhook listens, the list updates live, a step disabled from the page stops firing, and a panicking
//! plug-in's trace shows its message and backtrace. Each page is saved as a screenshot under
//! `target/console-screenshots/`. Without chromium the browser test prints `SKIPPED …` unless
//! `WEFT_REQUIRE_BROWSER=1` (then it fails). `/metrics` is scraped in a test of its own (no browser).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use uuid::Uuid;
use weft_bus::sas::SasPolicy;
use weft_bus::{
    BusConfig, BusHandle, EventHubConfig, QueueConfig, SubscriptionConfig, TopicConfig,
};
use weft_host::api::{self, ApiServer};
use weft_host::delivery::{Delivery, DeliveryRunner};
use weft_host::runtime::Runtime;
use weft_jobs::{AsyncService, RetryPolicy, ServiceConfig};
use weft_store::system::{JobFilter, JobStatus, TraceFilter, TraceOutcome};
use weft_store::{Read, StoreExt};

use crate::fixtures;

/// Distinctive, so a leak into a page or the metrics is found by a substring search.
const API_KEY: &str = "console-test-key-7f3a91";
const HOOK_KEY: &str = "console-hook-secret-2b8e";
/// How long a test waits for something to happen before it fails (a bound, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A weft with a validator (Create, stage 10), a panicking plug-in (Update, stage 20) and an asynchronous
/// step posting Create of account to a webhook at `hook`, served with an API key; its asynchronous service
/// retries a failed post only after 10 minutes (so a job stays Waiting until retried by hand).
struct Env {
    _dir: tempfile::TempDir,
    runtime: Arc<Runtime>,
    server: Option<ApiServer>,
    service: Option<AsyncService>,
    base: String,
    client: reqwest::Client,
    /// The embedded bus (a queue endpoint and a step posting Create of account to it), when asked for.
    bus: Option<BusHandle>,
}

async fn start(hook: SocketAddr) -> Env {
    start_with(hook, None).await
}

/// The SAS policy of the embedded bus in the bus tests (distinctive, as the other secrets).
const BUS_KEY_NAME: &str = "RootManageSharedAccessKey";
const BUS_KEY: &str = "console-bus-sas-key-5c19d2";

/// A bus on loopback with queue `queue` (one delivery before dead-lettering, so an abandon dead-letters),
/// topic `{queue}-topic` with subscription `accounts` (EntityLogicalName = account) and Event Hub
/// `{queue}-hub` (2 partitions). Entity names are per test: `/metrics` is one registry per process.
async fn start_bus(dir: &Path, queue: &str) -> BusHandle {
    let mut q = QueueConfig::new(queue);
    q.max_delivery_count = 1;
    let filter = [("EntityLogicalName".to_owned(), "account".to_owned())].into();
    weft_bus::start(BusConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data: dir.join("bus"),
        queues: vec![q],
        topics: vec![TopicConfig::new(
            format!("{queue}-topic"),
            vec![SubscriptionConfig::new("accounts", filter)],
        )],
        event_hubs: vec![EventHubConfig::new(format!("{queue}-hub"), 2)],
        sas_policies: vec![SasPolicy::full(BUS_KEY_NAME, BUS_KEY)],
        ..BusConfig::default()
    })
    .await
    .unwrap()
}

/// [`start`], and with `bus_queue` an embedded bus ([`start_bus`]) attached to the runtime, a Service Bus
/// queue endpoint (.NET binary XML, as Dataverse's default) and an asynchronous step posting Create of
/// account to it.
async fn start_with(hook: SocketAddr, bus_queue: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let bus = match bus_queue {
        Some(q) => Some(start_bus(dir.path(), q).await),
        None => None,
    };
    let bus_toml = match (&bus, bus_queue) {
        (Some(b), Some(q)) => format!(
            r#"
[[service_endpoint]]
name = "queue"
contract = 2
message_format = 1
auth_type = 2
namespace_address = "http://{addr}"
path = "{q}"
sas_key_name = "{BUS_KEY_NAME}"
sas_key = "{BUS_KEY}"

[[step]]
name = "to queue"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "queue"
"#,
            addr = b.local_addr()
        ),
        _ => String::new(),
    };
    let config = dir.path().join("weft.toml");
    let toml = format!(
        r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"

[[plugin]]
name = "validator"
component = "{validator}"

[[plugin]]
name = "panic"
component = "{panic}"

[[service_endpoint]]
name = "hook"
contract = 8
message_format = 2
auth_type = 4
url = "http://{hook}/hook"
auth_value = "{HOOK_KEY}"

[[step]]
name = "validate account"
message = "Create"
table = "account"
stage = 10
mode = 0
plugin = "validator"

[[step]]
name = "explode on update"
message = "Update"
table = "account"
stage = 20
mode = 0
plugin = "panic"

[[step]]
name = "to hook"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "hook"
"#,
        validator = fixtures::component("validator").display(),
        panic = fixtures::component("panic").display(),
    );
    std::fs::write(&config, toml + &bus_toml).unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &data).unwrap())
        .await
        .map(Arc::new)
        .unwrap();
    if let Some(b) = &bus {
        assert!(runtime.attach_bus(b.bus()));
    }
    let delivery = Delivery::new("weft.console.test").unwrap();
    assert!(runtime.pipeline.set_delivery(delivery.clone()));
    let runner = Arc::new(DeliveryRunner::new(runtime.pipeline.clone(), delivery));
    let config = ServiceConfig {
        workers: 1,
        batch_size: 8,
        poll_interval: Duration::from_millis(50),
        retry: RetryPolicy {
            schedule_s: Some(vec![600.0]),
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        ..ServiceConfig::default()
    };
    let service = AsyncService::start(runtime.store.clone(), runner, config).unwrap();
    runtime.pipeline.set_job_notifier(service.notifier());
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, server) = api::serve(Arc::clone(&runtime), bind, Some(API_KEY.into()))
        .await
        .unwrap();
    Env {
        _dir: dir,
        runtime,
        server: Some(server),
        service: Some(service),
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        bus,
    }
}

impl Env {
    /// A Web API call with the key; the status and body.
    async fn api(&self, method: reqwest::Method, path: &str, body: Json) -> (StatusCode, String) {
        let r = self
            .client
            .request(method, format!("{}/api/data/v9.2/{path}", self.base))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Creates an account; its id.
    async fn create_account(&self, name: &str) -> Uuid {
        let r = self
            .client
            .post(format!("{}/api/data/v9.2/accounts", self.base))
            .bearer_auth(API_KEY)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let location = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
        let id = location.rsplit('(').next().unwrap().trim_end_matches(')');
        Uuid::parse_str(id).unwrap()
    }

    fn jobs(&self) -> Vec<weft_store::system::SystemJob> {
        self.runtime
            .store
            .read(|r: &dyn Read| r.system_jobs(&JobFilter::default()))
            .unwrap()
    }

    /// Waits until job `id` has `status`.
    async fn wait_job(&self, id: Uuid, status: JobStatus) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let job = self
                .runtime
                .store
                .read(|r: &dyn Read| r.system_job(id))
                .unwrap();
            if job.as_ref().is_some_and(|j| j.status == status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never {status:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown().await;
        }
        self.server.take().unwrap().shutdown().await.unwrap();
        if let Some(b) = self.bus.take() {
            b.shutdown().await.unwrap();
        }
    }

    /// The embedded bus's address.
    fn bus_base(&self) -> String {
        format!("http://{}", self.bus.as_ref().unwrap().local_addr())
    }

    /// A REST call to the embedded bus at `path` (e.g. `/orders/messages`), signed for it.
    fn bus_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let base = self.bus_base();
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let token = weft_bus::sas::generate_token(&base, BUS_KEY_NAME, BUS_KEY, expiry);
        self.client
            .request(method, format!("{base}{path}"))
            .header("Authorization", token)
    }

    /// Sends `body` to `entity` over REST with `headers`; asserts 201.
    async fn bus_send(&self, entity: &str, body: &str, headers: &[(&str, &str)]) {
        let mut r = self.bus_request(reqwest::Method::POST, &format!("/{entity}/messages"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.body(body.to_owned()).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }

    /// Peek-locks the head of `entity` and abandons it: with one delivery allowed, it is dead-lettered.
    /// The message's BrokerProperties.
    async fn bus_dead_letter_head(&self, entity: &str) -> Json {
        let r = self
            .bus_request(
                reqwest::Method::POST,
                &format!("/{entity}/messages/head?timeout=5"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let props: Json =
            serde_json::from_str(r.headers()["brokerproperties"].to_str().unwrap()).unwrap();
        let lock = r.headers()["location"].to_str().unwrap().to_owned();
        let path = lock.splitn(4, '/').nth(3).unwrap();
        let r = self
            .bus_request(reqwest::Method::PUT, &format!("/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        props
    }

    /// Receive-and-delete from `entity`: the response (200), or None when nothing came (204).
    async fn bus_receive(&self, entity: &str) -> Option<reqwest::Response> {
        let r = self
            .bus_request(
                reqwest::Method::DELETE,
                &format!("/{entity}/messages/head?timeout=5"),
            )
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::OK => Some(r),
            StatusCode::NO_CONTENT => None,
            other => panic!("receive: {other} {}", r.text().await.unwrap()),
        }
    }
}

/// A webhook listener answering 200 at `addr`.
async fn listen_hook(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { StatusCode::OK }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// A minimal W3C WebDriver client over reqwest, for chromedriver: the handful of commands these tests use.
/// (A full client crate would add a second HTTP stack to the build for these ten calls.)
struct Browser {
    driver: Child,
    url: String,
    session: String,
    http: reqwest::Client,
}

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; None (after saying SKIPPED) without them.
    async fn start(test: &str) -> Option<Browser> {
        let driver = find_program(&["chromedriver"]);
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            let why = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)";
            assert!(
                std::env::var("WEFT_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "{test}: {why}"
            );
            eprintln!("SKIPPED {test}: {why}");
            return None;
        };
        let port = free_addr().port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let mut browser = Browser {
            driver: child,
            url: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = browser
                .http
                .get(format!("{}/status", browser.url))
                .send()
                .await
                .ok();
            if let Some(r) = ready
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            // Confirmation dialogs (bulk retry, delete) are accepted.
            "unhandledPromptBehavior": "accept",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,900", "--no-first-run"]
            }
        } } });
        let v = browser.call(reqwest::Method::POST, "/session", caps).await;
        browser.session = v["sessionId"].as_str().expect("a session id").to_owned();
        Some(browser)
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with its message.
    async fn call(&self, method: reqwest::Method, path: &str, body: Json) -> Json {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let r = request.send().await.expect("WebDriver request");
        let status = r.status();
        let v: Json = r.json().await.expect("WebDriver answers JSON");
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    async fn session(&self, method: reqwest::Method, path: &str, body: Json) -> Json {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn goto(&self, url: &str) {
        self.session(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn current_url(&self) -> String {
        self.session(reqwest::Method::GET, "/url", Json::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The element `css` selects (fails when there is none).
    async fn find(&self, css: &str) -> String {
        let v = self
            .session(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.session(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.session(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The rendered text of the element `css` selects.
    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.session(
            reqwest::Method::GET,
            &format!("/element/{e}/text"),
            Json::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn script(&self, script: &str) -> Json {
        self.session(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Waits until the text of `css` contains `wanted` (reloading the page first when `reload`).
    async fn wait_text(&self, css: &str, wanted: &str, reload: bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if reload {
                self.session(reqwest::Method::POST, "/refresh", json!({}))
                    .await;
            }
            let found = self
                .script(&format!(
                    "var e = document.querySelector({}); return e ? e.innerText : '';",
                    json!(css)
                ))
                .await;
            let text = found.as_str().unwrap_or_default().to_owned();
            if text.contains(wanted) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {wanted:?}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves the page as `target/console-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self
            .session(reqwest::Method::GET, "/screenshot", Json::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = repo().join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.url, self.session))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed assertion still ends chromedriver (and with it the browser).
        let _ = self.driver.kill();
    }
}

/// The console in headless Chromium: sign in with the API key; the System Jobs list shows a job waiting on
/// an unreachable webhook; its page shows the attempt with its classified error and the decoded context;
/// "Retry now" from the page, once the webhook listens, moves it to Succeeded with a second attempt; the
/// list updates live when a new job arrives; a step disabled on the Registration page stops firing; the
/// trace log shows a panicking plug-in's message and backtrace. Every page is saved as a screenshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium() {
    const TEST: &str = "console_in_chromium";
    let Some(browser) = Browser::start(TEST).await else {
        return;
    };
    let hook = free_addr();
    let env = start(hook).await;
    env.create_account("Contoso").await;
    let job = match env.jobs().as_slice() {
        [j] => j.id,
        other => panic!("one job expected: {other:?}"),
    };
    env.wait_job(job, JobStatus::Waiting).await;
    let account = env.create_account("Fabrikam").await;
    let (status, body) = env
        .api(
            reqwest::Method::PATCH,
            &format!("accounts({account})"),
            json!({ "name": "Fabrikam 2" }),
        )
        .await;
    assert!(
        !status.is_success(),
        "the panicking step fails the Update: {body}"
    );
    let panicked = env
        .runtime
        .store
        .read(|r: &dyn Read| r.trace_logs(&TraceFilter::default()))
        .unwrap()
        .into_iter()
        .find(|t| t.entry.outcome == TraceOutcome::Failed)
        .expect("a failed trace row")
        .entry
        .correlation_id;

    // Sign in: the console sends the browser to the login form, which sets the cookie.
    browser.goto(&format!("{}/console/jobs", env.base)).await;
    assert!(browser.current_url().await.contains("/console/login"));
    browser.screenshot("login").await;
    browser.type_into("#key", "not the key").await;
    browser.click("button[type=submit]").await;
    browser
        .wait_text("main", "That is not the API key.", false)
        .await;
    browser.type_into("#key", API_KEY).await;
    browser.click("button[type=submit]").await;
    let list = browser.wait_text("#jobs-table", "Waiting", false).await;
    assert!(list.contains("System Event"), "{list}");
    assert!(list.contains("account"), "{list}");
    assert!(list.contains("2 jobs"), "{list}");
    let source = browser
        .script("return document.documentElement.outerHTML;")
        .await;
    let source = source.as_str().unwrap();
    assert!(
        !source.contains(API_KEY) && !source.contains(HOOK_KEY),
        "no secret in the page"
    );
    browser.screenshot("jobs").await;

    // The waiting job's page: its attempt, the classified error, the next attempt, the context.
    browser
        .goto(&format!("{}/console/jobs/{job}", env.base))
        .await;
    let status = browser.text("#job-status").await;
    assert_eq!(status, "Suspended / Waiting (1/10)");
    let attempts = browser.text("#attempts-table tbody").await;
    assert!(attempts.contains("hook"), "{attempts}");
    assert!(attempts.contains("transient"), "{attempts}");
    assert!(attempts.contains("Next attempt"), "{attempts}");
    let summary = browser.text("#context-summary").await;
    assert!(summary.contains("Create of account"), "{summary}");
    browser.screenshot("job-waiting").await;

    // Retry now, with the webhook listening: the job moves on to Succeeded, with a second attempt.
    let listener = listen_hook(hook).await;
    browser.click("button[value=retry]").await;
    browser
        .wait_text("main", "Done: the job is now", false)
        .await;
    env.wait_job(job, JobStatus::Succeeded).await;
    let status = browser.wait_text("#job-status", "Succeeded", true).await;
    assert_eq!(status, "Completed / Succeeded (3/30)");
    let attempts = browser.text("#attempts-table tbody").await;
    assert!(attempts.contains("succeeded"), "{attempts}");
    let rows = browser
        .script("return document.querySelectorAll('#attempts-table tbody tr').length;")
        .await;
    assert_eq!(rows, json!(2), "{attempts}");
    browser.screenshot("job-retried").await;

    // Live updates: a new job appears in the open list without a reload.
    browser.goto(&format!("{}/console/jobs", env.base)).await;
    browser.wait_text("#live", "live", false).await;
    browser
        .script("window.notReloaded = true; return null;")
        .await;
    env.create_account("Northwind").await;
    browser.wait_text("#jobs-table", "3 jobs", false).await;
    assert_eq!(
        browser.script("return window.notReloaded === true;").await,
        json!(true)
    );
    // Filters: Succeeded jobs only.
    browser
        .goto(&format!("{}/console/jobs?status=30", env.base))
        .await;
    let filtered = browser.text("#jobs-table tbody").await;
    assert!(!filtered.contains("Waiting"), "{filtered}");
    browser.screenshot("jobs-filtered").await;

    // Registration: disable the asynchronous step from the page; a Create then writes no job.
    browser
        .goto(&format!("{}/console/registration", env.base))
        .await;
    browser.screenshot("registration").await;
    browser.click("button[aria-label='Disable to hook']").await;
    browser
        .wait_text("main", "Step to hook disabled.", false)
        .await;
    let before = env.jobs().len();
    env.create_account("Adventure Works").await;
    assert_eq!(env.jobs().len(), before, "a disabled step wrote a job");
    assert!(
        browser
            .text("tr[data-step] button[aria-label='Enable to hook']")
            .await
            .contains("Enable")
    );
    // The endpoint check from the page: the webhook answers.
    browser.click("button[aria-label='Check hook']").await;
    browser
        .wait_text("main", "answered with its credentials", false)
        .await;

    // The trace log: the operations, then the failed Update's steps with the panic message.
    browser.goto(&format!("{}/console/traces", env.base)).await;
    browser
        .wait_text("#operations", &panicked.to_string(), false)
        .await;
    browser.screenshot("traces").await;
    browser
        .goto(&format!("{}/console/traces/{panicked}", env.base))
        .await;
    let steps = browser.text("#steps").await;
    assert!(steps.contains("explode on update"), "{steps}");
    assert!(steps.contains("Failed"), "{steps}");
    assert!(steps.contains("panicked on purpose"), "{steps}");
    browser.screenshot("trace").await;

    listener.abort();
    browser.quit().await;
    env.stop().await;
}

/// `/metrics` in Prometheus' text format: operations by outcome, plug-in durations by step, attempts by
/// outcome, delivery latency, open jobs by status; refused without the key; no secret in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped() {
    let env = start(free_addr()).await;
    env.create_account("Contoso").await;
    let job = env.jobs()[0].id;
    env.wait_job(job, JobStatus::Waiting).await;
    let url = format!("{}/metrics", env.base);
    let r = env.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = env
        .client
        .get(&url)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}… in\n{text}"))
            .to_owned()
    };
    // Other tests in this binary record too: values are at least this test's.
    let value = |l: String| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    assert!(
        value(line(
            "weft_operations_total{message=\"Create\",table=\"account\",outcome=\"succeeded\"}"
        )) >= 1.0
    );
    assert!(value(line("weft_job_attempts_total{outcome=\"transient\"}")) >= 1.0);
    line("weft_delivery_latency_seconds_bucket{outcome=\"transient\"");
    line("weft_plugin_duration_seconds_bucket{plugin=\"validator\"");
    assert!(value(line("weft_system_jobs{status=\"waiting\"}")) >= 1.0);
    line("weft_system_job_oldest_age_seconds{status=\"waiting\"}");
    line("weft_sandbox_instances_in_use");
    assert!(
        !text.contains(API_KEY) && !text.contains(HOOK_KEY),
        "no secret in the metrics"
    );
    env.stop().await;
}

/// A browser tab left open on the live System Jobs list does not hold up a graceful shutdown: its event
/// stream ends when the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_list_stream_ends_on_shutdown() {
    let env = start(free_addr()).await;
    let r = env
        .client
        .get(format!("{}/console/jobs/events", env.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let reading = tokio::spawn(async move { r.bytes().await.map(|b| b.len()) });
    // A bound against a hang, not a timing assertion: the stop itself is immediate.
    tokio::time::timeout(PATIENCE, env.stop())
        .await
        .expect("the server stopped with an event stream open");
    assert!(reading.await.unwrap().is_ok(), "the stream ended cleanly");
}

/// The Bus page in headless Chromium against an embedded bus with real data: a Create of account delivered
/// by the asynchronous service to a queue in .NET binary XML, dead-lettered through the REST API (peek-lock,
/// abandon, one delivery allowed), and a plain message sent over REST. The overview counts them; the
/// dead-letter page decodes the Dataverse body (message, table, id, correlation id, depth) with its
/// DeadLetterReason; the messages page shows the plain one's custom property and says it is no Dataverse
/// body; peeking changes no delivery count; "Resubmit" moves the dead letter back (counts change) and the
/// REST receive gets it with its properties and without the dead-letter ones. Hostile input gets 4xx pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_page_in_chromium() {
    const TEST: &str = "bus_page_in_chromium";
    const QUEUE: &str = "console-orders";
    let Some(browser) = Browser::start(TEST).await else {
        return;
    };
    let env = start_with(free_addr(), Some(QUEUE)).await;
    let account = env.create_account("Contoso").await;
    // Two jobs: the unreachable webhook's (stays Waiting) and the queue's (delivered).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let jobs = env.jobs();
        if jobs.iter().any(|j| j.status == JobStatus::Succeeded) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue's job never succeeded: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = env.bus_dead_letter_head(QUEUE).await;
    assert_eq!(dead["DeliveryCount"], json!(1), "{dead}");
    env.bus_send(
        QUEUE,
        "plain text, not a context",
        &[("Priority", "\"High\""), ("Content-Type", "text/plain")],
    )
    .await;

    browser.goto(&format!("{}/console/login", env.base)).await;
    browser.type_into("#key", API_KEY).await;
    browser.click("button[type=submit]").await;
    browser.wait_text("#jobs-table", "jobs", false).await;
    // The Bus entry is in the navigation when the bus is embedded.
    browser.click("nav a[href='/console/bus']").await;
    let row = format!("tr[data-entity='{QUEUE}']");
    browser
        .wait_text(&format!("{row} td.deadletter"), "1", false)
        .await;
    assert_eq!(browser.text(&format!("{row} td.active")).await, "1");
    assert_eq!(browser.text(&format!("{row} td.scheduled")).await, "0");
    let topics = browser.text("table[aria-labelledby=topics]").await;
    assert!(
        topics.contains(&format!("{QUEUE}-topic / accounts")),
        "{topics}"
    );
    let hubs = browser.text(&format!("tr[data-hub='{QUEUE}-hub']")).await;
    assert!(hubs.contains("empty"), "{hubs}");
    browser.screenshot("bus").await;

    // The dead letter: decoded, with its reason.
    browser.click(&format!("{row} td.deadletter a")).await;
    let decoded = browser.wait_text("dl.dataverse", "Create", false).await;
    assert!(decoded.contains("account"), "{decoded}");
    assert!(decoded.contains(&account.to_string()), "{decoded}");
    assert!(decoded.contains("application/msbin1"), "{decoded}");
    let article = browser.text("article.message").await;
    assert!(article.contains("MaxDeliveryCountExceeded"), "{article}");
    assert!(article.contains("DeliveryCount\n1"), "{article}");
    let source = browser
        .script("return document.documentElement.outerHTML;")
        .await;
    let source = source.as_str().unwrap();
    assert!(
        !source.contains(API_KEY) && !source.contains(BUS_KEY),
        "no secret in the page"
    );
    browser.screenshot("bus-deadletter").await;

    // The active message: the plain one, not decoded, its custom property shown; peeking twice changes
    // nothing.
    browser.click("nav.actions a:first-child").await;
    let plain = browser
        .wait_text("article.message", "plain text, not a context", false)
        .await;
    assert!(plain.contains("Not a Dataverse body"), "{plain}");
    assert!(plain.contains("priority"), "{plain}");
    assert!(plain.contains("DeliveryCount\n0"), "{plain}");
    browser
        .session(reqwest::Method::POST, "/refresh", json!({}))
        .await;
    browser.screenshot("bus-messages").await;

    // Resubmit the dead letter from its page: it is back in the queue, the dead-letter queue is empty.
    browser
        .goto(&format!(
            "{}/console/bus/entity?path={QUEUE}&dlq=1",
            env.base
        ))
        .await;
    browser
        .click(&format!(
            "button[aria-label='Resubmit message {} to {QUEUE}']",
            dead["SequenceNumber"]
        ))
        .await;
    let notice = browser.wait_text("main", "resubmitted", false).await;
    assert!(
        notice.contains(&format!(
            "Message {} resubmitted to {QUEUE}",
            dead["SequenceNumber"]
        )),
        "{notice}"
    );
    assert_eq!(browser.text("#count-deadletter").await, "0");
    assert_eq!(browser.text("#count-active").await, "2");
    assert!(browser.text("#empty").await.contains("No message"));
    browser.screenshot("bus-resubmitted").await;

    // The REST receive: the plain message (delivered once: the peeks did not count), then the Dataverse
    // one, a new message with the same body and properties and no dead-letter properties.
    let first = env.bus_receive(QUEUE).await.expect("the plain message");
    let props: Json =
        serde_json::from_str(first.headers()["brokerproperties"].to_str().unwrap()).unwrap();
    assert_eq!(props["DeliveryCount"], json!(1), "{props}");
    assert_eq!(first.text().await.unwrap(), "plain text, not a context");
    let again = env
        .bus_receive(QUEUE)
        .await
        .expect("the resubmitted message");
    let props: Json =
        serde_json::from_str(again.headers()["brokerproperties"].to_str().unwrap()).unwrap();
    assert_eq!(props["MessageId"], dead["MessageId"], "{props}");
    assert_eq!(props["DeliveryCount"], json!(1), "{props}");
    assert!(
        props["SequenceNumber"].as_u64().unwrap() > dead["SequenceNumber"].as_u64().unwrap(),
        "{props}"
    );
    assert!(again.headers().get("deadletterreason").is_none());
    let content_type = again.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/msbin1");
    let ctx = weft_message::parse(&again.bytes().await.unwrap(), &content_type).unwrap();
    assert_eq!(ctx.message_name, "Create");
    assert_eq!(ctx.primary_entity_id, account);
    assert!(env.bus_receive(QUEUE).await.is_none(), "nothing else");

    // Hostile input: clear 4xx pages.
    let get = |path: String| {
        let r = env
            .client
            .get(format!("{}{path}", env.base))
            .bearer_auth(API_KEY)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, page) = get("/console/bus/entity?path=no-such-queue".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("no queue or subscription"), "{page}");
    let (status, page) = get(format!("/console/bus/entity?path={QUEUE}&from=-3")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("is not a sequence number"), "{page}");
    let (status, page) =
        get("/console/bus/entity?path=%3Cscript%3Ealert(1)%3C/script%3E".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("<script>alert"), "escaped: {page}");
    let post = |form: Vec<(&'static str, String)>| {
        let r = env
            .client
            .post(format!("{}/console/bus/resubmit", env.base))
            .bearer_auth(API_KEY)
            .form(&form)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, page) = post(vec![("path", QUEUE.into()), ("seq", "first".into())]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("seq &quot;first&quot; is not a sequence number"),
        "{page}"
    );
    let (status, page) = post(vec![("path", QUEUE.into()), ("seq", "999999".into())]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        page.contains("No dead-lettered message with sequence number 999999"),
        "{page}"
    );
    let (status, _) = post(vec![("path", "nowhere".into()), ("seq", "1".into())]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another site cannot press the button through a signed-in browser.
    let r = env
        .client
        .post(format!("{}/console/bus/resubmit", env.base))
        .bearer_auth(API_KEY)
        .header("Origin", "https://evil.example")
        .form(&[("path", QUEUE), ("seq", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    browser.quit().await;
    env.stop().await;
}

/// `/metrics` with an embedded bus: a queue's active, scheduled and dead-letter depths, a subscription's,
/// a queue created at runtime through the management API, and an Event Hub's retained events, each a
/// line; without a bus there are no bus lines, no Bus entry in the navigation and the Bus page says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_depths_in_metrics() {
    const QUEUE: &str = "metrics-orders";
    let env = start_with(free_addr(), Some(QUEUE)).await;
    // Dead-lettered first (the head is the one abandoned), then one active and one scheduled.
    env.bus_send(QUEUE, "to the dead-letter queue", &[]).await;
    env.bus_dead_letter_head(QUEUE).await;
    env.bus_send(QUEUE, "active", &[]).await;
    env.bus_send(
        QUEUE,
        "later",
        &[(
            "BrokerProperties",
            r#"{"ScheduledEnqueueTimeUtc":"Fri, 06 Nov 2099 08:49:37 GMT"}"#,
        )],
    )
    .await;
    env.bus_send(
        &format!("{QUEUE}-topic"),
        r#"[{"Body":"for accounts","UserProperties":{"EntityLogicalName":"account"}}]"#,
        &[("Content-Type", "application/vnd.microsoft.servicebus.json")],
    )
    .await;
    for p in 0..2 {
        env.bus_send(&format!("{QUEUE}-hub/partitions/{p}"), "event", &[])
            .await;
    }
    // A queue the management API creates (as the Azure administration clients do) is served and counted.
    let runtime = format!("{QUEUE}-runtime");
    let entry = r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"></QueueDescription></content></entry>"#;
    let r = env
        .bus_request(
            reqwest::Method::PUT,
            &format!("/{runtime}?api-version=2021-05"),
        )
        .header(
            "Content-Type",
            "application/atom+xml;type=entry;charset=utf-8",
        )
        .body(entry)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    env.bus_send(&runtime, "created at runtime", &[]).await;
    let text = env
        .client
        .get(format!("{}/metrics", env.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |labels: &str| {
        let prefix = format!("weft_bus_messages{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}… in\n{text}"))
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(value(&format!("entity=\"{QUEUE}\",state=\"active\"")), 1.0);
    assert_eq!(
        value(&format!("entity=\"{QUEUE}\",state=\"scheduled\"")),
        1.0
    );
    assert_eq!(
        value(&format!("entity=\"{QUEUE}\",state=\"deadletter\"")),
        1.0
    );
    assert_eq!(
        value(&format!(
            "entity=\"{QUEUE}-topic/subscriptions/accounts\",state=\"active\""
        )),
        1.0
    );
    assert_eq!(
        value(&format!("entity=\"{runtime}\",state=\"active\"")),
        1.0
    );
    assert_eq!(
        value(&format!("entity=\"{QUEUE}\",state=\"deferred\"")),
        0.0
    );
    let hub = format!("weft_bus_event_hub_events{{entity=\"{QUEUE}-hub\"}} 2");
    assert!(text.lines().any(|l| l == hub), "no {hub} in\n{text}");
    assert!(!text.contains(BUS_KEY), "no secret in the metrics");
    env.stop().await;

    // Without a bus: the page says so and the navigation has no Bus entry.
    let env = start(free_addr()).await;
    let page = |path: &str| {
        let r = env
            .client
            .get(format!("{}{path}", env.base))
            .bearer_auth(API_KEY)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, bus) = page("/console/bus").await;
    assert_eq!(status, StatusCode::OK);
    assert!(bus.contains("No embedded bus"), "{bus}");
    let (_, jobs) = page("/console/jobs").await;
    assert!(
        jobs.contains("/console/registration") && !jobs.contains("href=\"/console/bus\""),
        "{jobs}"
    );
    env.stop().await;
}
