//! The text of a `weft.toml` parse error, without quoting back a secret: the `toml` crate's own
//! `Display` shows the offending line, which may be `sas_key = "…` or a line inside a secret's
//! multi-line string. Owns only that rendering; must not decide what a secret is beyond
//! [`SECRET_KEYS`].

/// Keys whose values are secrets, in `weft.toml`'s own sections and in `[bus]` (any case, any
/// separator): their values are never shown in an error.
pub const SECRET_KEYS: &[&str] = &[
    "secure_configuration",
    "sas_key",
    "sas_token",
    "auth_value",
    "authvalue",
    "saskey",
    "sastoken",
    "key",
    "primary_key",
    "secondary_key",
    "password",
    "secret",
];

/// `offset`, moved back to a character boundary of `text`.
fn boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Whether `key` (a bare or quoted TOML key, possibly dotted) names a secret.
fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    let normalized = last
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_ascii_lowercase()
        .replace('-', "_");
    SECRET_KEYS.contains(&normalized.as_str())
        || normalized.ends_with("_key")
        || normalized.ends_with("_secret")
        || normalized.ends_with("_token")
        || normalized.ends_with("password")
}

/// The key of the assignment the line holding byte `offset` of `text` belongs to: its own
/// `key = …`, or, for a line inside a multi-line string (or array), the assignment that opened it.
/// `None` for a table header or a line outside any assignment.
fn enclosing_key(text: &str, offset: usize) -> Option<&str> {
    let error_line = text[..boundary(text, offset)].matches('\n').count();
    let mut key = None;
    let mut open: Option<&str> = None;
    for (n, line) in text.split('\n').enumerate() {
        if let Some(delimiter) = open {
            if line.contains(delimiter) {
                open = None;
            }
        } else {
            let trimmed = line.trim_start();
            if trimmed.starts_with('[') && !trimmed.contains('=') {
                key = None;
            } else if let Some((k, value)) = line.split_once('=') {
                key = Some(k.trim());
                open = ["\"\"\"", "\'\'\'"]
                    .into_iter()
                    .find(|d| value.matches(d).count() % 2 == 1);
            }
            // Any other line (an array's element…) stays with the assignment above.
        }
        if n == error_line {
            return key;
        }
    }
    key
}

/// `file: line L, column C: message`, with the offending line when it is not part of a secret's
/// value (a secret's line shows its key and `<redacted>`).
pub fn render(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return format!("TOML parse error: {message}");
    };
    let start = boundary(text, span.start);
    let before = &text[..start];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let shown = match enclosing_key(text, start) {
        Some(key) if is_secret_key(key) => format!("{key} = <redacted>"),
        _ => line.to_owned(),
    };
    format!("TOML parse error at line {line_no}, column {column}: {message}\n  | {shown}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(text: &str) -> String {
        let e = toml::from_str::<toml::Table>(text).expect_err("a parse error");
        render(text, &e)
    }

    /// Issue #10 finding 2: an unterminated secret is not quoted back; other lines still are.
    #[test]
    fn secrets_are_not_quoted_back() {
        let text = "[[service_endpoint]]\nname = \"hook\"\nauth_value = \"s3cr3t-Value\n";
        let shown = parse_error(text);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("auth_value = <redacted>"), "{shown}");
        assert!(shown.contains("line 3"), "{shown}");

        let text = "[[step]]\nsecure_configuration = \"\"\"\nline one\nhunter2 \\q\n\"\"\"\n";
        let shown = parse_error(text);
        assert!(!shown.contains("hunter2"), "{shown}");

        let text = "[bus]\n[[bus.sas_policy]]\nSasKey = 'abcd\n";
        assert!(!parse_error(text).contains("abcd"));

        let text = "[pipeline]\nmax_depth = 8 9\n";
        let shown = parse_error(text);
        assert!(shown.contains("max_depth = 8 9"), "{shown}");
    }
}
