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
