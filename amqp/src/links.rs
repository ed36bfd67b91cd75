//! Entity links: a client's sending link puts messages into a queue or topic (single or batch transfers,
//! answered `accepted` once committed, or `rejected` with Service Bus's error condition); a client's
//! receiving link on a queue, subscription or dead-letter queue gets messages in peek-lock (settled by the
//! client's disposition: accepted = complete, released or modified = abandon, modified with
//! `undeliverable-here` = defer, rejected = dead-letter) or receive-and-delete (pre-settled). Delivery rules are weft-bus's broker; this module only translates.

use std::sync::Arc;

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::definitions::{Error, ErrorCondition};
use fe2o3_amqp::types::messaging::{Body, Outcome};
use fe2o3_amqp::types::primitives::{Binary, Symbol, Value};
use weft_bus::broker::{Entity, Mode, NewMessage, SendError};
use weft_bus::sas::Right;
use weft_bus::store::Store;

use crate::auth;
use crate::connection::Conn;
use crate::convert;

/// Service Bus's AMQP error conditions (Microsoft's AMQP mapping).
pub mod conditions {
    /// Entity does not exist.
    pub const NOT_FOUND: &str = "amqp:not-found";
    /// Entity quota exceeded.
    pub const QUOTA_EXCEEDED: &str = "amqp:resource-limit-exceeded";
    /// Missing claim for the entity.
    pub const UNAUTHORIZED: &str = "amqp:unauthorized-access";
    /// Malformed message.
    pub const INVALID_FIELD: &str = "amqp:invalid-field";
    /// Server-side failure.
    pub const INTERNAL: &str = "amqp:internal-error";
    /// A feature the bus does not serve (sessions).
    pub const NOT_IMPLEMENTED: &str = "amqp:not-implemented";
}

/// An error with a Service Bus condition symbol.
pub fn error(condition: &str, description: impl Into<String>) -> Error {
    Error::new(
        ErrorCondition::Custom(Symbol::from(condition)),
        Some(description.into()),
        None,
    )
}

/// The error of a link whose connection lacks `right` on `entity`.
pub fn unauthorized(entity: &str, right: Right) -> Error {
    error(
        conditions::UNAUTHORIZED,
        format!(
            "Unauthorized access. '{right}' claim(s) are required to perform this operation on '{entity}'. Put a SAS token on $cbs first."
        ),
    )
}

/// A client's sending link: each transfer (one message or a batch) is committed before it is accepted.
pub async fn incoming(conn: Arc<Conn>, node: String, mut receiver: Receiver) {
    let Some(target) = conn.bus.send_target(&node) else {
        let _ = receiver
            .close_with_error(error(
                conditions::NOT_FOUND,
                format!("The messaging entity '{node}' could not be found."),
            ))
            .await;
        return;
    };
    if !auth::allowed(&conn.bus, &conn.claims, &node, Right::Send) {
        let _ = receiver
            .close_with_error(unauthorized(&node, Right::Send))
            .await;
        return;
    }
    let max = conn.bus.config().max_message_bytes;
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(entity = %node, error = %e, "AMQP sending link ended");
                break;
            }
        };
        let parsed = convert::transfer_messages(*delivery.message_format(), delivery.message())
            .and_then(|msgs| check_size(max, msgs));
        let result = match parsed {
            Err(e) => Err(error(conditions::INVALID_FIELD, e)),
            Ok(msgs) => match target.send(conn.bus.store(), msgs).await {
                Ok(_) => Ok(()),
                Err(SendError::QuotaExceeded(d)) => Err(error(conditions::QUOTA_EXCEEDED, d)),
                Err(SendError::Store(e)) if target.is_deleted() => {
                    Err(error(conditions::NOT_FOUND, format!("{e:#}")))
                }
                Err(SendError::Store(e)) => Err(error(
                    conditions::INTERNAL,
                    format!("The message could not be stored: {e:#}"),
                )),
            },
        };
        let settled = match result {
            Ok(()) => receiver.accept(&delivery).await,
            Err(e) => receiver.reject(&delivery, e).await,
        };
        if settled.is_err() {
            break;
        }
    }
}

/// The messages of one transfer, refused when together (body + properties) they exceed `max` bytes.
pub fn check_size(max: usize, msgs: Vec<NewMessage>) -> Result<Vec<NewMessage>, String> {
    let size: usize = msgs
        .iter()
        .map(|m| m.body.len() + m.meta.approx_len())
        .sum();
    if size > max {
        Err(format!(
            "The received message (size {size} bytes including properties) exceeds the maximum message size of {max} bytes"
        ))
    } else {
        Ok(msgs)
    }
}

/// How long one wait for a message lasts before the link is looked at again.
const RECEIVE_SLICE_MS: i64 = 30_000;

/// A client's receiving link: one message per credit, peek-locked with the lock token as delivery tag
/// (in .NET's GUID byte order, as Service Bus sends it), or pre-settled for receive-and-delete.
pub async fn outgoing(conn: Arc<Conn>, node: String, presettled: bool, mut sender: Sender) {
    let Some(entity) = conn.bus.receiver(&node) else {
        let _ = sender
            .close_with_error(error(
                conditions::NOT_FOUND,
                format!("The messaging entity '{node}' could not be found."),
            ))
            .await;
        return;
    };
    if !auth::allowed(&conn.bus, &conn.claims, &node, Right::Listen) {
        let _ = sender
            .close_with_error(unauthorized(&node, Right::Listen))
            .await;
        return;
    }
    let mode = if presettled {
        Mode::ReceiveAndDelete
    } else {
        Mode::PeekLock
    };
    let stop = conn.bus.shutdown_signal();
    loop {
        // Take a message only when the client can take it: a receive-and-delete message taken for a
        // client that went away would be lost.
        if sender.credit_granted().await.is_err() {
            return;
        }
        let got = tokio::select! {
            got = entity.receive(conn.bus.store(), mode, RECEIVE_SLICE_MS, stop.clone()) => got,
            _ = sender.on_detach() => return,
        };
        let delivered = match got {
            Ok(Some(d)) => d,
            Ok(None) if *stop.borrow() => break,
            Ok(None) => continue,
            // Deleted through the management API while attached: Azure's "not found".
            Err(e) if entity.is_deleted() => {
                let _ = sender
                    .close_with_error(error(conditions::NOT_FOUND, format!("{e:#}")))
                    .await;
                return;
            }
            Err(e) => {
                let _ = sender
                    .close_with_error(error(
                        conditions::INTERNAL,
                        format!("receive failed: {e:#}"),
                    ))
                    .await;
                return;
            }
        };
        let message = convert::from_record(&delivered.rec, delivered.lock.map(|(_, u)| u), false);
        let tag = delivered
            .lock
            .map(|(token, _)| Binary::from(token.to_bytes_le().to_vec()));
        let sendable = Sendable::builder()
            .message(message)
            .delivery_tag(tag)
            .build();
        match sender.send_batchable(sendable).await {
            Ok(fut) => {
                if let Some((token, _)) = delivered.lock {
                    let entity = entity.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        // The client's settlement is confirmed (in receiver-settle-mode second) when
                        // `fut` is dropped, at the end of this task: after the store has applied it, as
                        // Azure confirms one, so a peek or receive the client sends next sees it (the
                        // vendored fe2o3 holds the echo until then). A detached link or closed
                        // connection leaves the lock to expire, as in Azure.
                        let mut fut = std::pin::pin!(fut);
                        if let Ok(outcome) = fut.as_mut().await {
                            settle(conn.bus.store(), &entity, &token.to_string(), outcome).await;
                        }
                    });
                }
            }
            Err(e) => {
                tracing::debug!(entity = %node, error = %e, "AMQP receiving link ended");
                break;
            }
        }
    }
}

/// Applies a client's settlement of a peek-locked delivery.
async fn settle(store: &Store, entity: &Entity, token: &str, outcome: Outcome) {
    let res = match outcome {
        Outcome::Accepted(_) => entity.complete(store, None, token).await.map(|_| ()),
        Outcome::Released(_) => entity.abandon(store, None, token).await.map(|_| ()),
        // Service Bus's defer: `undeliverable-here` (JavaScript sends it alone, Python with
        // `delivery-failed`, .NET alone); without it a `modified` is an abandon.
        Outcome::Modified(m) => {
            // Its message annotations are the client's properties to modify, set before it settles.
            // One the bus cannot store is dropped with a warning: the outcome itself is already the
            // client's, and refusing it would leave the message locked until its lock expires.
            let props = convert::properties_to_modify(
                m.message_annotations
                    .iter()
                    .flat_map(|f| f.iter().map(|(k, v)| (k.as_str(), v))),
            )
            .unwrap_or_else(|e| {
                tracing::warn!(entity = %entity.path, "properties to modify ignored: {e}");
                Vec::new()
            });
            match entity.modify_locked(store, token, props).await {
                Err(e) => Err(e),
                Ok(_) if m.undeliverable_here == Some(true) => {
                    entity.defer(store, None, token).await.map(|_| ())
                }
                Ok(_) => entity.abandon(store, None, token).await.map(|_| ()),
            }
        }
        Outcome::Rejected(r) => {
            let (reason, description) = dead_letter_fields(r.error.as_ref());
            entity
                .dead_letter_locked(store, token, reason, description)
                .await
                .map(|_| ())
        }
        #[allow(unreachable_patterns)]
        // transaction outcomes, when fe2o3's `transaction` feature is on
        _ => Ok(()),
    };
    if let Err(e) = res {
        tracing::warn!(entity = %entity.path, error = %e, "settlement not stored");
    }
}

/// DeadLetterReason and DeadLetterErrorDescription from a `rejected` outcome's error info.
fn dead_letter_fields(e: Option<&Error>) -> (String, String) {
    let info = |name: &str| {
        e.and_then(|e| e.info.as_ref())
            .and_then(|i| i.get(&Symbol::from(name)))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
    };
    (
        info("DeadLetterReason").unwrap_or_default(),
        info("DeadLetterErrorDescription").unwrap_or_default(),
    )
}
