//! OpenTelemetry traces, exported by OTLP/HTTP when `[telemetry]` or the `OTEL_*` environment configure
//! them: a span per Web API request, operation, stage, plug-in execution, organization-service call, system
//! job attempt and delivery post, all of one operation in one trace.
//!
//! Owns the process's tracer (set once by [`init`]), the span helpers the pipeline, the delivery and the API
//! call, the rule that links them ([`operation`], [`job_attempt`]) and the span and attribute names (listed
//! in `docs/telemetry.md`). It must not change what an operation does, and no span or attribute may carry
//! a secret: no configuration, no header, no endpoint URL or key — endpoints are named by their name.
//!
//! # One trace per CorrelationId
//! An asynchronous step's system job runs later, in another task, maybe on another host, and all it keeps
//! of its operation is the CorrelationId. A GUID is 16 bytes, exactly a W3C trace id, so the trace of a
//! top-level operation **is** its CorrelationId, and the operation's span id is derived from it too
//! ([`operation_span_id`]): a job attempt starts its span under that (remote) parent, and joins the
//! operation's tree without anything stored with the job. A Web API request without a `traceparent`
//! starts its trace with a fresh id that its (first) operation then takes as its CorrelationId, so the
//! request is the root of the same tree. With a valid incoming `traceparent` the request and its operations'
//! synchronous spans join the caller's trace, and each operation's CorrelationId trace (its system jobs)
//! starts at the operation's span, linked to the caller's (see `docs/telemetry.md`).
//!
//! # Cost when off
//! Every helper first reads one `OnceLock`; when unset (no configuration) it returns an empty [`Scope`]
//! without building names or attributes, and no exporter, thread or runtime exists.

mod export;
mod settings;

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Link, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, ContextGuard, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SdkTracer, SdkTracerProvider, ShouldSample as _,
};
use uuid::Uuid;

pub use settings::{Config, TelemetrySettings};

/// How long `weft up` waits at shutdown for the last spans to reach the collector.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Error descriptions are cut to this many characters (a plug-in's message can be long).
const MAX_DESCRIPTION_CHARS: usize = 300;

struct Telemetry {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    /// A job attempt's remote parent is marked sampled by the same rule the operation was sampled with.
    sample_ratio: f64,
    /// Where exports run; lives as long as the process once telemetry is on.
    _runtime: tokio::runtime::Runtime,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Whether traces are being exported.
#[inline]
pub fn enabled() -> bool {
    TELEMETRY.get().is_some()
}

/// Flushes and stops the exporter when dropped (or [`Guard::shutdown`]), waiting at most
/// [`SHUTDOWN_TIMEOUT`].
#[must_use = "dropping the guard stops the exporter"]
pub struct Guard(());

impl Guard {
    /// Exports what is queued and stops; spans started afterwards are not recorded.
    pub fn shutdown(self) {}
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(t) = TELEMETRY.get() {
            // Blocks this thread (never an export's: they run on the telemetry runtime) until the batch
            // processor has exported its queue or the timeout passed.
            if let Err(e) = t.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                eprintln!("telemetry: the last spans may be lost: {e}");
            }
        }
    }
}

/// Starts exporting to `config`'s collector. Once per process; a second call is an error.
pub fn init(config: &Config) -> anyhow::Result<Guard> {
    let (provider, runtime) = export::provider(config)?;
    let tracer = provider.tracer("weft");
    TELEMETRY
        .set(Telemetry {
            tracer,
            provider,
            sample_ratio: config.sample_ratio,
            _runtime: runtime,
        })
        .map_err(|_| anyhow::anyhow!("telemetry: already started in this process"))?;
    Ok(Guard(()))
}

/// The trace id of an operation's trace: its CorrelationId's 16 bytes.
pub fn trace_id(correlation_id: Uuid) -> TraceId {
    TraceId::from_bytes(*correlation_id.as_bytes())
}

/// The span id of the top-level operation whose CorrelationId this is: the two halves of the GUID
/// folded (never zero, which W3C forbids). Job attempts name it as their parent.
pub fn operation_span_id(correlation_id: Uuid) -> SpanId {
    let b = correlation_id.as_bytes();
    let mut id = [0u8; 8];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = b[i] ^ b[i + 8];
    }
    if id == [0; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

mod ids {
    //! The SDK picks trace and span ids through its `IdGenerator` only (it ignores a span builder's), so
    //! the ids derived from a CorrelationId are handed to it through this thread-local for the one
    //! `build_with_context` call that needs them; every other span gets random ids.
    use std::cell::Cell;

    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

    thread_local! {
        static NEXT: Cell<(Option<TraceId>, Option<SpanId>)> = const { Cell::new((None, None)) };
    }

    /// Random ids unless [`with_ids`] set the next ones.
    #[derive(Debug)]
    pub(super) struct CorrelationIds;

    impl IdGenerator for CorrelationIds {
        fn new_trace_id(&self) -> TraceId {
            let (trace, span) = NEXT.get();
            NEXT.set((None, span));
            trace.unwrap_or_else(|| RandomIdGenerator::default().new_trace_id())
        }

        fn new_span_id(&self) -> SpanId {
            let (trace, span) = NEXT.get();
            NEXT.set((trace, None));
            span.unwrap_or_else(|| RandomIdGenerator::default().new_span_id())
        }
    }

    /// Runs `start` (one span start) with these ids offered to the generator.
    pub(super) fn with_ids<T>(
        trace: Option<TraceId>,
        span: Option<SpanId>,
        start: impl FnOnce() -> T,
    ) -> T {
        NEXT.set((trace, span));
        let started = start();
        NEXT.set((None, None));
        started
    }
}

/// A span made current on this thread until dropped, when it ends. Empty when telemetry is off.
#[must_use = "the span ends when the scope is dropped"]
pub struct Scope {
    cx: Option<Context>,
    guard: Option<ContextGuard>,
}

impl Scope {
    /// No span.
    pub const fn none() -> Scope {
        Scope {
            cx: None,
            guard: None,
        }
    }

    fn enter(cx: Context) -> Scope {
        let guard = cx.clone().attach();
        Scope {
            cx: Some(cx),
            guard: Some(guard),
        }
    }

    /// Adds attributes (built only when there is a span).
    pub fn attributes(&self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attributes(attributes());
        }
    }

    /// Records `weft.outcome` (`succeeded`/`failed`) and, on failure, an error status with the error's
    /// text (cut short).
    pub fn finish<T, E: std::fmt::Display>(&self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed("failed", e),
        }
    }

    /// `weft.outcome = succeeded`.
    pub fn succeeded(&self) {
        if let Some(cx) = &self.cx {
            cx.span()
                .set_attribute(KeyValue::new("weft.outcome", "succeeded"));
        }
    }

    /// `weft.outcome = outcome` with an error status describing `error`.
    pub fn failed(&self, outcome: &'static str, error: impl std::fmt::Display) {
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new("weft.outcome", outcome));
            span.set_status(Status::error(description(&error)));
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(cx) = self.cx.take() {
            cx.span().end();
        }
        // The guard goes last: the context before this span is current again.
        drop(self.guard.take());
    }
}

fn description(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    match text.char_indices().nth(MAX_DESCRIPTION_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// A span named `name`, child of the current one (or a root), current until the scope drops.
pub fn span<N: Into<Cow<'static, str>>>(
    name: impl FnOnce() -> N,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Scope {
    let Some(t) = TELEMETRY.get() else {
        return Scope::none();
    };
    let parent = Context::current();
    let span = t.tracer.build_with_context(
        SpanBuilder::from_name(name()).with_attributes(attributes()),
        &parent,
    );
    Scope::enter(parent.with_span(span))
}

/// Adds attributes to the current span (built only when telemetry is on).
pub fn annotate(attributes: impl FnOnce() -> Vec<KeyValue>) {
    if enabled() {
        Context::map_current(|cx| cx.span().set_attributes(attributes()));
    }
}

/// Runs `body` in a [`span`] and records its outcome.
pub fn in_span<N: Into<Cow<'static, str>>, T, E: std::fmt::Display>(
    name: impl FnOnce() -> N,
    attributes: impl FnOnce() -> Vec<KeyValue>,
    body: impl FnOnce(&Scope) -> Result<T, E>,
) -> Result<T, E> {
    let scope = span(name, attributes);
    let result = body(&scope);
    scope.finish(&result);
    result
}

/// The span of a top-level operation: in the trace whose id is `correlation_id`, with the span id derived
/// from it. A child of the current span when that is already in this trace (the Web API request that
/// gave the operation its CorrelationId); otherwise a root, linked to the current span if there is one.
pub fn operation<N: Into<Cow<'static, str>>>(
    correlation_id: Uuid,
    name: impl FnOnce() -> N,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Scope {
    let Some(t) = TELEMETRY.get() else {
        return Scope::none();
    };
    let current = Context::current();
    let trace = trace_id(correlation_id);
    let span_id = operation_span_id(correlation_id);
    let builder = SpanBuilder::from_name(name()).with_attributes(attributes());
    let outer = current.span().span_context().clone();
    let span = if outer.is_valid() && outer.trace_id() == trace {
        ids::with_ids(None, Some(span_id), || {
            t.tracer.build_with_context(builder, &current)
        })
    } else {
        let builder = if outer.is_valid() {
            builder.with_links(vec![Link::with_context(outer)])
        } else {
            builder
        };
        ids::with_ids(Some(trace), Some(span_id), || {
            t.tracer.build_with_context(builder, &Context::new())
        })
    };
    Scope::enter(current.with_span(span))
}

/// A span for async work (a job attempt, a request): ended when dropped; [`Detached::run`] makes it
/// current while a future runs.
#[must_use = "the span ends when this is dropped"]
pub struct Detached {
    cx: Option<Context>,
}

impl Detached {
    /// Runs `work` with this span current (in every poll).
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        match &self.cx {
            Some(cx) => work.with_context(cx.clone()).await,
            None => work.await,
        }
    }

    /// Adds attributes (built only when there is a span).
    pub fn attributes(&self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attributes(attributes());
        }
    }

    /// `weft.outcome = outcome`, with an error status describing `error` when there is one.
    pub fn outcome(&self, outcome: &'static str, error: Option<&dyn std::fmt::Display>) {
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new("weft.outcome", outcome));
            if let Some(error) = error {
                span.set_status(Status::error(description(error)));
            }
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(cx) = self.cx.take() {
            cx.span().end();
        }
    }
}

/// The span of one attempt of a system job of the operation whose CorrelationId is `correlation_id`: in
/// that operation's trace, child of its operation span (a remote parent: the job kept only the id).
pub fn job_attempt<N: Into<Cow<'static, str>>>(
    correlation_id: Uuid,
    name: impl FnOnce() -> N,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Detached {
    let Some(t) = TELEMETRY.get() else {
        return Detached { cx: None };
    };
    let trace = trace_id(correlation_id);
    // The operation was kept or dropped by the trace-id ratio; its jobs follow the same decision.
    let sampled = Sampler::TraceIdRatioBased(t.sample_ratio)
        .should_sample(None, trace, "", &SpanKind::Internal, &[], &[])
        .decision
        == SamplingDecision::RecordAndSample;
    let parent = Context::new().with_remote_span_context(SpanContext::new(
        trace,
        operation_span_id(correlation_id),
        TraceFlags::default().with_sampled(sampled),
        true,
        TraceState::default(),
    ));
    let span = t.tracer.build_with_context(
        SpanBuilder::from_name(name())
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes()),
        &parent,
    );
    Detached {
        cx: Some(Context::new().with_span(span)),
    }
}

/// A span child of the current context for async work (a delivery post awaited by a job attempt).
pub fn detached_span<N: Into<Cow<'static, str>>>(
    kind: SpanKind,
    name: impl FnOnce() -> N,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Detached {
    let Some(t) = TELEMETRY.get() else {
        return Detached { cx: None };
    };
    let parent = Context::current();
    let span = t.tracer.build_with_context(
        SpanBuilder::from_name(name())
            .with_kind(kind)
            .with_attributes(attributes()),
        &parent,
    );
    Detached {
        cx: Some(parent.with_span(span)),
    }
}

/// The current context, to carry across `spawn_blocking` (empty when telemetry is off).
pub struct Carried(Option<Context>);

/// Takes the current context along to another thread.
pub fn carry() -> Carried {
    Carried(enabled().then(Context::current))
}

impl Carried {
    /// Makes the carried context current on this thread until the guard drops.
    pub fn attach(self) -> Option<ContextGuard> {
        self.0.map(Context::attach)
    }
}

/// The trace id a Web API request started, offered to its first top-level operation as CorrelationId.
#[derive(Clone)]
struct Claim(Arc<Mutex<Option<Uuid>>>);

/// The CorrelationId a top-level operation should take: the id of the trace its Web API request started,
/// for the first operation that asks; None otherwise (the caller makes a fresh one).
pub fn claim_correlation_id() -> Option<Uuid> {
    if !enabled() {
        return None;
    }
    Context::map_current(|cx| {
        cx.get::<Claim>()
            .and_then(|c| c.0.lock().ok().and_then(|mut id| id.take()))
    })
}

/// The Web API's request span (axum middleware, installed when telemetry is on): `{METHOD} {resource}`,
/// kind server, with the method, the path (never the query string) and the status. Honours a valid W3C
/// `traceparent`; without one the trace id is fresh and offered to the first operation as CorrelationId.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let Some(t) = TELEMETRY.get() else {
        return next.run(request).await;
    };
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let resource = path
        .trim_start_matches('/')
        .split('/')
        .nth(3)
        .map(|r| r.split('(').next().unwrap_or(r))
        .filter(|r| !r.is_empty())
        .unwrap_or("api")
        .to_owned();
    let incoming = TraceContextPropagator::new().extract_with_context(
        &Context::new(),
        &opentelemetry_http::HeaderExtractor(request.headers()),
    );
    let builder = SpanBuilder::from_name(format!("{method} {resource}"))
        .with_kind(SpanKind::Server)
        .with_attributes(vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", path),
        ]);
    let cx = if incoming.span().span_context().is_valid() {
        let span = t.tracer.build_with_context(builder, &incoming);
        incoming.with_span(span)
    } else {
        let correlation_id = Uuid::new_v4();
        let span = ids::with_ids(Some(trace_id(correlation_id)), None, || {
            t.tracer.build_with_context(builder, &Context::new())
        });
        Context::new()
            .with_span(span)
            .with_value(Claim(Arc::new(Mutex::new(Some(correlation_id)))))
    };
    let response = next.run(request).with_context(cx.clone()).await;
    let span = cx.span();
    let status = response.status();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
    span.end();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_correlation_id() {
        let c = Uuid::parse_str("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        assert_eq!(trace_id(c).to_string(), "0f8fad5bd9cb469fa16570867728950e");
        // Folded halves: 0f8fad5bd9cb469f ^ a16570867728950e.
        assert_eq!(operation_span_id(c).to_string(), "aeeaddddaee3d391");
        // Never the invalid all-zero span id.
        let same_halves = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        assert_ne!(operation_span_id(same_halves), SpanId::INVALID);
    }

    #[test]
    fn off_costs_nothing_and_does_nothing() {
        // No `init` in this test binary: every helper is inert.
        assert!(!enabled());
        let built = std::cell::Cell::new(false);
        let scope = span(
            || {
                built.set(true);
                "x"
            },
            || {
                built.set(true);
                Vec::new()
            },
        );
        scope.finish(&Err::<(), _>("boom"));
        drop(scope);
        assert!(!built.get(), "names and attributes are not even built");
        assert_eq!(claim_correlation_id(), None);
        assert!(carry().attach().is_none());
    }
}
