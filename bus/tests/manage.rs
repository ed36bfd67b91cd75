//! The Service Bus management API (Atom) against a real bus on loopback: entities created, read, updated,
//! listed and deleted with hand-written entries in the shape Microsoft's clients send, then used for
//! messages; runtime entities surviving a restart; the Manage right; hostile input; the emulator's
//! configuration file; HTTPS with the development certificate.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use weft_bus::{BusConfig, QueueConfig, TopicConfig};

const API: &str = "api-version=2021-05";

fn entry(description: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><entry xmlns="http://www.w3.org/2005/Atom"><updated>2026-01-01T00:00:00Z</updated><content type="application/xml">{description}</content></entry>"#
    )
}

fn queue_desc(inner: &str) -> String {
    entry(&format!(
        r#"<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{inner}</QueueDescription>"#
    ))
}

fn topic_desc(inner: &str) -> String {
    entry(&format!(
        r#"<TopicDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect">{inner}</TopicDescription>"#
    ))
}

fn sub_desc(inner: &str) -> String {
    entry(&format!(
        r#"<SubscriptionDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{inner}</SubscriptionDescription>"#
    ))
}

fn rule_desc(filter: &str) -> String {
    entry(&format!(
        r#"<RuleDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{filter}<Action i:type="EmptyRuleAction"/></RuleDescription>"#
    ))
}

/// A management request with the root token (or `token`), returning status and body.
async fn call(
    bus: &TestBus,
    method: Method,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}{API}", bus.url(path));
    let mut r = bus
        .http
        .request(method, &url)
        .header("Authorization", bus.auth(path.split('?').next().unwrap()));
    if let Some(b) = body {
        r = r
            .header(
                "Content-Type",
                "application/atom+xml;type=entry;charset=utf-8",
            )
            .body(b);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

fn value<'a>(body: &'a str, tag: &str) -> &'a str {
    let start = body
        .find(&format!("<{tag}>"))
        .unwrap_or_else(|| panic!("no <{tag}> in {body}"))
        + tag.len()
        + 2;
    let end = body[start..].find('<').unwrap() + start;
    &body[start..end]
}

/// Create (201) → read (200) → create again (409) → update with If-Match (200) → list → messages flow
/// through the new queue and are counted → delete (200) → gone (empty feed, 404 on delete, 410 on send).
#[tokio::test]
async fn queue_lifecycle() {
    let bus = TestBus::start(BusConfig::default()).await;
    let (s, body) = call(
        &bus,
        Method::PUT,
        "jobs",
        Some(queue_desc(
            "<LockDuration>PT30S</LockDuration><MaxDeliveryCount>3</MaxDeliveryCount><Unknown>kept quiet</Unknown><EnablePartitioning>true</EnablePartitioning>",
        )),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(value(&body, "LockDuration"), "PT30S");
    assert_eq!(value(&body, "MaxDeliveryCount"), "3");
    assert!(body.contains("/jobs?api-version=2021-05</id>"), "{body}");

    let (s, body) = call(&bus, Method::GET, "jobs", None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(value(&body, "MaxDeliveryCount"), "3");
    assert_eq!(value(&body, "d2p1:ActiveMessageCount"), "0");

    let (s, body) = call(&bus, Method::PUT, "jobs", Some(queue_desc("")), &[]).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("<Code>409</Code>"), "{body}");

    let (s, body) = call(
        &bus,
        Method::PUT,
        "jobs",
        Some(queue_desc("<MaxDeliveryCount>7</MaxDeliveryCount>")),
        &[("If-Match", "*")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(value(&body, "MaxDeliveryCount"), "7");
    assert_eq!(
        value(&body, "LockDuration"),
        "PT30S",
        "an update keeps what it does not name"
    );

    let (s, body) = call(&bus, Method::GET, "$Resources/Queues", None, &[]).await;
    assert_eq!(s, 200);
    assert!(
        body.starts_with("<?xml") && body.contains("<feed"),
        "{body}"
    );
    assert_eq!(body.matches("<QueueDescription").count(), 1);

    assert_eq!(bus.send("jobs", "hello", &[]).await.status(), 201);
    assert_eq!(bus.send("jobs", "world", &[]).await.status(), 201);
    let (_, body) = call(&bus, Method::GET, "jobs", None, &[]).await;
    assert_eq!(value(&body, "d2p1:ActiveMessageCount"), "2");
    assert_eq!(value(&body, "MessageCount"), "2");
    let r = bus.receive_delete("jobs", 1).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello");

    let (s, _) = call(&bus, Method::DELETE, "jobs", None, &[]).await;
    assert_eq!(s, 200);
    let (s, body) = call(&bus, Method::GET, "jobs", None, &[]).await;
    assert_eq!(s, 200);
    assert!(body.contains("<feed") && !body.contains("<entry"), "{body}");
    let (s, body) = call(&bus, Method::DELETE, "jobs", None, &[]).await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(bus.send("jobs", "late", &[]).await.status(), 410);
    // Recreated: empty, the old message is gone with the old queue.
    let (s, _) = call(&bus, Method::PUT, "jobs", Some(queue_desc("")), &[]).await;
    assert_eq!(s, 201);
    assert_eq!(bus.receive_delete("jobs", 0).await.status(), 204);
}

/// Topics, subscriptions and rules: a subscription made with a correlation default rule, a SQL rule added,
/// the default rule deleted; messages reach only the subscriptions whose rules match (any rule).
#[tokio::test]
async fn topic_subscriptions_and_rules() {
    let bus = TestBus::start(BusConfig::default()).await;
    let (s, body) = call(
        &bus,
        Method::PUT,
        "events",
        Some(topic_desc(
            "<DefaultMessageTimeToLive>P14D</DefaultMessageTimeToLive><RequiresDuplicateDetection>true</RequiresDuplicateDetection>",
        )),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(value(&body, "DefaultMessageTimeToLive"), "P14D");
    assert_eq!(value(&body, "DuplicateDetectionHistoryTimeWindow"), "PT10M");
    let (s, _) = call(
        &bus,
        Method::PUT,
        "events/Subscriptions/all",
        Some(sub_desc("")),
        &[],
    )
    .await;
    assert_eq!(s, 201);
    let correlation = r#"<DefaultRuleDescription><Filter i:type="CorrelationFilter"><Label>account</Label><Properties><KeyValueOfstringanyType><Key>op</Key><Value xmlns:d6p1="http://www.w3.org/2001/XMLSchema" i:type="d6p1:string">Create</Value></KeyValueOfstringanyType></Properties></Filter><Name>$Default</Name></DefaultRuleDescription>"#;
    let (s, body) = call(
        &bus,
        Method::PUT,
        "events/Subscriptions/accounts",
        Some(sub_desc(&format!(
            "<LockDuration>PT45S</LockDuration>{correlation}"
        ))),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert!(body.contains("/events/Subscriptions/accounts?"), "{body}");
    assert_eq!(value(&body, "LockDuration"), "PT45S");

    let (s, body) = call(&bus, Method::GET, "events/Subscriptions", None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body.matches("<SubscriptionDescription").count(), 2);
    let (_, body) = call(&bus, Method::GET, "events", None, &[]).await;
    assert_eq!(value(&body, "SubscriptionCount"), "2");

    let (s, body) = call(
        &bus,
        Method::GET,
        "events/Subscriptions/accounts/Rules",
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        body.contains(r#"i:type="CorrelationFilter""#) && body.contains("<Label>account</Label>"),
        "{body}"
    );
    assert!(body.contains("<Key>op</Key>"), "{body}");

    // A SQL rule next to it: either matches.
    let sql = r#"<Filter i:type="SqlFilter"><SqlExpression>sys.Label = 'contact' AND op = 'Update'</SqlExpression></Filter>"#;
    let (s, body) = call(
        &bus,
        Method::PUT,
        "events/Subscriptions/accounts/Rules/contacts",
        Some(rule_desc(sql)),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert!(
        body.contains("/events/Subscriptions/accounts/Rules/contacts?"),
        "{body}"
    );
    let (s, _) = call(
        &bus,
        Method::PUT,
        "events/Subscriptions/accounts/Rules/contacts",
        Some(rule_desc(sql)),
        &[],
    )
    .await;
    assert_eq!(s, 409);

    let send = |label: &'static str, op: &'static str| {
        let bp = format!(r#"{{"Label":"{label}"}}"#);
        let bus = &bus;
        async move {
            let r = bus
                .send(
                    "events",
                    op,
                    &[
                        ("BrokerProperties", bp.as_str()),
                        ("op", &format!("\"{op}\"")),
                    ],
                )
                .await;
            assert_eq!(r.status(), 201);
        }
    };
    send("account", "Create").await; // $Default
    send("contact", "Update").await; // contacts
    send("account", "Delete").await; // neither
    let mut got = Vec::new();
    loop {
        let r = bus.receive_delete("events/subscriptions/accounts", 0).await;
        if r.status() == 204 {
            break;
        }
        got.push(r.text().await.unwrap());
    }
    assert_eq!(got, ["Create", "Update"]);
    let mut all = 0;
    while bus
        .receive_delete("events/subscriptions/all", 0)
        .await
        .status()
        == 200
    {
        all += 1;
    }
    assert_eq!(
        all, 3,
        "the default TrueFilter subscription gets everything"
    );

    // Without its rules the subscription gets nothing; a FalseFilter rule changes nothing.
    for rule in ["$Default", "contacts"] {
        let (s, _) = call(
            &bus,
            Method::DELETE,
            &format!("events/Subscriptions/accounts/Rules/{rule}"),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{rule}");
    }
    let (s, _) = call(
        &bus,
        Method::PUT,
        "events/Subscriptions/accounts/Rules/never",
        Some(rule_desc(
            r#"<Filter i:type="FalseFilter"><SqlExpression>1=0</SqlExpression></Filter>"#,
        )),
        &[],
    )
    .await;
    assert_eq!(s, 201);
    send("account", "Create").await;
    assert_eq!(
        bus.receive_delete("events/subscriptions/accounts", 0)
            .await
            .status(),
        204
    );
    assert_eq!(
        bus.receive_delete("events/subscriptions/all", 0)
            .await
            .status(),
        200
    );

    // Deleting the topic deletes its subscriptions.
    let (s, _) = call(&bus, Method::DELETE, "events", None, &[]).await;
    assert_eq!(s, 200);
    let (_, body) = call(&bus, Method::GET, "events/Subscriptions/all", None, &[]).await;
    assert!(!body.contains("<entry"), "{body}");
    assert_eq!(
        bus.receive_delete("events/subscriptions/all", 0)
            .await
            .status(),
        410
    );
}

/// Entities created through the API, their settings, rules and messages are all there after a restart.
#[tokio::test]
async fn runtime_entities_survive_restart() {
    let bus = TestBus::start(BusConfig::default()).await;
    call(
        &bus,
        Method::PUT,
        "q1",
        Some(queue_desc("<MaxDeliveryCount>4</MaxDeliveryCount>")),
        &[],
    )
    .await;
    call(&bus, Method::PUT, "t1", Some(topic_desc("")), &[]).await;
    let f = r#"<DefaultRuleDescription><Filter i:type="SqlFilter"><SqlExpression>sys.Label = 'x'</SqlExpression></Filter></DefaultRuleDescription>"#;
    let (s, _) = call(
        &bus,
        Method::PUT,
        "t1/Subscriptions/s1",
        Some(sub_desc(f)),
        &[],
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(bus.send("q1", "kept", &[]).await.status(), 201);
    let bus = bus.restart(BusConfig::default()).await;
    let (s, body) = call(&bus, Method::GET, "q1", None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(value(&body, "MaxDeliveryCount"), "4");
    assert_eq!(value(&body, "d2p1:ActiveMessageCount"), "1");
    let r = bus.receive_delete("q1", 1).await;
    assert_eq!(r.text().await.unwrap(), "kept");
    let (_, body) = call(
        &bus,
        Method::GET,
        "t1/Subscriptions/s1/Rules/$Default",
        None,
        &[],
    )
    .await;
    assert!(
        body.contains("sys.Label = &apos;x&apos;") || body.contains("sys.Label = 'x'"),
        "{body}"
    );
    bus.send("t1", "no", &[("BrokerProperties", r#"{"Label":"y"}"#)])
        .await;
    bus.send("t1", "yes", &[("BrokerProperties", r#"{"Label":"x"}"#)])
        .await;
    let r = bus.receive_delete("t1/subscriptions/s1", 1).await;
    assert_eq!(r.text().await.unwrap(), "yes");
    assert_eq!(
        bus.receive_delete("t1/subscriptions/s1", 0).await.status(),
        204
    );
    // Deleted entities stay deleted.
    call(&bus, Method::DELETE, "q1", None, &[]).await;
    let bus = bus.restart(BusConfig::default()).await;
    let (_, body) = call(&bus, Method::GET, "$Resources/Queues", None, &[]).await;
    assert!(!body.contains("<entry"), "{body}");
    let (_, body) = call(&bus, Method::GET, "$Resources/Topics", None, &[]).await;
    assert_eq!(body.matches("<entry").count(), 1);
}

/// The operator's depths (`Bus::depths`, what `/metrics` and the console's Bus page show) walk the live
/// entities: queues, topics and subscriptions created through the API appear with their counts after the
/// configured ones (a subscription added to a configured topic too), and a deleted one disappears.
#[tokio::test]
async fn runtime_entities_in_depths() {
    let config = BusConfig {
        queues: vec![QueueConfig::new("configured")],
        topics: vec![TopicConfig::new(
            "cfg-topic",
            vec![weft_bus::SubscriptionConfig::new(
                "cfg-sub",
                Default::default(),
            )],
        )],
        ..BusConfig::default()
    };
    let bus = TestBus::start(config).await;
    for (path, body) in [
        ("jobs", queue_desc("")),
        ("events", topic_desc("")),
        ("events/Subscriptions/all", sub_desc("")),
        ("cfg-topic/Subscriptions/late", sub_desc("")),
    ] {
        let (s, b) = call(&bus, Method::PUT, path, Some(body), &[]).await;
        assert_eq!(s, 201, "{path}: {b}");
    }
    for (entity, n) in [("jobs", 2), ("events", 1), ("cfg-topic", 1)] {
        for _ in 0..n {
            assert_eq!(bus.send(entity, "m", &[]).await.status(), 201);
        }
    }
    let later = r#"{"ScheduledEnqueueTimeUtc":"Fri, 06 Nov 2099 08:49:37 GMT"}"#;
    assert_eq!(
        bus.send("jobs", "later", &[("BrokerProperties", later)])
            .await
            .status(),
        201
    );
    let (queues, topics) = bus.handle.bus().depths();
    let q: Vec<_> = queues
        .iter()
        .map(|d| (d.path.as_str(), d.depth.active, d.depth.scheduled))
        .collect();
    assert_eq!(q, [("configured", 0, 0), ("jobs", 2, 1)]);
    let t: Vec<_> = topics
        .iter()
        .map(|t| {
            let subs: Vec<_> = t
                .subscriptions
                .iter()
                .map(|d| (d.path.clone(), d.depth.active))
                .collect();
            (t.name.clone(), subs)
        })
        .collect();
    assert_eq!(
        t,
        [
            (
                "cfg-topic".to_string(),
                vec![
                    ("cfg-topic/subscriptions/cfg-sub".to_string(), 1),
                    ("cfg-topic/subscriptions/late".to_string(), 1)
                ]
            ),
            (
                "events".to_string(),
                vec![("events/subscriptions/all".to_string(), 1)]
            )
        ]
    );
    let d = bus.handle.bus().entity_depth("jobs").unwrap();
    assert_eq!(d.depth.active, 2);
    let (s, _) = call(&bus, Method::DELETE, "jobs", None, &[]).await;
    assert_eq!(s, 200);
    let (queues, _) = bus.handle.bus().depths();
    assert_eq!(queues.len(), 1, "deleted: gone from the depths");
}

/// Management needs Manage: a Send-only token, a missing token and a bad one get 401, as from Azure.
#[tokio::test]
async fn manage_right_enforced() {
    let bus = TestBus::start(BusConfig::default()).await;
    let url = format!("{}?{API}", bus.url("q"));
    let send_only = token_at(&bus.url("q"), SEND_ONLY, SEND_KEY, now() + 600);
    for auth in [
        Some(send_only.as_str()),
        None,
        Some("SharedAccessSignature sr=x&sig=y&se=1&skn=z"),
    ] {
        let mut r = bus.http.put(&url).body(queue_desc(""));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains("<Code>401</Code>"), "{body}");
        if auth == Some(send_only.as_str()) {
            assert!(
                body.contains("Manage,EntityWrite claims required"),
                "{body}"
            );
        }
    }
    let (s, _) = call(&bus, Method::GET, "$Resources/Queues", None, &[]).await;
    assert_eq!(s, 200);
    let r = bus
        .http
        .get(format!("{}?{API}", bus.url("$Resources/Queues")))
        .header(
            "Authorization",
            token_at(
                &bus.url("$Resources/Queues"),
                SEND_ONLY,
                SEND_KEY,
                now() + 600,
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Hostile or unsupported input: precise 400s (never a panic), 413 for a huge body, 403 for changing a
/// configured entity, and the bus keeps serving.
#[tokio::test]
async fn hostile_management_input() {
    let mut cfg = BusConfig::default();
    cfg.queues.push(QueueConfig::new("configured"));
    cfg.topics.push(TopicConfig::new("ctopic", vec![]));
    let bus = TestBus::start(cfg).await;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "q",
            "<entry><content><QueueDescription>".into(),
            "not closed",
        ),
        ("q", "not xml at all <".into(), "XML"),
        ("q", "".into(), "empty"),
        ("q", "<feed/>".into(), "expected an Atom <entry>"),
        (
            "q",
            entry("<Nonsense/>"),
            "expected <QueueDescription> or <TopicDescription>",
        ),
        (
            "q",
            "<!DOCTYPE a [<!ENTITY x 'y'>]><entry/>".into(),
            "DOCTYPE",
        ),
        (
            "q",
            queue_desc("<RequiresSession>true</RequiresSession>"),
            "sessions are not supported",
        ),
        (
            "q",
            queue_desc("<ForwardTo>other</ForwardTo>"),
            "auto-forwarding is not supported",
        ),
        (
            "q",
            queue_desc("<LockDuration>soon</LockDuration>"),
            "LockDuration",
        ),
        (
            "q",
            queue_desc("<LockDuration>PT10M</LockDuration>"),
            "lock_duration_secs",
        ),
        (
            "q",
            queue_desc("<MaxDeliveryCount>-1</MaxDeliveryCount>"),
            "MaxDeliveryCount",
        ),
        (
            "q",
            queue_desc("<RequiresDuplicateDetection>maybe</RequiresDuplicateDetection>"),
            "true or false",
        ),
        ("bad%20name", queue_desc(""), "is invalid"),
        ("a/partitions/b", queue_desc(""), "reserved path segment"),
        ("q", "<a>".repeat(200) + &"</a>".repeat(200), "deeper"),
    ];
    for (path, body, want) in cases {
        let url = format!("{}?{API}", bus.url(path));
        let r = bus
            .http
            .put(&url)
            .header("Authorization", bus.auth(path))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r
            .text()
            .await
            .unwrap()
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        assert_eq!(status, 400, "{path} {body}: {text}");
        assert!(text.contains(want), "{body}: wanted '{want}' in {text}");
    }
    let (s, _) = call(&bus, Method::PUT, "q", Some("x".repeat(200_000)), &[]).await;
    assert_eq!(s, 413);
    call(
        &bus,
        Method::PUT,
        "ctopic/Subscriptions/s",
        Some(sub_desc("")),
        &[],
    )
    .await;
    let bad_rule =
        rule_desc(r#"<Filter i:type="SqlFilter"><SqlExpression>a > 1</SqlExpression></Filter>"#);
    let (s, body) = call(
        &bus,
        Method::PUT,
        "ctopic/Subscriptions/s/Rules/r",
        Some(bad_rule),
        &[],
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("only equality"), "{body}");
    let action = entry(
        r#"<RuleDescription xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Filter i:type="TrueFilter"/><Action i:type="SqlRuleAction"><SqlExpression>SET a = 1</SqlExpression></Action></RuleDescription>"#,
    );
    let (s, body) = call(
        &bus,
        Method::PUT,
        "ctopic/Subscriptions/s/Rules/r",
        Some(action),
        &[],
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("rule actions"), "{body}");
    for (m, path) in [(Method::DELETE, "configured"), (Method::DELETE, "ctopic")] {
        let (s, body) = call(&bus, m, path, None, &[]).await;
        assert_eq!(s, 403, "{path}: {body}");
        assert!(body.contains("bus configuration"), "{body}");
    }
    let (s, _) = call(
        &bus,
        Method::PUT,
        "configured",
        Some(queue_desc("")),
        &[("If-Match", "*")],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(&bus, Method::PUT, "configured", Some(queue_desc("")), &[]).await;
    assert_eq!(s, 409);
    // A runtime subscription on a configured topic may go.
    let (s, _) = call(&bus, Method::DELETE, "ctopic/Subscriptions/s", None, &[]).await;
    assert_eq!(s, 200);
    // Paging parameters are checked and applied.
    let (s, body) = call(&bus, Method::GET, "$Resources/Queues?$skip=x", None, &[]).await;
    assert_eq!(s, 400, "{body}");
    for i in 0..3 {
        call(
            &bus,
            Method::PUT,
            &format!("p{i}"),
            Some(queue_desc("")),
            &[],
        )
        .await;
    }
    let (_, body) = call(
        &bus,
        Method::GET,
        "$Resources/Queues?$skip=1&$top=2",
        None,
        &[],
    )
    .await;
    assert_eq!(body.matches("<entry").count(), 2, "{body}");
    assert!(body.contains("rel=\"next\""), "{body}");
    assert!(bus.send("configured", "still serving", &[]).await.status() == 201);
}

/// `weft bus --emulator-config`: the sample Config.json (the emulator's documented shape) gives queues,
/// topics, subscriptions and rules that the management API lists and messages follow.
#[tokio::test]
async fn emulator_config_file() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bus: weft_bus::cli::BusArgs,
    }
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/emulator-config.json"
    );
    let cli = Cli::try_parse_from(["bus", "--emulator-config", sample]).unwrap();
    let cfg = cli.bus.to_config().unwrap();
    let bus = TestBus::start(cfg).await;
    let (_, body) = call(&bus, Method::GET, "$Resources/Queues", None, &[]).await;
    assert_eq!(body.matches("<entry").count(), 2, "{body}");
    let (_, body) = call(&bus, Method::GET, "queue.1", None, &[]).await;
    assert_eq!(value(&body, "MaxDeliveryCount"), "3");
    assert_eq!(value(&body, "DefaultMessageTimeToLive"), "PT1H");
    let (_, body) = call(
        &bus,
        Method::GET,
        "topic.1/Subscriptions/subscription.1/Rules",
        None,
        &[],
    )
    .await;
    assert_eq!(body.matches("<entry").count(), 2, "{body}");
    bus.send(
        "topic.1",
        "m1",
        &[
            ("BrokerProperties", r#"{"Label":"subject1"}"#),
            ("prop1", "\"value1\""),
        ],
    )
    .await;
    bus.send(
        "topic.1",
        "m2",
        &[("BrokerProperties", r#"{"MessageId":"123456"}"#)],
    )
    .await;
    bus.send("topic.1", "m3", &[]).await;
    let mut got = Vec::new();
    while let r = bus
        .receive_delete("topic.1/subscriptions/subscription.1", 0)
        .await
        && r.status() == 200
    {
        got.push(r.text().await.unwrap());
    }
    assert_eq!(got, ["m1", "m2"]);
    let mut all = 0;
    while bus
        .receive_delete("topic.1/subscriptions/subscription.2", 0)
        .await
        .status()
        == 200
    {
        all += 1;
    }
    assert_eq!(all, 3);
    let err = Cli::try_parse_from(["bus", "--emulator-config", "/nonexistent/Config.json"])
        .unwrap()
        .bus
        .to_config()
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot read emulator config"),
        "{err:#}"
    );
}

/// `tls = true`: HTTPS with the development certificate; a client trusting `<data>/tls/ca.pem` (as
/// NODE_EXTRA_CA_CERTS would) manages entities and sends, lock URIs name `https://`; plain HTTP fails.
#[tokio::test]
async fn https_with_development_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BusConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: true,
        sas_policies: vec![weft_bus::sas::SasPolicy::full(KEY_NAME, KEY)],
        ..BusConfig::default()
    };
    let mut bus = TestBus::start_in(cfg, dir).await;
    let port = bus.handle.local_addr().port();
    assert_eq!(bus.handle.url(), format!("https://127.0.0.1:{port}"));
    let ca = std::fs::read(bus.dir.path().join("tls/ca.pem")).unwrap();
    bus.http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    bus.base = format!("https://localhost:{port}");
    let (s, body) = call(&bus, Method::PUT, "secure", Some(queue_desc("")), &[]).await;
    assert_eq!(s, 201, "{body}");
    assert!(body.contains("<id>https://localhost:"), "{body}");
    let (s, body) = call(&bus, Method::GET, "$namespaceinfo", None, &[]).await;
    assert_eq!(s, 200);
    assert!(
        body.contains("<MessagingSKU>Standard</MessagingSKU>")
            && body.contains("<Name>localhost</Name>"),
        "{body}"
    );
    assert_eq!(bus.send("secure", "tls", &[]).await.status(), 201);
    let r = bus.peek_lock("secure", 1).await;
    assert_eq!(r.status(), 201);
    let loc = header(&r, "Location").unwrap();
    assert!(loc.starts_with("https://localhost:"), "{loc}");
    assert_eq!(
        bus.lock_op(Method::DELETE, &loc, "secure").await.status(),
        200
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/$namespaceinfo?{API}"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

/// A receiver long-polling a queue that is deleted gets 410, as a request after the delete does, rather
/// than waiting out its timeout.
#[tokio::test]
async fn deleting_ends_long_polls() {
    let bus = std::sync::Arc::new(TestBus::start(BusConfig::default()).await);
    let (s, _) = call(&bus, Method::PUT, "brief", Some(queue_desc("")), &[]).await;
    assert_eq!(s, 201);
    let waiting = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.receive_delete("brief", 120).await.status() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (s, _) = call(&bus, Method::DELETE, "brief", None, &[]).await;
    assert_eq!(s, 200);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), waiting)
        .await
        .expect("the long poll ended with the delete")
        .unwrap();
    assert_eq!(status, 410);
}

/// Quotas fail with Azure's QuotaExceeded (403) and name the setting; nothing else caps entities.
#[tokio::test]
async fn entity_quotas() {
    let cfg = BusConfig {
        queues: vec![QueueConfig::new("configured")],
        max_entities: 3,
        max_subscriptions_per_topic: 2,
        ..BusConfig::default()
    };
    let bus = TestBus::start(cfg).await;
    assert_eq!(
        call(&bus, Method::PUT, "q1", Some(queue_desc("")), &[])
            .await
            .0,
        201
    );
    assert_eq!(
        call(&bus, Method::PUT, "t1", Some(topic_desc("")), &[])
            .await
            .0,
        201
    );
    let (s, body) = call(&bus, Method::PUT, "q2", Some(queue_desc("")), &[]).await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("QuotaExceeded") && body.contains("max_entities"),
        "{body}"
    );
    for sub in ["a", "b"] {
        let path = format!("t1/Subscriptions/{sub}");
        assert_eq!(
            call(&bus, Method::PUT, &path, Some(sub_desc("")), &[])
                .await
                .0,
            201
        );
    }
    let (s, body) = call(
        &bus,
        Method::PUT,
        "t1/Subscriptions/c",
        Some(sub_desc("")),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let rule = rule_desc(r#"<Filter i:type="TrueFilter"/>"#);
    assert_eq!(
        call(
            &bus,
            Method::PUT,
            "t1/Subscriptions/a/Rules/r2",
            Some(rule.clone()),
            &[]
        )
        .await
        .0,
        201
    );
    let (s, body) = call(
        &bus,
        Method::PUT,
        "t1/Subscriptions/a/Rules/r3",
        Some(rule),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    // Deleting frees room.
    assert_eq!(call(&bus, Method::DELETE, "q1", None, &[]).await.0, 200);
    assert_eq!(
        call(&bus, Method::PUT, "q2", Some(queue_desc("")), &[])
            .await
            .0,
        201
    );
}
