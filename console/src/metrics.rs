//! Prometheus metrics at `/metrics`: the process's `metrics` recorder (installed once) and the gauges
//! read from the store when scraped.
//!
//! Owns the recorder, the histogram buckets, the metric names' documentation and the scrape-time gauges.
//! Counters and histograms are recorded where things happen, one line each, with the `metrics` facade:
//!
//! | metric | type | labels | recorded by |
//! |---|---|---|---|
//! | `weft_operations_total` | counter | `message`, `table`, `outcome` (`succeeded`/`failed`) | the pipeline, per top-level operation |
//! | `weft_plugin_duration_seconds` | histogram | `plugin`, `step` (step id), `outcome` | every plug-in execution (trace-log row) |
//! | `weft_sandbox_instances_in_use` | gauge | – | the sandbox, while a plug-in instance lives |
//! | `weft_job_attempts_total` | counter | `outcome` (`succeeded`, `transient`, `permanent`, …) | the asynchronous service |
//! | `weft_delivery_latency_seconds` | histogram | `outcome` | the asynchronous service (the post's latency) |
//! | `weft_system_jobs` | gauge | `status` (Dataverse's status reason) | this module, at scrape |
//! | `weft_system_job_oldest_age_seconds` | gauge | `status` | this module, at scrape |
//! | `weft_bus_messages` | gauge | `entity` (queue or `topic/subscriptions/sub`), `state` (`active`, `scheduled`, `deadletter`) | this module, at scrape (embedded bus only) |
//! | `weft_bus_event_hub_events` | gauge | `entity` (Event Hub) | this module, at scrape (embedded bus only) |
//!
//! Labels hold names, ids and outcomes only, never a secret, a URL or a message text. Job gauges cover the
//! statuses still to run or running (Waiting For Resources, Waiting, In Progress, Pausing, Canceling), each
//! counted by one aggregate query (count and oldest creation time: no job is read, however large the
//! backlog); completed jobs are counted by `weft_job_attempts_total`. Bus gauges have bounded cardinality:
//! entity names are the bus's entities (its configuration's, and those created through the management API,
//! which needs the Manage right), four states each, at most [`MAX_BUS_ENTITIES`] entities exported. Counts are the broker's in-memory index, so a scrape reads no message.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use weft_store::system::JobStatus;

use crate::Console;

/// The most bus entities (queues, subscriptions, Event Hubs) whose depths a scrape exports.
pub const MAX_BUS_ENTITIES: usize = 1_000;

/// Latency buckets, seconds: from a loopback post (~1 ms) to the 2-minute operation limit.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

/// Statuses the scrape counts (not yet completed).
const OPEN: [JobStatus; 5] = [
    JobStatus::WaitingForResources,
    JobStatus::Waiting,
    JobStatus::InProgress,
    JobStatus::Pausing,
    JobStatus::Canceling,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder (once; later calls return the same
/// handle). Before it, recordings go nowhere, so `weft up` installs it before serving.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                // Cannot fail: the bucket list is not empty.
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // An embedding program may have installed its own recorder: then everything goes there and
            // this handle renders nothing; say so once.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows only what it records"
                );
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "weft_operations_total",
        "Top-level operations through the pipeline, by outcome."
    );
    metrics::describe_histogram!(
        "weft_plugin_duration_seconds",
        metrics::Unit::Seconds,
        "Plug-in executions' durations, by plug-in and step."
    );
    metrics::describe_gauge!(
        "weft_sandbox_instances_in_use",
        "Plug-in instances alive in the sandbox now."
    );
    metrics::describe_counter!(
        "weft_job_attempts_total",
        "System job attempts, by outcome."
    );
    metrics::describe_histogram!(
        "weft_delivery_latency_seconds",
        metrics::Unit::Seconds,
        "Latency of system job attempts' posts to service endpoints."
    );
    metrics::describe_gauge!(
        "weft_system_jobs",
        "System jobs not yet completed, by status reason (capped)."
    );
    metrics::describe_gauge!(
        "weft_bus_messages",
        "Messages in the embedded bus's queues and subscriptions, by entity and state (active includes locked)."
    );
    metrics::describe_gauge!(
        "weft_bus_event_hub_events",
        "Events retained in the embedded bus's Event Hubs, all partitions."
    );
    metrics::describe_gauge!(
        "weft_system_job_oldest_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest system job of each open status."
    );
}

/// Label value of a status: Dataverse's status reason, snake_case.
fn status_label(s: JobStatus) -> &'static str {
    match s {
        JobStatus::WaitingForResources => "waiting_for_resources",
        JobStatus::Waiting => "waiting",
        JobStatus::InProgress => "in_progress",
        JobStatus::Pausing => "pausing",
        JobStatus::Canceling => "canceling",
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
        JobStatus::Canceled => "canceled",
    }
}

/// `GET /metrics`: sets the job gauges from the store, then renders everything in Prometheus' text format.
pub(crate) async fn scrape(State(console): State<Console>) -> Response {
    let counted = crate::read(&console, |r| {
        let mut out = Vec::new();
        for status in OPEN {
            let (count, oldest) = r.system_job_count(status)?;
            out.push((status, count, oldest));
        }
        Ok(out)
    })
    .await;
    let counted = match counted {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = (weft_jobs::system_clock())();
    for (status, count, oldest) in counted {
        let label = status_label(status);
        metrics::gauge!("weft_system_jobs", "status" => label).set(count as f64);
        let age = oldest.map_or(0.0, |c| (now - c).max(0) as f64 / 1000.0);
        metrics::gauge!("weft_system_job_oldest_age_seconds", "status" => label).set(age);
    }
    if let Some(bus) = console.host.bus() {
        let (queues, topics) = bus.depths();
        let subscriptions = topics.iter().flat_map(|t| &t.subscriptions);
        for e in queues.iter().chain(subscriptions).take(MAX_BUS_ENTITIES) {
            for (state, n) in [
                ("active", e.depth.active),
                ("deferred", e.depth.deferred),
                ("scheduled", e.depth.scheduled),
                ("deadletter", e.dead_letter),
            ] {
                metrics::gauge!("weft_bus_messages", "entity" => e.path.clone(), "state" => state)
                    .set(n as f64);
            }
        }
        match bus.hub_depths().await {
            Ok(hubs) => {
                for h in hubs.iter().take(MAX_BUS_ENTITIES) {
                    metrics::gauge!("weft_bus_event_hub_events", "entity" => h.name.clone())
                        .set(h.total_events() as f64);
                }
            }
            // The other metrics are still worth serving; the hubs' stay as last read.
            Err(e) => tracing::warn!("/metrics: reading the bus's Event Hubs failed: {e:#}"),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        console.metrics.render(),
    )
        .into_response()
}
