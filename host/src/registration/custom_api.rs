//! Custom API declarations (`[[custom_api]]`): a message whose main operation (stage 30) is a plug-in, with
//! typed request parameters and response properties (dataverse.md §1: stage 30 is Custom API only).
//!
//! Owns the declared shape and the type check of a parameter value against it. It must not run plug-ins:
//! the pipeline checks requests and responses with [`ParameterType::matches`].

use serde::Deserialize;
use uuid::Uuid;

use crate::sandbox::wit::types::Value;

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
    pub(super) bound_table: Option<String>,
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
    /// The table a bound API is bound to (its request carries a `Target` reference); None = unbound.
    pub bound_table: Option<String>,
    /// Request parameters.
    pub request_parameters: Vec<RequestParameter>,
    /// Response properties.
    pub response_properties: Vec<ResponseProperty>,
}
