//! Event Hubs send (hub, partition, publisher, batch, PartitionKey) and the weft partition read endpoint.

mod common;

use common::*;
use serde_json::{Value, json};
use weft_bus::{BusConfig, EventHubConfig};

async fn bus() -> TestBus {
    TestBus::start(BusConfig {
        event_hubs: vec![EventHubConfig::new("hub", 4)],
        ..BusConfig::default()
    })
    .await
}

async fn post(
    bus: &TestBus,
    path: &str,
    body: &str,
    ct: &str,
    bp: Option<&str>,
) -> reqwest::Response {
    let mut r = bus
        .http
        .post(format!("{}?timeout=60&api-version=2014-01", bus.url(path)))
        .header("Authorization", bus.auth("hub"))
        .header("Content-Type", ct)
        .body(body.to_string());
    if let Some(bp) = bp {
        r = r.header("BrokerProperties", bp);
    }
    r.send().await.unwrap()
}

async fn read(bus: &TestBus, p: u32, offset: u64) -> Vec<Value> {
    let r = bus
        .http
        .get(bus.url(&format!(
            "hub/partitions/{p}/events?offset={offset}&max=100"
        )))
        .header("Authorization", bus.auth("hub"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The same PartitionKey always lands in the same partition; explicit partitions are honoured; offsets grow.
#[tokio::test]
async fn partition_keys_and_partitions() {
    let bus = bus().await;
    let ct = "application/atom+xml;type=entry;charset=utf-8";
    let mut placed = vec![];
    for i in 0..3 {
        let r = post(
            &bus,
            "hub/messages",
            &format!("k{i}"),
            ct,
            Some(r#"{"PartitionKey":"account"}"#),
        )
        .await;
        assert_eq!(r.status(), 201);
        placed.push(header(&r, "x-weft-partition-offsets").unwrap());
    }
    let p: u32 = placed[0].split(':').next().unwrap().parse().unwrap();
    assert!(
        placed.iter().all(|x| x.starts_with(&format!("{p}:"))),
        "{placed:?}"
    );
    let events = read(&bus, p, 0).await;
    let bodies: Vec<&str> = events.iter().map(|e| e["Body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["k0", "k1", "k2"]);
    assert_eq!(events[1]["Offset"], 1);
    assert_eq!(events[0]["BrokerProperties"]["PartitionKey"], "account");
    assert_eq!(read(&bus, p, 2).await.len(), 1, "reading from an offset");
    // SDK vector: key "7" hashes to -15263, |-15263 % 4| = 3.
    let r = post(
        &bus,
        "hub/messages",
        "seven",
        ct,
        Some(r#"{"PartitionKey":"7"}"#),
    )
    .await;
    assert!(
        header(&r, "x-weft-partition-offsets")
            .unwrap()
            .starts_with("3:")
    );
    let r = post(&bus, "hub/partitions/3/messages", "direct", ct, None).await;
    assert_eq!(r.status(), 201);
    assert!(read(&bus, 3, 0).await.iter().any(|e| e["Body"] == "direct"));
    assert_eq!(
        post(&bus, "hub/partitions/9/messages", "x", ct, None)
            .await
            .status(),
        400
    );
}

/// Publisher sends and batches (per-event PartitionKey and UserProperties) are stored; payloads round-trip.
#[tokio::test]
async fn publisher_and_batch() {
    let bus = bus().await;
    assert_eq!(
        post(
            &bus,
            "hub/publishers/dev1/messages",
            "pub",
            "text/plain",
            None
        )
        .await
        .status(),
        201
    );
    let batch = json!([
        {"Body": "b1", "BrokerProperties": {"PartitionKey": "x"}, "UserProperties": {"n": 1}},
        {"Body": "b2", "BrokerProperties": {"PartitionKey": "x"}}
    ]);
    let r = post(
        &bus,
        "hub/messages",
        &batch.to_string(),
        "application/vnd.microsoft.servicebus.json",
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    let mut all = vec![];
    for p in 0..4 {
        all.extend(read(&bus, p, 0).await);
    }
    let b1 = all.iter().find(|e| e["Body"] == "b1").unwrap();
    assert_eq!(b1["UserProperties"]["n"], 1);
    assert!(all.iter().any(|e| e["Body"] == "pub"));
    assert!(all.iter().any(|e| e["Body"] == "b2"));
}

/// A read with timeout waits for the next event (woken by the send).
#[tokio::test]
async fn read_long_poll() {
    let bus = std::sync::Arc::new(bus().await);
    let b = bus.clone();
    let reader = tokio::spawn(async move {
        b.http
            .get(b.url("hub/partitions/1/events?offset=0&timeout=30"))
            .header("Authorization", b.auth("hub"))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!reader.is_finished());
    assert_eq!(
        post(
            &bus,
            "hub/partitions/1/messages",
            "late",
            "text/plain",
            None
        )
        .await
        .status(),
        201
    );
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got[0]["Body"], "late");
}

/// Events older than the hub's retention are purged; offsets keep counting.
#[tokio::test]
async fn retention_purges_old_events() {
    let mut hub = EventHubConfig::new("hub", 4);
    hub.retention_hours = 0.3 / 3600.0;
    let cfg = BusConfig {
        event_hubs: vec![hub],
        ..BusConfig::default()
    };
    let bus = TestBus::start(cfg.clone()).await;
    assert_eq!(
        post(&bus, "hub/partitions/0/messages", "old", "text/plain", None)
            .await
            .status(),
        201
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // A fresh process purges on its first send.
    let bus = bus.restart(cfg).await;
    assert_eq!(
        post(&bus, "hub/partitions/0/messages", "new", "text/plain", None)
            .await
            .status(),
        201
    );
    let events = read(&bus, 0, 0).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0]["Body"].as_str(), events[0]["Offset"].as_u64()),
        (Some("new"), Some(1))
    );
}

/// A partition's runtime information (what Event Hubs' `$management` READ reports over AMQP) and the
/// enqueue-time lookup follow what REST sends: empty partitions report begin = next and last = begin − 1.
#[tokio::test]
async fn partition_info_and_enqueue_time_lookup() {
    let bus = bus().await;
    let shared = bus.handle.bus();
    let hub = shared
        .event_hub("HUB")
        .expect("hub names are case-insensitive");
    let store = shared.store();
    let empty = hub.partition_info(store, 2).await.unwrap();
    assert!(empty.is_empty);
    assert_eq!(
        (
            empty.begin_sequence_number,
            empty.last_enqueued_sequence_number
        ),
        (0, -1)
    );
    let before = weft_bus::props::now_ms();
    for body in ["a", "b"] {
        let r = post(&bus, "hub/partitions/2/messages", body, "text/plain", None).await;
        assert_eq!(r.status(), 201);
    }
    let info = hub.partition_info(store, 2).await.unwrap();
    assert!(!info.is_empty);
    assert_eq!(
        (
            info.begin_sequence_number,
            info.last_enqueued_sequence_number
        ),
        (0, 1)
    );
    assert!(info.last_enqueued_time_ms >= before);
    assert_eq!(hub.next_offset(2), 2);
    // Everything was enqueued at or after `before`; nothing after the newest event's time.
    assert_eq!(
        hub.offset_after_time(store, 2, before - 1, false)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        hub.offset_after_time(store, 2, info.last_enqueued_time_ms, false)
            .await
            .unwrap(),
        2,
        "no event after the newest: the next offset"
    );
    assert!(
        hub.offset_after_time(store, 2, info.last_enqueued_time_ms, true)
            .await
            .unwrap()
            <= 1
    );
    assert!(shared.event_hub("nohub").is_none());
}
