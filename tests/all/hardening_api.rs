//! Abuse of the Web API of `weft up` (issue #10), over real HTTP on loopback with a real runtime: one
//! request must never crash, freeze or exhaust the host. Each test is bounded in counts and time and
//! checks the host keeps serving afterwards.

use crate::fixtures;
use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;
use weft_host::api::{self, ApiLimits, ApiServer};
use weft_host::runtime::Runtime;

const TABLES: &str = r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"
  [[table.attribute]]
  logical_name = "description"
  type = "Memo"

[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
"#;

/// The validator on Create of account (stage 20, so its trace is written) and, on Retrieve of contact,
/// the validator again: a Retrieve has no Target entity, so it always fails there.
fn steps() -> String {
    format!(
        "[[plugin]]\nname = \"validator\"\ncomponent = \"{}\"\n\
         [[step]]\nname = \"validate\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"validator\"\n\
         [[step]]\nname = \"fail-read\"\nmessage = \"Retrieve\"\ntable = \"contact\"\nstage = 20\nplugin = \"validator\"\n",
        fixtures::component("validator").display()
    )
}

struct Env {
    _dir: tempfile::TempDir,
    server: Option<ApiServer>,
    addr: SocketAddr,
    base: String,
    client: reqwest::Client,
    key: Option<String>,
}

async fn start(key: Option<&str>, limits: ApiLimits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, format!("{TABLES}\n{}", steps())).unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &data).unwrap())
        .await
        .map(Arc::new)
        .unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, server) = api::serve_with(runtime, bind, key.map(str::to_owned), limits)
        .await
        .unwrap();
    Env {
        _dir: dir,
        server: Some(server),
        addr,
        base: format!("http://{addr}/api/data/v9.2"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        key: key.map(str::to_owned),
    }
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, &self.url(path))
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.request(reqwest::Method::POST, &self.url(path))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn create(&self, name: &str) -> Uuid {
        let r = self
            .post("accounts", json!({ "name": name }).to_string())
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
        id_of(&r)
    }

    /// The host still answers a plain read.
    async fn serves(&self) {
        let r = self.get("accounts?$top=1").await;
        assert_eq!(r.status(), StatusCode::OK, "the host stopped serving");
    }

    async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

fn id_of(r: &reqwest::Response) -> Uuid {
    let url = r.headers()["OData-EntityId"].to_str().unwrap();
    let id = url
        .rsplit_once('(')
        .and_then(|(_, s)| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("OData-EntityId {url}"));
    Uuid::parse_str(id).unwrap()
}

async fn error_of(r: reqwest::Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body: Json = r.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Finding 1: a `$filter` nested 5,000 deep (which overflowed the parser's stack and aborted the whole
/// process) and a flat one of 1,001 `or` terms (a 500 from SQLite's expression depth) both answer 400
/// with Dataverse's error shape naming the limit, and the host keeps serving. JSON bodies nested 5,000
/// deep are refused too (serde_json's recursion limit is in effect).
#[tokio::test(flavor = "multi_thread")]
async fn deep_and_long_filters_and_bodies_answer_400_and_the_host_keeps_serving() {
    let env = start(None, ApiLimits::default()).await;
    env.create("Fourth Coffee").await;
    let deep = format!("{}name eq 'a'{}", "(".repeat(5000), ")".repeat(5000));
    let long = vec!["name eq 'a'"; 1001].join(" or ");
    for (filter, limit) in [
        (deep.as_str(), "nest more than 32 levels deep (the limit)"),
        (long.as_str(), "more than 500 conditions (the limit)"),
    ] {
        let r = env
            .request(reqwest::Method::GET, &env.url("accounts"))
            .query(&[("$filter", filter)])
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
        assert_eq!(code, api::BAD_URL);
        assert!(message.contains(limit), "{message}");
        env.serves().await;
    }
    // At the limits the filter runs (SQLite accepts the expression).
    let at_limit = vec!["name eq 'Fourth Coffee'"; 500].join(" or ");
    let r = env
        .request(reqwest::Method::GET, &env.url("accounts"))
        .query(&[("$filter", at_limit.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 1);

    let nested = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    for path in ["accounts", "serviceendpoints"] {
        let (status, code, message) = error_of(env.post(path, nested.clone()).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {message}");
        assert_eq!(code, api::BAD_PAYLOAD, "{path}");
        assert!(message.contains("recursion limit"), "{path}: {message}");
    }
    env.serves().await;
    env.stop().await;
}

/// Reads every page of `path` with `Prefer: odata.maxpagesize=size`, checking each page's size and
/// `Preference-Applied`; returns the rows' `id_column` in order and the number of pages.
async fn all_pages(env: &Env, path: &str, size: usize, id_column: &str) -> (Vec<String>, usize) {
    let mut url = env.url(path);
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let r = env
            .request(reqwest::Method::GET, &url)
            .header("Prefer", format!("odata.maxpagesize={size}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert_eq!(
            r.headers()["Preference-Applied"],
            format!("odata.maxpagesize={size}").as_str()
        );
        let body: Json = r.json().await.unwrap();
        let rows = body["value"].as_array().unwrap();
        assert!(rows.len() <= size, "{url}: {} rows", rows.len());
        ids.extend(
            rows.iter()
                .map(|r| r[id_column].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert_eq!(rows.len(), size, "a page before the last is full");
                url = next.to_owned();
            }
            None => return (ids, pages),
        }
        assert!(pages < 100, "paging does not end");
    }
}

/// Finding 4 (paging): every collection route pages — tables, plugintracelogs, sdkmessageprocessingsteps,
/// pluginassemblies, asyncoperations, serviceendpoints — with `odata.maxpagesize` honoured and
/// `@odata.nextLink` pages that cover every row once; `$top` ends paging; a skip token that was altered
/// or is replayed on another query is refused with 400.
#[tokio::test(flavor = "multi_thread")]
async fn every_collection_pages_with_tamper_checked_next_links() {
    let env = start(None, ApiLimits::default()).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(env.create(&format!("Account {i}")).await.to_string());
    }
    let (ids, pages) = all_pages(
        &env,
        "accounts?$select=name&$orderby=name desc",
        3,
        "accountid",
    )
    .await;
    assert_eq!(pages, 3);
    let mut expected = created.clone();
    expected.reverse();
    assert_eq!(ids, expected, "descending names, each row once");

    // $top bounds the whole: 5 rows in pages of 3 and 2, no link after.
    let (ids, pages) = all_pages(&env, "accounts?$top=5", 3, "accountid").await;
    assert_eq!((ids.len(), pages), (5, 2));

    // The trace log (one row per create), steps and assemblies page too.
    let (traces, _) = all_pages(&env, "plugintracelogs", 2, "plugintracelogid").await;
    assert_eq!(traces.len(), 7);
    let (steps, pages) = all_pages(
        &env,
        "sdkmessageprocessingsteps",
        1,
        "sdkmessageprocessingstepid",
    )
    .await;
    assert_eq!((steps.len(), pages), (2, 2));
    let (assemblies, _) = all_pages(&env, "pluginassemblies", 1, "pluginassemblyid").await;
    assert_eq!(assemblies.len(), 1);
    let (jobs, _) = all_pages(&env, "asyncoperations", 1, "asyncoperationid").await;
    assert!(jobs.is_empty());
    let (endpoints, _) = all_pages(&env, "serviceendpoints", 1, "serviceendpointid").await;
    assert!(endpoints.is_empty());

    // Without a preference: Dataverse's 5,000, no Preference-Applied, no link for 7 rows.
    let r = env.get("accounts").await;
    assert!(r.headers().get("Preference-Applied").is_none());
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 7);
    assert!(body.get("@odata.nextLink").is_none());

    // The token is checked: altered, or replayed with another filter or on another set, it is refused.
    let r = env
        .request(reqwest::Method::GET, &env.url("accounts?$select=name"))
        .header("Prefer", "odata.maxpagesize=2")
        .send()
        .await
        .unwrap();
    let body: Json = r.json().await.unwrap();
    let next = body["@odata.nextLink"].as_str().unwrap().to_owned();
    let token = next.rsplit_once("$skiptoken=").unwrap().1.to_owned();
    let mut altered = token.clone().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for path in [
        format!("accounts?$select=name&$skiptoken={altered}"),
        format!("accounts?$select=accountid&$skiptoken={token}"),
        format!("contacts?$select=name&$skiptoken={token}"),
        format!("plugintracelogs?$skiptoken={token}"),
        format!("sdkmessageprocessingsteps?$skiptoken={token}"),
        "accounts?$skiptoken=not-a-token".to_owned(),
    ] {
        let (status, code, message) = error_of(env.get(&path).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {message}");
        assert_eq!(code, api::BAD_URL, "{path}");
        assert!(
            message.contains("$skiptoken is not valid") || message.contains("property named"),
            "{path}: {message}"
        );
    }
    let r = env
        .request(reqwest::Method::GET, &next)
        .header("Prefer", "odata.maxpagesize=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the untouched link still works");
    let (status, _, message) = error_of(
        env.request(reqwest::Method::GET, &env.url("accounts"))
            .header("Prefer", "odata.maxpagesize=zero")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    env.stop().await;
}

/// Finding 8: connections trickling their headers are closed after the header read timeout, and with
/// the connection cap full of them an authenticated caller is still answered (once the timeout frees a
/// slot) rather than starved. Counts and times are small and bounded.
#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connections_are_closed_and_do_not_starve_callers() {
    let limits = ApiLimits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(1),
        ..ApiLimits::default()
    };
    let env = start(Some("k3y"), limits).await;
    let mut trickling = Vec::new();
    for _ in 0..24 {
        let addr = env.addr;
        trickling.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = s
                .write_all(b"GET /api/data/v9.2/accounts HTTP/1.1\r\nHost: x\r\n")
                .await;
            // One header line every 200 ms, never the blank line that ends the head; stop when the
            // server closes the connection (a write or read fails or reads the end).
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return true;
                }
                let mut buf = [0u8; 512];
                if let Ok(read) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
                {
                    // The end, or the server's 408 before it.
                    if read.map_or(true, |n| n == 0 || buf[..n].starts_with(b"HTTP/1.1 408")) {
                        return true;
                    }
                }
            }
            false
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An authenticated caller, while the cap is full of trickling connections.
    env.serves().await;
    for t in trickling {
        assert!(
            t.await.unwrap(),
            "a connection trickling its headers for 20 s was never closed"
        );
    }
    env.serves().await;
    env.stop().await;
}

/// Finding 8 (bodies): entity routes take at most the small body limit (413 with Dataverse's error
/// shape, before the body is read), a component upload the large one; both are configurable.
#[tokio::test(flavor = "multi_thread")]
async fn body_limits_are_small_on_entity_routes_and_large_for_uploads() {
    let limits = ApiLimits {
        body_bytes: 64 << 10,
        upload_bytes: 1 << 20,
        ..ApiLimits::default()
    };
    let env = start(None, limits).await;
    let big = json!({ "name": "x".repeat(100 << 10) }).to_string();
    for path in ["accounts", "serviceendpoints", "sdkmessageprocessingsteps"] {
        let r = env.post(path, big.clone()).await;
        // The body was not read to its end: the connection is closed, and the answer says so, so a pooling
        // client does not send its next request on it (this test's own next request once failed that way).
        assert_eq!(
            r.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "{path}"
        );
        let (status, code, message) = error_of(r).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {message}");
        assert_eq!(code, api::BAD_PAYLOAD);
        assert!(message.contains("larger than 65536 bytes"), "{message}");
    }
    // The same size is allowed as a component upload (refused for what it is, not for its size) …
    let assembly = env
        .get("pluginassemblies")
        .await
        .json::<Json>()
        .await
        .unwrap()["value"][0]["pluginassemblyid"]
        .as_str()
        .unwrap()
        .to_owned();
    let upload = |body: Vec<u8>| {
        env.request(
            reqwest::Method::PUT,
            &env.url(&format!("pluginassemblies({assembly})/content")),
        )
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
    };
    let r = upload(vec![b'A'; 100 << 10]).await.unwrap();
    assert_ne!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // … up to its own limit.
    let r = upload(vec![b'A'; 2 << 20]).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    env.serves().await;
    env.stop().await;
}

/// Finding 10: a Create whose read-back fails (a failing Retrieve step, `return=representation`) is
/// committed: it answers 204 with `OData-EntityId` (no `Preference-Applied`), so a client does not
/// create it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_committed_create_whose_read_back_fails_answers_its_id() {
    let env = start(None, ApiLimits::default()).await;
    let r = env
        .request(reqwest::Method::POST, &env.url("contacts"))
        .header("Content-Type", "application/json")
        .header("Prefer", "return=representation")
        .body(json!({"lastname": "Adams"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().get("Preference-Applied").is_none());
    let id = id_of(&r);
    // The row exists (the failing Retrieve step fails a GET of it, but not the collection).
    let body: Json = env.get("contacts").await.json().await.unwrap();
    let rows = body["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["contactid"], id.to_string());
    env.stop().await;
}

/// Finding 15: a string attribute holding a C0 control character (which XML 1.0 cannot carry) is
/// refused with 400 naming the attribute and writes nothing; TAB, LF and CR stay accepted.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_are_refused_naming_the_attribute() {
    let env = start(None, ApiLimits::default()).await;
    for (body, attribute) in [
        (json!({"name": "a\u{1}b"}), "name"),
        (
            json!({"name": "ok", "description": "nul\u{0}"}),
            "description",
        ),
        (
            json!({"name": "ok", "description": "\u{ffff}"}),
            "description",
        ),
    ] {
        let (status, code, message) = error_of(env.post("accounts", body.to_string()).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
        assert_eq!(code, api::BAD_PAYLOAD);
        assert!(message.contains(&format!("'{attribute}'")), "{message}");
    }
    let body: Json = env.get("accounts").await.json().await.unwrap();
    assert!(
        body["value"].as_array().unwrap().is_empty(),
        "nothing was written"
    );
    env.create("tab\there\nnew line\r\n").await;
    env.stop().await;
}

/// Finding 17: the bearer scheme is case-insensitive; a Host header that is not a plain host[:port] is
/// refused, and a valid one is what the answers' URLs carry.
#[tokio::test(flavor = "multi_thread")]
async fn bearer_scheme_is_case_insensitive_and_host_is_validated() {
    let env = start(Some("s3cret"), ApiLimits::default()).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = env
            .client
            .get(env.url("accounts"))
            .header("Authorization", format!("{scheme} s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    for wrong in ["bearer s3cre", "Basic s3cret", "bearers3cret", "s3cret"] {
        let r = env
            .client
            .get(env.url("accounts"))
            .header("Authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    for host in [
        "evil.example/x#",
        "user@evil.example",
        "evil.example:99999",
        "\"q\"",
        "a b",
        "[::1",
    ] {
        let r = env.get_with_host("accounts", host).await;
        let (status, code, message) = error_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {message}");
        assert_eq!(code, api::BAD_URL);
    }
    for host in ["example.com:8080", "[::1]:5380", "localhost"] {
        let r = env.get_with_host("accounts", host).await;
        assert_eq!(r.status(), StatusCode::OK, "{host}");
        let body: Json = r.json().await.unwrap();
        let context = body["@odata.context"].as_str().unwrap();
        assert!(
            context.starts_with(&format!("http://{host}/api/data/v9.2/$metadata")),
            "{context}"
        );
    }
    env.stop().await;
}

impl Env {
    async fn get_with_host(&self, path: &str, host: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, &self.url(path))
            .header("Host", host)
            .send()
            .await
            .unwrap()
    }
}
