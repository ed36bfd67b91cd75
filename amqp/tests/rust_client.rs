//! The AMQP side driven by fe2o3-amqp's own client (the crate the listener is built on): sends, peek-lock
//! and its settlements, receive-and-delete, deferral and `receive-by-sequence-number` (with malformed
//! requests), `$cbs` authorization, and REST ↔ AMQP property round trips over one store.

mod common;

use common::{KEY, KEY_NAME, LISTEN_KEY, LISTEN_ONLY, TestBus};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{Error, ErrorCondition, SenderSettleMode};
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};

async fn connect(bus: &TestBus, profile: SaslProfile) -> (ConnectionHandle<()>, SessionHandle<()>) {
    let url = format!("amqp://127.0.0.1:{}", bus.amqp_port());
    let mut conn = Connection::builder()
        .container_id("weft-test")
        .sasl_profile(profile)
        .open(url.as_str())
        .await
        .unwrap();
    let session = Session::begin(&mut conn).await.unwrap();
    (conn, session)
}

fn root() -> SaslProfile {
    SaslProfile::Plain {
        username: KEY_NAME.into(),
        password: KEY.into(),
    }
}

fn message(body: &str, label: &str, props: &[(&str, SimpleValue)]) -> Message<Body<Value>> {
    let mut app = OrderedMap::new();
    for (k, v) in props {
        app.insert(k.to_string(), v.clone());
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            subject: Some(label.into()),
            message_id: Some(MessageId::String(format!("id-{body}"))),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(app)),
        body: Body::Data(vec![Data(Binary::from(body.as_bytes().to_vec()))].into()),
        footer: None,
    }
}

fn body_text(m: &Message<Body<Value>>) -> String {
    match &m.body {
        Body::Data(d) => String::from_utf8(d.iter().flat_map(|x| x.0.to_vec()).collect()).unwrap(),
        other => panic!("expected a data body, got {other:?}"),
    }
}

async fn peek_lock_receiver(session: &mut SessionHandle<()>, entity: &str) -> Receiver {
    Receiver::builder()
        .name(format!("recv-{entity}"))
        .source(entity)
        .sender_settle_mode(SenderSettleMode::Unsettled)
        .attach(session)
        .await
        .unwrap()
}

async fn sender(session: &mut SessionHandle<()>, entity: &str) -> Sender {
    Sender::attach(session, format!("send-{entity}"), entity)
        .await
        .unwrap()
}

#[tokio::test]
async fn peek_lock_complete_abandon_and_dead_letter() {
    let bus = TestBus::start().await;
    let (mut conn, mut session) = connect(&bus, root()).await;
    let mut tx = sender(&mut session, "orders").await;
    for b in ["one", "two", "three"] {
        let outcome = tx.send(message(b, "demo", &[])).await.unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    let mut rx = peek_lock_receiver(&mut session, "orders").await;

    let d1 = rx.recv::<Body<Value>>().await.unwrap();
    assert_eq!(body_text(d1.message()), "one");
    // The delivery tag is the lock token: a GUID, 16 bytes.
    assert_eq!(d1.delivery_tag().len(), 16);
    rx.accept(&d1).await.unwrap();

    let d2 = rx.recv::<Body<Value>>().await.unwrap();
    assert_eq!(body_text(d2.message()), "two");
    rx.release(&d2).await.unwrap();

    let d3 = rx.recv::<Body<Value>>().await.unwrap();
    assert_eq!(body_text(d3.message()), "three");
    let mut info = OrderedMap::new();
    info.insert(
        Symbol::from("DeadLetterReason"),
        Value::String("bad-order".into()),
    );
    info.insert(
        Symbol::from("DeadLetterErrorDescription"),
        Value::String("no customer".into()),
    );
    rx.reject(
        &d3,
        Error::new(
            ErrorCondition::Custom(Symbol::from("com.microsoft:dead-letter")),
            None,
            Some(info),
        ),
    )
    .await
    .unwrap();

    // The abandoned message comes back with its delivery count raised (AMQP counts earlier deliveries).
    let again = rx.recv::<Body<Value>>().await.unwrap();
    assert_eq!(body_text(again.message()), "two");
    assert_eq!(again.message().header.as_ref().unwrap().delivery_count, 1);
    rx.accept(&again).await.unwrap();

    // The dead-lettered one is in the dead-letter queue with the client's reason, seen over REST.
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "orders/$DeadLetterQueue",
            "orders/$DeadLetterQueue/messages/head?timeout=5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["deadletterreason"], "\"bad-order\"");
    assert_eq!(
        resp.headers()["deadlettererrordescription"],
        "\"no customer\""
    );
    assert_eq!(resp.text().await.unwrap(), "three");

    // Completed messages are gone: the queue is empty over REST.
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "orders",
            "orders/messages/head?timeout=0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    rx.close().await.unwrap();
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}

#[tokio::test]
async fn receive_and_delete_and_batches() {
    let bus = TestBus::start().await;
    let (mut conn, mut session) = connect(&bus, root()).await;
    let mut tx = sender(&mut session, "events").await;
    // A Service Bus batch: message format 0x80013700, one encoded message per data section.
    let items: Vec<Data> = ["a", "b"]
        .iter()
        .map(|b| {
            let bytes = serde_amqp::to_vec(
                &fe2o3_amqp::types::messaging::message::__private::Serializable(message(
                    b,
                    "batch",
                    &[],
                )),
            )
            .unwrap();
            Data(Binary::from(bytes))
        })
        .collect();
    let batch = Message::builder()
        .body(Body::<Value>::Data(items.into()))
        .build();
    let outcome = tx
        .send(
            Sendable::builder()
                .message(batch)
                .message_format(0x8001_3700)
                .build(),
        )
        .await
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");

    let mut rx = Receiver::builder()
        .name("rd")
        .source("events/Subscriptions/all")
        .sender_settle_mode(SenderSettleMode::Settled)
        .attach(&mut session)
        .await
        .unwrap();
    let first = rx.recv::<Body<Value>>().await.unwrap();
    let second = rx.recv::<Body<Value>>().await.unwrap();
    assert_eq!(body_text(first.message()), "a");
    assert_eq!(body_text(second.message()), "b");
    assert_eq!(
        first
            .message()
            .properties
            .as_ref()
            .unwrap()
            .subject
            .as_deref(),
        Some("batch")
    );
    // Receive-and-delete: nothing is left for REST.
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "events/subscriptions/all",
            "events/subscriptions/all/messages/head?timeout=0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    rx.close().await.unwrap();
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}

#[tokio::test]
async fn properties_round_trip_between_rest_and_amqp() {
    let bus = TestBus::start().await;
    // REST → AMQP: BrokerProperties and typed custom properties (a Dataverse claim name included).
    let batch = serde_json::json!([{
        "Body": "{\"MessageName\":\"Create\"}",
        "BrokerProperties": {"Label": "Create", "CorrelationId": "corr-1", "MessageId": "m-1", "ReplyTo": "back"},
        "UserProperties": {
            "http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName": "account",
            "Depth": 1, "Ratio": 0.5, "IsSync": true
        }
    }]);
    let resp = bus
        .rest_request(reqwest::Method::POST, "orders", "orders/messages")
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let (mut conn, mut session) = connect(&bus, root()).await;
    let mut rx = peek_lock_receiver(&mut session, "orders").await;
    let d = rx.recv::<Body<Value>>().await.unwrap();
    let m = d.message();
    let p = m.properties.as_ref().unwrap();
    assert_eq!(p.subject.as_deref(), Some("Create"));
    assert_eq!(p.correlation_id, Some(MessageId::String("corr-1".into())));
    assert_eq!(p.message_id, Some(MessageId::String("m-1".into())));
    assert_eq!(p.reply_to.as_deref(), Some("back"));
    let app = &m.application_properties.as_ref().unwrap().0;
    assert_eq!(
        app.get("http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName"),
        Some(&SimpleValue::String("account".into()))
    );
    assert_eq!(app.get("Depth"), Some(&SimpleValue::Long(1)));
    assert_eq!(app.get("Ratio"), Some(&SimpleValue::Double(0.5.into())));
    assert_eq!(app.get("IsSync"), Some(&SimpleValue::Bool(true)));
    let ann = &m.message_annotations.as_ref().unwrap().0;
    assert!(
        ann.get(
            &fe2o3_amqp::types::messaging::annotations::OwnedKey::Symbol(
                "x-opt-sequence-number".into()
            )
        )
        .is_some()
    );
    assert!(
        ann.get(
            &fe2o3_amqp::types::messaging::annotations::OwnedKey::Symbol(
                "x-opt-locked-until".into()
            )
        )
        .is_some()
    );
    assert_eq!(body_text(m), "{\"MessageName\":\"Create\"}");
    rx.accept(&d).await.unwrap();
    // Closed first: an attached receiver with credit would take the next message itself.
    rx.close().await.unwrap();

    // AMQP → REST.
    let mut tx = sender(&mut session, "orders").await;
    let out = message(
        "from-amqp",
        "Update",
        &[
            ("EntityLogicalName", SimpleValue::String("contact".into())),
            ("Attempt", SimpleValue::Int(3)),
        ],
    );
    assert!(tx.send(out).await.unwrap().is_accepted());
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "orders",
            "orders/messages/head?timeout=5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bp: serde_json::Value =
        serde_json::from_str(resp.headers()["brokerproperties"].to_str().unwrap()).unwrap();
    assert_eq!(bp["Label"], "Update");
    assert_eq!(bp["MessageId"], "id-from-amqp");
    let up: serde_json::Value =
        serde_json::from_str(resp.headers()["userproperties"].to_str().unwrap()).unwrap();
    assert_eq!(up["EntityLogicalName"], "contact");
    assert_eq!(up["Attempt"], 3);
    assert_eq!(resp.text().await.unwrap(), "from-amqp");
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}

/// Sends a `put-token` on `$cbs` and returns the answer's status code.
async fn put_token(session: &mut SessionHandle<()>, audience: &str, token: &str) -> i32 {
    let mut req = Sender::attach(session, "cbs-sender", "$cbs").await.unwrap();
    let mut resp = Receiver::builder()
        .name("cbs-receiver")
        .source("$cbs")
        .target("cbs-reply")
        .attach(session)
        .await
        .unwrap();
    let mut app = OrderedMap::new();
    app.insert(
        "operation".to_string(),
        SimpleValue::String("put-token".into()),
    );
    app.insert(
        "type".to_string(),
        SimpleValue::String("servicebus.windows.net:sastoken".into()),
    );
    app.insert("name".to_string(), SimpleValue::String(audience.into()));
    let m = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String("req-1".into())),
            reply_to: Some("cbs-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(app)),
        body: Body::Value(AmqpValue(Value::String(token.into()))),
        footer: None,
    };
    req.send(m).await.unwrap();
    let d = resp.recv::<Body<Value>>().await.unwrap();
    resp.accept(&d).await.unwrap();
    let m = d.into_message();
    assert_eq!(
        m.properties.unwrap().correlation_id,
        Some(MessageId::String("req-1".into()))
    );
    let status = match m.application_properties.unwrap().0.get("status-code") {
        Some(SimpleValue::Int(n)) => *n,
        other => panic!("status-code: {other:?}"),
    };
    req.close().await.unwrap();
    resp.close().await.unwrap();
    status
}

#[tokio::test]
async fn cbs_tokens_authorize_links_as_rest_does() {
    let bus = TestBus::start().await;
    let port = bus.amqp_port();
    let audience = format!("sb://127.0.0.1:{port}/orders");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Anonymous SASL and no token: the link is refused.
    let (mut conn, mut session) = connect(&bus, SaslProfile::Anonymous).await;
    let mut tx = sender(&mut session, "orders").await;
    let err = tx.send(message("x", "l", &[])).await;
    assert!(err.is_err(), "a send without a token must fail: {err:?}");
    drop(tx);

    // A token signed with the wrong key: 401, as over REST.
    let bad = weft_bus::sas::generate_token(&audience, KEY_NAME, "wrong-key", now + 600);
    assert_eq!(put_token(&mut session, &audience, &bad).await, 401);
    // An expired token: 401.
    let expired = weft_bus::sas::generate_token(&audience, KEY_NAME, KEY, now - 10);
    assert_eq!(put_token(&mut session, &audience, &expired).await, 401);
    // A Listen-only token is accepted but does not let the connection send.
    let listen = weft_bus::sas::generate_token(&audience, LISTEN_ONLY, LISTEN_KEY, now + 600);
    assert_eq!(put_token(&mut session, &audience, &listen).await, 202);
    let mut tx = Sender::attach(&mut session, "send-2", "orders")
        .await
        .unwrap();
    assert!(tx.send(message("y", "l", &[])).await.is_err());
    drop(tx);
    // The root token: sends work.
    let good = weft_bus::sas::generate_token(&audience, KEY_NAME, KEY, now + 600);
    assert_eq!(put_token(&mut session, &audience, &good).await, 202);
    let mut tx = Sender::attach(&mut session, "send-3", "orders")
        .await
        .unwrap();
    assert!(tx.send(message("z", "l", &[])).await.unwrap().is_accepted());
    // … but only for the entity in its audience.
    let mut other = Sender::attach(&mut session, "send-4", "events")
        .await
        .unwrap();
    assert!(other.send(message("w", "l", &[])).await.is_err());
    drop(other);
    tx.close().await.unwrap();
    let _ = session.end().await;
    let _ = conn.close().await;
    bus.stop().await;
}

/// Sends `operation` with `body` to `orders/$management`; returns (statusCode, errorCondition, body).
async fn orders_management(
    session: &mut SessionHandle<()>,
    operation: &str,
    body: Value,
) -> (i32, Option<String>, Value) {
    let mut req = Sender::attach(session, "orders-mgmt-sender", "orders/$management")
        .await
        .unwrap();
    let mut resp = Receiver::builder()
        .name("orders-mgmt-receiver")
        .source("orders/$management")
        .target("orders-mgmt-reply")
        .attach(session)
        .await
        .unwrap();
    let mut app = OrderedMap::new();
    app.insert(
        "operation".to_string(),
        SimpleValue::String(operation.into()),
    );
    let m = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String("req-1".into())),
            reply_to: Some("orders-mgmt-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(app)),
        body: Body::Value(AmqpValue(body)),
        footer: None,
    };
    req.send(m).await.unwrap();
    let d = resp.recv::<Body<Value>>().await.unwrap();
    let m = d.into_message();
    let app = m.application_properties.unwrap().0;
    let status = match app.get("statusCode") {
        Some(SimpleValue::Int(n)) => *n,
        other => panic!("statusCode: {other:?}"),
    };
    let cond = match app.get("errorCondition") {
        Some(SimpleValue::Symbol(s)) => Some(s.as_str().to_string()),
        _ => None,
    };
    let body = match m.body {
        Body::Value(AmqpValue(v)) => v,
        other => panic!("body {other:?}"),
    };
    req.close().await.unwrap();
    resp.close().await.unwrap();
    (status, cond, body)
}

/// A `receive-by-sequence-number` body.
fn by_sequence(seqs: Vec<Value>, settle_mode: Option<Value>) -> Value {
    let mut m = OrderedMap::new();
    m.insert(
        Value::String("sequence-numbers".into()),
        Value::Array(seqs.into()),
    );
    if let Some(mode) = settle_mode {
        m.insert(Value::String("receiver-settle-mode".into()), mode);
    }
    Value::Map(m)
}

/// Deferral as Python's SDK sends it (`modified` with `delivery-failed` and `undeliverable-here`), then
/// `receive-by-sequence-number` in receive-and-delete mode: the message comes back encoded with state 1
/// (deferred) and no lock token, and is gone; malformed requests get 400 and an unknown or already taken
/// number 404 `com.microsoft:message-not-found`, with the bus still serving.
#[tokio::test]
async fn defer_and_receive_by_sequence_number() {
    use fe2o3_amqp::types::messaging::Modified;

    let bus = TestBus::start().await;
    let (mut conn, mut session) = connect(&bus, root()).await;
    let mut tx = sender(&mut session, "orders").await;
    let outcome = tx
        .send(message("later", "demo", &[("n", SimpleValue::Long(9))]))
        .await
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
    let mut rx = peek_lock_receiver(&mut session, "orders").await;
    let d = rx.recv::<Body<Value>>().await.unwrap();
    let seq = match d.message().message_annotations.as_ref().unwrap().0.get(
        &fe2o3_amqp::types::messaging::annotations::OwnedKey::Symbol(Symbol::from(
            "x-opt-sequence-number",
        )),
    ) {
        Some(Value::Long(n)) => *n,
        other => panic!("x-opt-sequence-number: {other:?}"),
    };
    let mut modify = OrderedMap::new();
    modify.insert(Symbol::from("why"), Value::String("later".into()));
    rx.modify(
        &d,
        Modified {
            delivery_failed: Some(true),
            undeliverable_here: Some(true),
            message_annotations: Some(modify),
        },
    )
    .await
    .unwrap();
    rx.close().await.unwrap();
    // Deferred: not handed out by a REST receive.
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "orders",
            "orders/messages/head?timeout=1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let bad = [
        (Value::Map(OrderedMap::new()), "needs 'sequence-numbers'"),
        (by_sequence(vec![Value::Long(-1)], None), "non-negative"),
        (
            by_sequence(vec![Value::Long(seq)], Some(Value::Uint(7))),
            "receiver-settle-mode 7",
        ),
        (
            by_sequence(vec![Value::Long(1); 1001], None),
            "MAX_DEFERRED_PER_REQUEST",
        ),
    ];
    for (body, why) in bad {
        let (status, _, _) = orders_management(
            &mut session,
            "com.microsoft:receive-by-sequence-number",
            body,
        )
        .await;
        assert_eq!(status, 400, "{why}");
    }

    let (status, cond, body) = orders_management(
        &mut session,
        "com.microsoft:receive-by-sequence-number",
        by_sequence(vec![Value::Long(seq)], Some(Value::Uint(0))),
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(cond, None);
    let Value::Map(answer) = body else {
        panic!("not a map: {body:?}")
    };
    let Some(Value::List(messages)) = answer.get(&Value::String("messages".into())) else {
        panic!("no messages: {answer:?}")
    };
    assert_eq!(messages.len(), 1);
    let Value::Map(item) = &messages[0] else {
        panic!("item {:?}", messages[0])
    };
    assert!(
        !item.contains_key(&Value::String("lock-token".into())),
        "receive-and-delete: no lock token"
    );
    let Some(Value::Binary(encoded)) = item.get(&Value::String("message".into())) else {
        panic!("no encoded message: {item:?}")
    };
    let m = serde_amqp::from_slice::<
        fe2o3_amqp::types::messaging::message::__private::Deserializable<Message<Body<Value>>>,
    >(encoded)
    .unwrap()
    .0;
    assert_eq!(body_text(&m), "later");
    let ann = &m.message_annotations.as_ref().unwrap().0;
    let state = ann.get(
        &fe2o3_amqp::types::messaging::annotations::OwnedKey::Symbol(Symbol::from(
            "x-opt-message-state",
        )),
    );
    assert_eq!(state, Some(&Value::Int(1)), "deferred");
    let app = &m.application_properties.as_ref().unwrap().0;
    assert_eq!(app.get("n"), Some(&SimpleValue::Long(9)));
    assert_eq!(
        app.get("why"),
        Some(&SimpleValue::String("later".into())),
        "the property to modify sent with the defer"
    );

    let (status, cond, _) = orders_management(
        &mut session,
        "com.microsoft:receive-by-sequence-number",
        by_sequence(vec![Value::Long(seq)], Some(Value::Uint(1))),
    )
    .await;
    assert_eq!(status, 404, "taken already");
    assert_eq!(cond.as_deref(), Some("com.microsoft:message-not-found"));
    assert_eq!(
        bus.bus.bus().entity_depth("orders").unwrap().depth.active,
        0
    );
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}

/// A session receiver (`com.microsoft:session-filter` on the source) is refused with
/// `amqp:not-implemented` rather than served as a plain receiver: the bus has no sessions. The message
/// waiting in the queue stays there.
#[tokio::test]
async fn session_receivers_are_refused() {
    use fe2o3_amqp::link::{LinkStateError, ReceiverAttachError, RecvError};
    use fe2o3_amqp::types::messaging::Source;

    let bus = TestBus::start().await;
    let (mut conn, mut session) = connect(&bus, root()).await;
    let mut tx = sender(&mut session, "orders").await;
    assert!(
        tx.send(message("kept", "demo", &[]))
            .await
            .unwrap()
            .is_accepted()
    );
    let mut filter = OrderedMap::new();
    filter.insert(
        Symbol::from("com.microsoft:session-filter"),
        Value::String("s-1".into()),
    );
    let attached = Receiver::builder()
        .name("session-receiver")
        .source(Source::builder().address("orders").filter(filter).build())
        .sender_settle_mode(SenderSettleMode::Unsettled)
        .attach(&mut session)
        .await;
    let err = match attached {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => e,
        Err(other) => panic!("unexpected attach error {other:?}"),
        Ok(mut rx) => match rx.recv::<Body<Value>>().await {
            Err(RecvError::LinkStateError(
                LinkStateError::RemoteClosedWithError(e)
                | LinkStateError::RemoteDetachedWithError(e),
            )) => e,
            other => panic!("expected the link to be closed with an error, got {other:?}"),
        },
    };
    assert!(
        format!("{:?}", err.condition).contains("NotImplemented")
            || format!("{:?}", err.condition).contains("not-implemented"),
        "{err:?}"
    );
    let mut rx = peek_lock_receiver(&mut session, "orders").await;
    let d = rx.recv::<Body<Value>>().await.unwrap();
    assert_eq!(body_text(d.message()), "kept");
    rx.accept(&d).await.unwrap();
    rx.close().await.unwrap();
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}
