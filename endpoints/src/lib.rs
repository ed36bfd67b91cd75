//! weft-endpoints: posts a Dataverse `RemoteExecutionContext` to a service endpoint — Service Bus queue (2),
//! persistent queue (6) and topic (5), Event Hub (7), relay one-way (1) / two-way (4) / REST (3) through
//! Hybrid Connections HTTP, webhook (8) — and classifies the outcome.
//!
//! Owns the endpoint clients: configuration checks ([`Endpoint`]), the wire format of each contract, the
//! size rule's property/header, SAS and webhook auth, and [`PostError::class`]. It must not decide retries,
//! schedules or job states (the asynchronous service does), touch the store, or log secrets.
//!
//! ```no_run
//! # async fn demo(row: weft_store::system::ServiceEndpoint, secrets: weft_store::system::EndpointSecrets,
//! #               ctx: weft_message::RemoteExecutionContext) -> Result<(), weft_endpoints::PostError> {
//! use weft_endpoints::{Delivery, Endpoint, ErrorClass};
//! let ep = Endpoint::new(&row, &secrets)?;
//! let delivery = Delivery {
//!     message_id: uuid::Uuid::new_v4().to_string(),
//!     correlation_id: ctx.correlation_id,
//!     organization: "org.crm.dynamics.com".into(),
//!     partition_key: None,
//! };
//! match weft_endpoints::post(&ep, &ctx, &delivery).await {
//!     Ok(outcome) => println!("{} in {:?}: {}", outcome.status, outcome.latency, outcome.response_body),
//!     Err(e) if e.class() == ErrorClass::Transient => println!("retry later: {e}"),
//!     Err(e) => println!("failed for good: {e}"),
//! }
//! # Ok(()) }
//! ```

mod check;
mod endpoint;
mod error;
mod redact;
mod send;
mod settings;
mod signature;

use std::sync::OnceLock;

pub use endpoint::{DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, Endpoint};
pub use error::{ErrorClass, ErrorKind, PostError, parse_retry_after};
pub use send::{BATCH_CONTENT_TYPE, CLAIMS, Delivery, PostOutcome, claims};
pub use settings::parse as parse_settings;
pub use signature::SigningSecret;

use weft_message::{Format, RemoteExecutionContext};

/// An HTTP client for endpoints: one connection pool (rustls), no automatic redirects (a webhook's 3xx is a
/// failure in Dataverse, and following it could carry auth headers to another host). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    /// A new client with its own pool. Most callers use [`Client::shared`].
    pub fn new() -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Only fails when the TLS backend cannot initialise, which is not recoverable here.
            .expect("rustls HTTP client builds");
        Client { http }
    }

    /// The process-wide client behind [`post`] and [`check`].
    pub fn shared() -> &'static Client {
        static SHARED: OnceLock<Client> = OnceLock::new();
        SHARED.get_or_init(Client::new)
    }

    /// Posts `ctx` to `endpoint` once. See the crate README for what each contract sends.
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        ctx: &RemoteExecutionContext,
        delivery: &Delivery,
    ) -> Result<PostOutcome, PostError> {
        self.post_inner(endpoint, ctx, None, delivery).await
    }

    /// [`Client::post`] for a context that is also held encoded (`stored`, in `format`: a system job's
    /// copy). The stored bytes are sent as they are when `format` is the endpoint's and they fit its size
    /// limit ([`Endpoint::sends_as_stored`]); otherwise `ctx` is encoded as [`Client::post`] does. `ctx` must
    /// be `stored` decoded: it still supplies the properties (claims, `Label`, `CorrelationId`, the
    /// partition key), so when the bytes are sent as they are its own members are enough
    /// (`weft_message::parse_head`).
    pub async fn post_stored(
        &self,
        endpoint: &Endpoint,
        ctx: &RemoteExecutionContext,
        stored: &[u8],
        format: Format,
        delivery: &Delivery,
    ) -> Result<PostOutcome, PostError> {
        self.post_inner(endpoint, ctx, Some((stored, format)), delivery)
            .await
    }

    async fn post_inner(
        &self,
        endpoint: &Endpoint,
        ctx: &RemoteExecutionContext,
        stored: Option<(&[u8], Format)>,
        delivery: &Delivery,
    ) -> Result<PostOutcome, PostError> {
        let r = send::post(&self.http, endpoint, ctx, delivery, stored).await;
        match &r {
            Ok(o) => {
                tracing::debug!(endpoint = %endpoint.name, status = o.status, truncated = o.truncated,
                latency_ms = o.latency.as_secs_f64() * 1e3, "posted")
            }
            Err(e) => {
                tracing::debug!(endpoint = %endpoint.name, class = ?e.class(), error = %e, "post failed")
            }
        }
        r
    }

    /// TriggerServiceEndpointCheck: validates reachability and auth without posting a message where the
    /// protocol allows it (see [`check`]).
    pub async fn check(&self, endpoint: &Endpoint) -> Result<(), PostError> {
        check::check(&self.http, endpoint).await
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// Posts `ctx` to `endpoint` once with the shared client.
pub async fn post(
    endpoint: &Endpoint,
    ctx: &RemoteExecutionContext,
    delivery: &Delivery,
) -> Result<PostOutcome, PostError> {
    Client::shared().post(endpoint, ctx, delivery).await
}

/// Checks `endpoint` with the shared client. What is sent, by contract:
/// - Service Bus / Event Hubs: an **empty batch** (`[]`) to `{entity}/messages` with a fresh SAS token — the
///   service authenticates it, checks the entity exists and stores nothing;
/// - relay: `HEAD` on the hybrid connection — 401/403/404 and "no active listener" (502/503 without `Via`)
///   fail, any answer from a listener succeeds (the listener sees a body-less HEAD, never a context);
/// - webhook: `HEAD` on the URL with the configured auth — connection failures, timeouts and 401/403 fail,
///   any other answer proves reachability (a webhook has no side-effect-free way to prove more).
pub async fn check(endpoint: &Endpoint) -> Result<(), PostError> {
    Client::shared().check(endpoint).await
}
