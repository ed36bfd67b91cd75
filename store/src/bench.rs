//! Store benchmarks for `weft bench pipeline`: the durable-insert floor and group-commit Create throughput.
//!
//! Owns the measurement loops only (timing goals live here, never in tests). Both use the same durability:
//! WAL with `synchronous=FULL`, every caller answered after the fsync that made its row durable.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::schema::{AttributeDef, AttributeKind, Schema, TableDef};
use crate::{Attributes, Result, SqliteOptions, SqliteStore, StoreError, StoreExt, Value};

/// Throughput and caller-observed latency of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// Operations completed.
    pub ops: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// ops / elapsed.
    pub ops_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

fn summarize(mut latencies: Vec<Duration>, elapsed: Duration) -> Throughput {
    latencies.sort();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let ops = latencies.len() as u64;
    Throughput {
        ops,
        elapsed,
        ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// Runs `per_thread` calls of `op` on each of `concurrency` threads; collects every call's latency.
fn run_concurrent<F>(n: u64, concurrency: usize, op: F) -> Result<Throughput>
where
    F: Fn(usize, u64) -> Result<()> + Send + Sync + 'static,
{
    let concurrency = concurrency.max(1);
    let op = Arc::new(op);
    let start = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|t| {
            let op = op.clone();
            let count = n / concurrency as u64 + u64::from((t as u64) < n % concurrency as u64);
            std::thread::spawn(move || -> Result<Vec<Duration>> {
                let mut lat = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let s = Instant::now();
                    op(t, i)?;
                    lat.push(s.elapsed());
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n as usize);
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| StoreError::WorkPanicked("benchmark thread".into()))??,
        );
    }
    Ok(summarize(all, start.elapsed()))
}

/// The floor: `n` bare inserts, each its own SQLite transaction (so its own fsync), from `concurrency` threads
/// with one connection each, WAL + `synchronous=FULL`. Returns inserts per second.
pub fn floor_inserts_per_s(dir: &Path, n: u64, concurrency: usize) -> Result<f64> {
    Ok(floor_inserts(dir, n, concurrency)?.ops_per_s)
}

/// [`floor_inserts_per_s`] with latencies.
pub fn floor_inserts(dir: &Path, n: u64, concurrency: usize) -> Result<Throughput> {
    let path = dir.join("weft-bench-floor.db");
    let setup = Connection::open(&path)?;
    setup.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS benchrecord (benchrecordid TEXT NOT NULL PRIMARY KEY, name TEXT, amount TEXT,
            count INTEGER, createdon INTEGER) WITHOUT ROWID;",
    )?;
    let conns: Vec<std::sync::Mutex<Connection>> = (0..concurrency.max(1))
        .map(|_| {
            let c = Connection::open(&path)?;
            c.busy_timeout(Duration::from_secs(60))?;
            c.execute_batch("PRAGMA synchronous = FULL;")?;
            Ok(std::sync::Mutex::new(c))
        })
        .collect::<Result<_>>()?;
    run_concurrent(n, concurrency, move |t, i| {
        let c = conns[t].lock().map_err(|_| StoreError::Closed)?;
        c.prepare_cached("INSERT INTO benchrecord VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute((
                uuid::Uuid::new_v4().to_string(),
                format!("floor {t}-{i}"),
                "12.5000",
                i as i64,
                0i64,
            ))?;
        Ok(())
    })
}

/// The table the group-commit benchmark creates rows in.
pub fn bench_schema() -> Schema {
    let attrs = vec![
        AttributeDef::new("name", AttributeKind::String { max_length: 100 }),
        AttributeDef::new("amount", AttributeKind::Money),
        AttributeDef::new(
            "count",
            AttributeKind::Integer {
                min_value: 0,
                max_value: i32::MAX,
            },
        ),
    ];
    // The table definition is a constant; a failure here is a bug in this function.
    Schema::new(
        vec![TableDef::new(
            "benchrecord",
            "benchrecords",
            "benchrecordid",
            "name",
            attrs,
        )],
        Vec::new(),
    )
    .unwrap_or_default()
}

/// `n` Creates through [`SqliteStore`] from `concurrency` callers, each answered after its commit.
/// `max_batch` = 1 gives one transaction per operation; larger values let the writer group commits.
pub fn group_commit_creates(
    dir: &Path,
    n: u64,
    concurrency: usize,
    max_batch: usize,
) -> Result<Throughput> {
    let path = dir.join(format!("weft-bench-store-{max_batch}.db"));
    let store = Arc::new(SqliteStore::open(
        &path,
        bench_schema(),
        SqliteOptions {
            max_batch,
            ..Default::default()
        },
    )?);
    run_concurrent(n, concurrency, move |t, i| {
        let attrs = Attributes::from([
            ("name".to_string(), Value::String(format!("bench {t}-{i}"))),
            ("amount".to_string(), Value::Money("12.5".into())),
            (
                "count".to_string(),
                Value::Integer(i32::try_from(i).unwrap_or(i32::MAX)),
            ),
        ]);
        store
            .transact(move |tx| tx.create("benchrecord", None, attrs))
            .map(|_| ())
    })
}
