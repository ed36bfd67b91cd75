//! Group commit: savepoint isolation inside a batch, answers only after COMMIT, panics contained, restart.

mod common;

use std::sync::mpsc;

use rusqlite::Connection;
use uuid::Uuid;
use weft_store::system::{NewTraceLog, StepMode, TraceFilter, TraceOutcome};
use weft_store::{
    Attributes, Query, SqliteOptions, SqliteStore, Store, StoreError, StoreExt, Value,
};

fn named(name: &str) -> Attributes {
    Attributes::from([("name".to_string(), Value::String(name.into()))])
}

fn names(store: &SqliteStore) -> Vec<String> {
    let rows = store
        .read(|r| r.retrieve_multiple(&Query::new("account").order_by("name", false)))
        .unwrap();
    rows.into_iter()
        .map(|r| match &r.attributes["name"] {
            Value::String(s) => s.clone(),
            other => panic!("name is {other:?}"),
        })
        .collect()
}

/// Holds the writer inside a work until the returned sender fires, so the works queued meanwhile form one batch.
fn hold_writer(store: &SqliteStore) -> (mpsc::Sender<()>, weft_store::Pending) {
    let (release, wait) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let pending = store.submit(Box::new(move |_tx| {
        let _ = started_tx.send(());
        let _ = wait.recv();
        weft_store::WorkOutcome {
            commit: true,
            payload: Box::new(()),
        }
    }));
    started.recv().expect("writer started the holding work");
    (release, pending)
}

fn submit<T: Send + 'static>(
    store: &SqliteStore,
    work: impl FnOnce(&mut dyn weft_store::Tx) -> Result<T, StoreError> + Send + 'static,
) -> weft_store::Pending {
    store.submit(Box::new(move |tx| {
        let r = work(tx);
        weft_store::WorkOutcome {
            commit: r.is_ok(),
            payload: Box::new(r),
        }
    }))
}

fn outcome<T: 'static>(p: weft_store::Pending) -> Result<T, StoreError> {
    *p.wait()
        .expect("batch committed")
        .downcast::<Result<T, StoreError>>()
        .expect("payload type")
}

/// In one batch, a failing work (after it wrote) and a panicking work are rolled back alone; the others commit.
#[test]
fn failed_and_panicking_works_roll_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_sqlite(dir.path());
    let (release, held) = hold_writer(&store);
    let ok1 = submit(&store, |tx| tx.create("account", None, named("ok-1")));
    let failing = submit(&store, |tx| {
        tx.create("account", None, named("failed"))?;
        tx.create(
            "account",
            None,
            Attributes::from([("revenue".to_string(), Value::Boolean(true))]),
        )
    });
    let panicking = store.submit(Box::new(|tx| {
        let _ = tx.create("account", None, named("panicked"));
        panic!("plug-in host bug");
    }));
    let ok2 = submit(&store, |tx| tx.create("account", None, named("ok-2")));
    release.send(()).unwrap();
    held.wait().unwrap();
    assert!(outcome::<Uuid>(ok1).is_ok());
    assert!(matches!(
        outcome::<Uuid>(failing),
        Err(StoreError::TypeMismatch { .. })
    ));
    match panicking.wait() {
        Err(StoreError::WorkPanicked(msg)) => assert_eq!(msg, "plug-in host bug"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a panicking work must not succeed"),
    }
    assert!(outcome::<Uuid>(ok2).is_ok());
    assert_eq!(names(&store), ["ok-1", "ok-2"]);
    // The writer keeps serving after the panic.
    store
        .transact(|tx| tx.create("account", None, named("after")))
        .unwrap();
    assert_eq!(names(&store), ["after", "ok-1", "ok-2"]);
}

/// When a caller hears back, its row is already committed: an independent connection sees it at once.
#[test]
fn callers_are_answered_only_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(common::open_sqlite(dir.path()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let path = dir.path().join("weft.db");
            std::thread::spawn(move || {
                let probe = Connection::open(path).unwrap();
                for i in 0..40 {
                    let id = store
                        .transact(move |tx| tx.create("account", None, named(&format!("{t}-{i}"))))
                        .unwrap();
                    let seen: i64 = probe
                        .query_row(
                            "SELECT count(*) FROM account WHERE accountid = ?1",
                            [id.to_string()],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(seen, 1, "row {id} answered before it was committed");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(names(&store).len(), 320);
}

/// Data survives closing and reopening the store; a new attribute is migrated in, a type change is refused.
#[test]
fn restart_keeps_data_and_migrates_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = common::open_sqlite(dir.path());
        store
            .transact(|tx| tx.create("account", None, named("durable")))
            .unwrap()
    };
    let extended = common::SCHEMA_TOML.replace(
        "[[table]]\nlogical_name = \"contact\"",
        "  [[table.attribute]]\n  logical_name = \"tickersymbol\"\n  type = \"String\"\n\n[[table]]\nlogical_name = \"contact\"",
    );
    let schema = weft_store::Schema::from_toml_str("extended.toml", &extended).unwrap();
    let store =
        SqliteStore::open(dir.path().join("weft.db"), schema, SqliteOptions::default()).unwrap();
    let row = store
        .read(|r| r.retrieve("account", id, None))
        .unwrap()
        .expect("row survived the restart");
    assert_eq!(row.attributes["name"], Value::String("durable".into()));
    store
        .transact(move |tx| {
            tx.update(
                "account",
                id,
                Attributes::from([("tickersymbol".into(), Value::String("MSFT".into()))]),
            )
        })
        .unwrap();
    drop(store);
    let changed = common::SCHEMA_TOML.replace(
        "logical_name = \"ratio\"\n  type = \"Double\"",
        "logical_name = \"ratio\"\n  type = \"Integer\"",
    );
    let schema = weft_store::Schema::from_toml_str("changed.toml", &changed).unwrap();
    let err = SqliteStore::open(dir.path().join("weft.db"), schema, SqliteOptions::default())
        .err()
        .expect("type change refused");
    assert_eq!(
        err.to_string(),
        "schema: attribute `ratio` of table `account` is stored as Double; changing it to Integer is not migrated"
    );
}

/// Trace log rows written by a failed work are kept although its data is rolled back.
#[test]
fn trace_logs_survive_a_failed_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_sqlite(dir.path());
    let correlation = Uuid::new_v4();
    let err = store
        .transact(move |tx| {
            tx.create("account", None, named("rolled back"))?;
            tx.insert_trace_log(NewTraceLog {
                step_id: None,
                plugin: "Contoso.Plugins.Validate".into(),
                message_name: "Create".into(),
                primary_entity: Some("account".into()),
                depth: 1,
                correlation_id: correlation,
                mode: StepMode::Synchronous,
                duration_ms: 3,
                outcome: TraceOutcome::Failed,
                trace: "checking name".into(),
                stderr: "warn: slow".into(),
                error: Some("name is required".into()),
                recording: Some("{\"recorded\":true}".into()),
            })?;
            Err::<(), _>(StoreError::Invalid("plug-in failed".into()))
        })
        .unwrap_err();
    assert_eq!(err, StoreError::Invalid("plug-in failed".into()));
    assert!(names(&store).is_empty());
    let logs = store
        .read(|r| {
            r.trace_logs(&TraceFilter {
                correlation_id: Some(correlation),
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].entry.error.as_deref(), Some("name is required"));
    assert_eq!(logs[0].entry.outcome, TraceOutcome::Failed);
    assert_eq!(logs[0].created_on, 1_700_000_000_000);
    // The execution recording survives with its row, and listings do not carry it.
    assert_eq!(logs[0].entry.recording, None);
    let id = logs[0].id;
    let recording = store.read(|r| r.trace_recording(id)).unwrap();
    assert_eq!(recording.as_deref(), Some("{\"recorded\":true}"));
}

/// Async callers await the same durable answer; the caller's own error type passes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transact_async_resolves_after_commit() {
    #[derive(Debug)]
    enum PipelineError {
        Store(StoreError),
        Plugin(String),
    }
    impl From<StoreError> for PipelineError {
        fn from(e: StoreError) -> Self {
            PipelineError::Store(e)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    // The pipeline holds the store as a trait object; the typed helpers work on it.
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(common::open_sqlite(dir.path()));
    let id = store
        .transact_async(|tx| Ok::<_, PipelineError>(tx.create("account", None, named("async"))?))
        .await
        .unwrap();
    let err = store
        .transact_async(|tx| {
            tx.create("account", None, named("vetoed"))?;
            Err::<(), _>(PipelineError::Plugin("InvalidPluginExecution: no".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::Plugin(m) if m == "InvalidPluginExecution: no"));
    let err = store
        .transact_async(|tx| {
            Ok::<_, PipelineError>(tx.create("nosuch", None, Attributes::new())?)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::Store(StoreError::UnknownTable(t)) if t == "nosuch"));
    let rows = store
        .read(|r| r.retrieve_multiple(&Query::new("account")))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, id);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// For any mix of succeeding, failing and panicking works in one batch, exactly the succeeding ones commit.
    #[test]
    fn any_batch_commits_exactly_its_successful_works(plan in proptest::collection::vec(0u8..3, 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let store = common::open_sqlite(dir.path());
        let (release, held) = hold_writer(&store);
        let pendings: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let kind = *kind;
                store.submit(Box::new(move |tx| {
                    let created = tx.create("account", None, named(&format!("w{i:02}")));
                    if kind == 2 {
                        panic!("work {i} panics");
                    }
                    let result = created.and_then(|id| if kind == 1 { Err(StoreError::Invalid(format!("work {i} fails"))) } else { Ok(id) });
                    weft_store::WorkOutcome { commit: result.is_ok(), payload: Box::new(result) }
                }))
            })
            .collect();
        release.send(()).unwrap();
        held.wait().unwrap();
        let mut expected = Vec::new();
        for (i, (kind, p)) in plan.iter().zip(pendings).enumerate() {
            match (kind, p.wait()) {
                (0, Ok(payload)) => {
                    proptest::prop_assert!(payload.downcast::<Result<Uuid, StoreError>>().unwrap().is_ok());
                    expected.push(format!("w{i:02}"));
                }
                (1, Ok(payload)) => proptest::prop_assert!(payload.downcast::<Result<Uuid, StoreError>>().unwrap().is_err()),
                (2, Err(StoreError::WorkPanicked(_))) => {}
                (k, other) => proptest::prop_assert!(false, "work {} kind {} answered {:?}", i, k, other.map(|_| ())),
            }
        }
        proptest::prop_assert_eq!(names(&store), expected);
    }
}

/// Opening an unchanged store beside another process that holds the write lock (a running host) succeeds:
/// an open with nothing to migrate writes nothing, so it neither waits for nor races that writer.
#[test]
fn opening_an_unchanged_store_does_not_need_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    drop(common::open_sqlite(dir.path()));
    let holder = Connection::open(dir.path().join("weft.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let second = SqliteStore::open(
        dir.path().join("weft.db"),
        common::schema(),
        weft_store::SqliteOptions::default(),
    );
    assert!(second.is_ok(), "{:?}", second.err());
    holder.execute_batch("ROLLBACK").unwrap();
}
