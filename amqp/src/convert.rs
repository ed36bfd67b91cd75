//! The one mapping between an AMQP message and the bus's stored message, both ways, as Service Bus does it:
//! application properties ↔ custom properties, the properties section and `x-opt-*` message annotations ↔
//! broker properties, data sections ↔ the body. A message sent over REST is received here with its
//! properties and vice versa. Owns no state.

use bytes::Bytes;
use fe2o3_amqp::types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Header, Message, MessageAnnotations, MessageId, Properties,
    annotations::OwnedKey,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Timestamp, Value};
use weft_bus::broker::NewMessage;
use weft_bus::props::{BrokerProps, PropValue};
use weft_bus::store::{Meta, Record};

/// An AMQP message with any body.
pub type AmqpMessage = Message<Body<Value>>;

/// Message format of a Service Bus batch: each data section is one encoded message.
pub const BATCH_FORMAT: u32 = 0x8001_3700;

/// Message annotation names Service Bus uses (Microsoft's AMQP mapping).
pub mod annotations {
    /// Sequence number (long).
    pub const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
    /// Enqueued time (timestamp).
    pub const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
    /// End of the peek-lock (timestamp).
    pub const LOCKED_UNTIL: &str = "x-opt-locked-until";
    /// Scheduled enqueue time (timestamp).
    pub const SCHEDULED_ENQUEUE_TIME: &str = "x-opt-scheduled-enqueue-time";
    /// Partition key (string).
    pub const PARTITION_KEY: &str = "x-opt-partition-key";
    /// Message state: 0 active, 1 deferred, 2 scheduled (int).
    pub const MESSAGE_STATE: &str = "x-opt-message-state";
    /// Enqueue sequence number (long).
    pub const ENQUEUE_SEQUENCE_NUMBER: &str = "x-opt-enqueue-sequence-number";
}

fn id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid::Uuid::from_bytes(*u.as_inner()).to_string(),
        MessageId::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

fn prop_from_amqp(name: &str, v: &SimpleValue) -> Result<Option<PropValue>, String> {
    Ok(Some(match v {
        SimpleValue::Null => return Ok(None),
        SimpleValue::Bool(b) => PropValue::Bool(*b),
        SimpleValue::Ubyte(n) => PropValue::Int(i64::from(*n)),
        SimpleValue::Ushort(n) => PropValue::Int(i64::from(*n)),
        SimpleValue::Uint(n) => PropValue::Int(i64::from(*n)),
        SimpleValue::Ulong(n) => PropValue::Int(
            i64::try_from(*n).map_err(|_| format!("property '{name}': {n} is out of range"))?,
        ),
        SimpleValue::Byte(n) => PropValue::Int(i64::from(*n)),
        SimpleValue::Short(n) => PropValue::Int(i64::from(*n)),
        SimpleValue::Int(n) => PropValue::Int(i64::from(*n)),
        SimpleValue::Long(n) => PropValue::Int(*n),
        SimpleValue::Float(f) => PropValue::Double(f64::from(f.into_inner())),
        SimpleValue::Double(f) => PropValue::Double(f.into_inner()),
        SimpleValue::Char(c) => PropValue::String(c.to_string()),
        SimpleValue::Timestamp(t) => PropValue::DateTime(t.milliseconds().div_euclid(1000)),
        SimpleValue::Uuid(u) => {
            PropValue::String(uuid::Uuid::from_bytes(*u.as_inner()).to_string())
        }
        SimpleValue::String(s) => PropValue::String(s.clone()),
        SimpleValue::Symbol(s) => PropValue::String(s.as_str().to_string()),
        other => {
            return Err(format!(
                "application property '{name}' has a type the bus does not store ({other:?}); use string, number, boolean, timestamp or uuid"
            ));
        }
    }))
}

/// Custom properties from AMQP values: the "properties to modify" a client sends with an abandon or a
/// defer (the `modified` outcome's `message-annotations`, `update-disposition`'s `properties-to-modify`).
/// Typed as application properties are; a list, map or binary value is the client's error.
pub fn properties_to_modify<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<Vec<(String, PropValue)>, String> {
    let mut out = Vec::new();
    for (name, v) in entries {
        let simple = SimpleValue::try_from(v.clone()).map_err(|_| {
            format!("property to modify '{name}' has a type the bus does not store ({v:?})")
        })?;
        if let Some(p) = prop_from_amqp(name, &simple)? {
            out.push((name.to_string(), p));
        }
    }
    Ok(out)
}

fn prop_to_amqp(v: &PropValue) -> SimpleValue {
    match v {
        PropValue::String(s) => SimpleValue::String(s.clone()),
        PropValue::DateTime(secs) => {
            SimpleValue::Timestamp(Timestamp::from_milliseconds(secs.saturating_mul(1000)))
        }
        PropValue::Bool(b) => SimpleValue::Bool(*b),
        PropValue::Int(n) => SimpleValue::Long(*n),
        PropValue::Double(f) => SimpleValue::Double((*f).into()),
    }
}

fn annotation<'a>(m: &'a AmqpMessage, name: &str) -> Option<&'a Value> {
    m.message_annotations
        .as_ref()?
        .0
        .get(&OwnedKey::Symbol(Symbol::from(name)))
}

/// The body bytes the bus stores: data sections concatenated; an `amqp-value` string as UTF-8, binary as
/// is; any other value or sequence in its AMQP encoding.
fn body_bytes(body: &Body<Value>) -> Result<Bytes, String> {
    Ok(match body {
        Body::Data(sections) => {
            let mut out = Vec::new();
            for d in sections.iter() {
                out.extend_from_slice(&d.0);
            }
            Bytes::from(out)
        }
        Body::Value(v) => match &v.0 {
            Value::String(s) => Bytes::from(s.clone().into_bytes()),
            Value::Binary(b) => Bytes::from(b.to_vec()),
            other => Bytes::from(
                serde_amqp::to_vec(other).map_err(|e| format!("body cannot be encoded: {e}"))?,
            ),
        },
        Body::Sequence(seqs) => {
            let mut out = Vec::new();
            for s in seqs.iter() {
                out.extend(
                    serde_amqp::to_vec(&s.0).map_err(|e| format!("body cannot be encoded: {e}"))?,
                );
            }
            Bytes::from(out)
        }
        Body::Empty => Bytes::new(),
    })
}

/// An AMQP message as the bus stores it. Errors are the sender's fault (shown to it as `rejected`).
pub fn to_new_message(m: &AmqpMessage) -> Result<NewMessage, String> {
    let mut broker = BrokerProps::default();
    let mut content_type = None;
    if let Some(p) = &m.properties {
        broker.message_id = p.message_id.as_ref().map(id_text);
        broker.correlation_id = p.correlation_id.as_ref().map(id_text);
        broker.label = p.subject.clone();
        broker.to = p.to.clone();
        broker.reply_to = p.reply_to.clone();
        broker.session_id = p.group_id.clone();
        broker.reply_to_session_id = p.reply_to_group_id.clone();
        content_type = p.content_type.as_ref().map(|s| s.as_str().to_string());
    }
    if let Some(ttl) = m.header.as_ref().and_then(|h| h.ttl) {
        broker.time_to_live = Some(f64::from(ttl) / 1000.0);
    }
    if let Some(Value::Timestamp(t)) = annotation(m, annotations::SCHEDULED_ENQUEUE_TIME) {
        broker.scheduled_enqueue_time_utc = Some(t.milliseconds().div_euclid(1000));
    }
    if let Some(Value::String(k)) = annotation(m, annotations::PARTITION_KEY) {
        broker.partition_key = Some(k.clone());
    }
    let mut user = Vec::new();
    if let Some(ap) = &m.application_properties {
        for (k, v) in ap.0.iter() {
            if let Some(v) = prop_from_amqp(k, v)? {
                user.push((k.clone(), v));
            }
        }
    }
    Ok(NewMessage {
        meta: Meta {
            content_type,
            broker,
            user,
        },
        body: body_bytes(&m.body)?,
    })
}

/// The messages of one transfer: a batch (message format [`BATCH_FORMAT`]) carries one encoded message per
/// data section, anything else is one message.
pub fn transfer_messages(format: Option<u32>, m: &AmqpMessage) -> Result<Vec<NewMessage>, String> {
    if format != Some(BATCH_FORMAT) {
        return Ok(vec![to_new_message(m)?]);
    }
    let Body::Data(sections) = &m.body else {
        return Err("a batch message must carry its messages as data sections".into());
    };
    sections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let inner = decode(&d.0).map_err(|e| format!("batch item {i}: {e}"))?;
            to_new_message(&inner)
        })
        .collect()
}

/// Decodes one AMQP-encoded message (batch items, `$management` payloads).
pub fn decode(bytes: &[u8]) -> Result<AmqpMessage, String> {
    serde_amqp::from_slice::<Deserializable<AmqpMessage>>(bytes)
        .map(|d| d.0)
        .map_err(|e| format!("not an AMQP message: {e}"))
}

/// Encodes a message (`$management` peek answers carry messages encoded).
pub fn encode(m: &AmqpMessage) -> Result<Vec<u8>, String> {
    serde_amqp::to_vec(&Serializable(m)).map_err(|e| e.to_string())
}

fn sym(name: &str) -> OwnedKey {
    OwnedKey::Symbol(Symbol::from(name))
}

/// A stored message as Service Bus delivers it over AMQP. `locked_until_ms` is set for peek-locked
/// deliveries; `deferred` marks a deferred message (state 1 in `x-opt-message-state`, as Service Bus
/// reports it in peeks and in receives by sequence number).
pub fn from_record(rec: &Record, locked_until_ms: Option<i64>, deferred: bool) -> AmqpMessage {
    let meta = &rec.meta;
    let b = &meta.broker;
    let mut ann = OrderedMap::new();
    ann.insert(
        sym(annotations::SEQUENCE_NUMBER),
        Value::Long(rec.seq as i64),
    );
    ann.insert(
        sym(annotations::ENQUEUED_TIME),
        Value::Timestamp(Timestamp::from_milliseconds(rec.enqueued_ms)),
    );
    ann.insert(
        sym(annotations::ENQUEUE_SEQUENCE_NUMBER),
        Value::Long(rec.seq as i64),
    );
    let scheduled = b.scheduled_enqueue_time_utc.is_some() && rec.visible_ms > rec.enqueued_ms;
    ann.insert(
        sym(annotations::MESSAGE_STATE),
        Value::Int(if deferred {
            1
        } else if scheduled && rec.visible_ms > weft_bus::props::now_ms() {
            2
        } else {
            0
        }),
    );
    if let Some(t) = b.scheduled_enqueue_time_utc {
        ann.insert(
            sym(annotations::SCHEDULED_ENQUEUE_TIME),
            Value::Timestamp(Timestamp::from_milliseconds(t.saturating_mul(1000))),
        );
    }
    if let Some(k) = &b.partition_key {
        ann.insert(sym(annotations::PARTITION_KEY), Value::String(k.clone()));
    }
    if let Some(until) = locked_until_ms {
        ann.insert(
            sym(annotations::LOCKED_UNTIL),
            Value::Timestamp(Timestamp::from_milliseconds(until)),
        );
    }
    let ttl_ms = (rec.expires_ms != i64::MAX)
        .then(|| u32::try_from(rec.expires_ms - rec.visible_ms).unwrap_or(u32::MAX));
    let header = Header {
        durable: true,
        priority: Default::default(),
        ttl: ttl_ms,
        first_acquirer: rec.delivery_count <= 1,
        // AMQP counts earlier failed deliveries; Service Bus's DeliveryCount includes this one.
        delivery_count: rec.delivery_count.saturating_sub(1),
    };
    let properties = Properties {
        message_id: b.message_id.clone().map(MessageId::String),
        user_id: None,
        to: b.to.clone(),
        subject: b.label.clone(),
        reply_to: b.reply_to.clone(),
        correlation_id: b.correlation_id.clone().map(MessageId::String),
        content_type: meta.content_type.clone().map(Symbol::from),
        content_encoding: None,
        absolute_expiry_time: (rec.expires_ms != i64::MAX)
            .then(|| Timestamp::from_milliseconds(rec.expires_ms)),
        creation_time: Some(Timestamp::from_milliseconds(rec.enqueued_ms)),
        group_id: b.session_id.clone(),
        group_sequence: None,
        reply_to_group_id: b.reply_to_session_id.clone(),
    };
    let mut app = OrderedMap::new();
    for (k, v) in &meta.user {
        app.insert(k.clone(), prop_to_amqp(v));
    }
    Message {
        header: Some(header),
        delivery_annotations: None,
        message_annotations: Some(MessageAnnotations(ann)),
        properties: Some(properties),
        application_properties: (!app.is_empty()).then_some(ApplicationProperties(app)),
        body: Body::Data(vec![Data(Binary::from(rec.body.to_vec()))].into()),
        footer: None,
    }
}
