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
