//! The native testing harness: unit-test plug-in logic with plain `cargo test`,
//! no WebAssembly involved. [`ContextBuilder`] makes contexts; [`TestHost`]
//! records traces and posts, serves an in-memory organization service and
//! answers HTTP calls from fake endpoints ([`TestHost::fake_endpoint`]), so
//! nothing reaches the network.
//!
//! ```
//! use weft_sdk::testing::{ContextBuilder, TestHost};
//! use weft_sdk::{Context, Entity, Plugin, PluginError, Services, Stage};
//!
//! struct Greeter;
//! impl Plugin for Greeter {
//!     fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError> {
//!         let name = ctx.target().and_then(|t| t.get_str("name")).unwrap_or("nobody").to_owned();
//!         services.trace(format!("hello {name}"));
//!         Ok(())
//!     }
//! }
//!
//! let mut target = Entity::new("account");
//! target.set("name", "Contoso");
//! let mut ctx = ContextBuilder::new("Create", "account").stage(Stage::PreOperation).target(target).build();
//! let host = TestHost::new();
//! host.run::<Greeter>(&mut ctx).unwrap();
//! assert_eq!(host.traces(), ["hello Contoso"]);
//! ```

use crate::http::{HttpError, HttpErrorKind, Request, Response};
use crate::services::{ContextChanges, Host, Query};
use crate::{
    Activity, Arguments, ConditionOperator, Context, ContextFrame, Entity, EntityCollection,
    EntityReference, Guid, IsolationMode, Mode, Parameters, Plugin, PluginError, ServiceError,
    ServiceErrorKind, Services, Stage, Value, WorkflowContext,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// One post recorded by [`TestHost`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedPost {
    /// The service endpoint posted to.
    pub endpoint: Guid,
    /// SharedVariables sent with the post, when the plug-in had changed them.
    pub shared_variables: Option<Parameters>,
    /// InputParameters sent with the post, when changed.
    pub input_parameters: Option<Parameters>,
    /// OutputParameters sent with the post, when changed.
    pub output_parameters: Option<Parameters>,
}

/// A recording host for native tests. Answers posts with the responses you
/// configure (an unknown endpoint is `not-found`), and keeps rows created through
/// the organization service in memory.
///
/// ```
/// use weft_sdk::{testing::TestHost, Guid, ServiceErrorKind};
/// let ok = Guid::from_u128(1);
/// let host = TestHost::new().respond(ok, "Success").fail(Guid::from_u128(2), ServiceErrorKind::Unavailable);
/// assert_eq!(host.posts().len(), 0);
/// ```
#[derive(Default)]
pub struct TestHost {
    /// URL prefixes and what answers them, first match wins.
    endpoints: Vec<(String, FakeEndpoint)>,
    http_requests: RefCell<Vec<Request>>,
    traces: RefCell<Vec<String>>,
    posts: RefCell<Vec<RecordedPost>>,
    responses: HashMap<Guid, Result<String, ServiceError>>,
    rows: RefCell<Vec<Entity>>,
    next_id: Cell<u128>,
    unsecure: Option<String>,
    secure: Option<String>,
}

impl TestHost {
    /// An empty host: no endpoints, no rows, no configuration.
    ///
    /// ```
    /// # use weft_sdk::testing::TestHost;
    /// assert!(TestHost::new().traces().is_empty());
    /// ```
    pub fn new() -> TestHost {
        TestHost::default()
    }

    /// Posts to `endpoint` succeed with `response`.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Guid};
    /// let _ = TestHost::new().respond(Guid::from_u128(1), "");
    /// ```
    pub fn respond(mut self, endpoint: Guid, response: impl Into<String>) -> TestHost {
        self.responses.insert(endpoint, Ok(response.into()));
        self
    }

    /// Posts to `endpoint` fail with `kind`.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Guid, ServiceErrorKind};
    /// let _ = TestHost::new().fail(Guid::from_u128(1), ServiceErrorKind::Timeout);
    /// ```
    pub fn fail(mut self, endpoint: Guid, kind: ServiceErrorKind) -> TestHost {
        let error = ServiceError::new(kind, format!("endpoint {endpoint} failed (test)"));
        self.responses.insert(endpoint, Err(error));
        self
    }

    /// Sets the step's unsecure configuration.
    ///
    /// ```
    /// # use weft_sdk::testing::TestHost;
    /// let _ = TestHost::new().unsecure_config("x");
    /// ```
    pub fn unsecure_config(mut self, text: impl Into<String>) -> TestHost {
        self.unsecure = Some(text.into());
        self
    }

    /// Sets the step's secure configuration.
    ///
    /// ```
    /// # use weft_sdk::testing::TestHost;
    /// let _ = TestHost::new().secure_config("x");
    /// ```
    pub fn secure_config(mut self, text: impl Into<String>) -> TestHost {
        self.secure = Some(text.into());
        self
    }

    /// Runs a plug-in against a context with this host's services.
    ///
    /// ```
    /// # use weft_sdk::{testing::{ContextBuilder, TestHost}, Context, Plugin, PluginError, Services};
    /// struct Nothing;
    /// impl Plugin for Nothing {
    ///     fn execute(_: &mut Context, _: &Services) -> Result<(), PluginError> { Ok(()) }
    /// }
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// assert!(TestHost::new().run::<Nothing>(&mut ctx).is_ok());
    /// ```
    pub fn run<P: Plugin>(&self, ctx: &mut Context) -> Result<(), PluginError> {
        P::execute(ctx, &Services::new(self))
    }

    /// Runs a custom workflow activity with these `inputs` against a context
    /// with this host's services, and returns the outputs it set, checked
    /// against its declared outputs as the host checks them. Required inputs
    /// left unbound fail here as the host refuses such a workflow.
    ///
    /// ```
    /// # use weft_sdk::{testing::{ContextBuilder, TestHost}, Activity, ArgumentSpec, ArgumentType, Arguments, Context, PluginError, Services, WorkflowContext};
    /// struct Echo;
    /// impl Activity for Echo {
    ///     fn inputs() -> Vec<ArgumentSpec> { vec![ArgumentSpec::new("text", ArgumentType::String).required()] }
    ///     fn outputs() -> Vec<ArgumentSpec> { vec![ArgumentSpec::new("text", ArgumentType::String)] }
    ///     fn execute(_: &mut Context, _: &WorkflowContext, inputs: &Arguments, outputs: &mut Arguments, _: &Services) -> Result<(), PluginError> {
    ///         outputs.set("text", inputs.get_str("text").unwrap_or_default());
    ///         Ok(())
    ///     }
    /// }
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// let mut inputs = Arguments::new();
    /// inputs.set("text", "hi");
    /// let out = TestHost::new().run_activity::<Echo>(&mut ctx, &WorkflowContext::default(), &inputs).unwrap();
    /// assert_eq!(out.get_str("text"), Some("hi"));
    /// ```
    pub fn run_activity<A: Activity>(
        &self,
        ctx: &mut Context,
        workflow: &WorkflowContext,
        inputs: &Arguments,
    ) -> Result<Arguments, PluginError> {
        for spec in A::inputs() {
            match inputs.get(&spec.name) {
                None if spec.required => {
                    return Err(PluginError::new(format!(
                        "the required input \"{}\" is not bound",
                        spec.name
                    )));
                }
                Some(v) if !spec.ty.accepts(v) => {
                    return Err(PluginError::new(format!(
                        "the input \"{}\" is not {:?}",
                        spec.name, spec.ty
                    )));
                }
                _ => {}
            }
        }
        let mut outputs = Arguments::new();
        A::execute(ctx, workflow, inputs, &mut outputs, &Services::new(self))?;
        outputs.check(&A::outputs())?;
        Ok(outputs)
    }

    /// Answers HTTP calls whose URL starts with `url_prefix` with `answer` (an `Err` plays a refused,
    /// timed-out or failed call). A call no fake endpoint matches is refused, as the sandbox refuses a
    /// host outside the plug-in's allowed hosts.
    ///
    /// ```
    /// # use weft_sdk::{http::{HttpError, HttpErrorKind, Request, Response}, testing::TestHost, Services};
    /// let host = TestHost::new()
    ///     .fake_endpoint("https://slow.contoso.com/", |_| Err(HttpError::new(HttpErrorKind::Timeout, "too slow")))
    ///     .fake_endpoint("https://api.contoso.com/", |req| Ok(Response::new(200, req.url.clone())));
    /// let services = Services::new(&host);
    /// assert_eq!(services.send(&Request::get("https://slow.contoso.com/x")).unwrap_err().kind, HttpErrorKind::Timeout);
    /// assert_eq!(services.send(&Request::get("https://api.contoso.com/a")).unwrap().text(), "https://api.contoso.com/a");
    /// assert_eq!(host.http_requests().len(), 2);
    /// ```
    pub fn fake_endpoint(
        mut self,
        url_prefix: impl Into<String>,
        answer: impl Fn(&Request) -> Result<Response, HttpError> + 'static,
    ) -> TestHost {
        self.endpoints.push((url_prefix.into(), Box::new(answer)));
        self
    }

    /// The HTTP requests sent so far, answered or not.
    ///
    /// ```
    /// # use weft_sdk::testing::TestHost;
    /// assert!(TestHost::new().http_requests().is_empty());
    /// ```
    pub fn http_requests(&self) -> Vec<Request> {
        self.http_requests.borrow().clone()
    }

    /// The trace lines written so far.
    ///
    /// ```
    /// # use weft_sdk::testing::TestHost;
    /// assert!(TestHost::new().traces().is_empty());
    /// ```
    pub fn traces(&self) -> Vec<String> {
        self.traces.borrow().clone()
    }

    /// The posts made so far.
    ///
    /// ```
    /// # use weft_sdk::testing::TestHost;
    /// assert!(TestHost::new().posts().is_empty());
    /// ```
    pub fn posts(&self) -> Vec<RecordedPost> {
        self.posts.borrow().clone()
    }

    /// A row of the in-memory organization service.
    ///
    /// ```
    /// # use weft_sdk::{testing::TestHost, Guid};
    /// assert!(TestHost::new().row("account", Guid::NIL).is_none());
    /// ```
    pub fn row(&self, entity_name: &str, id: Guid) -> Option<Entity> {
        self.rows
            .borrow()
            .iter()
            .find(|e| e.logical_name == entity_name && e.id == Some(id))
            .cloned()
    }

    fn position(&self, entity_name: &str, id: Guid) -> Result<usize, ServiceError> {
        self.rows
            .borrow()
            .iter()
            .position(|e| e.logical_name == entity_name && e.id == Some(id))
            .ok_or_else(|| {
                ServiceError::new(
                    ServiceErrorKind::NotFound,
                    format!("{entity_name} with id {id} does not exist"),
                )
            })
    }
}

fn matches(row: &Entity, query: &Query) -> bool {
    query.conditions.iter().all(|c| {
        let value = row.get(&c.attribute).unwrap_or(&Value::Null);
        match c.operator {
            ConditionOperator::Null => value.is_null(),
            ConditionOperator::NotNull => !value.is_null(),
            ConditionOperator::Equal => c.values.first() == Some(value),
            ConditionOperator::NotEqual => c.values.first() != Some(value),
            ConditionOperator::GreaterThan | ConditionOperator::LessThan => {
                let ordering = match (value, c.values.first()) {
                    (Value::Integer(a), Some(Value::Integer(b))) => a.partial_cmp(b),
                    (Value::BigInteger(a), Some(Value::BigInteger(b))) => a.partial_cmp(b),
                    (Value::Double(a), Some(Value::Double(b))) => a.partial_cmp(b),
                    (Value::String(a), Some(Value::String(b))) => a.partial_cmp(b),
                    (Value::DateTime(a), Some(Value::DateTime(b))) => a.partial_cmp(b),
                    _ => None,
                };
                let wanted = if c.operator == ConditionOperator::GreaterThan {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                };
                ordering == Some(wanted)
            }
        }
    })
}

/// What answers a fake endpoint's calls.
type FakeEndpoint = Box<dyn Fn(&Request) -> Result<Response, HttpError>>;

impl Host for TestHost {
    fn trace(&self, text: &str) {
        self.traces.borrow_mut().push(text.to_owned());
    }

    fn send_http(&self, request: &Request) -> Result<Response, HttpError> {
        self.http_requests.borrow_mut().push(request.clone());
        crate::http::split_url(&request.url)?;
        match self
            .endpoints
            .iter()
            .find(|(prefix, _)| request.url.starts_with(prefix.as_str()))
        {
            Some((_, answer)) => answer(request),
            None => Err(HttpError::new(
                HttpErrorKind::Refused,
                format!("no fake endpoint answers {}", request.url),
            )),
        }
    }

    fn notify(&self, endpoint: Guid, changes: ContextChanges<'_>) -> Result<String, ServiceError> {
        self.posts.borrow_mut().push(RecordedPost {
            endpoint,
            shared_variables: changes.shared_variables.cloned(),
            input_parameters: changes.input_parameters.cloned(),
            output_parameters: changes.output_parameters.cloned(),
        });
        self.responses.get(&endpoint).cloned().unwrap_or_else(|| {
            Err(ServiceError::new(
                ServiceErrorKind::NotFound,
                format!("no service endpoint with id {endpoint}"),
            ))
        })
    }

    fn create(&self, entity: &Entity) -> Result<Guid, ServiceError> {
        let id = match entity.id {
            Some(id) => id,
            None => {
                self.next_id.set(self.next_id.get() + 1);
                Guid::from_u128(self.next_id.get())
            }
        };
        if self.row(&entity.logical_name, id).is_some() {
            return Err(ServiceError::new(
                ServiceErrorKind::InvalidArgument,
                format!("{} with id {id} already exists", entity.logical_name),
            ));
        }
        let mut row = entity.clone();
        row.id = Some(id);
        self.rows.borrow_mut().push(row);
        Ok(id)
    }

    fn retrieve(
        &self,
        entity_name: &str,
        id: Guid,
        columns: Option<&[String]>,
    ) -> Result<Entity, ServiceError> {
        let at = self.position(entity_name, id)?;
        let mut row = self.rows.borrow()[at].clone();
        if let Some(columns) = columns {
            row.attributes.retain(|(n, _)| columns.contains(n));
        }
        Ok(row)
    }

    fn retrieve_multiple(&self, query: &Query) -> Result<EntityCollection, ServiceError> {
        let mut entities: Vec<Entity> = self
            .rows
            .borrow()
            .iter()
            .filter(|e| e.logical_name == query.entity_name && matches(e, query))
            .cloned()
            .collect();
        if let Some(top) = query.top {
            entities.truncate(top as usize);
        }
        Ok(EntityCollection {
            entity_name: query.entity_name.clone(),
            total_record_count: -1,
            entities,
            ..EntityCollection::default()
        })
    }

    fn update(&self, entity: &Entity) -> Result<(), ServiceError> {
        let id = entity.id.ok_or_else(|| {
            ServiceError::new(
                ServiceErrorKind::InvalidArgument,
                "Update needs the entity's id",
            )
        })?;
        let at = self.position(&entity.logical_name, id)?;
        let mut rows = self.rows.borrow_mut();
        for (name, value) in &entity.attributes {
            rows[at].set(name.clone(), value.clone());
        }
        Ok(())
    }

    fn delete(&self, entity_name: &str, id: Guid) -> Result<(), ServiceError> {
        let at = self.position(entity_name, id)?;
        self.rows.borrow_mut().remove(at);
        Ok(())
    }

    fn unsecure_config(&self) -> Option<String> {
        self.unsecure.clone()
    }

    fn secure_config(&self) -> Option<String> {
        self.secure.clone()
    }
}

/// Builds contexts for tests, with Dataverse-like defaults: depth 1, sync,
/// stage 40, isolation Sandbox, fixed ids.
///
/// ```
/// use weft_sdk::{testing::ContextBuilder, Mode, Stage};
/// let ctx = ContextBuilder::new("Update", "contact").stage(Stage::PostOperation).mode(Mode::Asynchronous).build();
/// assert_eq!(ctx.mode, Mode::Asynchronous);
/// assert!(!ctx.is_in_transaction);
/// ```
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    frame: ContextFrame,
    parents: Vec<ContextFrame>,
}

impl ContextBuilder {
    /// A context for `message` on `table`.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert_eq!(ContextBuilder::new("Delete", "task").build().primary_entity_name, "task");
    /// ```
    pub fn new(message: &str, table: &str) -> ContextBuilder {
        ContextBuilder {
            frame: ContextFrame {
                message_name: message.to_owned(),
                primary_entity_name: table.to_owned(),
                secondary_entity_name: "none".to_owned(),
                primary_entity_id: Guid::NIL,
                stage: Stage::PostOperation,
                mode: Mode::Synchronous,
                depth: 1,
                user_id: Guid::from_u128(0x11),
                initiating_user_id: Guid::from_u128(0x11),
                initiating_user_agent: None,
                initiating_user_azure_active_directory_object_id: None,
                user_azure_active_directory_object_id: None,
                business_unit_id: Guid::from_u128(0x22),
                organization_id: Guid::from_u128(0x33),
                organization_name: "weft".to_owned(),
                correlation_id: Guid::from_u128(0x44),
                request_id: Some(Guid::from_u128(0x55)),
                operation_id: Guid::from_u128(0x55),
                operation_created_on: 0,
                is_in_transaction: true,
                is_executing_offline: false,
                is_offline_playback: false,
                isolation_mode: IsolationMode::Sandbox,
                owning_extension: EntityReference::new(
                    "sdkmessageprocessingstep",
                    Guid::from_u128(0x66),
                ),
                input_parameters: Parameters::default(),
                output_parameters: Parameters::default(),
                shared_variables: Parameters::default(),
                pre_entity_images: Vec::new(),
                post_entity_images: Vec::new(),
            },
            parents: Vec::new(),
        }
    }

    /// Sets the stage (and `IsInTransaction` as Dataverse would for it).
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Stage};
    /// assert!(!ContextBuilder::new("Create", "a").stage(Stage::PreValidation).build().is_in_transaction);
    /// ```
    pub fn stage(mut self, stage: Stage) -> ContextBuilder {
        self.frame.stage = stage;
        self.frame.is_in_transaction =
            stage != Stage::PreValidation && self.frame.mode == Mode::Synchronous;
        self
    }

    /// Sets the mode (asynchronous contexts are not in a transaction).
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Mode};
    /// assert_eq!(ContextBuilder::new("Create", "a").mode(Mode::Asynchronous).build().mode, Mode::Asynchronous);
    /// ```
    pub fn mode(mut self, mode: Mode) -> ContextBuilder {
        self.frame.mode = mode;
        if mode == Mode::Asynchronous {
            self.frame.is_in_transaction = false;
        }
        self
    }

    /// Sets the `Target` input parameter and the primary entity id from it.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Entity, Guid};
    /// let ctx = ContextBuilder::new("Update", "a").target(Entity::with_id("a", Guid::from_u128(3))).build();
    /// assert_eq!(ctx.primary_entity_id, Guid::from_u128(3));
    /// ```
    pub fn target(mut self, target: Entity) -> ContextBuilder {
        if let Some(id) = target.id {
            self.frame.primary_entity_id = id;
        }
        self.frame.input_parameters.set("Target", target);
        self
    }

    /// Adds an input parameter.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Create", "a").input("tag", "x").build().input_parameters.get("tag").is_some());
    /// ```
    pub fn input(mut self, name: &str, value: impl Into<crate::ParameterValue>) -> ContextBuilder {
        self.frame.input_parameters.set(name, value);
        self
    }

    /// Adds a shared variable.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Create", "a").shared("k", 1).build().shared_variable("k").is_some());
    /// ```
    pub fn shared(mut self, name: &str, value: impl Into<crate::ParameterValue>) -> ContextBuilder {
        self.frame.shared_variables.set(name, value);
        self
    }

    /// Adds a pre-image.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Entity};
    /// assert!(ContextBuilder::new("Update", "a").pre_image("pre", Entity::new("a")).build().pre_image("pre").is_some());
    /// ```
    pub fn pre_image(mut self, alias: &str, entity: Entity) -> ContextBuilder {
        self.frame
            .pre_entity_images
            .push((alias.to_owned(), entity));
        self
    }

    /// Adds a post-image.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Entity};
    /// assert!(ContextBuilder::new("Update", "a").post_image("post", Entity::new("a")).build().post_image("post").is_some());
    /// ```
    pub fn post_image(mut self, alias: &str, entity: Entity) -> ContextBuilder {
        self.frame
            .post_entity_images
            .push((alias.to_owned(), entity));
        self
    }

    /// Adds a ParentContext (call again for the parent's parent).
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let parent = ContextBuilder::new("Create", "a").build().frame().clone();
    /// assert!(ContextBuilder::new("Create", "a").parent(parent).build().parent().is_some());
    /// ```
    pub fn parent(mut self, frame: ContextFrame) -> ContextBuilder {
        self.parents.push(frame);
        self
    }

    /// Changes any other field.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let ctx = ContextBuilder::new("Create", "a").with(|f| f.depth = 3).build();
    /// assert_eq!(ctx.depth, 3);
    /// ```
    pub fn with(mut self, edit: impl FnOnce(&mut ContextFrame)) -> ContextBuilder {
        edit(&mut self.frame);
        self
    }

    /// The context.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let _ = ContextBuilder::new("Create", "a").build();
    /// ```
    pub fn build(self) -> Context {
        Context::new(self.frame, self.parents)
    }
}
