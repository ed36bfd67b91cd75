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

/// A keyed record reference's last segment (`accounts(accountnumber='A1')` of `/accounts(…)`), None for an
/// id reference or anything else.
pub fn keyed_segment(url: &str) -> Option<&str> {
    let segment = url.trim_end_matches('/').rsplit('/').next()?;
    (json::parse_key_segment(segment).is_none() && split(segment).is_some()).then_some(segment)
}

/// Calls `f` with the URL of every `@odata.bind` member of the JSON `text` — of the record and of the
/// records nested in it (a deep insert's), arrays of URLs included — and returns the text with the URLs `f`
/// answers a replacement for replaced (None when none is). Values keep their text (decimals are not
/// re-encoded).
pub fn rewrite_binds(text: &str, f: &mut dyn FnMut(&str) -> Option<String>) -> Option<String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let json::RawObject(members) = serde_json::from_str(text).ok()?;
        let mut changed = false;
        let mut out = Vec::with_capacity(members.len());
        for (name, value) in members {
            let new = if name.ends_with("@odata.bind") {
                if let Ok(url) = serde_json::from_str::<String>(value.get()) {
                    f(&url).map(|u| serde_json::Value::String(u).to_string())
                } else if let Ok(urls) = serde_json::from_str::<Vec<String>>(value.get()) {
                    let mut any = false;
                    let urls: Vec<String> = urls
                        .into_iter()
                        .map(|u| match f(&u) {
                            Some(new) => {
                                any = true;
                                new
                            }
                            None => u,
                        })
                        .collect();
                    any.then(|| serde_json::Value::from(urls).to_string())
                } else {
                    None
                }
            } else {
                rewrite_binds(value.get(), f)
            };
            changed |= new.is_some();
            out.push((name, new.unwrap_or_else(|| value.get().to_owned())));
        }
        changed.then(|| json::object_text(out.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    } else if trimmed.starts_with('[') {
        let items: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(text).ok()?;
        let mut changed = false;
        let out: Vec<String> = items
            .iter()
            .map(|item| match rewrite_binds(item.get(), f) {
                Some(new) => {
                    changed = true;
                    new
                }
                None => item.get().to_owned(),
            })
            .collect();
        changed.then(|| format!("[{}]", out.join(",")))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keyed binds are found and replaced at every depth, in arrays of URLs too; other values keep their
    /// text exactly.
    #[test]
    fn binds_are_rewritten_at_every_depth() {
        let body = r#"{"revenue": 10.10, "parentaccountid@odata.bind": "/accounts(accountnumber='A1')",
            "contact_customer_accounts": [{"lastname": "Kim",
              "preferredsystemuserid@odata.bind": "/systemusers(00000000-0000-0000-0000-000000000001)",
              "x@odata.bind": ["/contacts(lastname='Lee')", "/contacts(00000000-0000-0000-0000-000000000002)"]}]}"#;
        let mut seen = Vec::new();
        assert_eq!(
            rewrite_binds(body, &mut |u| {
                seen.extend(keyed_segment(u).map(str::to_owned));
                None
            }),
            None
        );
        assert_eq!(
            seen,
            ["accounts(accountnumber='A1')", "contacts(lastname='Lee')"]
        );
        let out = rewrite_binds(body, &mut |u| {
            keyed_segment(u).map(|s| format!("/id-of-{s}"))
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["parentaccountid@odata.bind"],
            "/id-of-accounts(accountnumber='A1')"
        );
        assert_eq!(
            v["contact_customer_accounts"][0]["x@odata.bind"][0],
            "/id-of-contacts(lastname='Lee')"
        );
        assert!(out.contains("10.10"), "{out}");
        assert_eq!(
            v["contact_customer_accounts"][0]["preferredsystemuserid@odata.bind"],
            "/systemusers(00000000-0000-0000-0000-000000000001)"
        );
    }
}
