//! Execution contexts from user input: GUID text, entities written as JSON,
//! and a [`ContextSpec`] that fills every RemoteExecutionContext field with
//! Dataverse's defaults. Also the reverse (values back to JSON) for display.
//!
//! Attribute values in JSON: `null`, booleans, numbers (whole numbers that fit
//! 32 bits are Integer, other whole numbers BigInteger, the rest Double) and
//! strings map directly; typed values are one-key objects:
//! `{"money":"10.50"}`, `{"decimal":"1.5"}`, `{"bigint":5}`, `{"guid":"…"}`,
//! `{"datetime":1700000000000}` (ms since the epoch, UTC), `{"option":1}`,
//! `{"options":[1,2]}`, `{"strings":["a","b"]}`,
//! `{"ref":{"table":"account","id":"…","name":"Contoso"}}`.

use crate::sandbox::wit::context::{ContextFrame, ExecutionContext, IsolationMode, Mode, Stage};
use crate::sandbox::wit::types::{
    Attribute, Entity, EntityReference, Guid, Parameter, ParameterValue, Value,
};
use anyhow::{Context as _, anyhow, bail};
use serde_json::{Map, Number, Value as Json};

/// Parses a GUID in 8-4-4-4-12 form (braces and upper case accepted).
pub fn parse_guid(text: &str) -> anyhow::Result<Guid> {
    let body = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    // `Uuid::try_parse` also takes the 32-digit and URN forms; Dataverse
    // writes only the hyphenated one, so insist on its shape.
    let parsed = uuid::Uuid::try_parse(body)
        .ok()
        .filter(|_| body.len() == 36);
    let value = parsed
        .ok_or_else(|| anyhow!("`{text}` is not a GUID: expected 8-4-4-4-12 hexadecimal digits"))?;
    Ok(guid_from_u128(value.as_u128()))
}

/// Formats a GUID lower-case with hyphens, as Dataverse does.
pub fn format_guid(guid: Guid) -> String {
    uuid::Uuid::from_u128((u128::from(guid.hi) << 64) | u128::from(guid.lo)).to_string()
}

/// A GUID from a counter, for ids the user did not give (deterministic, so
/// runs are reproducible).
pub fn guid_from_u128(value: u128) -> Guid {
    Guid {
        hi: (value >> 64) as u64,
        lo: value as u64,
    }
}

/// A value from JSON in the notation [`entity_from_json`] reads; errors name `path`.
pub fn value_from_json(json: &Json, path: &str) -> anyhow::Result<Value> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::String(s) => Value::String(s.clone()),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => match i32::try_from(i) {
                Ok(small) => Value::Integer(small),
                Err(_) => Value::BigInteger(i),
            },
            (None, Some(f)) => Value::Double(f),
            _ => bail!("{path}: the number {n} does not fit a 64-bit integer or a double"),
        },
        Json::Array(_) => {
            bail!("{path}: arrays need a type: write {{\"options\":[…]}} or {{\"strings\":[…]}}")
        }
        Json::Object(map) => typed_value(map, path)?,
    })
}

fn typed_value(map: &Map<String, Json>, path: &str) -> anyhow::Result<Value> {
    let (kind, inner) = match map.iter().next() {
        Some(entry) if map.len() == 1 => entry,
        _ => bail!("{path}: a typed value is an object with exactly one key such as \"money\""),
    };
    let path = format!("{path}.{kind}");
    let text = || {
        inner
            .as_str()
            .map(str::to_owned)
            .or_else(|| inner.as_number().map(Number::to_string))
            .ok_or_else(|| anyhow!("{path}: expected a decimal number as a string"))
    };
    let int = || {
        inner
            .as_i64()
            .ok_or_else(|| anyhow!("{path}: expected a whole number"))
    };
    Ok(match kind.as_str() {
        "money" => Value::Money(decimal_text(&text()?, &path)?),
        "decimal" => Value::Decimal(decimal_text(&text()?, &path)?),
        "bigint" => Value::BigInteger(int()?),
        "datetime" => Value::Datetime(int()?),
        "guid" => Value::Guid(parse_guid(
            inner
                .as_str()
                .ok_or_else(|| anyhow!("{path}: expected a GUID string"))?,
        )?),
        "option" => Value::OptionSetValue(
            i32::try_from(int()?).map_err(|_| anyhow!("{path}: out of the 32-bit range"))?,
        ),
        "options" => Value::OptionSetValueCollection(
            inner
                .as_array()
                .ok_or_else(|| anyhow!("{path}: expected an array of whole numbers"))?
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| anyhow!("{path}[{i}]: expected a 32-bit whole number"))
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        "strings" => Value::StringArray(
            inner
                .as_array()
                .ok_or_else(|| anyhow!("{path}: expected an array of strings"))?
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("{path}[{i}]: expected a string"))
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        "ref" => Value::EntityReference(reference_from_json(inner, &path)?),
        other => bail!(
            "{path}: unknown value type `{other}`; expected money, decimal, bigint, datetime, \
             guid, option, options, strings or ref"
        ),
    })
}

fn decimal_text(text: &str, path: &str) -> anyhow::Result<String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    let ok = !whole.is_empty()
        && !frac.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        bail!("{path}: `{text}` is not a decimal number such as 10.50");
    }
    Ok(text.to_owned())
}

fn reference_from_json(json: &Json, path: &str) -> anyhow::Result<EntityReference> {
    let map = json
        .as_object()
        .ok_or_else(|| anyhow!("{path}: expected {{\"table\":…,\"id\":…}}"))?;
    let field = |name: &str| map.get(name).and_then(Json::as_str);
    for key in map.keys() {
        if !matches!(key.as_str(), "table" | "id" | "name") {
            bail!("{path}: unknown key `{key}`; expected table, id and optional name");
        }
    }
    Ok(EntityReference {
        logical_name: field("table")
            .ok_or_else(|| anyhow!("{path}.table: missing (a table logical name)"))?
            .to_owned(),
        id: parse_guid(field("id").ok_or_else(|| anyhow!("{path}.id: missing (a GUID)"))?)
            .with_context(|| format!("{path}.id"))?,
        name: field("name").map(str::to_owned),
    })
}

/// An entity of `table` from a JSON object of attributes. An `"id"` key, if
/// present, is the row id rather than an attribute.
pub fn entity_from_json(table: &str, json: &Json) -> anyhow::Result<Entity> {
    let map = json
        .as_object()
        .ok_or_else(|| anyhow!("the target must be a JSON object of attributes"))?;
    let mut entity = Entity {
        logical_name: table.to_owned(),
        id: None,
        attributes: Vec::with_capacity(map.len()),
        formatted_values: Vec::new(),
        row_version: None,
    };
    for (name, value) in map {
        if name == "id" {
            let text = value
                .as_str()
                .ok_or_else(|| anyhow!("id: expected a GUID string"))?;
            entity.id = Some(parse_guid(text).context("id")?);
            continue;
        }
        entity.attributes.push(Attribute {
            name: name.clone(),
            value: value_from_json(value, name)?,
        });
    }
    Ok(entity)
}

/// A value as JSON, in the same notation [`entity_from_json`] reads.
pub fn value_to_json(value: &Value) -> Json {
    let typed = |kind: &str, inner: Json| Json::Object(Map::from_iter([(kind.to_owned(), inner)]));
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(n) => Json::from(*n),
        Value::BigInteger(n) => typed("bigint", Json::from(*n)),
        Value::Double(n) => Json::from(*n),
        Value::Decimal(s) => typed("decimal", Json::from(s.as_str())),
        Value::Money(s) => typed("money", Json::from(s.as_str())),
        Value::String(s) => Json::from(s.as_str()),
        Value::Datetime(ms) => typed("datetime", Json::from(*ms)),
        Value::Guid(g) => typed("guid", Json::from(format_guid(*g))),
        Value::EntityReference(r) => typed("ref", reference_to_json(r)),
        Value::OptionSetValue(n) => typed("option", Json::from(*n)),
        Value::OptionSetValueCollection(v) => typed("options", Json::from(v.clone())),
        Value::EntityReferenceCollection(v) => typed(
            "refs",
            Json::Array(v.iter().map(reference_to_json).collect()),
        ),
        Value::StringArray(v) => typed("strings", Json::from(v.clone())),
    }
}

fn reference_to_json(r: &EntityReference) -> Json {
    let mut map = Map::new();
    map.insert("table".into(), Json::from(r.logical_name.as_str()));
    map.insert("id".into(), Json::from(format_guid(r.id)));
    if let Some(name) = &r.name {
        map.insert("name".into(), Json::from(name.as_str()));
    }
    Json::Object(map)
}

/// An entity as JSON (`@table` and `@id` first, then the attributes).
pub fn entity_to_json(entity: &Entity) -> Json {
    let mut map = Map::new();
    map.insert("@table".into(), Json::from(entity.logical_name.as_str()));
    if let Some(id) = entity.id {
        map.insert("@id".into(), Json::from(format_guid(id)));
    }
    for a in &entity.attributes {
        map.insert(a.name.clone(), value_to_json(&a.value));
    }
    Json::Object(map)
}

/// A parameter collection as a JSON object.
pub fn parameters_to_json(params: &[Parameter]) -> Json {
    Json::Object(
        params
            .iter()
            .map(|p| {
                let value = match &p.value {
                    ParameterValue::Value(v) => value_to_json(v),
                    ParameterValue::Entity(e) => entity_to_json(e),
                    ParameterValue::EntityCollection(c) => {
                        Json::Array(c.entities.iter().map(entity_to_json).collect())
                    }
                };
                (p.name.clone(), value)
            })
            .collect(),
    )
}

/// Stage from Dataverse's number.
pub fn stage_from_number(n: i32) -> anyhow::Result<Stage> {
    Ok(match n {
        10 => Stage::PreValidation,
        20 => Stage::PreOperation,
        30 => Stage::MainOperation,
        40 => Stage::PostOperation,
        _ => bail!("stage {n} is not 10, 20, 30 or 40"),
    })
}

/// Dataverse's number for a stage.
pub fn stage_number(stage: Stage) -> i32 {
    match stage {
        Stage::PreValidation => 10,
        Stage::PreOperation => 20,
        Stage::MainOperation => 30,
        Stage::PostOperation => 40,
    }
}

/// What to build a context from; everything else gets Dataverse's defaults.
#[derive(Debug, Clone)]
pub struct ContextSpec {
    /// Message name, e.g. `Create`.
    pub message: String,
    /// Table logical name.
    pub table: String,
    /// Stage.
    pub stage: Stage,
    /// Mode.
    pub mode: Mode,
    /// The `Target` input parameter.
    pub target: Option<Entity>,
    /// Depth (1 for a top-level operation).
    pub depth: i32,
    /// Created-on time of the operation, ms since the epoch.
    pub created_on_ms: i64,
}

/// A full execution context for `spec`: ids are fixed, deterministic GUIDs,
/// `IsInTransaction` follows Dataverse's rule (true for sync stages 20–40),
/// and the Target's id, if any, becomes `PrimaryEntityId`.
pub fn build_context(spec: ContextSpec) -> ExecutionContext {
    let id = |n: u128| guid_from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | n);
    let primary_entity_id = spec
        .target
        .as_ref()
        .and_then(|t| t.id)
        .unwrap_or(guid_from_u128(0));
    let in_transaction = spec.mode == Mode::Synchronous && spec.stage != Stage::PreValidation;
    let mut input_parameters = Vec::new();
    if let Some(target) = spec.target {
        input_parameters.push(Parameter {
            name: "Target".into(),
            value: ParameterValue::Entity(target),
        });
    }
    ExecutionContext {
        frame: ContextFrame {
            message_name: spec.message,
            primary_entity_name: spec.table,
            secondary_entity_name: "none".into(),
            primary_entity_id,
            stage: spec.stage,
            mode: spec.mode,
            depth: spec.depth,
            user_id: id(1),
            initiating_user_id: id(1),
            initiating_user_agent: None,
            initiating_user_azure_active_directory_object_id: None,
            user_azure_active_directory_object_id: None,
            business_unit_id: id(2),
            organization_id: id(3),
            organization_name: "weft".into(),
            correlation_id: id(4),
            request_id: Some(id(5)),
            operation_id: id(5),
            operation_created_on: spec.created_on_ms,
            is_in_transaction: in_transaction,
            is_executing_offline: false,
            is_offline_playback: false,
            isolation_mode: IsolationMode::Sandbox,
            owning_extension: EntityReference {
                logical_name: "sdkmessageprocessingstep".into(),
                id: id(6),
                name: None,
            },
            input_parameters,
            output_parameters: Vec::new(),
            shared_variables: Vec::new(),
            pre_entity_images: Vec::new(),
            post_entity_images: Vec::new(),
        },
        parents: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GUID text round-trips and malformed text is refused.
    #[test]
    fn guid_text_round_trips() {
        let text = "6d81597f-0f9f-e711-8122-000d3aa2331c";
        assert_eq!(format_guid(parse_guid(text).unwrap()), text);
        assert_eq!(
            format_guid(parse_guid("{6D81597F-0F9F-E711-8122-000D3AA2331C}").unwrap()),
            text
        );
        for bad in [
            "",
            "6d81597f0f9fe7118122000d3aa2331c",
            "6d81597f-0f9f-e711-8122-000d3aa2331g",
        ] {
            assert!(parse_guid(bad).is_err(), "{bad}");
        }
    }

    /// Every typed value form reads back to the same JSON it is written as.
    #[test]
    fn typed_values_round_trip() {
        let json: Json = serde_json::from_str(
            r#"{"name":"Contoso","n":12,"big":{"bigint":9000000000},"d":0.5,
                "m":{"money":"10.50"},"x":{"decimal":"-1.25"},"t":{"datetime":1700000000000},
                "g":{"guid":"6d81597f-0f9f-e711-8122-000d3aa2331c"},"o":{"option":3},
                "os":{"options":[1,2]},"s":{"strings":["a"]},"flag":true,"none":null,
                "r":{"ref":{"table":"account","id":"6d81597f-0f9f-e711-8122-000d3aa2331c","name":"C"}}}"#,
        )
        .unwrap();
        let entity = entity_from_json("account", &json).unwrap();
        let mut back = entity_to_json(&entity);
        back.as_object_mut().unwrap().remove("@table");
        assert_eq!(back, json);
    }

    /// Bad values name their attribute and what was expected.
    #[test]
    fn bad_values_name_the_path() {
        let cases = [
            (r#"{"m":{"money":"ten"}}"#, "m.money"),
            (r#"{"o":{"option":"x"}}"#, "o.option"),
            (r#"{"q":{"what":1}}"#, "unknown value type `what`"),
            (r#"{"l":[1]}"#, "arrays need a type"),
            (r#"{"r":{"ref":{"table":"a"}}}"#, "r.ref.id"),
        ];
        for (json, expected) in cases {
            let err = entity_from_json("a", &serde_json::from_str(json).unwrap()).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{json}: {err:#}");
        }
    }
}
