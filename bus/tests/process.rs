//! `weft bus` as a real process (the crate's example driver, built by `cargo test`): the first stdout line,
//! flags, and durability across a SIGKILL.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

fn driver() -> std::path::PathBuf {
    // target/debug/deps/process-… → target/debug/examples/weft-bus
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("weft-bus")
}

/// Starts `weft-bus bus …` and returns it with the address from its first stdout line.
fn spawn(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(driver())
        .args([
            "bus",
            "--bind",
            "127.0.0.1:0",
            "--queue",
            "orders",
            "--topic",
            "events:accounts=EntityLogicalName=account,all",
        ])
        .args(["--sas-key-name", KEY_NAME, "--sas-key", KEY, "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example driver is built by cargo test");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line was {line:?}"))
        .trim_end()
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:") && addr.len() > "127.0.0.1:".len(),
        "{line:?}"
    );
    (child, addr)
}

/// The first stdout line is exactly `listening on http://HOST:PORT`; a message acknowledged with 201 survives
/// SIGKILL of the process.
#[tokio::test]
async fn first_line_and_crash_durability() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn(dir.path());
    let http = reqwest::Client::new();
    let uri = format!("http://{addr}/orders");
    let r = http
        .post(format!("{uri}/messages"))
        .header("Authorization", token(&uri))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    child.kill().unwrap(); // SIGKILL: no graceful shutdown
    child.wait().unwrap();
    let (mut child, addr) = spawn(dir.path());
    let uri = format!("http://{addr}/orders");
    let r = http
        .delete(format!("{uri}/messages/head?timeout=5"))
        .header("Authorization", token(&uri))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "kept");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Resident memory of a process, from /proc (Linux).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A backlog does not live in memory (issue #10, finding 9): 100 MB of queued messages (500 × 200 KB) grow
/// the bus's resident memory by far less than their size, and they are still delivered intact.
#[tokio::test]
async fn backlog_stays_on_disk() {
    const MESSAGES: usize = 500;
    const BODY: usize = 200 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn(dir.path());
    let http = reqwest::Client::new();
    let uri = format!("http://{addr}/orders");
    let auth = token(&uri);
    let send = |i: usize| {
        let (http, uri, auth) = (http.clone(), uri.clone(), auth.clone());
        async move {
            let body = vec![b'a' + (i % 26) as u8; BODY];
            let r = http
                .post(format!("{uri}/messages"))
                .header("Authorization", auth)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    };
    // Warm-up: the first sends allocate the server's buffers and SQLite's page cache.
    for i in 0..8 {
        send(i).await;
    }
    let before = rss_bytes(child.id());
    for batch in (8..MESSAGES).collect::<Vec<_>>().chunks(8) {
        futures_util::future::join_all(batch.iter().map(|&i| send(i))).await;
    }
    let grown = rss_bytes(child.id()).saturating_sub(before);
    let backlog = (MESSAGES * BODY) as u64;
    assert!(
        grown < backlog / 3,
        "resident memory grew by {grown} bytes for a backlog of {backlog} bytes"
    );
    for i in 0..3 {
        let r = http
            .delete(format!("{uri}/messages/head?timeout=5"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), BODY);
        assert!(
            body.iter().all(|&b| b == b'a' + (i % 26) as u8),
            "message {i} intact"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `weft bus --tls --emulator-config FILE`: the first line names `https://`, the development CA is in
/// `<data>/tls/ca.pem`, the emulator file's queue is served, and a queue created through the management API
/// over HTTPS survives a SIGKILL and restart of the process.
#[tokio::test]
async fn tls_emulator_config_and_runtime_entities_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/emulator-config.json"
    );
    let start = || {
        let mut child = Command::new(driver())
            .args([
                "bus",
                "--bind",
                "127.0.0.1:0",
                "--tls",
                "--emulator-config",
                sample,
            ])
            .args(["--sas-key-name", KEY_NAME, "--sas-key", KEY, "--data"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example driver is built by cargo test");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim_end()
            .strip_prefix("listening on https://127.0.0.1:")
            .unwrap_or_else(|| panic!("first line was {line:?}"))
            .to_string();
        (child, port)
    };
    let (mut child, port) = start();
    let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let put = |port: &str, path: &str| {
        let uri = format!("https://localhost:{port}/{path}");
        http.put(format!("{uri}?api-version=2021-05"))
            .header("Authorization", token(&uri))
            .body(r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><MaxDeliveryCount>6</MaxDeliveryCount></QueueDescription></content></entry>"#)
            .send()
    };
    assert_eq!(put(&port, "made-at-runtime").await.unwrap().status(), 201);
    assert_eq!(
        put(&port, "queue.1").await.unwrap().status(),
        409,
        "from the emulator file"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, port) = start();
    let uri = format!("https://localhost:{port}/made-at-runtime");
    let r = http
        .get(format!("{uri}?api-version=2021-05"))
        .header("Authorization", token(&uri))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<MaxDeliveryCount>6</MaxDeliveryCount>"),
        "{body}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
