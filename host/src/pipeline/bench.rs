//! `weft bench pipeline`: Creates per second through the whole pipeline — a sync PreValidation step
//! (validator), a sync PreOperation step (enricher) and an async PostOperation step (one system job row per
//! Create) — from 64 concurrent callers, every operation durable before its caller hears back. In the same
//! run: the floor (one SQLite transaction per bare insert, same durability) and the same pipeline with one
//! transaction per operation (`max_batch = 1`). And contention: the caller latency of the same Creates while
//! another operation's synchronous step waits 3 s on a slow webhook (a Create of a contact, whose PostOperation
//! step is the Azure-aware plug-in posting to a webhook served here that answers after 3 s).
//!
//! Owns the measurement only (timing goals live here, never in tests). It must not change pipeline behaviour.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use weft_jobs::{AsyncService, ServiceConfig};
use weft_store::system::JobFilter;
use weft_store::{PgOptions, PgStore, Query, Read, SqliteOptions, SqliteStore, Store, StoreExt};

use super::{Message, OrganizationRequest, Pipeline};
use crate::bench::percentiles;
use crate::builder;
use crate::delivery::{Delivery, DeliveryRunner};
use crate::registration::{Registration, derived_id};
use crate::sandbox::Sandbox;
use crate::sandbox::wit::types::{Attribute, Entity, Value};

/// Concurrent callers.
pub const CALLERS: usize = 64;
/// Operations through the group-commit pipeline.
pub const OPS: u64 = 20_000;
/// Operations for the two one-fsync-per-operation runs (they are two orders of magnitude slower).
pub const SLOW_OPS: u64 = 2_000;
/// How long the slow webhook of the contention run takes to answer.
pub const SLOW_HOOK: Duration = Duration::from_secs(3);

/// One run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Pipeline Creates per second, group commit.
    pub ops_per_s: f64,
    /// The same pipeline with one transaction per operation.
    pub single_txn_ops_per_s: f64,
    /// Bare inserts per second, one transaction each.
    pub floor_ops_per_s: f64,
    /// Caller-observed median latency of the group-commit pipeline, ms.
    pub p50_ms: f64,
    /// Caller-observed 99th percentile latency of the group-commit pipeline, ms.
    pub p99_ms: f64,
    /// Caller-observed 99th percentile latency of the same Creates while another operation's sync step
    /// waits [`SLOW_HOOK`] on a webhook, ms.
    pub contention_p99_ms: f64,
    /// Operations that waited on the slow webhook during the contention run.
    pub contention_slow_ops: u64,
    /// Plug-in executions per second: the sandbox's count of what ran during the group-commit run (two
    /// sync steps per Create) and then while the asynchronous service ran that run's plug-in jobs (the
    /// async enricher, one per Create), over the two runs' time.
    pub plugin_executions_per_s: f64,
    /// Plug-in jobs per second while the asynchronous service ran the group-commit run's jobs.
    pub async_jobs_per_s: f64,
}

/// The contention run's additions: a contact table whose Create posts, from a sync PostOperation step, to a
/// webhook at `hook_url`.
fn contention_config(azure_aware: &Path, hook_url: &str) -> String {
    format!(
        r#"
[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"

[[plugin]]
name = "azure-aware"
component = "{}"

[[service_endpoint]]
name = "slow hook"
contract = 8
message_format = 2
auth_type = 4
url = "{hook_url}"
auth_value = "bench"

[[step]]
name = "post contact to the slow hook"
message = "Create"
table = "contact"
stage = 40
plugin = "azure-aware"
configuration = "{}"
"#,
        azure_aware.display(),
        derived_id("serviceendpoint", "slow hook")
    )
}

pub(crate) fn config(components: &Path) -> String {
    let component = |name: &str| {
        components
            .join(format!("{name}.wasm"))
            .display()
            .to_string()
    };
    let table = crate::registration::EXAMPLE_ACCOUNT_TABLE;
    format!(
        r#"
{table}
[[plugin]]
name = "validator"
component = "{}"
[[plugin]]
name = "enricher"
component = "{}"

[[step]]
name = "validate account"
message = "Create"
table = "account"
stage = 10
plugin = "validator"

[[step]]
name = "enrich account"
message = "Create"
table = "account"
stage = 20
plugin = "enricher"

[[step]]
name = "notify account"
message = "Create"
table = "account"
stage = 40
mode = 1
plugin = "enricher"
"#,
        component("validator"),
        component("enricher")
    )
}

/// Runs `n` Creates from [`CALLERS`] threads; returns (ops/s, latencies).
pub(crate) fn drive(pipeline: &Pipeline, n: u64) -> anyhow::Result<(f64, Vec<Duration>)> {
    drive_hosts(std::slice::from_ref(pipeline), n)
}

/// [`drive`] with the callers spread over `pipelines` (hosts), caller `t` on host `t % hosts`.
fn drive_hosts(pipelines: &[Pipeline], n: u64) -> anyhow::Result<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let handles: Vec<_> = (0..CALLERS)
        .map(|t| {
            let pipeline = pipelines[t % pipelines.len()].clone();
            let count = n / CALLERS as u64 + u64::from((t as u64) < n % CALLERS as u64);
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let target = Entity {
                        logical_name: "account".into(),
                        id: None,
                        attributes: vec![
                            Attribute {
                                name: "name".into(),
                                value: Value::String(format!("Bench Account {t}-{i}")),
                            },
                            Attribute {
                                name: "emailaddress1".into(),
                                value: Value::String(format!("a{t}.{i}@example.com")),
                            },
                        ],
                        formatted_values: Vec::new(),
                        row_version: None,
                    };
                    let s = Instant::now();
                    pipeline.execute(OrganizationRequest::new(Message::Create { target }))?;
                    latencies.push(s.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n as usize);
    for h in handles {
        match h.join() {
            Ok(latencies) => all.extend(latencies?),
            Err(_) => bail!("a benchmark caller panicked"),
        }
    }
    Ok((all.len() as f64 / start.elapsed().as_secs_f64(), all))
}

fn pipeline(
    dir: &Path,
    name: &str,
    registration: &Registration,
    sandbox: &Arc<Sandbox>,
    max_batch: usize,
) -> anyhow::Result<(Arc<SqliteStore>, Pipeline)> {
    let store = Arc::new(SqliteStore::open(
        dir.join(format!("weft-bench-pipeline-{name}.db")),
        registration.schema.clone(),
        SqliteOptions {
            max_batch,
            ..Default::default()
        },
    )?);
    let pipeline = Pipeline::new(
        store.clone() as Arc<dyn Store>,
        Arc::clone(sandbox),
        registration,
    )?;
    Ok((store, pipeline))
}

/// Runs the asynchronous service (its default settings, the runner `weft up` uses) over `store` until
/// no job of `pipeline`'s waits or runs; returns how long that took. Every job must have succeeded.
fn run_jobs(store: &Arc<SqliteStore>, pipeline: &Pipeline, n: u64) -> anyhow::Result<Duration> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weft-bench-jobs")
        .enable_all()
        .build()?;
    let delivery = Delivery::new("weft.bench.local")?;
    let runner = Arc::new(DeliveryRunner::new(pipeline.clone(), delivery));
    let started = Instant::now();
    let service = runtime.block_on(async {
        AsyncService::start(
            Arc::clone(store) as Arc<dyn Store>,
            runner,
            ServiceConfig::default(),
        )
    });
    let service = service.map_err(|e| anyhow::anyhow!("starting the asynchronous service: {e}"))?;
    while crate::bench::jobs_pending(store.as_ref())? {
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    runtime.block_on(service.shutdown());
    let succeeded = crate::bench::jobs_succeeded(store.as_ref())?;
    if succeeded as u64 != n {
        bail!("expected {n} succeeded jobs, found {succeeded}");
    }
    Ok(elapsed)
}

/// Checks every operation left its row and its job.
fn check_written(store: &dyn Store, n: u64) -> anyhow::Result<()> {
    let (rows, jobs) = store.read(|r: &dyn Read| {
        Ok::<_, weft_store::StoreError>((
            r.retrieve_multiple(&Query::new("account"))?.len(),
            r.system_jobs(&JobFilter::default())?.len(),
        ))
    })?;
    if rows as u64 != n || jobs as u64 != n {
        bail!("expected {n} rows and {n} jobs, found {rows} rows and {jobs} jobs");
    }
    Ok(())
}

/// A webhook on 127.0.0.1 that answers every POST after [`SLOW_HOOK`], on a runtime of its own; counts
/// the requests that arrived. Returns the runtime (the server lives as long as it), the URL and the count.
fn slow_hook() -> anyhow::Result<(tokio::runtime::Runtime, String, Arc<AtomicU64>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("weft-bench-hook")
        .enable_all()
        .build()?;
    let arrived = Arc::new(AtomicU64::new(0));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let arrived = arrived.clone();
            move || async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(SLOW_HOOK).await;
                axum::http::StatusCode::OK
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    Ok((runtime, url, arrived))
}

/// Drives `ops` Creates of accounts while one caller after another creates a contact whose sync step
/// waits on the slow webhook; returns the accounts' latencies and how many contact Creates waited.
fn contended(
    pipeline: &Pipeline,
    arrived: &AtomicU64,
    ops: u64,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let slow = std::thread::spawn({
        let pipeline = pipeline.clone();
        let stop = stop.clone();
        move || -> anyhow::Result<u64> {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let target = Entity {
                    logical_name: "contact".into(),
                    id: None,
                    attributes: vec![Attribute {
                        name: "lastname".into(),
                        value: Value::String(format!("Slow Contact {n}")),
                    }],
                    formatted_values: Vec::new(),
                    row_version: None,
                };
                pipeline.execute(OrganizationRequest::new(Message::Create { target }))?;
                n += 1;
            }
            Ok(n)
        }
    });
    // Start measuring once the first contact's operation is waiting on the webhook.
    while arrived.load(Ordering::SeqCst) == 0 && !slow.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let driven = drive(pipeline, ops);
    stop.store(true, Ordering::SeqCst);
    let slow_ops = match slow.join() {
        Ok(n) => n?,
        Err(_) => bail!("the slow caller panicked"),
    };
    Ok((driven?.1, slow_ops))
}

/// Measures the figures in `dir`, reporting progress through `progress`.
pub fn measure(
    dir: &Path,
    ops: u64,
    slow_ops: u64,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Figures> {
    progress("building the validator and enricher plug-ins");
    let artifacts = builder::build(
        &builder::default_plugins_dir(),
        &builder::default_target_dir(),
        &[
            "validator".to_owned(),
            "enricher".to_owned(),
            "azure-aware".to_owned(),
        ],
        |_| {},
    )?;
    let components = artifacts
        .first()
        .and_then(|a| a.path.parent())
        .context("the build produced no component")?
        .to_path_buf();
    let file = dir.join("weft.toml");
    std::fs::write(&file, config(&components))?;
    let registration = Registration::load(&file)?;
    let sandbox = Arc::new(Sandbox::new(registration.limits.clone(), None)?);
    let azure_aware = artifacts
        .iter()
        .find(|a| a.package == "azure-aware")
        .context("the build produced no azure-aware component")?
        .path
        .clone();
    let (hook_runtime, hook_url, arrived) = slow_hook()?;
    let contention_file = dir.join("weft-contention.toml");
    std::fs::write(
        &contention_file,
        format!(
            "{}{}",
            config(&components),
            contention_config(&azure_aware, &hook_url)
        ),
    )?;
    let contention_registration = Registration::load(&contention_file)?;

    progress(&format!(
        "pipeline, group commit: {ops} Creates from {CALLERS} callers"
    ));
    let (store, grouped) = pipeline(dir, "grouped", &registration, &sandbox, 512)?;
    let executions = sandbox.executions();
    let started = Instant::now();
    let (ops_per_s, mut latencies) = drive(&grouped, ops)?;
    let driven = started.elapsed();
    check_written(&store, ops)?;
    let p = percentiles(&mut latencies);
    progress(&format!(
        "asynchronous service: the {ops} plug-in jobs of that run"
    ));
    let jobs_run = run_jobs(&store, &grouped, ops)?;
    let executions = sandbox.executions() - executions;
    let plugin_executions_per_s = executions as f64 / (driven + jobs_run).as_secs_f64();
    let async_jobs_per_s = ops as f64 / jobs_run.as_secs_f64();
    drop((grouped, store));

    progress(&format!(
        "pipeline, one transaction per operation: {slow_ops} Creates"
    ));
    let (store, single) = pipeline(dir, "single", &registration, &sandbox, 1)?;
    let (single_txn_ops_per_s, _) = drive(&single, slow_ops)?;
    check_written(&store, slow_ops)?;
    drop((single, store));

    progress(&format!(
        "floor: {slow_ops} bare inserts, one transaction each"
    ));
    let floor_ops_per_s = weft_store::bench::floor_inserts_per_s(dir, slow_ops, CALLERS)?;

    progress(&format!(
        "contention: {slow_ops} Creates while another operation waits {} s on a webhook",
        SLOW_HOOK.as_secs()
    ));
    let (store, contention) = pipeline(dir, "contention", &contention_registration, &sandbox, 512)?;
    if !contention.set_delivery(Delivery::new("weft.bench.local")?) {
        bail!("the contention pipeline already had a delivery");
    }
    let (mut contended_latencies, contention_slow_ops) =
        contended(&contention, &arrived, slow_ops)?;
    check_written(&store, slow_ops)?;
    let contention_p = percentiles(&mut contended_latencies);
    drop((contention, store, hook_runtime));
    Ok(Figures {
        ops_per_s,
        single_txn_ops_per_s,
        floor_ops_per_s,
        p50_ms: p.p50.as_secs_f64() * 1000.0,
        p99_ms: p.p99.as_secs_f64() * 1000.0,
        contention_p99_ms: contention_p.p99.as_secs_f64() * 1000.0,
        contention_slow_ops,
        plugin_executions_per_s,
        async_jobs_per_s,
    })
}

/// The group-commit run on a PostgreSQL database instead (`weft bench pipeline --store URL --hosts N`):
/// `ops` Creates from [`CALLERS`] callers through the same pipeline, spread over `hosts` hosts on the one
/// database (each host its own store with its connection pool, sandbox and pipeline, as `weft up` processes
/// would have; in this process so one clock measures them); returns (ops/s, p50 ms, p99 ms, plug-in
/// executions/s — the sync steps only: this run writes the async jobs but does not run them). The database
/// must hold no accounts (the run checks every operation left its row and its job).
pub fn measure_postgres(
    dir: &Path,
    url: &str,
    hosts: usize,
    ops: u64,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<(f64, f64, f64, f64)> {
    let hosts = hosts.max(1);
    progress("building the validator and enricher plug-ins");
    let artifacts = builder::build(
        &builder::default_plugins_dir(),
        &builder::default_target_dir(),
        &["validator".to_owned(), "enricher".to_owned()],
        |_| {},
    )?;
    let components = artifacts
        .first()
        .and_then(|a| a.path.parent())
        .context("the build produced no component")?
        .to_path_buf();
    let file = dir.join("weft.toml");
    std::fs::write(&file, config(&components))?;
    let registration = Registration::load(&file)?;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    let mut pipelines = Vec::new();
    let mut sandboxes = Vec::new();
    for _ in 0..hosts {
        let store: Arc<dyn Store> = Arc::new(PgStore::open(
            url,
            registration.schema.clone(),
            PgOptions {
                // A connection per caller of this host, so no operation waits for one.
                connections: CALLERS.div_ceil(hosts),
                ..PgOptions::default()
            },
        )?);
        if stores.is_empty() {
            let (accounts, jobs) = store.read(|r: &dyn Read| {
                Ok::<_, weft_store::StoreError>((
                    r.retrieve_multiple(&Query::new("account").top(1))?.len(),
                    r.system_jobs(&JobFilter {
                        limit: Some(1),
                        ..JobFilter::default()
                    })?
                    .len(),
                ))
            })?;
            if accounts + jobs > 0 {
                bail!(
                    "{}: the benchmark needs a database with no accounts and no system jobs",
                    weft_store::redact_url(url)
                );
            }
        }
        let sandbox = Arc::new(Sandbox::new(registration.limits.clone(), None)?);
        pipelines.push(Pipeline::new(
            Arc::clone(&store),
            Arc::clone(&sandbox),
            &registration,
        )?);
        sandboxes.push(sandbox);
        stores.push(store);
    }
    progress(&format!(
        "pipeline on PostgreSQL: {ops} Creates from {CALLERS} callers on {hosts} host(s)"
    ));
    let executions = || sandboxes.iter().map(|s| s.executions()).sum::<u64>();
    let before = executions();
    let started = Instant::now();
    let (ops_per_s, mut latencies) = drive_hosts(&pipelines, ops)?;
    let plugin_executions_per_s = (executions() - before) as f64 / started.elapsed().as_secs_f64();
    check_written(stores[0].as_ref(), ops)?;
    let p = percentiles(&mut latencies);
    Ok((
        ops_per_s,
        p.p50.as_secs_f64() * 1000.0,
        p.p99.as_secs_f64() * 1000.0,
        plugin_executions_per_s,
    ))
}

/// `weft bench pipeline --store URL [--hosts N] [--json]`: the PostgreSQL figures.
pub fn run_postgres(url: &str, hosts: usize, json: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (ops_per_s, p50, p99, plugin_executions_per_s) =
        measure_postgres(dir.path(), url, hosts, OPS, |line| eprintln!("{line}"))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "store": "postgres",
                "hosts": hosts,
                "ops_per_s": ops_per_s.round(),
                "p50_ms": (p50 * 100.0).round() / 100.0,
                "p99_ms": (p99 * 100.0).round() / 100.0,
                "callers": CALLERS,
                "plugin_executions_per_s": plugin_executions_per_s.round(),
            })
        );
    } else {
        println!(
            "pipeline on PostgreSQL, {hosts} host(s) (2 sync wasm steps + 1 async job): {ops_per_s:.0} ops/s"
        );
        println!("  caller latency p50 {p50:.2} ms, p99 {p99:.2} ms");
        println!(
            "  plug-in executions {plugin_executions_per_s:.0}/s (the sync steps; the async jobs are written, not run)"
        );
        println!("goal: >= 3000 ops/s on one host; N hosts >= 0.9x one host");
    }
    Ok(())
}

/// `weft bench pipeline [--json]`: measures in a temporary directory and prints the figures.
pub fn run(json: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = measure(dir.path(), OPS, SLOW_OPS, |line| eprintln!("{line}"))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ops_per_s": f.ops_per_s.round(),
                "single_txn_ops_per_s": f.single_txn_ops_per_s.round(),
                "floor_ops_per_s": f.floor_ops_per_s.round(),
                "p50_ms": (f.p50_ms * 100.0).round() / 100.0,
                "p99_ms": (f.p99_ms * 100.0).round() / 100.0,
                "callers": CALLERS,
                "contention_p99_ms": (f.contention_p99_ms * 100.0).round() / 100.0,
                "plugin_executions_per_s": f.plugin_executions_per_s.round(),
                "async_jobs_per_s": f.async_jobs_per_s.round(),
            })
        );
    } else {
        println!(
            "pipeline (2 sync wasm steps + 1 async job, group commit): {:.0} ops/s",
            f.ops_per_s
        );
        println!(
            "  caller latency p50 {:.2} ms, p99 {:.2} ms",
            f.p50_ms, f.p99_ms
        );
        println!(
            "same pipeline, one transaction per operation: {:.0} ops/s",
            f.single_txn_ops_per_s
        );
        println!(
            "floor, one transaction per bare insert: {:.0} ops/s",
            f.floor_ops_per_s
        );
        println!("goal: >= 5000 ops/s and not below the one-transaction-per-operation figure");
        println!(
            "contention: p99 {:.2} ms of Creates while another operation waited {} s on a webhook ({} such waits)",
            f.contention_p99_ms,
            SLOW_HOOK.as_secs(),
            f.contention_slow_ops
        );
        println!("goal: contention p99 <= 100 ms");
        println!(
            "plug-in executions: {:.0}/s (the 2 sync steps of each Create, then its async plug-in job: \
             {:.0} jobs/s), over both runs",
            f.plugin_executions_per_s, f.async_jobs_per_s
        );
        println!("goal: >= 16700 plug-in executions/s (a million a minute)");
    }
    Ok(())
}
