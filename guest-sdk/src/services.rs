//! Host services a plug-in can call: tracing, the service-endpoint
//! notification service, the organization service and the step's
//! configuration. [`Services`] is what plug-ins use; [`Host`] is the seam
//! behind it — the WebAssembly host in production, [`crate::testing::TestHost`]
//! in native unit tests.

use crate::context::Part;
use crate::{Context, Entity, EntityCollection, Guid, Parameters, ServiceError, Value};

/// The writable parts of a context as they stand now, sent along with a post so
/// the listener sees the plug-in's edits.
#[derive(Debug, Clone, Copy)]
pub struct ContextChanges<'a> {
    /// InputParameters, when changed.
    pub input_parameters: Option<&'a Parameters>,
    /// OutputParameters, when changed.
    pub output_parameters: Option<&'a Parameters>,
    /// SharedVariables, when changed.
    pub shared_variables: Option<&'a Parameters>,
}

impl<'a> ContextChanges<'a> {
    /// The parts of `ctx` changed so far.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, ContextChanges};
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// ctx.set_shared_variable("k", 1);
    /// let changes = ContextChanges::of(&ctx);
    /// assert!(changes.shared_variables.is_some() && changes.input_parameters.is_none());
    /// ```
    pub fn of(ctx: &'a Context) -> ContextChanges<'a> {
        ContextChanges {
            input_parameters: ctx.changed(Part::Input),
            output_parameters: ctx.changed(Part::Output),
            shared_variables: ctx.changed(Part::Shared),
        }
    }
}

/// A condition operator of a [`Query`].
///
/// ```
/// use weft_sdk::ConditionOperator;
/// assert_ne!(ConditionOperator::Equal, ConditionOperator::NotEqual);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionOperator {
    /// `eq`.
    Equal,
    /// `ne`.
    NotEqual,
    /// `gt`.
    GreaterThan,
    /// `lt`.
    LessThan,
    /// `null`.
    Null,
    /// `not-null`.
    NotNull,
}

/// `attribute operator values`.
///
/// ```
/// use weft_sdk::{Condition, ConditionOperator};
/// let c = Condition::new("name", ConditionOperator::Equal, "Contoso");
/// assert_eq!(c.values.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Attribute logical name.
    pub attribute: String,
    /// Operator.
    pub operator: ConditionOperator,
    /// Operands (none for `Null` / `NotNull`).
    pub values: Vec<Value>,
}

impl Condition {
    /// A condition with one operand.
    ///
    /// ```
    /// # use weft_sdk::{Condition, ConditionOperator};
    /// assert_eq!(Condition::new("x", ConditionOperator::GreaterThan, 1).attribute, "x");
    /// ```
    pub fn new(
        attribute: impl Into<String>,
        operator: ConditionOperator,
        value: impl Into<Value>,
    ) -> Condition {
        Condition {
            attribute: attribute.into(),
            operator,
            values: vec![value.into()],
        }
    }
}

/// A QueryExpression subset: conditions are ANDed.
///
/// ```
/// use weft_sdk::{Condition, ConditionOperator, Query};
/// let q = Query::new("account")
///     .columns(["name"])
///     .filter(Condition::new("statecode", ConditionOperator::Equal, 0))
///     .order_by("name", false)
///     .top(10);
/// assert_eq!(q.top, Some(10));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// Table logical name.
    pub entity_name: String,
    /// Columns to return; `None` = all.
    pub columns: Option<Vec<String>>,
    /// Conditions, ANDed.
    pub conditions: Vec<Condition>,
    /// Sort keys: (attribute, descending).
    pub orders: Vec<(String, bool)>,
    /// At most this many rows.
    pub top: Option<u32>,
}

impl Query {
    /// All rows of a table.
    ///
    /// ```
    /// # use weft_sdk::Query;
    /// assert_eq!(Query::new("contact").entity_name, "contact");
    /// ```
    pub fn new(entity_name: impl Into<String>) -> Query {
        Query {
            entity_name: entity_name.into(),
            ..Query::default()
        }
    }

    /// Restricts the columns returned.
    ///
    /// ```
    /// # use weft_sdk::Query;
    /// assert!(Query::new("contact").columns(["fullname"]).columns.is_some());
    /// ```
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Query {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a condition.
    ///
    /// ```
    /// # use weft_sdk::{Condition, ConditionOperator, Query};
    /// let q = Query::new("contact").filter(Condition::new("x", ConditionOperator::Equal, 1));
    /// assert_eq!(q.conditions.len(), 1);
    /// ```
    pub fn filter(mut self, condition: Condition) -> Query {
        self.conditions.push(condition);
        self
    }

    /// Adds a sort key.
    ///
    /// ```
    /// # use weft_sdk::Query;
    /// assert_eq!(Query::new("contact").order_by("fullname", true).orders.len(), 1);
    /// ```
    pub fn order_by(mut self, attribute: impl Into<String>, descending: bool) -> Query {
        self.orders.push((attribute.into(), descending));
        self
    }

    /// Limits the number of rows.
    ///
    /// ```
    /// # use weft_sdk::Query;
    /// assert_eq!(Query::new("contact").top(1).top, Some(1));
    /// ```
    pub fn top(mut self, n: u32) -> Query {
        self.top = Some(n);
        self
    }
}

/// What a plug-in's host provides. Implemented by the WebAssembly bindings and
/// by [`crate::testing::TestHost`]; plug-ins call it through [`Services`].
pub trait Host {
    /// ITracingService.Trace.
    fn trace(&self, text: &str);
    /// IServiceEndpointNotificationService.Execute.
    fn notify(&self, endpoint: Guid, changes: ContextChanges<'_>) -> Result<String, ServiceError>;
    /// IOrganizationService.Create.
    fn create(&self, entity: &Entity) -> Result<Guid, ServiceError>;
    /// IOrganizationService.Retrieve.
    fn retrieve(
        &self,
        entity_name: &str,
        id: Guid,
        columns: Option<&[String]>,
    ) -> Result<Entity, ServiceError>;
    /// IOrganizationService.RetrieveMultiple.
    fn retrieve_multiple(&self, query: &Query) -> Result<EntityCollection, ServiceError>;
    /// IOrganizationService.Update.
    fn update(&self, entity: &Entity) -> Result<(), ServiceError>;
    /// IOrganizationService.Delete.
    fn delete(&self, entity_name: &str, id: Guid) -> Result<(), ServiceError>;
    /// The step's unsecure configuration.
    fn unsecure_config(&self) -> Option<String>;
    /// The step's secure configuration.
    fn secure_config(&self) -> Option<String>;
    /// One outbound HTTP call ([`crate::http`]). A host that grants none (the default) answers
    /// [`HttpErrorKind::Other`](crate::http::HttpErrorKind::Other).
    fn send_http(
        &self,
        request: &crate::http::Request,
    ) -> Result<crate::http::Response, crate::http::HttpError> {
        Err(crate::http::HttpError::new(
            crate::http::HttpErrorKind::Other,
            format!(
                "this host makes no HTTP calls ({} {})",
                request.method, request.url
            ),
        ))
    }
}

/// The services a plug-in receives with its context.
///
/// ```
/// use weft_sdk::{testing::{ContextBuilder, TestHost}, Services};
/// let host = TestHost::new().unsecure_config("hello");
/// let services = Services::new(&host);
/// services.trace("starting");
/// assert_eq!(services.unsecure_config().as_deref(), Some("hello"));
/// assert_eq!(host.traces(), ["starting"]);
/// ```
#[derive(Clone, Copy)]
pub struct Services<'a> {
    host: Backend<'a>,
}

/// Where a [`Services`] call goes. Inside a component every call is a direct
/// call of the WIT import it needs, never through `dyn Host`: a `&dyn Host`
/// of the component's host would keep every import of the world alive (its
/// vtable references them all), and each import costs instantiation time on
/// every invocation — so a plug-in that only traces imports only `trace`.
#[derive(Clone, Copy)]
enum Backend<'a> {
    /// The component's own imports.
    Component,
    /// A host given by the caller (the testing harness, a custom host).
    Host(&'a dyn Host),
}

/// Calls `$method` on the backend: statically on the component's host, through
/// the trait object otherwise.
macro_rules! dispatch {
    ($services:expr, $method:ident($($arg:expr),*)) => {
        match $services.host {
            Backend::Component => Host::$method(&crate::convert::WasmHost, $($arg),*),
            Backend::Host(host) => host.$method($($arg),*),
        }
    };
}

impl<'a> Services<'a> {
    /// Services backed by a host.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Services};
    /// let host = TestHost::new();
    /// let _ = Services::new(&host);
    /// ```
    pub fn new(host: &'a dyn Host) -> Services<'a> {
        Services {
            host: Backend::Host(host),
        }
    }

    /// The services of a plug-in running in a component: its WIT imports.
    pub(crate) fn component() -> Services<'static> {
        Services {
            host: Backend::Component,
        }
    }

    /// Writes a line to the plug-in trace log.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Services};
    /// let host = TestHost::new();
    /// Services::new(&host).trace(format!("{} rows", 3));
    /// assert_eq!(host.traces(), ["3 rows"]);
    /// ```
    pub fn trace(&self, text: impl AsRef<str>) {
        dispatch!(self, trace(text.as_ref()));
    }

    /// Posts the context, as it stands now, to a service endpoint; returns the
    /// two-way/REST listener's answer (empty for other contracts).
    ///
    /// ```
    /// # use weft_sdk::{testing::{ContextBuilder, TestHost}, Guid, Services};
    /// let endpoint = Guid::from_u128(9);
    /// let host = TestHost::new().respond(endpoint, "Success");
    /// let ctx = ContextBuilder::new("Create", "account").build();
    /// assert_eq!(Services::new(&host).notify(endpoint, &ctx).unwrap(), "Success");
    /// ```
    pub fn notify(&self, endpoint: Guid, ctx: &Context) -> Result<String, ServiceError> {
        // Inside a component the host posts its own view of the context: hand
        // it the changes first.
        ctx.flush();
        dispatch!(self, notify(endpoint, ContextChanges::of(ctx)))
    }

    /// Creates a row through the pipeline (a child operation).
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Entity, Services};
    /// let host = TestHost::new();
    /// let id = Services::new(&host).create(&Entity::new("task")).unwrap();
    /// assert!(host.row("task", id).is_some());
    /// ```
    pub fn create(&self, entity: &Entity) -> Result<Guid, ServiceError> {
        dispatch!(self, create(entity))
    }

    /// Retrieves a row; `columns = None` returns all columns.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Entity, Services};
    /// let host = TestHost::new();
    /// let s = Services::new(&host);
    /// let id = s.create(&Entity::new("task")).unwrap();
    /// assert_eq!(s.retrieve("task", id, None).unwrap().id, Some(id));
    /// ```
    pub fn retrieve(
        &self,
        entity_name: &str,
        id: Guid,
        columns: Option<&[String]>,
    ) -> Result<Entity, ServiceError> {
        dispatch!(self, retrieve(entity_name, id, columns))
    }

    /// Retrieves the rows matching a query.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Entity, Query, Services};
    /// let host = TestHost::new();
    /// let s = Services::new(&host);
    /// s.create(&Entity::new("task")).unwrap();
    /// assert_eq!(s.retrieve_multiple(&Query::new("task")).unwrap().entities.len(), 1);
    /// ```
    pub fn retrieve_multiple(&self, query: &Query) -> Result<EntityCollection, ServiceError> {
        dispatch!(self, retrieve_multiple(query))
    }

    /// Updates the attributes present in `entity` (id required).
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Entity, Services};
    /// let host = TestHost::new();
    /// let s = Services::new(&host);
    /// let id = s.create(&Entity::new("task")).unwrap();
    /// let mut change = Entity::with_id("task", id);
    /// change.set("subject", "Call back");
    /// s.update(&change).unwrap();
    /// assert_eq!(host.row("task", id).unwrap().get_str("subject"), Some("Call back"));
    /// ```
    pub fn update(&self, entity: &Entity) -> Result<(), ServiceError> {
        dispatch!(self, update(entity))
    }

    /// Deletes a row.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Entity, Services};
    /// let host = TestHost::new();
    /// let s = Services::new(&host);
    /// let id = s.create(&Entity::new("task")).unwrap();
    /// s.delete("task", id).unwrap();
    /// assert!(host.row("task", id).is_none());
    /// ```
    pub fn delete(&self, entity_name: &str, id: Guid) -> Result<(), ServiceError> {
        dispatch!(self, delete(entity_name, id))
    }

    /// The step's unsecure configuration.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Services};
    /// assert_eq!(Services::new(&TestHost::new()).unsecure_config(), None);
    /// ```
    pub fn unsecure_config(&self) -> Option<String> {
        dispatch!(self, unsecure_config())
    }

    /// The step's secure configuration.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Services};
    /// let host = TestHost::new().secure_config("s3cret");
    /// assert_eq!(Services::new(&host).secure_config().as_deref(), Some("s3cret"));
    /// ```
    pub fn secure_config(&self) -> Option<String> {
        dispatch!(self, secure_config())
    }

    /// Sends one HTTP or HTTPS request and reads the whole answer (the sandbox's external endpoint
    /// access): named hosts only, none resolving to an internal address, the plug-in's allowed hosts if
    /// it has any, within the invocation's time, byte and call quotas. A 4xx or 5xx answer is an
    /// `Ok(Response)`; `Err` means no answer (refused, timed out, too large, unreachable).
    ///
    /// ```
    /// # use weft_sdk::{http::{HttpErrorKind, Request, Response}, testing::TestHost, Services};
    /// let host = TestHost::new().fake_endpoint("https://api.contoso.com/", |_| Ok(Response::new(200, "pong")));
    /// let services = Services::new(&host);
    /// assert_eq!(services.send(&Request::get("https://api.contoso.com/ping")).unwrap().text(), "pong");
    /// let elsewhere = services.send(&Request::get("https://fabrikam.com/")).unwrap_err();
    /// assert_eq!(elsewhere.kind, HttpErrorKind::Refused);
    /// ```
    pub fn send(
        &self,
        request: &crate::http::Request,
    ) -> Result<crate::http::Response, crate::http::HttpError> {
        dispatch!(self, send_http(request))
    }
}
