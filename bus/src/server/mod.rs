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
pub(crate) mod manage;
mod relay_http;
mod servicebus;

pub use conn::{Limits, serve};
pub use servicebus::USER_PROPERTIES_REQUEST;

use eventhubs::{eh_read, eh_send};
use relay_http::{relay_listen, relay_send};
use servicebus::{sb_lock_op, sb_receive, sb_send};

use crate::broker::{Entity, Filter, Mode, SendTarget, Settings};
use crate::config::{BusConfig, QueueConfig, SubscriptionConfig, TopicConfig};
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

/// A Service Bus entity's definition, as the management API shows and changes it.
#[derive(Clone, Debug)]
pub(crate) struct Def {
    pub(crate) kind: DefKind,
    /// From the configuration (weft.toml, flags, `--emulator-config`): read-only through the API.
    pub(crate) from_config: bool,
    pub(crate) created_ms: i64,
    pub(crate) updated_ms: i64,
}

/// The definition proper; a topic's subscriptions are separate [`Def`]s.
#[derive(Clone, Debug)]
pub(crate) enum DefKind {
    Queue(QueueConfig),
    Topic(TopicConfig),
    Subscription {
        topic: String,
        sub: SubscriptionConfig,
    },
}

/// Entities by store key (lower-cased path), changed by the management API.
#[derive(Default)]
pub(crate) struct Registry {
    nodes: HashMap<String, Node>,
    /// Service Bus queues, topics and subscriptions, sorted by store key (the listing order).
    pub(crate) defs: std::collections::BTreeMap<String, Def>,
}

/// Shared server state.
pub struct Bus {
    store: Store,
    config: BusConfig,
    registry: std::sync::RwLock<Registry>,
    /// Serialises management changes (create/update/delete and their store commits) so two requests cannot
    /// both create the same entity.
    manage_lock: tokio::sync::Mutex<()>,
    shutdown: watch::Receiver<bool>,
}

fn ms(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// A queue's delivery settings.
pub(crate) fn queue_settings(q: &QueueConfig) -> Settings {
    Settings {
        lock_ms: ms(q.lock_duration_secs),
        default_ttl_ms: q.default_ttl_secs.map(ms),
        max_delivery: q.max_delivery_count,
        dead_letter_on_expiration: q.dead_letter_on_expiration,
        max_bytes: q.max_size_mb.saturating_mul(1024 * 1024),
    }
}

/// A subscription's delivery settings (the quota is the topic's).
pub(crate) fn sub_settings(t: &TopicConfig, sc: &SubscriptionConfig) -> Settings {
    Settings {
        lock_ms: ms(sc.lock_duration_secs),
        default_ttl_ms: sc.default_ttl_secs.map(ms),
        max_delivery: sc.max_delivery_count,
        dead_letter_on_expiration: sc.dead_letter_on_expiration,
        max_bytes: t.max_size_mb.saturating_mul(1024 * 1024),
    }
}

/// A subscription's rules as the broker applies them.
pub(crate) fn sub_filters(sc: &SubscriptionConfig) -> anyhow::Result<Vec<Filter>> {
    Ok(sc
        .filters()?
        .into_iter()
        .map(|f| f.map_or(Filter::Never, Filter::Match))
        .collect())
}

fn new_receiver(path: String, s: Settings, filters: Vec<Filter>) -> Arc<Entity> {
    let dlq = Arc::new(Entity::dead_letter(&path, s.lock_ms));
    let e = Entity::new(path, s, Some(dlq), Default::default());
    e.set_filters(filters);
    Arc::new(e)
}

/// Messages and counters loaded at start, handed to entities as they are built.
struct Restore {
    loaded: crate::store::Loaded,
}

impl Restore {
    fn target(
        &mut self,
        name: String,
        recv: Vec<Arc<Entity>>,
        window: Option<i64>,
        ttl: Option<i64>,
        is_topic: bool,
    ) -> Arc<SendTarget> {
        let key = name.to_ascii_lowercase();
        let next = self.loaded.next_seq.get(&key).copied().unwrap_or(1);
        let dedup = self.loaded.dedup.remove(&key).unwrap_or_default();
        let target = Arc::new(SendTarget::new(
            name, recv, window, ttl, is_topic, next, dedup,
        ));
        for r in target.receivers() {
            self.receiver(&target, &r);
        }
        target
    }

    fn receiver(&mut self, target: &SendTarget, r: &Arc<Entity>) {
        for e in [Some(r.clone()), r.dlq.clone()].into_iter().flatten() {
            if let Some(recs) = self.loaded.messages.remove(&*e.key) {
                if let Some(last) = recs.last() {
                    target.observe_seq(last.seq);
                }
                let deferred = self.loaded.deferred.remove(&*e.key).unwrap_or_default();
                e.restore(recs, &deferred);
            }
        }
    }
}

impl Registry {
    fn insert_receiver(&mut self, e: &Arc<Entity>) {
        if let Some(d) = &e.dlq {
            self.nodes.entry(d.key.to_string()).or_default().receiver = Some(d.clone());
        }
        self.nodes.entry(e.key.to_string()).or_default().receiver = Some(e.clone());
    }

    /// Adds a queue (its node, receiver and definition).
    fn add_queue(&mut self, q: &QueueConfig, def: Def, restore: Option<&mut Restore>) {
        let e = new_receiver(
            q.name.clone(),
            queue_settings(q),
            vec![Filter::Match(Default::default())],
        );
        let window = q.duplicate_detection_window_secs.map(ms);
        let target = match restore {
            Some(r) => r.target(q.name.clone(), vec![e.clone()], window, None, false),
            None => Arc::new(SendTarget::new(
                q.name.clone(),
                vec![e.clone()],
                window,
                None,
                false,
                1,
                vec![],
            )),
        };
        let key = q.name.to_ascii_lowercase();
        self.nodes.entry(key.clone()).or_default().target = Some(target);
        self.insert_receiver(&e);
        self.defs.insert(key, def);
    }

    /// Adds a topic without subscriptions.
    fn add_topic(&mut self, t: &TopicConfig, def: Def, restore: Option<&mut Restore>) {
        let window = t.duplicate_detection_window_secs.map(ms);
        let ttl = t.default_ttl_secs.map(ms);
        let target = match restore {
            Some(r) => r.target(t.name.clone(), vec![], window, ttl, true),
            None => Arc::new(SendTarget::new(
                t.name.clone(),
                vec![],
                window,
                ttl,
                true,
                1,
                vec![],
            )),
        };
        let key = t.name.to_ascii_lowercase();
        self.nodes.entry(key.clone()).or_default().target = Some(target);
        self.defs.insert(key, def);
    }

    /// Adds a subscription to an existing topic.
    fn add_subscription(
        &mut self,
        t: &TopicConfig,
        sc: &SubscriptionConfig,
        def: Def,
        restore: Option<&mut Restore>,
    ) -> anyhow::Result<()> {
        let tkey = t.name.to_ascii_lowercase();
        let target = self
            .nodes
            .get(&tkey)
            .and_then(|n| n.target.clone())
            .ok_or_else(|| anyhow::anyhow!("topic '{}' does not exist", t.name))?;
        let path = format!("{}/subscriptions/{}", t.name, sc.name);
        let e = new_receiver(path, sub_settings(t, sc), sub_filters(sc)?);
        if let Some(r) = restore {
            r.receiver(&target, &e);
        }
        target.add_receiver(e.clone());
        self.insert_receiver(&e);
        self.defs.insert(e.key.to_string(), def);
        Ok(())
    }

    /// Removes a queue, topic (with its subscriptions) or subscription; returns the store keys whose data
    /// goes with it. Receivers and senders still holding it see it deleted.
    pub(crate) fn remove(&mut self, key: &str) -> Vec<String> {
        let mut gone = Vec::new();
        let Some(def) = self.defs.remove(key) else {
            return gone;
        };
        let node = self.nodes.remove(key).unwrap_or_default();
        match &def.kind {
            DefKind::Subscription { topic, .. } => {
                if let Some(t) = self
                    .nodes
                    .get(&topic.to_ascii_lowercase())
                    .and_then(|n| n.target.clone())
                {
                    t.remove_receiver(key);
                }
            }
            DefKind::Queue(_) | DefKind::Topic(_) => {
                if let Some(t) = &node.target {
                    t.mark_deleted();
                }
                gone.push(key.to_string());
            }
        }
        let subs: Vec<String> = self
            .defs
            .iter()
            .filter(|(_, d)| matches!(&d.kind, DefKind::Subscription { topic, .. } if topic.eq_ignore_ascii_case(key)))
            .map(|(k, _)| k.clone())
            .collect();
        for s in subs {
            gone.extend(self.remove(&s));
        }
        if let Some(e) = &node.receiver {
            e.mark_deleted();
            gone.push(e.key.to_string());
            if let Some(d) = &e.dlq {
                self.nodes.remove(&*d.key);
                gone.push(d.key.to_string());
            }
        }
        gone
    }
}

impl Bus {
    /// Builds every configured entity and every entity the management API created (stored), and restores
    /// stored messages into them.
    pub fn new(config: BusConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<Bus> {
        let (store, loaded) = Store::open(&config.data)?;
        let stored = loaded.entities.clone();
        let mut restore = Restore { loaded };
        let mut reg = Registry::default();
        let now = now_ms();
        let cfg_def = |kind| Def {
            kind,
            from_config: true,
            created_ms: now,
            updated_ms: now,
        };
        for q in &config.queues {
            reg.add_queue(q, cfg_def(DefKind::Queue(q.clone())), Some(&mut restore));
        }
        for t in &config.topics {
            let bare = TopicConfig {
                subscriptions: vec![],
                ..t.clone()
            };
            reg.add_topic(t, cfg_def(DefKind::Topic(bare)), Some(&mut restore));
            for sc in &t.subscriptions {
                let kind = DefKind::Subscription {
                    topic: t.name.clone(),
                    sub: sc.clone(),
                };
                reg.add_subscription(t, sc, cfg_def(kind), Some(&mut restore))?;
            }
        }
        for h in &config.event_hubs {
            let hub = Arc::new(Hub::new(
                h.name.clone(),
                h.partitions,
                ms(h.retention_hours * 3600.0),
                &store,
            )?);
            reg.nodes
                .entry(h.name.to_ascii_lowercase())
                .or_default()
                .hub = Some(hub);
        }
        for r in &config.relays {
            reg.nodes
                .entry(r.name.to_ascii_lowercase())
                .or_default()
                .relay = Some(Arc::new(HybridConnection::new(r.name.clone())));
        }
        for se in stored {
            if let Err(e) = manage::restore_entity(&mut reg, &se, &mut restore) {
                tracing::warn!(
                    entity = se.key,
                    "entity created through the management API is not served: {e:#}"
                );
                eprintln!(
                    "weft bus: entity '{}' created through the management API is not served: {e:#}",
                    se.key
                );
            }
        }
        for (entity, recs) in &restore.loaded.messages {
            tracing::warn!(
                entity,
                count = recs.len(),
                "stored messages for an entity that is not configured are kept but not served"
            );
        }
        Ok(Bus {
            store,
            config,
            registry: std::sync::RwLock::new(reg),
            manage_lock: tokio::sync::Mutex::new(()),
            shutdown,
        })
    }

    fn reg(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn reg_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    /// `https` when the bus serves TLS, else `http` (management ids, lock URIs).
    pub fn scheme(&self) -> &'static str {
        if self.config.tls || self.config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
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
        self.reg()
            .nodes
            .get(&path.to_ascii_lowercase())?
            .target
            .clone()
    }

    /// The queue, subscription (`topic/subscriptions/sub`) or dead-letter subqueue (`…/$DeadLetterQueue`)
    /// named `path` (case-insensitive), for receives.
    pub fn receiver(&self, path: &str) -> Option<Arc<Entity>> {
        self.reg()
            .nodes
            .get(&path.to_ascii_lowercase())?
            .receiver
            .clone()
    }

    /// The Event Hub named `name` (case-insensitive).
    pub fn event_hub(&self, name: &str) -> Option<Arc<Hub>> {
        self.reg()
            .nodes
            .get(&name.to_ascii_lowercase())?
            .hub
            .clone()
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
    fn resolve<'a>(&self, segments: &'a [String]) -> Option<(Node, &'a [String])> {
        let reg = self.reg();
        (1..=segments.len()).rev().find_map(|k| {
            let key = segments[..k].join("/").to_ascii_lowercase();
            reg.nodes.get(&key).map(|n| (n.clone(), &segments[k..]))
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
    let resolved = bus.resolve(&segments);
    // The management API (Atom): GET/PUT/DELETE naming no message operation, on a Service Bus entity or
    // with the `api-version` every management client sends; Event Hubs and relay paths keep their routes.
    let manage = manage::is_management(&parts.method, &segments)
        && match &resolved {
            Some((n, _)) => n.hub.is_none() && n.relay.is_none(),
            None => true,
        }
        && (query_get(&query, "api-version").is_some()
            || resolved.as_ref().is_some_and(|(n, rest)| {
                rest.is_empty() && (n.target.is_some() || n.receiver.is_some())
            }));
    if manage {
        let lower: [&str; 0] = [];
        let body = match read_body(&bus, &Node::default(), &parts.method, &lower, body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        return manage::handle(
            &bus,
            &parts.method,
            &segments,
            &raw_path,
            &query,
            &parts.headers,
            body,
        )
        .await;
    }
    let Some((node, rest)) = resolved else {
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
