//! Query semantics in memory, for the rows an operation wrote but has not committed: a condition's match,
//! the sort order and the column selection, the same as the SQL a backend runs on committed rows.
//!
//! Owns comparing values as the SQLite backend's SQL does: text case-insensitively (ASCII, SQLite's `NOCASE`),
//! Decimal and Money numerically, lookups by id, nulls never matching a comparison and sorting first in
//! ascending order, ties in primary-id order. It must not read or write rows: a lambda's related rows come
//! from the [`Relatives`] it is given.

use std::cmp::Ordering;

use uuid::Uuid;

use crate::query::{Condition, Link, Order, related};
use crate::rows::attribute;
use crate::schema::{AttributeDef, AttributeKind, Schema, TableDef};
use crate::value::Value;
use crate::{Attributes, Result, Row};

/// A value as its column compares.
#[derive(Debug, PartialEq, PartialOrd)]
enum Key {
    Int(i64),
    Real(f64),
    Text(String),
}

fn key(a: &AttributeDef, v: &Value) -> Option<Key> {
    let text = matches!(
        a.kind,
        AttributeKind::String { .. } | AttributeKind::Memo { .. }
    );
    Some(match v {
        Value::Null => return None,
        Value::Boolean(b) => Key::Int(i64::from(*b)),
        Value::Integer(i) | Value::OptionSetValue(i) => Key::Int(i64::from(*i)),
        Value::BigInt(i) | Value::DateTime(i) => Key::Int(*i),
        Value::Double(d) => Key::Real(*d),
        Value::Decimal(s) | Value::Money(s) => Key::Real(s.parse().unwrap_or(0.0)),
        Value::String(s) if text => Key::Text(s.to_ascii_lowercase()),
        Value::String(s) => Key::Text(s.clone()),
        Value::Guid(g) => Key::Text(g.to_string()),
        Value::EntityReference { id, .. } => Key::Text(id.to_string()),
        Value::OptionSetValueCollection(vs) => {
            Key::Text(vs.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
        }
    })
}

fn compare_keys(a: &Key, b: &Key) -> Option<Ordering> {
    match (a, b) {
        (Key::Int(x), Key::Real(y)) => (*x as f64).partial_cmp(y),
        (Key::Real(x), Key::Int(y)) => x.partial_cmp(&(*y as f64)),
        _ => a.partial_cmp(b),
    }
}

fn value_of<'r>(row: &'r Row, name: &str) -> &'r Value {
    row.attributes.get(name).unwrap_or(&Value::Null)
}

/// The rows a lambda ([`Condition::Related`]) ranges over, as the operation sees them.
pub(crate) trait Relatives {
    /// The rows (all columns) linked to row `id` of `table` by `link`.
    fn relatives(&self, table: &str, id: Uuid, link: &Link) -> Result<Vec<Row>>;
}

/// Whether `row` matches a condition already checked against `t` (`query::check_condition`).
pub(crate) fn matches(
    schema: &Schema,
    relatives: &dyn Relatives,
    t: &TableDef,
    c: &Condition,
    row: &Row,
) -> Result<bool> {
    Ok(truth(schema, relatives, t, c, row)? == Some(true))
}

/// A condition's value in SQL's three-valued logic: None (unknown) when it compares a null attribute, so
/// `Not` of it is unknown too, as in the backends' SQL.
fn truth(
    schema: &Schema,
    relatives: &dyn Relatives,
    t: &TableDef,
    c: &Condition,
    row: &Row,
) -> Result<Option<bool>> {
    let compare = |name: &str, v: &Value, want: &[Ordering]| {
        let a = t.attribute(name)?;
        let x = key(a, value_of(row, name))?;
        let y = key(a, v)?;
        Some(compare_keys(&x, &y).is_some_and(|o| want.contains(&o)))
    };
    Ok(match c {
        Condition::Eq(n, v) => compare(n, v, &[Ordering::Equal]),
        Condition::Ne(n, v) => compare(n, v, &[Ordering::Less, Ordering::Greater]),
        Condition::Gt(n, v) => compare(n, v, &[Ordering::Greater]),
        Condition::Lt(n, v) => compare(n, v, &[Ordering::Less]),
        Condition::Null(n) => Some(*value_of(row, n) == Value::Null),
        Condition::NotNull(n) => Some(*value_of(row, n) != Value::Null),
        Condition::Contains(n, v) | Condition::BeginsWith(n, v) | Condition::EndsWith(n, v) => {
            let Value::String(s) = value_of(row, n) else {
                return Ok(None);
            };
            // ASCII case folded, as SQLite's LIKE; the value is literal.
            let (s, v) = (s.to_ascii_lowercase(), v.to_ascii_lowercase());
            Some(match c {
                Condition::Contains(..) => s.contains(&v),
                Condition::BeginsWith(..) => s.starts_with(&v),
                _ => s.ends_with(&v),
            })
        }
        Condition::Not(inner) => truth(schema, relatives, t, inner, row)?.map(|b| !b),
        // Kleene logic: false (true) decides an And (Or) whatever the unknowns.
        Condition::And(cs) | Condition::Or(cs) => {
            let values = cs
                .iter()
                .map(|c| truth(schema, relatives, t, c, row))
                .collect::<Result<Vec<_>>>()?;
            kleene(values.into_iter(), matches!(c, Condition::Or(_)))
        }
        // As the backends' EXISTS: `any` holds when a related row's condition is true, `all` when none's is
        // false or unknown; never unknown itself.
        Condition::Related {
            link,
            all,
            condition,
        } => {
            let rt = related(schema, t, link)?.table();
            let mut holds = *all;
            for r in relatives.relatives(&t.logical_name, row.id, link)? {
                let ok = match condition {
                    Some(c) => truth(schema, relatives, rt, c, &r)? == Some(true),
                    None => true,
                };
                if ok != *all {
                    holds = !*all;
                    break;
                }
            }
            Some(holds)
        }
    })
}

/// An And (`decides` false) or Or (`decides` true) of three-valued operands: `decides` as soon as an
/// operand is it, else unknown when any operand is, else the other value.
fn kleene(operands: impl Iterator<Item = Option<bool>>, decides: bool) -> Option<bool> {
    let mut unknown = false;
    for v in operands {
        match v {
            Some(b) if b == decides => return Some(decides),
            None => unknown = true,
            Some(_) => {}
        }
    }
    (!unknown).then_some(!decides)
}

/// The query's order between two rows: its orders in sequence (nulls first ascending), then primary id.
pub(crate) fn compare(t: &TableDef, orders: &[Order], a: &Row, b: &Row) -> Ordering {
    for o in orders {
        let Some(def) = t.attribute(&o.attribute) else {
            continue;
        };
        let (x, y) = (
            key(def, value_of(a, &o.attribute)),
            key(def, value_of(b, &o.attribute)),
        );
        let ord = match (&x, &y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => compare_keys(x, y).unwrap_or(Ordering::Equal),
        };
        let ord = if o.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    // Ids are stored as lowercase hyphenated text: byte order is text order.
    a.id.cmp(&b.id)
}

/// `row` (all attributes) reduced to the selected columns, as a backend returns it.
pub(crate) fn project(t: &TableDef, columns: Option<&[String]>, row: &Row) -> Result<Row> {
    let Some(columns) = columns else {
        return Ok(row.clone());
    };
    let mut attributes = Attributes::new();
    for c in columns {
        attribute(t, c)?;
        if let Some(v) = row.attributes.get(c) {
            attributes.insert(c.clone(), v.clone());
        }
    }
    Ok(Row {
        table: row.table.clone(),
        id: row.id,
        attributes,
    })
}

/// A row as an operation's write leaves it: `previous` (None for a new row, with its primary id) with the
/// checked writes applied; a Null write removes the attribute, as a stored null is omitted when read.
pub(crate) fn apply(
    t: &TableDef,
    id: Uuid,
    previous: Option<Row>,
    writes: &[(String, Value)],
) -> Row {
    let mut row = previous.unwrap_or_else(|| Row {
        table: t.logical_name.clone(),
        id,
        attributes: Attributes::from([(t.primary_id_attribute.clone(), Value::Guid(id))]),
    });
    for (name, v) in writes {
        if *v == Value::Null {
            row.attributes.remove(name);
        } else {
            row.attributes.insert(name.clone(), v.clone());
        }
    }
    row
}
