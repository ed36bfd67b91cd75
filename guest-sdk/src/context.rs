//! [`Context`]: the execution context a plug-in runs with. Everything is
//! readable; only InputParameters, OutputParameters and SharedVariables are
//! writable, as in Dataverse, and the context remembers which of them changed so
//! only those travel back to the host.

use crate::{Entity, EntityReference, Guid, ParameterValue, Parameters};
use std::ops::Deref;

/// Pipeline stage, with Dataverse's numbers.
///
/// ```
/// use weft_sdk::Stage;
/// assert_eq!(Stage::PostOperation.number(), 40);
/// assert_eq!(Stage::from_number(20), Some(Stage::PreOperation));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// 10.
    PreValidation,
    /// 20.
    PreOperation,
    /// 30.
    MainOperation,
    /// 40.
    PostOperation,
}

impl Stage {
    /// Dataverse's number for the stage.
    ///
    /// ```
    /// # use weft_sdk::Stage;
    /// assert_eq!(Stage::PreValidation.number(), 10);
    /// ```
    pub fn number(self) -> i32 {
        match self {
            Stage::PreValidation => 10,
            Stage::PreOperation => 20,
            Stage::MainOperation => 30,
            Stage::PostOperation => 40,
        }
    }

    /// The stage with this number.
    ///
    /// ```
    /// # use weft_sdk::Stage;
    /// assert_eq!(Stage::from_number(15), None);
    /// ```
    pub fn from_number(n: i32) -> Option<Stage> {
        Some(match n {
            10 => Stage::PreValidation,
            20 => Stage::PreOperation,
            30 => Stage::MainOperation,
            40 => Stage::PostOperation,
            _ => return None,
        })
    }
}

/// Execution mode: 0 Synchronous, 1 Asynchronous.
///
/// ```
/// use weft_sdk::Mode;
/// assert_eq!(Mode::Asynchronous as i32, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 0.
    Synchronous = 0,
    /// 1.
    Asynchronous = 1,
}

/// Isolation mode: 1 None, 2 Sandbox.
///
/// ```
/// use weft_sdk::IsolationMode;
/// assert_eq!(IsolationMode::Sandbox as i32, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationMode {
    /// 1.
    None = 1,
    /// 2.
    Sandbox = 2,
}

/// One pipeline execution's context, without its ancestors. Field names follow
/// RemoteExecutionContext.
///
/// ```
/// use weft_sdk::testing::ContextBuilder;
/// let ctx = ContextBuilder::new("Create", "account").build();
/// let frame: &weft_sdk::ContextFrame = &ctx;
/// assert_eq!(frame.message_name, "Create");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ContextFrame {
    /// `MessageName`, e.g. `Create`.
    pub message_name: String,
    /// `PrimaryEntityName`: the table's logical name.
    pub primary_entity_name: String,
    /// `SecondaryEntityName`: `"none"` in practice.
    pub secondary_entity_name: String,
    /// `PrimaryEntityId`.
    pub primary_entity_id: Guid,
    /// `Stage`.
    pub stage: Stage,
    /// `Mode`.
    pub mode: Mode,
    /// `Depth`: 1 for a top-level operation.
    pub depth: i32,
    /// `UserId`: the effective user.
    pub user_id: Guid,
    /// `InitiatingUserId`: the real caller.
    pub initiating_user_id: Guid,
    /// `InitiatingUserAgent`, when known.
    pub initiating_user_agent: Option<String>,
    /// `InitiatingUserAzureActiveDirectoryObjectId`, when known.
    pub initiating_user_azure_active_directory_object_id: Option<Guid>,
    /// `UserAzureActiveDirectoryObjectId`, when known.
    pub user_azure_active_directory_object_id: Option<Guid>,
    /// `BusinessUnitId`.
    pub business_unit_id: Guid,
    /// `OrganizationId`.
    pub organization_id: Guid,
    /// `OrganizationName`.
    pub organization_name: String,
    /// `CorrelationId`: shared by a whole chain of operations.
    pub correlation_id: Guid,
    /// `RequestId`.
    pub request_id: Option<Guid>,
    /// `OperationId`: the system job's id for asynchronous steps.
    pub operation_id: Guid,
    /// `OperationCreatedOn`, ms since the Unix epoch.
    pub operation_created_on: i64,
    /// `IsInTransaction`.
    pub is_in_transaction: bool,
    /// `IsExecutingOffline`.
    pub is_executing_offline: bool,
    /// `IsOfflinePlayback`.
    pub is_offline_playback: bool,
    /// `IsolationMode`.
    pub isolation_mode: IsolationMode,
    /// `OwningExtension`: the step.
    pub owning_extension: EntityReference,
    /// `InputParameters`.
    pub input_parameters: Parameters,
    /// `OutputParameters`.
    pub output_parameters: Parameters,
    /// `SharedVariables`.
    pub shared_variables: Parameters,
    /// `PreEntityImages`, by alias.
    pub pre_entity_images: Vec<(String, Entity)>,
    /// `PostEntityImages`, by alias.
    pub post_entity_images: Vec<(String, Entity)>,
}

/// The execution context of one plug-in invocation. Reads go through
/// [`Deref`] to the [`ContextFrame`]; writes through the `…_mut` methods, which
/// record what changed.
///
/// ```
/// use weft_sdk::{testing::ContextBuilder, Entity};
/// let mut target = Entity::new("account");
/// target.set("name", "Contoso");
/// let mut ctx = ContextBuilder::new("Create", "account").target(target).build();
/// assert_eq!(ctx.target().unwrap().get_str("name"), Some("Contoso"));
/// ctx.target_mut().unwrap().set("accountnumber", "A-1");
/// assert!(ctx.input_parameters_changed());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    frame: ContextFrame,
    parents: Vec<ContextFrame>,
    input_changed: bool,
    output_changed: bool,
    shared_changed: bool,
}

impl Deref for Context {
    type Target = ContextFrame;
    fn deref(&self) -> &ContextFrame {
        &self.frame
    }
}

impl Context {
    /// A context from its frame and its ancestors (`parents[0]` is the
    /// ParentContext).
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Context};
    /// let frame = ContextBuilder::new("Create", "account").build().frame().clone();
    /// let ctx = Context::new(frame, Vec::new());
    /// assert!(ctx.parent().is_none());
    /// ```
    pub fn new(frame: ContextFrame, parents: Vec<ContextFrame>) -> Context {
        Context {
            frame,
            parents,
            input_changed: false,
            output_changed: false,
            shared_changed: false,
        }
    }

    /// This execution's frame.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert_eq!(ContextBuilder::new("Update", "contact").build().frame().depth, 1);
    /// ```
    pub fn frame(&self) -> &ContextFrame {
        &self.frame
    }

    /// `ParentContext`, if any.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Update", "contact").build().parent().is_none());
    /// ```
    pub fn parent(&self) -> Option<&ContextFrame> {
        self.parents.first()
    }

    /// The whole ParentContext chain, nearest first.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Update", "contact").build().parents().is_empty());
    /// ```
    pub fn parents(&self) -> &[ContextFrame] {
        &self.parents
    }

    /// The `Target` input parameter, when it is an entity.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Create", "account").build().target().is_none());
    /// ```
    pub fn target(&self) -> Option<&Entity> {
        self.frame
            .input_parameters
            .get("Target")
            .and_then(ParameterValue::as_entity)
    }

    /// The `Target` entity, mutably (marks InputParameters changed).
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Entity};
    /// let mut ctx = ContextBuilder::new("Create", "account").target(Entity::new("account")).build();
    /// ctx.target_mut().unwrap().set("name", "x");
    /// ```
    pub fn target_mut(&mut self) -> Option<&mut Entity> {
        self.input_parameters_mut()
            .get_mut("Target")
            .and_then(ParameterValue::as_entity_mut)
    }

    /// InputParameters, mutably. Changes count in stages 10 and 20.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// ctx.input_parameters_mut().set("SuppressDuplicateDetection", true);
    /// assert!(ctx.input_parameters_changed());
    /// ```
    pub fn input_parameters_mut(&mut self) -> &mut Parameters {
        self.input_changed = true;
        &mut self.frame.input_parameters
    }

    /// OutputParameters, mutably. Changes count in stage 40.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// ctx.output_parameters_mut().set("note", "checked");
    /// ```
    pub fn output_parameters_mut(&mut self) -> &mut Parameters {
        self.output_changed = true;
        &mut self.frame.output_parameters
    }

    /// SharedVariables, mutably: they flow to later steps of the operation.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// ctx.shared_variables_mut().set("checked", true);
    /// ```
    pub fn shared_variables_mut(&mut self) -> &mut Parameters {
        self.shared_changed = true;
        &mut self.frame.shared_variables
    }

    /// Sets one shared variable.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Value};
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// ctx.set_shared_variable("source", "import");
    /// assert_eq!(ctx.shared_variable("source").and_then(Value::as_str), Some("import"));
    /// ```
    pub fn set_shared_variable(
        &mut self,
        name: impl Into<String>,
        value: impl Into<ParameterValue>,
    ) {
        self.shared_variables_mut().set(name, value);
    }

    /// One shared variable's plain value.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Create", "account").build().shared_variable("x").is_none());
    /// ```
    pub fn shared_variable(&self, name: &str) -> Option<&crate::Value> {
        self.frame.shared_variables.get_value(name)
    }

    /// The pre-image registered under `alias`.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Entity};
    /// let ctx = ContextBuilder::new("Update", "account").pre_image("pre", Entity::new("account")).build();
    /// assert!(ctx.pre_image("pre").is_some());
    /// ```
    pub fn pre_image(&self, alias: &str) -> Option<&Entity> {
        find_image(&self.frame.pre_entity_images, alias)
    }

    /// The post-image registered under `alias`.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Update", "account").build().post_image("post").is_none());
    /// ```
    pub fn post_image(&self, alias: &str) -> Option<&Entity> {
        find_image(&self.frame.post_entity_images, alias)
    }

    /// Whether InputParameters were changed through this context.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(!ContextBuilder::new("Create", "account").build().input_parameters_changed());
    /// ```
    pub fn input_parameters_changed(&self) -> bool {
        self.input_changed
    }

    /// Whether OutputParameters were changed through this context.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(!ContextBuilder::new("Create", "account").build().output_parameters_changed());
    /// ```
    pub fn output_parameters_changed(&self) -> bool {
        self.output_changed
    }

    /// Whether SharedVariables were changed through this context.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(!ContextBuilder::new("Create", "account").build().shared_variables_changed());
    /// ```
    pub fn shared_variables_changed(&self) -> bool {
        self.shared_changed
    }

    /// The changed writable parts, moved out (used when the invocation ends).
    pub(crate) fn into_changed_parts(
        self,
    ) -> (Option<Parameters>, Option<Parameters>, Option<Parameters>) {
        let ContextFrame {
            input_parameters,
            output_parameters,
            shared_variables,
            ..
        } = self.frame;
        (
            self.input_changed.then_some(input_parameters),
            self.output_changed.then_some(output_parameters),
            self.shared_changed.then_some(shared_variables),
        )
    }
}

fn find_image<'a>(images: &'a [(String, Entity)], alias: &str) -> Option<&'a Entity> {
    images.iter().find(|(a, _)| a == alias).map(|(_, e)| e)
}
