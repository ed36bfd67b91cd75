//! Relay Hybrid Connections: senders over HTTP, listeners over the WebSocket control channel speaking the
//! published `request`/`response` JSON frames (built by hand here).

mod common;

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use weft_bus::{BusConfig, RelayConfig};

fn config(timeout: f64) -> BusConfig {
    BusConfig {
        relays: vec![RelayConfig { name: "hc".into() }],
        relay_timeout_secs: timeout,
        ..BusConfig::default()
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn listen(bus: &TestBus) -> Ws {
    let url = format!(
        "{}/$hc/hc?sb-hc-action=listen&sb-hc-id=test&sb-hc-token={}",
        bus.base.replace("http://", "ws://"),
        enc(&bus.auth("hc"))
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// No listener → 502 (Azure: "no active listener").
#[tokio::test]
async fn no_listener() {
    let bus = TestBus::start(config(60.0)).await;
    let r = bus
        .http
        .post(bus.url("hc"))
        .header("ServiceBusAuthorization", bus.auth("hc"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        r.headers().get("via").is_none(),
        "the relay, not a listener, answered"
    );
}

/// A request reaches the listener as `request` + binary body with sb-hc-* and auth stripped; the listener's
/// `response` + body come back to the sender with a Via header.
#[tokio::test]
async fn request_response_round_trip() {
    let bus = TestBus::start(config(60.0)).await;
    let mut ws = listen(&bus).await;
    let url = format!(
        "{}/suffix?a=1&sb-hc-token={}",
        bus.url("hc"),
        enc(&bus.auth("hc"))
    );
    let http = bus.http.clone();
    let sender = tokio::spawn(async move {
        http.post(url)
            .header("Content-Type", "application/xml")
            .header("X-Custom", "v")
            .body("<ctx/>")
            .send()
            .await
            .unwrap()
    });
    let Message::Text(head) = ws.next().await.unwrap().unwrap() else {
        panic!("expected a text frame")
    };
    let head: Value = serde_json::from_str(head.as_str()).unwrap();
    let req = &head["request"];
    assert_eq!(req["method"], "POST");
    assert_eq!(req["requestTarget"], "/hc/suffix?a=1");
    assert_eq!(req["body"], true);
    assert_eq!(req["requestHeaders"]["x-custom"], "v");
    assert!(req["requestHeaders"].get("host").is_none());
    let Message::Binary(body) = ws.next().await.unwrap().unwrap() else {
        panic!("expected the body frame")
    };
    assert_eq!(&body[..], b"<ctx/>");
    let resp = json!({"response": {"requestId": req["id"], "statusCode": "200",
        "responseHeaders": {"Content-Type": "application/json"}, "body": true}});
    ws.send(Message::text(resp.to_string())).await.unwrap();
    ws.send(Message::binary(
        br#"{"Message":"Hello from Relay Listener!"}"#.to_vec(),
    ))
    .await
    .unwrap();
    let r = sender.await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("via").is_some());
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"Message":"Hello from Relay Listener!"}"#
    );
}

/// A listener that does not answer in time → 504.
#[tokio::test]
async fn listener_timeout() {
    let bus = TestBus::start(config(0.5)).await;
    let _ws = listen(&bus).await;
    let r = bus
        .http
        .get(bus.url("hc"))
        .header("ServiceBusAuthorization", bus.auth("hc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

/// Listener registration needs a valid token with Listen; senders need Send; unknown paths are 404.
#[tokio::test]
async fn relay_auth() {
    let bus = TestBus::start(config(60.0)).await;
    let ws = bus.base.replace("http://", "ws://");
    let send_only = token_at(&bus.url("hc"), SEND_ONLY, SEND_KEY, now() + 600);
    let err = tokio_tungstenite::connect_async(format!(
        "{ws}/$hc/hc?sb-hc-action=listen&sb-hc-token={}",
        enc(&send_only)
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let err = tokio_tungstenite::connect_async(format!("{ws}/$hc/hc?sb-hc-action=listen"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err = tokio_tungstenite::connect_async(format!("{ws}/$hc/nope?sb-hc-action=listen"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let r = bus.http.post(bus.url("hc")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let bad = token_at(&bus.url("hc"), KEY_NAME, "wrong", now() + 600);
    let r = bus
        .http
        .post(bus.url("hc"))
        .header("ServiceBusAuthorization", bad)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The `Authorization` header may carry the sender token; it is then consumed, not forwarded.
#[tokio::test]
async fn authorization_header_token_is_consumed() {
    let bus = TestBus::start(config(60.0)).await;
    let mut ws = listen(&bus).await;
    let (http, url, auth) = (bus.http.clone(), bus.url("hc"), bus.auth("hc"));
    let sender = tokio::spawn(async move {
        http.get(url)
            .header("Authorization", auth)
            .send()
            .await
            .unwrap()
    });
    let Message::Text(head) = ws.next().await.unwrap().unwrap() else {
        panic!("expected a text frame")
    };
    let head: Value = serde_json::from_str(head.as_str()).unwrap();
    assert_eq!(head["request"]["body"], false);
    assert!(
        head["request"]["requestHeaders"]
            .get("authorization")
            .is_none()
    );
    let resp =
        json!({"response": {"requestId": head["request"]["id"], "statusCode": 202, "body": false}});
    ws.send(Message::text(resp.to_string())).await.unwrap();
    assert_eq!(sender.await.unwrap().status(), 202);
}

/// A `renewToken` with an invalid token closes the control channel with 1008.
#[tokio::test]
async fn bad_renew_token_closes_channel() {
    let bus = TestBus::start(config(60.0)).await;
    let mut ws = listen(&bus).await;
    let bad = token_at(&bus.url("hc"), KEY_NAME, "wrong", now() + 600);
    ws.send(Message::text(
        json!({"renewToken": {"token": bad}}).to_string(),
    ))
    .await
    .unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
    let r = bus
        .http
        .post(bus.url("hc"))
        .header("ServiceBusAuthorization", bus.auth("hc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "the closed listener is gone");
}

/// A valid `renewToken` keeps the control channel serving requests.
#[tokio::test]
async fn valid_renew_token_keeps_channel() {
    let bus = TestBus::start(config(60.0)).await;
    let mut ws = listen(&bus).await;
    ws.send(Message::text(
        json!({"renewToken": {"token": bus.auth("hc")}}).to_string(),
    ))
    .await
    .unwrap();
    let (http, url, auth) = (bus.http.clone(), bus.url("hc"), bus.auth("hc"));
    let sender = tokio::spawn(async move {
        http.delete(url)
            .header("ServiceBusAuthorization", auth)
            .send()
            .await
            .unwrap()
    });
    let Message::Text(head) = ws.next().await.unwrap().unwrap() else {
        panic!("expected a request frame")
    };
    let head: Value = serde_json::from_str(head.as_str()).unwrap();
    assert_eq!(head["request"]["method"], "DELETE");
    let resp = json!({"response": {"requestId": head["request"]["id"], "statusCode": 204}});
    ws.send(Message::text(resp.to_string())).await.unwrap();
    assert_eq!(sender.await.unwrap().status(), 204);
}

/// Reads the next text frame as JSON.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// A request larger than the control channel carries (64 KB) is announced there by its rendezvous address
/// only; the listener fetches it from that address and answers there. The address works once.
#[tokio::test]
async fn large_request_travels_over_the_rendezvous_socket() {
    let bus = TestBus::start(config(60.0)).await;
    let mut ws = listen(&bus).await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (http, url, auth, sent) = (
        bus.http.clone(),
        bus.url("hc/big?k=v"),
        bus.auth("hc"),
        body.clone(),
    );
    let sender = tokio::spawn(async move {
        http.put(url)
            .header("ServiceBusAuthorization", auth)
            .body(sent)
            .send()
            .await
            .unwrap()
    });
    let announce = next_json(&mut ws).await;
    let req = &announce["request"];
    let address = req["address"].as_str().unwrap().to_string();
    assert!(req.get("method").is_none(), "address only: {announce}");
    assert!(
        address.contains("sb-hc-action=request") && address.contains(req["id"].as_str().unwrap()),
        "{address}"
    );
    let (mut rv, _) = tokio_tungstenite::connect_async(address.as_str())
        .await
        .unwrap();
    let head = next_json(&mut rv).await;
    assert_eq!(head["request"]["method"], "PUT");
    assert_eq!(head["request"]["requestTarget"], "/hc/big?k=v");
    assert_eq!(head["request"]["body"], true);
    let Message::Binary(got) = rv.next().await.unwrap().unwrap() else {
        panic!("expected the body")
    };
    assert_eq!(got.len(), body.len());
    assert!(got[..] == body[..], "the body arrives intact");
    let resp = json!({"response": {"requestId": head["request"]["id"], "statusCode": 201,
        "responseHeaders": {"X-Got": got.len().to_string()}, "body": true}});
    rv.send(Message::text(resp.to_string())).await.unwrap();
    rv.send(Message::binary(b"stored".to_vec())).await.unwrap();
    let r = sender.await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-got"], "200000");
    assert_eq!(r.text().await.unwrap(), "stored");
    let again = tokio_tungstenite::connect_async(address.as_str())
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("403"),
        "a used address is refused: {again}"
    );
}

/// A listener may answer a small request over its rendezvous address instead of the control channel
/// (as it must beyond 64 KB): here with 1 MB.
#[tokio::test]
async fn large_answer_travels_over_the_rendezvous_socket() {
    let bus = TestBus::start(config(60.0)).await;
    let mut ws = listen(&bus).await;
    let (http, url, auth) = (bus.http.clone(), bus.url("hc/report"), bus.auth("hc"));
    let sender = tokio::spawn(async move {
        http.get(url)
            .header("ServiceBusAuthorization", auth)
            .send()
            .await
            .unwrap()
    });
    let head = next_json(&mut ws).await;
    assert_eq!(head["request"]["method"], "GET");
    let address = head["request"]["address"].as_str().unwrap();
    let (mut rv, _) = tokio_tungstenite::connect_async(address).await.unwrap();
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 253) as u8).collect();
    let resp = json!({"response": {"requestId": head["request"]["id"], "statusCode": 200,
        "responseHeaders": {"Content-Type": "application/octet-stream"}, "body": true}});
    rv.send(Message::text(resp.to_string())).await.unwrap();
    rv.send(Message::binary(big.clone())).await.unwrap();
    let r = sender.await.unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got[..] == big[..]);
}

/// Rendezvous and accept addresses need their id, and an unknown id is refused before any upgrade.
#[tokio::test]
async fn unknown_rendezvous_addresses_are_refused() {
    let bus = TestBus::start(config(60.0)).await;
    let ws = bus.base.replace("http://", "ws://");
    for (q, code) in [
        ("sb-hc-action=request&sb-hc-id=nope", "403"),
        ("sb-hc-action=accept&sb-hc-id=nope", "403"),
        ("sb-hc-action=request", "400"),
        ("sb-hc-action=dance", "400"),
    ] {
        let err = tokio_tungstenite::connect_async(format!("{ws}/$hc/hc?{q}"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(code), "{q}: {err}");
    }
}

fn connect_url(bus: &TestBus, token: &str) -> String {
    format!(
        "{}/$hc/hc?sb-hc-action=connect&sb-hc-token={}",
        bus.base.replace("http://", "ws://"),
        enc(token)
    )
}

/// A WebSocket sender (`sb-hc-action=connect`) is offered to a listener by an `accept` message carrying its
/// headers; once the listener connects to the accept address, frames flow both ways and a close is passed on.
#[tokio::test]
async fn websocket_sender_is_accepted_and_piped() {
    let bus = TestBus::start(config(60.0)).await;
    let mut ws = listen(&bus).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        connect_url(&bus, &bus.auth("hc")),
    )
    .unwrap();
    req.headers_mut().insert("x-app", "orders".parse().unwrap());
    let sender = tokio::spawn(async move { tokio_tungstenite::connect_async(req).await });
    let offer = next_json(&mut ws).await;
    let accept = &offer["accept"];
    assert_eq!(accept["connectHeaders"]["x-app"], "orders");
    assert!(accept["connectHeaders"].get("sec-websocket-key").is_none());
    let address = accept["address"].as_str().unwrap();
    assert!(address.contains("sb-hc-action=accept"), "{address}");
    let (mut listener, _) = tokio_tungstenite::connect_async(address).await.unwrap();
    let (mut sender, _) = sender.await.unwrap().unwrap();
    sender
        .send(Message::text("ping from sender"))
        .await
        .unwrap();
    assert_eq!(
        listener.next().await.unwrap().unwrap(),
        Message::text("ping from sender")
    );
    listener
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        sender.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    sender.close(None).await.unwrap();
    loop {
        match listener.next().await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
}

/// A listener rejects a WebSocket sender by connecting with `statusCode`: the sender's handshake fails with
/// that status. Without a listener a sender gets 404; without Send rights 401.
#[tokio::test]
async fn websocket_sender_rejected_or_unserved() {
    let bus = TestBus::start(config(60.0)).await;
    let err = tokio_tungstenite::connect_async(connect_url(&bus, &bus.auth("hc")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "no listener: {err}");
    let err = tokio_tungstenite::connect_async(format!(
        "{}/$hc/hc?sb-hc-action=connect",
        bus.base.replace("http://", "ws://")
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("401"), "no token: {err}");
    let mut ws = listen(&bus).await;
    let url = connect_url(&bus, &bus.auth("hc"));
    let sender = tokio::spawn(async move { tokio_tungstenite::connect_async(url).await });
    let offer = next_json(&mut ws).await;
    let reject = format!(
        "{}&statusCode=403&statusDescription=not%20today",
        offer["accept"]["address"].as_str().unwrap()
    );
    let _ = tokio_tungstenite::connect_async(reject).await;
    let err = sender.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("403"), "rejected: {err}");
}
