//! Checks a [`WorkflowDef`] against the tables and the loaded activity types, before it is registered, and
//! turns constants into typed values. Every error names the workflow, the step (by its path, e.g.
//! `step 2 → then 1`) and what is wrong. Must not run anything (that is [`crate::run`]).

use std::collections::{BTreeMap, HashSet};

use weft_store::Value;

use crate::model::{Binding, Constant, Step, TriggerEvent, WorkflowDef};

/// The type of a column or an activity argument, as far as binding values is concerned: the nine
/// argument types of CodeActivity, and `Other` for columns no constant may be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Boolean,
    /// `DateTime`.
    DateTime,
    /// `decimal`.
    Decimal,
    /// `double`.
    Double,
    /// `EntityReference`.
    EntityReference,
    /// `int`.
    Integer,
    /// `Money`.
    Money,
    /// `OptionSetValue`.
    OptionSetValue,
    /// `string`.
    String,
    /// Any other column type (big integer, unique identifier, multi-select choice): readable in conditions
    /// and copyable from a column of the same type, not settable from a constant.
    Other,
}

impl Kind {
    /// Whether `value` fits (Null always does: an unset value).
    pub fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (_, Value::Null)
                | (Kind::Other, _)
                | (Kind::Boolean, Value::Boolean(_))
                | (Kind::DateTime, Value::DateTime(_))
                | (Kind::Decimal, Value::Decimal(_))
                | (Kind::Double, Value::Double(_))
                | (Kind::EntityReference, Value::EntityReference { .. })
                | (Kind::Integer, Value::Integer(_))
                | (Kind::Money, Value::Money(_))
                | (Kind::OptionSetValue, Value::OptionSetValue(_))
                | (Kind::String, Value::String(_))
        )
    }
}

/// One declared argument of an activity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// `[RequiredArgument]`.
    pub required: bool,
}

/// An activity type's arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// Inputs.
    pub inputs: Vec<ArgumentSpec>,
    /// Outputs.
    pub outputs: Vec<ArgumentSpec>,
}

/// What validation looks things up in: the host's tables and loaded components.
pub trait Catalog {
    /// The type of `table.column`; `Err` says why not (unknown table or column).
    fn column(&self, table: &str, column: &str) -> Result<Kind, String>;
    /// The signature of `activity` in plug-in `plugin`; `Err` says why not (no such plug-in or type).
    fn activity(&self, plugin: &str, activity: &str) -> Result<Signature, String>;
    /// A date and time in the Web API's form (`2025-01-31T09:00:00Z`), as ms since the Unix epoch.
    fn parse_datetime(&self, text: &str) -> Result<i64, String>;
}

/// Turns a constant into a value of `kind`, or says why it cannot.
pub fn constant(catalog: &dyn Catalog, c: &Constant, kind: Kind) -> Result<Value, String> {
    let wrong = |what: &str| Err(format!("{c:?} is not {what}"));
    match (kind, c) {
        (Kind::Boolean, Constant::Bool(b)) => Ok(Value::Boolean(*b)),
        (Kind::Boolean, _) => wrong("a boolean (true or false)"),
        (Kind::Integer, Constant::Int(n)) => i32::try_from(*n)
            .map(Value::Integer)
            .map_err(|_| format!("{n} is out of range for a whole number (int)")),
        (Kind::Integer, _) => wrong("a whole number"),
        (Kind::OptionSetValue, Constant::Int(n)) => i32::try_from(*n)
            .map(Value::OptionSetValue)
            .map_err(|_| format!("{n} is out of range for a choice value")),
        (Kind::OptionSetValue, _) => wrong("a choice value (a whole number)"),
        (Kind::Double, Constant::Int(n)) => Ok(Value::Double(*n as f64)),
        (Kind::Double, Constant::Float(f)) => Ok(Value::Double(*f)),
        (Kind::Double, _) => wrong("a number"),
        (Kind::Decimal | Kind::Money, c) => {
            let text = match c {
                Constant::Int(n) => n.to_string(),
                Constant::Text(t) if is_decimal(t) => t.clone(),
                _ => return wrong("a decimal amount (a whole number or text such as \"10.50\")"),
            };
            Ok(if kind == Kind::Money {
                Value::Money(text)
            } else {
                Value::Decimal(text)
            })
        }
        (Kind::String, Constant::Text(t)) => Ok(Value::String(t.clone())),
        (Kind::String, _) => wrong("text"),
        (Kind::DateTime, Constant::Text(t)) => catalog.parse_datetime(t).map(Value::DateTime),
        (Kind::DateTime, _) => wrong("a date and time (text such as \"2025-01-31T09:00:00Z\")"),
        (Kind::EntityReference, Constant::Text(t)) => {
            let reference = t.split_once(':').and_then(|(table, id)| {
                let id = uuid::Uuid::parse_str(id).ok()?;
                (!table.is_empty()).then(|| Value::EntityReference {
                    logical_name: table.to_owned(),
                    id,
                })
            });
            reference.ok_or_else(|| format!("{t:?} is not a reference written \"table:guid\""))
        }
        (Kind::EntityReference, _) => wrong("a reference (text written \"table:guid\")"),
        (Kind::Other, _) => Err(
            "the column's type takes no constant (bind a column or variable of the same type)"
                .into(),
        ),
    }
}

fn is_decimal(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Most steps one workflow may hold, nested ones included, and the deepest nesting of conditions: a
/// declaration is read from a file or the Web API, and the interpreter recurses over conditions.
pub const MAX_STEPS: usize = 500;
/// See [`MAX_STEPS`].
pub const MAX_DEPTH: usize = 16;

/// Checks `def`. Every problem found is returned, each naming its place.
pub fn validate(def: &WorkflowDef, catalog: &dyn Catalog) -> Result<(), Vec<String>> {
    let mut v = Validator {
        def,
        catalog,
        errors: Vec::new(),
        variables: BTreeMap::new(),
        count: 0,
    };
    v.header();
    v.steps(&def.steps, "", 0);
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(v.errors)
    }
}

struct Validator<'a> {
    def: &'a WorkflowDef,
    catalog: &'a dyn Catalog,
    errors: Vec<String>,
    /// Variables set so far (in document order) and their types.
    variables: BTreeMap<String, Kind>,
    count: usize,
}

impl Validator<'_> {
    fn error(&mut self, place: &str, message: String) {
        let name = &self.def.name;
        self.errors.push(if place.is_empty() {
            format!("workflow \"{name}\": {message}")
        } else {
            format!("workflow \"{name}\", {place}: {message}")
        });
    }

    fn header(&mut self) {
        let def = self.def;
        if def.name.trim().is_empty() {
            self.error("", "`name` is empty".into());
        }
        if def.on.is_empty() {
            self.error(
                "",
                "`on` names no event (create, update, delete, setstate, assign)".into(),
            );
        }
        let mut seen = HashSet::new();
        for event in &def.on {
            if !seen.insert(event) {
                self.error("", format!("`on` names {} twice", event.message()));
            }
        }
        if !def.attributes.is_empty() && !def.on.contains(&TriggerEvent::Update) {
            self.error(
                "",
                "`attributes` limits the Update trigger, but `on` has no update".into(),
            );
        }
        for column in &def.attributes {
            if let Err(why) = self.catalog.column(&def.table, column) {
                self.error("`attributes`", why);
            }
        }
        if def.steps.is_empty() {
            self.error("", "it has no steps".into());
        }
    }

    fn steps(&mut self, steps: &[Step], prefix: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.error(
                prefix,
                format!("conditions nest more than {MAX_DEPTH} levels deep (the limit)"),
            );
            return;
        }
        for (i, step) in steps.iter().enumerate() {
            self.count += 1;
            if self.count > MAX_STEPS {
                self.error(
                    "",
                    format!("it has more than {MAX_STEPS} steps (the limit)"),
                );
                return;
            }
            let place = format!("{prefix}step {} ({})", i + 1, step.kind());
            self.step(step, &place, depth);
        }
    }

    fn step(&mut self, step: &Step, place: &str, depth: usize) {
        let table = self.def.table.clone();
        match step {
            Step::Condition {
                when,
                then,
                otherwise,
                ..
            } => {
                if when.is_empty() {
                    self.error(place, "`when` has no condition".into());
                }
                for c in when {
                    match self.catalog.column(&table, &c.attribute) {
                        Err(why) => self.error(place, why),
                        Ok(kind) => match (&c.value, c.operator.takes_value()) {
                            (None, true) => self.error(
                                place,
                                format!(
                                    "the {:?} condition on \"{}\" needs a `value`",
                                    c.operator, c.attribute
                                ),
                            ),
                            (Some(_), false) => self.error(
                                place,
                                format!(
                                    "the {:?} condition on \"{}\" takes no `value`",
                                    c.operator, c.attribute
                                ),
                            ),
                            (Some(b), true) => self.binding(
                                place,
                                &format!("the condition on \"{}\"", c.attribute),
                                b,
                                kind,
                            ),
                            (None, false) => {}
                        },
                    }
                }
                self.steps(then, &format!("{place} → then "), depth + 1);
                self.steps(otherwise, &format!("{place} → otherwise "), depth + 1);
            }
            Step::Create {
                table,
                values,
                name,
            } => {
                self.values(place, table, values);
                if let Some(name) = name {
                    self.define(place, name, Kind::EntityReference);
                }
            }
            Step::Update { row, values } => {
                let target = match row {
                    None => Some(table),
                    Some(var) => match self.variables.get(var) {
                        Some(Kind::EntityReference) => self.created_table(var),
                        Some(_) => {
                            self.error(
                                place,
                                format!("`row`: the variable \"{var}\" is not a reference"),
                            );
                            None
                        }
                        None => {
                            self.error(
                                place,
                                format!("`row`: no earlier step sets the variable \"{var}\""),
                            );
                            None
                        }
                    },
                };
                if values.is_empty() {
                    self.error(place, "`values` sets no column".into());
                }
                if let Some(target) = target {
                    self.values(place, &target, values);
                }
            }
            Step::Activity {
                plugin,
                activity,
                inputs,
                outputs,
            } => {
                let signature = match self.catalog.activity(plugin, activity) {
                    Ok(s) => s,
                    Err(why) => return self.error(place, why),
                };
                for (name, binding) in inputs {
                    match signature.inputs.iter().find(|a| a.name == *name) {
                        Some(arg) => {
                            self.binding(place, &format!("the input \"{name}\""), binding, arg.kind)
                        }
                        None => self.error(
                            place,
                            format!(
                                "\"{activity}\" has no input \"{name}\" (its inputs: {})",
                                names(&signature.inputs)
                            ),
                        ),
                    }
                }
                for arg in &signature.inputs {
                    if arg.required && !inputs.contains_key(&arg.name) {
                        self.error(
                            place,
                            format!("the required input \"{}\" is not bound", arg.name),
                        );
                    }
                }
                for (name, variable) in outputs {
                    match signature.outputs.iter().find(|a| a.name == *name) {
                        Some(arg) => self.define(place, variable, arg.kind),
                        None => self.error(
                            place,
                            format!(
                                "\"{activity}\" has no output \"{name}\" (its outputs: {})",
                                names(&signature.outputs)
                            ),
                        ),
                    }
                }
            }
            Step::Stop { .. } => {}
        }
    }

    /// The table a created-row variable points at.
    fn created_table(&self, var: &str) -> Option<String> {
        fn find(steps: &[Step], var: &str) -> Option<String> {
            steps.iter().find_map(|s| match s {
                Step::Create { table, name, .. } if name.as_deref() == Some(var) => {
                    Some(table.clone())
                }
                Step::Condition {
                    then, otherwise, ..
                } => find(then, var).or_else(|| find(otherwise, var)),
                _ => None,
            })
        }
        find(&self.def.steps, var)
    }

    fn define(&mut self, place: &str, name: &str, kind: Kind) {
        if name.is_empty() {
            return self.error(place, "a variable name is empty".into());
        }
        match self.variables.get(name) {
            Some(existing) if *existing != kind => self.error(
                place,
                format!("the variable \"{name}\" is set earlier with another type ({existing:?}, here {kind:?})"),
            ),
            _ => {
                self.variables.insert(name.to_owned(), kind);
            }
        }
    }

    fn values(&mut self, place: &str, table: &str, values: &BTreeMap<String, Binding>) {
        for (column, binding) in values {
            match self.catalog.column(table, column) {
                Ok(kind) => self.binding(place, &format!("the column \"{column}\""), binding, kind),
                Err(why) => self.error(place, why),
            }
        }
    }

    fn binding(&mut self, place: &str, what: &str, binding: &Binding, kind: Kind) {
        let table = self.def.table.clone();
        match binding {
            Binding::Attribute { attribute } => match self.catalog.column(&table, attribute) {
                Ok(from) if compatible(from, kind) => {}
                Ok(from) => self.error(
                    place,
                    format!(
                        "{what} is {kind:?}, but the record's column \"{attribute}\" is {from:?}"
                    ),
                ),
                Err(why) => self.error(place, why),
            },
            Binding::Variable { variable } => match self.variables.get(variable) {
                Some(from) if compatible(*from, kind) => {}
                Some(from) => self.error(
                    place,
                    format!("{what} is {kind:?}, but the variable \"{variable}\" is {from:?}"),
                ),
                None => self.error(
                    place,
                    format!("{what}: no earlier step sets the variable \"{variable}\""),
                ),
            },
            Binding::Constant(c) => {
                if let Err(why) = constant(self.catalog, c, kind) {
                    self.error(place, format!("{what}: {why}"));
                }
            }
        }
    }
}

/// Whether a value of `from` may be bound to `to`: only the same type (the designer offers no
/// conversions either).
fn compatible(from: Kind, to: Kind) -> bool {
    from == to
}

fn names(args: &[ArgumentSpec]) -> String {
    if args.is_empty() {
        return "none".into();
    }
    args.iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
