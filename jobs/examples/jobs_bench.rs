//! Throughput of the asynchronous service alone: jobs claimed, run by a runner that does nothing, and
//! recorded (attempt row + Succeeded) durably, per second.
//!
//! `cargo run -p weft-jobs --release --example jobs_bench -- [jobs] [workers] [batch] [dir]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;
use weft_jobs::{AsyncService, JobOutcome, JobRunner, ServiceConfig};
use weft_store::system::{JobFilter, JobStatus, NewSystemJob, SystemJob};
use weft_store::{Schema, SqliteOptions, SqliteStore, StoreExt};

struct Noop(AtomicUsize);

impl JobRunner for Noop {
    async fn run(&self, _job: &SystemJob) -> JobOutcome {
        self.0.fetch_add(1, Ordering::Relaxed);
        JobOutcome::succeeded()
    }
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs: usize = arg(1, 20_000);
    let workers: usize = arg(2, 2);
    let batch: u32 = arg(3, 64);
    let base: String = arg(4, std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(base)?;
    let store = Arc::new(SqliteStore::open(
        dir.path().join("bench.db"),
        Schema::new(Vec::new(), Vec::new())?,
        SqliteOptions::default(),
    )?);
    let context = vec![b'x'; 1024];
    for chunk in 0..jobs.div_ceil(1000) {
        let n = (jobs - chunk * 1000).min(1000);
        let data = context.clone();
        store
            .transact_async(move |tx| {
                for _ in 0..n {
                    tx.insert_system_job(NewSystemJob {
                        id: None,
                        name: "bench".into(),
                        operation_type: 1,
                        message_name: "Create".into(),
                        primary_entity_type: Some("account".into()),
                        regarding: None,
                        owning_extension_id: None,
                        correlation_id: Uuid::new_v4(),
                        depth: 1,
                        data: data.clone(),
                        data_content_type: "application/json".into(),
                        postpone_until: None,
                        created_on: None,
                    })?;
                }
                Ok::<_, weft_store::StoreError>(())
            })
            .await?;
    }
    let runner = Arc::new(Noop(AtomicUsize::new(0)));
    let config = ServiceConfig {
        workers,
        batch_size: batch,
        ..ServiceConfig::default()
    };
    let t0 = Instant::now();
    let svc =
        AsyncService::start(store.clone(), runner.clone(), config).map_err(anyhow::Error::msg)?;
    while runner.0.load(Ordering::Relaxed) < jobs {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    svc.shutdown().await; // waits for the last records
    let elapsed = t0.elapsed();
    let succeeded = store.read(|r| {
        r.system_jobs(&JobFilter {
            status: Some(JobStatus::Succeeded),
            ..JobFilter::default()
        })
    })?;
    anyhow::ensure!(
        succeeded.len() == jobs,
        "{} of {jobs} succeeded",
        succeeded.len()
    );
    println!(
        "{jobs} jobs, {workers} workers, batch {batch}: {:.2} s, {:.0} jobs/s (claim + run + durable record)",
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
