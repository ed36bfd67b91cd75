//! Unbound Custom API messages over the Web API: `POST /api/data/v9.2/{unique_name}` with the request
//! parameters as a JSON object answers 200 with the response properties (and `@odata.context`), as
//! Dataverse does for an unbound Custom API action.
//!
//! Owns only the JSON ⇄ typed parameter translation for the declared types; the declaration check and the
//! run belong to the pipeline. An EntityReference is written as Dataverse writes one in an action body:
//! `{"@odata.type":"Microsoft.Dynamics.CRM.<table>","<primary id>":"<GUID>"}`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value as Json};
use uuid::Uuid;
use weft_store::Schema;

use super::error::ApiError;
use super::json::{format_datetime, parse_datetime, value_to_json};
use super::json_response;
use crate::convert::{guid, uuid};
use crate::registration::{CustomApiDecl, ParameterType};
use crate::sandbox::wit::types::{EntityReference, Value};

const TYPE_PREFIX: &str = "Microsoft.Dynamics.CRM.";

/// The request parameters in `body` (a JSON object; empty = none), typed by the declaration. `null` leaves
/// a parameter out.
pub(super) fn parameters(
    schema: &Schema,
    api: &CustomApiDecl,
    body: &[u8],
) -> Result<Vec<(String, Value)>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let parsed: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::payload(format!("The request body is not valid JSON: {e}.")))?;
    let Json::Object(fields) = parsed else {
        return Err(ApiError::payload(
            "The request body must be a JSON object of parameters.",
        ));
    };
    let mut out = Vec::with_capacity(fields.len());
    for (name, json) in fields {
        if json.is_null() || name.starts_with('@') {
            continue;
        }
        let Some(declared) = api.request_parameters.iter().find(|p| p.name == name) else {
            return Err(ApiError::payload(format!(
                "The parameter '{name}' is not declared for {}.",
                api.unique_name
            )));
        };
        let value = from_json(schema, declared.kind, &json).ok_or_else(|| {
            ApiError::payload(format!(
                "The parameter '{name}' of {} expects a {:?} value, got {json}.",
                api.unique_name, declared.kind
            ))
        })?;
        out.push((name, value));
    }
    Ok(out)
}

fn from_json(schema: &Schema, kind: ParameterType, json: &Json) -> Option<Value> {
    let decimal = |j: &Json| match j {
        Json::Number(n) => Some(n.to_string()),
        Json::String(s) if s.parse::<f64>().is_ok() => Some(s.clone()),
        _ => None,
    };
    let int = |j: &Json| j.as_i64().and_then(|v| i32::try_from(v).ok());
    Some(match kind {
        ParameterType::Boolean => Value::Boolean(json.as_bool()?),
        ParameterType::DateTime => Value::Datetime(parse_datetime(json.as_str()?).ok()?),
        ParameterType::Decimal => Value::Decimal(decimal(json)?),
        ParameterType::Money => Value::Money(decimal(json)?),
        ParameterType::Float => Value::Double(json.as_f64()?),
        ParameterType::Integer => Value::Integer(int(json)?),
        ParameterType::Picklist => Value::OptionSetValue(int(json)?),
        ParameterType::String => Value::String(json.as_str()?.to_owned()),
        ParameterType::StringArray => Value::StringArray(
            json.as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
        ),
        ParameterType::Guid => Value::Guid(guid(Uuid::parse_str(json.as_str()?).ok()?)),
        ParameterType::EntityReference => {
            let table = json
                .get("@odata.type")?
                .as_str()?
                .strip_prefix(TYPE_PREFIX)?;
            let def = schema.table(table)?;
            let id = Uuid::parse_str(json.get(&def.primary_id_attribute)?.as_str()?).ok()?;
            Value::EntityReference(EntityReference {
                logical_name: table.to_owned(),
                id: guid(id),
                name: None,
            })
        }
    })
}

/// 200 with the response properties and `@odata.context`.
pub(super) fn response(
    schema: &Schema,
    base: &str,
    api: &CustomApiDecl,
    outputs: &[(String, Value)],
) -> Result<Response, ApiError> {
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Json::String(format!(
            "{base}/$metadata#{TYPE_PREFIX}{}Response",
            api.unique_name
        )),
    );
    for (name, value) in outputs {
        let json = match value {
            Value::EntityReference(r) => {
                let id_attribute = schema
                    .table(&r.logical_name)
                    .map_or("id", |t| t.primary_id_attribute.as_str());
                let mut o = Map::new();
                o.insert(
                    "@odata.type".into(),
                    Json::String(format!("{TYPE_PREFIX}{}", r.logical_name)),
                );
                o.insert(id_attribute.into(), Json::String(uuid(r.id).to_string()));
                Json::Object(o)
            }
            Value::Datetime(ms) => Json::String(format_datetime(*ms)),
            other => serde_json::from_str(&value_to_json(other)).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "0x80040216",
                    format!("response property {name}: {e}"),
                )
            })?,
        };
        body.insert(name.clone(), json);
    }
    Ok(json_response(
        StatusCode::OK,
        Json::Object(body).to_string(),
    ))
}
