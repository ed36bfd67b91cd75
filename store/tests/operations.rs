//! Operations: concurrent transactions on the callers' threads, writes buffered under row locks and committed
//! by the group-commit writer. Isolation as the store README states it: no dirty reads, no lost updates (a
//! second writer of a row waits and then reads it committed), write skew allowed (read committed, as
//! Dataverse), deadlocks and lock timeouts fail one operation with Dataverse's codes.

#[macro_use]
mod common;

use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use uuid::Uuid;
use weft_store::system::{
    JobFilter, NewSystemJob, NewTraceLog, StepMode, TraceFilter, TraceOutcome,
};
use weft_store::{
    Attributes, Condition, EntityRef, Link, Query, Row, StoreError, StoreExt, Tx, Value,
};

fn attrs(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect()
}

fn text(s: &str) -> Value {
    Value::String(s.into())
}

fn create(store: &dyn weft_store::Store, name: &str, employees: i32) -> Uuid {
    store
        .transact({
            let a = attrs(&[
                ("name", text(name)),
                ("numberofemployees", Value::Integer(employees)),
            ]);
            move |tx| tx.create("account", None, a)
        })
        .unwrap()
}

fn name_of(row: &Row) -> &Value {
    row.attributes.get("name").unwrap_or(&Value::Null)
}

fn committed(store: &dyn weft_store::Store, id: Uuid) -> Option<Row> {
    store.read(|r| r.retrieve("account", id, None)).unwrap()
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(60))
}

/// The queries an operation and, after it commits, a plain read both answer: the operation's merged answer
/// must be what is committed.
fn queries() -> Vec<Query> {
    vec![
        Query::new("account").order_by("name", false),
        Query::new("account")
            .order_by("numberofemployees", true)
            .top(3),
        Query {
            skip: 2,
            ..Query::new("account").order_by("name", true).top(2)
        },
        Query::new("account")
            .filter(Condition::Gt(
                "numberofemployees".into(),
                Value::Integer(15),
            ))
            .order_by("name", false)
            .columns(["name"]),
        Query::new("account").filter(Condition::Or(vec![
            Condition::Eq("name".into(), text("BRAVO")),
            Condition::Null("revenue".into()),
        ])),
        Query::new("account")
            .filter(Condition::Eq("revenue".into(), Value::Money("5.00".into())))
            .order_by("revenue", false),
    ]
}

fn an_operation_reads_its_own_writes_merged_with_committed_rows(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let a = create(&store, "alpha", 10);
    let b = create(&store, "bravo", 20);
    let _c = create(&store, "charlie", 30);
    let d = create(&store, "delta", 40);
    let (seen, new_id) = store
        .operate(soon(), |tx: &mut dyn Tx| {
            let new_id = tx.create(
                "account",
                None,
                attrs(&[
                    ("name", text("aardvark")),
                    ("numberofemployees", Value::Integer(25)),
                    ("revenue", Value::Money("5".into())),
                ]),
            )?;
            tx.update(
                "account",
                b,
                attrs(&[("numberofemployees", Value::Integer(5))]),
            )?;
            tx.update("account", a, attrs(&[("name", text("zulu"))]))?;
            tx.delete("account", d)?;
            let mine = tx
                .retrieve("account", new_id, None)?
                .expect("own create visible");
            assert_eq!(name_of(&mine), &text("aardvark"));
            assert!(
                tx.retrieve("account", d, None)?.is_none(),
                "own delete visible"
            );
            let seen = queries()
                .iter()
                .map(|q| tx.retrieve_multiple(q))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>((seen, new_id))
        })
        .unwrap();
    let after = queries()
        .iter()
        .map(|q| store.read(|r| r.retrieve_multiple(q)).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(seen, after, "what the operation saw is what it committed");
    assert_eq!(
        name_of(&committed(&store, new_id).unwrap()),
        &text("aardvark")
    );
    assert!(committed(&store, d).is_none());
    assert_eq!(name_of(&committed(&store, a).unwrap()), &text("zulu"));
}

fn no_dirty_reads_outside_the_writing_operation(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::<dyn weft_store::Store>::from(common::open(backend, dir.path()));
    let a = create(&store, "before", 1);
    let (wrote_tx, wrote) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let writer = thread::spawn({
        let store = store.clone();
        move || {
            store.operate(soon(), |tx: &mut dyn Tx| {
                tx.update("account", a, attrs(&[("name", text("during"))]))?;
                wrote_tx.send(()).unwrap();
                release.recv().unwrap();
                Ok::<_, StoreError>(())
            })
        }
    });
    wrote.recv().unwrap();
    // A plain read and another operation both answer now, with the committed value.
    assert_eq!(name_of(&committed(&store, a).unwrap()), &text("before"));
    let other = store
        .operate(soon(), |tx: &mut dyn Tx| tx.retrieve("account", a, None))
        .unwrap()
        .unwrap();
    assert_eq!(name_of(&other), &text("before"));
    release_tx.send(()).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(name_of(&committed(&store, a).unwrap()), &text("during"));
}

fn a_second_writer_waits_for_the_first_and_loses_nothing(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::<dyn weft_store::Store>::from(common::open(backend, dir.path()));
    let a = create(&store, "first", 1);
    let (wrote_tx, wrote) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let first = thread::spawn({
        let store = store.clone();
        move || {
            store.operate(soon(), |tx: &mut dyn Tx| {
                tx.update("account", a, attrs(&[("name", text("renamed"))]))?;
                wrote_tx.send(()).unwrap();
                release.recv().unwrap();
                Ok::<_, StoreError>(())
            })
        }
    });
    wrote.recv().unwrap();
    let (done_tx, done) = mpsc::channel();
    let second = thread::spawn({
        let store = store.clone();
        move || {
            let r = store.operate(soon(), |tx: &mut dyn Tx| {
                // Increment after taking the lock: the read is the committed row, the first's included.
                tx.update(
                    "account",
                    a,
                    attrs(&[("revenue", Value::Money("7".into()))]),
                )?;
                let row = tx.retrieve("account", a, None)?.unwrap();
                let n = match row.attributes.get("numberofemployees") {
                    Some(Value::Integer(n)) => *n,
                    other => panic!("numberofemployees is {other:?}"),
                };
                tx.update(
                    "account",
                    a,
                    attrs(&[("numberofemployees", Value::Integer(n + 1))]),
                )?;
                Ok::<_, StoreError>(name_of(&row).clone())
            });
            done_tx.send(()).unwrap();
            r
        }
    });
    // The second writer cannot finish while the first holds the row.
    assert!(done.try_recv().is_err());
    release_tx.send(()).unwrap();
    first.join().unwrap().unwrap();
    let seen_name = second.join().unwrap().unwrap();
    assert_eq!(
        seen_name,
        text("renamed"),
        "the second read the first's commit"
    );
    let row = committed(&store, a).unwrap();
    assert_eq!(name_of(&row), &text("renamed"));
    assert_eq!(row.attributes["revenue"], Value::Money("7.0000".into()));
    assert_eq!(row.attributes["numberofemployees"], Value::Integer(2));
}

fn write_skew_is_allowed_as_under_read_committed(backend: &common::Backend) {
    // Two operations each read both rows and change the other one: no row is written by both, so neither
    // waits and both commit (Dataverse, on SQL Server's read committed, allows the same).
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::<dyn weft_store::Store>::from(common::open(backend, dir.path()));
    let a = create(&store, "a", 1);
    let b = create(&store, "b", 1);
    let barrier = Arc::new(Barrier::new(2));
    let run = |mine: Uuid, other: Uuid| {
        let store = store.clone();
        let barrier = barrier.clone();
        thread::spawn(move || {
            store.operate(soon(), |tx: &mut dyn Tx| {
                let total: i32 = [mine, other]
                    .iter()
                    .map(|id| {
                        match tx
                            .retrieve("account", *id, None)
                            .unwrap()
                            .unwrap()
                            .attributes
                            .get("numberofemployees")
                        {
                            Some(Value::Integer(n)) => *n,
                            _ => 0,
                        }
                    })
                    .sum();
                barrier.wait();
                // "Keep the total at least 1": each sees 2 and takes one away from its row.
                if total >= 2 {
                    tx.update(
                        "account",
                        mine,
                        attrs(&[("numberofemployees", Value::Integer(0))]),
                    )?;
                }
                Ok::<_, StoreError>(())
            })
        })
    };
    let (x, y) = (run(a, b), run(b, a));
    x.join().unwrap().unwrap();
    y.join().unwrap().unwrap();
    for id in [a, b] {
        assert_eq!(
            committed(&store, id).unwrap().attributes["numberofemployees"],
            Value::Integer(0)
        );
    }
}

fn a_deadlock_fails_one_operation_and_the_other_commits(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::<dyn weft_store::Store>::from(common::open(backend, dir.path()));
    let a = create(&store, "a", 1);
    let b = create(&store, "b", 1);
    let barrier = Arc::new(Barrier::new(2));
    let run = |first: Uuid, second: Uuid, name: &'static str| {
        let store = store.clone();
        let barrier = barrier.clone();
        thread::spawn(move || {
            store.operate(soon(), |tx: &mut dyn Tx| {
                tx.update("account", first, attrs(&[("name", text(name))]))?;
                barrier.wait();
                tx.update("account", second, attrs(&[("name", text(name))]))?;
                Ok::<_, StoreError>(())
            })
        })
    };
    let (x, y) = (run(a, b, "x"), run(b, a, "y"));
    let results = [x.join().unwrap(), y.join().unwrap()];
    let victims: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(victims.len(), 1, "exactly one victim: {results:?}");
    assert!(
        matches!(victims[0], StoreError::Deadlock { .. }),
        "{victims:?}"
    );
    assert_eq!(victims[0].dataverse_code(), "0x80044150");
    assert!(victims[0].to_string().contains("deadlock"));
    let winner = if results[0].is_ok() { "x" } else { "y" };
    for id in [a, b] {
        assert_eq!(name_of(&committed(&store, id).unwrap()), &text(winner));
    }
}

fn a_lock_wait_ends_at_the_operation_deadline(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::<dyn weft_store::Store>::from(common::open(backend, dir.path()));
    let a = create(&store, "a", 1);
    let (wrote_tx, wrote) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let holder = thread::spawn({
        let store = store.clone();
        move || {
            store.operate(soon(), |tx: &mut dyn Tx| {
                tx.update("account", a, attrs(&[("name", text("holder"))]))?;
                wrote_tx.send(()).unwrap();
                release.recv().unwrap();
                Ok::<_, StoreError>(())
            })
        }
    });
    wrote.recv().unwrap();
    // The holder waits for this test to let it go, so the wait below can only end at its deadline.
    let err = store
        .operate(
            Some(Instant::now() + Duration::from_millis(50)),
            |tx: &mut dyn Tx| tx.update("account", a, attrs(&[("name", text("late"))])),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::LockTimeout { .. }), "{err:?}");
    assert_eq!(err.dataverse_code(), "0x80044151");
    release_tx.send(()).unwrap();
    holder.join().unwrap().unwrap();
    assert_eq!(name_of(&committed(&store, a).unwrap()), &text("holder"));
}

fn job(correlation: Uuid) -> NewSystemJob {
    NewSystemJob {
        id: None,
        name: "job".into(),
        operation_type: 1,
        message_name: "Create".into(),
        primary_entity_type: Some("account".into()),
        regarding: None,
        owning_extension_id: None,
        correlation_id: correlation,
        depth: 1,
        data: b"{}".to_vec(),
        data_content_type: "application/json".into(),
        postpone_until: None,
        created_on: None,
    }
}

fn trace(correlation: Uuid) -> NewTraceLog {
    NewTraceLog {
        step_id: None,
        plugin: "Contoso.Plugins.Validate".into(),
        message_name: "Create".into(),
        primary_entity: Some("account".into()),
        depth: 1,
        correlation_id: correlation,
        mode: StepMode::Synchronous,
        duration_ms: 1,
        outcome: TraceOutcome::Failed,
        trace: "checking".into(),
        stderr: String::new(),
        error: Some("no".into()),
        recording: None,
    }
}

fn rollback_discards_rows_links_and_jobs_but_keeps_the_trace(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let a = create(&store, "a", 1);
    let correlation = Uuid::new_v4();
    let contact = store
        .transact(|tx| tx.create("contact", None, attrs(&[("fullname", text("c"))])))
        .unwrap();
    let target = EntityRef::new("account", a);
    let other = EntityRef::new("contact", contact);
    let err = store
        .operate(soon(), |tx: &mut dyn Tx| {
            tx.associate("account_contacts_nn", &target, std::slice::from_ref(&other))?;
            assert_eq!(
                tx.related("account_contacts_nn", &target)?,
                vec![other.clone()]
            );
            tx.associate(
                "contact_customer_accounts",
                &target,
                std::slice::from_ref(&other),
            )?;
            assert_eq!(
                tx.related("contact_customer_accounts", &target)?,
                vec![other.clone()]
            );
            tx.create("account", None, attrs(&[("name", text("gone"))]))?;
            tx.insert_system_job(job(correlation))?;
            tx.insert_trace_log(trace(correlation))?;
            Err::<(), _>(StoreError::Invalid("plug-in failed".into()))
        })
        .unwrap_err();
    assert_eq!(err, StoreError::Invalid("plug-in failed".into()));
    store
        .read(|r| {
            assert!(r.related("account_contacts_nn", &target)?.is_empty());
            assert!(r.related("contact_customer_accounts", &target)?.is_empty());
            assert_eq!(r.retrieve_multiple(&Query::new("account"))?.len(), 1);
            let jobs = r.system_jobs(&JobFilter {
                correlation_id: Some(correlation),
                ..Default::default()
            })?;
            assert!(jobs.is_empty());
            let traces = r.trace_logs(&TraceFilter {
                correlation_id: Some(correlation),
                ..Default::default()
            })?;
            assert_eq!(traces.len(), 1, "a failed operation keeps its trace");
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // The same writes, committed this time, are all there.
    store
        .operate(soon(), |tx: &mut dyn Tx| {
            tx.associate("account_contacts_nn", &target, std::slice::from_ref(&other))?;
            tx.insert_system_job(job(correlation))?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    store
        .read(|r| {
            assert_eq!(
                r.related("account_contacts_nn", &target)?,
                vec![other.clone()]
            );
            let jobs = r.system_jobs(&JobFilter {
                correlation_id: Some(correlation),
                ..Default::default()
            })?;
            assert_eq!(jobs.len(), 1);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

fn a_panicking_operation_releases_its_locks(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let a = create(&store, "a", 1);
    let err = store
        .operate(soon(), |tx: &mut dyn Tx| {
            tx.update("account", a, attrs(&[("name", text("panicked"))]))?;
            panic!("plug-in host bug");
            #[allow(unreachable_code)]
            Ok::<_, StoreError>(())
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::WorkPanicked(_)), "{err:?}");
    store
        .operate(
            Some(Instant::now() + Duration::from_millis(50)),
            |tx: &mut dyn Tx| tx.update("account", a, attrs(&[("name", text("after"))])),
        )
        .unwrap();
    assert_eq!(name_of(&committed(&store, a).unwrap()), &text("after"));
}

/// Lambdas (`any`/`all`) an operation evaluates in memory for its own rows answer what the backend's SQL
/// answers once they are committed; a lambda over rows the operation changed is refused, not answered from
/// committed rows alone.
fn lambdas_agree_in_an_operation_and_committed(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let alpha = create(&store, "alpha", 10);
    let bravo = create(&store, "bravo", 20);
    let charlie = create(&store, "charlie", 30);
    let contact = |name: Option<&str>, parent: Uuid| {
        let mut a = attrs(&[(
            "parentcustomerid",
            Value::EntityReference {
                logical_name: "account".into(),
                id: parent,
            },
        )]);
        if let Some(n) = name {
            a.insert("fullname".into(), text(n));
        }
        store
            .transact(move |tx| tx.create("contact", None, a))
            .unwrap()
    };
    contact(Some("Kim"), alpha);
    contact(None, alpha);
    let lee = contact(Some("Lee"), bravo);
    store
        .transact(move |tx| {
            tx.associate(
                "account_contacts_nn",
                &EntityRef::new("account", alpha),
                &[EntityRef::new("contact", lee)],
            )
        })
        .unwrap();
    let by_parent = Link::Lookup {
        table: "contact".into(),
        attribute: "parentcustomerid".into(),
    };
    let related = |link: &Link, all: bool, c: Option<Condition>| Condition::Related {
        link: link.clone(),
        all,
        condition: c.map(Box::new),
    };
    let kim = Condition::Eq("fullname".into(), text("Kim"));
    let lambdas = [
        related(&by_parent, false, None),
        related(&by_parent, false, Some(kim.clone())),
        // alpha's second contact has no name: unknown, so not all of alpha's are Kim.
        related(&by_parent, true, Some(kim.clone())),
        Condition::Not(Box::new(related(&by_parent, false, None))),
        related(
            &Link::ManyToMany("account_contacts_nn".into()),
            false,
            Some(Condition::Eq("fullname".into(), text("Lee"))),
        ),
    ];
    let queries: Vec<Query> = lambdas
        .iter()
        .map(|c| {
            Query::new("account")
                .filter(c.clone())
                .order_by("name", false)
                .columns(["name"])
        })
        .collect();
    let seen = store
        .operate(soon(), |tx: &mut dyn Tx| {
            tx.create("account", None, attrs(&[("name", text("aardvark"))]))?;
            queries
                .iter()
                .map(|q| tx.retrieve_multiple(q))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    let after: Vec<Vec<Row>> = queries
        .iter()
        .map(|q| store.read(|r| r.retrieve_multiple(q)).unwrap())
        .collect();
    assert_eq!(seen, after, "in memory and in SQL alike");
    let names = |rows: &[Row]| rows.iter().map(|r| name_of(r).clone()).collect::<Vec<_>>();
    assert_eq!(names(&after[0]), [text("alpha"), text("bravo")]);
    assert_eq!(names(&after[1]), [text("alpha")]);
    assert_eq!(
        names(&after[2]),
        [text("aardvark"), text("charlie")],
        "all holds for no related rows"
    );
    assert_eq!(names(&after[3]), [text("aardvark"), text("charlie")]);
    assert_eq!(names(&after[4]), [text("alpha")]);

    // A lambda over rows the operation itself wrote: PostgreSQL's SQL sees them (the operation is a server
    // transaction); SQLite's would not (the writes wait in memory), so it refuses.
    let charlie_child = attrs(&[
        ("fullname", text("New")),
        (
            "parentcustomerid",
            Value::EntityReference {
                logical_name: "account".into(),
                id: charlie,
            },
        ),
    ]);
    let answer = store.operate(soon(), |tx: &mut dyn Tx| {
        tx.create("contact", None, charlie_child.clone())?;
        tx.retrieve_multiple(&queries[0])
    });
    match backend {
        common::Backend::Sqlite => assert!(
            matches!(&answer, Err(StoreError::Invalid(why)) if why.contains("changed rows of `contact`")),
            "{answer:?}"
        ),
        common::Backend::Postgres(_) => assert_eq!(
            names(&answer.unwrap()),
            [text("alpha"), text("bravo"), text("charlie")]
        ),
    }
}

/// A system job whose id is taken fails the operation that writes it: nothing the operation wrote commits,
/// its trace is kept. (On PostgreSQL the job's insert goes out with the operation's next statement or its COMMIT: the
/// failure surfaces there, as the operation's error.)
fn a_duplicate_job_fails_the_operation_and_nothing_of_it_commits(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let correlation = Uuid::new_v4();
    let taken = store
        .transact(move |tx| tx.insert_system_job(job(correlation)))
        .unwrap();
    let (created_tx, created) = mpsc::channel();
    let err = store
        .operate(soon(), |tx: &mut dyn Tx| {
            let id = tx.create("account", None, attrs(&[("name", text("lost"))]))?;
            created_tx.send(id).unwrap();
            tx.insert_system_job(NewSystemJob {
                id: Some(taken),
                ..job(correlation)
            })?;
            tx.insert_trace_log(trace(correlation))
        })
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::DuplicateId {
            table: "asyncoperation".into(),
            id: taken
        }
    );
    let id = created.recv().unwrap();
    assert_eq!(committed(&*store, id), None);
    let jobs = store
        .read(|r| {
            r.system_jobs(&JobFilter {
                correlation_id: Some(correlation),
                ..JobFilter::default()
            })
        })
        .unwrap();
    assert_eq!(jobs.len(), 1, "only the first job");
    let traces = store
        .read(|r| {
            r.trace_logs(&TraceFilter {
                correlation_id: Some(correlation),
                ..TraceFilter::default()
            })
        })
        .unwrap();
    assert_eq!(traces.len(), 1, "the failed operation keeps its trace");
}

on_both_backends!(
    a_duplicate_job_fails_the_operation_and_nothing_of_it_commits,
    an_operation_reads_its_own_writes_merged_with_committed_rows,
    no_dirty_reads_outside_the_writing_operation,
    a_second_writer_waits_for_the_first_and_loses_nothing,
    write_skew_is_allowed_as_under_read_committed,
    a_deadlock_fails_one_operation_and_the_other_commits,
    a_lock_wait_ends_at_the_operation_deadline,
    rollback_discards_rows_links_and_jobs_but_keeps_the_trace,
    a_panicking_operation_releases_its_locks,
    lambdas_agree_in_an_operation_and_committed,
);

/// PostgreSQL's pool opens at most `connections` (`[store] pool_size`): beyond it a caller waits for one
/// given back (this read, which then sees the holder's commit), and an operation whose deadline passes
/// first fails naming the setting.
#[test]
fn postgres_pool_size_bounds_the_connections() {
    common::with_postgres(
        "operations::postgres_pool_size_bounds_the_connections",
        |backend| {
            let common::Backend::Postgres(url) = backend else {
                unreachable!("with_postgres gives a PostgreSQL database")
            };
            let options = weft_store::PgOptions {
                connections: 1,
                workers: 1,
                ..Default::default()
            };
            let store: Arc<dyn weft_store::Store> =
                Arc::new(weft_store::PgStore::open(url, common::schema(), options).unwrap());
            let (wrote_tx, wrote) = mpsc::channel();
            let (release_tx, release) = mpsc::channel::<()>();
            let holder = thread::spawn({
                let store = store.clone();
                move || {
                    store.operate(soon(), |tx: &mut dyn Tx| {
                        tx.create("account", None, attrs(&[("name", text("holder"))]))?;
                        wrote_tx.send(()).unwrap();
                        release.recv().unwrap();
                        Ok::<_, StoreError>(())
                    })
                }
            });
            wrote.recv().unwrap();
            let err = store
                .operate(
                    Some(Instant::now() + Duration::from_millis(50)),
                    |_: &mut dyn Tx| Ok::<_, StoreError>(()),
                )
                .unwrap_err();
            assert!(
                matches!(&err, StoreError::Database(m) if m.contains("pool_size")),
                "{err:?}"
            );
            let reader = thread::spawn({
                let store = store.clone();
                move || store.read(|r| r.retrieve_multiple(&Query::new("account")))
            });
            release_tx.send(()).unwrap();
            holder.join().unwrap().unwrap();
            let rows = reader.join().unwrap().unwrap();
            assert_eq!(rows.len(), 1, "the read waited for the holder's connection");
        },
    );
}
