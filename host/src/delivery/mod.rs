//! Delivery: posts execution contexts to service endpoints for the host — the notification service a
//! running plug-in calls (sync steps post at once, async steps within their system job) and the
//! [`DeliveryRunner`] the asynchronous service runs system jobs with (the built-in Azure-aware plug-in for
//! service-endpoint steps, the sandbox for custom plug-ins).
//!
//! Owns the [`Delivery`] context (one shared endpoint client, a tokio runtime of its own for every post, the
//! organization's host name), the lookup of an endpoint with its write-only secrets, the mapping of post
//! failures to plug-in service errors and to the job service's [`weft_jobs::FailureClass`]. It must not
//! decide retries or job states (weft-jobs does), build the wire format (weft-endpoints does), change the
//! pipeline's operation semantics, or let a secret reach a log, a trace, an error or a job row.
//!
//! # Why a runtime of its own
//! The pipeline is synchronous and posts from whatever thread runs the step: the caller's (PreValidation),
//! the store's writer thread, or a blocking thread of the job service. Every post is spawned on this
//! module's runtime and the caller waits on a plain channel, so a post never needs the caller to be (or not
//! to be) inside a runtime, and the pooled connections live as long as the [`Delivery`], not as long as
//! whichever runtime happened to open them.

mod cache;
mod notify;
mod runner;
mod workflow;

use std::sync::Arc;

use opentelemetry::KeyValue;
use tokio::runtime::{Handle, Runtime};
use uuid::Uuid;
use weft_endpoints::{Client, Endpoint, ErrorClass, ErrorKind, PostError, PostOutcome};
use weft_jobs::FailureClass;
use weft_message::{Format, RemoteExecutionContext};
use weft_store::{Read, StoreError};

use crate::sandbox::wit::types::{ServiceError, ServiceErrorKind};

pub use notify::{Posted, apply_changes};
pub use runner::DeliveryRunner;

/// Dataverse's error code for a failed post (network error, HTTP failure; dataverse.md §18).
pub const POST_FAILED_CODE: i32 = 0x8004_4306_u32 as i32;
/// Dataverse's error code for an InvalidPluginExecutionException (dataverse.md §18).
pub const PLUGIN_FAILED_CODE: i32 = 0x8004_0265_u32 as i32;

/// What every post needs: the endpoint client, the runtime posts run on, who is posting.
pub struct Delivery {
    /// Always Some until drop (taken there to shut it down without blocking).
    runtime: Option<Runtime>,
    handle: Handle,
    client: Client,
    organization: String,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("organization", &self.organization)
            .finish_non_exhaustive()
    }
}

/// Why an endpoint could not be made ready to post to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EndpointError {
    /// No service endpoint has this id.
    #[error("no service endpoint has id {0}")]
    NotFound(Uuid),
    /// The endpoint's configuration cannot be posted to (the message names the column, never a secret).
    #[error("service endpoint {id}: {error}")]
    Config {
        /// The endpoint.
        id: Uuid,
        /// What is wrong with it.
        error: PostError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a post did not happen or did not succeed. `Display` is secret-free.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// The endpoint could not be made ready (unknown, misconfigured, store failure).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The endpoint client failed or the endpoint refused the message.
    #[error("{0}")]
    Post(PostError),
    /// The post was cut short on this side (runtime shutting down, panic).
    #[error("{0}")]
    Interrupted(String),
}

impl From<StoreError> for DeliveryError {
    fn from(e: StoreError) -> Self {
        DeliveryError::Endpoint(EndpointError::Store(e))
    }
}

impl DeliveryError {
    /// How the asynchronous service should treat this failure: `PostError::class()` (Transient with the
    /// endpoint's `Retry-After`, Permanent, Auth), except a webhook's 502/503/504, which Dataverse gives
    /// exactly one more attempt (dataverse.md §17). Endpoint problems are internal errors (Permanent),
    /// store failures and interruptions are retried.
    pub fn class(&self) -> FailureClass {
        match self {
            DeliveryError::Endpoint(EndpointError::Store(_)) | DeliveryError::Interrupted(_) => {
                FailureClass::Transient { retry_after: None }
            }
            DeliveryError::Endpoint(_) => FailureClass::Permanent,
            DeliveryError::Post(e) if e.webhook_one_more_attempt() => FailureClass::WebhookGateway,
            DeliveryError::Post(e) => match e.class() {
                ErrorClass::Transient => FailureClass::Transient {
                    retry_after: e.retry_after(),
                },
                ErrorClass::Permanent => FailureClass::Permanent,
                ErrorClass::Auth => FailureClass::Auth,
            },
        }
    }

    /// The endpoint's HTTP status, when it answered.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            DeliveryError::Post(e) => e.status_code(),
            _ => None,
        }
    }

    /// The error a plug-in's `notification-service.execute` call gets: `not-found` for an unknown endpoint,
    /// `invalid-argument` when the endpoint or the message cannot be posted as configured, `timeout`, else
    /// `unavailable` (with the status code when the endpoint answered).
    pub fn to_service_error(&self) -> ServiceError {
        let kind = match self {
            DeliveryError::Endpoint(EndpointError::NotFound(_)) => ServiceErrorKind::NotFound,
            DeliveryError::Endpoint(EndpointError::Config { .. }) => {
                ServiceErrorKind::InvalidArgument
            }
            DeliveryError::Post(e) => match e.kind() {
                ErrorKind::Config | ErrorKind::TooLarge => ServiceErrorKind::InvalidArgument,
                ErrorKind::Timeout => ServiceErrorKind::Timeout,
                _ => ServiceErrorKind::Unavailable,
            },
            _ => ServiceErrorKind::Unavailable,
        };
        ServiceError {
            kind,
            message: self.to_string(),
            error_code: Some(POST_FAILED_CODE),
            status_code: self.status_code(),
        }
    }
}

impl Delivery {
    /// A delivery context posting as `organization` (the host name sent as `x-ms-dynamics-organization` and
    /// the `…/Claims/Organization` property), with its own two-thread runtime and connection pool.
    pub fn new(organization: impl Into<String>) -> anyhow::Result<Arc<Delivery>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weft-delivery")
            .enable_all()
            .build()?;
        Ok(Arc::new(Delivery {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            client: Client::new(),
            organization: organization.into(),
        }))
    }

    /// The organization's host name posts carry.
    pub fn organization(&self) -> &str {
        &self.organization
    }

    /// Reads endpoint `id` with its secrets (through `reader`: the operation's transaction or a read
    /// connection) and checks it can be posted to.
    pub fn endpoint(&self, reader: &dyn Read, id: Uuid) -> Result<Endpoint, EndpointError> {
        let row = reader
            .service_endpoint(id)?
            .ok_or(EndpointError::NotFound(id))?;
        let secrets = reader
            .service_endpoint_secrets_for_delivery(id)?
            .unwrap_or_default();
        Endpoint::new(&row, &secrets).map_err(|error| EndpointError::Config { id, error })
    }

    /// Posts `ctx` to `endpoint` once, with BrokerProperties `MessageId` (and `webhook-id`) = `message_id`,
    /// on this module's runtime; awaitable from any runtime. `stored` is `ctx` as a system job holds it
    /// (bytes and format): sent as it is when the endpoint takes that format (see
    /// `weft_endpoints::Client::post_stored`), and then `ctx` need hold only its own members
    /// (`weft_message::parse_head`).
    pub async fn post(
        &self,
        endpoint: Arc<Endpoint>,
        ctx: RemoteExecutionContext,
        stored: Option<(Vec<u8>, Format)>,
        message_id: String,
    ) -> Result<PostOutcome, DeliveryError> {
        let span = post_span(&endpoint, &message_id);
        let client = self.client.clone();
        let delivery = self.delivery(&ctx, message_id);
        let task = self.handle.spawn(async move {
            match stored {
                Some((bytes, format)) => {
                    client
                        .post_stored(&endpoint, &ctx, &bytes, format, &delivery)
                        .await
                }
                None => client.post(&endpoint, &ctx, &delivery).await,
            }
        });
        let result = match task.await {
            Ok(r) => r.map_err(DeliveryError::Post),
            Err(e) => Err(interrupted(&e)),
        };
        post_span_end(&span, &result);
        result
    }

    /// TriggerServiceEndpointCheck: proves `endpoint` reachable with its credentials without posting a
    /// context where the protocol allows it (see `weft_endpoints::check`), on this module's runtime.
    pub async fn check(&self, endpoint: Endpoint) -> Result<(), DeliveryError> {
        let client = self.client.clone();
        let task = self
            .handle
            .spawn(async move { client.check(&endpoint).await });
        match task.await {
            Ok(r) => r.map_err(DeliveryError::Post),
            Err(e) => Err(interrupted(&e)),
        }
    }

    /// [`Delivery::post`] for synchronous callers: blocks this thread (never the delivery runtime) until the
    /// post is answered. Safe on any thread, inside a runtime or not.
    pub fn post_blocking(
        &self,
        endpoint: Endpoint,
        ctx: RemoteExecutionContext,
        message_id: String,
    ) -> Result<PostOutcome, DeliveryError> {
        let span = post_span(&endpoint, &message_id);
        let client = self.client.clone();
        let delivery = self.delivery(&ctx, message_id);
        let (send, receive) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = send.send(client.post(&endpoint, &ctx, &delivery).await);
        });
        let result = match receive.recv() {
            Ok(r) => r.map_err(DeliveryError::Post),
            Err(_) => Err(DeliveryError::Interrupted(
                "the delivery runtime stopped before the post was answered".into(),
            )),
        };
        post_span_end(&span, &result);
        result
    }

    fn delivery(
        &self,
        ctx: &RemoteExecutionContext,
        message_id: String,
    ) -> weft_endpoints::Delivery {
        weft_endpoints::Delivery {
            message_id,
            correlation_id: ctx.correlation_id,
            organization: self.organization.clone(),
            partition_key: None,
        }
    }
}

/// The span of one post (telemetry): `post {endpoint name}`, kind client, naming the endpoint by name, id
/// and contract — never its URL, namespace, key or token.
fn post_span(endpoint: &Endpoint, message_id: &str) -> crate::telemetry::Detached {
    crate::telemetry::detached_span(
        opentelemetry::trace::SpanKind::Client,
        || format!("post {}", endpoint.name()),
        || {
            vec![
                KeyValue::new("weft.endpoint", endpoint.name().to_owned()),
                KeyValue::new("weft.endpoint_id", endpoint.id().to_string()),
                KeyValue::new("weft.contract", format!("{:?}", endpoint.contract())),
                KeyValue::new("weft.message_id", message_id.to_owned()),
            ]
        },
    )
}

fn post_span_end(span: &crate::telemetry::Detached, result: &Result<PostOutcome, DeliveryError>) {
    match result {
        Ok(o) => {
            span.attributes(|| {
                vec![
                    KeyValue::new("http.response.status_code", i64::from(o.status)),
                    KeyValue::new("weft.latency_ms", o.latency.as_secs_f64() * 1000.0),
                ]
            });
            span.outcome("succeeded", None);
        }
        Err(e) => {
            if let Some(status) = e.status_code() {
                span.attributes(|| {
                    vec![KeyValue::new(
                        "http.response.status_code",
                        i64::from(status),
                    )]
                });
            }
            // `DeliveryError`'s text is secret-free (redacted by weft-endpoints).
            span.outcome(e.class().label(), Some(e));
        }
    }
}

fn interrupted(e: &tokio::task::JoinError) -> DeliveryError {
    DeliveryError::Interrupted(if e.is_panic() {
        "the post panicked".into()
    } else {
        "the post was cancelled (the delivery runtime is shutting down)".into()
    })
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside async code; the last owner may well be a task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
