//! `application/msbin1`: the DataContractSerializer infoset in .NET Binary XML
//! ([MC-NBFX] records, [MC-NBFS] static dictionary).
//!
//! Owns the record encoder (a [`Sink`]) and decoder (a [`Source`]); names and
//! types come from `infoset`. The encoder picks records by text shape: `0`, `1`,
//! `true`, `false`, canonical integers and lower-case GUIDs use the typed text
//! records (ZeroText … Int64Text, UuidText), everything else UTF-8 chars records.
//! Because the choice depends only on the text, binary → XML → binary is
//! byte-identical. The decoder reads every text record type a .NET writer emits
//! for these contracts, with or without dictionary strings.
//!
//! Dictionary records are off by default ([`encode`]): a .NET reader created
//! without a dictionary — `XmlDictionaryReader.CreateBinaryReader(stream, quotas)`,
//! which Service Bus's `GetBody<RemoteExecutionContext>()` uses — rejects any
//! static-dictionary id, so a body meant for ordinary listeners must spell every
//! name inline. [`encode_with_dictionary`] uses the [MC-NBFS] ids in
//! [`DICTIONARY`] for readers that pass the WCF dictionary. No I/O here.

use crate::error::{MessageError, Syntax};
use crate::infoset::{self, Attr, Event, Sink, Source, StartTag};
use crate::model::{RemoteExecutionContext, push_i64};
use std::borrow::Cow;

/// The [MC-NBFS] static dictionary entries weft uses, with their ids (ids are
/// even; odd ids name session-dictionary strings, which plain msbin1 bodies
/// do not carry).
pub const DICTIONARY: &[(u32, &str)] = &[
    (0x1C, "Id"),
    (0x9A, "Value"),
    (0x372, "http://www.w3.org/2001/XMLSchema-instance"),
    (0x374, "http://www.w3.org/2001/XMLSchema"),
    (0x376, "nil"),
    (0x378, "type"),
    (0x37C, "boolean"),
    (0x386, "int"),
    (0x38A, "long"),
    (0x390, "double"),
    (0x392, "decimal"),
    (0x394, "dateTime"),
    (0x396, "string"),
    (0x39E, "guid"),
];

#[inline]
fn dict_id(s: &str) -> Option<u32> {
    // A `match` compiles to a length switch plus one compare: this runs for
    // every name and text, so it must be cheaper than scanning the table.
    // `dictionary_match_agrees_with_table` keeps it equal to DICTIONARY.
    Some(match s {
        "Id" => 0x1C,
        "Value" => 0x9A,
        "http://www.w3.org/2001/XMLSchema-instance" => 0x372,
        "http://www.w3.org/2001/XMLSchema" => 0x374,
        "nil" => 0x376,
        "type" => 0x378,
        "boolean" => 0x37C,
        "int" => 0x386,
        "long" => 0x38A,
        "double" => 0x390,
        "decimal" => 0x392,
        "dateTime" => 0x394,
        "string" => 0x396,
        "guid" => 0x39E,
        _ => return None,
    })
}

/// The dictionary id of `s` when dictionary records are on.
#[inline]
fn lookup(dictionary: bool, s: &str) -> Option<u32> {
    if dictionary { dict_id(s) } else { None }
}

fn dict_str(id: u32) -> Option<&'static str> {
    DICTIONARY.iter().find(|(i, _)| *i == id).map(|(_, s)| *s)
}

/// Encodes a context as .NET Binary XML with every name inline (readable by
/// any .NET binary reader; see the module docs).
pub fn encode(ctx: &RemoteExecutionContext) -> Vec<u8> {
    encode_impl(ctx, false)
}

/// Encodes a context as .NET Binary XML using [MC-NBFS] static dictionary ids
/// for the strings in [`DICTIONARY`] (smaller; needs a dictionary-aware reader).
pub fn encode_with_dictionary(ctx: &RemoteExecutionContext) -> Vec<u8> {
    encode_impl(ctx, true)
}

fn encode_impl(ctx: &RemoteExecutionContext, dictionary: bool) -> Vec<u8> {
    let mut sink = BinarySink {
        out: Vec::with_capacity(32 * 1024),
        last_text: None,
        dictionary,
    };
    infoset::write(ctx, &mut sink);
    sink.out
}

/// Decodes .NET Binary XML.
pub fn decode(bytes: &[u8]) -> Result<RemoteExecutionContext, MessageError> {
    infoset::read(BinarySource::new(bytes))
}

// Record types ([MC-NBFX] 2.2).
const END_ELEMENT: u8 = 0x01;
const COMMENT: u8 = 0x02;
const SHORT_ATTRIBUTE: u8 = 0x04;
const ATTRIBUTE: u8 = 0x05;
const SHORT_DICTIONARY_ATTRIBUTE: u8 = 0x06;
const DICTIONARY_ATTRIBUTE: u8 = 0x07;
const SHORT_XMLNS: u8 = 0x08;
const XMLNS: u8 = 0x09;
const SHORT_DICTIONARY_XMLNS: u8 = 0x0A;
const DICTIONARY_XMLNS: u8 = 0x0B;
const PREFIX_DICTIONARY_ATTRIBUTE_A: u8 = 0x0C;
const PREFIX_ATTRIBUTE_A: u8 = 0x26;
const SHORT_ELEMENT: u8 = 0x40;
const ELEMENT: u8 = 0x41;
const SHORT_DICTIONARY_ELEMENT: u8 = 0x42;
const DICTIONARY_ELEMENT: u8 = 0x43;
const PREFIX_DICTIONARY_ELEMENT_A: u8 = 0x44;
const PREFIX_ELEMENT_A: u8 = 0x5E;
const ZERO_TEXT: u8 = 0x80;
const ONE_TEXT: u8 = 0x82;
const FALSE_TEXT: u8 = 0x84;
const TRUE_TEXT: u8 = 0x86;
const INT8_TEXT: u8 = 0x88;
const INT16_TEXT: u8 = 0x8A;
const INT32_TEXT: u8 = 0x8C;
const INT64_TEXT: u8 = 0x8E;
const FLOAT_TEXT: u8 = 0x90;
const DOUBLE_TEXT: u8 = 0x92;
const DECIMAL_TEXT: u8 = 0x94;
const DATETIME_TEXT: u8 = 0x96;
const CHARS8_TEXT: u8 = 0x98;
const CHARS16_TEXT: u8 = 0x9A;
const CHARS32_TEXT: u8 = 0x9C;
const BYTES8_TEXT: u8 = 0x9E;
const BYTES16_TEXT: u8 = 0xA0;
const BYTES32_TEXT: u8 = 0xA2;
const EMPTY_TEXT: u8 = 0xA8;
const DICTIONARY_TEXT: u8 = 0xAA;
const UNIQUE_ID_TEXT: u8 = 0xAC;
const UUID_TEXT: u8 = 0xB0;
const UINT64_TEXT: u8 = 0xB2;
const BOOL_TEXT: u8 = 0xB4;
const UNICODE_CHARS8_TEXT: u8 = 0xB6;
const UNICODE_CHARS16_TEXT: u8 = 0xB8;
const UNICODE_CHARS32_TEXT: u8 = 0xBA;
const QNAME_DICTIONARY_TEXT: u8 = 0xBC;

#[inline]
fn mb31(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[inline]
fn string(out: &mut Vec<u8>, s: &str) {
    mb31(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// The single lower-case letter prefix index, if `prefix` is one.
#[inline]
fn letter(prefix: &str) -> Option<u8> {
    match prefix.as_bytes() {
        [c @ b'a'..=b'z'] => Some(c - b'a'),
        _ => None,
    }
}

/// Writes events as NBFX records.
#[derive(Default)]
pub(crate) struct BinarySink {
    /// The document so far.
    pub out: Vec<u8>,
    /// Position of the last element-content text record's type byte, if the
    /// last record written was one (it becomes the `…WithEndElement` form).
    last_text: Option<usize>,
    /// Use [MC-NBFS] dictionary records for strings in [`DICTIONARY`].
    dictionary: bool,
}

/// Canonical integer text (what the integer records print back identically).
fn canonical_int(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty()
        || digits.len() > 19
        || (digits[0] == b'0' && (digits.len() > 1 || b.len() != digits.len()))
    {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

/// A GUID in the exact lower-case hyphenated form UuidText prints back.
fn canonical_guid(s: &str) -> Option<uuid::Uuid> {
    let b = s.as_bytes();
    if b.len() != 36 || b.iter().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let g = uuid::Uuid::try_parse(s).ok()?;
    let mut buf = [0u8; 36];
    (g.hyphenated().encode_lower(&mut buf).as_bytes() == b).then_some(g)
}

/// .NET `Guid.ToByteArray` order: first three fields little-endian.
fn guid_to_bytes(g: &uuid::Uuid) -> [u8; 16] {
    let (d1, d2, d3, d4) = g.as_fields();
    let mut o = [0u8; 16];
    o[..4].copy_from_slice(&d1.to_le_bytes());
    o[4..6].copy_from_slice(&d2.to_le_bytes());
    o[6..8].copy_from_slice(&d3.to_le_bytes());
    o[8..].copy_from_slice(d4);
    o
}

fn guid_from_bytes(b: &[u8]) -> uuid::Uuid {
    let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let d2 = u16::from_le_bytes([b[4], b[5]]);
    let d3 = u16::from_le_bytes([b[6], b[7]]);
    let mut d4 = [0u8; 8];
    d4.copy_from_slice(&b[8..16]);
    uuid::Uuid::from_fields(d1, d2, d3, &d4)
}

impl BinarySink {
    /// The integer records, smallest that fits (same choice as for digit text).
    fn int_record(&mut self, v: i64) {
        let out = &mut self.out;
        if v == 0 {
            out.push(ZERO_TEXT);
        } else if v == 1 {
            out.push(ONE_TEXT);
        } else if let Ok(v) = i8::try_from(v) {
            out.push(INT8_TEXT);
            out.push(v as u8);
        } else if let Ok(v) = i16::try_from(v) {
            out.push(INT16_TEXT);
            out.extend_from_slice(&v.to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            out.push(INT32_TEXT);
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            out.push(INT64_TEXT);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Writes one text record chosen by the text's shape.
    fn text_record(&mut self, s: &str, attr_value: bool) {
        let dictionary = self.dictionary;
        let out = &mut self.out;
        match s {
            "" => out.push(EMPTY_TEXT),
            "0" => out.push(ZERO_TEXT),
            "1" => out.push(ONE_TEXT),
            "false" => out.push(FALSE_TEXT),
            "true" => out.push(TRUE_TEXT),
            _ => {
                if let Some(v) = canonical_int(s) {
                    self.int_record(v);
                } else if let Some(g) = canonical_guid(s) {
                    out.push(UUID_TEXT);
                    out.extend_from_slice(&guid_to_bytes(&g));
                } else if attr_value
                    && let Some((p, l)) = s.split_once(':')
                    && let (Some(pi), Some(id)) = (letter(p), lookup(dictionary, l))
                {
                    out.push(QNAME_DICTIONARY_TEXT);
                    out.push(pi);
                    mb31(out, id);
                } else if let Some(id) = lookup(dictionary, s) {
                    out.push(DICTIONARY_TEXT);
                    mb31(out, id);
                } else {
                    let n = s.len();
                    if n < 0x100 {
                        out.push(CHARS8_TEXT);
                        out.push(n as u8);
                    } else if n < 0x10000 {
                        out.push(CHARS16_TEXT);
                        out.extend_from_slice(&(n as u16).to_le_bytes());
                    } else {
                        out.push(CHARS32_TEXT);
                        out.extend_from_slice(&(n as u32).to_le_bytes());
                    }
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
}

impl Sink for BinarySink {
    fn start(&mut self, prefix: &str, local: &str) {
        let dictionary = self.dictionary;
        self.last_text = None;
        let out = &mut self.out;
        match (prefix, letter(prefix), lookup(dictionary, local)) {
            ("", _, Some(id)) => {
                out.push(SHORT_DICTIONARY_ELEMENT);
                mb31(out, id);
            }
            ("", _, None) => {
                out.push(SHORT_ELEMENT);
                string(out, local);
            }
            (_, Some(l), Some(id)) => {
                out.push(PREFIX_DICTIONARY_ELEMENT_A + l);
                mb31(out, id);
            }
            (_, Some(l), None) => {
                out.push(PREFIX_ELEMENT_A + l);
                string(out, local);
            }
            (p, None, Some(id)) => {
                out.push(DICTIONARY_ELEMENT);
                string(out, p);
                mb31(out, id);
            }
            (p, None, None) => {
                out.push(ELEMENT);
                string(out, p);
                string(out, local);
            }
        }
    }

    fn xmlns(&mut self, prefix: &str, ns: &str) {
        let dictionary = self.dictionary;
        let out = &mut self.out;
        match (prefix, lookup(dictionary, ns)) {
            ("", Some(id)) => {
                out.push(SHORT_DICTIONARY_XMLNS);
                mb31(out, id);
            }
            ("", None) => {
                out.push(SHORT_XMLNS);
                string(out, ns);
            }
            (p, Some(id)) => {
                out.push(DICTIONARY_XMLNS);
                string(out, p);
                mb31(out, id);
            }
            (p, None) => {
                out.push(XMLNS);
                string(out, p);
                string(out, ns);
            }
        }
    }

    fn attr(&mut self, prefix: &str, local: &str, value: &str) {
        let dictionary = self.dictionary;
        let out = &mut self.out;
        match (prefix, letter(prefix), lookup(dictionary, local)) {
            ("", _, Some(id)) => {
                out.push(SHORT_DICTIONARY_ATTRIBUTE);
                mb31(out, id);
            }
            ("", _, None) => {
                out.push(SHORT_ATTRIBUTE);
                string(out, local);
            }
            (_, Some(l), Some(id)) => {
                out.push(PREFIX_DICTIONARY_ATTRIBUTE_A + l);
                mb31(out, id);
            }
            (_, Some(l), None) => {
                out.push(PREFIX_ATTRIBUTE_A + l);
                string(out, local);
            }
            (p, None, Some(id)) => {
                out.push(DICTIONARY_ATTRIBUTE);
                string(out, p);
                mb31(out, id);
            }
            (p, None, None) => {
                out.push(ATTRIBUTE);
                string(out, p);
                string(out, local);
            }
        }
        self.text_record(value, true);
    }

    fn text(&mut self, text: &str) {
        let at = self.out.len();
        self.text_record(text, false);
        self.last_text = Some(at);
    }

    fn end(&mut self) {
        match self.last_text.take() {
            Some(at) => self.out[at] += 1,
            None => self.out.push(END_ELEMENT),
        }
    }

    fn text_guid(&mut self, g: &uuid::Uuid) {
        self.last_text = Some(self.out.len());
        self.out.push(UUID_TEXT);
        self.out.extend_from_slice(&guid_to_bytes(g));
    }

    fn text_int(&mut self, v: i64) {
        self.last_text = Some(self.out.len());
        self.int_record(v);
    }
}

/// Reads NBFX records as events.
pub(crate) struct BinarySource<'a> {
    b: &'a [u8],
    pos: usize,
    at: usize,
    depth: usize,
    pending_end: bool,
}

impl<'a> BinarySource<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        BinarySource {
            b,
            pos: 0,
            at: 0,
            depth: 0,
            pending_end: false,
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
    fn mb31(&mut self) -> Result<u32, MessageError> {
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
    fn string(&mut self) -> Result<&'a str, MessageError> {
        let n = self.mb31()? as usize;
        let at = self.pos;
        let bytes = self.take(n, "string")?;
        std::str::from_utf8(bytes).map_err(|_| self.err(at, "expected UTF-8 string bytes".into()))
    }

    #[inline]
    fn dict(&mut self) -> Result<&'static str, MessageError> {
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
    fn text_body(&mut self, rt: u8) -> Result<Cow<'a, str>, MessageError> {
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
                let ticks = (v & 0x3FFF_FFFF_FFFF_FFFF) as i128;
                let ms = (ticks - 621_355_968_000_000_000).div_euclid(10_000);
                let d = crate::model::DateTime::utc(ms as i64);
                Cow::Owned(infoset::format_xml_date(&d))
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

    fn attribute(&mut self, rt: u8) -> Result<Attr<'a>, MessageError> {
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

const LETTERS: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z",
];

/// Decimal text of sign, 96-bit mantissa and scale (as .NET prints it).
fn decimal_text(neg: bool, mantissa: u128, scale: u32) -> String {
    let digits = mantissa.to_string();
    let scale = scale as usize;
    let mut s = String::new();
    if neg && mantissa != 0 {
        s.push('-');
    }
    if scale == 0 {
        s.push_str(&digits);
    } else if digits.len() > scale {
        s.push_str(&digits[..digits.len() - scale]);
        s.push('.');
        s.push_str(&digits[digits.len() - scale..]);
    } else {
        s.push_str("0.");
        s.push_str(&"0".repeat(scale - digits.len()));
        s.push_str(&digits);
    }
    s
}

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
                    // Integers and GUIDs travel typed so the reader skips text round trips.
                    let ev = match rt & !1 {
                        ZERO_TEXT => Event::Int(0),
                        ONE_TEXT => Event::Int(1),
                        INT8_TEXT => Event::Int(i64::from(self.byte("Int8Text")? as i8)),
                        INT16_TEXT => {
                            let b = self.take(2, "Int16Text")?;
                            Event::Int(i64::from(i16::from_le_bytes([b[0], b[1]])))
                        }
                        INT32_TEXT => {
                            let b = self.take(4, "Int32Text")?;
                            Event::Int(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                        }
                        INT64_TEXT => {
                            let mut a = [0u8; 8];
                            a.copy_from_slice(self.take(8, "Int64Text")?);
                            Event::Int(i64::from_le_bytes(a))
                        }
                        UUID_TEXT => Event::Guid(guid_from_bytes(self.take(16, "UuidText")?)),
                        _ => Event::Text(self.text_body(rt)?),
                    };
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

/// Binary XML → text XML without the model (byte-exact infoset copy).
pub fn to_text(bytes: &[u8]) -> Result<Vec<u8>, MessageError> {
    let mut sink = crate::xml::TextSink::default();
    infoset::pump(&mut BinarySource::new(bytes), &mut sink)?;
    Ok(sink.out)
}

/// Text XML → binary XML without the model (names inline, like [`encode`];
/// `dictionary` = true uses dictionary records like [`encode_with_dictionary`]).
pub fn from_text(bytes: &[u8], dictionary: bool) -> Result<Vec<u8>, MessageError> {
    let mut sink = BinarySink {
        dictionary,
        ..BinarySink::default()
    };
    infoset::pump(&mut crate::xml::TextSource::new(bytes)?, &mut sink)?;
    Ok(sink.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast name lookup and the published table never disagree.
    #[test]
    fn dictionary_match_agrees_with_table() {
        for (id, s) in DICTIONARY {
            assert_eq!(dict_id(s), Some(*id), "{s}");
            assert_eq!(dict_str(*id), Some(*s));
            assert_eq!(id % 2, 0, "static ids are even");
        }
        assert_eq!(dict_id("Values"), None);
    }

    /// MultiByteInt31 encodes 7 bits per byte, low bits first ([MC-NBFX] 2.1.2).
    #[test]
    fn mb31_matches_the_spec_examples() {
        for (v, bytes) in [
            (0u32, &[0x00u8][..]),
            (0x7F, &[0x7F]),
            (0x80, &[0x80, 0x01]),
            (0x3FFF, &[0xFF, 0x7F]),
            (0x4000, &[0x80, 0x80, 0x01]),
            (0x7FFF_FFFF, &[0xFF, 0xFF, 0xFF, 0xFF, 0x07]),
        ] {
            let mut out = Vec::new();
            mb31(&mut out, v);
            assert_eq!(out, bytes);
            let mut src = BinarySource::new(bytes);
            assert_eq!(src.mb31().unwrap(), v);
        }
    }

    /// GUIDs use .NET Guid.ToByteArray order (first three fields little-endian).
    #[test]
    fn guid_bytes_use_dotnet_order() {
        let g = uuid::Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let b = guid_to_bytes(&g);
        assert_eq!(
            b,
            [
                0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        assert_eq!(guid_from_bytes(&b), g);
    }

    /// A small element encodes to the exact records the spec describes.
    #[test]
    fn records_for_a_nil_and_a_typed_value() {
        let mut s = BinarySink {
            dictionary: true,
            ..BinarySink::default()
        };
        s.start("", "RequestId");
        s.attr("i", "nil", "true");
        s.end();
        s.start("b", "value");
        s.attr("i", "type", "c:int");
        s.text_int(300);
        s.end();
        assert_eq!(
            s.out,
            [
                SHORT_ELEMENT,
                9,
                b'R',
                b'e',
                b'q',
                b'u',
                b'e',
                b's',
                b't',
                b'I',
                b'd',
                PREFIX_DICTIONARY_ATTRIBUTE_A + 8,
                0xF6,
                0x06,
                TRUE_TEXT,
                END_ELEMENT,
                PREFIX_ELEMENT_A + 1,
                5,
                b'v',
                b'a',
                b'l',
                b'u',
                b'e',
                PREFIX_DICTIONARY_ATTRIBUTE_A + 8,
                0xF8,
                0x06,
                QNAME_DICTIONARY_TEXT,
                2,
                0x86,
                0x07,
                INT16_TEXT + 1,
                0x2C,
                0x01,
            ]
        );
    }

    /// The default encoding starts with the root as ShortElement, ShortXmlnsAttribute
    /// and XmlnsAttribute records with every string inline ([MC-NBFX] 2.2.1, 2.2.2).
    #[test]
    fn default_encoding_spells_the_root_inline() {
        let ctx = crate::RemoteExecutionContext::new_minimal("Create", "account", 40);
        let bin = encode(&ctx);
        let mut want = vec![SHORT_ELEMENT, 22];
        want.extend_from_slice(b"RemoteExecutionContext");
        let (contracts, xsi) = (crate::infoset::NS_CONTRACTS, crate::infoset::NS_XSI);
        want.extend_from_slice(&[SHORT_XMLNS, contracts.len() as u8]);
        want.extend_from_slice(contracts.as_bytes());
        want.extend_from_slice(&[XMLNS, 1, b'i', xsi.len() as u8]);
        want.extend_from_slice(xsi.as_bytes());
        want.extend_from_slice(&[SHORT_ELEMENT, 14]);
        want.extend_from_slice(b"BusinessUnitId");
        want.push(UUID_TEXT + 1);
        want.extend_from_slice(&[0; 16]);
        assert_eq!(&bin[..want.len()], &want[..]);
        assert_eq!(bin.last(), Some(&END_ELEMENT));
    }

    /// DecimalText is read as .NET prints it (sign, 96-bit mantissa, scale).
    #[test]
    fn decimal_records_print_like_dotnet() {
        assert_eq!(decimal_text(false, 1337, 3), "1.337");
        assert_eq!(decimal_text(true, 5, 2), "-0.05");
        assert_eq!(decimal_text(false, 100, 0), "100");
    }
}
