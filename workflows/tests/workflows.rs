//! The definition model, validation and interpreter against an in-memory catalog and host (the host's
//! own end-to-end tests run workflows through the pipeline, the sandbox and the bus).

use std::collections::BTreeMap;

use uuid::Uuid;
use weft_store::{Attributes, Value};
use weft_workflows::run::created_id;
use weft_workflows::{
    ArgumentSpec, Catalog, Finish, Kind, Retry, Run, RunHost, Signature, StepFailure, WorkflowDef,
    starts, validate,
};

struct Tables;

impl Catalog for Tables {
    fn column(&self, table: &str, column: &str) -> Result<Kind, String> {
        let kind = match (table, column) {
            ("account", "name" | "description") | ("task", "subject") => Kind::String,
            ("account", "revenue") => Kind::Money,
            ("account", "numberofemployees") => Kind::Integer,
            ("task", "regardingobjectid") => Kind::EntityReference,
            ("account" | "task", _) => {
                return Err(format!("table \"{table}\" has no column \"{column}\""));
            }
            _ => return Err(format!("no table \"{table}\"")),
        };
        Ok(kind)
    }

    fn activity(&self, plugin: &str, activity: &str) -> Result<Signature, String> {
        match (plugin, activity) {
            ("tools", "Score") => Ok(Signature {
                inputs: vec![
                    ArgumentSpec {
                        name: "name".into(),
                        kind: Kind::String,
                        required: true,
                    },
                    ArgumentSpec {
                        name: "bonus".into(),
                        kind: Kind::Integer,
                        required: false,
                    },
                ],
                outputs: vec![ArgumentSpec {
                    name: "label".into(),
                    kind: Kind::String,
                    required: false,
                }],
            }),
            _ => Err(format!(
                "plug-in \"{plugin}\" holds no activity type \"{activity}\""
            )),
        }
    }

    fn parse_datetime(&self, text: &str) -> Result<i64, String> {
        Err(format!("{text:?} is not parsed in this test"))
    }
}

/// A host over in-memory rows, recording what it did; `fail_activity` makes the next activity fail once.
#[derive(Default)]
struct Memory {
    rows: BTreeMap<(String, Uuid), Attributes>,
    creates: usize,
    activity_inputs: Vec<Vec<(String, Value)>>,
    fail_activity: bool,
}

impl RunHost for Memory {
    fn retrieve(&mut self, table: &str, id: Uuid) -> Result<Option<Attributes>, StepFailure> {
        Ok(self.rows.get(&(table.to_owned(), id)).cloned())
    }

    fn create(&mut self, table: &str, id: Uuid, values: Attributes) -> Result<(), StepFailure> {
        self.creates += 1;
        self.rows.insert((table.to_owned(), id), values);
        Ok(())
    }

    fn update(&mut self, table: &str, id: Uuid, values: Attributes) -> Result<(), StepFailure> {
        let row = self
            .rows
            .get_mut(&(table.to_owned(), id))
            .ok_or_else(|| StepFailure::permanent("no row"))?;
        row.extend(values);
        Ok(())
    }

    fn activity(
        &mut self,
        _plugin: &str,
        _activity: &str,
        inputs: Vec<(String, Value)>,
    ) -> Result<Vec<(String, Value)>, StepFailure> {
        if std::mem::take(&mut self.fail_activity) {
            return Err(StepFailure {
                message: "endpoint unavailable".into(),
                retry: Retry::Transient,
                error_code: None,
            });
        }
        let name = match &inputs[0].1 {
            Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        };
        self.activity_inputs.push(inputs);
        Ok(vec![(
            "label".into(),
            Value::String(format!("scored {name}")),
        )])
    }
}

const DECLARATION: &str = r#"
name = "Score big accounts"
table = "account"
on = ["create", "update"]
attributes = ["revenue"]

[[step]]
kind = "condition"
when = [{ attribute = "revenue", operator = "greater_than", value = "1000" }]

  [[step.then]]
  kind = "activity"
  plugin = "tools"
  activity = "Score"
  inputs = { name = { attribute = "name" }, bonus = 5 }
  outputs = { label = "score" }

  [[step.then]]
  kind = "update"
  values = { description = { variable = "score" } }

  [[step.then]]
  kind = "create"
  table = "task"
  as = "followup"
  values = { subject = "Call the account", regardingobjectid = "account:00000000-0000-0000-0000-0000000000aa" }

  [[step.otherwise]]
  kind = "stop"
  status = "canceled"
  message = "Too small."
"#;

fn declaration() -> WorkflowDef {
    toml::from_str(DECLARATION).expect("the declaration parses")
}

fn account(memory: &mut Memory, revenue: &str) -> Uuid {
    let id = Uuid::new_v4();
    let mut row = Attributes::new();
    row.insert("name".into(), Value::String("Fourth Coffee".into()));
    row.insert("revenue".into(), Value::Money(revenue.into()));
    memory.rows.insert(("account".into(), id), row);
    id
}

/// A valid declaration passes; the condition's branch runs the activity, feeds its output to an update
/// and creates a row.
#[test]
fn a_true_condition_runs_the_activity_and_feeds_its_output_to_later_steps() {
    let def = declaration();
    validate(&def, &Tables).expect("valid");
    let mut memory = Memory::default();
    let id = account(&mut memory, "2500.00");
    let job = Uuid::new_v4();
    let finish = Run::new(&def, &Tables, job, id, None)
        .run(&mut memory)
        .unwrap();
    assert_eq!(finish, Finish::Succeeded);
    assert_eq!(
        memory.activity_inputs,
        [vec![
            ("name".to_owned(), Value::String("Fourth Coffee".into())),
            ("bonus".to_owned(), Value::Integer(5)),
        ]]
    );
    assert_eq!(
        memory.rows[&("account".to_owned(), id)]["description"],
        Value::String("scored Fourth Coffee".into())
    );
    let task = created_id(job, "step 1 (condition) → then step 3 (create)");
    assert_eq!(
        memory.rows[&("task".to_owned(), task)]["subject"],
        Value::String("Call the account".into())
    );
}

/// A false condition takes Otherwise: Stop as Canceled, with its message, and nothing else runs.
#[test]
fn a_false_condition_takes_otherwise_and_stop_cancels() {
    let def = declaration();
    let mut memory = Memory::default();
    let id = account(&mut memory, "10");
    let finish = Run::new(&def, &Tables, Uuid::new_v4(), id, None)
        .run(&mut memory)
        .unwrap();
    assert_eq!(finish, Finish::Canceled("Too small.".into()));
    assert!(memory.activity_inputs.is_empty());
    assert_eq!(memory.creates, 0);
}

/// A failed activity fails the run with its retry class and its place; the retry of the same job runs
/// again without creating the row twice.
#[test]
fn a_retried_job_does_not_create_rows_twice() {
    let mut def = declaration();
    // Create first, then the activity, so the failure comes after a completed create.
    if let weft_workflows::Step::Condition { then, .. } = &mut def.steps[0] {
        then.rotate_right(1);
    }
    let mut memory = Memory {
        fail_activity: true,
        ..Memory::default()
    };
    let id = account(&mut memory, "5000");
    let job = Uuid::new_v4();
    let failure = Run::new(&def, &Tables, job, id, None)
        .run(&mut memory)
        .unwrap_err();
    assert_eq!(failure.retry, Retry::Transient);
    assert!(
        failure
            .message
            .starts_with("step 1 (condition) → then step 2 (activity): endpoint unavailable"),
        "{}",
        failure.message
    );
    assert_eq!(memory.creates, 1);
    let finish = Run::new(&def, &Tables, job, id, None)
        .run(&mut memory)
        .unwrap();
    assert_eq!(finish, Finish::Succeeded);
    assert_eq!(memory.creates, 1, "the retry found the row created");
}

/// Validation reports every problem with the workflow's name and the step's place.
#[test]
fn validation_names_the_step_and_the_problem() {
    let bad = r#"
name = "Broken"
table = "account"
on = ["delete", "delete"]
attributes = ["revenue"]

[[step]]
kind = "activity"
plugin = "tools"
activity = "Score"
inputs = { bonus = "five", colour = 1 }
outputs = { nothing = "x" }

[[step]]
kind = "update"
values = { numberofemployees = { variable = "later" }, shoesize = 3 }

[[step]]
kind = "activity"
plugin = "tools"
activity = "Missing"
"#;
    let def: WorkflowDef = toml::from_str(bad).unwrap();
    let errors = validate(&def, &Tables).unwrap_err();
    let expected = [
        "workflow \"Broken\": `on` names Delete twice",
        "workflow \"Broken\": `attributes` limits the Update trigger, but `on` has no update",
        "workflow \"Broken\", step 1 (activity): the input \"bonus\": Text(\"five\") is not a whole number",
        "workflow \"Broken\", step 1 (activity): \"Score\" has no input \"colour\" (its inputs: name, bonus)",
        "workflow \"Broken\", step 1 (activity): the required input \"name\" is not bound",
        "workflow \"Broken\", step 1 (activity): \"Score\" has no output \"nothing\" (its outputs: label)",
        "workflow \"Broken\", step 2 (update): the column \"numberofemployees\": no earlier step sets the variable \"later\"",
        "workflow \"Broken\", step 2 (update): table \"account\" has no column \"shoesize\"",
        "workflow \"Broken\", step 3 (activity): plug-in \"tools\" holds no activity type \"Missing\"",
    ];
    assert_eq!(errors, expected);
}

/// A mistyped key is refused by name.
#[test]
fn an_unknown_key_is_refused() {
    let error = toml::from_str::<WorkflowDef>(
        "name = \"x\"\ntable = \"account\"\non = [\"create\"]\nrun_as = \"owner\"\ncolour = 1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("unknown field `colour`"), "{error}");
}

/// Update starts a workflow only when it changed one of the listed columns; other messages and tables
/// never.
#[test]
fn update_triggers_on_the_listed_columns_only() {
    let def = declaration();
    assert!(starts(&def, "Create", "account", &[]));
    assert!(starts(&def, "Update", "account", &["name", "revenue"]));
    assert!(!starts(&def, "Update", "account", &["name"]));
    assert!(!starts(&def, "Delete", "account", &[]));
    assert!(!starts(&def, "Create", "contact", &[]));
    let draft = WorkflowDef {
        enabled: false,
        ..declaration()
    };
    assert!(!starts(&draft, "Create", "account", &[]));
}
