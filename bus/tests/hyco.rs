//! npm `hyco-https` 1.4.5 (Microsoft's Relay Hybrid Connections listener for Node), installed by
//! `bus/tests/clients/install.sh`, against a real bus: `bus/tests/clients/relay.cjs` runs a listener and
//! sends through plain HTTP with SAS, printing what the senders saw. Rendezvous both ways (a 1 MB answer, a
//! 1 MB request), a small request on the control channel, a listener's own status and header. Without node
//! or the package the test prints `skipped: …` and passes, unless `WEFT_REQUIRE_CLIENTS=1`.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;
use weft_bus::{BusConfig, RelayConfig};

fn clients_dir() -> PathBuf {
    std::env::var_os("WEFT_BUS_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bus-clients"))
}

#[tokio::test]
async fn hyco_https_listener_rendezvous_both_ways() {
    let name = "hyco_https_listener_rendezvous_both_ways";
    let marker = clients_dir().join("node/node_modules/hyco-https/package.json");
    let why = if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        Some("node is not installed".to_string())
    } else if !marker.exists() {
        Some(format!(
            "{} is missing: run bus/tests/clients/install.sh",
            marker.display()
        ))
    } else {
        None
    };
    if let Some(why) = why {
        assert!(
            std::env::var("WEFT_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "{name}: {why} (WEFT_REQUIRE_CLIENTS=1)"
        );
        println!("skipped: {name}: {why}");
        return;
    }
    let bus = TestBus::start(BusConfig {
        relays: vec![RelayConfig { name: "hc".into() }],
        ..BusConfig::default()
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/relay.cjs");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(script)
            .env("NODE_PATH", clients_dir().join("node/node_modules"))
            .env("RELAY_BASE", &bus.base)
            .env("RELAY_PATH", "hc")
            .env("KEY_NAME", KEY_NAME)
            .env("KEY", KEY)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("relay.cjs did not finish within 90 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "relay.cjs failed: {stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("bad JSON {e}: {stdout}\n{stderr}"));
    assert_eq!(v["big_answer"]["status"], 200, "{v}");
    assert_eq!(v["big_answer"]["len"], 1 << 20, "{v}");
    assert_eq!(v["big_answer"]["sha_ok"], true, "{v}");
    assert!(v["big_answer"]["via"].is_string(), "{v}");
    assert_eq!(v["big_request"]["status"], 200, "{v}");
    assert_eq!(v["big_request"]["len"], 1 << 20, "{v}");
    assert_eq!(v["big_request"]["sha_ok"], true, "{v}");
    assert_eq!(v["big_request"]["url"], "/hc/echo?x=1", "{v}");
    assert_eq!(v["big_request"]["custom"], "v1", "{v}");
    assert_eq!(v["small"]["status"], 200, "{v}");
    assert_eq!(v["small"]["len"], 5, "{v}");
    assert_eq!(v["small"]["method"], "POST", "{v}");
    assert_eq!(v["teapot"]["status"], 418, "{v}");
    assert_eq!(v["teapot"]["header"], "short and stout", "{v}");
    assert_eq!(v["teapot"]["body"], "teapot", "{v}");
}
