//! The bus listener's limits (issue #10, finding 8): a header (and keep-alive idle) timeout, a cap on open
//! connections, a body timeout, and a body limit per route. Raw TCP clients so every byte is controlled.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weft_bus::{BusConfig, QueueConfig, RelayConfig};

/// Upper bound for anything the server must do by itself here: well above the 1 s timeouts configured.
const BOUND: Duration = Duration::from_secs(10);

async fn bus(max_connections: usize) -> TestBus {
    TestBus::start(BusConfig {
        queues: vec![QueueConfig::new("q")],
        relays: vec![RelayConfig { name: "hc".into() }],
        header_read_timeout_secs: 1.0,
        body_read_timeout_secs: 1.0,
        max_connections,
        max_relay_body_bytes: 64 * 1024,
        ..BusConfig::default()
    })
    .await
}

/// Reads until the server closes the connection (within [`BOUND`]); returns what it sent.
async fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, s.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open; it sent {out:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Connections trickling a request head slower than the header timeout are closed at the timeout; while
/// they hold every slot a new client waits (it is not refused) and is served once they are gone.
#[tokio::test]
async fn slowloris_is_cut_at_the_header_timeout() {
    let bus = bus(4).await;
    let addr = bus.handle.local_addr();
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /q/messages HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let start = Instant::now();
    let r = tokio::time::timeout(BOUND, bus.send("q", "after the cap", &[]))
        .await
        .expect("served once the stalled connections were closed");
    assert_eq!(r.status(), 201);
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "served at once although 4 connections held the 4 slots"
    );
    for mut s in slow {
        // Still trickling: the server has closed the connection anyway.
        let _ = s.write_all(b"X-Slow: 1\r\n").await;
        until_closed(&mut s).await;
    }
}

/// A keep-alive connection left idle after a complete request is closed after the same timeout.
#[tokio::test]
async fn idle_keep_alive_is_closed() {
    let bus = bus(16).await;
    let addr = bus.handle.local_addr();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = bus.auth("q");
    let req = format!(
        "DELETE /q/messages/head?timeout=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let answer = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

/// A body slower than the body timeout gets 408; bodies over a route's limit are refused: 413 on a route
/// that takes no body and on a relay, 403 (Azure's "too large") on a send.
#[tokio::test]
async fn body_timeout_and_limits_per_route() {
    let bus = bus(16).await;
    let mut s = TcpStream::connect(bus.handle.local_addr()).await.unwrap();
    let auth = bus.auth("q");
    let head = format!(
        "POST /q/messages HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 100\r\n\r\nonly part"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let big = vec![b'x'; 100 * 1024];
    let r = bus
        .http
        .post(bus.url("q/messages/head?timeout=0"))
        .header("Authorization", &auth)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = bus
        .http
        .post(bus.url("q/messages"))
        .header("Authorization", &auth)
        .body(vec![b'x'; 270 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("262144"));
    let r = bus
        .http
        .post(bus.url("hc"))
        .header("ServiceBusAuthorization", bus.auth("hc"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("65536"));
}
