//! `weft bench api`: durable Creates per second over the Web API (64 HTTP clients on keep-alive
//! connections, loopback) next to the same Creates called in-process on the same runtime in the same run
//! (validator at 10, enricher at 20, one async job per Create: `weft bench pipeline`'s set-up), and the
//! latency of reading a 50-row page with one `$expand`.
//!
//! Owns the measurement only (timing goals live here, never in tests). It must not change API behaviour.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bench::percentiles;
use crate::builder;
use crate::pipeline::bench as pipeline_bench;
use crate::runtime::Runtime;

/// HTTP clients, as the pipeline bench's callers.
pub const CLIENTS: usize = pipeline_bench::CALLERS;
/// Creates per run (in-process, then over HTTP).
pub const OPS: u64 = 5_000;
/// Rows of the page read.
pub const PAGE_ROWS: usize = 50;
/// Page reads timed (after [`PAGE_WARMUP`] untimed ones).
pub const PAGE_READS: usize = 500;
const PAGE_WARMUP: usize = 20;

/// One run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Creates per second over HTTP.
    pub http_ops_per_s: f64,
    /// Creates per second in-process on the same runtime.
    pub in_process_ops_per_s: f64,
    /// Client-observed latency of an HTTP Create, ms.
    pub http_p50_ms: f64,
    /// Its 99th percentile, ms.
    pub http_p99_ms: f64,
    /// Latency of `GET contacts?$top=50&$expand=parentaccountid(...)`, ms.
    pub page_p50_ms: f64,
    /// Its 99th percentile, ms.
    pub page_p99_ms: f64,
}

/// The pipeline bench's tables and steps, plus contacts whose lookup the page expands.
fn config(components: &Path) -> String {
    format!(
        r#"{}
[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
  [[table.attribute]]
  logical_name = "parentaccountid"
  type = "Lookup"
  targets = ["account"]
"#,
        pipeline_bench::config(components)
    )
}

/// `n` Creates from [`CLIENTS`] concurrent HTTP clients; (ops/s, latencies).
async fn http_creates(base: &str, n: u64) -> anyhow::Result<(f64, Vec<Duration>)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for t in 0..CLIENTS {
        let count = n / CLIENTS as u64 + u64::from((t as u64) < n % CLIENTS as u64);
        let (client, url) = (client.clone(), format!("{base}/accounts"));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count as usize);
            for i in 0..count {
                let body = format!(
                    r#"{{"name":"Http Account {t}-{i}","emailaddress1":"h{t}.{i}@example.com"}}"#
                );
                let s = Instant::now();
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if r.status() != reqwest::StatusCode::NO_CONTENT {
                    bail!("a Create answered {}: {}", r.status(), r.text().await?);
                }
                latencies.push(s.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::with_capacity(n as usize);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len() as f64 / start.elapsed().as_secs_f64(), all))
}

/// Creates [`PAGE_ROWS`] contacts, each pointing at its own account, then times the page read.
async fn page_reads(base: &str) -> anyhow::Result<Vec<Duration>> {
    let client = reqwest::Client::new();
    for i in 0..PAGE_ROWS {
        let r = client
            .post(format!("{base}/accounts"))
            .header("Prefer", "return=representation")
            .header("Content-Type", "application/json")
            .body(format!(
                r#"{{"name":"Parent {i}","emailaddress1":"p{i}@example.com"}}"#
            ))
            .send()
            .await?;
        let account: serde_json::Value = r.json().await?;
        let id = account["accountid"]
            .as_str()
            .context("a Create with return=representation gave no accountid")?;
        let r = client
            .post(format!("{base}/contacts"))
            .header("Content-Type", "application/json")
            .body(format!(
                r#"{{"lastname":"Child {i}","parentaccountid@odata.bind":"/accounts({id})"}}"#
            ))
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::NO_CONTENT {
            bail!("a contact Create answered {}", r.status());
        }
    }
    let url = format!(
        "{base}/contacts?$select=lastname&$top={PAGE_ROWS}&$expand=parentaccountid($select=name,emailaddress1)"
    );
    let mut samples = Vec::with_capacity(PAGE_READS);
    for i in 0..PAGE_WARMUP + PAGE_READS {
        let s = Instant::now();
        let r = client.get(&url).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        if status != reqwest::StatusCode::OK {
            bail!("the page read answered {status}");
        }
        if i >= PAGE_WARMUP {
            samples.push(s.elapsed());
        }
        if i == 0 {
            let page: serde_json::Value = serde_json::from_slice(&body)?;
            let rows = page["value"].as_array().map_or(0, Vec::len);
            if rows != PAGE_ROWS || page["value"][0]["parentaccountid"]["name"].is_null() {
                bail!("the page has {rows} rows, or no expanded account: {page}");
            }
        }
    }
    Ok(samples)
}

/// Measures in `dir`.
pub async fn measure(
    dir: &Path,
    ops: u64,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Figures> {
    progress("building the validator and enricher plug-ins");
    let artifacts = tokio::task::spawn_blocking(|| {
        builder::build(
            &builder::default_plugins_dir(),
            &builder::default_target_dir(),
            &["validator".to_owned(), "enricher".to_owned()],
            |_| {},
        )
    })
    .await??;
    let components = artifacts
        .first()
        .and_then(|a| a.path.parent())
        .context("the build produced no component")?
        .to_path_buf();
    let file = dir.join("weft.toml");
    std::fs::write(&file, config(&components))?;
    let data = dir.join("data");
    let runtime = {
        let (file, data) = (file.clone(), data.clone());
        Arc::new(tokio::task::spawn_blocking(move || Runtime::open(&file, &data)).await??)
    };
    progress(&format!("{ops} Creates in-process from {CLIENTS} callers"));
    let pipeline = runtime.pipeline.clone();
    let (in_process, _) =
        tokio::task::spawn_blocking(move || pipeline_bench::drive(&pipeline, ops)).await??;
    let bind: SocketAddr = "127.0.0.1:0".parse()?;
    let (addr, server) = crate::api::serve(Arc::clone(&runtime), bind, None).await?;
    let base = format!("http://{addr}/api/data/v9.2");
    progress(&format!("{ops} Creates over HTTP from {CLIENTS} clients"));
    let (http, mut latencies) = http_creates(&base, ops).await?;
    progress(&format!(
        "{PAGE_READS} reads of a {PAGE_ROWS}-row page with one $expand"
    ));
    let mut pages = page_reads(&base).await?;
    server.shutdown().await?;
    let create = percentiles(&mut latencies);
    let page = percentiles(&mut pages);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Figures {
        http_ops_per_s: http,
        in_process_ops_per_s: in_process,
        http_p50_ms: ms(create.p50),
        http_p99_ms: ms(create.p99),
        page_p50_ms: ms(page.p50),
        page_p99_ms: ms(page.p99),
    })
}

/// `weft bench api [--json] [--ops N]`.
pub async fn run(json: bool, ops: Option<u64>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ops = ops.unwrap_or(OPS).max(CLIENTS as u64);
    let f = measure(dir.path(), ops, |line| eprintln!("{line}")).await?;
    let ratio = f.http_ops_per_s / f.in_process_ops_per_s.max(f64::MIN_POSITIVE);
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "http_creates_per_s": f.http_ops_per_s.round(),
                "in_process_creates_per_s": f.in_process_ops_per_s.round(),
                "http_to_in_process": round2(ratio),
                "http_create_p50_ms": round2(f.http_p50_ms),
                "http_create_p99_ms": round2(f.http_p99_ms),
                "page_p50_ms": round2(f.page_p50_ms),
                "page_p99_ms": round2(f.page_p99_ms),
                "clients": CLIENTS,
                "ops": ops,
            })
        );
    } else {
        println!(
            "Creates over HTTP ({CLIENTS} clients, loopback, client and server on this machine): {:.0}/s \
             (p50 {:.2} ms, p99 {:.2} ms)",
            f.http_ops_per_s, f.http_p50_ms, f.http_p99_ms
        );
        println!(
            "the same Creates in-process, same runtime: {:.0}/s — HTTP is {ratio:.2}x of it",
            f.in_process_ops_per_s
        );
        println!("goal: HTTP >= 0.7x in-process");
        println!(
            "{PAGE_ROWS}-row page with one $expand: p50 {:.2} ms, p99 {:.2} ms",
            f.page_p50_ms, f.page_p99_ms
        );
        println!("goal: page p99 <= 10 ms");
    }
    Ok(())
}
