//! The operator's view of the bus (`weft_bus::server::inspect`, what weft's console shows): depths, peeks
//! that lock nothing and count no delivery, and a dead letter resubmitted to its queue or subscription in
//! one store transaction — checked across a restart, over a real bus with messages sent over REST.

mod common;

use common::*;
use weft_bus::broker::{MessageState, ResubmitError};
use weft_bus::server::inspect::InspectError;
use weft_bus::{BusConfig, QueueConfig, SubscriptionConfig, TopicConfig};

fn config() -> BusConfig {
    let mut q = QueueConfig::new("q");
    q.max_delivery_count = 1;
    let mut s = SubscriptionConfig::new("s", Default::default());
    s.max_delivery_count = 1;
    BusConfig {
        queues: vec![q],
        topics: vec![TopicConfig::new("t", vec![s])],
        ..BusConfig::default()
    }
}

/// Peek-locks the head of `entity` and abandons it: with one delivery allowed it is dead-lettered.
async fn dead_letter_head(bus: &TestBus, entity: &str) -> serde_json::Value {
    let r = bus.peek_lock(entity, 5).await;
    assert_eq!(r.status(), 201);
    let props = broker(&r);
    let location = header(&r, "Location").unwrap();
    let r = bus.lock_op(reqwest::Method::PUT, &location, entity).await;
    assert_eq!(r.status(), 200);
    props
}

#[tokio::test]
async fn peek_depths_and_resubmit() {
    let bus = TestBus::start(config()).await;
    assert_eq!(
        bus.send("q", "m1", &[("Priority", "\"High\"")])
            .await
            .status(),
        201
    );
    let later = r#"{"ScheduledEnqueueTimeUtc":"Fri, 06 Nov 2099 08:49:37 GMT"}"#;
    assert_eq!(
        bus.send("q", "m2", &[("BrokerProperties", later)])
            .await
            .status(),
        201
    );
    assert_eq!(bus.send("q", "m3", &[]).await.status(), 201);
    let b = bus.handle.bus();

    // Peek: everything in sequence order, scheduled included, nothing locked or counted.
    let peeked = b.peek("q", false, 0, 10).await.unwrap();
    let states: Vec<_> = peeked.iter().map(|p| p.state).collect();
    assert_eq!(
        states,
        [
            Some(MessageState::Active),
            Some(MessageState::Scheduled),
            Some(MessageState::Active)
        ]
    );
    assert!(peeked.iter().all(|p| p.record.delivery_count == 0));
    let again = b.peek("Q", false, peeked[1].record.seq, 10).await.unwrap();
    assert_eq!(
        again.len(),
        2,
        "from a sequence number on; names are case-insensitive"
    );
    let d = b.entity_depth("q").unwrap();
    assert_eq!(
        (
            d.depth.active,
            d.depth.scheduled,
            d.depth.locked,
            d.dead_letter
        ),
        (2, 1, 0, 0)
    );

    // A lock shows in the peek and the counts; an abandon (one delivery allowed) dead-letters m1.
    let r = bus.peek_lock("q", 5).await;
    let location = header(&r, "Location").unwrap();
    let peeked = b.peek("q", false, 0, 1).await.unwrap();
    assert_eq!(peeked[0].state, Some(MessageState::Locked));
    assert_eq!(peeked[0].record.delivery_count, 1);
    assert_eq!(b.entity_depth("q").unwrap().depth.locked, 1);
    let r = bus.lock_op(reqwest::Method::PUT, &location, "q").await;
    assert_eq!(r.status(), 200);
    let d = b.entity_depth("q").unwrap();
    assert_eq!(
        (d.depth.active, d.depth.scheduled, d.dead_letter),
        (1, 1, 1)
    );
    let dead = b.peek("q", true, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let seq = dead[0].record.seq;
    assert_eq!(&dead[0].record.body[..], b"m1");
    assert!(
        dead[0]
            .record
            .meta
            .user
            .iter()
            .any(|(k, v)| k == "DeadLetterReason" && v.as_text() == "MaxDeliveryCountExceeded")
    );

    // Resubmit: back in the queue as a new message; a second resubmit finds nothing.
    let new_seq = b.resubmit("q", seq).await.unwrap();
    assert!(new_seq > 3, "a new sequence number: {new_seq}");
    let d = b.entity_depth("q").unwrap();
    assert_eq!((d.depth.active, d.dead_letter), (2, 0));
    assert!(matches!(
        b.resubmit("q", seq).await,
        Err(InspectError::Resubmit(ResubmitError::NotFound(s))) if s == seq
    ));
    assert!(matches!(
        b.resubmit("nope", 1).await,
        Err(InspectError::UnknownEntity(_))
    ));
    assert!(matches!(
        b.peek("q/$DeadLetterQueue", false, 0, 1).await,
        Err(InspectError::UnknownEntity(_))
    ));

    // The store has exactly the resubmitted copy: after a restart the counts are the same, and the
    // receive gets m3 then m1 with its custom property and without the dead-letter ones.
    drop(b); // it holds the store, and with it the data directory's lock
    let bus = bus.restart(config()).await;
    let b = bus.handle.bus();
    let d = b.entity_depth("q").unwrap();
    assert_eq!(
        (d.depth.active, d.depth.scheduled, d.dead_letter),
        (2, 1, 0)
    );
    let r = bus.receive_delete("q", 5).await;
    assert_eq!(r.text().await.unwrap(), "m3");
    let r = bus.receive_delete("q", 5).await;
    let props = broker(&r);
    assert_eq!(props["SequenceNumber"], new_seq);
    assert_eq!(props["DeliveryCount"], 1);
    assert_eq!(header(&r, "Priority").as_deref(), Some("\"High\""));
    assert!(header(&r, "DeadLetterReason").is_none());
    assert_eq!(r.text().await.unwrap(), "m1");
}

#[tokio::test]
async fn subscription_dead_letter_resubmitted_to_the_subscription() {
    let bus = TestBus::start(config()).await;
    assert_eq!(bus.send("t", "e1", &[]).await.status(), 201);
    assert_eq!(bus.send("t", "e2", &[]).await.status(), 201);
    let dead = dead_letter_head(&bus, "t/subscriptions/s").await;
    let b = bus.handle.bus();
    let (_, topics) = b.depths();
    assert_eq!(topics[0].subscriptions[0].dead_letter, 1);
    let seq = dead["SequenceNumber"].as_u64().unwrap();
    let new_seq = b.resubmit("t/subscriptions/s", seq).await.unwrap();
    // The topic's counter numbers it: after e2 (2).
    assert_eq!(new_seq, 3);
    let d = b.entity_depth("t/subscriptions/s").unwrap();
    assert_eq!((d.depth.active, d.dead_letter), (2, 0));
    assert_eq!(bus.send("t", "e4", &[]).await.status(), 201);
    let peeked = b.peek("t/subscriptions/s", false, 0, 10).await.unwrap();
    let seqs: Vec<u64> = peeked.iter().map(|p| p.record.seq).collect();
    assert_eq!(seqs, [2, 3, 4], "sequence numbers stay unique");
}
