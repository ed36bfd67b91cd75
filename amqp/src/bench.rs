//! `weft bench bus`: REST's figures (weft-bus) and, on the same bus in the same run, AMQP's — durable 1 KB
//! sends (each awaited until accepted, i.e. committed) and receive-and-delete receives, over the same
//! number of concurrent connections as REST, with fe2o3-amqp's client; and Event Hubs sends over AMQP
//! (the same 1 KB events to a 4-partition hub, round-robin, each awaited until committed).
//!
//! Owns the AMQP load generator only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::definitions::SenderSettleMode;
use fe2o3_amqp::types::messaging::{Body, Data, Message, MessageId, Properties};
use fe2o3_amqp::types::primitives::{Binary, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use weft_bus::bench::{BODY_BYTES, CONCURRENCY, Figures, HUB, KEY_NAME, MESSAGES, QUEUE};
use weft_bus::server::Bus;

/// The longest an AMQP phase may run (REST's take seconds in a release build).
const PHASE_LIMIT_SECS: u64 = 120;

/// Runs the bus benchmark with the AMQP phases added.
pub async fn run(json: bool) -> anyhow::Result<()> {
    weft_bus::bench::run_with(json, amqp_phases).await
}

async fn amqp_phases(bus: Arc<Bus>, key: String) -> anyhow::Result<Figures> {
    let amqp = crate::start(bus, "127.0.0.1:0".parse()?).await?;
    let url = format!("amqp://127.0.0.1:{}", amqp.local_addr().port());
    // Bounded: a phase that stops making progress ends the run with an error instead of hanging it.
    let bound = std::time::Duration::from_secs(PHASE_LIMIT_SECS);
    let result = async {
        let queue_sends = tokio::time::timeout(bound, sends(&url, &key, QUEUE))
            .await
            .map_err(|_| anyhow::anyhow!("AMQP sends did not finish within {PHASE_LIMIT_SECS} s"))?
            .context("AMQP sends")?;
        let receives = tokio::time::timeout(bound, receives(&url, &key))
            .await
            .map_err(|_| {
                anyhow::anyhow!("AMQP receives did not finish within {PHASE_LIMIT_SECS} s")
            })?
            .context("AMQP receives")?;
        let eh_sends = tokio::time::timeout(bound, sends(&url, &key, HUB))
            .await
            .map_err(|_| {
                anyhow::anyhow!("Event Hubs AMQP sends did not finish within {PHASE_LIMIT_SECS} s")
            })?
            .context("Event Hubs AMQP sends")?;
        anyhow::Ok(vec![
            ("amqp_sends_per_s", queue_sends, "AMQP sends   "),
            ("amqp_receives_per_s", receives, "AMQP receives"),
            ("amqp_eventhub_sends_per_s", eh_sends, "AMQP EH sends"),
        ])
    }
    .await;
    amqp.shutdown().await;
    result
}

async fn session(
    url: &str,
    key: &str,
) -> anyhow::Result<(
    fe2o3_amqp::connection::ConnectionHandle<()>,
    fe2o3_amqp::session::SessionHandle<()>,
)> {
    let mut conn = Connection::builder()
        .container_id(format!("bench-{}", uuid::Uuid::new_v4().simple()))
        .sasl_profile(SaslProfile::Plain {
            username: KEY_NAME.into(),
            password: key.into(),
        })
        .open(url)
        .await?;
    let session = Session::begin(&mut conn).await?;
    Ok((conn, session))
}

/// MESSAGES sends to `target` (the queue or the hub) over CONCURRENCY connections, each awaiting its
/// message's `accepted`.
async fn sends(url: &str, key: &str, target: &str) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let mut links = Vec::new();
    for i in 0..CONCURRENCY {
        let (conn, mut session) = session(url, key).await?;
        let sender = Sender::attach(&mut session, format!("send-{i}"), target).await?;
        links.push((conn, session, sender));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (conn, session, mut sender) in links {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= MESSAGES {
                    break;
                }
                let m = Message {
                    header: None,
                    delivery_annotations: None,
                    message_annotations: None,
                    properties: Some(Properties {
                        message_id: Some(MessageId::String(format!("a{i}"))),
                        ..Properties::default()
                    }),
                    application_properties: None,
                    body: Body::<Value>::Data(
                        vec![Data(Binary::from(vec![b'x'; BODY_BYTES]))].into(),
                    ),
                    footer: None,
                };
                let outcome = sender.send(m).await?;
                anyhow::ensure!(outcome.is_accepted(), "send {i}: {outcome:?}");
            }
            let _ = sender.close().await;
            drop((session, conn));
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(MESSAGES as f64 / start.elapsed().as_secs_f64())
}

/// Receive-and-delete of the MESSAGES just sent over CONCURRENCY connections; the clock stops when the
/// last one arrived.
async fn receives(url: &str, key: &str) -> anyhow::Result<f64> {
    let got = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let mut links = Vec::new();
    for i in 0..CONCURRENCY {
        let (conn, mut session) = session(url, key).await?;
        links.push((conn, session_receiver(&mut session, i).await?, session));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (conn, mut receiver, session) in links {
        let (got, done_tx, mut done_rx) = (got.clone(), done_tx.clone(), done_rx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    d = receiver.recv::<Body<Value>>() => {
                        d?;
                        if got.fetch_add(1, Ordering::Relaxed) + 1 >= MESSAGES {
                            let _ = done_tx.send(true);
                        }
                    }
                    _ = done_rx.wait_for(|d| *d) => break,
                }
            }
            drop((receiver, session, conn));
            anyhow::Ok(())
        }));
    }
    let mut wait = done_rx.clone();
    tokio::time::timeout(std::time::Duration::from_secs(600), wait.wait_for(|d| *d))
        .await
        .context("the receives did not finish within 600 s")??;
    let elapsed = start.elapsed();
    for t in tasks {
        t.await??;
    }
    Ok(MESSAGES as f64 / elapsed.as_secs_f64())
}

async fn session_receiver(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    i: usize,
) -> anyhow::Result<Receiver> {
    Ok(Receiver::builder()
        .name(format!("recv-{i}"))
        .source(QUEUE)
        .sender_settle_mode(SenderSettleMode::Settled)
        // Credit for the whole run up front: fe2o3's receiver re-issues credit only from its disposition
        // path, which pre-settled deliveries never take, so its default window (200) would stall the link.
        .credit_mode(CreditMode::Auto(
            u32::try_from(MESSAGES).unwrap_or(u32::MAX),
        ))
        .attach(session)
        .await?)
}
