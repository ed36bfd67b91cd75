//! Microsoft's REST-era Service Bus libraries against a real bus over HTTP: npm `azure-sb` 0.11.2 and PyPI
//! `azure-servicebus` 0.21.1, installed by `bus/tests/clients/install.sh` into `target/bus-clients/legacy/`
//! (the 0.21 Python package has the same name as the 7.x SDK, so it lives apart). The scripts
//! (`bus/tests/clients/legacy_sb.*`) send and receive as their users would and print what the library
//! reports; these tests check issue #14 §4: no bogus `userproperties` custom property, a custom property
//! sent as a header meets a correlation filter in its own case, and `"TimeToLive":"120"` is accepted.
//! Without node/python3 or the libraries a test prints `skipped: NAME: …` and returns, unless
//! `WEFT_REQUIRE_CLIENTS=1`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use serde_json::Value;
use weft_bus::{BusConfig, QueueConfig, SubscriptionConfig, TopicConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn legacy_dir() -> PathBuf {
    std::env::var_os("WEFT_BUS_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/bus-clients"))
        .join("legacy")
}

/// True when `bin` and the library (`marker` under the legacy directory) are there; prints the skip line
/// otherwise, or fails when clients are required.
fn available(name: &str, bin: &str, marker: &str) -> bool {
    let why = if std::process::Command::new(bin)
        .arg("--version")
        .output()
        .is_err()
    {
        Some(format!("{bin} is not installed"))
    } else if !legacy_dir().join(marker).exists() {
        Some(format!(
            "{} is missing: run bus/tests/clients/install.sh",
            legacy_dir().join(marker).display()
        ))
    } else {
        None
    };
    match why {
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

/// A queue `legacy` and a topic `events` whose subscription `accounts` filters on `EntityLogicalName`.
async fn bus() -> TestBus {
    let filter: BTreeMap<String, String> =
        [("EntityLogicalName".to_owned(), "account".to_owned())].into();
    TestBus::start(BusConfig {
        queues: vec![QueueConfig::new("legacy")],
        topics: vec![TopicConfig::new(
            "events",
            vec![SubscriptionConfig::new("accounts", filter)],
        )],
        ..BusConfig::default()
    })
    .await
}

/// Runs `program script` with `env`; the JSON of its last stdout line.
async fn run(program: &str, script: &str, env: &[(&str, String)]) -> Value {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(program)
            .arg(repo().join("bus/tests/clients").join(script))
            .envs(env.iter().cloned())
            .kill_on_drop(true)
            .output(),
    )
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

/// What both libraries must report.
fn check(seen: &Value) {
    let q = &seen["queue"];
    assert_eq!(q["body"], "hello", "{seen}");
    assert_eq!(q["label"], "L1", "{seen}");
    assert_eq!(q["timeToLive"].as_f64(), Some(120.0), "{seen}");
    assert_eq!(q["customProperties"]["priority"], "High", "{seen}");
    assert_eq!(q["customProperties"]["attempt"], 3, "{seen}");
    for m in [&seen["queue"], &seen["subscription"]] {
        let names = m["customPropertyNames"].as_array().unwrap();
        assert!(
            !names
                .iter()
                .any(|n| n.as_str().unwrap().eq_ignore_ascii_case("userproperties")),
            "no bogus userproperties custom property: {seen}"
        );
    }
    let s = &seen["subscription"];
    assert_eq!(s["body"], "for accounts", "{seen}");
    assert_eq!(
        s["customProperties"]["entitylogicalname"], "account",
        "{seen}"
    );
}

#[tokio::test]
async fn azure_sb_node() {
    if !available(
        "azure_sb_node",
        "node",
        "node/node_modules/azure-sb/package.json",
    ) {
        return;
    }
    let bus = bus().await;
    let connection = format!(
        "Endpoint={}/;SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY}",
        bus.base
    );
    let node_path = legacy_dir().join("node/node_modules");
    let seen = run(
        "node",
        "legacy_sb.cjs",
        &[
            ("SB_CONNECTION_STRING", connection),
            ("NODE_PATH", node_path.display().to_string()),
        ],
    )
    .await;
    check(&seen);
}

#[tokio::test]
async fn azure_servicebus_0_21_python() {
    if !available(
        "azure_servicebus_0_21_python",
        "python3",
        "python/azure/servicebus/servicebusservice.py",
    ) {
        return;
    }
    let bus = bus().await;
    let host = bus.base.trim_start_matches("http://").to_owned();
    let seen = run(
        "python3",
        "legacy_sb.py",
        &[
            ("BUS_HOST", host),
            ("SB_KEY_NAME", KEY_NAME.to_owned()),
            ("SB_KEY", KEY.to_owned()),
            (
                "PYTHONPATH",
                legacy_dir().join("python").display().to_string(),
            ),
        ],
    )
    .await;
    check(&seen);
}
