//! Registration written through the Web API over real HTTP on loopback, and what a restart does with it:
//! steps created and deleted, service endpoints created, changed and deleted (secrets write-only), a
//! component replaced — each kept across a restart until `weft.toml` changes the same entry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use uuid::Uuid;
use weft_host::api::{self, ApiServer};
use weft_host::registration::{EXAMPLE_ACCOUNT_TABLE, derived_id};
use weft_host::runtime::Runtime;
use weft_host::sandbox::sha256_hex;
use weft_store::Read;
use weft_store::StoreExt;
use weft_store::system::{JobFilter, TraceFilter};

use crate::fixtures;

/// Distinctive, so a leak anywhere in a body is found by a substring search.
const HOOK_SECRET: &str = "hook-secret-93c1f07a";

/// A data directory and its `weft.toml`, started and restarted as one host would be.
struct Host {
    dir: tempfile::TempDir,
    runtime: Option<Arc<Runtime>>,
    server: Option<ApiServer>,
    base: String,
    client: reqwest::Client,
}

impl Host {
    /// Writes `weft.toml`: the account table, the enricher (its component copied into the directory, so a
    /// test can change the file) and the probe plug-in, and the file step "enrich" with `step_extra` lines.
    async fn start(step_extra: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(component_copy(dir.path()), fixtures::bytes("enricher")).unwrap();
        let mut host = Host {
            dir,
            runtime: None,
            server: None,
            base: String::new(),
            client: reqwest::Client::new(),
        };
        host.write_config(step_extra);
        host.open().await;
        host
    }

    fn write_config(&self, step_extra: &str) {
        self.write_config_with(step_extra, "");
    }

    /// [`Host::write_config`] with more entries (`extra`) after the step.
    fn write_config_with(&self, step_extra: &str, extra: &str) {
        let config = format!(
            "{EXAMPLE_ACCOUNT_TABLE}\n[[plugin]]\nname = \"enricher\"\ncomponent = \"enricher-copy.wasm\"\n\
             [[plugin]]\nname = \"probe\"\ncomponent = \"{}\"\n\
             [[step]]\nname = \"enrich\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\n\
             plugin = \"enricher\"\n{step_extra}\n{extra}\n",
            fixtures::component("probe").display()
        );
        std::fs::write(self.dir.path().join("weft.toml"), config).unwrap();
    }

    async fn open(&mut self) {
        let config = self.dir.path().join("weft.toml");
        let data = self.dir.path().join("data");
        let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &data))
            .await
            .unwrap()
            .unwrap();
        let runtime = Arc::new(runtime);
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (addr, server) = api::serve(Arc::clone(&runtime), bind, None).await.unwrap();
        self.base = format!("http://{addr}/api/data/v9.2");
        self.runtime = Some(runtime);
        self.server = Some(server);
    }

    /// Stops the server, closes the store and opens both again on the same directory.
    async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
        self.runtime = None;
        self.open().await;
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().unwrap()
    }

    async fn send(&self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let r = self
            .client
            .request(method, format!("{}/{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("OData-EntityId")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, location.unwrap_or(text))
    }

    /// [`Host::send`] with its own Content-Type (a `$batch`); answers the status and the body.
    async fn send_typed(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let r = self
            .client
            .request(method, format!("{}/{path}", self.base))
            .header("Content-Type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> Json {
        let (status, body) = self.send(Method::GET, path, "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Creates an account; returns the account number the pipeline stored.
    async fn create_account(&self, name: &str) -> Json {
        let (status, location) = self
            .send(Method::POST, "accounts", &json!({"name": name}).to_string())
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
        let path = location.rsplit('/').next().unwrap().to_owned();
        self.get(&path).await["accountnumber"].clone()
    }

    /// The trace texts of plug-in assembly `plugin`, oldest first.
    fn traces_of(&self, plugin: &str) -> Vec<String> {
        let logs = tokio::task::block_in_place(|| {
            self.runtime()
                .store
                .read(|r: &dyn Read| r.trace_logs(&TraceFilter::default()))
        })
        .unwrap();
        // Newest first from the store: oldest first here.
        logs.into_iter()
            .rev()
            .filter(|t| t.entry.plugin == plugin)
            .map(|t| t.entry.trace)
            .collect()
    }

    async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

fn component_copy(dir: &Path) -> PathBuf {
    dir.join("enricher-copy.wasm")
}

fn id_in(location: &str) -> Uuid {
    let inner = location
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not an entity URL: {location}"));
    Uuid::parse_str(inner).unwrap()
}

fn error_message(body: &str) -> String {
    let v: Json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// A step POSTed through the API runs at once and after a restart; a step PATCHed and a component replaced
/// through the API stay so after a restart; an edit of weft.toml wins over the runtime change of the
/// entry it edits (the step's rank, then the component) and leaves the others alone.
#[tokio::test(flavor = "multi_thread")]
async fn api_changes_survive_restarts_until_the_file_changes_them() {
    let mut host = Host::start("").await;
    let probe_step = json!({
        "name": "probe after create", "message": "Create", "table": "account", "stage": 40,
        "plugin": "probe", "configuration": "label=api", "secure_configuration": "probe-s3cret",
    });
    let (status, location) = host
        .send(Method::POST, api::STEPS, &probe_step.to_string())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    let probe_id = id_in(&location);
    assert!(
        location.contains("/sdkmessageprocessingsteps("),
        "{location}"
    );
    let number = host.create_account("Fourth Coffee").await;
    assert!(number.as_str().unwrap().starts_with("ACC-FC-"), "{number}");
    assert_eq!(host.traces_of("probe").len(), 1, "the new step did not run");

    let enrich = derived_id("sdkmessageprocessingstep", "enrich");
    let (status, body) = host
        .send(
            Method::PATCH,
            &format!("{}({enrich})", api::STEPS),
            r#"{"rank":7}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let enricher = derived_id("pluginassembly", "enricher");
    let validator = fixtures::bytes("validator");
    let r = host
        .client
        .put(format!(
            "{}/{}({enricher})/content",
            host.base,
            api::ASSEMBLIES
        ))
        .header("Content-Type", "application/wasm")
        .body(validator.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    host.restart().await;
    assert_eq!(
        host.runtime().pipeline.startup_report(),
        &Default::default(),
        "an unchanged file replaced runtime changes"
    );
    let step = host.get(&format!("{}({probe_id})", api::STEPS)).await;
    assert_eq!(step["configuration"], "label=api");
    assert!(!step.to_string().contains("probe-s3cret"));
    assert_eq!(
        host.get(&format!("{}({enrich})", api::STEPS)).await["rank"],
        7
    );
    let assembly = host.get(&format!("{}({enricher})", api::ASSEMBLIES)).await;
    assert_eq!(assembly["sourcehash"], json!(sha256_hex(&validator)));
    let number = host.create_account("Litware").await;
    assert!(number.is_null(), "the file's enricher ran again: {number}");
    assert_eq!(
        host.traces_of("enricher").last().unwrap(),
        "Validator: account is valid."
    );
    assert_eq!(
        host.traces_of("probe").len(),
        2,
        "the API's step did not survive the restart"
    );

    // The file changes the enrich step: its declaration wins (rank back to 1); the rest stands.
    host.write_config("configuration = \"edited\"");
    host.restart().await;
    let report = host.runtime().pipeline.startup_report().clone();
    assert_eq!(
        report.replaced,
        vec!["step \"enrich\": changed in the file, replacing the stored one".to_owned()]
    );
    assert!(report.removed.is_empty(), "{report:?}");
    let step = host.get(&format!("{}({enrich})", api::STEPS)).await;
    assert_eq!(
        (step["rank"].clone(), step["configuration"].clone()),
        (json!(1), json!("edited"))
    );
    assert_eq!(
        host.get(&format!("{}({enricher})", api::ASSEMBLIES)).await["sourcehash"],
        json!(sha256_hex(&validator)),
        "an edit of another entry undid the replaced component"
    );
    assert_eq!(
        host.get(&format!("{}({probe_id})", api::STEPS)).await["name"],
        "probe after create"
    );

    // The file's component changes: the file's bytes win over the replacement.
    let probe_bytes = fixtures::bytes("probe");
    std::fs::write(component_copy(host.dir.path()), &probe_bytes).unwrap();
    host.restart().await;
    assert_eq!(
        host.runtime().pipeline.startup_report().replaced,
        vec![
            "plug-in \"enricher\": its component file changed, so it replaces the component given \
             at runtime"
                .to_owned()
        ]
    );
    assert_eq!(
        host.get(&format!("{}({enricher})", api::ASSEMBLIES)).await["sourcehash"],
        json!(sha256_hex(&probe_bytes))
    );
    host.stop().await;
}

/// POST refuses a step the file would refuse, with the same reason and nothing registered; DELETE
/// unregisters a file step for the next operation and for later starts, and 404s an unknown one.
#[tokio::test(flavor = "multi_thread")]
async fn steps_are_validated_on_create_and_deleted_for_good() {
    let mut host = Host::start("").await;
    let base = json!({"name": "x", "message": "Create", "table": "account", "stage": 40, "plugin": "probe"});
    let with = |patch: Json| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        v.to_string()
    };
    for (body, needle) in [
        (
            with(json!({"plugin": "nope"})),
            "plug-in `nope` is not declared",
        ),
        (
            with(json!({"stage": 20, "mode": 1})),
            "must be registered in stage 40",
        ),
        (
            with(json!({"table": "contact"})),
            "table `contact` is not declared",
        ),
        (
            with(json!({"name": "enrich", "id": Uuid::new_v4()})),
            "a step named \"enrich\"",
        ),
        (
            with(json!({"secure_configuration": 31337})),
            "'secure_configuration' must be a string",
        ),
        (with(json!({"colour": "red"})), "unknown field `colour`"),
        (
            with(json!({"image": [{"alias": "pre", "type": "pre"}]})),
            "Create has no pre-image",
        ),
        ("[1,2]".to_owned(), "not a step declaration"),
    ] {
        let (status, answer) = host.send(Method::POST, api::STEPS, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(error_message(&answer).contains(needle), "{body}: {answer}");
        assert!(!answer.contains("31337"), "a secret echoed: {answer}");
    }
    // The same name without an id is the same (derived) id as the file's step: Dataverse's duplicate 412.
    let (status, answer) = host
        .send(Method::POST, api::STEPS, &with(json!({"name": "enrich"})))
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{answer}");
    assert_eq!(
        host.get(api::STEPS).await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let enrich = derived_id("sdkmessageprocessingstep", "enrich");
    let path = format!("{}({enrich})", api::STEPS);
    let (status, body) = host.send(Method::DELETE, &path, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(host.create_account("Fourth Coffee").await.is_null());
    let (status, _) = host.send(Method::DELETE, &path, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    host.restart().await;
    let (status, _) = host.send(Method::GET, &path, "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the deleted file step came back"
    );
    assert!(host.create_account("Litware").await.is_null());
    host.stop().await;
}

/// serviceendpoints: POST registers an endpoint (checked like the delivery service would, secrets never
/// answered), PATCH changes columns and keeps the secrets it leaves out, refuses a change that breaks the
/// endpoint; a step can post to it; DELETE is refused while that step exists and works after; an endpoint
/// made through the API outlives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn serviceendpoints_are_created_changed_and_deleted() {
    let mut host = Host::start("").await;
    let hook = json!({
        "name": "hook", "contract": 8, "messageformat": 2, "authtype": 4,
        "url": "http://127.0.0.1:9/hook", "authvalue": HOOK_SECRET,
    });
    let (status, location) = host
        .send(Method::POST, "serviceendpoints", &hook.to_string())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    let id = id_in(&location);
    let path = format!("serviceendpoints({id})");
    let row = host.get(&path).await;
    assert_eq!(
        (row["contract"].clone(), row["isauthvalueset"].clone()),
        (json!(8), json!(true))
    );
    assert!(!row.to_string().contains(HOOK_SECRET));

    for (body, needle) in [
        (
            json!({"name": "q", "contract": 2, "messageformat": 2, "authtype": 2}).to_string(),
            "service endpoint 'q': auth type SAS Key (2) needs saskeyname",
        ),
        (
            json!({"name": "hook", "serviceendpointid": uuid::Uuid::new_v4(), "contract": 8,
                   "messageformat": 2, "authtype": 4, "url": "http://127.0.0.1:9/x", "authvalue": "v"})
            .to_string(),
            "already registered",
        ),
        (
            json!({"name": "w", "contract": 8, "messageformat": 2, "authtype": 4,
                   "url": "http://127.0.0.1:9/x", "authvalue": 12345678})
            .to_string(),
            "'authvalue' must be a string",
        ),
        (
            json!({"name": "w", "isauthvalueset": true}).to_string(),
            "read-only",
        ),
        (
            json!({"name": "w", "contract": 8, "messageformat": 2}).to_string(),
            "'authtype'",
        ),
    ] {
        let (status, answer) = host.send(Method::POST, "serviceendpoints", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(error_message(&answer).contains(needle), "{body}: {answer}");
        assert!(!answer.contains(HOOK_SECRET) && !answer.contains("12345678"), "{answer}");
    }
    // The same name without an id derives the same id: Dataverse's duplicate-record 412.
    let (status, answer) = host
        .send(Method::POST, "serviceendpoints", &hook.to_string())
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{answer}");
    assert_eq!(
        host.get("serviceendpoints").await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (status, body) = host
        .send(
            Method::PATCH,
            &path,
            r#"{"url":"http://127.0.0.1:9/other"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let row = host.get(&path).await;
    assert_eq!(
        (row["url"].clone(), row["isauthvalueset"].clone()),
        (json!("http://127.0.0.1:9/other"), json!(true))
    );
    let (status, body) = host
        .send(Method::PATCH, &path, r#"{"authvalue":null}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(host.get(&path).await["isauthvalueset"], json!(true));

    // `return=representation`: 201 with the row (no secret) and the URL.
    let r = host
        .client
        .post(format!("{}/serviceendpoints", host.base))
        .header("Prefer", "return=representation")
        .json(&json!({
            "name": "second hook", "contract": 8, "messageformat": 2, "authtype": 4,
            "url": "http://127.0.0.1:9/second", "authvalue": HOOK_SECRET,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let second = id_in(r.headers()["OData-EntityId"].to_str().unwrap());
    let text = r.text().await.unwrap();
    assert!(!text.contains(HOOK_SECRET), "{text}");
    let row: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (row["serviceendpointid"].clone(), row["authtype"].clone()),
        (json!(second), json!(4))
    );
    let (status, _) = host
        .send(Method::DELETE, &format!("serviceendpoints({second})"), "")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let step = json!({
        "name": "to hook", "message": "Create", "table": "account", "stage": 40, "mode": 1,
        "service_endpoint": "hook",
    });
    let (status, location) = host.send(Method::POST, api::STEPS, &step.to_string()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    let step_id = id_in(&location);
    host.create_account("Fourth Coffee").await;
    let jobs = tokio::task::block_in_place(|| {
        host.runtime()
            .store
            .read(|r: &dyn Read| r.system_jobs(&JobFilter::default()))
    })
    .unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "the step posting to the new endpoint queued no job"
    );
    assert_eq!(jobs[0].owning_extension_id, Some(step_id));

    host.restart().await;
    assert_eq!(host.get(&path).await["url"], "http://127.0.0.1:9/other");
    let (status, body) = host.send(Method::DELETE, &path, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = host
        .send(Method::DELETE, &format!("{}({step_id})", api::STEPS), "")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = host.send(Method::DELETE, &path, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = host.send(Method::GET, &path, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    host.stop().await;
}

/// A service endpoint weft.toml declares follows the same rule: a runtime PATCH stands across a restart, a
/// runtime DELETE too — until a step the file adds posts to it, which writes it again; entries the file
/// drops are deleted, and the start-up report names each.
#[tokio::test(flavor = "multi_thread")]
async fn file_endpoints_follow_the_same_rule() {
    let endpoint = format!(
        "[[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\nauth_type = 4\n\
         url = \"http://127.0.0.1:9/a\"\nauth_value = \"{HOOK_SECRET}\"\n"
    );
    let step = "[[step]]\nname = \"to hook\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\n\
                mode = 1\nservice_endpoint = \"hook\"\n";
    let mut host = Host::start("").await;
    host.write_config_with("", &endpoint);
    host.restart().await;
    let path = format!(
        "serviceendpoints({})",
        derived_id("serviceendpoint", "hook")
    );
    let (status, body) = host
        .send(Method::PATCH, &path, r#"{"url":"http://127.0.0.1:9/b"}"#)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.restart().await;
    assert_eq!(host.get(&path).await["url"], "http://127.0.0.1:9/b");
    assert_eq!(
        host.runtime().pipeline.startup_report(),
        &Default::default()
    );

    let (status, body) = host.send(Method::DELETE, &path, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    host.restart().await;
    let (status, _) = host.send(Method::GET, &path, "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the deleted endpoint came back"
    );

    host.write_config_with("", &format!("{endpoint}{step}"));
    host.restart().await;
    let row = host.get(&path).await;
    assert_eq!(
        (row["url"].clone(), row["isauthvalueset"].clone()),
        (json!("http://127.0.0.1:9/a"), json!(true))
    );
    assert_eq!(
        host.runtime().pipeline.startup_report().replaced,
        vec![
            "service endpoint \"hook\": deleted at runtime, written again for a step that posts to it"
                .to_owned()
        ]
    );

    host.write_config("");
    host.restart().await;
    let report = host.runtime().pipeline.startup_report().clone();
    assert_eq!(
        report.removed,
        vec![
            "step \"to hook\"".to_owned(),
            "service endpoint \"hook\"".to_owned()
        ]
    );
    let (status, _) = host.send(Method::GET, &path, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    host.stop().await;
}

/// `POST EntityDefinitions` as Dataverse documents it: a table with its primary name column.
fn widget_table() -> String {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "new_Widget",
        "DisplayName": {"LocalizedLabels": [{"Label": "Widget", "LanguageCode": 1033}]},
        "OwnershipType": "UserOwned",
        "HasActivities": false,
        "Attributes": [
            {"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "SchemaName": "new_Name",
             "MaxLength": 100, "IsPrimaryName": true},
            {"@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata", "SchemaName": "new_Count",
             "MinValue": 0, "MaxValue": 1000}
        ]
    })
    .to_string()
}

/// The error code and message of a failed answer.
fn error_code(body: &str) -> (String, String) {
    let v: Json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (
        v["error"]["code"].as_str().unwrap().to_owned(),
        v["error"]["message"].as_str().unwrap().to_owned(),
    )
}

/// A table and a column created through the Web API are usable at once (CRUD on the new entity set, in
/// `EntityDefinitions` and `$metadata`), keep their rows and MetadataIds across a restart, refuse a taken
/// name and bad bodies with Dataverse's errors, and a deleted table is gone for good; on `store` (None: the
/// data directory's SQLite).
async fn tables_created_through_the_api(store: Option<&str>) {
    let store_section = store.map_or(String::new(), |url| format!("[store]\nurl = \"{url}\"\n"));
    let mut host = Host::start("").await;
    host.write_config_with("", &store_section);
    host.restart().await;
    let table_id = weft_odata::metadata_id("entity", &["new_widget"]);

    let (status, location) = host
        .send(Method::POST, "EntityDefinitions", &widget_table())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    assert!(
        location.ends_with(&format!("/EntityDefinitions({table_id})")),
        "{location}"
    );
    let definition = host
        .get("EntityDefinitions(LogicalName='new_widget')?$select=EntitySetName,PrimaryNameAttribute")
        .await;
    assert_eq!(definition["EntitySetName"], "new_widgets");
    assert_eq!(definition["PrimaryNameAttribute"], "new_name");
    assert_eq!(definition["MetadataId"], table_id.to_string());
    let (status, csdl) = host.send(Method::GET, "$metadata", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(csdl.contains(r#"<EntityType Name="new_widget""#), "{csdl}");

    let (status, location) = host
        .send(
            Method::POST,
            "new_widgets",
            r#"{"new_name":"Sprocket","new_count":3}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    let row = id_in(&location);
    let (status, body) = host
        .send(Method::POST, "new_widgets", r#"{"new_count":1001}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "MaxValue is kept: {body}");

    // A taken name, a body without a primary name column, a column for a table weft.toml declares.
    let (status, body) = host
        .send(Method::POST, "EntityDefinitions", &widget_table())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, "0x80044363", "{body}");
    let no_primary = widget_table().replace(r#""IsPrimaryName":true"#, r#""IsPrimaryName":false"#);
    let (status, body) = host
        .send(Method::POST, "EntityDefinitions", &no_primary)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (code, message) = error_code(&body);
    assert_eq!(code, "0x80048d19");
    assert!(message.contains("IsPrimaryName"), "{message}");
    let note = json!({"@odata.type": "Microsoft.Dynamics.CRM.MemoAttributeMetadata",
                      "SchemaName": "new_Note", "MaxLength": 500})
    .to_string();
    let (status, body) = host
        .send(
            Method::POST,
            "EntityDefinitions(LogicalName='account')/Attributes",
            &note,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_code(&body).1.contains("weft.toml"), "{body}");

    let (status, location) = host
        .send(
            Method::POST,
            &format!("EntityDefinitions({table_id})/Attributes"),
            &note,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    assert!(location.contains("/Attributes("), "{location}");
    let (status, body) = host
        .send(
            Method::PATCH,
            &format!("new_widgets({row})"),
            r#"{"new_note":"handle with care"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = host
        .send(
            Method::POST,
            &format!("EntityDefinitions({table_id})/Attributes"),
            &note,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body).0, "0x80044363", "{body}");

    // A second table, deleted again.
    let gadget = widget_table().replace("new_Widget", "new_Gadget");
    let (status, body) = host.send(Method::POST, "EntityDefinitions", &gadget).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = host
        .send(Method::POST, "new_gadgets", r#"{"new_name":"Gone"}"#)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Not while a step is registered on it (the registration would no longer fit at the next start).
    let gadget_step = json!({
        "name": "probe gadgets", "message": "Create", "table": "new_gadget", "stage": 40,
        "plugin": "probe", "configuration": "label=gadget",
    });
    let (status, location) = host
        .send(Method::POST, api::STEPS, &gadget_step.to_string())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{location}");
    let delete_gadget = "EntityDefinitions(LogicalName='new_gadget')";
    let (status, body) = host.send(Method::DELETE, delete_gadget, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(&body).contains("the step 'probe gadgets'"),
        "{body}"
    );
    let step_path = format!("{}({})", api::STEPS, id_in(&location));
    let (status, body) = host.send(Method::DELETE, &step_path, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Nor inside a $batch change set (the table change would wait for the change set's transaction).
    let boundary = "batch_1";
    let batch = format!(
        "--{boundary}\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n\
         --changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\
         Content-ID: 1\r\n\r\nDELETE {delete_gadget} HTTP/1.1\r\n\r\n\r\n--changeset_1--\r\n--{boundary}--\r\n"
    );
    let (status, body) = host
        .send_typed(
            Method::POST,
            "$batch",
            &format!("multipart/mixed; boundary={boundary}"),
            &batch,
        )
        .await;
    assert!(
        body.contains("cannot be changed in a change set") && body.contains("0x80060888"),
        "{status}: {body}"
    );
    let (status, body) = host.send(Method::DELETE, delete_gadget, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = host.send(Method::GET, "new_gadgets", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = host
        .send(
            Method::DELETE,
            "EntityDefinitions(LogicalName='account')",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    host.restart().await;
    let kept = host
        .get(&format!(
            "new_widgets({row})?$select=new_name,new_count,new_note"
        ))
        .await;
    assert_eq!(kept["new_name"], "Sprocket");
    assert_eq!(kept["new_count"], 3);
    assert_eq!(kept["new_note"], "handle with care");
    let definition = host.get(&format!("EntityDefinitions({table_id})")).await;
    assert_eq!(definition["LogicalName"], "new_widget");
    let (status, _) = host
        .send(
            Method::GET,
            "EntityDefinitions(LogicalName='new_gadget')",
            "",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a deleted table stays deleted"
    );
    // The gadget's name is free again, its old rows gone with it.
    let (status, body) = host.send(Method::POST, "EntityDefinitions", &gadget).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let gadgets = host.get("new_gadgets").await;
    assert_eq!(gadgets["value"], json!([]));

    // weft.toml declaring the table's name wins at the next start: the file's definition, its column added.
    let declared = "[[table]]\nlogical_name = \"new_widget\"\nentity_set_name = \"new_widgets\"\n\
                    primary_id_attribute = \"new_widgetid\"\nprimary_name_attribute = \"new_name\"\n\
                    [[table.attribute]]\nlogical_name = \"new_name\"\ntype = \"String\"\n\
                    [[table.attribute]]\nlogical_name = \"new_color\"\ntype = \"String\"\n";
    host.write_config_with("", &format!("{store_section}\n{declared}"));
    host.restart().await;
    let kept = host
        .get(&format!("new_widgets({row})?$select=new_name,new_color"))
        .await;
    assert_eq!(kept["new_name"], "Sprocket");
    assert_eq!(kept["new_color"], Json::Null);
    let (status, body) = host
        .send(
            Method::DELETE,
            &format!("EntityDefinitions({table_id})"),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the file's table: {body}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_created_through_the_api_persist_on_sqlite() {
    tables_created_through_the_api(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_created_through_the_api_persist_on_postgres() {
    // The test database's client is a blocking one: created and dropped off the async threads.
    let Some(db) = tokio::task::block_in_place(|| {
        weft_store::TestDatabase::create(
            "registration_api::tables_created_through_the_api_persist_on_postgres",
        )
    }) else {
        return;
    };
    tables_created_through_the_api(Some(db.url())).await;
    tokio::task::block_in_place(|| drop(db));
}
