//! Conversions between the SDK's types and the generated WIT types, and the
//! calls that read and change the host's `execution-context`. The only module
//! that knows both sides; everything else sees one.

use crate::context::Part;
use crate::wit::weft::plugin::{
    context as wc, notification_service, organization_service as wo, types as wt, workflow as ww,
};
use crate::{
    Activity, ArgumentSpec, ArgumentType, Arguments, ConditionOperator, Context, ContextFrame,
    Entity, EntityCollection, EntityReference, Guid, IsolationMode, Mode, OperationStatus,
    ParameterValue, Parameters, PluginError, Query, ServiceError, ServiceErrorKind, Stage, Value,
    WorkflowContext,
};

impl From<wt::Guid> for Guid {
    fn from(g: wt::Guid) -> Guid {
        Guid::from_halves(g.hi, g.lo)
    }
}
impl From<Guid> for wt::Guid {
    fn from(g: Guid) -> wt::Guid {
        let (hi, lo) = g.halves();
        wt::Guid { hi, lo }
    }
}

impl From<wt::EntityReference> for EntityReference {
    fn from(r: wt::EntityReference) -> EntityReference {
        EntityReference {
            logical_name: r.logical_name,
            id: r.id.into(),
            name: r.name,
        }
    }
}
impl From<&EntityReference> for wt::EntityReference {
    fn from(r: &EntityReference) -> wt::EntityReference {
        wt::EntityReference {
            logical_name: r.logical_name.clone(),
            id: r.id.into(),
            name: r.name.clone(),
        }
    }
}

impl From<wt::Value> for Value {
    fn from(v: wt::Value) -> Value {
        match v {
            wt::Value::Null => Value::Null,
            wt::Value::Boolean(b) => Value::Boolean(b),
            wt::Value::Integer(n) => Value::Integer(n),
            wt::Value::BigInteger(n) => Value::BigInteger(n),
            wt::Value::Double(n) => Value::Double(n),
            wt::Value::Decimal(s) => Value::Decimal(s),
            wt::Value::Money(s) => Value::Money(s),
            wt::Value::String(s) => Value::String(s),
            wt::Value::Datetime(ms) => Value::DateTime(ms),
            wt::Value::Guid(g) => Value::Guid(g.into()),
            wt::Value::EntityReference(r) => Value::EntityReference(r.into()),
            wt::Value::OptionSetValue(n) => Value::OptionSetValue(n),
            wt::Value::OptionSetValueCollection(v) => Value::OptionSetValueCollection(v),
            wt::Value::EntityReferenceCollection(v) => {
                Value::EntityReferenceCollection(v.into_iter().map(Into::into).collect())
            }
            wt::Value::StringArray(v) => Value::StringArray(v),
        }
    }
}
impl From<&Value> for wt::Value {
    fn from(v: &Value) -> wt::Value {
        match v {
            Value::Null => wt::Value::Null,
            Value::Boolean(b) => wt::Value::Boolean(*b),
            Value::Integer(n) => wt::Value::Integer(*n),
            Value::BigInteger(n) => wt::Value::BigInteger(*n),
            Value::Double(n) => wt::Value::Double(*n),
            Value::Decimal(s) => wt::Value::Decimal(s.clone()),
            Value::Money(s) => wt::Value::Money(s.clone()),
            Value::String(s) => wt::Value::String(s.clone()),
            Value::DateTime(ms) => wt::Value::Datetime(*ms),
            Value::Guid(g) => wt::Value::Guid((*g).into()),
            Value::EntityReference(r) => wt::Value::EntityReference(r.into()),
            Value::OptionSetValue(n) => wt::Value::OptionSetValue(*n),
            Value::OptionSetValueCollection(v) => wt::Value::OptionSetValueCollection(v.clone()),
            Value::EntityReferenceCollection(v) => {
                wt::Value::EntityReferenceCollection(v.iter().map(Into::into).collect())
            }
            Value::StringArray(v) => wt::Value::StringArray(v.clone()),
        }
    }
}

impl From<wt::Entity> for Entity {
    fn from(e: wt::Entity) -> Entity {
        Entity {
            logical_name: e.logical_name,
            id: e.id.map(Into::into),
            attributes: e
                .attributes
                .into_iter()
                .map(|a| (a.name, a.value.into()))
                .collect(),
            formatted_values: e.formatted_values,
            row_version: e.row_version,
        }
    }
}
impl From<&Entity> for wt::Entity {
    fn from(e: &Entity) -> wt::Entity {
        wt::Entity {
            logical_name: e.logical_name.clone(),
            id: e.id.map(Into::into),
            attributes: e
                .attributes
                .iter()
                .map(|(name, value)| wt::Attribute {
                    name: name.clone(),
                    value: value.into(),
                })
                .collect(),
            formatted_values: e.formatted_values.clone(),
            row_version: e.row_version.clone(),
        }
    }
}

impl From<wt::EntityCollection> for EntityCollection {
    fn from(c: wt::EntityCollection) -> EntityCollection {
        EntityCollection {
            entity_name: c.entity_name,
            entities: c.entities.into_iter().map(Into::into).collect(),
            more_records: c.more_records,
            paging_cookie: c.paging_cookie,
            total_record_count: c.total_record_count,
        }
    }
}
impl From<&EntityCollection> for wt::EntityCollection {
    fn from(c: &EntityCollection) -> wt::EntityCollection {
        wt::EntityCollection {
            entity_name: c.entity_name.clone(),
            entities: c.entities.iter().map(Into::into).collect(),
            more_records: c.more_records,
            paging_cookie: c.paging_cookie.clone(),
            total_record_count: c.total_record_count,
        }
    }
}

impl From<Vec<wt::Parameter>> for Parameters {
    fn from(params: Vec<wt::Parameter>) -> Parameters {
        Parameters(
            params
                .into_iter()
                .map(|p| (p.name, p.value.into()))
                .collect(),
        )
    }
}
impl From<wt::ParameterValue> for ParameterValue {
    fn from(v: wt::ParameterValue) -> ParameterValue {
        match v {
            wt::ParameterValue::Value(v) => ParameterValue::Value(v.into()),
            wt::ParameterValue::Entity(e) => ParameterValue::Entity(e.into()),
            wt::ParameterValue::EntityCollection(c) => ParameterValue::EntityCollection(c.into()),
        }
    }
}

impl From<&ParameterValue> for wt::ParameterValue {
    fn from(v: &ParameterValue) -> wt::ParameterValue {
        match v {
            ParameterValue::Value(v) => wt::ParameterValue::Value(v.into()),
            ParameterValue::Entity(e) => wt::ParameterValue::Entity(e.into()),
            ParameterValue::EntityCollection(c) => wt::ParameterValue::EntityCollection(c.into()),
        }
    }
}

fn stage(s: wc::Stage) -> Stage {
    match s {
        wc::Stage::PreValidation => Stage::PreValidation,
        wc::Stage::PreOperation => Stage::PreOperation,
        wc::Stage::MainOperation => Stage::MainOperation,
        wc::Stage::PostOperation => Stage::PostOperation,
    }
}

fn images(images: Vec<wt::Image>) -> Vec<(String, Entity)> {
    images
        .into_iter()
        .map(|i| (i.alias, i.entity.into()))
        .collect()
}

impl From<wc::ContextFrame> for ContextFrame {
    fn from(f: wc::ContextFrame) -> ContextFrame {
        ContextFrame {
            message_name: f.message_name,
            primary_entity_name: f.primary_entity_name,
            secondary_entity_name: f.secondary_entity_name,
            primary_entity_id: f.primary_entity_id.into(),
            stage: stage(f.stage),
            mode: match f.mode {
                wc::Mode::Synchronous => Mode::Synchronous,
                wc::Mode::Asynchronous => Mode::Asynchronous,
            },
            depth: f.depth,
            user_id: f.user_id.into(),
            initiating_user_id: f.initiating_user_id.into(),
            initiating_user_agent: f.initiating_user_agent,
            initiating_user_azure_active_directory_object_id: f
                .initiating_user_azure_active_directory_object_id
                .map(Into::into),
            user_azure_active_directory_object_id: f
                .user_azure_active_directory_object_id
                .map(Into::into),
            business_unit_id: f.business_unit_id.into(),
            organization_id: f.organization_id.into(),
            organization_name: f.organization_name,
            correlation_id: f.correlation_id.into(),
            request_id: f.request_id.map(Into::into),
            operation_id: f.operation_id.into(),
            operation_created_on: f.operation_created_on,
            is_in_transaction: f.is_in_transaction,
            is_executing_offline: f.is_executing_offline,
            is_offline_playback: f.is_offline_playback,
            isolation_mode: match f.isolation_mode {
                wc::IsolationMode::None => IsolationMode::None,
                wc::IsolationMode::Sandbox => IsolationMode::Sandbox,
            },
            owning_extension: f.owning_extension.into(),
            input_parameters: f.input_parameters.into(),
            output_parameters: f.output_parameters.into(),
            shared_variables: f.shared_variables.into(),
            pre_entity_images: images(f.pre_entity_images),
            post_entity_images: images(f.post_entity_images),
        }
    }
}

/// The host's `execution-context` an invocation runs on, by handle. The
/// handle is borrowed for the duration of `execute`: [`run`] builds the
/// [`Context`] holding it and drops it before returning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HostContext(u32);

/// Calls `f` with the resource behind `host`, without ever dropping it (it is
/// the host's, lent to this invocation).
fn with_resource<R>(host: HostContext, f: impl FnOnce(&wc::ExecutionContext) -> R) -> R {
    // SAFETY: the handle is the live borrow `execute` received (see
    // `HostContext`); `ManuallyDrop` keeps this copy from releasing it.
    #[allow(unsafe_code)]
    let resource =
        core::mem::ManuallyDrop::new(unsafe { wc::ExecutionContext::from_handle(host.0) });
    f(&resource)
}

pub(crate) fn fetch_frame(host: HostContext) -> ContextFrame {
    with_resource(host, |c| c.frame()).into()
}

pub(crate) fn fetch_message_name(host: HostContext) -> String {
    with_resource(host, |c| c.message_name())
}

pub(crate) fn fetch_primary_entity_name(host: HostContext) -> String {
    with_resource(host, |c| c.primary_entity_name())
}

pub(crate) fn fetch_stage(host: HostContext) -> Stage {
    stage(with_resource(host, |c| c.stage()))
}

pub(crate) fn fetch_depth(host: HostContext) -> i32 {
    with_resource(host, |c| c.depth())
}

pub(crate) fn fetch_primary_entity_id(host: HostContext) -> Guid {
    with_resource(host, |c| c.primary_entity_id()).into()
}

/// The ParentContext chain, nearest first.
pub(crate) fn fetch_parents(host: HostContext) -> Vec<ContextFrame> {
    let mut parents = Vec::new();
    let mut next = with_resource(host, |c| c.parent());
    while let Some(parent) = next {
        parents.push(parent.frame().into());
        next = parent.parent();
    }
    parents
}

/// One collection, fetched packed (one copy into this component; see
/// `crate::packed`).
pub(crate) fn fetch_parameters(
    host: HostContext,
    part: Part,
) -> (Parameters, crate::packed::Packed) {
    let which = match part {
        Part::Input => wc::Collection::Input,
        Part::Output => wc::Collection::Output,
        Part::Shared => wc::Collection::Shared,
    };
    let bytes = with_resource(host, |c| c.packed_parameters(which));
    crate::packed::decode(bytes).unwrap_or_else(|why| {
        // Only a host that encodes wrongly gets here; trapping says so instead of running on bad data.
        panic!("weft-sdk: the host's packed parameters do not decode ({why})")
    })
}

pub(crate) fn fetch_image(host: HostContext, alias: &str, pre: bool) -> Option<Entity> {
    with_resource(host, |c| {
        if pre {
            c.pre_entity_image(alias)
        } else {
            c.post_entity_image(alias)
        }
    })
    .map(Into::into)
}

/// Sets (`Some`) or removes (`None`) one input parameter on the host. One
/// function per collection rather than one with a `match`, so a component
/// imports only the setters of the collections its plug-ins change (see
/// `Context::collection_mut`).
pub(crate) fn set_input_parameter(host: HostContext, name: &str, value: Option<&ParameterValue>) {
    let value = value.map(wt::ParameterValue::from);
    with_resource(host, |c| c.set_input_parameter(name, value.as_ref()));
}

/// [`set_input_parameter`] for OutputParameters.
pub(crate) fn set_output_parameter(host: HostContext, name: &str, value: Option<&ParameterValue>) {
    let value = value.map(wt::ParameterValue::from);
    with_resource(host, |c| c.set_output_parameter(name, value.as_ref()));
}

/// [`set_input_parameter`] for SharedVariables.
pub(crate) fn set_shared_variable(host: HostContext, name: &str, value: Option<&ParameterValue>) {
    let value = value.map(wt::ParameterValue::from);
    with_resource(host, |c| c.set_shared_variable(name, value.as_ref()));
}

/// Sets one attribute of the entity an input parameter holds (see
/// [`Context::flush`](crate::Context)).
pub(crate) fn set_input_attribute(
    host: HostContext,
    parameter: &str,
    attribute: &str,
    value: &Value,
) {
    let value = wt::Value::from(value);
    with_resource(host, |c| {
        c.set_input_attribute(parameter, attribute, Some(&value))
    });
}

impl From<PluginError> for wc::PluginError {
    fn from(e: PluginError) -> wc::PluginError {
        wc::PluginError {
            message: e.message,
            status: match e.status {
                OperationStatus::Failed => wc::OperationStatus::Failed,
                OperationStatus::Canceled => wc::OperationStatus::Canceled,
                OperationStatus::Retry => wc::OperationStatus::Retry,
                OperationStatus::Suspended => wc::OperationStatus::Suspended,
                OperationStatus::Succeeded => wc::OperationStatus::Succeeded,
            },
            error_code: e.error_code,
        }
    }
}

impl From<wt::ServiceError> for ServiceError {
    fn from(e: wt::ServiceError) -> ServiceError {
        ServiceError {
            kind: match e.kind {
                wt::ServiceErrorKind::InvalidArgument => ServiceErrorKind::InvalidArgument,
                wt::ServiceErrorKind::NotFound => ServiceErrorKind::NotFound,
                wt::ServiceErrorKind::Denied => ServiceErrorKind::Denied,
                wt::ServiceErrorKind::Unavailable => ServiceErrorKind::Unavailable,
                wt::ServiceErrorKind::Timeout => ServiceErrorKind::Timeout,
                wt::ServiceErrorKind::QuotaExceeded => ServiceErrorKind::QuotaExceeded,
                wt::ServiceErrorKind::Failed => ServiceErrorKind::Failed,
            },
            message: e.message,
            error_code: e.error_code,
            status_code: e.status_code,
        }
    }
}

impl From<&Query> for wo::Query {
    fn from(q: &Query) -> wo::Query {
        wo::Query {
            entity_name: q.entity_name.clone(),
            columns: q.columns.clone(),
            conditions: q
                .conditions
                .iter()
                .map(|c| wo::Condition {
                    attribute: c.attribute.clone(),
                    operator: match c.operator {
                        ConditionOperator::Equal => wo::ConditionOperator::Equal,
                        ConditionOperator::NotEqual => wo::ConditionOperator::NotEqual,
                        ConditionOperator::GreaterThan => wo::ConditionOperator::GreaterThan,
                        ConditionOperator::LessThan => wo::ConditionOperator::LessThan,
                        ConditionOperator::Null => wo::ConditionOperator::Null,
                        ConditionOperator::NotNull => wo::ConditionOperator::NotNull,
                    },
                    values: c.values.iter().map(Into::into).collect(),
                })
                .collect(),
            orders: q
                .orders
                .iter()
                .map(|(attribute, descending)| wo::Order {
                    attribute: attribute.clone(),
                    descending: *descending,
                })
                .collect(),
            top: q.top,
        }
    }
}

/// The [`crate::Host`] of a real plug-in: every call goes through the WIT imports.
pub(crate) struct WasmHost;

impl crate::Host for WasmHost {
    fn trace(&self, text: &str) {
        crate::wit::weft::plugin::tracing::trace(text);
    }

    /// The changes are already the host's: [`crate::Services::notify`] hands
    /// them over through the context's setters first.
    fn notify(
        &self,
        endpoint: Guid,
        _changes: crate::ContextChanges<'_>,
    ) -> Result<String, ServiceError> {
        notification_service::execute(endpoint.into()).map_err(Into::into)
    }

    fn create(&self, entity: &Entity) -> Result<Guid, ServiceError> {
        wo::create(&entity.into())
            .map(Into::into)
            .map_err(Into::into)
    }

    fn retrieve(
        &self,
        entity_name: &str,
        id: Guid,
        columns: Option<&[String]>,
    ) -> Result<Entity, ServiceError> {
        wo::retrieve(entity_name, id.into(), columns)
            .map(Into::into)
            .map_err(Into::into)
    }

    fn retrieve_multiple(&self, query: &Query) -> Result<EntityCollection, ServiceError> {
        wo::retrieve_multiple(&query.into())
            .map(Into::into)
            .map_err(Into::into)
    }

    fn update(&self, entity: &Entity) -> Result<(), ServiceError> {
        wo::update(&entity.into()).map_err(Into::into)
    }

    fn delete(&self, entity_name: &str, id: Guid) -> Result<(), ServiceError> {
        wo::delete(entity_name, id.into()).map_err(Into::into)
    }

    fn unsecure_config(&self) -> Option<String> {
        crate::wit::weft::plugin::configuration::unsecure()
    }

    fn secure_config(&self) -> Option<String> {
        crate::wit::weft::plugin::configuration::secure()
    }

    #[cfg(target_arch = "wasm32")]
    fn send_http(
        &self,
        request: &crate::http::Request,
    ) -> Result<crate::http::Response, crate::http::HttpError> {
        crate::http::send_wasi(request)
    }
}

/// Runs plug-in `P` on the context the host lent to `execute`, then hands the
/// host the changes it made. Called by [`crate::export_plugins!`].
pub fn run<P: crate::Plugin>(context: &wc::ExecutionContext) -> Result<(), wc::PluginError> {
    let mut ctx = Context::from_host(HostContext(context.handle()));
    let result = P::execute(&mut ctx, &crate::Services::component());
    if result.is_ok() {
        ctx.flush_last();
    }
    leak(ctx);
    result.map_err(wc::PluginError::from)
}

/// Leaves `ctx` allocated instead of dropping it: the host runs every
/// invocation in a fresh instance and throws its memory away afterwards, so
/// freeing the context's few dozen strings one by one (about a tenth of a
/// step's guest time) would be work for nothing.
fn leak(ctx: Context) {
    core::mem::forget(ctx);
}

impl From<ArgumentType> for ww::ArgumentType {
    fn from(t: ArgumentType) -> ww::ArgumentType {
        match t {
            ArgumentType::Boolean => ww::ArgumentType::Boolean,
            ArgumentType::DateTime => ww::ArgumentType::Datetime,
            ArgumentType::Decimal => ww::ArgumentType::Decimal,
            ArgumentType::Double => ww::ArgumentType::Double,
            ArgumentType::EntityReference => ww::ArgumentType::EntityReference,
            ArgumentType::Integer => ww::ArgumentType::Integer,
            ArgumentType::Money => ww::ArgumentType::Money,
            ArgumentType::OptionSetValue => ww::ArgumentType::OptionSetValue,
            ArgumentType::String => ww::ArgumentType::String,
        }
    }
}

fn argument_specs(specs: Vec<ArgumentSpec>) -> Vec<ww::ArgumentSpec> {
    specs
        .into_iter()
        .map(|s| ww::ArgumentSpec {
            name: s.name,
            type_: s.ty.into(),
            required: s.required,
            reference_target: s.reference_target,
        })
        .collect()
}

/// Activity `A`'s signature under `name`. Called by [`crate::export_activities!`].
pub fn activity_signature<A: Activity>(name: String) -> ww::ActivitySignature {
    ww::ActivitySignature {
        name,
        inputs: argument_specs(A::inputs()),
        outputs: argument_specs(A::outputs()),
    }
}

/// Runs activity `A` on the context the host lent to `execute-activity` and
/// returns the outputs it set (checked against its declared outputs). Called
/// by [`crate::export_activities!`].
pub fn run_activity<A: Activity>(
    context: &wc::ExecutionContext,
    workflow: ww::WorkflowContext,
    inputs: Vec<ww::Argument>,
) -> Result<Vec<ww::Argument>, wc::PluginError> {
    let mut ctx = Context::from_host(HostContext(context.handle()));
    let workflow = WorkflowContext {
        stage_name: workflow.stage_name,
        workflow_category: workflow.workflow_category,
        workflow_mode: workflow.workflow_mode,
        workflow_id: workflow.workflow_id.into(),
        workflow_name: workflow.workflow_name,
    };
    let inputs = Arguments::from_vec(
        inputs
            .into_iter()
            .map(|a| (a.name, a.value.into()))
            .collect(),
    );
    let mut outputs = Arguments::new();
    A::execute(
        &mut ctx,
        &workflow,
        &inputs,
        &mut outputs,
        &crate::Services::component(),
    )
    .and_then(|()| outputs.check(&A::outputs()))
    .map_err(wc::PluginError::from)?;
    ctx.flush_last();
    leak(ctx);
    Ok(outputs
        .into_vec()
        .into_iter()
        .map(|(name, value)| ww::Argument {
            name,
            value: (&value).into(),
        })
        .collect())
}

/// The last segment of a Rust type's path: a plug-in type's default name
/// (`my_plugin::Validate` → `Validate`). Borrowed, so `execute` finds the type
/// it was asked for without building the list of names.
pub fn short_type_name(full: &'static str) -> &'static str {
    // Byte scans, not `split`/`rsplit("::")`: this runs on every `execute`, and
    // a string searcher's set-up cost more than the search.
    let bytes = full.as_bytes();
    let end = bytes.iter().position(|b| *b == b'<').unwrap_or(bytes.len());
    // A path's last `:` ends its last `::` (a single one does not occur).
    let start = bytes[..end]
        .iter()
        .rposition(|b| *b == b':')
        .map_or(0, |i| i + 1);
    &full[start..end]
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    /// A type's default name is its path's last segment, without generics.
    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name("my_plugin::Validate"), "Validate");
        assert_eq!(short_type_name("a::b::c::Enrich"), "Enrich");
        assert_eq!(short_type_name("Bare"), "Bare");
        assert_eq!(short_type_name("my::Wrap<other::Inner>"), "Wrap");
        assert_eq!(short_type_name("Wrap<x::Y>"), "Wrap");
    }
}
