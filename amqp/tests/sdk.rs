//! The official Azure Service Bus and Event Hubs SDKs against a real bus over AMQP: npm
//! `@azure/service-bus` 7.9.5 and `@azure/event-hubs` 6.0.4, PyPI `azure-servicebus` 7.15.0 and
//! `azure-eventhub` 5.15.1, installed by `bus/tests/clients/install.sh` into `target/bus-clients/`.
//! The client scripts live in `bus/tests/clients/`; each prints what the SDK saw as JSON and these tests
//! check it. Without node/python3 or the installed SDKs a test prints `skipped: NAME: …` and returns,
//! unless `WEFT_REQUIRE_CLIENTS=1` (set by `.ci/run`).

mod common;

use common::{TestBus, clients_dir, repo};
use serde_json::{Value, json};

#[derive(Clone, Copy)]
enum Sdk {
    Node,
    Python,
}

/// Which SDK package of a language a test drives.
#[derive(Clone, Copy)]
enum Service {
    ServiceBus,
    EventHubs,
}

/// True when the test should go on; prints the skip line otherwise (or fails when clients are required).
fn available(name: &str, sdk: Sdk, service: Service) -> bool {
    let (bin, marker) = match (sdk, service) {
        (Sdk::Node, Service::ServiceBus) => {
            ("node", "node/node_modules/@azure/service-bus/package.json")
        }
        (Sdk::Node, Service::EventHubs) => {
            ("node", "node/node_modules/@azure/event-hubs/package.json")
        }
        (Sdk::Python, Service::ServiceBus) => ("python3", "python/azure/servicebus/__init__.py"),
        (Sdk::Python, Service::EventHubs) => ("python3", "python/azure/eventhub/__init__.py"),
    };
    common::client_available(name, bin, marker)
}

/// Runs a Service Bus scenario script and returns its JSON output.
async fn run(sdk: Sdk, bus: &TestBus, scenario: &str) -> Value {
    let env = [("SB_CONNECTION_STRING", bus.connection_string())];
    run_script(sdk, "servicebus", scenario, &env).await
}

/// Runs `bus/tests/clients/<script>.cjs|.py SCENARIO` with `env` and returns its JSON output.
async fn run_script(sdk: Sdk, script: &str, scenario: &str, env: &[(&str, String)]) -> Value {
    let scripts = repo().join("bus/tests/clients");
    let mut cmd = match sdk {
        Sdk::Node => {
            let mut c = tokio::process::Command::new("node");
            c.arg(scripts.join(format!("{script}.cjs")))
                .env("NODE_PATH", clients_dir().join("node/node_modules"));
            c
        }
        Sdk::Python => {
            let mut c = tokio::process::Command::new("python3");
            c.arg(scripts.join(format!("{script}.py")))
                .env("PYTHONPATH", clients_dir().join("python"));
            c
        }
    };
    cmd.arg(scenario)
        .envs(env.iter().cloned())
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("the SDK script did not finish within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{scenario} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{scenario}: bad JSON {e}: {stdout}\n{stderr}"))
}

fn bodies(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| match &m["body"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

async fn lifecycle(sdk: Sdk) {
    let bus = TestBus::start().await;
    let out = run(sdk, &bus, "lifecycle").await;
    // JavaScript's SDK JSON-encodes string bodies on the wire and decodes them back; Python's sends bytes.
    assert_eq!(out["peeked"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(bodies(&out["received"]), ["one", "two", "three"], "{out}");
    let first = &out["received"][0];
    assert_eq!(first["subject"], "s1");
    assert_eq!(first["applicationProperties"]["n"], 1);
    assert_eq!(out["renewExtended"], true, "{out}");
    assert_eq!(
        bodies(&out["again"]),
        ["two"],
        "abandoned message comes back: {out}"
    );
    // The SDKs report AMQP's header delivery-count (earlier deliveries; absent when 0): one more than
    // the first time.
    let count = |m: &Value| m["deliveryCount"].as_u64().unwrap_or(0);
    assert_eq!(
        count(&out["again"][0]),
        count(&out["received"][1]) + 1,
        "{out}"
    );
    assert_eq!(bodies(&out["deadLettered"]), ["three"], "{out}");
    assert_eq!(out["deadLettered"][0]["deadLetterReason"], "bad-order");
    assert_eq!(
        out["deadLettered"][0]["deadLetterErrorDescription"],
        "no customer"
    );
    assert_eq!(out["scheduled"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(
        out["afterCancel"],
        json!([]),
        "cancelled message is gone: {out}"
    );
    // REST sees the same store: nothing left in the queue.
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "orders",
            "orders/messages/head?timeout=0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    bus.stop().await;
}

async fn rest_interop(sdk: Sdk) {
    let bus = TestBus::start().await;
    // REST → SDK.
    let batch = json!([{
        "Body": "from-rest",
        "BrokerProperties": {"Label": "Create", "CorrelationId": "corr-1", "MessageId": "m-1"},
        "UserProperties": {
            "http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName": "account",
            "Depth": 1, "IsSync": true
        }
    }]);
    let resp = bus
        .rest_request(reqwest::Method::POST, "orders", "orders/messages")
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let out = run(sdk, &bus, "receive-rest").await;
    let m = &out["received"][0];
    assert_eq!(m["subject"], "Create", "{out}");
    assert_eq!(m["correlationId"], "corr-1");
    assert_eq!(m["messageId"], "m-1");
    let app = &m["applicationProperties"];
    assert_eq!(
        app["http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName"],
        "account"
    );
    assert_eq!(app["Depth"], 1);
    assert_eq!(app["IsSync"], true);

    // SDK → REST.
    run(sdk, &bus, "send-for-rest").await;
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "orders",
            "orders/messages/head?timeout=5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bp: Value =
        serde_json::from_str(resp.headers()["brokerproperties"].to_str().unwrap()).unwrap();
    assert_eq!(bp["Label"], "Update");
    assert!(bp["MessageId"].as_str().unwrap().ends_with("-1"), "{bp}");
    assert!(
        bp["CorrelationId"].as_str().unwrap().starts_with("corr-"),
        "{bp}"
    );
    let up: Value =
        serde_json::from_str(resp.headers()["userproperties"].to_str().unwrap()).unwrap();
    assert_eq!(up["EntityLogicalName"], "contact", "{up}");
    assert_eq!(up["Attempt"], 3);
    assert_eq!(up["Ok"], true);
    bus.stop().await;
}

#[tokio::test]
async fn node_service_bus_lifecycle() {
    if available("node_service_bus_lifecycle", Sdk::Node, Service::ServiceBus) {
        lifecycle(Sdk::Node).await;
    }
}

#[tokio::test]
async fn node_service_bus_rest_interop() {
    if available(
        "node_service_bus_rest_interop",
        Sdk::Node,
        Service::ServiceBus,
    ) {
        rest_interop(Sdk::Node).await;
    }
}

#[tokio::test]
async fn python_service_bus_lifecycle() {
    if available(
        "python_service_bus_lifecycle",
        Sdk::Python,
        Service::ServiceBus,
    ) {
        lifecycle(Sdk::Python).await;
    }
}

#[tokio::test]
async fn python_service_bus_rest_interop() {
    if available(
        "python_service_bus_rest_interop",
        Sdk::Python,
        Service::ServiceBus,
    ) {
        rest_interop(Sdk::Python).await;
    }
}

/// A settlement is applied before the JavaScript SDK's complete, defer or abandon returns: a peek sent
/// straight after sees it, thirty rounds in a row (the bus used to confirm a settlement before storing it,
/// and a peek could still see a completed message active).
#[tokio::test]
async fn node_service_bus_settlement_is_stored_before_it_is_confirmed() {
    if !available(
        "node_service_bus_settlement_is_stored_before_it_is_confirmed",
        Sdk::Node,
        Service::ServiceBus,
    ) {
        return;
    }
    let bus = TestBus::start().await;
    let out = run(Sdk::Node, &bus, "settle-then-peek").await;
    let seen = out["seen"].as_array().expect("rounds");
    assert_eq!(seen.len(), 30, "{out}");
    for round in seen {
        let peeked = round["peeked"].as_array().expect("peeked");
        match round["how"].as_str() {
            Some("complete") => assert!(peeked.is_empty(), "completed but peeked: {round}"),
            Some(state) => {
                let want = if state == "defer" {
                    "deferred"
                } else {
                    "active"
                };
                assert_eq!(peeked.len(), 1, "{round}");
                assert_eq!(
                    peeked[0]["sequenceNumber"], round["sequenceNumber"],
                    "{round}"
                );
                assert_eq!(peeked[0]["state"], want, "{round}");
            }
            None => panic!("no settlement named: {round}"),
        }
    }
    bus.stop().await;
}

/// Deferral with the JavaScript SDK, across a bus restart: a REST-sent message deferred over AMQP is
/// out of ordinary receives (AMQP and REST) but in peeks as deferred; after the restart it is received by
/// sequence number with its custom properties (and the properties to modify sent with the defer),
/// abandoned with properties to modify (still deferred), received again with its lock
/// renewed and dead-lettered; a second one is deferred, received and completed; an unknown sequence number
/// is the SDK's MessageNotFound.
#[tokio::test]
async fn node_service_bus_deferral() {
    if !available("node_service_bus_deferral", Sdk::Node, Service::ServiceBus) {
        return;
    }
    let bus = TestBus::start().await;
    let batch = json!([{
        "Body": "from-rest",
        "BrokerProperties": {"Label": "Create", "MessageId": "rest-defer"},
        "UserProperties": {"EntityLogicalName": "account", "Depth": 2}
    }]);
    let resp = bus
        .rest_request(reqwest::Method::POST, "orders", "orders/messages")
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let out = run(Sdk::Node, &bus, "defer").await;
    let seq = out["deferred"]["sequenceNumber"].as_u64().unwrap();
    assert_eq!(out["deferred"]["body"], "from-rest", "{out}");
    assert_eq!(
        out["ordinary"],
        json!(["after"]),
        "deferred is not received: {out}"
    );
    assert_eq!(out["peeked"][0]["sequenceNumber"], seq, "{out}");
    assert_eq!(out["peeked"][0]["state"], "deferred", "{out}");
    assert_eq!(out["peeked"].as_array().unwrap().len(), 1, "{out}");
    // REST receives do not hand it out either.
    let resp = bus
        .rest_request(
            reqwest::Method::DELETE,
            "orders",
            "orders/messages/head?timeout=0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let bus = bus.restart().await;
    let env = [
        ("SB_CONNECTION_STRING", bus.connection_string()),
        ("DEFERRED_SEQ", seq.to_string()),
    ];
    let out = run_script(Sdk::Node, "servicebus", "receive-deferred", &env).await;
    let m = &out["received"];
    assert_eq!(m["body"], "from-rest", "{out}");
    assert_eq!(m["sequenceNumber"], seq);
    assert_eq!(m["state"], "deferred", "{out}");
    assert_eq!(m["subject"], "Create");
    assert_eq!(m["messageId"], "rest-defer");
    assert_eq!(m["applicationProperties"]["EntityLogicalName"], "account");
    // Properties to modify sent with the defer: one added, one replaced.
    assert_eq!(m["applicationProperties"]["deferredBy"], "node", "{out}");
    assert_eq!(m["applicationProperties"]["Depth"], 3);
    assert!(
        m["lockToken"].as_str().is_some_and(|t| t.len() == 36),
        "{out}"
    );
    assert!(out["lockedUntil"].as_i64().is_some(), "{out}");
    // Delivered once before the defer: AMQP's delivery-count (earlier deliveries) is 1 now, 2 next time.
    let count = |m: &Value| m["deliveryCount"].as_u64().unwrap_or(0);
    assert_eq!(count(m), 1, "{out}");
    assert_eq!(out["afterAbandon"][0]["state"], "deferred", "{out}");
    assert_eq!(out["ordinary"], json!([]), "{out}");
    assert_eq!(count(&out["again"]), 2, "{out}");
    assert_eq!(
        out["again"]["applicationProperties"]["abandoned"], true,
        "properties to modify with an abandon over $management: {out}"
    );
    assert_eq!(out["renewExtended"], true, "{out}");
    assert_eq!(bodies(&out["deadLettered"]), ["from-rest"], "{out}");
    assert_eq!(out["deadLettered"][0]["deadLetterReason"], "gave-up");
    assert_eq!(out["completed"]["body"], "complete-me", "{out}");
    assert_eq!(out["afterComplete"], json!([]), "{out}");
    assert_eq!(
        out["unknown"],
        json!({"name": "ServiceBusError", "code": "MessageNotFound"}),
        "{out}"
    );
    let d = bus.bus.bus().entity_depth("orders").unwrap();
    assert_eq!((d.depth.active, d.depth.deferred, d.dead_letter), (0, 0, 0));
    bus.stop().await;
}

/// Deferral with the Python SDK: defer_message, an ordinary receive without it, a peek showing it
/// deferred, receive_deferred_messages with its lock token, abandon (still deferred), again,
/// complete_message; an unknown sequence number is the SDK's MessageNotFoundError.
#[tokio::test]
async fn python_service_bus_deferral() {
    if !available(
        "python_service_bus_deferral",
        Sdk::Python,
        Service::ServiceBus,
    ) {
        return;
    }
    let bus = TestBus::start().await;
    let out = run(Sdk::Python, &bus, "defer").await;
    assert_eq!(out["ordinary"], json!(["py-after"]), "{out}");
    assert_eq!(out["peeked"][0]["body"], "py-defer", "{out}");
    assert_eq!(out["peeked"][0]["state"], 1, "deferred: {out}");
    let m = &out["received"];
    assert_eq!(m["body"], "py-defer", "{out}");
    assert_eq!(m["state"], 1, "{out}");
    assert_eq!(m["applicationProperties"]["kind"], "deferred", "{out}");
    assert_eq!(m["applicationProperties"]["n"], 5);
    assert_eq!(out["hasLockToken"], true, "{out}");
    assert_eq!(out["afterAbandon"][0]["state"], 1, "{out}");
    assert_eq!(out["again"]["body"], "py-defer", "{out}");
    assert_eq!(out["afterComplete"], json!([]), "{out}");
    assert_eq!(out["unknown"], "MessageNotFoundError", "{out}");
    bus.stop().await;
}

/// A body as the SDK put it on the wire, read back over REST: JavaScript's SDK JSON-encodes strings.
fn wire_body(sdk: Sdk, text: &str) -> String {
    match sdk {
        Sdk::Node => format!("\"{text}\""),
        Sdk::Python => text.to_string(),
    }
}

/// An SDK producer and consumer against a hub: properties, a keyed batch (one partition, the REST
/// side's resolver's), a single event to a partition, partition properties, reads from earliest, from
/// a sequence number and from an offset; REST-sent events read by the SDK and SDK-sent events read
/// through the REST read endpoint `weft listen` uses.
async fn event_hubs_roundtrip(sdk: Sdk) {
    let bus = TestBus::start().await;
    let key_p = weft_bus::eventhub::partition_for_key("order-42", 4);
    let single_p = (key_p + 1) % 4;
    let rest_p = (key_p + 2) % 4;
    let empty_p = (key_p + 3) % 4;
    for (i, body) in ["from-rest-1", "from-rest-2"].iter().enumerate() {
        let resp = bus
            .rest_request(
                reqwest::Method::POST,
                "hub",
                &format!("hub/partitions/{rest_p}/messages"),
            )
            .header("Content-Type", "text/plain")
            .header(
                "BrokerProperties",
                json!({"MessageId": format!("rest-{i}")}).to_string(),
            )
            .header("tenant", "\"account\"")
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let env = [
        ("EH_CONNECTION_STRING", bus.connection_string()),
        ("EH_NAME", "hub".to_string()),
        ("EH_KEY_PARTITION", key_p.to_string()),
        ("EH_SINGLE_PARTITION", single_p.to_string()),
        ("EH_REST_PARTITION", rest_p.to_string()),
    ];
    let out = run_script(sdk, "eventhubs", "roundtrip", &env).await;
    assert_eq!(out["hub"]["name"], "hub", "{out}");
    assert_eq!(out["hub"]["partitionIds"], json!(["0", "1", "2", "3"]));
    let parts = &out["partitions"];
    let last = |p: usize| parts[p]["lastEnqueuedSequenceNumber"].as_i64().unwrap();
    assert_eq!(last(key_p), 2, "three keyed events in one partition: {out}");
    assert_eq!(parts[key_p]["lastEnqueuedOffset"], "2");
    assert_eq!(parts[key_p]["beginningSequenceNumber"], 0);
    assert_eq!(parts[key_p]["isEmpty"], false);
    assert_eq!(last(single_p), 0, "{out}");
    assert_eq!(last(rest_p), 1, "{out}");
    assert_eq!(parts[empty_p]["isEmpty"], true, "{out}");
    assert_eq!(last(empty_p), -1);

    let bodies = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {out}"))
            .iter()
            .map(|e| e["body"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(bodies(&out["earliest"]), ["k1", "k2", "k3"], "{out}");
    let first = &out["earliest"][0];
    assert_eq!(first["sequenceNumber"], 0);
    assert_eq!(first["offset"], "0");
    assert_eq!(first["partitionKey"], "order-42");
    assert_eq!(first["properties"]["n"], 1);
    assert!(first["enqueuedTimeUtc"].as_i64().unwrap() > 0, "{out}");
    assert_eq!(out["earliest"][2]["sequenceNumber"], 2);
    assert_eq!(bodies(&out["fromSequence"]), ["k2", "k3"], "{out}");
    assert_eq!(bodies(&out["fromOffset"]), ["k2", "k3"], "{out}");
    assert_eq!(
        bodies(&out["rest"]),
        ["from-rest-1", "from-rest-2"],
        "{out}"
    );
    assert_eq!(out["rest"][0]["properties"]["tenant"], "account", "{out}");

    // SDK → REST: the single event as the REST read endpoint (and so `weft listen`) sees it.
    let resp = bus
        .rest_request(
            reqwest::Method::GET,
            "hub",
            &format!("hub/partitions/{single_p}/events?offset=0"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events: Value = resp.json().await.unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["Body"], wire_body(sdk, "p2"), "{events}");
    assert_eq!(events[0]["UserProperties"]["kind"], "single");
    assert_eq!(events[0]["BrokerProperties"]["MessageId"], "m-p2");
    bus.stop().await;
}

#[tokio::test]
async fn node_event_hubs_roundtrip() {
    if available("node_event_hubs_roundtrip", Sdk::Node, Service::EventHubs) {
        event_hubs_roundtrip(Sdk::Node).await;
    }
}

#[tokio::test]
async fn python_event_hubs_roundtrip() {
    if available(
        "python_event_hubs_roundtrip",
        Sdk::Python,
        Service::EventHubs,
    ) {
        event_hubs_roundtrip(Sdk::Python).await;
    }
}
