//! [`DeliveryRunner`]: how the asynchronous service runs one system job written by the pipeline's outbox.
//!
//! A job's step (its owning extension) says what runs: a **service endpoint** is the built-in Azure-aware
//! plug-in (full trust, in the host): the context stored in the job is posted as it is, MessageId = the job
//! id = OperationId. A **plug-in type** runs in the sandbox with that context (Mode 1, IsInTransaction
//! false); its notification-service posts happen within the job, and a failed post fails the attempt, so a
//! retry runs the whole plug-in again (dataverse.md §12). Owns the mapping of what happened to a
//! [`JobOutcome`]; must not change job states or decide retries (weft-jobs does).

use std::sync::Arc;
use std::time::Instant;

use opentelemetry::KeyValue;
use uuid::Uuid;
use weft_jobs::{FailureClass, JobOutcome, JobRunner};
use weft_store::system::{EventHandler, StepMode, SystemJob};
use weft_store::{Read, Store, StoreExt, Tx};

use super::cache::EndpointCache;
use super::{Delivery, DeliveryError, PLUGIN_FAILED_CODE, POST_FAILED_CODE};
use crate::convert::{self, uuid};
use crate::pipeline::services::OrgServices;
use crate::pipeline::{Pipeline, TraceSubject};
use crate::registration::{RecordReplays, StepDecl};
use crate::replay::{Recorder, Recording};
use crate::sandbox::wit::context::{ContextChanges, ExecutionContext, Mode};
use crate::sandbox::wit::organization_service::Query;
use crate::sandbox::wit::types::{Entity, EntityCollection, Guid, ServiceError};
use crate::sandbox::{FailureKind, HostServices};

/// `OperationStatus.Retry` as the sandbox reports it (Failed 0, Canceled 1, Retry 2, …).
const OPERATION_STATUS_RETRY: u8 = 2;

/// Runs system jobs: service-endpoint steps post, plug-in steps run in the pipeline's sandbox.
#[derive(Clone)]
pub struct DeliveryRunner {
    pub(super) pipeline: Pipeline,
    pub(super) delivery: Arc<Delivery>,
    /// The service endpoints jobs post to, read once per change of endpoints rather than once per job.
    endpoints: Arc<EndpointCache>,
}

impl DeliveryRunner {
    /// A runner using the pipeline's store, sandbox and loaded plug-ins, posting through `delivery`.
    pub fn new(pipeline: Pipeline, delivery: Arc<Delivery>) -> DeliveryRunner {
        DeliveryRunner {
            pipeline,
            delivery,
            endpoints: Arc::default(),
        }
    }

    pub(super) fn store(&self) -> &Arc<dyn Store> {
        self.pipeline.store()
    }

    async fn run_job(&self, job: &SystemJob) -> JobOutcome {
        if job.operation_type == weft_workflows::WORKFLOW_OPERATION_TYPE {
            let runner = self.clone();
            let job = job.clone();
            let trace = crate::telemetry::carry();
            return tokio::task::spawn_blocking(move || {
                let _trace = trace.attach();
                runner.run_workflow(&job)
            })
            .await
            .unwrap_or_else(|_| {
                JobOutcome::failed(FailureClass::Permanent, "the workflow run panicked")
            });
        }
        let Some(step_id) = job.owning_extension_id else {
            return JobOutcome::failed(FailureClass::Permanent, "the system job names no step");
        };
        // The pipeline's registered steps are the ones that wrote the outbox (the store holds the same
        // registration); reading them from memory saves a store read of every step per job.
        let Some(step) = self.pipeline.step(step_id) else {
            return JobOutcome::failed(
                FailureClass::Permanent,
                format!("step {step_id} of this system job is not registered"),
            );
        };
        match step.def.event_handler {
            EventHandler::ServiceEndpoint(endpoint_id) => self.post(job, endpoint_id).await,
            EventHandler::PluginType(type_id) => {
                let context = match weft_message::parse(&job.data, &job.data_content_type) {
                    Ok(c) => c,
                    Err(e) => return unreadable(&e),
                };
                let runner = self.clone();
                let job = job.clone();
                let trace = crate::telemetry::carry();
                tokio::task::spawn_blocking(move || {
                    let _trace = trace.attach();
                    let span = crate::telemetry::span(
                        || format!("plugin {}", step.def.name),
                        || {
                            crate::pipeline::step_attributes(
                                &step,
                                crate::sandbox::wit::context::Stage::PostOperation,
                                "asynchronous",
                            )
                        },
                    );
                    let outcome = runner.run_plugin(&job, &step, type_id, &context);
                    match &outcome.failure {
                        None => span.succeeded(),
                        Some(class) => span.failed(
                            class.label(),
                            outcome.message.as_deref().unwrap_or("failed"),
                        ),
                    }
                    outcome
                })
                .await
                .unwrap_or_else(|_| {
                    JobOutcome::failed(FailureClass::Permanent, "the plug-in run panicked")
                })
            }
        }
    }

    /// The built-in Azure-aware plug-in: posts the stored context, MessageId = job id.
    async fn post(&self, job: &SystemJob, endpoint_id: Uuid) -> JobOutcome {
        let delivery = &self.delivery;
        let endpoint = match self.endpoints.get(&self.pipeline, delivery, endpoint_id) {
            Ok(endpoint) => endpoint,
            Err(e) => return failed_post(&e).endpoint(endpoint_id),
        };
        let format = match weft_message::Format::from_content_type(&job.data_content_type) {
            Ok(format) => format,
            Err(e) => return unreadable(&e),
        };
        // Stored bytes the endpoint takes as they are need only the context's own members (the message's
        // properties); building the whole model for them was most of the decoding's cost per job.
        let as_stored = endpoint.sends_as_stored(format, job.data.len());
        let context = if as_stored {
            weft_message::decode_head(&job.data, format)
        } else {
            weft_message::decode(&job.data, format)
        };
        let context = match context {
            Ok(c) => c,
            Err(e) => return unreadable(&e),
        };
        let stored = as_stored.then(|| (job.data.clone(), format));
        let result = delivery
            .post(endpoint, context, stored, job.id.to_string())
            .await;
        match result {
            Ok(o) => JobOutcome::succeeded()
                .endpoint(endpoint_id)
                .status(o.status)
                .latency(o.latency),
            Err(e) => failed_post(&e).endpoint(endpoint_id),
        }
    }

    /// A custom plug-in's async step, run in the sandbox on a blocking thread.
    fn run_plugin(
        &self,
        job: &SystemJob,
        step: &StepDecl,
        type_id: Uuid,
        context: &weft_message::RemoteExecutionContext,
    ) -> JobOutcome {
        let Some((name, plugin)) = self.pipeline.plugin(type_id) else {
            return JobOutcome::failed(
                FailureClass::Permanent,
                format!("step \"{}\": its plug-in is not loaded", step.def.name),
            );
        };
        let mut context = match convert::from_remote(context) {
            Ok(c) => c,
            Err(e) => {
                return JobOutcome::failed(
                    FailureClass::Permanent,
                    format!("the system job's context has no plug-in form: {}", e.0),
                );
            }
        };
        context.frame.mode = Mode::Asynchronous;
        context.frame.is_in_transaction = false;
        let context = Arc::new(context);
        let org = self.pipeline.detached_services(&context);
        let mut services = JobServices {
            store: self.store().clone(),
            delivery: self.delivery.clone(),
            org,
            last_post: None,
            failed_post: None,
        };
        let replays = self.pipeline.record_replays();
        let mut recorder = Recorder::new(&mut services, replays != RecordReplays::Off);
        let outcome = self.pipeline.sandbox().invoke_with(
            &plugin,
            Arc::clone(&context),
            step.def.configuration.clone(),
            step.secure_configuration.clone(),
            &mut recorder,
        );
        let calls = recorder.calls;
        crate::telemetry::annotate(|| {
            crate::pipeline::plugin_attributes(&name, &plugin, outcome.usage.elapsed)
        });
        let mut result = match (&services.failed_post, &outcome.result) {
            // A failed post fails the attempt whatever the plug-in did with the error: the retry runs the
            // whole plug-in again (dataverse.md §12).
            (Some(e), _) => failed_post(e),
            (None, Ok(_)) => JobOutcome::succeeded(),
            (None, Err(f)) => match f.kind {
                FailureKind::Plugin { status, error_code } => {
                    let class = if status == OPERATION_STATUS_RETRY {
                        FailureClass::PluginRetry
                    } else {
                        FailureClass::Permanent
                    };
                    JobOutcome::failed(class, f.message.clone())
                        .error_code(error_code.unwrap_or(PLUGIN_FAILED_CODE))
                }
                // Every instance was busy: the host's capacity, retried with backoff.
                FailureKind::Capacity => {
                    JobOutcome::failed(FailureClass::Transient { retry_after: None }, f.to_string())
                }
                _ => JobOutcome::failed(FailureClass::Permanent, f.to_string()),
            },
        }
        .latency(outcome.usage.elapsed);
        if let Some((endpoint, status)) = services.last_post {
            result.endpoint_id = Some(endpoint);
            result.status_code = status;
        }
        let recording = replays.keeps(result.is_success()).then(|| Recording {
            plugin: name.clone(),
            plugin_type: plugin.selected_type().map(str::to_owned),
            sha256: plugin.sha256().to_owned(),
            unsecure_config: step.def.configuration.clone(),
            failure: outcome.result.as_ref().err().map(|f| f.message.clone()),
            ..Recording::new(Arc::unwrap_or_clone(context), calls)
        });
        let mut entry = TraceSubject {
            step_id: step.def.id,
            plugin: name,
            message_name: job.message_name.clone(),
            primary_entity: job.primary_entity_type.clone(),
            depth: job.depth,
            correlation_id: job.correlation_id,
            mode: StepMode::Asynchronous,
        }
        .row(
            outcome.usage.elapsed,
            &outcome.traces,
            outcome.stderr,
            result.is_success(),
            result.message.clone(),
        );
        entry.recording = recording.as_ref().and_then(Recording::to_json);
        if let Err(e) = self
            .store()
            .transact(move |tx: &mut dyn Tx| tx.insert_trace_log(entry))
        {
            // The attempt itself is recorded by the job service; a lost trace row must not fail it.
            let note = format!("(the plug-in trace log row was not written: {e})");
            result.message = Some(match result.message.take() {
                Some(m) => format!("{m} {note}"),
                None => note,
            });
        }
        result
    }
}

impl JobRunner for DeliveryRunner {
    async fn run(&self, job: &SystemJob) -> JobOutcome {
        let started = Instant::now();
        // One span per attempt, in the trace of the job's operation (its CorrelationId; see `telemetry`).
        let span = crate::telemetry::job_attempt(
            job.correlation_id,
            || "system job attempt",
            || {
                vec![
                    KeyValue::new("weft.job_id", job.id.to_string()),
                    KeyValue::new("weft.job_name", job.name.clone()),
                    KeyValue::new("weft.operation_type", i64::from(job.operation_type)),
                    KeyValue::new("weft.attempt", i64::from(job.retry_count) + 1),
                    KeyValue::new("weft.correlation_id", job.correlation_id.to_string()),
                    KeyValue::new("weft.message", job.message_name.clone()),
                    KeyValue::new("weft.depth", i64::from(job.depth)),
                ]
            },
        );
        let mut outcome = span.run(self.run_job(job)).await;
        if outcome.latency.is_none() {
            outcome.latency = Some(started.elapsed());
        }
        match &outcome.failure {
            None if outcome.canceled => span.outcome("canceled", None),
            None => span.outcome("succeeded", None),
            Some(class) => span.outcome(
                class.label(),
                Some(&outcome.message.as_deref().unwrap_or("failed")),
            ),
        }
        span.attributes(|| {
            let mut attributes = Vec::new();
            if let Some(status) = outcome.status_code {
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if let Some(code) = outcome.error_code {
                attributes.push(KeyValue::new("weft.error_code", format!("0x{code:08x}")));
            }
            attributes
        });
        outcome
    }
}

/// A context the job holds that cannot be decoded: an internal error, not retried.
fn unreadable(e: &weft_message::MessageError) -> JobOutcome {
    JobOutcome::failed(
        FailureClass::Permanent,
        format!("the system job's context cannot be read: {e}"),
    )
}

pub(super) fn failed_post(e: &DeliveryError) -> JobOutcome {
    let mut outcome = JobOutcome::failed(e.class(), e.to_string()).error_code(POST_FAILED_CODE);
    outcome.status_code = e.status_code();
    outcome
}

/// What an async plug-in's imports are served by: posts within the job; organization-service calls as
/// operations of their own (the job runs after its operation committed: there is no transaction to join).
pub(super) struct JobServices<'a> {
    pub(super) store: Arc<dyn Store>,
    pub(super) delivery: Arc<Delivery>,
    pub(super) org: OrgServices<'a>,
    /// The last post: endpoint and the status it answered with (if it answered).
    pub(super) last_post: Option<(Uuid, Option<u16>)>,
    /// The first failed post: it fails the attempt.
    pub(super) failed_post: Option<DeliveryError>,
}

impl HostServices for JobServices<'_> {
    fn notify(
        &mut self,
        endpoint: Guid,
        context: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<String, ServiceError> {
        let id = uuid(endpoint);
        let delivery = &self.delivery;
        let result = self
            .store
            .read(|r: &dyn Read| Ok::<_, DeliveryError>(delivery.endpoint(r, id)?))
            .and_then(|ep| delivery.notify(ep, context, changes));
        match result {
            Ok(posted) => {
                self.last_post = Some((id, Some(posted.status)));
                Ok(posted.response)
            }
            Err(e) => {
                self.last_post = Some((id, e.status_code()));
                let error = e.to_service_error();
                self.failed_post.get_or_insert(e);
                Err(error)
            }
        }
    }

    fn create(&mut self, entity: Entity) -> Result<Guid, ServiceError> {
        self.org.create(entity)
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> Result<Entity, ServiceError> {
        self.org.retrieve(entity_name, id, columns)
    }

    fn retrieve_multiple(&mut self, query: Query) -> Result<EntityCollection, ServiceError> {
        self.org.retrieve_multiple(query)
    }

    fn update(&mut self, entity: Entity) -> Result<(), ServiceError> {
        self.org.update(entity)
    }

    fn delete(&mut self, entity_name: String, id: Guid) -> Result<(), ServiceError> {
        self.org.delete(entity_name, id)
    }
}
