//! Custom API declarations (`[[custom_api]]`): a message whose main operation (stage 30) is a plug-in, with
//! typed request parameters and response properties (dataverse.md §1: stage 30 is Custom API only), its
//! binding (the `customapi` table's `bindingtype`: 0 Global, 1 Entity, 2 EntityCollection) and whether it
//! is a function (`isfunction`: called with GET) or an action (POST).
//!
//! Owns the declared shape and the type check of a parameter value against it. It must not run plug-ins:
//! the pipeline checks requests and responses with [`ParameterType::matches`].

use serde::Deserialize;
use uuid::Uuid;

use crate::convert::guid;
use crate::sandbox::wit::types::{EntityReference, Value};

/// A Custom API parameter or response-property type (Dataverse's `Type` option names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ParameterType {
    /// `bool`.
    Boolean,
    /// A date and time.
    DateTime,
    /// A decimal number.
    Decimal,
    /// A floating-point number.
    Float,
    /// A 32-bit integer.
    Integer,
    /// A money amount.
    Money,
    /// An option value.
    Picklist,
    /// A string.
    String,
    /// A list of strings.
    StringArray,
    /// A unique identifier.
    Guid,
    /// A reference to a row.
    EntityReference,
}

impl ParameterType {
    /// Whether `value` is of this type.
    pub fn matches(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (ParameterType::Boolean, Value::Boolean(_))
                | (ParameterType::DateTime, Value::Datetime(_))
                | (ParameterType::Decimal, Value::Decimal(_))
                | (ParameterType::Float, Value::Double(_))
                | (ParameterType::Integer, Value::Integer(_))
                | (ParameterType::Money, Value::Money(_))
                | (ParameterType::Picklist, Value::OptionSetValue(_))
                | (ParameterType::String, Value::String(_))
                | (ParameterType::StringArray, Value::StringArray(_))
                | (ParameterType::Guid, Value::Guid(_))
                | (ParameterType::EntityReference, Value::EntityReference(_))
        )
    }
}

/// A request parameter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestParameter {
    /// Its unique name (the InputParameters key).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Whether a request may leave it out.
    #[serde(default)]
    pub optional: bool,
}

/// A response property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseProperty {
    /// Its unique name (the OutputParameters key).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParameterType,
}

/// `[[custom_api]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCustomApi {
    pub(super) unique_name: String,
    pub(super) plugin: String,
    /// Dataverse's `bindingtype` number; absent = 1 (Entity) with a `bound_table`, else 0 (Global).
    pub(super) binding_type: Option<i64>,
    pub(super) bound_table: Option<String>,
    #[serde(default)]
    pub(super) is_function: bool,
    #[serde(default)]
    pub(super) request_parameter: Vec<RequestParameter>,
    #[serde(default)]
    pub(super) response_property: Vec<ResponseProperty>,
}

/// A validated Custom API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomApiDecl {
    /// Id (derived from the unique name).
    pub id: Uuid,
    /// The message name, e.g. `weft_Greet`.
    pub unique_name: String,
    /// The plug-in type that is the main operation.
    pub plugin_type: Uuid,
    /// What it is bound to.
    pub binding: Binding,
    /// A function (`isfunction`): called with GET, parameters in the URL. Otherwise an action (POST).
    pub is_function: bool,
    /// Request parameters.
    pub request_parameters: Vec<RequestParameter>,
    /// Response properties.
    pub response_properties: Vec<ResponseProperty>,
}

impl CustomApiDecl {
    /// The `Target` request parameter of a call on row `id`; None unless the API is bound to a row.
    pub fn target(&self, id: Uuid) -> Option<(String, Value)> {
        let Binding::Entity(table) = &self.binding else {
            return None;
        };
        let reference = EntityReference {
            logical_name: table.clone(),
            id: guid(id),
            name: None,
        };
        Some(("Target".into(), Value::EntityReference(reference)))
    }
}

/// What a Custom API is bound to (Dataverse's `bindingtype`, with `boundentitylogicalname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// 0: unbound; the message's primary entity is `none`.
    Global,
    /// 1: one row of the table, which reaches the plug-in as the `Target` EntityReference.
    Entity(String),
    /// 2: the table's collection; the primary entity is the table and there is no `Target`.
    EntityCollection(String),
}

impl Binding {
    /// From the declared `binding_type` and `bound_table`; why not, when they disagree.
    pub(super) fn from_raw(
        binding_type: Option<i64>,
        bound_table: Option<String>,
    ) -> Result<Binding, String> {
        match (binding_type, bound_table) {
            (None | Some(0), None) => Ok(Binding::Global),
            (None | Some(1), Some(t)) => Ok(Binding::Entity(t)),
            (Some(2), Some(t)) => Ok(Binding::EntityCollection(t)),
            (Some(0), Some(t)) => Err(format!(
                "binding_type 0 (Global) is unbound: remove bound_table `{t}` or use 1 (Entity) or 2 \
                 (EntityCollection)"
            )),
            (Some(b @ (1 | 2)), None) => Err(format!(
                "binding_type {b} ({}) needs bound_table, the table it is bound to",
                if b == 1 { "Entity" } else { "EntityCollection" }
            )),
            (Some(other), _) => Err(format!(
                "binding_type {other} is not 0 (Global), 1 (Entity) or 2 (EntityCollection)"
            )),
        }
    }

    /// Dataverse's `bindingtype` value.
    pub fn value(&self) -> i32 {
        match self {
            Binding::Global => 0,
            Binding::Entity(_) => 1,
            Binding::EntityCollection(_) => 2,
        }
    }

    /// The bound table (`boundentitylogicalname`); None when unbound.
    pub fn table(&self) -> Option<&str> {
        match self {
            Binding::Global => None,
            Binding::Entity(t) | Binding::EntityCollection(t) => Some(t),
        }
    }
}
