//! The request-response nodes: `$cbs` (claims-based security: `put-token` with a SAS token) and each
//! entity's `$management` node (lock renewal, peek, scheduling and cancelling, receiving deferred messages
//! by sequence number, settlement by lock token).
//! Requests arrive on the client's sending link to the node; the answer goes to the client's receiving
//! link whose address is the request's `reply-to`, with `correlation-id` = the request's `message-id`.

use std::sync::Arc;

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{Array, Binary, OrderedMap, SimpleValue, Timestamp, Value};
use tokio::sync::mpsc;

use weft_bus::broker::{DeferredError, Entity, MessageState, Mode};
use weft_bus::sas::Right;
use weft_bus::store::Store;

use crate::auth;
use crate::connection::{Conn, entity_path};
use crate::convert::{self, AmqpMessage};

/// Sends answers queued for one reply link, until the client detaches it or the connection's requests
/// are over (every sender of the channel dropped).
pub async fn reply_link(mut sender: Sender, mut rx: mpsc::Receiver<AmqpMessage>) {
    loop {
        let m = tokio::select! {
            m = rx.recv() => m,
            _ = sender.on_detach() => None,
        };
        let Some(m) = m else { break };
        // Pre-settled (the link was attached sender-settle-mode settled): nothing to wait for.
        let sendable = Sendable::builder().message(m).settled(true).build();
        if sender.send(sendable).await.is_err() {
            break;
        }
    }
}

/// Serves requests arriving on a client's sending link to `$cbs` or `…/$management`.
pub async fn serve(conn: Arc<Conn>, node: String, mut receiver: Receiver) {
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(_) => break,
        };
        let _ = receiver.accept(&delivery).await;
        let request = delivery.into_message();
        let reply_to = request
            .properties
            .as_ref()
            .and_then(|p| p.reply_to.clone())
            .unwrap_or_default();
        let correlation = request
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone());
        let answer = if node == "$cbs" {
            cbs(&conn, &request)
        } else if node == "$management" {
            // The namespace-level node: Event Hubs' READ requests (Service Bus uses `<entity>/$management`).
            crate::eventhubs::management(&conn, &request).await
        } else {
            let entity = node.trim_end_matches("/$management").to_string();
            management(&conn, &entity, &request).await
        };
        let Some(reply) = conn.replies.get(&node, &reply_to) else {
            tracing::debug!(node, reply_to, "request without a reply link");
            continue;
        };
        let _ = reply
            .send(answer.into_message(!node.contains('/'), correlation))
            .await;
    }
}

/// An answer: status, description, body, and (Event Hubs) the AMQP error condition of a failure.
pub struct Answer {
    status: i32,
    description: String,
    body: Value,
    condition: Option<&'static str>,
}

impl Answer {
    /// A success with `body`.
    pub fn ok(status: i32, body: Value) -> Answer {
        Answer {
            status,
            description: "OK".into(),
            body,
            condition: None,
        }
    }

    /// A failure; the body is an empty map.
    pub fn err(status: i32, description: impl Into<String>) -> Answer {
        Answer {
            status,
            description: description.into(),
            body: Value::Map(OrderedMap::new()),
            condition: None,
        }
    }

    /// Names the failure's AMQP condition (`error-condition`, which the JavaScript SDK maps to its
    /// error types).
    pub fn with_condition(mut self, condition: &'static str) -> Answer {
        self.condition = Some(condition);
        self
    }

    /// `$cbs` and the namespace's `$management` (Event Hubs) name their properties
    /// `status-code`/`status-description`/`error-condition`, an entity's `$management` (Service Bus)
    /// `statusCode`/`statusDescription`/`errorCondition` (Python's SDK reads only that spelling there;
    /// JavaScript's reads both).
    fn into_message(
        self,
        hyphenated: bool,
        correlation: Option<fe2o3_amqp::types::messaging::MessageId>,
    ) -> AmqpMessage {
        let (code, desc, cond) = if hyphenated {
            ("status-code", "status-description", "error-condition")
        } else {
            ("statusCode", "statusDescription", "errorCondition")
        };
        let mut app = OrderedMap::new();
        app.insert(code.to_string(), SimpleValue::Int(self.status));
        app.insert(desc.to_string(), SimpleValue::String(self.description));
        if let Some(c) = self.condition {
            app.insert(cond.to_string(), SimpleValue::Symbol(c.into()));
        }
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                correlation_id: correlation,
                ..Properties::default()
            }),
            application_properties: Some(ApplicationProperties(app)),
            body: Body::Value(AmqpValue(self.body)),
            footer: None,
        }
    }
}

fn app_str<'a>(m: &'a AmqpMessage, name: &str) -> Option<&'a str> {
    match m.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s),
        SimpleValue::Symbol(s) => Some(s.as_str()),
        _ => None,
    }
}

/// `put-token`: the token is checked exactly as the REST side checks `Authorization` (signature, expiry,
/// scope = the `name` audience) and remembered for the connection's links.
fn cbs(conn: &Conn, m: &AmqpMessage) -> Answer {
    if app_str(m, "operation") != Some("put-token") {
        return Answer::err(400, "The only $cbs operation is put-token");
    }
    let Some(audience) = app_str(m, "name") else {
        return Answer::err(
            400,
            "put-token needs the audience in the 'name' application property",
        );
    };
    let token = match &m.body {
        Body::Value(AmqpValue(Value::String(s))) => s.clone(),
        _ => return Answer::err(400, "put-token needs the token as a string amqp-value body"),
    };
    let mut first_error = None;
    for right in auth::RIGHTS {
        match conn.bus.authorize_token(Some(&token), audience, right) {
            Ok(()) => {
                auth::add_token(&conn.claims, token);
                return Answer {
                    status: 202,
                    description: "Accepted".into(),
                    body: Value::Map(OrderedMap::new()),
                    condition: None,
                };
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let e = first_error.expect("RIGHTS is not empty");
    Answer::err(i32::from(e.status()), e.to_string())
}

fn body_map(m: &AmqpMessage) -> Option<&OrderedMap<Value, Value>> {
    match &m.body {
        Body::Value(AmqpValue(Value::Map(map))) => Some(map),
        _ => None,
    }
}

fn field<'a>(map: &'a OrderedMap<Value, Value>, name: &str) -> Option<&'a Value> {
    map.get(&Value::String(name.to_string()))
        .or_else(|| map.get(&Value::Symbol(name.into())))
}

fn values(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.0.clone(),
        Some(Value::List(l)) => l.clone(),
        Some(other) => vec![other.clone()],
        None => vec![],
    }
}

fn lock_tokens(map: &OrderedMap<Value, Value>) -> Vec<String> {
    values(field(map, "lock-tokens"))
        .into_iter()
        .filter_map(|v| match v {
            Value::Uuid(u) => Some(uuid::Uuid::from_bytes(u.into_inner()).to_string()),
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn as_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::Uint(n) => Some(i64::from(*n)),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        Value::Short(n) => Some(i64::from(*n)),
        _ => None,
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = OrderedMap::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Map(m)
}

async fn management(conn: &Conn, entity: &str, m: &AmqpMessage) -> Answer {
    let entity = entity_path(entity);
    let Some(op) = app_str(m, "operation") else {
        return Answer::err(
            400,
            "A $management request needs the 'operation' application property",
        );
    };
    let empty = OrderedMap::new();
    let body = body_map(m).unwrap_or(&empty);
    let bus = &conn.bus;
    let right = match op {
        "com.microsoft:schedule-message" | "com.microsoft:cancel-scheduled-message" => Right::Send,
        _ => Right::Listen,
    };
    // The SDKs put a token for the node itself (`…/orders/$management`) before their first request on
    // it; on a connection that has attached no link to the entity yet, that is the only token there is.
    let node = format!("{entity}/$management");
    if !auth::allowed(bus, &conn.claims, &entity, right)
        && !auth::allowed(bus, &conn.claims, &node, right)
    {
        return Answer::err(
            401,
            format!(
                "Unauthorized access. '{right}' claim(s) are required to perform this operation on '{entity}'."
            ),
        );
    }
    let store = bus.store();
    match op {
        "com.microsoft:renew-lock" => {
            let Some(e) = bus.receiver(&entity) else {
                return not_found(&entity);
            };
            let mut expirations = Vec::new();
            for token in lock_tokens(body) {
                match e.renew(store, None, &token) {
                    Ok(until) => {
                        expirations.push(Value::Timestamp(Timestamp::from_milliseconds(until)))
                    }
                    Err(_) => return lock_lost(&token),
                }
            }
            Answer::ok(
                200,
                map(vec![(
                    "expirations",
                    Value::Array(Array::from(expirations)),
                )]),
            )
        }
        "com.microsoft:update-disposition" => {
            let Some(e) = bus.receiver(&entity) else {
                return not_found(&entity);
            };
            let status = match field(body, "disposition-status") {
                Some(Value::String(s)) => s.clone(),
                _ => return Answer::err(400, "update-disposition needs 'disposition-status'"),
            };
            let text = |n: &str| match field(body, n) {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            // The client's properties to modify (with an abandon or a defer), keyed by name.
            let props = match field(body, "properties-to-modify") {
                Some(Value::Map(m)) => {
                    let named = m.iter().filter_map(|(k, v)| match k {
                        Value::String(k) => Some((k.as_str(), v)),
                        Value::Symbol(k) => Some((k.as_str(), v)),
                        _ => None,
                    });
                    match convert::properties_to_modify(named) {
                        Ok(p) => p,
                        Err(err) => return Answer::err(400, err),
                    }
                }
                _ => Vec::new(),
            };
            for token in lock_tokens(body) {
                if matches!(status.as_str(), "abandoned" | "defered") {
                    match e.modify_locked(store, &token, props.clone()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return lock_lost(&token),
                        Err(err) => return Answer::err(500, format!("{err:#}")),
                    }
                }
                let res = match status.as_str() {
                    "completed" => e.complete(store, None, &token).await,
                    "abandoned" => e.abandon(store, None, &token).await,
                    // Service Bus's spelling.
                    "defered" => e.defer(store, None, &token).await,
                    "suspended" => {
                        e.dead_letter_locked(
                            store,
                            &token,
                            text("deadletter-reason"),
                            text("deadletter-description"),
                        )
                        .await
                    }
                    other => {
                        return Answer::err(400, format!("Unknown disposition-status '{other}'"));
                    }
                };
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return lock_lost(&token),
                    Err(err) => return Answer::err(500, format!("{err:#}")),
                }
            }
            Answer::ok(200, map(vec![]))
        }
        "com.microsoft:peek-message" => {
            let Some(e) = bus.receiver(&entity) else {
                return not_found(&entity);
            };
            let from = as_i64(field(body, "from-sequence-number"))
                .unwrap_or(0)
                .max(0) as u64;
            let count = as_i64(field(body, "message-count"))
                .unwrap_or(1)
                .clamp(1, 1000) as usize;
            let records = match store.read_range(&e.key, from, count).await {
                Ok(r) => r,
                Err(err) => return Answer::err(500, format!("peek failed: {err:#}")),
            };
            if records.is_empty() {
                return Answer::err(204, "No messages to peek");
            }
            let now = weft_bus::props::now_ms();
            let mut messages = Vec::new();
            for rec in &records {
                let deferred = e.message_state(rec.seq, now) == Some(MessageState::Deferred);
                let encoded = match convert::encode(&convert::from_record(rec, None, deferred)) {
                    Ok(b) => b,
                    Err(err) => return Answer::err(500, err),
                };
                messages.push(map(vec![("message", Value::Binary(Binary::from(encoded)))]));
            }
            Answer::ok(200, map(vec![("messages", Value::List(messages))]))
        }
        "com.microsoft:receive-by-sequence-number" => {
            let Some(e) = bus.receiver(&entity) else {
                return not_found(&entity);
            };
            receive_by_sequence_number(store, &e, body).await
        }
        "com.microsoft:schedule-message" => {
            let Some(target) = bus.send_target(&entity) else {
                return not_found(&entity);
            };
            let mut msgs = Vec::new();
            for item in values(field(body, "messages")) {
                let Value::Map(item) = item else {
                    return Answer::err(400, "schedule-message: each item must be a map");
                };
                let Some(Value::Binary(bytes)) = field(&item, "message") else {
                    return Answer::err(400, "schedule-message: an item has no encoded 'message'");
                };
                match convert::decode(bytes).and_then(|d| convert::to_new_message(&d)) {
                    Ok(nm) => msgs.push(nm),
                    Err(err) => return Answer::err(400, err),
                }
            }
            match target.send(store, msgs).await {
                Ok(seqs) => {
                    let seqs = seqs
                        .into_iter()
                        .map(|s| Value::Long(s as i64))
                        .collect::<Vec<_>>();
                    Answer::ok(
                        200,
                        map(vec![("sequence-numbers", Value::Array(Array::from(seqs)))]),
                    )
                }
                Err(weft_bus::broker::SendError::QuotaExceeded(d)) => Answer::err(403, d),
                Err(weft_bus::broker::SendError::Store(err)) => {
                    Answer::err(500, format!("{err:#}"))
                }
            }
        }
        "com.microsoft:cancel-scheduled-message" => {
            let Some(target) = bus.send_target(&entity) else {
                return not_found(&entity);
            };
            for v in values(field(body, "sequence-numbers")) {
                let Some(seq) = as_i64(Some(&v)) else {
                    return Answer::err(
                        400,
                        "cancel-scheduled-message: sequence numbers must be longs",
                    );
                };
                if let Err(err) = target.cancel_scheduled(store, seq as u64).await {
                    return Answer::err(500, format!("{err:#}"));
                }
            }
            Answer::ok(200, map(vec![]))
        }
        other => Answer::err(
            501,
            format!(
                "The $management operation '{other}' is not supported by weft's bus (see amqp/README.md)"
            ),
        ),
    }
}

/// The most sequence numbers one receive-by-sequence-number takes: each is a read in one store
/// transaction and a message in one answer, so a request cannot make the bus read an unbounded number of
/// messages into one reply. The SDKs ask for what the caller passes (usually a handful).
pub const MAX_DEFERRED_PER_REQUEST: usize = 1000;

/// `com.microsoft:receive-by-sequence-number`: `sequence-numbers` (array of long) and
/// `receiver-settle-mode` (uint: 0 receive-and-delete, 1 peek-lock) → `messages`, a list of maps with the
/// encoded `message` and, when locked, its `lock-token` (uuid). A number that is not a deferred message
/// free to lock fails the request with 404 `com.microsoft:message-not-found` (the SDKs'
/// MessageNotFound), and nothing is taken.
async fn receive_by_sequence_number(
    store: &Store,
    e: &Entity,
    body: &OrderedMap<Value, Value>,
) -> Answer {
    let mut seqs = Vec::new();
    for v in values(field(body, "sequence-numbers")) {
        match as_i64(Some(&v)).and_then(|n| u64::try_from(n).ok()) {
            Some(n) => seqs.push(n),
            None => {
                return Answer::err(
                    400,
                    "receive-by-sequence-number: 'sequence-numbers' must be an array of non-negative longs",
                );
            }
        }
    }
    if seqs.is_empty() {
        return Answer::err(
            400,
            "receive-by-sequence-number needs 'sequence-numbers' (an array of long)",
        );
    }
    if seqs.len() > MAX_DEFERRED_PER_REQUEST {
        return Answer::err(
            400,
            format!(
                "receive-by-sequence-number: {} sequence numbers; at most {MAX_DEFERRED_PER_REQUEST} per request (MAX_DEFERRED_PER_REQUEST)",
                seqs.len()
            ),
        );
    }
    let mode = match as_i64(field(body, "receiver-settle-mode")) {
        Some(0) => Mode::ReceiveAndDelete,
        Some(1) | None => Mode::PeekLock,
        Some(other) => {
            return Answer::err(
                400,
                format!(
                    "receive-by-sequence-number: receiver-settle-mode {other} is neither 0 (receive-and-delete) nor 1 (peek-lock)"
                ),
            );
        }
    };
    let delivered = match e.receive_deferred(store, &seqs, mode).await {
        Ok(Ok(d)) => d,
        Ok(Err(err @ DeferredError::NotFound(_))) => {
            return Answer::err(404, err.to_string()).with_condition(MESSAGE_NOT_FOUND);
        }
        Err(err) => return Answer::err(500, format!("receive failed: {err:#}")),
    };
    let mut messages = Vec::with_capacity(delivered.len());
    for d in &delivered {
        let message = convert::from_record(&d.rec, d.lock.map(|(_, until)| until), true);
        let encoded = match convert::encode(&message) {
            Ok(b) => b,
            Err(err) => return Answer::err(500, err),
        };
        let mut entries = vec![("message", Value::Binary(Binary::from(encoded)))];
        if let Some((token, _)) = d.lock {
            entries.push(("lock-token", Value::Uuid(token.into_bytes().into())));
        }
        messages.push(map(entries));
    }
    Answer::ok(200, map(vec![("messages", Value::List(messages))]))
}

/// Service Bus's condition for a message that is not there (the SDKs' MessageNotFound error).
const MESSAGE_NOT_FOUND: &str = "com.microsoft:message-not-found";

fn not_found(entity: &str) -> Answer {
    Answer::err(
        404,
        format!("The messaging entity '{entity}' could not be found."),
    )
}

fn lock_lost(token: &str) -> Answer {
    Answer::err(
        410,
        format!(
            "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue. Reference:{token}"
        ),
    )
}
