//! Service Bus REST operations against a real bus on loopback, with hand-built requests per Microsoft's docs.

mod common;

use std::collections::BTreeMap;

use common::*;
use reqwest::Method;
use serde_json::json;
use weft_bus::{BusConfig, QueueConfig, SubscriptionConfig, TopicConfig};

fn queue(name: &str) -> QueueConfig {
    QueueConfig::new(name)
}

fn config(queues: Vec<QueueConfig>, topics: Vec<TopicConfig>) -> BusConfig {
    BusConfig {
        queues,
        topics,
        ..BusConfig::default()
    }
}

/// Send (201), receive-and-delete (200 with body, Content-Type, BrokerProperties), then empty (204).
#[tokio::test]
async fn send_and_receive_and_delete() {
    let bus = TestBus::start(config(vec![queue("orders")], vec![])).await;
    let r = bus
        .send(
            "orders",
            r#"{"a":1}"#,
            &[(
                "BrokerProperties",
                r#"{"Label":"M1","MessageId":"id-1","CorrelationId":"c1"}"#,
            )],
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.content_length(), Some(0));
    let r = bus.receive_delete("orders", 1).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    let bp = broker(&r);
    assert_eq!(bp["Label"], "M1");
    assert_eq!(bp["MessageId"], "id-1");
    assert_eq!(bp["CorrelationId"], "c1");
    assert_eq!(bp["DeliveryCount"], 1);
    assert_eq!(bp["SequenceNumber"], 1);
    assert!(bp["EnqueuedTimeUtc"].as_str().unwrap().ends_with(" GMT"));
    assert_eq!(r.text().await.unwrap(), r#"{"a":1}"#);
    assert_eq!(bus.receive_delete("orders", 0).await.status(), 204);
}

/// Peek-lock: 201 + Location lock URI + LockToken/LockedUntilUtc; unlock makes it available again with
/// DeliveryCount 2; renew answers 200; complete deletes; a settled lock is 404.
#[tokio::test]
async fn peek_lock_unlock_renew_complete() {
    let bus = TestBus::start(config(vec![queue("q")], vec![])).await;
    assert_eq!(bus.send("q", "hello", &[]).await.status(), 201);
    let r = bus.peek_lock("q", 1).await;
    assert_eq!(r.status(), 201);
    let bp = broker(&r);
    let token = bp["LockToken"].as_str().unwrap().to_string();
    assert!(bp["LockedUntilUtc"].as_str().unwrap().ends_with(" GMT"));
    assert_eq!(bp["DeliveryCount"], 1);
    let seq = bp["SequenceNumber"].as_u64().unwrap();
    let loc = header(&r, "location").unwrap();
    assert_eq!(loc, bus.url(&format!("q/messages/{seq}/{token}")));
    assert_eq!(r.text().await.unwrap(), "hello");
    // Locked: nobody else gets it.
    assert_eq!(bus.peek_lock("q", 0).await.status(), 204);
    assert_eq!(bus.lock_op(Method::POST, &loc, "q").await.status(), 200);
    assert_eq!(bus.lock_op(Method::PUT, &loc, "q").await.status(), 200);
    let r = bus.peek_lock("q", 1).await;
    assert_eq!(r.status(), 201);
    assert_eq!(broker(&r)["DeliveryCount"], 2);
    let loc2 = header(&r, "location").unwrap();
    assert_eq!(
        bus.lock_op(Method::DELETE, &loc, "q").await.status(),
        404,
        "old lock is gone"
    );
    assert_eq!(bus.lock_op(Method::DELETE, &loc2, "q").await.status(), 200);
    assert_eq!(bus.lock_op(Method::DELETE, &loc2, "q").await.status(), 404);
    assert_eq!(bus.receive_delete("q", 0).await.status(), 204);
    // The lock URI may name the MessageId instead of the sequence number.
    assert_eq!(
        bus.send("q", "x", &[("BrokerProperties", r#"{"MessageId":"mid"}"#)])
            .await
            .status(),
        201
    );
    let r = bus.peek_lock("q", 1).await;
    let t = broker(&r)["LockToken"].as_str().unwrap().to_string();
    assert_eq!(
        bus.lock_op(
            Method::DELETE,
            &bus.url(&format!("q/messages/other/{t}")),
            "q"
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        bus.lock_op(
            Method::DELETE,
            &bus.url(&format!("q/messages/mid/{t}")),
            "q"
        )
        .await
        .status(),
        200
    );
}

/// A lock that expires makes the message available again; after max deliveries it goes to $DeadLetterQueue
/// with DeadLetterReason.
#[tokio::test]
async fn lock_expiry_redelivery_and_dead_letter() {
    let mut q = queue("jobs");
    q.lock_duration_secs = 0.3;
    q.max_delivery_count = 2;
    let bus = TestBus::start(config(vec![q], vec![])).await;
    assert_eq!(bus.send("jobs", "work", &[]).await.status(), 201);
    let r = bus.peek_lock("jobs", 1).await;
    assert_eq!(broker(&r)["DeliveryCount"], 1);
    // Waits for the lock to lapse (long poll wakes at lock expiry, no busy loop needed by the client).
    let r = bus.peek_lock("jobs", 5).await;
    assert_eq!(r.status(), 201);
    assert_eq!(broker(&r)["DeliveryCount"], 2);
    let loc = header(&r, "location").unwrap();
    assert_eq!(bus.lock_op(Method::PUT, &loc, "jobs").await.status(), 200);
    assert_eq!(
        bus.receive_delete("jobs", 0).await.status(),
        204,
        "out of deliveries: moved away"
    );
    let r = bus.receive_delete("jobs/$DeadLetterQueue", 1).await;
    assert_eq!(r.status(), 200);
    let props: serde_json::Value =
        serde_json::from_str(&header(&r, "userproperties").unwrap()).unwrap();
    assert_eq!(props["DeadLetterReason"], "MaxDeliveryCountExceeded");
    assert_eq!(
        header(&r, "DeadLetterReason").as_deref(),
        Some("\"MaxDeliveryCountExceeded\"")
    );
    assert_eq!(r.text().await.unwrap(), "work");
}

/// Expired messages are never delivered (per-message TimeToLive and entity default), or are dead-lettered
/// when the entity says so.
#[tokio::test]
async fn ttl_expiry() {
    let mut dl = queue("dl");
    dl.default_ttl_secs = Some(0.3);
    dl.dead_letter_on_expiration = true;
    let bus = TestBus::start(config(vec![queue("t"), dl], vec![])).await;
    assert_eq!(
        bus.send(
            "t",
            "short",
            &[("BrokerProperties", r#"{"TimeToLive":0.3}"#)]
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        bus.send("t", "long", &[("BrokerProperties", r#"{"TimeToLive":60}"#)])
            .await
            .status(),
        201
    );
    assert_eq!(bus.send("dl", "gone", &[]).await.status(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = bus.receive_delete("t", 0).await;
    assert_eq!(r.status(), 200);
    assert_eq!(broker(&r)["TimeToLive"], 60.0);
    assert_eq!(r.text().await.unwrap(), "long");
    assert_eq!(bus.receive_delete("t", 0).await.status(), 204);
    assert_eq!(bus.receive_delete("dl", 0).await.status(), 204);
    let r = bus.receive_delete("dl/$DeadLetterQueue", 0).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "DeadLetterReason").as_deref(),
        Some("\"TTLExpiredException\"")
    );
}

/// Duplicate MessageIds inside the window are accepted (201) but stored once.
#[tokio::test]
async fn duplicate_detection() {
    let mut q = queue("d");
    q.duplicate_detection_window_secs = Some(600.0);
    let bus = TestBus::start(config(vec![q, queue("nodup")], vec![])).await;
    for e in ["d", "nodup"] {
        for _ in 0..2 {
            assert_eq!(
                bus.send(e, "x", &[("BrokerProperties", r#"{"MessageId":"same"}"#)])
                    .await
                    .status(),
                201
            );
        }
    }
    assert_eq!(bus.receive_delete("d", 0).await.status(), 200);
    assert_eq!(bus.receive_delete("d", 0).await.status(), 204);
    assert_eq!(bus.receive_delete("nodup", 0).await.status(), 200);
    assert_eq!(bus.receive_delete("nodup", 0).await.status(), 200);
}

/// Custom property headers are typed on send and come back with Azure's quoting; badly typed values are 400.
#[tokio::test]
async fn custom_properties_typing() {
    let bus = TestBus::start(config(vec![queue("p")], vec![])).await;
    let r = bus
        .send(
            "p",
            "x",
            &[
                ("Priority", "\"High\""),
                ("Count", "12"),
                ("Ratio", "0.5"),
                ("Flag", "true"),
                ("When", "\"Sun, 06 Nov 1994 08:49:37 GMT\""),
            ],
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = bus.receive_delete("p", 1).await;
    assert_eq!(header(&r, "Priority").as_deref(), Some("\"High\""));
    assert_eq!(header(&r, "Count").as_deref(), Some("12"));
    assert_eq!(header(&r, "Ratio").as_deref(), Some("0.5"));
    assert_eq!(header(&r, "Flag").as_deref(), Some("true"));
    assert_eq!(
        header(&r, "When").as_deref(),
        Some("\"Sun, 06 Nov 1994 08:49:37 GMT\"")
    );
    let up: serde_json::Value =
        serde_json::from_str(&header(&r, "UserProperties").unwrap()).unwrap();
    // HTTP/1.1 header names are case-insensitive and arrive lower-cased; batch UserProperties keep case.
    assert_eq!(
        up,
        json!({"priority":"High","count":12,"ratio":0.5,"flag":true,"when":"Sun, 06 Nov 1994 08:49:37 GMT"})
    );
    let r = bus.send("p", "x", &[("Customer", "12345,ABC")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("<Error><Code>400</Code>"));
}

/// Batch send with Dataverse claim property names (not legal header names) delivers each message with its
/// properties in the UserProperties header.
#[tokio::test]
async fn batch_send_with_claim_properties() {
    let bus = TestBus::start(config(vec![queue("b")], vec![])).await;
    let claim = "http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName";
    let batch = json!([
        {"Body": "{\"MessageName\":\"Create\"}", "BrokerProperties": {"Label": "one"}, "UserProperties": {claim: "account", "Depth": 1}},
        {"Body": "two", "BrokerProperties": {"Label": "two", "MessageId": "m2"}}
    ]);
    let r = bus
        .http
        .post(bus.url("b/messages"))
        .header("Authorization", bus.auth("b"))
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = bus.receive_delete("b", 1).await;
    assert_eq!(broker(&r)["Label"], "one");
    let up: serde_json::Value =
        serde_json::from_str(&header(&r, "UserProperties").unwrap()).unwrap();
    assert_eq!(up[claim], "account");
    assert_eq!(up["Depth"], 1);
    assert_eq!(header(&r, "Depth").as_deref(), Some("1"));
    assert_eq!(r.text().await.unwrap(), "{\"MessageName\":\"Create\"}");
    let r = bus.receive_delete("b", 1).await;
    assert_eq!(broker(&r)["MessageId"], "m2");
    assert_eq!(r.text().await.unwrap(), "two");
}

/// Malformed input gets 400 with an Azure error body and stores nothing.
#[tokio::test]
async fn malformed_requests() {
    let bus = TestBus::start(config(vec![queue("m")], vec![])).await;
    let bad_bp = bus
        .send("m", "x", &[("BrokerProperties", "{not json")])
        .await;
    assert_eq!(bad_bp.status(), 400);
    assert!(bad_bp.text().await.unwrap().contains("BrokerProperties"));
    assert_eq!(
        bus.send(
            "m",
            "x",
            &[("BrokerProperties", r#"{"TimeToLive":"soon"}"#)]
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        bus.send(
            "m",
            "x",
            &[(
                "BrokerProperties",
                r#"{"SessionId":"a","PartitionKey":"b"}"#
            )]
        )
        .await
        .status(),
        400
    );
    for body in [
        "{",
        "{}",
        "[1]",
        r#"[{"Body":1}]"#,
        r#"[{"Body":"x","UserProperties":{"a":[1]}}]"#,
    ] {
        let r = bus
            .http
            .post(bus.url("m/messages"))
            .header("Authorization", bus.auth("m"))
            .header(
                "Content-Type",
                "application/vnd.microsoft.servicebus.json; charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "batch {body}");
    }
    let big_prop = format!("\"{}\"", "p".repeat(33 * 1024));
    assert_eq!(
        bus.send("m", "x", &[("Big", &big_prop)]).await.status(),
        400,
        "a property over 32 KB"
    );
    let many: Vec<(String, String)> = (0..3)
        .map(|i| (format!("P{i}"), format!("\"{}\"", "p".repeat(30 * 1024))))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = bus.send("m", "x", &refs).await;
    assert_eq!(r.status(), 400, "properties over 64 KB in total");
    assert!(r.text().await.unwrap().contains("SerializationException"));
    let r = bus
        .http
        .post(bus.url("m/messages/head?timeout=abc"))
        .header("Authorization", bus.auth("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        bus.receive_delete("m", 0).await.status(),
        204,
        "nothing was stored"
    );
}

/// Over 256 KB is 403 (Azure's "message too large"); a missing entity is 410; a topic cannot be read directly.
#[tokio::test]
async fn oversized_and_missing_entities() {
    let bus = TestBus::start(config(
        vec![queue("big")],
        vec![TopicConfig::new(
            "t",
            vec![SubscriptionConfig::new("s", BTreeMap::new())],
        )],
    ))
    .await;
    let big = "x".repeat(256 * 1024 + 1);
    let r = bus.send("big", &big, &[]).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("exceeds the maximum message size")
    );
    assert_eq!(bus.receive_delete("big", 0).await.status(), 204);
    let r = bus.send("nosuch", "x", &[]).await;
    assert_eq!(r.status(), 410);
    assert_eq!(bus.receive_delete("nosuch", 0).await.status(), 410);
    assert_eq!(bus.receive_delete("t", 0).await.status(), 400);
}

/// Long polling: a waiting receiver is woken by a send (answers well before its timeout).
#[tokio::test]
async fn long_poll_wakes_on_send() {
    let bus = std::sync::Arc::new(TestBus::start(config(vec![queue("lp")], vec![])).await);
    let b2 = bus.clone();
    let waiter = tokio::spawn(async move {
        let r = b2.receive_delete("lp", 30).await;
        (r.status(), r.text().await.unwrap())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "receiver waits while the queue is empty"
    );
    assert_eq!(bus.send("lp", "wake", &[]).await.status(), 201);
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "wake"));
}

/// Topic fan-out: every subscription gets its copy; a correlation filter on the Dataverse claim takes only
/// matching messages; subscription DLQ paths work.
#[tokio::test]
async fn topic_fan_out_and_filters() {
    let mut f = BTreeMap::new();
    f.insert("EntityLogicalName".to_string(), "account".to_string());
    let mut label = BTreeMap::new();
    label.insert("Label".to_string(), "L".to_string());
    let topic = TopicConfig::new(
        "events",
        vec![
            SubscriptionConfig::new("all", BTreeMap::new()),
            SubscriptionConfig::new("accounts", f),
            SubscriptionConfig::new("labelled", label),
        ],
    );
    let mut topic = topic;
    let mut sql = SubscriptionConfig::new("sql", BTreeMap::new());
    // Dataverse's documented subscription filter, verbatim.
    sql.sql_filter = Some(
        r#""http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName" = 'contact'"#.into(),
    );
    topic.subscriptions.push(sql);
    let bus = TestBus::start(config(vec![], vec![topic])).await;
    let claim = "http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName";
    let batch = json!([
        {"Body": "acc", "UserProperties": {claim: "account"}},
        {"Body": "con", "BrokerProperties": {"Label": "L"}, "UserProperties": {claim: "contact"}}
    ]);
    let r = bus
        .http
        .post(bus.url("events/messages"))
        .header("Authorization", bus.auth("events"))
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut got = BTreeMap::new();
    for sub in ["all", "accounts", "labelled", "sql"] {
        let path = format!("events/subscriptions/{sub}");
        let mut bodies = vec![];
        loop {
            let r = bus.receive_delete(&path, 0).await;
            if r.status() == 204 {
                break;
            }
            assert_eq!(r.status(), 200);
            bodies.push(r.text().await.unwrap());
        }
        got.insert(sub, bodies);
    }
    assert_eq!(got["all"], vec!["acc", "con"]);
    assert_eq!(got["accounts"], vec!["acc"]);
    assert_eq!(got["labelled"], vec!["con"]);
    assert_eq!(got["sql"], vec!["con"]);
    // A token scoped to one subscription cannot read another.
    let tok = token(&bus.url("events/subscriptions/all"));
    let r = bus
        .http
        .delete(bus.url("events/subscriptions/accounts/messages/head?timeout=0"))
        .header("Authorization", tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        bus.receive_delete("events/subscriptions/all/$DeadLetterQueue", 0)
            .await
            .status(),
        204
    );
}

/// ScheduledEnqueueTimeUtc in the future hides the message until then.
#[tokio::test]
async fn scheduled_enqueue() {
    let bus = TestBus::start(config(vec![queue("s")], vec![])).await;
    let at =
        httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(4));
    let bp = json!({ "ScheduledEnqueueTimeUtc": at }).to_string();
    assert_eq!(
        bus.send("s", "later", &[("BrokerProperties", &bp)])
            .await
            .status(),
        201
    );
    assert_eq!(bus.receive_delete("s", 0).await.status(), 204);
    let r = bus.receive_delete("s", 20).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "later");
}

/// Restart durability: acknowledged messages (queue, locked, dead-lettered, topic copies), delivery counts,
/// sequence numbers and duplicate ids survive shutdown and start on the same data directory.
#[tokio::test]
async fn restart_durability() {
    let mut q = queue("dur");
    q.duplicate_detection_window_secs = Some(600.0);
    let cfg = config(
        vec![q, queue("other")],
        vec![TopicConfig::new(
            "t",
            vec![SubscriptionConfig::new("s", BTreeMap::new())],
        )],
    );
    let bus = TestBus::start(cfg.clone()).await;
    for i in 0..3 {
        let bp = format!(r#"{{"MessageId":"m{i}"}}"#);
        assert_eq!(
            bus.send(
                "dur",
                &format!("body{i}"),
                &[("BrokerProperties", &bp), ("Tag", "\"t\"")]
            )
            .await
            .status(),
            201
        );
    }
    assert_eq!(bus.send("t", "topic-copy", &[]).await.status(), 201);
    assert_eq!(
        bus.receive_delete("dur", 0).await.status(),
        200,
        "m0 consumed"
    );
    let r = bus.peek_lock("dur", 0).await;
    assert_eq!(broker(&r)["DeliveryCount"], 1, "m1 locked once");
    let bus = bus.restart(cfg).await;
    assert_eq!(
        bus.send(
            "dur",
            "dup",
            &[("BrokerProperties", r#"{"MessageId":"m2"}"#)]
        )
        .await
        .status(),
        201
    );
    let r = bus.receive_delete("dur", 1).await;
    let bp = broker(&r);
    assert_eq!(
        (bp["MessageId"].as_str(), bp["DeliveryCount"].as_u64()),
        (Some("m1"), Some(2)),
        "lock lost, count kept"
    );
    assert_eq!(header(&r, "Tag").as_deref(), Some("\"t\""));
    assert_eq!(r.text().await.unwrap(), "body1");
    let r = bus.receive_delete("dur", 1).await;
    assert_eq!(broker(&r)["MessageId"], "m2");
    assert_eq!(
        bus.receive_delete("dur", 0).await.status(),
        204,
        "duplicate of m2 after restart was dropped"
    );
    assert_eq!(bus.send("dur", "new", &[]).await.status(), 201);
    let r = bus.receive_delete("dur", 1).await;
    assert_eq!(
        broker(&r)["SequenceNumber"],
        4,
        "sequence numbers are not reused"
    );
    let r = bus.receive_delete("t/subscriptions/s", 1).await;
    assert_eq!(r.text().await.unwrap(), "topic-copy");
    bus.handle.shutdown().await.unwrap();
}

/// Peek-lock on a subscription: the Location names the subscription path and completing it works.
#[tokio::test]
async fn subscription_peek_lock_complete() {
    let topic = TopicConfig::new("tp", vec![SubscriptionConfig::new("s1", BTreeMap::new())]);
    let bus = TestBus::start(config(vec![], vec![topic])).await;
    assert_eq!(bus.send("tp", "m", &[]).await.status(), 201);
    let r = bus.peek_lock("tp/subscriptions/s1", 1).await;
    assert_eq!(r.status(), 201);
    let loc = header(&r, "location").unwrap();
    assert!(
        loc.starts_with(&bus.url("tp/subscriptions/s1/messages/1/")),
        "{loc}"
    );
    assert_eq!(
        bus.lock_op(Method::DELETE, &loc, "tp/subscriptions/s1")
            .await
            .status(),
        200
    );
    assert_eq!(
        bus.receive_delete("tp/subscriptions/s1", 0).await.status(),
        204
    );
}

/// The entity size quota answers 403 QuotaExceeded and keeps what was stored.
#[tokio::test]
async fn quota_exceeded() {
    let mut q = queue("small");
    q.max_size_mb = 1;
    let bus = TestBus::start(config(vec![q], vec![])).await;
    let body = "x".repeat(250 * 1024);
    for _ in 0..4 {
        assert_eq!(bus.send("small", &body, &[]).await.status(), 201);
    }
    let r = bus.send("small", &body, &[]).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("QuotaExceeded"));
    assert_eq!(bus.receive_delete("small", 0).await.status(), 200);
    assert_eq!(
        bus.send("small", &body, &[]).await.status(),
        201,
        "room again after a receive"
    );
}

/// Shutdown ends long polls (204) instead of waiting out their timeout.
#[tokio::test]
async fn shutdown_ends_long_polls() {
    let bus = TestBus::start(config(vec![queue("idle")], vec![])).await;
    let (http, url, auth) = (
        bus.http.clone(),
        bus.url("idle/messages/head?timeout=600"),
        bus.auth("idle"),
    );
    let poll = tokio::spawn(async move {
        http.delete(url)
            .header("Authorization", auth)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let TestBus { handle, .. } = bus;
    tokio::time::timeout(std::time::Duration::from_secs(60), handle.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(poll.await.unwrap(), 204);
}

/// A lock URI naming a mixed-case MessageId settles that message: the id is matched exactly as sent, never
/// lower-cased (issue #10, finding 16).
#[tokio::test]
async fn lock_uri_keeps_message_id_case() {
    let bus = TestBus::start(BusConfig {
        queues: vec![QueueConfig::new("q")],
        ..BusConfig::default()
    })
    .await;
    let sent = bus
        .send(
            "q",
            "x",
            &[("BrokerProperties", r#"{"MessageId":"Mid-A"}"#)],
        )
        .await;
    assert_eq!(sent.status(), 201);
    let r = bus.peek_lock("q", 1).await;
    let t = broker(&r)["LockToken"].as_str().unwrap().to_string();
    let lower = bus.url(&format!("q/MESSAGES/mid-a/{t}"));
    assert_eq!(
        bus.lock_op(Method::POST, &lower, "q").await.status(),
        404,
        "another case is another id"
    );
    let exact = bus.url(&format!("q/MESSAGES/Mid-A/{t}"));
    assert_eq!(bus.lock_op(Method::POST, &exact, "q").await.status(), 200);
    assert_eq!(bus.lock_op(Method::DELETE, &exact, "q").await.status(), 200);
    assert_eq!(bus.receive_delete("q", 0).await.status(), 204, "completed");
}

/// Issue #14 §4, found with the legacy REST libraries (npm `azure-sb`, PyPI `azure-servicebus` 0.21), which
/// turn every unknown response header into a custom property: the `UserProperties` JSON header is sent only
/// to a receiver that asks with `X-Weft-UserProperties: 1`; the properties' own headers are always there.
#[tokio::test]
async fn user_properties_header_only_when_asked() {
    let bus = TestBus::start(config(vec![queue("u")], vec![])).await;
    for _ in 0..2 {
        let r = bus.send("u", "x", &[("Priority", "\"High\"")]).await;
        assert_eq!(r.status(), 201);
    }
    let r = bus
        .http
        .delete(bus.url("u/messages/head?timeout=1"))
        .header("Authorization", bus.auth("u"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Priority").as_deref(), Some("\"High\""));
    assert!(header(&r, "UserProperties").is_none(), "not asked for");
    let r = bus.receive_delete("u", 1).await;
    let up: serde_json::Value =
        serde_json::from_str(&header(&r, "UserProperties").unwrap()).unwrap();
    assert_eq!(up, json!({"priority": "High"}));
    // The request header is never a custom property of a send.
    let r = bus
        .send(
            "u",
            "y",
            &[(weft_bus::server::USER_PROPERTIES_REQUEST, "1")],
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = bus.receive_delete("u", 1).await;
    assert!(header(&r, "UserProperties").is_none(), "{:?}", r.headers());
}

/// Issue #14 §4: a custom property sent as a header (its name lower-cased by HTTP/1.1) meets a correlation
/// filter naming it in its own case, as on Azure, whose front end keeps the sender's spelling; the
/// Dataverse claim shorthand too. Values stay case-sensitive, as Azure compares them.
#[tokio::test]
async fn header_property_names_meet_filters_in_any_case() {
    let account: BTreeMap<String, String> =
        [("EntityLogicalName".to_owned(), "account".to_owned())].into();
    let bus = TestBus::start(config(
        vec![],
        vec![TopicConfig::new(
            "events",
            vec![SubscriptionConfig::new("accounts", account)],
        )],
    ))
    .await;
    let sub = "events/subscriptions/accounts";
    let r = bus
        .send("events", "one", &[("EntityLogicalName", "\"account\"")])
        .await;
    assert_eq!(r.status(), 201);
    let r = bus
        .send(
            "events",
            "other case value",
            &[("EntityLogicalName", "\"Account\"")],
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = bus.receive_delete(sub, 1).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "one");
    assert_eq!(bus.receive_delete(sub, 0).await.status(), 204);
}

/// Issue #14 §4: `"TimeToLive":"120"` (a number in a string, as Microsoft's legacy Python library sends it)
/// is accepted as Azure's DataContractJsonSerializer accepts it; text that is no positive number is not.
#[tokio::test]
async fn time_to_live_as_a_numeric_string() {
    let bus = TestBus::start(config(vec![queue("ttl")], vec![])).await;
    let r = bus
        .send(
            "ttl",
            "x",
            &[("BrokerProperties", r#"{"TimeToLive":"120"}"#)],
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = bus.receive_delete("ttl", 1).await;
    assert_eq!(broker(&r)["TimeToLive"], 120.0);
    let r = bus
        .send(
            "ttl",
            "x",
            &[("BrokerProperties", r#"{"TimeToLive":"soon"}"#)],
        )
        .await;
    assert_eq!(r.status(), 400);
}

/// Issue #14 §4: custom property names sent as headers keep the case the client wrote on the wire (HTTP/1.1
/// carries it; a plain TCP client writes it here, as Node's and Python's HTTP clients do), across keep-alive
/// requests with bodies: the receiver's UserProperties has `EntityLogicalName`, not `entitylogicalname`.
#[tokio::test]
async fn header_property_names_keep_their_case() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bus = TestBus::start(config(vec![queue("case")], vec![])).await;
    let host = bus.base.trim_start_matches("http://").to_owned();
    let token = bus.auth("case");
    let mut tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    // Two pipelined sends on one connection, the first with a chunked body.
    let request = format!(
        "POST /case/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n\
         EntityLogicalName: \"account\"\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n\
         POST /case/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n\
         RequestName: \"Create\"\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer.matches("HTTP/1.1 201").count(), 2, "{answer}");
    for (body, name) in [("one", "EntityLogicalName"), ("two", "RequestName")] {
        let r = bus.receive_delete("case", 1).await;
        let up: serde_json::Value =
            serde_json::from_str(&header(&r, "UserProperties").unwrap()).unwrap();
        assert!(up.get(name).is_some(), "{name} as sent: {up}");
        assert_eq!(r.text().await.unwrap(), body);
    }
}
