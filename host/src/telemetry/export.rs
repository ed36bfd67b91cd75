//! The OTLP/HTTP exporter: the SDK's tracer provider with a batch span processor, posting protobuf
//! `ExportTraceServiceRequest`s through the workspace's reqwest client on a small runtime of its own.
//!
//! Owns building the provider from a [`Config`] and the HTTP client the exporter uses. It must not decide
//! what becomes a span (the parent module does) and never prints the collector URL's path, query or
//! credentials.
//!
//! # Why a client and a runtime of its own
//! opentelemetry-otlp's built-in clients are reqwest 0.13's (a second reqwest beside the workspace's 0.12,
//! with another TLS set-up) or hyper's without TLS. The SDK's batch processor exports from its own thread,
//! outside any tokio runtime, so an async client there needs a runtime to run on: each export is spawned on
//! this module's one-thread runtime and awaited through its join handle, which works from any thread. The
//! runtime lives as long as the process once telemetry is on (it is only made when it is).

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tokio::runtime::{Handle, Runtime};

use super::Config;
use super::ids::CorrelationIds;

/// How long one export may take (connect to the last byte of the answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read (OTLP answers are small; a partial-success message at most).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// reqwest 0.12 on a runtime of its own, as opentelemetry-http's [`HttpClient`].
#[derive(Debug)]
struct ReqwestOnRuntime {
    client: reqwest::Client,
    handle: Handle,
}

#[async_trait::async_trait]
impl HttpClient for ReqwestOnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.handle.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut answer = client.execute(request).await?;
            let mut response = Response::builder().status(answer.status());
            if let Some(headers) = response.headers_mut() {
                *headers = std::mem::take(answer.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = answer.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err::<_, HttpError>(
                        format!("the collector's answer is over {MAX_ANSWER_BYTES} bytes").into(),
                    );
                }
                body.extend_from_slice(&chunk);
            }
            Ok(response.body(Bytes::from(body))?)
        });
        task.await
            .map_err(|e| HttpError::from(format!("the export task ended: {e}")))?
    }
}

/// The tracer provider exporting to `config`'s collector, with the runtime its exports run on.
pub(super) fn provider(config: &Config) -> anyhow::Result<(SdkTracerProvider, Runtime)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("weft-telemetry")
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        // A collector answers itself; a redirect would carry the spans somewhere nobody configured.
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ReqwestOnRuntime {
            client,
            handle: runtime.handle().clone(),
        })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.traces_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        // The builder's message may quote the URL (and so a token in it): then it says what failed, not where.
        .map_err(|e| {
            let why = e.to_string();
            let why = if why.contains(&config.traces_url) {
                "its endpoint was refused".to_owned()
            } else {
                why
            };
            anyhow::anyhow!(
                "telemetry: the OTLP exporter for {} could not be built: {why}",
                config.origin()
            )
        })?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(sampler)
        .with_id_generator(CorrelationIds)
        .with_resource(
            // The SDK's detectors (telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES), then weft's name and version.
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
                .build(),
        )
        .build();
    Ok((provider, runtime))
}
