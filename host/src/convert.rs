//! Conversions between the three value models the pipeline joins: the sandbox's WIT types (what plug-ins
//! see), weft-store's values and rows (what is stored), and weft-message's `RemoteExecutionContext` (what
//! system jobs carry and endpoints receive).
//!
//! Owns only the mapping, never the semantics: it must not run operations, touch the store or the sandbox.
//! Conversions that can lose nothing are plain functions; those that can meet an unrepresentable value
//! return a `ConvertError` that names it.

use uuid::Uuid;
use weft_message as msg;
use weft_store::{Row, Value as StoreValue};

use crate::sandbox::wit::context::{ContextFrame, ExecutionContext, IsolationMode, Mode, Stage};
use crate::sandbox::wit::types::{
    Attribute, Entity, EntityCollection, EntityReference, Guid, Image, Parameter, ParameterValue,
    Value,
};

/// A value that has no counterpart in the target model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

/// WIT GUID → uuid.
pub fn uuid(g: Guid) -> Uuid {
    Uuid::from_u128((u128::from(g.hi) << 64) | u128::from(g.lo))
}

/// uuid → WIT GUID.
pub fn guid(u: Uuid) -> Guid {
    let v = u.as_u128();
    Guid {
        hi: (v >> 64) as u64,
        lo: v as u64,
    }
}

/// A WIT attribute value → a store value; `attribute` names it in errors.
pub fn to_store(attribute: &str, v: &Value) -> Result<StoreValue, ConvertError> {
    Ok(match v {
        Value::Null => StoreValue::Null,
        Value::Boolean(b) => StoreValue::Boolean(*b),
        Value::Integer(i) => StoreValue::Integer(*i),
        Value::BigInteger(i) => StoreValue::BigInt(*i),
        Value::Double(d) => StoreValue::Double(*d),
        Value::Decimal(s) => StoreValue::Decimal(s.clone()),
        Value::Money(s) => StoreValue::Money(s.clone()),
        Value::String(s) => StoreValue::String(s.clone()),
        Value::Datetime(ms) => StoreValue::DateTime(*ms),
        Value::Guid(g) => StoreValue::Guid(uuid(*g)),
        Value::EntityReference(r) => StoreValue::EntityReference {
            logical_name: r.logical_name.clone(),
            id: uuid(r.id),
        },
        Value::OptionSetValue(o) => StoreValue::OptionSetValue(*o),
        Value::OptionSetValueCollection(os) => StoreValue::OptionSetValueCollection(os.clone()),
        Value::EntityReferenceCollection(_) | Value::StringArray(_) => {
            return Err(ConvertError(format!(
                "attribute `{attribute}`: a list value cannot be stored in a column"
            )));
        }
    })
}

/// A store value → a WIT value.
pub fn from_store(v: &StoreValue) -> Value {
    match v {
        StoreValue::Null => Value::Null,
        StoreValue::Boolean(b) => Value::Boolean(*b),
        StoreValue::Integer(i) => Value::Integer(*i),
        StoreValue::BigInt(i) => Value::BigInteger(*i),
        StoreValue::Double(d) => Value::Double(*d),
        StoreValue::Decimal(s) => Value::Decimal(s.clone()),
        StoreValue::Money(s) => Value::Money(s.clone()),
        StoreValue::String(s) => Value::String(s.clone()),
        StoreValue::DateTime(ms) => Value::Datetime(*ms),
        StoreValue::Guid(g) => Value::Guid(guid(*g)),
        StoreValue::EntityReference { logical_name, id } => {
            Value::EntityReference(EntityReference {
                logical_name: logical_name.clone(),
                id: guid(*id),
                name: None,
            })
        }
        StoreValue::OptionSetValue(o) => Value::OptionSetValue(*o),
        StoreValue::OptionSetValueCollection(os) => Value::OptionSetValueCollection(os.clone()),
    }
}

/// A WIT entity's attributes → store attributes.
pub fn attributes_to_store(entity: &Entity) -> Result<weft_store::Attributes, ConvertError> {
    entity
        .attributes
        .iter()
        .map(|a| Ok((a.name.clone(), to_store(&a.name, &a.value)?)))
        .collect()
}

/// A stored row → a WIT entity (attributes in name order).
pub fn row_to_entity(row: &Row) -> Entity {
    Entity {
        logical_name: row.table.clone(),
        id: Some(guid(row.id)),
        attributes: row
            .attributes
            .iter()
            .map(|(name, v)| Attribute {
                name: name.clone(),
                value: from_store(v),
            })
            .collect(),
        formatted_values: Vec::new(),
        row_version: None,
    }
}

// ---- WIT → weft-message -------------------------------------------------------------------------------

fn msg_value(v: &Value) -> msg::Value {
    let decimal = |s: &str| msg::Decimal::parse(s);
    match v {
        Value::Null => msg::Value::Null,
        Value::Boolean(b) => msg::Value::Boolean(*b),
        Value::Integer(i) => msg::Value::Int(*i),
        Value::BigInteger(i) => msg::Value::Long(*i),
        Value::Double(d) => msg::Value::Double(*d),
        Value::Decimal(s) => {
            decimal(s).map_or_else(|| msg::Value::String(s.clone()), msg::Value::Decimal)
        }
        Value::Money(s) => {
            decimal(s).map_or_else(|| msg::Value::String(s.clone()), msg::Value::Money)
        }
        Value::String(s) => msg::Value::String(s.clone()),
        Value::Datetime(ms) => msg::Value::DateTime(msg::DateTime::utc(*ms)),
        Value::Guid(g) => msg::Value::Guid(uuid(*g)),
        Value::EntityReference(r) => msg::Value::EntityReference(msg_reference(r)),
        Value::OptionSetValue(o) => msg::Value::OptionSetValue(*o),
        Value::OptionSetValueCollection(os) => msg::Value::OptionSetValueCollection(os.clone()),
        Value::EntityReferenceCollection(rs) => {
            msg::Value::EntityReferenceCollection(rs.iter().map(msg_reference).collect())
        }
        // Dataverse's string lists in contexts are column sets (Retrieve's `ColumnSet`).
        Value::StringArray(cs) => msg::Value::ColumnSet(msg::ColumnSet {
            all_columns: false,
            columns: cs.clone(),
        }),
    }
}

fn msg_reference(r: &EntityReference) -> msg::EntityReference {
    msg::EntityReference {
        name: r.name.clone(),
        ..msg::EntityReference::new(&r.logical_name, uuid(r.id))
    }
}

fn msg_entity(e: &Entity) -> msg::Entity {
    msg::Entity {
        attributes: e
            .attributes
            .iter()
            .map(|a| (a.name.clone(), msg_value(&a.value)))
            .collect(),
        formatted_values: e.formatted_values.clone(),
        row_version: e.row_version.clone(),
        ..msg::Entity::new(&e.logical_name, e.id.map(uuid).unwrap_or_default())
    }
}

fn msg_collection(c: &EntityCollection) -> msg::EntityCollection {
    msg::EntityCollection {
        entities: c.entities.iter().map(msg_entity).collect(),
        entity_name: Some(c.entity_name.clone()),
        more_records: c.more_records,
        paging_cookie: c.paging_cookie.clone(),
        total_record_count: c.total_record_count,
        ..Default::default()
    }
}

fn msg_params(ps: &[Parameter]) -> msg::Params {
    ps.iter()
        .map(|p| {
            let v = match &p.value {
                ParameterValue::Value(v) => msg_value(v),
                ParameterValue::Entity(e) => msg::Value::Entity(Box::new(msg_entity(e))),
                ParameterValue::EntityCollection(c) => {
                    msg::Value::EntityCollection(msg_collection(c))
                }
            };
            (p.name.clone(), v)
        })
        .collect()
}

fn msg_images(images: &[Image]) -> Vec<(String, msg::Entity)> {
    images
        .iter()
        .map(|i| (i.alias.clone(), msg_entity(&i.entity)))
        .collect()
}

/// Dataverse's number for a stage.
pub fn stage_number(stage: Stage) -> i32 {
    crate::context::stage_number(stage)
}

fn frame_to_remote(f: &ContextFrame) -> msg::RemoteExecutionContext {
    msg::RemoteExecutionContext {
        business_unit_id: uuid(f.business_unit_id),
        correlation_id: uuid(f.correlation_id),
        depth: f.depth,
        initiating_user_agent: f.initiating_user_agent.clone(),
        initiating_user_azure_active_directory_object_id: f
            .initiating_user_azure_active_directory_object_id
            .map(uuid),
        initiating_user_id: uuid(f.initiating_user_id),
        input_parameters: msg_params(&f.input_parameters),
        is_executing_offline: f.is_executing_offline,
        is_in_transaction: f.is_in_transaction,
        is_offline_playback: f.is_offline_playback,
        isolation_mode: match f.isolation_mode {
            IsolationMode::None => 1,
            IsolationMode::Sandbox => 2,
        },
        message_name: f.message_name.clone(),
        mode: match f.mode {
            Mode::Synchronous => 0,
            Mode::Asynchronous => 1,
        },
        operation_created_on: msg::DateTime::utc(f.operation_created_on),
        operation_id: uuid(f.operation_id),
        organization_id: uuid(f.organization_id),
        organization_name: f.organization_name.clone(),
        output_parameters: msg_params(&f.output_parameters),
        owning_extension: Some(msg_reference(&f.owning_extension)),
        parent_context: None,
        post_entity_images: msg_images(&f.post_entity_images),
        pre_entity_images: msg_images(&f.pre_entity_images),
        primary_entity_id: uuid(f.primary_entity_id),
        primary_entity_name: f.primary_entity_name.clone(),
        request_id: f.request_id.map(uuid),
        secondary_entity_name: f.secondary_entity_name.clone(),
        shared_variables: msg_params(&f.shared_variables),
        stage: stage_number(f.stage),
        user_azure_active_directory_object_id: f.user_azure_active_directory_object_id.map(uuid),
        user_id: uuid(f.user_id),
    }
}

/// A WIT execution context → a RemoteExecutionContext (the flattened parents become the ParentContext chain).
pub fn to_remote(ctx: &ExecutionContext) -> msg::RemoteExecutionContext {
    let mut parent: Option<Box<msg::RemoteExecutionContext>> = None;
    for f in ctx.parents.iter().rev() {
        let mut p = frame_to_remote(f);
        p.parent_context = parent.take();
        parent = Some(Box::new(p));
    }
    let mut out = frame_to_remote(&ctx.frame);
    out.parent_context = parent;
    out
}

// ---- weft-message → WIT -------------------------------------------------------------------------------

fn wit_value(name: &str, v: &msg::Value) -> Result<Value, ConvertError> {
    Ok(match v {
        msg::Value::Null => Value::Null,
        msg::Value::Boolean(b) => Value::Boolean(*b),
        msg::Value::Int(i) => Value::Integer(*i),
        msg::Value::Long(i) => Value::BigInteger(*i),
        msg::Value::Double(d) => Value::Double(*d),
        msg::Value::Decimal(d) => Value::Decimal(d.as_str().to_owned()),
        msg::Value::Money(d) => Value::Money(d.as_str().to_owned()),
        msg::Value::String(s) => Value::String(s.clone()),
        msg::Value::DateTime(d) => Value::Datetime(d.ms),
        msg::Value::Guid(g) => Value::Guid(guid(*g)),
        msg::Value::EntityReference(r) => Value::EntityReference(wit_reference(r)),
        msg::Value::OptionSetValue(o) => Value::OptionSetValue(*o),
        msg::Value::OptionSetValueCollection(os) => Value::OptionSetValueCollection(os.clone()),
        msg::Value::EntityReferenceCollection(rs) => {
            Value::EntityReferenceCollection(rs.iter().map(wit_reference).collect())
        }
        msg::Value::ColumnSet(c) => Value::StringArray(c.columns.clone()),
        other => {
            return Err(ConvertError(format!(
                "`{name}`: {} values have no plug-in representation",
                match other {
                    msg::Value::AliasedValue(_) => "AliasedValue",
                    msg::Value::Relationship(_) => "Relationship",
                    msg::Value::StringPairs(_) => "KeyValuePairOfstringstring",
                    _ => "nested entity",
                }
            )));
        }
    })
}

fn wit_reference(r: &msg::EntityReference) -> EntityReference {
    EntityReference {
        logical_name: r.logical_name.clone().unwrap_or_default(),
        id: guid(r.id),
        name: r.name.clone(),
    }
}

fn wit_entity(e: &msg::Entity) -> Result<Entity, ConvertError> {
    Ok(Entity {
        logical_name: e.logical_name.clone().unwrap_or_default(),
        id: (!e.id.is_nil()).then(|| guid(e.id)),
        attributes: e
            .attributes
            .iter()
            .map(|(n, v)| {
                Ok(Attribute {
                    name: n.clone(),
                    value: wit_value(n, v)?,
                })
            })
            .collect::<Result<_, ConvertError>>()?,
        formatted_values: e.formatted_values.clone(),
        row_version: e.row_version.clone(),
    })
}

fn wit_params(ps: &msg::Params) -> Result<Vec<Parameter>, ConvertError> {
    ps.iter()
        .map(|(name, v)| {
            let value = match v {
                msg::Value::Entity(e) => ParameterValue::Entity(wit_entity(e)?),
                msg::Value::EntityCollection(c) => {
                    ParameterValue::EntityCollection(EntityCollection {
                        entity_name: c.entity_name.clone().unwrap_or_default(),
                        entities: c
                            .entities
                            .iter()
                            .map(wit_entity)
                            .collect::<Result<_, _>>()?,
                        more_records: c.more_records,
                        paging_cookie: c.paging_cookie.clone(),
                        total_record_count: c.total_record_count,
                    })
                }
                v => ParameterValue::Value(wit_value(name, v)?),
            };
            Ok(Parameter {
                name: name.clone(),
                value,
            })
        })
        .collect()
}

fn wit_images(images: &[(String, msg::Entity)]) -> Result<Vec<Image>, ConvertError> {
    images
        .iter()
        .map(|(alias, e)| {
            Ok(Image {
                alias: alias.clone(),
                entity: wit_entity(e)?,
            })
        })
        .collect()
}

fn remote_to_frame(c: &msg::RemoteExecutionContext) -> Result<ContextFrame, ConvertError> {
    let stage = crate::context::stage_from_number(c.stage)
        .map_err(|e| ConvertError(format!("Stage: {e}")))?;
    Ok(ContextFrame {
        message_name: c.message_name.clone(),
        primary_entity_name: c.primary_entity_name.clone(),
        secondary_entity_name: c.secondary_entity_name.clone(),
        primary_entity_id: guid(c.primary_entity_id),
        stage,
        mode: if c.mode == 1 {
            Mode::Asynchronous
        } else {
            Mode::Synchronous
        },
        depth: c.depth,
        user_id: guid(c.user_id),
        initiating_user_id: guid(c.initiating_user_id),
        initiating_user_agent: c.initiating_user_agent.clone(),
        initiating_user_azure_active_directory_object_id: c
            .initiating_user_azure_active_directory_object_id
            .map(guid),
        user_azure_active_directory_object_id: c.user_azure_active_directory_object_id.map(guid),
        business_unit_id: guid(c.business_unit_id),
        organization_id: guid(c.organization_id),
        organization_name: c.organization_name.clone(),
        correlation_id: guid(c.correlation_id),
        request_id: c.request_id.map(guid),
        operation_id: guid(c.operation_id),
        operation_created_on: c.operation_created_on.ms,
        is_in_transaction: c.is_in_transaction,
        is_executing_offline: c.is_executing_offline,
        is_offline_playback: c.is_offline_playback,
        isolation_mode: if c.isolation_mode == 2 {
            IsolationMode::Sandbox
        } else {
            IsolationMode::None
        },
        owning_extension: c.owning_extension.as_ref().map(wit_reference).unwrap_or(
            EntityReference {
                logical_name: "sdkmessageprocessingstep".into(),
                id: guid(Uuid::nil()),
                name: None,
            },
        ),
        input_parameters: wit_params(&c.input_parameters)?,
        output_parameters: wit_params(&c.output_parameters)?,
        shared_variables: wit_params(&c.shared_variables)?,
        pre_entity_images: wit_images(&c.pre_entity_images)?,
        post_entity_images: wit_images(&c.post_entity_images)?,
    })
}

/// A RemoteExecutionContext (e.g. a system job's data) → the WIT context a plug-in runs with.
pub fn from_remote(c: &msg::RemoteExecutionContext) -> Result<ExecutionContext, ConvertError> {
    Ok(ExecutionContext {
        frame: remote_to_frame(c)?,
        parents: c.parents().map(remote_to_frame).collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{ContextSpec, build_context};

    /// A context survives WIT → RemoteExecutionContext → JSON → WIT unchanged, parents included.
    #[test]
    fn context_round_trips_through_json() {
        let mut target = Entity {
            logical_name: "account".into(),
            id: Some(guid(Uuid::from_u128(7))),
            attributes: vec![
                Attribute {
                    name: "name".into(),
                    value: Value::String("Contoso".into()),
                },
                Attribute {
                    name: "revenue".into(),
                    value: Value::Money("10.5000".into()),
                },
            ],
            formatted_values: Vec::new(),
            row_version: None,
        };
        let mut ctx = build_context(ContextSpec {
            message: "Create".into(),
            table: "account".into(),
            stage: Stage::PostOperation,
            mode: Mode::Asynchronous,
            target: Some(target.clone()),
            depth: 2,
            created_on_ms: 1_700_000_000_000,
        });
        ctx.frame.shared_variables.push(Parameter {
            name: "tag".into(),
            value: ParameterValue::Value(Value::String("t1".into())),
        });
        let mut parent = ctx.frame.clone();
        parent.stage = Stage::PreValidation;
        parent.depth = 1;
        ctx.parents.push(parent);
        let json = msg::encode(&to_remote(&ctx), msg::Format::Json);
        let back = from_remote(&msg::decode(&json, msg::Format::Json).unwrap()).unwrap();
        // JSON carries Money as a number without the .NET type; the reader gives it back as a decimal.
        target.attributes[1].value = Value::Decimal("10.5000".into());
        let back_target = match &back.frame.input_parameters[0].value {
            ParameterValue::Entity(e) => e.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(back_target.attributes[0], target.attributes[0]);
        assert_eq!(back.frame.shared_variables, ctx.frame.shared_variables);
        assert_eq!(back.parents.len(), 1);
        assert_eq!(back.parents[0].stage, Stage::PreValidation);
        assert_eq!(back.frame.depth, 2);
        assert_eq!(back.frame.correlation_id, ctx.frame.correlation_id);
    }

    /// List values are refused as column values with the attribute's name.
    #[test]
    fn lists_are_not_storable() {
        let err = to_store("tags", &Value::StringArray(vec!["a".into()])).unwrap_err();
        assert!(err.0.contains("`tags`"), "{err}");
    }
}
