//! The official Azure Service Bus SDKs against a real bus over AMQP: npm `@azure/service-bus` 7.9.5 and
//! PyPI `azure-servicebus` 7.15.0, installed by `bus/tests/clients/install.sh` into `target/bus-clients/`.
//! The client scripts live in `bus/tests/clients/`; each prints what the SDK saw as JSON and these tests
//! check it. Without node/python3 or the installed SDKs a test prints `skipped: NAME: …` and returns,
//! unless `WEFT_REQUIRE_CLIENTS=1` (set by `.ci/run`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestBus;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn clients_dir() -> PathBuf {
    std::env::var_os("WEFT_BUS_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/bus-clients"))
}

#[derive(Clone, Copy)]
enum Sdk {
    Node,
    Python,
}

/// Why the SDK cannot run here, if it cannot.
fn missing(sdk: Sdk) -> Option<String> {
    let (bin, marker) = match sdk {
        Sdk::Node => ("node", "node/node_modules/@azure/service-bus/package.json"),
        Sdk::Python => ("python3", "python/azure/servicebus/__init__.py"),
    };
    if Command::new(bin).arg("--version").output().is_err() {
        return Some(format!("{bin} is not installed"));
    }
    let m = clients_dir().join(marker);
    if !m.exists() {
        return Some(format!(
            "{} is missing: run bus/tests/clients/install.sh",
            m.display()
        ));
    }
    None
}

/// True when the test should go on; prints the skip line otherwise (or fails when clients are required).
fn available(name: &str, sdk: Sdk) -> bool {
    match missing(sdk) {
        None => true,
        Some(why) if std::env::var("WEFT_REQUIRE_CLIENTS").as_deref() == Ok("1") => {
            panic!("{name}: {why} (WEFT_REQUIRE_CLIENTS=1)")
        }
        Some(why) => {
            println!("skipped: {name}: {why}");
            false
        }
    }
}

/// Runs a scenario script and returns its JSON output.
async fn run(sdk: Sdk, bus: &TestBus, scenario: &str) -> Value {
    let scripts = repo().join("bus/tests/clients");
    let mut cmd = match sdk {
        Sdk::Node => {
            let mut c = tokio::process::Command::new("node");
            c.arg(scripts.join("servicebus.cjs"))
                .env("NODE_PATH", clients_dir().join("node/node_modules"));
            c
        }
        Sdk::Python => {
            let mut c = tokio::process::Command::new("python3");
            c.arg(scripts.join("servicebus.py"))
                .env("PYTHONPATH", clients_dir().join("python"));
            c
        }
    };
    cmd.arg(scenario)
        .env("SB_CONNECTION_STRING", bus.connection_string())
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
        .http
        .delete(format!("{}/orders/messages/head?timeout=0", bus.rest))
        .header("Authorization", bus.rest_token("orders"))
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
        .http
        .post(format!("{}/orders/messages", bus.rest))
        .header("Authorization", bus.rest_token("orders"))
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
        .http
        .delete(format!("{}/orders/messages/head?timeout=5", bus.rest))
        .header("Authorization", bus.rest_token("orders"))
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
    if available("node_service_bus_lifecycle", Sdk::Node) {
        lifecycle(Sdk::Node).await;
    }
}

#[tokio::test]
async fn node_service_bus_rest_interop() {
    if available("node_service_bus_rest_interop", Sdk::Node) {
        rest_interop(Sdk::Node).await;
    }
}

#[tokio::test]
async fn python_service_bus_lifecycle() {
    if available("python_service_bus_lifecycle", Sdk::Python) {
        lifecycle(Sdk::Python).await;
    }
}

#[tokio::test]
async fn python_service_bus_rest_interop() {
    if available("python_service_bus_rest_interop", Sdk::Python) {
        rest_interop(Sdk::Python).await;
    }
}
