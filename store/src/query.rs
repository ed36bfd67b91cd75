//! RetrieveMultiple queries: column set, conditions (eq, ne, gt, lt, null, not-null; contains, begins-with,
//! ends-with on text; and/or/not), order, top and skip (a page's start).
//!
//! Owns the backend-neutral query model and its checking against the schema (every attribute exists, values
//! have the attribute's type, `gt`/`lt`/order only on ordered types). It must not touch SQL.

use crate::schema::{RelationshipDef, Schema, TableDef};
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
    /// The rows related through a collection-valued relationship (a 1:N read from its referenced table, or
    /// an N:N), the OData lambda operators: `any` (`all` false) holds when at least one related row matches
    /// `condition` (None: when there is a related row), `all` when every related row matches it (also when
    /// there is none). A related row the condition is unknown for does not match. Never unknown itself.
    Related {
        /// How the related rows are found.
        link: Link,
        /// `all` rather than `any`.
        all: bool,
        /// The condition on the related table's rows (required for `all`).
        condition: Option<Box<Condition>>,
    },
}

/// How the rows of a [`Condition::Related`] are linked to a row of the queried table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A 1:N relationship read from its referenced table: the rows of `table` whose lookup `attribute` holds
    /// the row's id (declared relationships and the implicit one of every lookup alike).
    Lookup {
        /// The referencing table.
        table: String,
        /// Its lookup attribute.
        attribute: String,
    },
    /// An N:N relationship (its schema name): the rows linked in its intersect table.
    ManyToMany(String),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Lookup { table, attribute } => write!(f, "`{table}`.`{attribute}`"),
            Link::ManyToMany(name) => write!(f, "`{name}`"),
        }
    }
}

/// A [`Link`] resolved against the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Related<'s> {
    /// 1:N: the related table's rows whose lookup `attribute` holds the row's id.
    Referencing {
        table: &'s TableDef,
        attribute: &'s str,
    },
    /// N:N: the rows of the related table linked in the intersect table `intersect`, the row's id in column
    /// `mine`, the related row's in `other`.
    Intersect {
        table: &'s TableDef,
        intersect: &'s str,
        mine: &'static str,
        other: &'static str,
    },
}

impl<'s> Related<'s> {
    /// The related table.
    pub(crate) fn table(&self) -> &'s TableDef {
        match self {
            Related::Referencing { table, .. } | Related::Intersect { table, .. } => table,
        }
    }
}

/// How `link` leads from `table` to its related rows, or why it does not (another table's, a lookup that
/// does not point at `table`).
pub(crate) fn related<'s>(
    schema: &'s Schema,
    table: &TableDef,
    link: &Link,
) -> Result<Related<'s>> {
    let t = &table.logical_name;
    let lookup = |name: &str| {
        schema
            .table(name)
            .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
    };
    match link {
        Link::Lookup {
            table: referencing,
            attribute,
        } => {
            let rt = lookup(referencing)?;
            let a = rt
                .attribute(attribute)
                .ok_or_else(|| StoreError::UnknownAttribute {
                    table: referencing.clone(),
                    attribute: attribute.clone(),
                })?;
            match &a.kind {
                crate::schema::AttributeKind::Lookup { targets } if targets.contains(t) => {
                    Ok(Related::Referencing {
                        table: rt,
                        attribute: &a.logical_name,
                    })
                }
                _ => Err(StoreError::Invalid(format!(
                    "any/all over {link}: not a lookup to table `{t}`"
                ))),
            }
        }
        Link::ManyToMany(name) => match schema.relationship(name) {
            Some(RelationshipDef::ManyToMany {
                name,
                entity1,
                entity2,
            }) if entity1 == t || entity2 == t => {
                let (mine, other, related) = if entity1 == t {
                    ("entity1id", "entity2id", entity2)
                } else {
                    ("entity2id", "entity1id", entity1)
                };
                Ok(Related::Intersect {
                    table: lookup(related)?,
                    intersect: name,
                    mine,
                    other,
                })
            }
            Some(_) => Err(StoreError::Invalid(format!(
                "any/all over {link}: not an N:N relationship of table `{t}`"
            ))),
            None => Err(StoreError::UnknownRelationship(name.clone())),
        },
    }
}

impl Condition {
    /// Whether a [`Condition::Related`] is part of the condition.
    pub fn has_related(&self) -> bool {
        match self {
            Condition::Related { .. } => true,
            Condition::And(cs) | Condition::Or(cs) => cs.iter().any(Condition::has_related),
            Condition::Not(inner) => inner.has_related(),
            _ => false,
        }
    }

    /// The links of the [`Condition::Related`] parts at any depth, with the table each leads to.
    pub(crate) fn related_tables<'s>(
        &self,
        schema: &'s Schema,
        table: &TableDef,
        out: &mut Vec<(Link, &'s TableDef)>,
    ) -> Result<()> {
        match self {
            Condition::Related {
                link, condition, ..
            } => {
                let r = related(schema, table, link)?;
                out.push((link.clone(), r.table()));
                if let Some(c) = condition {
                    c.related_tables(schema, r.table(), out)?;
                }
            }
            Condition::And(cs) | Condition::Or(cs) => {
                for c in cs {
                    c.related_tables(schema, table, out)?;
                }
            }
            Condition::Not(inner) => inner.related_tables(schema, table, out)?,
            _ => {}
        }
        Ok(())
    }
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

/// Lambda operators nested deeper than this are refused: each level is a correlated subquery.
pub const MAX_RELATED_DEPTH: usize = 4;

/// Checks a condition against the table (and a lambda's condition against its related table) and returns it
/// with values in canonical stored form.
pub(crate) fn check_condition(
    schema: &Schema,
    table: &TableDef,
    c: &Condition,
) -> Result<Condition> {
    check_at(schema, table, c, 0)
}

fn check_at(schema: &Schema, table: &TableDef, c: &Condition, depth: usize) -> Result<Condition> {
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
                .map(|c| check_at(schema, table, c, depth))
                .collect::<Result<_>>()?,
        ),
        Condition::Or(cs) => Condition::Or(
            cs.iter()
                .map(|c| check_at(schema, table, c, depth))
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
        Condition::Not(inner) => Condition::Not(Box::new(check_at(schema, table, inner, depth)?)),
        Condition::Related {
            link,
            all,
            condition,
        } => {
            if depth == MAX_RELATED_DEPTH {
                return Err(StoreError::Invalid(format!(
                    "any/all nest more than {MAX_RELATED_DEPTH} levels deep (the limit)"
                )));
            }
            if *all && condition.is_none() {
                return Err(StoreError::Invalid(format!(
                    "all over {link} needs a condition"
                )));
            }
            let related = related(schema, table, link)?;
            Condition::Related {
                link: link.clone(),
                all: *all,
                condition: condition
                    .as_ref()
                    .map(|c| check_at(schema, related.table(), c, depth + 1).map(Box::new))
                    .transpose()?,
            }
        }
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
