//! Records addressed by an alternate key instead of their id: `accounts(accountnumber='A1')`,
//! `settings(name='Theme',scope=1)` — the attributes of one of the table's declared keys (`[[table.key]]`),
//! each with an OData literal, as Dataverse's Web API takes them.
//!
//! Owns parsing such a segment into the key's typed values (literals are read by the `$filter` parser, so
//! they mean what they mean in a filter). Finding the row is the caller's (a RetrieveMultiple through the
//! pipeline).

use weft_store::query::Condition;
use weft_store::{TableDef, Value};

use super::error::ApiError;
use super::{json, odata};

/// `accounts(accountnumber='A1')` → (`accounts`, `accountnumber='A1'`); None when the segment has no
/// parenthesised part or it is not of the `name=value` form (a GUID key, a function call).
pub fn split(segment: &str) -> Option<(&str, &str)> {
    let (set, rest) = segment.split_once('(')?;
    let text = rest.strip_suffix(')')?;
    let first = text.split('=').next()?;
    let is_name = !first.is_empty()
        && first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (is_name && text.contains('=')).then_some((set, text))
}

/// The values `text` (`name=literal[,name=literal…]`) gives the attributes of one of `table`'s keys.
pub fn values(table: &TableDef, text: &str) -> Result<Vec<(String, Value)>, ApiError> {
    let parts = odata::split_unquoted(text, ',');
    let mut names = Vec::new();
    let mut filter = Vec::new();
    for part in parts {
        let (name, literal) = part.split_once('=').ok_or_else(|| {
            ApiError::url(format!("'{part}' is not a key value such as name='value'."))
        })?;
        let name = name.trim();
        let attribute = table.attribute(name).ok_or_else(|| {
            ApiError::url(format!(
                "'{name}' is not an attribute of table '{}'.",
                table.logical_name
            ))
        })?;
        // The filter parser names lookups by their `_x_value` property.
        let property = json::property_name(attribute);
        names.push(name.to_owned());
        filter.push(format!("{property} eq {}", literal.trim()));
    }
    let key = table
        .keys
        .iter()
        .find(|k| {
            k.attributes.len() == names.len() && k.attributes.iter().all(|a| names.contains(a))
        })
        .ok_or_else(|| {
            let declared: Vec<String> = table
                .keys
                .iter()
                .map(|k| format!("{} ({})", k.name, k.attributes.join(", ")))
                .collect();
            ApiError::url(format!(
                "'{text}' does not name the attributes of a key of table '{}' (keys: {}).",
                table.logical_name,
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join("; ")
                }
            ))
        })?;
    let pairs = [("$filter".to_owned(), filter.join(" and "))];
    let condition = odata::parse(table, &pairs, odata::Allowed::Collection)?
        .filter
        .ok_or_else(|| ApiError::url(format!("'{text}' gives no key values.")))?;
    let mut out = Vec::new();
    collect(&condition, &mut out);
    if out.len() != key.attributes.len() || out.iter().any(|(_, v)| *v == Value::Null) {
        return Err(ApiError::url(format!(
            "'{text}': every attribute of key '{}' needs a value (not null).",
            key.name
        )));
    }
    Ok(out)
}

/// The `attribute eq value` conditions of an `and` chain.
fn collect(c: &Condition, out: &mut Vec<(String, Value)>) {
    match c {
        Condition::Eq(a, v) => out.push((a.clone(), v.clone())),
        Condition::And(cs) => cs.iter().for_each(|c| collect(c, out)),
        _ => {}
    }
}
