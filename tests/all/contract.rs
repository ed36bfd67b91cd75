//! The two plug-in contracts side by side: a weft:plugin@0.2.0 component holding two plug-in types (each
//! run by the step that names it, an unknown name refused with a "did you mean"), its setters' changes
//! reaching the pipeline under the stage rules and travelling with a post, and a weft:plugin@0.1.0
//! component still running unchanged in the same host.

use crate::fixtures;
use std::sync::Arc;
use weft_host::context::{self, ContextSpec};
use weft_host::pipeline::{Message, OrganizationRequest, OrganizationResponse, Pipeline};
use weft_host::registration::Registration;
use weft_host::sandbox::wit::context::{ContextChanges, ExecutionContext, Mode, Stage};
use weft_host::sandbox::wit::types::{
    Attribute, Entity, EntityCollection, EntityReference, Guid, Parameter, ParameterValue, Value,
};
use weft_host::sandbox::{
    FailureKind, Invocation, Limits, LoadedPlugin, Outcome, RecordedCall, RecordingServices,
    Sandbox,
};
use weft_store::{Query, Read, SqliteOptions, SqliteStore, Store, StoreExt};

fn sandbox() -> Sandbox {
    Sandbox::new(
        Limits {
            max_instances: 4,
            ..Limits::default()
        },
        None,
    )
    .unwrap()
}

fn create_context(stage: Stage, target: &str) -> ExecutionContext {
    let json = serde_json::from_str(target).unwrap();
    context::build_context(ContextSpec {
        message: "Create".into(),
        table: "account".into(),
        stage,
        mode: Mode::Synchronous,
        target: Some(context::entity_from_json("account", &json).unwrap()),
        depth: 1,
        created_on_ms: 1_700_000_000_000,
    })
}

fn run(
    sandbox: &Sandbox,
    plugin: &LoadedPlugin,
    context: ExecutionContext,
    config: Option<&str>,
) -> Outcome<RecordingServices> {
    sandbox.invoke(
        plugin,
        Invocation {
            context,
            unsecure_config: config.map(str::to_owned),
            secure_config: None,
            services: RecordingServices {
                response: "Success".into(),
                ..RecordingServices::default()
            },
        },
    )
}

fn target_attribute(changes: &ContextChanges, name: &str) -> Option<Value> {
    let input = changes.input_parameters.as_ref()?;
    let target = input.iter().find(|p| p.name == "Target")?;
    let ParameterValue::Entity(entity) = &target.value else {
        return None;
    };
    entity
        .attributes
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.value.clone())
}

fn shared(changes: &ContextChanges, name: &str) -> Option<ParameterValue> {
    changes
        .shared_variables
        .as_ref()?
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.clone())
}

/// `plugin-types` is read at load; each type runs on its own and does its own thing.
#[test]
fn one_component_runs_each_of_its_types() {
    let sandbox = sandbox();
    let plugin = fixtures::load(&sandbox, "two-types");
    assert_eq!(plugin.contract_version(), "0.2.0");
    assert_eq!(plugin.plugin_types(), ["Contoso.Validate", "Stamp"]);

    let validate = plugin.for_type("Contoso.Validate").unwrap();
    let failure = run(
        &sandbox,
        &validate,
        create_context(Stage::PreOperation, "{}"),
        None,
    )
    .result
    .unwrap_err();
    assert!(
        matches!(failure.kind, FailureKind::Plugin { .. }),
        "{failure}"
    );
    assert_eq!(failure.message, "Contoso.Validate: name is required.");
    let passed = run(
        &sandbox,
        &validate,
        create_context(Stage::PreOperation, r#"{"name":"Contoso"}"#),
        None,
    );
    let changes = passed.result.unwrap();
    assert_eq!(
        changes,
        ContextChanges {
            input_parameters: None,
            output_parameters: None,
            shared_variables: None
        }
    );
    assert_eq!(passed.traces, ["Contoso.Validate: ok"]);

    let stamp = plugin.for_type("Stamp").unwrap();
    let outcome = run(
        &sandbox,
        &stamp,
        create_context(Stage::PreOperation, "{}"),
        None,
    );
    let changes = outcome.result.unwrap();
    assert_eq!(
        target_attribute(&changes, "description"),
        Some(Value::String("stamped by Stamp".into()))
    );
    assert_eq!(
        shared(&changes, "stamped"),
        Some(ParameterValue::Value(Value::Boolean(true)))
    );
    assert_eq!(outcome.traces, ["Stamp: stamped"]);
}

/// A type the component does not hold is refused with the types it holds and the near one; a component
/// with several types refuses to run without a choice.
#[test]
fn unknown_or_missing_types_are_refused_clearly() {
    let sandbox = sandbox();
    let plugin = fixtures::load(&sandbox, "two-types");
    let error = plugin.for_type("Stamps").err().unwrap();
    assert!(
        error.contains("holds no plug-in type \"Stamps\""),
        "{error}"
    );
    assert!(error.contains("did you mean \"Stamp\""), "{error}");
    let failure = run(
        &sandbox,
        &plugin,
        create_context(Stage::PreOperation, "{}"),
        None,
    )
    .result
    .unwrap_err();
    assert_eq!(failure.kind, FailureKind::InvalidComponent);
    assert!(
        failure.message.contains("several plug-in types"),
        "{failure}"
    );

    let v01 = fixtures::load(&sandbox, "contract-v01");
    assert!(v01.for_type("Anything").is_err());
}

/// A post made after a setter carries the change (0.2.0's notification service posts the context with the
/// changes so far).
#[test]
fn a_post_carries_the_setters_changes() {
    let sandbox = sandbox();
    let stamp = fixtures::load(&sandbox, "two-types")
        .for_type("Stamp")
        .unwrap();
    let endpoint = "00112233-4455-6677-8899-aabbccddeeff";
    let outcome = run(
        &sandbox,
        &stamp,
        create_context(Stage::PostOperation, "{}"),
        Some(endpoint),
    );
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    assert_eq!(
        outcome.services.calls,
        [RecordedCall::Notify {
            endpoint: Guid {
                hi: 0x0011_2233_4455_6677,
                lo: 0x8899_aabb_ccdd_eeff
            },
            shared_variables: Some(vec!["stamped".into()]),
        }]
    );
}

/// The SDK sends only what changed: a Target changed in place and appended to travels attribute by
/// attribute (`set-input-attribute`), one with an attribute removed travels whole, one set to what it
/// was not at all. Either way the host ends with the Target the plug-in holds, in its order. (The probe
/// reads the whole frame first; `sandbox::enricher_changes_the_target` reads InputParameters alone.)
#[test]
fn a_changed_target_reaches_the_host_as_the_plugin_holds_it() {
    let sandbox = sandbox();
    let probe = fixtures::load(&sandbox, "probe");
    let target = r#"{"name":"Old","address1_city":"Seattle","telephone1":"555"}"#;
    let changed = |config: &str| {
        let outcome = run(
            &sandbox,
            &probe,
            create_context(Stage::PreOperation, target),
            Some(config),
        );
        let changes = outcome.result.unwrap();
        let input = changes.input_parameters?;
        let [
            Parameter {
                name,
                value: ParameterValue::Entity(entity),
            },
        ] = &input[..]
        else {
            panic!("InputParameters should hold the Target alone: {input:?}")
        };
        assert_eq!(name, "Target");
        Some(
            entity
                .attributes
                .iter()
                .map(|a| match &a.value {
                    Value::String(s) => format!("{}={s}", a.name),
                    other => panic!("{} is {other:?}", a.name),
                })
                .collect::<Vec<_>>(),
        )
    };
    // Each case twice: after the whole frame was read (the SDK diffs against a copy it took), and with
    // InputParameters read on their own (`lean`: the SDK diffs against the packed bytes they came in).
    for mode in ["", "lean;"] {
        assert_eq!(
            changed(&format!("{mode}set=name:New;set=extra:x")).unwrap(),
            [
                "address1_city=Seattle",
                "name=New",
                "telephone1=555",
                "extra=x"
            ],
            "{mode}"
        );
        assert_eq!(
            changed(&format!("{mode}unset=address1_city;set=name:New")).unwrap(),
            ["name=New", "telephone1=555"],
            "{mode}"
        );
        assert_eq!(
            changed(&format!("{mode}set=extra:x;unset=extra;set=name:Newer")).unwrap(),
            ["address1_city=Seattle", "name=Newer", "telephone1=555"],
            "{mode}"
        );
        assert_eq!(changed(&format!("{mode}set=name:Old")), None, "{mode}");
    }
}

/// The host folds a plug-in's attribute changes into InputParameters at the end of the invocation,
/// moving the collection out of the context when the invocation holds it alone. A caller that keeps
/// its own reference to the context gets the same changes, and its context stays as it was.
#[test]
fn attribute_changes_leave_a_shared_context_untouched() {
    let sandbox = sandbox();
    let probe = fixtures::load(&sandbox, "probe");
    let context = Arc::new(create_context(
        Stage::PreOperation,
        r#"{"name":"Old","telephone1":"555"}"#,
    ));
    let before = context.frame.input_parameters.clone();
    let mut services = RecordingServices::default();
    let outcome = sandbox.invoke_with(
        &probe,
        Arc::clone(&context),
        Some("set=name:New;set=extra:x".into()),
        None,
        &mut services,
    );
    let changes = outcome.result.unwrap();
    assert_eq!(
        target_attribute(&changes, "name"),
        Some(Value::String("New".into()))
    );
    assert_eq!(
        target_attribute(&changes, "extra"),
        Some(Value::String("x".into()))
    );
    assert_eq!(
        target_attribute(&changes, "telephone1"),
        Some(Value::String("555".into()))
    );
    assert_eq!(context.frame.input_parameters, before);
}

/// Every kind of value reaches a plug-in intact through the packed read (`packed-parameters`): the
/// probe reads InputParameters alone and hands each back as a shared variable, which travels the other
/// way through the canonical ABI, so the two must agree.
#[test]
fn every_value_kind_crosses_the_packed_read_intact() {
    let sandbox = sandbox();
    let probe = fixtures::load(&sandbox, "probe");
    let guid = |n: u64| Guid {
        hi: n,
        lo: u64::MAX - n,
    };
    let reference = |table: &str, n: u64, name: Option<&str>| EntityReference {
        logical_name: table.into(),
        id: guid(n),
        name: name.map(str::to_owned),
    };
    let attribute = |name: &str, value: Value| Attribute {
        name: name.into(),
        value,
    };
    let target = Entity {
        logical_name: "account".into(),
        id: Some(guid(7)),
        attributes: vec![
            attribute("null", Value::Null),
            attribute("yes", Value::Boolean(true)),
            attribute("no", Value::Boolean(false)),
            attribute("int", Value::Integer(-42)),
            attribute("big", Value::BigInteger(i64::MIN)),
            attribute("double", Value::Double(-0.125)),
            attribute("decimal", Value::Decimal("12345678901234567890.12".into())),
            attribute("money", Value::Money("10.50".into())),
            attribute(
                "text",
                Value::String("Fourth Coffee — Zürich 北京 \u{0} end".into()),
            ),
            attribute("empty", Value::String(String::new())),
            attribute("when", Value::Datetime(1_700_000_000_123)),
            attribute("guid", Value::Guid(guid(3))),
            attribute(
                "owner",
                Value::EntityReference(reference("systemuser", 5, Some("Ann"))),
            ),
            attribute("choice", Value::OptionSetValue(100_000_001)),
            attribute("choices", Value::OptionSetValueCollection(vec![1, -2, 3])),
            attribute(
                "parties",
                Value::EntityReferenceCollection(vec![
                    reference("contact", 1, None),
                    reference("account", 2, Some("")),
                ]),
            ),
            attribute(
                "words",
                Value::StringArray(vec!["a".into(), String::new(), "ß".into()]),
            ),
        ],
        formatted_values: vec![("choice".into(), "Preferred".into())],
        row_version: Some("1234".into()),
    };
    let rows = EntityCollection {
        entity_name: "contact".into(),
        entities: vec![
            Entity {
                logical_name: "contact".into(),
                id: None,
                attributes: vec![],
                formatted_values: vec![],
                row_version: None,
            },
            target.clone(),
        ],
        more_records: true,
        paging_cookie: Some("<cookie page=\"2\"/>".into()),
        total_record_count: -1,
    };
    let mut context = create_context(Stage::PreOperation, "{}");
    context.frame.input_parameters = vec![
        Parameter {
            name: "Target".into(),
            value: ParameterValue::Entity(target),
        },
        Parameter {
            name: "Rows".into(),
            value: ParameterValue::EntityCollection(rows),
        },
        Parameter {
            name: "Count".into(),
            value: ParameterValue::Value(Value::Integer(3)),
        },
    ];
    let sent = context.frame.input_parameters.clone();
    let outcome = run(&sandbox, &probe, context, Some("mirror"));
    let changes = outcome.result.unwrap();
    assert_eq!(changes.shared_variables, Some(sent));
    // Reading is not changing: nothing comes back for InputParameters. (The probe took the collection
    // mutably, so the SDK re-encoded every value and compared it with the host's bytes: equal only if the
    // SDK's encoder and the host's agree byte for byte on every kind.)
    assert_eq!(changes.input_parameters, None);
}

/// A 0.1.0 component (built from wit/v0.1 without the SDK) runs unchanged beside 0.2.0 ones.
#[test]
fn a_0_1_0_component_still_runs() {
    let sandbox = sandbox();
    let plugin = fixtures::load(&sandbox, "contract-v01");
    assert_eq!(plugin.contract_version(), "0.1.0");
    assert_eq!(plugin.plugin_types(), ["contract-v01"]);
    let outcome = run(
        &sandbox,
        &plugin,
        create_context(Stage::PreOperation, r#"{"name":"Contoso"}"#),
        None,
    );
    assert_eq!(outcome.traces, ["contract 0.1.0"]);
    let changes = outcome.result.unwrap();
    assert_eq!(
        target_attribute(&changes, "description"),
        Some(Value::String("set by 0.1.0".into()))
    );
    assert_eq!(
        shared(&changes, "contract"),
        Some(ParameterValue::Value(Value::String("0.1.0".into())))
    );
}

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
  logical_name = "description"
  type = "String"
"#;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    pipeline: Pipeline,
}

fn start(steps: &str) -> Result<Env, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.toml");
    let plugins: String = ["two-types", "contract-v01"]
        .iter()
        .map(|p| {
            format!(
                "[[plugin]]\nname = \"{p}\"\ncomponent = \"{}\"\n",
                fixtures::component(p).display()
            )
        })
        .collect();
    std::fs::write(&path, format!("{TABLES}\n{plugins}\n{steps}")).unwrap();
    let registration = Registration::load(&path).map_err(|e| e.to_string())?;
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("weft.db"),
            registration.schema.clone(),
            SqliteOptions::default(),
        )
        .unwrap(),
    );
    let sandbox = Arc::new(Sandbox::new(registration.limits.clone(), None).unwrap());
    let pipeline = Pipeline::new(store.clone() as Arc<dyn Store>, sandbox, &registration)
        .map_err(|e| e.to_string())?;
    Ok(Env {
        _dir: dir,
        store,
        pipeline,
    })
}

fn step(name: &str, stage: i32, plugin: &str, plugin_type: Option<&str>) -> String {
    let plugin_type = plugin_type.map_or(String::new(), |t| format!("type = \"{t}\"\n"));
    format!(
        "[[step]]\nname = \"{name}\"\nmessage = \"Create\"\ntable = \"account\"\nstage = {stage}\n\
         plugin = \"{plugin}\"\n{plugin_type}"
    )
}

impl Env {
    fn create(&self, name: Option<&str>) -> Result<(), String> {
        let attributes = name
            .map(|n| Attribute {
                name: "name".into(),
                value: Value::String(n.into()),
            })
            .into_iter()
            .collect();
        let target = Entity {
            logical_name: "account".into(),
            id: None,
            attributes,
            formatted_values: Vec::new(),
            row_version: None,
        };
        match self
            .pipeline
            .execute(OrganizationRequest::new(Message::Create { target }))
        {
            Ok(OrganizationResponse::Create { .. }) => Ok(()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    fn descriptions(&self) -> Vec<Option<weft_store::Value>> {
        self.store
            .read(|r: &dyn Read| r.retrieve_multiple(&Query::new("account")))
            .unwrap()
            .into_iter()
            .map(|row| row.attributes.get("description").cloned())
            .collect()
    }
}

/// Two steps name the two types of one component: both run, each doing its own thing, and the stamper's
/// Target change (stage 20) is saved with the row.
#[test]
fn steps_run_the_types_they_name() {
    let env = start(
        &[
            step("validate", 10, "two-types", Some("Contoso.Validate")),
            step("stamp", 20, "two-types", Some("Stamp")),
        ]
        .concat(),
    )
    .unwrap();
    let refused = env.create(None).unwrap_err();
    assert!(
        refused.contains("Contoso.Validate: name is required."),
        "{refused}"
    );
    env.create(Some("Contoso")).unwrap();
    assert_eq!(
        env.descriptions(),
        [Some(weft_store::Value::String("stamped by Stamp".into()))]
    );
    // A plugintype row per type the component holds (read from `plugin-types` at load).
    let mut types: Vec<String> = env
        .store
        .read(|r: &dyn Read| r.plugin_types())
        .unwrap()
        .into_iter()
        .map(|t| t.type_name)
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["Contoso.Validate", "Stamp", "contract-v01", "two-types"]
    );
}

/// Stage rules apply to setters as they did to 0.1.0's returned changes: a Target changed in stage 40 is not
/// saved.
#[test]
fn setters_follow_the_stage_rules() {
    let env = start(&step("stamp-late", 40, "two-types", Some("Stamp"))).unwrap();
    env.create(Some("Contoso")).unwrap();
    assert_eq!(env.descriptions(), [None]);
}

/// A 0.1.0 component and a 0.2.0 type run in one operation.
#[test]
fn both_contracts_run_in_one_pipeline() {
    let env = start(
        &[
            step("v01", 20, "contract-v01", None),
            step("validate", 10, "two-types", Some("Contoso.Validate")),
        ]
        .concat(),
    )
    .unwrap();
    env.create(Some("Contoso")).unwrap();
    assert_eq!(
        env.descriptions(),
        [Some(weft_store::Value::String("set by 0.1.0".into()))]
    );
}

/// A step naming a type the component does not hold stops the start with the names it holds; a step
/// naming none on a component with several is refused too.
#[test]
fn unknown_types_stop_the_start() {
    let error = start(&step("typo", 10, "two-types", Some("Contoso.Validat")))
        .err()
        .unwrap();
    assert!(
        error.contains("did you mean \"Contoso.Validate\""),
        "{error}"
    );
    let error = start(&step("none", 10, "two-types", None)).err().unwrap();
    assert!(error.contains("several plug-in types"), "{error}");
    let error = start(&step("old", 10, "contract-v01", Some("X")))
        .err()
        .unwrap();
    assert!(error.contains("0.1.0"), "{error}");
}
