//! Conversions between the SDK's types and the generated WIT types. The only
//! module that knows both; everything else sees one side.

use crate::wit::weft::plugin::{
    context as wc, notification_service, organization_service as wo, types as wt,
};
use crate::{
    ConditionOperator, Context, ContextFrame, Entity, EntityCollection, EntityReference, Guid,
    IsolationMode, Mode, OperationStatus, ParameterValue, Parameters, PluginError, Query,
    ServiceError, ServiceErrorKind, Stage, Value,
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
                .map(|p| {
                    let value = match p.value {
                        wt::ParameterValue::Value(v) => ParameterValue::Value(v.into()),
                        wt::ParameterValue::Entity(e) => ParameterValue::Entity(e.into()),
                        wt::ParameterValue::EntityCollection(c) => {
                            ParameterValue::EntityCollection(c.into())
                        }
                    };
                    (p.name, value)
                })
                .collect(),
        )
    }
}
pub(crate) fn parameters_to_wit(params: &Parameters) -> Vec<wt::Parameter> {
    params
        .iter()
        .map(|(name, value)| wt::Parameter {
            name: name.clone(),
            value: match value {
                ParameterValue::Value(v) => wt::ParameterValue::Value(v.into()),
                ParameterValue::Entity(e) => wt::ParameterValue::Entity(e.into()),
                ParameterValue::EntityCollection(c) => {
                    wt::ParameterValue::EntityCollection(c.into())
                }
            },
        })
        .collect()
}

/// Moves a parameter collection into WIT form (no string copies).
fn parameters_into_wit(params: Parameters) -> Vec<wt::Parameter> {
    params
        .0
        .into_iter()
        .map(|(name, value)| wt::Parameter {
            name,
            value: match value {
                ParameterValue::Value(v) => wt::ParameterValue::Value(value_into_wit(v)),
                ParameterValue::Entity(e) => wt::ParameterValue::Entity(entity_into_wit(e)),
                ParameterValue::EntityCollection(c) => {
                    wt::ParameterValue::EntityCollection(wt::EntityCollection {
                        entity_name: c.entity_name,
                        entities: c.entities.into_iter().map(entity_into_wit).collect(),
                        more_records: c.more_records,
                        paging_cookie: c.paging_cookie,
                        total_record_count: c.total_record_count,
                    })
                }
            },
        })
        .collect()
}

fn entity_into_wit(e: Entity) -> wt::Entity {
    wt::Entity {
        logical_name: e.logical_name,
        id: e.id.map(Into::into),
        attributes: e
            .attributes
            .into_iter()
            .map(|(name, value)| wt::Attribute {
                name,
                value: value_into_wit(value),
            })
            .collect(),
        formatted_values: e.formatted_values,
        row_version: e.row_version,
    }
}

fn value_into_wit(v: Value) -> wt::Value {
    match v {
        Value::Decimal(s) => wt::Value::Decimal(s),
        Value::Money(s) => wt::Value::Money(s),
        Value::String(s) => wt::Value::String(s),
        Value::OptionSetValueCollection(v) => wt::Value::OptionSetValueCollection(v),
        Value::StringArray(v) => wt::Value::StringArray(v),
        Value::EntityReference(r) => wt::Value::EntityReference(wt::EntityReference {
            logical_name: r.logical_name,
            id: r.id.into(),
            name: r.name,
        }),
        // The rest carry no heap data worth moving.
        other => (&other).into(),
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
            stage: match f.stage {
                wc::Stage::PreValidation => Stage::PreValidation,
                wc::Stage::PreOperation => Stage::PreOperation,
                wc::Stage::MainOperation => Stage::MainOperation,
                wc::Stage::PostOperation => Stage::PostOperation,
            },
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

impl From<wc::ExecutionContext> for Context {
    fn from(c: wc::ExecutionContext) -> Context {
        Context::new(
            c.frame.into(),
            c.parents.into_iter().map(Into::into).collect(),
        )
    }
}

/// The changed writable parts of a finished invocation, moved out of the context.
pub(crate) fn into_changes(ctx: Context) -> wc::ContextChanges {
    let (input, output, shared) = ctx.into_changed_parts();
    wc::ContextChanges {
        input_parameters: input.map(parameters_into_wit),
        output_parameters: output.map(parameters_into_wit),
        shared_variables: shared.map(parameters_into_wit),
    }
}

pub(crate) fn changes_to_wit(changes: crate::ContextChanges<'_>) -> wc::ContextChanges {
    wc::ContextChanges {
        input_parameters: changes.input_parameters.map(parameters_to_wit),
        output_parameters: changes.output_parameters.map(parameters_to_wit),
        shared_variables: changes.shared_variables.map(parameters_to_wit),
    }
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

    fn notify(
        &self,
        endpoint: Guid,
        changes: crate::ContextChanges<'_>,
    ) -> Result<String, ServiceError> {
        notification_service::execute(endpoint.into(), &changes_to_wit(changes)).map_err(Into::into)
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
}

/// Runs plug-in `P` on a context received from the host. Called by
/// [`crate::export_plugin!`].
pub fn run<P: crate::Plugin>(
    context: wc::ExecutionContext,
) -> Result<wc::ContextChanges, wc::PluginError> {
    let mut ctx: Context = context.into();
    P::execute(&mut ctx, &crate::Services::new(&WasmHost)).map_err(wc::PluginError::from)?;
    Ok(into_changes(ctx))
}
