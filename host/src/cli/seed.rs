//! The quickstart's second part, the seed scenario end to end on one machine:
//! an embedded bus with a queue and a two-way relay, a webhook receiver, a
//! `weft.toml` registering the example plug-ins and three service endpoints,
//! operations through the pipeline, the asynchronous service delivering the
//! system jobs, and listeners showing what arrived.

use crate::builder::Artifact;
use crate::delivery::{Delivery, DeliveryRunner};
use crate::pipeline::{Message, OrganizationRequest};
use crate::registration::derived_id;
use crate::runtime::Runtime;
use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_bus::{BusConfig, QueueConfig, RelayConfig, sas::SasPolicy};
use weft_jobs::{AsyncService, JobsSettings};
use weft_store::StoreExt;
use weft_store::system::{JobFilter, JobStatus, TraceFilter};

const KEY_NAME: &str = "RootManageSharedAccessKey";
/// A demo key for the throw-away local bus (it lives in a temporary directory).
const KEY: &str = "quickstart-demo-key";

/// What the scenario counted; the quickstart's last line reports it.
pub struct Counts {
    /// Operations run (accepted + rejected).
    pub operations: usize,
    /// Operations a plug-in rejected.
    pub rejected: usize,
    /// System jobs that reached Succeeded.
    pub jobs_succeeded: usize,
    /// Messages the queue listener received.
    pub queue_messages: usize,
    /// Webhook calls received.
    pub webhook_calls: usize,
    /// Workflow runs (system jobs of operation type 10) that reached Succeeded.
    pub workflow_runs: usize,
}

#[derive(Parser)]
struct Listen {
    #[command(flatten)]
    args: weft_bus::cli::ListenArgs,
}

fn listen_args(
    bus: std::net::SocketAddr,
    entity: &str,
    extra: &[&str],
) -> weft_bus::cli::ListenArgs {
    let connection = format!(
        "Endpoint=http://{bus};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};EntityPath={entity}"
    );
    let mut argv = vec!["listen", "--connection-string", connection.as_str()];
    argv.extend_from_slice(extra);
    Listen::parse_from(argv).args
}

fn component(artifacts: &[Artifact], package: &str) -> anyhow::Result<String> {
    artifacts
        .iter()
        .find(|a| a.package == package)
        .map(|a| a.path.display().to_string())
        .with_context(|| format!("the build produced no component for `{package}`"))
}

fn config(
    artifacts: &[Artifact],
    bus: std::net::SocketAddr,
    hook: &str,
    store: Option<&str>,
) -> anyhow::Result<String> {
    let relay_id = derived_id("serviceendpoint", "confirm relay");
    let table = crate::registration::EXAMPLE_ACCOUNT_TABLE;
    let store = match store {
        Some(url) => format!("[store]\nurl = {}\n", toml_string(url)),
        None => String::new(),
    };
    Ok(format!(
        r#"{store}
{table}
[[plugin]]
name = "validator"
component = "{validator}"
[[plugin]]
name = "enricher"
component = "{enricher}"
[[plugin]]
name = "azure-aware"
component = "{azure}"

[[service_endpoint]]
name = "accounts queue"
contract = 2
message_format = 2
auth_type = 2
namespace_address = "http://{bus}"
path = "accounts"
sas_key_name = "{KEY_NAME}"
sas_key = "{KEY}"

[[service_endpoint]]
name = "confirm relay"
contract = 4
message_format = 2
auth_type = 2
namespace_address = "http://{bus}"
path = "confirm"
sas_key_name = "{KEY_NAME}"
sas_key = "{KEY}"

[[service_endpoint]]
name = "audit webhook"
contract = 8
message_format = 2
auth_type = 5
url = "{hook}"
auth_value = '<settings><setting name="x-audit-key" value="demo"/></settings>'

[[step]]
name = "validate account"
message = "Create"
table = "account"
stage = 10
plugin = "validator"

[[step]]
name = "number account"
message = "Create"
table = "account"
stage = 20
plugin = "enricher"

[[step]]
name = "confirm through relay"
message = "Create"
table = "account"
stage = 40
plugin = "azure-aware"
configuration = "{relay_id}"

[[step]]
name = "post to queue"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "accounts queue"

[[step]]
name = "post to webhook"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "audit webhook"

[[workflow]]
name = "post new accounts"
table = "account"
on = ["create"]
  [[workflow.step]]
  kind = "activity"
  plugin = "azure-aware"
  activity = "PostContext"
  inputs = {{ ServiceEndpoint = "serviceendpoint:{queue_id}" }}
"#,
        queue_id = derived_id("serviceendpoint", "accounts queue"),
        validator = component(artifacts, "validator")?,
        enricher = component(artifacts, "enricher")?,
        azure = component(artifacts, "azure-aware")?,
    ))
}

/// A webhook receiver on loopback that records the `x-ms-dynamics-*` headers it gets.
async fn webhook() -> anyhow::Result<(String, Arc<Mutex<Vec<String>>>)> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let record = Arc::clone(&record);
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                let line = format!(
                    "POST /audit entity={} request={} correlation={} auth-header={} body={} bytes",
                    header("x-ms-dynamics-entity-name"),
                    header("x-ms-dynamics-request-name"),
                    header("x-ms-correlation-request-id"),
                    if header("x-audit-key") == "demo" { "ok" } else { "missing" },
                    body.len()
                );
                record.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/audit", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

async fn execute(runtime: &Arc<Runtime>, name: &str) -> anyhow::Result<Result<String, String>> {
    let runtime = Arc::clone(runtime);
    let target = crate::context::entity_from_json("account", &serde_json::json!({ "name": name }))?;
    let result = tokio::task::spawn_blocking(move || {
        runtime
            .pipeline
            .execute(OrganizationRequest::new(Message::Create { target }))
    })
    .await?;
    Ok(result
        .map(|response| format!("{response:?}"))
        .map_err(|e| format!("{} {e}", e.code())))
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// Runs the seed scenario in `dir` (its weft.toml, data and bus are kept there for a look
/// afterwards), printing each step; returns what it counted. With `store` (a PostgreSQL URL) the rows go
/// there instead of the data directory's SQLite file; the database must hold no accounts and no system
/// jobs, as the scenario counts from an empty store.
pub async fn run(
    artifacts: &[Artifact],
    dir: &std::path::Path,
    store: Option<&str>,
) -> anyhow::Result<Counts> {
    let bus = weft_bus::start(BusConfig {
        bind: "127.0.0.1:0".parse()?,
        data: dir.join("bus"),
        queues: vec![QueueConfig::new("accounts")],
        relays: vec![RelayConfig {
            name: "confirm".into(),
        }],
        sas_policies: vec![SasPolicy {
            name: KEY_NAME.into(),
            key: KEY.into(),
            rights: vec![weft_bus::sas::Right::Manage],
        }],
        ..BusConfig::default()
    })
    .await?;
    let bus_addr = bus.local_addr();
    println!("   local bus on http://{bus_addr}: queue `accounts`, two-way relay `confirm`");
    let (hook_url, hook_calls) = webhook().await?;
    println!("   webhook receiver on {hook_url}");

    let config_path = dir.join("weft.toml");
    std::fs::write(&config_path, config(artifacts, bus_addr, &hook_url, store)?)?;
    println!(
        "   weft.toml written to {} (its bus and webhook ports were this run's)",
        config_path.display()
    );
    let data = dir.join("data");
    let runtime =
        Arc::new(tokio::task::spawn_blocking(move || Runtime::open(&config_path, &data)).await??);
    if let Some(url) = store {
        let shown = weft_store::redact_url(url);
        println!("   store: PostgreSQL at {shown}");
        // Blocking like the reads below (the PostgreSQL backend moves its round trips off the task).
        let held = runtime.store.read(|r| {
            Ok::<_, weft_store::StoreError>((
                r.retrieve_multiple(&weft_store::Query::new("account").top(1))?
                    .len(),
                r.system_jobs(&JobFilter {
                    limit: Some(1),
                    ..JobFilter::default()
                })?
                .len(),
            ))
        })?;
        if held != (0, 0) {
            bail!(
                "{shown} already holds accounts or system jobs: the scenario counts from an empty store; \
                 give an empty database"
            );
        }
    }
    let delivery = Delivery::new("weft.quickstart.local")?;
    runtime.pipeline.set_delivery(Arc::clone(&delivery));
    let runner = Arc::new(DeliveryRunner::new(runtime.pipeline.clone(), delivery));
    let jobs = JobsSettings::default()
        .into_config()
        .map_err(|e| anyhow!("jobs settings: {e}"))?;
    let service = AsyncService::start(Arc::clone(&runtime.store), runner, jobs)
        .map_err(|e| anyhow!("starting the asynchronous service: {e}"))?;
    runtime.pipeline.set_job_notifier(service.notifier());
    // Other hosts on a shared (PostgreSQL) store: their jobs wake this service, their registration
    // changes are taken up.
    runtime
        .pipeline
        .follow_other_hosts(Some(service.notifier()));
    println!(
        "   registered: validator (10), enricher (20), custom Azure-aware plug-in (40, sync, two-way relay), queue and webhook endpoints (40, async), \
         workflow `post new accounts` (its custom activity posts to the queue)"
    );

    println!("\n== the relay listener connects (answers two-way posts with `Success`)");
    let relay = tokio::spawn(weft_bus::cli::run_listen(listen_args(
        bus_addr,
        "confirm",
        &["--relay", "--count", "1"],
    )));

    println!("\n== Create account `Fourth Coffee`");
    // The relay needs its listener connected before the synchronous post.
    let mut accepted = Err(String::new());
    for _ in 0..50 {
        accepted = execute(&runtime, "Fourth Coffee").await?;
        match &accepted {
            Err(e) if e.contains("listener") || e.contains("unavailable") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => break,
        }
    }
    let accepted = accepted.map_err(|e| anyhow!("the Create failed: {e}"))?;
    println!("   {accepted}");
    println!("\n== Create account `` (the validator rejects it; nothing is posted)");
    let rejected = match execute(&runtime, "").await? {
        Ok(_) => bail!("the validator did not reject an account without a name"),
        Err(e) => e,
    };
    println!("   error {rejected}");

    println!("\n== plug-in trace log");
    let traces = runtime.store.read(|r| {
        r.trace_logs(&TraceFilter {
            step_id: None,
            correlation_id: None,
            limit: None,
            skip: 0,
        })
    })?;
    for log in traces.iter().rev() {
        let e = &log.entry;
        println!(
            "   {} {} depth {}: {}",
            e.plugin,
            e.message_name,
            e.depth,
            match &e.error {
                None => "ok".to_owned(),
                Some(error) => format!("failed: {error}"),
            }
        );
        for line in e.trace.lines() {
            println!("     | {line}");
        }
    }

    println!("\n== system jobs");
    let mut jobs = Vec::new();
    for _ in 0..200 {
        jobs = runtime
            .store
            .read(|r| r.system_jobs(&JobFilter::default()))?;
        if !jobs.is_empty() && jobs.iter().all(|j| j.status == JobStatus::Succeeded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for job in &jobs {
        println!(
            "   {} {} -> {:?} ({}/{})",
            job.id,
            job.name,
            job.status,
            job.status.state().value(),
            job.status.value()
        );
    }
    let jobs_succeeded = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Succeeded)
        .count();
    if jobs_succeeded != 3 {
        bail!("expected 3 system jobs to succeed, {jobs_succeeded} did");
    }
    let workflow_runs = jobs
        .iter()
        .filter(|j| j.operation_type == weft_workflows::WORKFLOW_OPERATION_TYPE)
        .count();

    println!("\n== what the listeners received");
    println!("   queue `accounts` (weft listen, receive-and-delete):");
    weft_bus::cli::run_listen(listen_args(
        bus_addr,
        "accounts",
        &["--receive-and-delete", "--count", "2"],
    ))
    .await?;
    let calls = hook_calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("   webhook:");
    for call in &calls {
        println!("     {call}");
    }
    relay.await??;

    service.shutdown().await;
    bus.shutdown().await?;
    Ok(Counts {
        operations: 2,
        rejected: 1,
        jobs_succeeded,
        queue_messages: 2,
        webhook_calls: calls.len(),
        workflow_runs,
    })
}
