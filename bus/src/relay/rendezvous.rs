//! Rendezvous sockets: a listener connecting to a request's address (`sb-hc-action=request`) to fetch a
//! request too large for the control channel and/or to answer with more than it carries; and the pipe
//! between a WebSocket sender and the listener socket that accepted it (`sb-hc-action=accept`).
//!
//! Owns those two socket loops only; which request or sender an address stands for is the hybrid
//! connection's registry ([`super::HybridConnection`]), the HTTP upgrade is the server's.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};

use super::{ControlRequest, ListenerMessage, Pending, close};

/// Serves one request's rendezvous socket: sends the deferred request (head, then body) if there is one,
/// then reads the listener's `response` and body and hands them to the sender. Gives up after `wait` (the
/// sender has stopped waiting by then) and closes the socket: one request per rendezvous here.
pub(crate) async fn serve_request(mut ws: WebSocket, pending: Pending, wait: Duration) {
    let Pending { reply, deferred } = pending;
    let exchange = async {
        if let Some((head, body)) = deferred {
            let text = serde_json::to_string(&ControlRequest { request: head }).ok()?;
            ws.send(Message::text(text)).await.ok()?;
            if !body.is_empty() {
                ws.send(Message::Binary(body)).await.ok()?;
            }
        }
        let mut head = None;
        while let Some(Ok(msg)) = ws.recv().await {
            match msg {
                Message::Text(t) => {
                    let Ok(ListenerMessage {
                        response: Some(r), ..
                    }) = serde_json::from_str::<ListenerMessage>(t.as_str())
                    else {
                        let _ = ws.send(close(1008, "expected a response message")).await;
                        return None;
                    };
                    let resp = r.to_response();
                    if !r.body {
                        return Some(resp);
                    }
                    head = Some(resp);
                }
                Message::Binary(b) => {
                    if let Some(mut resp) = head.take() {
                        resp.body = b;
                        return Some(resp);
                    }
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
        None
    };
    // Dropping `reply` unanswered tells the sender the listener went away.
    if let Ok(Some(resp)) = tokio::time::timeout(wait, exchange).await {
        let _ = reply.send(resp);
        let _ = ws.send(close(1000, "answered")).await;
    }
}

/// Pipes an accepted WebSocket sender and its listener's socket until either closes (the close is passed
/// on) or the bus shuts down (both get 1001).
pub(crate) async fn pipe(
    sender: WebSocket,
    listener: WebSocket,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (mut s_tx, mut s_rx) = sender.split();
    let (mut l_tx, mut l_rx) = listener.split();
    loop {
        tokio::select! {
            m = s_rx.next() => match m {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if l_tx.send(m).await.is_err() { break }
                }
                Some(Ok(Message::Close(f))) => { let _ = l_tx.send(Message::Close(f)).await; break }
                Some(Ok(_)) => {}
                _ => { let _ = l_tx.send(close(1001, "the sender went away")).await; break }
            },
            m = l_rx.next() => match m {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if s_tx.send(m).await.is_err() { break }
                }
                Some(Ok(Message::Close(f))) => { let _ = s_tx.send(Message::Close(f)).await; break }
                Some(Ok(_)) => {}
                _ => { let _ = s_tx.send(close(1001, "the listener went away")).await; break }
            },
            _ = shutdown.changed() => {
                let _ = s_tx.send(close(1001, "bus shutting down")).await;
                let _ = l_tx.send(close(1001, "bus shutting down")).await;
                break
            }
        }
    }
}
