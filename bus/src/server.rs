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
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::broker::{
    Delivered, Entity, LockError, Mode, NewMessage, SendError, SendTarget, Settings,
};
use crate::config::BusConfig;
use crate::eventhub::{Hub, Route};
use crate::props::{BrokerProps, PropValue, ascii_json, http_date, now_ms, user_props_from_json};
use crate::relay::{HybridConnection, RelayRequest};
use crate::sas::{self, Right};
use crate::store::{Meta, Store};

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

async fn dispatch(State(bus): State<Arc<Bus>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_string();
    let segments: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let query = query_pairs(parts.uri.query());
    let limit = bus.config.max_message_bytes.max(1 << 20) * 4;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                403,
                &format!("The request body exceeds the limit of {limit} bytes"),
            );
        }
    };
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
    let rest: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let auth = header_str(&parts.headers, "authorization");
    let node = node.clone();
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
    match (m.clone(), rest.as_slice()) {
        (Method::POST, ["messages"]) if node.target.is_some() || node.hub.is_some() => {
            let right = bus.authorize(auth, &parts.headers, &raw_path, Right::Send);
            if let Err(r) = right {
                return r;
            }
            if let Some(t) = &node.target {
                sb_send(&bus, t, &parts.headers, body).await
            } else {
                eh_send(
                    &bus,
                    node.hub.as_ref().expect("guarded"),
                    Route::Any,
                    &parts.headers,
                    body,
                )
                .await
            }
        }
        (Method::POST, ["partitions", p, "messages"])
        | (Method::POST, ["publishers" | "publisher", p, "messages"])
            if node.hub.is_some() =>
        {
            if let Err(r) = bus.authorize(auth, &parts.headers, &raw_path, Right::Send) {
                return r;
            }
            let hub = node.hub.as_ref().expect("guarded");
            let route = if rest[0] == "partitions" {
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
            eh_send(&bus, hub, route, &parts.headers, body).await
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
        (_, ["messages", id, token]) if node.receiver.is_some() => {
            if let Err(r) = bus.authorize(auth, &parts.headers, &raw_path, Right::Listen) {
                return r;
            }
            let e = node.receiver.as_ref().expect("guarded");
            sb_lock_op(&bus, e, m, id, token).await
        }
        _ => error(400, &format!("Unsupported operation {m} on '{raw_path}'")),
    }
}

// ---------- Service Bus ----------

/// Headers that are HTTP or protocol plumbing, never custom properties.
fn is_standard_header(name: &str) -> bool {
    const STD: &[&str] = &[
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "content-language",
        "content-md5",
        "content-range",
        "content-location",
        "authorization",
        "brokerproperties",
        "connection",
        "keep-alive",
        "expect",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-charset",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "date",
        "cache-control",
        "pragma",
        "via",
        "warning",
        "cookie",
        "origin",
        "referer",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "max-forwards",
        "proxy-authorization",
        "proxy-connection",
        "servicebusauthorization",
        "forwarded",
    ];
    STD.contains(&name)
        || name.starts_with("x-ms-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("sec-")
}

/// Parses one message from a single-send request.
fn single_message(headers: &HeaderMap, body: Bytes) -> Result<NewMessage, String> {
    let broker = match headers.get("brokerproperties") {
        Some(v) => BrokerProps::parse_header(
            v.to_str()
                .map_err(|_| "BrokerProperties header is not ASCII")?,
        )?,
        None => BrokerProps::default(),
    };
    let mut user = Vec::new();
    for (name, value) in headers {
        let n = name.as_str();
        if is_standard_header(n) {
            continue;
        }
        let v = value
            .to_str()
            .map_err(|_| format!("custom property header '{n}' has a non-ASCII value"))?;
        user.push((
            n.to_string(),
            PropValue::from_header(v).map_err(|e| format!("custom property '{n}': {e}"))?,
        ));
    }
    let content_type = header_str(headers, "content-type").map(str::to_string);
    Ok(NewMessage {
        meta: Meta {
            content_type,
            broker,
            user,
        },
        body,
    })
}

/// Parses a batch body: `[{"Body": "...", "BrokerProperties": {...}, "UserProperties": {...}}, ...]`.
/// weft accepts an optional per-item `ContentType` string (Azure's batch has no per-message content type).
fn batch_messages(body: &[u8]) -> Result<Vec<NewMessage>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("batch body is not valid JSON: {e}"))?;
    let Value::Array(items) = v else {
        return Err("batch body must be a JSON array of {\"Body\", \"BrokerProperties\", \"UserProperties\"}".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = item
                .as_object()
                .ok_or_else(|| format!("batch item {i} is not a JSON object"))?;
            let body = match obj.get("Body") {
                Some(Value::String(s)) => Bytes::from(s.clone()),
                Some(_) => return Err(format!("batch item {i}: Body must be a string")),
                None => return Err(format!("batch item {i}: Body is missing")),
            };
            let broker = match obj.get("BrokerProperties") {
                Some(v) if !v.is_null() => {
                    BrokerProps::parse(v).map_err(|e| format!("batch item {i}: {e}"))?
                }
                _ => BrokerProps::default(),
            };
            let user = match obj.get("UserProperties") {
                Some(v) if !v.is_null() => {
                    user_props_from_json(v).map_err(|e| format!("batch item {i}: {e}"))?
                }
                _ => vec![],
            };
            let content_type = match obj.get("ContentType") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(_) => return Err(format!("batch item {i}: ContentType must be a string")),
            };
            Ok(NewMessage {
                meta: Meta {
                    content_type,
                    broker,
                    user,
                },
                body,
            })
        })
        .collect()
}

fn is_batch(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type")
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case(BATCH_CONTENT_TYPE))
}

fn parse_messages(
    bus: &Bus,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Vec<NewMessage>, Response> {
    let max = bus.config.max_message_bytes;
    let msgs = if is_batch(headers) {
        if body.len() > max {
            return Err(error(
                403,
                &format!(
                    "The batch of {} bytes exceeds the maximum message size of {max} bytes",
                    body.len()
                ),
            ));
        }
        batch_messages(&body)
    } else {
        single_message(headers, body).map(|m| vec![m])
    }
    .map_err(|e| error(400, &e))?;
    for m in &msgs {
        let size = m.body.len() + serde_json::to_string(&m.meta).map_or(0, |s| s.len());
        if size > max {
            return Err(error(
                403,
                &format!(
                    "The received message (size {size} bytes including properties) exceeds the maximum message size of {max} bytes"
                ),
            ));
        }
    }
    Ok(msgs)
}

async fn sb_send(bus: &Bus, target: &SendTarget, headers: &HeaderMap, body: Bytes) -> Response {
    let msgs = match parse_messages(bus, headers, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match target.send(&bus.store, msgs).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(SendError::QuotaExceeded(d)) => error(403, &format!("QuotaExceeded: {d}")),
        Err(SendError::Store(e)) => error(500, &format!("The message could not be stored: {e:#}")),
    }
}

/// `?timeout=N` seconds (default 60, at most 3600).
fn timeout_ms(query: &[(String, String)]) -> Result<i64, Response> {
    match query_get(query, "timeout") {
        None => Ok(60_000),
        Some(t) => match t.parse::<u64>() {
            Ok(s) => Ok((s.min(3600) * 1000) as i64),
            Err(_) => Err(error(
                400,
                &format!("timeout '{t}' is not a whole number of seconds"),
            )),
        },
    }
}

async fn sb_receive(
    bus: &Bus,
    e: &Entity,
    mode: Mode,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Response {
    let timeout = match timeout_ms(query) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match e
        .receive(&bus.store, mode, timeout, bus.shutdown.clone())
        .await
    {
        Ok(Some(d)) => delivered_response(e, d, headers),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => error(500, &format!("receive failed: {err:#}")),
    }
}

/// 200 (receive-and-delete) or 201 + Location (peek-lock) with BrokerProperties and custom properties.
fn delivered_response(e: &Entity, d: Delivered, req_headers: &HeaderMap) -> Response {
    let rec = &d.rec;
    let mut bp = rec.meta.broker.to_map();
    bp.insert("DeliveryCount".into(), rec.delivery_count.into());
    bp.insert("EnqueuedSequenceNumber".into(), 0.into());
    bp.insert(
        "EnqueuedTimeUtc".into(),
        http_date(rec.enqueued_ms / 1000).into(),
    );
    bp.insert("SequenceNumber".into(), rec.seq.into());
    bp.insert("State".into(), "Active".into());
    if rec.expires_ms != i64::MAX && rec.meta.broker.time_to_live.is_none() {
        bp.insert(
            "TimeToLive".into(),
            ((rec.expires_ms - rec.visible_ms) as f64 / 1000.0).into(),
        );
    }
    let mut resp = Response::new(Body::from(rec.body.clone()));
    let h = resp.headers_mut();
    if let Some((token, until)) = d.lock {
        bp.insert("LockToken".into(), token.to_string().into());
        bp.insert("LockedUntilUtc".into(), http_date(until / 1000).into());
        let host = header_str(req_headers, "host").unwrap_or("localhost");
        let loc = format!("http://{host}/{}/messages/{}/{token}", e.path, rec.seq);
        if let Ok(v) = HeaderValue::from_str(&loc) {
            h.insert(header::LOCATION, v);
        }
        *resp.status_mut() = StatusCode::CREATED;
    }
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ascii_json(&Value::Object(bp))) {
        h.insert("brokerproperties", v);
    }
    if let Some(ct) = rec
        .meta
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(header::CONTENT_TYPE, ct);
    }
    let mut all = Map::new();
    for (k, v) in &rec.meta.user {
        all.insert(k.clone(), v.to_json());
        // Azure's form where the name is a legal header; names like Dataverse claim URIs are only in UserProperties.
        if let (Ok(n), Ok(val)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v.to_header()),
        ) && !is_standard_header(n.as_str())
        {
            h.append(n, val);
        }
    }
    if !all.is_empty()
        && let Ok(v) = HeaderValue::from_str(&ascii_json(&Value::Object(all)))
    {
        h.insert("userproperties", v);
    }
    resp
}

async fn sb_lock_op(bus: &Bus, e: &Entity, m: &Method, id: &str, token: &str) -> Response {
    let not_found = || {
        error(
            404,
            &format!(
                "The lock supplied is invalid: no locked message '{id}' with lock token '{token}' (it may have expired or been settled)"
            ),
        )
    };
    let res = match *m {
        Method::DELETE => e.complete(&bus.store, id, token).await,
        Method::PUT => e.abandon(&bus.store, id, token).await,
        Method::POST => {
            return match e.renew(&bus.store, id, token) {
                Ok(until) => {
                    let bp = serde_json::json!({ "LockToken": token, "LockedUntilUtc": http_date(until / 1000) });
                    (StatusCode::OK, [("brokerproperties", bp.to_string())]).into_response()
                }
                Err(LockError::NotFound) => not_found(),
            };
        }
        _ => {
            return error(
                405,
                "Use DELETE (complete), PUT (unlock) or POST (renew lock) on a lock URI",
            );
        }
    };
    match res {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(LockError::NotFound)) => not_found(),
        Err(err) => error(500, &format!("lock operation failed: {err:#}")),
    }
}

// ---------- Event Hubs ----------

async fn eh_send(
    bus: &Bus,
    hub: &Hub,
    route: Route<'_>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let msgs = match parse_messages(bus, headers, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut events = Vec::with_capacity(msgs.len());
    for mut m in msgs {
        let Some(p) = hub.pick(route, &m.meta) else {
            return error(400, "partition does not exist");
        };
        m.meta
            .broker
            .message_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().simple().to_string());
        events.push((p, m.meta, m.body));
    }
    match hub.send(&bus.store, events).await {
        Ok(placed) => {
            let mut r = StatusCode::CREATED.into_response();
            // weft extension: where the events landed, e.g. "0:12,3:4".
            let v = placed
                .iter()
                .map(|(p, o)| format!("{p}:{o}"))
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert("x-weft-partition-offsets", v);
            }
            r
        }
        Err(e) => error(500, &format!("The event could not be stored: {e:#}")),
    }
}

async fn eh_read(bus: &Bus, hub: &Hub, p: &str, query: &[(String, String)]) -> Response {
    let Some(p) = p
        .parse::<usize>()
        .ok()
        .filter(|p| *p < hub.partitions.len())
    else {
        return error(
            400,
            &format!("Partition '{p}' does not exist in event hub '{}'", hub.name),
        );
    };
    let num = |name: &str, default: u64| -> Result<u64, Response> {
        query_get(query, name).map_or(Ok(default), |v| {
            v.parse::<u64>()
                .map_err(|_| error(400, &format!("{name} '{v}' is not a non-negative integer")))
        })
    };
    let (offset, max) = match (num("offset", 0), num("max", 100)) {
        (Ok(o), Ok(m)) => (o, m.clamp(1, 1000) as usize),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let timeout = match query_get(query, "timeout") {
        None => 0,
        Some(_) => match timeout_ms(query) {
            Ok(t) => t,
            Err(r) => return r,
        },
    };
    match hub.read(&bus.store, p, offset, max, timeout).await {
        Ok(recs) => {
            let events: Vec<Value> = recs
                .iter()
                .map(|r| {
                    let user: Map<String, Value> = r.meta.user.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                    let mut o = serde_json::json!({
                        "Offset": r.seq,
                        "SequenceNumber": r.seq,
                        "EnqueuedTimeUtc": http_date(r.enqueued_ms / 1000),
                        "BrokerProperties": Value::Object(r.meta.broker.to_map()),
                        "UserProperties": user,
                        "ContentType": r.meta.content_type,
                        "BodyBase64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &r.body),
                    });
                    if let Ok(s) = std::str::from_utf8(&r.body) {
                        o["Body"] = Value::String(s.to_string());
                    }
                    o
                })
                .collect();
            let next = recs.last().map_or(offset, |r| r.seq + 1);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        HeaderName::from_static("x-weft-next-offset"),
                        next.to_string(),
                    ),
                ],
                Value::Array(events).to_string(),
            )
                .into_response()
        }
        Err(e) => error(500, &format!("read failed: {e:#}")),
    }
}

// ---------- Relay ----------

/// Headers never forwarded to a listener (RFC 7230 connection headers and relay auth).
fn is_hop_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "content-length"
            | "host"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "close"
            | "keep-alive"
            | "proxy-connection"
            | "servicebusauthorization"
    )
}

async fn relay_send(
    bus: &Bus,
    hc: Arc<HybridConnection>,
    method: &Method,
    uri: &axum::http::Uri,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::CONNECT {
        return error(400, "CONNECT cannot be relayed");
    }
    let pairs = query_pairs(uri.query());
    // Precedence per the protocol: sb-hc-token query, ServiceBusAuthorization header, then Authorization.
    let from_query = query_get(&pairs, "sb-hc-token").map(str::to_string);
    let from_sba = header_str(headers, "servicebusauthorization").map(str::to_string);
    let used_authorization = from_query.is_none() && from_sba.is_none();
    let token = from_query
        .or(from_sba)
        .or_else(|| header_str(headers, "authorization").map(str::to_string));
    if let Err(r) = bus.authorize(token.as_deref(), headers, path, Right::Send) {
        return r;
    }
    let raw_query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("sb-hc-"))
        .collect();
    let target = if raw_query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", raw_query.join("&"))
    };
    let mut fwd = Map::new();
    for (k, v) in headers {
        let n = k.as_str();
        if is_hop_header(n)
            || (n == "authorization" && used_authorization && !bus.config.sas_policies.is_empty())
        {
            continue;
        }
        if let Ok(v) = v.to_str() {
            fwd.insert(n.to_string(), Value::String(v.to_string()));
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = RelayRequest {
        id: uuid::Uuid::new_v4().to_string(),
        method: method.to_string(),
        target,
        headers: fwd,
        body,
        reply: tx,
    };
    if hc.dispatch(req).await.is_err() {
        return error(
            502,
            &format!(
                "No listener is connected to hybrid connection '{}'",
                hc.name
            ),
        );
    }
    let wait = std::time::Duration::from_secs_f64(bus.config.relay_timeout_secs);
    match tokio::time::timeout(wait, rx).await {
        Err(_) => error(
            504,
            &format!(
                "The listener on '{}' did not answer within {} s",
                hc.name, bus.config.relay_timeout_secs
            ),
        ),
        Ok(Err(_)) => error(
            502,
            &format!(
                "The listener on '{}' disconnected before answering",
                hc.name
            ),
        ),
        Ok(Ok(r)) => {
            // Listeners may not answer 502 or 504 (those mean "relay problem" to senders).
            let status = match r.status {
                502 | 504 => 500,
                s => s,
            };
            let mut resp = Response::new(Body::from(r.body));
            *resp.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let h = resp.headers_mut();
            for (k, v) in r.headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) && !is_hop_header(n.as_str())
                {
                    h.append(n, v);
                }
            }
            let host = header_str(headers, "host")
                .unwrap_or("localhost")
                .to_string();
            if let Ok(v) = HeaderValue::from_str(&format!("1.1 {host}")) {
                h.append(header::VIA, v);
            }
            resp
        }
    }
}

async fn relay_listen(
    State(bus): State<Arc<Bus>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let full = uri.path().to_string();
    let segments: Vec<String> = full
        .trim_start_matches("/$hc")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let Some(hc) = bus.resolve(&segments).and_then(|(n, _)| n.relay.clone()) else {
        return error(
            404,
            &format!("Hybrid connection '{}' does not exist", segments.join("/")),
        );
    };
    let pairs = query_pairs(uri.query());
    match query_get(&pairs, "sb-hc-action") {
        Some("listen") => {}
        Some(a) => {
            return error(
                400,
                &format!(
                    "sb-hc-action '{a}' is not supported by weft bus (only 'listen'; no rendezvous)"
                ),
            );
        }
        None => return error(400, "sb-hc-action is required (sb-hc-action=listen)"),
    }
    let resource_path = format!("/{}", hc.name);
    let token = query_get(&pairs, "sb-hc-token")
        .map(str::to_string)
        .or_else(|| header_str(&headers, "servicebusauthorization").map(str::to_string));
    let policies = bus.config.sas_policies.clone();
    let host = header_str(&headers, "host")
        .unwrap_or("localhost")
        .to_string();
    let resource = format!("http://{host}{resource_path}");
    let expiry = if policies.is_empty() {
        u64::MAX
    } else {
        match token
            .as_deref()
            .map(|t| crate::relay::check_listen(t, &policies, &resource))
        {
            Some(Ok(t)) => t.expiry,
            Some(Err(e)) => return error(e.status(), &e.to_string()),
            None => return error(401, &sas::SasError::Missing.to_string()),
        }
    };
    if !hc.has_room() {
        return error(
            403,
            "The listener quota (25) for this hybrid connection is reached",
        );
    }
    let Ok(ws) = ws else {
        return error(
            400,
            "The listener control channel must be a WebSocket upgrade",
        );
    };
    let shutdown = bus.shutdown.clone();
    ws.on_upgrade(move |socket| async move {
        let check = move |t: &str| {
            if policies.is_empty() {
                sas::SasToken::parse(t)
            } else {
                crate::relay::check_listen(t, &policies, &resource)
            }
        };
        hc.serve_listener(socket, expiry, check, shutdown).await;
    })
}
