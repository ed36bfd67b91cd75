//! The pipeline's side of background workflows: which workflows an operation starts, and their system
//! jobs (operation type 10, Workflow) written in the operation's transaction, beside the async steps' —
//! so a rolled-back operation starts none, and a committed one cannot lose its runs.
//!
//! Owns the execution context a workflow run gets (stage 40, asynchronous, OwningExtension the workflow,
//! UserId its run-as user, a Delete's row as the `PreBusinessEntity` pre-image). Must not run workflows
//! (that is `crate::delivery`'s job runner, through weft-workflows' interpreter).

use std::sync::Arc;

use uuid::Uuid;
use weft_store::system::{NewSystemJob, StoredWorkflow};
use weft_store::{AttributeKind, EntityRef, Schema, Tx};
use weft_workflows::{Catalog, Kind, RunAs, Signature, WORKFLOW_OPERATION_TYPE, WorkflowDef};

use super::registry::Registry;
use super::{DEFAULT_USER_ID, Inner, Op, PipelineError, convert, get_param, guid, project};
use crate::sandbox::wit::context::{Mode, Stage};
use crate::sandbox::wit::types::{EntityReference, Image, ParameterValue};
use crate::sandbox::{ArgumentType, LoadedPlugin};

/// The pre-image alias under which a Delete's workflow gets the deleted row (Dataverse's name for the
/// record a workflow runs on).
pub const DELETED_ROW_IMAGE: &str = "PreBusinessEntity";

/// The workflows `op` starts: enabled ones on its table and message (an Update only when it changed one
/// of the listed columns).
fn started<'a>(op: &'a Op) -> impl Iterator<Item = &'a WorkflowDef> + 'a {
    // Asked for every operation: with no workflows registered, nothing is collected.
    let changed: Vec<&str> = match get_param(&op.input, "Target") {
        _ if op.registry.workflows.is_empty() => Vec::new(),
        Some(ParameterValue::Entity(e)) if op.message == "Update" => {
            e.attributes.iter().map(|a| a.name.as_str()).collect()
        }
        _ => Vec::new(),
    };
    op.registry
        .workflows
        .iter()
        .filter(move |w| weft_workflows::starts(w, &op.message, &op.table, &changed))
}

/// Whether a Delete starts a workflow, which then needs the row as it was.
pub(super) fn needs_deleted_row(op: &Op) -> bool {
    op.message == "Delete" && started(op).next().is_some()
}

impl Inner {
    /// Writes one system job per workflow the operation starts (none when asynchronous logic is
    /// bypassed).
    pub(super) fn queue_workflows(&self, op: &Op, tx: &mut dyn Tx) -> Result<(), PipelineError> {
        if op.bypass_async || op.primary_id.is_nil() {
            return Ok(());
        }
        for workflow in started(op) {
            // Checked at registration: every registered workflow has its id.
            let Some(workflow_id) = workflow.id else {
                continue;
            };
            let job_id = weft_store::new_id();
            let created_on = tx.now_ms();
            let user_id = match workflow.run_as {
                RunAs::Owner => DEFAULT_USER_ID,
                RunAs::Caller => op.user_id,
            };
            let pre = match (&op.pre_row, op.message.as_str()) {
                (Some(row), "Delete") => vec![Image {
                    alias: DELETED_ROW_IMAGE.into(),
                    entity: project(row, &[]),
                }],
                _ => Vec::new(),
            };
            let owning_extension = EntityReference {
                logical_name: "workflow".into(),
                id: guid(workflow_id),
                name: Some(workflow.name.clone()),
            };
            let mut context = self.context_for(
                op,
                Stage::PostOperation,
                Mode::Asynchronous,
                user_id,
                owning_extension,
                (pre, Vec::new()),
            );
            context.frame.operation_id = guid(job_id);
            context.frame.operation_created_on = created_on;
            context.frame.is_in_transaction = false;
            let data =
                weft_message::encode(&convert::to_remote(&context), weft_message::Format::Json);
            tx.insert_system_job(NewSystemJob {
                id: Some(job_id),
                name: workflow.name.clone(),
                operation_type: WORKFLOW_OPERATION_TYPE,
                message_name: op.message.clone(),
                primary_entity_type: Some(op.table.clone()),
                regarding: Some(EntityRef::new(&op.table, op.primary_id)),
                owning_extension_id: Some(workflow_id),
                correlation_id: op.correlation_id,
                depth: op.depth,
                data,
                data_content_type: weft_message::Format::Json.content_type().into(),
                postpone_until: None,
                created_on: Some(created_on),
            })?;
        }
        Ok(())
    }
}

/// The workflows the host starts with: every stored one (the file's, as [`Registration::apply`] left them,
/// and those registered at runtime), each checked against the tables and the activity types of the
/// plug-ins `registry` loaded. The file's problems are listed together, as the file's errors; a workflow
/// registered at runtime that no longer fits stops the start naming it and how to delete it, as a step
/// does.
///
/// [`Registration::apply`]: crate::registration::Registration::apply
pub(super) fn validated(
    registry: &Registry,
    schema: &Schema,
    registration: &crate::registration::Registration,
    stored: Vec<StoredWorkflow>,
) -> Result<Vec<WorkflowDef>, PipelineError> {
    let catalog = WorkflowCatalog { registry, schema };
    let file = &registration.file;
    let mut problems = Vec::new();
    let mut workflows = Vec::new();
    for row in stored {
        let declared = registration.workflows.iter().any(|w| w.id == Some(row.id));
        let def = stored_definition(&row).map_err(|e| {
            PipelineError::Invalid(format!(
                "{file}: workflow \"{}\" ({}): its stored definition cannot be read: {e}",
                row.name, row.id
            ))
        })?;
        match weft_workflows::validate(&def, &catalog) {
            Ok(()) => workflows.push(def),
            Err(errors) if declared => problems.extend(errors),
            Err(errors) => {
                return Err(PipelineError::Invalid(format!(
                    "{file}: workflow \"{}\" ({}), registered at runtime, no longer fits: {}. Declare what \
                     it needs again, start, deactivate and delete it (PATCH then DELETE \
                     /api/data/v9.2/workflows({})), then remove the declaration",
                    row.name,
                    row.id,
                    errors.join("; "),
                    row.id
                )));
            }
        }
    }
    if problems.is_empty() {
        Ok(workflows)
    } else {
        Err(PipelineError::Invalid(format!(
            "{file}: {}",
            problems.join("; ")
        )))
    }
}

/// A stored workflow row as a definition: its id and state are the row's.
pub(super) fn stored_definition(row: &StoredWorkflow) -> Result<WorkflowDef, serde_json::Error> {
    let mut def: WorkflowDef = serde_json::from_str(&row.definition)?;
    def.id = Some(row.id);
    def.enabled = row.activated;
    Ok(def)
}

/// What workflows are checked and run against: the tables, and the activity types of the loaded
/// plug-ins (by plug-in name).
pub(crate) struct WorkflowCatalog<'a> {
    pub(super) registry: &'a Registry,
    pub(super) schema: &'a Schema,
}

impl WorkflowCatalog<'_> {
    /// The loaded component of the plug-in (assembly) `name`.
    pub(crate) fn plugin(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.registry
            .plugins
            .values()
            .find(|p| p.assembly.name == name)
            .map(|p| &p.loaded)
    }
}

fn kind(kind: &AttributeKind) -> Kind {
    match kind {
        AttributeKind::String { .. } | AttributeKind::Memo { .. } => Kind::String,
        AttributeKind::Integer { .. } => Kind::Integer,
        AttributeKind::Double => Kind::Double,
        AttributeKind::Decimal { .. } => Kind::Decimal,
        AttributeKind::Money => Kind::Money,
        AttributeKind::Boolean => Kind::Boolean,
        AttributeKind::DateTime => Kind::DateTime,
        AttributeKind::Lookup { .. } => Kind::EntityReference,
        AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => Kind::OptionSetValue,
        AttributeKind::BigInt
        | AttributeKind::Uniqueidentifier
        | AttributeKind::MultiSelectPicklist { .. } => Kind::Other,
    }
}

/// An activity argument's type as a binding kind.
pub(crate) fn argument_kind(t: ArgumentType) -> Kind {
    match t {
        ArgumentType::Boolean => Kind::Boolean,
        ArgumentType::Datetime => Kind::DateTime,
        ArgumentType::Decimal => Kind::Decimal,
        ArgumentType::Double => Kind::Double,
        ArgumentType::EntityReference => Kind::EntityReference,
        ArgumentType::Integer => Kind::Integer,
        ArgumentType::Money => Kind::Money,
        ArgumentType::OptionSetValue => Kind::OptionSetValue,
        ArgumentType::String => Kind::String,
    }
}

impl Catalog for WorkflowCatalog<'_> {
    fn column(&self, table: &str, column: &str) -> Result<Kind, String> {
        let Some(def) = self.schema.table(table) else {
            return Err(format!(
                "table `{table}` is not declared{}",
                crate::suggest::table_hint(self.schema, table)
            ));
        };
        match def.attribute(column) {
            Some(a) => Ok(kind(&a.kind)),
            None => Err(format!("table `{table}` has no column `{column}`")),
        }
    }

    fn activity(&self, plugin: &str, activity: &str) -> Result<Signature, String> {
        let Some(loaded) = self.plugin(plugin) else {
            return Err(format!("plug-in `{plugin}` is not declared"));
        };
        let Some(found) = loaded.activity_types().iter().find(|a| a.name == activity) else {
            let held: Vec<&str> = loaded
                .activity_types()
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            return Err(format!(
                "plug-in `{plugin}` holds no activity type `{activity}` (it holds {}){}",
                if held.is_empty() {
                    "none".into()
                } else {
                    held.join(", ")
                },
                crate::suggest::did_you_mean(activity, held.iter().copied())
            ));
        };
        let specs = |args: &[crate::sandbox::ArgumentSpec]| {
            args.iter()
                .map(|a| weft_workflows::ArgumentSpec {
                    name: a.name.clone(),
                    kind: argument_kind(a.type_),
                    required: a.required,
                })
                .collect()
        };
        Ok(Signature {
            inputs: specs(&found.inputs),
            outputs: specs(&found.outputs),
        })
    }

    fn parse_datetime(&self, text: &str) -> Result<i64, String> {
        crate::api::json::parse_datetime(text)
    }
}

/// A registration snapshot for one workflow run: the workflow and what its steps are checked and run
/// against, the same version throughout the run.
pub(crate) struct WorkflowSnapshot {
    registry: Arc<Registry>,
}

impl WorkflowSnapshot {
    /// The registered workflow with this id.
    pub(crate) fn workflow(&self, id: Uuid) -> Option<&WorkflowDef> {
        self.registry.workflows.iter().find(|w| w.id == Some(id))
    }

    /// Its catalog over `schema`.
    pub(crate) fn catalog<'a>(&'a self, schema: &'a Schema) -> WorkflowCatalog<'a> {
        WorkflowCatalog {
            registry: &self.registry,
            schema,
        }
    }
}

impl super::Pipeline {
    /// The current registration, for running a workflow.
    pub(crate) fn workflow_snapshot(&self) -> WorkflowSnapshot {
        WorkflowSnapshot {
            registry: self.inner.registries.snapshot(),
        }
    }

    /// The registered workflows.
    pub fn workflows(&self) -> Vec<WorkflowDef> {
        self.inner.registries.snapshot().workflows.clone()
    }
}
