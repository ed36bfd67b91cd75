//! Outbound HTTP from sandboxed plug-ins (issue #15 §1), against a real receiver on loopback: the
//! `http-caller` fixture, built from source, makes the calls its configuration lists, and each test
//! checks what the plug-in saw, what the host traced and what the receiver actually got.

use crate::fixtures;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use weft_host::context::{self, ContextSpec};
use weft_host::sandbox::wit::context::{Mode, Stage};
use weft_host::sandbox::{
    FailureKind, Invocation, Limits, OutboundPolicy, Outcome, Quota, RecordingServices, Sandbox,
};

/// A receiver on 127.0.0.1:0, counting the requests that reach it.
struct Receiver {
    port: u16,
    hits: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        use axum::routing::{get, post};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let app = axum::Router::new()
            .route("/ok", get(|| async { "hello" }))
            .route(
                "/echo",
                post(|body: axum::body::Bytes| async move { format!("{} bytes", body.len()) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    "late"
                }),
            )
            // 1 MiB with a Content-Length.
            .route("/big", get(|| async { vec![b'b'; 1 << 20] }))
            // 1 MiB streamed in chunks, no Content-Length: counted as it arrives.
            .route(
                "/stream",
                get(|| async {
                    let chunks = (0..64).map(|_| {
                        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b's'; 16 << 10]))
                    });
                    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                }),
            )
            // A byte every 50 ms, forever: an answer that never ends.
            .route(
                "/drip",
                get(|| async {
                    let drip = futures_util::stream::unfold((), |()| async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Some((
                            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"d")),
                            (),
                        ))
                    });
                    axum::body::Body::from_stream(drip)
                }),
            )
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    next.run(req)
                },
            ));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            port,
            hits,
            _runtime: runtime,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn sandbox(limits: Limits) -> Sandbox {
    Sandbox::new(
        Limits {
            max_instances: 4,
            ..limits
        },
        None,
    )
    .unwrap()
}

/// Runs `http-caller` with `script` under `policy`.
fn call(sandbox: &Sandbox, policy: OutboundPolicy, script: &str) -> Outcome<RecordingServices> {
    let plugin = sandbox
        .load_file("http-caller", &fixtures::component("http-caller"))
        .unwrap()
        .with_outbound(Arc::new(policy));
    let context = context::build_context(ContextSpec {
        message: "Create".into(),
        table: "account".into(),
        stage: Stage::PostOperation,
        mode: Mode::Synchronous,
        target: None,
        depth: 1,
        created_on_ms: 1_700_000_000_000,
    });
    sandbox.invoke(
        &plugin,
        Invocation {
            context,
            unsecure_config: Some(script.to_owned()),
            secure_config: None,
            services: RecordingServices::default(),
        },
    )
}

fn loopback() -> OutboundPolicy {
    OutboundPolicy::loopback_for_development()
}

/// The plug-in's own trace lines (not the host's `[weft] outbound …` lines).
fn plugin_lines(outcome: &Outcome<RecordingServices>) -> Vec<&str> {
    outcome
        .traces
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("[weft]"))
        .collect()
}

fn host_lines(outcome: &Outcome<RecordingServices>) -> Vec<&str> {
    outcome
        .traces
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("[weft] outbound "))
        .collect()
}

/// With the loopback opt-in and the host allowed, a GET and a POST reach the receiver; the plug-in reads
/// the answers, the usage counts the calls and bytes, and the host traces method, origin, status and
/// sizes (no path).
#[test]
fn allowed_calls_reach_the_receiver() {
    let receiver = Receiver::start();
    let p = receiver.port;
    let policy = OutboundPolicy {
        allowed_hosts: vec!["localhost".into()],
        ..loopback()
    };
    let outcome = call(
        &sandbox(Limits::default()),
        policy,
        &format!("GET http://localhost:{p}/ok\nPOST http://localhost:{p}/echo 1000"),
    );
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    assert_eq!(
        plugin_lines(&outcome),
        [
            format!("GET http://localhost:{p}/ok: status 200, 5 bytes: hello"),
            format!("POST http://localhost:{p}/echo: status 200, 10 bytes: 1000 bytes"),
        ]
    );
    assert_eq!(receiver.hits(), 2);
    assert_eq!(outcome.usage.calls.http_calls, 2);
    assert_eq!(outcome.usage.calls.http_sent_bytes, 1000);
    assert_eq!(outcome.usage.calls.http_received_bytes, 15);
    let host = host_lines(&outcome);
    assert!(
        host[0].starts_with(&format!(
            "[weft] outbound GET http://localhost:{p} -> 200, sent 0 B, received 5 B, "
        )),
        "{host:?}"
    );
    assert!(host.iter().all(|l| !l.contains("/echo")), "{host:?}");
}

/// Only http and https: another scheme is refused before anything is sent.
#[test]
fn other_schemes_are_refused() {
    let receiver = Receiver::start();
    let outcome = call(
        &sandbox(Limits::default()),
        loopback(),
        &format!("GET ftp://localhost:{}/ok", receiver.port),
    );
    assert!(
        plugin_lines(&outcome)[0].contains("error Refused"),
        "{:?}",
        outcome.traces
    );
    assert!(host_lines(&outcome)[0].contains("refused: the scheme `ftp` is not allowed"));
    assert_eq!(receiver.hits(), 0);
}

/// Named hosts only: an IP literal is refused even with the loopback opt-in.
#[test]
fn ip_literals_are_refused() {
    let receiver = Receiver::start();
    let outcome = call(
        &sandbox(Limits::default()),
        loopback(),
        &format!(
            "GET http://127.0.0.1:{p}/ok\nGET http://[::1]:{p}/ok",
            p = receiver.port
        ),
    );
    let lines = plugin_lines(&outcome);
    assert!(
        lines.iter().all(|l| l.contains("error Refused")),
        "{lines:?}"
    );
    assert!(host_lines(&outcome)[0].contains("is an IP address"));
    assert_eq!(receiver.hits(), 0);
}

/// Without the opt-in, `localhost` — a name, resolved by the system resolver — is refused on the
/// address it resolves to, before any connection.
#[test]
fn loopback_is_refused_without_the_opt_in() {
    let receiver = Receiver::start();
    let outcome = call(
        &sandbox(Limits::default()),
        OutboundPolicy::default(),
        &format!("GET http://localhost:{}/ok", receiver.port),
    );
    assert!(plugin_lines(&outcome)[0].contains("error Refused"));
    let host = host_lines(&outcome);
    assert!(
        host[0].contains("a loopback address")
            && host[0].contains("allow_loopback_for_development"),
        "{host:?}"
    );
    assert_eq!(receiver.hits(), 0);
}

/// A name resolving to a private, metadata (link-local) or CGNAT address is refused even with the
/// loopback opt-in; the same resolution path connects a name pinned to loopback to exactly the vetted
/// address (the name exists in no DNS: the connection goes to the vetted IP, never to a second lookup).
#[test]
fn names_resolving_to_internal_addresses_are_refused() {
    let receiver = Receiver::start();
    let p = receiver.port;
    let pins = [
        ("intranet.contoso.test", "10.0.0.7"),
        ("metadata.contoso.test", "169.254.169.254"),
        ("nat.contoso.test", "100.64.0.1"),
        ("mapped.contoso.test", "::ffff:192.168.1.1"),
        ("crm.contoso.test", "127.0.0.1"),
    ];
    let policy = OutboundPolicy {
        resolve: pins
            .iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect::<BTreeMap<_, _>>(),
        ..loopback()
    };
    let script: String = pins
        .iter()
        .map(|(n, _)| format!("GET http://{n}:{p}/ok\n"))
        .collect();
    let outcome = call(&sandbox(Limits::default()), policy, &script);
    let lines = plugin_lines(&outcome);
    let host = host_lines(&outcome);
    for (i, class) in [
        "a private address",
        "a link-local address",
        "a carrier-grade NAT",
        "a private address",
    ]
    .iter()
    .enumerate()
    {
        assert!(lines[i].contains("error Refused"), "{lines:?}");
        assert!(host[i].contains(class), "{} should name {class}", host[i]);
    }
    assert_eq!(
        lines[4],
        format!("GET http://crm.contoso.test:{p}/ok: status 200, 5 bytes: hello")
    );
    assert_eq!(receiver.hits(), 1);
}

/// A host outside the plug-in's allowed hosts is refused, whatever it resolves to.
#[test]
fn hosts_outside_the_allow_list_are_refused() {
    let receiver = Receiver::start();
    let policy = OutboundPolicy {
        allowed_hosts: vec!["*.contoso.com".into()],
        ..loopback()
    };
    let outcome = call(
        &sandbox(Limits::default()),
        policy,
        &format!("GET http://localhost:{}/ok", receiver.port),
    );
    assert!(host_lines(&outcome)[0].contains("not in the plug-in's allowed_hosts (*.contoso.com)"));
    assert_eq!(receiver.hits(), 0);
}

/// An endpoint slower than the per-call timeout: the call fails with a timeout the plug-in can handle,
/// and the invocation goes on.
#[test]
fn slow_calls_time_out() {
    let receiver = Receiver::start();
    let outcome = call(
        &sandbox(Limits {
            http_timeout_ms: 300,
            ..Limits::default()
        }),
        loopback(),
        &format!(
            "GET http://localhost:{p}/slow\nGET http://localhost:{p}/ok",
            p = receiver.port
        ),
    );
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    let lines = plugin_lines(&outcome);
    assert!(lines[0].contains("error Timeout"), "{lines:?}");
    assert!(lines[1].contains("status 200"), "{lines:?}");
}

/// Answers past the invocation's byte quota fail, declared (Content-Length, refused before reading) or
/// streamed (counted as the bytes arrive).
#[test]
fn oversize_answers_fail() {
    let receiver = Receiver::start();
    let outcome = call(
        &sandbox(Limits {
            http_response_bytes: 64 << 10,
            ..Limits::default()
        }),
        loopback(),
        &format!(
            "GET http://localhost:{p}/big\nGET http://localhost:{p}/stream",
            p = receiver.port
        ),
    );
    let lines = plugin_lines(&outcome);
    assert!(
        lines.iter().all(|l| l.contains("error TooLarge")),
        "{lines:?}"
    );
    assert!(outcome.usage.calls.http_received_bytes <= (64 << 10) + (16 << 10));
    assert!(host_lines(&outcome)[1].contains("http_response_bytes"));
}

/// Past `http_calls` the invocation fails with the quota, and no further call leaves.
#[test]
fn call_quota_stops_the_plugin() {
    let receiver = Receiver::start();
    let outcome = call(
        &sandbox(Limits {
            http_calls: 3,
            ..Limits::default()
        }),
        loopback(),
        &format!("x10 GET http://localhost:{}/ok", receiver.port),
    );
    match &outcome.result {
        Err(f) => assert_eq!(f.kind, FailureKind::Quota(Quota::HttpCalls), "{f}"),
        Ok(_) => panic!("the quota must stop the plug-in"),
    }
    assert_eq!(receiver.hits(), 3);
}

/// A hostile plug-in hammering a slow endpoint and one reading an answer that never ends are both
/// stopped by the invocation's deadline — the waits inside host calls included — and the sandbox goes on
/// serving.
#[test]
fn hammering_a_slow_endpoint_is_contained() {
    let receiver = Receiver::start();
    let sandbox = sandbox(Limits {
        deadline_ms: 1_000,
        ..Limits::default()
    });
    for path in ["slow", "drip"] {
        let before = receiver.hits();
        let outcome = call(
            &sandbox,
            loopback(),
            &format!("x1000 GET http://localhost:{}/{path}", receiver.port),
        );
        match &outcome.result {
            Err(f) => assert_eq!(f.kind, FailureKind::Timeout, "{path}: {f}"),
            Ok(_) => panic!("{path}: the deadline must stop the plug-in"),
        }
        // Calls after the deadline are refused without being sent.
        assert!(
            receiver.hits() - before <= 2,
            "{path}: {:?}",
            outcome.traces
        );
    }
    let outcome = call(
        &sandbox,
        loopback(),
        &format!("GET http://localhost:{}/ok", receiver.port),
    );
    assert!(plugin_lines(&outcome)[0].contains("status 200"));
}
