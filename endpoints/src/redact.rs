//! Secret redaction for text that comes back from a remote service (error bodies, transport errors).
//!
//! Owns finding a secret in text whatever the encoding a receiver used to quote it back — raw,
//! percent-encoded (upper- or lower-case hex, `+` for space, double-encoded `%25XX`), JSON-escaped (`\"`,
//! `\uXXXX`), HTML/XML entities (`&amp;`, `&#43;`, `&#x2B;`) or base64 — mixed within one quote, and whatever
//! the secret's length. It must not know where secrets come from ([`crate::Endpoint`] collects them) and
//! must not shorten or reformat text beyond the redaction itself.
//!
//! Why a matcher rather than a list of encoded variants: a receiver may quote the request line
//! (`POST /hook?code=Sp+ace*Key%7ESecret%2BZ`), a JSON echo (`"code":"Sp ace*Key~Secret+Z"`) or an HTML page,
//! and each library escapes a different set of characters; matching one character at a time against every
//! encoding of that character covers all of them at once.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// What replaces each quoted secret.
pub const MARKER: &str = "<redacted>";

/// What replaces the whole text when redaction cannot make it secret-free (a secret so short that it
/// reappears around the markers, e.g. a one-letter key).
pub const WITHHELD: &str = "(answer text withheld: it quotes a credential of this endpoint)";

/// Redacts every quoted occurrence of every secret in `text`. The result never contains an encoded
/// occurrence of a secret: it is the text with [`MARKER`] in place of each occurrence, or [`WITHHELD`] when
/// that could not be achieved. Empty secrets are ignored (they cannot be quoted).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return text.to_string();
    }
    let mut ranges = Vec::new();
    for s in &secrets {
        ranges.extend(find_all(text, s));
        for b64 in base64_cores(s) {
            ranges.extend(text.match_indices(&b64).map(|(i, m)| (i, i + m.len())));
        }
    }
    ranges.extend(sas_signatures(text));
    let out = replace_ranges(text, ranges);
    if secrets.iter().any(|s| contains(&out, s)) {
        WITHHELD.to_string()
    } else {
        out
    }
}

/// Whether `text` quotes `secret` in any encoding the matcher knows.
pub fn contains(text: &str, secret: &str) -> bool {
    !secret.is_empty()
        && (!find_all(text, secret).is_empty()
            || base64_cores(secret)
                .iter()
                .any(|b| text.contains(b.as_str())))
}

/// Non-overlapping (start, end) byte ranges of every encoded occurrence of `secret`, longest match first at
/// each start.
fn find_all(text: &str, secret: &str) -> Vec<(usize, usize)> {
    let chars: Vec<char> = secret.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if let Some(end) = match_at(text, i, &chars) {
            out.push((i, end));
            i = end;
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The longest end of an encoded `secret` starting at byte `start`, if any. Tracks every position reachable
/// after each character (a set, so ambiguous encodings never branch exponentially).
fn match_at(text: &str, start: usize, secret: &[char]) -> Option<usize> {
    let mut positions = vec![start];
    for &c in secret {
        let mut next = Vec::new();
        for &p in &positions {
            for end in char_forms(text, p, c) {
                if !next.contains(&end) {
                    next.push(end);
                }
            }
        }
        if next.is_empty() {
            return None;
        }
        positions = next;
    }
    positions.into_iter().max()
}

/// Every end position where an encoding of `c` starting at `p` ends.
fn char_forms(text: &str, p: usize, c: char) -> Vec<usize> {
    let rest = &text[p..];
    let mut ends = Vec::new();
    if rest.starts_with(c) {
        ends.push(p + c.len_utf8());
    }
    if c == ' ' && rest.starts_with('+') {
        ends.push(p + 1);
    }
    let mut utf8 = [0u8; 4];
    let bytes = c.encode_utf8(&mut utf8).as_bytes();
    if let Some(n) = percent_bytes(rest, bytes) {
        ends.push(p + n);
    }
    if let Some(n) = json_escape(rest, c) {
        ends.push(p + n);
    }
    if let Some(n) = html_entity(rest, c) {
        ends.push(p + n);
    }
    ends
}

/// `%XX` (any hex case, or double-encoded `%25XX`) for each byte, a byte left raw where it is ASCII; returns
/// the length consumed.
fn percent_bytes(rest: &str, bytes: &[u8]) -> Option<usize> {
    let r = rest.as_bytes();
    let mut at = 0;
    let mut encoded_any = false;
    for &b in bytes {
        let hex = |s: &[u8]| s.len() >= 2 && hex_pair(s[0], s[1]) == Some(b);
        if r.get(at) == Some(&b'%') && hex(&r[at + 1..]) {
            at += 3;
            encoded_any = true;
        } else if r[at..].starts_with(b"%25") && hex(&r[at + 3..]) {
            at += 5;
            encoded_any = true;
        } else if b.is_ascii() && r.get(at) == Some(&b) {
            at += 1;
        } else {
            return None;
        }
    }
    // Raw bytes alone are the raw form, already covered.
    encoded_any.then_some(at)
}

fn hex_pair(h: u8, l: u8) -> Option<u8> {
    let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(v(h)? * 16 + v(l)?)
}

/// JSON escapes of `c`: `\uXXXX` (a surrogate pair above U+FFFF) and the short forms.
fn json_escape(rest: &str, c: char) -> Option<usize> {
    let short = match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '/' => Some("\\/"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        _ => None,
    };
    if let Some(s) = short
        && rest.starts_with(s)
    {
        return Some(s.len());
    }
    let mut units = [0u16; 2];
    let mut at = 0;
    for u in c.encode_utf16(&mut units).iter().copied() {
        let pre = rest.get(at..at + 2)?;
        let hex = rest.get(at + 2..at + 6)?;
        if !pre.eq_ignore_ascii_case("\\u") || u16::from_str_radix(hex, 16).ok()? != u {
            return None;
        }
        at += 6;
    }
    Some(at)
}

/// HTML/XML character references of `c`: named (`&amp;` `&lt;` `&gt;` `&quot;` `&apos;`), decimal and hex.
fn html_entity(rest: &str, c: char) -> Option<usize> {
    let body = rest.strip_prefix('&')?;
    // References are short; looking further would make every '&' scan the rest of the text.
    let end = body
        .char_indices()
        .take(13)
        .find(|&(_, c)| c == ';')
        .map(|(i, _)| i)?;
    let name = &body[..end];
    let value = match name.strip_prefix('#') {
        Some(num) => match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => num.parse::<u32>().ok(),
        }
        .and_then(char::from_u32),
        None => match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => None,
        },
    }?;
    (value == c).then_some(end + 2)
}

/// The base64 forms of `secret`: its whole encoding (padded, standard and URL-safe alphabets), and the text
/// that encodes it whatever its alignment inside a longer base64 string — for each of the three byte
/// offsets, the characters that depend on the secret's bits only. Cores shorter than 4 characters are left
/// out (they would match unrelated text).
fn base64_cores(secret: &str) -> Vec<String> {
    let mut out = vec![STANDARD.encode(secret), URL_SAFE.encode(secret)];
    for offset in 0..3usize {
        let mut buf = vec![0u8; offset];
        buf.extend_from_slice(secret.as_bytes());
        // Character k covers bits [6k, 6k + 6); the secret's bits are [8 offset, 8 (offset + len)).
        let first = (offset * 8).div_ceil(6);
        let last = ((offset + secret.len()) * 8) / 6;
        for engine in [&STANDARD, &URL_SAFE] {
            let enc = engine.encode(&buf);
            if let Some(core) = enc.get(first..last)
                && core.len() >= 4
                && !out.iter().any(|o| o == core)
            {
                out.push(core.to_string());
            }
        }
    }
    out
}

/// SAS signatures (`sig=…` in a SharedAccessSignature): tokens signed per request are secrets too, valid
/// until they expire, and are not in the endpoint's configuration to be matched.
fn sas_signatures(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("sig=") {
        let start = from + i + 4;
        let len = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "%+/=_-".contains(c)))
            .unwrap_or(text.len() - start);
        if len > 0 {
            out.push((start, start + len));
        }
        from = start + len;
    }
    out
}

/// Replaces the (possibly overlapping) ranges with [`MARKER`].
fn replace_ranges(text: &str, mut ranges: Vec<(usize, usize)>) -> String {
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in ranges {
        if e <= at {
            continue;
        }
        if s >= at {
            out.push_str(&text[at..s]);
            out.push_str(MARKER);
        }
        at = e;
    }
    out.push_str(&text[at.min(text.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The report's example: a form-encoded key quoted in a request line, and the same key in JSON and HTML.
    #[test]
    fn request_line_json_and_html_quotes() {
        let key = "Sp ace*Key~Secret+Z";
        for text in [
            "POST /hook3?code=Sp+ace*Key%7ESecret%2BZ HTTP/1.1",
            "POST /hook3?code=Sp%20ace%2AKey%7esecret%2bZ HTTP/1.1",
            r#"{"code":"Sp ace*Key~Secret\u002BZ"}"#,
            "<p>code=Sp&#32;ace&#x2a;Key~Secret&#43;Z</p>",
            "code=Sp%2520ace*Key~Secret%252BZ",
        ] {
            let text = text.replace("%7esecret", "%7eSecret");
            let out = redact(&text, &[key]);
            assert!(!contains(&out, key), "{text} → {out}");
            assert!(out.contains(MARKER) || out == WITHHELD, "{out}");
        }
        assert_eq!(
            redact("POST /hook3?code=Sp+ace*Key%7ESecret%2BZ HTTP/1.1", &[key]),
            "POST /hook3?code=<redacted> HTTP/1.1"
        );
    }

    /// Short secrets are redacted too; when the marker itself would quote them, the whole text is withheld.
    #[test]
    fn short_secrets() {
        assert_eq!(
            redact("GET /h?code=%2B%7E", &["+~"]),
            "GET /h?code=<redacted>"
        );
        assert_eq!(redact("code=xQ", &["Q"]), "code=x<redacted>");
        assert_eq!(
            redact("code=e", &["e"]),
            WITHHELD,
            "the marker holds an 'e'"
        );
    }

    /// Base64 of a secret is found at any alignment inside a longer base64 text (e.g. Basic credentials).
    #[test]
    fn base64_any_alignment() {
        let key = "hunter2-is-the-key";
        for prefix in ["", "u:", "us:", "use:"] {
            let b = STANDARD.encode(format!("{prefix}{key}"));
            let out = redact(&format!("Authorization: Basic {b}"), &[key]);
            assert!(!out.contains(&b), "{prefix}: {out}");
        }
    }

    /// SAS signatures are removed even though the endpoint only knows the key they were signed with.
    #[test]
    fn sas_signature() {
        let out = redact(
            "bad token SharedAccessSignature sr=http%3A%2F%2Fh%2Fq&sig=abc%2Bdef%3D&se=1&skn=root",
            &["unrelated"],
        );
        assert!(out.contains("sig=<redacted>&se=1"), "{out}");
    }

    fn encodings(s: &str) -> Vec<String> {
        use std::fmt::Write as _;
        let pct = |upper: bool, plus: bool| {
            s.bytes().fold(String::new(), |mut o, b| {
                if b.is_ascii_alphanumeric() {
                    o.push(b as char);
                } else if plus && b == b' ' {
                    o.push('+');
                } else if upper {
                    let _ = write!(o, "%{b:02X}");
                } else {
                    let _ = write!(o, "%{b:02x}");
                }
                o
            })
        };
        let json = serde_json::to_string(s).unwrap();
        let json_u = s.chars().fold(String::new(), |mut o, c| {
            if c.is_ascii_alphanumeric() {
                o.push(c);
            } else {
                let mut b = [0u16; 2];
                for u in c.encode_utf16(&mut b) {
                    let _ = write!(o, "\\u{u:04X}");
                }
            }
            o
        });
        let html = s.chars().fold(String::new(), |mut o, c| {
            if c.is_ascii_alphanumeric() {
                o.push(c);
            } else {
                let _ = write!(o, "&#{};", c as u32);
            }
            o
        });
        let form: String = reqwest::Url::parse_with_params("http://h/", [("code", s)])
            .unwrap()
            .query()
            .unwrap()
            .trim_start_matches("code=")
            .to_string();
        vec![
            s.to_string(),
            pct(true, false),
            pct(false, false),
            pct(true, true),
            form,
            json[1..json.len() - 1].to_string(),
            json_u,
            html,
            STANDARD.encode(s),
        ]
    }

    proptest! {
        /// Any secret (any length, ASCII or not), quoted in any encoding between unrelated text, never
        /// survives redaction: the result holds neither that quoted form nor any encoded occurrence, or it is
        /// the fixed withheld text.
        #[test]
        fn no_encoding_survives(
            secret in "[ -~]{1,24}|[\\u{80}-\\u{7ff}\\u{1F600}-\\u{1F64F}]{1,8}",
            before in "[\\u{4e00}-\\u{4e80}]{0,20}",
            after in "[\\u{4e00}-\\u{4e80}]{0,20}",
        ) {
            for quoted in encodings(&secret) {
                let text = format!("{before}{quoted}{after}");
                let out = redact(&text, &[secret.as_str()]);
                prop_assert!(
                    out == WITHHELD || (!out.contains(&quoted) && !contains(&out, &secret)),
                    "secret {:?} quoted as {:?} survived: {:?}", secret, quoted, out
                );
            }
        }
    }
}
