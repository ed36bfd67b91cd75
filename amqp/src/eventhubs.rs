//! Event Hubs over AMQP, as `@azure/event-hubs` and PyPI `azure-eventhub` speak it: producer links
//! (`<hub>`, `<hub>/Partitions/<n>`; single events and batches), consumer links
//! (`<hub>/ConsumerGroups/$Default/Partitions/<n>` with the `apache.org:selector-filter:string` start
//! position and the `com.microsoft:epoch` owner level) and the `READ` requests on `$management`
//! (`com.microsoft:eventhub`, `com.microsoft:partition`).
//!
//! Partitions, offsets, the partition-key hash and durability are weft-bus's [`Hub`]: an event sent here
//! is read by REST's partition endpoint and `weft listen` and vice versa. This module only translates; it
//! keeps no events and no consumer state beyond the owner levels of open links.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{Body, FilterSet};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, Symbol, Timestamp, Value};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use tokio::sync::watch;
use weft_bus::eventhub::{Hub, Route, partition_for_key};
use weft_bus::sas::Right;
use weft_bus::store::{Meta, Record};

use crate::auth;
use crate::connection::Conn;
use crate::convert::{self, AmqpMessage, annotations};
use crate::links::{conditions, error};
use crate::requests::Answer;

/// Event Hubs' own AMQP error conditions.
pub mod eh_conditions {
    /// A partition id outside `0..partition_count`.
    pub const ARGUMENT_OUT_OF_RANGE: &str = "com.microsoft:argument-out-of-range";
    /// A malformed argument (an unreadable start-position filter).
    pub const ARGUMENT_ERROR: &str = "com.microsoft:argument-error";
    /// A receiver displaced (or refused) by one with a higher owner level.
    pub const RECEIVER_DISCONNECTED: &str = "com.microsoft:receiver-disconnected";
}

/// The selector filter an Event Hubs consumer states its start position with.
pub const SELECTOR_FILTER: &str = "apache.org:selector-filter:string";
/// Its numeric descriptor (Apache's `0x0000468C:0x00000004`), which JavaScript's SDK sends.
const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;
/// The attach property carrying a consumer's owner level.
pub const EPOCH: &str = "com.microsoft:epoch";
/// The annotation carrying an event's offset (a string, as Event Hubs sends it).
pub const OFFSET: &str = "x-opt-offset";
/// The consumer group weft serves: Event Hubs' default one (weft keeps no consumer state per group).
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";
/// Events read from the store per round trip of a consumer link: enough to keep a prefetching SDK
/// busy, small enough that a link holds at most 32 × `max_message_bytes` (8 MiB at the default) while
/// it waits for credit.
const READ_BATCH: usize = 32;
/// How long one wait for new events lasts before the link is looked at again.
const READ_SLICE_MS: i64 = 30_000;

/// What an Event Hubs address names.
#[derive(Debug, PartialEq)]
enum Address {
    /// `<hub>` (routed by partition key or round-robin) or `<hub>/Partitions/<n>`.
    Send(Option<usize>),
    /// `<hub>/ConsumerGroups/<group>/Partitions/<n>`.
    Receive(usize),
}

/// Whether `path` is under a configured Event Hub (its first segment names one).
pub fn is_event_hub(conn: &Conn, path: &str) -> bool {
    let first = path.split('/').next().unwrap_or_default();
    conn.bus.event_hub(first).is_some()
}

/// Parses an address under `hub` into what it names, or the AMQP error a client gets for it.
fn parse_address(hub: &Hub, path: &str) -> Result<Address, fe2o3_amqp::types::definitions::Error> {
    let segments: Vec<&str> = path.split('/').collect();
    let partition = |p: &str| -> Result<usize, _> {
        match p.parse::<usize>() {
            Ok(i) if i < hub.partitions.len() => Ok(i),
            _ => Err(error(
                eh_conditions::ARGUMENT_OUT_OF_RANGE,
                format!(
                    "The specified partition '{p}' is invalid for event hub '{}'. It should be between 0 and {}.",
                    hub.name,
                    hub.partitions.len() - 1
                ),
            )),
        }
    };
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    match lower.as_slice() {
        [_] => Ok(Address::Send(None)),
        [_, "partitions", _] => partition(segments[2]).map(|p| Address::Send(Some(p))),
        [_, "consumergroups", group, "partitions", _] => {
            if !group.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP) {
                return Err(error(
                    conditions::NOT_FOUND,
                    format!(
                        "The consumer group '{}' does not exist in event hub '{}'; weft serves only '{DEFAULT_CONSUMER_GROUP}'.",
                        segments[2], hub.name
                    ),
                ));
            }
            partition(segments[4]).map(Address::Receive)
        }
        _ => Err(error(
            conditions::NOT_FOUND,
            format!(
                "The messaging entity '{path}' could not be found. Event Hubs addresses are '<hub>', '<hub>/Partitions/<n>' and '<hub>/ConsumerGroups/<group>/Partitions/<n>'."
            ),
        )),
    }
}

fn hub_of(conn: &Conn, path: &str) -> Option<Arc<Hub>> {
    conn.bus
        .event_hub(path.split('/').next().unwrap_or_default())
}

/// A client's sending link to a hub or one partition: each transfer (one event or a batch) is committed
/// to one partition before it is accepted, as the REST side answers 201 only after the commit.
pub async fn producer(conn: Arc<Conn>, node: String, mut receiver: Receiver) {
    let Some(hub) = hub_of(&conn, &node) else {
        return;
    };
    let fixed = match parse_address(&hub, &node) {
        Ok(Address::Send(p)) => p,
        Ok(Address::Receive(_)) => {
            let _ = receiver
                .close_with_error(error(
                    conditions::NOT_FOUND,
                    format!("'{node}' is a consumer address; events are sent to '<hub>' or '<hub>/Partitions/<n>'."),
                ))
                .await;
            return;
        }
        Err(e) => {
            let _ = receiver.close_with_error(e).await;
            return;
        }
    };
    if !auth::allowed(&conn.bus, &conn.claims, &node, Right::Send) {
        let _ = receiver
            .close_with_error(crate::links::unauthorized(&node, Right::Send))
            .await;
        return;
    }
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(hub = %hub.name, error = %e, "AMQP event hub sending link ended");
                break;
            }
        };
        let result = match transfer_events(
            &conn,
            &hub,
            fixed,
            *delivery.message_format(),
            delivery.message(),
        ) {
            Err(e) => Err(e),
            Ok(events) => hub
                .send(conn.bus.store(), events)
                .await
                .map(|_| ())
                .map_err(|e| {
                    error(
                        conditions::INTERNAL,
                        format!("The event could not be stored: {e:#}"),
                    )
                }),
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

/// The events of one transfer with their partition. A batch stays together in one partition, as Event
/// Hubs keeps it: the link's partition, else the partition key (the batch's own annotation, else its
/// first event's), else the next partition round-robin.
fn transfer_events(
    conn: &Conn,
    hub: &Hub,
    fixed: Option<usize>,
    format: Option<u32>,
    m: &AmqpMessage,
) -> Result<Vec<(usize, Meta, bytes::Bytes)>, fe2o3_amqp::types::definitions::Error> {
    let msgs = convert::transfer_messages(format, m)
        .and_then(|msgs| crate::links::check_size(conn.bus.config().max_message_bytes, msgs))
        .map_err(|e| error(conditions::INVALID_FIELD, e))?;
    let outer_key = match m.message_annotations.as_ref().and_then(|a| {
        a.0.get(&OwnedKey::Symbol(Symbol::from(annotations::PARTITION_KEY)))
    }) {
        Some(Value::String(k)) => Some(k.clone()),
        _ => None,
    };
    let key = outer_key.or_else(|| {
        msgs.first()
            .and_then(|m| m.meta.broker.partition_key.clone())
    });
    let partition = match (fixed, key) {
        (Some(p), _) => p,
        (None, Some(k)) => partition_for_key(&k, hub.partitions.len()),
        // No key on the batch or its first event: `Route::Any` round-robins.
        (None, None) => msgs
            .first()
            .and_then(|m| hub.pick(Route::Any, &m.meta))
            .unwrap_or(0),
    };
    Ok(msgs
        .into_iter()
        .map(|m| (partition, m.meta, m.body))
        .collect())
}

/// Where a consumer starts, from its selector filter.
#[derive(Debug, PartialEq)]
enum Start {
    /// The first retained event.
    Earliest,
    /// Events enqueued after the link opens.
    Latest,
    /// This offset (= sequence number in weft).
    Offset(u64),
    /// The first event enqueued after (or at, when inclusive) this time, ms since the epoch.
    Time(i64, bool),
}

/// The selector filter's expression from an attach's source filter set: None without one (the consumer
/// then starts at the earliest event), an error when it is not a string expression.
pub fn selector(filter: Option<&FilterSet>) -> Result<Option<String>, String> {
    let Some(set) = filter else { return Ok(None) };
    let Some(v) = set.get(&Symbol::from(SELECTOR_FILTER)) else {
        return Ok(None);
    };
    let inner = match v {
        Value::Described(d) => {
            let Described { descriptor, value } = d.as_ref();
            let known = match descriptor {
                Descriptor::Name(n) => n.as_str() == SELECTOR_FILTER,
                Descriptor::Code(c) => *c == SELECTOR_FILTER_CODE,
            };
            if !known {
                return Err(format!(
                    "the {SELECTOR_FILTER} filter has an unknown descriptor"
                ));
            }
            value
        }
        other => other,
    };
    match inner {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Binary(b) => String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| format!("the {SELECTOR_FILTER} filter is not UTF-8 text")),
        _ => Err(format!("the {SELECTOR_FILTER} filter must be a string")),
    }
}

/// Parses `amqp.annotation.<x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time> <>|>=> '<value>'`,
/// the only expressions the SDKs send (offset `-1` = earliest, `@latest` = latest).
fn parse_selector(expr: &str) -> Result<Start, String> {
    let bad = |why: &str| {
        format!(
            "The start-position filter '{expr}' is not valid: {why}. Expected amqp.annotation.x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time > or >= 'value'."
        )
    };
    let rest = expr
        .trim()
        .strip_prefix("amqp.annotation.")
        .ok_or_else(|| bad("it must start with amqp.annotation."))?;
    let name_end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '<' || c == '=')
        .ok_or_else(|| bad("no comparison"))?;
    let (name, rest) = rest.split_at(name_end);
    let rest = rest.trim_start();
    let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix('>') {
        (false, r)
    } else {
        return Err(bad("the comparison must be > or >="));
    };
    let value = rest
        .trim()
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .ok_or_else(|| bad("the value must be quoted with '"))?;
    let number = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| bad(&format!("'{v}' is not an integer")))
    };
    // `> n` starts after n, `>= n` at n; -1 (before the first event) is the SDKs' "earliest".
    let from = |n: i64| -> Result<Start, String> {
        let first = if inclusive { n } else { n.saturating_add(1) };
        match first {
            f if f < 0 && n == -1 => Ok(Start::Earliest),
            f if f < 0 => Err(bad("a negative position other than -1")),
            0 => Ok(Start::Earliest),
            f => Ok(Start::Offset(f as u64)),
        }
    };
    match name {
        "x-opt-offset" if value == "@latest" => Ok(Start::Latest),
        "x-opt-offset" | "x-opt-sequence-number" => from(number(value)?),
        "x-opt-enqueued-time" => Ok(Start::Time(number(value)?, inclusive)),
        other => Err(bad(&format!(
            "'{other}' is not a start-position annotation"
        ))),
    }
}

/// The offset a consumer's first event has.
async fn first_offset(conn: &Conn, hub: &Hub, p: usize, start: Start) -> anyhow::Result<u64> {
    Ok(match start {
        Start::Earliest => 0,
        Start::Latest => hub.next_offset(p),
        Start::Offset(o) => o,
        Start::Time(ms, inclusive) => {
            hub.offset_after_time(conn.bus.store(), p, ms, inclusive)
                .await?
        }
    })
}

/// An Event Hubs event as the service delivers it: the stored message's properties, with
/// `x-opt-sequence-number`, `x-opt-offset` (string), `x-opt-enqueued-time` and `x-opt-partition-key`
/// and none of Service Bus's lock or state annotations.
fn event_message(rec: &Record) -> AmqpMessage {
    let mut m = convert::from_record(rec, None, false);
    if let Some(a) = m.message_annotations.as_mut() {
        let sym = |n: &str| OwnedKey::Symbol(Symbol::from(n));
        a.0.shift_remove(&sym(annotations::MESSAGE_STATE));
        a.0.shift_remove(&sym(annotations::ENQUEUE_SEQUENCE_NUMBER));
        a.0.insert(sym(OFFSET), Value::String(rec.seq.to_string()));
    }
    if let Some(h) = m.header.as_mut() {
        h.first_acquirer = false;
        h.delivery_count = 0;
    }
    m
}

/// The owner levels (`com.microsoft:epoch`) of open consumer links, per hub, consumer group and
/// partition, shared by every connection of one AMQP listener. A receiver with a higher owner level
/// displaces those with a lower or none; one with a lower level (or none, while an owner exists) is
/// refused — Event Hubs' exclusive-reader rule.
#[derive(Default)]
pub struct Owners {
    next_id: AtomicU64,
    links: Mutex<HashMap<String, Vec<OwnerLink>>>,
}

struct OwnerLink {
    id: u64,
    level: Option<i64>,
    displaced: watch::Sender<bool>,
}

/// An open consumer link's place in [`Owners`]; leaving it (drop) removes the link.
struct OwnerGuard {
    owners: Arc<Owners>,
    key: String,
    id: u64,
    displaced: watch::Receiver<bool>,
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        let mut links = self.owners.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = links.get_mut(&self.key) {
            list.retain(|l| l.id != self.id);
            if list.is_empty() {
                links.remove(&self.key);
            }
        }
    }
}

impl Owners {
    /// Registers a consumer link with `level`, displacing lower ones; Err with the reason when a higher
    /// (or any, for a link without a level) owner holds the partition.
    fn join(self: &Arc<Self>, key: String, level: Option<i64>) -> Result<OwnerGuard, String> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let list = links.entry(key.clone()).or_default();
        let highest = list.iter().filter_map(|l| l.level).max();
        match (level, highest) {
            (Some(mine), Some(top)) if top > mine => {
                return Err(format!(
                    "Receiver with owner level '{mine}' is refused: a receiver with the higher owner level '{top}' already exists for this partition and consumer group."
                ));
            }
            (None, Some(top)) => {
                return Err(format!(
                    "A receiver without an owner level is refused: a receiver with owner level '{top}' exists for this partition and consumer group."
                ));
            }
            _ => {}
        }
        if let Some(mine) = level {
            for l in list.iter() {
                if l.level.is_none_or(|theirs| theirs < mine) {
                    let _ = l.displaced.send(true);
                }
            }
            list.retain(|l| l.level.is_some_and(|theirs| theirs >= mine));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        list.push(OwnerLink {
            id,
            level,
            displaced: tx,
        });
        Ok(OwnerGuard {
            owners: self.clone(),
            key,
            id,
            displaced: rx,
        })
    }
}

/// The owner level an attach asks for (`com.microsoft:epoch`, any integer type).
pub fn owner_level(properties: Option<&OrderedMap<Symbol, Value>>) -> Option<i64> {
    match properties?.get(&Symbol::from(EPOCH))? {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::Short(n) => Some(i64::from(*n)),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        Value::Uint(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// What a consumer attach asked for, read before the attach is accepted.
pub struct ConsumerRequest {
    /// The selector expression, or why it is unreadable.
    pub selector: Result<Option<String>, String>,
    /// The owner level.
    pub owner_level: Option<i64>,
}

/// A client's receiving link on a partition: events from the start position on, pre-settled, one per
/// credit, waking on new events as the REST read does.
pub async fn consumer(
    conn: Arc<Conn>,
    owners: Arc<Owners>,
    node: String,
    request: ConsumerRequest,
    mut sender: Sender,
) {
    let Some(hub) = hub_of(&conn, &node) else {
        return;
    };
    let p = match parse_address(&hub, &node) {
        Ok(Address::Receive(p)) => p,
        Ok(Address::Send(_)) => {
            let _ = sender
                .close_with_error(error(
                    conditions::NOT_FOUND,
                    format!("'{node}' is a send address; events are read from '<hub>/ConsumerGroups/$Default/Partitions/<n>'."),
                ))
                .await;
            return;
        }
        Err(e) => {
            let _ = sender.close_with_error(e).await;
            return;
        }
    };
    if !auth::allowed(&conn.bus, &conn.claims, &node, Right::Listen) {
        let _ = sender
            .close_with_error(crate::links::unauthorized(&node, Right::Listen))
            .await;
        return;
    }
    let start = match request
        .selector
        .and_then(|s| s.map_or(Ok(Start::Earliest), |s| parse_selector(&s)))
    {
        Ok(s) => s,
        Err(why) => {
            let _ = sender
                .close_with_error(error(eh_conditions::ARGUMENT_ERROR, why))
                .await;
            return;
        }
    };
    let key = format!(
        "{}/{DEFAULT_CONSUMER_GROUP}/{p}",
        hub.name.to_ascii_lowercase()
    );
    let mut guard = match owners.join(key, request.owner_level) {
        Ok(g) => g,
        Err(why) => {
            let _ = sender
                .close_with_error(error(eh_conditions::RECEIVER_DISCONNECTED, why))
                .await;
            return;
        }
    };
    let store = conn.bus.store();
    let mut offset = match first_offset(&conn, &hub, p, start).await {
        Ok(o) => o,
        Err(e) => {
            let _ = sender
                .close_with_error(error(conditions::INTERNAL, format!("read failed: {e:#}")))
                .await;
            return;
        }
    };
    let mut stop = conn.bus.shutdown_signal();
    let displaced = |level: Option<i64>| {
        error(
            eh_conditions::RECEIVER_DISCONNECTED,
            format!(
                "New receiver with a higher owner level was created, so this receiver{} was disconnected.",
                level.map_or(String::new(), |l| format!(" (owner level {l})"))
            ),
        )
    };
    loop {
        // Read only when the client can take events, so a slow client is not read ahead of.
        let recs = tokio::select! {
            granted = sender.credit_granted() => match granted {
                Ok(()) => tokio::select! {
                    r = hub.read(store, p, offset, READ_BATCH, READ_SLICE_MS) => Step::Read(r),
                    _ = sender.on_detach() => Step::End,
                    _ = guard.displaced.changed() => Step::Displaced,
                    _ = stop.changed() => Step::End,
                },
                Err(_) => Step::End,
            },
            _ = guard.displaced.changed() => Step::Displaced,
        };
        let recs = match recs {
            Step::Read(Ok(r)) => r,
            Step::Read(Err(e)) => {
                let _ = sender
                    .close_with_error(error(conditions::INTERNAL, format!("read failed: {e:#}")))
                    .await;
                return;
            }
            Step::Displaced => {
                let _ = sender
                    .close_with_error(displaced(request.owner_level))
                    .await;
                return;
            }
            Step::End => return,
        };
        for rec in recs {
            let sendable = Sendable::builder()
                .message(event_message(&rec))
                .settled(true)
                .build();
            // Waits for credit (cancel-safe); fails when the client detaches.
            let sent = tokio::select! {
                s = sender.send(sendable) => Some(s),
                _ = guard.displaced.changed() => None,
            };
            match sent {
                Some(Ok(_)) => offset = rec.seq + 1,
                Some(Err(e)) => {
                    tracing::debug!(hub = %hub.name, partition = p, error = %e, "AMQP event hub receiving link ended");
                    return;
                }
                None => {
                    let _ = sender
                        .close_with_error(displaced(request.owner_level))
                        .await;
                    return;
                }
            }
        }
    }
}

/// What one wait of a consumer link ended with.
enum Step {
    Read(anyhow::Result<Vec<Record>>),
    Displaced,
    End,
}

fn app_str<'a>(m: &'a AmqpMessage, name: &str) -> Option<&'a str> {
    use fe2o3_amqp::types::primitives::SimpleValue;
    match m.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s),
        SimpleValue::Symbol(s) => Some(s.as_str()),
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

/// A `$management` request of the Event Hubs SDKs: `READ` of `com.microsoft:eventhub` or
/// `com.microsoft:partition`. The `security_token` application property is checked as the REST side
/// checks SAS (any right on the hub will do: producers and consumers both ask); without one, the
/// connection's SASL login or `$cbs` tokens decide.
pub async fn management(conn: &Conn, m: &AmqpMessage) -> Answer {
    let op = app_str(m, "operation");
    if op != Some("READ") {
        return Answer::err(
            501,
            format!(
                "The Event Hubs $management operation '{}' is not supported by weft's bus; only READ is (see amqp/README.md)",
                op.unwrap_or_default()
            ),
        );
    }
    let Some(name) = app_str(m, "name") else {
        return Answer::err(
            400,
            "A READ request needs the hub in the 'name' application property",
        );
    };
    let Some(hub) = conn.bus.event_hub(name) else {
        return Answer::err(
            404,
            format!("The messaging entity '{name}' could not be found."),
        )
        .with_condition(conditions::NOT_FOUND);
    };
    let entity = format!("{}/$management", hub.name);
    let authorized = match app_str(m, "security_token") {
        Some(token) => auth::RIGHTS
            .iter()
            .map(|r| auth::token_allows(&conn.bus, token, &entity, *r))
            .find(|r| r.is_ok())
            .unwrap_or_else(|| auth::token_allows(&conn.bus, token, &entity, Right::Listen)),
        None if auth::RIGHTS
            .iter()
            .any(|r| auth::allowed(&conn.bus, &conn.claims, &entity, *r)) =>
        {
            Ok(())
        }
        None => Err(format!(
            "Unauthorized access to '{}': the request has no security_token and the connection no claim.",
            hub.name
        )),
    };
    if let Err(why) = authorized {
        return Answer::err(401, why).with_condition(conditions::UNAUTHORIZED);
    }
    match app_str(m, "type") {
        Some("com.microsoft:eventhub") => {
            let ids = (0..hub.partitions.len())
                .map(|p| Value::String(p.to_string()))
                .collect::<Vec<_>>();
            Answer::ok(
                200,
                map(vec![
                    ("name", Value::String(hub.name.clone())),
                    (
                        "created_at",
                        Value::Timestamp(Timestamp::from_milliseconds(hub.created_ms())),
                    ),
                    ("partition_count", Value::Int(hub.partitions.len() as i32)),
                    ("partition_ids", Value::Array(Array::from(ids))),
                ]),
            )
        }
        Some("com.microsoft:partition") => {
            let id = app_str(m, "partition").unwrap_or_default();
            let Some(p) = id
                .parse::<usize>()
                .ok()
                .filter(|p| *p < hub.partitions.len())
            else {
                return Answer::err(
                    400,
                    format!(
                        "The specified partition '{id}' is invalid for event hub '{}'. It should be between 0 and {}.",
                        hub.name,
                        hub.partitions.len() - 1
                    ),
                )
                .with_condition(eh_conditions::ARGUMENT_OUT_OF_RANGE);
            };
            match hub.partition_info(conn.bus.store(), p).await {
                Ok(info) => Answer::ok(
                    200,
                    map(vec![
                        ("name", Value::String(hub.name.clone())),
                        ("partition", Value::String(p.to_string())),
                        (
                            "begin_sequence_number",
                            Value::Long(info.begin_sequence_number),
                        ),
                        (
                            "last_enqueued_sequence_number",
                            Value::Long(info.last_enqueued_sequence_number),
                        ),
                        (
                            "last_enqueued_offset",
                            Value::String(info.last_enqueued_sequence_number.to_string()),
                        ),
                        (
                            "last_enqueued_time_utc",
                            Value::Timestamp(Timestamp::from_milliseconds(
                                info.last_enqueued_time_ms,
                            )),
                        ),
                        ("is_partition_empty", Value::Bool(info.is_empty)),
                    ]),
                ),
                Err(e) => Answer::err(500, format!("partition read failed: {e:#}")),
            }
        }
        other => Answer::err(
            400,
            format!(
                "Unknown READ type '{}': expected com.microsoft:eventhub or com.microsoft:partition",
                other.unwrap_or_default()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start positions the SDKs send parse to the offsets they mean; anything else is refused.
    #[test]
    fn selector_expressions() {
        let p = |s: &str| parse_selector(s);
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '-1'"),
            Ok(Start::Earliest)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '@latest'"),
            Ok(Start::Latest)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '5'"),
            Ok(Start::Offset(6))
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset >= '5'"),
            Ok(Start::Offset(5))
        );
        assert_eq!(
            p("amqp.annotation.x-opt-offset >= '0'"),
            Ok(Start::Earliest)
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number>'2'"),
            Ok(Start::Offset(3))
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            Ok(Start::Time(1_700_000_000_000, false))
        );
        for bad in [
            "",
            "x-opt-offset > '1'",
            "amqp.annotation.x-opt-offset < '1'",
            "amqp.annotation.x-opt-offset = '1'",
            "amqp.annotation.x-opt-offset > 1",
            "amqp.annotation.x-opt-offset > 'abc'",
            "amqp.annotation.x-opt-offset > '-7'",
            "amqp.annotation.x-opt-owner > '1'",
            "amqp.annotation.x-opt-offset >",
        ] {
            assert!(p(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// A higher owner level displaces lower ones and refuses later lower or unlevelled receivers.
    #[test]
    fn owner_levels() {
        let owners = Arc::new(Owners::default());
        let plain = owners.join("h/$Default/0".into(), None).unwrap();
        let low = owners.join("h/$Default/0".into(), Some(1)).unwrap();
        assert!(
            *plain.displaced.borrow(),
            "an owner displaces plain receivers"
        );
        let high = owners.join("h/$Default/0".into(), Some(5)).unwrap();
        assert!(
            *low.displaced.borrow(),
            "a higher owner displaces lower ones"
        );
        assert!(owners.join("h/$Default/0".into(), Some(4)).is_err());
        assert!(owners.join("h/$Default/0".into(), None).is_err());
        assert!(
            owners.join("h/$Default/1".into(), None).is_ok(),
            "other partitions are free"
        );
        drop(high);
        drop(low);
        drop(plain);
        assert!(
            owners.join("h/$Default/0".into(), None).is_ok(),
            "released on drop"
        );
    }
}
