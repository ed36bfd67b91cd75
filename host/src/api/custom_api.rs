//! Custom API messages' parameters over the Web API: an action's JSON body, a function's URL arguments
//! (`weft_Fn(Name='Ada',Count=@p1)?@p1=3`, OData literals and parameter aliases) and the response body
//! (the response properties with `@odata.context`), as Dataverse writes them. The routes themselves
//! (`/{unique_name}`, `{entityset}({id})/Microsoft.Dynamics.CRM.{unique_name}`,
//! `{entityset}/Microsoft.Dynamics.CRM.{unique_name}`) are in the parent module.
//!
//! Owns only the JSON ⇄ typed parameter translation for the declared types (also used by `weft exec`);
//! the declaration check and the run belong to the pipeline. An EntityReference is written as Dataverse
//! writes one in an action body: `{"@odata.type":"Microsoft.Dynamics.CRM.<table>","<primary id>":"<GUID>"}`,
//! or as `{"@odata.id":"<entityset>(<GUID>)"}`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value as Json};
use uuid::Uuid;
use weft_store::Schema;

use super::error::ApiError;
use super::json::{format_datetime, parse_datetime, parse_key_segment, value_to_json};
use super::json_response;
use crate::convert::{guid, uuid};
use crate::registration::{CustomApiDecl, ParameterType};
use crate::sandbox::wit::types::{EntityReference, Value};

/// The namespace of bound operations' names and of `@odata.type` values.
pub(super) const TYPE_PREFIX: &str = "Microsoft.Dynamics.CRM.";

/// An action's request body as a JSON object of parameters (empty = none).
pub(crate) fn body_object(body: &[u8]) -> Result<Map<String, Json>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let parsed: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::payload(format!("The request body is not valid JSON: {e}.")))?;
    let Json::Object(fields) = parsed else {
        return Err(ApiError::payload(
            "The request body must be a JSON object of parameters.",
        ));
    };
    Ok(fields)
}

/// The request parameters in `fields`, typed by the declaration. `null` leaves a parameter out.
pub(crate) fn parameters(
    schema: &Schema,
    api: &CustomApiDecl,
    fields: Map<String, Json>,
) -> Result<Vec<(String, Value)>, ApiError> {
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
        let what = format!("The parameter '{name}' of {}", api.unique_name);
        match &value {
            Value::String(text) => super::json::refuse_xml_unsafe(text, &what)?,
            Value::StringArray(texts) => {
                for text in texts {
                    super::json::refuse_xml_unsafe(text, &what)?;
                }
            }
            _ => {}
        }
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
            let (def, id) = match json.get("@odata.id") {
                // `{"@odata.id":"accounts(<GUID>)"}` (or the row's full URL), as function aliases write it.
                Some(url) => {
                    let (set, id) = parse_key_segment(url.as_str()?.rsplit('/').next()?)?;
                    (schema.table_by_entity_set(set)?, id?)
                }
                None => {
                    let table = json
                        .get("@odata.type")?
                        .as_str()?
                        .strip_prefix(TYPE_PREFIX)?;
                    let def = schema.table(table)?;
                    let id = json.get(&def.primary_id_attribute)?.as_str()?;
                    (def, Uuid::parse_str(id).ok()?)
                }
            };
            Value::EntityReference(EntityReference {
                logical_name: def.logical_name.clone(),
                id: guid(id),
                name: None,
            })
        }
    })
}

/// A function's arguments: `args` is what the URL has between the parentheses of `weft_Fn(…)`, each
/// `Name=<literal>` or `Name=@alias` with the alias's literal in `query`. Literals: `'text'` (`''` is a
/// quote), numbers, `true`, `false`, `null`, bare GUIDs and dates, and JSON objects or arrays (an
/// EntityReference, a StringArray).
pub(super) fn function_arguments(
    api: &CustomApiDecl,
    args: Option<&str>,
    query: &[(String, String)],
) -> Result<Map<String, Json>, ApiError> {
    let mut out = Map::new();
    for part in split_arguments(args.unwrap_or_default()) {
        let Some((name, literal)) = part.split_once('=') else {
            return Err(ApiError::url(format!(
                "'{part}' is not a function argument Name=value of {}.",
                api.unique_name
            )));
        };
        let (name, mut literal) = (name.trim(), literal.trim());
        if literal.starts_with('@') {
            literal = query
                .iter()
                .find(|(k, _)| k == literal)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| {
                    ApiError::url(format!(
                        "The parameter alias '{literal}' of '{name}' has no value in the query string."
                    ))
                })?;
        }
        let json = odata_literal(literal).ok_or_else(|| {
            ApiError::url(format!(
                "The value of '{name}' is not an OData literal: {literal} (text is quoted: 'text')."
            ))
        })?;
        if out.insert(name.to_owned(), json).is_some() {
            return Err(ApiError::url(format!(
                "The parameter '{name}' is given twice."
            )));
        }
    }
    Ok(out)
}

/// `args` split at the commas outside quotes, JSON strings and brackets; empty parts dropped.
fn split_arguments(args: &str) -> Vec<&str> {
    let (mut parts, mut start, mut depth) = (Vec::new(), 0, 0i32);
    let (mut single, mut double) = (false, false);
    for (i, c) in args.char_indices() {
        match c {
            // A doubled quote inside a literal toggles twice: the literal goes on.
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '{' | '[' if !single && !double => depth += 1,
            '}' | ']' if !single && !double => depth -= 1,
            ',' if !single && !double && depth == 0 => {
                parts.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&args[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// The JSON value of an OData URL literal; None when it is not one.
fn odata_literal(text: &str) -> Option<Json> {
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Some(Json::String(inner.replace("''", "'")));
    }
    match text {
        "true" => return Some(Json::Bool(true)),
        "false" => return Some(Json::Bool(false)),
        "null" => return Some(Json::Null),
        _ => {}
    }
    if text.starts_with('{') || text.starts_with('[') {
        return serde_json::from_str(text).ok();
    }
    if let Ok(n) = serde_json::from_str::<serde_json::Number>(text) {
        return Some(Json::Number(n));
    }
    // GUIDs and dates are written bare.
    (Uuid::parse_str(text).is_ok() || parse_datetime(text).is_ok())
        .then(|| Json::String(text.to_owned()))
}

/// The response properties as the Web API writes them (without `@odata.context`).
pub(crate) fn response_object(
    schema: &Schema,
    outputs: &[(String, Value)],
) -> Result<Map<String, Json>, ApiError> {
    let mut body = Map::new();
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
    Ok(body)
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
    body.extend(response_object(schema, outputs)?);
    Ok(json_response(
        StatusCode::OK,
        Json::Object(body).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Function arguments split at top-level commas only: not inside quoted text (doubled quotes
    /// included), JSON strings, objects or arrays.
    #[test]
    fn arguments_split_at_top_level_commas() {
        assert_eq!(
            split_arguments(r#"A='x, y',B={"k":[1,2],"s":"a,b"},C='it''s, ok',D=3"#),
            vec![
                "A='x, y'",
                r#"B={"k":[1,2],"s":"a,b"}"#,
                "C='it''s, ok'",
                "D=3"
            ]
        );
        assert!(split_arguments("").is_empty());
    }

    /// OData literals become the JSON the declared types are read from; bare words are not literals.
    #[test]
    fn odata_literals_become_json() {
        let id = "5d9e1a40-41a3-4b1c-9e3c-4a0b2d3c4e5f";
        for (text, json) in [
            ("'it''s'", Some(Json::String("it's".into()))),
            ("''", Some(Json::String(String::new()))),
            ("true", Some(Json::Bool(true))),
            ("null", Some(Json::Null)),
            ("-12.5", Some(serde_json::json!(-12.5))),
            (id, Some(Json::String(id.into()))),
            (
                "2026-11-25T10:00:00Z",
                Some(Json::String("2026-11-25T10:00:00Z".into())),
            ),
            (r#"["a","b"]"#, Some(serde_json::json!(["a", "b"]))),
            ("Ada", None),
            ("'unterminated", None),
            ("{not json", None),
        ] {
            assert_eq!(odata_literal(text), json, "{text}");
        }
    }
}
