//! `application/msbin1`: the DataContractSerializer infoset in .NET Binary XML
//! ([MC-NBFX] records, [MC-NBFS] static dictionary).
//!
//! Owns the public API, the record type numbers and the dictionary; the
//! records .NET's writer picks live in `writer` (a `Sink`, byte-identical with
//! .NET's `XmlBinaryNodeWriter` under DataContractSerializer: records chosen by
//! the value's type, its 512-byte buffer replayed), the record reader in
//! `events` (a `Source` that accepts every record form). Names and types come
//! from `infoset`.
//!
//! [`encode`] and [`decode`] go straight between the model and the records:
//! `model_writer` appends pre-recorded runs of `writer`'s records (so its
//! bytes are `writer`'s, which a test checks against the generic walk), and
//! `model_reader` builds the model without events, handing anything unusual
//! to the event reader (a test checks they agree, also on mutated input).
//!
//! Dictionary records are off by default ([`encode`]): a .NET reader created
//! without a dictionary — `XmlDictionaryReader.CreateBinaryReader(stream, quotas)`,
//! which Service Bus's `GetBody<RemoteExecutionContext>()` uses — rejects any
//! static-dictionary id, so a body meant for ordinary listeners must spell every
//! name inline. [`encode_with_dictionary`] uses the [MC-NBFS] ids in
//! [`DICTIONARY`] for readers that pass the WCF dictionary. No I/O here.

mod events;
mod model_reader;
mod model_writer;
mod writer;

use crate::error::{MessageError, Syntax};
use crate::infoset;
use crate::model::{RemoteExecutionContext, push_i64};
use events::BinarySource;
use writer::BinarySink;

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
    model_writer::encode(ctx)
}

/// Encodes a context as .NET Binary XML using [MC-NBFS] static dictionary ids
/// for the strings in [`DICTIONARY`] (smaller; needs a dictionary-aware reader).
pub fn encode_with_dictionary(ctx: &RemoteExecutionContext) -> Vec<u8> {
    encode_impl(ctx, true)
}

fn encode_impl(ctx: &RemoteExecutionContext, dictionary: bool) -> Vec<u8> {
    let mut sink = BinarySink::new(dictionary);
    infoset::write(ctx, &mut sink);
    sink.buf.out
}

/// Decodes .NET Binary XML as a reader in UTC does: a local-kind date
/// (`DateTimeText` kind 2) carries only its instant, so it comes back with
/// the reader's offset, `+00:00` (Dataverse's servers run in UTC).
pub fn decode(bytes: &[u8]) -> Result<RemoteExecutionContext, MessageError> {
    decode_in_zone(bytes, 0)
}

/// Decodes .NET Binary XML as a reader whose local zone is `local_offset`
/// minutes from UTC (what .NET's `DateTime.FromBinary` does with local dates).
pub fn decode_in_zone(
    bytes: &[u8],
    local_offset: i16,
) -> Result<RemoteExecutionContext, MessageError> {
    // The direct reader handles what writers produce; the event reader
    // everything else, and it words the errors.
    match model_reader::decode(bytes, local_offset) {
        Some(ctx) => Ok(ctx),
        None => infoset::read(BinarySource::in_zone(bytes, local_offset)),
    }
}

/// `DateTime.FromBinary` of a `DateTimeText` value: kind 1 UTC, kind 0
/// unspecified (wall clock), kind 2 local (UTC ticks shown in `local_offset`).
fn date_from_binary(v: u64, local_offset: i16) -> crate::model::DateTime {
    use crate::model::DateTime;
    const EPOCH_TICKS: i128 = 621_355_968_000_000_000;
    let ticks = (v & 0x3FFF_FFFF_FFFF_FFFF) as i128;
    let ms = |t: i128| ((t - EPOCH_TICKS).div_euclid(10_000)) as i64;
    match v >> 62 {
        0 => DateTime::unspecified(ms(ticks)),
        1 => DateTime::utc(ms(ticks)),
        _ => DateTime::local(ms(ticks), local_offset),
    }
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

/// A GUID from .NET `Guid.ToByteArray` order (first three fields little-endian).
fn guid_from_bytes(b: &[u8]) -> uuid::Uuid {
    let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let d2 = u16::from_le_bytes([b[4], b[5]]);
    let d3 = u16::from_le_bytes([b[6], b[7]]);
    let mut d4 = [0u8; 8];
    d4.copy_from_slice(&b[8..16]);
    uuid::Uuid::from_fields(d1, d2, d3, &d4)
}

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

/// Binary XML → text XML without the model (byte-exact infoset copy).
pub fn to_text(bytes: &[u8]) -> Result<Vec<u8>, MessageError> {
    let mut sink = crate::xml::TextSink::default();
    infoset::pump(&mut BinarySource::new(bytes), &mut sink)?;
    Ok(sink.out)
}

/// Text XML → binary XML without the model (names inline, like [`encode`];
/// `dictionary` = true uses dictionary records like [`encode_with_dictionary`]).
pub fn from_text(bytes: &[u8], dictionary: bool) -> Result<Vec<u8>, MessageError> {
    let mut sink = BinarySink::new(dictionary);
    infoset::pump(&mut crate::xml::TextSource::new(bytes)?, &mut sink)?;
    Ok(sink.buf.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infoset::Sink;

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
        let mut s = BinarySink::new(true);
        s.start("", "RequestId");
        s.attr_true("i", "nil");
        s.end();
        s.start("b", "value");
        s.attr("i", "type", "c:int");
        s.text_int(300);
        s.end();
        assert_eq!(
            s.buf.out,
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
        // GUIDs are written as their string, as DataContractSerializer does.
        want.extend_from_slice(&[CHARS8_TEXT + 1, 36]);
        want.extend_from_slice(b"00000000-0000-0000-0000-000000000000");
        assert_eq!(&bin[..want.len()], &want[..]);
        assert_eq!(bin.last(), Some(&END_ELEMENT));
    }

    /// DateTimeText values as Mono's XmlBinaryWriter wrote them: 2020-01-02T03:04:05
    /// UTC and unspecified, and 2017-09-26T00:04:08-07:00 local (UTC ticks, kind 2).
    #[test]
    fn date_kinds_match_dotnet_bytes() {
        use crate::model::DateTime;
        let wall = 1_577_934_245_000;
        for (d, bytes) in [
            (
                DateTime::utc(wall),
                [0x80, 0x00, 0x3b, 0x6d, 0x30, 0x8f, 0xd7, 0x48],
            ),
            (
                DateTime::unspecified(wall),
                [0x80, 0x00, 0x3b, 0x6d, 0x30, 0x8f, 0xd7, 0x08],
            ),
            (
                DateTime::local(1_506_409_448_000, -420),
                [0x00, 0x64, 0x0d, 0xc8, 0xac, 0x04, 0xd5, 0x88],
            ),
        ] {
            assert_eq!(writer::date_to_binary(&d).to_le_bytes(), bytes, "{d:?}");
            let offset = d.offset_minutes.unwrap_or(0);
            assert_eq!(date_from_binary(u64::from_le_bytes(bytes), offset), d);
        }
    }

    /// Values get the records .NET picks by type: a string that looks like a
    /// number stays chars, "1" is OneText, 1.5 is FloatText, 100.0 Int8Text,
    /// a decimal DecimalText (flags, high 32 bits, low 64 bits).
    #[test]
    fn value_records_follow_the_type() {
        let mut s = BinarySink::new(false);
        s.text("123");
        s.text("1");
        s.text_double(1.5);
        s.text_double(100.0);
        s.text_double(f64::INFINITY);
        s.text_decimal(&crate::model::Decimal::parse("10.120").unwrap());
        let mut want = vec![CHARS8_TEXT, 3, b'1', b'2', b'3', ONE_TEXT];
        want.extend_from_slice(&[FLOAT_TEXT, 0x00, 0x00, 0xc0, 0x3f, INT8_TEXT, 100]);
        want.push(DOUBLE_TEXT);
        want.extend_from_slice(&f64::INFINITY.to_le_bytes());
        want.extend_from_slice(&[
            DECIMAL_TEXT,
            0,
            0,
            3,
            0,
            0,
            0,
            0,
            0,
            0x88,
            0x27,
            0,
            0,
            0,
            0,
            0,
            0,
        ]);
        assert_eq!(s.buf.out, want);
    }

    /// DecimalText is read as .NET prints it (sign, 96-bit mantissa, scale).
    #[test]
    fn decimal_records_print_like_dotnet() {
        assert_eq!(decimal_text(false, 1337, 3), "1.337");
        assert_eq!(decimal_text(true, 5, 2), "-0.05");
        assert_eq!(decimal_text(false, 100, 0), "100");
    }

    /// A deterministic pseudo-random context with every value type, nested
    /// entities, key attributes, long and non-ASCII strings (so texts cross
    /// .NET's 512-byte buffer at many offsets) and dates of every kind.
    fn varied_context(seed: u64) -> crate::RemoteExecutionContext {
        use crate::model::*;
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n.max(1)
        };
        let text = |next: &mut dyn FnMut(u64) -> u64| -> String {
            let pieces = [
                "", "0", "1", "a", "true", "12", "é", "–", "漢字", "😀", "\r\n", "x",
            ];
            let len = [0, 1, 3, 40, 84, 85, 86, 170, 171, 300, 700][next(11) as usize];
            let mut s = String::new();
            while s.chars().count() < len || (len < 4 && s.is_empty() && next(2) == 0) {
                s.push_str(pieces[next(pieces.len() as u64) as usize]);
                if len < 4 {
                    break;
                }
            }
            s
        };
        let guid = |next: &mut dyn FnMut(u64) -> u64| {
            uuid::Uuid::from_u128(u128::from(next(u64::MAX)) << 64 | u128::from(next(u64::MAX)))
        };
        fn value(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value {
            let dec = [
                "0",
                "1234.5600",
                "-0.05",
                "79228162514264337593543950335",
                "1e3x",
            ];
            let d = Decimal::parse(dec[next(dec.len() as u64) as usize]).unwrap_or_default();
            let ms = next(4_000_000_000_000) as i64 - 1_000_000_000_000;
            let kind = if depth > 1 { next(14) } else { next(20) };
            match kind {
                0 => Value::Null,
                1 => Value::Boolean(next(2) == 0),
                2 => Value::Int(next(u64::MAX) as i32 >> next(31)),
                3 => Value::Long(next(u64::MAX) as i64 >> next(63)),
                4 => Value::Double([0.5, 1.0 / 3.0, 1e300, -0.0, 100.0, 7e-9][next(6) as usize]),
                5 => Value::Decimal(d),
                6 => Value::Money(d),
                7 => Value::String(
                    "0".repeat(next(3) as usize) + ["", "abc", "–x"][next(3) as usize],
                ),
                8 => Value::DateTime(match next(3) {
                    0 => DateTime::utc(ms),
                    1 => DateTime::unspecified(ms),
                    _ => DateTime::local(ms, 0),
                }),
                9 => Value::Guid(uuid::Uuid::from_u128(u128::from(next(u64::MAX)))),
                10 => Value::OptionSetValue(next(1000) as i32),
                11 => Value::OptionSetValueCollection((0..next(4)).map(|i| i as i32).collect()),
                12 => {
                    Value::StringPairs(vec![("account".into(), "Update".into()); next(3) as usize])
                }
                13 => Value::ColumnSet(ColumnSet {
                    all_columns: next(2) == 0,
                    columns: vec!["name".into(); next(3) as usize],
                }),
                14 => Value::Relationship(Relationship {
                    primary_entity_role: [None, Some(0), Some(1), Some(7)][next(4) as usize],
                    schema_name: Some("account_contact".into()),
                }),
                15 => Value::AliasedValue(Box::new(AliasedValue {
                    attribute_logical_name: Some("name".into()),
                    entity_logical_name: None,
                    value: value(next, depth + 1),
                })),
                16 => Value::EntityReference(reference(next, depth)),
                17 => Value::EntityReferenceCollection(
                    (0..next(3)).map(|_| reference(next, depth)).collect(),
                ),
                18 => Value::Entity(Box::new(entity(next, depth + 1))),
                _ => Value::EntityCollection(EntityCollection {
                    entities: (0..next(3)).map(|_| entity(next, depth + 1)).collect(),
                    entity_name: Some("contact".into()),
                    more_records: true,
                    paging_cookie: None,
                    total_record_count: -1,
                    ..Default::default()
                }),
            }
        }
        fn reference(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> EntityReference {
            let mut r = EntityReference::new("account", uuid::Uuid::from_u128(u128::from(next(9))));
            r.name = [None, Some(String::new()), Some("Contoso".into())][next(3) as usize].clone();
            if depth < 2 && next(3) == 0 {
                r.key_attributes = vec![("accountnumber".into(), value(next, depth + 1))];
            }
            r
        }
        fn entity(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Entity {
            let mut e = Entity::new("account", uuid::Uuid::from_u128(u128::from(next(9))));
            e.entity_state = [None, Some(2), Some(9)][next(3) as usize];
            e.row_version = [None, Some("12345".into())][next(2) as usize].clone();
            e.attributes = (0..next(12))
                .map(|i| (format!("a{i}"), value(next, depth)))
                .collect();
            e.formatted_values = vec![("a0".into(), "€1,00".into()); next(3) as usize];
            if depth < 2 && next(4) == 0 {
                e.key_attributes = vec![("k".into(), value(next, depth + 1))];
                e.related_entities = vec![(
                    Relationship {
                        primary_entity_role: Some(1),
                        schema_name: None,
                    },
                    EntityCollection::default(),
                )];
            }
            e
        }
        let mut ctx = crate::RemoteExecutionContext::new_minimal("Update", "account", 40);
        ctx.message_name = text(&mut next);
        ctx.organization_name = text(&mut next);
        ctx.correlation_id = guid(&mut next);
        ctx.request_id = [None, Some(guid(&mut next))][next(2) as usize];
        ctx.operation_created_on = DateTime::local(next(1 << 40) as i64, 0);
        ctx.input_parameters = (0..next(20))
            .map(|i| (format!("p{i}"), value(&mut next, 0)))
            .collect();
        ctx.shared_variables = (0..next(5))
            .map(|_| (text(&mut next), Value::String(text(&mut next))))
            .collect();
        ctx.pre_entity_images = vec![("PreImage".into(), entity(&mut next, 0)); next(2) as usize];
        ctx.owning_extension = [None, Some(reference(&mut next, 0))][next(2) as usize].clone();
        if next(3) == 0 {
            let mut parent = crate::RemoteExecutionContext::new_minimal("Create", "contact", 20);
            parent.initiating_user_agent = None;
            parent.post_entity_images = vec![("PostImage".into(), entity(&mut next, 1))];
            ctx.parent_context = Some(Box::new(parent));
        }
        ctx
    }

    fn event_read(bytes: &[u8]) -> Result<crate::RemoteExecutionContext, MessageError> {
        infoset::read(BinarySource::new(bytes))
    }

    /// The direct writer writes exactly what the generic walk writes through
    /// the record writer (which the .NET and golden tests pin to .NET's bytes).
    #[test]
    fn direct_writer_matches_the_generic_walk() {
        let mut contexts: Vec<_> = (0..400).map(varied_context).collect();
        contexts.push(crate::bench::realistic_context(64 * 1024));
        contexts.push(crate::bench::realistic_context(3000));
        for (i, ctx) in contexts.iter().enumerate() {
            let direct = model_writer::encode(ctx);
            let generic = encode_impl(ctx, false);
            if direct != generic {
                let at = direct.iter().zip(&generic).position(|(a, b)| a != b);
                panic!(
                    "context {i}: first difference at {at:?} (lengths {} / {})",
                    direct.len(),
                    generic.len()
                );
            }
        }
    }

    /// The direct reader agrees with the event reader wherever it answers, and
    /// never answers where the event reader fails (checked on every varied
    /// context, its dictionary form, and byte mutations of both).
    #[test]
    fn direct_reader_agrees_with_the_event_reader() {
        let mut answered = 0;
        let mut state = 0x2545F4914F6CDD1Du64;
        for seed in 0..150 {
            let ctx = varied_context(seed);
            let plain = encode(&ctx);
            assert_eq!(
                model_reader::decode(&plain, 0).as_ref(),
                Some(&ctx),
                "seed {seed}"
            );
            for bytes in [plain, encode_with_dictionary(&ctx)] {
                for _ in 0..60 {
                    let mut m = bytes.clone();
                    for _ in 0..1 + (state % 3) {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let at = (state >> 8) as usize % m.len();
                        match state % 4 {
                            0 => m[at] = state as u8,
                            1 => m[at] ^= 1 << (state % 8),
                            2 => m.truncate(at),
                            _ => {
                                m.remove(at);
                            }
                        }
                    }
                    if let Some(fast) = model_reader::decode(&m, 0) {
                        answered += 1;
                        assert_eq!(event_read(&m).as_ref(), Ok(&fast), "seed {seed}");
                    }
                }
            }
        }
        assert!(
            answered > 100,
            "mutations the direct reader accepted: {answered}"
        );
    }
}
