//! `GET {set}?fetchXml=…`: the common subset of FetchXML, translated into the Web API's own query options so
//! it means exactly what they mean: `<fetch top count page>` with one `<entity>`, its `<attribute>`s (or
//! `<all-attributes/>`), `<order>`s, nested `<filter type="and|or">`s of `<condition>`s (eq, ne, gt, ge, lt,
//! le, like, not-like, begins-with, ends-with, null, not-null, in, not-in, between, not-between, on,
//! on-or-after, on-or-before, today, yesterday, tomorrow, last-x-days, next-x-days), and aggregates
//! (`aggregate="true"`: sum, avg, min, max, count, countcolumn, countcolumn distinct, groupby) as `$apply`.
//!
//! `<link-entity>` (not nested, not in an aggregate fetch) comes in two shapes. Over a 1:N relationship
//! (`from` the linked table's lookup to this one, `to` this table's primary id) with `link-type` `any`,
//! `exists` or `in` it is the lambda `nav/any(l:…)` with its `<filter>`s inside, `not any` its negation (an
//! `inner` or `outer` join there would repeat the row per related row: 400, use `exists`). Over a lookup
//! (`to` this table's lookup, `from` the linked table's primary id), `inner` or `outer`, its `<attribute>`s
//! (or `<all-attributes/>`) are read as the lookup's `$expand` and answered as `alias.attribute`; `inner`
//! also requires the lookup to be set; a `<filter>` or `<order>` inside such a link is not supported yet.
//!
//! Owns the translation only; reading and paging are the collection's (the caller's). Anything else —
//! other link shapes and types, other operators, `distinct` — answers 400 naming it, never silently ignored.

use quick_xml::Reader;
use quick_xml::events::Event;
use weft_store::{AttributeKind, Schema, TableDef};

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
    /// The lookups `<link-entity>`s read attributes through, as `$expand` items (`nav($select=…)`).
    pub expand: Vec<String>,
    /// How each of those answers: its attributes under `alias.attribute`.
    pub aliased: Vec<Aliased>,
}

/// The attributes a lookup's `<link-entity>` reads, answered as `alias.attribute`.
#[derive(Debug, Clone, PartialEq)]
pub struct Aliased {
    /// The navigation property expanded (the lookup's).
    pub nav: String,
    /// The link's alias.
    pub alias: String,
    /// (Web API property in the expanded record, attribute name answered), or None for all of them.
    pub properties: Option<Vec<(String, String)>>,
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

/// Translates `xml`, a FetchXML query on `table` of `schema`.
pub fn translate(schema: &Schema, table: &TableDef, xml: &str) -> Result<Translated, ApiError> {
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
            "filter" => filters.push(filter(table, child, "")?),
            "link-entity" if aggregate => {
                return Err(bad("<link-entity> is not supported in an aggregate fetch"));
            }
            "link-entity" => {
                let n = out.aliased.len() + filters.len() + 1;
                if let Some(f) = link_entity(schema, table, child, n, &mut out)? {
                    filters.push(f);
                }
            }
            other => {
                return Err(bad(format!(
                    "<{other}> is not supported (attribute, all-attributes, order, filter and \
                     link-entity are)"
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

/// A `<link-entity>` directly in the `<entity>` (see the module docs): the `$filter` text it adds, if any;
/// a lookup's link adds its `$expand` and aliases to `out`. `n` numbers the link (its lambda variable, and
/// its alias when it has none: `{name}{n}`, as Dataverse names them).
fn link_entity(
    schema: &Schema,
    table: &TableDef,
    el: &El,
    n: usize,
    out: &mut Translated,
) -> Result<Option<String>, ApiError> {
    for (k, _) in &el.attributes {
        if !matches!(
            k.as_str(),
            "name" | "from" | "to" | "link-type" | "alias" | "visible" | "intersect"
        ) {
            return Err(bad(format!(
                "the <link-entity> attribute '{k}' is not supported"
            )));
        }
    }
    let need = |a: &str| {
        el.attr(a)
            .ok_or_else(|| bad(format!("a <link-entity> without '{a}'")))
    };
    let (name, from, to) = (need("name")?, need("from")?, need("to")?);
    let linked = schema
        .table(name)
        .ok_or_else(|| bad(format!("<link-entity name='{name}'>: no such table")))?;
    let link_type = el.attr("link-type").unwrap_or("inner");
    let lookup_to = |t: &TableDef, a: &str, target: &str| {
        matches!(t.attribute(a).map(|a| &a.kind),
            Some(AttributeKind::Lookup { targets }) if targets.iter().any(|x| x == target))
    };
    if to == table.primary_id_attribute && lookup_to(linked, from, &table.logical_name) {
        // 1:N: the linked rows' lookup points at this row.
        let nav = weft_odata::relationships::all(schema)
            .into_iter()
            .find_map(|r| match r {
                weft_odata::relationships::Rel::OneToMany {
                    referenced,
                    referencing,
                    attribute,
                    ..
                } if referenced.logical_name == table.logical_name
                    && referencing.logical_name == linked.logical_name
                    && attribute == from =>
                {
                    Some(r.name().to_owned())
                }
                _ => None,
            })
            .ok_or_else(|| bad(format!("no relationship links '{name}'.'{from}' to '{to}'")))?;
        let negate = match link_type {
            "any" | "exists" | "in" => false,
            "not any" => true,
            other => {
                return Err(bad(format!(
                    "link-type '{other}' over the 1:N link to '{name}' is not supported (any, exists, \
                     in, not any are; an inner or outer join would repeat the row per '{name}' row)"
                )));
            }
        };
        let variable = format!("l{n}");
        let mut filters = Vec::new();
        for c in &el.children {
            match c.name.as_str() {
                "filter" => {
                    filters.push(format!("({})", filter(linked, c, &format!("{variable}/"))?))
                }
                other => {
                    return Err(bad(format!(
                        "<{other}> is not supported in a 1:N <link-entity> (its <filter>s are)"
                    )));
                }
            }
        }
        let lambda = if filters.is_empty() {
            format!("{nav}/any()")
        } else {
            format!("{nav}/any({variable}:{})", filters.join(" and "))
        };
        return Ok(Some(if negate {
            format!("not {lambda}")
        } else {
            lambda
        }));
    }
    let single_target = match table.attribute(to).map(|a| &a.kind) {
        Some(AttributeKind::Lookup { targets }) if from == linked.primary_id_attribute => {
            if !targets.iter().any(|t| t == name) {
                return Err(bad(format!("the lookup '{to}' does not point at '{name}'")));
            }
            targets.len() == 1
        }
        _ => {
            return Err(bad(format!(
                "<link-entity name='{name}' from='{from}' to='{to}'>: a link goes from the linked table's \
                 primary id to a lookup of '{}', or from a lookup of the linked table to the primary id",
                table.logical_name
            )));
        }
    };
    if !matches!(link_type, "inner" | "outer") {
        return Err(bad(format!(
            "link-type '{link_type}' over the lookup '{to}' is not supported (inner and outer are)"
        )));
    }
    let alias = el
        .attr("alias")
        .map_or_else(|| format!("{name}{n}"), str::to_owned);
    let mut properties = Some(Vec::new());
    for c in &el.children {
        match c.name.as_str() {
            "attribute" => {
                let a = c
                    .attr("name")
                    .ok_or_else(|| bad("an <attribute> without a name"))?;
                if c.attr("alias").is_some() {
                    return Err(bad(format!(
                        "an alias on the linked attribute '{a}' is not supported (it answers as '{alias}.{a}')"
                    )));
                }
                if let Some(p) = properties.as_mut() {
                    p.push((property(linked, a)?, a.to_owned()));
                }
            }
            "all-attributes" => properties = None,
            other => {
                return Err(bad(format!(
                    "<{other}> in the <link-entity> over the lookup '{to}' is not supported yet (its \
                     <attribute>s and <all-attributes/> are)"
                )));
            }
        }
    }
    let nav = if single_target {
        to.to_owned()
    } else {
        format!("{to}_{name}")
    };
    match &properties {
        Some(p) if p.is_empty() => {}
        Some(p) => {
            let select: Vec<&str> = p.iter().map(|(prop, _)| prop.as_str()).collect();
            out.expand
                .push(format!("{nav}($select={})", select.join(",")));
        }
        None => out.expand.push(nav.clone()),
    }
    if properties.as_ref().is_none_or(|p| !p.is_empty()) {
        out.aliased.push(Aliased {
            nav,
            alias,
            properties,
        });
    }
    Ok((link_type == "inner").then(|| format!("_{to}_value ne null")))
}

/// A `<filter>` as `$filter` text, its properties prefixed with `prefix` (a lambda's `l1/`).
fn filter(table: &TableDef, el: &El, prefix: &str) -> Result<String, ApiError> {
    let joiner = match el.attr("type").unwrap_or("and") {
        "and" => " and ",
        "or" => " or ",
        other => return Err(bad(format!("the filter type '{other}' is not and or or"))),
    };
    let mut parts = Vec::new();
    for c in &el.children {
        parts.push(match c.name.as_str() {
            "condition" => condition(table, c, prefix)?,
            "filter" => format!("({})", filter(table, c, prefix)?),
            other => return Err(bad(format!("<{other}> is not supported in <filter>"))),
        });
    }
    if parts.is_empty() {
        return Err(bad("an empty <filter>"));
    }
    Ok(parts.join(joiner))
}

/// A `<condition>` as `$filter` text, its property prefixed with `prefix`.
fn condition(table: &TableDef, c: &El, prefix: &str) -> Result<String, ApiError> {
    let name = c
        .attr("attribute")
        .ok_or_else(|| bad("a <condition> without an attribute"))?;
    let operator = c
        .attr("operator")
        .ok_or_else(|| bad("a <condition> without an operator"))?;
    if c.attr("entityname").is_some() {
        return Err(bad("conditions on linked entities are not supported"));
    }
    let attribute = table.attribute(name).ok_or_else(|| {
        bad(format!(
            "'{name}' is not an attribute of '{}'",
            table.logical_name
        ))
    })?;
    let kind = &attribute.kind;
    let prop = format!("{prefix}{}", super::json::property_name(attribute));
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
    let literal = |v: &str| literal(kind, v);
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

/// A row's linked attributes as `alias.attribute` members, from its expanded lookups (`expanded`: the
/// navigation property and its record's JSON, `null` when the lookup is empty). A linked attribute without a
/// value is left out, as every null attribute is; its annotations (`…@OData.Community.Display.V1.FormattedValue`)
/// follow it.
pub fn aliased_values(aliased: &[Aliased], expanded: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in aliased {
        let Some(serde_json::Value::Object(record)) = expanded
            .iter()
            .find(|(nav, _)| *nav == a.nav)
            .and_then(|(_, text)| serde_json::from_str(text).ok())
        else {
            continue;
        };
        for (key, value) in &record {
            if key.starts_with('@') || value.is_null() {
                continue;
            }
            let (property, annotation) = key.split_once('@').unwrap_or((key.as_str(), ""));
            let name = match &a.properties {
                Some(p) => match p.iter().find(|(prop, _)| prop == property) {
                    Some((_, name)) => name.clone(),
                    None => continue,
                },
                None => property
                    .strip_prefix('_')
                    .and_then(|p| p.strip_suffix("_value"))
                    .unwrap_or(property)
                    .to_owned(),
            };
            let name = if annotation.is_empty() {
                format!("{}.{name}", a.alias)
            } else {
                format!("{}.{name}@{annotation}", a.alias)
            };
            out.push((name, value.to_string()));
        }
    }
    out
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
            assert!(translate(&Schema::default(), &t, xml).is_err(), "{xml}");
        }
    }
}
