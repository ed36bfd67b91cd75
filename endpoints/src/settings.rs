//! The webhook `authvalue` for HttpHeader (5) and HttpQueryString (6):
//! `<settings><setting name="K" value="V"/>…</settings>` (dataverse.md §13, §17).
//!
//! Owns parsing only. Errors name the position and the setting's index and name, never a value: values are
//! secrets.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Parses the settings document into ordered (name, value) pairs. At least one setting is required.
pub fn parse(xml: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    // 0 = outside the root, 1 = inside <settings>, 2 = inside a <setting> written with an end tag.
    let mut depth = 0usize;
    let mut saw_root = false;
    loop {
        let pos = reader.buffer_position();
        let ev = reader
            .read_event()
            .map_err(|e| format!("authvalue is not well-formed XML at byte {pos}: {e}"))?;
        let (e, has_end) = match ev {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => continue,
            Event::Text(_) | Event::CData(_) => {
                return Err(format!(
                    "unexpected text at byte {pos}: authvalue must be <settings><setting name=\"…\" value=\"…\"/></settings>"
                ));
            }
            Event::Eof => break,
            _ => continue, // declaration, comments, processing instructions
        };
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        match depth {
            0 if saw_root => {
                return Err(format!(
                    "authvalue has a second root element <{name}> at byte {pos}"
                ));
            }
            0 if name != "settings" => {
                return Err(format!(
                    "authvalue root element must be <settings>, found <{name}> at byte {pos}"
                ));
            }
            0 => saw_root = true,
            1 if name == "setting" => out.push(setting(&e, out.len() + 1, pos)?),
            _ => {
                return Err(format!(
                    "unexpected element <{name}> at byte {pos}: <settings> may only contain <setting name=\"…\" value=\"…\"/>"
                ));
            }
        }
        if has_end {
            depth += 1;
        }
    }
    if !saw_root {
        return Err(
            "authvalue is empty: expected <settings><setting name=\"…\" value=\"…\"/></settings>"
                .into(),
        );
    }
    if out.is_empty() {
        return Err("authvalue <settings> has no <setting name=\"…\" value=\"…\"/> element".into());
    }
    Ok(out)
}

fn setting(e: &BytesStart<'_>, index: usize, pos: u64) -> Result<(String, String), String> {
    let mut name = None;
    let mut value = None;
    for attr in e.attributes() {
        let attr = attr
            .map_err(|err| format!("setting #{index} at byte {pos}: malformed attribute: {err}"))?;
        let v = attr.unescape_value().map_err(|err| {
            format!("setting #{index} at byte {pos}: bad escape in attribute: {err}")
        })?;
        match attr.key.as_ref() {
            b"name" => name = Some(v.into_owned()),
            b"value" => value = Some(v.into_owned()),
            other => {
                return Err(format!(
                    "setting #{index} at byte {pos}: unknown attribute '{}' (expected name and value)",
                    String::from_utf8_lossy(other)
                ));
            }
        }
    }
    let name = name.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
        format!("setting #{index} at byte {pos}: missing or empty name attribute")
    })?;
    let value = value.ok_or_else(|| {
        format!("setting #{index} ('{name}') at byte {pos}: missing value attribute")
    })?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented shape parses in order, with XML escapes resolved.
    #[test]
    fn parses_settings() {
        let s = parse(r#"<settings><setting name="x-api-key" value="a&amp;b"/><setting name="k2" value="v2"></setting></settings>"#)
            .unwrap();
        assert_eq!(
            s,
            vec![
                ("x-api-key".to_string(), "a&b".to_string()),
                ("k2".to_string(), "v2".to_string())
            ]
        );
        let s = parse("<?xml version=\"1.0\"?>\n<settings>\n  <setting name=\"a\" value=\"\"/>\n</settings>\n").unwrap();
        assert_eq!(s, vec![("a".to_string(), String::new())]);
    }

    /// Malformed documents get precise errors that never contain a value.
    #[test]
    fn precise_errors_without_values() {
        let cases = [
            ("", "empty"),
            ("<config/>", "root element must be <settings>"),
            ("<settings></settings>", "no <setting"),
            (
                r#"<settings><setting value="SECRET1"/></settings>"#,
                "setting #1",
            ),
            (
                r#"<settings><setting name="a" value="SECRET1"/><setting name="b"/></settings>"#,
                "setting #2 ('b')",
            ),
            (
                r#"<settings><foo name="a" value="SECRET1"/></settings>"#,
                "unexpected element <foo>",
            ),
            (
                r#"<settings><setting name="a" value="SECRET1" extra="1"/></settings>"#,
                "unknown attribute 'extra'",
            ),
            (
                r#"<settings><setting name="a" value="SECRET1"/>text</settings>"#,
                "unexpected text",
            ),
            (
                r#"<settings><setting name="a" value="SECRET1"></settings>"#,
                "not well-formed",
            ),
            ("plain-secret-SECRET1", "unexpected text"),
        ];
        for (input, want) in cases {
            let err = parse(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
            assert!(!err.contains("SECRET1"), "{input}: value leaked: {err}");
        }
    }
}
