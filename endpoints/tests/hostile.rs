//! Hostile and unlucky receivers (issue #10, findings 2 and 3): a receiver that quotes the request back in its
//! error body must not get a secret into the error message, whatever the encoding; credentials in an address
//! are refused; a receiver streaming a huge answer is read only as far as needed.
//!
//! The receivers here are raw TCP servers on 127.0.0.1, so the test controls every byte and can count how
//! much of an answer the client made it write.

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use weft_endpoints::{Endpoint, ErrorClass, ErrorKind, post};
use weft_store::system::{AuthType, Contract, EndpointSecrets, MessageFormat, UserClaim};

/// Reads one request (head and Content-Length body); returns the head.
async fn read_request(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before sending a request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    head
}

/// A receiver that answers every request with `status` and a body made by `answer` from the request head.
async fn echo_server(status: u16, answer: fn(&str) -> String) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let head = read_request(&mut s).await;
                let body = answer(&head);
                let resp = format!(
                    "HTTP/1.1 {status} Echo\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A receiver that answers one request with `status` and a chunked body of `total` bytes produced lazily
/// (64 KiB at a time, nothing held); returns its address and the count of body bytes it managed to write.
async fn streaming_server(status: u16, total: u64) -> (String, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_request(&mut s).await;
        let head = format!(
            "HTTP/1.1 {status} Big\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'y'; 64 * 1024];
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk,
            b"\r\n".to_vec(),
        ]
        .concat();
        let mut sent = 0u64;
        while sent < total {
            // A client that stopped reading closes the socket: the write fails and the count stops.
            if s.write_all(&framed).await.is_err() {
                break;
            }
            sent += 64 * 1024;
            w.store(sent, Ordering::SeqCst);
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    });
    (format!("http://{addr}"), written)
}

/// What a receiver quoting its whole request head back would show, plus the head's query as JSON and HTML.
fn quote_everything(head: &str) -> String {
    let line = head.lines().next().unwrap_or_default();
    let query = line
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.split_once('?'))
        .map_or("", |(_, q)| q);
    let decoded: Vec<(String, String)> = reqwest::Url::parse(&format!("http://h/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let json = serde_json::to_string(&decoded).unwrap();
    let html = decoded.iter().fold(String::new(), |mut o, (_, v)| {
        for c in v.chars() {
            let _ = write!(o, "&#{};", c as u32);
        }
        o
    });
    format!("Bad request.\n{head}\nparams={json}\n<p>{html}</p>")
}

/// The forms a secret could take in an echo, written out independently of the crate's matcher.
fn forms(secret: &str) -> Vec<String> {
    let form: String = reqwest::Url::parse_with_params("http://h/", [("k", secret)])
        .unwrap()
        .query()
        .unwrap()
        .trim_start_matches("k=")
        .to_string();
    let pct = |upper: bool| {
        secret.bytes().fold(String::new(), |mut o, b| {
            if b.is_ascii_alphanumeric() {
                o.push(b as char);
            } else if upper {
                let _ = write!(o, "%{b:02X}");
            } else {
                let _ = write!(o, "%{b:02x}");
            }
            o
        })
    };
    let json = serde_json::to_string(secret).unwrap();
    vec![
        secret.to_string(),
        form,
        pct(true),
        pct(false),
        json[1..json.len() - 1].to_string(),
    ]
}

fn webhook_with(url: &str, auth: AuthType, value: &str) -> Endpoint {
    let mut r = row(Contract::Webhook, MessageFormat::Json, auth);
    r.def.url = Some(url.into());
    let s = EndpointSecrets {
        auth_value: Some(value.into()),
        ..Default::default()
    };
    Endpoint::new(&r, &s).unwrap()
}

/// A webhook key or query setting with characters form-encoding changes, or only 1–2 characters long,
/// quoted back raw, form-encoded, JSON and HTML in an error body, never reaches the error message.
#[tokio::test]
async fn echoed_secrets_never_reach_the_message() {
    let url = echo_server(500, quote_everything).await;
    let cases: Vec<(AuthType, String, Vec<&str>)> = vec![
        (
            AuthType::WebhookKey,
            "Sp ace*Key~Secret+Z".into(),
            vec!["Sp ace*Key~Secret+Z"],
        ),
        (AuthType::WebhookKey, "+~".into(), vec!["+~"]),
        (AuthType::WebhookKey, "Q".into(), vec!["Q"]),
        (
            AuthType::HttpQueryString,
            r#"<settings><setting name="sig" value="a+b c~d*e/f"/><setting name="k2" value="Z!"/></settings>"#
                .into(),
            vec!["a+b c~d*e/f", "Z!"],
        ),
    ];
    for (auth, value, secrets) in cases {
        let ep = webhook_with(&format!("{url}/hook3"), auth, &value);
        let ctx = context();
        let err = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
        assert_eq!(err.status_code(), Some(500));
        let msg = err.message();
        for secret in &secrets {
            for f in forms(secret) {
                assert!(!msg.contains(&f), "{secret:?} as {f:?} leaked: {msg}");
            }
        }
        assert!(
            msg.contains("<redacted>") || msg.contains("withheld"),
            "{msg}"
        );
        assert!(msg.contains("HTTP 500"), "{msg}");
    }
}

/// A URL registered with its own `?code=` (an Azure Functions URL) keeps that code out of messages too.
#[tokio::test]
async fn query_in_registered_url_is_not_shown() {
    let url = echo_server(404, quote_everything).await;
    let ep = webhook_with(
        &format!("{url}/api/fn?code=Fn+Code~9"),
        AuthType::HttpHeader,
        r#"<settings><setting name="x-k" value="v"/></settings>"#,
    );
    let ctx = context();
    let msg = post(&ep, &ctx, &delivery(&ctx))
        .await
        .unwrap_err()
        .to_string();
    for f in forms("Fn Code~9").into_iter().chain(forms("Fn+Code~9")) {
        assert!(!msg.contains(&f), "{f:?} leaked: {msg}");
    }
    assert!(msg.contains("/api/fn:"), "{msg}");
}

/// `user:password@` in a webhook URL, a namespace address or a connection string's Endpoint is refused at
/// validation, naming the problem and never the password.
#[test]
fn userinfo_is_refused_without_quoting_it() {
    let mut r = row(Contract::Webhook, MessageFormat::Json, AuthType::WebhookKey);
    r.def.url = Some("https://alice:Pw-Secret-1@example.com/hook".into());
    let s = EndpointSecrets {
        auth_value: Some("k".into()),
        ..Default::default()
    };
    let e = Endpoint::new(&r, &s).unwrap_err().to_string();
    assert!(e.contains("user:password@"), "{e}");
    assert!(!e.contains("Pw-Secret-1") && !e.contains("alice"), "{e}");

    let mut r = row(Contract::Queue, MessageFormat::Json, AuthType::SasKey);
    r.def.namespace_address = Some("sb://alice:Pw-Secret-1@ns.servicebus.windows.net/".into());
    r.def.path = Some("q".into());
    r.def.sas_key_name = Some("root".into());
    let e = Endpoint::new(&r, &sas_secrets("key"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("user:password@"), "{e}");
    assert!(!e.contains("Pw-Secret-1"), "{e}");

    let mut r = row(
        Contract::Queue,
        MessageFormat::Json,
        AuthType::ConnectionString,
    );
    r.def.path = Some("q".into());
    let s = EndpointSecrets {
        auth_value: Some(
            "Endpoint=sb://alice:Pw-Secret-1@ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey=k"
                .into(),
        ),
        ..Default::default()
    };
    let e = Endpoint::new(&r, &s).unwrap_err().to_string();
    assert!(!e.contains("Pw-Secret-1"), "{e}");
}

/// Bound on what the client may let a 200 MB answer write: socket buffers on both sides plus the part read.
const WRITTEN_BOUND: u64 = 32 << 20;
const HUGE: u64 = 200 << 20;

async fn wait_written(w: &AtomicU64) -> u64 {
    // The server stops once the client closed; give it a bounded time to notice.
    let mut last = u64::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = w.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// A webhook answering 500 with a 200 MB body: the error keeps a short detail and the client stops reading
/// after a few KiB (the server cannot write more than the socket buffers hold).
#[tokio::test]
async fn huge_error_body_is_not_read() {
    let (url, written) = streaming_server(500, HUGE).await;
    let ep = webhook_with(&format!("{url}/hook"), AuthType::WebhookKey, "key-1");
    let ctx = context();
    let err = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(err.status_code(), Some(500));
    assert!(err.message().len() < 1000, "{}", err.message().len());
    let n = wait_written(&written).await;
    assert!(n < WRITTEN_BOUND, "the server wrote {n} bytes");
}

/// A webhook answering 200 with a 200 MB body succeeds without reading it.
#[tokio::test]
async fn huge_success_body_of_a_webhook_is_not_read() {
    let (url, written) = streaming_server(200, HUGE).await;
    let ep = webhook_with(&format!("{url}/hook"), AuthType::WebhookKey, "key-1");
    let ctx = context();
    let out = post(&ep, &ctx, &delivery(&ctx)).await.unwrap();
    assert_eq!((out.status, out.response_body.as_str()), (200, ""));
    let n = wait_written(&written).await;
    assert!(n < WRITTEN_BOUND, "the server wrote {n} bytes");
}

/// A REST (3) relay listener answering with 200 MB fails clearly at the endpoint's limit (1 MiB by default)
/// and the client stops reading there; an answer under the limit is returned whole.
#[tokio::test]
async fn two_way_answer_is_limited() {
    let rest_endpoint = |base: &str| {
        let mut r = row(Contract::Rest, MessageFormat::Json, AuthType::SasKey);
        r.def.namespace_address = Some(base.into());
        r.def.path = Some("hc".into());
        r.def.sas_key_name = Some(KEY_NAME.into());
        r.def.user_claim = UserClaim::None;
        Endpoint::new(&r, &sas_secrets(KEY)).unwrap()
    };
    let (base, written) = streaming_server(200, HUGE).await;
    let ctx = context();
    let err = post(&rest_endpoint(&base), &ctx, &delivery(&ctx))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AnswerTooLarge);
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.message().contains("1048576 bytes"), "{err}");
    let n = wait_written(&written).await;
    assert!(n < WRITTEN_BOUND, "the server wrote {n} bytes");

    let (base, _) = streaming_server(200, 3 * 64 * 1024).await;
    let out = post(
        &rest_endpoint(&base).with_max_response_bytes(4 * 64 * 1024),
        &ctx,
        &delivery(&ctx),
    )
    .await
    .unwrap();
    assert_eq!(out.response_body.len(), 3 * 64 * 1024);
}
