//! OpenTelemetry traces from a real `weft up` process to an OTLP/HTTP receiver in the test (axum on
//! loopback, decoding `ExportTraceServiceRequest` with opentelemetry-proto's prost types): a Create through
//! the Web API — a sync validator (stage 10), a sync plug-in calling the organization service (stage 20) and
//! an asynchronous service-endpoint step posting to a queue of the embedded bus — gives ONE trace whose id is
//! the operation's CorrelationId, from the request to the bus post, with the parent links and attributes
//! checked and no secret in any attribute. The last spans arrive because `weft up` flushes at shutdown
//! (SIGINT). Without `[telemetry]` nothing is sent; the `OTEL_*` environment configures it too, and an
//! incoming W3C `traceparent` is honoured.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::fixtures;

/// Distinctive, so a leak into a span is found by a substring search.
const SEND_KEY: &str = "otel-test-send-key-5d2c9e";
const LISTEN_KEY: &str = "otel-test-listen-key-81af";
/// How long the test waits for something to happen (a bound against a hang, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One received span with its service's name.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(any_text)
    }

    fn trace(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

fn any_text(v: &AnyValue) -> String {
    match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP trace receiver on loopback: every span of every export, and how many exports came.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    exports: Arc<Mutex<usize>>,
    _runtime: tokio::runtime::Runtime,
}

impl Collector {
    fn start() -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let exports: Arc<Mutex<usize>> = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (s, e) = (Arc::clone(&spans), Arc::clone(&exports));
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (spans, exports) = (Arc::clone(&s), Arc::clone(&e));
                    async move {
                        *exports.lock().unwrap() += 1;
                        assert_eq!(
                            headers["content-type"], "application/x-protobuf",
                            "OTLP/HTTP with protobuf bodies"
                        );
                        let request = ExportTraceServiceRequest::decode(body)
                            .expect("an ExportTraceServiceRequest");
                        let mut spans = spans.lock().unwrap();
                        for resource in request.resource_spans {
                            let service = resource
                                .resource
                                .iter()
                                .flat_map(|r| &r.attributes)
                                .find(|kv| kv.key == "service.name")
                                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                                .map(any_text)
                                .unwrap_or_default();
                            for scope in resource.scope_spans {
                                for span in scope.spans {
                                    spans.push(Received {
                                        service: service.clone(),
                                        span,
                                    });
                                }
                            }
                        }
                        // An empty ExportTraceServiceResponse: everything accepted.
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                            Vec::<u8>::new(),
                        )
                    }
                },
            ),
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector {
            addr,
            spans,
            exports,
            _runtime: runtime,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

/// weft.toml: account and contact tables; a validator (Create, stage 10); org-caller creating a contact
/// (Create, stage 20); an asynchronous step posting to the queue `orders` of the embedded bus at `bus`;
/// `telemetry` appended as it is.
fn config(dir: &Path, bus: SocketAddr, telemetry: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
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

[[plugin]]
name = "validator"
component = "{validator}"

[[plugin]]
name = "org-caller"
component = "{org_caller}"

[[step]]
name = "validate account"
message = "Create"
table = "account"
stage = 10
mode = 0
plugin = "validator"

[[step]]
name = "copy to contact"
message = "Create"
table = "account"
stage = 20
mode = 0
plugin = "org-caller"
configuration = "create=contact:lastname"

[bus]
bind = "{bus}"
data = "{bus_data}"
  [[bus.queues]]
  name = "orders"
  [[bus.sas_policies]]
  name = "dataverse-send"
  key = "{SEND_KEY}"
  rights = ["Send"]
  [[bus.sas_policies]]
  name = "listener"
  key = "{LISTEN_KEY}"
  rights = ["Listen"]

[[service_endpoint]]
name = "orders queue"
contract = 2
message_format = 2
auth_type = 2
namespace_address = "http://{bus}"
path = "orders"
sas_key_name = "dataverse-send"
sas_key = "{SEND_KEY}"

[[step]]
name = "send to orders"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "orders queue"

[jobs]
poll_interval_ms = 50

{telemetry}
"#,
        validator = fixtures::component("validator").display(),
        org_caller = fixtures::component("org-caller").display(),
        bus_data = dir.join("bus").display(),
    );
    let path = dir.join("weft.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `weft up`, stopped with SIGINT by [`Up::stop`] (killed if the test fails first).
struct Up {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    base: String,
}

impl Up {
    fn start(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Up {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
        command
            .args(["up", "--bind", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data")
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        // Only what the test sets: the developer's or CI's own OTEL_* must not point weft elsewhere.
        for (name, _) in std::env::vars() {
            if name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let base = loop {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).unwrap();
            assert!(read > 0, "weft up ended before listening");
            if let Some(base) = line.trim().strip_prefix("listening on ") {
                break base.to_owned();
            }
        };
        Up {
            child,
            _stdout: stdout,
            base,
        }
    }

    /// SIGINT, then waits (bounded) for the process to end.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "weft up exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "weft up did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs one async call to completion (the tests themselves are synchronous: they drive a process).
fn block<F: std::future::Future>(work: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// Creates an account over the Web API (with `traceparent` when given); its id.
fn create_account(base: &str, name: &str, traceparent: Option<&str>) -> Uuid {
    block(async {
        let client = reqwest::Client::new();
        let mut request = client
            .post(format!("{base}/api/data/v9.2/accounts"))
            .json(&json!({ "name": name }));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get("OData-EntityId")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            status,
            reqwest::StatusCode::NO_CONTENT,
            "{:?}",
            r.text().await
        );
        let location = location.unwrap();
        let id = location.rsplit('(').next().unwrap().trim_end_matches(')');
        Uuid::parse_str(id).unwrap()
    })
}

/// Waits (bounded) until every system job has succeeded; returns them (asyncoperations over the Web API).
fn wait_jobs_succeeded(base: &str, count: usize) -> Vec<Json> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // A client per runtime: pooled connections belong to the runtime that opened them.
        let r: Json = block(async {
            reqwest::Client::new()
                .get(format!("{base}/api/data/v9.2/asyncoperations"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let jobs = r["value"].as_array().cloned().unwrap_or_default();
        if jobs.len() == count && jobs.iter().all(|j| j["statuscode"] == 30) {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "the system jobs did not all succeed: {jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn one<'a>(spans: &'a [Received], name: &str, trace: &str) -> &'a Received {
    let found: Vec<&Received> = spans
        .iter()
        .filter(|s| s.span.name == name && s.trace() == trace)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one span `{name}` in trace {trace}; the trace has: {:?}",
        spans
            .iter()
            .filter(|s| s.trace() == trace)
            .map(|s| (&s.span.name, s.id(), s.parent()))
            .collect::<Vec<_>>()
    );
    found[0]
}

fn no_secret_in(spans: &[Received]) {
    for s in spans {
        for kv in &s.span.attributes {
            let text = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(any_text)
                .unwrap_or_default();
            for secret in [SEND_KEY, LISTEN_KEY, "sig=", "SharedAccessSignature"] {
                assert!(
                    !text.contains(secret) && !kv.key.contains(secret),
                    "span `{}` attribute {} = {text:?} holds a secret",
                    s.span.name,
                    kv.key
                );
            }
        }
        for event in &s.span.events {
            assert!(!format!("{event:?}").contains(SEND_KEY));
        }
    }
}

/// The whole chain in one trace, configured by `[telemetry]` in weft.toml; flushed at shutdown.
#[test]
fn a_create_is_one_trace_from_the_request_to_the_bus_post() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"http://{}\"\nservice_name = \"weft-otel-test\"\n",
        collector.addr
    );
    let config = config(dir.path(), free_addr(), &telemetry);
    let up = Up::start(dir.path(), &config, &[]);
    let account = create_account(&up.base, "Contoso", None);
    let jobs = wait_jobs_succeeded(&up.base, 1);
    let correlation_id = jobs[0]["correlationid"].as_str().unwrap().to_owned();
    up.stop();

    let spans = collector.spans();
    assert!(!spans.is_empty(), "the collector received spans");
    assert!(spans.iter().all(|s| s.service == "weft-otel-test"));
    // The trace id is the operation's CorrelationId.
    let trace = Uuid::parse_str(&correlation_id)
        .unwrap()
        .simple()
        .to_string();

    let request = one(&spans, "POST accounts", &trace);
    assert_eq!(request.parent(), "", "the request is the trace's root");
    assert_eq!(request.attr("http.response.status_code").unwrap(), "204");
    assert_eq!(request.attr("url.path").unwrap(), "/api/data/v9.2/accounts");

    let operation = one(&spans, "Create account", &trace);
    assert_eq!(operation.parent(), request.id());
    assert_eq!(
        operation.attr("weft.correlation_id").unwrap(),
        correlation_id
    );
    assert_eq!(operation.attr("weft.message").unwrap(), "Create");
    assert_eq!(operation.attr("weft.table").unwrap(), "account");
    assert_eq!(operation.attr("weft.depth").unwrap(), "1");
    assert_eq!(operation.attr("weft.row_id").unwrap(), account.to_string());
    assert_eq!(operation.attr("weft.outcome").unwrap(), "succeeded");

    // Stages are children of the operation; each sync plug-in of its stage.
    let stage10 = one(&spans, "stage 10 PreValidation", &trace);
    let stage20 = one(&spans, "stage 20 PreOperation", &trace);
    let stages30: Vec<&Received> = spans
        .iter()
        .filter(|s| s.span.name == "stage 30 MainOperation" && s.trace() == trace)
        .collect();
    for stage in [stage10, stage20] {
        assert_eq!(stage.parent(), operation.id());
    }
    let validate = one(&spans, "plugin validate account", &trace);
    assert_eq!(validate.parent(), stage10.id());
    assert_eq!(validate.attr("weft.plugin").unwrap(), "validator");
    assert_eq!(validate.attr("weft.stage").unwrap(), "10");
    assert_eq!(validate.attr("weft.mode").unwrap(), "synchronous");
    assert_eq!(validate.attr("weft.outcome").unwrap(), "succeeded");
    assert!(validate.attr("weft.duration_ms").is_some());
    let copy = one(&spans, "plugin copy to contact", &trace);
    assert_eq!(copy.parent(), stage20.id());
    assert_eq!(copy.attr("weft.plugin").unwrap(), "org-caller");

    // The plug-in's organization-service call, with the child operation's main stage inside it.
    let call = one(&spans, "organization service Create", &trace);
    assert_eq!(call.parent(), copy.id());
    assert_eq!(call.attr("weft.table").unwrap(), "contact");
    assert_eq!(call.attr("weft.depth").unwrap(), "2");
    assert_eq!(call.attr("weft.correlation_id").unwrap(), correlation_id);
    assert_eq!(call.attr("weft.outcome").unwrap(), "succeeded");
    assert!(
        stages30.iter().any(|s| s.parent() == call.id()),
        "the child operation's stage 30 is inside the call"
    );
    assert!(
        stages30.iter().any(|s| s.parent() == operation.id()),
        "the operation's own stage 30"
    );

    // The system job's attempt, later and in another task: same trace, child of the operation.
    let attempt = one(&spans, "system job attempt", &trace);
    assert_eq!(attempt.parent(), operation.id());
    assert_eq!(
        attempt.attr("weft.job_id").unwrap(),
        jobs[0]["asyncoperationid"].as_str().unwrap()
    );
    assert_eq!(attempt.attr("weft.attempt").unwrap(), "1");
    assert_eq!(attempt.attr("weft.operation_type").unwrap(), "1");
    assert_eq!(attempt.attr("weft.correlation_id").unwrap(), correlation_id);
    assert_eq!(attempt.attr("weft.outcome").unwrap(), "succeeded");

    // ... and its post to the bus.
    let post = one(&spans, "post orders queue", &trace);
    assert_eq!(post.parent(), attempt.id());
    assert_eq!(post.attr("weft.endpoint").unwrap(), "orders queue");
    assert_eq!(post.attr("weft.contract").unwrap(), "Queue");
    assert_eq!(post.attr("http.response.status_code").unwrap(), "201");
    assert_eq!(post.attr("weft.outcome").unwrap(), "succeeded");

    // One connected tree: every span of the trace reaches the request through its parents.
    let by_id: HashMap<String, &Received> = spans
        .iter()
        .filter(|s| s.trace() == trace)
        .map(|s| (s.id(), s))
        .collect();
    for s in by_id.values() {
        let mut at = *s;
        let mut hops = 0;
        while !at.parent().is_empty() {
            at = by_id
                .get(&at.parent())
                .unwrap_or_else(|| panic!("span `{}`'s parent is not in the trace", at.span.name));
            hops += 1;
            assert!(hops < 32);
        }
        assert_eq!(
            at.id(),
            request.id(),
            "`{}` is under the request",
            s.span.name
        );
    }
    no_secret_in(&spans);
}

/// No `[telemetry]` and no OTEL_* variables: a Create and its system job send nothing.
#[test]
fn nothing_is_sent_unless_configured() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), free_addr(), "");
    let up = Up::start(dir.path(), &config, &[]);
    create_account(&up.base, "Contoso", None);
    wait_jobs_succeeded(&up.base, 1);
    up.stop();
    assert_eq!(*collector.exports.lock().unwrap(), 0);
    // A configured section switched off by the operator's OTEL_SDK_DISABLED sends nothing either.
    let dir = tempfile::tempdir().unwrap();
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"http://{}\"\n",
        collector.addr
    );
    let config = self::config(dir.path(), free_addr(), &telemetry);
    let up = Up::start(dir.path(), &config, &[("OTEL_SDK_DISABLED", "true")]);
    create_account(&up.base, "Fabrikam", None);
    wait_jobs_succeeded(&up.base, 1);
    up.stop();
    assert_eq!(*collector.exports.lock().unwrap(), 0);
}

/// The standard environment configures traces without `[telemetry]`; a request's W3C `traceparent` is
/// honoured: the request span joins the caller's trace, and the operation's own trace (its CorrelationId,
/// where its system job's attempt goes) starts at the operation's span, linked to the request.
#[test]
fn the_environment_configures_traces_and_traceparent_is_honoured() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), free_addr(), "");
    let endpoint = format!("http://{}", collector.addr);
    let up = Up::start(
        dir.path(),
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "weft-from-env"),
        ],
    );
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    create_account(
        &up.base,
        "Contoso",
        Some(&format!("00-{caller_trace}-{caller_span}-01")),
    );
    let jobs = wait_jobs_succeeded(&up.base, 1);
    let correlation_id = jobs[0]["correlationid"].as_str().unwrap().to_owned();
    up.stop();

    let spans = collector.spans();
    assert!(spans.iter().all(|s| s.service == "weft-from-env"));
    let request = one(&spans, "POST accounts", caller_trace);
    assert_eq!(request.parent(), caller_span);
    let trace = Uuid::parse_str(&correlation_id)
        .unwrap()
        .simple()
        .to_string();
    assert_ne!(trace, caller_trace);
    let operation = one(&spans, "Create account", &trace);
    assert_eq!(operation.parent(), "");
    assert!(
        operation
            .span
            .links
            .iter()
            .any(|l| hex(&l.trace_id) == caller_trace && hex(&l.span_id) == request.id()),
        "the operation links to the request: {:?}",
        operation.span.links
    );
    let attempt = one(&spans, "system job attempt", &trace);
    assert_eq!(attempt.parent(), operation.id());
    one(&spans, "post orders queue", &trace);
    no_secret_in(&spans);
}

/// A collector that is down fails nothing: the Create and its job succeed, `weft up` stops at SIGINT (its
/// last export fails within the shutdown bound) and says so on stderr without the collector's URL path.
#[test]
fn an_unreachable_collector_fails_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = free_addr();
    let telemetry =
        format!("[telemetry]\notlp_endpoint = \"http://{nobody}/secret-path?token=abc\"\n");
    let config = config(dir.path(), free_addr(), &telemetry);
    let up = Up::start(dir.path(), &config, &[]);
    create_account(&up.base, "Contoso", None);
    wait_jobs_succeeded(&up.base, 1);
    up.stop();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        stderr.contains(&format!("telemetry: traces to http://{nobody} (OTLP/HTTP)")),
        "{stderr}"
    );
    // The failed export is a warning for whoever watches weft up (the SDK's own words).
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") || l.contains("ERROR"))
            && stderr.to_lowercase().contains("export"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret-path") && !stderr.contains("token=abc"),
        "the URL's path and query are never printed: {stderr}"
    );
}
