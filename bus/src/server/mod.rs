//! The HTTP surface: routing by entity path, SAS on every request, Azure-shaped errors, and the translation
//! between HTTP requests/responses and the broker, event hub and relay modules.
//!
//! Owns wire shapes (headers, batch JSON, status codes). Delivery rules live in `broker`, persistence in
//! `store`; this module must not duplicate them.
// Handlers short-circuit with ready-made Azure error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use tokio::sync::watch;

mod conn;
mod eventhubs;
pub mod header_case;
pub mod inspect;
mod relay_http;
mod servicebus;

pub use conn::{Limits, serve};
pub use servicebus::USER_PROPERTIES_REQUEST;

use eventhubs::{eh_read, eh_send};
use relay_http::{relay_listen, relay_send};
use servicebus::{sb_lock_op, sb_receive, sb_send};

use crate::broker::{Entity, Mode, SendTarget, Settings};
use crate::config::BusConfig;
use crate::eventhub::{Hub, Route};
use crate::props::{http_date, now_ms};
use crate::relay::HybridConnection;
use crate::sas::{self, Right};
use crate::store::Store;

/// Content type that marks a batch send.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";

/// What an entity path resolves to (a queue is both a send target and a receiver).
#[derive(Default, Clone)]
struct Node {
    target: Option<Arc<SendTarget>>,
    receiver: Option<Arc<Entity>>,
    hub: Option<Arc<Hub>>,
    relay: Option<Arc<HybridConnection>>,
}

/// Shared server state.
pub struct Bus {
    store: Store,
    config: BusConfig,
    nodes: HashMap<String, Node>,
    shutdown: watch::Receiver<bool>,
}

fn ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

impl Bus {
    /// Builds every configured entity and restores stored messages into them.
    pub fn new(config: BusConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Bus> {
        let (store, mut loaded) = Store::open(&config.data)?;
        let mut nodes: HashMap<String, Node> = HashMap::new();
        let mut receivers: Vec<Arc<Entity>> = Vec::new();
        let receiver = |path: String, s: Settings, filter| {
            let dlq = Arc::new(Entity::dead_letter(&path, s.lock_ms));
            Arc::new(Entity::new(path, s, Some(dlq), filter))
        };
        let mut targets = Vec::new();
        for q in &config.queues {
            let s = Settings {
                lock_ms: ms(q.lock_duration_secs),
                default_ttl_ms: q.default_ttl_secs.map(ms),
                max_delivery: q.max_delivery_count,
                dead_letter_on_expiration: q.dead_letter_on_expiration,
                max_bytes: q.max_size_mb.saturating_mul(1024 * 1024),
            };
            let e = receiver(q.name.clone(), s, Default::default());
            receivers.push(e.clone());
            targets.push((
                q.name.clone(),
                vec![e],
                q.duplicate_detection_window_secs.map(ms),
                None,
                false,
            ));
        }
        for t in &config.topics {
            let mut subs = Vec::new();
            for sc in &t.subscriptions {
                let s = Settings {
                    lock_ms: ms(sc.lock_duration_secs),
                    default_ttl_ms: sc.default_ttl_secs.map(ms),
                    max_delivery: sc.max_delivery_count,
                    dead_letter_on_expiration: sc.dead_letter_on_expiration,
                    max_bytes: t.max_size_mb.saturating_mul(1024 * 1024),
                };
                let e = receiver(
                    format!("{}/subscriptions/{}", t.name, sc.name),
                    s,
                    sc.effective_filter()?,
                );
                receivers.push(e.clone());
                subs.push(e);
            }
            targets.push((
                t.name.clone(),
                subs,
                t.duplicate_detection_window_secs.map(ms),
                t.default_ttl_secs.map(ms),
                true,
            ));
        }
        for (name, recv, window, ttl, is_topic) in targets {
            let key = name.to_ascii_lowercase();
            let next = loaded.next_seq.get(&key).copied().unwrap_or(1);
            let dedup = loaded.dedup.remove(&key).unwrap_or_default();
            let target = Arc::new(SendTarget::new(
                name, recv, window, ttl, is_topic, next, dedup,
            ));
            nodes.entry(key).or_default().target = Some(target.clone());
            for r in &target.receivers {
                for e in [Some(r.clone()), r.dlq.clone()].into_iter().flatten() {
                    if let Some(recs) = loaded.messages.remove(&*e.key) {
                        if let Some(last) = recs.last() {
                            target.observe_seq(last.seq);
                        }
                        e.restore(recs);
                    }
                }
            }
        }
        for e in receivers {
            if let Some(d) = &e.dlq {
                nodes.entry(d.key.to_string()).or_default().receiver = Some(d.clone());
            }
            let key = e.key.to_string();
            nodes.entry(key).or_default().receiver = Some(e);
        }
        for h in &config.event_hubs {
            let hub = Arc::new(Hub::new(
                h.name.clone(),
                h.partitions,
                ms(h.retention_hours * 3600.0),
                &store,
            )?);
            nodes.entry(h.name.to_ascii_lowercase()).or_default().hub = Some(hub);
        }
        for r in &config.relays {
            nodes.entry(r.name.to_ascii_lowercase()).or_default().relay =
                Some(Arc::new(HybridConnection::new(r.name.clone())));
        }
        for (entity, recs) in &loaded.messages {
            tracing::warn!(
                entity,
                count = recs.len(),
                "stored messages for an entity that is not configured are kept but not served"
            );
        }
        Ok(Bus {
            store,
            config,
            nodes,
            shutdown,
        })
    }

    /// The configuration served.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// The store every protocol shares (REST and AMQP: one store, one semantics).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Turns true when the bus shuts down (ends long polls and other protocols' links).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// The queue or topic named `path` (case-insensitive), for sends.
    pub fn send_target(&self, path: &str) -> Option<Arc<SendTarget>> {
        self.nodes.get(&path.to_ascii_lowercase())?.target.clone()
    }

    /// The queue, subscription (`topic/subscriptions/sub`) or dead-letter subqueue (`…/$DeadLetterQueue`)
    /// named `path` (case-insensitive), for receives.
    pub fn receiver(&self, path: &str) -> Option<Arc<Entity>> {
        self.nodes.get(&path.to_ascii_lowercase())?.receiver.clone()
    }

    /// The Event Hub named `name` (case-insensitive).
    pub fn event_hub(&self, name: &str) -> Option<Arc<Hub>> {
        self.nodes.get(&name.to_ascii_lowercase())?.hub.clone()
    }

    /// Checks a presented SAS token against the policies for `right` on `resource` (an absolute URI). With
    /// no policy configured (loopback-only anonymous mode) everything is allowed.
    pub fn authorize_token(
        &self,
        token: Option<&str>,
        resource: &str,
        right: Right,
    ) -> Result<(), sas::SasError> {
        if self.config.sas_policies.is_empty() {
            return Ok(());
        }
        let now = (now_ms() / 1000) as u64;
        sas::authorize(token, &self.config.sas_policies, resource, right, now).map(|_| ())
    }

    /// Longest configured entity path that prefixes `segments` (case-insensitive) and the remaining segments.
    fn resolve<'a>(&self, segments: &'a [String]) -> Option<(&Node, &'a [String])> {
        (1..=segments.len()).rev().find_map(|k| {
            let key = segments[..k].join("/").to_ascii_lowercase();
            self.nodes.get(&key).map(|n| (n, &segments[k..]))
        })
    }

    fn authorize(
        &self,
        token: Option<&str>,
        headers: &HeaderMap,
        path: &str,
        right: Right,
    ) -> Result<(), Response> {
        if self.config.sas_policies.is_empty() {
            return Ok(()); // anonymous mode: only possible on loopback (checked at start)
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let resource = format!("http://{host}{path}");
        let now = (now_ms() / 1000) as u64;
        sas::authorize(token, &self.config.sas_policies, &resource, right, now)
            .map(|_| ())
            .map_err(|e| error(e.status(), &e.to_string()))
    }
}

/// Builds the router over shared state.
pub fn router(bus: Arc<Bus>) -> Router {
    let mut r = Router::new().route("/$hc/{*path}", any(relay_listen));
    if bus.config.echo_route {
        r = r.route("/$weft/echo", post(|body: Bytes| async move { body }));
    }
    r.fallback(dispatch).with_state(bus)
}

/// Azure's error body: `<Error><Code>…</Code><Detail>…</Detail></Error>`.
pub fn error(status: u16, detail: &str) -> Response {
    let detail = format!(
        "{detail}. TrackingId:{}, SystemTracker:weft-bus, Timestamp:{}",
        uuid::Uuid::new_v4(),
        http_date(now_ms() / 1000)
    );
    let body = format!(
        "<Error><Code>{status}</Code><Detail>{}</Detail></Error>",
        xml_escape(&detail)
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Query string → decoded pairs.
fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Body limit of the routes that take no body (receive, lock operations, Event Hubs reads).
const SMALL_BODY_BYTES: usize = 64 * 1024;

/// Reads the request body within the route's limit and the body timeout: a relay request up to
/// `max_relay_body_bytes` (413 beyond), a send up to `max_message_bytes` (403 beyond, Azure's "too large"),
/// anything else up to [`SMALL_BODY_BYTES`] (413); a body slower than `body_read_timeout_secs` → 408.
async fn read_body(
    bus: &Bus,
    node: &Node,
    method: &Method,
    lower: &[&str],
    body: axum::body::Body,
) -> Result<Bytes, Response> {
    let send = *method == Method::POST
        && lower.last() == Some(&"messages")
        && (node.target.is_some() || node.hub.is_some());
    // A send's wording is Service Bus's ("exceeds the maximum message size"): clients classify that 403 as
    // "too large", not as an authorization failure.
    let (limit, status, what) = if node.relay.is_some() {
        (
            bus.config.max_relay_body_bytes,
            413,
            "limit for relayed requests",
        )
    } else if send {
        (bus.config.max_message_bytes, 403, "maximum message size")
    } else {
        (SMALL_BODY_BYTES, 413, "limit for this operation")
    };
    let wait = std::time::Duration::from_secs_f64(bus.config.body_read_timeout_secs);
    match tokio::time::timeout(wait, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(error(
            status,
            &format!("The request body exceeds the {what} of {limit} bytes"),
        )),
        Err(_) => Err(error(
            408,
            &format!(
                "The request body did not arrive within {} s",
                bus.config.body_read_timeout_secs
            ),
        )),
    }
}

async fn dispatch(State(bus): State<Arc<Bus>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_string();
    let segments: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let query = query_pairs(parts.uri.query());
    let Some((node, rest)) = bus.resolve(&segments) else {
        let looks_sb = segments.iter().any(|s| s.eq_ignore_ascii_case("messages"));
        let (code, what) = if looks_sb {
            (410, "messaging entity")
        } else {
            (404, "entity or hybrid connection")
        };
        return error(
            code,
            &format!("The {what} '{}' could not be found", segments.join("/")),
        );
    };
    // Keywords (`messages`, `head`, `partitions`, …) match case-insensitively through `lower`; the values
    // (a MessageId or lock token in a lock URI, a publisher id) are taken from `rest`, exactly as sent.
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let node = node.clone();
    let body = match read_body(&bus, &node, &parts.method, &lower, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let spelling = parts.extensions.get::<header_case::HeaderSpelling>();
    let auth = header_str(&parts.headers, "authorization");
    if let Some(hc) = &node.relay {
        return relay_send(
            &bus,
            hc.clone(),
            &parts.method,
            &parts.uri,
            &raw_path,
            &parts.headers,
            body,
        )
        .await;
    }
    let m = &parts.method;
    match (m.clone(), lower.as_slice()) {
        (Method::POST, ["messages"]) if node.target.is_some() || node.hub.is_some() => {
            let right = bus.authorize(auth, &parts.headers, &raw_path, Right::Send);
            if let Err(r) = right {
                return r;
            }
            if let Some(t) = &node.target {
                sb_send(&bus, t, &parts.headers, spelling, body).await
            } else {
                eh_send(
                    &bus,
                    node.hub.as_ref().expect("guarded"),
                    Route::Any,
                    &parts.headers,
                    spelling,
                    body,
                )
                .await
            }
        }
        (Method::POST, ["partitions" | "publishers" | "publisher", _, "messages"])
            if node.hub.is_some() =>
        {
            if let Err(r) = bus.authorize(auth, &parts.headers, &raw_path, Right::Send) {
                return r;
            }
            let hub = node.hub.as_ref().expect("guarded");
            let p = rest[1].as_str();
            let route = if lower[0] == "partitions" {
                match p.parse::<usize>() {
                    Ok(i) if i < hub.partitions.len() => Route::Partition(i),
                    _ => {
                        return error(
                            400,
                            &format!("Partition '{p}' does not exist in event hub '{}'", hub.name),
                        );
                    }
                }
            } else {
                Route::Publisher(p)
            };
            eh_send(&bus, hub, route, &parts.headers, spelling, body).await
        }
        (Method::GET, ["partitions", p, "events"]) if node.hub.is_some() => {
            if let Err(r) = bus.authorize(auth, &parts.headers, &raw_path, Right::Listen) {
                return r;
            }
            eh_read(&bus, node.hub.as_ref().expect("guarded"), p, &query).await
        }
        (_, ["messages", "head"]) => {
            let Some(e) = node.receiver.clone() else {
                return error(
                    400,
                    "Cannot receive from a topic: receive from one of its subscriptions",
                );
            };
            let mode = match *m {
                Method::DELETE => Mode::ReceiveAndDelete,
                Method::POST => Mode::PeekLock,
                _ => {
                    return error(
                        405,
                        "Use DELETE (receive and delete) or POST (peek-lock) on messages/head",
                    );
                }
            };
            if let Err(r) = bus.authorize(auth, &parts.headers, &raw_path, Right::Listen) {
                return r;
            }
            sb_receive(&bus, &e, mode, &query, &parts.headers).await
        }
        (_, ["messages", _, _]) if node.receiver.is_some() => {
            if let Err(r) = bus.authorize(auth, &parts.headers, &raw_path, Right::Listen) {
                return r;
            }
            let e = node.receiver.as_ref().expect("guarded");
            sb_lock_op(&bus, e, m, &rest[1], &rest[2]).await
        }
        _ => error(400, &format!("Unsupported operation {m} on '{raw_path}'")),
    }
}
