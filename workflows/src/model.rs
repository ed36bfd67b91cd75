//! The workflow definition as declared (`[[workflow]]` in weft.toml): trigger, scope of the user it runs
//! as, and steps. Plain serde types with `deny_unknown_fields`, so a mistyped key is an error naming it.
//! Must not check anything against tables or components (that is [`crate::validate`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One background workflow (a `workflow` row of category 0, Workflow; mode 0, Background).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    /// `workflowid`; derived from the name when absent, so it stays stable across restarts.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// `name`: unique among workflows.
    pub name: String,
    /// `primaryentity`: the table whose events start it.
    pub table: String,
    /// The events that start it (`triggeroncreate`, `triggeronupdateattributelist`, `triggerondelete`, and
    /// the SetState and Assign messages).
    pub on: Vec<TriggerEvent>,
    /// `triggeronupdateattributelist`: an Update starts the workflow only when it changes one of these
    /// columns; empty means any column.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// `runas`: whose rights its create and update steps use.
    #[serde(default)]
    pub run_as: RunAs,
    /// Activated (statecode 1) when true; a Draft (0) workflow is not started.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The steps, run in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

fn yes() -> bool {
    true
}

/// A message that starts a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerEvent {
    /// Record is created.
    Create,
    /// Record fields change (the columns in `attributes`, or any).
    Update,
    /// Record is deleted.
    Delete,
    /// Record status changes (the SetState message).
    SetState,
    /// Record is assigned (the Assign message).
    Assign,
}

impl TriggerEvent {
    /// The SDK message name that fires it.
    pub fn message(self) -> &'static str {
        match self {
            TriggerEvent::Create => "Create",
            TriggerEvent::Update => "Update",
            TriggerEvent::Delete => "Delete",
            TriggerEvent::SetState => "SetState",
            TriggerEvent::Assign => "Assign",
        }
    }
}

/// `runas`: 0 Owner (the workflow's owner), 1 Calling User (the user who made the change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    /// 0: the workflow's owner.
    #[default]
    Owner,
    /// 1: the user who made the change.
    Caller,
}

impl RunAs {
    /// Dataverse's `runas` option value.
    pub fn value(self) -> i32 {
        match self {
            RunAs::Owner => 0,
            RunAs::Caller => 1,
        }
    }
}

/// One workflow step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Step {
    /// "Check Condition": `then` when every condition in `when` holds (or any, with `any = true`),
    /// `otherwise` when not.
    Condition {
        /// The conditions, on the record's current values.
        when: Vec<Condition>,
        /// Any one condition suffices (OR) instead of all (AND).
        #[serde(default)]
        any: bool,
        /// Steps when it holds.
        #[serde(default)]
        then: Vec<Step>,
        /// Steps when it does not ("Otherwise").
        #[serde(default)]
        otherwise: Vec<Step>,
    },
    /// "Create Record".
    Create {
        /// The table to create a row in.
        table: String,
        /// Column values.
        #[serde(default)]
        values: BTreeMap<String, Binding>,
        /// Names the new row, as an entity reference, for later steps (`{ variable = "…" }`).
        #[serde(default, rename = "as")]
        name: Option<String>,
    },
    /// "Update Record": the workflow's record, or a row an earlier step created (`row = "<its as>"`).
    Update {
        /// A variable holding an entity reference; the workflow's record when absent.
        #[serde(default)]
        row: Option<String>,
        /// Column values.
        values: BTreeMap<String, Binding>,
    },
    /// A custom workflow activity.
    Activity {
        /// The registered plug-in (component) holding it.
        plugin: String,
        /// The activity type.
        activity: String,
        /// Input bindings by argument name.
        #[serde(default)]
        inputs: BTreeMap<String, Binding>,
        /// Output argument name → the variable later steps read it from.
        #[serde(default)]
        outputs: BTreeMap<String, String>,
    },
    /// "Stop Workflow" with status Succeeded or Canceled.
    Stop {
        /// How the system job ends.
        status: StopStatus,
        /// The message recorded on the job (Canceled).
        #[serde(default)]
        message: Option<String>,
    },
}

impl Step {
    /// The step kind, as written in `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Condition { .. } => "condition",
            Step::Create { .. } => "create",
            Step::Update { .. } => "update",
            Step::Activity { .. } => "activity",
            Step::Stop { .. } => "stop",
        }
    }
}

/// How a Stop step ends the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopStatus {
    /// Completed / Succeeded (3/30).
    Succeeded,
    /// Completed / Canceled (3/32).
    Canceled,
}

/// A condition on one of the record's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The column.
    pub attribute: String,
    /// The comparison.
    pub operator: Operator,
    /// What it is compared with (none for `null` / `not_null`).
    #[serde(default)]
    pub value: Option<Binding>,
}

/// A condition's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equals.
    Equal,
    /// Does Not Equal.
    NotEqual,
    /// Is Greater Than.
    GreaterThan,
    /// Is Greater Than or Equal To.
    GreaterEqual,
    /// Is Less Than.
    LessThan,
    /// Is Less Than or Equal To.
    LessEqual,
    /// Does Not Contain Data.
    Null,
    /// Contains Data.
    NotNull,
    /// Contains (text).
    Contains,
    /// Begins With (text).
    BeginsWith,
    /// Ends With (text).
    EndsWith,
}

impl Operator {
    /// Whether it compares with a value.
    pub fn takes_value(self) -> bool {
        !matches!(self, Operator::Null | Operator::NotNull)
    }
}

/// Where a value comes from: a column of the workflow's record, a variable an earlier step set (an
/// activity's output or a created row), or a constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Binding {
    /// `{ attribute = "name" }`: the record's current value.
    Attribute {
        /// The column.
        attribute: String,
    },
    /// `{ variable = "status" }`: an earlier step's output.
    Variable {
        /// The variable.
        variable: String,
    },
    /// A constant, converted to the type of what it is bound to.
    Constant(Constant),
}

/// A constant as written in the declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Constant {
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text (also decimal and money amounts, dates, `table:guid` references).
    Text(String),
}
