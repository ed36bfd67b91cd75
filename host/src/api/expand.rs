//! `$expand` of single-valued navigation properties (lookups) on table rows, with a nested `$select`:
//! `accounts?$expand=primarycontactid($select=fullname)` answers each account with its contact as an
//! object (null when the lookup is empty). A lookup with several targets is expanded per target, by the
//! navigation property `@odata.bind` uses (`parentcustomerid_account`).
//!
//! Owns the parsing of `$expand` and the reading of the related rows: one RetrieveMultiple per target
//! table and per 500 related ids (the `$filter` size limit), through the pipeline like any read, so
//! RetrieveMultiple steps fire for them. It must not write JSON beyond handing back each expanded row's
//! object text. Collection-valued navigation properties and nested options other than `$select` answer
//! 400 naming them: they are not supported yet, and are never silently ignored.

use std::collections::HashMap;

use uuid::Uuid;
use weft_store::query::Condition;
use weft_store::{AttributeKind, Query as StoreQuery, Schema, TableDef, Value};

use super::error::ApiError;
use super::navigation::Navigation;
use crate::convert;
use crate::sandbox::wit::types::{Entity, Value as WitValue};

/// Related ids read per RetrieveMultiple: one `eq` condition each, well under the `$filter` limit.
const IDS_PER_QUERY: usize = 500;

/// One expanded navigation property.
#[derive(Debug, Clone, PartialEq)]
pub struct Expand {
    /// The navigation property's name, as the answer writes it.
    pub nav: String,
    /// The lookup of the row's table.
    pub attribute: String,
    /// The related table.
    pub target: TableDef,
    /// The nested `$select` (None: every column).
    pub select: Option<Vec<String>>,
}

/// Parses `$expand=a($select=x,y),b` on rows of `table`.
pub fn parse(schema: &Schema, table: &TableDef, text: &str) -> Result<Vec<Expand>, ApiError> {
    let mut out: Vec<Expand> = Vec::new();
    for part in split_top(text)? {
        let part = part.trim();
        let (nav, nested) = match part.split_once('(') {
            Some((nav, rest)) => (
                nav.trim(),
                Some(rest.strip_suffix(')').ok_or_else(|| {
                    ApiError::url(format!("$expand: '{part}' has unbalanced parentheses."))
                })?),
            ),
            None => (part, None),
        };
        let (attribute, target) = navigation(schema, table, nav)?;
        let mut select = None;
        for option in nested.map(|n| n.split(';')).into_iter().flatten() {
            let option = option.trim();
            if option.is_empty() {
                continue;
            }
            match option.split_once('=') {
                Some(("$select", names)) => {
                    let mut list = Vec::new();
                    for n in names.split(',').map(str::trim) {
                        let a = target
                            .attribute(n)
                            .filter(|a| !matches!(a.kind, AttributeKind::Lookup { .. }));
                        let Some(a) = a.or_else(|| {
                            super::json::lookup_behind_value_name(target, n)
                                .and_then(|l| target.attribute(l))
                        }) else {
                            return Err(ApiError::url(format!(
                                "Could not find a property named '{n}' on type \
                                 'Microsoft.Dynamics.CRM.{}'.",
                                target.logical_name
                            )));
                        };
                        list.push(a.logical_name.clone());
                    }
                    select = Some(list);
                }
                _ => {
                    let name = option.split('=').next().unwrap_or(option);
                    return Err(ApiError::url(format!(
                        "$expand: the nested option '{name}' is not supported yet (only $select is)."
                    )));
                }
            }
        }
        if out.iter().any(|e| e.nav == nav) {
            return Err(ApiError::url(format!("$expand names '{nav}' twice.")));
        }
        out.push(Expand {
            nav: nav.to_owned(),
            attribute: attribute.to_owned(),
            target: target.clone(),
            select,
        });
    }
    Ok(out)
}

/// The lookup and related table behind navigation property `nav` of `table`.
fn navigation<'s>(
    schema: &'s Schema,
    table: &'s TableDef,
    nav: &str,
) -> Result<(&'s str, &'s TableDef), ApiError> {
    match super::navigation::resolve(schema, table, nav) {
        Some(Navigation::Lookup { attribute, target }) => Ok((attribute, target)),
        Some(_) => Err(ApiError::url(format!(
            "$expand: '{nav}' is a collection-valued navigation property; expanding collections is \
             not supported yet."
        ))),
        None if table
            .attribute(nav)
            .is_some_and(|a| matches!(a.kind, AttributeKind::Lookup { .. })) =>
        {
            Err(ApiError::url(format!(
                "$expand: '{nav}' leads to a table that is not a table of this weft (systemuser, team)."
            )))
        }
        None => Err(ApiError::url(format!(
            "Could not find a property named '{nav}' on type 'Microsoft.Dynamics.CRM.{}'.",
            table.logical_name
        ))),
    }
}

/// Splits at commas outside parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, ApiError> {
    let (mut depth, mut start, mut out) = (0usize, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| ApiError::url("$expand has an unbalanced ')'."))?;
            }
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ApiError::url("$expand has an unbalanced '('."));
    }
    out.push(&text[start..]);
    Ok(out)
}

/// The id `row`'s lookup `attribute` holds when it points at `target`.
pub fn related_id(row: &Entity, attribute: &str, target: &str) -> Option<Uuid> {
    row.attributes.iter().find_map(|a| match &a.value {
        WitValue::EntityReference(r) if a.name == attribute && r.logical_name == target => {
            Some(convert::uuid(r.id))
        }
        _ => None,
    })
}

/// The RetrieveMultiple queries reading `ids` of `expand`'s table, at most [`IDS_PER_QUERY`] each.
pub fn queries(expand: &Expand, ids: &[Uuid]) -> Vec<StoreQuery> {
    let mut unique: Vec<Uuid> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    unique
        .chunks(IDS_PER_QUERY)
        .map(|chunk| StoreQuery {
            table: expand.target.logical_name.clone(),
            columns: expand.select.clone(),
            filter: Some(Condition::Or(
                chunk
                    .iter()
                    .map(|id| {
                        Condition::Eq(expand.target.primary_id_attribute.clone(), Value::Guid(*id))
                    })
                    .collect(),
            )),
            orders: Vec::new(),
            top: None,
            skip: 0,
        })
        .collect()
}

/// The rows read, by id.
pub fn by_id(rows: Vec<Entity>) -> HashMap<Uuid, Entity> {
    rows.into_iter()
        .filter_map(|e| e.id.map(|id| (convert::uuid(id), e)))
        .collect()
}
