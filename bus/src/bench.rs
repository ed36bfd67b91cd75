//! `weft bench bus`: durable 1 KB send and receive-and-delete throughput over keep-alive HTTP, with the floor
//! of a bare echo route on the same server stack in the same run.
//!
//! Owns the load generator only; it starts a real bus (SQLite, fsync) on 127.0.0.1:0 in a temporary directory.
//! Other protocols served over the same bus add their figures to the same run through [`run_with`]
//! (weft-amqp: AMQP sends and receives next to REST's).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;

use crate::config::{BusConfig, EventHubConfig, QueueConfig};
use crate::sas::{self, SasPolicy};

/// Messages per phase.
pub const MESSAGES: u64 = 20_000;
/// Concurrent client requests (each keeps its own keep-alive connection in the pool).
pub const CONCURRENCY: usize = 64;
/// Body size.
pub const BODY_BYTES: usize = 1024;
/// Name of the SAS policy of the benchmark's bus.
pub const KEY_NAME: &str = "bench";
/// The queue the phases use (empty when an extra phase starts).
pub const QUEUE: &str = "bench";
/// An Event Hub (4 partitions) for extra phases that send events.
pub const HUB: &str = "bench-hub";

/// Runs the benchmark and prints one JSON object (`--json`) or a human summary.
pub async fn run(json: bool) -> anyhow::Result<()> {
    run_with(json, |_, _| async { Ok(vec![]) }).await
}

/// Figures an extra phase reports: (JSON key, per-second value, human label).
pub type Figures = Vec<(&'static str, f64, &'static str)>;

/// Runs the benchmark, then `extra` on the same bus (given the bus and the key of the [`KEY_NAME`] policy),
/// and prints REST's and the extra figures together.
pub async fn run_with<F, Fut>(json: bool, extra: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<crate::server::Bus>, String) -> Fut,
    Fut: Future<Output = anyhow::Result<Figures>>,
{
    let dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let key = uuid::Uuid::new_v4().simple().to_string();
    let config = BusConfig {
        bind: "127.0.0.1:0".parse()?,
        data: dir.path().to_path_buf(),
        queues: vec![QueueConfig::new(QUEUE)],
        event_hubs: vec![EventHubConfig::new(HUB, 4)],
        sas_policies: vec![SasPolicy::full(KEY_NAME, key.clone())],
        echo_route: true,
        ..BusConfig::default()
    };
    let bus = crate::start(config).await?;
    let base = format!("http://{}", bus.local_addr());
    let token = sas::generate_token(
        &format!("{base}/bench"),
        KEY_NAME,
        &key,
        (crate::props::now_ms() / 1000) as u64 + 3600,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let body = bytes::Bytes::from(vec![b'x'; BODY_BYTES]);

    let (echo_url, send_url) = (
        format!("{base}/$weft/echo"),
        format!("{base}/bench/messages"),
    );
    let recv_url = format!("{base}/bench/messages/head?timeout=5");
    let b = body.clone();
    let floor = phase(
        &client,
        MESSAGES,
        move |c, _| c.post(&echo_url).body(b.clone()),
        200,
    )
    .await?;
    let t = token.clone();
    let sends = phase(
        &client,
        MESSAGES,
        move |c, i| {
            c.post(&send_url)
                .header("Authorization", &t)
                .header("Content-Type", "application/octet-stream")
                .header("BrokerProperties", format!("{{\"MessageId\":\"m{i}\"}}"))
                .body(body.clone())
        },
        201,
    )
    .await?;
    let receives = phase(
        &client,
        MESSAGES,
        move |c, _| {
            c.delete(&recv_url)
                .header("Authorization", &token)
                .header("Content-Length", "0")
        },
        200,
    )
    .await?;
    let extra = extra(bus.bus(), key).await;
    bus.shutdown().await?;
    // REST's figures stand on their own: a failed extra phase is reported after them, not instead of them.
    let (extra, failed) = match extra {
        Ok(figures) => (figures, None),
        Err(e) => (Vec::new(), Some(e)),
    };

    let mut out = serde_json::json!({
        "messages": MESSAGES,
        "message_bytes": BODY_BYTES,
        "concurrency": CONCURRENCY,
        "durable": "sqlite WAL synchronous=FULL, group commit",
        "sends_per_s": sends.round(),
        "receives_per_s": receives.round(),
        "floor_per_s": floor.round(),
    });
    for (k, v, _) in &extra {
        out[*k] = v.round().into();
    }
    if json {
        println!("{out}");
    } else {
        println!(
            "weft bus: {MESSAGES} x {BODY_BYTES} B, {CONCURRENCY} concurrent keep-alive connections\n  \
             sends:    {sends:>8.0} /s (durable)\n  receives: {receives:>8.0} /s (receive-and-delete, durable)\n  \
             floor:    {floor:>8.0} /s (bare echo route, same server)"
        );
        for (_, v, label) in &extra {
            println!("  {label}: {v:>8.0} /s");
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Runs `n` requests with CONCURRENCY workers; every answer must have `want` status. Returns requests/s.
async fn phase<F>(client: &reqwest::Client, n: u64, make: F, want: u16) -> anyhow::Result<f64>
where
    F: Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync + 'static + Clone,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next, make) = (client.clone(), next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let r = make(&client, i).send().await?;
                let status = r.status().as_u16();
                let _ = r.bytes().await?;
                anyhow::ensure!(
                    status == want,
                    "request {i} answered {status}, expected {want}"
                );
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
