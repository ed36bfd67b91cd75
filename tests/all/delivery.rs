//! Delivery end to end over real HTTP on loopback: operations through the pipeline write system jobs, the
//! asynchronous service runs them with the host's `DeliveryRunner`, and the context arrives on a real weft
//! bus (read back with plain REST receive-and-delete) or on a webhook served here by axum; the custom
//! Azure-aware plug-in posts from a sync step through the notification service.

use crate::fixtures;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use uuid::Uuid;
use weft_bus::sas::SasPolicy;
use weft_bus::{BusConfig, BusHandle, QueueConfig, RelayConfig};
use weft_host::delivery::{Delivery, DeliveryError, DeliveryRunner};
use weft_host::pipeline::{Message, OrganizationRequest, OrganizationResponse, PipelineError};
use weft_host::registration::{EXAMPLE_ACCOUNT_TABLE, derived_id};
use weft_host::runtime::Runtime;
use weft_host::sandbox::wit::types::{Attribute, Entity, Value};
use weft_jobs::{AsyncService, FailureClass, RetryPolicy, ServiceConfig};
use weft_store::system::{
    JobAttempt, JobFilter, JobStatus, StepMode, SystemJob, TraceFilter, TraceLog,
};
use weft_store::{Query, Read, Store, StoreExt};

pub(crate) const KEY_NAME: &str = "RootManageSharedAccessKey";
/// Distinctive so a leak anywhere is found by a plain substring search.
pub(crate) const SAS_KEY: &str = "c2FzLWtleS1kZWxpdmVyeS10ZXN0cy03ZjNh";
const HOOK_KEY: &str = "hook-code-9d41e7";
const QUEUE: &str = "orders";
const RELAY: &str = "hc";

/// The example plug-ins' account table, and a contact table for child operations.
pub(crate) const CONTACT_TABLE: &str = r#"
[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
"#;

/// An async step posting Create of account to the queue endpoint (the built-in Azure-aware plug-in).
const QUEUE_STEP: &str = "[[step]]\nname = \"to queue\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\nmode = 1\nservice_endpoint = \"queue\"\n";
/// The same, to the webhook.
const HOOK_STEP: &str = "[[step]]\nname = \"to hook\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\nmode = 1\nservice_endpoint = \"hook\"\n";
/// The validator at stage 20: a nameless account is refused.
const VALIDATOR_STEP: &str = "[[step]]\nname = \"validate\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"validator\"\n";

/// The custom Azure-aware plug-in as a sync PostOperation step on Create of account, posting to `endpoint`.
fn azure_aware_step(endpoint: &str) -> String {
    format!(
        "[[step]]\nname = \"custom azure-aware\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\nplugin = \"azure-aware\"\nconfiguration = \"{}\"\n",
        derived_id("serviceendpoint", endpoint)
    )
}

pub(crate) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub(crate) async fn start_bus(bind: SocketAddr, data: &Path) -> BusHandle {
    weft_bus::start(BusConfig {
        bind,
        data: data.to_path_buf(),
        queues: vec![QueueConfig::new(QUEUE)],
        relays: vec![RelayConfig { name: RELAY.into() }],
        sas_policies: vec![SasPolicy::full(KEY_NAME, SAS_KEY)],
        ..BusConfig::default()
    })
    .await
    .unwrap()
}

/// Receive-and-delete (`DELETE /{queue}/messages/head`) as the Service Bus REST reference describes it.
pub(crate) async fn receive(bus: SocketAddr, timeout_s: u32) -> reqwest::Response {
    let base = format!("http://{bus}");
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token =
        weft_bus::sas::generate_token(&format!("{base}/{QUEUE}"), KEY_NAME, SAS_KEY, expiry);
    reqwest::Client::new()
        .delete(format!("{base}/{QUEUE}/messages/head?timeout={timeout_s}"))
        .header("Authorization", token)
        .send()
        .await
        .unwrap()
}

/// One request the webhook received.
#[derive(Debug, Clone)]
pub(crate) struct HookRequest {
    query: String,
    headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

#[derive(Clone)]
pub(crate) struct Hook {
    /// Answers by request number; the last one repeats.
    script: Arc<Mutex<Vec<StatusCode>>>,
    seen: Arc<Mutex<Vec<HookRequest>>>,
}

impl Hook {
    /// A webhook on 127.0.0.1 answering the POSTs to `/hook` with `script` in turn (the last repeats).
    pub(crate) async fn start(script: &[StatusCode]) -> (Hook, String) {
        let hook = Hook {
            script: Arc::new(Mutex::new(script.to_vec())),
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State(h): State<Hook>,
                     RawQuery(q): RawQuery,
                     headers: HeaderMap,
                     body: axum::body::Bytes| async move {
                        let mut seen = h.seen.lock().unwrap();
                        seen.push(HookRequest {
                            query: q.unwrap_or_default(),
                            headers,
                            body: body.to_vec(),
                        });
                        let script = h.script.lock().unwrap();
                        script[(seen.len() - 1).min(script.len() - 1)]
                    },
                ),
            )
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, url)
    }

    /// From now on every request is answered with `status`.
    pub(crate) fn answer(&self, status: StatusCode) {
        *self.script.lock().unwrap() = vec![status];
    }

    pub(crate) fn requests(&self) -> Vec<HookRequest> {
        self.seen.lock().unwrap().clone()
    }
}

pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) runtime: Arc<Runtime>,
    delivery: Arc<Delivery>,
}

/// A weft with the queue and two-way relay endpoints at `bus`, the webhook endpoint at `hook_url` and `steps`.
pub(crate) async fn env(bus: SocketAddr, hook_url: &str, steps: &str) -> Env {
    env_with_key(bus, hook_url, steps, SAS_KEY).await
}

/// [`env`] with the bus endpoints signing with `sas_key`.
async fn env_with_key(bus: SocketAddr, hook_url: &str, steps: &str, sas_key: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let plugins: String = [
        "validator",
        "enricher",
        "azure-aware",
        "org-caller",
        "probe",
    ]
    .iter()
    .map(|p| {
        format!(
            "[[plugin]]\nname = \"{p}\"\ncomponent = \"{}\"\n",
            fixtures::component(p).display()
        )
    })
    .collect();
    let endpoints = format!(
        "[[service_endpoint]]\nname = \"queue\"\ncontract = 2\nmessage_format = 2\nauth_type = 2\n\
         namespace_address = \"http://{bus}\"\npath = \"{QUEUE}\"\nsas_key_name = \"{KEY_NAME}\"\n\
         sas_key = \"{sas_key}\"\n\
         [[service_endpoint]]\nname = \"relay\"\ncontract = 4\nmessage_format = 2\nauth_type = 2\n\
         namespace_address = \"http://{bus}\"\npath = \"{RELAY}\"\nsas_key_name = \"{KEY_NAME}\"\n\
         sas_key = \"{sas_key}\"\n\
         [[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\nauth_type = 4\n\
         url = \"{hook_url}\"\nauth_value = \"{HOOK_KEY}\"\n"
    );
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!("{EXAMPLE_ACCOUNT_TABLE}\n{CONTACT_TABLE}\n{plugins}\n{endpoints}\n{steps}"),
    )
    .unwrap();
    let data: PathBuf = dir.path().join("data");
    let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &data).unwrap())
        .await
        .unwrap();
    let delivery = Delivery::new("weft.test.local").unwrap();
    assert!(runtime.pipeline.set_delivery(delivery.clone()));
    Env {
        _dir: dir,
        runtime: Arc::new(runtime),
        delivery,
    }
}

impl Env {
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.runtime.store
    }

    /// Creates an account (no name when `name` is None) through the pipeline, off the async threads.
    pub(crate) async fn create(&self, name: Option<&str>) -> Result<Uuid, PipelineError> {
        let pipeline = self.runtime.pipeline.clone();
        let attributes = name
            .map(|n| Attribute {
                name: "name".into(),
                value: Value::String(n.into()),
            })
            .into_iter()
            .collect();
        let target = Entity {
            logical_name: "account".into(),
            id: None,
            attributes,
            formatted_values: Vec::new(),
            row_version: None,
        };
        let response = tokio::task::spawn_blocking(move || {
            pipeline.execute(OrganizationRequest::new(Message::Create { target }))
        })
        .await
        .unwrap()?;
        match response {
            OrganizationResponse::Create { id } => Ok(id),
            other => panic!("{other:?}"),
        }
    }

    /// The asynchronous service with the host's runner; retries come 300 ms apart, no jitter.
    pub(crate) fn jobs(&self) -> AsyncService {
        let runner = Arc::new(DeliveryRunner::new(
            self.runtime.pipeline.clone(),
            self.delivery.clone(),
        ));
        let config = ServiceConfig {
            workers: 1,
            batch_size: 8,
            poll_interval: Duration::from_millis(50),
            retry: RetryPolicy {
                schedule_s: Some(vec![0.3]),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            ..ServiceConfig::default()
        };
        AsyncService::start(self.store().clone(), runner, config).unwrap()
    }

    pub(crate) fn all_jobs(&self) -> Vec<SystemJob> {
        self.store()
            .read(|r: &dyn Read| r.system_jobs(&JobFilter::default()))
            .unwrap()
    }

    pub(crate) fn attempts(&self, job: Uuid) -> Vec<JobAttempt> {
        self.store()
            .read(|r: &dyn Read| r.job_attempts(job))
            .unwrap()
    }

    pub(crate) fn traces(&self) -> Vec<TraceLog> {
        self.store()
            .read(|r: &dyn Read| r.trace_logs(&TraceFilter::default()))
            .unwrap()
    }

    fn accounts(&self) -> usize {
        self.store()
            .read(|r: &dyn Read| r.retrieve_multiple(&Query::new("account")))
            .unwrap()
            .len()
    }

    /// Waits (at most 30 s) until `job` satisfies `done`; returns it.
    pub(crate) async fn wait_job(&self, job: Uuid, done: impl Fn(&SystemJob) -> bool) -> SystemJob {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let j = self
                .store()
                .read(|r: &dyn Read| r.system_job(job))
                .unwrap()
                .expect("the job exists");
            if done(&j) {
                return j;
            }
            assert!(Instant::now() < deadline, "job never got there: {j:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) fn only_job(env: &Env) -> SystemJob {
    let jobs = env.all_jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    jobs.into_iter().next().unwrap()
}

pub(crate) fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Create → system job → asynchronous service → the context on the queue, OperationId = MessageId = job id,
/// OperationCreatedOn = the job's creation; the job Succeeded with the endpoint and 201 recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_step_posts_the_context_to_the_queue() {
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = start_bus("127.0.0.1:0".parse().unwrap(), bus_dir.path()).await;
    let env = env(bus.local_addr(), "http://127.0.0.1:9/hook", QUEUE_STEP).await;
    let account = env.create(Some("Fourth Coffee")).await.unwrap();
    let job = only_job(&env);
    assert_eq!(
        job.owning_extension_id,
        Some(derived_id("sdkmessageprocessingstep", "to queue"))
    );
    let service = env.jobs();
    let done = env
        .wait_job(job.id, |j| j.status == JobStatus::Succeeded)
        .await;
    service.shutdown().await;

    let r = receive(bus.local_addr(), 5).await;
    assert_eq!(r.status(), 200);
    let broker: serde_json::Value = serde_json::from_str(&header(&r, "BrokerProperties")).unwrap();
    let content_type = header(&r, "Content-Type");
    let body = r.bytes().await.unwrap();
    let ctx = weft_message::parse(&body, &content_type).unwrap();
    assert_eq!(ctx.operation_id, job.id);
    assert_eq!(broker["MessageId"], job.id.to_string());
    assert_eq!(ctx.operation_created_on.ms, job.created_on);
    assert_eq!(ctx.primary_entity_id, account);
    assert_eq!((ctx.message_name.as_str(), ctx.mode), ("Create", 1));
    assert!(!ctx.is_in_transaction);
    let attempts = env.attempts(done.id);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(
        attempts[0].entry.endpoint_id,
        Some(derived_id("serviceendpoint", "queue"))
    );
    assert_eq!(attempts[0].entry.http_status, Some(201));
    // Exactly one message: nothing else is waiting.
    assert_eq!(receive(bus.local_addr(), 1).await.status(), 204);
    bus.shutdown().await.unwrap();
}

/// An operation the validator rejects is rolled back with its outbox row: no job, no row, nothing posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_posted_for_a_rolled_back_operation() {
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = start_bus("127.0.0.1:0".parse().unwrap(), bus_dir.path()).await;
    let steps = format!("{VALIDATOR_STEP}{QUEUE_STEP}");
    let env = env(bus.local_addr(), "http://127.0.0.1:9/hook", &steps).await;
    let err = env.create(None).await.unwrap_err();
    assert!(matches!(err, PipelineError::Plugin { .. }), "{err:?}");
    assert!(env.all_jobs().is_empty());
    assert_eq!(env.accounts(), 0);
    let service = env.jobs();
    // A valid operation afterwards is delivered: the service is running, and it is the only message.
    env.create(Some("valid")).await.unwrap();
    let job = only_job(&env);
    env.wait_job(job.id, |j| j.status == JobStatus::Succeeded)
        .await;
    service.shutdown().await;
    let r = receive(bus.local_addr(), 5).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&header(&r, "BrokerProperties")).unwrap()["MessageId"],
        job.id.to_string()
    );
    assert_eq!(receive(bus.local_addr(), 1).await.status(), 204);
    bus.shutdown().await.unwrap();
}

/// With the bus down the job waits (Suspended / Waiting) and is retried; once the bus is up it is delivered.
/// The SAS key appears in no job row, attempt, trace or error on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_job_waits_and_is_delivered_when_it_is_back() {
    let addr = free_addr();
    let env = env(addr, "http://127.0.0.1:9/hook", QUEUE_STEP).await;
    env.create(Some("while down")).await.unwrap();
    let job = only_job(&env);
    let service = env.jobs();
    let waiting = env
        .wait_job(job.id, |j| {
            j.status == JobStatus::Waiting && j.retry_count >= 2
        })
        .await;
    assert!(waiting.postpone_until.is_some(), "{waiting:?}");
    let attempts = env.attempts(job.id);
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(
        attempts.iter().all(|a| a.entry.outcome == "transient"),
        "{attempts:?}"
    );

    let bus_dir = tempfile::tempdir().unwrap();
    let bus = start_bus(addr, bus_dir.path()).await;
    let done = env
        .wait_job(job.id, |j| j.status == JobStatus::Succeeded)
        .await;
    service.shutdown().await;
    let r = receive(addr, 5).await;
    assert_eq!(r.status(), 200);
    let content_type = header(&r, "Content-Type");
    let ctx = weft_message::parse(&r.bytes().await.unwrap(), &content_type).unwrap();
    assert_eq!(ctx.operation_id, job.id);
    assert_eq!(receive(addr, 1).await.status(), 204);
    let attempts = env.attempts(done.id);
    assert_eq!(attempts.last().unwrap().entry.http_status, Some(201));

    // Secrets are write-only: not in the job, its attempts (errors included) or the trace log.
    let leaked = |text: &str| text.contains(SAS_KEY);
    let job_row = format!("{done:?}{}", String::from_utf8_lossy(&done.data));
    assert!(!leaked(&job_row));
    assert!(!leaked(&format!("{attempts:?}")));
    assert!(!leaked(&format!("{:?}", env.traces())));
    assert!(!leaked(&format!("{:?}", env.delivery)));
    bus.shutdown().await.unwrap();
}

/// A webhook answering 400 fails the job at once (internal error, no retry), with the status recorded; the
/// webhook got Dataverse's headers, the key as `?code=`, and the context with OperationId = job id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_400_fails_the_job_at_once() {
    let (hook, url) = Hook::start(&[StatusCode::BAD_REQUEST]).await;
    let env = env(free_addr(), &url, HOOK_STEP).await;
    env.create(Some("to hook")).await.unwrap();
    let job = only_job(&env);
    let service = env.jobs();
    let failed = env
        .wait_job(job.id, |j| j.status == JobStatus::Failed)
        .await;
    service.shutdown().await;
    let attempts = env.attempts(job.id);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].entry.outcome, "permanent");
    assert_eq!(attempts[0].entry.http_status, Some(400));
    assert_eq!(failed.error_code, Some(0x8004_4306_u32 as i32));
    let seen = hook.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].query, format!("code={HOOK_KEY}"));
    assert_eq!(seen[0].headers["x-ms-dynamics-request-name"], "Create");
    assert_eq!(
        seen[0].headers["x-ms-dynamics-organization"],
        "weft.test.local"
    );
    let ctx = weft_message::parse(&seen[0].body, "application/json").unwrap();
    assert_eq!(ctx.operation_id, job.id);
    // The key went to the webhook, and nowhere it could be read back.
    assert!(!format!("{failed:?}{attempts:?}").contains(HOOK_KEY));
}

/// The custom Azure-aware plug-in in a sync step posts at once through the notification service and traces
/// the answer; when the post fails, the step fails and the operation is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_plugin_posts_from_a_sync_step_and_a_failed_post_rolls_back() {
    let (hook, url) = Hook::start(&[StatusCode::OK]).await;
    let env = env(free_addr(), &url, &azure_aware_step("hook")).await;
    let account = env.create(Some("synced")).await.unwrap();
    let seen = hook.requests();
    assert_eq!(seen.len(), 1);
    let ctx = weft_message::parse(&seen[0].body, "application/json").unwrap();
    assert_eq!(ctx.primary_entity_id, account);
    assert_eq!((ctx.mode, ctx.stage), (0, 40));
    assert!(ctx.is_in_transaction);
    assert_eq!(
        seen[0].headers["x-ms-correlation-request-id"],
        ctx.correlation_id.to_string().as_str()
    );
    let traces = env.traces();
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert!(
        traces[0]
            .entry
            .trace
            .contains("Posting the execution context of Create account"),
        "{}",
        traces[0].entry.trace
    );
    assert!(
        traces[0]
            .entry
            .trace
            .ends_with("Posted; the endpoint returned no response."),
        "{}",
        traces[0].entry.trace
    );

    hook.answer(StatusCode::INTERNAL_SERVER_ERROR);
    let err = env.create(Some("rolled back")).await.unwrap_err();
    match &err {
        PipelineError::Plugin { message, .. } => {
            assert!(message.contains("HTTP 500"), "{message}");
            assert!(!message.contains(HOOK_KEY), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hook.requests().len(), 2);
    assert_eq!(env.accounts(), 1);
    let failed_trace = env
        .traces()
        .into_iter()
        .find(|t| t.entry.error.is_some())
        .expect("the failed step is traced");
    assert!(!format!("{failed_trace:?}").contains(HOOK_KEY));
}

/// The custom Azure-aware plug-in in an async step posts within its system job: a webhook 503 fails the
/// attempt (one more attempt, dataverse.md §17), the retry runs the whole plug-in again and succeeds; both
/// posts carry OperationId = the job id, and each run is in the trace log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_plugin_in_an_async_step_posts_within_its_job_and_reruns_on_retry() {
    let (hook, url) = Hook::start(&[StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK]).await;
    let step = azure_aware_step("hook").replace("stage = 40\n", "stage = 40\nmode = 1\n");
    let env = env(free_addr(), &url, &step).await;
    env.create(Some("later")).await.unwrap();
    assert!(
        hook.requests().is_empty(),
        "an async step does not post in the operation"
    );
    let job = only_job(&env);
    let service = env.jobs();
    env.wait_job(job.id, |j| j.status == JobStatus::Succeeded)
        .await;
    service.shutdown().await;
    let seen = hook.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let ctx = weft_message::parse(&request.body, "application/json").unwrap();
        assert_eq!(ctx.operation_id, job.id);
        assert_eq!((ctx.mode, ctx.is_in_transaction), (1, false));
    }
    let attempts = env.attempts(job.id);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let hook_id = Some(derived_id("serviceendpoint", "hook"));
    assert_eq!(attempts[0].entry.outcome, "webhook-gateway");
    assert_eq!(
        (attempts[0].entry.endpoint_id, attempts[0].entry.http_status),
        (hook_id, Some(503))
    );
    assert_eq!(
        (attempts[1].entry.endpoint_id, attempts[1].entry.http_status),
        (hook_id, Some(200))
    );
    let traces = env.traces();
    assert_eq!(traces.len(), 2, "{traces:?}");
    assert!(
        traces
            .iter()
            .all(|t| t.entry.mode == StepMode::Asynchronous)
    );
    assert!(!format!("{traces:?}{attempts:?}").contains(HOOK_KEY));
}

/// A component replaced while an operation is in flight: the operation finishes on the version it started
/// with (its later step runs the old enricher), the next operation runs the new one. The operation is held
/// mid-way by a webhook that answers its PreValidation Azure-aware step only after the replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_operation_finishes_on_the_component_it_started_with() {
    use tokio::sync::{Notify, oneshot};
    let arrived = Arc::new(Notify::new());
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
    let app = {
        let (arrived, released) = (arrived.clone(), released.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move || async move {
                arrived.notify_one();
                if let Some(gate) = released.lock().await.take() {
                    let _ = gate.await;
                }
                StatusCode::OK
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Held in PreValidation, which runs outside the transaction: the replacement can commit meanwhile.
    let steps = azure_aware_step("hook").replace("stage = 40\n", "stage = 10\n")
        + "[[step]]\nname = \"enrich\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\n\
           plugin = \"enricher\"\n";
    let env = Arc::new(env(free_addr(), &url, &steps).await);

    let first = {
        let env = env.clone();
        tokio::spawn(async move { env.create(Some("Fourth Coffee")).await })
    };
    arrived.notified().await;
    let pipeline = env.runtime.pipeline.clone();
    let validator = fixtures::bytes("validator");
    tokio::task::spawn_blocking(move || pipeline.replace_plugin("enricher", &validator))
        .await
        .unwrap()
        .unwrap();
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    env.create(Some("Litware")).await.unwrap();

    let mut enricher: Vec<TraceLog> = env
        .traces()
        .into_iter()
        .filter(|t| t.entry.plugin == "enricher")
        .collect();
    enricher.reverse(); // oldest first
    assert_eq!(enricher.len(), 2, "{enricher:?}");
    assert!(
        enricher[0]
            .entry
            .trace
            .starts_with("Enricher: accountnumber = ACC-FC-"),
        "the in-flight operation ran the new version: {}",
        enricher[0].entry.trace
    );
    assert_eq!(enricher[1].entry.trace, "Validator: account is valid.");
}

/// An async step's plug-in has an organization service: its Create runs when the job runs, as an
/// operation of its own at depth 2 with the job's correlation id and the async context as ParentContext,
/// and fires that operation's steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_plugin_calls_the_organization_service_when_its_job_runs() {
    let steps = "[[step]]\nname = \"spawn\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\nmode = 1\n\
                 plugin = \"org-caller\"\nconfiguration = \"create=contact:lastname\"\n\
                 [[step]]\nname = \"child\"\nmessage = \"Create\"\ntable = \"contact\"\nstage = 20\n\
                 plugin = \"probe\"\nconfiguration = \"label=child\"\n";
    let env = env(free_addr(), "http://127.0.0.1:9/hook", steps).await;
    env.create(Some("Kid")).await.unwrap();
    let contacts = || {
        env.store()
            .read(|r: &dyn Read| r.retrieve_multiple(&Query::new("contact")))
            .unwrap()
    };
    assert!(
        contacts().is_empty(),
        "the async step ran inside the operation"
    );
    let job = only_job(&env);
    let service = env.jobs();
    let done = env
        .wait_job(job.id, |j| {
            j.status.state() == weft_store::system::JobState::Completed
        })
        .await;
    service.shutdown().await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let contacts = contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].attributes["lastname"],
        weft_store::Value::String("Kid".into())
    );
    let child = env
        .traces()
        .into_iter()
        .find(|t| t.entry.trace.starts_with("label=child\n"))
        .expect("the child operation's step ran");
    let line = |key: &str| {
        child
            .entry
            .trace
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("depth"), "2");
    assert_eq!(line("correlation"), job.correlation_id.to_string());
    // ParentContext: the child's own PreValidation context (stage 20 sees it), the async step's context,
    // then the parents that one carried.
    let stored = weft_message::parse(&job.data, &job.data_content_type).unwrap();
    let mut chain = 2;
    let mut parent = stored.parent_context.as_deref();
    while let Some(p) = parent {
        chain += 1;
        parent = p.parent_context.as_deref();
    }
    assert_eq!(line("parents"), chain.to_string());
}

/// Answers one Hybrid Connections request on the control channel (the published protocol) with `reply`;
/// returns the request's head and body.
async fn relay_answer_once(bus: SocketAddr, reply: &'static str) -> (serde_json::Value, Vec<u8>) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message as Ws;
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token =
        weft_bus::sas::generate_token(&format!("http://{bus}/{RELAY}"), KEY_NAME, SAS_KEY, expiry);
    let token: String = url_encode(&token);
    let url =
        format!("ws://{bus}/$hc/{RELAY}?sb-hc-action=listen&sb-hc-id=test&sb-hc-token={token}");
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let Ws::Text(head) = ws.next().await.unwrap().unwrap() else {
        panic!("expected a request head")
    };
    let head: serde_json::Value = serde_json::from_str(head.as_str()).unwrap();
    let body = if head["request"]["body"] == true {
        let Ws::Binary(b) = ws.next().await.unwrap().unwrap() else {
            panic!("expected the body frame")
        };
        b.to_vec()
    } else {
        Vec::new()
    };
    let response = serde_json::json!({"response": {"requestId": head["request"]["id"], "statusCode": 200,
        "responseHeaders": {"Content-Type": "text/plain"}, "body": true}});
    ws.send(Ws::text(response.to_string())).await.unwrap();
    ws.send(Ws::binary(reply.as_bytes().to_vec()))
        .await
        .unwrap();
    (head, body)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The custom Azure-aware plug-in in a sync step posting to a two-way relay gets the listener's answer back
/// (traced), with BrokerProperties MessageId = the context's OperationId.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_relay_answer_reaches_the_custom_plugin() {
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = start_bus("127.0.0.1:0".parse().unwrap(), bus_dir.path()).await;
    let env = env(
        bus.local_addr(),
        "http://127.0.0.1:9/hook",
        &azure_aware_step("relay"),
    )
    .await;
    let listener = tokio::spawn(relay_answer_once(
        bus.local_addr(),
        "Success from the listener",
    ));
    // The listener must be connected before the post, or the relay answers "no active listener".
    let deadline = Instant::now() + Duration::from_secs(10);
    let account = loop {
        match env.create(Some("relayed")).await {
            Ok(id) => break id,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (head, body) = listener.await.unwrap();
    let traces: Vec<TraceLog> = env
        .traces()
        .into_iter()
        .filter(|t| t.entry.error.is_none())
        .collect();
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert!(
        traces[0]
            .entry
            .trace
            .ends_with("Response: Success from the listener"),
        "{}",
        traces[0].entry.trace
    );
    let headers = &head["request"]["requestHeaders"];
    let broker: serde_json::Value =
        serde_json::from_str(headers["brokerproperties"].as_str().unwrap()).unwrap();
    let ctx = weft_message::parse(&body, "application/json").unwrap();
    assert_eq!(ctx.primary_entity_id, account);
    assert_eq!(broker["MessageId"], ctx.operation_id.to_string());
    assert_eq!(env.accounts(), 1);
    bus.shutdown().await.unwrap();
}

/// A bus refusing the SAS key (401) suspends the job — Waiting with no next attempt until a user resumes
/// it — and the wrong key appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_suspend_the_job() {
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = start_bus("127.0.0.1:0".parse().unwrap(), bus_dir.path()).await;
    let wrong = "d3Jvbmcta2V5LWRlbGl2ZXJ5LTU1";
    let env = env_with_key(
        bus.local_addr(),
        "http://127.0.0.1:9/hook",
        QUEUE_STEP,
        wrong,
    )
    .await;
    env.create(Some("refused")).await.unwrap();
    let job = only_job(&env);
    let service = env.jobs();
    let suspended = env
        .wait_job(job.id, |j| j.status == JobStatus::Waiting)
        .await;
    // Give a wrongly scheduled retry the time to happen.
    tokio::time::sleep(Duration::from_millis(600)).await;
    service.shutdown().await;
    assert_eq!(suspended.postpone_until, None, "{suspended:?}");
    let attempts = env.attempts(job.id);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].entry.outcome, "auth");
    assert_eq!(attempts[0].entry.http_status, Some(401));
    assert_eq!(receive(bus.local_addr(), 1).await.status(), 204);
    assert!(!format!("{suspended:?}{attempts:?}{:?}", env.traces()).contains(wrong));
    bus.shutdown().await.unwrap();
}

/// From a top-level PreValidation step (outside the operation's transaction) the notification service reads
/// the endpoint on its own and posts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_plugin_posts_from_prevalidation() {
    let (hook, url) = Hook::start(&[StatusCode::OK]).await;
    let step = azure_aware_step("hook").replace("stage = 40\n", "stage = 10\n");
    let env = env(free_addr(), &url, &step).await;
    env.create(Some("early")).await.unwrap();
    let seen = hook.requests();
    assert_eq!(seen.len(), 1);
    let ctx = weft_message::parse(&seen[0].body, "application/json").unwrap();
    assert_eq!((ctx.stage, ctx.is_in_transaction), (10, false));
    assert_eq!(seen[0].query, format!("code={HOOK_KEY}"));
}

/// The endpoint check goes through the same lookup and client: a running bus passes, a stopped one is a
/// transient failure, and a wrong key is refused as auth without the key in the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_check() {
    let bus_dir = tempfile::tempdir().unwrap();
    let bus = start_bus("127.0.0.1:0".parse().unwrap(), bus_dir.path()).await;
    let addr = bus.local_addr();
    let check = |env: &Env| {
        let id = derived_id("serviceendpoint", "queue");
        env.store()
            .read(|r: &dyn Read| Ok::<_, DeliveryError>(env.delivery.endpoint(r, id)?))
            .unwrap()
    };
    let env = env(addr, "http://127.0.0.1:9/hook", "").await;
    env.delivery.check(check(&env)).await.unwrap();
    let wrong = "d3Jvbmcta2V5LWNoZWNrLTc3";
    let refused = env_with_key(addr, "http://127.0.0.1:9/hook", "", wrong).await;
    let e = refused.delivery.check(check(&refused)).await.unwrap_err();
    assert_eq!(e.class(), FailureClass::Auth, "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");
    bus.shutdown().await.unwrap();
    let e = env.delivery.check(check(&env)).await.unwrap_err();
    assert!(matches!(e.class(), FailureClass::Transient { .. }), "{e}");
}

/// A webhook that holds every POST open until released, telling the test when one arrived.
struct HeldHook {
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: Arc<tokio::sync::Notify>,
}

impl HeldHook {
    async fn start() -> (HeldHook, String) {
        let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Notify::new());
        let state = (arrived_tx, release.clone());
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State((arrived, release)): State<(
                        tokio::sync::mpsc::UnboundedSender<()>,
                        Arc<tokio::sync::Notify>,
                    )>| async move {
                        let _ = arrived.send(());
                        // notify_one keeps a permit when the test releases before this waits.
                        release.notified().await;
                        StatusCode::OK
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (HeldHook { arrived, release }, url)
    }
}

/// Issue 11's done-when, without timing: while a synchronous step's webhook post is held open (its operation
/// is inside stage 40, holding the account it created), a Create on another table commits and reads of the
/// same table answer — the held operation's row not among them — and only then does the held Create end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_step_waiting_on_a_webhook_holds_back_no_other_operation() {
    let (mut hook, url) = HeldHook::start().await;
    let env = env(free_addr(), &url, &azure_aware_step("hook")).await;
    let store = env.store().clone();
    let existing = tokio::task::spawn_blocking(move || {
        store.transact(|tx| {
            tx.create(
                "account",
                None,
                weft_store::Attributes::from([(
                    "name".to_string(),
                    weft_store::Value::String("existing".into()),
                )]),
            )
        })
    })
    .await
    .unwrap()
    .unwrap();
    let held = tokio::spawn({
        let pipeline = env.runtime.pipeline.clone();
        async move {
            let target = Entity {
                logical_name: "account".into(),
                id: None,
                attributes: vec![Attribute {
                    name: "name".into(),
                    value: Value::String("held".into()),
                }],
                formatted_values: Vec::new(),
                row_version: None,
            };
            tokio::task::spawn_blocking(move || {
                pipeline.execute(OrganizationRequest::new(Message::Create { target }))
            })
            .await
            .unwrap()
        }
    });
    hook.arrived.recv().await.expect("the sync step posted");

    let run = |message: Message| {
        let pipeline = env.runtime.pipeline.clone();
        tokio::task::spawn_blocking(move || pipeline.execute(OrganizationRequest::new(message)))
    };
    let contact = Entity {
        logical_name: "contact".into(),
        id: None,
        attributes: vec![Attribute {
            name: "lastname".into(),
            value: Value::String("other table".into()),
        }],
        formatted_values: Vec::new(),
        row_version: None,
    };
    let created = run(Message::Create { target: contact })
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(created, OrganizationResponse::Create { .. }),
        "{created:?}"
    );
    let retrieved = run(Message::Retrieve {
        table: "account".into(),
        id: existing,
        columns: None,
    })
    .await
    .unwrap()
    .unwrap();
    assert!(matches!(retrieved, OrganizationResponse::Retrieve { .. }));
    let listed = run(Message::RetrieveMultiple {
        query: Query::new("account"),
    })
    .await
    .unwrap()
    .unwrap();
    match listed {
        OrganizationResponse::RetrieveMultiple { collection } => {
            assert_eq!(
                collection.entities.len(),
                1,
                "no dirty read of the held row"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !held.is_finished(),
        "the held Create ended before its webhook answered"
    );

    hook.release.notify_one();
    let response = held.await.unwrap().unwrap();
    assert!(matches!(response, OrganizationResponse::Create { .. }));
    assert_eq!(env.accounts(), 2);
}

/// A synchronous service-endpoint step (mode 0) posts inside the operation: a 200 lets the Create commit with
/// no system job; a 500 fails the Create with the endpoint's answer, writes nothing and is not retried; the
/// trace log records both posts under Dataverse's built-in plug-in.
#[tokio::test(flavor = "multi_thread")]
async fn a_synchronous_endpoint_step_posts_inside_the_operation() {
    let (hook, hook_url) = Hook::start(&[StatusCode::OK]).await;
    let step = HOOK_STEP.replace("mode = 1", "mode = 0");
    let env = env(free_addr(), &hook_url, &step).await;

    let id = env.create(Some("Posted Inc")).await.unwrap();
    assert_eq!(
        hook.requests().len(),
        1,
        "posted before the Create answered"
    );
    let body = String::from_utf8(hook.requests()[0].body.clone()).unwrap();
    assert!(body.contains(&id.to_string()), "{body}");
    assert!(body.contains("\"Mode\":0"), "a synchronous context: {body}");
    assert!(
        env.all_jobs().is_empty(),
        "no system job for a synchronous step"
    );
    assert_eq!(env.accounts(), 1);

    hook.answer(StatusCode::INTERNAL_SERVER_ERROR);
    let err = env.create(Some("Refused Inc")).await.unwrap_err();
    let PipelineError::Plugin { step, message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(step, "to hook");
    assert!(message.contains("500"), "{message}");
    assert_eq!(hook.requests().len(), 2, "posted once, not retried");
    assert_eq!(env.accounts(), 1, "the failed Create wrote nothing");
    assert!(env.all_jobs().is_empty());

    let traces = env.traces();
    let posts: Vec<_> = traces
        .iter()
        .filter(|t| t.entry.plugin == "Microsoft.Crm.ServiceBus.ServiceBusPlugin")
        .collect();
    assert_eq!(posts.len(), 2, "{traces:?}");
    assert!(posts.iter().any(|t| t.entry.trace.contains("failed")));
}

/// The job runner keeps endpoints between jobs; a change made through the Web API (PATCH of the webhook's
/// `url`, to the second webhook and back) is honoured by the very next delivery: each job goes where the
/// endpoint pointed when it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_changed_through_the_web_api_is_used_by_the_next_delivery() {
    let (first, first_url) = Hook::start(&[StatusCode::OK]).await;
    let (second, second_url) = Hook::start(&[StatusCode::OK]).await;
    let env = env(free_addr(), &first_url, HOOK_STEP).await;
    let (addr, server) = weft_host::api::serve(
        Arc::clone(&env.runtime),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    let patch = |url: String| {
        let endpoint = format!(
            "http://{addr}/api/data/v9.2/serviceendpoints({})",
            derived_id("serviceendpoint", "hook")
        );
        async move {
            let r = reqwest::Client::new()
                .patch(endpoint)
                .header("Content-Type", "application/json")
                .body(serde_json::json!({ "url": url }).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
    };
    let service = env.jobs();
    let mut expected = (0, 0);
    let mut seen = std::collections::HashSet::new();
    for (round, to_second) in [false, true, true, false].into_iter().enumerate() {
        if round > 0 {
            patch(if to_second { &second_url } else { &first_url }.clone()).await;
        }
        env.create(Some(&format!("round {round}"))).await.unwrap();
        let job = env
            .all_jobs()
            .into_iter()
            .find(|j| seen.insert(j.id))
            .expect("the new job");
        env.wait_job(job.id, |j| j.status == JobStatus::Succeeded)
            .await;
        if to_second {
            expected.1 += 1;
        } else {
            expected.0 += 1;
        }
        assert_eq!(
            (first.requests().len(), second.requests().len()),
            expected,
            "round {round}"
        );
        let last = if to_second { &second } else { &first }.requests();
        let ctx = weft_message::parse(&last.last().unwrap().body, "application/json").unwrap();
        assert_eq!(ctx.operation_id, job.id, "round {round}");
    }
    service.shutdown().await;
    server.shutdown().await.unwrap();
}
