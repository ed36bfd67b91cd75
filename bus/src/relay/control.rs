//! A listener's control channel: hands it requests (whole, or announced by their rendezvous address when
//! larger than [`CONTROL_CHANNEL_LIMIT`]) and WebSocket senders to accept, takes its answers and
//! `renewToken`s, and closes it at token expiry or shutdown.
//!
//! Owns the control channel's loop only; rendezvous sockets are served by [`super::rendezvous`].

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};

use super::{
    AcceptHead, CONTROL_CHANNEL_LIMIT, ControlAccept, ControlRequest, HybridConnection,
    ListenerMessage, ListenerWork, Pending, RelayResponse, RemoteEndpoint, RequestHead, close,
    rendezvous_address,
};
use crate::sas;

impl HybridConnection {
    /// Runs one listener's control channel until it closes, the token expires, or shutdown. `ws_base`
    /// (`ws://host:port`) is how the listener reached the bus: its rendezvous addresses start with it.
    pub async fn serve_listener(
        self: Arc<Self>,
        mut ws: WebSocket,
        ws_base: String,
        token_expiry: u64,
        audience_check: impl Fn(&str) -> Result<sas::SasToken, sas::SasError> + Send,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some((id, mut rx)) = self.register() else {
            let _ = ws.send(close(1008, "listener quota (25) reached")).await;
            return;
        };
        let mut expiry = token_expiry;
        // The requests handed to this listener: answered ones leave the set; the rest are dropped when the
        // channel ends, so their senders hear "disconnected before answering" at once.
        let mut mine: HashSet<String> = HashSet::new();
        // A `response` with body:true waits for its binary frame.
        let mut awaiting_body: Option<(String, RelayResponse)> = None;
        loop {
            let now = crate::props::now_ms() / 1000;
            let left = std::time::Duration::from_secs(expiry.saturating_sub(now as u64));
            tokio::select! {
                work = rx.recv() => {
                    let Some(work) = work else { break };
                    let sent = match work {
                        ListenerWork::Request(req) => {
                            let rid = req.id.clone();
                            let sent = self.hand_request(&mut ws, &ws_base, req).await;
                            mine.insert(rid);
                            sent
                        }
                        ListenerWork::Accept(offer) => {
                            let head = ControlAccept {
                                accept: AcceptHead {
                                    address: rendezvous_address(&ws_base, &self.name, "accept", &offer.id),
                                    id: offer.id,
                                    connect_headers: offer.headers,
                                    remote_endpoint: offer.remote.map(|a| RemoteEndpoint {
                                        address: a.ip().to_string(),
                                        port: a.port(),
                                    }),
                                },
                            };
                            let text = serde_json::to_string(&head).unwrap_or_default();
                            ws.send(Message::text(text)).await.is_ok()
                        }
                    };
                    if !sent {
                        break;
                    }
                }
                msg = ws.recv() => {
                    let Some(Ok(msg)) = msg else { break };
                    match msg {
                        Message::Text(t) => match serde_json::from_str::<ListenerMessage>(t.as_str()) {
                            Ok(ListenerMessage { response: Some(r), .. }) => {
                                let resp = r.to_response();
                                if r.body {
                                    awaiting_body = Some((r.request_id, resp));
                                } else if let Some(p) = self.take_pending(&r.request_id) {
                                    mine.remove(&r.request_id);
                                    let _ = p.reply.send(resp);
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
                                if let Some(p) = self.take_pending(&rid) {
                                    mine.remove(&rid);
                                    let _ = p.reply.send(resp);
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
        for rid in mine {
            self.take_pending(&rid);
        }
    }

    /// Sends a request on the control channel, or only its rendezvous address when head and body exceed
    /// [`CONTROL_CHANNEL_LIMIT`]; records it as pending either way. False when the channel is gone.
    async fn hand_request(
        &self,
        ws: &mut WebSocket,
        ws_base: &str,
        req: super::RelayRequest,
    ) -> bool {
        let head = RequestHead {
            address: rendezvous_address(ws_base, &self.name, "request", &req.id),
            id: req.id.clone(),
            request_target: req.target,
            method: req.method,
            request_headers: req.headers,
            body: !req.body.is_empty(),
        };
        let text = serde_json::to_string(&ControlRequest {
            request: head.clone(),
        })
        .unwrap_or_default();
        if text.len() + req.body.len() > CONTROL_CHANNEL_LIMIT {
            let announce = ControlRequest {
                request: RequestHead {
                    address: head.address.clone(),
                    id: head.id.clone(),
                    request_target: String::new(),
                    method: String::new(),
                    request_headers: Default::default(),
                    body: false,
                },
            };
            self.put_pending(
                req.id,
                Pending {
                    reply: req.reply,
                    deferred: Some((head, req.body)),
                },
            );
            let text = serde_json::to_string(&announce).unwrap_or_default();
            return ws.send(Message::text(text)).await.is_ok();
        }
        self.put_pending(
            req.id,
            Pending {
                reply: req.reply,
                deferred: None,
            },
        );
        if ws.send(Message::text(text)).await.is_err() {
            return false;
        }
        req.body.is_empty() || ws.send(Message::Binary(req.body)).await.is_ok()
    }
}
