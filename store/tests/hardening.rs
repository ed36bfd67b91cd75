//! Hardening of the store (issue #10): bounded trace rows from a rolled-back work, trace-log retention,
//! refusing a truncated or damaged database at open, owner-only files, and the data-directory lock.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use uuid::Uuid;
use weft_store::system::{NewTraceLog, StepMode, TraceFilter, TraceOutcome};
use weft_store::{DirLock, Read, SqliteOptions, SqliteStore, StoreError, StoreExt, Tx};

fn trace(correlation: Uuid, n: usize) -> NewTraceLog {
    NewTraceLog {
        step_id: None,
        plugin: "fanout".into(),
        message_name: "Create".into(),
        primary_entity: Some("account".into()),
        depth: 1,
        correlation_id: correlation,
        mode: StepMode::Synchronous,
        duration_ms: 1,
        outcome: TraceOutcome::Failed,
        trace: format!("row {n}"),
        stderr: String::new(),
        error: None,
        recording: None,
    }
}

fn traces(store: &SqliteStore, correlation: Uuid) -> Vec<String> {
    let mut rows: Vec<String> = store
        .read(|r: &dyn Read| {
            r.trace_logs(&TraceFilter {
                correlation_id: Some(correlation),
                ..Default::default()
            })
        })
        .unwrap()
        .into_iter()
        .map(|t| t.entry.trace)
        .collect();
    rows.sort_by_key(|t| t[4..].parse::<usize>().unwrap());
    rows
}

/// A work that rolls back leaves at most `max_rollback_trace_rows` trace rows: the last ones, nearest the
/// failure. A committed work keeps all of its rows.
#[test]
fn a_rolled_back_work_leaves_a_bounded_number_of_trace_rows() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        max_rollback_trace_rows: 10,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path().join("weft.db"), common::schema(), options).unwrap();
    let failed = Uuid::new_v4();
    let err = store
        .transact(move |tx: &mut dyn Tx| {
            for n in 0..500 {
                tx.insert_trace_log(trace(failed, n))?;
            }
            Err::<(), _>(StoreError::Invalid("fan-out".into()))
        })
        .unwrap_err();
    assert_eq!(err, StoreError::Invalid("fan-out".into()));
    let kept = traces(&store, failed);
    let last: Vec<String> = (490..500).map(|n| format!("row {n}")).collect();
    assert_eq!(kept, last);

    let committed = Uuid::new_v4();
    store
        .transact(move |tx: &mut dyn Tx| {
            for n in 0..50 {
                tx.insert_trace_log(trace(committed, n))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(traces(&store, committed).len(), 50);
}

/// Retention deletes rows created before the cut-off, in batches of at most `limit`, and nothing newer.
#[test]
fn trace_logs_are_purged_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::TestClock::new(1_000_000);
    let store = common::open_sqlite_with_clock(dir.path(), &clock);
    let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .transact(move |tx: &mut dyn Tx| {
            for n in 0..7 {
                tx.insert_trace_log(trace(old, n))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    clock.set(2_000_000);
    store
        .transact(move |tx: &mut dyn Tx| tx.insert_trace_log(trace(new, 0)))
        .unwrap();
    let purge = |limit| {
        store
            .transact(move |tx: &mut dyn Tx| tx.purge_trace_logs(1_500_000, limit))
            .unwrap()
    };
    assert_eq!(purge(5), 5);
    assert_eq!(purge(5), 2);
    assert_eq!(purge(5), 0);
    assert!(traces(&store, old).is_empty());
    assert_eq!(traces(&store, new), vec!["row 0".to_owned()]);
    assert_eq!(clock.0.load(Ordering::SeqCst), 2_000_000);
}

/// A zero-length `weft.db` beside its WAL (the file was truncated under a store) is refused, never opened
/// as an empty store.
#[test]
fn an_empty_database_beside_its_wal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::write(dir.path().join("weft.db-wal"), b"left over").unwrap();
    let err = SqliteStore::open(&path, common::schema(), SqliteOptions::default())
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("is empty but"), "{text}");
    assert!(text.contains("weft.db-wal"), "{text}");
    // Nothing was written over it.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // An empty file alone (a store created but never written) opens.
    std::fs::remove_file(dir.path().join("weft.db-wal")).unwrap();
    SqliteStore::open(&path, common::schema(), SqliteOptions::default()).unwrap();
}

/// A damaged page is found at open (`PRAGMA quick_check`), not by some later read.
#[test]
fn a_damaged_database_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    {
        let store = common::open_sqlite(dir.path());
        store
            .transact(|tx: &mut dyn Tx| {
                for n in 0..400 {
                    let mut attrs = weft_store::Attributes::new();
                    attrs.insert("name".into(), weft_store::Value::String(format!("a{n}")));
                    attrs.insert(
                        "description".into(),
                        weft_store::Value::String("x".repeat(300)),
                    );
                    tx.create("account", None, attrs)?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
    assert!(
        !dir.path().join("weft.db-wal").exists(),
        "closing checkpoints"
    );
    // Scribble over the last page (a table leaf).
    let mut bytes = std::fs::read(&path).unwrap();
    let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    let len = bytes.len();
    assert!(len > 8 * page, "the database has several pages");
    for b in &mut bytes[len - page..] {
        *b = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path, common::schema(), SqliteOptions::default())
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("damaged"), "{text}");
    assert!(text.contains("weft.db"), "{text}");
}

/// The database, its WAL and shared-memory files are owner-only; an existing world-readable file is
/// narrowed at open.
#[cfg(unix)]
#[test]
fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Arc::new(common::open_sqlite(dir.path()));
    store
        .transact(|tx: &mut dyn Tx| tx.insert_trace_log(trace(Uuid::new_v4(), 0)))
        .unwrap();
    for name in ["weft.db", "weft.db-wal", "weft.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
}

/// One holder at a time: a second lock on the directory is refused with the holder's pid, and is
/// granted once the first is released.
#[test]
fn a_data_directory_has_one_holder() {
    let dir = tempfile::tempdir().unwrap();
    let held = DirLock::acquire(dir.path()).unwrap();
    let err = DirLock::acquire(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert!(text.contains("in use"), "{text}");
    drop(held);
    let again = DirLock::acquire(dir.path()).unwrap();
    assert!(again.path().ends_with(weft_store::LOCK_FILE));
}

/// `sslmode=require` in the URL makes the connection TLS, with the server's certificate checked against
/// the web PKI roots: the test server's self-signed certificate is refused (a plain connection, or TLS
/// without the check, would have opened).
#[test]
fn postgres_sslmode_require_checks_the_server_certificate() {
    common::with_postgres(
        "hardening::postgres_sslmode_require_checks_the_server_certificate",
        |backend| {
            let common::Backend::Postgres(url) = backend else {
                unreachable!("with_postgres gives a PostgreSQL database")
            };
            let url = if url.contains('?') {
                format!("{url}&sslmode=require")
            } else {
                format!("{url}?sslmode=require")
            };
            let opened =
                weft_store::PgStore::open(&url, common::schema(), weft_store::PgOptions::default());
            let Err(StoreError::Database(message)) = opened else {
                panic!("opened, or failed otherwise: {:?}", opened.err());
            };
            assert!(
                message.contains("certificate") || message.contains("does not support TLS"),
                "{message}"
            );
        },
    );
}
