//! `OData.Community.Display.V1.FormattedValue`: a value as Dataverse shows it to a user (en-US, UTC — weft has
//! no user settings): choices by their labels, booleans as Yes/No, numbers with thousands separators and the
//! column's precision, money with `$` and 2 decimals (weft keeps no currencies: the base currency is taken
//! as US dollars), date-times as `M/D/YYYY h:mm AM`, lookups by the name the row carries.
//!
//! Owns the formatting only; which values get annotated (and the JSON around them) is `json`'s.

use weft_store::AttributeKind;

use crate::sandbox::wit::types::Value as WitValue;

/// The formatted value of `v` in a column of `kind`; None when Dataverse shows none (text, GUIDs) or the
/// value cannot be formatted (an unknown choice, a lookup without its name).
pub fn formatted(kind: &AttributeKind, v: &WitValue) -> Option<String> {
    match (kind, v) {
        (_, WitValue::OptionSetValue(o)) => label(kind, *o),
        (_, WitValue::OptionSetValueCollection(os)) => os
            .iter()
            .map(|o| label(kind, *o))
            .collect::<Option<Vec<_>>>()
            .map(|ls| ls.join("; ")),
        (_, WitValue::Boolean(b)) => Some(if *b { "Yes" } else { "No" }.to_owned()),
        (_, WitValue::Integer(i)) => Some(group(&i.to_string())),
        (_, WitValue::BigInteger(i)) => Some(group(&i.to_string())),
        (_, WitValue::Double(d)) if d.is_finite() => Some(decimal(&format!("{d:.2}"), 2)),
        (AttributeKind::Decimal { precision }, WitValue::Decimal(s)) => {
            Some(decimal(s, u32::from(*precision)))
        }
        (_, WitValue::Decimal(s)) => Some(decimal(s, 2)),
        (_, WitValue::Money(s)) => {
            let d = decimal(s, 2);
            Some(match d.strip_prefix('-') {
                Some(abs) => format!("-${abs}"),
                None => format!("${d}"),
            })
        }
        (_, WitValue::Datetime(ms)) => Some(datetime(*ms)),
        (_, WitValue::EntityReference(r)) => r.name.clone(),
        _ => None,
    }
}

/// The label of choice `value`.
fn label(kind: &AttributeKind, value: i32) -> Option<String> {
    match kind {
        AttributeKind::Picklist { options }
        | AttributeKind::State { options }
        | AttributeKind::MultiSelectPicklist { options } => options
            .iter()
            .find(|o| o.value == value)
            .map(|o| o.label.clone()),
        AttributeKind::Status { options } => options
            .iter()
            .find(|o| o.value == value)
            .map(|o| o.label.clone()),
        _ => None,
    }
}

/// `-1234567` → `-1,234,567`.
fn group(digits: &str) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", digits),
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Exact decimal text rounded half away from zero to `places`, grouped: `1234.565`, 2 → `1,234.57`.
/// Text that is not a plain decimal is shown as it is.
fn decimal(text: &str, places: u32) -> String {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || int.len() + frac.len() > 36
    {
        return text.to_owned();
    }
    // All digits as one integer scaled by 10^places, rounded on the first dropped digit.
    let places = places as usize;
    let mut digits: String = format!("{int}{}", &frac[..frac.len().min(places)]);
    digits.extend(std::iter::repeat_n('0', places.saturating_sub(frac.len())));
    let mut n: i128 = digits.parse().unwrap_or(0);
    if frac.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        n += 1;
    }
    let scale = 10i128.pow(places as u32);
    let (whole, part) = (n / scale, n % scale);
    let sign = if negative && n != 0 { "-" } else { "" };
    if places == 0 {
        format!("{sign}{}", group(&whole.to_string()))
    } else {
        format!("{sign}{}.{part:0places$}", group(&whole.to_string()))
    }
}

/// `12/5/2026 10:17 PM` (UTC).
fn datetime(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = weft_message::calendar::civil_from_days(i128::from(days));
    let t = ms.rem_euclid(86_400_000);
    let (h, mi) = (t / 3_600_000, t / 60_000 % 60);
    let (h12, half) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!("{m}/{d}/{y} {h12}:{mi:02} {half}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_money_dates_booleans() {
        assert_eq!(group("1234567"), "1,234,567");
        assert_eq!(group("-999"), "-999");
        assert_eq!(decimal("1234.565", 2), "1,234.57");
        assert_eq!(decimal("-0.004", 2), "0.00");
        assert_eq!(decimal("5", 4), "5.0000");
        assert_eq!(decimal("12.5", 0), "13");
        assert_eq!(decimal("not a number", 2), "not a number");
        let money = AttributeKind::Money;
        assert_eq!(
            formatted(&money, &WitValue::Money("-1500.5".into())).as_deref(),
            Some("-$1,500.50")
        );
        assert_eq!(
            formatted(&AttributeKind::Boolean, &WitValue::Boolean(false)).as_deref(),
            Some("No")
        );
        // 2026-12-05T22:17:00Z
        assert_eq!(datetime(1_796_509_020_000), "12/5/2026 10:17 PM");
        assert_eq!(datetime(0), "1/1/1970 12:00 AM");
    }
}
