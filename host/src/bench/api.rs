//! `weft bench api`: durable Creates per second over the Web API (64 HTTP/1.1 clients on keep-alive
//! connections, loopback) next to the same Creates called in-process in the same run (validator at 10,
//! enricher at 20, one async job per Create: `weft bench pipeline`'s set-up), each phase on a fresh store
//! of its own, and the latency of reading a 50-row page with one `$expand`.
//!
//! Owns the measurement only (timing goals live here, never in tests). It must not change API behaviour.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
    /// Creates per second in-process (same set-up, a fresh store of its own).
    pub in_process_ops_per_s: f64,
    /// CPU time the whole process spent per Create over HTTP, server and clients, µs (Linux only): unlike
    /// the rates, it hardly moves with the machine's load, so it says what the HTTP path costs.
    pub http_cpu_us: Option<f64>,
    /// The same per in-process Create, µs.
    pub in_process_cpu_us: Option<f64>,
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

/// `n` Creates from [`CLIENTS`] HTTP/1.1 connections to `addr`, one client each, kept alive; (ops/s,
/// latencies, CPU µs per Create).
///
/// The clients share the machine's cores with the server, so each is as lean as a real client can be: a
/// bare hyper connection (no pool, no redirect or cookie handling), the connection opened and every JSON
/// body encoded before the clock starts. Each request is still a complete one, parsed and answered by the
/// server as any other: request line, `Host`, `Content-Type`, `Content-Length` and the body, and a 204
/// with `OData-EntityId` back.
async fn http_creates(
    addr: SocketAddr,
    n: u64,
) -> anyhow::Result<(f64, Vec<Duration>, Option<f64>)> {
    let host = HeaderValue::from_str(&addr.to_string())?;
    let uri: Uri = format!("{}/accounts", crate::api::PREFIX).parse()?;
    let mut clients = Vec::with_capacity(CLIENTS);
    for t in 0..CLIENTS {
        let count = n / CLIENTS as u64 + u64::from((t as u64) < n % CLIENTS as u64);
        let bodies: Vec<Bytes> = (0..count)
            .map(|i| {
                Bytes::from(format!(
                    r#"{{"name":"Http Account {t}-{i}","emailaddress1":"h{t}.{i}@example.com"}}"#
                ))
            })
            .collect();
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection; it ends when the sender is dropped.
        tokio::spawn(connection);
        clients.push((sender, bodies));
    }
    let cpu = process_cpu();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for (mut sender, bodies) in clients {
        let (host, uri) = (host.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len());
            for body in bodies {
                let request = hyper::Request::post(uri.clone())
                    .header(header::HOST, host.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))?;
                let s = Instant::now();
                sender.ready().await?;
                let r = sender.send_request(request).await?;
                if r.status() != StatusCode::NO_CONTENT
                    || !r.headers().contains_key("OData-EntityId")
                {
                    let status = r.status();
                    let body = r.into_body().collect().await?.to_bytes();
                    bail!(
                        "a Create answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
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
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    Ok((rate, all, per_op_us(cpu, n)))
}

/// The CPU time (user and system) this process has used, all its threads together, the exited ones
/// included: fields 14 and 15 of `/proc/self/stat`, in clock ticks of 1/100 s (Linux's `USER_HZ`, fixed
/// by its ABI for this file). None where there is no such file.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU µs per operation since `before` ([`process_cpu`]) for `ops` operations.
fn per_op_us(before: Option<Duration>, ops: u64) -> Option<f64> {
    let used = process_cpu()?.checked_sub(before?)?;
    Some(used.as_secs_f64() * 1e6 / ops.max(1) as f64)
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
    // Each phase on a fresh store of its own, both opened (plug-ins compiled) before either is timed: the
    // Creates over HTTP must not pay for the rows the in-process ones left (a bigger B-tree and WAL), nor
    // the in-process ones gain from going second.
    let open = |name: &str| {
        let (file, data) = (file.clone(), dir.join(name));
        tokio::task::spawn_blocking(move || Runtime::open(&file, &data))
    };
    let in_process_runtime = open("in-process").await??;
    let http_runtime = Arc::new(open("http").await??);
    progress(&format!("{ops} Creates in-process from {CLIENTS} callers"));
    let pipeline = in_process_runtime.pipeline.clone();
    let cpu = process_cpu();
    let (in_process, _) =
        tokio::task::spawn_blocking(move || pipeline_bench::drive(&pipeline, ops)).await??;
    let in_process_cpu_us = per_op_us(cpu, ops);
    drop(in_process_runtime);
    let bind: SocketAddr = "127.0.0.1:0".parse()?;
    let (addr, server) = crate::api::serve(http_runtime, bind, None).await?;
    progress(&format!("{ops} Creates over HTTP from {CLIENTS} clients"));
    let (http, mut latencies, http_cpu_us) = http_creates(addr, ops).await?;
    progress(&format!(
        "{PAGE_READS} reads of a {PAGE_ROWS}-row page with one $expand"
    ));
    let base = format!("http://{addr}{}", crate::api::PREFIX);
    let mut pages = page_reads(&base).await?;
    server.shutdown().await?;
    let create = percentiles(&mut latencies);
    let page = percentiles(&mut pages);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Figures {
        http_ops_per_s: http,
        in_process_ops_per_s: in_process,
        http_cpu_us,
        in_process_cpu_us,
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
                "http_cpu_us_per_create": f.http_cpu_us.map(f64::round),
                "in_process_cpu_us_per_create": f.in_process_cpu_us.map(f64::round),
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
            "the same Creates in-process (same set-up, a fresh store): {:.0}/s — HTTP is {ratio:.2}x of it",
            f.in_process_ops_per_s
        );
        println!("goal: HTTP >= 0.7x in-process");
        if let (Some(http), Some(in_process)) = (f.http_cpu_us, f.in_process_cpu_us) {
            println!(
                "CPU per Create (whole process): {http:.0} µs over HTTP, {in_process:.0} µs in-process"
            );
        }
        println!(
            "{PAGE_ROWS}-row page with one $expand: p50 {:.2} ms, p99 {:.2} ms",
            f.page_p50_ms, f.page_p99_ms
        );
        println!("goal: page p99 <= 10 ms");
    }
    Ok(())
}
