//! Third-party Dataverse clients against a real `weft up --tls`, unmodified and through their public APIs:
//! Microsoft's Python SDK (PyPI powerplatform-dataverse-client 1.1.0), PyPI dataverse-api 1.4.3 and npm
//! dynamics-web-api 2.5.0. The scripts are tests/clients/*.py and *.mjs; the clients are installed into target/clients/ by
//! tests/clients/install.sh (which .ci/run calls). Without them each test prints `skipped: NAME: why`,
//! unless WEFT_REQUIRE_CLIENTS=1 (then it fails).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn clients_dir() -> PathBuf {
    repo().join("target/clients")
}

/// Whether `program` exists; otherwise says the test is skipped (or fails under WEFT_REQUIRE_CLIENTS=1).
fn present(test: &str, program: &Path) -> bool {
    if program.exists() {
        return true;
    }
    let why = format!(
        "{} is missing (run tests/clients/install.sh)",
        program.display()
    );
    assert!(
        std::env::var("WEFT_REQUIRE_CLIENTS").as_deref() != Ok("1"),
        "{test}: {why}"
    );
    println!("skipped: {test}: {why}");
    false
}

/// `weft up --tls` on a free loopback port with tests/clients/weft.toml: the child (killed on drop), its
/// https base URL and the development CA to trust.
struct Up {
    child: Child,
    base: String,
    ca: PathBuf,
    _data: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn up() -> Up {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["up", "--tls", "--bind", "127.0.0.1:0", "--config"])
        .arg(repo().join("tests/clients/weft.toml"))
        .arg("--data")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_owned();
    assert!(base.starts_with("https://"), "{base}");
    Up {
        child,
        base,
        ca: data.path().join("tls/ca.pem"),
        _data: data,
    }
}

fn run(mut command: Command) -> String {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn microsofts_python_sdk_reads_metadata_and_runs_crud_and_paged_queries() {
    let python = clients_dir().join("venv/bin/python");
    if !present("python sdk", &python) {
        return;
    }
    let weft = up();
    let mut c = Command::new(python);
    c.arg(repo().join("tests/clients/python_sdk.py"))
        .arg(&weft.base)
        .env("REQUESTS_CA_BUNDLE", &weft.ca);
    assert!(run(c).contains("python sdk: ok"));
}

#[test]
fn dynamics_web_api_runs_whoami_metadata_crud_paging_count_upsert_and_batch() {
    let modules = clients_dir().join("node/node_modules");
    if !present("dynamics-web-api", &modules.join("dynamics-web-api")) {
        return;
    }
    let weft = up();
    let mut c = Command::new("node");
    c.arg(repo().join("tests/clients/dynamics_web_api.mjs"))
        .arg(&weft.base)
        .arg(&modules)
        .env("NODE_EXTRA_CA_CERTS", &weft.ca);
    assert!(run(c).contains("dynamics-web-api: ok"));
}

#[test]
fn dataverse_api_reads_the_table_schema_and_runs_crud_and_paged_reads() {
    let python = clients_dir().join("venv/bin/python");
    if !present("dataverse-api", &python) {
        return;
    }
    let weft = up();
    let mut c = Command::new(python);
    c.arg(repo().join("tests/clients/dataverse_api_client.py"))
        .arg(&weft.base)
        .env("REQUESTS_CA_BUNDLE", &weft.ca);
    assert!(run(c).contains("dataverse-api: ok"));
}
