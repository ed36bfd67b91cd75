//! The binary XML writer: events in, [MC-NBFX] records out, choosing exactly
//! the records .NET's `XmlBinaryNodeWriter` chooses under DataContractSerializer.
//!
//! Owns record selection and the emulation of .NET's 512-byte output buffer;
//! knows nothing of the model (names and types come from `infoset`). The
//! record for a value follows its type, not its text: strings are always
//! chars records (`"123"`, `"true"` stay text; only the one-character strings
//! `"0"` and `"1"` become `ZeroText`/`OneText`, as in .NET), GUIDs are their
//! string, integers the smallest integer record, booleans `TrueText`/`FalseText`,
//! doubles `FloatText` when exact in single precision (integers as integer
//! records) else `DoubleText`, decimals `DecimalText`, dates `DateTimeText`
//! with the kind in the top bits.
//!
//! .NET fixes a text record up into its `…WithEndElement` form in its buffer;
//! when the buffer was flushed since the text record started (a long text
//! spilling over the 512 bytes), it writes a separate `EndElement` instead.
//! [`Buffer`] replays .NET's buffer requests (`GetBuffer(n)` sizes, including
//! its worst-case 3 bytes per UTF-16 unit) to know when that happens. A
//! [`Piece`] is a run of records recorded once with its requests, for the
//! model writer to append in one copy.

use super::*;
use crate::infoset::Sink;
use crate::model::{DateTime, Decimal};

/// .NET's `XmlStreamNodeWriter` buffer length.
const BUFFER: usize = 512;
/// .NET's worst-case UTF-8 bytes per UTF-16 unit when reserving buffer space.
const MAX_BYTES_PER_CHAR: usize = 3;

/// The output plus a replay of .NET's buffer position.
#[derive(Default)]
pub(crate) struct Buffer {
    /// The document so far.
    pub out: Vec<u8>,
    /// Where .NET's current buffer starts in `out`.
    start: usize,
    /// Position of the open text record's type byte, while it can still
    /// become its `…WithEndElement` form.
    text_node: Option<usize>,
    /// While recording a [`Piece`]: every buffer request (position, size)
    /// instead of acting on it.
    trace: Option<Vec<(usize, usize)>>,
}

impl Buffer {
    #[inline]
    fn offset(&self) -> usize {
        self.out.len() - self.start
    }

    #[inline]
    fn flush(&mut self) {
        self.start = self.out.len();
        self.text_node = None;
    }

    /// `GetBuffer(count)`: flushes when `count` more bytes would not fit.
    #[inline]
    fn reserve(&mut self, count: usize) {
        if self.trace.is_some() {
            self.record(count);
        } else if self.offset() + count > BUFFER {
            self.flush();
        }
    }

    /// A request while recording a [`Piece`].
    #[cold]
    fn record(&mut self, count: usize) {
        let at = self.out.len();
        if let Some(trace) = &mut self.trace {
            trace.push((at, count));
        }
    }

    /// `WriteByte`: flushes only when the buffer is full (a request of 1).
    #[inline]
    fn byte(&mut self, b: u8) {
        self.reserve(1);
        self.out.push(b);
    }

    /// Appends a recorded [`Piece`], replaying its buffer requests: when the
    /// whole piece fits in the current buffer no request can flush, so only
    /// pieces that straddle a 512-byte boundary walk their requests.
    /// Returns where the piece starts in `out` (for letter patches).
    #[inline]
    pub(crate) fn put(&mut self, p: &Piece) -> usize {
        let base = self.out.len();
        if base - self.start + p.span > BUFFER {
            for &(at, count) in &p.requests {
                if base + at - self.start + count > BUFFER {
                    self.start = base + at;
                }
            }
        }
        match &p.padded {
            Some(block) => {
                self.out.extend_from_slice(&block[..]);
                self.out.truncate(base + p.bytes.len());
            }
            None => self.out.extend_from_slice(&p.bytes),
        }
        self.text_node = None;
        base
    }

    /// `WriteText` of a GUID's 36-character string (a chars record).
    #[inline]
    pub(crate) fn guid(&mut self, g: &uuid::Uuid) {
        self.reserve(2 + 36 * MAX_BYTES_PER_CHAR);
        self.text_node = Some(self.out.len());
        self.out.extend_from_slice(&[CHARS8_TEXT, 36]);
        let at = self.out.len();
        self.out.resize(at + 36, 0);
        g.hyphenated().encode_lower(&mut self.out[at..]);
    }

    /// `WriteNode`: a record type byte that is not text.
    #[inline]
    fn node(&mut self, b: u8) {
        self.byte(b);
        self.text_node = None;
    }

    /// `WriteTextNode`: a one-byte text record.
    #[inline]
    fn text_node(&mut self, b: u8) {
        self.byte(b);
        self.text_node = Some(self.out.len() - 1);
    }

    /// `GetTextNodeBuffer(size)` followed by the record's bytes.
    #[inline]
    fn text_record(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.text_node = Some(self.out.len());
        self.out.extend_from_slice(bytes);
    }

    /// `WriteMultiByteInt32`.
    fn mb31(&mut self, v: u32) {
        self.reserve(5);
        mb31(&mut self.out, v);
    }

    /// `UnsafeWriteUTF8Chars`: chunks of 170 UTF-16 units, each reserving 3
    /// bytes per unit (a chunk never ends on a high surrogate).
    fn utf8_chars(&mut self, s: &str) {
        const CHUNK: usize = BUFFER / MAX_BYTES_PER_CHAR;
        if s.is_ascii() {
            // One byte per unit: the chunks are plain byte ranges.
            for chunk in s.as_bytes().chunks(CHUNK) {
                self.reserve(chunk.len() * MAX_BYTES_PER_CHAR);
                self.out.extend_from_slice(chunk);
            }
            return;
        }
        let mut units = 0usize;
        let mut from = 0usize;
        for (i, c) in s.char_indices() {
            let n = c.len_utf16();
            if units + n > CHUNK {
                self.reserve(units * MAX_BYTES_PER_CHAR);
                self.out.extend_from_slice(&s.as_bytes()[from..i]);
                from = i;
                units = 0;
            }
            units += n;
        }
        if units > 0 {
            self.reserve(units * MAX_BYTES_PER_CHAR);
            self.out.extend_from_slice(&s.as_bytes()[from..]);
        }
    }

    /// `UnsafeWriteUnicodeChars`: chunks of 256 UTF-16 units.
    fn unicode_chars(&mut self, s: &str) {
        const CHUNK: usize = BUFFER / 2;
        let mut units = 0usize;
        let mut chunk = Vec::with_capacity(BUFFER);
        for c in s.chars() {
            let mut pair = [0u16; 2];
            let enc = c.encode_utf16(&mut pair);
            if units + enc.len() > CHUNK {
                self.reserve(units * 2);
                self.out.append(&mut chunk);
                units = 0;
            }
            for u in enc.iter() {
                chunk.extend_from_slice(&u.to_le_bytes());
            }
            units += enc.len();
        }
        if units > 0 {
            self.reserve(units * 2);
            self.out.append(&mut chunk);
        }
    }

    /// `WriteName`: a length-prefixed UTF-8 name.
    fn name(&mut self, s: &str) {
        let units = utf16_len(s);
        if units == 0 {
            self.byte(0);
        } else if units < 128 / MAX_BYTES_PER_CHAR {
            self.reserve(1 + units * MAX_BYTES_PER_CHAR);
            self.out.push(s.len() as u8);
            self.out.extend_from_slice(s.as_bytes());
        } else {
            self.mb31(s.len() as u32);
            self.utf8_chars(s);
        }
    }

    /// `WriteTextNodeWithLength`: a chars record header for a long text.
    fn text_header(&mut self, record: u8, length: usize) {
        self.reserve(5);
        self.text_node = Some(self.out.len());
        if length < 0x100 {
            self.out.extend_from_slice(&[record, length as u8]);
        } else if length < 0x10000 {
            self.out.push(record + 2);
            self.out.extend_from_slice(&(length as u16).to_le_bytes());
        } else {
            self.out.push(record + 4);
            self.out.extend_from_slice(&(length as u32).to_le_bytes());
        }
    }

    /// `WriteText(string)` (`UnsafeWriteText`): the text record .NET picks.
    #[inline]
    pub(crate) fn string(&mut self, s: &str) {
        // The common case first: a short ASCII string is one Chars8Text.
        if s.len() > 1 && s.len() <= 255 / MAX_BYTES_PER_CHAR && s.is_ascii() {
            self.reserve(2 + s.len() * MAX_BYTES_PER_CHAR);
            self.text_node = Some(self.out.len());
            self.out.extend_from_slice(&[CHARS8_TEXT, s.len() as u8]);
            self.out.extend_from_slice(s.as_bytes());
            return;
        }
        if s.is_empty() {
            return self.text_node(EMPTY_TEXT);
        }
        match s {
            "0" => return self.text_node(ZERO_TEXT),
            "1" => return self.text_node(ONE_TEXT),
            _ => {}
        }
        let units = utf16_len(s);
        // UTF-16 when UTF-8 would take more than two bytes per unit on average.
        let unicode = s.len() / 2 > units;
        if units <= 255 / MAX_BYTES_PER_CHAR {
            self.reserve(2 + units * MAX_BYTES_PER_CHAR);
            self.text_node = Some(self.out.len());
            if unicode {
                self.out
                    .extend_from_slice(&[UNICODE_CHARS8_TEXT, (units * 2) as u8]);
                for u in s.encode_utf16() {
                    self.out.extend_from_slice(&u.to_le_bytes());
                }
            } else {
                self.out.extend_from_slice(&[CHARS8_TEXT, s.len() as u8]);
                self.out.extend_from_slice(s.as_bytes());
            }
        } else if unicode {
            self.text_header(UNICODE_CHARS8_TEXT, units * 2);
            self.unicode_chars(s);
        } else {
            self.text_header(CHARS8_TEXT, s.len());
            self.utf8_chars(s);
        }
    }

    /// `WriteText` (when not empty) then `WriteEndElement`: a short ASCII
    /// string goes straight out as `Chars8TextWithEndElement` (nothing can
    /// flush between its record and the end, the request covers both).
    #[inline]
    pub(crate) fn text_then_end(&mut self, s: &str) {
        if s.len() > 1 && s.len() <= 255 / MAX_BYTES_PER_CHAR && s.is_ascii() {
            self.reserve(2 + s.len() * MAX_BYTES_PER_CHAR);
            self.text_node = None;
            self.out
                .extend_from_slice(&[CHARS8_TEXT + 1, s.len() as u8]);
            self.out.extend_from_slice(s.as_bytes());
        } else {
            if !s.is_empty() {
                self.string(s);
            }
            self.end();
        }
    }

    /// `WriteInt64Text` / `WriteInt32Text`: the smallest integer record.
    #[inline]
    fn int(&mut self, v: i64) {
        match v {
            0 => self.text_node(ZERO_TEXT),
            1 => self.text_node(ONE_TEXT),
            -128..=127 => self.text_record(&[INT8_TEXT, v as i8 as u8]),
            -32768..=32767 => {
                let b = (v as i16).to_le_bytes();
                self.text_record(&[INT16_TEXT, b[0], b[1]]);
            }
            _ => match i32::try_from(v) {
                Ok(v) => {
                    let mut r = [INT32_TEXT; 5];
                    r[1..].copy_from_slice(&v.to_le_bytes());
                    self.text_record(&r);
                }
                Err(_) => {
                    let mut r = [INT64_TEXT; 9];
                    r[1..].copy_from_slice(&v.to_le_bytes());
                    self.text_record(&r);
                }
            },
        }
    }

    /// `WriteEndElement`: the open text record takes the end, else a record.
    #[inline]
    pub(crate) fn end(&mut self) {
        match self.text_node.take() {
            Some(at) => self.out[at] += 1,
            None => self.node(END_ELEMENT),
        }
    }
}

/// Pieces up to this size are copied as a fixed-size block.
const PADDED: usize = 128;

/// A fixed run of records (start tags, attributes, declarations) recorded once
/// from [`BinarySink`] calls, so the model writer appends it with one copy:
/// its bytes and every buffer request .NET would make writing it (position in
/// `bytes`, size), which [`Buffer::put`] replays. Letters (prefixes) can be
/// patched into the bytes afterwards: they never change a record's length.
pub(crate) struct Piece {
    /// The records.
    pub bytes: Vec<u8>,
    /// `bytes` zero-padded to [`PADDED`] when they fit: appended as one
    /// fixed-size copy (inlined, no `memmove` call) and cut back.
    padded: Option<Box<[u8; PADDED]>>,
    /// Buffer requests: (position in `bytes`, requested size).
    requests: Vec<(usize, usize)>,
    /// The furthest any request reaches: the piece cannot flush the buffer
    /// when this fits.
    span: usize,
}

impl Piece {
    /// Records what `f` writes. The calls must leave no text record open (a
    /// piece ends with a start tag, an attribute or an end record).
    pub(crate) fn record(f: impl FnOnce(&mut BinarySink)) -> Piece {
        let mut s = BinarySink::new(false);
        s.buf.out = Vec::with_capacity(256);
        s.buf.trace = Some(Vec::new());
        f(&mut s);
        debug_assert!(s.buf.text_node.is_none() || s.buf.out.last() == Some(&END_ELEMENT));
        let requests = s.buf.trace.take().unwrap_or_default();
        let span = requests.iter().map(|(at, n)| at + n).max().unwrap_or(0);
        let padded = (s.buf.out.len() <= PADDED).then(|| {
            let mut p = Box::new([0u8; PADDED]);
            p[..s.buf.out.len()].copy_from_slice(&s.buf.out);
            p
        });
        Piece {
            padded,
            bytes: s.buf.out,
            requests,
            span,
        }
    }
}

/// Length in UTF-16 units (.NET string length).
#[inline]
fn utf16_len(s: &str) -> usize {
    // One unit per UTF-8 lead byte, two for 4-byte sequences (surrogate pairs).
    s.bytes()
        .map(|b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0))
        .sum()
}

/// `DateTime.ToBinary` as .NET's binary writer computes it: ticks since
/// 0001-01-01 with the kind in the top two bits (01 UTC, 10 Local with UTC
/// ticks, 00 Unspecified with wall-clock ticks).
#[inline]
pub(crate) fn date_to_binary(d: &DateTime) -> i64 {
    const EPOCH_TICKS: i64 = 621_355_968_000_000_000;
    let ticks = d.ms.saturating_mul(10_000).saturating_add(EPOCH_TICKS);
    // .NET clamps to DateTime's range (ToUniversalTime saturates).
    let ticks = ticks.clamp(0, 3_155_378_975_999_999_999);
    if d.unspecified {
        ticks
    } else if d.offset_minutes.is_some() {
        ticks | i64::MIN
    } else {
        ticks | 0x4000_0000_0000_0000
    }
}

/// The 16 bytes of a .NET `decimal` (flags with scale and sign, high 32 bits,
/// low 64 bits) for decimal text, when .NET would print those bytes back as
/// the same text; otherwise `None` (the text is written as chars).
#[inline]
fn decimal_bytes(d: &Decimal) -> Option<[u8; 16]> {
    let text = d.as_str();
    let (neg, digits) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (digits, ""),
    };
    let scale = frac.len();
    // .NET prints exactly `scale` fraction digits and an integer part without
    // leading zeros ("0" when it is zero), so only text of that shape comes
    // back unchanged from the record.
    if int.is_empty()
        || (int.len() > 1 && int.starts_with('0'))
        || scale > 28
        || int.len() + scale > 29
    {
        return None;
    }
    // Up to 19 digits fit a u64; longer ones continue in u128.
    let mut small: u64 = 0;
    let mut mantissa: u128 = 0;
    for (i, b) in int.bytes().chain(frac.bytes()).enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        if i < 19 {
            small = small * 10 + u64::from(b - b'0');
            mantissa = u128::from(small);
        } else {
            mantissa = mantissa * 10 + u128::from(b - b'0');
        }
    }
    if mantissa >> 96 != 0 || (neg && mantissa == 0) {
        return None;
    }
    debug_assert_eq!(decimal_text(neg, mantissa, scale as u32), text);
    let mut out = [0u8; 16];
    out[2] = scale as u8;
    out[3] = if neg { 0x80 } else { 0 };
    out[4..8].copy_from_slice(&((mantissa >> 64) as u32).to_le_bytes());
    out[8..16].copy_from_slice(&(mantissa as u64).to_le_bytes());
    Some(out)
}

/// Writes events as NBFX records.
#[derive(Default)]
pub(crate) struct BinarySink {
    /// The output and .NET's buffer state.
    pub buf: Buffer,
    /// Use [MC-NBFS] dictionary records for strings in [`DICTIONARY`].
    pub dictionary: bool,
}

impl BinarySink {
    /// A sink with room for a typical context.
    pub(crate) fn new(dictionary: bool) -> Self {
        BinarySink {
            buf: Buffer {
                out: Vec::with_capacity(128 * 1024),
                ..Buffer::default()
            },
            dictionary,
        }
    }

    /// An element or attribute name record: `short` (no prefix), `prefixed`
    /// (`…A` + letter), `general` (any prefix), each with its dictionary form
    /// at `+ 2` (elements/attributes) or `+ 1` (prefixed forms: `dict_prefixed`).
    fn named(&mut self, prefix: &str, local: &str, kinds: NameRecords) {
        let id = lookup(self.dictionary, local);
        let b = &mut self.buf;
        match (prefix, letter(prefix), id) {
            ("", _, Some(id)) => {
                b.node(kinds.short + 2);
                b.mb31(id);
            }
            ("", _, None) => {
                b.node(kinds.short);
                b.name(local);
            }
            (_, Some(l), Some(id)) => {
                b.node(kinds.dict_prefixed + l);
                b.mb31(id);
            }
            (_, Some(l), None) => {
                b.node(kinds.prefixed + l);
                b.name(local);
            }
            (p, None, Some(id)) => {
                b.node(kinds.short + 3);
                b.name(p);
                b.mb31(id);
            }
            (p, None, None) => {
                b.node(kinds.short + 1);
                b.name(p);
                b.name(local);
            }
        }
    }
}

/// The record types of one name family.
#[derive(Clone, Copy)]
struct NameRecords {
    short: u8,
    prefixed: u8,
    dict_prefixed: u8,
}

const ELEMENT_RECORDS: NameRecords = NameRecords {
    short: SHORT_ELEMENT,
    prefixed: PREFIX_ELEMENT_A,
    dict_prefixed: PREFIX_DICTIONARY_ELEMENT_A,
};

const ATTRIBUTE_RECORDS: NameRecords = NameRecords {
    short: SHORT_ATTRIBUTE,
    prefixed: PREFIX_ATTRIBUTE_A,
    dict_prefixed: PREFIX_DICTIONARY_ATTRIBUTE_A,
};

/// The single lower-case letter prefix index, if `prefix` is one.
#[inline]
fn letter(prefix: &str) -> Option<u8> {
    match prefix.as_bytes() {
        [c @ b'a'..=b'z'] => Some(c - b'a'),
        _ => None,
    }
}

impl Sink for BinarySink {
    fn start(&mut self, prefix: &str, local: &str) {
        self.named(prefix, local, ELEMENT_RECORDS);
    }

    fn xmlns(&mut self, prefix: &str, ns: &str) {
        let id = lookup(self.dictionary, ns);
        let b = &mut self.buf;
        match (prefix, id) {
            ("", Some(id)) => {
                b.node(SHORT_DICTIONARY_XMLNS);
                b.mb31(id);
            }
            ("", None) => {
                b.node(SHORT_XMLNS);
                b.name(ns);
            }
            (p, Some(id)) => {
                b.node(DICTIONARY_XMLNS);
                b.name(p);
                b.mb31(id);
            }
            (p, None) => {
                b.node(XMLNS);
                b.name(p);
                b.name(ns);
            }
        }
    }

    fn attr(&mut self, prefix: &str, local: &str, value: &str) {
        self.named(prefix, local, ATTRIBUTE_RECORDS);
        // A `p:name` value whose name is in the dictionary (dictionary mode only).
        if let Some((p, l)) = value.split_once(':')
            && let (Some(pi), Some(id)) = (letter(p), lookup(self.dictionary, l))
        {
            self.buf.text_node(QNAME_DICTIONARY_TEXT);
            self.buf.byte(pi);
            self.buf.mb31(id);
        } else {
            self.buf.string(value);
        }
        // `WriteEndAttribute`: an attribute value never takes the element's end.
        self.buf.text_node = None;
    }

    fn attr_true(&mut self, prefix: &str, local: &str) {
        self.named(prefix, local, ATTRIBUTE_RECORDS);
        self.buf.text_node(TRUE_TEXT);
        self.buf.text_node = None;
    }

    fn text(&mut self, text: &str) {
        self.buf.string(text);
    }

    fn text_guid(&mut self, g: &uuid::Uuid) {
        self.buf.guid(g);
    }

    fn end(&mut self) {
        self.buf.end();
    }

    #[inline]
    fn text_int(&mut self, v: i64) {
        self.buf.int(v);
    }

    #[inline]
    fn text_bool(&mut self, v: bool) {
        self.buf.text_node(if v { TRUE_TEXT } else { FALSE_TEXT });
    }

    #[inline]
    fn text_double(&mut self, d: f64) {
        // WriteDoubleText → WriteFloatText → WriteInt64Text, whichever is exact.
        let f = d as f32;
        let in_range = d >= f64::from(f32::MIN) && d <= f64::from(f32::MAX);
        if !in_range || f64::from(f) != d {
            let mut r = [DOUBLE_TEXT; 9];
            r[1..].copy_from_slice(&d.to_le_bytes());
            return self.buf.text_record(&r);
        }
        let l = f as i64;
        // -0.0 == 0 as a float compare, and .NET writes it as ZeroText too.
        // The range is exclusive at 2^63, where .NET's conversion overflows.
        if (i64::MIN as f32..i64::MAX as f32).contains(&f) && l as f32 == f {
            return self.buf.int(l);
        }
        let mut r = [FLOAT_TEXT; 5];
        r[1..].copy_from_slice(&f.to_le_bytes());
        self.buf.text_record(&r);
    }

    #[inline]
    fn text_decimal(&mut self, d: &Decimal) {
        match decimal_bytes(d) {
            Some(b) => {
                let mut r = [DECIMAL_TEXT; 17];
                r[1..].copy_from_slice(&b);
                self.buf.text_record(&r);
            }
            None => self.buf.string(d.as_str()),
        }
    }

    #[inline]
    fn text_date(&mut self, d: &DateTime) {
        let mut r = [DATETIME_TEXT; 9];
        r[1..].copy_from_slice(&date_to_binary(d).to_le_bytes());
        self.buf.text_record(&r);
    }
}
