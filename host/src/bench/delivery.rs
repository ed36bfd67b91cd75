//! `weft bench delivery` and `weft bench e2e`: the asynchronous service posting system jobs to the embedded
//! local bus, measured in a temporary directory.
//!
//! - delivery: jobs posted per second (1 KB-class JSON contexts, every job transition durable), with the
//!   bus's own ceiling for the same bodies — plain durable sends from 64 keep-alive connections — in the
//!   same run.
//! - e2e: latency from an operation's commit (the caller hears it is durable) to a listener's
//!   receive-and-delete, at a steady 500 operations per second.
//!
//! Owns the measurement only (timing goals live here, never in tests); it must not change delivery
//! behaviour.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use uuid::Uuid;
use weft_bus::sas::SasPolicy;
use weft_bus::{BusConfig, BusHandle, QueueConfig};
use weft_jobs::{AsyncService, JobsSettings};

use super::{jobs_pending, jobs_succeeded, percentiles};
use crate::delivery::{Delivery, DeliveryRunner};
use crate::pipeline::{Message, OrganizationRequest, OrganizationResponse};
use crate::runtime::Runtime;
use crate::sandbox::wit::types::{Attribute, Entity, Value};

/// Jobs delivered in the throughput run.
pub const JOBS: usize = 10_000;
/// Operations in the latency run.
pub const E2E_OPS: usize = 5_000;
/// The latency run's steady rate.
pub const E2E_RATE: u32 = 500;
/// Concurrent connections of the ceiling run (as `weft bench bus`).
const CEILING_CONCURRENCY: usize = 64;
const KEY_NAME: &str = "bench";
const QUEUE: &str = "accounts";
const CEILING_QUEUE: &str = "ceiling";

/// `weft bench delivery`'s figures.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryFigures {
    /// System jobs posted and recorded Succeeded per second.
    pub jobs_per_s: f64,
    /// Durable sends per second of the same bodies straight to the bus.
    pub ceiling_per_s: f64,
    /// Size of one posted context, bytes.
    pub context_bytes: usize,
    /// Jobs measured.
    pub jobs: usize,
    /// The service's workers.
    pub workers: usize,
    /// Attempts in flight per worker.
    pub batch_size: u32,
}

/// `weft bench e2e`'s figures.
#[derive(Debug, Clone, PartialEq)]
pub struct E2eFigures {
    /// Median commit-to-listener latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Operations per second actually issued.
    pub ops_per_s: f64,
    /// Operations measured.
    pub ops: usize,
}

/// A bus, a runtime whose Creates of account post to its queue, and the pieces to start delivery.
struct Setup {
    bus: BusHandle,
    key: String,
    runtime: Arc<Runtime>,
    runner: Arc<DeliveryRunner>,
}

impl Setup {
    async fn start(dir: &Path) -> anyhow::Result<Setup> {
        let key = Uuid::new_v4().simple().to_string();
        let bus = weft_bus::start(BusConfig {
            bind: "127.0.0.1:0".parse()?,
            data: dir.join("bus"),
            queues: vec![QueueConfig::new(QUEUE), QueueConfig::new(CEILING_QUEUE)],
            sas_policies: vec![SasPolicy::full(KEY_NAME, key.clone())],
            ..BusConfig::default()
        })
        .await?;
        let config = dir.join("weft.toml");
        std::fs::write(&config, weft_toml(bus.local_addr(), &key))?;
        let data = dir.join("data");
        let runtime =
            Arc::new(tokio::task::spawn_blocking(move || Runtime::open(&config, &data)).await??);
        let delivery = Delivery::new("weft.bench.local")?;
        runtime.pipeline.set_delivery(Arc::clone(&delivery));
        let runner = Arc::new(DeliveryRunner::new(runtime.pipeline.clone(), delivery));
        Ok(Setup {
            bus,
            key,
            runtime,
            runner,
        })
    }

    fn start_service(&self, settings: JobsSettings) -> anyhow::Result<AsyncService> {
        let config = settings
            .into_config()
            .map_err(|e| anyhow!("jobs settings: {e}"))?;
        let service = AsyncService::start(
            Arc::clone(&self.runtime.store),
            Arc::clone(&self.runner),
            config,
        )
        .map_err(|e| anyhow!("starting the asynchronous service: {e}"))?;
        self.runtime.pipeline.set_job_notifier(service.notifier());
        Ok(service)
    }

    fn url(&self, queue: &str) -> String {
        format!("http://{}/{queue}", self.bus.local_addr())
    }

    fn token(&self, queue: &str) -> String {
        let expiry = weft_bus::props::now_ms() / 1000 + 3600;
        weft_bus::sas::generate_token(&self.url(queue), KEY_NAME, &self.key, expiry as u64)
    }

    /// Receive-and-delete one message (`None` when the queue stayed empty for `timeout_s`).
    async fn receive(
        &self,
        client: &reqwest::Client,
        token: &str,
        timeout_s: u32,
    ) -> anyhow::Result<Option<(String, bytes::Bytes)>> {
        let r = client
            .delete(format!(
                "{}/messages/head?timeout={timeout_s}",
                self.url(QUEUE)
            ))
            .header("Authorization", token)
            .header("Content-Length", "0")
            .send()
            .await?;
        match r.status().as_u16() {
            204 => Ok(None),
            200 => {
                let content_type = r
                    .headers()
                    .get("Content-Type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                Ok(Some((content_type, r.bytes().await?)))
            }
            s => bail!("receive answered {s}"),
        }
    }
}

fn weft_toml(bus: std::net::SocketAddr, key: &str) -> String {
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

[[service_endpoint]]
name = "bench queue"
contract = 2
message_format = 2
auth_type = 2
namespace_address = "http://{bus}"
path = "{QUEUE}"
sas_key_name = "{KEY_NAME}"
sas_key = "{key}"

[[step]]
name = "post to queue"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "bench queue"
"#
    )
}

/// Creates one account; returns its id.
fn create(runtime: &Runtime, name: String) -> anyhow::Result<Uuid> {
    let target = Entity {
        logical_name: "account".into(),
        id: None,
        attributes: vec![Attribute {
            name: "name".into(),
            value: Value::String(name),
        }],
        formatted_values: Vec::new(),
        row_version: None,
    };
    match runtime
        .pipeline
        .execute(OrganizationRequest::new(Message::Create { target }))?
    {
        OrganizationResponse::Create { id } => Ok(id),
        other => bail!("Create answered {other:?}"),
    }
}

/// Creates `n` accounts from 16 threads (group commit), each writing one system job.
fn prefill(runtime: &Arc<Runtime>, n: usize) -> anyhow::Result<()> {
    const THREADS: usize = 16;
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (runtime, next) = (Arc::clone(runtime), Arc::clone(&next));
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        return Ok(());
                    }
                    create(&runtime, format!("Bench Account {i:06}"))?;
                }
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow!("a prefill thread panicked"))??;
    }
    Ok(())
}

/// Measures `weft bench delivery` in `dir`.
pub async fn measure_delivery(
    dir: &Path,
    jobs: usize,
    settings: JobsSettings,
    progress: impl Fn(&str),
) -> anyhow::Result<DeliveryFigures> {
    let (workers, batch_size) = (settings.workers, settings.batch_size);
    let setup = Setup::start(dir).await?;
    progress(&format!("writing {jobs} system jobs (Creates of account)"));
    let runtime = Arc::clone(&setup.runtime);
    tokio::task::spawn_blocking(move || prefill(&runtime, jobs)).await??;

    progress("delivering them to the local bus");
    let started = Instant::now();
    let service = setup.start_service(settings)?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let runtime = Arc::clone(&setup.runtime);
        if !tokio::task::spawn_blocking(move || jobs_pending(runtime.store.as_ref())).await?? {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "delivery did not finish in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    service.shutdown().await;
    let succeeded = jobs_succeeded(setup.runtime.store.as_ref())?;
    ensure!(
        succeeded == jobs,
        "{succeeded} of {jobs} jobs succeeded (see `weft jobs list`)"
    );

    // One posted context: the ceiling sends the same body.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CEILING_CONCURRENCY)
        .build()?;
    let (content_type, body) = setup
        .receive(&client, &setup.token(QUEUE), 5)
        .await?
        .context("the queue is empty after delivery")?;
    progress("ceiling: the same bodies sent straight to the bus");
    let ceiling_per_s = ceiling(&setup, &client, jobs, &content_type, body.clone()).await?;
    setup.bus.shutdown().await?;
    Ok(DeliveryFigures {
        jobs_per_s: jobs as f64 / elapsed.as_secs_f64(),
        ceiling_per_s,
        context_bytes: body.len(),
        jobs,
        workers,
        batch_size,
    })
}

/// Durable sends per second of `body` from [`CEILING_CONCURRENCY`] keep-alive connections.
async fn ceiling(
    setup: &Setup,
    client: &reqwest::Client,
    n: usize,
    content_type: &str,
    body: bytes::Bytes,
) -> anyhow::Result<f64> {
    let url = format!("{}/messages", setup.url(CEILING_QUEUE));
    let token = setup.token(CEILING_QUEUE);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CEILING_CONCURRENCY {
        let (client, next, url, token, body) = (
            client.clone(),
            Arc::clone(&next),
            url.clone(),
            token.clone(),
            body.clone(),
        );
        let content_type = content_type.to_owned();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    return anyhow::Ok(());
                }
                let r = client
                    .post(&url)
                    .header("Authorization", &token)
                    .header("Content-Type", &content_type)
                    .header("BrokerProperties", format!("{{\"MessageId\":\"c{i}\"}}"))
                    .body(body.clone())
                    .send()
                    .await?;
                ensure!(r.status() == 201, "send {i} answered {}", r.status());
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Measures `weft bench e2e` in `dir`: `ops` Creates at `rate` per second with a listener draining the queue.
pub async fn measure_e2e(
    dir: &Path,
    ops: usize,
    rate: u32,
    progress: impl Fn(&str),
) -> anyhow::Result<E2eFigures> {
    let setup = Arc::new(Setup::start(dir).await?);
    let service = setup.start_service(JobsSettings::default())?;
    let committed: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let received: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();

    // The listener: a few long-polling receive-and-deletes until every operation's context arrived.
    const LISTENERS: usize = 4;
    let client = reqwest::Client::new();
    let token = setup.token(QUEUE);
    let mut listeners = tokio::task::JoinSet::new();
    for _ in 0..LISTENERS {
        let (setup, client, token, received) = (
            Arc::clone(&setup),
            client.clone(),
            token.clone(),
            Arc::clone(&received),
        );
        listeners.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while received.lock().unwrap_or_else(|e| e.into_inner()).len() < ops {
                ensure!(Instant::now() < deadline, "the listener waited over 120 s");
                if let Some((content_type, body)) = setup.receive(&client, &token, 1).await? {
                    let at = Instant::now();
                    let ctx = weft_message::parse(&body, &content_type)
                        .map_err(|e| anyhow!("a posted context does not parse: {e}"))?;
                    received
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(ctx.primary_entity_id, at);
                }
            }
            anyhow::Ok(())
        });
    }

    progress(&format!("{ops} Creates at {rate}/s, listener on the queue"));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let started = Instant::now();
    let mut issuers = tokio::task::JoinSet::new();
    for i in 0..ops {
        tick.tick().await;
        let (runtime, committed) = (Arc::clone(&setup.runtime), Arc::clone(&committed));
        issuers.spawn_blocking(move || -> anyhow::Result<()> {
            let id = create(&runtime, format!("E2e Account {i:06}"))?;
            committed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Instant::now());
            Ok(())
        });
    }
    while let Some(t) = issuers.join_next().await {
        t??;
    }
    let ops_per_s = ops as f64 / started.elapsed().as_secs_f64();
    while let Some(t) = listeners.join_next().await {
        t??;
    }
    service.shutdown().await;

    let committed = std::mem::take(&mut *committed.lock().unwrap_or_else(|e| e.into_inner()));
    let received = std::mem::take(&mut *received.lock().unwrap_or_else(|e| e.into_inner()));
    let mut latencies = Vec::with_capacity(ops);
    for (id, at) in &committed {
        let got = received
            .get(id)
            .with_context(|| format!("the context of account {id} never arrived"))?;
        // The listener may see the message before the caller's thread records its return.
        latencies.push(got.saturating_duration_since(*at));
    }
    let p = percentiles(&mut latencies);
    match Arc::try_unwrap(setup) {
        Ok(setup) => setup.bus.shutdown().await?,
        Err(_) => bail!("the bus is still in use"),
    }
    Ok(E2eFigures {
        p50_ms: p.p50.as_secs_f64() * 1000.0,
        p99_ms: p.p99.as_secs_f64() * 1000.0,
        ops_per_s,
        ops,
    })
}

/// `weft bench delivery [--json]` with the service's `workers` and `batch_size` (the `[jobs]` defaults when
/// `None`).
pub async fn run_delivery(
    json: bool,
    workers: Option<usize>,
    batch_size: Option<u32>,
) -> anyhow::Result<()> {
    let defaults = JobsSettings::default();
    let settings = JobsSettings {
        workers: workers.unwrap_or(defaults.workers),
        batch_size: batch_size.unwrap_or(defaults.batch_size),
        ..defaults
    };
    let dir = tempfile::tempdir()?;
    let f = measure_delivery(dir.path(), JOBS, settings, |line| eprintln!("{line}")).await?;
    let share = f.jobs_per_s / f.ceiling_per_s;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "jobs_per_s": f.jobs_per_s.round(),
                "ceiling_per_s": f.ceiling_per_s.round(),
                "share_of_ceiling": (share * 1000.0).round() / 1000.0,
                "context_bytes": f.context_bytes,
                "jobs": f.jobs,
                "workers": f.workers,
                "batch_size": f.batch_size,
            })
        );
    } else {
        println!(
            "delivery: {:.0} jobs/s posted to the local bus ({} jobs, {} B contexts, durable job transitions, \
             {} workers x {} in flight)",
            f.jobs_per_s, f.jobs, f.context_bytes, f.workers, f.batch_size
        );
        println!(
            "ceiling: {:.0} sends/s of the same bodies straight to the bus ({:.0}% reached)",
            f.ceiling_per_s,
            share * 100.0
        );
        println!("goal: >= 5000 jobs/s and >= 50% of the ceiling");
    }
    Ok(())
}

/// `weft bench e2e [--json]`.
pub async fn run_e2e(json: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = measure_e2e(dir.path(), E2E_OPS, E2E_RATE, |line| eprintln!("{line}")).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "p50_ms": (f.p50_ms * 100.0).round() / 100.0,
                "p99_ms": (f.p99_ms * 100.0).round() / 100.0,
                "ops_per_s": f.ops_per_s.round(),
                "ops": f.ops,
            })
        );
    } else {
        println!(
            "commit to listener at {:.0} ops/s ({} ops): p50 {:.2} ms, p99 {:.2} ms",
            f.ops_per_s, f.ops, f.p50_ms, f.p99_ms
        );
        println!("goal: p50 <= 5 ms, p99 <= 50 ms");
    }
    Ok(())
}
