//! The event reader of binary XML: [MC-NBFX] records in, infoset events out,
//! for `to_text` and for `decode` whenever the direct reader (`model_reader`)
//! gives up. Accepts every record form .NET or others may write, and words
//! the errors. Its record primitives (names, dictionary strings, attribute
//! and text records) are shared with `model_reader`.
//!
//! Owns record parsing into events only; the model is built by `infoset`.

use super::*;
use crate::infoset::{Attr, Event, Scalar, Source, StartTag};
use std::borrow::Cow;

/// Reads NBFX records as events.
pub(crate) struct BinarySource<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    at: usize,
    depth: usize,
    pending_end: bool,
    /// The reader's UTC offset: what local-kind dates are shown in.
    local_offset: i16,
}

impl<'a> BinarySource<'a> {
    /// A source whose reader sits in UTC (local-kind dates get `+00:00`).
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self::in_zone(b, 0)
    }

    /// A source whose reader's local zone is `local_offset` minutes from UTC.
    pub(crate) fn in_zone(b: &'a [u8], local_offset: i16) -> Self {
        BinarySource {
            b,
            pos: 0,
            at: 0,
            depth: 0,
            pending_end: false,
            local_offset,
        }
    }

    fn err(&self, at: usize, message: String) -> MessageError {
        MessageError::Malformed {
            syntax: Syntax::Binary,
            offset: at,
            path: format!("element depth {}", self.depth),
            message,
        }
    }

    #[inline]
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], MessageError> {
        match self.pos.checked_add(n).filter(|&e| e <= self.b.len()) {
            Some(e) => {
                let s = &self.b[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err(
                self.pos,
                format!("expected {n} bytes of {what}, found end of input"),
            )),
        }
    }

    #[inline]
    fn byte(&mut self, what: &str) -> Result<u8, MessageError> {
        Ok(self.take(1, what)?[0])
    }

    #[inline]
    pub(super) fn mb31(&mut self) -> Result<u32, MessageError> {
        let at = self.pos;
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.byte("a MultiByteInt31")?;
            v |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i == 4 && b > 0x07 {
                    break;
                }
                return Ok(v);
            }
        }
        Err(self.err(at, "expected a MultiByteInt31 of at most 31 bits".into()))
    }

    #[inline]
    pub(super) fn string(&mut self) -> Result<&'a str, MessageError> {
        let n = self.mb31()? as usize;
        let at = self.pos;
        let bytes = self.take(n, "string")?;
        std::str::from_utf8(bytes).map_err(|_| self.err(at, "expected UTF-8 string bytes".into()))
    }

    #[inline]
    pub(super) fn dict(&mut self) -> Result<&'static str, MessageError> {
        let at = self.pos;
        let id = self.mb31()?;
        if id % 2 == 1 {
            return Err(self.err(
                at,
                format!("found session dictionary string id {id}; msbin1 bodies carry no session dictionary"),
            ));
        }
        dict_str(id).ok_or_else(|| {
            self.err(at, format!("expected a static dictionary id weft knows (see nbfx::DICTIONARY), found 0x{id:X}"))
        })
    }

    /// Reads a text record body (record type already read) as canonical text.
    pub(super) fn text_body(&mut self, rt: u8) -> Result<Cow<'a, str>, MessageError> {
        let at = self.pos - 1;
        let le = |s: &[u8]| {
            let mut a = [0u8; 8];
            a[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(a)
        };
        let int = |v: i64| {
            let mut o = Vec::with_capacity(20);
            push_i64(&mut o, v);
            Cow::Owned(String::from_utf8(o).unwrap_or_default())
        };
        Ok(match rt & !1 {
            ZERO_TEXT => Cow::Borrowed("0"),
            ONE_TEXT => Cow::Borrowed("1"),
            FALSE_TEXT => Cow::Borrowed("false"),
            TRUE_TEXT => Cow::Borrowed("true"),
            INT8_TEXT => int(i64::from(self.byte("Int8Text")? as i8)),
            INT16_TEXT => int(i64::from(le(self.take(2, "Int16Text")?) as u16 as i16)),
            INT32_TEXT => int(i64::from(le(self.take(4, "Int32Text")?) as u32 as i32)),
            INT64_TEXT => int(le(self.take(8, "Int64Text")?) as i64),
            UINT64_TEXT => Cow::Owned(le(self.take(8, "UInt64Text")?).to_string()),
            BOOL_TEXT => match self.byte("BoolText")? {
                0 => Cow::Borrowed("false"),
                1 => Cow::Borrowed("true"),
                v => return Err(self.err(at, format!("expected BoolText 0 or 1, found {v}"))),
            },
            FLOAT_TEXT => {
                let v = f32::from_bits(le(self.take(4, "FloatText")?) as u32);
                Cow::Owned(infoset::format_xml_double(f64::from(v)))
            }
            DOUBLE_TEXT => {
                let v = f64::from_bits(le(self.take(8, "DoubleText")?));
                Cow::Owned(infoset::format_xml_double(v))
            }
            DECIMAL_TEXT => {
                let b = self.take(16, "DecimalText")?;
                let scale = u32::from(b[2]);
                let neg = b[3] & 0x80 != 0;
                let hi = le(&b[4..8]) as u128;
                let lo = le(&b[8..16]) as u128;
                if scale > 28 {
                    return Err(self.err(
                        at,
                        format!("expected a decimal scale of at most 28, found {scale}"),
                    ));
                }
                Cow::Owned(decimal_text(neg, (hi << 64) | lo, scale))
            }
            DATETIME_TEXT => {
                let v = le(self.take(8, "DateTimeText")?);
                Cow::Owned(infoset::format_xml_date(&date_from_binary(
                    v,
                    self.local_offset,
                )))
            }
            CHARS8_TEXT | CHARS16_TEXT | CHARS32_TEXT => {
                let n = match rt & !1 {
                    CHARS8_TEXT => usize::from(self.byte("Chars8Text length")?),
                    CHARS16_TEXT => le(self.take(2, "Chars16Text length")?) as usize,
                    _ => le(self.take(4, "Chars32Text length")?) as usize,
                };
                let s = self.pos;
                let bytes = self.take(n, "chars")?;
                Cow::Borrowed(
                    std::str::from_utf8(bytes)
                        .map_err(|_| self.err(s, "expected UTF-8 chars".into()))?,
                )
            }
            UNICODE_CHARS8_TEXT | UNICODE_CHARS16_TEXT | UNICODE_CHARS32_TEXT => {
                let n = match rt & !1 {
                    UNICODE_CHARS8_TEXT => usize::from(self.byte("UnicodeChars8Text length")?),
                    UNICODE_CHARS16_TEXT => le(self.take(2, "UnicodeChars16Text length")?) as usize,
                    _ => le(self.take(4, "UnicodeChars32Text length")?) as usize,
                };
                let s = self.pos;
                let bytes = self.take(n, "UTF-16 chars")?;
                if n % 2 == 1 {
                    return Err(self.err(s, "expected an even UTF-16 byte count".into()));
                }
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Cow::Owned(
                    String::from_utf16(&units)
                        .map_err(|_| self.err(s, "expected valid UTF-16".into()))?,
                )
            }
            BYTES8_TEXT | BYTES16_TEXT | BYTES32_TEXT => {
                use base64::Engine;
                let n = match rt & !1 {
                    BYTES8_TEXT => usize::from(self.byte("Bytes8Text length")?),
                    BYTES16_TEXT => le(self.take(2, "Bytes16Text length")?) as usize,
                    _ => le(self.take(4, "Bytes32Text length")?) as usize,
                };
                let bytes = self.take(n, "bytes")?;
                Cow::Owned(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            EMPTY_TEXT => Cow::Borrowed(""),
            DICTIONARY_TEXT => Cow::Borrowed(self.dict()?),
            UUID_TEXT => Cow::Owned(
                guid_from_bytes(self.take(16, "UuidText")?)
                    .hyphenated()
                    .to_string(),
            ),
            UNIQUE_ID_TEXT => Cow::Owned(format!(
                "urn:uuid:{}",
                guid_from_bytes(self.take(16, "UniqueIdText")?).hyphenated()
            )),
            QNAME_DICTIONARY_TEXT => {
                let p = self.byte("QNameDictionaryText prefix")?;
                if p > 25 {
                    return Err(self.err(at, format!("expected a prefix index 0..25, found {p}")));
                }
                let l = self.dict()?;
                Cow::Owned(format!("{}:{l}", char::from(b'a' + p)))
            }
            _ => {
                return Err(self.err(
                    at,
                    format!("expected a text record, found record type 0x{rt:02X}"),
                ));
            }
        })
    }

    /// A text record (type byte `rt` already read): typed records travel
    /// typed so readers skip text round trips, the rest as text.
    #[inline]
    pub(super) fn text_event(&mut self, rt: u8) -> Result<Event<'a>, MessageError> {
        // Typed records travel typed so the reader skips text round trips.
        let le8 = |b: &[u8]| {
            let mut a = [0u8; 8];
            a[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(a)
        };
        Ok(match rt & !1 {
            ZERO_TEXT => Event::Typed(Scalar::Int(0)),
            ONE_TEXT => Event::Typed(Scalar::Int(1)),
            INT8_TEXT => Event::Typed(Scalar::Int(i64::from(self.byte("Int8Text")? as i8))),
            INT16_TEXT => {
                let v = le8(self.take(2, "Int16Text")?) as u16 as i16;
                Event::Typed(Scalar::Int(i64::from(v)))
            }
            INT32_TEXT => {
                let v = le8(self.take(4, "Int32Text")?) as u32 as i32;
                Event::Typed(Scalar::Int(i64::from(v)))
            }
            INT64_TEXT => Event::Typed(Scalar::Int(le8(self.take(8, "Int64Text")?) as i64)),
            TRUE_TEXT => Event::Typed(Scalar::Bool(true)),
            FALSE_TEXT => Event::Typed(Scalar::Bool(false)),
            FLOAT_TEXT => {
                let v = f32::from_bits(le8(self.take(4, "FloatText")?) as u32);
                Event::Typed(Scalar::Double(f64::from(v)))
            }
            DOUBLE_TEXT => Event::Typed(Scalar::Double(f64::from_bits(le8(
                self.take(8, "DoubleText")?
            )))),
            DATETIME_TEXT => {
                let v = le8(self.take(8, "DateTimeText")?);
                Event::Typed(Scalar::Date(date_from_binary(v, self.local_offset)))
            }
            UUID_TEXT => Event::Typed(Scalar::Guid(guid_from_bytes(self.take(16, "UuidText")?))),
            _ => Event::Text(self.text_body(rt)?),
        })
    }

    pub(super) fn attribute(&mut self, rt: u8) -> Result<Attr<'a>, MessageError> {
        let (xmlns, prefix, local): (bool, &'a str, &'a str) = match rt {
            SHORT_ATTRIBUTE => (false, "", self.string()?),
            ATTRIBUTE => (false, self.string()?, self.string()?),
            SHORT_DICTIONARY_ATTRIBUTE => (false, "", self.dict()?),
            DICTIONARY_ATTRIBUTE => (false, self.string()?, self.dict()?),
            SHORT_XMLNS => {
                return Ok(Attr {
                    xmlns: true,
                    prefix: "",
                    local: "",
                    value: Cow::Borrowed(self.string()?),
                });
            }
            XMLNS => {
                let p = self.string()?;
                return Ok(Attr {
                    xmlns: true,
                    prefix: "xmlns",
                    local: p,
                    value: Cow::Borrowed(self.string()?),
                });
            }
            SHORT_DICTIONARY_XMLNS => {
                return Ok(Attr {
                    xmlns: true,
                    prefix: "",
                    local: "",
                    value: Cow::Borrowed(self.dict()?),
                });
            }
            DICTIONARY_XMLNS => {
                let p = self.string()?;
                return Ok(Attr {
                    xmlns: true,
                    prefix: "xmlns",
                    local: p,
                    value: Cow::Borrowed(self.dict()?),
                });
            }
            0x0C..=0x25 => (false, LETTERS[usize::from(rt - 0x0C)], self.dict()?),
            _ => (false, LETTERS[usize::from(rt - 0x26)], self.string()?),
        };
        let vt_at = self.pos;
        let vt = self.byte("an attribute value record")?;
        if !(ZERO_TEXT..=QNAME_DICTIONARY_TEXT).contains(&vt) || vt & 1 == 1 {
            return Err(self.err(
                vt_at,
                format!("expected an attribute value text record, found 0x{vt:02X}"),
            ));
        }
        let value = self.text_body(vt)?;
        Ok(Attr {
            xmlns,
            prefix,
            local,
            value,
        })
    }
}

pub(super) const LETTERS: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z",
];

impl<'a> Source<'a> for BinarySource<'a> {
    #[inline(always)]
    fn next(&mut self) -> Result<Event<'a>, MessageError> {
        if self.pending_end {
            self.pending_end = false;
            self.depth -= 1;
            return Ok(Event::End);
        }
        loop {
            self.at = self.pos;
            if self.pos >= self.b.len() {
                if self.depth > 0 {
                    return Err(self.err(
                        self.pos,
                        format!(
                            "expected {} more end element(s), found end of input",
                            self.depth
                        ),
                    ));
                }
                return Ok(Event::Eof);
            }
            let rt = self.byte("a record type")?;
            let (prefix, local): (&'a str, &'a str) = match rt {
                END_ELEMENT => {
                    if self.depth == 0 {
                        return Err(self.err(
                            self.at,
                            "expected a record, found EndElement outside any element".into(),
                        ));
                    }
                    self.depth -= 1;
                    return Ok(Event::End);
                }
                COMMENT => {
                    self.string()?;
                    continue;
                }
                SHORT_ELEMENT => ("", self.string()?),
                ELEMENT => (self.string()?, self.string()?),
                SHORT_DICTIONARY_ELEMENT => ("", self.dict()?),
                DICTIONARY_ELEMENT => (self.string()?, self.dict()?),
                0x44..=0x5D => (LETTERS[usize::from(rt - 0x44)], self.dict()?),
                0x5E..=0x77 => (LETTERS[usize::from(rt - 0x5E)], self.string()?),
                ZERO_TEXT..=0xBD => {
                    if self.depth == 0 {
                        return Err(self.err(
                            self.at,
                            "expected an element, found text outside the root".into(),
                        ));
                    }
                    let ev = self.text_event(rt)?;
                    if rt & 1 == 1 {
                        self.pending_end = true;
                    }
                    return Ok(ev);
                }
                _ => {
                    return Err(self.err(
                        self.at,
                        format!(
                            "expected an element, text or end record, found record type 0x{rt:02X}"
                        ),
                    ));
                }
            };
            let mut attrs = Vec::new();
            while let Some(&a) = self.b.get(self.pos) {
                if !(SHORT_ATTRIBUTE..=0x3F).contains(&a) {
                    break;
                }
                self.pos += 1;
                attrs.push(self.attribute(a)?);
            }
            self.depth += 1;
            return Ok(Event::Start(StartTag {
                prefix,
                local,
                attrs,
            }));
        }
    }

    fn offset(&self) -> usize {
        self.at
    }

    fn syntax(&self) -> Syntax {
        Syntax::Binary
    }
}
