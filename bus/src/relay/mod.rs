//! Relay Hybrid Connections: HTTP requests and WebSocket connections from senders, handed to WebSocket
//! listeners, following Microsoft's Hybrid Connections protocol.
//!
//! Owns the listener registry of one hybrid connection, the requests and connections handed out and not yet
//! taken up (keyed by the id in their rendezvous address), and the protocol's JSON frames. The control channel
//! itself is [`control`]; rendezvous sockets (large requests and answers, accepted WebSocket connections) are
//! [`rendezvous`]. It does not parse HTTP or check senders' SAS tokens (the server does), except `renewToken`.

pub mod control;
pub(crate) mod rendezvous;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::sas::{self, Right, SasPolicy};

/// Largest request or answer carried on the control channel (head and body together); anything larger
/// travels on a rendezvous socket, as the protocol prescribes.
pub const CONTROL_CHANNEL_LIMIT: usize = 64 * 1024;

/// A request forwarded to a listener.
pub struct RelayRequest {
    /// Request id (`request.id`), also the `sb-hc-id` of its rendezvous address.
    pub id: String,
    /// HTTP method.
    pub method: String,
    /// Path and query as the listener should see them (sb-hc-* stripped).
    pub target: String,
    /// Forwarded headers.
    pub headers: Map<String, Value>,
    /// Body.
    pub body: Bytes,
    /// Where the listener's answer goes.
    pub reply: oneshot::Sender<RelayResponse>,
}

/// A WebSocket sender (`sb-hc-action=connect`) waiting for a listener to accept it.
pub struct AcceptOffer {
    /// The connection's id, also the `sb-hc-id` of its accept address.
    pub id: String,
    /// The sender's handshake headers, as `accept.connectHeaders`.
    pub headers: Map<String, Value>,
    /// The sender's address, as `accept.remoteEndpoint`.
    pub remote: Option<std::net::SocketAddr>,
}

/// What a listener's control channel is handed.
pub enum ListenerWork {
    /// An HTTP request.
    Request(RelayRequest),
    /// A WebSocket connection to accept or reject.
    Accept(AcceptOffer),
}

/// A listener's answer.
#[derive(Debug)]
pub struct RelayResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// How a listener took up a WebSocket sender.
pub enum AcceptOutcome {
    /// It connected to the accept address: the two sockets are piped together.
    Accepted(Box<WebSocket>),
    /// It connected with `statusCode` (and `statusDescription`): the sender's handshake fails with them.
    Rejected(u16, String),
}

/// A request handed to a listener and not answered yet.
pub(crate) struct Pending {
    /// Where the answer goes.
    pub reply: oneshot::Sender<RelayResponse>,
    /// The request itself when it was too large for the control channel: sent on the rendezvous socket.
    pub deferred: Option<(RequestHead, Bytes)>,
}

/// One hybrid connection and its connected listeners.
pub struct HybridConnection {
    /// Path as configured.
    pub name: String,
    listeners: Mutex<Vec<(u64, mpsc::Sender<ListenerWork>)>>,
    next: AtomicUsize,
    /// Requests handed to a listener, by id, until answered on the control channel or taken by a
    /// rendezvous socket.
    pending: Mutex<HashMap<String, Pending>>,
    /// WebSocket senders waiting for their listener to connect to the accept address, by id.
    accepts: Mutex<HashMap<String, oneshot::Sender<AcceptOutcome>>>,
}

static LISTENER_IDS: AtomicU64 = AtomicU64::new(1);

/// Most listeners per hybrid connection (Azure: 25).
pub const MAX_LISTENERS: usize = 25;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HybridConnection {
    /// A hybrid connection with no listener.
    pub fn new(name: String) -> HybridConnection {
        HybridConnection {
            name,
            listeners: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            pending: Mutex::new(HashMap::new()),
            accepts: Mutex::new(HashMap::new()),
        }
    }

    /// Hands work to a listener (round-robin). Err(work) when none is connected.
    pub async fn dispatch(&self, work: ListenerWork) -> Result<(), ListenerWork> {
        let candidates: Vec<mpsc::Sender<ListenerWork>> = lock(&self.listeners)
            .iter()
            .map(|(_, tx)| tx.clone())
            .collect();
        if candidates.is_empty() {
            return Err(work);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut work = work;
        for i in 0..candidates.len() {
            match candidates[(start + i) % candidates.len()].send(work).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(w)) => work = w,
            }
        }
        Err(work)
    }

    /// Number of connected listeners.
    pub fn listener_count(&self) -> usize {
        lock(&self.listeners).len()
    }

    /// Registers a listener; None when the 25-listener quota is full.
    fn register(&self) -> Option<(u64, mpsc::Receiver<ListenerWork>)> {
        let mut l = lock(&self.listeners);
        if l.len() >= MAX_LISTENERS {
            return None;
        }
        let id = LISTENER_IDS.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        l.push((id, tx));
        Some((id, rx))
    }

    fn unregister(&self, id: u64) {
        lock(&self.listeners).retain(|(i, _)| *i != id);
    }

    /// Whether another listener may register.
    pub fn has_room(&self) -> bool {
        self.listener_count() < MAX_LISTENERS
    }

    pub(crate) fn put_pending(&self, id: String, p: Pending) {
        lock(&self.pending).insert(id, p);
    }

    /// Takes a pending request: its answer arrived, its rendezvous socket connected, or its listener left.
    pub(crate) fn take_pending(&self, id: &str) -> Option<Pending> {
        lock(&self.pending).remove(id)
    }

    /// Registers a WebSocket sender waiting for a listener; the receiver yields how it was taken up.
    pub fn offer_accept(&self, id: &str) -> oneshot::Receiver<AcceptOutcome> {
        let (tx, rx) = oneshot::channel();
        lock(&self.accepts).insert(id.to_string(), tx);
        rx
    }

    /// Takes a waiting WebSocket sender by the id of its accept address (None: unknown or expired).
    pub fn take_accept(&self, id: &str) -> Option<oneshot::Sender<AcceptOutcome>> {
        lock(&self.accepts).remove(id)
    }

    /// Forgets a WebSocket sender that stopped waiting.
    pub fn drop_accept(&self, id: &str) {
        lock(&self.accepts).remove(id);
    }
}

pub(crate) fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
}

/// `{"request": {...}}` sent to listeners.
#[derive(Serialize, Deserialize, Debug)]
pub struct ControlRequest {
    /// The request head.
    pub request: RequestHead,
}

/// Head of a forwarded request (field names per the protocol). A request too large for the control channel
/// is announced there with only `address` and `id`: the listener fetches the rest from the rendezvous address.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RequestHead {
    /// Rendezvous address (`…/$hc/{path}?sb-hc-action=request&sb-hc-id={id}`).
    #[serde(default)]
    pub address: String,
    /// Request id.
    pub id: String,
    /// Path and query (sb-hc-* stripped); empty in an address-only announcement.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_target: String,
    /// Method; empty in an address-only announcement.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Forwarded headers.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub request_headers: Map<String, Value>,
    /// Whether a binary body frame follows.
    #[serde(default)]
    pub body: bool,
}

impl RequestHead {
    /// True for an announcement carrying only the rendezvous address (the request is too large).
    pub fn is_address_only(&self) -> bool {
        self.method.is_empty()
    }
}

/// `{"accept": {...}}` sent to listeners for a WebSocket sender.
#[derive(Serialize, Deserialize, Debug)]
pub struct ControlAccept {
    /// The accept head.
    pub accept: AcceptHead,
}

/// What a listener needs to accept (or reject) a WebSocket sender.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AcceptHead {
    /// Where to connect to accept (`…/$hc/{path}?sb-hc-action=accept&sb-hc-id={id}`); add
    /// `&statusCode=…&statusDescription=…` to reject.
    pub address: String,
    /// The connection's id.
    pub id: String,
    /// The sender's handshake headers.
    #[serde(default)]
    pub connect_headers: Map<String, Value>,
    /// The sender's address and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<RemoteEndpoint>,
}

/// `remoteEndpoint` of an accept message.
#[derive(Serialize, Deserialize, Debug)]
pub struct RemoteEndpoint {
    /// IP address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// Messages a listener sends: `response` or `renewToken`.
#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerMessage {
    /// A response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseHead>,
    /// A token renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_token: Option<RenewToken>,
}

/// `renewToken` body.
#[derive(Deserialize, Serialize, Debug)]
pub struct RenewToken {
    /// The new SAS token.
    pub token: String,
}

/// `statusCode` may be a number or, as in Microsoft's own example, a string.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(untagged)]
pub enum StatusCode {
    /// `200`
    Number(u16),
    /// `"200"`
    Text(String),
}

impl StatusCode {
    /// The code; unparsable text becomes 500.
    pub fn as_u16(&self) -> u16 {
        match self {
            StatusCode::Number(n) => *n,
            StatusCode::Text(t) => t.trim().parse().unwrap_or(500),
        }
    }
}

/// Head of a listener's response.
#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ResponseHead {
    /// The `request.id` being answered.
    pub request_id: String,
    /// Status.
    pub status_code: StatusCode,
    /// Reason phrase (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    /// Headers for the sender.
    #[serde(default)]
    pub response_headers: Map<String, Value>,
    /// Whether a binary body frame follows.
    #[serde(default)]
    pub body: bool,
}

impl ResponseHead {
    /// The answer this head describes, its body still to come.
    pub(crate) fn to_response(&self) -> RelayResponse {
        RelayResponse {
            status: self.status_code.as_u16(),
            headers: self
                .response_headers
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect(),
            body: Bytes::new(),
        }
    }
}

/// Verifies a listener token for `resource` with the Listen right.
pub fn check_listen(
    token: &str,
    policies: &[SasPolicy],
    resource: &str,
) -> Result<sas::SasToken, sas::SasError> {
    let now = (crate::props::now_ms() / 1000) as u64;
    sas::authorize(Some(token), policies, resource, Right::Listen, now)
}

/// The rendezvous address of request or connection `id` on `hc`, for a listener that reached the bus at
/// `ws_base` (`ws://host:port`): `sb-hc-action` is `request` or `accept`.
pub fn rendezvous_address(ws_base: &str, hc: &str, action: &str, id: &str) -> String {
    format!("{ws_base}/$hc/{hc}?sb-hc-action={action}&sb-hc-id={id}")
}
