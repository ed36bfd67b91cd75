//! The Web API's system sets over real HTTP on loopback: `asyncoperations` (a webhook post that fails
//! against a closed port leaves a Waiting job, listed, cancelled and refused like Dataverse's System Jobs)
//! and `serviceendpoints` (secrets write-only; TriggerServiceEndpointCheck against a running and a
//! stopped weft bus).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use uuid::Uuid;
use weft_bus::sas::SasPolicy;
use weft_bus::{BusConfig, QueueConfig};
use weft_host::api::{self, ApiServer};
use weft_host::delivery::{Delivery, DeliveryRunner};
use weft_host::registration::derived_id;
use weft_host::runtime::Runtime;
use weft_jobs::{AsyncService, RetryPolicy, ServiceConfig};
use weft_store::system::{JobFilter, JobStatus};
use weft_store::{Read, StoreExt};

const KEY_NAME: &str = "RootManageSharedAccessKey";
/// Distinctive so a leak anywhere in a body is found by a plain substring search.
const SAS_KEY: &str = "c3lzdGVtLWFwaS1zYXMta2V5LTQxYjk";
const HOOK_KEY: &str = "hook-secret-5e2c90";
const QUEUE: &str = "orders";

const TABLES: &str = r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"
"#;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Env {
    _dir: tempfile::TempDir,
    runtime: Arc<Runtime>,
    server: Option<ApiServer>,
    base: String,
    client: reqwest::Client,
    delivery: Arc<Delivery>,
}

/// A queue endpoint on `bus` and a webhook endpoint at `hook` (nothing listens there), with an async step
/// posting Create of account to the webhook.
async fn start(bus: SocketAddr, hook: SocketAddr) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    let toml = format!(
        "{TABLES}\n[[service_endpoint]]\nname = \"queue\"\ncontract = 2\nmessage_format = 2\nauth_type = 2\n\
         namespace_address = \"http://{bus}\"\npath = \"{QUEUE}\"\nsas_key_name = \"{KEY_NAME}\"\n\
         sas_key = \"{SAS_KEY}\"\n\
         [[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\nauth_type = 4\n\
         url = \"http://{hook}/hook\"\nauth_value = \"{HOOK_KEY}\"\n\
         [[step]]\nname = \"to hook\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\nmode = 1\n\
         service_endpoint = \"hook\"\n"
    );
    std::fs::write(&config, toml).unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::task::spawn_blocking(move || Runtime::open(&config, &data).unwrap())
        .await
        .map(Arc::new)
        .unwrap();
    let delivery = Delivery::new("weft.test.local").unwrap();
    assert!(runtime.pipeline.set_delivery(delivery.clone()));
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, server) = api::serve(Arc::clone(&runtime), bind, None).await.unwrap();
    Env {
        _dir: dir,
        runtime,
        server: Some(server),
        base: format!("http://{addr}/api/data/v9.2"),
        client: reqwest::Client::new(),
        delivery,
    }
}

impl Env {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .client
            .get(format!("{}/{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Json {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn patch(&self, path: &str, body: Json) -> (StatusCode, String) {
        let r = self
            .client
            .patch(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, String) {
        let r = self
            .client
            .post(format!("{}/{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// The asynchronous service; a failed attempt is retried only after 10 minutes.
    fn jobs(&self) -> AsyncService {
        let runner = Arc::new(DeliveryRunner::new(
            self.runtime.pipeline.clone(),
            self.delivery.clone(),
        ));
        let config = ServiceConfig {
            workers: 1,
            batch_size: 8,
            poll_interval: Duration::from_millis(50),
            retry: RetryPolicy {
                schedule_s: Some(vec![600.0]),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            ..ServiceConfig::default()
        };
        AsyncService::start(self.runtime.store.clone(), runner, config).unwrap()
    }

    /// Waits (at most 30 s) until the only job has `status`; returns its id.
    async fn wait_status(&self, status: JobStatus) -> Uuid {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let jobs = self
                .runtime
                .store
                .read(|r: &dyn Read| r.system_jobs(&JobFilter::default()))
                .unwrap();
            if let [job] = jobs.as_slice()
                && job.status == status
            {
                return job.id;
            }
            assert!(Instant::now() < deadline, "never {status:?}: {jobs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

fn error_message(body: &str) -> String {
    let v: Json = serde_json::from_str(body).unwrap();
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// A post that fails against a closed port is a Waiting job: found with the reference's query shape and
/// status filters, never with its context; cancelled by PATCH 3/32; an invalid transition gets weft-jobs'
/// message and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncoperations_list_filter_cancel() {
    let env = start(free_addr(), free_addr()).await;
    let service = env.jobs();
    let (status, body) = env.post("accounts", r#"{"name":"Contoso"}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let job = env.wait_status(JobStatus::Waiting).await;
    service.shutdown().await;
    let step = derived_id("sdkmessageprocessingstep", "to hook");

    // The reference's query, with the step id as a parameter alias.
    let v = env
        .json(&format!(
            "asyncoperations?$orderby=completedon desc&$filter=statuscode eq 10 and \
             _owningextensionid_value eq @stepid&$select=name,friendlymessage,errorcode,message,completedon\
             &@stepid={step}"
        ))
        .await;
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let row = rows[0].as_object().unwrap();
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "asyncoperationid",
            "completedon",
            "errorcode",
            "friendlymessage",
            "message",
            "name"
        ]
    );
    assert_eq!(row["asyncoperationid"], json!(job));
    assert!(row["errorcode"].is_i64(), "{v}");
    assert!(
        !row["message"].as_str().unwrap_or_default().is_empty(),
        "{v}"
    );
    assert!(
        row["completedon"].is_null(),
        "a Waiting job is not complete"
    );

    // Full rows: Suspended / Waiting with a next attempt, and never the serialized context.
    let (status, text) = env.get("asyncoperations?$filter=statecode eq 1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("\"data"), "{text}");
    assert!(!text.contains(HOOK_KEY), "{text}");
    let v: Json = serde_json::from_str(&text).unwrap();
    let row = &v["value"][0];
    assert_eq!(
        (row["statecode"].clone(), row["statuscode"].clone()),
        (json!(1), json!(10))
    );
    assert_eq!(row["_owningextensionid_value"], json!(step));
    assert_eq!(row["primaryentitytype"], json!("account"));
    assert!(row["postponeuntil"].is_string(), "{row}");
    // Other statuses and another step do not match.
    for filter in [
        "statuscode eq 31".to_owned(),
        format!("_owningextensionid_value eq {}", Uuid::new_v4()),
    ] {
        let v = env.json(&format!("asyncoperations?$filter={filter}")).await;
        assert_eq!(v["value"], json!([]), "{filter}");
    }

    // Pausing applies to running jobs only: refused with weft-jobs' message, nothing changes.
    let (status, body) = env
        .patch(
            &format!("asyncoperations({job})"),
            json!({"statecode": 1, "statuscode": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        error_message(&body),
        format!(
            "cannot pause system job {job}: it is Suspended / Waiting (1/10); pause applies to Locked / \
             In Progress jobs"
        )
    );

    // Resume: Ready again at once; then postponed, found by its correlation id.
    let (status, body) = env
        .patch(
            &format!("asyncoperations({job})"),
            json!({"statecode": 0, "statuscode": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = env
        .patch(
            &format!("asyncoperations({job})"),
            json!({"postponeuntil": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let correlation = row["correlationid"].as_str().unwrap();
    let v = env
        .json(&format!(
            "asyncoperations?$filter=correlationid eq {correlation}&$select=statuscode,postponeuntil"
        ))
        .await;
    assert_eq!(
        v["value"],
        json!([{"asyncoperationid": job, "statuscode": 0, "postponeuntil": "2999-01-01T00:00:00.000Z"}])
    );
    let (status, body) = env
        .patch(
            &format!("asyncoperations({job})"),
            json!({"postponeuntil": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(&body).contains("is not in the future"),
        "{body}"
    );

    // Cancel: Completed / Canceled, completedon set.
    let (status, body) = env
        .patch(
            &format!("asyncoperations({job})"),
            json!({"statecode": 3, "statuscode": 32}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let v = env.json(&format!("asyncoperations({job})")).await;
    assert_eq!(
        (v["statecode"].clone(), v["statuscode"].clone()),
        (json!(3), json!(32))
    );
    assert!(v["completedon"].is_string(), "{v}");
    let v = env
        .json("asyncoperations?$filter=statuscode eq 32 and statecode eq 3&$top=5&$orderby=createdon desc")
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{v}");

    // A completed job is final.
    let (status, body) = env
        .patch(&format!("asyncoperations({job})"), json!({"statuscode": 0}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(&body).starts_with(&format!(
            "cannot resume system job {job}: it is Completed / Canceled (3/32)"
        )),
        "{body}"
    );

    // $top after the order: the oldest (the store stops early) or the newest.
    let (status, body) = env.post("accounts", r#"{"name":"Fabrikam"}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let v = env.json("asyncoperations?$top=1&$select=name").await;
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["asyncoperationid"], json!(job), "{v}");
    let v = env
        .json("asyncoperations?$top=1&$orderby=createdon desc&$select=statuscode")
        .await;
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_ne!(rows[0]["asyncoperationid"], json!(job), "{v}");
    assert_eq!(rows[0]["statuscode"], json!(0), "{v}");

    // Bad queries and unknown jobs are refused precisely.
    for (path, needle) in [
        ("asyncoperations?$filter=name eq 'x'", "'name'"),
        ("asyncoperations?$filter=statuscode eq 99", "99"),
        ("asyncoperations?$select=data", "'data'"),
        ("asyncoperations?$orderby=name", "'name'"),
    ] {
        let (status, body) = env.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(error_message(&body).contains(needle), "{path}: {body}");
    }
    let (status, _) = env
        .get(&format!("asyncoperations({})", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.stop().await;
}

async fn start_bus(bind: SocketAddr, data: &Path) -> weft_bus::BusHandle {
    weft_bus::start(BusConfig {
        bind,
        data: data.to_path_buf(),
        queues: vec![QueueConfig::new(QUEUE)],
        sas_policies: vec![SasPolicy::full(KEY_NAME, SAS_KEY)],
        ..BusConfig::default()
    })
    .await
    .unwrap()
}

/// serviceendpoints lists option sets and `is…set` flags without any secret text; the check action answers
/// 204 while the bus runs and 400 with a secret-free error once it is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serviceendpoints_flags_and_check() {
    let bus_dir = tempfile::tempdir().unwrap();
    let bus_addr = free_addr();
    let bus = start_bus(bus_addr, bus_dir.path()).await;
    let env = start(bus_addr, free_addr()).await;

    let (status, text) = env.get("serviceendpoints").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !text.contains(SAS_KEY) && !text.contains(HOOK_KEY),
        "{text}"
    );
    let v: Json = serde_json::from_str(&text).unwrap();
    let queue_id = derived_id("serviceendpoint", "queue");
    let queue = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["serviceendpointid"] == json!(queue_id))
        .unwrap();
    assert_eq!(queue["contract"], json!(2));
    assert_eq!(queue["authtype"], json!(2));
    assert_eq!(queue["issaskeyset"], json!(true));
    assert_eq!(queue["isauthvalueset"], json!(false));
    assert!(queue.get("saskey").is_none());
    let hook_id = derived_id("serviceendpoint", "hook");
    let hook = env.json(&format!("serviceendpoints({hook_id})")).await;
    assert_eq!(
        (hook["contract"].clone(), hook["isauthvalueset"].clone()),
        (json!(8), json!(true))
    );

    let check =
        format!("serviceendpoints({queue_id})/Microsoft.Dynamics.CRM.TriggerServiceEndpointCheck");
    let (status, body) = env.post(&check, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    bus.shutdown().await.unwrap();
    let (status, body) = env.post(&check, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_message(&body).contains(&queue_id.to_string()),
        "{body}"
    );
    assert!(!body.contains(SAS_KEY), "{body}");

    let (status, _) = env
        .post(
            &format!(
                "serviceendpoints({})/Microsoft.Dynamics.CRM.TriggerServiceEndpointCheck",
                Uuid::new_v4()
            ),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.stop().await;
}
