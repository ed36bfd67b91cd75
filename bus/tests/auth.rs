//! SAS on every request: tokens computed here from the documented algorithm; each failure has Azure's status
//! and error text.

mod common;

use common::*;
use weft_bus::{BusConfig, QueueConfig};

async fn bus() -> TestBus {
    TestBus::start(BusConfig {
        queues: vec![QueueConfig::new("secure")],
        ..BusConfig::default()
    })
    .await
}

async fn send_with(bus: &TestBus, auth: Option<&str>) -> (u16, String) {
    let mut r = bus.http.post(bus.url("secure/messages")).body("x");
    if let Some(a) = auth {
        r = r.header("Authorization", a);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A correct token works whether `sr` is encoded upper- or lower-case and whatever the field order.
#[tokio::test]
async fn valid_token_forms() {
    let bus = bus().await;
    let uri = bus.url("secure");
    assert_eq!(send_with(&bus, Some(&token(&uri))).await.0, 201);
    // Go SDK style: the whole encoded sr lower-cased, signed as such.
    let se = now() + 600;
    let sr = enc(&uri).to_lowercase();
    let sig = {
        use base64::Engine as _;
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(format!("{sr}\n{se}").as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let t = format!(
        "SharedAccessSignature sig={}&se={se}&skn={KEY_NAME}&sr={sr}",
        enc(&sig)
    );
    assert_eq!(send_with(&bus, Some(&t)).await.0, 201);
    // Namespace-wide token with the sb:// scheme covers the queue.
    let host = bus.base.trim_start_matches("http://");
    assert_eq!(
        send_with(&bus, Some(&token(&format!("sb://{host}/"))))
            .await
            .0,
        201
    );
}

/// Wrong key → 401 with `40103: Invalid authorization token signature`.
#[tokio::test]
async fn wrong_key() {
    let bus = bus().await;
    let t = token_at(&bus.url("secure"), KEY_NAME, "not-the-key", now() + 600);
    let (s, body) = send_with(&bus, Some(&t)).await;
    assert_eq!(s, 401);
    assert!(
        body.contains("40103: Invalid authorization token signature"),
        "{body}"
    );
    assert!(
        body.starts_with("<Error><Code>401</Code><Detail>"),
        "{body}"
    );
    assert!(!body.contains(KEY), "the key never appears in answers");
}

/// Expired token → 401.
#[tokio::test]
async fn expired() {
    let bus = bus().await;
    let t = token_at(&bus.url("secure"), KEY_NAME, KEY, now() - 1);
    let (s, body) = send_with(&bus, Some(&t)).await;
    assert_eq!(s, 401);
    assert!(body.contains("Expired"), "{body}");
}

/// Token for another resource → 403; the same token on its own entity works.
#[tokio::test]
async fn wrong_resource() {
    let bus = bus().await;
    let t = token(&bus.url("secure2"));
    assert_eq!(send_with(&bus, Some(&t)).await.0, 403);
    let t = token("http://example.com/secure");
    assert_eq!(send_with(&bus, Some(&t)).await.0, 403);
}

/// A Send-only policy can send but not receive (403).
#[tokio::test]
async fn missing_right() {
    let bus = bus().await;
    let t = token_at(&bus.url("secure"), SEND_ONLY, SEND_KEY, now() + 600);
    assert_eq!(send_with(&bus, Some(&t)).await.0, 201);
    let r = bus
        .http
        .delete(bus.url("secure/messages/head?timeout=0"))
        .header("Authorization", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("'Listen' claim(s) are required")
    );
}

/// Missing, malformed, unknown key name → 401; nothing is stored.
#[tokio::test]
async fn missing_and_malformed() {
    let bus = bus().await;
    assert_eq!(send_with(&bus, None).await.0, 401);
    for bad in [
        "Bearer abc",
        "SharedAccessSignature",
        "SharedAccessSignature sr=x&sig=y",
        "SharedAccessSignature sr=a&sig=b&se=tomorrow&skn=RootManageSharedAccessKey",
        "SharedAccessSignature sr=a&sig=%%%&se=1&skn=RootManageSharedAccessKey",
    ] {
        assert_eq!(send_with(&bus, Some(bad)).await.0, 401, "{bad}");
    }
    let t = token_at(&bus.url("secure"), "NoSuchPolicy", KEY, now() + 600);
    assert_eq!(send_with(&bus, Some(&t)).await.0, 401);
    let r = bus.receive_delete("secure", 0).await;
    assert_eq!(r.status(), 204, "no failed request stored anything");
}

/// The error detail before its per-request TrackingId and timestamp.
fn detail(body: &str) -> &str {
    body.split(". TrackingId:").next().unwrap()
}

/// An unknown key name answers exactly what a bad signature answers (status and text), so key names cannot
/// be enumerated (issue #10, finding 16).
#[tokio::test]
async fn unknown_key_name_answers_like_bad_signature() {
    let bus = bus().await;
    let uri = bus.url("secure");
    let unknown = send_with(
        &bus,
        Some(&token_at(&uri, "NoSuchPolicy", KEY, now() + 600)),
    )
    .await;
    let bad_sig = send_with(&bus, Some(&token_at(&uri, KEY_NAME, "wrong", now() + 600))).await;
    assert_eq!(unknown.0, 401);
    assert_eq!(bad_sig.0, 401);
    assert_eq!(detail(&unknown.1), detail(&bad_sig.1));
    assert!(
        detail(&unknown.1).ends_with("40103: Invalid authorization token signature"),
        "{}",
        unknown.1
    );
}
