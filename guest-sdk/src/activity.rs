//! Custom workflow activities: the [`Activity`] trait (CodeActivity), its typed
//! arguments ([`ArgumentSpec`], [`Arguments`]) and what IWorkflowContext adds
//! to the execution context ([`WorkflowContext`]). Plain Rust types: the WIT
//! side is `convert`'s.
//!
//! An activity is written like a plug-in: it reads the workflow's execution
//! context (the event that started the workflow) through [`Context`], reaches
//! the host through [`Services`] (posting the context to a service endpoint
//! included), reads its bound inputs and sets its outputs.
//!
//! ```
//! use weft_sdk::{Activity, ArgumentSpec, ArgumentType, Arguments, Context, PluginError, Services, WorkflowContext};
//!
//! /// Doubles a number.
//! pub struct Double;
//!
//! impl Activity for Double {
//!     fn inputs() -> Vec<ArgumentSpec> {
//!         vec![ArgumentSpec::new("n", ArgumentType::Integer).required()]
//!     }
//!     fn outputs() -> Vec<ArgumentSpec> {
//!         vec![ArgumentSpec::new("twice", ArgumentType::Integer)]
//!     }
//!     fn execute(_: &mut Context, _: &WorkflowContext, inputs: &Arguments, outputs: &mut Arguments, _: &Services) -> Result<(), PluginError> {
//!         let n = inputs.get_i32("n").ok_or_else(|| PluginError::new("n is required"))?;
//!         outputs.set("twice", n * 2);
//!         Ok(())
//!     }
//! }
//! // In the plug-in crate: weft_sdk::export_activity!(Double);
//! ```
//!
//! Must not: touch the WIT bindings (that is `convert`).

use crate::{Context, EntityReference, Guid, PluginError, Services, Value};

/// A custom workflow activity (`CodeActivity`): declares its arguments and
/// runs once per workflow step that uses it.
pub trait Activity {
    /// The `[Input("…")]` arguments. None by default.
    fn inputs() -> Vec<ArgumentSpec> {
        Vec::new()
    }

    /// The `[Output("…")]` arguments. None by default.
    fn outputs() -> Vec<ArgumentSpec> {
        Vec::new()
    }

    /// Runs the activity. `inputs` holds every declared input (unbound
    /// optional ones are absent); set outputs with [`Arguments::set`] (only
    /// declared names, with their declared types: the host refuses others).
    /// An `Err` fails the workflow step; [`PluginError::retry`] has the system
    /// job retry it.
    fn execute(
        ctx: &mut Context,
        workflow: &WorkflowContext,
        inputs: &Arguments,
        outputs: &mut Arguments,
        services: &Services,
    ) -> Result<(), PluginError>;
}

/// The .NET type of an argument (`InArgument<T>` / `OutArgument<T>`): the nine
/// types Dataverse's workflow designer binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgumentType {
    /// `bool`: [`Value::Boolean`].
    Boolean,
    /// `DateTime`: [`Value::DateTime`].
    DateTime,
    /// `decimal`: [`Value::Decimal`].
    Decimal,
    /// `double`: [`Value::Double`].
    Double,
    /// `EntityReference`: [`Value::EntityReference`].
    EntityReference,
    /// `int`: [`Value::Integer`].
    Integer,
    /// `Money`: [`Value::Money`].
    Money,
    /// `OptionSetValue`: [`Value::OptionSetValue`].
    OptionSetValue,
    /// `string`: [`Value::String`].
    String,
}

impl ArgumentType {
    /// Whether `value` is of this type (`Null` is of every type: an unset argument).
    ///
    /// ```
    /// # use weft_sdk::{ArgumentType, Value};
    /// assert!(ArgumentType::Money.accepts(&Value::Money("1.50".into())));
    /// assert!(!ArgumentType::Money.accepts(&Value::Decimal("1.50".into())));
    /// ```
    pub fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (_, Value::Null)
                | (ArgumentType::Boolean, Value::Boolean(_))
                | (ArgumentType::DateTime, Value::DateTime(_))
                | (ArgumentType::Decimal, Value::Decimal(_))
                | (ArgumentType::Double, Value::Double(_))
                | (ArgumentType::EntityReference, Value::EntityReference(_))
                | (ArgumentType::Integer, Value::Integer(_))
                | (ArgumentType::Money, Value::Money(_))
                | (ArgumentType::OptionSetValue, Value::OptionSetValue(_))
                | (ArgumentType::String, Value::String(_))
        )
    }
}

/// One declared argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentSpec {
    /// Its name, unique among the activity's inputs (or outputs).
    pub name: String,
    /// Its type.
    pub ty: ArgumentType,
    /// `[RequiredArgument]`: a workflow that binds nothing to it is refused.
    pub required: bool,
    /// `[ReferenceTarget("…")]`: the table of an `EntityReference` argument.
    pub reference_target: Option<String>,
}

impl ArgumentSpec {
    /// An optional argument.
    ///
    /// ```
    /// # use weft_sdk::{ArgumentSpec, ArgumentType};
    /// let a = ArgumentSpec::new("account", ArgumentType::EntityReference).required().reference_target("account");
    /// assert!(a.required);
    /// ```
    pub fn new(name: impl Into<String>, ty: ArgumentType) -> ArgumentSpec {
        ArgumentSpec {
            name: name.into(),
            ty,
            required: false,
            reference_target: None,
        }
    }

    /// Marks it `[RequiredArgument]`.
    pub fn required(mut self) -> ArgumentSpec {
        self.required = true;
        self
    }

    /// Sets `[ReferenceTarget(table)]`.
    pub fn reference_target(mut self, table: impl Into<String>) -> ArgumentSpec {
        self.reference_target = Some(table.into());
        self
    }
}

/// What IWorkflowContext adds to the execution context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowContext {
    /// `StageName`: empty outside staged processes.
    pub stage_name: String,
    /// `WorkflowCategory`: 0 Workflow.
    pub workflow_category: i32,
    /// `WorkflowMode`: 0 Background, 1 Real-time.
    pub workflow_mode: i32,
    /// The workflow (`workflowid`).
    pub workflow_id: Guid,
    /// The workflow's name.
    pub workflow_name: String,
}

impl Default for WorkflowContext {
    /// A background workflow (category 0, mode 0) with a nil id.
    fn default() -> Self {
        WorkflowContext {
            stage_name: String::new(),
            workflow_category: 0,
            workflow_mode: 0,
            workflow_id: Guid::NIL,
            workflow_name: String::new(),
        }
    }
}

/// Bound argument values by name, in order. `Null` values read as absent.
///
/// ```
/// # use weft_sdk::{Arguments, Value};
/// let mut a = Arguments::new();
/// a.set("count", 3).set("label", "three");
/// assert_eq!(a.get_i32("count"), Some(3));
/// assert_eq!(a.get_str("label"), Some("three"));
/// assert_eq!(a.get("missing"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arguments(Vec<(String, Value)>);

impl Arguments {
    /// No arguments.
    pub fn new() -> Arguments {
        Arguments::default()
    }

    /// Sets (or replaces) an argument.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) -> &mut Arguments {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
        self
    }

    /// An argument's value; `None` when absent or `Null`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    /// A `string` argument.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// An `int` argument.
    pub fn get_i32(&self, name: &str) -> Option<i32> {
        match self.get(name) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        }
    }

    /// A `bool` argument.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    /// A `double` argument.
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Some(Value::Double(n)) => Some(*n),
            _ => None,
        }
    }

    /// A `decimal` or `Money` argument, as exact decimal text.
    pub fn get_decimal(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::Decimal(s) | Value::Money(s)) => Some(s),
            _ => None,
        }
    }

    /// A `DateTime` argument, ms since the Unix epoch.
    pub fn get_datetime(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::DateTime(ms)) => Some(*ms),
            _ => None,
        }
    }

    /// An `EntityReference` argument.
    pub fn get_reference(&self, name: &str) -> Option<&EntityReference> {
        match self.get(name) {
            Some(Value::EntityReference(r)) => Some(r),
            _ => None,
        }
    }

    /// An `OptionSetValue` argument.
    pub fn get_option(&self, name: &str) -> Option<i32> {
        match self.get(name) {
            Some(Value::OptionSetValue(n)) => Some(*n),
            _ => None,
        }
    }

    /// Every argument, in order (`Null` ones included).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Checks outputs against the declared `specs`: every name declared, every
    /// value of its declared type. The host checks the same; this lets native
    /// tests fail where the sandbox would.
    ///
    /// ```
    /// # use weft_sdk::{Arguments, ArgumentSpec, ArgumentType};
    /// let specs = [ArgumentSpec::new("n", ArgumentType::Integer)];
    /// let mut out = Arguments::new();
    /// out.set("n", "text");
    /// assert!(out.check(&specs).is_err());
    /// ```
    pub fn check(&self, specs: &[ArgumentSpec]) -> Result<(), PluginError> {
        for (name, value) in self.iter() {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                return Err(PluginError::new(format!(
                    "the activity set the output \"{name}\", which it does not declare"
                )));
            };
            if !spec.ty.accepts(value) {
                return Err(PluginError::new(format!(
                    "the activity set the output \"{name}\" to a value that is not {:?}",
                    spec.ty
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn into_vec(self) -> Vec<(String, Value)> {
        self.0
    }

    pub(crate) fn from_vec(values: Vec<(String, Value)>) -> Arguments {
        Arguments(values)
    }
}
