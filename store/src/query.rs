//! RetrieveMultiple queries: column set, conditions (eq, ne, gt, lt, null, not-null; contains, begins-with,
//! ends-with on text; and/or/not), order, top and skip (a page's start).
//!
//! Owns the backend-neutral query model and its checking against the schema (every attribute exists, values
//! have the attribute's type, `gt`/`lt`/order only on ordered types). It must not touch SQL.

use crate::schema::TableDef;
use crate::value::Value;
use crate::{Result, StoreError};

/// A condition on the rows of the queried table.
///
/// Comparisons follow SQL/FetchXML semantics: `Ne` and `Gt`/`Lt` never match a null attribute; use
/// [`Condition::Null`] for that.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// attribute = value.
    Eq(String, Value),
    /// attribute ≠ value (non-null attributes only).
    Ne(String, Value),
    /// attribute > value.
    Gt(String, Value),
    /// attribute < value.
    Lt(String, Value),
    /// attribute is null.
    Null(String),
    /// attribute is not null.
    NotNull(String),
    /// All of these (true when empty).
    And(Vec<Condition>),
    /// Any of these (false when empty).
    Or(Vec<Condition>),
    /// The text attribute contains the value: case-insensitive as [`Condition::Eq`] on text, and the value
    /// is literal (`%`, `_` and `\\` match themselves, they are no LIKE wildcards). Never matches null.
    Contains(String, String),
    /// The text attribute begins with the value (as [`Condition::Contains`]).
    BeginsWith(String, String),
    /// The text attribute ends with the value (as [`Condition::Contains`]).
    EndsWith(String, String),
    /// The condition does not hold, in SQL's three-valued logic: a comparison on a null attribute is
    /// unknown and so is its negation, so `Not(Eq(a, v))` matches no row where `a` is null (as `Ne`).
    Not(Box<Condition>),
}

impl Condition {
    /// The LIKE pattern of a text condition (`\\` escapes), None for the others.
    pub fn like_pattern(&self) -> Option<(&str, String)> {
        let escape = |v: &str| {
            let mut out = String::with_capacity(v.len() + 2);
            for c in v.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        };
        Some(match self {
            Condition::Contains(n, v) => (n.as_str(), format!("%{}%", escape(v))),
            Condition::BeginsWith(n, v) => (n.as_str(), format!("{}%", escape(v))),
            Condition::EndsWith(n, v) => (n.as_str(), format!("%{}", escape(v))),
            _ => return None,
        })
    }
}

/// Sort order on one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Attribute to sort by.
    pub attribute: String,
    /// Descending when true.
    pub descending: bool,
}

/// A RetrieveMultiple query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// Table logical name.
    pub table: String,
    /// Columns to return; None = all.
    pub columns: Option<Vec<String>>,
    /// Filter; None = all rows.
    pub filter: Option<Condition>,
    /// Sort orders, applied in sequence; ties end in primary-id order so results are stable.
    pub orders: Vec<Order>,
    /// At most this many rows.
    pub top: Option<u32>,
    /// Rows skipped before the first one returned, in the query's order (a page's start).
    pub skip: u64,
}

impl Query {
    /// All rows of `table`, all columns.
    pub fn new(table: impl Into<String>) -> Self {
        Query {
            table: table.into(),
            ..Query::default()
        }
    }

    /// Restricts the columns returned.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the filter.
    pub fn filter(mut self, condition: Condition) -> Self {
        self.filter = Some(condition);
        self
    }

    /// Adds a sort order.
    pub fn order_by(mut self, attribute: impl Into<String>, descending: bool) -> Self {
        self.orders.push(Order {
            attribute: attribute.into(),
            descending,
        });
        self
    }

    /// Limits the number of rows.
    pub fn top(mut self, n: u32) -> Self {
        self.top = Some(n);
        self
    }
}

/// Checks a condition against the table and returns it with values in canonical stored form.
pub(crate) fn check_condition(table: &TableDef, c: &Condition) -> Result<Condition> {
    let attr = |name: &str| {
        table
            .attribute(name)
            .ok_or_else(|| StoreError::UnknownAttribute {
                table: table.logical_name.clone(),
                attribute: name.to_string(),
            })
    };
    let compare = |name: &String, v: &Value, ordered: bool, op: &str| -> Result<Value> {
        let a = attr(name)?;
        if matches!(v, Value::Null) {
            return Err(StoreError::Invalid(format!(
                "condition `{name} {op} null` on table `{}`: use the null / not-null conditions",
                table.logical_name
            )));
        }
        if ordered && !a.kind.is_ordered() {
            return Err(StoreError::Invalid(format!(
                "condition `{name} {op} …` on table `{}`: {} attributes cannot be compared with {op}",
                table.logical_name,
                a.kind.name()
            )));
        }
        v.check(&table.logical_name, a)
    };
    Ok(match c {
        Condition::Eq(n, v) => Condition::Eq(n.clone(), compare(n, v, false, "eq")?),
        Condition::Ne(n, v) => Condition::Ne(n.clone(), compare(n, v, false, "ne")?),
        Condition::Gt(n, v) => Condition::Gt(n.clone(), compare(n, v, true, "gt")?),
        Condition::Lt(n, v) => Condition::Lt(n.clone(), compare(n, v, true, "lt")?),
        Condition::Null(n) => {
            attr(n)?;
            c.clone()
        }
        Condition::NotNull(n) => {
            attr(n)?;
            c.clone()
        }
        Condition::And(cs) => Condition::And(
            cs.iter()
                .map(|c| check_condition(table, c))
                .collect::<Result<_>>()?,
        ),
        Condition::Or(cs) => Condition::Or(
            cs.iter()
                .map(|c| check_condition(table, c))
                .collect::<Result<_>>()?,
        ),
        Condition::Contains(n, _) | Condition::BeginsWith(n, _) | Condition::EndsWith(n, _) => {
            let a = attr(n)?;
            if !matches!(
                a.kind,
                crate::schema::AttributeKind::String { .. }
                    | crate::schema::AttributeKind::Memo { .. }
            ) {
                return Err(StoreError::Invalid(format!(
                    "condition on `{n}` of table `{}`: contains, begins-with and ends-with apply to text \
                     attributes, not {}",
                    table.logical_name,
                    a.kind.name()
                )));
            }
            c.clone()
        }
        Condition::Not(inner) => Condition::Not(Box::new(check_condition(table, inner)?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LIKE's wildcards and its escape character in a value match themselves.
    #[test]
    fn like_patterns_escape_wildcards() {
        let p = |c: Condition| c.like_pattern().unwrap().1;
        assert_eq!(p(Condition::Contains("n".into(), "50%".into())), "%50\\%%");
        assert_eq!(p(Condition::BeginsWith("n".into(), "a_b".into())), "a\\_b%");
        assert_eq!(p(Condition::EndsWith("n".into(), "c:\\".into())), "%c:\\\\");
        assert!(Condition::Null("n".into()).like_pattern().is_none());
    }
}
