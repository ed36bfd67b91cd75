//! Event Hubs over AMQP driven by fe2o3-amqp's own client: keyed batches land where the REST side's
//! resolver puts them, consumers start where their selector filter says and wake on new events, owner
//! levels displace lower receivers, and hostile addresses, filters and `$management` requests get
//! precise AMQP errors while the bus keeps serving.

mod common;

use common::{KEY, KEY_NAME, TestBus};
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::link::{LinkStateError, ReceiverAttachError, RecvError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{Error, ErrorCondition};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageAnnotations, MessageId,
    Properties, Source,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;

async fn connect(bus: &TestBus) -> (ConnectionHandle<()>, SessionHandle<()>) {
    let url = format!("amqp://127.0.0.1:{}", bus.amqp_port());
    let mut conn = Connection::builder()
        .container_id("weft-eh-test")
        .sasl_profile(SaslProfile::Plain {
            username: KEY_NAME.into(),
            password: KEY.into(),
        })
        .open(url.as_str())
        .await
        .unwrap();
    let session = Session::begin(&mut conn).await.unwrap();
    (conn, session)
}

fn event(body: &str, key: Option<&str>) -> Message<Body<Value>> {
    let annotations = key.map(|k| {
        let mut a = OrderedMap::new();
        a.insert(
            OwnedKey::Symbol(Symbol::from("x-opt-partition-key")),
            Value::String(k.into()),
        );
        MessageAnnotations(a)
    });
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: annotations,
        properties: None,
        application_properties: None,
        body: Body::Data(vec![Data(Binary::from(body.as_bytes().to_vec()))].into()),
        footer: None,
    }
}

/// A batch as the SDKs send it: format 0x80013700, each data section an encoded event, the partition
/// key on the batch itself.
fn batch(bodies: &[&str], key: &str) -> Sendable<Body<Value>> {
    let sections: Vec<Data> = bodies
        .iter()
        .map(|b| {
            let bytes = serde_amqp::to_vec(
                &fe2o3_amqp::types::messaging::message::__private::Serializable(event(
                    b,
                    Some(key),
                )),
            )
            .unwrap();
            Data(Binary::from(bytes))
        })
        .collect();
    let mut outer = event("", Some(key));
    outer.body = Body::Data(sections.into());
    Sendable::builder()
        .message(outer)
        .message_format(0x8001_3700)
        .build()
}

fn source(address: &str, selector: Option<Value>) -> Source {
    let mut s = Source::builder().address(address.to_string());
    if let Some(v) = selector {
        let mut filter = OrderedMap::new();
        filter.insert(
            Symbol::from("apache.org:selector-filter:string"),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Code(0x0000_468C_0000_0004),
                value: v,
            })),
        );
        s = s.filter(filter);
    }
    s.build()
}

fn selector(expr: &str) -> Option<Value> {
    Some(Value::String(expr.into()))
}

async fn consumer(
    session: &mut SessionHandle<()>,
    name: &str,
    src: Source,
    epoch: Option<i64>,
) -> Result<Receiver, ReceiverAttachError> {
    let mut b = Receiver::builder().name(name).source(src);
    if let Some(e) = epoch {
        let mut props = OrderedMap::new();
        props.insert(Symbol::from("com.microsoft:epoch"), Value::Long(e));
        b = b.properties(props);
    }
    b.attach(session).await
}

fn body_text(m: &Message<Body<Value>>) -> String {
    match &m.body {
        Body::Data(d) => String::from_utf8(d.iter().flat_map(|x| x.0.to_vec()).collect()).unwrap(),
        other => panic!("expected a data body, got {other:?}"),
    }
}

fn annotation<'a>(m: &'a Message<Body<Value>>, name: &str) -> &'a Value {
    m.message_annotations
        .as_ref()
        .and_then(|a| a.0.get(&OwnedKey::Symbol(Symbol::from(name))))
        .unwrap_or_else(|| panic!("no {name} annotation"))
}

/// The condition's symbol (fe2o3 decodes the standard ones into enums).
fn condition(e: &Error) -> String {
    let symbol = match &e.condition {
        ErrorCondition::Custom(s) => s.clone(),
        ErrorCondition::AmqpError(a) => Symbol::from(a),
        ErrorCondition::LinkError(l) => Symbol::from(l),
        ErrorCondition::SessionError(s) => Symbol::from(s),
        ErrorCondition::ConnectionError(c) => Symbol::from(c),
    };
    symbol.as_str().to_string()
}

/// The error a refused link ends with, whether it arrives with the attach or right after it.
async fn refused(attached: Result<Receiver, ReceiverAttachError>) -> Error {
    match attached {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => e,
        Err(other) => panic!("unexpected attach error {other:?}"),
        Ok(mut rx) => match rx.recv::<Body<Value>>().await {
            Err(RecvError::LinkStateError(
                LinkStateError::RemoteClosedWithError(e)
                | LinkStateError::RemoteDetachedWithError(e),
            )) => e,
            other => panic!("expected the link to be closed with an error, got {other:?}"),
        },
    }
}

/// Receives the next event's body within 10 s.
async fn next_body(rx: &mut Receiver) -> (String, Message<Body<Value>>) {
    let d = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv::<Body<Value>>())
        .await
        .expect("no event within 10 s")
        .unwrap();
    let m = d.into_message();
    (body_text(&m), m)
}

/// A keyed batch lands in one partition, the one the REST side's resolver computes; a consumer waiting
/// at `@latest` wakes for it and sees the Event Hubs annotations; sequence-number, offset and
/// enqueue-time filters start where they say.
#[tokio::test]
async fn keyed_batches_and_consumer_positions() {
    let bus = TestBus::start().await;
    let (mut conn, mut session) = connect(&bus).await;
    let p = weft_bus::eventhub::partition_for_key("customer-7", 4);
    let address = format!("hub/ConsumerGroups/$Default/Partitions/{p}");
    let mut latest = consumer(
        &mut session,
        "latest",
        source(
            &address,
            selector("amqp.annotation.x-opt-offset > '@latest'"),
        ),
        None,
    )
    .await
    .unwrap();
    let before = weft_bus::props::now_ms();
    let mut tx = Sender::attach(&mut session, "producer", "hub")
        .await
        .unwrap();
    let outcome = tx
        .send(batch(&["a", "b", "c"], "customer-7"))
        .await
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");

    let (body, m) = next_body(&mut latest).await;
    assert_eq!(body, "a");
    assert_eq!(annotation(&m, "x-opt-sequence-number"), &Value::Long(0));
    assert_eq!(annotation(&m, "x-opt-offset"), &Value::String("0".into()));
    assert_eq!(
        annotation(&m, "x-opt-partition-key"),
        &Value::String("customer-7".into())
    );
    match annotation(&m, "x-opt-enqueued-time") {
        Value::Timestamp(t) => assert!(t.milliseconds() >= before - 1000),
        other => panic!("x-opt-enqueued-time: {other:?}"),
    }
    assert_eq!(next_body(&mut latest).await.0, "b");
    assert_eq!(next_body(&mut latest).await.0, "c");

    // The same events as the REST read endpoint sees them: one partition, offsets 0..3.
    let resp = bus
        .rest_request(
            reqwest::Method::GET,
            "hub",
            &format!("hub/partitions/{p}/events?offset=0"),
        )
        .send()
        .await
        .unwrap();
    let events: serde_json::Value = resp.json().await.unwrap();
    let bodies: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["a", "b", "c"]);
    assert_eq!(events[0]["BrokerProperties"]["PartitionKey"], "customer-7");

    // Start positions.
    for (name, expr, first) in [
        ("seq", "amqp.annotation.x-opt-sequence-number > '0'", "b"),
        (
            "seq-incl",
            "amqp.annotation.x-opt-sequence-number >= '2'",
            "c",
        ),
        ("offset", "amqp.annotation.x-opt-offset >= '1'", "b"),
        ("earliest", "amqp.annotation.x-opt-offset > '-1'", "a"),
    ] {
        let mut rx = consumer(&mut session, name, source(&address, selector(expr)), None)
            .await
            .unwrap();
        assert_eq!(next_body(&mut rx).await.0, first, "{expr}");
        rx.close().await.unwrap();
    }
    // Enqueue time: everything was enqueued after `before`, nothing after now.
    let mut rx = consumer(
        &mut session,
        "time",
        source(
            &address,
            selector(&format!(
                "amqp.annotation.x-opt-enqueued-time > '{}'",
                before - 1000
            )),
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(next_body(&mut rx).await.0, "a");
    rx.close().await.unwrap();

    // A single event to an explicit partition.
    let other = (p + 1) % 4;
    let mut to_partition = Sender::attach(
        &mut session,
        "to-partition",
        format!("hub/Partitions/{other}"),
    )
    .await
    .unwrap();
    assert!(
        to_partition
            .send(event("direct", Some("customer-7")))
            .await
            .unwrap()
            .is_accepted()
    );
    let mut rx = consumer(
        &mut session,
        "direct",
        source(
            &format!("hub/ConsumerGroups/$Default/Partitions/{other}"),
            selector("amqp.annotation.x-opt-offset > '-1'"),
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(next_body(&mut rx).await.0, "direct");
    rx.close().await.unwrap();
    to_partition.close().await.unwrap();
    latest.close().await.unwrap();
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}

/// A receiver with a higher owner level displaces a lower one (which ends with
/// `com.microsoft:receiver-disconnected`); a later lower or unlevelled receiver is refused.
#[tokio::test]
async fn owner_levels_displace_lower_receivers() {
    let bus = TestBus::start().await;
    let (mut conn, mut session) = connect(&bus).await;
    let address = "hub/ConsumerGroups/$Default/Partitions/0";
    let earliest = || source(address, selector("amqp.annotation.x-opt-offset > '-1'"));
    let mut low = consumer(&mut session, "low", earliest(), Some(1))
        .await
        .unwrap();
    let mut tx = Sender::attach(&mut session, "p0", "hub/Partitions/0")
        .await
        .unwrap();
    tx.send(event("one", None)).await.unwrap();
    assert_eq!(next_body(&mut low).await.0, "one");

    let mut high = consumer(&mut session, "high", earliest(), Some(2))
        .await
        .unwrap();
    assert_eq!(next_body(&mut high).await.0, "one");
    let err = refused(Ok(low)).await;
    assert_eq!(condition(&err), "com.microsoft:receiver-disconnected");

    let err = refused(consumer(&mut session, "lower", earliest(), Some(1)).await).await;
    assert_eq!(condition(&err), "com.microsoft:receiver-disconnected");
    let err = refused(consumer(&mut session, "none", earliest(), None).await).await;
    assert_eq!(condition(&err), "com.microsoft:receiver-disconnected");

    high.close().await.unwrap();
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}

/// Sends a request to `$management` and returns (status-code, error-condition, body).
async fn management(
    session: &mut SessionHandle<()>,
    props: &[(&str, &str)],
) -> (i32, Option<String>, Value) {
    let mut req = Sender::attach(session, "mgmt-sender", "$management")
        .await
        .unwrap();
    let mut resp = Receiver::builder()
        .name("mgmt-receiver")
        .source("$management")
        .target("mgmt-reply")
        .attach(session)
        .await
        .unwrap();
    let mut app = OrderedMap::new();
    for (k, v) in props {
        app.insert(k.to_string(), SimpleValue::String(v.to_string()));
    }
    let m = Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String("req-1".into())),
            reply_to: Some("mgmt-reply".into()),
            ..Properties::default()
        }),
        application_properties: Some(ApplicationProperties(app)),
        body: Body::Value(AmqpValue(Value::Null)),
        footer: None,
    };
    req.send(m).await.unwrap();
    let d = resp.recv::<Body<Value>>().await.unwrap();
    let m = d.into_message();
    let app = m.application_properties.unwrap().0;
    let status = match app.get("status-code") {
        Some(SimpleValue::Int(n)) => *n,
        other => panic!("status-code: {other:?}"),
    };
    let cond = match app.get("error-condition") {
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

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    match v {
        Value::Map(m) => m
            .get(&Value::String(name.into()))
            .unwrap_or_else(|| panic!("no {name} in {v:?}")),
        other => panic!("not a map: {other:?}"),
    }
}

/// Unknown hubs, partitions out of range, unknown consumer groups, malformed filters and bad
/// `$management` requests get precise AMQP errors, and the bus goes on serving.
#[tokio::test]
async fn hostile_addresses_filters_and_requests_get_precise_errors() {
    let bus = TestBus::start().await;
    let (mut conn, mut session) = connect(&bus).await;
    let cases: [(&str, Option<Value>, &str); 8] = [
        (
            "nohub/ConsumerGroups/$Default/Partitions/0",
            None,
            "amqp:not-found",
        ),
        (
            "hub/ConsumerGroups/$Default/Partitions/4",
            None,
            "com.microsoft:argument-out-of-range",
        ),
        (
            "hub/ConsumerGroups/$Default/Partitions/-1",
            None,
            "com.microsoft:argument-out-of-range",
        ),
        (
            "hub/ConsumerGroups/other/Partitions/0",
            None,
            "amqp:not-found",
        ),
        (
            "hub/ConsumerGroups/$Default/Partitions/0",
            selector("amqp.annotation.x-opt-offset < '3'"),
            "com.microsoft:argument-error",
        ),
        (
            "hub/ConsumerGroups/$Default/Partitions/0",
            selector("amqp.annotation.x-opt-sequence-number > 'ten'"),
            "com.microsoft:argument-error",
        ),
        (
            "hub/ConsumerGroups/$Default/Partitions/0",
            Some(Value::Long(5)),
            "com.microsoft:argument-error",
        ),
        ("hub/Nonsense", None, "amqp:not-found"),
    ];
    for (i, (address, filter, want)) in cases.into_iter().enumerate() {
        let err = refused(
            consumer(
                &mut session,
                &format!("bad-{i}"),
                source(address, filter),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(condition(&err), want, "{address}: {err:?}");
    }
    // A producer on a partition out of range.
    let mut tx = Sender::attach(&mut session, "bad-producer", "hub/Partitions/9")
        .await
        .unwrap();
    match tx.send(event("x", None)).await {
        Err(e) => assert!(
            format!("{e:?}").contains("com.microsoft:argument-out-of-range"),
            "{e:?}"
        ),
        Ok(o) => panic!("a send to partition 9 of 4 was {o:?}"),
    }
    drop(tx);

    // $management.
    let (status, cond, body) = management(
        &mut session,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:eventhub"),
        ],
    )
    .await;
    assert_eq!((status, cond), (200, None));
    assert_eq!(field(&body, "partition_count"), &Value::Int(4));
    assert_eq!(field(&body, "name"), &Value::String("hub".into()));
    let (status, cond, _) = management(
        &mut session,
        &[
            ("operation", "READ"),
            ("name", "nohub"),
            ("type", "com.microsoft:eventhub"),
        ],
    )
    .await;
    assert_eq!((status, cond.as_deref()), (404, Some("amqp:not-found")));
    let (status, cond, _) = management(
        &mut session,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:partition"),
            ("partition", "17"),
        ],
    )
    .await;
    assert_eq!(
        (status, cond.as_deref()),
        (400, Some("com.microsoft:argument-out-of-range"))
    );
    let (status, _, _) = management(
        &mut session,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:nothing"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) =
        management(&mut session, &[("operation", "DELETE"), ("name", "hub")]).await;
    assert_eq!(status, 501);
    // A security token is checked as the REST side checks SAS: a wrong signature is 401 even on a
    // connection whose SASL login would have been enough.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let audience = format!("sb://127.0.0.1:{}/hub", bus.amqp_port());
    let bad = weft_bus::sas::generate_token(&audience, KEY_NAME, "wrong-key", now + 600);
    let (status, cond, _) = management(
        &mut session,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:eventhub"),
            ("security_token", &bad),
        ],
    )
    .await;
    assert_eq!(
        (status, cond.as_deref()),
        (401, Some("amqp:unauthorized-access"))
    );
    let good = weft_bus::sas::generate_token(&audience, KEY_NAME, KEY, now + 600);
    let (status, _, body) = management(
        &mut session,
        &[
            ("operation", "READ"),
            ("name", "hub"),
            ("type", "com.microsoft:partition"),
            ("partition", "3"),
            ("security_token", &good),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(field(&body, "is_partition_empty"), &Value::Bool(true));
    assert_eq!(
        field(&body, "last_enqueued_sequence_number"),
        &Value::Long(-1)
    );

    // Still serving: a send and a read on the same connection.
    let mut tx = Sender::attach(&mut session, "good", "hub/Partitions/3")
        .await
        .unwrap();
    assert!(tx.send(event("fine", None)).await.unwrap().is_accepted());
    let mut rx = consumer(
        &mut session,
        "good-rx",
        source(
            "hub/ConsumerGroups/$Default/Partitions/3",
            selector("amqp.annotation.x-opt-offset > '-1'"),
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(next_body(&mut rx).await.0, "fine");
    rx.close().await.unwrap();
    tx.close().await.unwrap();
    session.end().await.unwrap();
    conn.close().await.unwrap();
    bus.stop().await;
}
