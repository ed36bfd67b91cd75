//! JSON ⇄ typed attribute values for one table, the way the Dataverse Web API writes them: numbers, strings,
//! booleans, decimals/money as JSON numbers (exact text kept) or strings, choices as integers, multi-select
//! choices as `"1,2"` (or an array on input), date-times as ISO 8601 (`2024-01-01T00:00:00Z`), lookups set
//! with `"attr@odata.bind": "/accounts(<id>)"` and returned as `_attr_value`.
//!
//! Owns only the translation and its error messages (each names the attribute); the value rules themselves
//! (ranges, lengths, options) are weft-store's `Value::check`. It must not run operations.

use serde_json::Value as Json;
use serde_json::value::RawValue;
use uuid::Uuid;
use weft_store::schema::{BUILT_IN_TARGETS, platform};
use weft_store::{AttributeDef, AttributeKind, Schema, TableDef, Value};

use super::error::ApiError;
use crate::convert;
use crate::sandbox::wit::types::{Attribute, Entity, Value as WitValue};

const MS_PER_DAY: i64 = 86_400_000;

/// The OData type name Dataverse uses in messages about a table.
fn type_name(table: &TableDef) -> String {
    format!("Microsoft.Dynamics.CRM.{}", table.logical_name)
}

/// The message for a property the table does not have (Dataverse's wording).
pub fn unknown_property(table: &TableDef, name: &str) -> String {
    format!(
        "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are \
         defined by the type.",
        type_name(table)
    )
}

/// Reads a request body into an entity of `table`. `id` is the key from the URL (Update); a Create may carry
/// its primary id in the body.
pub fn entity_from_body(
    schema: &Schema,
    table: &TableDef,
    body: &[u8],
    id: Option<Uuid>,
) -> Result<Entity, ApiError> {
    let parsed: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::payload(format!("The request body is not valid JSON: {e}.")))?;
    if !parsed.is_object() {
        return Err(ApiError::payload(
            "The request body must be a JSON object of attribute values.",
        ));
    }
    // Parsed again keeping each value's text, so decimal numbers are never rounded through an f64.
    let RawObject(raw) = serde_json::from_slice(body)
        .map_err(|e| ApiError::payload(format!("The request body is not valid JSON: {e}.")))?;
    let mut entity = Entity {
        logical_name: table.logical_name.clone(),
        id: id.map(convert::guid),
        attributes: Vec::new(),
        formatted_values: Vec::new(),
        row_version: None,
    };
    for (key, raw) in &raw {
        let (name, value) = if let Some(nav) = key.strip_suffix("@odata.bind") {
            bind(schema, table, nav, raw)?
        } else if key.starts_with('@') {
            // Instance annotations (`@odata.type`, `@odata.etag`) carry no attribute value.
            continue;
        } else if key.contains('@') {
            return Err(ApiError::payload(format!(
                "The annotation '{key}' is not supported; set lookups with 'name@odata.bind'."
            )));
        } else {
            let attr = table.attribute(key).ok_or_else(|| {
                let hint = lookup_behind_value_name(table, key).map(|a| {
                    format!(" '{key}' is read-only: set the lookup with '{a}@odata.bind'.")
                });
                ApiError::payload(unknown_property(table, key) + &hint.unwrap_or_default())
            })?;
            if !table.is_writable(key) {
                return Err(ApiError::payload(format!(
                    "The attribute '{key}' of table '{}' is set by the platform and cannot be written.",
                    table.logical_name
                )));
            }
            let value = from_json(table, attr, raw).map_err(ApiError::payload)?;
            if *key == table.primary_id_attribute {
                let Value::Guid(given) = value else {
                    return Err(ApiError::payload(format!(
                        "The primary id '{key}' must be a GUID."
                    )));
                };
                match id {
                    Some(url_id) if url_id != given => {
                        return Err(ApiError::payload(format!(
                            "The primary id '{key}' in the body ({given}) differs from the key in the URL \
                             ({url_id})."
                        )));
                    }
                    _ => entity.id = Some(convert::guid(given)),
                }
                continue;
            }
            (key.clone(), value)
        };
        let attr = table
            .attribute(&name)
            .ok_or_else(|| ApiError::payload(unknown_property(table, &name)))?;
        if entity.attributes.iter().any(|a| a.name == name) {
            return Err(ApiError::payload(format!(
                "The attribute '{name}' is set twice in the request body."
            )));
        }
        let checked = value
            .check(&table.logical_name, attr)
            .map_err(|e| ApiError::payload(e.to_string()))?;
        if let Value::String(text) = &checked {
            refuse_xml_unsafe(
                text,
                &format!("The attribute '{name}' of table '{}'", table.logical_name),
            )?;
        }
        entity.attributes.push(Attribute {
            name,
            value: convert::from_store(&checked),
        });
    }
    Ok(entity)
}

/// The first character of `text` that XML 1.0 cannot carry — a C0 control other than TAB, LF and CR, or
/// U+FFFE/U+FFFF — with its position in characters. The messages sent to service endpoints are XML (and
/// .NET binary XML): such a character would make them unreadable to every XML reader.
pub(super) fn xml_unsafe(text: &str) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
    })
}

/// 400 naming `what` (e.g. "The attribute 'name' of table 'account'") when `text` holds a character XML
/// 1.0 cannot carry.
pub(super) fn refuse_xml_unsafe(text: &str, what: &str) -> Result<(), ApiError> {
    match xml_unsafe(text) {
        None => Ok(()),
        Some((at, c)) => Err(ApiError::payload(format!(
            "{what} contains the character U+{:04X} at position {at}, which XML 1.0 cannot carry (of the \
             control characters only TAB, LF and CR are allowed).",
            u32::from(c)
        ))),
    }
}

/// A JSON object's members in order, each value's text kept; a name given twice is an error (serde_json's
/// maps would silently keep the last).
pub(super) struct RawObject(pub(super) Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawObject, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if members.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "the member '{name}' appears twice"
                        )));
                    }
                    members.push((name, value));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(Members)
    }
}

/// `x` when `name` is `_x_value` and `x` is a lookup of `table`.
pub fn lookup_behind_value_name<'t>(table: &'t TableDef, name: &str) -> Option<&'t str> {
    let inner = name.strip_prefix('_')?.strip_suffix("_value")?;
    let attr = table.attribute(inner)?;
    matches!(attr.kind, AttributeKind::Lookup { .. }).then_some(attr.logical_name.as_str())
}

/// `nav@odata.bind`: `nav` is the lookup's name, or `lookup_target` for a lookup with several targets.
fn bind(
    schema: &Schema,
    table: &TableDef,
    nav: &str,
    raw: &RawValue,
) -> Result<(String, Value), ApiError> {
    let mut found = None;
    for a in &table.attributes {
        if let AttributeKind::Lookup { targets } = &a.kind {
            if a.logical_name == nav {
                found = Some((a, None));
            } else if let Some(t) = targets
                .iter()
                .find(|t| format!("{}_{t}", a.logical_name) == nav)
            {
                found = Some((a, Some(t.as_str())));
            }
        }
    }
    let Some((attr, wanted)) = found else {
        return Err(ApiError::payload(format!(
            "'{nav}@odata.bind': '{nav}' is not a lookup of table '{}'.",
            table.logical_name
        )));
    };
    let text = match serde_json::from_str::<Json>(raw.get()) {
        Ok(Json::Null) => return Ok((attr.logical_name.clone(), Value::Null)),
        Ok(Json::String(s)) => s,
        _ => {
            return Err(ApiError::payload(format!(
                "'{nav}@odata.bind' expects a string such as \"/accounts(00000000-0000-0000-0000-000000000001)\", \
                 got {}.",
                shown(raw)
            )));
        }
    };
    let segment = text.rsplit('/').next().unwrap_or_default();
    let (set, id) = parse_key_segment(segment).ok_or_else(|| {
        ApiError::payload(format!(
            "'{nav}@odata.bind': '{text}' is not a record reference such as /accounts(<GUID>)."
        ))
    })?;
    let id = id.ok_or_else(|| {
        ApiError::payload(format!("'{nav}@odata.bind': '{text}' names no record id."))
    })?;
    let target = match schema.table_by_entity_set(set) {
        Some(t) => t.logical_name.clone(),
        None => BUILT_IN_TARGETS
            .iter()
            .find(|t| format!("{t}s") == set)
            .map(|t| (*t).to_owned())
            .ok_or_else(|| {
                ApiError::payload(format!(
                    "'{nav}@odata.bind': no table has the entity set name '{set}'."
                ))
            })?,
    };
    if wanted.is_some_and(|w| w != target) {
        return Err(ApiError::payload(format!(
            "'{nav}@odata.bind' must refer to a '{}' record, not '{target}'.",
            wanted.unwrap_or_default()
        )));
    }
    Ok((
        attr.logical_name.clone(),
        Value::EntityReference {
            logical_name: target,
            id,
        },
    ))
}

/// Splits `accounts(<guid>)` into the entity set and the id; `accounts` alone has no id. None when the
/// shape is wrong (an id that is not a GUID included).
pub fn parse_key_segment(segment: &str) -> Option<(&str, Option<Uuid>)> {
    match segment.split_once('(') {
        None => Some((segment, None)),
        Some((set, rest)) => {
            let key = rest.strip_suffix(')')?;
            Some((set, Some(Uuid::parse_str(key).ok()?)))
        }
    }
}

/// The JSON text of a value, shortened for error messages.
fn shown(raw: &RawValue) -> String {
    let text = raw.get().trim();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// What a JSON value for this kind of attribute looks like, for error messages.
fn expected(kind: &AttributeKind) -> &'static str {
    match kind {
        AttributeKind::String { .. } | AttributeKind::Memo { .. } => "a string",
        AttributeKind::Integer { .. } => "a whole number (32-bit)",
        AttributeKind::BigInt => "a whole number (64-bit)",
        AttributeKind::Double => "a number",
        AttributeKind::Decimal { .. } | AttributeKind::Money => {
            "a number or a string of decimal digits"
        }
        AttributeKind::Boolean => "true or false",
        AttributeKind::DateTime => "an ISO 8601 date-time string such as \"2024-01-01T00:00:00Z\"",
        AttributeKind::Uniqueidentifier => "a GUID string",
        AttributeKind::Lookup { .. } => "a reference set with 'name@odata.bind'",
        AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => "an option value (a whole number)",
        AttributeKind::MultiSelectPicklist { .. } => {
            "option values as a comma-separated string such as \"1,3\" or an array of whole numbers"
        }
    }
}

/// One JSON value → the attribute's typed value (unchecked: ranges and options are the store's rules).
fn from_json(table: &TableDef, attr: &AttributeDef, raw: &RawValue) -> Result<Value, String> {
    let wrong = || {
        format!(
            "The attribute '{}' of table '{}' expects {}, got {}.",
            attr.logical_name,
            table.logical_name,
            expected(&attr.kind),
            shown(raw)
        )
    };
    let json: Json = serde_json::from_str(raw.get()).map_err(|_| wrong())?;
    if json.is_null() {
        return Ok(Value::Null);
    }
    let int = |j: &Json| j.as_i64().and_then(|v| i32::try_from(v).ok());
    let value = match &attr.kind {
        AttributeKind::String { .. } | AttributeKind::Memo { .. } => {
            json.as_str().map(|s| Value::String(s.to_owned()))
        }
        AttributeKind::Integer { .. } => int(&json).map(Value::Integer),
        AttributeKind::BigInt => json.as_i64().map(Value::BigInt),
        AttributeKind::Double => json.as_f64().map(Value::Double),
        AttributeKind::Decimal { .. } | AttributeKind::Money => {
            let text = match &json {
                Json::Number(_) => Some(raw.get().trim().to_owned()),
                Json::String(s) => Some(s.clone()),
                _ => None,
            };
            text.map(|t| {
                if matches!(attr.kind, AttributeKind::Money) {
                    Value::Money(t)
                } else {
                    Value::Decimal(t)
                }
            })
        }
        AttributeKind::Boolean => json.as_bool().map(Value::Boolean),
        AttributeKind::DateTime => match json.as_str() {
            Some(s) => Some(Value::DateTime(parse_datetime(s).map_err(|why| {
                format!(
                    "The attribute '{}' of table '{}': {why}",
                    attr.logical_name, table.logical_name
                )
            })?)),
            None => None,
        },
        AttributeKind::Uniqueidentifier => json
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(Value::Guid),
        AttributeKind::Lookup { .. } => {
            return Err(format!(
                "The attribute '{0}' of table '{1}' is a lookup: set it with \
                 '{0}@odata.bind': \"/<entity set>(<id>)\".",
                attr.logical_name, table.logical_name
            ));
        }
        AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => int(&json).map(Value::OptionSetValue),
        AttributeKind::MultiSelectPicklist { .. } => match &json {
            Json::String(s) if s.trim().is_empty() => Some(Value::OptionSetValueCollection(vec![])),
            Json::String(s) => s
                .split(',')
                .map(|p| p.trim().parse::<i32>().ok())
                .collect::<Option<Vec<_>>>()
                .map(Value::OptionSetValueCollection),
            Json::Array(items) => items
                .iter()
                .map(int)
                .collect::<Option<Vec<_>>>()
                .map(Value::OptionSetValueCollection),
            _ => None,
        },
    };
    value.ok_or_else(wrong)
}

/// The instance annotations a caller asked for with `Prefer: odata.include-annotations="…"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `_x_value@Microsoft.Dynamics.CRM.lookuplogicalname`: the table a lookup points to.
    pub lookup_logical_name: bool,
    /// `x@OData.Community.Display.V1.FormattedValue`: the value as a user sees it (see `formatted`).
    pub formatted_value: bool,
    /// `_x_value@Microsoft.Dynamics.CRM.associatednavigationproperty`: the lookup's navigation property.
    pub associated_navigation_property: bool,
}

/// Annotation names.
const LOOKUP_LOGICAL_NAME: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";
const FORMATTED_VALUE: &str = "OData.Community.Display.V1.FormattedValue";
const ASSOCIATED_NAVIGATION_PROPERTY: &str = "Microsoft.Dynamics.CRM.associatednavigationproperty";

impl Annotations {
    /// Reads a `Prefer` header value: `odata.include-annotations="*"` or a comma-separated list of names
    /// (a trailing `*` matches a namespace), among other preferences.
    pub fn from_prefer(prefer: &str) -> Annotations {
        let Some((_, rest)) = prefer.split_once("odata.include-annotations=") else {
            return Annotations::default();
        };
        // A quoted list may hold commas; an unquoted value ends at the next preference.
        let list = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default(),
            None => rest.split(',').next().unwrap_or_default(),
        };
        let wanted = |name: &str| {
            list.split(',').map(str::trim).any(|pattern| {
                pattern == name
                    || pattern
                        .strip_suffix('*')
                        .is_some_and(|prefix| name.starts_with(prefix))
            })
        };
        Annotations {
            lookup_logical_name: wanted(LOOKUP_LOGICAL_NAME),
            formatted_value: wanted(FORMATTED_VALUE),
            associated_navigation_property: wanted(ASSOCIATED_NAVIGATION_PROPERTY),
        }
    }
}

/// Writes `entity` (a row of `table`) as a Web API JSON object: `context` first when given, the primary id
/// always, then every attribute of the table in declaration order (null when the row has no value), or only
/// `select`ed ones, each followed by the requested annotations.
pub fn entity_to_json(
    table: &TableDef,
    entity: &Entity,
    select: Option<&[String]>,
    context: Option<&str>,
    annotations: Annotations,
) -> String {
    let mut out = String::from("{");
    let mut push = |key: &str, value: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Json::String(key.to_owned()).to_string());
        out.push(':');
        out.push_str(value);
    };
    let string = |s: &str| Json::String(s.to_owned()).to_string();
    if let Some(context) = context {
        push("@odata.context", &string(context));
    }
    if let Some(v) = row_version(entity) {
        push("@odata.etag", &string(&super::etag::format(v)));
    }
    for attr in &table.attributes {
        let name = &attr.logical_name;
        let is_id = *name == table.primary_id_attribute;
        if !is_id && select.is_some_and(|s| !s.contains(name)) {
            continue;
        }
        let value = if is_id {
            entity.id.map(WitValue::Guid)
        } else {
            entity
                .attributes
                .iter()
                .find(|a| a.name == *name)
                .map(|a| a.value.clone())
        };
        let text = value
            .as_ref()
            .map_or_else(|| "null".to_owned(), value_to_json);
        let key = property_name(attr);
        push(&key, &text);
        if let Some(WitValue::EntityReference(r)) = &value {
            if annotations.associated_navigation_property {
                let nav =
                    weft_odata::relationships::lookup_navigation(table, name, &r.logical_name);
                push(
                    &format!("{key}@{ASSOCIATED_NAVIGATION_PROPERTY}"),
                    &string(&nav),
                );
            }
            if annotations.lookup_logical_name {
                push(
                    &format!("{key}@{LOOKUP_LOGICAL_NAME}"),
                    &string(&r.logical_name),
                );
            }
        }
        if annotations.formatted_value
            && let Some(v) = &value
            && let Some(text) = super::formatted::formatted(&attr.kind, v)
        {
            push(&format!("{key}@{FORMATTED_VALUE}"), &string(&text));
        }
    }
    out.push('}');
    out
}

/// The Web API property of an attribute: `_x_value` for lookup `x`, else its logical name.
pub fn property_name(attr: &AttributeDef) -> String {
    match attr.kind {
        AttributeKind::Lookup { .. } => format!("_{}_value", attr.logical_name),
        _ => attr.logical_name.clone(),
    }
}

/// A JSON object's text from members whose values are JSON text already (kept as written: decimals are
/// never rounded through an f64).
pub fn object_text<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let members: Vec<String> = members
        .into_iter()
        .map(|(k, v)| format!("{}:{v}", Json::String(k.to_owned())))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// The row version (`versionnumber`) a read record carries, if it carries one.
pub fn row_version(entity: &Entity) -> Option<i64> {
    entity.attributes.iter().find_map(|a| match a.value {
        WitValue::BigInteger(v) if a.name == platform::VERSION_NUMBER => Some(v),
        _ => None,
    })
}

/// `entity`'s attributes as a Web API request body (POST/PATCH): values as [`entity_to_json`] writes
/// them, lookups as `{name}@odata.bind: "/{entityset}({id})"`. Fails when a lookup names a table that is
/// not declared.
pub fn entity_to_body(schema: &Schema, entity: &Entity) -> Result<String, String> {
    let mut body = serde_json::Map::new();
    for a in &entity.attributes {
        match &a.value {
            WitValue::EntityReference(r) => {
                let set = schema
                    .table(&r.logical_name)
                    .map(|t| t.entity_set_name.clone())
                    .ok_or_else(|| {
                        format!("{}: table `{}` is not declared", a.name, r.logical_name)
                    })?;
                body.insert(
                    format!("{}@odata.bind", a.name),
                    Json::String(format!("/{set}({})", convert::uuid(r.id))),
                );
            }
            v => {
                let value = serde_json::from_str(&value_to_json(v)).unwrap_or(Json::Null);
                body.insert(a.name.clone(), value);
            }
        }
    }
    Ok(Json::Object(body).to_string())
}

/// One value as JSON text.
pub(super) fn value_to_json(v: &WitValue) -> String {
    let string = |s: String| Json::String(s).to_string();
    match v {
        WitValue::Null => "null".into(),
        WitValue::Boolean(b) => b.to_string(),
        WitValue::Integer(i) | WitValue::OptionSetValue(i) => i.to_string(),
        WitValue::BigInteger(i) => i.to_string(),
        WitValue::Double(d) => serde_json::to_string(d).unwrap_or_else(|_| "null".into()),
        // Exact decimal text is a valid JSON number when it is canonical; anything else stays a string.
        WitValue::Decimal(s) | WitValue::Money(s) => {
            if serde_json::from_str::<serde_json::Number>(s).is_ok() {
                s.clone()
            } else {
                string(s.clone())
            }
        }
        WitValue::String(s) => string(s.clone()),
        WitValue::Datetime(ms) => string(format_datetime(*ms)),
        WitValue::Guid(g) => string(convert::uuid(*g).to_string()),
        WitValue::EntityReference(r) => string(convert::uuid(r.id).to_string()),
        WitValue::OptionSetValueCollection(vs) => {
            string(vs.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
        }
        WitValue::EntityReferenceCollection(rs) => Json::Array(
            rs.iter()
                .map(|r| Json::String(convert::uuid(r.id).to_string()))
                .collect(),
        )
        .to_string(),
        WitValue::StringArray(ss) => {
            Json::Array(ss.iter().cloned().map(Json::String).collect()).to_string()
        }
    }
}

// ---- ISO 8601 date-times (UTC), on weft-message's calendar arithmetic -------------------------------------

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Callers pass a validated month (1–12) and day (1–31).
    weft_message::calendar::days_from_civil(i128::from(y), m as u32, d as u32) as i64
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let (y, m, d) = weft_message::calendar::civil_from_days(i128::from(z));
    (y as i64, i64::from(m), i64::from(d))
}

/// ms since the Unix epoch → `2024-01-01T00:00:00Z` (milliseconds shown only when not zero).
pub fn format_datetime(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let t = ms.rem_euclid(MS_PER_DAY);
    let (h, mi, s, milli) = (t / 3_600_000, t / 60_000 % 60, t / 1000 % 60, t % 1000);
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// `YYYY-MM-DD`, or that with `THH:MM[:SS[.fff]]` and `Z` or `±HH:MM` (no offset = UTC) → ms since the
/// Unix epoch.
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!("'{text}' is not an ISO 8601 date-time such as 2024-01-01T00:00:00Z ({why})")
    };
    let num = |s: &str, what: &str| -> Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(what));
        }
        s.parse::<i64>().map_err(|_| bad(what))
    };
    let (date, time) = text.split_once('T').unwrap_or((text, ""));
    let mut parts = date.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected YYYY-MM-DD"));
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad("expected YYYY-MM-DD"));
    }
    let (y, m, d) = (num(y, "year")?, num(m, "month")?, num(d, "day")?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad("month out of range")),
    };
    if d < 1 || d > days_in_month {
        return Err(bad("day out of range"));
    }
    let mut ms = days_from_civil(y, m, d) * MS_PER_DAY;
    if time.is_empty() {
        return Ok(ms);
    }
    let (clock, offset_ms) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..]
            .split_once(':')
            .ok_or_else(|| bad("offset must be ±HH:MM"))?;
        let (oh, om) = (num(oh, "offset hours")?, num(om, "offset minutes")?);
        if oh > 23 || om > 59 {
            return Err(bad("offset out of range"));
        }
        (c, sign * (oh * 3_600_000 + om * 60_000))
    } else {
        (time, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut fields = hms.split(':');
    let h = num(fields.next().unwrap_or_default(), "hour")?;
    let mi = num(fields.next().unwrap_or_default(), "minute")?;
    let s = match fields.next() {
        Some(s) => num(s, "second")?,
        None => 0,
    };
    if fields.next().is_some() || h > 23 || mi > 59 || s > 59 {
        return Err(bad("time out of range"));
    }
    let milli = if frac.is_empty() {
        0
    } else {
        if frac.len() > 3 && !frac[3..].bytes().all(|b| b == b'0') {
            return Err(bad("more precise than milliseconds"));
        }
        let f = &frac[..frac.len().min(3)];
        num(f, "fraction")? * 10_i64.pow(3 - f.len() as u32)
    };
    ms += h * 3_600_000 + mi * 60_000 + s * 1000 + milli - offset_ms;
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TAB, LF and CR pass; every other C0 control, U+FFFE and U+FFFF are found, with their position.
    #[test]
    fn xml_unsafe_characters() {
        assert_eq!(xml_unsafe("a\tb\nc\r d é 😀"), None);
        for c in (0u32..0x20)
            .filter(|c| ![9, 10, 13].contains(c))
            .chain([0xfffe, 0xffff])
        {
            let c = char::from_u32(c).unwrap();
            assert_eq!(xml_unsafe(&format!("ab{c}")), Some((2, c)));
        }
        let e = refuse_xml_unsafe("x\u{1}", "The attribute 'name'").unwrap_err();
        assert!(
            e.message
                .contains("'name' contains the character U+0001 at position 1"),
            "{}",
            e.message
        );
    }

    /// `Prefer: odata.include-annotations` selects annotations by name, namespace wildcard or `*`.
    #[test]
    fn prefer_selects_annotations() {
        let all = Annotations {
            lookup_logical_name: true,
            formatted_value: true,
            associated_navigation_property: true,
        };
        assert_eq!(
            Annotations::from_prefer(r#"return=representation, odata.include-annotations="*""#),
            all
        );
        assert_eq!(
            Annotations::from_prefer(r#"odata.include-annotations="Microsoft.Dynamics.CRM.*""#),
            Annotations {
                lookup_logical_name: true,
                formatted_value: false,
                associated_navigation_property: true,
            }
        );
        assert_eq!(
            Annotations::from_prefer(
                r#"odata.include-annotations="OData.Community.Display.V1.FormattedValue""#
            ),
            Annotations {
                lookup_logical_name: false,
                formatted_value: true,
                associated_navigation_property: false,
            }
        );
        assert_eq!(
            Annotations::from_prefer(
                r#"odata.include-annotations="OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname,Microsoft.Dynamics.CRM.associatednavigationproperty", return=representation"#
            ),
            all
        );
        assert_eq!(
            Annotations::from_prefer("odata.include-annotations=*,return=representation"),
            all
        );
        assert_eq!(
            Annotations::from_prefer("return=representation"),
            Annotations::default()
        );
    }

    /// Date-times round-trip through the Web API text form, offsets are applied and nonsense is refused.
    #[test]
    fn datetimes_parse_and_format() {
        for (text, ms) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2024-01-01T00:00:00Z", 1_704_067_200_000),
            ("2024-02-29T12:30:15.250Z", 1_709_209_815_250),
            ("1753-01-01T00:00:00Z", -6_847_804_800_000),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ] {
            assert_eq!(parse_datetime(text), Ok(ms), "{text}");
            assert_eq!(format_datetime(ms), text);
        }
        assert_eq!(parse_datetime("2024-01-01"), Ok(1_704_067_200_000));
        assert_eq!(
            parse_datetime("2024-01-01T01:00:00+01:00"),
            Ok(1_704_067_200_000)
        );
        assert_eq!(
            parse_datetime("2023-12-31T19:00:00-05:00"),
            Ok(1_704_067_200_000)
        );
        for bad in [
            "",
            "2024",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.0001Z",
            "2024-1-1",
            "tomorrow",
            "2024-01-01T00:00:00+0100",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?} accepted");
        }
    }
}
