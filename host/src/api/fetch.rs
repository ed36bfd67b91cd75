//! `GET {set}?fetchXml=…`: the common subset of FetchXML, translated into the Web API's own query options so
//! it means exactly what they mean: `<fetch top count page>` with one `<entity>`, its `<attribute>`s (or
//! `<all-attributes/>`), `<order>`s, nested `<filter type="and|or">`s of `<condition>`s (eq, ne, gt, ge, lt,
//! le, like, not-like, begins-with, ends-with, null, not-null, in, not-in, between, not-between, on,
//! on-or-after, on-or-before, today, yesterday, tomorrow, last-x-days, next-x-days), and aggregates
//! (`aggregate="true"`: sum, avg, min, max, count, countcolumn, countcolumn distinct, groupby) as `$apply`.
//!
//! Owns the translation only; reading and paging are the collection's (the caller's). Anything else —
//! `<link-entity>`, other operators, `distinct` — answers 400 naming it, never silently ignored.

use quick_xml::Reader;
use quick_xml::events::Event;
use weft_store::{AttributeKind, TableDef};

use super::error::ApiError;

/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 32;
/// Most elements accepted.
const MAX_ELEMENTS: usize = 2_000;

/// An element: its name, attributes and children.
#[derive(Debug, Default)]
struct El {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<El>,
}

impl El {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a FetchXML query becomes.
#[derive(Debug, Default, PartialEq)]
pub struct Translated {
    /// `$select`, `$filter`, `$orderby`, `$top` as query pairs.
    pub pairs: Vec<(String, String)>,
    /// `count` (page size) and `page` (from 1), when the fetch pages.
    pub page: Option<(u32, u32)>,
    /// An aggregate fetch, as `$apply` text.
    pub apply: Option<String>,
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError::url(format!("fetchXml: {}.", why.into()))
}

/// Appends text to the open element's `#text`.
fn push_text(stack: &mut [El], text: &str) {
    if let Some(top) = stack.last_mut() {
        match top.attributes.iter_mut().find(|(k, _)| k == "#text") {
            Some((_, v)) => v.push_str(text),
            None => top.attributes.push(("#text".into(), text.to_owned())),
        }
    }
}

fn parse_tree(xml: &str) -> Result<El, ApiError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<El> = vec![El::default()];
    let mut count = 0;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| bad(format!("not well-formed XML: {e}")))?;
        let (start, empty) = match &event {
            Event::Start(s) => (Some(s.clone()), false),
            Event::Empty(s) => (Some(s.clone()), true),
            _ => (None, false),
        };
        if let Some(s) = start {
            count += 1;
            if count > MAX_ELEMENTS || stack.len() > MAX_DEPTH {
                return Err(bad(format!(
                    "more than {MAX_ELEMENTS} elements or {MAX_DEPTH} levels"
                )));
            }
            let mut el = El {
                name: String::from_utf8_lossy(s.name().as_ref()).into_owned(),
                ..El::default()
            };
            for a in s.attributes() {
                let a = a.map_err(|e| bad(format!("a malformed attribute: {e}")))?;
                let value = a
                    .unescape_value()
                    .map_err(|e| bad(format!("a malformed attribute value: {e}")))?;
                el.attributes.push((
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    value.into_owned(),
                ));
            }
            if empty {
                stack.last_mut().expect("root").children.push(el);
            } else {
                stack.push(el);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                let el = stack.pop().expect("balanced by the reader");
                stack
                    .last_mut()
                    .ok_or_else(|| bad("unbalanced elements"))?
                    .children
                    .push(el);
            }
            Event::Eof => break,
            Event::DocType(_) => return Err(bad("a DOCTYPE is not accepted")),
            // The text of <value> elements (entity references arrive as events of their own).
            Event::Text(t) => {
                let text = t
                    .decode()
                    .map_err(|e| bad(format!("malformed text: {e}")))?;
                push_text(&mut stack, &text);
            }
            Event::GeneralRef(r) => {
                let text = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| bad(format!("a bad character reference: {e}")))?
                        .map(String::from)
                        .unwrap_or_default()
                } else {
                    let name = r
                        .decode()
                        .map_err(|e| bad(format!("a bad reference: {e}")))?;
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .map(str::to_owned)
                        .ok_or_else(|| bad(format!("the entity &{name}; is unknown")))?
                };
                push_text(&mut stack, &text);
            }
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(bad("an element is not closed"));
    }
    let mut root = stack.pop().ok_or_else(|| bad("empty"))?;
    match root.children.pop() {
        Some(fetch) if root.children.is_empty() && fetch.name == "fetch" => Ok(fetch),
        _ => Err(bad("the document is one <fetch> element")),
    }
}

/// Translates `xml`, a FetchXML query on `table`.
pub fn translate(table: &TableDef, xml: &str) -> Result<Translated, ApiError> {
    let fetch = parse_tree(xml)?;
    let mut out = Translated::default();
    for (k, v) in &fetch.attributes {
        match k.as_str() {
            "version"
            | "mapping"
            | "output-format"
            | "no-lock"
            | "returntotalrecordcount"
            | "paging-cookie"
            | "aggregate" => {}
            "distinct" if v == "false" => {}
            "top" => out.pairs.push(("$top".into(), v.clone())),
            "count" | "page" => {}
            other => {
                return Err(bad(format!(
                    "the <fetch> attribute '{other}' is not supported"
                )));
            }
        }
    }
    let number = |name: &str| -> Result<Option<u32>, ApiError> {
        fetch
            .attr(name)
            .map(|v| {
                v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad(format!(
                        "'{name}' must be a positive whole number, not '{v}'"
                    ))
                })
            })
            .transpose()
    };
    if let Some(count) = number("count")? {
        out.page = Some((count.min(5_000), number("page")?.unwrap_or(1)));
    }
    let aggregate = fetch.attr("aggregate") == Some("true");
    let [entity] = fetch.children.as_slice() else {
        return Err(bad("<fetch> holds exactly one <entity>"));
    };
    if entity.name != "entity" {
        return Err(bad(format!(
            "<{}> is not supported in <fetch>",
            entity.name
        )));
    }
    if entity.attr("name") != Some(table.logical_name.as_str()) {
        return Err(bad(format!(
            "the <entity> must be '{}' (the entity set of the URL)",
            table.logical_name
        )));
    }
    let mut select = Vec::new();
    let mut all = false;
    let mut orders = Vec::new();
    let mut filters = Vec::new();
    let mut groups = Vec::new();
    let mut aggregates = Vec::new();
    for child in &entity.children {
        match child.name.as_str() {
            "attribute" => {
                let name = child
                    .attr("name")
                    .ok_or_else(|| bad("an <attribute> without a name"))?;
                let property = property(table, name)?;
                if aggregate {
                    let alias = child.attr("alias").unwrap_or(name);
                    match (child.attr("groupby"), child.attr("aggregate")) {
                        (Some("true"), _) => groups.push(property),
                        (_, Some(method)) => {
                            let distinct = child.attr("distinct") == Some("true");
                            aggregates.push(match (method, distinct) {
                                ("count", _) => format!("$count as {alias}"),
                                ("countcolumn", true) => format!("{property} with countdistinct as {alias}"),
                                ("sum", _) => format!("{property} with sum as {alias}"),
                                ("avg", _) => format!("{property} with average as {alias}"),
                                ("min", _) => format!("{property} with min as {alias}"),
                                ("max", _) => format!("{property} with max as {alias}"),
                                (other, _) => {
                                    return Err(bad(format!(
                                        "the aggregate '{other}' is not supported (count, countcolumn distinct, sum, avg, min, max are)"
                                    )));
                                }
                            });
                        }
                        _ => {
                            return Err(bad(format!(
                                "the attribute '{name}' of an aggregate fetch is neither grouped nor aggregated"
                            )));
                        }
                    }
                } else {
                    select.push(property);
                }
            }
            "all-attributes" => all = true,
            "order" => {
                let name = child
                    .attr("attribute")
                    .ok_or_else(|| bad("an <order> without an attribute"))?;
                let dir = if child.attr("descending") == Some("true") {
                    " desc"
                } else {
                    ""
                };
                orders.push(format!("{}{dir}", property(table, name)?));
            }
            "filter" => filters.push(filter(table, child)?),
            other => {
                return Err(bad(format!(
                    "<{other}> is not supported (attribute, all-attributes, order and filter are)"
                )));
            }
        }
    }
    let filter_text = match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(
            filters
                .iter()
                .map(|f| format!("({f})"))
                .collect::<Vec<_>>()
                .join(" and "),
        ),
    };
    if aggregate {
        let mut apply = Vec::new();
        if let Some(f) = filter_text {
            apply.push(format!("filter({f})"));
        }
        apply.push(match (groups.is_empty(), aggregates.is_empty()) {
            (true, _) => format!("aggregate({})", aggregates.join(",")),
            (false, true) => format!("groupby(({}))", groups.join(",")),
            (false, false) => format!(
                "groupby(({}),aggregate({}))",
                groups.join(","),
                aggregates.join(",")
            ),
        });
        out.apply = Some(apply.join("/"));
        out.pairs.retain(|(k, _)| k != "$top");
        return Ok(out);
    }
    if !all && !select.is_empty() {
        out.pairs.push(("$select".into(), select.join(",")));
    }
    if let Some(f) = filter_text {
        out.pairs.push(("$filter".into(), f));
    }
    if !orders.is_empty() {
        out.pairs.push(("$orderby".into(), orders.join(",")));
    }
    Ok(out)
}

/// The Web API property of attribute `name` (`_x_value` for lookup x).
fn property(table: &TableDef, name: &str) -> Result<String, ApiError> {
    match table.attribute(name) {
        Some(a) => Ok(super::json::property_name(a)),
        None => Err(bad(format!(
            "'{name}' is not an attribute of '{}'",
            table.logical_name
        ))),
    }
}

/// A `<filter>` as `$filter` text.
fn filter(table: &TableDef, el: &El) -> Result<String, ApiError> {
    let joiner = match el.attr("type").unwrap_or("and") {
        "and" => " and ",
        "or" => " or ",
        other => return Err(bad(format!("the filter type '{other}' is not and or or"))),
    };
    let mut parts = Vec::new();
    for c in &el.children {
        parts.push(match c.name.as_str() {
            "condition" => condition(table, c)?,
            "filter" => format!("({})", filter(table, c)?),
            other => return Err(bad(format!("<{other}> is not supported in <filter>"))),
        });
    }
    if parts.is_empty() {
        return Err(bad("an empty <filter>"));
    }
    Ok(parts.join(joiner))
}

/// A `<condition>` as `$filter` text.
fn condition(table: &TableDef, c: &El) -> Result<String, ApiError> {
    let name = c
        .attr("attribute")
        .ok_or_else(|| bad("a <condition> without an attribute"))?;
    let operator = c
        .attr("operator")
        .ok_or_else(|| bad("a <condition> without an operator"))?;
    if c.attr("entityname").is_some() {
        return Err(bad("conditions on linked entities are not supported"));
    }
    let kind = table
        .attribute(name)
        .map(|a| a.kind.clone())
        .ok_or_else(|| {
            bad(format!(
                "'{name}' is not an attribute of '{}'",
                table.logical_name
            ))
        })?;
    let prop = property(table, name)?;
    let values: Vec<String> = c
        .children
        .iter()
        .filter(|v| v.name == "value")
        .filter_map(|v| v.attr("#text").map(str::to_owned))
        .collect();
    let value = || {
        c.attr("value")
            .map(str::to_owned)
            .or_else(|| values.first().cloned())
            .ok_or_else(|| {
                bad(format!(
                    "the condition on '{name}' ({operator}) needs a value"
                ))
            })
    };
    let literal = |v: &str| literal(&kind, v);
    let text = |v: &str| quote(v);
    let function =
        |f: &str, args: &str| format!("Microsoft.Dynamics.CRM.{f}(PropertyName='{prop}'{args})");
    Ok(match operator {
        "eq" | "ne" | "gt" | "ge" | "lt" | "le" => {
            format!("{prop} {operator} {}", literal(&value()?)?)
        }
        "neq" => format!("{prop} ne {}", literal(&value()?)?),
        "null" => format!("{prop} eq null"),
        "not-null" => format!("{prop} ne null"),
        "like" | "not-like" => {
            let v = value()?;
            let inner = v.trim_start_matches('%').trim_end_matches('%');
            if inner.contains('%') || inner.contains('_') {
                return Err(bad(format!(
                    "the pattern '{v}' is not supported (only a leading and/or trailing %)"
                )));
            }
            let f = match (v.starts_with('%'), v.ends_with('%')) {
                (true, true) => "contains",
                (false, true) => "startswith",
                (true, false) => "endswith",
                (false, false) => {
                    return Ok(format!(
                        "{prop} {} {}",
                        if operator == "like" { "eq" } else { "ne" },
                        text(inner)
                    ));
                }
            };
            let call = format!("{f}({prop},{})", text(inner));
            if operator == "like" {
                call
            } else {
                format!("not {call}")
            }
        }
        "begins-with" => format!("startswith({prop},{})", text(&value()?)),
        "not-begin-with" => format!("not startswith({prop},{})", text(&value()?)),
        "ends-with" => format!("endswith({prop},{})", text(&value()?)),
        "not-end-with" => format!("not endswith({prop},{})", text(&value()?)),
        "in" | "not-in" | "between" | "not-between" => {
            if values.is_empty() {
                return Err(bad(format!(
                    "the condition on '{name}' ({operator}) needs <value> elements"
                )));
            }
            let list = values.iter().map(|v| text(v)).collect::<Vec<_>>().join(",");
            let f = match operator {
                "in" => "In",
                "not-in" => "NotIn",
                "between" => "Between",
                _ => "NotBetween",
            };
            function(f, &format!(",PropertyValues=[{list}]"))
        }
        "on" | "on-or-after" | "on-or-before" => {
            let f = match operator {
                "on" => "On",
                "on-or-after" => "OnOrAfter",
                _ => "OnOrBefore",
            };
            function(f, &format!(",PropertyValue={}", text(&value()?)))
        }
        "today" => function("Today", ""),
        "yesterday" => function("Yesterday", ""),
        "tomorrow" => function("Tomorrow", ""),
        "last-x-days" | "next-x-days" => {
            let f = if operator == "last-x-days" {
                "LastXDays"
            } else {
                "NextXDays"
            };
            function(f, &format!(",PropertyValue={}", value()?.trim()))
        }
        other => return Err(bad(format!("the operator '{other}' is not supported"))),
    })
}

/// An OData string literal.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// A value in the OData literal syntax of a column of `kind` (the `$filter` parser checks it).
fn literal(kind: &AttributeKind, v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    Ok(match kind {
        AttributeKind::String { .. } | AttributeKind::Memo { .. } => quote(v),
        AttributeKind::Boolean => match v {
            "1" | "true" => "true".into(),
            "0" | "false" => "false".into(),
            other => return Err(bad(format!("'{other}' is not a boolean (0 or 1)"))),
        },
        AttributeKind::Uniqueidentifier | AttributeKind::Lookup { .. } => {
            v.trim_start_matches('{').trim_end_matches('}').to_owned()
        }
        _ => v.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_documents_are_refused() {
        let t = TableDef::new("account", "accounts", "accountid", "name", Vec::new());
        for xml in [
            "",
            "<fetch><entity name='account'>",
            "<!DOCTYPE x [<!ENTITY a 'b'>]><fetch/>",
            "<fetch/><fetch/>",
            &format!("<fetch>{}</fetch>", "<filter>".repeat(40)),
        ] {
            assert!(translate(&t, xml).is_err(), "{xml}");
        }
    }
}
