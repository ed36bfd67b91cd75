//! Durability of delivery across a crash: real `weft bus` and `weft up` processes, Creates through the HTTP
//! API, `kill -9` of the host partway, a restart on the same data directory, and the queue drained with
//! plain Service Bus REST receive-and-delete to check that nothing acknowledged was lost. On PostgreSQL the
//! same run and the same assertions with two hosts on one database, one of them killed.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;
use weft_host::runtime::Runtime;
use weft_store::system::{JobAttempt, JobFilter, JobStatus, SystemJob};
use weft_store::{StoreExt, TestDatabase};

const KEY_NAME: &str = "RootManageSharedAccessKey";
const SAS_KEY: &str = "ZHVyYWJpbGl0eS10ZXN0LWtleS00YjE5";
const QUEUE: &str = "accounts";
const TOTAL: usize = 2_000;
const KILL_AFTER: usize = 1_000;
const WORKERS: usize = 2;
const BATCH: usize = 16;
const SENDERS: usize = 4;

/// A started process and its stdout (kept open so its later prints do not fail), with the address it
/// printed on its first line.
struct Proc {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], data: &Path, config: Option<&Path>) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.args(args);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line of weft {args:?}: {first:?}"))
        .to_owned();
    Proc {
        child,
        _stdout: stdout,
        base,
    }
}

fn start_up(config: &Path, data: &Path) -> Proc {
    spawn(&["up", "--bind", "127.0.0.1:0"], data, Some(config))
}

/// The host's configuration; `store` goes in as `[store] url` when given (PostgreSQL).
fn config(bus: &str, store: Option<&str>) -> String {
    let store = store.map_or(String::new(), |url| format!("[store]\nurl = \"{url}\"\n"));
    format!(
        r#"{store}
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"
  [[table.attribute]]
  logical_name = "name"
  type = "String"

[[service_endpoint]]
name = "accounts queue"
contract = 2
message_format = 2
auth_type = 2
namespace_address = "{bus}"
path = "{QUEUE}"
sas_key_name = "{KEY_NAME}"
sas_key = "{SAS_KEY}"

[[step]]
name = "post to queue"
message = "Create"
table = "account"
stage = 40
mode = 1
service_endpoint = "accounts queue"

[jobs]
workers = {WORKERS}
batch_size = {BATCH}
# Short, so the restarted host takes over the jobs the killed one held.
lease_s = 3.0
run_timeout_s = 2.0
poll_interval_ms = 50
"#
    )
}

/// The account id from `OData-EntityId: …/accounts(<id>)`.
fn entity_id(r: &reqwest::Response) -> Option<Uuid> {
    let v = r.headers().get("odata-entityid")?.to_str().ok()?;
    let inner = v.rsplit_once('(')?.1.strip_suffix(')')?;
    inner.parse().ok()
}

/// Creates accounts through `base` with a few concurrent clients until `acked` holds `until` ids or a
/// request fails (the host was killed); every 204 with an entity id counts as acknowledged.
async fn send(base: String, acked: Arc<Mutex<Vec<Uuid>>>, until: usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let (client, base, acked) = (client.clone(), base.clone(), Arc::clone(&acked));
        tasks.spawn(async move {
            for i in 0..TOTAL {
                if acked.lock().unwrap().len() >= until {
                    return;
                }
                let sent = client
                    .post(format!("{base}/api/data/v9.2/accounts"))
                    .json(&serde_json::json!({ "name": format!("acct {s}-{i}") }))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 204 => {
                        let id = entity_id(&r).expect("204 without an OData-EntityId");
                        acked.lock().unwrap().push(id);
                    }
                    Ok(r) => panic!("Create answered {}", r.status()),
                    // The host is gone (killed): stop; what was not acknowledged is not counted.
                    Err(_) => return,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One message taken from the queue: its MessageId and the context's OperationId and PrimaryEntityId.
struct Received {
    message_id: String,
    operation_id: Uuid,
    primary_id: Uuid,
}

/// Receive-and-delete (`DELETE /{queue}/messages/head`) as the Service Bus REST reference describes it;
/// `None` when the queue stayed empty for `timeout_s`.
async fn receive(client: &reqwest::Client, bus: &str, timeout_s: u32) -> Option<Received> {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = weft_bus::sas::generate_token(&format!("{bus}/{QUEUE}"), KEY_NAME, SAS_KEY, expiry);
    let r = client
        .delete(format!("{bus}/{QUEUE}/messages/head?timeout={timeout_s}"))
        .header("Authorization", token)
        .send()
        .await
        .unwrap();
    if r.status() == 204 {
        return None;
    }
    assert_eq!(r.status(), 200);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let broker: serde_json::Value = serde_json::from_str(&header("BrokerProperties")).unwrap();
    let content_type = header("Content-Type");
    let body = r.bytes().await.unwrap();
    let ctx = weft_message::parse(&body, &content_type).unwrap();
    Some(Received {
        message_id: broker["MessageId"].as_str().unwrap_or_default().to_owned(),
        operation_id: ctx.operation_id,
        primary_id: ctx.primary_entity_id,
    })
}

/// Starts `weft bus` with the one queue the steps post to.
fn start_bus(dir: &Path) -> Proc {
    spawn(
        &[
            "bus",
            "--bind",
            "127.0.0.1:0",
            "--queue",
            QUEUE,
            "--sas-key-name",
            KEY_NAME,
            "--sas-key",
            SAS_KEY,
        ],
        &dir.join("bus"),
        None,
    )
}

/// Waits (bounded) until `acked` holds `n` ids.
fn wait_acknowledged(acked: &Mutex<Vec<Uuid>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "the first {n} Creates took over 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Drains the queue until every acknowledged Create has arrived (bounded in time).
fn drain_acknowledged(rt: &tokio::runtime::Runtime, bus: &str, acked: &[Uuid]) -> Vec<Received> {
    rt.block_on(async {
        let client = reqwest::Client::new();
        let wanted: HashSet<Uuid> = acked.iter().copied().collect();
        let mut seen = HashSet::new();
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !wanted.is_subset(&seen) {
            assert!(
                Instant::now() < deadline,
                "after 120 s, {} of {} acknowledged Creates had reached the queue",
                wanted.intersection(&seen).count(),
                wanted.len()
            );
            if let Some(m) = receive(&client, bus, 1).await {
                seen.insert(m.primary_id);
                received.push(m);
            }
        }
        received
    })
}

/// Waits (bounded) until `weft jobs list` shows every job Succeeded: jobs in flight at the kill were posted
/// but not recorded, and are taken over once their lease ends.
fn wait_all_succeeded(config: &Path, data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["jobs", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .args(["list", "--json", "--limit", "1000000"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let pending = listed.iter().filter(|j| j["statuscode"] != 30).count();
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s, {pending} of {} jobs are not Succeeded",
            listed.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Stops a host gracefully (SIGINT) and waits (bounded) for it to exit.
fn stop(mut up: Proc) {
    let status = Command::new("kill")
        .args(["-INT", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "weft up did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The store's jobs with their attempt histories, once every host is stopped.
fn stored_jobs(config: &Path, data: &Path) -> Vec<(SystemJob, Vec<JobAttempt>)> {
    let runtime = Runtime::open(config, data).unwrap();
    runtime
        .store
        .read(|r| {
            r.system_jobs(&JobFilter::default())?
                .into_iter()
                .map(|j| {
                    let attempts = r.job_attempts(j.id)?;
                    Ok((j, attempts))
                })
                .collect::<Result<Vec<_>, weft_store::StoreError>>()
        })
        .unwrap()
}

/// What is still queued once the hosts stopped (a late duplicate) counts too.
fn drain_rest(
    rt: &tokio::runtime::Runtime,
    bus: &str,
    mut received: Vec<Received>,
) -> Vec<Received> {
    rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..10 * TOTAL {
            match receive(&client, bus, 1).await {
                Some(m) => received.push(m),
                None => break,
            }
        }
        received
    })
}

/// The assertions of a kill -9 run, on either backend: every job Succeeded, one job per committed Create
/// and one for every acknowledged one, every message is a job's (MessageId = OperationId = the job of its
/// PrimaryEntityId), every job was delivered, and duplicates are bounded by what one host can have in flight.
fn assert_nothing_lost(acked: &[Uuid], jobs: &[SystemJob], received: &[Received]) -> usize {
    let not_done: Vec<_> = jobs
        .iter()
        .filter(|j| j.status != JobStatus::Succeeded)
        .map(|j| (j.id, j.status))
        .collect();
    assert!(not_done.is_empty(), "jobs not Succeeded: {not_done:?}");
    // One job per committed Create: the acknowledged ones and any committed as the host died.
    let job_of: HashMap<Uuid, Uuid> = jobs
        .iter()
        .map(|j| {
            (
                j.regarding.as_ref().expect("a job without regarding").id,
                j.id,
            )
        })
        .collect();
    assert_eq!(job_of.len(), jobs.len(), "one job per Create");
    for id in acked {
        assert!(
            job_of.contains_key(id),
            "acknowledged Create {id} has no job"
        );
    }
    let mut per_job: HashMap<Uuid, usize> = HashMap::new();
    for m in received {
        assert_eq!(m.message_id, m.operation_id.to_string());
        assert_eq!(job_of.get(&m.primary_id), Some(&m.operation_id));
        *per_job.entry(m.operation_id).or_default() += 1;
    }
    // Every job (acknowledged or not) was delivered; duplicates are bounded by what could be in flight.
    assert_eq!(per_job.len(), jobs.len(), "a job's message is missing");
    let duplicates = received.len() - per_job.len();
    assert!(
        duplicates <= WORKERS * BATCH,
        "{duplicates} duplicate messages, more than the {} jobs that can be in flight",
        WORKERS * BATCH
    );
    duplicates
}

/// kill -9 of `weft up` during a 2,000-Create run, then a restart: every acknowledged Create reaches the
/// queue, every job succeeds, and the only duplicates repeat a MessageId/OperationId of jobs in flight.
#[test]
fn kill_9_during_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus = start_bus(dir.path());
    let config_path = dir.path().join("weft.toml");
    std::fs::write(&config_path, config(&bus.base, None)).unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked: Arc<Mutex<Vec<Uuid>>> = Arc::default();

    // Phase 1: send until about half is acknowledged, then kill -9 the host mid-run.
    let mut up = start_up(&config_path, &data);
    let sending = rt.spawn(send(up.base.clone(), Arc::clone(&acked), TOTAL));
    wait_acknowledged(&acked, KILL_AFTER);
    up.child.kill().unwrap(); // SIGKILL
    up.child.wait().unwrap();
    rt.block_on(sending).unwrap();
    let at_kill = acked.lock().unwrap().len();
    assert!(at_kill < TOTAL, "the host was killed after the run");

    // Phase 2: restart on the same data directory and finish.
    let up = start_up(&config_path, &data);
    rt.block_on(send(up.base.clone(), Arc::clone(&acked), TOTAL));
    let acked: Vec<Uuid> = acked.lock().unwrap().clone();
    assert!(acked.len() >= TOTAL);

    let received = drain_acknowledged(&rt, &bus.base, &acked);
    wait_all_succeeded(&config_path, &data);
    stop(up);
    let jobs: Vec<SystemJob> = stored_jobs(&config_path, &data)
        .into_iter()
        .map(|(j, _)| j)
        .collect();
    let received = drain_rest(&rt, &bus.base, received);
    let duplicates = assert_nothing_lost(&acked, &jobs, &received);
    eprintln!(
        "kill -9 after {at_kill} acknowledged; {} jobs, {} messages, {duplicates} duplicates",
        jobs.len(),
        received.len()
    );
}

/// Two `weft up` hosts on one PostgreSQL database, Creates through both, kill -9 of one partway: the other
/// finishes the run, takes over the dead host's leased jobs once their lease ends, and the same assertions
/// as on SQLite hold (every acknowledged Create has its job, every job its message, duplicates bounded).
/// Every attempt recorded as abandoned was the killed host's.
#[test]
fn kill_9_of_one_of_two_postgres_hosts_loses_nothing() {
    let Some(db) =
        TestDatabase::create("postgres::kill_9_of_one_of_two_postgres_hosts_loses_nothing")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bus = start_bus(dir.path());
    let config_path = dir.path().join("weft.toml");
    std::fs::write(&config_path, config(&bus.base, Some(db.url()))).unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acked: Arc<Mutex<Vec<Uuid>>> = Arc::default();

    let mut a = start_up(&config_path, &data_a);
    let b = start_up(&config_path, &data_b);
    let a_workers = format!("weft-{}-", a.child.id());
    let to_a = rt.spawn(send(a.base.clone(), Arc::clone(&acked), TOTAL));
    let to_b = rt.spawn(send(b.base.clone(), Arc::clone(&acked), TOTAL));
    wait_acknowledged(&acked, KILL_AFTER);
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    rt.block_on(to_a).unwrap();
    let at_kill = acked.lock().unwrap().len();
    assert!(at_kill < TOTAL, "host a was killed after the run");
    // Host b goes on alone to the end of the run.
    rt.block_on(to_b).unwrap();
    let acked: Vec<Uuid> = acked.lock().unwrap().clone();
    assert!(acked.len() >= TOTAL);

    let received = drain_acknowledged(&rt, &bus.base, &acked);
    wait_all_succeeded(&config_path, &data_b);
    stop(b);
    drop(a);
    let stored = stored_jobs(&config_path, &data_a);
    let mut taken_over = 0;
    for (job, attempts) in &stored {
        for attempt in attempts.iter().filter(|t| t.entry.outcome == "abandoned") {
            assert!(
                attempt.entry.worker.starts_with(&a_workers),
                "job {}: an abandoned attempt by {} (host a's workers are {a_workers}…)",
                job.id,
                attempt.entry.worker
            );
            taken_over += 1;
        }
    }
    let jobs: Vec<SystemJob> = stored.into_iter().map(|(j, _)| j).collect();
    let received = drain_rest(&rt, &bus.base, received);
    let duplicates = assert_nothing_lost(&acked, &jobs, &received);
    eprintln!(
        "kill -9 of host a after {at_kill} acknowledged; {} jobs, {taken_over} taken over from host a, \
         {} messages, {duplicates} duplicates",
        jobs.len(),
        received.len()
    );
}

/// The pipeline wakes idle workers once an operation that wrote a job commits: with a 60 s poll, the job
/// still succeeds within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_jobs_wake_the_asynchronous_service() {
    let dir = tempfile::tempdir().unwrap();
    let bus = weft_bus::start(weft_bus::BusConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        data: dir.path().join("bus"),
        queues: vec![weft_bus::QueueConfig::new(QUEUE)],
        sas_policies: vec![weft_bus::sas::SasPolicy::full(KEY_NAME, SAS_KEY)],
        ..weft_bus::BusConfig::default()
    })
    .await
    .unwrap();
    let config_path = dir.path().join("weft.toml");
    let text = config(&format!("http://{}", bus.local_addr()), None)
        .replace("poll_interval_ms = 50", "poll_interval_ms = 60000");
    std::fs::write(&config_path, text).unwrap();
    let data = dir.path().join("data");
    let runtime = Arc::new(
        tokio::task::spawn_blocking(move || Runtime::open(&config_path, &data).unwrap())
            .await
            .unwrap(),
    );
    let delivery = weft_host::delivery::Delivery::new("weft.test").unwrap();
    runtime.pipeline.set_delivery(Arc::clone(&delivery));
    let runner = Arc::new(weft_host::delivery::DeliveryRunner::new(
        runtime.pipeline.clone(),
        delivery,
    ));
    let jobs = runtime.registration.jobs.clone().into_config().unwrap();
    let service = weft_jobs::AsyncService::start(Arc::clone(&runtime.store), runner, jobs).unwrap();
    assert!(runtime.pipeline.set_job_notifier(service.notifier()));
    // Let the workers find the empty store and go to sleep for their 60 s poll.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rt = Arc::clone(&runtime);
    tokio::task::spawn_blocking(move || {
        let target = weft_host::context::entity_from_json(
            "account",
            &serde_json::json!({ "name": "Fourth Coffee" }),
        )
        .unwrap();
        rt.pipeline
            .execute(weft_host::pipeline::OrganizationRequest::new(
                weft_host::pipeline::Message::Create { target },
            ))
            .unwrap()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = tokio::task::block_in_place(|| {
            runtime
                .store
                .read(|r| r.system_jobs(&JobFilter::default()))
                .unwrap()
        });
        assert_eq!(jobs.len(), 1);
        if jobs[0].status == JobStatus::Succeeded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job was not run within 20 s of its commit (the workers poll every 60 s): {:?}",
            jobs[0].status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.shutdown().await;
    bus.shutdown().await.unwrap();
}
