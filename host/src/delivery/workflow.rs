//! Running a workflow's system job (operation type 10): weft-workflows' interpreter over the stored
//! context, with its steps' effects served here — rows read from the store, rows created and updated as
//! operations of their own through the pipeline (so plug-ins registered on them run, at the context's
//! depth + 1, as the workflow's run-as user), custom activities run in the sandbox with the same services
//! an asynchronous plug-in has (notification-service posts within the job included).
//!
//! Owns the mapping of a run's end to the job's [`JobOutcome`]: a failed post fails the attempt with the
//! post's own class (so the job retries the activity as an async plug-in's post is retried), an activity
//! raising with OperationStatus Retry is a plug-in retry, a Stop as Canceled ends the job Canceled. Must
//! not change job states itself (weft-jobs does).

use std::sync::Arc;

use uuid::Uuid;
use weft_jobs::{FailureClass, JobOutcome};
use weft_store::system::{StepMode, SystemJob};
use weft_store::{Attributes, Read, StoreExt, Tx, Value as StoreValue};
use weft_workflows::{Finish, Retry, Run, RunHost, StepFailure};

use super::PLUGIN_FAILED_CODE;
use super::runner::{DeliveryRunner, JobServices, failed_post};
use crate::convert::{self, guid};
use crate::pipeline::TraceSubject;
use crate::pipeline::workflow::{DELETED_ROW_IMAGE, WorkflowCatalog};
use crate::sandbox::wit::context::{ExecutionContext, Mode};
use crate::sandbox::wit::types::{Attribute, Entity, ServiceError, ServiceErrorKind};
use crate::sandbox::{Argument, FailureKind, HostServices, WorkflowInfo};

/// `OperationStatus.Retry` as the sandbox reports it (Failed 0, Canceled 1, Retry 2, …).
const OPERATION_STATUS_RETRY: u8 = 2;

impl DeliveryRunner {
    /// One attempt at a workflow's system job.
    pub(super) fn run_workflow(&self, job: &SystemJob) -> JobOutcome {
        let snapshot = self.pipeline.workflow_snapshot();
        let Some(workflow_id) = job.owning_extension_id else {
            return JobOutcome::failed(FailureClass::Permanent, "the system job names no workflow");
        };
        let Some(def) = snapshot.workflow(workflow_id) else {
            return JobOutcome::failed(
                FailureClass::Permanent,
                format!("workflow {workflow_id} of this system job is not registered"),
            );
        };
        let Some(record) = job.regarding.clone() else {
            return JobOutcome::failed(FailureClass::Permanent, "the system job names no record");
        };
        let context = match weft_message::parse(&job.data, &job.data_content_type)
            .map_err(|e| e.to_string())
            .and_then(|c| convert::from_remote(&c).map_err(|e| e.0))
        {
            Ok(mut c) => {
                c.frame.mode = Mode::Asynchronous;
                c.frame.is_in_transaction = false;
                Arc::new(c)
            }
            Err(e) => {
                return JobOutcome::failed(
                    FailureClass::Permanent,
                    format!("the system job's context cannot be read: {e}"),
                );
            }
        };
        // A Delete's record is gone: the run reads the row as it was, from the context.
        let deleted = match job.message_name.as_str() {
            "Delete" => match context
                .frame
                .pre_entity_images
                .iter()
                .find(|i| i.alias == DELETED_ROW_IMAGE)
                .map(|i| convert::attributes_to_store(&i.entity))
            {
                Some(Ok(attributes)) => Some(attributes),
                _ => Some(Attributes::new()),
            },
            _ => None,
        };
        let store = Arc::clone(self.store());
        let schema = store.schema();
        let catalog = snapshot.catalog(&schema);
        let org = self.pipeline.detached_services(&context);
        let mut host = WorkflowHost {
            runner: self,
            job,
            catalog: &catalog,
            context: Arc::clone(&context),
            info: WorkflowInfo {
                stage_name: String::new(),
                workflow_category: 0,
                workflow_mode: 0,
                workflow_id: guid(workflow_id),
                workflow_name: def.name.clone(),
            },
            services: JobServices {
                store: self.store().clone(),
                delivery: self.delivery.clone(),
                org,
                last_post: None,
                failed_post: None,
            },
            failure_class: None,
        };
        let mut run = Run::new(def, &catalog, job.id, record.id, deleted);
        let result = run.run(&mut host);
        let summary = run.progress.lines.join("; ");
        let mut outcome = match result {
            Ok(Finish::Succeeded) => {
                let mut o = JobOutcome::succeeded();
                o.message = (!summary.is_empty()).then_some(summary);
                o
            }
            Ok(Finish::Canceled(message)) => JobOutcome::canceled(message),
            Err(failure) => {
                let class = host.failure_class.take().unwrap_or(match failure.retry {
                    Retry::No => FailureClass::Permanent,
                    Retry::Transient => FailureClass::Transient { retry_after: None },
                    Retry::Plugin => FailureClass::PluginRetry,
                    Retry::Auth => FailureClass::Auth,
                });
                let mut o = JobOutcome::failed(class, failure.message);
                o.error_code = failure.error_code;
                o
            }
        };
        if let Some((endpoint, status)) = host.services.last_post {
            outcome.endpoint_id = Some(endpoint);
            outcome.status_code = status;
        }
        outcome
    }
}

/// What the interpreter's steps reach during one attempt.
struct WorkflowHost<'a> {
    runner: &'a DeliveryRunner,
    job: &'a SystemJob,
    catalog: &'a WorkflowCatalog<'a>,
    context: Arc<ExecutionContext>,
    info: WorkflowInfo,
    services: JobServices<'a>,
    /// The class of the failure that ended the last activity (a post's own), when it failed.
    failure_class: Option<FailureClass>,
}

/// A failed organization-service call as a step failure: an unreachable or busy platform is retried.
fn org_failure(e: ServiceError) -> StepFailure {
    StepFailure {
        retry: match e.kind {
            ServiceErrorKind::Unavailable | ServiceErrorKind::Timeout => Retry::Transient,
            _ => Retry::No,
        },
        error_code: e.error_code,
        message: e.message,
    }
}

fn entity(table: &str, id: Uuid, values: &Attributes) -> Entity {
    Entity {
        logical_name: table.to_owned(),
        id: Some(guid(id)),
        attributes: values
            .iter()
            .map(|(name, value)| Attribute {
                name: name.clone(),
                value: convert::from_store(value),
            })
            .collect(),
        formatted_values: Vec::new(),
        row_version: None,
    }
}

impl RunHost for WorkflowHost<'_> {
    fn retrieve(&mut self, table: &str, id: Uuid) -> Result<Option<Attributes>, StepFailure> {
        self.runner
            .store()
            .read(|r: &dyn Read| r.retrieve(table, id, None))
            .map(|row| row.map(|r| r.attributes))
            .map_err(|e| StepFailure {
                message: e.to_string(),
                retry: Retry::Transient,
                error_code: None,
            })
    }

    fn create(&mut self, table: &str, id: Uuid, values: Attributes) -> Result<(), StepFailure> {
        self.services
            .create(entity(table, id, &values))
            .map(|_| ())
            .map_err(org_failure)
    }

    fn update(&mut self, table: &str, id: Uuid, values: Attributes) -> Result<(), StepFailure> {
        self.services
            .update(entity(table, id, &values))
            .map_err(org_failure)
    }

    fn activity(
        &mut self,
        plugin: &str,
        activity: &str,
        inputs: Vec<(String, StoreValue)>,
    ) -> Result<Vec<(String, StoreValue)>, StepFailure> {
        self.failure_class = None;
        let Some(loaded) = self.catalog.plugin(plugin) else {
            return Err(StepFailure::permanent(format!(
                "plug-in `{plugin}` is not loaded"
            )));
        };
        let inputs = inputs
            .iter()
            .map(|(name, value)| Argument {
                name: name.clone(),
                value: convert::from_store(value),
            })
            .collect();
        self.services.failed_post = None;
        let run = self.runner.pipeline.sandbox().invoke_activity(
            loaded,
            activity,
            Arc::clone(&self.context),
            self.info.clone(),
            inputs,
            &mut self.services,
            None,
        );
        let outcome = run.outcome;
        let failure = match (&self.services.failed_post, &outcome.result) {
            // A failed post fails the step whatever the activity did with the error: the job retries the
            // activity as it retries an async plug-in whose post failed.
            (Some(e), _) => Some(failed_post(e)),
            (None, Ok(_)) => None,
            (None, Err(f)) => Some(match f.kind {
                FailureKind::Plugin { status, error_code } => JobOutcome::failed(
                    if status == OPERATION_STATUS_RETRY {
                        FailureClass::PluginRetry
                    } else {
                        FailureClass::Permanent
                    },
                    f.message.clone(),
                )
                .error_code(error_code.unwrap_or(PLUGIN_FAILED_CODE)),
                FailureKind::Capacity => {
                    JobOutcome::failed(FailureClass::Transient { retry_after: None }, f.to_string())
                }
                _ => JobOutcome::failed(FailureClass::Permanent, f.to_string()),
            }),
        };
        let entry = TraceSubject {
            step_id: convert::uuid(self.info.workflow_id),
            plugin: plugin.to_owned(),
            message_name: self.job.message_name.clone(),
            primary_entity: self.job.primary_entity_type.clone(),
            depth: self.job.depth,
            correlation_id: self.job.correlation_id,
            mode: StepMode::Asynchronous,
        }
        .row(
            outcome.usage.elapsed,
            &outcome.traces,
            outcome.stderr,
            failure.is_none(),
            failure.as_ref().and_then(|f| f.message.clone()),
        );
        // The attempt is recorded by the job service; a lost trace row must not fail the step.
        if let Err(e) = self
            .runner
            .store()
            .transact(move |tx: &mut dyn Tx| tx.insert_trace_log(entry))
        {
            tracing::warn!(job = %self.job.id, "a workflow activity's trace-log row was not written: {e}");
        }
        if let Some(failed) = failure {
            let class = failed.failure.clone();
            self.failure_class = class;
            return Err(StepFailure {
                message: failed.message.unwrap_or_default(),
                retry: Retry::No,
                error_code: failed.error_code,
            });
        }
        run.outputs
            .into_iter()
            .map(|a| {
                convert::to_store(&a.name, &a.value)
                    .map(|v| (a.name, v))
                    .map_err(|e| StepFailure::permanent(e.0))
            })
            .collect()
    }
}
