//! The event execution pipeline with real plug-ins built from source, a real SQLite store and the real
//! sandbox: stages and transactions, step selection, contexts, child operations, the depth limit, errors,
//! rollback of data and jobs, the outbox and the plug-in trace log.

use crate::fixtures;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;
use weft_host::convert::{guid, uuid};
use weft_host::pipeline::{
    Bulk, ISV_UNEXPECTED_MESSAGE, Message, OrganizationRequest, OrganizationResponse, Pipeline,
    PipelineError, StepChange,
};
use weft_host::registration::{Registration, derived_id};
use weft_host::sandbox::wit::types::{Attribute, Entity, Value};
use weft_host::sandbox::{Limits, Sandbox};
use weft_store::system::{JobFilter, JobStatus, TraceFilter, TraceLog, TraceOutcome};
use weft_store::{EntityRef, Query, Read, SqliteOptions, SqliteStore, Store, StoreExt};

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
  logical_name = "description"
  type = "String"
  [[table.attribute]]
  logical_name = "emailaddress1"
  type = "String"

[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "lastname"
  [[table.attribute]]
  logical_name = "lastname"
  type = "String"

[[relationship]]
name = "account_contacts"
type = "ManyToMany"
entity1 = "account"
entity2 = "contact"
"#;

fn plugins_toml() -> String {
    [
        "probe",
        "org-caller",
        "validator",
        "enricher",
        "panic",
        "infinite-loop",
        "greet",
    ]
    .iter()
    .map(|p| {
        format!(
            "[[plugin]]\nname = \"{p}\"\ncomponent = \"{}\"\n",
            fixtures::component(p).display()
        )
    })
    .collect()
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    pipeline: Pipeline,
}

fn write_config(dir: &Path, steps: &str) -> std::path::PathBuf {
    let path = dir.join("weft.toml");
    std::fs::write(&path, format!("{TABLES}\n{}\n{steps}", plugins_toml())).unwrap();
    path
}

fn env(steps: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let registration = Registration::load(&write_config(dir.path(), steps)).unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("weft.db"),
            registration.schema.clone(),
            SqliteOptions::default(),
        )
        .unwrap(),
    );
    let sandbox = Arc::new(
        Sandbox::new(
            Limits {
                max_instances: 16,
                ..registration.limits.clone()
            },
            None,
        )
        .unwrap(),
    );
    let pipeline = Pipeline::new(store.clone() as Arc<dyn Store>, sandbox, &registration).unwrap();
    Env {
        _dir: dir,
        store,
        pipeline,
    }
}

fn entity(table: &str, id: Option<Uuid>, attrs: &[(&str, &str)]) -> Entity {
    Entity {
        logical_name: table.into(),
        id: id.map(guid),
        attributes: attrs
            .iter()
            .map(|(n, v)| Attribute {
                name: (*n).into(),
                value: Value::String((*v).into()),
            })
            .collect(),
        formatted_values: Vec::new(),
        row_version: None,
    }
}

impl Env {
    fn run(&self, request: OrganizationRequest) -> Result<OrganizationResponse, PipelineError> {
        self.pipeline.execute(request)
    }

    fn create(&self, name: &str) -> Result<Uuid, PipelineError> {
        match self.run(OrganizationRequest::new(Message::Create {
            target: entity("account", None, &[("name", name)]),
        }))? {
            OrganizationResponse::Create { id } => Ok(id),
            other => panic!("{other:?}"),
        }
    }

    fn update(&self, id: Uuid, attrs: &[(&str, &str)]) -> Result<(), PipelineError> {
        self.run(OrganizationRequest::new(Message::Update {
            target: entity("account", Some(id), attrs),
        }))
        .map(|_| ())
    }

    /// Trace-log rows in execution order.
    fn traces(&self) -> Vec<TraceLog> {
        let mut rows = self
            .store
            .read(|r: &dyn Read| r.trace_logs(&TraceFilter::default()))
            .unwrap();
        rows.reverse();
        rows
    }

    /// The trace text of every row whose trace starts with `label=NAME`.
    fn probe(&self, label: &str) -> Vec<String> {
        self.traces()
            .into_iter()
            .filter(|t| t.entry.trace.starts_with(&format!("label={label}\n")))
            .map(|t| t.entry.trace)
            .collect()
    }

    fn rows(&self, table: &str) -> Vec<weft_store::Row> {
        self.store
            .read(|r: &dyn Read| r.retrieve_multiple(&Query::new(table)))
            .unwrap()
    }

    fn jobs(&self) -> Vec<weft_store::system::SystemJob> {
        self.store
            .read(|r: &dyn Read| r.system_jobs(&JobFilter::default()))
            .unwrap()
    }
}

fn line<'a>(trace: &'a str, key: &str) -> &'a str {
    trace
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in\n{trace}"))
}

fn probe_step(name: &str, message: &str, stage: i32, rank: i32, config: &str) -> String {
    format!(
        "[[step]]\nname = \"{name}\"\nmessage = \"{message}\"\ntable = \"account\"\nstage = {stage}\n\
         rank = {rank}\nplugin = \"probe\"\nconfiguration = \"label={name};{config}\"\n"
    )
}

/// PreValidation runs outside the transaction, 20 and 40 inside; steps run by stage then rank.
#[test]
fn stages_run_in_order_with_true_transaction_flags() {
    let steps = [
        probe_step("post", "Create", 40, 1, ""),
        probe_step("pre-b", "Create", 20, 2, ""),
        probe_step("pre-a", "Create", 20, 1, ""),
        probe_step("validation", "Create", 10, 1, ""),
    ]
    .concat();
    let env = env(&steps);
    env.create("Contoso").unwrap();
    let order: Vec<String> = env
        .traces()
        .iter()
        .map(|t| line(&t.entry.trace, "label").to_owned())
        .collect();
    assert_eq!(order, ["validation", "pre-a", "pre-b", "post"]);
    let t = env.traces();
    let flags: Vec<(&str, &str, &str)> = t
        .iter()
        .map(|t| {
            (
                line(&t.entry.trace, "stage"),
                line(&t.entry.trace, "intx"),
                line(&t.entry.trace, "depth"),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("10", "false", "1"),
            ("20", "true", "1"),
            ("20", "true", "1"),
            ("40", "true", "1")
        ]
    );
    assert!(
        t.iter()
            .all(|t| t.entry.outcome == TraceOutcome::Succeeded && t.entry.depth == 1)
    );
}

/// InputParameters changed in 10 and 20 change what is stored; OutputParameters (`id`) exist only in 40.
#[test]
fn input_changes_reach_the_operation_and_output_appears_in_40() {
    let steps = [
        probe_step("v", "Create", 10, 1, "set=description:from-10"),
        "[[step]]\nname = \"enrich\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"enricher\"\n".to_owned(),
        probe_step("pre", "Create", 20, 2, ""),
        probe_step("post", "Create", 40, 1, ""),
    ]
    .concat();
    let env = env(&steps);
    let id = env.create("Fourth Coffee").unwrap();
    let rows = env.rows("account");
    let row = &rows[0].attributes;
    assert_eq!(
        row["description"],
        weft_store::Value::String("from-10".into())
    );
    assert!(
        matches!(&row["accountnumber"], weft_store::Value::String(s) if s.starts_with("ACC-FC-"))
    );
    assert_eq!(line(&env.probe("pre")[0], "output"), "");
    assert_eq!(line(&env.probe("post")[0], "output"), format!("id={id}"));
    assert_eq!(line(&env.probe("post")[0], "primaryid"), id.to_string());
    assert_eq!(
        line(&env.probe("pre")[0], "primaryid"),
        Uuid::nil().to_string()
    );
}

/// Shared variables flow between steps; 40 reaches PreValidation's through ParentContext; `tag` arrives.
#[test]
fn shared_variables_flow_and_prevalidation_ones_sit_in_the_parent_context() {
    let steps = [
        probe_step("v", "Create", 10, 1, "share=fromten:a"),
        probe_step("pre", "Create", 20, 1, "share=fromtwenty:b"),
        probe_step("post", "Create", 40, 1, ""),
    ]
    .concat();
    let env = env(&steps);
    let mut request = OrganizationRequest::new(Message::Create {
        target: entity("account", None, &[("name", "A")]),
    });
    request.tag = Some("batch-7".into());
    env.run(request).unwrap();
    assert_eq!(line(&env.probe("v")[0], "shared"), "tag=batch-7");
    let post = &env.probe("post")[0];
    assert_eq!(line(post, "shared"), "fromtwenty=b,tag=batch-7");
    assert_eq!(line(post, "parent_shared"), "fromten=a,tag=batch-7");
    assert_eq!(line(post, "parents"), "1");
}

/// An impersonating step sees the impersonated UserId and the real caller as InitiatingUserId; secure and
/// unsecure configuration reach the plug-in, and the secure one is never listed.
#[test]
fn impersonation_and_configuration() {
    let runas = Uuid::from_u128(0xabc);
    let steps = format!(
        "{}impersonating_user_id = \"{runas}\"\nsecure_configuration = \"s3cret\"\n",
        probe_step("imp", "Create", 20, 1, "secure_starts=s3")
    );
    let env = env(&steps);
    let caller = Uuid::from_u128(0x123);
    let mut request = OrganizationRequest::new(Message::Create {
        target: entity("account", None, &[("name", "A")]),
    });
    request.user_id = caller;
    env.run(request).unwrap();
    let t = &env.probe("imp")[0];
    assert_eq!(line(t, "user"), runas.to_string());
    assert_eq!(line(t, "initiating"), caller.to_string());
    assert_eq!(line(t, "secure_ok"), "true");
    let listed = env.store.read(|r: &dyn Read| r.steps()).unwrap();
    assert!(listed[0].is_secure_configuration_set);
    assert!(!format!("{listed:?}").contains("s3cret"));
}

/// Update steps with filtering attributes run only when one of them changes; disabled steps never run.
#[test]
fn filtering_attributes_and_disabled_steps() {
    let steps = [
        format!(
            "{}filtering_attributes = [\"name\"]\n",
            probe_step("filtered", "Update", 20, 1, "")
        ),
        format!(
            "{}enabled = false\n",
            probe_step("off", "Update", 20, 2, "")
        ),
    ]
    .concat();
    let env = env(&steps);
    let id = env.create("A").unwrap();
    env.update(id, &[("description", "x")]).unwrap();
    assert!(env.probe("filtered").is_empty());
    env.update(id, &[("name", "B")]).unwrap();
    assert_eq!(env.probe("filtered").len(), 1);
    assert!(env.probe("off").is_empty());
}

/// Pre-images hold the row before the operation, post-images the row after, with the registered attributes.
#[test]
fn entity_images_follow_availability_rules() {
    let steps = [
        format!(
            "{}[[step.image]]\nalias = \"before\"\ntype = \"pre\"\nattributes = [\"name\"]\n",
            probe_step("pre20", "Update", 20, 1, "")
        ),
        format!(
            "{}[[step.image]]\nalias = \"img\"\ntype = \"both\"\nattributes = [\"name\", \"description\"]\n",
            probe_step("post40", "Update", 40, 1, "")
        ),
        format!(
            "{}[[step.image]]\nalias = \"gone\"\ntype = \"pre\"\n",
            probe_step("del", "Delete", 40, 1, "")
        ),
    ]
    .concat();
    let env = env(&steps);
    let id = env.create("Old").unwrap();
    env.update(id, &[("name", "New"), ("description", "d")])
        .unwrap();
    assert_eq!(line(&env.probe("pre20")[0], "pre"), "before[name=Old]");
    assert_eq!(line(&env.probe("pre20")[0], "post"), "");
    let post = &env.probe("post40")[0];
    assert_eq!(line(post, "pre"), "img[name=Old]");
    assert_eq!(line(post, "post"), "img[description=d,name=New]");
    env.run(OrganizationRequest::new(Message::Delete {
        table: "account".into(),
        id,
    }))
    .unwrap();
    let del = &env.probe("del")[0];
    assert!(line(del, "pre").starts_with("gone[accountid="), "{del}");
    assert!(line(del, "pre").contains("name=New"), "{del}");
    assert!(env.rows("account").is_empty());
}

/// Retrieve and RetrieveMultiple put BusinessEntity / BusinessEntityCollection in OutputParameters for 40.
#[test]
fn retrieve_outputs_are_visible_in_post_operation() {
    let steps = [
        probe_step("r", "Retrieve", 40, 1, ""),
        probe_step("rm", "RetrieveMultiple", 40, 1, ""),
    ]
    .concat();
    let env = env(&steps);
    let id = env.create("A").unwrap();
    env.create("B").unwrap();
    let got = env
        .run(OrganizationRequest::new(Message::Retrieve {
            table: "account".into(),
            id,
            columns: Some(vec!["name".into()]),
        }))
        .unwrap();
    match got {
        OrganizationResponse::Retrieve { entity } => assert_eq!(entity.id, Some(guid(id))),
        other => panic!("{other:?}"),
    }
    assert!(line(&env.probe("r")[0], "output").starts_with("BusinessEntity=entity["));
    let many = env
        .run(OrganizationRequest::new(Message::RetrieveMultiple {
            query: Query::new("account"),
        }))
        .unwrap();
    assert!(
        matches!(many, OrganizationResponse::RetrieveMultiple { collection } if collection.entities.len() == 2)
    );
    assert_eq!(
        line(&env.probe("rm")[0], "output"),
        "BusinessEntityCollection=collection[2]"
    );
}

/// An InvalidPluginExecution message reaches the caller verbatim and nothing is written; the failure is
/// in the trace log.
#[test]
fn invalid_plugin_execution_reaches_the_caller_verbatim() {
    let steps = "[[step]]\nname = \"validate\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 10\nplugin = \"validator\"\n";
    let env = env(steps);
    let err = env
        .run(OrganizationRequest::new(Message::Create {
            target: entity("account", None, &[("name", "A"), ("emailaddress1", "nope")]),
        }))
        .unwrap_err();
    assert_eq!(err.to_string(), "'nope' is not a valid e-mail address.");
    assert_eq!(err.code(), "0x80040265");
    assert!(env.rows("account").is_empty());
    let t = env.traces();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].entry.outcome, TraceOutcome::Failed);
    assert_eq!(t[0].entry.plugin, "validator");
}

/// A trap reaches the caller as IsvUnExpected; the detail (panic message) is in the trace log only.
#[test]
fn a_trap_is_an_unexpected_isv_error_with_detail_in_the_trace_log() {
    let steps = "[[step]]\nname = \"boom\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"panic\"\n";
    let env = env(steps);
    let err = env.create("A").unwrap_err();
    assert_eq!(err.code(), "0x80040224");
    let t = env.traces();
    assert_eq!(t.len(), 1);
    // Dataverse's text, then the correlation id the trace row is found under.
    assert_eq!(
        err.to_string(),
        format!(
            "{ISV_UNEXPECTED_MESSAGE} (correlation id {}: the plug-in trace log has the details)",
            t[0].entry.correlation_id
        )
    );
    assert_eq!(t[0].entry.outcome, TraceOutcome::Failed);
    assert!(
        t[0].entry.stderr.contains("plug-in panicked on purpose"),
        "{:?}",
        t[0].entry
    );
    // The panic's own message leads the trace row's error, the trap follows it.
    let error = t[0].entry.error.as_deref().unwrap_or("");
    assert!(
        error.contains("failed (trap): panicked at fixtures/panic/src/lib.rs:")
            && error.contains("plug-in panicked on purpose in Create (wasm trap"),
        "{error}"
    );
    assert!(
        t[0].entry.error.as_deref().unwrap_or("").contains("trap"),
        "{:?}",
        t[0].entry
    );
    assert!(env.rows("account").is_empty());
}

/// A plug-in's organization-service Create runs a child pipeline at depth 2 in the same transaction, with
/// ParentContext and the same correlation id; Child-invocation steps fire only there.
#[test]
fn plugin_driven_child_operation() {
    let steps = [
        "[[step]]\nname = \"spawn\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\nplugin = \"org-caller\"\nconfiguration = \"create=contact:lastname\"\n".to_owned(),
        probe_step("parent", "Create", 40, 2, ""),
        "[[step]]\nname = \"child10\"\nmessage = \"Create\"\ntable = \"contact\"\nstage = 10\nplugin = \"probe\"\nconfiguration = \"label=child10\"\n".to_owned(),
        "[[step]]\nname = \"childonly\"\nmessage = \"Create\"\ntable = \"contact\"\nstage = 20\ninvocation_source = 1\nplugin = \"probe\"\nconfiguration = \"label=childonly\"\n".to_owned(),
    ]
    .concat();
    let env = env(&steps);
    env.create("Kid").unwrap();
    let contacts = env.rows("contact");
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].attributes["lastname"],
        weft_store::Value::String("Kid".into())
    );
    let child = &env.probe("child10")[0];
    assert_eq!(line(child, "depth"), "2");
    // A child's PreValidation runs inside its parent's transaction.
    assert_eq!(line(child, "intx"), "true");
    assert_eq!(
        line(child, "correlation"),
        line(&env.probe("parent")[0], "correlation")
    );
    assert_eq!(line(child, "parents"), "2");
    assert_eq!(line(&env.probe("childonly")[0], "depth"), "2");
    // A top-level contact Create does not fire the Child-only step.
    env.run(OrganizationRequest::new(Message::Create {
        target: entity("contact", None, &[("lastname", "Top")]),
    }))
    .unwrap();
    assert_eq!(env.probe("childonly").len(), 1);
    assert_eq!(env.probe("child10").len(), 2);
}

/// A sync failure after a child Create and an async step rolls back the row, the child row and the job;
/// every step's trace row is kept.
#[test]
fn sync_failure_rolls_back_data_and_jobs() {
    let steps = [
        "[[step]]\nname = \"spawn\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"org-caller\"\nconfiguration = \"create=contact:lastname\"\n".to_owned(),
        format!("{}mode = 1\n", probe_step("async", "Create", 40, 1, "")),
        probe_step("fail", "Create", 40, 9, "fail=Nope, not today."),
    ]
    .concat();
    let env = env(&steps);
    let err = env.create("A").unwrap_err();
    assert_eq!(err.to_string(), "Nope, not today.");
    assert!(env.rows("account").is_empty());
    assert!(env.rows("contact").is_empty());
    assert!(env.jobs().is_empty());
    let t = env.traces();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[1].entry.outcome, TraceOutcome::Failed);
}

/// A step that updates its own row recurses until the depth limit aborts the chain with 0x80044182 and
/// nothing is written.
#[test]
fn depth_limit_aborts_a_loop() {
    let steps = "[[step]]\nname = \"loop\"\nmessage = \"Update\"\ntable = \"account\"\nstage = 20\nplugin = \"org-caller\"\nconfiguration = \"touch-self=description\"\n";
    let env = env(steps);
    let id = env.create("A").unwrap();
    let err = env.update(id, &[("name", "B")]).unwrap_err();
    assert_eq!(err.code(), "0x80044182", "{err}");
    assert!(matches!(
        err,
        PipelineError::DepthLimit { max_depth: 8, .. }
    ));
    let rows = env.rows("account");
    assert_eq!(
        rows[0].attributes["name"],
        weft_store::Value::String("A".into())
    );
    assert!(!rows[0].attributes.contains_key("description"));
    let depths: Vec<i32> = env.traces().iter().map(|t| t.entry.depth).collect();
    assert_eq!(depths, [8, 7, 6, 5, 4, 3, 2, 1]);
}

/// An async step writes a pending system job whose data is the JSON context: OperationId = job id,
/// OperationCreatedOn = createdon, Mode 1, not in a transaction.
#[test]
fn async_step_writes_the_outbox_row() {
    let steps = format!(
        "{}mode = 1\nasync_auto_delete = true\n",
        probe_step("async", "Create", 40, 1, "")
    );
    let env = env(&steps);
    let id = env.create("A").unwrap();
    let jobs = env.jobs();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.status, JobStatus::WaitingForResources);
    assert_eq!(job.data_content_type, "application/json");
    assert_eq!(
        job.owning_extension_id,
        Some(derived_id("sdkmessageprocessingstep", "async"))
    );
    assert_eq!(job.regarding.as_ref().map(|r| r.id), Some(id));
    let ctx = weft_message::parse(&job.data, &job.data_content_type).unwrap();
    assert_eq!(ctx.operation_id, job.id);
    assert_eq!(ctx.operation_created_on.ms, job.created_on);
    assert_eq!(ctx.mode, 1);
    assert!(!ctx.is_in_transaction);
    assert_eq!(ctx.primary_entity_id, id);
    assert_eq!(ctx.correlation_id, job.correlation_id);
    assert!(ctx.output_parameters.iter().any(|(k, _)| k == "id"));
    let (alias, image) = &ctx.post_entity_images[0];
    assert_eq!(alias, "AsynchronousStepPrimaryName");
    let names: Vec<&str> = image.attributes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["name", "accountid"]);
    // The async step itself did not run in the pipeline.
    assert!(env.probe("async").is_empty());
}

/// BypassBusinessLogicExecution CustomSync / CustomAsync and step ids skip exactly those steps.
#[test]
fn bypass_flags_skip_steps() {
    let steps = [
        probe_step("sync", "Create", 20, 1, ""),
        probe_step("other", "Create", 20, 2, ""),
        format!("{}mode = 1\n", probe_step("async", "Create", 40, 1, "")),
    ]
    .concat();
    let env = env(&steps);
    let make = || {
        OrganizationRequest::new(Message::Create {
            target: entity("account", None, &[("name", "A")]),
        })
    };
    env.run(make().bypass_business_logic("CustomSync").unwrap())
        .unwrap();
    assert!(env.probe("sync").is_empty());
    assert_eq!(env.jobs().len(), 1);
    env.run(make().bypass_business_logic("CustomAsync").unwrap())
        .unwrap();
    assert_eq!(env.probe("sync").len(), 1);
    assert_eq!(env.jobs().len(), 1);
    let mut r = make();
    r.bypass_step_ids = vec![derived_id("sdkmessageprocessingstep", "sync")];
    env.run(r).unwrap();
    assert_eq!(env.probe("sync").len(), 1);
    assert_eq!(env.probe("other").len(), 2);
    assert!(make().bypass_business_logic("CustomEverything").is_err());
}

/// The registration is persisted into the system tables at startup.
#[test]
fn registration_is_persisted() {
    let env = env(&probe_step("p", "Create", 20, 3, ""));
    let steps = env.store.read(|r: &dyn Read| r.steps()).unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].def.name, "p");
    assert_eq!(steps[0].def.rank, 3);
    let assemblies = env
        .store
        .read(|r: &dyn Read| r.plugin_assemblies())
        .unwrap();
    assert_eq!(assemblies.len(), 7);
    assert_eq!(
        uuid(guid(steps[0].def.id)),
        derived_id("sdkmessageprocessingstep", "p")
    );
}

/// Every malformed registration is refused naming the file, the entry and the reason.
#[test]
fn registration_errors_name_file_entry_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let probe = fixtures::component("probe");
    let cases: Vec<(String, &str)> = vec![
        (
            "[[plugin]]\nname = \"x\"\ncomponent = \"missing.wasm\"\n".into(),
            "plugin \"x\": cannot read component",
        ),
        (
            format!(
                "[[plugin]]\nname = \"x\"\ncomponent = \"{}\"\nsha256 = \"00\"\n",
                probe.display()
            ),
            "plugin \"x\": component",
        ),
        ("bogus = 1\n".into(), "unknown field `bogus`"),
        (
            probe_step("s", "Create", 20, 1, "") + "mode = 1\n",
            "step \"s\": an asynchronous step must be registered in stage 40",
        ),
        (
            probe_step("s", "Create", 40, 1, "")
                + "[[step.image]]\nalias = \"p\"\ntype = \"pre\"\n",
            "step \"s\": image \"p\": Create has no pre-image",
        ),
        (
            probe_step("s", "Delete", 40, 1, "")
                + "[[step.image]]\nalias = \"p\"\ntype = \"post\"\n",
            "step \"s\": image \"p\": Delete has no post-image",
        ),
        (
            probe_step("s", "Update", 20, 1, "")
                + "[[step.image]]\nalias = \"p\"\ntype = \"both\"\n",
            "post-images exist only in stage 40",
        ),
        (
            probe_step("s", "Retrieve", 40, 1, "")
                + "[[step.image]]\nalias = \"p\"\ntype = \"pre\"\n",
            "message Retrieve has no entity images",
        ),
        (
            probe_step("s", "Frobnicate", 20, 1, ""),
            "step \"s\": unknown message `Frobnicate`",
        ),
        (
            probe_step("s", "Create", 20, 1, "").replace("table = \"account\"", "table = \"nope\""),
            "step \"s\": table `nope` is not declared",
        ),
        (
            probe_step("s", "Create", 20, 1, "")
                .replace("plugin = \"probe\"", "plugin = \"ghost\""),
            "step \"s\": plug-in `ghost` is not declared",
        ),
        (
            probe_step("s", "Create", 20, 1, "") + "colour = \"red\"\n",
            "unknown field `colour`",
        ),
        (
            probe_step("s", "Create", 30, 1, ""),
            "step \"s\": stage 30 (MainOperation) is for Custom API",
        ),
        (
            probe_step("s", "Create", 20, 1, "") + "filtering_attributes = [\"name\"]\n",
            "filtering_attributes apply to the Update message only",
        ),
        (
            probe_step("s", "Update", 20, 1, "") + "filtering_attributes = [\"nope\"]\n",
            "table `account` has no attribute `nope`",
        ),
        (
            probe_step("s", "Create", 25, 1, ""),
            "25 is not a valid Stage value",
        ),
    ];
    for (extra, expected) in cases {
        let path = dir.path().join("weft.toml");
        let probe_plugin = if extra.contains("[[plugin]]") {
            String::new()
        } else {
            format!(
                "[[plugin]]\nname = \"probe\"\ncomponent = \"{}\"\n",
                probe.display()
            )
        };
        std::fs::write(&path, format!("{TABLES}\n{probe_plugin}\n{extra}")).unwrap();
        let err = Registration::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
    // `[bus]` belongs to another component: allowed and ignored.
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, format!("{TABLES}\n[bus]\nanything = 1\n")).unwrap();
    assert!(Registration::load(&path).is_ok());
}

/// An operation that runs past `[pipeline] operation_limit_ms` fails with the time-limit error, later steps do
/// not run and nothing is written.
#[test]
fn operation_time_limit_spans_the_whole_operation() {
    let steps = [
        // The plug-in's own deadline is long: the operation's budget must stop it.
        "[pipeline]\noperation_limit_ms = 30\n[sandbox]\ndeadline_ms = 600000\n".to_owned(),
        "[[step]]\nname = \"spin\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"infinite-loop\"\n".to_owned(),
        probe_step("after", "Create", 40, 1, ""),
    ]
    .concat();
    let env = env(&steps);
    let started = std::time::Instant::now();
    let err = env.create("A").unwrap_err();
    // A guard against waiting for the 10-minute plug-in deadline, not a timing goal.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(
        matches!(err, PipelineError::Timeout { limit_ms: 30 }),
        "{err:?}"
    );
    assert!(env.rows("account").is_empty());
    assert!(env.probe("after").is_empty());
    let t = env.traces();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].entry.outcome, TraceOutcome::Failed);
}

/// SetState, Assign, Associate and Disassociate run through the pipeline with their parameters and images.
#[test]
fn set_state_assign_associate_disassociate() {
    let steps = [
        format!(
            "{}[[step.image]]\nalias = \"s\"\ntype = \"both\"\nattributes = [\"statecode\", \"statuscode\"]\n",
            probe_step("state", "SetState", 40, 1, "")
        ),
        probe_step("assign", "Assign", 20, 1, ""),
        probe_step("assoc", "Associate", 40, 1, ""),
        probe_step("dissoc", "Disassociate", 10, 1, ""),
    ]
    .concat();
    let env = env(&steps);
    let id = env.create("A").unwrap();
    let account = EntityRef::new("account", id);
    env.run(OrganizationRequest::new(Message::SetState {
        target: account.clone(),
        state: 1,
        status: 2,
    }))
    .unwrap();
    let state = &env.probe("state")[0];
    assert_eq!(
        line(state, "pre"),
        "s[statecode=OptionSetValue(0),statuscode=OptionSetValue(1)]"
    );
    assert_eq!(
        line(state, "post"),
        "s[statecode=OptionSetValue(1),statuscode=OptionSetValue(2)]"
    );
    assert!(
        line(state, "input").contains(&format!("EntityMoniker=account({id})")),
        "{state}"
    );

    let owner = Uuid::from_u128(0x5157);
    env.run(OrganizationRequest::new(Message::Assign {
        target: account.clone(),
        assignee: EntityRef::new("systemuser", owner),
    }))
    .unwrap();
    assert!(
        line(&env.probe("assign")[0], "input").contains(&format!("Assignee=systemuser({owner})"))
    );
    let row = &env.rows("account")[0];
    assert_eq!(
        row.attributes["ownerid"],
        weft_store::Value::EntityReference {
            logical_name: "systemuser".into(),
            id: owner
        }
    );

    let contact = match env
        .run(OrganizationRequest::new(Message::Create {
            target: entity("contact", None, &[("lastname", "C")]),
        }))
        .unwrap()
    {
        OrganizationResponse::Create { id } => id,
        other => panic!("{other:?}"),
    };
    let related = vec![EntityRef::new("contact", contact)];
    env.run(OrganizationRequest::new(Message::Associate {
        target: account.clone(),
        relationship: "account_contacts".into(),
        related: related.clone(),
    }))
    .unwrap();
    assert_eq!(line(&env.probe("assoc")[0], "primaryid"), id.to_string());
    let linked = |env: &Env| {
        env.store
            .read(|r: &dyn Read| r.related("account_contacts", &account))
            .unwrap()
    };
    assert_eq!(linked(&env), related);
    env.run(OrganizationRequest::new(Message::Disassociate {
        target: account.clone(),
        relationship: "account_contacts".into(),
        related,
    }))
    .unwrap();
    assert_eq!(env.probe("dissoc").len(), 1);
    assert!(linked(&env).is_empty());
}

/// A failed child operation fails the whole operation even when the calling plug-in swallows the error.
#[test]
fn a_swallowed_child_failure_still_rolls_everything_back() {
    let steps = [
        "[[step]]\nname = \"careless\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 20\nplugin = \"org-caller\"\nconfiguration = \"create-ignoring-errors=contact:lastname\"\n".to_owned(),
        "[[step]]\nname = \"reject\"\nmessage = \"Create\"\ntable = \"contact\"\nstage = 40\nplugin = \"probe\"\nconfiguration = \"label=reject;fail=Contacts are closed.\"\n".to_owned(),
    ]
    .concat();
    let env = env(&steps);
    let err = env.create("A").unwrap_err();
    assert_eq!(err.to_string(), "Contacts are closed.");
    assert!(env.rows("account").is_empty());
    assert!(env.rows("contact").is_empty());
    let careless = env
        .traces()
        .into_iter()
        .find(|t| t.entry.plugin == "org-caller")
        .unwrap();
    assert!(
        careless
            .entry
            .trace
            .contains("ignoring: Contacts are closed."),
        "{careless:?}"
    );
    assert_eq!(careless.entry.outcome, TraceOutcome::Failed);
}

/// An organization-service call from a top-level PreValidation step runs in its own transaction (there is
/// none yet): its row stays when the main operation later fails.
#[test]
fn prevalidation_child_runs_in_its_own_transaction() {
    let steps = [
        "[[step]]\nname = \"early\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 10\nplugin = \"org-caller\"\nconfiguration = \"create=contact:lastname\"\n".to_owned(),
        "[[step]]\nname = \"c10\"\nmessage = \"Create\"\ntable = \"contact\"\nstage = 10\nplugin = \"probe\"\nconfiguration = \"label=c10\"\n".to_owned(),
        probe_step("fail", "Create", 20, 1, "fail=No accounts today."),
    ]
    .concat();
    let env = env(&steps);
    assert_eq!(
        env.create("Early").unwrap_err().to_string(),
        "No accounts today."
    );
    assert!(env.rows("account").is_empty());
    assert_eq!(env.rows("contact").len(), 1);
    let child = &env.probe("c10")[0];
    assert_eq!(line(child, "depth"), "2");
    assert_eq!(line(child, "intx"), "false");
}

/// An async service-endpoint step (the built-in Azure-aware plug-in) queues a job; the endpoint is persisted
/// with its secret write-only.
#[test]
fn service_endpoint_step_queues_a_job_and_keeps_the_secret_write_only() {
    let steps = "[[service_endpoint]]\nname = \"hook\"\ncontract = 8\nmessage_format = 2\nauth_type = 4\n\
                 url = \"https://example.com/hook\"\nauth_value = \"hunter2\"\n\
                 [[step]]\nname = \"post to hook\"\nmessage = \"Create\"\ntable = \"account\"\nstage = 40\n\
                 mode = 1\nservice_endpoint = \"hook\"\n";
    let env = env(steps);
    env.create("A").unwrap();
    let jobs = env.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].name, "post to hook");
    let endpoints = env
        .store
        .read(|r: &dyn Read| r.service_endpoints())
        .unwrap();
    assert_eq!(endpoints.len(), 1);
    assert!(endpoints[0].is_auth_value_set);
    assert!(!format!("{endpoints:?}").contains("hunter2"));
    assert!(!String::from_utf8_lossy(&jobs[0].data).contains("hunter2"));
}

/// `update_step` reorders steps by their new rank and `replace_plugin` swaps a component for the next
/// operation; an unknown assembly or a bad component is refused and changes nothing.
#[test]
fn registration_changes_apply_to_the_next_operation() {
    let steps =
        probe_step("first", "Create", 20, 1, "") + &probe_step("second", "Create", 20, 2, "");
    let env = env(&steps);
    let order = |env: &Env| -> Vec<String> {
        env.traces()
            .iter()
            .rev()
            .take(2)
            .rev()
            .map(|t| line(&t.entry.trace, "label").to_owned())
            .collect()
    };
    env.create("A").unwrap();
    assert_eq!(order(&env), ["first", "second"]);
    let first = derived_id("sdkmessageprocessingstep", "first");
    let changed = env
        .pipeline
        .update_step(
            first,
            StepChange {
                rank: Some(3),
                ..StepChange::default()
            },
        )
        .unwrap();
    assert_eq!(changed.def.rank, 3);
    env.create("B").unwrap();
    assert_eq!(order(&env), ["second", "first"]);
    assert!(matches!(
        env.pipeline
            .update_step(Uuid::new_v4(), StepChange::default()),
        Err(PipelineError::Store(
            weft_store::StoreError::NotFound { .. }
        ))
    ));

    let before = env.pipeline.assemblies();
    assert!(env.pipeline.replace_plugin("nosuch", b"x").is_err());
    let e = env
        .pipeline
        .replace_plugin("probe", b"garbage")
        .unwrap_err();
    assert!(
        e.to_string().contains("not a valid WebAssembly component"),
        "{e}"
    );
    assert_eq!(env.pipeline.assemblies(), before);
    let stored = env
        .pipeline
        .replace_plugin("probe", &fixtures::bytes("validator"))
        .unwrap();
    assert_eq!(
        stored.sha256,
        Some(weft_host::sandbox::sha256_hex(&fixtures::bytes(
            "validator"
        )))
    );
    env.create("C").unwrap();
    let last = env.traces().pop().unwrap();
    assert_eq!(last.entry.plugin, "probe");
    assert_eq!(last.entry.trace, "Validator: account is valid.");
}

/// `weft_Greet` run by `plugin` (stage 30), with a required String `Name` and a String `Greeting` answer.
fn greet_api(plugin: &str) -> String {
    format!(
        "[[custom_api]]\nunique_name = \"weft_Greet\"\nplugin = \"{plugin}\"\n\
         [[custom_api.request_parameter]]\nname = \"Name\"\ntype = \"String\"\n\
         [[custom_api.response_property]]\nname = \"Greeting\"\ntype = \"String\"\n"
    )
}

/// A probe step on the unbound custom message (no table).
fn custom_probe_step(name: &str, stage: i32) -> String {
    format!(
        "[[step]]\nname = \"{name}\"\nmessage = \"weft_Greet\"\nstage = {stage}\n\
         plugin = \"probe\"\nconfiguration = \"label={name}\"\n"
    )
}

fn greet(name: Value) -> OrganizationRequest {
    OrganizationRequest::new(Message::Custom {
        name: "weft_Greet".into(),
        parameters: vec![("Name".into(), name)],
    })
}

/// The stage-30 plug-in's OutputParameters are the Custom API's response.
#[test]
fn custom_api_response_carries_the_greeting() {
    let env = env(&greet_api("greet"));
    let response = env.run(greet(Value::String("Ada".into()))).unwrap();
    assert_eq!(
        response,
        OrganizationResponse::Custom {
            outputs: vec![("Greeting".into(), Value::String("Hello, Ada".into()))]
        }
    );
    let traces = env.traces();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].entry.plugin, "greet");
    assert_eq!(traces[0].entry.message_name, "weft_Greet");
    assert_eq!(traces[0].entry.outcome, TraceOutcome::Succeeded);
}

/// Steps on a custom message see its request parameters (stage 10) and its response (stage 40).
#[test]
fn custom_api_steps_see_the_parameters() {
    let env = env(&format!(
        "{}{}{}",
        greet_api("greet"),
        custom_probe_step("ten", 10),
        custom_probe_step("forty", 40)
    ));
    env.run(greet(Value::String("Ada".into()))).unwrap();
    let ten = &env.probe("ten")[0];
    assert_eq!(line(ten, "stage"), "10");
    assert_eq!(line(ten, "input"), "Name=Ada");
    assert_eq!(line(ten, "output"), "");
    assert_eq!(
        line(&env.probe("forty")[0], "output"),
        "Greeting=Hello, Ada"
    );
}

/// A request without a required parameter is refused, naming it, before any step runs.
#[test]
fn custom_api_missing_required_parameter_is_refused() {
    let env = env(&format!(
        "{}{}",
        greet_api("greet"),
        custom_probe_step("ten", 10)
    ));
    let err = env
        .run(OrganizationRequest::new(Message::Custom {
            name: "weft_Greet".into(),
            parameters: Vec::new(),
        }))
        .unwrap_err();
    assert!(
        matches!(&err, PipelineError::Invalid(m) if m.contains("required parameter Name")),
        "{err:?}"
    );
    assert!(env.traces().is_empty());
}

/// A parameter of the wrong type, or one not declared, is refused naming it, before any step runs.
#[test]
fn custom_api_wrong_type_is_refused() {
    let env = env(&format!(
        "{}{}",
        greet_api("greet"),
        custom_probe_step("ten", 10)
    ));
    let err = env.run(greet(Value::Integer(7))).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Invalid(m) if m.contains("parameter Name must be of type String")),
        "{err:?}"
    );
    let err = env
        .run(OrganizationRequest::new(Message::Custom {
            name: "weft_Greet".into(),
            parameters: vec![
                ("Name".into(), Value::String("Ada".into())),
                ("Age".into(), Value::Integer(7)),
            ],
        }))
        .unwrap_err();
    assert!(
        matches!(&err, PipelineError::Invalid(m) if m.contains("parameter Age is not declared")),
        "{err:?}"
    );
    assert!(env.traces().is_empty());
}

/// A main-operation plug-in that omits a declared response property fails as an ISV error, detail in the
/// trace log, and no stage-40 step runs.
#[test]
fn custom_api_missing_response_property_fails_clearly() {
    // The probe sets no output parameter without configuration.
    let env = env(&format!(
        "{}{}",
        greet_api("probe"),
        custom_probe_step("forty", 40)
    ));
    let err = env.run(greet(Value::String("Ada".into()))).unwrap_err();
    assert!(
        matches!(&err, PipelineError::IsvUnexpected { .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(ISV_UNEXPECTED_MESSAGE), "{err}");
    let traces = env.traces();
    assert_eq!(traces.len(), 1, "{traces:?}");
    assert_eq!(traces[0].entry.outcome, TraceOutcome::Failed);
    assert!(
        traces[0]
            .entry
            .error
            .as_deref()
            .is_some_and(|e| e.contains("did not set the response property Greeting")),
        "{:?}",
        traces[0].entry.error
    );
    assert!(env.probe("forty").is_empty());
}

/// `[[custom_api]]` entries are checked at load: unknown plug-in, bad type, name clash, binding, function
/// without a response, each named.
#[test]
fn custom_api_registration_errors_name_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let with = |extra: &str| {
        greet_api("greet").replace(
            "plugin = \"greet\"\n",
            &format!("plugin = \"greet\"\n{extra}\n"),
        )
    };
    for (api, reason) in [
        (
            with("binding_type = 3"),
            "binding_type 3 is not 0 (Global), 1 (Entity) or 2 (EntityCollection)",
        ),
        (
            with("binding_type = 2"),
            "binding_type 2 (EntityCollection) needs bound_table",
        ),
        (
            with("binding_type = 0\nbound_table = \"account\""),
            "binding_type 0 (Global) is unbound: remove bound_table `account`",
        ),
        (
            with("bound_table = \"nope\""),
            "bound_table `nope` is not declared",
        ),
        (
            with("bound_table = \"account\"").replace("name = \"Name\"", "name = \"Target\""),
            "request parameter `Target` is the bound row's reference",
        ),
        (
            with("is_function = true").replace(
                "[[custom_api.response_property]]\nname = \"Greeting\"\ntype = \"String\"\n",
                "",
            ),
            "a function (is_function = true) must declare a response property",
        ),
        (
            greet_api("greet").replace("weft_Greet", "weft/Greet"),
            "unique_name must be ASCII letters, digits and `_`",
        ),
        (greet_api("nope"), "plug-in `nope` is not declared"),
        (
            greet_api("greet").replace(
                "type = \"String\"\n[[custom_api.response",
                "type = \"Text\"\n[[custom_api.response",
            ),
            "unknown variant `Text`",
        ),
        (
            format!("{}{}", greet_api("greet"), greet_api("greet")),
            "already exists",
        ),
        (
            greet_api("greet").replace("weft_Greet", "Create"),
            "already exists",
        ),
        (
            format!(
                "{}{}",
                greet_api("greet"),
                probe_step("s", "weft_Greet", 20, 1, "")
            ),
            "is unbound: the step's table must be absent",
        ),
    ] {
        let err = Registration::load(&write_config(dir.path(), &api)).unwrap_err();
        assert!(err.to_string().contains(reason), "{reason}: {err}");
        if !reason.starts_with("unknown variant") {
            assert!(
                err.entry.starts_with("custom_api \"") || err.entry == "step \"s\"",
                "{err}"
            );
        }
    }
}

/// A bulk message's own steps run once per stage with `Targets`; the steps on Create and Update run for each
/// item (UpsertMultiple: Update for a row that exists, Create for the others), at the same depth and
/// correlation, in the bulk message's transaction — a failure after the items rolls every item back.
#[test]
fn bulk_message_steps_run_once_and_item_steps_for_each() {
    let steps = [
        probe_step("bulk-pre", "CreateMultiple", 20, 1, ""),
        probe_step("bulk-post", "CreateMultiple", 40, 1, ""),
        probe_step("upsert-pre", "UpsertMultiple", 20, 1, ""),
        probe_step(
            "item-create",
            "Create",
            20,
            1,
            "set=description:from-create",
        ),
        probe_step("item-update", "Update", 20, 1, ""),
    ]
    .concat();
    let env = env(&steps);
    let bulk = |bulk: Bulk, targets: Vec<Entity>| {
        env.run(OrganizationRequest::new(Message::Multiple {
            bulk,
            table: "account".into(),
            targets,
        }))
    };
    let targets = ["A", "B", "C"]
        .iter()
        .map(|n| entity("account", None, &[("name", n)]))
        .collect();
    let ids = match bulk(Bulk::Create, targets).unwrap() {
        OrganizationResponse::Multiple { ids } => ids,
        other => panic!("{other:?}"),
    };
    assert_eq!(ids.len(), 3);
    let rows = env.rows("account");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.attributes["description"] == weft_store::Value::String("from-create".into()))
    );
    let traces = env.traces();
    let order: Vec<&str> = traces
        .iter()
        .map(|t| line(&t.entry.trace, "label"))
        .collect();
    assert_eq!(
        order,
        [
            "bulk-pre",
            "item-create",
            "item-create",
            "item-create",
            "bulk-post"
        ]
    );
    let bulk_pre = &traces[0].entry.trace;
    assert_eq!(line(bulk_pre, "input"), "Targets=collection[3]");
    for t in &traces {
        assert_eq!(line(&t.entry.trace, "depth"), "1");
        assert_eq!(
            line(&t.entry.trace, "correlation"),
            line(bulk_pre, "correlation")
        );
        assert_eq!(line(&t.entry.trace, "intx"), "true");
    }

    // UpsertMultiple: the first row exists (Update), the second does not (Create, with the id given).
    let fresh = Uuid::new_v4();
    let targets = vec![
        entity("account", Some(ids[0]), &[("name", "A2")]),
        entity("account", Some(fresh), &[("name", "D")]),
    ];
    match bulk(Bulk::Upsert, targets).unwrap() {
        OrganizationResponse::Multiple { ids: got } => assert_eq!(got, [ids[0], fresh]),
        other => panic!("{other:?}"),
    }
    let labels: Vec<String> = env.traces()[5..]
        .iter()
        .map(|t| line(&t.entry.trace, "label").to_owned())
        .collect();
    assert_eq!(labels, ["upsert-pre", "item-update", "item-create"]);
    assert_eq!(env.rows("account").len(), 4);

    // UpdateMultiple needs every target's id; a target of another table is refused before anything runs.
    let e = bulk(
        Bulk::Update,
        vec![entity("account", None, &[("name", "x")])],
    )
    .unwrap_err();
    assert!(e.to_string().contains("target 0 has no id"), "{e}");
    let e = bulk(
        Bulk::Create,
        vec![entity("contact", None, &[("lastname", "x")])],
    )
    .unwrap_err();
    assert!(e.to_string().contains("not `account`"), "{e}");
}

/// A bulk message's step failing in stage 40 rolls back every item created before it.
#[test]
fn a_bulk_message_step_failure_rolls_back_every_item() {
    let env = env(&probe_step(
        "bulk-post",
        "CreateMultiple",
        40,
        1,
        "fail=refused in 40",
    ));
    let e = env
        .run(OrganizationRequest::new(Message::Multiple {
            bulk: Bulk::Create,
            table: "account".into(),
            targets: vec![
                entity("account", None, &[("name", "A")]),
                entity("account", None, &[("name", "B")]),
            ],
        }))
        .unwrap_err();
    assert!(e.to_string().contains("refused in 40"), "{e}");
    assert!(env.rows("account").is_empty());
}
