//! Shared fixtures: a real SQLite store in a temp dir on a clock the test moves, job inserts, scripted runners
//! and waiting for a job to reach a state (bounded by a generous deadline, never asserting speed).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;
use weft_jobs::{Clock, JobOutcome, JobRunner, RetryPolicy, ServiceConfig};
use weft_store::system::*;
use weft_store::{Schema, SqliteOptions, SqliteStore, Store, StoreError, StoreExt, Tx};

/// The instant tests start at (2026-11-25T00:00:00Z).
pub const T0: i64 = 1_795_564_800_000;

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn new() -> Self {
        TestClock(Arc::new(AtomicI64::new(T0)))
    }
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

pub fn open(dir: &Path, clock: &TestClock) -> Arc<SqliteStore> {
    let schema = Schema::new(Vec::new(), Vec::new()).unwrap();
    let options = SqliteOptions {
        clock: clock.clock(),
        ..SqliteOptions::default()
    };
    Arc::new(SqliteStore::open(dir.join("weft.db"), schema, options).unwrap())
}

pub fn dyn_store(s: &Arc<SqliteStore>) -> Arc<dyn Store> {
    s.clone()
}

/// A service configuration for tests: the test's clock, a short poll, no jitter, a 10 s / ×2 schedule.
pub fn config(clock: &TestClock, workers: usize) -> ServiceConfig {
    ServiceConfig {
        workers,
        batch_size: 8,
        lease: Duration::from_secs(300),
        run_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(20),
        retry: RetryPolicy {
            max_attempts: 5,
            initial_delay_s: 10.0,
            multiplier: 2.0,
            max_delay_s: 3600.0,
            jitter: 0.0,
            schedule_s: None,
        },
        worker_prefix: "test".into(),
        clock: clock.clock(),
    }
}

pub fn new_job(name: &str) -> NewSystemJob {
    NewSystemJob {
        id: None,
        name: name.into(),
        operation_type: 1,
        message_name: "Create".into(),
        primary_entity_type: Some("account".into()),
        regarding: None,
        owning_extension_id: None,
        correlation_id: Uuid::new_v4(),
        depth: 1,
        data: br#"{"MessageName":"Create"}"#.to_vec(),
        data_content_type: "application/json".into(),
        postpone_until: None,
        created_on: None,
    }
}

/// `StoreExt::transact` from inside the (multi-threaded) test runtime.
pub fn transact<T, F>(store: &Arc<SqliteStore>, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::block_in_place(|| store.transact(work))
}

pub fn insert(store: &Arc<SqliteStore>, job: NewSystemJob) -> Uuid {
    transact(store, move |tx| tx.insert_system_job(job)).unwrap()
}

pub fn job(store: &Arc<SqliteStore>, id: Uuid) -> Option<SystemJob> {
    store.read(|r| r.system_job(id)).unwrap()
}

/// Polls until `pred` holds for the job (None = deleted); panics with the job after a generous deadline.
pub async fn wait_for(
    store: &Arc<SqliteStore>,
    id: Uuid,
    what: &str,
    pred: impl Fn(Option<&SystemJob>) -> bool,
) -> Option<SystemJob> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = job(store, id);
        if pred(j.as_ref()) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never became {what}: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A runner that answers from a script given the job and the call number for that job (1 = first call),
/// and counts calls per job.
pub struct Scripted {
    calls: Mutex<HashMap<Uuid, u32>>,
    script: Script,
}

type Script = Box<dyn Fn(&SystemJob, u32) -> JobOutcome + Send + Sync>;

impl Scripted {
    pub fn new(
        script: impl Fn(&SystemJob, u32) -> JobOutcome + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Scripted {
            calls: Mutex::new(HashMap::new()),
            script: Box::new(script),
        })
    }
    pub fn calls(&self, id: Uuid) -> u32 {
        self.calls.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    pub fn all_calls(&self) -> HashMap<Uuid, u32> {
        self.calls.lock().unwrap().clone()
    }
}

impl JobRunner for Scripted {
    async fn run(&self, job: &SystemJob) -> JobOutcome {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(job.id).or_insert(0);
            *n += 1;
            *n
        };
        tokio::task::yield_now().await;
        (self.script)(job, n)
    }
}

/// A runner that reports each start and then waits for the test to release it, answering `outcome`.
pub struct Gated {
    pub started: mpsc::UnboundedSender<Uuid>,
    pub release: Semaphore,
    pub outcome: Mutex<JobOutcome>,
}

impl Gated {
    pub fn new(outcome: JobOutcome) -> (Arc<Self>, mpsc::UnboundedReceiver<Uuid>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Gated {
                started: tx,
                release: Semaphore::new(0),
                outcome: Mutex::new(outcome),
            }),
            rx,
        )
    }
}

impl JobRunner for Gated {
    async fn run(&self, job: &SystemJob) -> JobOutcome {
        let _ = self.started.send(job.id);
        if let Ok(p) = self.release.acquire().await {
            p.forget();
        }
        self.outcome.lock().unwrap().clone()
    }
}

/// Registers an async step (on a plug-in type, or on a new service endpoint); returns its id.
pub fn register_step(
    store: &Arc<weft_store::SqliteStore>,
    auto_delete: bool,
    endpoint: Option<Uuid>,
) -> Uuid {
    let step_id = Uuid::new_v4();
    transact(store, move |tx| {
        let handler = match endpoint {
            Some(e) => {
                tx.put_service_endpoint(
                    &ServiceEndpointDef {
                        id: e,
                        name: "queue".into(),
                        description: None,
                        contract: Contract::Queue,
                        message_format: MessageFormat::Json,
                        auth_type: AuthType::SasKey,
                        connection_mode: ConnectionMode::Normal,
                        namespace_format: None,
                        user_claim: UserClaim::None,
                        message_charset: None,
                        namespace_address: Some("sb://localhost".into()),
                        path: Some("q".into()),
                        url: None,
                        sas_key_name: None,
                        solution_namespace: None,
                    },
                    &EndpointSecretsUpdate::default(),
                )?;
                EventHandler::ServiceEndpoint(e)
            }
            None => {
                let asm = PluginAssembly {
                    id: Uuid::new_v4(),
                    name: "asm".into(),
                    component_path: "x.wasm".into(),
                    sha256: None,
                };
                tx.put_plugin_assembly(&asm)?;
                let t = PluginType {
                    id: Uuid::new_v4(),
                    assembly_id: asm.id,
                    type_name: "T".into(),
                };
                tx.put_plugin_type(&t)?;
                EventHandler::PluginType(t.id)
            }
        };
        tx.put_step(
            &StepDef {
                id: step_id,
                name: "async step".into(),
                message: "Create".into(),
                primary_entity: Some("account".into()),
                stage: Stage::PostOperation,
                mode: StepMode::Asynchronous,
                rank: 1,
                filtering_attributes: vec![],
                configuration: None,
                images: vec![],
                state: StepState::Enabled,
                impersonating_user_id: None,
                invocation_source: InvocationSource::Parent,
                async_auto_delete: auto_delete,
                event_handler: handler,
            },
            SecretUpdate::Keep,
        )
    })
    .unwrap();
    step_id
}

pub fn step_job(name: &str, step: Uuid) -> NewSystemJob {
    NewSystemJob {
        owning_extension_id: Some(step),
        ..new_job(name)
    }
}
