//! [`HostServices`]: the seam between the sandbox and whoever serves a plug-in's
//! calls. The pipeline implements it (child operations, posts through the
//! asynchronous service); [`RecordingServices`] implements it for
//! `weft plugin run` and tests. The sandbox itself knows nothing of tables,
//! jobs or HTTP.

use super::wit::context::{ContextChanges, ExecutionContext};
use super::wit::organization_service::Query;
use super::wit::types::{Entity, EntityCollection, Guid, ServiceError, ServiceErrorKind};

/// What a plug-in's imports are served by. Each method answers one WIT import;
/// errors go back to the plug-in as `service-error` values (they do not trap).
pub trait HostServices {
    /// `notification-service.execute`: post `context` with `changes` applied to
    /// the endpoint; return the two-way/REST answer or "".
    fn notify(
        &mut self,
        endpoint: Guid,
        context: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<String, ServiceError>;

    /// `organization-service.create`.
    fn create(&mut self, entity: Entity) -> Result<Guid, ServiceError> {
        let _ = entity;
        Err(no_organization_service())
    }

    /// `organization-service.retrieve`.
    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> Result<Entity, ServiceError> {
        let _ = (entity_name, id, columns);
        Err(no_organization_service())
    }

    /// `organization-service.retrieve-multiple`.
    fn retrieve_multiple(&mut self, query: Query) -> Result<EntityCollection, ServiceError> {
        let _ = query;
        Err(no_organization_service())
    }

    /// `organization-service.update`.
    fn update(&mut self, entity: Entity) -> Result<(), ServiceError> {
        let _ = entity;
        Err(no_organization_service())
    }

    /// `organization-service.delete`.
    fn delete(&mut self, entity_name: String, id: Guid) -> Result<(), ServiceError> {
        let _ = (entity_name, id);
        Err(no_organization_service())
    }
}

fn no_organization_service() -> ServiceError {
    ServiceError {
        kind: ServiceErrorKind::Denied,
        message: "no organization service is available to this invocation".to_owned(),
        error_code: None,
        status_code: None,
    }
}

/// One call a plug-in made, as recorded by [`RecordingServices`].
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedCall {
    /// A post to a service endpoint, with the changes sent.
    Notify {
        /// Endpoint id.
        endpoint: Guid,
        /// SharedVariables names sent (when changed).
        shared_variables: Option<Vec<String>>,
    },
    /// An organization-service call: its name and a short description.
    Organization(String),
}

/// Services that record every call. Posts answer with `response` (two-way
/// style) or fail with `unavailable` for endpoints listed in `failing`; the
/// organization service is refused (there is no data store here).
#[derive(Debug, Default)]
pub struct RecordingServices {
    /// Calls in order.
    pub calls: Vec<RecordedCall>,
    /// The answer every successful post returns.
    pub response: String,
    /// Endpoints whose posts fail.
    pub failing: Vec<Guid>,
}

impl HostServices for RecordingServices {
    fn notify(
        &mut self,
        endpoint: Guid,
        _context: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<String, ServiceError> {
        self.calls.push(RecordedCall::Notify {
            endpoint,
            shared_variables: changes
                .shared_variables
                .as_ref()
                .map(|p| p.iter().map(|p| p.name.clone()).collect()),
        });
        if self.failing.contains(&endpoint) {
            return Err(ServiceError {
                kind: ServiceErrorKind::Unavailable,
                message: "the endpoint is configured to fail".to_owned(),
                error_code: None,
                status_code: Some(503),
            });
        }
        Ok(self.response.clone())
    }

    fn create(&mut self, entity: Entity) -> Result<Guid, ServiceError> {
        self.calls.push(RecordedCall::Organization(format!(
            "create {}",
            entity.logical_name
        )));
        Err(no_organization_service())
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        _id: Guid,
        _columns: Option<Vec<String>>,
    ) -> Result<Entity, ServiceError> {
        self.calls.push(RecordedCall::Organization(format!(
            "retrieve {entity_name}"
        )));
        Err(no_organization_service())
    }

    fn retrieve_multiple(&mut self, query: Query) -> Result<EntityCollection, ServiceError> {
        self.calls.push(RecordedCall::Organization(format!(
            "retrieve-multiple {}",
            query.entity_name
        )));
        Err(no_organization_service())
    }

    fn update(&mut self, entity: Entity) -> Result<(), ServiceError> {
        self.calls.push(RecordedCall::Organization(format!(
            "update {}",
            entity.logical_name
        )));
        Err(no_organization_service())
    }

    fn delete(&mut self, entity_name: String, _id: Guid) -> Result<(), ServiceError> {
        self.calls
            .push(RecordedCall::Organization(format!("delete {entity_name}")));
        Err(no_organization_service())
    }
}
