//! `weft_store::copy`: SQLite → PostgreSQL → SQLite loses nothing, and a non-empty destination is refused
//! unless forced.

mod common;

use uuid::Uuid;
use weft_store::copy::{Location, copy};
use weft_store::system::*;
use weft_store::{
    Attributes, EntityRef, Query, Read, SqliteStore, Store, StoreError, StoreExt, TestDatabase,
    Value,
};

/// Everything a store holds, as read through the backend-neutral API (secrets included).
fn snapshot(store: &dyn Store) -> String {
    store
        .read(|r: &dyn Read| {
            let mut out = String::new();
            for t in ["account", "contact", "setting"] {
                out += &format!("{t}: {:?}\n", r.retrieve_multiple(&Query::new(t))?);
            }
            for a in r.retrieve_multiple(&Query::new("account"))? {
                let row = EntityRef::new("account", a.id);
                out += &format!("nn {:?}\n", r.related("account_contacts_nn", &row)?);
            }
            out += &format!("assemblies {:?}\n", r.plugin_assemblies()?);
            for a in r.plugin_assemblies()? {
                let c = r.plugin_assembly_content(a.id)?;
                out += &format!("content {:?}\n", c.map(|c| (c.sha256, c.content)));
            }
            out += &format!("types {:?}\n", r.plugin_types()?);
            out += &format!("declarations {:?}\n", r.declarations()?);
            for s in r.steps()? {
                out += &format!(
                    "step {s:?} secure={:?}\n",
                    r.step_secure_configuration_for_sandbox(s.def.id)?
                );
            }
            for e in r.service_endpoints()? {
                let s = r.service_endpoint_secrets_for_delivery(e.def.id)?.unwrap();
                out += &format!(
                    "endpoint {e:?} {:?} {:?} {:?}\n",
                    s.sas_key, s.sas_token, s.auth_value
                );
            }
            for j in r.system_jobs(&JobFilter::default())? {
                out += &format!("job {j:?} attempts {:?}\n", r.job_attempts(j.id)?);
            }
            for t in r.trace_logs(&TraceFilter::default())? {
                out += &format!("trace {t:?} recording {:?}\n", r.trace_recording(t.id)?);
            }
            Ok::<_, StoreError>(out)
        })
        .unwrap()
}

fn fill(store: &SqliteStore) {
    let (aid, tid, sid, eid) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    store
        .transact(move |tx| {
            let contact = tx.create(
                "contact",
                None,
                Attributes::from([("fullname".into(), Value::String("Ada".into()))]),
            )?;
            let account = tx.create(
                "account",
                None,
                Attributes::from([
                    ("name".into(), Value::String("Contoso".into())),
                    ("description".into(), Value::String("memo ünïcode".into())),
                    ("numberofemployees".into(), Value::Integer(42)),
                    ("bigcount".into(), Value::BigInt(9_007_199_254_740_993)),
                    ("ratio".into(), Value::Double(0.1 + 0.2)),
                    ("share".into(), Value::Decimal("1.250".into())),
                    ("revenue".into(), Value::Money("1000000.5000".into())),
                    ("donotemail".into(), Value::Boolean(true)),
                    ("lastcontactedon".into(), Value::DateTime(1_700_000_000_123)),
                    ("externalid".into(), Value::Guid(Uuid::new_v4())),
                    (
                        "primarycontactid".into(),
                        Value::EntityReference {
                            logical_name: "contact".into(),
                            id: contact,
                        },
                    ),
                    ("industrycode".into(), Value::OptionSetValue(2)),
                    (
                        "channels".into(),
                        Value::OptionSetValueCollection(vec![10, 30]),
                    ),
                ]),
            )?;
            tx.create(
                "setting",
                None,
                Attributes::from([("name".into(), Value::String("flag".into()))]),
            )?;
            tx.associate(
                "account_contacts_nn",
                &EntityRef::new("account", account),
                &[EntityRef::new("contact", contact)],
            )?;
            tx.put_plugin_assembly(&PluginAssembly {
                id: aid,
                name: "contoso".into(),
                component_path: "plugins/contoso.wasm".into(),
                sha256: Some("ab".repeat(32)),
            })?;
            tx.put_plugin_assembly_content(
                aid,
                Some(&AssemblyContent {
                    sha256: "cd".repeat(32),
                    content: vec![0, 97, 115, 109, 255, 1],
                }),
            )?;
            tx.put_plugin_type(&PluginType {
                id: tid,
                assembly_id: aid,
                type_name: "Contoso.Enrich".into(),
            })?;
            tx.put_declaration(&Declaration {
                kind: "step".into(),
                id: sid,
                fingerprint: "f1".into(),
            })?;
            tx.put_service_endpoint(
                &ServiceEndpointDef {
                    id: eid,
                    name: "orders".into(),
                    description: Some("the queue".into()),
                    contract: Contract::Queue,
                    message_format: MessageFormat::Json,
                    auth_type: AuthType::SasKey,
                    connection_mode: ConnectionMode::Normal,
                    namespace_format: Some(NamespaceFormat::NamespaceAddress),
                    user_claim: UserClaim::UserId,
                    message_charset: None,
                    namespace_address: Some("sb://contoso/".into()),
                    path: Some("orders".into()),
                    url: None,
                    sas_key_name: Some("Root".into()),
                    solution_namespace: None,
                },
                &EndpointSecretsUpdate {
                    sas_key: SecretUpdate::Set("K3Y".into()),
                    ..Default::default()
                },
            )?;
            tx.put_step(
                &StepDef {
                    id: sid,
                    name: "enrich".into(),
                    message: "Create".into(),
                    primary_entity: Some("account".into()),
                    stage: Stage::PreOperation,
                    mode: StepMode::Synchronous,
                    rank: 1,
                    filtering_attributes: vec!["name".into()],
                    configuration: Some("cfg".into()),
                    images: vec![StepImage {
                        id: Uuid::new_v4(),
                        entity_alias: "pre".into(),
                        image_type: ImageType::PreImage,
                        attributes: vec!["name".into()],
                        message_property_name: "Target".into(),
                    }],
                    state: StepState::Enabled,
                    impersonating_user_id: None,
                    invocation_source: InvocationSource::Parent,
                    async_auto_delete: false,
                    event_handler: EventHandler::PluginType(tid),
                },
                SecretUpdate::Set("SECURE".into()),
            )?;
            for n in 0..3 {
                let job = tx.insert_system_job(NewSystemJob {
                    id: None,
                    name: format!("job {n}"),
                    operation_type: 1,
                    message_name: "Create".into(),
                    primary_entity_type: Some("account".into()),
                    regarding: Some(EntityRef::new("account", account)),
                    owning_extension_id: Some(sid),
                    correlation_id: Uuid::new_v4(),
                    depth: 1,
                    data: vec![n, 0, 255],
                    data_content_type: "application/json".into(),
                    postpone_until: None,
                    created_on: None,
                })?;
                tx.insert_job_attempt(&NewJobAttempt {
                    job_id: job,
                    worker: "w1".into(),
                    started_on: 5,
                    endpoint_id: Some(eid),
                    http_status: Some(503),
                    latency_ms: 12,
                    outcome: "transient".into(),
                    error_code: Some(-2147220970),
                    message: Some("busy".into()),
                })?;
            }
            tx.claim_jobs("w1", 1_800_000_000_000, 60_000, 1)?;
            for n in 0..2 {
                tx.insert_trace_log(NewTraceLog {
                    step_id: Some(sid),
                    plugin: "Contoso.Enrich".into(),
                    message_name: "Create".into(),
                    primary_entity: Some("account".into()),
                    depth: 1,
                    correlation_id: Uuid::new_v4(),
                    mode: StepMode::Synchronous,
                    duration_ms: 3,
                    outcome: TraceOutcome::Succeeded,
                    trace: format!("trace {n}"),
                    stderr: String::new(),
                    error: None,
                    recording: (n == 1).then(|| "{\"recorded\":true}".to_string()),
                })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

/// SQLite → PostgreSQL → SQLite keeps every row, link, registration entry, secret, job, attempt and trace row
/// with its ids, times, states and sequence; a second copy into the filled store is refused, and `force`
/// replaces its rows.
#[test]
fn copy_round_trip_sqlite_postgres_sqlite_loses_nothing() {
    let Some(db) =
        TestDatabase::create("copy::copy_round_trip_sqlite_postgres_sqlite_loses_nothing")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.db");
    let back = dir.path().join("back.db");
    let schema = common::schema();
    let before = {
        let store = SqliteStore::open(&first, schema.clone(), Default::default()).unwrap();
        fill(&store);
        snapshot(&store)
    };
    assert!(before.contains("K3Y") && before.contains("SECURE") && before.contains("recorded"));
    let pg = Location::Postgres(db.url().to_string());
    let report = copy(&Location::Sqlite(first.clone()), &pg, &schema, false).unwrap();
    assert!(
        report.tables.contains(&("asyncoperation".to_string(), 3)),
        "{report:?}"
    );
    assert!(
        report.tables.contains(&("plugintracelog".to_string(), 2)),
        "{report:?}"
    );
    let on_pg = {
        let store =
            weft_store::PgStore::open(db.url(), schema.clone(), Default::default()).unwrap();
        snapshot(&store)
    };
    assert_eq!(on_pg, before);
    copy(&pg, &Location::Sqlite(back.clone()), &schema, false).unwrap();
    let after = {
        let store = SqliteStore::open(&back, schema.clone(), Default::default()).unwrap();
        snapshot(&store)
    };
    assert_eq!(after, before);

    let err = copy(&Location::Sqlite(first.clone()), &pg, &schema, false).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    copy(&Location::Sqlite(first), &pg, &schema, true).unwrap();
    let store = weft_store::PgStore::open(db.url(), schema, Default::default()).unwrap();
    assert_eq!(snapshot(&store), before);
    // Jobs inserted after the copy continue the sequence.
    let next = store
        .transact(|tx| {
            tx.insert_system_job(NewSystemJob {
                id: None,
                name: "after".into(),
                operation_type: 1,
                message_name: "Create".into(),
                primary_entity_type: None,
                regarding: None,
                owning_extension_id: None,
                correlation_id: Uuid::new_v4(),
                depth: 1,
                data: vec![],
                data_content_type: "application/json".into(),
                postpone_until: None,
                created_on: None,
            })
        })
        .unwrap();
    let jobs = store
        .read(|r| r.system_jobs(&JobFilter::default()))
        .unwrap();
    let last = jobs.iter().find(|j| j.id == next).unwrap();
    assert!(
        jobs.iter()
            .all(|j| j.id == next || j.sequence < last.sequence)
    );
}
