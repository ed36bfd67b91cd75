//! `$apply` on a table's collection: `aggregate(…)`, `groupby((…))`, `groupby((…),aggregate(…))` and
//! `filter(…)` steps joined by `/`, as the Dataverse Web API takes them:
//! `accounts?$apply=groupby((statecode),aggregate(revenue with sum as total,$count as n))`.
//! Aggregations: `sum`, `average`, `min`, `max`, `countdistinct`, and `$count`.
//!
//! Owns the parsing and the aggregation. The rows are read by one RetrieveMultiple through the pipeline
//! (the caller's), at most [`RECORD_LIMIT`] of them — Dataverse's own limit on aggregate queries, answered
//! with its error beyond — and aggregated in memory: nulls are left out, as SQL leaves them; sums of
//! decimals and money are exact.

use std::collections::{BTreeMap, HashSet};

use weft_store::query::Condition;
use weft_store::{AttributeKind, TableDef};

use super::error::ApiError;
use super::{json, odata};
use crate::sandbox::wit::types::{Entity, Value as WitValue};

/// Most rows an aggregate reads (Dataverse's AggregateQueryRecordLimit).
pub const RECORD_LIMIT: usize = 50_000;

/// How one aggregate is computed.
#[derive(Debug, Clone, PartialEq)]
enum Method {
    Sum,
    Average,
    Min,
    Max,
    CountDistinct,
    Count,
}

/// One `… with method as alias` (or `$count as alias`).
#[derive(Debug, Clone, PartialEq)]
struct Aggregate {
    attribute: Option<String>,
    method: Method,
    alias: String,
}

/// A parsed `$apply`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Apply {
    /// `filter(…)` steps, and-ed.
    pub filters: Vec<Condition>,
    /// The grouping attributes (logical names).
    group: Vec<String>,
    aggregates: Vec<Aggregate>,
}

impl Apply {
    /// Parses `text` for rows of `table`.
    pub fn parse(table: &TableDef, text: &str) -> Result<Apply, ApiError> {
        let mut apply = Apply::default();
        for step in split(text, '/') {
            let step = step.trim();
            let (name, inner) = step
                .split_once('(')
                .and_then(|(n, rest)| rest.strip_suffix(')').map(|i| (n.trim(), i)))
                .ok_or_else(|| {
                    bad(format!(
                        "'{step}' is not a transformation such as aggregate(…)"
                    ))
                })?;
            match name {
                "filter" => {
                    let pairs = [("$filter".to_owned(), inner.to_owned())];
                    if let Some(c) = odata::parse(table, &pairs, odata::Allowed::Collection)?.filter
                    {
                        apply.filters.push(c);
                    }
                }
                "aggregate" => apply.aggregates.extend(aggregates(table, inner)?),
                "groupby" => {
                    let inner = inner.trim();
                    let (props, rest) = inner
                        .strip_prefix('(')
                        .and_then(|r| r.split_once(')'))
                        .ok_or_else(|| {
                            bad("groupby takes ((attribute, …)[, aggregate(…)])".into())
                        })?;
                    for p in props.split(',').map(str::trim) {
                        apply.group.push(attribute(table, p)?.to_owned());
                    }
                    let rest = rest.trim().trim_start_matches(',').trim();
                    if !rest.is_empty() {
                        let agg = rest
                            .strip_prefix("aggregate(")
                            .and_then(|r| r.strip_suffix(')'))
                            .ok_or_else(|| {
                                bad(format!("'{rest}' in groupby is not aggregate(…)"))
                            })?;
                        apply.aggregates.extend(aggregates(table, agg)?);
                    }
                }
                other => {
                    return Err(bad(format!(
                        "the transformation '{other}' is not supported (aggregate, groupby and filter are)"
                    )));
                }
            }
        }
        if apply.group.is_empty() && apply.aggregates.is_empty() {
            return Err(bad("it needs aggregate(…) or groupby((…))".into()));
        }
        let mut aliases = HashSet::new();
        for a in &apply.aggregates {
            if !aliases.insert(a.alias.as_str()) || apply.group.contains(&a.alias) {
                return Err(bad(format!("the alias '{}' is used twice", a.alias)));
            }
        }
        Ok(apply)
    }

    /// The attributes the rows must be read with.
    pub fn columns(&self) -> Vec<String> {
        let mut c = self.group.clone();
        for a in &self.aggregates {
            if let Some(n) = &a.attribute
                && !c.contains(n)
            {
                c.push(n.clone());
            }
        }
        c
    }

    /// The answer's rows (one per group, or one in all) as JSON object texts.
    pub fn rows(&self, table: &TableDef, rows: &[Entity]) -> Vec<String> {
        let value_of = |row: &Entity, name: &str| {
            row.attributes
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.value.clone())
                .unwrap_or(WitValue::Null)
        };
        let mut groups: BTreeMap<Vec<String>, Vec<&Entity>> = BTreeMap::new();
        for row in rows {
            let key = self
                .group
                .iter()
                .map(|g| json::value_to_json(&value_of(row, g)))
                .collect();
            groups.entry(key).or_default().push(row);
        }
        if groups.is_empty() && self.group.is_empty() {
            groups.insert(Vec::new(), Vec::new());
        }
        groups
            .into_iter()
            .map(|(key, members)| {
                let mut fields = Vec::new();
                for (g, text) in self.group.iter().zip(key) {
                    let name = table
                        .attribute(g)
                        .map_or_else(|| g.clone(), json::property_name);
                    fields.push(format!("{}:{text}", serde_json::Value::String(name)));
                }
                for a in &self.aggregates {
                    let values: Vec<WitValue> = match &a.attribute {
                        Some(n) => members
                            .iter()
                            .map(|r| value_of(r, n))
                            .filter(|v| *v != WitValue::Null)
                            .collect(),
                        None => Vec::new(),
                    };
                    let text = match a.method {
                        Method::Count => members.len().to_string(),
                        Method::CountDistinct => values
                            .iter()
                            .map(json::value_to_json)
                            .collect::<HashSet<_>>()
                            .len()
                            .to_string(),
                        Method::Sum => sum(&values),
                        Method::Average => average(&values),
                        Method::Min | Method::Max => extreme(&values, a.method == Method::Max),
                    };
                    fields.push(format!(
                        "{}:{text}",
                        serde_json::Value::String(a.alias.clone())
                    ));
                }
                format!("{{{}}}", fields.join(","))
            })
            .collect()
    }
}

fn bad(why: String) -> ApiError {
    ApiError::url(format!("$apply: {why}."))
}

/// Splits at `sep` outside parentheses and quotes.
fn split(text: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0i32, false);
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// An attribute a transformation names (`_x_value` for lookup x).
fn attribute<'t>(table: &'t TableDef, name: &str) -> Result<&'t str, ApiError> {
    let logical = json::lookup_behind_value_name(table, name).unwrap_or(name);
    table
        .attribute(logical)
        .map(|a| a.logical_name.as_str())
        .ok_or_else(|| {
            bad(format!(
                "'{name}' is not an attribute of table '{}'",
                table.logical_name
            ))
        })
}

fn aggregates(table: &TableDef, text: &str) -> Result<Vec<Aggregate>, ApiError> {
    split(text, ',')
        .into_iter()
        .map(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            match words.as_slice() {
                ["$count", "as", alias] => Ok(Aggregate {
                    attribute: None,
                    method: Method::Count,
                    alias: (*alias).to_owned(),
                }),
                [name, "with", method, "as", alias] => {
                    let method = match *method {
                        "sum" => Method::Sum,
                        "average" => Method::Average,
                        "min" => Method::Min,
                        "max" => Method::Max,
                        "countdistinct" => Method::CountDistinct,
                        other => {
                            return Err(bad(format!(
                                "'{other}' is not an aggregation (sum, average, min, max, countdistinct)"
                            )));
                        }
                    };
                    let attribute = attribute(table, name)?.to_owned();
                    let kind = &table.attribute(&attribute).map(|a| a.kind.clone());
                    let numeric = matches!(
                        kind,
                        Some(
                            AttributeKind::Integer { .. }
                                | AttributeKind::BigInt
                                | AttributeKind::Double
                                | AttributeKind::Decimal { .. }
                                | AttributeKind::Money
                        )
                    );
                    if matches!(method, Method::Sum | Method::Average) && !numeric {
                        return Err(bad(format!("'{name}' is not a number: it cannot be summed or averaged")));
                    }
                    Ok(Aggregate {
                        attribute: Some(attribute),
                        method,
                        alias: (*alias).to_owned(),
                    })
                }
                _ => Err(bad(format!(
                    "'{}' is not 'attribute with method as alias' or '$count as alias'",
                    part.trim()
                ))),
            }
        })
        .collect()
}

/// Exact decimal text → (value × 10^10).
fn scaled(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() > 10 {
        return None;
    }
    let v: i128 = format!("{int}{frac:0<10}").parse().ok()?;
    Some(if neg { -v } else { v })
}

fn unscaled(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let frac = format!("{:010}", a % 10_000_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{}", a / 10_000_000_000)
    } else {
        format!("{sign}{}.{frac}", a / 10_000_000_000)
    }
}

fn as_f64(v: &WitValue) -> Option<f64> {
    match v {
        WitValue::Integer(i) => Some(f64::from(*i)),
        WitValue::BigInteger(i) => Some(*i as f64),
        WitValue::Double(d) => Some(*d),
        WitValue::Decimal(s) | WitValue::Money(s) => s.parse().ok(),
        _ => None,
    }
}

fn sum(values: &[WitValue]) -> String {
    if values.is_empty() {
        return "null".into();
    }
    if values
        .iter()
        .all(|v| matches!(v, WitValue::Integer(_) | WitValue::BigInteger(_)))
    {
        let total: i128 = values
            .iter()
            .map(|v| match v {
                WitValue::Integer(i) => i128::from(*i),
                WitValue::BigInteger(i) => i128::from(*i),
                _ => 0,
            })
            .sum();
        return total.to_string();
    }
    if values
        .iter()
        .all(|v| matches!(v, WitValue::Decimal(_) | WitValue::Money(_)))
    {
        let exact: Option<i128> = values
            .iter()
            .map(|v| match v {
                WitValue::Decimal(s) | WitValue::Money(s) => scaled(s),
                _ => None,
            })
            .try_fold(0i128, |acc, v| v.and_then(|v| acc.checked_add(v)));
        if let Some(total) = exact {
            return unscaled(total);
        }
    }
    number(values.iter().filter_map(as_f64).sum())
}

fn average(values: &[WitValue]) -> String {
    let nums: Vec<f64> = values.iter().filter_map(as_f64).collect();
    if nums.is_empty() {
        return "null".into();
    }
    number(nums.iter().sum::<f64>() / nums.len() as f64)
}

fn number(v: f64) -> String {
    serde_json::Number::from_f64(v).map_or_else(|| "null".into(), |n| n.to_string())
}

/// The smallest or largest value: numbers by value, anything else by its JSON text (dates are ISO text).
fn extreme(values: &[WitValue], largest: bool) -> String {
    let pick = |a: &WitValue, b: &WitValue| -> std::cmp::Ordering {
        match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => json::value_to_json(a).cmp(&json::value_to_json(b)),
        }
    };
    let chosen = if largest {
        values.iter().max_by(|a, b| pick(a, b))
    } else {
        values.iter().min_by(|a, b| pick(a, b))
    };
    chosen.map_or_else(|| "null".into(), json::value_to_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sums_and_splitting() {
        assert_eq!(
            sum(&[WitValue::Money("0.1".into()), WitValue::Money("0.2".into())]),
            "0.3"
        );
        assert_eq!(sum(&[WitValue::Integer(2), WitValue::BigInteger(40)]), "42");
        assert_eq!(sum(&[]), "null");
        assert_eq!(unscaled(-15_000_000_000), "-1.5");
        assert_eq!(
            split("filter(name eq 'a/b')/aggregate($count as n)", '/'),
            ["filter(name eq 'a/b')", "aggregate($count as n)"]
        );
    }
}
