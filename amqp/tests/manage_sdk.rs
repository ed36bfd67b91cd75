//! The Service Bus management API as Microsoft's clients use it, unmodified, against a real bus serving
//! HTTPS with its development certificate (trusted through `NODE_EXTRA_CA_CERTS`, a public Node option):
//! npm `azure-sb` 0.11.2 (REST-era: `sb://` becomes `https://`) and `@azure/service-bus` 7.9.5's
//! `ServiceBusAdministrationClient`, then messages on the entities they created — over REST with azure-sb,
//! over AMQP with `ServiceBusClient` — and PyPI azure-servicebus 7.15.0's administration client the same way
//! (`REQUESTS_CA_BUNDLE`). Scripts in `bus/tests/clients/manage-*.cjs` and `manage_admin.py`; the SDKs are installed by
//! `bus/tests/clients/install.sh`. Without node or the packages a test prints `skipped: NAME: …` and
//! returns, unless `WEFT_REQUIRE_CLIENTS=1`.

mod common;

use common::{clients_dir, repo};
use serde_json::{Value, json};
use weft_bus::BusConfig;
use weft_bus::sas::SasPolicy;

const KEY_NAME: &str = "RootManageSharedAccessKey";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

/// True when node and npm `package` are there; prints the skip line otherwise (or fails when required).
fn available(name: &str, package: &str) -> bool {
    common::client_available(
        name,
        "node",
        &format!("node/node_modules/{package}/package.json"),
    )
}

struct Bus {
    bus: weft_bus::BusHandle,
    amqp: weft_amqp::AmqpHandle,
    dir: tempfile::TempDir,
}

/// A bus with no entities, HTTPS with the development certificate, AMQP next to it.
async fn start() -> Bus {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BusConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data: dir.path().to_path_buf(),
        tls: true,
        sas_policies: vec![SasPolicy::full(KEY_NAME, KEY)],
        ..BusConfig::default()
    };
    let bus = weft_bus::start(cfg).await.unwrap();
    let amqp = weft_amqp::start(bus.bus(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Bus { bus, amqp, dir }
}

async fn run(bus: &Bus, script: &str, env: &[(&str, String)]) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(repo().join(format!("bus/tests/clients/{script}.cjs")))
        .env("NODE_PATH", clients_dir().join("node/node_modules"))
        .env("NODE_EXTRA_CA_CERTS", bus.dir.path().join("tls/ca.pem"))
        .envs(env.iter().cloned())
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("the client script did not finish within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script}: bad JSON {e}: {stdout}\n{stderr}"))
}

/// `Endpoint=sb://HOST:PORT/` for the HTTPS port. azure-sb's URI check wants a dotted host (it refuses
/// `localhost`), the administration client takes either; the development certificate names both.
fn https_cs(bus: &Bus, host: &str) -> String {
    format!(
        "Endpoint=sb://{host}:{}/;SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY}",
        bus.bus.local_addr().port()
    )
}

/// azure-sb: createQueueIfNotExists (created, then not), getQueue, listQueues, topics, subscriptions,
/// rules (delete $Default, create a SQL rule, list), REST send/receive/complete on the runtime queue and
/// a filtered subscription, deleteQueue then getQueue fails.
#[tokio::test]
async fn azure_sb_manages_entities_over_https() {
    if !available("azure_sb_manages_entities_over_https", "azure-sb") {
        return;
    }
    let bus = start().await;
    let out = run(
        &bus,
        "manage-azure-sb",
        &[("SB_CONNECTION_STRING", https_cs(&bus, "127.0.0.1"))],
    )
    .await;
    assert_eq!(out["created"], true, "{out}");
    assert_eq!(out["createdAgain"], false, "{out}");
    assert_eq!(
        out["queue"],
        json!({"name": "sb-jobs", "lockDuration": "PT45S", "maxDeliveryCount": "4"}),
        "{out}"
    );
    assert_eq!(out["queues"], json!(["sb-jobs"]));
    assert_eq!(out["topicCreated"], true);
    assert_eq!(
        out["rules"],
        json!([{"name": "only-accounts", "sql": "sys.Label = 'account'"}]),
        "{out}"
    );
    assert_eq!(out["subscriptions"], json!(["accounts", "all"]));
    assert_eq!(out["topic"], "sb-events");
    assert_eq!(out["topics"], json!(["sb-events"]));
    assert_eq!(
        out["subscription"],
        json!({"topic": "sb-events", "name": "accounts", "lockDuration": "PT1M"}),
        "{out}"
    );
    assert_eq!(
        out["rule"],
        json!({"name": "only-accounts", "sql": "sys.Label = 'account'"}),
        "{out}"
    );
    assert_eq!(out["received"]["body"], "hello over https");
    assert_eq!(out["received"]["n"], 7);
    assert!(
        out["received"]["location"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1"),
        "{out}"
    );
    assert_eq!(out["accountsGot"], "account", "{out}");
    assert_ne!(out["afterDelete"], "still there", "{out}");
    bus.amqp.shutdown().await;
    bus.bus.shutdown().await.unwrap();
}

/// ServiceBusAdministrationClient: namespace, create/get/exists/update/list queues, duplicate → 409's
/// error code, sessions refused, topic + subscription with a correlation default rule + SQL and property
/// rules, runtime counts; ServiceBusClient sends and receives over AMQP on what it created.
#[tokio::test]
async fn administration_client_manages_entities_over_https() {
    if !available(
        "administration_client_manages_entities_over_https",
        "@azure/service-bus",
    ) {
        return;
    }
    let bus = start().await;
    let amqp_cs = format!(
        "Endpoint=sb://127.0.0.1:{};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};UseDevelopmentEmulator=true",
        bus.amqp.local_addr().port()
    );
    let out = run(
        &bus,
        "manage-admin",
        &[
            ("SB_ADMIN_CONNECTION_STRING", https_cs(&bus, "localhost")),
            ("SB_CONNECTION_STRING", amqp_cs),
        ],
    )
    .await;
    assert_eq!(out["namespace"], "Standard", "{out}");
    assert_eq!(
        out["queue"],
        json!({"name": "sdk-orders", "lockDuration": "PT20S", "maxDeliveryCount": 5, "ttl": "P1D"}),
        "{out}"
    );
    assert_eq!(out["duplicate"], "MessageEntityAlreadyExistsError", "{out}");
    assert_eq!(out["exists"], true);
    assert_eq!(out["missing"], false);
    assert_eq!(out["updated"], 9);
    assert_eq!(out["queues"], json!(["sdk-orders"]));
    assert!(
        out["sessions"].as_str().unwrap().starts_with("400")
            && out["sessions"]
                .as_str()
                .unwrap()
                .contains("sessions are not supported"),
        "{out}"
    );
    let rules = out["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 3, "{out}");
    assert_eq!(rules[0]["name"], "$Default");
    assert_eq!(rules[0]["filter"]["correlationId"], "c-1", "{out}");
    assert_eq!(
        out["rule"]["sqlExpression"], "sys.Label = 'invoice'",
        "{out}"
    );
    assert_eq!(
        out["rulesAfterDelete"],
        json!(["$Default", "by-subject"]),
        "{out}"
    );
    assert_eq!(out["subscriptions"], json!(["filtered"]));
    assert_eq!(out["topicUpdated"], 2048, "{out}");
    assert_eq!(out["topics"], json!(["sdk-events"]));
    assert_eq!(out["topicExists"], true);
    assert_eq!(
        out["subscriptionUpdated"],
        json!({"maxDeliveryCount": 3, "lockDuration": "PT50S"}),
        "{out}"
    );
    assert_eq!(out["subscriptionExists"], true);
    assert_eq!(
        out["ruleUpdated"], "sys.Label = 'invoice' AND region = 'eu'",
        "{out}"
    );
    assert_eq!(out["ruleExists"], true);
    assert_eq!(out["subscriptionActive"], 2, "{out}");
    assert_eq!(out["activeCount"], 2, "{out}");
    assert_eq!(out["received"], json!(["a1", "a2"]), "{out}");
    assert_eq!(out["filtered"], json!(["yes-corr", "yes-sql"]), "{out}");
    assert_eq!(out["afterDelete"], "MessageEntityNotFoundError", "{out}");
    bus.amqp.shutdown().await;
    bus.bus.shutdown().await.unwrap();
}

/// PyPI azure-servicebus 7.15.0's ServiceBusAdministrationClient over HTTPS (CA through `REQUESTS_CA_BUNDLE`):
/// create (and a duplicate refused), update, list queues; a topic, subscription and SQL rule; then
/// ServiceBusClient sends and receives over AMQP on the runtime queue, and a deleted queue is not found.
#[tokio::test]
async fn python_administration_client_manages_entities_over_https() {
    if !common::client_available(
        "python_administration_client_manages_entities_over_https",
        "python3",
        "python/azure/servicebus/management/__init__.py",
    ) {
        return;
    }
    let bus = start().await;
    let amqp_cs = format!(
        "Endpoint=sb://127.0.0.1:{};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};UseDevelopmentEmulator=true",
        bus.amqp.local_addr().port()
    );
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(repo().join("bus/tests/clients/manage_admin.py"))
        .env("PYTHONPATH", clients_dir().join("python"))
        .env("REQUESTS_CA_BUNDLE", bus.dir.path().join("tls/ca.pem"))
        .env("SB_ADMIN_CONNECTION_STRING", https_cs(&bus, "localhost"))
        .env("SB_CONNECTION_STRING", amqp_cs)
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("manage_admin.py did not finish within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "manage_admin.py failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad JSON {e}: {stdout}\n{stderr}"));
    assert_eq!(
        out["queue"],
        json!({"name": "py-orders", "lock_s": 20.0, "max_delivery_count": 5}),
        "{out}"
    );
    assert_eq!(out["duplicate"], "ResourceExistsError", "{out}");
    assert_eq!(out["updated"], 9, "{out}");
    assert_eq!(out["queues"], json!(["py-orders"]), "{out}");
    assert_eq!(out["rules"], json!(["$Default", "by-label"]), "{out}");
    assert_eq!(out["subscriptions"], json!(["all"]), "{out}");
    assert_eq!(out["active"], 2, "{out}");
    assert_eq!(out["received"], json!(["p1", "p2"]), "{out}");
    assert_eq!(out["after_delete"], "ResourceNotFoundError", "{out}");
    bus.amqp.shutdown().await;
    bus.bus.shutdown().await.unwrap();
}
