//! Webhook posts against a small axum server that records what arrives (headers, query, body) and answers
//! with a chosen status and delay.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use weft_endpoints::{Endpoint, ErrorClass, ErrorKind, SigningSecret, check, post};
use weft_store::system::{AuthType, Contract, EndpointSecrets, MessageFormat};

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
}

#[derive(Clone)]
struct Hook {
    seen: Arc<Mutex<Vec<Seen>>>,
    status: Arc<Mutex<(u16, Duration, String)>>,
}

async fn record(
    State(h): State<Hook>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    h.seen.lock().unwrap().push(Seen {
        method,
        headers,
        query,
        body,
    });
    let (status, delay, reply) = h.status.lock().unwrap().clone();
    tokio::time::sleep(delay).await;
    (
        StatusCode::from_u16(status).unwrap(),
        [("retry-after", "7")],
        reply,
    )
}

/// Starts the recorder; returns its URL and handle.
async fn hook() -> (String, Hook) {
    let h = Hook {
        seen: Arc::default(),
        status: Arc::new(Mutex::new((200, Duration::ZERO, String::new()))),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::any(record))
        .with_state(h.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/hook"), h)
}

fn webhook(url: &str, auth: AuthType, value: &str) -> Endpoint {
    let mut r = row(Contract::Webhook, MessageFormat::BinaryXml, auth);
    r.def.url = Some(url.into());
    let s = EndpointSecrets {
        auth_value: Some(value.into()),
        ..Default::default()
    };
    Endpoint::new(&r, &s).unwrap()
}

fn h(s: &Seen, name: &str) -> Option<String> {
    s.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// HttpHeader auth: the settings become headers; Dataverse's x-ms-* headers carry organization, table,
/// message and correlation id; the body is JSON (whatever messageformat says) and decodes to the context.
#[tokio::test]
async fn header_auth_and_dataverse_headers() {
    let (url, hk) = hook().await;
    let ep = webhook(
        &url,
        AuthType::HttpHeader,
        r#"<settings><setting name="x-api-key" value="hdr-secret-1"/><setting name="x-tenant" value="t1"/></settings>"#,
    );
    let ctx = context();
    let d = delivery(&ctx);
    let out = post(&ep, &ctx, &d).await.unwrap();
    assert_eq!(
        (out.status, out.response_body.as_str(), out.truncated),
        (200, "", false)
    );
    let seen = hk.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(h(&seen, "x-api-key").as_deref(), Some("hdr-secret-1"));
    assert_eq!(h(&seen, "x-tenant").as_deref(), Some("t1"));
    assert_eq!(
        h(&seen, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        h(&seen, "x-ms-dynamics-organization").as_deref(),
        Some("org6eadd181.crm.dynamics.com")
    );
    assert_eq!(
        h(&seen, "x-ms-dynamics-entity-name").as_deref(),
        Some("account")
    );
    assert_eq!(
        h(&seen, "x-ms-dynamics-request-name").as_deref(),
        Some("Create")
    );
    assert_eq!(
        h(&seen, "x-ms-correlation-request-id"),
        Some(ctx.correlation_id.to_string())
    );
    assert_eq!(h(&seen, "x-ms-dynamics-msg-size-exceeded"), None);
    assert_eq!(h(&seen, "webhook-signature"), None, "signing is opt-in");
    assert_eq!(seen.query, None);
    assert_eq!(
        weft_message::parse(&seen.body, "application/json").unwrap(),
        ctx
    );
}

/// WebhookKey → `?code=<key>`; HttpQueryString → each setting as a query parameter (escaped).
#[tokio::test]
async fn key_and_query_string_auth() {
    let (url, hk) = hook().await;
    let ctx = context();
    post(
        &webhook(&url, AuthType::WebhookKey, "fn-key/1=="),
        &ctx,
        &delivery(&ctx),
    )
    .await
    .unwrap();
    let qs = r#"<settings><setting name="sig" value="a b&amp;c"/><setting name="v" value="2"/></settings>"#;
    post(
        &webhook(&url, AuthType::HttpQueryString, qs),
        &ctx,
        &delivery(&ctx),
    )
    .await
    .unwrap();
    let seen = hk.seen.lock().unwrap().clone();
    assert_eq!(seen[0].query.as_deref(), Some("code=fn-key%2F1%3D%3D"));
    assert_eq!(seen[1].query.as_deref(), Some("sig=a+b%26c&v=2"));
}

/// Over 256 KB with removable members → sent truncated with x-ms-dynamics-msg-size-exceeded; still too large
/// → TooLarge and nothing sent.
#[tokio::test]
async fn size_rule() {
    let (url, hk) = hook().await;
    let ep = webhook(&url, AuthType::WebhookKey, "k");
    let ctx = big_input(300 * 1024);
    assert!(post(&ep, &ctx, &delivery(&ctx)).await.unwrap().truncated);
    let ctx = big_shared(300 * 1024);
    let e = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    let seen = hk.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the oversize post sent nothing");
    assert_eq!(
        h(&seen[0], "x-ms-dynamics-msg-size-exceeded").as_deref(),
        Some("true")
    );
    let got = weft_message::parse(&seen[0].body, "application/json").unwrap();
    assert!(got.input_parameters.is_empty());
}

/// Opt-in Standard Webhooks signature: verified here with the spec's algorithm (HMAC-SHA256 keyed with the
/// base64-decoded secret over `id.timestamp.body`); webhook-id is the job id.
#[tokio::test]
async fn standard_webhooks_signature() {
    let (url, hk) = hook().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ep = webhook(&url, AuthType::WebhookKey, "k")
        .with_signing_secret(SigningSecret::parse(secret).unwrap())
        .unwrap();
    assert!(!format!("{ep:?}").contains("MfKQ9r8"));
    let ctx = context();
    let d = delivery(&ctx);
    post(&ep, &ctx, &d).await.unwrap();
    let seen = hk.seen.lock().unwrap()[0].clone();
    let id = h(&seen, "webhook-id").unwrap();
    let ts = h(&seen, "webhook-timestamp").unwrap();
    assert_eq!(id, d.message_id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(ts.parse::<u64>().unwrap()) <= 300,
        "within the spec's tolerance"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(&secret["whsec_".len()..])
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&seen.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let sigs = h(&seen, "webhook-signature").unwrap();
    assert!(
        sigs.split(' ').any(|s| s == expected),
        "{sigs} vs {expected}"
    );
}

/// No answer within the timeout → Timeout, transient.
#[tokio::test]
async fn timeout_is_transient() {
    let (url, hk) = hook().await;
    *hk.status.lock().unwrap() = (200, Duration::from_secs(5), String::new());
    let ep = webhook(&url, AuthType::WebhookKey, "k").with_timeout(Duration::from_millis(300));
    let ctx = context();
    let e = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(!e.webhook_one_more_attempt());
}

/// 503 (with Retry-After) → one more attempt, transient; 500 → failure without the webhook retry;
/// 401 → Auth; 302 → not success. Secrets echoed by the server never reach the error text.
#[tokio::test]
async fn status_classification() {
    let (url, hk) = hook().await;
    let secret = "echoed-secret-value";
    let ep = webhook(&url, AuthType::WebhookKey, secret);
    let ctx = context();
    let run = |status: u16| {
        *hk.status.lock().unwrap() = (
            status,
            Duration::ZERO,
            format!("bad key {secret} / {}", enc(secret)),
        );
        let (ep, ctx) = (ep.clone(), ctx.clone());
        async move { post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err() }
    };
    let e = run(503).await;
    assert!(e.webhook_one_more_attempt());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(e.class(), ErrorClass::Transient);
    for s in [502, 504] {
        assert!(run(s).await.webhook_one_more_attempt(), "{s}");
    }
    let e = run(500).await;
    assert!(!e.webhook_one_more_attempt());
    let e = run(401).await;
    assert_eq!(e.class(), ErrorClass::Auth);
    assert_eq!(e.status_code(), Some(401));
    assert!(
        !e.to_string().contains(secret) && !e.to_string().contains(&enc(secret)),
        "{e}"
    );
    assert!(e.to_string().contains("<redacted>"), "{e}");
    assert_eq!(run(302).await.class(), ErrorClass::Permanent);
}

/// check(): HEAD with the auth applied; 401 fails as Auth, 405 (method not allowed) proves reachability.
#[tokio::test]
async fn check_webhook() {
    let (url, hk) = hook().await;
    let ep = webhook(
        &url,
        AuthType::HttpHeader,
        r#"<settings><setting name="x-k" value="v"/></settings>"#,
    );
    *hk.status.lock().unwrap() = (405, Duration::ZERO, String::new());
    check(&ep).await.unwrap();
    *hk.status.lock().unwrap() = (401, Duration::ZERO, String::new());
    assert_eq!(check(&ep).await.unwrap_err().class(), ErrorClass::Auth);
    let seen = hk.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|s| s.method == Method::HEAD && h(s, "x-k").as_deref() == Some("v"))
    );
}

/// Configuration errors are precise, permanent and secret-free: http:// off loopback, wrong auth type for a
/// webhook, malformed authvalue.
#[tokio::test]
async fn config_errors() {
    let mut r = row(Contract::Webhook, MessageFormat::Json, AuthType::HttpHeader);
    r.def.url = Some("http://example.com/hook".into());
    let s = EndpointSecrets {
        auth_value: Some(r#"<settings><setting name="k" value="SECRET9"/></settings>"#.into()),
        ..Default::default()
    };
    let e = Endpoint::new(&r, &s).unwrap_err();
    assert!(e.to_string().contains("only allowed for loopback"), "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    r.def.url = Some("https://example.com/hook".into());
    r.def.auth_type = AuthType::SasKey;
    assert!(
        Endpoint::new(&r, &s)
            .unwrap_err()
            .to_string()
            .contains("not valid for a webhook")
    );
    r.def.auth_type = AuthType::HttpHeader;
    let bad = EndpointSecrets {
        auth_value: Some(
            r#"<settings><setting name="bad name" value="SECRET9"/></settings>"#.into(),
        ),
        ..Default::default()
    };
    let e = Endpoint::new(&r, &bad).unwrap_err();
    assert!(
        e.to_string()
            .contains("setting #1 ('bad name') is not a valid HTTP header name"),
        "{e}"
    );
    assert!(!e.to_string().contains("SECRET9"));
    let ep = Endpoint::new(&r, &s).unwrap();
    assert!(!format!("{ep:?}").contains("SECRET9"));
}

/// Context data HTTP headers cannot carry is a permanent config error, and nothing is sent.
#[tokio::test]
async fn unsendable_header_is_permanent() {
    let (url, hk) = hook().await;
    let ep = webhook(&url, AuthType::WebhookKey, "k");
    let ctx = context();
    let mut d = delivery(&ctx);
    d.organization = "org\nx".into();
    let e = post(&ep, &ctx, &d).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(hk.seen.lock().unwrap().is_empty());
}
