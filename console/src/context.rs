//! A system job's RemoteExecutionContext for people: weft-message's readable summary, a tree to unfold
//! (its JSON form, member by member, in Dataverse's order) and the raw bytes as stored and as the job's
//! endpoint receives them (JSON, XML, or .NET binary XML shown as hex).
//!
//! Owns only the rendering. Decoding and encoding are weft-message's; a body that does not decode is
//! shown raw with the decoder's error, never a panic. Output is bounded: the tree stops at
//! [`MAX_TREE_NODES`] and the raw views at [`MAX_RAW_BYTES`].

use maud::{Markup, html};
use serde_json::Value;
use weft_message::Format;
use weft_store::system::MessageFormat;

/// The most members the tree renders: a context with a huge Target stays a page a browser can open.
pub const MAX_TREE_NODES: usize = 5_000;
/// The most bytes a raw view shows (the webhook limit, 256 KiB, is the largest body weft posts).
pub const MAX_RAW_BYTES: usize = 256 * 1024;

/// The context section of a job's page for `data` (stored as `content_type`), posted as `endpoint`.
pub fn render(data: &[u8], content_type: &str, endpoint: Option<MessageFormat>) -> Markup {
    let ctx = match weft_message::parse(data, content_type) {
        Ok(ctx) => ctx,
        Err(e) => {
            return html! {
                p.notice.error role="alert" { "The stored context (" (content_type) ", " (data.len()) " bytes) does not decode: " (e.to_string()) }
                (raw_text(data))
            };
        }
    };
    let json = weft_message::encode(&ctx, Format::Json);
    let tree = serde_json::from_slice::<Value>(&json).ok();
    let wire = endpoint.map(|f| match f {
        MessageFormat::Json => Format::Json,
        MessageFormat::TextXml => Format::Xml,
        MessageFormat::BinaryXml => Format::Binary,
    });
    html! {
        h3 { "Summary" }
        pre #context-summary { (weft_message::summary(&ctx)) }
        details #context-tree open {
            summary { "Tree" }
            div.tree { @if let Some(v) = &tree { (tree_of(v, &mut 0)) } }
        }
        details {
            summary { "Raw, as stored (" (content_type) ", " (data.len()) " bytes)" }
            (raw_text(data))
        }
        @if let Some(format) = wire.filter(|f| f.content_type() != content_type) {
            @let bytes = weft_message::encode(&ctx, format);
            details {
                summary { "Raw, as the endpoint receives it (" (format.content_type()) ", " (bytes.len()) " bytes)" }
                @if format == Format::Binary { (hex(&bytes)) } @else { (raw_text(&bytes)) }
            }
        }
    }
}

pub(crate) fn raw_text(bytes: &[u8]) -> Markup {
    let shown = &bytes[..bytes.len().min(MAX_RAW_BYTES)];
    let text = String::from_utf8_lossy(shown);
    // JSON is easier to read indented; anything else as it is.
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    html! {
        pre.raw { (pretty.as_deref().unwrap_or(&text)) }
        @if bytes.len() > shown.len() { p.muted { "(first " (MAX_RAW_BYTES) " of " (bytes.len()) " bytes)" } }
    }
}

/// A hex dump: offset, 16 bytes, their printable ASCII.
pub(crate) fn hex(bytes: &[u8]) -> Markup {
    use std::fmt::Write;
    let shown = &bytes[..bytes.len().min(MAX_RAW_BYTES)];
    let mut out = String::new();
    for (i, chunk) in shown.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for b in chunk {
            let _ = write!(out, "{b:02x} ");
        }
        out.push_str(&"   ".repeat(16 - chunk.len()));
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    html! {
        pre.raw { (out) }
        @if bytes.len() > shown.len() { p.muted { "(first " (MAX_RAW_BYTES) " of " (bytes.len()) " bytes)" } }
    }
}

/// `v` as nested `<details>`: objects and arrays unfold (the top two levels open), scalars are leaves.
fn tree_of(v: &Value, budget: &mut usize) -> Markup {
    html! {
        @match v {
            Value::Object(map) => {
                @for (k, child) in map {
                    (node(k, child, budget, 0))
                }
            }
            _ => { div.leaf { (scalar(v)) } }
        }
    }
}

fn node(key: &str, v: &Value, budget: &mut usize, level: usize) -> Markup {
    *budget += 1;
    if *budget > MAX_TREE_NODES {
        return if *budget == MAX_TREE_NODES + 1 {
            html! { div.leaf.muted { "… (the tree stops at " (MAX_TREE_NODES) " members; see the raw view)" } }
        } else {
            html! {}
        };
    }
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("[{i}]"), c))
            .collect(),
        _ => Vec::new(),
    };
    if children.is_empty() && !matches!(v, Value::Object(_) | Value::Array(_)) {
        return html! { div.leaf { span.k { (key) } ": " (scalar(v)) } };
    }
    let what = match v {
        Value::Array(a) => format!("[{}]", a.len()),
        _ => format!("{{{}}}", children.len()),
    };
    html! {
        details open[level < 1] {
            summary { span.k { (key) } " " span.muted { (what) } }
            @for (k, c) in &children { (node(k, c, budget, level + 1)) }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that does not decode is shown raw with the error, escaped; nothing panics.
    #[test]
    fn undecodable_body_is_shown_raw() {
        let html = render(b"<script>alert(1)</script>", "application/json", None).into_string();
        assert!(html.contains("does not decode"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }

    /// The tree stops at its budget.
    #[test]
    fn tree_is_bounded() {
        let big: Value = serde_json::json!({ "a": (0..MAX_TREE_NODES + 50).collect::<Vec<_>>() });
        let html = tree_of(&big, &mut 0).into_string();
        assert!(html.contains("the tree stops at"));
        assert!(html.matches("class=\"leaf\"").count() <= MAX_TREE_NODES + 1);
    }

    /// Hex dumps show offsets and printable text.
    #[test]
    fn hex_dump() {
        let html = hex(b"\x56\x02\x0bhello").into_string();
        assert!(html.contains("00000000  56 02 0b 68 65 6c 6c 6f"), "{html}");
        assert!(html.contains("V..hello"), "{html}");
    }
}
