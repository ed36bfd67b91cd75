//! Typed attribute values and their checking against a declared attribute.
//!
//! Owns [`Value`], what each attribute type accepts, and the canonical form values are stored in (exact decimal
//! text at the column's scale, empty multi-select collections as Null). It must not touch storage.

use std::fmt;

use uuid::Uuid;

use crate::StoreError;
use crate::schema::{AttributeDef, AttributeKind};

/// Smallest DateTime Dataverse stores: 1753-01-01T00:00:00Z, in ms since the Unix epoch.
pub const DATETIME_MIN_MS: i64 = -6_847_804_800_000;
/// Largest DateTime Dataverse stores: 9999-12-31T23:59:59.999Z, in ms since the Unix epoch.
pub const DATETIME_MAX_MS: i64 = 253_402_300_799_999;
/// Largest magnitude of a Decimal column (Dataverse: 100,000,000,000).
const DECIMAL_LIMIT: &str = "100000000000";
/// Largest magnitude of a Money column (Dataverse: 922,337,203,685,477).
const MONEY_LIMIT: &str = "922337203685477";
/// Decimals kept for Money.
pub const MONEY_SCALE: u8 = 4;

/// A stored attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// Boolean.
    Boolean(bool),
    /// Whole number.
    Integer(i32),
    /// Big integer.
    BigInt(i64),
    /// Floating point number.
    Double(f64),
    /// Exact decimal, as text (`-12.50`); never an f64.
    Decimal(String),
    /// Currency amount, exact decimal text.
    Money(String),
    /// Text (String and Memo columns).
    String(String),
    /// Date and time in ms since the Unix epoch, UTC.
    DateTime(i64),
    /// A GUID (Uniqueidentifier columns).
    Guid(Uuid),
    /// A reference to a row (Lookup columns).
    EntityReference {
        /// Logical name of the referenced table.
        logical_name: String,
        /// Id of the referenced row.
        id: Uuid,
    },
    /// One option (Picklist, State, Status columns).
    OptionSetValue(i32),
    /// Several options (MultiSelectPicklist columns).
    OptionSetValueCollection(Vec<i32>),
}

impl Value {
    /// The name of this value's type, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Boolean(_) => "Boolean",
            Value::Integer(_) => "Integer",
            Value::BigInt(_) => "BigInt",
            Value::Double(_) => "Double",
            Value::Decimal(_) => "Decimal",
            Value::Money(_) => "Money",
            Value::String(_) => "String",
            Value::DateTime(_) => "DateTime",
            Value::Guid(_) => "Guid",
            Value::EntityReference { .. } => "EntityReference",
            Value::OptionSetValue(_) => "OptionSetValue",
            Value::OptionSetValueCollection(_) => "OptionSetValueCollection",
        }
    }

    /// Checks this value against `attr` of table `table` and returns it in canonical stored form.
    ///
    /// Null is accepted for every attribute except `statecode`/`statuscode`.
    pub fn check(&self, table: &str, attr: &AttributeDef) -> Result<Value, StoreError> {
        let name = &attr.logical_name;
        let invalid = |why: String| {
            StoreError::Invalid(format!("attribute `{name}` of table `{table}`: {why}"))
        };
        let mismatch = || StoreError::TypeMismatch {
            table: table.to_string(),
            attribute: name.clone(),
            expected: attr.kind.name(),
            got: self.type_name(),
        };
        let in_options =
            |v: i32, values: &mut dyn Iterator<Item = i32>| -> Result<(), StoreError> {
                let allowed: Vec<i32> = values.collect();
                if allowed.contains(&v) {
                    Ok(())
                } else {
                    Err(invalid(format!(
                        "{v} is not one of the allowed options {allowed:?}"
                    )))
                }
            };
        match (&attr.kind, self) {
            (AttributeKind::State { .. } | AttributeKind::Status { .. }, Value::Null) => {
                Err(invalid("cannot be null".into()))
            }
            (_, Value::Null) => Ok(Value::Null),
            (
                AttributeKind::String { max_length } | AttributeKind::Memo { max_length },
                Value::String(s),
            ) => {
                let len = s.chars().count();
                if len > *max_length as usize {
                    return Err(invalid(format!(
                        "{len} characters exceed the maximum length {max_length}"
                    )));
                }
                Ok(self.clone())
            }
            (
                AttributeKind::Integer {
                    min_value,
                    max_value,
                },
                Value::Integer(v),
            ) => {
                if v < min_value || v > max_value {
                    return Err(invalid(format!("{v} is outside {min_value}..={max_value}")));
                }
                Ok(self.clone())
            }
            (AttributeKind::BigInt, Value::BigInt(_))
            | (AttributeKind::Boolean, Value::Boolean(_)) => Ok(self.clone()),
            (AttributeKind::Uniqueidentifier, Value::Guid(_)) => Ok(self.clone()),
            (AttributeKind::Double, Value::Double(v)) => {
                if !v.is_finite() {
                    return Err(invalid(format!("{v} is not a finite number")));
                }
                Ok(self.clone())
            }
            (AttributeKind::Decimal { precision }, Value::Decimal(s)) => Ok(Value::Decimal(
                canonical_decimal(s, *precision, DECIMAL_LIMIT).map_err(invalid)?,
            )),
            (AttributeKind::Money, Value::Money(s)) => Ok(Value::Money(
                canonical_decimal(s, MONEY_SCALE, MONEY_LIMIT).map_err(invalid)?,
            )),
            (AttributeKind::DateTime, Value::DateTime(ms)) => {
                if !(DATETIME_MIN_MS..=DATETIME_MAX_MS).contains(ms) {
                    return Err(invalid(format!(
                        "{ms} ms is outside 1753-01-01..9999-12-31"
                    )));
                }
                Ok(self.clone())
            }
            (AttributeKind::Lookup { targets }, Value::EntityReference { logical_name, .. }) => {
                if !targets.contains(logical_name) {
                    return Err(invalid(format!(
                        "cannot refer to table `{logical_name}` (targets: {targets:?})"
                    )));
                }
                Ok(self.clone())
            }
            (
                AttributeKind::Picklist { options } | AttributeKind::State { options },
                Value::OptionSetValue(v),
            ) => {
                in_options(*v, &mut options.iter().map(|o| o.value))?;
                Ok(self.clone())
            }
            (AttributeKind::Status { options }, Value::OptionSetValue(v)) => {
                in_options(*v, &mut options.iter().map(|o| o.value))?;
                Ok(self.clone())
            }
            (
                AttributeKind::MultiSelectPicklist { options },
                Value::OptionSetValueCollection(vs),
            ) => {
                if vs.is_empty() {
                    return Ok(Value::Null);
                }
                for (i, v) in vs.iter().enumerate() {
                    in_options(*v, &mut options.iter().map(|o| o.value))?;
                    if vs[..i].contains(v) {
                        return Err(invalid(format!("option {v} appears twice")));
                    }
                }
                Ok(self.clone())
            }
            _ => Err(mismatch()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Boolean(v) => write!(f, "{v}"),
            Value::Integer(v) | Value::OptionSetValue(v) => write!(f, "{v}"),
            Value::BigInt(v) | Value::DateTime(v) => write!(f, "{v}"),
            Value::Double(v) => write!(f, "{v}"),
            Value::Decimal(s) | Value::Money(s) | Value::String(s) => f.write_str(s),
            Value::Guid(g) => write!(f, "{g}"),
            Value::EntityReference { logical_name, id } => write!(f, "{logical_name}({id})"),
            Value::OptionSetValueCollection(vs) => write!(f, "{vs:?}"),
        }
    }
}

/// Parses `[-+]digits[.digits]` and returns it with no leading zeros and exactly `scale` decimals.
/// Rejects more decimals than `scale` (no silent rounding) and magnitudes above `limit`.
pub(crate) fn canonical_decimal(text: &str, scale: u8, limit: &str) -> Result<String, String> {
    let bad = || {
        format!("`{text}` is not a decimal number (expected digits with an optional `.` and sign)")
    };
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || body.ends_with('.')
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize {
        return Err(format!(
            "`{text}` has {} decimals, the column keeps {scale}",
            frac.len()
        ));
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let over = int.len() > limit.len() || (int.len() == limit.len() && int > limit);
    if over || (int == limit && !frac.is_empty()) {
        return Err(format!("`{text}` is outside the column's range ±{limit}"));
    }
    let mut out = String::with_capacity(int.len() + scale as usize + 2);
    if negative && (int != "0" || !frac.is_empty()) {
        out.push('-');
    }
    out.push_str(int);
    if scale > 0 {
        out.push('.');
        out.push_str(frac);
        out.extend(std::iter::repeat_n('0', scale as usize - frac.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decimal text is canonicalised exactly, never through a float, and over-precise input is refused.
    #[test]
    fn canonical_decimal_is_exact() {
        assert_eq!(
            canonical_decimal("0012.5", 2, DECIMAL_LIMIT).unwrap(),
            "12.50"
        );
        assert_eq!(
            canonical_decimal("-0.000", 2, DECIMAL_LIMIT).unwrap(),
            "0.00"
        );
        assert_eq!(canonical_decimal("+7", 0, DECIMAL_LIMIT).unwrap(), "7");
        assert_eq!(
            canonical_decimal("922337203685477.5807", 4, MONEY_LIMIT).unwrap_err(),
            "`922337203685477.5807` is outside the column's range ±922337203685477"
        );
        assert_eq!(
            canonical_decimal("0.1234567890123", 4, MONEY_LIMIT).unwrap_err(),
            "`0.1234567890123` has 13 decimals, the column keeps 4"
        );
        for bad in ["", ".", "1.", "-", "1e5", "1,5", "0x10", " 1"] {
            assert!(
                canonical_decimal(bad, 2, DECIMAL_LIMIT).is_err(),
                "{bad:?} accepted"
            );
        }
        assert_eq!(canonical_decimal(".5", 2, DECIMAL_LIMIT).unwrap(), "0.50");
        assert_eq!(
            canonical_decimal("100000000000", 2, DECIMAL_LIMIT).unwrap(),
            "100000000000.00"
        );
        assert!(canonical_decimal("100000000000.01", 2, DECIMAL_LIMIT).is_err());
    }
}
