//! The notification service (`IServiceEndpointNotificationService.Execute`, dataverse.md §12): a plug-in's
//! context, with the changes it made so far, posted to a service endpoint at once.
//!
//! Owns applying a plug-in's [`ContextChanges`] to its context before the post and the post itself with
//! MessageId = OperationId (the request id in a sync step, the system job's id in an async one). It must not
//! decide what a failure does to the step or the job: callers (the pipeline's services, the job runner) do.

use std::time::Duration;

use uuid::Uuid;
use weft_endpoints::Endpoint;

use super::{Delivery, DeliveryError};
use crate::convert;
use crate::sandbox::wit::context::{ContextChanges, ExecutionContext};

/// A successful post from the notification service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The endpoint posted to.
    pub endpoint_id: Uuid,
    /// Its HTTP status.
    pub status: u16,
    /// The two-way / REST listener's answer; "" for every other contract.
    pub response: String,
    /// Request sent to answer read.
    pub latency: Duration,
}

/// `ctx` with the writable parts a plug-in changed (InputParameters, OutputParameters, SharedVariables)
/// replaced, so edits made before the post travel with it.
pub fn apply_changes(ctx: &ExecutionContext, changes: &ContextChanges) -> ExecutionContext {
    let mut out = ctx.clone();
    if let Some(input) = &changes.input_parameters {
        out.frame.input_parameters = input.clone();
    }
    if let Some(output) = &changes.output_parameters {
        out.frame.output_parameters = output.clone();
    }
    if let Some(shared) = &changes.shared_variables {
        out.frame.shared_variables = shared.clone();
    }
    out
}

impl Delivery {
    /// Posts `ctx` with `changes` applied to `endpoint` and waits for the answer (blocking this thread).
    /// BrokerProperties `MessageId` = the context's OperationId, so a listener sees the same id as in the
    /// context whether the post came from a sync step or from a system job.
    pub fn notify(
        &self,
        endpoint: Endpoint,
        ctx: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<Posted, DeliveryError> {
        let endpoint_id = endpoint.id();
        let remote = convert::to_remote(&apply_changes(ctx, changes));
        let message_id = remote.operation_id.to_string();
        let outcome = self.post_blocking(endpoint, remote, message_id)?;
        Ok(Posted {
            endpoint_id,
            status: outcome.status,
            response: outcome.response_body,
            latency: outcome.latency,
        })
    }
}
