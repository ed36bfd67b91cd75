//! `$expand` on table rows. Single-valued navigation properties (lookups), with a nested `$select`:
//! `accounts?$expand=primarycontactid($select=fullname)` answers each account with its contact as an
//! object (null when the lookup is empty); a lookup with several targets is expanded per target, by the
//! navigation property `@odata.bind` uses (`parentcustomerid_account`). Collection-valued ones (a 1:N
//! relationship from its "one" side, an N:N relationship), with nested `$select`, `$filter`, `$orderby`
//! and `$top`: `accounts?$expand=contact_customer_accounts($select=fullname;$orderby=fullname;$top=3)`
//! answers each account with an array of its contacts.
//!
//! Owns the parsing of `$expand` and the queries that read the related rows: one RetrieveMultiple per
//! target table and per 500 ids (the `$filter` size limit), through the pipeline like any read, so
//! RetrieveMultiple steps fire for them; an N:N relationship's links are read from the store first. It
//! must not write JSON beyond handing back each expanded row's object text. Nested `$expand`, and nested
//! options other than `$select` on a single-valued property, answer 400 naming them, never ignored.

use std::collections::HashMap;

use uuid::Uuid;
use weft_store::query::{Condition, Order};
use weft_store::{AttributeKind, Query as StoreQuery, Schema, TableDef, Value};

use super::error::ApiError;
use super::navigation::Navigation;
use crate::convert;
use crate::sandbox::wit::types::{Entity, Value as WitValue};

/// Related ids read per RetrieveMultiple: one `eq` condition each, well under the `$filter` limit.
pub(super) const IDS_PER_QUERY: usize = 500;

/// How an expanded navigation property relates the rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Single-valued: the row's lookup `attribute`.
    Lookup {
        /// The lookup of the row's table.
        attribute: String,
    },
    /// Collection-valued, 1:N: the related rows' lookup `attribute` points at the row.
    OneToMany {
        /// The lookup of the related table.
        attribute: String,
    },
    /// Collection-valued, N:N through `relationship`.
    ManyToMany {
        /// The relationship's schema name.
        relationship: String,
    },
}

/// One expanded navigation property.
#[derive(Debug, Clone, PartialEq)]
pub struct Expand {
    /// The navigation property's name, as the answer writes it.
    pub nav: String,
    /// How it relates the rows.
    pub kind: Kind,
    /// The related table.
    pub target: TableDef,
    /// The nested `$select` (None: every column).
    pub select: Option<Vec<String>>,
    /// The nested `$filter` (collections).
    pub filter: Option<Condition>,
    /// The nested `$orderby` (collections).
    pub orders: Vec<Order>,
    /// The nested `$top`, per row (collections).
    pub top: Option<u32>,
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
        let (kind, target) = navigation(schema, table, nav)?;
        let pairs: Vec<(String, String)> = nested
            .map(split_options)
            .into_iter()
            .flatten()
            .map(|option| {
                let (k, v) = option.split_once('=').unwrap_or((option, ""));
                (k.trim().to_owned(), v.to_owned())
            })
            .collect();
        for (k, _) in &pairs {
            let supported = match kind {
                Kind::Lookup { .. } => k == "$select",
                _ => matches!(k.as_str(), "$select" | "$filter" | "$orderby" | "$top"),
            };
            if !supported {
                return Err(ApiError::url(format!(
                    "$expand: the nested option '{k}' is not supported on '{nav}' (a {} navigation \
                     property takes {}).",
                    if matches!(kind, Kind::Lookup { .. }) {
                        "single-valued"
                    } else {
                        "collection-valued"
                    },
                    if matches!(kind, Kind::Lookup { .. }) {
                        "$select"
                    } else {
                        "$select, $filter, $orderby and $top"
                    },
                )));
            }
        }
        let options =
            super::odata::parse_in(schema, target, &pairs, super::odata::Allowed::Collection)?;
        if out.iter().any(|e| e.nav == nav) {
            return Err(ApiError::url(format!("$expand names '{nav}' twice.")));
        }
        out.push(Expand {
            nav: nav.to_owned(),
            kind,
            target: target.clone(),
            select: options.select,
            filter: options.filter,
            orders: options.orders,
            top: options.top,
        });
    }
    Ok(out)
}

/// How navigation property `nav` of `table` relates rows, and the related table.
fn navigation<'s>(
    schema: &'s Schema,
    table: &'s TableDef,
    nav: &str,
) -> Result<(Kind, &'s TableDef), ApiError> {
    match super::navigation::resolve(schema, table, nav) {
        Some(Navigation::Lookup { attribute, target }) => Ok((
            Kind::Lookup {
                attribute: attribute.to_owned(),
            },
            target,
        )),
        Some(Navigation::OneToMany { related, attribute }) => Ok((
            Kind::OneToMany {
                attribute: attribute.to_owned(),
            },
            related,
        )),
        Some(Navigation::ManyToMany {
            relationship,
            related,
        }) => Ok((
            Kind::ManyToMany {
                relationship: relationship.to_owned(),
            },
            related,
        )),
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

/// Splits nested options at `;` outside quoted literals.
fn split_options(text: &str) -> Vec<&str> {
    super::odata::split_unquoted(text, ';')
        .into_iter()
        .filter(|o| !o.trim().is_empty())
        .collect()
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

/// The RetrieveMultiple queries reading `expand`'s related rows where `key` (the related table's primary
/// id, or for a 1:N collection its lookup) is one of `ids`, at most [`IDS_PER_QUERY`] ids each, with the
/// nested `$filter` and `$orderby` (`parent`: the table of the rows being expanded). The columns include
/// `key`, so rows can be handed to their parents.
pub fn queries(expand: &Expand, parent: &str, key: &str, ids: &[Uuid]) -> Vec<StoreQuery> {
    let mut unique: Vec<Uuid> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let columns = expand.select.clone().map(|mut c| {
        for extra in [key, weft_store::schema::platform::VERSION_NUMBER] {
            if !c.iter().any(|n| n == extra) {
                c.push(extra.to_owned());
            }
        }
        c
    });
    unique
        .chunks(IDS_PER_QUERY)
        .map(|chunk| {
            let value = |id: Uuid| match &expand.kind {
                Kind::OneToMany { .. } => Value::EntityReference {
                    logical_name: parent.to_owned(),
                    id,
                },
                _ => Value::Guid(id),
            };
            let ids = Condition::Or(
                chunk
                    .iter()
                    .map(|id| Condition::Eq(key.to_owned(), value(*id)))
                    .collect(),
            );
            StoreQuery {
                table: expand.target.logical_name.clone(),
                columns: columns.clone(),
                filter: Some(match &expand.filter {
                    Some(f) => Condition::And(vec![ids, f.clone()]),
                    None => ids,
                }),
                orders: expand.orders.clone(),
                top: None,
                skip: 0,
            }
        })
        .collect()
}

/// The rows read, by id.
pub fn by_id(rows: Vec<Entity>) -> HashMap<Uuid, Entity> {
    rows.into_iter()
        .filter_map(|e| e.id.map(|id| (convert::uuid(id), e)))
        .collect()
}
