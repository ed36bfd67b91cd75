//! The interpreter: runs a validated [`WorkflowDef`]'s steps once, for one system job, through a
//! [`RunHost`] that reads and writes rows and runs activities. Must not know the store, the sandbox or job
//! states: the host maps what it returns ([`Finish`], [`StepFailure`]) to the job's outcome.
//!
//! A retry of the job runs the workflow again from its first step, and the steps that completed before
//! have the same effect again instead of a second one: a Create step's row gets an id derived from the
//! job and the step ([`created_id`]), so the host finds it created and does not create it twice; an
//! Update sets the same values; an activity runs again (its posts are at least once, as Dataverse's
//! retries are). Conditions read the record as it is at that point.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use weft_store::{Attributes, Value};

use crate::model::{Binding, Condition, Operator, Step, StopStatus, WorkflowDef};
use crate::validate::{Catalog, Kind, constant};

/// What running a step needs from the host.
pub trait RunHost {
    /// The current values of a row (None when it does not exist).
    fn retrieve(&mut self, table: &str, id: Uuid) -> Result<Option<Attributes>, StepFailure>;
    /// Creates a row with this id (a retry passes the same id: the host skips a row that exists).
    fn create(&mut self, table: &str, id: Uuid, values: Attributes) -> Result<(), StepFailure>;
    /// Updates a row.
    fn update(&mut self, table: &str, id: Uuid, values: Attributes) -> Result<(), StepFailure>;
    /// Runs an activity with its inputs (every declared input, `Null` when unbound) and returns its
    /// outputs.
    fn activity(
        &mut self,
        plugin: &str,
        activity: &str,
        inputs: Vec<(String, Value)>,
    ) -> Result<Vec<(String, Value)>, StepFailure>;
}

/// Why a step failed, and whether the job should retry it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    /// What went wrong.
    pub message: String,
    /// Whether the failure is worth retrying (an endpoint that was down, the host busy, an activity that
    /// raised with OperationStatus Retry) and how.
    pub retry: Retry,
    /// A Dataverse error code, when one applies.
    pub error_code: Option<i32>,
}

/// How a failed step is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not retried: the job fails.
    No,
    /// With the asynchronous service's backoff (network, busy host).
    Transient,
    /// An activity raised with OperationStatus Retry: as a plug-in's retry.
    Plugin,
    /// A service endpoint refused the credentials: the job is Suspended.
    Auth,
}

impl StepFailure {
    /// A failure that is not retried.
    pub fn permanent(message: impl Into<String>) -> StepFailure {
        StepFailure {
            message: message.into(),
            retry: Retry::No,
            error_code: None,
        }
    }
}

/// How a run ended without a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Ran to the end, or to a Stop with status Succeeded.
    Succeeded,
    /// A Stop with status Canceled, and its message.
    Canceled(String),
}

/// What one run did, for the job's message and the trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// One line per step run, in order (`step 1 (update): ok`).
    pub lines: Vec<String>,
}

/// One run of a workflow for one event.
pub struct Run<'a> {
    def: &'a WorkflowDef,
    catalog: &'a dyn Catalog,
    /// The workflow's record.
    record_id: Uuid,
    /// Its values: read at the start, or given (a Delete's pre-image), refreshed after updates of it.
    record: Attributes,
    /// Whether the record still exists (not after a Delete).
    record_exists: bool,
    /// The system job: created rows' ids derive from it.
    job_id: Uuid,
    variables: BTreeMap<String, Value>,
    /// What happened, step by step.
    pub progress: Progress,
}

/// The id a Create step's row gets: the same on every attempt of the same job, distinct per step.
pub fn created_id(job_id: Uuid, place: &str) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(b"weft-workflow-create\0");
    hash.update(job_id.as_bytes());
    hash.update(place.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // A version-4 shaped id (random bits from the digest), as every other id weft makes.
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

impl<'a> Run<'a> {
    /// A run of `def` for the row `record_id` of the workflow's table, in job `job_id`. `record` is the
    /// row's values when it no longer exists (a Delete: the pre-image); otherwise None and the run reads it.
    pub fn new(
        def: &'a WorkflowDef,
        catalog: &'a dyn Catalog,
        job_id: Uuid,
        record_id: Uuid,
        record: Option<Attributes>,
    ) -> Run<'a> {
        Run {
            def,
            catalog,
            record_id,
            record_exists: record.is_none(),
            record: record.unwrap_or_default(),
            job_id,
            variables: BTreeMap::new(),
            progress: Progress::default(),
        }
    }

    /// Runs every step in order. `Err` is the first failed step, its place in the message.
    pub fn run(&mut self, host: &mut dyn RunHost) -> Result<Finish, StepFailure> {
        if self.record_exists {
            self.record = host
                .retrieve(&self.def.table, self.record_id)?
                .ok_or_else(|| {
                    StepFailure::permanent(format!(
                        "the workflow's record {} {} no longer exists",
                        self.def.table, self.record_id
                    ))
                })?;
        }
        let steps = &self.def.steps;
        Ok(self.steps(steps, "", host)?.unwrap_or(Finish::Succeeded))
    }

    /// Runs `steps`; `Some` when a Stop ended the workflow.
    fn steps(
        &mut self,
        steps: &'a [Step],
        prefix: &str,
        host: &mut dyn RunHost,
    ) -> Result<Option<Finish>, StepFailure> {
        for (i, step) in steps.iter().enumerate() {
            let place = format!("{prefix}step {} ({})", i + 1, step.kind());
            let fail = |e: StepFailure| StepFailure {
                message: format!("{place}: {}", e.message),
                ..e
            };
            // A condition's nested steps name their own full place.
            let finish = match step {
                Step::Condition { .. } => self.step(step, &place, host)?,
                _ => self.step(step, &place, host).map_err(fail)?,
            };
            if let Some(finish) = finish {
                return Ok(Some(finish));
            }
        }
        Ok(None)
    }

    fn step(
        &mut self,
        step: &'a Step,
        place: &str,
        host: &mut dyn RunHost,
    ) -> Result<Option<Finish>, StepFailure> {
        match step {
            Step::Condition {
                when,
                any,
                then,
                otherwise,
            } => {
                let mut results = Vec::with_capacity(when.len());
                for c in when {
                    results.push(self.holds(c).map_err(|e| StepFailure {
                        message: format!("{place}: {}", e.message),
                        ..e
                    })?);
                }
                let holds = if *any {
                    results.iter().any(|r| *r)
                } else {
                    results.iter().all(|r| *r)
                };
                self.note(place, if holds { "holds" } else { "does not hold" });
                if holds {
                    self.steps(then, &format!("{place} → then "), host)
                } else {
                    self.steps(otherwise, &format!("{place} → otherwise "), host)
                }
            }
            Step::Create {
                table,
                values,
                name,
            } => {
                let attributes = self.values(table, values)?;
                let id = created_id(self.job_id, place);
                if host.retrieve(table, id)?.is_some() {
                    self.note(
                        place,
                        &format!("{table} {id} (created by an earlier attempt)"),
                    );
                } else {
                    host.create(table, id, attributes)?;
                    self.note(place, &format!("created {table} {id}"));
                }
                if let Some(name) = name {
                    self.variables.insert(
                        name.clone(),
                        Value::EntityReference {
                            logical_name: table.clone(),
                            id,
                        },
                    );
                }
                Ok(None)
            }
            Step::Update { row, values } => {
                let (table, id) = match row {
                    None => (self.def.table.clone(), self.record_id),
                    Some(var) => match self.variables.get(var) {
                        Some(Value::EntityReference { logical_name, id }) => {
                            (logical_name.clone(), *id)
                        }
                        _ => {
                            return Err(StepFailure::permanent(format!(
                                "the variable \"{var}\" holds no row"
                            )));
                        }
                    },
                };
                if row.is_none() && !self.record_exists {
                    return Err(StepFailure::permanent(
                        "the workflow's record was deleted; it cannot be updated",
                    ));
                }
                let attributes = self.values(&table, values)?;
                host.update(&table, id, attributes)?;
                if row.is_none()
                    && let Some(fresh) = host.retrieve(&table, id)?
                {
                    self.record = fresh;
                }
                self.note(place, &format!("updated {table} {id}"));
                Ok(None)
            }
            Step::Activity {
                plugin,
                activity,
                inputs,
                outputs,
            } => {
                let signature = self
                    .catalog
                    .activity(plugin, activity)
                    .map_err(StepFailure::permanent)?;
                let mut bound = Vec::with_capacity(signature.inputs.len());
                for arg in &signature.inputs {
                    let value = match inputs.get(&arg.name) {
                        Some(b) => self.bind(b, arg.kind)?,
                        None => Value::Null,
                    };
                    if arg.required && value == Value::Null {
                        return Err(StepFailure::permanent(format!(
                            "the required input \"{}\" has no value",
                            arg.name
                        )));
                    }
                    bound.push((arg.name.clone(), value));
                }
                let produced = host.activity(plugin, activity, bound)?;
                for (name, value) in produced {
                    let Some(spec) = signature.outputs.iter().find(|a| a.name == name) else {
                        return Err(StepFailure::permanent(format!(
                            "\"{activity}\" returned the output \"{name}\", which it does not declare"
                        )));
                    };
                    if !spec.kind.accepts(&value) {
                        return Err(StepFailure::permanent(format!(
                            "\"{activity}\" returned the output \"{name}\" as {}, not {:?}",
                            value.type_name(),
                            spec.kind
                        )));
                    }
                    if let Some(variable) = outputs.get(&name) {
                        self.variables.insert(variable.clone(), value);
                    }
                }
                self.note(place, &format!("ran {plugin} / {activity}"));
                Ok(None)
            }
            Step::Stop { status, message } => {
                self.note(place, &format!("{status:?}"));
                Ok(Some(match status {
                    StopStatus::Succeeded => Finish::Succeeded,
                    StopStatus::Canceled => Finish::Canceled(
                        message
                            .clone()
                            .unwrap_or_else(|| "The workflow was stopped as Canceled.".into()),
                    ),
                }))
            }
        }
    }

    fn note(&mut self, place: &str, what: &str) {
        self.progress.lines.push(format!("{place}: {what}"));
    }

    fn values(
        &self,
        table: &str,
        values: &BTreeMap<String, Binding>,
    ) -> Result<Attributes, StepFailure> {
        let mut attributes = Attributes::new();
        for (column, binding) in values {
            let kind = self
                .catalog
                .column(table, column)
                .map_err(StepFailure::permanent)?;
            attributes.insert(column.clone(), self.bind(binding, kind)?);
        }
        Ok(attributes)
    }

    /// A binding's value now, as `kind`.
    fn bind(&self, binding: &Binding, kind: Kind) -> Result<Value, StepFailure> {
        match binding {
            Binding::Attribute { attribute } => {
                Ok(self.record.get(attribute).cloned().unwrap_or(Value::Null))
            }
            // A variable set in a branch that did not run is unset: Null, as in Dataverse.
            Binding::Variable { variable } => {
                Ok(self.variables.get(variable).cloned().unwrap_or(Value::Null))
            }
            Binding::Constant(c) => constant(self.catalog, c, kind).map_err(StepFailure::permanent),
        }
    }

    fn holds(&self, c: &Condition) -> Result<bool, StepFailure> {
        let actual = self
            .record
            .get(&c.attribute)
            .cloned()
            .unwrap_or(Value::Null);
        let kind = self
            .catalog
            .column(&self.def.table, &c.attribute)
            .map_err(StepFailure::permanent)?;
        let expected = match &c.value {
            Some(b) => self.bind(b, kind)?,
            None => Value::Null,
        };
        Ok(compare(&actual, c.operator, &expected))
    }
}

/// Evaluates one comparison. A Null on either side satisfies only `null` (and `not_equal` against a
/// value), as Dataverse's condition editor does.
pub fn compare(actual: &Value, operator: Operator, expected: &Value) -> bool {
    use std::cmp::Ordering;
    match operator {
        Operator::Null => *actual == Value::Null,
        Operator::NotNull => *actual != Value::Null,
        Operator::Equal => *actual != Value::Null && equal(actual, expected),
        Operator::NotEqual => !equal(actual, expected),
        Operator::GreaterThan
        | Operator::GreaterEqual
        | Operator::LessThan
        | Operator::LessEqual => {
            let Some(ordering) = order(actual, expected) else {
                return false;
            };
            match operator {
                Operator::GreaterThan => ordering == Ordering::Greater,
                Operator::GreaterEqual => ordering != Ordering::Less,
                Operator::LessThan => ordering == Ordering::Less,
                _ => ordering != Ordering::Greater,
            }
        }
        Operator::Contains | Operator::BeginsWith | Operator::EndsWith => {
            let (Value::String(a), Value::String(e)) = (actual, expected) else {
                return false;
            };
            // Dataverse compares text case-insensitively.
            let (a, e) = (a.to_lowercase(), e.to_lowercase());
            match operator {
                Operator::Contains => a.contains(&e),
                Operator::BeginsWith => a.starts_with(&e),
                _ => a.ends_with(&e),
            }
        }
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.to_lowercase() == b.to_lowercase(),
        (Value::EntityReference { id: a, .. }, Value::EntityReference { id: b, .. }) => a == b,
        _ => order(a, b).map_or(a == b, |o| o == std::cmp::Ordering::Equal),
    }
}

/// Orders two values of the same numeric, date or text type; decimal text compares by value.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Integer(a), Value::Integer(b))
        | (Value::OptionSetValue(a), Value::OptionSetValue(b)) => Some(a.cmp(b)),
        (Value::BigInt(a), Value::BigInt(b)) | (Value::DateTime(a), Value::DateTime(b)) => {
            Some(a.cmp(b))
        }
        (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
        (Value::Decimal(a), Value::Decimal(b)) | (Value::Money(a), Value::Money(b)) => {
            a.parse::<f64>().ok()?.partial_cmp(&b.parse::<f64>().ok()?)
        }
        (Value::String(a), Value::String(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        _ => None,
    }
}
