//! The organization service a running plug-in calls: each call becomes a child operation at depth + 1 in the
//! same transaction (or, from a top-level PreValidation step, in a transaction of its own), with the
//! plug-in's context as ParentContext and the same correlation id.
//!
//! Owns the [`HostServices`] implementation the pipeline lends the sandbox for one invocation, borrowing the
//! open `&mut dyn Tx`. It must not commit or open nested `transact` calls while holding a transaction; a
//! plug-in's notification-service posts go through [`crate::delivery`], which owns everything about them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use uuid::Uuid;
use weft_store::{Condition, Query, Read, StoreError, StoreExt, Tx};

use super::{Inner, Message, Op, OrganizationResponse, PipelineError, Registry};
use crate::convert::{self, uuid};
use crate::delivery::DeliveryError;
use crate::sandbox::HostServices;
use crate::sandbox::wit::context::{ContextChanges, ContextFrame, ExecutionContext};
use crate::sandbox::wit::organization_service::{ConditionOperator, Query as WitQuery};
use crate::sandbox::wit::types::{Entity, EntityCollection, Guid, ServiceError, ServiceErrorKind};

/// What one invocation's organization-service calls need from the operation that runs the plug-in.
pub(crate) struct OrgServices<'a> {
    inner: &'a Arc<Inner>,
    tx: Option<&'a mut dyn Tx>,
    /// The calling plug-in's context: the child's ParentContext chain.
    parents: Vec<ContextFrame>,
    depth: i32,
    correlation_id: Uuid,
    user_id: Uuid,
    initiating_user_id: Uuid,
    deadline: Instant,
    /// The calling operation's registration snapshot: child operations run on it too.
    registry: Arc<Registry>,
    /// Child operations issued so far by the operation tree (see `Op::children`).
    children: Arc<AtomicU32>,
    /// The first failed write made through these services: it fails the step whatever the plug-in does
    /// with the error, as a failed child operation dooms the transaction in Dataverse.
    pub(super) doomed: Option<PipelineError>,
}

impl<'a> OrgServices<'a> {
    pub(super) fn new(
        inner: &'a Arc<Inner>,
        tx: Option<&'a mut dyn Tx>,
        context: &ExecutionContext,
        op: &Op,
    ) -> Self {
        let mut parents = Vec::with_capacity(context.parents.len() + 1);
        parents.push(context.frame.clone());
        parents.extend(context.parents.iter().cloned());
        OrgServices {
            inner,
            tx,
            parents,
            depth: op.depth,
            correlation_id: op.correlation_id,
            user_id: uuid(context.frame.user_id),
            initiating_user_id: op.initiating_user_id,
            deadline: op.deadline,
            registry: Arc::clone(&op.registry),
            children: Arc::clone(&op.children),
            doomed: None,
        }
    }

    /// For an async step's plug-in, run by the asynchronous service after its operation committed: there is
    /// no transaction to join, so each call is an operation in a transaction of its own (as in Dataverse,
    /// where an async plug-in's calls are not rolled back together), at the context's depth + 1, with its
    /// correlation id (the depth limit still counts) and the plug-in's context as ParentContext, on the
    /// registration current when the job runs. The operation time limit counts from the job's start for
    /// all its calls together, as the 2-minute limit bounds a whole plug-in run in Dataverse.
    pub(super) fn detached(inner: &'a Arc<Inner>, context: &ExecutionContext) -> Self {
        let mut parents = Vec::with_capacity(context.parents.len() + 1);
        parents.push(context.frame.clone());
        parents.extend(context.parents.iter().cloned());
        let limit = Duration::from_millis(inner.settings.operation_limit_ms);
        OrgServices {
            inner,
            tx: None,
            parents,
            depth: context.frame.depth,
            correlation_id: uuid(context.frame.correlation_id),
            user_id: uuid(context.frame.user_id),
            initiating_user_id: uuid(context.frame.initiating_user_id),
            deadline: Instant::now() + limit,
            registry: inner.registries.snapshot(),
            children: Arc::new(AtomicU32::new(0)),
            doomed: None,
        }
    }

    fn run(&mut self, message: Message) -> Result<OrganizationResponse, ServiceError> {
        let writes = !matches!(
            message,
            Message::Retrieve { .. } | Message::RetrieveMultiple { .. }
        );
        let result = self.run_child(message);
        result.map_err(|e| {
            let refusal = matches!(
                e,
                PipelineError::Invalid(_)
                    | PipelineError::Store(
                        StoreError::NotFound { .. }
                            | StoreError::UnknownTable(_)
                            | StoreError::UnknownAttribute { .. }
                            | StoreError::TypeMismatch { .. }
                    )
            );
            let service_error = to_service_error(&e);
            // A read refused up front changes nothing; anything else leaves the transaction unusable.
            if (writes || !refusal) && self.doomed.is_none() {
                self.doomed = Some(e);
            }
            service_error
        })
    }

    fn run_child(&mut self, message: Message) -> Result<OrganizationResponse, PipelineError> {
        let detached = self.tx.is_none();
        let writes = !matches!(
            message,
            Message::Retrieve { .. } | Message::RetrieveMultiple { .. }
        );
        let response = self.run_nested(message)?;
        // Without a transaction to join the write committed on its own: wake the asynchronous service for
        // the jobs it may have queued.
        if detached
            && writes
            && let Some(notifier) = self.inner.job_notifier.get()
        {
            notifier.notify();
        }
        Ok(response)
    }

    /// One organization-service call, in a span `organization service {Message}` (telemetry) with the
    /// child operation's stages and steps inside.
    fn run_nested(&mut self, message: Message) -> Result<OrganizationResponse, PipelineError> {
        // Every call a plug-in makes comes here: without telemetry, no name copied for a span.
        if !crate::telemetry::enabled() {
            return self.run_nested_inner(message);
        }
        let name = message.name().to_owned();
        let (correlation_id, depth) = (self.correlation_id, self.depth + 1);
        crate::telemetry::in_span(
            || format!("organization service {name}"),
            || {
                vec![
                    KeyValue::new("weft.message", name.clone()),
                    KeyValue::new("weft.correlation_id", correlation_id.to_string()),
                    KeyValue::new("weft.depth", i64::from(depth)),
                ]
            },
            |_| self.run_nested_inner(message),
        )
    }

    fn run_nested_inner(
        &mut self,
        message: Message,
    ) -> Result<OrganizationResponse, PipelineError> {
        let max_depth = self.inner.settings.max_depth;
        if self.depth + 1 > max_depth {
            return Err(PipelineError::DepthLimit {
                max_depth,
                correlation_id: self.correlation_id,
            });
        }
        // Fan-out protection: the whole tree of one top-level operation (or one async plug-in run) issues
        // at most `max_child_operations`, so one request cannot hold its rows and write set growing for minutes.
        let limit = self.inner.settings.max_child_operations;
        if self.children.fetch_add(1, Ordering::Relaxed) >= limit {
            return Err(PipelineError::ChildOperationLimit {
                limit,
                correlation_id: self.correlation_id,
            });
        }
        let registry = Arc::clone(&self.registry);
        let mut op = self
            .inner
            .new_op(message, Instant::now(), Uuid::new_v4(), registry)?;
        op.depth = self.depth + 1;
        op.correlation_id = self.correlation_id;
        op.user_id = self.user_id;
        op.initiating_user_id = self.initiating_user_id;
        op.parents = self.parents.clone();
        op.deadline = self.deadline;
        op.children = Arc::clone(&self.children);
        crate::telemetry::annotate(|| {
            let mut attributes = vec![KeyValue::new("weft.table", op.table.clone())];
            if !op.primary_id.is_nil() {
                attributes.push(KeyValue::new("weft.row_id", op.primary_id.to_string()));
            }
            attributes
        });
        self.inner.execute_op(op, super::reborrow(&mut self.tx))
    }
}

fn to_service_error(e: &PipelineError) -> ServiceError {
    let kind = match e {
        PipelineError::Store(StoreError::NotFound { .. }) => ServiceErrorKind::NotFound,
        PipelineError::Invalid(_)
        | PipelineError::Store(
            StoreError::UnknownTable(_)
            | StoreError::UnknownAttribute { .. }
            | StoreError::TypeMismatch { .. }
            | StoreError::Invalid(_)
            | StoreError::DuplicateId { .. },
        ) => ServiceErrorKind::InvalidArgument,
        PipelineError::Timeout { .. } => ServiceErrorKind::Timeout,
        _ => ServiceErrorKind::Failed,
    };
    let code = u32::from_str_radix(e.code().trim_start_matches("0x"), 16).ok();
    ServiceError {
        kind,
        message: e.to_string(),
        error_code: code.map(|c| c as i32),
        status_code: None,
    }
}

fn wit_query(q: WitQuery) -> Result<Query, ServiceError> {
    let invalid = |message: String| ServiceError {
        kind: ServiceErrorKind::InvalidArgument,
        message,
        error_code: None,
        status_code: None,
    };
    let mut conditions = Vec::new();
    for c in q.conditions {
        let value = || {
            let v = c
                .values
                .first()
                .ok_or_else(|| invalid(format!("condition on `{}` needs a value", c.attribute)))?;
            convert::to_store(&c.attribute, v).map_err(|e| invalid(e.0))
        };
        conditions.push(match c.operator {
            ConditionOperator::Equal => Condition::Eq(c.attribute.clone(), value()?),
            ConditionOperator::NotEqual => Condition::Ne(c.attribute.clone(), value()?),
            ConditionOperator::GreaterThan => Condition::Gt(c.attribute.clone(), value()?),
            ConditionOperator::LessThan => Condition::Lt(c.attribute.clone(), value()?),
            ConditionOperator::Null => Condition::Null(c.attribute.clone()),
            ConditionOperator::NotNull => Condition::NotNull(c.attribute.clone()),
        });
    }
    let mut query = Query::new(q.entity_name);
    query.columns = q.columns;
    if !conditions.is_empty() {
        query.filter = Some(Condition::And(conditions));
    }
    for o in q.orders {
        query = query.order_by(o.attribute, o.descending);
    }
    query.top = q.top;
    Ok(query)
}

fn unexpected() -> ServiceError {
    ServiceError {
        kind: ServiceErrorKind::Failed,
        message: "the operation returned an unexpected response".into(),
        error_code: None,
        status_code: None,
    }
}

impl HostServices for OrgServices<'_> {
    /// Posts at once through the pipeline's delivery and waits for the answer; a failed post goes back to
    /// the plug-in as a service error (failing the step, and so the operation, unless it handles it).
    fn notify(
        &mut self,
        endpoint: Guid,
        context: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<String, ServiceError> {
        let Some(delivery) = self.inner.delivery.get() else {
            return Err(ServiceError {
                kind: ServiceErrorKind::Unavailable,
                message: "no delivery is configured for this pipeline: service endpoints cannot be posted to"
                    .into(),
                error_code: None,
                status_code: None,
            });
        };
        let id = uuid(endpoint);
        // Inside the operation's transaction the endpoint is read there; from a top-level PreValidation step
        // on a read connection.
        let endpoint = match &self.tx {
            Some(tx) => delivery.endpoint(&**tx, id).map_err(DeliveryError::from),
            None => self
                .inner
                .store
                .read(|r: &dyn Read| Ok::<_, DeliveryError>(delivery.endpoint(r, id)?)),
        };
        endpoint
            .and_then(|ep| delivery.notify(ep, context, changes))
            .map(|posted| posted.response)
            .map_err(|e| e.to_service_error())
    }

    fn create(&mut self, entity: Entity) -> Result<Guid, ServiceError> {
        match self.run(Message::Create { target: entity })? {
            OrganizationResponse::Create { id } => Ok(convert::guid(id)),
            _ => Err(unexpected()),
        }
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> Result<Entity, ServiceError> {
        match self.run(Message::Retrieve {
            table: entity_name,
            id: uuid(id),
            columns,
        })? {
            OrganizationResponse::Retrieve { entity } => Ok(entity),
            _ => Err(unexpected()),
        }
    }

    fn retrieve_multiple(&mut self, query: WitQuery) -> Result<EntityCollection, ServiceError> {
        let query = wit_query(query)?;
        match self.run(Message::RetrieveMultiple { query })? {
            OrganizationResponse::RetrieveMultiple { collection } => Ok(collection),
            _ => Err(unexpected()),
        }
    }

    fn update(&mut self, entity: Entity) -> Result<(), ServiceError> {
        self.run(Message::Update { target: entity }).map(|_| ())
    }

    fn delete(&mut self, entity_name: String, id: Guid) -> Result<(), ServiceError> {
        self.run(Message::Delete {
            table: entity_name,
            id: uuid(id),
        })
        .map(|_| ())
    }
}
