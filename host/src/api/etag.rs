//! Record ETags: `W/"<versionnumber>"`, as Dataverse writes them in `@odata.etag`, and the `If-Match` /
//! `If-None-Match` values that carry them back.
//!
//! Owns the ETag text only; which request a condition applies to, and the check itself (inside the
//! operation, against the row it replaces), are the API's and the pipeline's.

use super::error::ApiError;

/// The ETag of a row at `version`.
pub fn format(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version an ETag header value names: `W/"123"` (or the strong form `"123"`). One ETag only: a list
/// would let a stale write through when any old version matches.
pub fn parse(header: &str, value: &str) -> Result<i64, ApiError> {
    let v = value.trim();
    let quoted = v.strip_prefix("W/").unwrap_or(v);
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    inner.and_then(|i| i.parse::<i64>().ok()).ok_or_else(|| {
        ApiError::url(format!(
            "{header}: '{}' is not a record ETag such as W/\"1234567\" (the @odata.etag of a record) or *.",
            v.chars().take(80).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        assert_eq!(parse("If-Match", &format(42)).unwrap(), 42);
        assert_eq!(parse("If-Match", " \"7\" ").unwrap(), 7);
        for bad in [
            "",
            "W/",
            "W/\"\"",
            "W/\"12a\"",
            "12",
            "\"1\", \"2\"",
            "W/\"99999999999999999999\"",
        ] {
            let e = parse("If-Match", bad).unwrap_err();
            assert!(e.message.contains("If-Match"), "{bad}: {}", e.message);
        }
    }
}
