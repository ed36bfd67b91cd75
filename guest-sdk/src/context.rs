//! [`Context`]: the execution context a plug-in runs with. Everything is
//! readable; only InputParameters, OutputParameters and SharedVariables are
//! writable, as in Dataverse, and the context remembers which of them changed so
//! only those travel back to the host.
//!
//! Inside a component the context is read lazily from the host's
//! `execution-context` resource (weft:plugin@0.2.0): a plug-in that reads
//! `Target` fetches InputParameters only; the whole frame is fetched at most
//! once, on the first field access through [`Deref`]. Natively
//! ([`crate::testing`]) everything is in memory from the start. Must not touch
//! the generated WIT types: the fetching goes through `convert`.

use crate::convert::{self, HostContext};
use crate::packed::{Diff, Packed, same_bytes};
use crate::{Entity, EntityReference, Guid, ParameterValue, Parameters, Value};
use std::cell::{Cell, OnceCell, RefCell};
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

/// One of the three writable collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Input = 0,
    Output = 1,
    Shared = 2,
}

impl Part {
    const ALL: [Part; 3] = [Part::Input, Part::Output, Part::Shared];

    fn of(self, frame: &ContextFrame) -> &Parameters {
        match self {
            Part::Input => &frame.input_parameters,
            Part::Output => &frame.output_parameters,
            Part::Shared => &frame.shared_variables,
        }
    }

    fn of_mut(self, frame: &mut ContextFrame) -> &mut Parameters {
        match self {
            Part::Input => &mut frame.input_parameters,
            Part::Output => &mut frame.output_parameters,
            Part::Shared => &mut frame.shared_variables,
        }
    }
}

/// What the context knows of one writable collection before the whole frame
/// is fetched.
#[derive(Debug, Clone, Default, PartialEq)]
struct Collection {
    /// Fetched on its own (the frame, once fetched, holds it instead).
    loaded: OnceCell<Parameters>,
    /// Changed through this context.
    changed: bool,
    /// Changed since the host last received it.
    dirty: Cell<bool>,
    /// The names the host holds, so a removed parameter is removed there too.
    host_names: RefCell<Option<Vec<String>>>,
    /// The bytes the collection was fetched as, while the host still holds
    /// what they say: what a change is compared with (no copy needed).
    packed: RefCell<Option<Packed>>,
    /// The collection as the host holds it, taken when it is first changed
    /// after the host last received it when there are no such bytes (inside a
    /// component only, e.g. after the whole frame was fetched), so only what
    /// differs travels back.
    host_copy: RefCell<Option<Parameters>>,
    /// How a parameter of this collection reaches the host, set by the method
    /// that changed it: held as a function pointer so that only collections a
    /// plug-in changes pull their setter imports into the component.
    send: Option<Sender>,
}

/// How a collection's changes reach the host: one parameter whole (`None`
/// removes it), and for InputParameters one attribute of an entity parameter
/// (`set-input-attribute`). Equal to any other: how changes travel is no part
/// of a context's value.
#[derive(Clone, Copy)]
struct Sender {
    whole: fn(HostContext, &str, Option<&ParameterValue>),
    attribute: Option<fn(HostContext, &str, &str, &Value)>,
}

impl PartialEq for Sender {
    fn eq(&self, _: &Sender) -> bool {
        true
    }
}

impl core::fmt::Debug for Sender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sender")
    }
}

/// An entity image fetched on its own: the first alias asked for.
type CachedImage = OnceCell<(String, Option<Entity>)>;

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
    /// The host's context inside a component; `None` natively.
    host: Option<HostContext>,
    frame: OnceCell<ContextFrame>,
    parents: OnceCell<Vec<ContextFrame>>,
    parts: [Collection; 3],
    pre_image: CachedImage,
    post_image: CachedImage,
    message_name: OnceCell<String>,
    primary_entity_name: OnceCell<String>,
}

impl Deref for Context {
    type Target = ContextFrame;
    fn deref(&self) -> &ContextFrame {
        self.frame()
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
            host: None,
            frame: OnceCell::from(frame),
            parents: OnceCell::from(parents),
            parts: Default::default(),
            pre_image: OnceCell::new(),
            post_image: OnceCell::new(),
            message_name: OnceCell::new(),
            primary_entity_name: OnceCell::new(),
        }
    }

    /// A context read from the host on demand.
    pub(crate) fn from_host(host: HostContext) -> Context {
        Context {
            host: Some(host),
            frame: OnceCell::new(),
            parents: OnceCell::new(),
            parts: Default::default(),
            pre_image: OnceCell::new(),
            post_image: OnceCell::new(),
            message_name: OnceCell::new(),
            primary_entity_name: OnceCell::new(),
        }
    }

    /// The host's context; only asked for when something is not in memory,
    /// which natively never happens (a native context starts complete).
    fn host(&self) -> HostContext {
        self.host
            .expect("a native context holds its whole frame from the start")
    }

    /// This execution's frame (fetched from the host once, on first use).
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert_eq!(ContextBuilder::new("Update", "contact").build().frame().depth, 1);
    /// ```
    pub fn frame(&self) -> &ContextFrame {
        self.frame.get_or_init(|| {
            let mut frame = convert::fetch_frame(self.host());
            for part in Part::ALL {
                let collection = &self.parts[part as usize];
                match collection.loaded.get() {
                    // Fetched (and perhaps changed) before the frame: it is newer.
                    Some(loaded) => *part.of_mut(&mut frame) = loaded.clone(),
                    None => {
                        collection
                            .host_names
                            .borrow_mut()
                            .get_or_insert_with(|| names(part.of(&frame)));
                    }
                }
            }
            frame
        })
    }

    /// `MessageName`, without fetching the whole frame (`ctx.message_name`,
    /// through [`Deref`], fetches it).
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert_eq!(ContextBuilder::new("Update", "contact").build().message_name(), "Update");
    /// ```
    pub fn message_name(&self) -> &str {
        match self.frame.get() {
            Some(frame) => &frame.message_name,
            None => self
                .message_name
                .get_or_init(|| convert::fetch_message_name(self.host())),
        }
    }

    /// `PrimaryEntityName`, without fetching the whole frame.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert_eq!(ContextBuilder::new("Update", "contact").build().primary_entity_name(), "contact");
    /// ```
    pub fn primary_entity_name(&self) -> &str {
        match self.frame.get() {
            Some(frame) => &frame.primary_entity_name,
            None => self
                .primary_entity_name
                .get_or_init(|| convert::fetch_primary_entity_name(self.host())),
        }
    }

    /// `Stage`, without fetching the whole frame.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Stage};
    /// let ctx = ContextBuilder::new("Update", "contact").stage(Stage::PreValidation).build();
    /// assert_eq!(ctx.stage(), Stage::PreValidation);
    /// ```
    pub fn stage(&self) -> Stage {
        match self.frame.get() {
            Some(frame) => frame.stage,
            None => convert::fetch_stage(self.host()),
        }
    }

    /// `Depth`, without fetching the whole frame.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert_eq!(ContextBuilder::new("Update", "contact").build().depth(), 1);
    /// ```
    pub fn depth(&self) -> i32 {
        match self.frame.get() {
            Some(frame) => frame.depth,
            None => convert::fetch_depth(self.host()),
        }
    }

    /// `PrimaryEntityId`, without fetching the whole frame.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Guid};
    /// assert_eq!(ContextBuilder::new("Create", "contact").build().primary_entity_id(), Guid::from_u128(0));
    /// ```
    pub fn primary_entity_id(&self) -> Guid {
        match self.frame.get() {
            Some(frame) => frame.primary_entity_id,
            None => convert::fetch_primary_entity_id(self.host()),
        }
    }

    /// `ParentContext`, if any.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Update", "contact").build().parent().is_none());
    /// ```
    pub fn parent(&self) -> Option<&ContextFrame> {
        self.parents().first()
    }

    /// The whole ParentContext chain, nearest first.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Update", "contact").build().parents().is_empty());
    /// ```
    pub fn parents(&self) -> &[ContextFrame] {
        self.parents
            .get_or_init(|| convert::fetch_parents(self.host()))
    }

    /// A collection as it stands, fetched on its own when the frame is not
    /// in memory.
    fn collection(&self, part: Part) -> &Parameters {
        if let Some(frame) = self.frame.get() {
            return part.of(frame);
        }
        let collection = &self.parts[part as usize];
        collection.loaded.get_or_init(|| {
            let (params, packed) = convert::fetch_parameters(self.host(), part);
            *collection.host_names.borrow_mut() = Some(names(&params));
            *collection.packed.borrow_mut() = Some(packed);
            params
        })
    }

    /// A collection, mutably: marks it changed.
    fn collection_mut(&mut self, part: Part, send: Sender) -> &mut Parameters {
        // While nothing is unsent the collection is what the host holds: keep
        // a copy to compare with when flushing, unless the bytes it came in
        // serve.
        self.collection(part);
        let held = &self.parts[part as usize];
        let host_copy =
            (self.host.is_some() && !held.dirty.get() && held.packed.borrow().is_none())
                .then(|| self.collection(part).clone());
        let collection = &mut self.parts[part as usize];
        if host_copy.is_some() {
            *collection.host_copy.get_mut() = host_copy;
        }
        collection.changed = true;
        collection.dirty.set(true);
        collection.send = Some(send);
        match self.frame.get_mut() {
            Some(frame) => part.of_mut(frame),
            None => collection.loaded.get_mut().expect("fetched just above"),
        }
    }

    /// The `Target` input parameter, when it is an entity.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Create", "account").build().target().is_none());
    /// ```
    pub fn target(&self) -> Option<&Entity> {
        self.collection(Part::Input)
            .get("Target")
            .and_then(ParameterValue::as_entity)
    }

    /// One input parameter, fetching InputParameters only (not the whole frame).
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Value};
    /// let ctx = ContextBuilder::new("Create", "account").input("count", 3).build();
    /// assert_eq!(ctx.input_parameter("count").and_then(|p| p.as_value()), Some(&Value::Integer(3)));
    /// ```
    pub fn input_parameter(&self, name: &str) -> Option<&ParameterValue> {
        self.collection(Part::Input).get(name)
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
        self.collection_mut(
            Part::Input,
            Sender {
                whole: convert::set_input_parameter,
                attribute: Some(convert::set_input_attribute),
            },
        )
    }

    /// OutputParameters, mutably. Changes count in stage 40.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// ctx.output_parameters_mut().set("note", "checked");
    /// ```
    pub fn output_parameters_mut(&mut self) -> &mut Parameters {
        self.collection_mut(
            Part::Output,
            Sender {
                whole: convert::set_output_parameter,
                attribute: None,
            },
        )
    }

    /// SharedVariables, mutably: they flow to later steps of the operation.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// let mut ctx = ContextBuilder::new("Create", "account").build();
    /// ctx.shared_variables_mut().set("checked", true);
    /// ```
    pub fn shared_variables_mut(&mut self) -> &mut Parameters {
        self.collection_mut(
            Part::Shared,
            Sender {
                whole: convert::set_shared_variable,
                attribute: None,
            },
        )
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
        self.collection(Part::Shared).get_value(name)
    }

    /// The pre-image registered under `alias`.
    ///
    /// ```
    /// # use weft_sdk::{testing::ContextBuilder, Entity};
    /// let ctx = ContextBuilder::new("Update", "account").pre_image("pre", Entity::new("account")).build();
    /// assert!(ctx.pre_image("pre").is_some());
    /// ```
    pub fn pre_image(&self, alias: &str) -> Option<&Entity> {
        self.image(alias, true)
    }

    /// The post-image registered under `alias`.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(ContextBuilder::new("Update", "account").build().post_image("post").is_none());
    /// ```
    pub fn post_image(&self, alias: &str) -> Option<&Entity> {
        self.image(alias, false)
    }

    /// An image: from the frame when it is in memory, else fetched on its own
    /// (the first alias asked for is kept; another one fetches the frame).
    fn image(&self, alias: &str, pre: bool) -> Option<&Entity> {
        if let Some(frame) = self.frame.get() {
            return find_image(frame, alias, pre);
        }
        let cache = if pre {
            &self.pre_image
        } else {
            &self.post_image
        };
        let (cached_alias, image) = cache.get_or_init(|| {
            (
                alias.to_owned(),
                convert::fetch_image(self.host(), alias, pre),
            )
        });
        if cached_alias == alias {
            return image.as_ref();
        }
        find_image(self.frame(), alias, pre)
    }

    /// Whether InputParameters were changed through this context.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(!ContextBuilder::new("Create", "account").build().input_parameters_changed());
    /// ```
    pub fn input_parameters_changed(&self) -> bool {
        self.parts[Part::Input as usize].changed
    }

    /// Whether OutputParameters were changed through this context.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(!ContextBuilder::new("Create", "account").build().output_parameters_changed());
    /// ```
    pub fn output_parameters_changed(&self) -> bool {
        self.parts[Part::Output as usize].changed
    }

    /// Whether SharedVariables were changed through this context.
    ///
    /// ```
    /// # use weft_sdk::testing::ContextBuilder;
    /// assert!(!ContextBuilder::new("Create", "account").build().shared_variables_changed());
    /// ```
    pub fn shared_variables_changed(&self) -> bool {
        self.parts[Part::Shared as usize].changed
    }

    /// A collection as it stands, if it was changed through this context.
    pub(crate) fn changed(&self, part: Part) -> Option<&Parameters> {
        self.parts[part as usize]
            .changed
            .then(|| self.collection(part))
    }

    /// Hands the host what changed in the collections since it last received
    /// them, through the context's setters: a removed parameter is removed
    /// there too, an unchanged one is not sent, and an input entity whose
    /// attributes were only changed in place or appended (the Target a plug-in
    /// sets a field of) is sent attribute by attribute. Inside a component
    /// this runs before a post and when the plug-in returns; natively there is
    /// no host context and it does nothing.
    pub(crate) fn flush(&self) {
        self.flush_then(false);
    }

    /// [`Context::flush`] when the plug-in has returned: nothing is remembered
    /// for a next flush (the bytes the host sent, the names it holds), as the
    /// context is leaked right after and the instance discarded.
    pub(crate) fn flush_last(&self) {
        self.flush_then(true);
    }

    fn flush_then(&self, last: bool) {
        let Some(host) = self.host else {
            return;
        };
        for part in Part::ALL {
            let collection = &self.parts[part as usize];
            if !collection.dirty.replace(false) {
                continue;
            }
            let Some(Sender {
                whole: send,
                attribute: send_attribute,
            }) = collection.send
            else {
                continue;
            };
            let current = self.collection(part);
            // Borrowed, not taken: the copy is replaced when the collection is next changed, and at the
            // end of an invocation the context is leaked whole, so freeing it here would be wasted work.
            let host_copy = collection.host_copy.borrow();
            let packed = collection.packed.borrow();
            let mut host_names = collection.host_names.borrow_mut();
            for name in host_names.iter().flatten() {
                if current.get(name).is_none() {
                    send(host, name, None);
                }
            }
            // Room for an entity's head or tail and most values without growing.
            let mut scratch = Vec::with_capacity(128);
            // Attribute by attribute only where the collection has an attribute setter (InputParameters).
            let by_attribute = send_attribute.is_some();
            for (name, value) in current.iter() {
                let diff = match packed.as_ref() {
                    Some(packed) => packed.diff(name, value, by_attribute, &mut scratch),
                    None => copy_diff(host_copy.as_ref(), name, value, by_attribute),
                };
                match (diff, send_attribute) {
                    (Diff::Same, _) => {}
                    (Diff::Attributes(changes), Some(send_attribute)) => {
                        for (attribute, value) in changes {
                            send_attribute(host, name, attribute, value);
                        }
                    }
                    _ => send(host, name, Some(value)),
                }
            }
            // The host now holds these values: its bytes no longer say what it holds. At the last flush
            // nothing follows (the context is leaked), so nothing is forgotten or listed.
            drop(packed);
            if !last {
                collection.packed.take();
                *host_names = Some(names(current));
            }
        }
    }
}

/// How `value` differs from the parameter `name` of `host_copy` (the
/// collection as the host holds it): [`Packed::diff`] for a collection that
/// was not fetched packed.
fn copy_diff<'a>(
    host_copy: Option<&Parameters>,
    name: &str,
    value: &'a ParameterValue,
    by_attribute: bool,
) -> Diff<'a> {
    let before = host_copy.and_then(|copy| copy.get(name));
    match (before, value, by_attribute) {
        // An input entity is compared attribute by attribute only (comparing it whole first read every
        // byte of it twice): no changes there means nothing to send.
        (Some(ParameterValue::Entity(before)), ParameterValue::Entity(after), true) => {
            Diff::of_attributes(attribute_changes(before, after))
        }
        (Some(before), _, _) if before == value => Diff::Same,
        _ => Diff::Whole,
    }
}

/// The attribute changes that turn `before` (the entity the host holds) into
/// `after`, when `set-input-attribute` can make them: the same entity but for
/// attributes changed in place or appended. `None` when it takes the whole
/// entity (an attribute removed or moved, another field changed).
fn attribute_changes<'a>(before: &Entity, after: &'a Entity) -> Option<Vec<(&'a str, &'a Value)>> {
    if before.logical_name != after.logical_name
        || before.id != after.id
        || before.row_version != after.row_version
        || before.formatted_values != after.formatted_values
    {
        return None;
    }
    changed_attributes(
        &before.attributes,
        &after.attributes,
        |(name, _), other| same_bytes(name.as_bytes(), other.as_bytes()),
        |(_, value), other| same_value(value, other),
    )
}

/// The attributes of `after` that differ from `held` (the attributes the host
/// holds, in its order, however they are represented), when the difference is
/// only values changed in place and attributes appended: what
/// `set-input-attribute` can make. `None` otherwise — an attribute removed,
/// moved or renamed, or a change the host would apply to another attribute of
/// the same name (it changes the first of a name, and appends only a name it
/// does not hold).
pub(crate) fn changed_attributes<'a, H>(
    held: &[H],
    after: &'a [(String, Value)],
    same_name: impl Fn(&H, &str) -> bool,
    mut same_value: impl FnMut(&H, &Value) -> bool,
) -> Option<Vec<(&'a str, &'a Value)>> {
    if after.len() < held.len() {
        return None;
    }
    let (kept, added) = after.split_at(held.len());
    let mut changes = Vec::new();
    for (i, ((name, value), old)) in kept.iter().zip(held).enumerate() {
        if !same_name(old, name) {
            return None;
        }
        if !same_value(old, value) {
            if held[..i].iter().any(|h| same_name(h, name)) {
                return None;
            }
            changes.push((name.as_str(), value));
        }
    }
    for (i, (name, value)) in added.iter().enumerate() {
        if held.iter().any(|h| same_name(h, name)) || added[..i].iter().any(|(n, _)| n == name) {
            return None;
        }
        changes.push((name.as_str(), value));
    }
    Some(changes)
}

/// `a == b` for attribute values, comparing text with [`same_bytes`] (the
/// component's `memcmp` compares byte by byte).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b))
        | (Value::Decimal(a), Value::Decimal(b))
        | (Value::Money(a), Value::Money(b)) => same_bytes(a.as_bytes(), b.as_bytes()),
        _ => a == b,
    }
}

fn find_image<'a>(frame: &'a ContextFrame, alias: &str, pre: bool) -> Option<&'a Entity> {
    let images = if pre {
        &frame.pre_entity_images
    } else {
        &frame.post_entity_images
    };
    images.iter().find(|(a, _)| a == alias).map(|(_, e)| e)
}

fn names(params: &Parameters) -> Vec<String> {
    params.iter().map(|(name, _)| name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(attributes: &[(&str, i32)]) -> Entity {
        let mut e = Entity::new("account");
        for (name, n) in attributes {
            e.attributes.push(((*name).to_owned(), Value::Integer(*n)));
        }
        e
    }

    /// A field changed in place and one appended travel as two attributes; nothing for an unchanged entity.
    #[test]
    fn changed_and_appended_attributes_travel_alone() {
        let before = account(&[("a", 1), ("b", 2)]);
        let after = account(&[("a", 1), ("b", 3), ("c", 4)]);
        let changes = attribute_changes(&before, &after).unwrap();
        assert_eq!(
            changes,
            vec![("b", &Value::Integer(3)), ("c", &Value::Integer(4))]
        );
        assert_eq!(attribute_changes(&before, &before), Some(Vec::new()));
    }

    /// What the host cannot redo attribute by attribute takes the whole entity: a removal, a move, a
    /// duplicate name, another table or id.
    #[test]
    fn other_changes_take_the_whole_entity() {
        let before = account(&[("a", 1), ("b", 2)]);
        assert_eq!(attribute_changes(&before, &account(&[("a", 1)])), None);
        assert_eq!(
            attribute_changes(&before, &account(&[("b", 2), ("a", 1)])),
            None
        );
        assert_eq!(
            attribute_changes(&before, &account(&[("a", 1), ("b", 2), ("c", 3), ("c", 4)])),
            None
        );
        assert_eq!(
            attribute_changes(&before, &account(&[("a", 1), ("b", 2), ("a", 5)])),
            None
        );
        let duplicated = account(&[("a", 1), ("a", 2)]);
        assert_eq!(
            attribute_changes(&duplicated, &account(&[("a", 1), ("a", 3)])),
            None
        );
        let mut other = before.clone();
        other.logical_name = "contact".into();
        assert_eq!(attribute_changes(&before, &other), None);
        let mut with_id = before.clone();
        with_id.id = Some(Guid::from_u128(7));
        assert_eq!(attribute_changes(&before, &with_id), None);
    }
}
