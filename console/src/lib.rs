//! # weft-console
//!
//! The web console an operator opens first — the System Jobs view of Power Apps, the plug-in trace log,
//! the registration and the embedded bus, server-rendered — and the Prometheus `/metrics` endpoint. `weft up` mounts
//! [`router`] next to its Web API, so both share the listener, its limits and TLS.
//!
//! Owns the pages, their routes, the console's sign-in (a cookie standing for the API key) and the
//! rendering of metrics. It must not hold business rules: job actions go through
//! [`weft_jobs::apply`] (the rules behind `asyncoperations` and `weft jobs`), step toggles and endpoint
//! checks through the [`ConsoleHost`] the host implements (the same code as the Web API), and reads go
//! through `weft-store`'s read API. Nothing is fetched from the internet: CSS and JavaScript are embedded.
//!
//! # Layout
//! - [`auth`]: who may see the console (API key as bearer or sign-in cookie; same-origin form posts).
//! - [`page`]: the page frame, embedded CSS/JS and small rendering helpers.
//! - [`jobs`]: System Jobs list (filters, sort, paging, live updates), a job's page and its actions.
//! - [`context`]: a RemoteExecutionContext as a summary, a tree and its raw wire forms.
//! - [`traces`]: the plug-in trace log per operation (correlation id).
//! - [`registration`]: plug-ins, steps (with the enable/disable toggle) and service endpoints (check).
//! - [`bus`]: the embedded bus's entities and counts, peeked messages and dead letters, resubmit.
//! - [`metrics`]: the Prometheus recorder and the gauges read from the store at scrape time.
//!
//! # Differences from Dataverse
//! The System Jobs view lists at most [`jobs::MAX_SCAN`] jobs per filter (newest first) before sorting and
//! paging; the page says when more exist. The Bus page resubmits a subscription's dead letter to the
//! subscription itself (Azure would send it to the topic, so every subscription got it again).

pub mod auth;
pub mod bus;
pub mod context;
pub mod jobs;
pub mod metrics;
pub mod page;
pub mod registration;
pub mod traces;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use uuid::Uuid;
use weft_store::Store;
use weft_store::system::{PluginAssembly, StepDef};

/// A boxed future returned by [`ConsoleHost`] actions.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the console needs from the host that is not in the store: the running registration and the
/// actions whose code lives with the Web API. Errors are messages for the operator (never secrets).
pub trait ConsoleHost: Send + Sync + 'static {
    /// The data store (system jobs, trace log, plug-in types, service endpoints).
    fn store(&self) -> Arc<dyn Store>;
    /// The plug-in assemblies with the sha256 of the component each runs.
    fn assemblies(&self) -> Vec<PluginAssembly>;
    /// The registered steps as the pipeline runs them.
    fn steps(&self) -> Vec<StepDef>;
    /// Enables or disables a step, as `PATCH sdkmessageprocessingsteps(id)` with `statecode` does.
    fn set_step_enabled(&self, id: Uuid, enabled: bool) -> HostFuture<'_, Result<(), String>>;
    /// TriggerServiceEndpointCheck: Ok when the endpoint answers with its credentials.
    fn check_endpoint(&self, id: Uuid) -> HostFuture<'_, Result<(), String>>;
    /// The bus this process embeds (`weft up` with a `[bus]` section), for the Bus page and the bus
    /// depths in `/metrics`; None hides both.
    fn bus(&self) -> Option<Arc<weft_bus::server::Bus>> {
        None
    }
}

/// State shared by the console's handlers.
#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) host: Arc<dyn ConsoleHost>,
    pub(crate) auth: auth::Auth,
    pub(crate) metrics: ::metrics_exporter_prometheus::PrometheusHandle,
    /// Becomes true when the server stops: open event streams end, so a graceful shutdown does not
    /// wait on a browser tab forever.
    pub(crate) stopping: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The console's routes (`/console/…`) and `/metrics`, behind `api_key` when there is one (the caller
/// refuses to serve off loopback without one, as for the Web API). `stopping` turns true when the server
/// shuts down (the live list's event streams end then). Installs the process's metrics recorder on first
/// use.
pub fn router(
    host: Arc<dyn ConsoleHost>,
    api_key: Option<String>,
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
) -> Router {
    let console = Console {
        host,
        auth: auth::Auth::new(api_key),
        metrics: metrics::install(),
        stopping,
    };
    let guarded = Router::new()
        .route("/console", get(jobs::index))
        .route("/console/", get(jobs::index))
        .route("/console/jobs", get(jobs::list))
        .route("/console/jobs/events", get(jobs::events))
        .route("/console/jobs/retry", post(jobs::bulk_retry))
        .route("/console/jobs/{id}", get(jobs::show))
        .route("/console/jobs/{id}/action", post(jobs::action))
        .route("/console/traces", get(traces::list))
        .route("/console/traces/{correlation}", get(traces::show))
        .route("/console/registration", get(registration::show))
        .route(
            "/console/registration/steps/{id}",
            post(registration::toggle_step),
        )
        .route(
            "/console/registration/endpoints/{id}/check",
            post(registration::check_endpoint),
        )
        .route("/console/bus", get(bus::overview))
        .route("/console/bus/entity", get(bus::entity))
        .route("/console/bus/resubmit", post(bus::resubmit))
        .route("/metrics", get(metrics::scrape))
        .layer(middleware::from_fn_with_state(
            console.clone(),
            auth::require,
        ));
    Router::new()
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/assets/console.css", get(page::css))
        .route("/console/assets/console.js", get(page::js))
        .merge(guarded)
        .with_state(console)
}

/// Runs `f` on a read connection, off the async threads; a store failure becomes a 500 page.
pub(crate) async fn read<T, F>(console: &Console, f: F) -> Result<T, axum::response::Response>
where
    T: Send + 'static,
    F: FnOnce(&dyn weft_store::Read) -> Result<T, weft_store::StoreError> + Send + 'static,
{
    use weft_store::StoreExt as _;
    let store = console.host.store();
    match tokio::task::spawn_blocking(move || store.read(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(page::failure(&format!("reading the store: {e}"))),
        Err(e) => Err(page::failure(&format!("reading the store: {e}"))),
    }
}
