//! System tables: registration with write-only secrets, the system-job outbox, claims with leases and takeover.

#[macro_use]
mod common;

use uuid::Uuid;
use weft_store::system::*;
use weft_store::{Attributes, EntityRef, Read, StoreError, StoreExt, Value};

fn job(name: &str, correlation: Uuid) -> NewSystemJob {
    NewSystemJob {
        id: None,
        name: name.into(),
        operation_type: 1,
        message_name: "Create".into(),
        primary_entity_type: Some("account".into()),
        regarding: None,
        owning_extension_id: None,
        correlation_id: correlation,
        depth: 1,
        data: b"{\"context\":1}".to_vec(),
        data_content_type: "application/json".into(),
        postpone_until: None,
        created_on: None,
    }
}

fn claim(store: &dyn weft_store::Store, worker: &'static str, now: i64, limit: u32) -> Vec<String> {
    store
        .transact(move |tx| tx.claim_jobs(worker, now, 30_000, limit))
        .unwrap()
        .into_iter()
        .map(|j| {
            assert_eq!(j.status, JobStatus::InProgress);
            assert_eq!(j.lease_owner.as_deref(), Some(worker));
            assert_eq!(j.lease_expires_on, Some(now + 30_000));
            j.name
        })
        .collect()
}

/// A job written in a work that fails is rolled back with the work's data (the outbox never leaks).
fn outbox_rows_commit_and_roll_back_with_the_operation(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let c = Uuid::new_v4();
    let kept = store
        .transact(move |tx| {
            let id = tx.create(
                "account",
                None,
                Attributes::from([("name".into(), Value::String("a".into()))]),
            )?;
            let mut j = job("kept", c);
            j.regarding = Some(EntityRef::new("account", id));
            tx.insert_system_job(j)
        })
        .unwrap();
    let err = store
        .transact(move |tx| {
            tx.insert_system_job(job("lost", c))?;
            Err::<(), _>(StoreError::Invalid("sync step failed".into()))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "sync step failed");
    let jobs = store
        .read(|r| {
            r.system_jobs(&JobFilter {
                correlation_id: Some(c),
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!((j.id, j.name.as_str()), (kept, "kept"));
    assert_eq!(
        (j.status, j.status.state()),
        (JobStatus::WaitingForResources, JobState::Ready)
    );
    assert_eq!(j.data, b"{\"context\":1}");
    assert_eq!(j.created_on, 1_700_000_000_000, "store clock");
    let stamped = store
        .transact(move |tx| {
            tx.insert_system_job(NewSystemJob {
                created_on: Some(42),
                ..job("stamped", c)
            })
        })
        .unwrap();
    assert_eq!(
        store
            .read(|r| r.system_job(stamped))
            .unwrap()
            .map(|j| j.created_on),
        Some(42),
        "caller's OperationCreatedOn"
    );
    assert_eq!(
        j.regarding.as_ref().map(|r| r.logical_name.as_str()),
        Some("account")
    );
    let dup = store
        .transact(move |tx| {
            tx.insert_system_job(NewSystemJob {
                id: Some(kept),
                ..job("dup", c)
            })
        })
        .unwrap_err();
    assert_eq!(
        dup,
        StoreError::DuplicateId {
            table: "asyncoperation".into(),
            id: kept
        }
    );
}

/// Claims are exclusive while the lease runs; after it expires another worker takes the job over and the
/// first worker can no longer complete it.
fn claim_with_lease_and_takeover(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let c = Uuid::new_v4();
    let ids = store
        .transact(move |tx| {
            ["j1", "j2", "j3"]
                .map(|n| tx.insert_system_job(job(n, c)))
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    assert_eq!(claim(&store, "worker-a", 1_000, 2), ["j1", "j2"]);
    assert_eq!(
        claim(&store, "worker-b", 2_000, 10),
        ["j3"],
        "leased jobs are not claimed twice"
    );
    assert!(
        claim(&store, "worker-b", 30_999, 10).is_empty(),
        "lease of worker-a still running"
    );
    // worker-a died; its lease ended at 31_000.
    assert_eq!(claim(&store, "worker-b", 31_000, 10), ["j1", "j2"]);
    let (j1, j2) = (ids[0], ids[1]);
    let err = store
        .transact(move |tx| tx.complete_job(j1, "worker-a", 31_500))
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::LeaseLost {
            id: j1,
            worker: "worker-a".into()
        }
    );
    store
        .transact(move |tx| tx.complete_job(j1, "worker-b", 31_500))
        .unwrap();
    let done = store.read(|r| r.system_job(j1)).unwrap().unwrap();
    assert_eq!(
        (done.status, done.completed_on, done.started_on),
        (JobStatus::Succeeded, Some(31_500), Some(1_000))
    );
    assert_eq!(done.lease_owner, None);
    let err = store
        .transact(move |tx| tx.complete_job(j1, "worker-b", 31_600))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseLost { .. }),
        "a completed job cannot complete again"
    );
    let ghost = Uuid::new_v4();
    let err = store
        .transact(move |tx| tx.complete_job(ghost, "worker-b", 1))
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            table: "asyncoperation".into(),
            id: ghost
        }
    );
    let fail = JobError {
        code: Some(0x80040265_u32 as i32),
        message: "InvalidPluginExecution".into(),
        friendly_message: None,
    };
    store
        .transact(move |tx| tx.fail_job(j2, "worker-b", 32_000, &fail))
        .unwrap();
    let failed = store.read(|r| r.system_job(j2)).unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.status.state()),
        (JobStatus::Failed, JobState::Completed)
    );
    assert_eq!(failed.error_code, Some(-2147220891));
    assert_eq!(
        claim(&store, "worker-c", 100_000, 10),
        ["j3"],
        "only j3 (lease expired); completed jobs never"
    );
}

/// A waiting job is retried only once its next attempt is due; a postponed job only after postponeuntil.
fn wait_and_postpone_delay_claims(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let c = Uuid::new_v4();
    let id = store
        .transact(move |tx| tx.insert_system_job(job("retry", c)))
        .unwrap();
    store
        .transact(move |tx| {
            tx.insert_system_job(NewSystemJob {
                postpone_until: Some(50_000),
                ..job("later", c)
            })
        })
        .unwrap();
    assert_eq!(claim(&store, "w", 1_000, 10), ["retry"]);
    let e = JobError {
        code: Some(0x80044306_u32 as i32),
        message: "503 from endpoint".into(),
        friendly_message: Some("busy".into()),
    };
    store
        .transact(move |tx| tx.wait_job(id, "w", 10_000, &e))
        .unwrap();
    let waiting = store.read(|r| r.system_job(id)).unwrap().unwrap();
    assert_eq!(
        (waiting.status, waiting.status.state()),
        (JobStatus::Waiting, JobState::Suspended)
    );
    assert_eq!(
        (waiting.retry_count, waiting.postpone_until),
        (1, Some(10_000))
    );
    assert_eq!(waiting.message.as_deref(), Some("503 from endpoint"));
    assert!(claim(&store, "w", 9_999, 10).is_empty());
    assert_eq!(claim(&store, "w", 10_000, 10), ["retry"]);
    store
        .transact(move |tx| tx.complete_job(id, "w", 10_500))
        .unwrap();
    assert!(claim(&store, "w", 49_999, 10).is_empty());
    assert_eq!(claim(&store, "w2", 50_000, 10), ["later"]);
    let running = store
        .read(|r| {
            r.system_jobs(&JobFilter {
                status: Some(JobStatus::InProgress),
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(
        running.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        ["later"]
    );
    let done = store
        .read(|r| {
            r.system_jobs(&JobFilter {
                state: Some(JobState::Completed),
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!((done.len(), done[0].retry_count), (1, 1));
    assert!(store.transact(move |tx| tx.delete_job(id)).unwrap());
    assert!(!store.transact(move |tx| tx.delete_job(id)).unwrap());
}

/// A claim takes the oldest due jobs (by `createdon`, then insertion) across Ready, Waiting-and-due and
/// lease-expired jobs, up to its limit, and never a job whose time has not come.
fn claims_take_the_oldest_due_jobs_of_every_kind(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let c = Uuid::new_v4();
    let at = move |name: &str, created_on: i64, postpone_until: Option<i64>| NewSystemJob {
        created_on: Some(created_on),
        postpone_until,
        ..job(name, c)
    };
    let insert = |j: NewSystemJob| store.transact(move |tx| tx.insert_system_job(j)).unwrap();
    insert(at("expired", 300, None));
    assert_eq!(claim(&store, "dead", 1_000, 1), ["expired"]); // lease ends at 31_000
    let waiting = insert(at("waiting", 400, None));
    assert_eq!(claim(&store, "w", 1_000, 1), ["waiting"]);
    let e = JobError {
        code: None,
        message: "503".into(),
        friendly_message: None,
    };
    store
        .transact(move |tx| tx.wait_job(waiting, "w", 10_000, &e))
        .unwrap();
    insert(at("postponed", 100, Some(60_000)));
    insert(at("ready", 200, None));
    insert(at("oldest", 50, None));
    assert_eq!(
        claim(&store, "w2", 40_000, 3),
        ["oldest", "ready", "expired"],
        "oldest first whatever the kind; the limit holds"
    );
    assert_eq!(claim(&store, "w2", 40_000, 10), ["waiting"]);
    assert!(claim(&store, "w2", 59_999, 10).is_empty());
    assert_eq!(claim(&store, "w2", 60_000, 10), ["postponed"]);
}

fn endpoint(id: Uuid) -> ServiceEndpointDef {
    ServiceEndpointDef {
        id,
        name: "orders-queue".into(),
        description: None,
        contract: Contract::Queue,
        message_format: MessageFormat::Json,
        auth_type: AuthType::SasKey,
        connection_mode: ConnectionMode::Normal,
        namespace_format: Some(NamespaceFormat::NamespaceAddress),
        user_claim: UserClaim::UserId,
        message_charset: None,
        namespace_address: Some("sb://contoso.servicebus.windows.net/".into()),
        path: Some("orders".into()),
        url: None,
        sas_key_name: Some("RootManageSharedAccessKey".into()),
        solution_namespace: Some("contoso".into()),
    }
}

/// Endpoint secrets and secure step configuration are stored but never returned by the listing reads.
fn secrets_are_write_only(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let (eid, aid, tid, sid) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let secrets = EndpointSecretsUpdate {
        sas_key: SecretUpdate::Set("S3CRET-KEY".into()),
        ..Default::default()
    };
    store
        .transact(move |tx| tx.put_service_endpoint(&endpoint(eid), &secrets))
        .unwrap();
    let step = StepDef {
        id: sid,
        name: "Contoso: post account".into(),
        message: "Create".into(),
        primary_entity: Some("account".into()),
        stage: Stage::PostOperation,
        mode: StepMode::Asynchronous,
        rank: 1,
        filtering_attributes: vec![],
        configuration: Some("unsecure".into()),
        images: vec![StepImage {
            id: Uuid::new_v4(),
            entity_alias: "post".into(),
            image_type: ImageType::PostImage,
            attributes: vec!["name".into(), "revenue".into()],
            message_property_name: "Target".into(),
        }],
        state: StepState::Enabled,
        impersonating_user_id: None,
        invocation_source: InvocationSource::Parent,
        async_auto_delete: true,
        event_handler: EventHandler::PluginType(tid),
    };
    let s = step.clone();
    let err = store
        .transact(move |tx| tx.put_step(&s, SecretUpdate::Keep))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("step `Contoso: post account`: event handler plugintype {tid} is not registered")
    );
    let s = step.clone();
    store
        .transact(move |tx| {
            tx.put_plugin_assembly(&PluginAssembly {
                id: aid,
                name: "contoso".into(),
                component_path: "plugins/contoso.wasm".into(),
                sha256: None,
            })?;
            tx.put_plugin_type(&PluginType {
                id: tid,
                assembly_id: aid,
                type_name: "Contoso.PostAccount".into(),
            })?;
            tx.put_step(&s, SecretUpdate::Set("TOP-SECURE-CONFIG".into()))
        })
        .unwrap();

    assert_eq!(
        store.read(|r| r.step_async_auto_delete(sid)).unwrap(),
        Some(true)
    );
    assert_eq!(
        store
            .read(|r| r.step_async_auto_delete(Uuid::new_v4()))
            .unwrap(),
        None
    );
    let (endpoints, steps) = store
        .read(|r| Ok::<_, StoreError>((r.service_endpoints()?, r.steps()?)))
        .unwrap();
    let shown = format!(
        "{} {} {endpoints:?} {steps:?}",
        serde_json::to_string(&endpoints).unwrap(),
        serde_json::to_string(&steps).unwrap()
    );
    assert!(
        !shown.contains("S3CRET-KEY") && !shown.contains("TOP-SECURE-CONFIG"),
        "secret leaked: {shown}"
    );
    assert!(
        endpoints[0].is_sas_key_set
            && !endpoints[0].is_sas_token_set
            && !endpoints[0].is_auth_value_set
    );
    assert_eq!(endpoints[0].def, endpoint(eid));
    assert!(steps[0].is_secure_configuration_set);
    assert_eq!(steps[0].def, step);
    assert_eq!(
        store
            .read(|r| r.step_secure_configuration_for_sandbox(sid))
            .unwrap()
            .as_deref(),
        Some("TOP-SECURE-CONFIG")
    );
    let for_delivery = store
        .read(|r| r.service_endpoint_secrets_for_delivery(eid))
        .unwrap()
        .unwrap();
    assert_eq!(for_delivery.sas_key.as_deref(), Some("S3CRET-KEY"));
    assert!(!format!("{for_delivery:?}").contains("S3CRET-KEY"));

    // Rewriting the endpoint keeps secrets unless told; Clear removes them.
    let mut renamed = endpoint(eid);
    renamed.name = "renamed".into();
    let r = renamed.clone();
    store
        .transact(move |tx| tx.put_service_endpoint(&r, &EndpointSecretsUpdate::default()))
        .unwrap();
    assert!(
        store
            .read(|r| r.service_endpoint(eid))
            .unwrap()
            .unwrap()
            .is_sas_key_set
    );
    let clear = EndpointSecretsUpdate {
        sas_key: SecretUpdate::Clear,
        ..Default::default()
    };
    store
        .transact(move |tx| tx.put_service_endpoint(&renamed, &clear))
        .unwrap();
    let e = store.read(|r| r.service_endpoint(eid)).unwrap().unwrap();
    assert_eq!((e.def.name.as_str(), e.is_sas_key_set), ("renamed", false));
}

/// Registration refuses async steps outside PostOperation and endpoint deletion while a step uses it.
fn registration_rules(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let (eid, sid) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .transact(move |tx| {
            tx.put_service_endpoint(&endpoint(eid), &EndpointSecretsUpdate::default())
        })
        .unwrap();
    let mut step = StepDef {
        id: sid,
        name: "to queue".into(),
        message: "Update".into(),
        primary_entity: None,
        stage: Stage::PreOperation,
        mode: StepMode::Asynchronous,
        rank: 5,
        filtering_attributes: vec!["name".into()],
        configuration: None,
        images: vec![],
        state: StepState::Disabled,
        impersonating_user_id: Some(Uuid::new_v4()),
        invocation_source: InvocationSource::Child,
        async_auto_delete: false,
        event_handler: EventHandler::ServiceEndpoint(eid),
    };
    let s = step.clone();
    let err = store
        .transact(move |tx| tx.put_step(&s, SecretUpdate::Keep))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "step `to queue`: asynchronous steps must be registered in stage 40 (PostOperation), not 20"
    );
    step.stage = Stage::PostOperation;
    let s = step.clone();
    store
        .transact(move |tx| tx.put_step(&s, SecretUpdate::Keep))
        .unwrap();
    let steps = store.read(|r| r.steps()).unwrap();
    assert_eq!(steps[0].def, step);
    assert!(!steps[0].is_secure_configuration_set);
    let err = store
        .transact(move |tx| tx.delete_service_endpoint(eid))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("service endpoint {eid} is used by step `to queue`; delete the step first")
    );
    assert!(store.transact(move |tx| tx.delete_step(sid)).unwrap());
    assert!(
        store
            .transact(move |tx| tx.delete_service_endpoint(eid))
            .unwrap()
    );
    assert!(store.read(|r| r.service_endpoints()).unwrap().is_empty());
}

/// Attempts are numbered per job in the writer, update_job changes state and releases the lease when leaving
/// Locked, and deleting a job deletes its attempts.
fn job_attempts_and_updates(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let c = Uuid::new_v4();
    let id = store
        .transact(move |tx| tx.insert_system_job(job("a", c)))
        .unwrap();
    let attempt = move |worker: &str| NewJobAttempt {
        job_id: id,
        worker: worker.into(),
        started_on: 5,
        endpoint_id: None,
        http_status: Some(503),
        latency_ms: 7,
        outcome: "transient".into(),
        error_code: Some(-2147204346),
        message: Some("busy".into()),
    };
    let (a1, a2) = (attempt("w1"), attempt("w2"));
    let numbers = store
        .transact(move |tx| {
            tx.claim_jobs("w1", 0, 1_000, 1)?;
            Ok::<_, StoreError>((tx.insert_job_attempt(&a1)?, tx.insert_job_attempt(&a2)?))
        })
        .unwrap();
    assert_eq!(numbers, (1, 2));
    let unknown = NewJobAttempt {
        job_id: Uuid::new_v4(),
        ..attempt("w1")
    };
    let err = store
        .transact(move |tx| tx.insert_job_attempt(&unknown))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

    // Locked → Pausing keeps the lease; → Suspended releases it and sets the error once.
    let keep = JobUpdate {
        status: JobStatus::Pausing,
        postpone_until: None,
        completed_on: None,
        error: None,
        count_retry: false,
    };
    store.transact(move |tx| tx.update_job(id, &keep)).unwrap();
    let j = store.read(|r| r.system_job(id)).unwrap().unwrap();
    assert_eq!(
        (j.status, j.lease_owner.as_deref()),
        (JobStatus::Pausing, Some("w1"))
    );
    // Pausing is still Locked: its lease can expire (claimed at 0 with a 1 s lease).
    assert!(
        store
            .read(|r| r.expired_job_leases(999))
            .unwrap()
            .is_empty()
    );
    let expired = store.read(|r| r.expired_job_leases(1_000)).unwrap();
    assert_eq!(expired.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
    let suspend = JobUpdate {
        status: JobStatus::Waiting,
        postpone_until: None,
        completed_on: None,
        error: Some(JobError {
            code: Some(1),
            message: "paused".into(),
            friendly_message: None,
        }),
        count_retry: true,
    };
    store
        .transact(move |tx| tx.update_job(id, &suspend))
        .unwrap();
    let j = store.read(|r| r.system_job(id)).unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Waiting);
    assert_eq!((j.lease_owner, j.lease_expires_on), (None, None));
    assert_eq!(
        (j.retry_count, j.error_code, j.message.as_deref()),
        (1, Some(1), Some("paused"))
    );

    let attempts = store.read(|r| r.job_attempts(id)).unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (attempts[1].attempt, attempts[1].entry.worker.as_str()),
        (2, "w2")
    );
    assert!(store.transact(move |tx| tx.delete_job(id)).unwrap());
    assert!(store.read(|r| r.job_attempts(id)).unwrap().is_empty());
    let missing = JobUpdate {
        status: JobStatus::WaitingForResources,
        postpone_until: None,
        completed_on: None,
        error: None,
        count_retry: false,
    };
    let err = store
        .transact(move |tx| tx.update_job(id, &missing))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

/// A component stored for an assembly and the file's declarations survive a reopen and are removed on
/// request; a component for an assembly that does not exist is refused.
fn assembly_content_and_declarations_round_trip(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let assembly = PluginAssembly {
        id: Uuid::new_v4(),
        name: "enricher".into(),
        component_path: "enricher.wasm".into(),
        sha256: None,
    };
    let content = AssemblyContent {
        sha256: "ab12".into(),
        content: vec![0, 97, 115, 109],
    };
    let declaration = Declaration {
        kind: "sdkmessageprocessingstep".into(),
        id: Uuid::new_v4(),
        fingerprint: "f1".into(),
    };
    {
        let store = common::open(backend, dir.path());
        let (a, c, d) = (assembly.clone(), content.clone(), declaration.clone());
        store
            .transact(move |tx| {
                tx.put_plugin_assembly(&a)?;
                tx.put_plugin_assembly_content(a.id, Some(&c))?;
                tx.put_declaration(&d)
            })
            .unwrap();
        let missing = Uuid::new_v4();
        let c = content.clone();
        let err = store
            .transact(move |tx| tx.put_plugin_assembly_content(missing, Some(&c)))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    }
    let store = common::open(backend, dir.path());
    let id = assembly.id;
    let (stored, declarations) = store
        .read(move |r| Ok::<_, StoreError>((r.plugin_assembly_content(id)?, r.declarations()?)))
        .unwrap();
    assert_eq!(stored, Some(content));
    assert_eq!(declarations, vec![declaration.clone()]);
    store
        .transact(move |tx| {
            tx.put_plugin_assembly_content(id, None)?;
            tx.delete_declaration(&declaration.kind, declaration.id)
        })
        .unwrap();
    let (stored, declarations) = store
        .read(move |r| Ok::<_, StoreError>((r.plugin_assembly_content(id)?, r.declarations()?)))
        .unwrap();
    assert_eq!((stored, declarations.len()), (None, 0));
}

/// Background workflows survive a reopen with their state; putting one again replaces it (activated →
/// Draft), deleting it answers whether there was one.
fn workflows_round_trip(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let workflow = StoredWorkflow {
        id: Uuid::new_v4(),
        name: "Post accounts".into(),
        primary_entity: "account".into(),
        activated: true,
        definition: r#"{"name":"Post accounts","step":[]}"#.into(),
    };
    {
        let store = common::open(backend, dir.path());
        let w = workflow.clone();
        store.transact(move |tx| tx.put_workflow(&w)).unwrap();
    }
    let store = common::open(backend, dir.path());
    let stored = store.read(|r| r.workflows()).unwrap();
    assert_eq!(stored, vec![workflow.clone()]);
    let draft = StoredWorkflow {
        activated: false,
        ..workflow.clone()
    };
    let d = draft.clone();
    store.transact(move |tx| tx.put_workflow(&d)).unwrap();
    let stored = store.read(|r| r.workflows()).unwrap();
    assert_eq!(stored, vec![draft]);
    let id = workflow.id;
    assert!(store.transact(move |tx| tx.delete_workflow(id)).unwrap());
    assert!(!store.transact(move |tx| tx.delete_workflow(id)).unwrap());
    let stored = store.read(|r| r.workflows()).unwrap();
    assert!(stored.is_empty());
}

/// A file written when the context was an `asyncoperation.data` column opens with every job's context
/// intact (moved to `asyncoperationdata`), claimable and deletable.
#[test]
fn contexts_stored_in_the_job_row_are_kept_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    let id = Uuid::new_v4();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE asyncoperation (
                sequence INTEGER PRIMARY KEY AUTOINCREMENT, asyncoperationid TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL, operationtype INTEGER NOT NULL, messagename TEXT NOT NULL,
                primaryentitytype TEXT, regardingobjectid TEXT, regardingobjecttype TEXT, owningextensionid TEXT,
                correlationid TEXT NOT NULL, depth INTEGER NOT NULL, data BLOB NOT NULL, datacontenttype TEXT NOT NULL,
                createdon INTEGER NOT NULL, startedon INTEGER, completedon INTEGER, postponeuntil INTEGER,
                retrycount INTEGER NOT NULL DEFAULT 0, errorcode INTEGER, message TEXT, friendlymessage TEXT,
                statecode INTEGER NOT NULL, statuscode INTEGER NOT NULL, leaseowner TEXT, leaseexpireson INTEGER);
             CREATE INDEX asyncoperation_runnable ON asyncoperation (statecode, statuscode);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO asyncoperation (asyncoperationid, name, operationtype, messagename, correlationid, depth,
                data, datacontenttype, createdon, statecode, statuscode)
             VALUES (?1, 'old job', 1, 'Create', ?2, 1, ?3, 'application/json', 5, 0, 0)",
            rusqlite::params![
                id.to_string(),
                Uuid::new_v4().to_string(),
                b"{\"old\":true}".to_vec()
            ],
        )
        .unwrap();
    }
    let store = common::open(&common::Backend::Sqlite, dir.path());
    let old = store.read(|r| r.system_job(id)).unwrap().unwrap();
    assert_eq!(old.data, b"{\"old\":true}");
    assert_eq!(claim(&store, "w", 1_000, 10), ["old job"]);
    let c = Uuid::new_v4();
    let new = store
        .transact(move |tx| tx.insert_system_job(job("new job", c)))
        .unwrap();
    let read = store.read(|r| r.system_job(new)).unwrap().unwrap();
    assert_eq!(read.data, job("new job", c).data);
    assert!(store.transact(move |tx| tx.delete_job(id)).unwrap());
    assert_eq!(store.read(|r| r.system_job(id)).unwrap(), None);
    let contexts: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM asyncoperationdata", [], |r| r.get(0))
        .unwrap();
    assert_eq!(contexts, 1, "the deleted job's context went with it");
}

/// The count of jobs per status and the oldest one's creation time (the console's `/metrics` gauges) agree
/// with the jobs themselves.
fn job_counts_by_status(backend: &common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(backend, dir.path());
    let c = Uuid::new_v4();
    store
        .transact(move |tx| {
            for (name, created) in [("j1", 100), ("j2", 50), ("j3", 200)] {
                tx.insert_system_job(NewSystemJob {
                    created_on: Some(created),
                    ..job(name, c)
                })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(claim(&store, "worker-a", 1_000, 1), ["j2"]);
    let counts = store
        .read(|r: &dyn Read| {
            [
                JobStatus::WaitingForResources,
                JobStatus::InProgress,
                JobStatus::Waiting,
            ]
            .map(|s| r.system_job_count(s))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    assert_eq!(counts, [(2, Some(100)), (1, Some(50)), (0, None)]);
}

on_both_backends!(
    job_counts_by_status,
    outbox_rows_commit_and_roll_back_with_the_operation,
    claim_with_lease_and_takeover,
    wait_and_postpone_delay_claims,
    claims_take_the_oldest_due_jobs_of_every_kind,
    secrets_are_write_only,
    registration_rules,
    job_attempts_and_updates,
    assembly_content_and_declarations_round_trip,
    workflows_round_trip,
);
