//! Relay Hybrid Connections: HTTP senders handed to WebSocket listeners over the control channel.
//!
//! Owns the listener registry and the control-channel protocol (`request` text frame + binary body frame,
//! `response` text frame + optional binary body, `renewToken`), following Microsoft's Hybrid Connections
//! protocol. Not implemented: rendezvous sockets (`accept`, `sb-hc-action=connect`), so bodies of any size
//! travel on the control channel. It does not check SAS for senders (the server does) except `renewToken`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::sas::{self, Right, SasPolicy};

/// A request forwarded to a listener.
pub struct RelayRequest {
    /// Request id (`request.id`).
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

/// One hybrid connection and its connected listeners.
pub struct HybridConnection {
    /// Path as configured.
    pub name: String,
    listeners: Mutex<Vec<(u64, mpsc::Sender<RelayRequest>)>>,
    next: AtomicUsize,
}

static LISTENER_IDS: AtomicU64 = AtomicU64::new(1);

/// Most listeners per hybrid connection (Azure: 25).
pub const MAX_LISTENERS: usize = 25;

impl HybridConnection {
    /// A hybrid connection with no listener.
    pub fn new(name: String) -> HybridConnection {
        HybridConnection {
            name,
            listeners: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// Hands a request to a listener (round-robin). Err(request) when none is connected.
    pub async fn dispatch(&self, req: RelayRequest) -> Result<(), RelayRequest> {
        let candidates: Vec<mpsc::Sender<RelayRequest>> = {
            let l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            l.iter().map(|(_, tx)| tx.clone()).collect()
        };
        if candidates.is_empty() {
            return Err(req);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut req = req;
        for i in 0..candidates.len() {
            match candidates[(start + i) % candidates.len()].send(req).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(r)) => req = r,
            }
        }
        Err(req)
    }

    /// Number of connected listeners.
    pub fn listener_count(&self) -> usize {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Registers a listener; None when the 25-listener quota is full.
    fn register(&self) -> Option<(u64, mpsc::Receiver<RelayRequest>)> {
        let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() >= MAX_LISTENERS {
            return None;
        }
        let id = LISTENER_IDS.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        l.push((id, tx));
        Some((id, rx))
    }

    fn unregister(&self, id: u64) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _)| *i != id);
    }

    /// Whether another listener may register.
    pub fn has_room(&self) -> bool {
        self.listener_count() < MAX_LISTENERS
    }

    /// Runs one listener's control channel until it closes, the token expires, or shutdown.
    pub async fn serve_listener(
        self: Arc<Self>,
        mut ws: WebSocket,
        token_expiry: u64,
        audience_check: impl Fn(&str) -> Result<sas::SasToken, sas::SasError> + Send,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some((id, mut rx)) = self.register() else {
            let _ = ws.send(close(1008, "listener quota (25) reached")).await;
            return;
        };
        let mut expiry = token_expiry;
        let mut pending: HashMap<String, oneshot::Sender<RelayResponse>> = HashMap::new();
        // A `response` with body:true waits for its binary frame.
        let mut awaiting_body: Option<(String, RelayResponse)> = None;
        loop {
            let now = crate::props::now_ms() / 1000;
            let left = std::time::Duration::from_secs(expiry.saturating_sub(now as u64));
            tokio::select! {
                req = rx.recv() => {
                    let Some(req) = req else { break };
                    let head = ControlRequest {
                        request: RequestHead {
                            address: String::new(),
                            id: req.id.clone(),
                            request_target: req.target,
                            method: req.method,
                            request_headers: req.headers,
                            body: !req.body.is_empty(),
                        },
                    };
                    let text = serde_json::to_string(&head).unwrap_or_default();
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                    if !req.body.is_empty() && ws.send(Message::Binary(req.body)).await.is_err() {
                        break;
                    }
                    pending.insert(req.id, req.reply);
                }
                msg = ws.recv() => {
                    let Some(Ok(msg)) = msg else { break };
                    match msg {
                        Message::Text(t) => match serde_json::from_str::<ListenerMessage>(t.as_str()) {
                            Ok(ListenerMessage { response: Some(r), .. }) => {
                                let resp = RelayResponse {
                                    status: r.status_code.as_u16(),
                                    headers: r.response_headers.iter()
                                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                                        .collect(),
                                    body: Bytes::new(),
                                };
                                if r.body {
                                    awaiting_body = Some((r.request_id, resp));
                                } else if let Some(tx) = pending.remove(&r.request_id) {
                                    let _ = tx.send(resp);
                                }
                            }
                            Ok(ListenerMessage { renew_token: Some(r), .. }) => {
                                match audience_check(&r.token) {
                                    Ok(t) => expiry = t.expiry,
                                    Err(e) => {
                                        let _ = ws.send(close(1008, &e.to_string())).await;
                                        break;
                                    }
                                }
                            }
                            _ => {
                                let _ = ws.send(close(1008, "unrecognised control message")).await;
                                break;
                            }
                        },
                        Message::Binary(b) => {
                            if let Some((rid, mut resp)) = awaiting_body.take() {
                                resp.body = b;
                                if let Some(tx) = pending.remove(&rid) {
                                    let _ = tx.send(resp);
                                }
                            }
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                _ = tokio::time::sleep(left) => {
                    let _ = ws.send(close(1008, "The security token has expired")).await;
                    break;
                }
                _ = shutdown.changed() => {
                    let _ = ws.send(close(1001, "bus shutting down")).await;
                    break;
                }
            }
        }
        self.unregister(id);
    }
}

fn close(code: u16, reason: &str) -> Message {
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

/// Head of a forwarded request (field names per the protocol).
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RequestHead {
    /// Rendezvous address; always empty here (no rendezvous support).
    #[serde(default)]
    pub address: String,
    /// Request id.
    pub id: String,
    /// Path and query (sb-hc-* stripped).
    pub request_target: String,
    /// Method.
    pub method: String,
    /// Forwarded headers.
    #[serde(default)]
    pub request_headers: Map<String, Value>,
    /// Whether a binary body frame follows.
    pub body: bool,
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

/// Verifies a listener token for `resource` with the Listen right.
pub fn check_listen(
    token: &str,
    policies: &[SasPolicy],
    resource: &str,
) -> Result<sas::SasToken, sas::SasError> {
    let now = (crate::props::now_ms() / 1000) as u64;
    sas::authorize(Some(token), policies, resource, Right::Listen, now)
}
