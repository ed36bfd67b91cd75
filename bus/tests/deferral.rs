//! Service Bus deferral in the broker and the store, over a real bus with messages sent over REST: a
//! deferred message is out of ordinary receives but counted and peeked as Deferred, survives a restart
//! with its delivery count, is received only by sequence number (all or none), goes back to the deferred
//! set on abandon or lock expiry, expires by TTL into the dead-letter queue, and an older store gains the
//! state column at start. The AMQP side (`amqp/tests/sdk.rs`) drives the same code through the official
//! SDKs.

mod common;

use common::*;
use weft_bus::broker::{DeferredError, Delivered, Entity, MessageState, Mode};
use weft_bus::{BusConfig, QueueConfig};

fn config() -> BusConfig {
    let mut q = QueueConfig::new("q");
    q.lock_duration_secs = 30.0;
    let mut short = QueueConfig::new("short");
    short.lock_duration_secs = 1.0;
    let mut ttl = QueueConfig::new("ttl");
    ttl.default_ttl_secs = Some(2.0);
    ttl.dead_letter_on_expiration = true;
    BusConfig {
        queues: vec![q, short, ttl],
        ..BusConfig::default()
    }
}

/// Peek-locks the head of `e` through the broker (what an AMQP receiving link does).
async fn lock_head(bus: &TestBus, e: &Entity) -> Delivered {
    let b = bus.handle.bus();
    e.receive(b.store(), Mode::PeekLock, 5_000, b.shutdown_signal())
        .await
        .unwrap()
        .expect("a message to lock")
}

fn token(d: &Delivered) -> String {
    d.lock.expect("peek-locked").0.to_string()
}

/// Defers the head of `e` and returns its sequence number.
async fn defer_head(bus: &TestBus, e: &Entity) -> u64 {
    let d = lock_head(bus, e).await;
    e.defer(bus.handle.bus().store(), None, &token(&d))
        .await
        .unwrap()
        .unwrap();
    d.rec.seq
}

async fn receive_deferred(
    bus: &TestBus,
    e: &Entity,
    seqs: &[u64],
    mode: Mode,
) -> Result<Vec<Delivered>, DeferredError> {
    e.receive_deferred(bus.handle.bus().store(), seqs, mode)
        .await
        .unwrap()
}

/// Defer → not received (REST) but counted and peeked as Deferred → unknown and partly unknown sequence
/// numbers take nothing → restart → received by sequence number with its properties and delivery count
/// → abandon keeps it deferred → defer again → receive-and-delete by sequence number empties the queue.
#[tokio::test]
async fn deferral_counts_and_restart() {
    let bus = TestBus::start(config()).await;
    let props = [("EntityLogicalName", "\"account\""), ("Depth", "2")];
    assert_eq!(bus.send("q", "m1", &props).await.status(), 201);
    assert_eq!(bus.send("q", "m2", &[]).await.status(), 201);
    let b = bus.handle.bus();
    let e = b.receiver("q").unwrap();
    let seq = defer_head(&bus, &e).await;

    // An ordinary (REST) receive gets m2, not the deferred m1.
    let r = bus.peek_lock("q", 1).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "m2");
    let d = b.entity_depth("q").unwrap();
    assert_eq!(
        (d.depth.active, d.depth.locked, d.depth.deferred),
        (2, 1, 1),
        "deferred and locked messages are active, as Azure counts them"
    );
    let peeked = b.peek("q", false, 0, 10).await.unwrap();
    assert_eq!(peeked[0].state, Some(MessageState::Deferred));
    assert_eq!(peeked[0].state.unwrap().name(), "Deferred");
    assert_eq!(peeked[1].state, Some(MessageState::Locked));
    assert_eq!(bus.receive_delete("q", 0).await.status(), 204);

    // All or none: a number that is not deferred (m2 is locked, 999 does not exist) takes nothing.
    let m2 = peeked[1].record.seq;
    for wanted in [vec![999], vec![seq, m2], vec![seq, 999]] {
        let missing = *wanted.last().unwrap();
        assert_eq!(
            receive_deferred(&bus, &e, &wanted, Mode::PeekLock)
                .await
                .err(),
            Some(DeferredError::NotFound(missing))
        );
    }
    assert_eq!(
        e.message_state(seq, weft_bus::props::now_ms()),
        Some(MessageState::Deferred)
    );

    // Across a restart: still deferred, still out of ordinary receives (the lock on m2 is gone: m2 is
    // available again).
    // The bus's data directory is free once nothing holds the bus.
    drop((e, b));
    let bus = bus.restart(config()).await;
    let b = bus.handle.bus();
    let e = b.receiver("q").unwrap();
    let d = b.entity_depth("q").unwrap();
    assert_eq!((d.depth.active, d.depth.deferred), (2, 1));
    let r = bus.receive_delete("q", 1).await;
    assert_eq!(r.text().await.unwrap(), "m2");
    assert_eq!(bus.receive_delete("q", 0).await.status(), 204);

    let got = receive_deferred(&bus, &e, &[seq, seq], Mode::PeekLock)
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "a number asked twice is received once");
    let m = &got[0];
    assert_eq!(&m.rec.body[..], b"m1");
    assert_eq!(m.rec.delivery_count, 2, "the deferring receive counted");
    // Sent as headers by reqwest, which lower-cases names (see the README: header case).
    let user = &m.rec.meta.user;
    let prop = |name: &str| {
        user.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_text())
    };
    assert_eq!(prop("EntityLogicalName").as_deref(), Some("account"));
    assert_eq!(prop("Depth").as_deref(), Some("2"));
    assert_eq!(
        e.message_state(seq, weft_bus::props::now_ms()),
        Some(MessageState::Deferred),
        "locked by sequence number, still Deferred"
    );
    assert_eq!(
        receive_deferred(&bus, &e, &[seq], Mode::PeekLock)
            .await
            .err(),
        Some(DeferredError::NotFound(seq)),
        "locked already"
    );
    e.renew(b.store(), None, &token(m)).unwrap();
    e.abandon(b.store(), None, &token(m))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.entity_depth("q").unwrap().depth.deferred, 1);
    assert_eq!(
        bus.receive_delete("q", 0).await.status(),
        204,
        "abandoned: deferred, not active"
    );

    let m = receive_deferred(&bus, &e, &[seq], Mode::PeekLock)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(m.rec.delivery_count, 3);
    e.defer(b.store(), None, &token(&m)).await.unwrap().unwrap();
    let m = receive_deferred(&bus, &e, &[seq], Mode::ReceiveAndDelete)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(m.lock.is_none());
    assert_eq!(m.rec.delivery_count, 4);
    let d = b.entity_depth("q").unwrap();
    assert_eq!((d.depth.active, d.depth.deferred), (0, 0));

    // Gone from the store too.
    drop((e, b));
    let bus = bus.restart(config()).await;
    let d = bus.handle.bus().entity_depth("q").unwrap();
    assert_eq!((d.depth.active, d.depth.deferred), (0, 0));
    bus.handle.shutdown().await.unwrap();
}

/// A deferred message received by sequence number whose lock expires goes back to the deferred set,
/// not to ordinary receivers.
#[tokio::test]
async fn expired_lock_of_a_deferred_message() {
    let bus = TestBus::start(config()).await;
    assert_eq!(bus.send("short", "s1", &[]).await.status(), 201);
    let b = bus.handle.bus();
    let e = b.receiver("short").unwrap();
    let seq = defer_head(&bus, &e).await;
    receive_deferred(&bus, &e, &[seq], Mode::PeekLock)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    assert_eq!(bus.receive_delete("short", 0).await.status(), 204);
    let again = receive_deferred(&bus, &e, &[seq], Mode::PeekLock)
        .await
        .unwrap();
    assert_eq!(&again[0].rec.body[..], b"s1");
    bus.handle.shutdown().await.unwrap();
}

/// A deferred message expires by its TTL as any other: out of the queue, into the dead-letter queue
/// (the queue dead-letters on expiration) with `TTLExpiredException`; receiving it by sequence number
/// then finds nothing.
#[tokio::test]
async fn deferred_messages_expire() {
    let bus = TestBus::start(config()).await;
    assert_eq!(bus.send("ttl", "t1", &[]).await.status(), 201);
    let b = bus.handle.bus();
    let e = b.receiver("ttl").unwrap();
    let seq = defer_head(&bus, &e).await;
    assert_eq!(b.entity_depth("ttl").unwrap().depth.deferred, 1);
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    assert_eq!(
        receive_deferred(&bus, &e, &[seq], Mode::PeekLock)
            .await
            .err(),
        Some(DeferredError::NotFound(seq))
    );
    let d = b.entity_depth("ttl").unwrap();
    assert_eq!((d.depth.active, d.depth.deferred, d.dead_letter), (0, 0, 1));
    let r = bus.receive_delete("ttl/$DeadLetterQueue", 5).await;
    assert_eq!(r.status(), 200);
    let up: serde_json::Value =
        serde_json::from_str(&header(&r, "UserProperties").unwrap()).unwrap();
    assert_eq!(up["DeadLetterReason"], "TTLExpiredException");
    assert_eq!(r.text().await.unwrap(), "t1");
    bus.handle.shutdown().await.unwrap();
}

/// A store written before deferral existed (no `messages.state` column) is migrated at start: its
/// messages are active, and one deferred afterwards stays deferred across the next restart.
#[tokio::test]
async fn store_without_the_state_column_is_migrated() {
    let bus = TestBus::start(config()).await;
    assert_eq!(bus.send("q", "old", &[]).await.status(), 201);
    let TestBus { handle, dir, .. } = bus;
    handle.shutdown().await.unwrap();
    {
        // The messages table as it was: the same columns without `state`.
        let conn = rusqlite::Connection::open(dir.path().join("bus.sqlite")).unwrap();
        conn.execute_batch(
            "CREATE TABLE old_messages AS SELECT entity, seq, enqueued_ms, visible_ms, expires_ms,
               delivery_count, meta, body FROM messages;
             DROP TABLE messages;
             CREATE TABLE messages(
               entity TEXT NOT NULL, seq INTEGER NOT NULL, enqueued_ms INTEGER NOT NULL,
               visible_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, delivery_count INTEGER NOT NULL,
               meta TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY(entity, seq)) WITHOUT ROWID;
             INSERT INTO messages SELECT * FROM old_messages;
             DROP TABLE old_messages;",
        )
        .unwrap();
    }
    let mut c = config();
    c.bind = "127.0.0.1:0".parse().unwrap();
    let bus = TestBus::start_in(c, dir).await;
    let b = bus.handle.bus();
    let e = b.receiver("q").unwrap();
    assert_eq!(b.entity_depth("q").unwrap().depth.active, 1);
    let seq = defer_head(&bus, &e).await;
    drop((e, b));
    let bus = bus.restart(config()).await;
    let b = bus.handle.bus();
    assert_eq!(b.entity_depth("q").unwrap().depth.deferred, 1);
    assert_eq!(
        b.receiver("q")
            .unwrap()
            .message_state(seq, weft_bus::props::now_ms()),
        Some(MessageState::Deferred)
    );
    drop(b);
    bus.handle.shutdown().await.unwrap();
}
