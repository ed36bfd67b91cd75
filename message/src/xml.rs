//! `application/xml`: the DataContractSerializer text XML form.
//!
//! Owns the text side only — a [`Sink`] that prints events as compact XML and a
//! [`Source`] that tokenizes XML — while element names and types live in
//! `infoset`. The tokenizer is hand-written for the subset DataContractSerializer
//! produces (elements, attributes, text, entity and character references,
//! CDATA, comments, the XML declaration; no DTDs) so that every error carries an
//! exact byte offset and decoding stays allocation-light. No I/O here.

use crate::error::{MessageError, Syntax};
use crate::infoset::{self, Attr, Event, Sink, Source, StartTag};
use crate::model::RemoteExecutionContext;
use std::borrow::Cow;

/// Encodes a context as DataContractSerializer text XML (no declaration, compact).
pub fn encode(ctx: &RemoteExecutionContext) -> Vec<u8> {
    let mut sink = TextSink::default();
    infoset::write(ctx, &mut sink);
    sink.out
}

/// Decodes DataContractSerializer text XML.
pub fn decode(bytes: &[u8]) -> Result<RemoteExecutionContext, MessageError> {
    infoset::read(TextSource::new(bytes)?)
}

/// Writes events as XML text.
#[derive(Default)]
pub(crate) struct TextSink {
    /// The document so far.
    pub out: Vec<u8>,
    /// Qualified names of open elements (for end tags).
    open: Vec<(usize, usize)>,
    names: Vec<u8>,
    /// A start tag is open (attributes may follow).
    pending: bool,
}

impl TextSink {
    fn close_pending(&mut self) {
        if self.pending {
            self.out.push(b'>');
            self.pending = false;
        }
    }
}

/// Escapes text as .NET's `XmlUTF8NodeWriter` does: `<`, `>`, `&` (and `"` in
/// attributes) as entities; control characters other than tab and line feed
/// (CR included: parsers would normalise it), and the non-characters U+FFFE
/// and U+FFFF, as upper-case hex character references.
fn escape(out: &mut Vec<u8>, s: &str, attr: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'"' if attr => b"&quot;",
            0..=0x1f if b != b'\n' && b != b'\t' || attr => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("&#x{b:X};").as_bytes());
                start = i + 1;
                continue;
            }
            // U+FFFE / U+FFFF are EF BF BE / EF BF BF in UTF-8.
            0xEF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => {
                out.extend_from_slice(&bytes[start..i]);
                let last = if bytes[i + 2] == 0xBE { b'E' } else { b'F' };
                out.extend_from_slice(b"&#xFFF");
                out.extend_from_slice(&[last, b';']);
                start = i + 3;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

impl Sink for TextSink {
    fn start(&mut self, prefix: &str, local: &str) {
        self.close_pending();
        self.out.push(b'<');
        let from = self.names.len();
        if !prefix.is_empty() {
            self.names.extend_from_slice(prefix.as_bytes());
            self.names.push(b':');
        }
        self.names.extend_from_slice(local.as_bytes());
        self.out.extend_from_slice(&self.names[from..]);
        self.open.push((from, self.names.len()));
        self.pending = true;
    }

    fn xmlns(&mut self, prefix: &str, ns: &str) {
        self.out.extend_from_slice(b" xmlns");
        if !prefix.is_empty() {
            self.out.push(b':');
            self.out.extend_from_slice(prefix.as_bytes());
        }
        self.out.extend_from_slice(b"=\"");
        escape(&mut self.out, ns, true);
        self.out.push(b'"');
    }

    fn attr(&mut self, prefix: &str, local: &str, value: &str) {
        self.out.push(b' ');
        if !prefix.is_empty() {
            self.out.extend_from_slice(prefix.as_bytes());
            self.out.push(b':');
        }
        self.out.extend_from_slice(local.as_bytes());
        self.out.extend_from_slice(b"=\"");
        escape(&mut self.out, value, true);
        self.out.push(b'"');
    }

    fn text(&mut self, text: &str) {
        self.close_pending();
        escape(&mut self.out, text, false);
    }

    fn end(&mut self) {
        let Some((from, to)) = self.open.pop() else {
            return;
        };
        if self.pending {
            self.out.extend_from_slice(b"/>");
            self.pending = false;
        } else {
            self.out.extend_from_slice(b"</");
            self.out.extend_from_slice(&self.names[from..to]);
            self.out.push(b'>');
        }
        self.names.truncate(from);
    }
}

/// Tokenizes XML text into events.
pub(crate) struct TextSource<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Offset of the last event.
    at: usize,
    /// Open element qualified names.
    open: Vec<&'a str>,
    /// The last start tag was self-closing: emit its End next.
    pending_end: bool,
    seen_root: bool,
}

impl<'a> TextSource<'a> {
    /// A source over UTF-8 XML text (a UTF-8 BOM is skipped).
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Self, MessageError> {
        let s = std::str::from_utf8(bytes).map_err(|e| MessageError::Malformed {
            syntax: Syntax::Xml,
            offset: e.valid_up_to(),
            path: String::new(),
            message: "expected UTF-8 text, found an invalid byte sequence".into(),
        })?;
        let pos = if s.starts_with('\u{feff}') { 3 } else { 0 };
        Ok(TextSource {
            s,
            b: bytes,
            pos,
            at: pos,
            open: Vec::with_capacity(32),
            pending_end: false,
            seen_root: false,
        })
    }

    fn err(&self, at: usize, message: String) -> MessageError {
        MessageError::Malformed {
            syntax: Syntax::Xml,
            offset: at,
            path: self.open.join("/"),
            message,
        }
    }

    fn name(&mut self) -> Result<&'a str, MessageError> {
        let start = self.pos;
        while let Some(&c) = self.b.get(self.pos) {
            if c.is_ascii_alphanumeric()
                || c == b'_'
                || c == b'-'
                || c == b'.'
                || c == b':'
                || c >= 0x80
            {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start || self.b[start].is_ascii_digit() || self.b[start] == b'-' {
            return Err(self.err(start, "expected a name".into()));
        }
        Ok(&self.s[start..self.pos])
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// Decodes entity and character references in `raw` (starting at `base`).
    fn unescape(&self, raw: &'a str, base: usize) -> Result<Cow<'a, str>, MessageError> {
        if !raw.contains('&') {
            return Ok(Cow::Borrowed(raw));
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        let mut off = base;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let Some(semi) = after.find(';') else {
                return Err(self.err(off + i, "expected ';' ending the reference".into()));
            };
            let name = &after[..semi];
            let c = match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = if let Some(h) = name.strip_prefix("#x") {
                        u32::from_str_radix(h, 16).ok()
                    } else if let Some(d) = name.strip_prefix('#') {
                        d.parse().ok()
                    } else {
                        None
                    };
                    num.and_then(char::from_u32)
                }
            };
            match c {
                Some(c) => out.push(c),
                None => {
                    return Err(self.err(
                        off + i,
                        format!(
                            "expected a predefined entity or character reference, found &{name};"
                        ),
                    ));
                }
            }
            off += i + 2 + semi;
            rest = &after[semi + 1..];
        }
        out.push_str(rest);
        Ok(Cow::Owned(out))
    }

    fn start_tag(&mut self) -> Result<Event<'a>, MessageError> {
        let qname = self.name()?;
        let mut attrs = Vec::new();
        loop {
            let before = self.pos;
            self.ws();
            match self.b.get(self.pos) {
                Some(b'>') => {
                    self.pos += 1;
                    self.open.push(qname);
                    break;
                }
                Some(b'/') if self.b.get(self.pos + 1) == Some(&b'>') => {
                    self.pos += 2;
                    self.open.push(qname);
                    self.pending_end = true;
                    break;
                }
                Some(_) if before != self.pos => {
                    let an = self.name()?;
                    self.ws();
                    if self.b.get(self.pos) != Some(&b'=') {
                        return Err(
                            self.err(self.pos, "expected '=' after the attribute name".into())
                        );
                    }
                    self.pos += 1;
                    self.ws();
                    let q = match self.b.get(self.pos) {
                        Some(&q @ (b'"' | b'\'')) => q,
                        _ => {
                            return Err(
                                self.err(self.pos, "expected a quoted attribute value".into())
                            );
                        }
                    };
                    self.pos += 1;
                    let vs = self.pos;
                    let Some(len) = self.b[vs..].iter().position(|&c| c == q) else {
                        return Err(self.err(
                            vs,
                            "expected the closing quote of the attribute value".into(),
                        ));
                    };
                    let raw = &self.s[vs..vs + len];
                    if raw.contains('<') {
                        return Err(self.err(vs, "expected no '<' in an attribute value".into()));
                    }
                    self.pos = vs + len + 1;
                    let value = self.unescape(raw, vs)?;
                    let (p, l) = an.split_once(':').unwrap_or(("", an));
                    attrs.push(if an == "xmlns" {
                        Attr {
                            xmlns: true,
                            prefix: "",
                            local: "",
                            value,
                        }
                    } else if p == "xmlns" {
                        Attr {
                            xmlns: true,
                            prefix: "xmlns",
                            local: l,
                            value,
                        }
                    } else {
                        Attr {
                            xmlns: false,
                            prefix: p,
                            local: l,
                            value,
                        }
                    });
                }
                Some(_) => {
                    return Err(self.err(self.pos, "expected whitespace, '>' or '/>'".into()));
                }
                None => return Err(self.err(self.pos, "expected '>', found end of input".into())),
            }
        }
        let (prefix, local) = qname.split_once(':').unwrap_or(("", qname));
        Ok(Event::Start(StartTag {
            prefix,
            local,
            attrs,
        }))
    }
}

impl<'a> Source<'a> for TextSource<'a> {
    fn next(&mut self) -> Result<Event<'a>, MessageError> {
        if self.pending_end {
            self.pending_end = false;
            self.open.pop();
            return Ok(Event::End);
        }
        loop {
            self.at = self.pos;
            let Some(&c) = self.b.get(self.pos) else {
                if let Some(n) = self.open.last() {
                    return Err(self.err(self.pos, format!("expected </{n}>, found end of input")));
                }
                return Ok(Event::Eof);
            };
            if c != b'<' {
                let end = self.b[self.pos..]
                    .iter()
                    .position(|&c| c == b'<')
                    .map_or(self.b.len(), |p| self.pos + p);
                let raw = &self.s[self.pos..end];
                let start = self.pos;
                self.pos = end;
                if self.open.is_empty() {
                    if raw.trim().is_empty() {
                        continue;
                    }
                    return Err(self.err(
                        start,
                        "expected an element, found text outside the root".into(),
                    ));
                }
                return Ok(Event::Text(self.unescape(raw, start)?));
            }
            let rest = &self.b[self.pos..];
            if rest.starts_with(b"<?") {
                let Some(e) = self.s[self.pos..].find("?>") else {
                    return Err(self.err(self.pos, "expected '?>' closing the declaration".into()));
                };
                self.pos += e + 2;
            } else if rest.starts_with(b"<!--") {
                let Some(e) = self.s[self.pos + 4..].find("-->") else {
                    return Err(self.err(self.pos, "expected '-->' closing the comment".into()));
                };
                self.pos += 4 + e + 3;
            } else if rest.starts_with(b"<![CDATA[") {
                if self.open.is_empty() {
                    return Err(self.err(
                        self.pos,
                        "expected an element, found CDATA outside the root".into(),
                    ));
                }
                let Some(e) = self.s[self.pos + 9..].find("]]>") else {
                    return Err(
                        self.err(self.pos, "expected ']]>' closing the CDATA section".into())
                    );
                };
                let text = &self.s[self.pos + 9..self.pos + 9 + e];
                self.pos += 9 + e + 3;
                return Ok(Event::Text(Cow::Borrowed(text)));
            } else if rest.starts_with(b"<!") {
                return Err(self.err(
                    self.pos,
                    "expected an element; DTDs are not accepted".into(),
                ));
            } else if rest.starts_with(b"</") {
                self.pos += 2;
                let n = self.name()?;
                self.ws();
                if self.b.get(self.pos) != Some(&b'>') {
                    return Err(self.err(self.pos, "expected '>' closing the end tag".into()));
                }
                self.pos += 1;
                return match self.open.pop() {
                    Some(o) if o == n => Ok(Event::End),
                    Some(o) => Err(self.err(self.at, format!("expected </{o}>, found </{n}>"))),
                    None => Err(self.err(self.at, format!("expected a start tag, found </{n}>"))),
                };
            } else {
                if self.open.is_empty() {
                    if self.seen_root {
                        return Err(self.err(
                            self.pos,
                            "expected end of input after the root element".into(),
                        ));
                    }
                    self.seen_root = true;
                }
                self.pos += 1;
                return self.start_tag();
            }
        }
    }

    fn offset(&self) -> usize {
        self.at
    }

    fn syntax(&self) -> Syntax {
        Syntax::Xml
    }
}
