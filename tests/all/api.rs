//! The Web-API-shaped HTTP API over real HTTP on loopback, with a real runtime (SQLite store, sandbox,
//! plug-ins built from source): status codes and headers as Dataverse sends them, typed JSON, query options,
//! bypass headers, `tag`, precise 400s that write nothing, and bearer authentication.

use crate::fixtures;
use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use std::net::SocketAddr;
use std::sync::Arc;
use uuid::Uuid;
use weft_host::api::{self, ApiAuth, ApiServer};
use weft_host::registration::derived_id;
use weft_host::runtime::Runtime;
use weft_store::system::TraceFilter;
use weft_store::{Read, StoreExt};

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
  logical_name = "accountnumber"
  type = "String"
  [[table.attribute]]
  logical_name = "emailaddress1"
  type = "String"
  [[table.attribute]]
  logical_name = "numberofemployees"
  type = "Integer"
  [[table.attribute]]
  logical_name = "revenue"
  type = "Money"
  [[table.attribute]]
  logical_name = "industrycode"
  type = "Picklist"
  options = [{ value = 1, label = "Accounting" }, { value = 2, label = "Agriculture" }]
  [[table.attribute]]
  logical_name = "categories"
  type = "MultiSelectPicklist"
  options = [{ value = 1, label = "A" }, { value = 2, label = "B" }, { value = 3, label = "C" }]
  [[table.attribute]]
  logical_name = "donotphone"
  type = "Boolean"
  [[table.attribute]]
  logical_name = "lastonholdtime"
  type = "DateTime"
  [[table.attribute]]
  logical_name = "primarycontactid"
  type = "Lookup"
  targets = ["contact"]

[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"
"#;

/// Validator (10) and enricher (20) on Create of account, a probe (40) that traces shared variables, and a
/// plug-in that panics on Update of contact.
fn steps() -> String {
    let mut s = String::new();
    for p in ["validator", "enricher", "probe", "panic"] {
        s += &format!(
            "[[plugin]]\nname = \"{p}\"\ncomponent = \"{}\"\n",
            fixtures::component(p).display()
        );
    }
    s + "[[step]]\nname = \"validate\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 10\nplugin = \"validator\"\n\
         [[step]]\nname = \"enrich\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"enricher\"\n\
         [[step]]\nname = \"post\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\nplugin = \"probe\"\n\
         configuration = \"label=post\"\nsecure_configuration = \"top-s3cret-value\"\n\
         [[step]]\nname = \"boom\"\nmessage = \"Update\"\ntable = \"contact\"\nstage = 20\nplugin = \"panic\"\n"
}

struct Env {
    _dir: tempfile::TempDir,
    runtime: Arc<Runtime>,
    server: Option<ApiServer>,
    base: String,
    client: reqwest::Client,
}

async fn start(key: Option<&str>) -> Env {
    start_with(key, "").await
}

/// [`start`] with `extra` appended to the configuration.
async fn start_with(key: Option<&str>, extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, format!("{TABLES}\n{}\n{extra}", steps())).unwrap();
    let data = dir.path().join("data");
    // Opening persists the registration through the store's blocking writer.
    let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &data).unwrap())
        .await
        .map(Arc::new)
        .unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, server) = api::serve(Arc::clone(&runtime), bind, key.map(str::to_owned))
        .await
        .unwrap();
    Env {
        _dir: dir,
        runtime,
        server: Some(server),
        base: format!("http://{addr}/api/data/v9.2"),
        client: reqwest::Client::new(),
    }
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Creates an account and returns its id (from OData-EntityId).
    async fn create(&self, body: Json) -> Uuid {
        let r = self.post("accounts", &body.to_string()).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
        entity_id(&r)
    }

    async fn get(&self, path: &str) -> (StatusCode, Json) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn rows(&self) -> Vec<Json> {
        let (status, body) = self.get("accounts").await;
        assert_eq!(status, StatusCode::OK);
        body["value"].as_array().unwrap().clone()
    }

    fn traces(&self, label: &str) -> Vec<String> {
        let logs = tokio::task::block_in_place(|| {
            self.runtime
                .store
                .read(|r: &dyn Read| r.trace_logs(&TraceFilter::default()))
        });
        logs.unwrap()
            .into_iter()
            .map(|t| t.entry.trace)
            .filter(|t| t.starts_with(&format!("label={label}\n")))
            .collect()
    }

    async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

fn entity_id(r: &reqwest::Response) -> Uuid {
    let url = r.headers()["OData-EntityId"].to_str().unwrap();
    let id = url
        .strip_prefix(&format!(
            "{}/api/data/v9.2/accounts(",
            r.url().origin().ascii_serialization()
        ))
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("OData-EntityId {url}"));
    Uuid::parse_str(id).unwrap()
}

async fn error_of(r: reqwest::Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body: Json = r.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap().to_owned(),
        body["error"]["message"].as_str().unwrap().to_owned(),
    )
}

/// POST creates through the pipeline: 204 + OData-EntityId (Dataverse's answer), the enricher's account
/// number is stored, and `Prefer: return=representation` answers 201 with the row.
#[tokio::test(flavor = "multi_thread")]
async fn create_answers_entity_id_and_runs_plugins() {
    let env = start(None).await;
    let id = env.create(json!({"name": "Fourth Coffee"})).await;
    let (status, row) = env.get(&format!("accounts({id})")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["accountid"], json!(id.to_string()));
    assert_eq!(row["name"], "Fourth Coffee");
    assert!(
        row["accountnumber"]
            .as_str()
            .unwrap()
            .starts_with("ACC-FC-"),
        "{row}"
    );
    assert!(
        row["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/api/data/v9.2/$metadata#accounts/$entity")
    );

    let r = env
        .client
        .post(env.url("accounts?$select=name,accountnumber"))
        .header("Prefer", "return=representation")
        .body(r#"{"name": "Blue Yonder"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["Preference-Applied"], "return=representation");
    assert_eq!(r.headers()["OData-Version"], "4.0");
    let id = entity_id(&r);
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["accountid"], json!(id.to_string()));
    assert!(
        body["accountnumber"]
            .as_str()
            .unwrap()
            .starts_with("ACC-BY-")
    );
    assert!(body.get("emailaddress1").is_none(), "{body}");
    env.stop().await;
}

/// A validator's rejection reaches the caller verbatim as a 400 with code 0x80040265, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_rejection_is_verbatim_and_writes_nothing() {
    let env = start(None).await;
    let r = env
        .post("accounts", r#"{"name": "A", "emailaddress1": "nope"}"#)
        .await;
    let (status, code, message) = error_of(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, "0x80040265");
    assert_eq!(message, "'nope' is not a valid e-mail address.");
    assert!(env.rows().await.is_empty());
    env.stop().await;
}

/// GET, PATCH (204, or 200 with the row), DELETE (204), then 404 with Dataverse's not-found code.
#[tokio::test(flavor = "multi_thread")]
async fn retrieve_update_delete() {
    let env = start(None).await;
    let id = env.create(json!({"name": "Litware"})).await;
    let record = format!("accounts({id})");
    let r = env
        .client
        .patch(env.url(&record))
        .body(r#"{"numberofemployees": 42}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, row) = env
        .get(&format!("{record}?$select=numberofemployees"))
        .await;
    assert_eq!(row["numberofemployees"], 42);
    assert!(row.get("name").is_none(), "{row}");

    let r = env
        .client
        .patch(env.url(&record))
        .header("Prefer", "return=representation")
        .body(r#"{"name": "Litware Inc."}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let row: Json = r.json().await.unwrap();
    assert_eq!(row["name"], "Litware Inc.");
    assert_eq!(row["numberofemployees"], 42);

    for (name, value) in [("If-None-Match", "W/\"1\""), ("If-Match", "W/\"x1\"")] {
        let r = env
            .client
            .patch(env.url(&record))
            .header(name, value)
            .body(r#"{"name": "x"}"#)
            .send()
            .await
            .unwrap();
        let (status, _, message) = error_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains(name), "{message}");
    }
    let r = env
        .client
        .patch(env.url(&record))
        .header("If-Match", "*")
        .body(r#"{"numberofemployees": 43}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A Create may name its id; a second Create with it is refused with Dataverse's duplicate code.
    let chosen = Uuid::new_v4();
    let body = json!({"accountid": chosen, "name": "Chosen"});
    assert_eq!(env.create(body.clone()).await, chosen);
    let r = env.post("accounts", &body.to_string()).await;
    let (status, code, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PRECONDITION_FAILED, "0x80040237")
    );

    let r = env.client.delete(env.url(&record)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = env.client.get(env.url(&record)).send().await.unwrap();
    let (status, code, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "0x80040217")
    );
    // `If-Match: *` prevents an upsert's create: the deleted row stays deleted.
    let r = env
        .client
        .patch(env.url(&record))
        .header("If-Match", "*")
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "0x80040217")
    );
    assert_eq!(env.get(&record).await.0, StatusCode::NOT_FOUND);
    env.stop().await;
}

/// Every record carries `@odata.etag` (its `versionnumber`), which changes with every write. `If-Match`
/// with it makes a PATCH or DELETE conditional (412 `0x80060882` when the row moved on, nothing written),
/// `If-None-Match` makes a GET conditional (304); of two writers holding the same ETag exactly one wins.
#[tokio::test(flavor = "multi_thread")]
async fn etags_guard_writes_and_reads() {
    let env = start(None).await;
    let id = env.create(json!({"name": "Versioned"})).await;
    let other = env.create(json!({"name": "Other"})).await;
    let record = format!("accounts({id})");
    let etag_of = |row: &Json| row["@odata.etag"].as_str().unwrap().to_owned();
    let (_, row) = env.get(&format!("{record}?$select=name")).await;
    let first = etag_of(&row);
    assert!(first.starts_with("W/\"") && first.ends_with('"'), "{first}");
    assert!(row.get("versionnumber").is_none(), "not selected: {row}");
    let (_, full) = env.get(&record).await;
    assert_eq!(full["versionnumber"].to_string(), first[3..first.len() - 1]);
    let (_, page) = env.get("accounts?$select=name").await;
    assert!(
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["@odata.etag"].is_string()),
        "{page}"
    );

    // Conditional GET: unchanged → 304 with no body; another version → the row.
    let r = env
        .client
        .get(env.url(&record))
        .header("If-None-Match", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());

    let patch = |etag: String, body: &'static str| {
        env.client
            .patch(env.url(&record))
            .header("If-Match", etag)
            .body(body)
            .send()
    };
    let r = patch(first.clone(), r#"{"name": "Versioned 2"}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, row) = env.get(&format!("{record}?$select=name")).await;
    let second = etag_of(&row);
    assert_ne!(second, first, "a write changes the version");
    let r = env
        .client
        .get(env.url(&record))
        .header("If-None-Match", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Stale ETag, or another row's: 412 with ConcurrencyVersionMismatch, and nothing written.
    let (_, other_row) = env.get(&format!("accounts({other})?$select=name")).await;
    for stale in [first.clone(), etag_of(&other_row)] {
        let (status, code, message) =
            error_of(patch(stale, r#"{"name": "lost"}"#).await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::PRECONDITION_FAILED, "0x80060882")
        );
        assert!(message.contains("RowVersion"), "{message}");
    }
    let (_, row) = env.get(&format!("{record}?$select=name")).await;
    assert_eq!(row["name"], "Versioned 2");
    assert_eq!(
        etag_of(&row),
        second,
        "a refused write leaves the version as it was"
    );

    // Two writers with the same ETag: exactly one wins.
    let (a, b) = tokio::join!(
        patch(second.clone(), r#"{"name": "writer A"}"#),
        patch(second.clone(), r#"{"name": "writer B"}"#)
    );
    let mut statuses = [a.unwrap().status(), b.unwrap().status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::NO_CONTENT, StatusCode::PRECONDITION_FAILED]
    );

    // A conditional DELETE: stale → 412 and the row stays; current → 204.
    let (_, row) = env.get(&format!("{record}?$select=name")).await;
    let current = etag_of(&row);
    let delete = |etag: String| {
        env.client
            .delete(env.url(&record))
            .header("If-Match", etag)
            .send()
    };
    let (status, code, _) = error_of(delete(second.clone()).await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PRECONDITION_FAILED, "0x80060882")
    );
    assert_eq!(env.get(&record).await.0, StatusCode::OK);
    assert_eq!(
        delete(current).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(env.get(&record).await.0, StatusCode::NOT_FOUND);

    // Headers that mean nothing here, and malformed ETags: 400 naming the header.
    let misuse = [
        env.client
            .get(env.url(&format!("accounts({other})")))
            .header("If-Match", "*"),
        env.client
            .delete(env.url(&format!("accounts({other})")))
            .header("If-None-Match", "*"),
        env.client
            .get(env.url(&format!("accounts({other})")))
            .header("If-None-Match", "1"),
        env.client
            .delete(env.url(&format!("accounts({other})")))
            .header("If-Match", "W/\"-1\""),
    ];
    for (req, name) in
        misuse
            .into_iter()
            .zip(["If-Match", "If-None-Match", "If-None-Match", "If-Match"])
    {
        let (status, _, message) = error_of(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
        assert!(message.contains(name), "{message}");
    }
    // `versionnumber` is the platform's: a caller cannot set it.
    let r = env
        .client
        .patch(env.url(&format!("accounts({other})")))
        .body(r#"{"versionnumber": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::BAD_REQUEST);
    env.stop().await;
}

/// A record's URL addresses one property (`accounts(id)/name`: GET, PUT, DELETE) and its navigation
/// properties' references: PUT/DELETE `…/primarycontactid/$ref` sets and clears the lookup, POST/DELETE on
/// a 1:N collection (`contacts(id)/lk_account_primarycontactid/$ref`) sets and clears the related row's
/// lookup, and on an N:N relationship associates and disassociates.
#[tokio::test(flavor = "multi_thread")]
async fn references_and_single_properties() {
    let nn = "[[relationship]]\nname = \"account_contacts\"\ntype = \"ManyToMany\"\nentity1 = \"account\"\nentity2 = \"contact\"\n";
    let env = start_with(None, nn).await;
    let account = env.create(json!({"name": "Ref"})).await;
    let r = env.post("contacts", r#"{"lastname": "Linked"}"#).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let contact = r.headers()["OData-EntityId"].to_str().unwrap();
    let contact = Uuid::parse_str(&contact[contact.len() - 37..contact.len() - 1]).unwrap();
    let send = |method: reqwest::Method, path: String, body: Option<Json>| {
        let mut req = env.client.request(method, env.url(&path));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        req.send()
    };
    let lookup = || async {
        env.get(&format!(
            "accounts({account})?$select=_primarycontactid_value"
        ))
        .await
        .1["_primarycontactid_value"]
            .clone()
    };
    let contact_url = format!("{}/contacts({contact})", env.base);

    // Single-valued navigation property.
    let r = send(
        reqwest::Method::PUT,
        format!("accounts({account})/primarycontactid/$ref"),
        Some(json!({"@odata.id": contact_url})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert_eq!(lookup().await, json!(contact.to_string()));
    let r = send(
        reqwest::Method::DELETE,
        format!("accounts({account})/primarycontactid/$ref"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(lookup().await, Json::Null);

    // 1:N from the "one" side: the account's lookup is what changes.
    let r = send(
        reqwest::Method::POST,
        format!("contacts({contact})/lk_account_primarycontactid/$ref"),
        Some(json!({"@odata.id": format!("accounts({account})")})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert_eq!(lookup().await, json!(contact.to_string()));
    let r = send(
        reqwest::Method::DELETE,
        format!("contacts({contact})/lk_account_primarycontactid({account})/$ref"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(lookup().await, Json::Null);

    // N:N: Associate and Disassociate (the related rows read back from the store).
    let related = || {
        let store = env.runtime.store.clone();
        tokio::task::block_in_place(move || {
            store.read(|r: &dyn Read| {
                r.related(
                    "account_contacts",
                    &weft_store::EntityRef {
                        logical_name: "account".into(),
                        id: account,
                    },
                )
            })
        })
        .unwrap()
    };
    let r = send(
        reqwest::Method::POST,
        format!("accounts({account})/account_contacts/$ref"),
        Some(json!({"@odata.id": contact_url})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert_eq!(
        related().iter().map(|r| r.id).collect::<Vec<_>>(),
        [contact]
    );
    let r = send(
        reqwest::Method::DELETE,
        format!("accounts({account})/account_contacts/$ref?$id={contact_url}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert!(related().is_empty());

    // One property: read, set, clear (a null property answers 204).
    let (status, body) = env.get(&format!("accounts({account})/name")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], "Ref");
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with(&format!("$metadata#accounts({account})/name"))
    );
    let r = send(
        reqwest::Method::PUT,
        format!("accounts({account})/numberofemployees"),
        Some(json!({"value": 7})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert_eq!(
        env.get(&format!("accounts({account})/numberofemployees"))
            .await
            .1["value"],
        7
    );
    let r = send(
        reqwest::Method::DELETE,
        format!("accounts({account})/numberofemployees"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = env
        .client
        .get(env.url(&format!("accounts({account})/numberofemployees")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Refusals, each naming what is wrong.
    let cases = [
        (
            reqwest::Method::PUT,
            format!("accounts({account})/primarycontactid/$ref"),
            Some(json!({"@odata.id": format!("accounts({account})")})),
            StatusCode::BAD_REQUEST,
            "contact",
        ),
        (
            reqwest::Method::PUT,
            format!("accounts({account})/primarycontactid/$ref"),
            Some(json!({"id": 1})),
            StatusCode::BAD_REQUEST,
            "@odata.id",
        ),
        (
            reqwest::Method::POST,
            format!("accounts({account})/nosuchnav/$ref"),
            Some(json!({"@odata.id": contact_url})),
            StatusCode::NOT_FOUND,
            "nosuchnav",
        ),
        (
            reqwest::Method::PUT,
            format!("accounts({account})/account_contacts/$ref"),
            Some(json!({"@odata.id": contact_url})),
            StatusCode::METHOD_NOT_ALLOWED,
            "POST, DELETE",
        ),
        (
            reqwest::Method::DELETE,
            format!("accounts({account})/account_contacts/$ref"),
            None,
            StatusCode::BAD_REQUEST,
            "$id",
        ),
        (
            reqwest::Method::PUT,
            format!("accounts({account})/name"),
            Some(json!({"name": "x"})),
            StatusCode::BAD_REQUEST,
            "value",
        ),
        (
            reqwest::Method::PUT,
            format!("accounts({account})/numberofemployees"),
            Some(json!({"value": "many"})),
            StatusCode::BAD_REQUEST,
            "numberofemployees",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let r = send(method.clone(), path.clone(), body).await.unwrap();
        let (got, _, message) = error_of(r).await;
        assert_eq!(got, status, "{method} {path}: {message}");
        assert!(message.contains(needle), "{method} {path}: {message}");
    }
    let r = env
        .client
        .post(env.url(&format!("accounts({account})/name/$value")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    env.stop().await;
}

/// `$expand` of collection-valued navigation properties (1:N from the "one" side, N:N) with nested
/// `$select`, `$filter`, `$orderby` and `$top`, and navigation reads (`contacts(id)/lk_…`,
/// `accounts(id)/primarycontactid`) answered the same way.
#[tokio::test(flavor = "multi_thread")]
async fn collection_expand_and_navigation_reads() {
    let nn = "[[relationship]]\nname = \"account_contacts\"\ntype = \"ManyToMany\"\nentity1 = \"account\"\nentity2 = \"contact\"\n";
    let owned = start_with(None, nn).await;
    let env = &owned;
    let contact = |name: &'static str| async move {
        let r = env
            .post("contacts", &json!({"lastname": name}).to_string())
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let url = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
        Uuid::parse_str(&url[url.len() - 37..url.len() - 1]).unwrap()
    };
    let (c1, c2) = (contact("One").await, contact("Two").await);
    let account = |name: &'static str, c: Uuid| {
        env.create(json!({"name": name, "primarycontactid@odata.bind": format!("/contacts({c})")}))
    };
    let a1 = account("A", c1).await;
    account("B", c1).await;
    account("C", c2).await;
    let names = |v: &Json| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["name"]
                    .as_str()
                    .or(r["lastname"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let expanded = |query: &'static str| async move {
        let (status, body) = env.get(query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let rows = body["value"].as_array().unwrap().clone();
        let of = |id: Uuid| {
            rows.iter()
                .find(|r| r["contactid"] == json!(id.to_string()))
                .unwrap()["lk_account_primarycontactid"]
                .clone()
        };
        (names(&of(c1)), names(&of(c2)))
    };
    assert_eq!(
        expanded("contacts?$select=lastname&$expand=lk_account_primarycontactid($select=name;$orderby=name desc)").await,
        (vec!["B".to_owned(), "A".to_owned()], vec!["C".to_owned()])
    );
    assert_eq!(
        expanded(
            "contacts?$expand=lk_account_primarycontactid($select=name;$orderby=name desc;$top=1)"
        )
        .await
        .0,
        ["B"]
    );
    assert_eq!(
        expanded("contacts?$expand=lk_account_primarycontactid($select=name;$filter=name ne 'B')")
            .await
            .0,
        ["A"]
    );

    // Navigation reads.
    let (status, body) = env
        .get(&format!(
            "contacts({c1})/lk_account_primarycontactid?$select=name&$orderby=name"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body["value"]), ["A", "B"]);
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts")
    );
    let (status, body) = env.get(&format!("accounts({a1})/primarycontactid")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lastname"], "One");
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#contacts/$entity")
    );

    // N:N, after an association through $ref.
    let r = env
        .client
        .post(env.url(&format!("accounts({a1})/account_contacts/$ref")))
        .body(json!({"@odata.id": format!("contacts({c2})")}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, body) = env
        .get("accounts?$select=name&$expand=account_contacts($select=lastname)&$orderby=name")
        .await;
    let linked: Vec<Vec<String>> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| names(&r["account_contacts"]))
        .collect();
    assert_eq!(linked, [vec!["Two".to_owned()], vec![], vec![]]);
    let (_, body) = env
        .get(&format!("accounts({a1})/account_contacts?$select=lastname"))
        .await;
    assert_eq!(names(&body["value"]), ["Two"]);

    // What is not supported is named.
    for (query, needle) in [
        (
            "contacts?$expand=lk_account_primarycontactid($expand=primarycontactid)",
            "$expand",
        ),
        (
            "accounts?$expand=primarycontactid($filter=lastname eq 'x')",
            "$filter",
        ),
        (
            "accounts?$expand=account_contacts($select=nosuch)",
            "nosuch",
        ),
    ] {
        let r = env.client.get(env.url(query)).send().await.unwrap();
        let (status, _, message) = error_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {message}");
        assert!(message.contains(needle), "{query}: {message}");
    }
    owned.stop().await;
}

/// Deep insert: records nested under navigation properties are created with their parent in one
/// transaction, each through the pipeline (the enricher numbers every account), linked through the
/// lookup (single-valued, 1:N) or the relationship (N:N); one failing record rolls back all of them.
#[tokio::test(flavor = "multi_thread")]
async fn deep_insert_creates_related_records_together() {
    let nn = "[[relationship]]\nname = \"account_contacts\"\ntype = \"ManyToMany\"\nentity1 = \"account\"\nentity2 = \"contact\"\n";
    let env = start_with(None, nn).await;
    // Single-valued: the contact is created first and bound to the account.
    let account = env
        .create(json!({"name": "With boss", "primarycontactid": {"lastname": "Boss"}}))
        .await;
    let (_, row) = env
        .get(&format!(
            "accounts({account})?$select=name&$expand=primarycontactid($select=lastname)"
        ))
        .await;
    assert_eq!(row["primarycontactid"]["lastname"], "Boss", "{row}");

    // 1:N and N:N under a contact; a decimal keeps its exact text.
    let body = r#"{"lastname": "Parent",
        "lk_account_primarycontactid": [{"name": "Child A"}, {"name": "Child B", "revenue": 922337203685476.5807}],
        "account_contacts": [{"name": "Linked"}]}"#;
    let r = env.post("contacts", body).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let url = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
    let contact = Uuid::parse_str(&url[url.len() - 37..url.len() - 1]).unwrap();
    let (_, children) = env
        .get(&format!("contacts({contact})/lk_account_primarycontactid?$select=name,accountnumber,revenue&$orderby=name"))
        .await;
    let children = children["value"].as_array().unwrap().clone();
    assert_eq!(children.len(), 2, "{children:?}");
    assert_eq!(children[0]["name"], "Child A");
    assert!(
        children.iter().all(|c| c["accountnumber"].is_string()),
        "the enricher ran for each: {children:?}"
    );
    let text = env
        .client
        .get(env.url(&format!(
            "accounts({})?$select=revenue",
            children[1]["accountid"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("922337203685476.5807"), "{text}");
    let (_, linked) = env
        .get(&format!(
            "contacts({contact})/account_contacts?$select=name"
        ))
        .await;
    assert_eq!(linked["value"][0]["name"], "Linked", "{linked}");

    // A record the validator refuses rolls back the whole deep insert.
    let before = env.rows().await.len();
    let body = r#"{"lastname": "Doomed", "lk_account_primarycontactid": [{"name": "ok"}, {"name": "bad", "emailaddress1": "nope"}]}"#;
    let (status, code, message) = error_of(env.post("contacts", body).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "0x80040265"),
        "{message}"
    );
    assert_eq!(env.rows().await.len(), before, "nothing of it was written");
    let (_, doomed) = env.get("contacts?$filter=lastname eq 'Doomed'").await;
    assert!(doomed["value"].as_array().unwrap().is_empty(), "{doomed}");

    // Shapes that cannot be a deep insert are refused with the reason.
    let contact_url = format!("/contacts({contact})");
    for (body, needle) in [
        (
            json!({"name": "x", "primarycontactid": [{"lastname": "y"}]}),
            "single-valued",
        ),
        (
            json!({"name": "x", "primarycontactid": {"lastname": "y"}, "primarycontactid@odata.bind": contact_url}),
            "both bound and nested",
        ),
        (
            json!({"name": "x", "account_contacts": {"lastname": "y"}}),
            "array",
        ),
    ] {
        let (status, _, message) = error_of(env.post("accounts", &body.to_string()).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    env.stop().await;
}

/// Alternate keys (`[[table.key]]`): enforced unique (text ignoring case, 412 `0x80040237`), usable in URLs
/// instead of the id for GET, DELETE and upsert-by-key PATCH, and listed in `EntityDefinitions(…)/Keys`.
#[tokio::test(flavor = "multi_thread")]
async fn alternate_keys_address_records() {
    let key = "[[table.key]]\nname = \"contact_lastname\"\nattributes = [\"lastname\"]\n";
    let env = start_with(None, key).await;
    let r = env.post("contacts", r#"{"lastname": "Key1"}"#).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, code, message) =
        error_of(env.post("contacts", r#"{"lastname": "KEY1"}"#).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PRECONDITION_FAILED, "0x80040237"),
        "{message}"
    );
    assert!(message.contains("contact_lastname"), "{message}");

    let (status, row) = env.get("contacts(lastname='Key1')").await;
    assert_eq!(status, StatusCode::OK, "{row}");
    assert_eq!(row["lastname"], "Key1");
    assert_eq!(
        env.get("contacts(lastname='Nope')").await.0,
        StatusCode::NOT_FOUND
    );

    // Upsert by key: a missing key creates the row with the key's value; If-None-Match: * refuses an existing one.
    let r = env
        .client
        .patch(env.url("contacts(lastname='By key')"))
        .header("Prefer", "return=representation")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let (status, row) = env.get("contacts(lastname='By key')").await;
    assert_eq!(
        (status, row["lastname"].clone()),
        (StatusCode::OK, json!("By key"))
    );
    let r = env
        .client
        .patch(env.url("contacts(lastname='Key1')"))
        .header("If-None-Match", "*")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = env
        .client
        .delete(env.url("contacts(lastname='By key')"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        env.get("contacts(lastname='By key')").await.0,
        StatusCode::NOT_FOUND
    );

    // @odata.bind may name the related row by its key.
    let key1 = env.get("contacts(lastname='Key1')").await.1["contactid"].clone();
    let account = env
        .create(json!({"name": "Bound by key", "primarycontactid@odata.bind": "/contacts(lastname='key1')"}))
        .await;
    let (_, row) = env
        .get(&format!(
            "accounts({account})?$select=_primarycontactid_value"
        ))
        .await;
    assert_eq!(row["_primarycontactid_value"], key1, "{row}");
    let r = env
        .post(
            "accounts",
            r#"{"name": "x", "primarycontactid@odata.bind": "/contacts(lastname='Nobody')"}"#,
        )
        .await;
    let (status, code, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "0x80040217")
    );

    // Metadata lists the key; what is not a key is refused by name.
    let (_, keys) = env
        .get("EntityDefinitions(LogicalName='contact')/Keys")
        .await;
    assert_eq!(
        keys["value"][0]["LogicalName"], "contact_lastname",
        "{keys}"
    );
    assert_eq!(
        keys["value"][0]["KeyAttributes"],
        json!(["lastname"]),
        "{keys}"
    );
    for (url, needle) in [
        ("contacts(fullname='x')", "fullname"),
        ("accounts(name='x')", "keys: none"),
        ("contacts(lastname=5)", "lastname"),
    ] {
        let r = env.client.get(env.url(url)).send().await.unwrap();
        let (status, _, message) = error_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {message}");
        assert!(message.contains(needle), "{url}: {message}");
    }
    env.stop().await;
}

/// CreateMultiple, UpdateMultiple and UpsertMultiple on a collection: one transaction, each target a Create
/// or Update through the pipeline (the enricher numbers every account; a refused target rolls back all).
#[tokio::test(flavor = "multi_thread")]
async fn bulk_messages_run_each_target_through_the_pipeline() {
    let env = start(None).await;
    let ty = "Microsoft.Dynamics.CRM.account";
    let post = |action: &str, body: Json| {
        env.client
            .post(env.url(&format!("accounts/Microsoft.Dynamics.CRM.{action}")))
            .body(body.to_string())
            .send()
    };
    let r = post(
        "CreateMultiple",
        json!({"Targets": [{"@odata.type": ty, "name": "Bulk 1"}, {"@odata.type": ty, "name": "Bulk 2"}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Json = r.json().await.unwrap();
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("CreateMultipleResponse")
    );
    let ids: Vec<String> = body["Ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let (_, row) = env
            .get(&format!("accounts({id})?$select=accountnumber"))
            .await;
        assert!(
            row["accountnumber"].is_string(),
            "the enricher ran for each: {row}"
        );
    }

    // A target the validator refuses rolls back the whole request.
    let before = env.rows().await.len();
    let (status, code, _) = error_of(
        post(
            "CreateMultiple",
            json!({"Targets": [{"@odata.type": ty, "name": "ok"}, {"@odata.type": ty, "name": "bad", "emailaddress1": "nope"}]}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "0x80040265")
    );
    assert_eq!(env.rows().await.len(), before);

    // UpdateMultiple by id and by @odata.id; UpsertMultiple updates one and creates another.
    let r = post(
        "UpdateMultiple",
        json!({"Targets": [
            {"@odata.type": ty, "accountid": ids[0], "name": "Bulk 1b"},
            {"@odata.type": ty, "@odata.id": format!("accounts({})", ids[1]), "name": "Bulk 2b"}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let fresh = Uuid::new_v4();
    let r = post(
        "UpsertMultiple",
        json!({"Targets": [
            {"@odata.type": ty, "accountid": ids[0], "name": "Bulk 1c"},
            {"@odata.type": ty, "accountid": fresh, "name": "Upserted"}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    assert_eq!(
        env.get(&format!("accounts({})", ids[0])).await.1["name"],
        "Bulk 1c"
    );
    assert_eq!(
        env.get(&format!("accounts({})", ids[1])).await.1["name"],
        "Bulk 2b"
    );
    assert_eq!(
        env.get(&format!("accounts({fresh})")).await.1["name"],
        "Upserted"
    );

    // Malformed requests are refused with the reason.
    for (action, body, needle) in [
        (
            "CreateMultiple",
            json!({"Targets": [{"name": "untyped"}]}),
            "@odata.type",
        ),
        (
            "CreateMultiple",
            json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact"}]}),
            "not 'Microsoft.Dynamics.CRM.account'",
        ),
        ("CreateMultiple", json!({"Targets": []}), "1 to 1000"),
        (
            "CreateMultiple",
            json!({"Targets": [], "Other": 1}),
            "'Other'",
        ),
        (
            "UpdateMultiple",
            json!({"Targets": [{"@odata.type": ty, "name": "no id"}]}),
            "names its record",
        ),
    ] {
        let (status, _, message) = error_of(post(action, body).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{action}: {message}");
        assert!(message.contains(needle), "{action}: {message}");
    }
    let r = env
        .client
        .get(env.url("accounts/Microsoft.Dynamics.CRM.CreateMultiple"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    env.stop().await;
}

/// `$apply`: aggregate, groupby with aggregates, filter steps and `$filter` together; exact money sums,
/// nulls left out; what is not supported answers 400 naming it.
#[tokio::test(flavor = "multi_thread")]
async fn apply_aggregates_and_groups() {
    let env = start(None).await;
    for (name, employees, revenue, industry) in [
        ("A", Some(10), Some("0.10"), 1),
        ("B", Some(30), Some("0.20"), 1),
        ("C", None, Some("5"), 2),
        ("D", Some(5), None, 2),
    ] {
        let mut body = json!({"name": name, "industrycode": industry});
        if let Some(e) = employees {
            body["numberofemployees"] = json!(e);
        }
        if let Some(r) = revenue {
            body["revenue"] = serde_json::from_str(r).unwrap();
        }
        env.create(body).await;
    }
    let (status, body) = env
        .get("accounts?$apply=aggregate(numberofemployees with sum as total,numberofemployees with average as avg,revenue with sum as money,$count as n,name with max as last)")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let row = &body["value"][0];
    assert_eq!(row["total"], 45);
    assert_eq!(row["avg"], 15.0, "nulls are left out");
    assert_eq!(row["money"].to_string(), "5.3", "an exact sum: {row}");
    assert_eq!(row["n"], 4);
    assert_eq!(row["last"], "D");

    let (_, body) = env
        .get("accounts?$apply=groupby((industrycode),aggregate($count as n,numberofemployees with min as fewest))")
        .await;
    let groups = body["value"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{body}");
    assert_eq!(groups[0], json!({"industrycode": 1, "n": 2, "fewest": 10}));
    assert_eq!(groups[1], json!({"industrycode": 2, "n": 2, "fewest": 5}));

    let (_, body) = env
        .get("accounts?$apply=filter(industrycode eq 1)/aggregate($count as n)&$filter=name ne 'A'")
        .await;
    assert_eq!(body["value"][0]["n"], 1, "{body}");
    let (_, body) = env.get("accounts?$apply=groupby((industrycode))").await;
    assert_eq!(body["value"].as_array().unwrap().len(), 2, "{body}");

    for (query, needle) in [
        (
            "accounts?$apply=aggregate(name with sum as s)",
            "cannot be summed",
        ),
        (
            "accounts?$apply=aggregate(numberofemployees with median as m)",
            "median",
        ),
        ("accounts?$apply=compute(1 as x)", "compute"),
        ("accounts?$apply=aggregate($count as n)&$top=1", "$top"),
        (
            "accounts?$apply=aggregate($count as n,$count as n)",
            "twice",
        ),
        ("accounts?$apply=groupby((nosuch))", "nosuch"),
    ] {
        let r = env.client.get(env.url(query)).send().await.unwrap();
        let (status, _, message) = error_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {message}");
        assert!(message.contains(needle), "{query}: {message}");
    }
    env.stop().await;
}

/// `fetchXml=`: attributes, order, nested filters (comparisons, like, in), paging by count/page with
/// `morerecords`, aggregates; what is outside the subset answers 400 naming it.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_xml_queries() {
    let owned = start(None).await;
    let env = &owned;
    for (name, employees, industry) in [
        ("Alpha", 10, 1),
        ("Beta", 30, 1),
        ("Bravo", 3, 2),
        ("Gamma", 50, 2),
    ] {
        env.create(json!({"name": name, "numberofemployees": employees, "industrycode": industry}))
            .await;
    }
    let fetch = |xml: &str| {
        let xml = xml.to_owned();
        async move {
            let r = env
                .client
                .get(env.url("accounts"))
                .query(&[("fetchXml", xml)])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Json>().await.unwrap())
        }
    };
    let names = |body: &Json| -> Vec<String> {
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = |n: u32| {
        format!(
            "<fetch count='2' page='{n}'><entity name='account'><attribute name='name'/><order attribute='name'/>\
             <filter type='and'><condition attribute='numberofemployees' operator='gt' value='5'/></filter></entity></fetch>"
        )
    };
    let (status, first) = fetch(&page(1)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(names(&first), ["Alpha", "Beta"]);
    assert_eq!(first["@Microsoft.Dynamics.CRM.morerecords"], true);
    assert!(
        first["value"][0].get("numberofemployees").is_none(),
        "only the attributes asked for"
    );
    let (_, second) = fetch(&page(2)).await;
    assert_eq!(names(&second), ["Gamma"]);
    assert_eq!(second["@Microsoft.Dynamics.CRM.morerecords"], false);

    let (_, body) = fetch(
        "<fetch><entity name='account'><attribute name='name'/><order attribute='name' descending='true'/>\
         <filter type='or'><condition attribute='name' operator='like' value='B%'/>\
         <filter><condition attribute='industrycode' operator='in'><value>2</value></condition>\
         <condition attribute='numberofemployees' operator='ge' value='50'/></filter></filter></entity></fetch>",
    )
    .await;
    assert_eq!(names(&body), ["Gamma", "Bravo", "Beta"], "{body}");

    let (_, body) = fetch(
        "<fetch aggregate='true'><entity name='account'><attribute name='industrycode' groupby='true' alias='ic'/>\
         <attribute name='numberofemployees' aggregate='sum' alias='total'/><attribute name='name' aggregate='count' alias='n'/></entity></fetch>",
    )
    .await;
    assert_eq!(body["value"][0]["total"], 40, "{body}");
    assert_eq!(body["value"][1]["total"], 53, "{body}");
    assert_eq!(body["value"][1]["n"], 2, "{body}");

    for (xml, needle) in [
        (
            "<fetch><entity name='account'><link-entity name='contact' from='contactid' to='primarycontactid'>\
             <link-entity name='account' from='primarycontactid' to='contactid'/></link-entity></entity></fetch>",
            "<link-entity> in the <link-entity>",
        ),
        (
            "<fetch><entity name='contact'/></fetch>",
            "must be 'account'",
        ),
        (
            "<fetch><entity name='account'><filter><condition attribute='name' operator='under' value='x'/></filter></entity></fetch>",
            "under",
        ),
        ("<fetch><entity name='account'>", "not closed"),
        ("<!DOCTYPE x><fetch/>", "DOCTYPE"),
    ] {
        let (status, body) = fetch(xml).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{xml}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{xml}: {message}");
    }
    owned.stop().await;
}

/// PATCH is Dataverse's upsert: a missing id is created through Create's pipeline (the enricher at 20
/// fills the account number), an existing one updated; `If-None-Match: *` makes it create-only (412 when
/// the row exists); `return=representation` answers 201 for a create and 200 for an update.
#[tokio::test(flavor = "multi_thread")]
async fn patch_upserts() {
    let env = start(None).await;
    let id = Uuid::new_v4();
    let record = format!("accounts({id})");
    let r = env
        .client
        .patch(env.url(&record))
        .body(r#"{"name": "Upserted Ltd"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()["OData-EntityId"]
            .to_str()
            .unwrap()
            .ends_with(&record)
    );
    let (status, row) = env.get(&record).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["name"], "Upserted Ltd");
    assert!(
        row["accountnumber"]
            .as_str()
            .is_some_and(|n| n.starts_with("ACC-UL-")),
        "Create's steps ran: {row}"
    );
    assert_eq!(
        env.traces("post").len(),
        1,
        "the Create's stage-40 probe ran once"
    );

    // The same PATCH again updates: no second Create.
    let r = env
        .client
        .patch(env.url(&record))
        .header("Prefer", "return=representation")
        .body(r#"{"numberofemployees": 7}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let row: Json = r.json().await.unwrap();
    assert_eq!(
        (row["name"].as_str(), row["numberofemployees"].as_i64()),
        (Some("Upserted Ltd"), Some(7))
    );
    assert_eq!(
        env.traces("post").len(),
        1,
        "an update fires no Create step"
    );
    assert_eq!(env.rows().await.len(), 1);

    // Create-only: refused for the existing row, and nothing changes.
    let r = env
        .client
        .patch(env.url(&record))
        .header("If-None-Match", "*")
        .body(r#"{"name": "Overwritten"}"#)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PRECONDITION_FAILED, "0x80040237"),
        "{message}"
    );
    assert_eq!(env.get(&record).await.1["name"], "Upserted Ltd");

    // Create-only for a new id creates it, answering 201 with the representation.
    let other = Uuid::new_v4();
    let r = env
        .client
        .patch(env.url(&format!("accounts({other})")))
        .header("If-None-Match", "*")
        .header("Prefer", "return=representation")
        .body(r#"{"name": "Fresh"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let row: Json = r.json().await.unwrap();
    assert_eq!(row["accountid"], other.to_string());

    // Both headers at once cannot both hold.
    let r = env
        .client
        .patch(env.url(&record))
        .header("If-Match", "*")
        .header("If-None-Match", "*")
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, StatusCode::BAD_REQUEST);
    env.stop().await;
}

/// $select, $filter (eq/ne/gt/lt/and/or, quotes), $orderby and $top shape the collection.
#[tokio::test(flavor = "multi_thread")]
async fn collection_query_options() {
    let env = start(None).await;
    for (name, n) in [("A", 5), ("B", 20), ("C", 30), ("D", 40), ("O'Neil", 7)] {
        env.create(json!({"name": name, "numberofemployees": n}))
            .await;
    }
    let names = |body: &Json| -> Vec<String> {
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = env
        .get(
            "accounts?$select=name,numberofemployees&$filter=numberofemployees gt 10 and name ne 'C'\
             &$orderby=numberofemployees desc&$top=2",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body), ["D", "B"]);
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts(name,numberofemployees)")
    );
    let first = body["value"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["@odata.etag", "accountid", "name", "numberofemployees"]
    );

    let (_, body) = env
        .get("accounts?$filter=name eq 'O''Neil' or numberofemployees lt 6&$orderby=name")
        .await;
    assert_eq!(names(&body), ["A", "O'Neil"]);
    let (_, body) = env
        .get("accounts?$filter=(name eq 'A' or name eq 'B') and numberofemployees ge 20")
        .await;
    assert_eq!(names(&body), ["B"]);

    let r = env
        .client
        .get(env.url("accounts?$filter=numberofemployees eq 'many'"))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "0x80060888")
    );
    assert!(message.contains("numberofemployees"), "{message}");
    env.stop().await;
}

/// `$filter` functions over HTTP on a real store: contains/startswith take `%` and `_` literally, `not`
/// negates, the `Microsoft.Dynamics.CRM.*` query functions select by value lists, ranges and dates, and an
/// unsupported function answers 400 naming it.
#[tokio::test(flavor = "multi_thread")]
async fn filter_functions_over_http() {
    let env = start(None).await;
    for (name, n) in [
        ("50% off", Some(10)),
        ("50 off", Some(20)),
        ("a_b", Some(30)),
        ("axb", None),
    ] {
        let mut row = json!({ "name": name });
        if let Some(n) = n {
            row["numberofemployees"] = json!(n);
        }
        env.create(row).await;
    }
    let query = |filter: &'static str| {
        let env = &env;
        async move {
            let r = env
                .client
                .get(env.url("accounts"))
                .query(&[
                    ("$filter", filter),
                    ("$select", "name"),
                    ("$orderby", "name"),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Json = r.json().await.unwrap();
            (status, body)
        }
    };
    for (filter, expected) in [
        ("contains(name,'50%')", &["50% off"][..]),
        ("contains(name,'OFF')", &["50 off", "50% off"][..]),
        ("startswith(name,'a_')", &["a_b"][..]),
        (
            "endswith(name,'b') and not startswith(name,'a_')",
            &["axb"][..],
        ),
        ("not contains(name,'off')", &["a_b", "axb"][..]),
        ("not (numberofemployees eq 10)", &["50 off", "a_b"][..]),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='numberofemployees',PropertyValues=['10','30'])",
            &["50% off", "a_b"][..],
        ),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='name',PropertyValues=['axb','a_b'])",
            &["50 off", "50% off"][..],
        ),
        (
            "Microsoft.Dynamics.CRM.Between(PropertyName='numberofemployees',PropertyValues=[\"15\",\"30\"])",
            &["50 off", "a_b"][..],
        ),
        (
            "Microsoft.Dynamics.CRM.Null(PropertyName='numberofemployees')",
            &["axb"][..],
        ),
        (
            "Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=1)",
            &["50 off", "50% off", "a_b", "axb"][..],
        ),
        (
            "Microsoft.Dynamics.CRM.NextXDays(PropertyName='createdon',PropertyValue=3)",
            &[][..],
        ),
    ] {
        let (status, body) = query(filter).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
        let names: Vec<&str> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "{filter}");
    }
    let (status, body) =
        query("Microsoft.Dynamics.CRM.Above(PropertyName='name',PropertyValue='x')").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the function 'Microsoft.Dynamics.CRM.Above' is not supported"),
        "{body}"
    );
    env.stop().await;
}

/// Typed values round-trip exactly: money text, choices, multi-select, booleans, date-times and lookups.
#[tokio::test(flavor = "multi_thread")]
async fn typed_values_round_trip() {
    let env = start(None).await;
    let r = env.post("contacts", r#"{"lastname": "Kim"}"#).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let contact = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
    let contact_id = &contact[contact.len() - 37..contact.len() - 1];
    let id = env.create(json!({"name": "Typed"})).await;
    // Written as raw text: a JSON number with more digits than an f64 holds.
    let body = format!(
        r#"{{"revenue": 922337203685476.5807, "industrycode": 2, "categories": "3,1", "donotphone": true,
            "lastonholdtime": "2024-02-29T12:30:15Z",
            "primarycontactid@odata.bind": "/contacts({contact_id})"}}"#
    );
    let r = env
        .client
        .patch(env.url(&format!("accounts({id})")))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let text = env
        .client
        .get(env.url(&format!("accounts({id})")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#""revenue":922337203685476.5807"#), "{text}");
    let row: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(row["industrycode"], 2);
    assert_eq!(row["categories"], "3,1");
    assert_eq!(row["donotphone"], true);
    assert_eq!(row["lastonholdtime"], "2024-02-29T12:30:15Z");
    assert_eq!(row["_primarycontactid_value"], contact_id);
    assert_eq!(row["emailaddress1"], Json::Null);
    let annotated: Json = env
        .client
        .get(env.url(&format!("accounts({id})")))
        .header("Prefer", r#"odata.include-annotations="*""#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        annotated["_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "contact"
    );
    assert_eq!(
        annotated["industrycode@OData.Community.Display.V1.FormattedValue"],
        "Agriculture"
    );
    assert_eq!(
        annotated["categories@OData.Community.Display.V1.FormattedValue"],
        "C; A"
    );
    // Every type as a user sees it (en-US, UTC, base currency $), and a lookup's navigation property.
    let formatted =
        |name: &str| annotated[format!("{name}@OData.Community.Display.V1.FormattedValue")].clone();
    assert_eq!(formatted("revenue"), "$922,337,203,685,476.58");
    assert_eq!(formatted("donotphone"), "Yes");
    assert_eq!(formatted("lastonholdtime"), "2/29/2024 12:30 PM");
    assert_eq!(
        formatted("emailaddress1"),
        Json::Null,
        "text has no formatted value"
    );
    assert_eq!(
        annotated["_primarycontactid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"],
        "primarycontactid"
    );
    assert_eq!(
        formatted("_primarycontactid_value"),
        "Kim",
        "a lookup's formatted value is the related row's primary name"
    );
    assert!(
        row.get("industrycode@OData.Community.Display.V1.FormattedValue")
            .is_none()
    );
    let (_, found) = env
        .get(&format!(
            "accounts?$filter=_primarycontactid_value eq {contact_id}&$select=name"
        ))
        .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1, "{found}");
    env.stop().await;
}

/// `MSCRM.BypassBusinessLogicExecution: CustomSync` skips every sync step; the step-ids header skips only
/// the named one.
#[tokio::test(flavor = "multi_thread")]
async fn bypass_headers_skip_sync_steps() {
    let env = start(None).await;
    let r = env
        .client
        .post(env.url("accounts"))
        .header("MSCRM.BypassBusinessLogicExecution", "CustomSync")
        .body(r#"{"name": "Unchecked", "emailaddress1": "nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, row) = env.get(&format!("accounts({})", entity_id(&r))).await;
    assert_eq!(row["accountnumber"], Json::Null, "enricher ran: {row}");

    let enrich = derived_id("sdkmessageprocessingstep", "enrich");
    let r = env
        .client
        .post(env.url("accounts"))
        .header(
            "MSCRM.BypassBusinessLogicExecutionStepIds",
            enrich.to_string(),
        )
        .body(r#"{"name": "Checked", "emailaddress1": "nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "validator skipped");

    let r = env
        .client
        .post(env.url("accounts"))
        .header("MSCRM.BypassBusinessLogicExecution", "Everything")
        .body(r#"{"name": "X"}"#)
        .send()
        .await
        .unwrap();
    let (status, _, message) = error_of(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("Everything"), "{message}");
    assert_eq!(env.rows().await.len(), 1);
    env.stop().await;
}

/// The `tag` query option reaches the plug-ins as the shared variable `tag`.
#[tokio::test(flavor = "multi_thread")]
async fn tag_reaches_plugins() {
    let env = start(None).await;
    let r = env
        .post("accounts?tag=batch-9", r#"{"name": "Tagged"}"#)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let traces = env.traces("post");
    assert_eq!(traces.len(), 1);
    assert!(
        traces[0].contains("\nshared=tag=batch-9\n"),
        "{}",
        traces[0]
    );
    env.stop().await;
}

/// Malformed JSON, unknown tables and attributes, wrong types and out-of-range values answer precisely
/// and write nothing.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_precisely() {
    let env = start(None).await;
    for (body, code, needle) in [
        (r#"{"name": "A""#, "0x80048d19", "not valid JSON"),
        ("[1]", "0x80048d19", "JSON object"),
        (
            r#"{"name": "A", "name": "B"}"#,
            "0x80048d19",
            "the member 'name' appears twice",
        ),
        (
            r#"{"name": "A", "nope": 1}"#,
            "0x80048d19",
            "'nope' does not exist",
        ),
        (
            r#"{"name": "A", "numberofemployees": "ten"}"#,
            "0x80048d19",
            "'numberofemployees' of table 'account' expects a whole number",
        ),
        (
            r#"{"name": "A", "industrycode": 99}"#,
            "0x80048d19",
            "industrycode",
        ),
        (
            r#"{"name": "A", "revenue": 1.23456}"#,
            "0x80048d19",
            "revenue",
        ),
        (
            r#"{"name": "A", "lastonholdtime": "yesterday"}"#,
            "0x80048d19",
            "lastonholdtime",
        ),
        (
            r#"{"name": "A", "primarycontactid": "x"}"#,
            "0x80048d19",
            "primarycontactid@odata.bind",
        ),
        (
            r#"{"name": "A", "createdon": "2024-01-01T00:00:00Z"}"#,
            "0x80048d19",
            "createdon",
        ),
        (
            r#"{"primarycontactid@odata.bind": "/contacts(00000000-0000-0000-0000-000000000001)",
                "primarycontactid_contact@odata.bind": "/contacts(00000000-0000-0000-0000-000000000001)"}"#,
            "0x80048d19",
            "'primarycontactid' is set twice",
        ),
        (
            r#"{"primarycontactid@odata.bind": "/widgets(00000000-0000-0000-0000-000000000001)"}"#,
            "0x80048d19",
            "no table has the entity set name 'widgets'",
        ),
    ] {
        let r = env.post("accounts", body).await;
        let (status, got_code, message) = error_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {message}");
        assert_eq!(got_code, code, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let r = env.post("widgets", r#"{"name": "A"}"#).await;
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "0x80060888")
    );
    assert!(message.contains("'widgets'"), "{message}");
    let r = env
        .client
        .get(env.url("accounts(not-a-guid)"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(env.rows().await.is_empty());
    assert!(
        env.traces("post").is_empty(),
        "a plug-in ran for a refused request"
    );
    env.stop().await;
}

/// Without a key the API refuses a non-loopback address; with one, a missing or wrong bearer gets 401.
#[tokio::test(flavor = "multi_thread")]
async fn bearer_authentication() {
    let env = start(Some("s3cret-key")).await;
    let refused = api::serve(Arc::clone(&env.runtime), "0.0.0.0:0".parse().unwrap(), None)
        .await
        .err()
        .expect("served on 0.0.0.0 without a key");
    assert!(
        refused.to_string().contains("without an API key"),
        "{refused}"
    );

    let r = env.client.get(env.url("accounts")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["WWW-Authenticate"], "Bearer");
    let r = env
        .client
        .get(env.url("accounts"))
        .bearer_auth("s3cret-kez")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!r.text().await.unwrap().contains("s3cret"));
    let r = env
        .client
        .get(env.url("accounts"))
        .bearer_auth("s3cret-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!format!("{:?}", ApiAuth::bearer("s3cret-key")).contains("s3cret"));
    env.stop().await;
}

/// `run_until` serves until its signal, then shuts down: the port stops answering.
#[tokio::test(flavor = "multi_thread")]
async fn run_until_stops_on_signal() {
    let mut env = start(None).await;
    let server = env.server.take().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    assert_eq!(env.rows().await.len(), 0);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(env.client.get(env.url("accounts")).send().await.is_err());
}

/// A plug-in that fails without InvalidPluginExecution gives Dataverse's generic ISV error (500, 0x80040224);
/// the panic's detail stays in the trace log, out of the answer, and the update is rolled back.
#[tokio::test(flavor = "multi_thread")]
async fn unexpected_plugin_failure_is_generic() {
    let env = start(None).await;
    let r = env.post("contacts", r#"{"lastname": "Kim"}"#).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let contact = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
    let r = env
        .client
        .patch(&contact)
        .body(r#"{"lastname": "Lee"}"#)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(r).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code, "0x80040224");
    assert!(
        message.starts_with("An unexpected error occurred from ISV code. (correlation id "),
        "{message}"
    );
    let row: Json = env
        .client
        .get(&contact)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(row["lastname"], "Kim");
    env.stop().await;
}

impl Env {
    async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// The trace texts the plug-in assembly `plugin` wrote, oldest first.
    fn plugin_traces(&self, plugin: &str) -> Vec<String> {
        let logs = tokio::task::block_in_place(|| {
            self.runtime
                .store
                .read(|r: &dyn Read| r.trace_logs(&TraceFilter::default()))
        });
        let mut logs: Vec<_> = logs
            .unwrap()
            .into_iter()
            .filter(|t| t.entry.plugin == plugin)
            .collect();
        logs.sort_by_key(|t| t.created_on);
        logs.into_iter().map(|t| t.entry.trace).collect()
    }
}

/// GET sdkmessageprocessingsteps lists every step with Dataverse's columns and numbers; a secure
/// configuration shows only as a set lookup, never its value.
#[tokio::test(flavor = "multi_thread")]
async fn registration_lists_steps_without_secrets() {
    let env = start(None).await;
    let r = env
        .client
        .get(env.url("sdkmessageprocessingsteps"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(!text.contains("top-s3cret-value"), "{text}");
    let body: Json = serde_json::from_str(&text).unwrap();
    let steps = body["value"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{body}");
    let post = derived_id("sdkmessageprocessingstep", "post");
    let (status, step) = env.get(&format!("sdkmessageprocessingsteps({post})")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(step["sdkmessageprocessingstepid"], json!(post.to_string()));
    assert_eq!(step["name"], "post");
    assert_eq!(step["stage"], 40);
    assert_eq!(step["mode"], 0);
    assert_eq!(step["rank"], 1);
    assert_eq!(step["statecode"], 0);
    assert_eq!(step["statuscode"], 1);
    assert_eq!(step["configuration"], "label=post");
    assert!(
        step["_sdkmessageprocessingstepsecureconfigid_value"].is_string(),
        "{step}"
    );
    assert_eq!(
        step["_eventhandler_value"],
        json!(derived_id("plugintype", "probe").to_string())
    );
    let enrich = derived_id("sdkmessageprocessingstep", "enrich");
    let (_, enrich) = env
        .get(&format!("sdkmessageprocessingsteps({enrich})"))
        .await;
    assert!(enrich["_sdkmessageprocessingstepsecureconfigid_value"].is_null());
    let (status, _) = env
        .get(&format!("sdkmessageprocessingsteps({})", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.stop().await;
}

/// PATCH disables a step and changes a configuration: persisted in the system tables and applied to the
/// next operation; a malformed PATCH is a precise 400 that changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn registration_patch_applies_to_the_next_operation() {
    let env = start(None).await;
    let enrich = derived_id("sdkmessageprocessingstep", "enrich");
    let path = format!("sdkmessageprocessingsteps({enrich})");
    for (body, needle) in [
        (
            r#"{"statecode":1,"statuscode":1}"#,
            "does not belong to statecode 1",
        ),
        (r#"{"name":"renamed"}"#, "'name' cannot be written"),
        (r#"{"rank":"high"}"#, "'rank' must be a whole number"),
        (r#"{"statecode":1"#, "not valid JSON"),
    ] {
        let (status, code, message) =
            error_of(env.send(reqwest::Method::PATCH, &path, body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, api::BAD_PAYLOAD),
            "{body}"
        );
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (_, step) = env.get(&path).await;
    assert_eq!(
        (step["statecode"].clone(), step["name"].clone()),
        (json!(0), json!("enrich"))
    );

    let r = env
        .send(
            reqwest::Method::PATCH,
            &path,
            r#"{"statecode":1,"statuscode":2}"#,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let id = env.create(json!({"name": "Fourth Coffee"})).await;
    let (_, row) = env.get(&format!("accounts({id})")).await;
    assert!(
        row["accountnumber"].is_null(),
        "the disabled enricher ran: {row}"
    );
    let stored =
        tokio::task::block_in_place(|| env.runtime.store.read(|r: &dyn Read| r.steps())).unwrap();
    let stored = stored.iter().find(|s| s.def.id == enrich).unwrap();
    assert_eq!(stored.def.state, weft_store::system::StepState::Disabled);

    let post = derived_id("sdkmessageprocessingstep", "post");
    let r = env
        .client
        .patch(env.url(&format!("sdkmessageprocessingsteps({post})")))
        .header("Prefer", "return=representation")
        .body(r#"{"configuration":"label=changed","rank":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let step: Json = r.json().await.unwrap();
    assert_eq!(
        (step["configuration"].clone(), step["rank"].clone()),
        (json!("label=changed"), json!(5))
    );
    assert!(!step.to_string().contains("top-s3cret-value"));
    assert!(env.traces("changed").is_empty());
    env.create(json!({"name": "Litware"})).await;
    assert_eq!(env.traces("changed").len(), 1);
    env.stop().await;
}

/// A component replaced through the API serves the next operation, and its sha256 is stored; a garbage
/// component is refused with the load error while the old one keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn registration_replaces_a_component_without_restart() {
    use base64::Engine as _;
    let env = start(None).await;
    let enricher = derived_id("pluginassembly", "enricher");
    let (status, list) = env.get("pluginassemblies").await;
    assert_eq!(status, StatusCode::OK);
    let row = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "enricher")
        .unwrap()
        .clone();
    assert_eq!(row["pluginassemblyid"], json!(enricher.to_string()));
    let old_hash = weft_host::sandbox::sha256_hex(&fixtures::bytes("enricher"));
    assert_eq!(row["sourcehash"], json!(old_hash));

    let garbage = base64::engine::general_purpose::STANDARD.encode(b"\0asm not really");
    let path = format!("pluginassemblies({enricher})");
    let r = env
        .send(
            reqwest::Method::PATCH,
            &path,
            &json!({"content": garbage}).to_string(),
        )
        .await;
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, api::BAD_PAYLOAD)
    );
    assert!(
        message.contains("not a valid WebAssembly component"),
        "{message}"
    );
    let r = env
        .send(reqwest::Method::PATCH, &path, r#"{"content":"%%%"}"#)
        .await;
    let (status, _, message) = error_of(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.contains("'content' is not valid base64"),
        "{message}"
    );
    let id = env.create(json!({"name": "Fourth Coffee"})).await;
    let (_, row) = env.get(&format!("accounts({id})")).await;
    assert!(
        row["accountnumber"]
            .as_str()
            .unwrap()
            .starts_with("ACC-FC-"),
        "{row}"
    );
    let (_, assembly) = env.get(&path).await;
    assert_eq!(assembly["sourcehash"], json!(old_hash));

    let validator = fixtures::bytes("validator");
    let r = env
        .client
        .put(env.url(&format!("{path}/content")))
        .header("Content-Type", "application/wasm")
        .body(validator.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let new_hash = weft_host::sandbox::sha256_hex(&validator);
    let (_, assembly) = env.get(&path).await;
    assert_eq!(assembly["sourcehash"], json!(new_hash));
    let stored = tokio::task::block_in_place(|| {
        env.runtime.store.read(|r: &dyn Read| r.plugin_assemblies())
    })
    .unwrap();
    let stored = stored.iter().find(|a| a.id == enricher).unwrap();
    assert_eq!(stored.sha256.as_deref(), Some(new_hash.as_str()));

    let id = env.create(json!({"name": "Litware"})).await;
    let (_, row) = env.get(&format!("accounts({id})")).await;
    assert!(
        row["accountnumber"].is_null(),
        "the old enricher ran: {row}"
    );
    let traces = env.plugin_traces("enricher");
    assert!(
        traces
            .first()
            .unwrap()
            .starts_with("Enricher: accountnumber = ACC-FC-"),
        "{traces:?}"
    );
    assert_eq!(traces.last().unwrap(), "Validator: account is valid.");
    env.stop().await;
}

/// An unbound Custom API answers POST /{unique_name} with 200, its response properties and
/// `@odata.context`; a missing or mistyped parameter is a 400 naming it.
#[tokio::test(flavor = "multi_thread")]
async fn custom_api_action_answers_its_response_properties() {
    let env = start_with(
        None,
        &format!(
            "[[plugin]]\nname = \"greet\"\ncomponent = \"{}\"\n\
             [[custom_api]]\nunique_name = \"weft_Greet\"\nplugin = \"greet\"\n\
             [[custom_api.request_parameter]]\nname = \"Name\"\ntype = \"String\"\n\
             [[custom_api.response_property]]\nname = \"Greeting\"\ntype = \"String\"\n",
            fixtures::component("greet").display()
        ),
    )
    .await;
    let r = env.post("weft_Greet", r#"{"Name":"Ada"}"#).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Empty parentheses name the same action; arguments in them do not belong to an action.
    let empty = env.post("weft_Greet()", r#"{"Name":"Bo"}"#).await;
    assert_eq!(empty.status(), StatusCode::OK);
    assert_eq!(empty.json::<Json>().await.unwrap()["Greeting"], "Hello, Bo");
    let (status, _, message) = error_of(env.post("weft_Greet(Name='Bo')", "{}").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.contains("parameters go in the POST body"),
        "{message}"
    );
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["Greeting"], "Hello, Ada");
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$metadata#Microsoft.Dynamics.CRM.weft_GreetResponse"),
        "{body}"
    );
    let (status, _, message) = error_of(env.post("weft_Greet", "{}").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("required parameter Name"), "{message}");
    let (status, code, message) = error_of(env.post("weft_Greet", r#"{"Name":7}"#).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, api::BAD_PAYLOAD)
    );
    assert!(message.contains("'Name'"), "{message}");
    env.stop().await;
}

/// The plug-in trace log is readable through the API as `plugintracelogs`,
/// with Dataverse's column names, filterable by correlation id; a failed
/// operation's trace is there too, and bad query options are refused.
#[tokio::test(flavor = "multi_thread")]
async fn plugintracelogs_list_and_filter() {
    let env = start(None).await;
    env.create(json!({"name": "Fourth Coffee"})).await;
    let r = env
        .post("accounts", r#"{"name": "A", "emailaddress1": "nope"}"#)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let (status, all) = env.get("plugintracelogs").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let rows = all["value"].as_array().unwrap();
    let failed = rows
        .iter()
        .find(|t| t["exceptiondetails"].is_string())
        .expect("the rejected operation's trace");
    assert_eq!(failed["typename"], json!("validator"));
    assert_eq!(failed["messagename"], json!("Create"));
    assert!(
        failed["exceptiondetails"]
            .as_str()
            .unwrap()
            .contains("'nope' is not a valid e-mail address."),
        "{failed}"
    );
    let correlation = failed["correlationid"].as_str().unwrap().to_owned();
    let (status, one) = env
        .get(&format!(
            "plugintracelogs?$filter=correlationid eq {correlation}&$top=10"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let filtered = one["value"].as_array().unwrap();
    assert!(!filtered.is_empty() && filtered.len() < rows.len(), "{one}");
    assert!(
        filtered
            .iter()
            .all(|t| t["correlationid"] == json!(correlation))
    );

    let (status, _) = env.get("plugintracelogs?$filter=typename eq 'x'").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env.get("plugintracelogs?$orderby=createdon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    env.stop().await;
}

/// `greet` as Custom APIs bound to one account (action and function) and to the account collection, each
/// answering `Greeting` and `Bound` (what the plug-in saw: primary entity, id and Target), and as an
/// unbound function answering `Greeting`, with a probe step at stage 40 of the row-bound action.
fn bound_apis() -> String {
    let api = |name: &str, binding: &str, function: bool| {
        let bound = if binding.is_empty() {
            ""
        } else {
            "[[custom_api.response_property]]\nname = \"Bound\"\ntype = \"String\"\n"
        };
        format!(
            "[[custom_api]]\nunique_name = \"{name}\"\nplugin = \"greet\"\n{binding}\nis_function = {function}\n\
             [[custom_api.request_parameter]]\nname = \"Name\"\ntype = \"String\"\n\
             [[custom_api.request_parameter]]\nname = \"Other\"\ntype = \"EntityReference\"\noptional = true\n\
             [[custom_api.response_property]]\nname = \"Greeting\"\ntype = \"String\"\n{bound}"
        )
    };
    format!(
        "[[plugin]]\nname = \"greet\"\ncomponent = \"{}\"\n{}{}{}{}\
         [[step]]\nname = \"bound probe\"\nmessage = \"weft_GreetAccount\"\ntable = \"account\"\nstage = 40\n\
         plugin = \"probe\"\nconfiguration = \"label=bound\"\n",
        fixtures::component("greet").display(),
        api(
            "weft_GreetAccount",
            "binding_type = 1\nbound_table = \"account\"",
            false
        ),
        api(
            "weft_GreetAccounts",
            "binding_type = 2\nbound_table = \"account\"",
            false
        ),
        api(
            "weft_GreetAccountFn",
            "binding_type = 1\nbound_table = \"account\"",
            true
        ),
        api("weft_GreetFn", "", true),
    )
}

/// A Custom API bound to a row is called as `accounts(<id>)/Microsoft.Dynamics.CRM.<name>`: the plug-in
/// gets the row as `Target` and `account` as PrimaryEntityName (and an `@odata.id` reference parameter); bound to the collection, as
/// `accounts/Microsoft.Dynamics.CRM.<name>` with no Target; functions with GET and URL arguments.
#[tokio::test(flavor = "multi_thread")]
async fn bound_custom_apis_reach_the_plugin_with_their_binding() {
    let env = start_with(None, &bound_apis()).await;
    let id = env.create(json!({"name": "Fourth Coffee"})).await;

    let r = env
        .post(
            &format!("accounts({id})/Microsoft.Dynamics.CRM.weft_GreetAccount"),
            &json!({"Name": "Ada", "Other": {"@odata.id": format!("accounts({id})")}}).to_string(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["Greeting"], "Hello, Ada");
    assert_eq!(
        body["Bound"],
        json!(format!("account {id} Target=account({id})"))
    );
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$metadata#Microsoft.Dynamics.CRM.weft_GreetAccountResponse"),
        "{body}"
    );
    let traces = env.traces("bound");
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert!(
        traces[0].contains(&format!("\nprimaryid={id}\n")),
        "{}",
        traces[0]
    );
    assert!(
        traces[0].contains(&format!(
            "Name=Ada,Other=account({id}),Target=account({id})"
        )),
        "{}",
        traces[0]
    );

    let r = env
        .post(
            "accounts/Microsoft.Dynamics.CRM.weft_GreetAccounts",
            r#"{"Name":"Bo"}"#,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Json = r.json().await.unwrap();
    assert_eq!(
        body["Bound"],
        json!(format!("account {} Target=-", Uuid::nil()))
    );

    // Functions: GET, arguments inline or as parameter aliases (quotes doubled inside a literal).
    let (status, body) = env
        .get(&format!(
            "accounts({id})/Microsoft.Dynamics.CRM.weft_GreetAccountFn(Name=@n)?@n='O''Brien'"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Greeting"], "Hello, O'Brien");
    assert_eq!(
        body["Bound"],
        json!(format!("account {id} Target=account({id})"))
    );
    let (status, body) = env.get("weft_GreetFn(Name='Cy')").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Greeting"], "Hello, Cy");
    assert!(body.get("Bound").is_none(), "{body}");
    env.stop().await;
}

/// Calls that do not fit the declaration answer Dataverse-style errors naming what is wrong: the wrong
/// table, an unknown row, a missing row key, an unbound path, missing or ill-typed parameters, the wrong
/// method, bad function literals; the plug-in runs for none of them.
#[tokio::test(flavor = "multi_thread")]
async fn bound_custom_api_calls_that_do_not_fit_are_refused_precisely() {
    let env = start_with(None, &bound_apis()).await;
    let id = env.create(json!({"name": "Fourth Coffee"})).await;
    let contact = env.post("contacts", r#"{"lastname": "Ortiz"}"#).await;
    assert_eq!(contact.status(), StatusCode::NO_CONTENT);
    let contact = contact.headers()["OData-EntityId"]
        .to_str()
        .unwrap()
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    let unknown = Uuid::new_v4();
    let action = "Microsoft.Dynamics.CRM.weft_GreetAccount";
    let cases: Vec<(reqwest::Response, StatusCode, &str, String)> = vec![
        (
            env.post(&format!("contacts({contact})/{action}"), r#"{"Name":"A"}"#).await,
            StatusCode::NOT_FOUND,
            api::BAD_URL,
            "weft_GreetAccount is bound to `account`, not `contact`".into(),
        ),
        (
            env.post(&format!("accounts({unknown})/{action}"), r#"{"Name":"A"}"#).await,
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!("account with id {unknown} does not exist"),
        ),
        (
            env.post(&format!("accounts/{action}"), r#"{"Name":"A"}"#).await,
            StatusCode::BAD_REQUEST,
            api::BAD_URL,
            "bound to one `account` row: call it as accounts(<GUID>)/Microsoft.Dynamics.CRM.weft_GreetAccount".into(),
        ),
        (
            env.post(
                &format!("accounts({id})/Microsoft.Dynamics.CRM.weft_GreetAccounts"),
                r#"{"Name":"A"}"#,
            )
            .await,
            StatusCode::BAD_REQUEST,
            api::BAD_URL,
            "bound to the `account` collection, not a row".into(),
        ),
        (
            env.post("weft_GreetAccount", r#"{"Name":"A"}"#).await,
            StatusCode::NOT_FOUND,
            api::BAD_URL,
            "is bound to `account`; call it as accounts(<GUID>)/Microsoft.Dynamics.CRM.weft_GreetAccount".into(),
        ),
        (
            env.post(&format!("accounts({id})/Microsoft.Dynamics.CRM.weft_Nope"), "{}").await,
            StatusCode::NOT_FOUND,
            api::BAD_URL,
            "Resource not found for the segment 'Microsoft.Dynamics.CRM.weft_Nope'".into(),
        ),
        (
            env.post(&format!("accounts({id})/{action}"), "{}").await,
            StatusCode::BAD_REQUEST,
            "0x80040203",
            "weft_GreetAccount: the required parameter Name is missing".into(),
        ),
        (
            env.post(&format!("accounts({id})/{action}"), r#"{"Name":["x"]}"#).await,
            StatusCode::BAD_REQUEST,
            api::BAD_PAYLOAD,
            "The parameter 'Name' of weft_GreetAccount expects a String value".into(),
        ),
        (
            env.post(
                &format!("accounts({id})/{action}"),
                &format!(r#"{{"Name":"A","Target":{{"@odata.type":"Microsoft.Dynamics.CRM.account","accountid":"{id}"}}}}"#),
            )
            .await,
            StatusCode::BAD_REQUEST,
            api::BAD_PAYLOAD,
            "The parameter 'Target' is not declared for weft_GreetAccount".into(),
        ),
        (
            env.client.get(env.url(&format!("accounts({id})/{action}"))).send().await.unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            api::BAD_URL,
            "GET is not supported on the action weft_GreetAccount (POST)".into(),
        ),
        (
            env.post("weft_GreetFn(Name='A')", "").await,
            StatusCode::METHOD_NOT_ALLOWED,
            api::BAD_URL,
            "POST is not supported on the function weft_GreetFn (GET)".into(),
        ),
        (
            env.client.get(env.url("weft_GreetFn(Name=Ada)")).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            api::BAD_URL,
            "The value of 'Name' is not an OData literal: Ada".into(),
        ),
        (
            env.client.get(env.url("weft_GreetFn(Name=@x)")).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            api::BAD_URL,
            "The parameter alias '@x' of 'Name' has no value in the query string".into(),
        ),
        (
            env.post(&format!("accounts({id})/{action}?$select=name"), r#"{"Name":"A"}"#).await,
            StatusCode::BAD_REQUEST,
            api::BAD_URL,
            "The query option '$select' does not apply to the action weft_GreetAccount".into(),
        ),
    ];
    for (r, status, code, needle) in cases {
        let url = r.url().to_string();
        let (got_status, got_code, message) = error_of(r).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "{url}: {message}"
        );
        assert!(message.contains(&needle), "{url}: {message}");
    }
    assert!(env.traces("bound").is_empty(), "the bound API ran");
    env.stop().await;
}

/// A Custom API call takes the same caller options as a table operation: `tag`, `MSCRMCallerID`, the
/// bypass headers (refused when malformed), and `CallerObjectId` is refused rather than ignored.
#[tokio::test(flavor = "multi_thread")]
async fn custom_api_calls_honour_the_caller_headers_and_tag() {
    let env = start_with(
        None,
        &format!(
            "{}[[step]]\nname = \"ca ten\"\nmessage = \"weft_GreetFn\"\nstage = 10\nplugin = \"probe\"\n\
             configuration = \"label=ten\"\n\
             [[step]]\nname = \"ca forty\"\nmessage = \"weft_GreetFn\"\nstage = 40\nplugin = \"probe\"\n\
             configuration = \"label=forty\"\n",
            bound_apis()
        ),
    )
    .await;
    let caller = Uuid::new_v4();
    let call = |headers: &[(&str, String)], query: &str| {
        let mut r = env
            .client
            .get(env.url(&format!("weft_GreetFn(Name='Ada'){query}")));
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.send()
    };
    let r = call(&[("MSCRMCallerID", caller.to_string())], "?tag=batch-7")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ten = env.traces("ten");
    assert_eq!(ten.len(), 1);
    assert!(ten[0].contains("\nshared=tag=batch-7\n"), "{}", ten[0]);
    assert!(ten[0].contains(&format!("\nuser={caller}\n")), "{}", ten[0]);
    assert!(
        ten[0].contains(&format!("\ninitiating={caller}\n")),
        "{}",
        ten[0]
    );

    // CustomSync: no sync step runs, the main operation (the API's own plug-in) still answers.
    let r = call(
        &[("MSCRM.BypassBusinessLogicExecution", "CustomSync".into())],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Json = r.json().await.unwrap();
    assert_eq!(body["Greeting"], "Hello, Ada");
    assert_eq!((env.traces("ten").len(), env.traces("forty").len()), (1, 1));

    // The step-ids header skips only the named step.
    let ten_id = derived_id("sdkmessageprocessingstep", "ca ten");
    let r = call(
        &[(
            "MSCRM.BypassBusinessLogicExecutionStepIds",
            ten_id.to_string(),
        )],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!((env.traces("ten").len(), env.traces("forty").len()), (1, 2));

    for (header, value, needle) in [
        (
            "MSCRM.BypassBusinessLogicExecution",
            "Everything",
            "`Everything` is not CustomSync",
        ),
        (
            "MSCRM.BypassBusinessLogicExecutionStepIds",
            "nope",
            "'nope' is not a GUID",
        ),
        (
            "MSCRMCallerID",
            "nope",
            "MSCRMCallerID: 'nope' is not a GUID",
        ),
        (
            "CallerObjectId",
            &caller.to_string(),
            "CallerObjectId is not supported",
        ),
    ] {
        let (status, code, message) =
            error_of(call(&[(header, value.to_owned())], "").await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, api::BAD_URL),
            "{message}"
        );
        assert!(message.contains(needle), "{header}: {message}");
    }
    assert_eq!((env.traces("ten").len(), env.traces("forty").len()), (1, 2));
    env.stop().await;
}

/// One `$batch` body: `items` are (change set?, requests), each request (Content-ID, request text).
fn batch_body(items: &[(bool, Vec<(&str, String)>)]) -> String {
    let mut body = String::new();
    for (change_set, requests) in items {
        body += "--batch_t\r\n";
        if *change_set {
            body += "Content-Type: multipart/mixed; boundary=changeset_t\r\n\r\n";
        }
        for (id, request) in requests {
            if *change_set {
                body += "--changeset_t\r\n";
            }
            body += "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n";
            if !id.is_empty() {
                body += &format!("Content-ID: {id}\r\n");
            }
            body += &format!("\r\n{request}\r\n");
        }
        if *change_set {
            body += "--changeset_t--\r\n";
        }
    }
    body + "--batch_t--\r\n"
}

/// The status lines of a `$batch` answer, in order, and the answer's text.
async fn batch(env: &Env, body: String, prefer: Option<&str>) -> (Vec<u16>, String) {
    let mut request = env
        .client
        .post(env.url("$batch"))
        .header("Content-Type", "multipart/mixed; boundary=batch_t")
        .body(body);
    if let Some(p) = prefer {
        request = request.header("Prefer", p);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let boundary = r.headers()["Content-Type"]
        .to_str()
        .unwrap()
        .split("boundary=")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(boundary.starts_with("batchresponse_"), "{boundary}");
    let text = r.text().await.unwrap();
    assert!(
        text.trim_end().ends_with(&format!("--{boundary}--")),
        "{text}"
    );
    let statuses = text
        .lines()
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .map(|l| l[..3].parse().unwrap())
        .collect();
    (statuses, text)
}

/// A change set commits as one: a contact and an account bound to it by `$1`, then a PATCH of `$2`, all
/// through the pipeline (the enricher fills the account number); the GET after it sees the result.
#[tokio::test(flavor = "multi_thread")]
async fn batch_change_sets_commit_together_and_reference_earlier_rows() {
    let env = start(None).await;
    let body = batch_body(&[
        (
            true,
            vec![
                (
                    "1",
                    "POST /api/data/v9.2/contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"lastname\":\"Ray\"}".into(),
                ),
                (
                    "2",
                    "POST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"Batch Co\",\"primarycontactid@odata.bind\":\"$1\"}".into(),
                ),
                (
                    "3",
                    "PATCH $2 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"numberofemployees\":12}".into(),
                ),
            ],
        ),
        (
            false,
            vec![(
                "",
                format!(
                    "GET {}?$select=name,numberofemployees,accountnumber&$expand=primarycontactid($select=lastname) HTTP/1.1\r\nAccept: application/json\r\n",
                    env.url("accounts")
                ),
            )],
        ),
    ]);
    let (statuses, text) = batch(&env, body, None).await;
    assert_eq!(statuses, [204, 204, 204, 200], "{text}");
    assert!(text.contains("changesetresponse_"), "{text}");
    assert!(text.contains("Content-ID: 2\r\n"), "{text}");
    let rows = env.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["numberofemployees"], 12);
    assert!(text.contains("\"lastname\":\"Ray\""), "{text}");
    assert!(
        text.contains("\"accountnumber\":\"ACC-BC-"),
        "the enricher ran: {text}"
    );
    env.stop().await;
}

/// A failure in a change set (here the validator's) rolls back every request of it and is its only
/// answer; the batch stops there unless `odata.continue-on-error` is preferred.
#[tokio::test(flavor = "multi_thread")]
async fn batch_change_set_failure_rolls_back_all_of_it() {
    let env = start(None).await;
    let items = |n: &str| {
        vec![
            (
                true,
                vec![
                    (
                        "1",
                        format!("POST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{{\"name\":\"First {n}\"}}"),
                    ),
                    (
                        "2",
                        "POST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\" \"}".into(),
                    ),
                ],
            ),
            (
                false,
                vec![(
                    "",
                    "POST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"After\"}"
                        .into(),
                )],
            ),
        ]
    };
    let (statuses, text) = batch(&env, batch_body(&items("a")), None).await;
    assert_eq!(statuses, [400], "{text}");
    assert!(text.contains("Account name is required."), "{text}");
    assert!(text.contains("0x80040265"), "{text}");
    assert!(
        env.rows().await.is_empty(),
        "nothing of the change set stays"
    );

    let (statuses, text) = batch(
        &env,
        batch_body(&items("b")),
        Some("odata.continue-on-error"),
    )
    .await;
    assert_eq!(statuses, [400, 204], "{text}");
    let rows = env.rows().await;
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["After"]);

    // What a change set may not hold, and malformed bodies, are refused with their reason.
    let (statuses, text) = batch(
        &env,
        batch_body(&[(true, vec![("1", "GET accounts HTTP/1.1\r\n".into())])]),
        None,
    )
    .await;
    assert_eq!(statuses, [400], "{text}");
    assert!(text.contains("cannot contain a GET"), "{text}");
    let (statuses, text) = batch(
        &env,
        batch_body(&[(
            true,
            vec![(
                "1",
                "PATCH $9 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}".into(),
            )],
        )]),
        None,
    )
    .await;
    assert_eq!(statuses, [400], "{text}");
    assert!(text.contains("'$9' names no earlier request"), "{text}");
    for (content_type, body, says) in [
        ("application/json", "{}", "multipart/mixed"),
        (
            "multipart/mixed; boundary=batch_t",
            "--batch_t\r\n",
            "closing",
        ),
    ] {
        let r = env
            .client
            .post(env.url("$batch"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "0x80048d19")
        );
        assert!(message.contains(says), "{message}");
    }
    assert_eq!(env.rows().await.len(), 1, "refused batches write nothing");
    env.stop().await;
}

/// `$filter` lambdas over HTTP on `store_extra`'s store: `any` with and without a condition, `not any()`,
/// `all` (true for no related rows, false for a related row the condition is unknown for), over an implicit
/// 1:N (`lk_account_primarycontactid`) and a declared N:N, nested, and the errors naming what is wrong.
async fn lambda_filters(store_extra: &str) {
    let nn = "[[relationship]]\nname = \"account_contacts\"\ntype = \"ManyToMany\"\nentity1 = \"account\"\nentity2 = \"contact\"\n";
    let owned = start_with(None, &format!("{nn}\n{store_extra}")).await;
    let env = &owned;
    let contact = |name: &'static str| async move {
        let r = env
            .post("contacts", &json!({"lastname": name}).to_string())
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let url = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
        Uuid::parse_str(&url[url.len() - 37..url.len() - 1]).unwrap()
    };
    let (one, two, _three) = (
        contact("One").await,
        contact("Two").await,
        contact("Three").await,
    );
    let account = |name: &'static str, c: Uuid, employees: Json| {
        env.create(json!({
            "name": name, "numberofemployees": employees,
            "primarycontactid@odata.bind": format!("/contacts({c})"),
        }))
    };
    let a = account("A", one, json!(10)).await;
    account("B", one, json!(20)).await;
    account("C", two, Json::Null).await;
    let r = env
        .client
        .post(env.url(&format!("accounts({a})/account_contacts/$ref")))
        .json(&json!({"@odata.id": format!("contacts({two})")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);

    let names = |set: &'static str, filter: String| async move {
        let order = if set == "contacts" {
            "lastname"
        } else {
            "name"
        };
        let url = format!(
            "{set}?$select={order}&$orderby={order}&$filter={}",
            filter.replace(' ', "%20")
        );
        let (status, body) = env.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[order].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let by_account = "lk_account_primarycontactid";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "contacts",
            format!("{by_account}/any(a:a/name eq 'A')"),
            vec!["One"],
        ),
        (
            "contacts",
            format!("{by_account}/any()"),
            vec!["One", "Two"],
        ),
        ("contacts", format!("not {by_account}/any()"), vec!["Three"]),
        // Two's account has no employee count: unknown, so not all of them match.
        (
            "contacts",
            format!("{by_account}/all(a:a/numberofemployees ge 10)"),
            vec!["One", "Three"],
        ),
        (
            "contacts",
            format!(
                "lastname ne 'One' and {by_account}/all(x: x/numberofemployees gt 15 or x/name eq 'C')"
            ),
            vec!["Three", "Two"],
        ),
        (
            "accounts",
            "account_contacts/any(c:c/lastname eq 'Two')".into(),
            vec!["A"],
        ),
        (
            "contacts",
            "account_contacts/any(a:startswith(a/name,'A'))".into(),
            vec!["Two"],
        ),
        (
            "contacts",
            format!("{by_account}/any(a:a/account_contacts/any(c:c/lastname eq 'Two'))"),
            vec!["One"],
        ),
    ];
    for (set, filter, want) in cases {
        assert_eq!(
            names(set, filter.clone()).await,
            want,
            "{set}?$filter={filter}"
        );
    }

    for (path, why) in [
        (
            format!("contacts?$filter={by_account}/any(a:name%20eq%20'A')"),
            "'a/<property>'",
        ),
        (
            "accounts?$filter=primarycontactid/any(c:c/lastname%20eq%20'x')".to_owned(),
            "single-valued",
        ),
        (
            format!("contacts?$filter={by_account}/all()"),
            "all needs a condition",
        ),
    ] {
        let r = env.client.get(env.url(&path)).send().await.unwrap();
        let (status, code, message) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "0x80060888"),
            "{path}"
        );
        assert!(message.contains(why), "{path}: {message}");
    }
    owned.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_filters_on_sqlite() {
    lambda_filters("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_filters_on_postgres() {
    // The test database's client is a blocking one: created and dropped off the async threads.
    let Some(db) = tokio::task::block_in_place(|| {
        weft_store::TestDatabase::create("api::lambda_filters_on_postgres")
    }) else {
        return;
    };
    lambda_filters(&format!("[store]\nurl = \"{}\"\n", db.url())).await;
    tokio::task::block_in_place(|| drop(db));
}

/// Alternate keys name the related row in `$ref` bodies (`{"@odata.id": "contacts(lastname='Kim')"}`, for a
/// lookup and an N:N) and in the `@odata.bind`s of records nested in a deep insert; a key no row has
/// answers 404 `0x80040217`.
#[tokio::test(flavor = "multi_thread")]
async fn alternate_keys_in_ref_and_deep_insert_bodies() {
    let extra = "[[table.key]]\nname = \"contact_lastname\"\nattributes = [\"lastname\"]\n\
                 [[relationship]]\nname = \"account_contacts\"\ntype = \"ManyToMany\"\nentity1 = \"account\"\nentity2 = \"contact\"\n";
    let env = start_with(None, extra).await;
    let r = env.post("contacts", r#"{"lastname": "Kim"}"#).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, kim) = env.get("contacts(lastname='Kim')?$select=contactid").await;
    let kim = kim["contactid"].as_str().unwrap().to_owned();
    let account = env.create(json!({"name": "Fourth Coffee"})).await;
    let send = |method: reqwest::Method, path: String, body: Json| {
        env.client
            .request(method, env.url(&path))
            .json(&body)
            .send()
    };

    let r = send(
        reqwest::Method::PUT,
        format!("accounts({account})/primarycontactid/$ref"),
        json!({"@odata.id": "contacts(lastname='Kim')"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let (_, row) = env
        .get(&format!(
            "accounts({account})?$select=_primarycontactid_value"
        ))
        .await;
    assert_eq!(row["_primarycontactid_value"], json!(kim));

    let r = send(
        reqwest::Method::POST,
        format!("accounts({account})/account_contacts/$ref"),
        json!({"@odata.id": format!("{}/contacts(lastname='Kim')", env.base)}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let (_, linked) = env
        .get(&format!(
            "accounts({account})/account_contacts?$select=lastname"
        ))
        .await;
    assert_eq!(linked["value"][0]["lastname"], "Kim", "{linked}");

    let r = send(
        reqwest::Method::PUT,
        format!("accounts({account})/primarycontactid/$ref"),
        json!({"@odata.id": "contacts(lastname='Nobody')"}),
    )
    .await
    .unwrap();
    let (status, code, message) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "0x80040217")
    );
    assert!(message.contains("lastname='Nobody'"), "{message}");

    // Deep insert: the nested account's bind names Kim by key.
    let r = env
        .post(
            "contacts",
            &json!({
                "lastname": "Deep",
                "account_contacts": [
                    {"name": "Nested", "primarycontactid@odata.bind": "/contacts(lastname='Kim')"}
                ]
            })
            .to_string(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let (_, nested) = env
        .get("accounts?$filter=name%20eq%20'Nested'&$select=_primarycontactid_value")
        .await;
    assert_eq!(
        nested["value"][0]["_primarycontactid_value"],
        json!(kim),
        "{nested}"
    );
    env.stop().await;
}

/// FetchXML `<link-entity>`: over a lookup, `inner` and `outer` joins answer the linked attributes as
/// `alias.attribute` (inner leaving out rows without the related one); over a 1:N relationship, `exists`
/// (with the link's filter) and `not any` filter the rows; other shapes answer 400 naming what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_xml_link_entities() {
    let env = start(None).await;
    let env = &env;
    let contact = |name: &'static str| async move {
        let r = env
            .post("contacts", &json!({"lastname": name}).to_string())
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let url = r.headers()["OData-EntityId"].to_str().unwrap().to_owned();
        Uuid::parse_str(&url[url.len() - 37..url.len() - 1]).unwrap()
    };
    let (one, two) = (contact("One").await, contact("Two").await);
    contact("Three").await;
    for (name, c) in [("A", Some(one)), ("B", Some(two)), ("C", None)] {
        let mut body = json!({"name": name});
        if let Some(c) = c {
            body["primarycontactid@odata.bind"] = json!(format!("/contacts({c})"));
        }
        env.create(body).await;
    }
    let fetch = |set: &'static str, xml: String| async move {
        let r = env
            .client
            .get(env.url(set))
            .query(&[("fetchXml", xml)])
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Json>().await.unwrap())
    };
    let accounts = |link_type: &str| {
        format!(
            "<fetch><entity name='account'><attribute name='name'/><order attribute='name'/>\
             <link-entity name='contact' from='contactid' to='primarycontactid' link-type='{link_type}' alias='c'>\
             <attribute name='lastname'/></link-entity></entity></fetch>"
        )
    };
    let (status, inner) = fetch("accounts", accounts("inner")).await;
    assert_eq!(status, StatusCode::OK, "{inner}");
    let rows = inner["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{inner}");
    assert_eq!(
        (&rows[0]["name"], &rows[0]["c.lastname"]),
        (&json!("A"), &json!("One"))
    );
    assert_eq!(
        (&rows[1]["name"], &rows[1]["c.lastname"]),
        (&json!("B"), &json!("Two"))
    );
    let (status, outer) = fetch("accounts", accounts("outer")).await;
    assert_eq!(status, StatusCode::OK, "{outer}");
    let rows = outer["value"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{outer}");
    assert_eq!(rows[2]["name"], "C");
    assert!(rows[2].get("c.lastname").is_none(), "{outer}");

    let contacts = |link_type: &str, filter: &str| {
        format!(
            "<fetch><entity name='contact'><attribute name='lastname'/><order attribute='lastname'/>\
             <link-entity name='account' from='primarycontactid' to='contactid' link-type='{link_type}'>\
             {filter}</link-entity></entity></fetch>"
        )
    };
    let lastnames = |body: &Json| -> Vec<String> {
        body["value"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|r| r["lastname"].as_str().unwrap().to_owned())
            .collect()
    };
    let named_b = "<filter><condition attribute='name' operator='eq' value='B'/></filter>";
    let (_, exists) = fetch("contacts", contacts("exists", named_b)).await;
    assert_eq!(lastnames(&exists), ["Two"]);
    let (_, any) = fetch("contacts", contacts("any", "")).await;
    assert_eq!(lastnames(&any), ["One", "Two"]);
    let (_, none) = fetch("contacts", contacts("not any", "")).await;
    assert_eq!(lastnames(&none), ["Three"]);

    for (set, xml, why) in [
        ("contacts", contacts("inner", ""), "would repeat the row"),
        (
            "accounts",
            accounts("inner").replace(
                "<attribute name='lastname'/>",
                "<filter><condition attribute='lastname' operator='eq' value='x'/></filter>",
            ),
            "not supported yet",
        ),
        (
            "accounts",
            accounts("inner").replace("to='primarycontactid'", "to='name'"),
            "a link goes from",
        ),
        ("accounts", accounts("full"), "link-type 'full'"),
    ] {
        let r = env
            .client
            .get(env.url(set))
            .query(&[("fetchXml", xml.clone())])
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "0x80060888"),
            "{xml}"
        );
        assert!(message.contains(why), "{xml}: {message}");
    }
}
