//! Decodes the byte string 0.2.0's `packed-parameters` answers (the encoding
//! is specified beside that function in `wit/v0.2/context.wit`) straight into
//! the SDK's types, and keeps those bytes ([`Packed`]) to tell later what a
//! plug-in changed by encoding its values the same way and comparing bytes.
//! Owns the encoding on the guest side; which collection to fetch, when to
//! send what back, is the context's business.
//!
//! Why: a collection lowered through the canonical ABI costs one call into
//! this component's allocator per string and list, each a host-to-guest
//! transition, and then a conversion from the generated types; one byte
//! string is one allocation and one copy. Keeping the bytes also spares the
//! diff a deep copy of the collection (about 45 allocations for a 1 KB Target)
//! taken before the plug-in changes it.

use crate::context::changed_attributes;
use crate::{Entity, EntityCollection, EntityReference, Guid, ParameterValue, Parameters, Value};
use core::ops::Range;

/// A collection as the host sent it: the bytes, and where each parameter lies
/// in them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Packed {
    bytes: Vec<u8>,
    params: Vec<ParameterSpans>,
}

#[derive(Debug, Clone, PartialEq)]
struct ParameterSpans {
    /// The name's UTF-8 (without its length).
    name: Range<usize>,
    /// The whole `parameter-value`, case byte included.
    value: Range<usize>,
    /// For an entity: its parts.
    entity: Option<EntitySpans>,
}

#[derive(Debug, Clone, PartialEq)]
struct EntitySpans {
    /// `logical-name` and `id`.
    head: Range<usize>,
    /// Each attribute's name (UTF-8 without its length) and value.
    attributes: Vec<(Range<usize>, Range<usize>)>,
    /// `formatted-values` and `row-version`.
    tail: Range<usize>,
}

/// What changed in one parameter since the host sent it.
pub(crate) enum Diff<'a> {
    /// Nothing.
    Same,
    /// Attributes of an entity changed in place or appended: these, in order.
    Attributes(Vec<(&'a str, &'a Value)>),
    /// Anything else: the parameter must be sent whole.
    Whole,
}

impl<'a> Diff<'a> {
    /// What [`changed_attributes`] found (`None`: not something
    /// `set-input-attribute` can make) as a diff of the entity parameter.
    pub(crate) fn of_attributes(changes: Option<Vec<(&'a str, &'a Value)>>) -> Diff<'a> {
        match changes {
            Some(changes) if changes.is_empty() => Diff::Same,
            Some(changes) => Diff::Attributes(changes),
            None => Diff::Whole,
        }
    }
}

/// Decodes a whole `parameters` list, keeping the bytes. The bytes come from
/// the host; an error means a host bug, and says where the bytes stopped
/// making sense.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<(Parameters, Packed), String> {
    let mut r = Reader {
        bytes: &bytes,
        at: 0,
    };
    let (params, spans) = r.parameters()?;
    if r.at != bytes.len() {
        return Err(format!(
            "{} bytes left over after the last parameter",
            bytes.len() - r.at
        ));
    }
    Ok((
        params,
        Packed {
            bytes,
            params: spans,
        },
    ))
}

impl Packed {
    /// How `value`, the parameter `name` as the plug-in holds it now, differs
    /// from what the host holds. With `by_attribute` (InputParameters) an
    /// entity whose attributes were only changed in place or appended is
    /// reported attribute by attribute: what `set-input-attribute` can do. A
    /// name the host does not hold is `Whole`.
    pub(crate) fn diff<'a>(
        &self,
        name: &str,
        value: &'a ParameterValue,
        by_attribute: bool,
        scratch: &mut Vec<u8>,
    ) -> Diff<'a> {
        let Some(held) = self
            .params
            .iter()
            .find(|p| same_bytes(&self.bytes[p.name.clone()], name.as_bytes()))
        else {
            return Diff::Whole;
        };
        if let (true, ParameterValue::Entity(after), Some(spans)) =
            (by_attribute, value, &held.entity)
        {
            return Diff::of_attributes(self.attribute_changes(spans, after, scratch));
        }
        scratch.clear();
        encode_parameter_value(scratch, value);
        if same_bytes(scratch, &self.bytes[held.value.clone()]) {
            Diff::Same
        } else {
            Diff::Whole
        }
    }

    /// The attribute changes that turn the held entity into `after`, when
    /// `set-input-attribute` can make them; `None` when it takes the whole
    /// entity (see [`changed_attributes`]).
    fn attribute_changes<'a>(
        &self,
        held: &EntitySpans,
        after: &'a Entity,
        scratch: &mut Vec<u8>,
    ) -> Option<Vec<(&'a str, &'a Value)>> {
        let at = |span: &Range<usize>| &self.bytes[span.clone()];
        scratch.clear();
        encode_entity_head(scratch, after);
        if !same_bytes(scratch, at(&held.head)) {
            return None;
        }
        scratch.clear();
        encode_entity_tail(scratch, after);
        if !same_bytes(scratch, at(&held.tail)) {
            return None;
        }
        changed_attributes(
            &held.attributes,
            &after.attributes,
            |(name, _), other| same_bytes(at(name), other.as_bytes()),
            |(_, value), other| encodes_as(at(value), other, scratch),
        )
    }
}

/// `a == b`, eight bytes at a time: a component's C library compares byte by
/// byte, and a diff reads every unchanged value of a Target.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    // The tails (under eight bytes, equally long) byte by byte here: `==` on them would call `memcmp`
    // once per comparison, which showed as 1.5 % of a step.
    x.by_ref().zip(y.by_ref()).all(|(p, q)| word(p) == word(q))
        && x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

/// Whether `v` encodes to `held`, the bytes of one whole encoded value: text
/// and the fixed-size kinds are compared where they lie, the rest encoded into
/// `scratch` first. A diff asks this of every attribute of a Target.
fn encodes_as(held: &[u8], v: &Value, scratch: &mut Vec<u8>) -> bool {
    // `held` is one value's bytes (its span), so a text case with the right
    // tag and total length has the right length prefix too.
    let text = |tag: u8, s: &str| {
        let same = held.len() == 5 + s.len() && held[0] == tag;
        debug_assert!(!same || held[1..5] == (s.len() as u32).to_le_bytes());
        same && same_bytes(&held[5..], s.as_bytes())
    };
    let fixed = |tag: u8, bytes: &[u8]| {
        held.len() == 1 + bytes.len() && held[0] == tag && same_bytes(&held[1..], bytes)
    };
    match v {
        Value::String(s) => text(7, s),
        Value::Decimal(s) => text(5, s),
        Value::Money(s) => text(6, s),
        Value::Integer(i) => fixed(2, &i.to_le_bytes()),
        Value::OptionSetValue(i) => fixed(11, &i.to_le_bytes()),
        Value::Boolean(b) => fixed(1, &[u8::from(*b)]),
        Value::DateTime(ms) => fixed(8, &ms.to_le_bytes()),
        _ => {
            scratch.clear();
            encode_value(scratch, v);
            same_bytes(scratch, held)
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes wanted at byte {} of {}",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("flag byte {b} at byte {}", self.at - 1)),
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items at least `min_size` bytes each: bounded by the bytes
    /// left, so a bad count cannot make a huge allocation.
    fn count(&mut self, min_size: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        let left = self.bytes.len() - self.at;
        if n.saturating_mul(min_size) > left {
            return Err(format!(
                "a count of {n} at byte {} runs past the end",
                self.at - 4
            ));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        self.spanned_string().map(|(s, _)| s)
    }

    /// A string and where its UTF-8 lies.
    fn spanned_string(&mut self) -> Result<(String, Range<usize>), String> {
        let n = self.u32()? as usize;
        let start = self.at;
        let raw = self.take(n)?;
        // The host encodes these bytes from its own `String`s, so they are
        // UTF-8. Like wit-bindgen with every `string` the host passes, release
        // builds take that on trust (checking was a sixth of decoding a
        // Target); debug builds, the SDK's tests among them, check.
        if cfg!(debug_assertions) {
            core::str::from_utf8(raw)
                .map_err(|e| format!("a string at byte {start} is not UTF-8: {e}"))?;
        }
        // SAFETY: UTF-8 — the host's own strings' bytes, checked above in debug builds.
        #[allow(unsafe_code)]
        let s = unsafe { String::from_utf8_unchecked(raw.to_vec()) };
        Ok((s, start..self.at))
    }

    fn option_string(&mut self) -> Result<Option<String>, String> {
        Ok(if self.flag()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    fn guid(&mut self) -> Result<Guid, String> {
        let hi = self.u64()?;
        Ok(Guid::from_halves(hi, self.u64()?))
    }

    fn reference(&mut self) -> Result<EntityReference, String> {
        Ok(EntityReference {
            logical_name: self.string()?,
            id: self.guid()?,
            name: self.option_string()?,
        })
    }

    fn value(&mut self) -> Result<Value, String> {
        let at = self.at;
        Ok(match self.byte()? {
            0 => Value::Null,
            1 => Value::Boolean(self.flag()?),
            2 => Value::Integer(self.i32()?),
            3 => Value::BigInteger(self.i64()?),
            4 => Value::Double(f64::from_bits(self.u64()?)),
            5 => Value::Decimal(self.string()?),
            6 => Value::Money(self.string()?),
            7 => Value::String(self.string()?),
            8 => Value::DateTime(self.i64()?),
            9 => Value::Guid(self.guid()?),
            10 => Value::EntityReference(self.reference()?),
            11 => Value::OptionSetValue(self.i32()?),
            12 => {
                let n = self.count(4)?;
                Value::OptionSetValueCollection(
                    (0..n).map(|_| self.i32()).collect::<Result<_, _>>()?,
                )
            }
            13 => {
                let n = self.count(21)?;
                Value::EntityReferenceCollection(
                    (0..n).map(|_| self.reference()).collect::<Result<_, _>>()?,
                )
            }
            14 => {
                let n = self.count(4)?;
                Value::StringArray((0..n).map(|_| self.string()).collect::<Result<_, _>>()?)
            }
            tag => return Err(format!("value case {tag} at byte {at}")),
        })
    }

    fn entity(&mut self) -> Result<(Entity, EntitySpans), String> {
        let start = self.at;
        let logical_name = self.string()?;
        let id = if self.flag()? {
            Some(self.guid()?)
        } else {
            None
        };
        let head = start..self.at;
        let n = self.count(5)?;
        let mut attributes = Vec::with_capacity(n);
        let mut spans = Vec::with_capacity(n);
        for _ in 0..n {
            let (name, name_span) = self.spanned_string()?;
            let value_start = self.at;
            attributes.push((name, self.value()?));
            spans.push((name_span, value_start..self.at));
        }
        let tail_start = self.at;
        let n = self.count(8)?;
        let mut formatted_values = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string()?;
            formatted_values.push((name, self.string()?));
        }
        let row_version = self.option_string()?;
        Ok((
            Entity {
                logical_name,
                id,
                attributes,
                formatted_values,
                row_version,
            },
            EntitySpans {
                head,
                attributes: spans,
                tail: tail_start..self.at,
            },
        ))
    }

    fn collection(&mut self) -> Result<EntityCollection, String> {
        let entity_name = self.string()?;
        let n = self.count(14)?;
        let entities = (0..n)
            .map(|_| self.entity().map(|(e, _)| e))
            .collect::<Result<_, _>>()?;
        Ok(EntityCollection {
            entity_name,
            entities,
            more_records: self.flag()?,
            paging_cookie: self.option_string()?,
            total_record_count: self.i32()?,
        })
    }

    fn parameters(&mut self) -> Result<(Parameters, Vec<ParameterSpans>), String> {
        let n = self.count(5)?;
        let mut params = Vec::with_capacity(n);
        let mut spans = Vec::with_capacity(n);
        for _ in 0..n {
            let (name, name_span) = self.spanned_string()?;
            let start = self.at;
            let (value, entity) = match self.byte()? {
                0 => (ParameterValue::Value(self.value()?), None),
                1 => {
                    let (entity, spans) = self.entity()?;
                    (ParameterValue::Entity(entity), Some(spans))
                }
                2 => (ParameterValue::EntityCollection(self.collection()?), None),
                tag => return Err(format!("parameter case {tag} at byte {start}")),
            };
            params.push((name, value));
            spans.push(ParameterSpans {
                name: name_span,
                value: start..self.at,
                entity,
            });
        }
        Ok((Parameters(params), spans))
    }
}

// The encoder: the host's (`host/src/sandbox/packed.rs`) for the SDK's types,
// byte for byte, so an unchanged value encodes to the bytes it came in.

fn encode_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn encode_string(out: &mut Vec<u8>, s: &str) {
    encode_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn encode_option_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            encode_string(out, s);
        }
    }
}

fn encode_guid(out: &mut Vec<u8>, g: Guid) {
    let (hi, lo) = g.halves();
    out.extend_from_slice(&hi.to_le_bytes());
    out.extend_from_slice(&lo.to_le_bytes());
}

fn encode_reference(out: &mut Vec<u8>, r: &EntityReference) {
    encode_string(out, &r.logical_name);
    encode_guid(out, r.id);
    encode_option_string(out, r.name.as_deref());
}

fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Boolean(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Integer(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::BigInteger(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Double(d) => {
            out.push(4);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Value::Decimal(s) => {
            out.push(5);
            encode_string(out, s);
        }
        Value::Money(s) => {
            out.push(6);
            encode_string(out, s);
        }
        Value::String(s) => {
            out.push(7);
            encode_string(out, s);
        }
        Value::DateTime(ms) => {
            out.push(8);
            out.extend_from_slice(&ms.to_le_bytes());
        }
        Value::Guid(g) => {
            out.push(9);
            encode_guid(out, *g);
        }
        Value::EntityReference(r) => {
            out.push(10);
            encode_reference(out, r);
        }
        Value::OptionSetValue(i) => {
            out.push(11);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::OptionSetValueCollection(items) => {
            out.push(12);
            encode_len(out, items.len());
            for i in items {
                out.extend_from_slice(&i.to_le_bytes());
            }
        }
        Value::EntityReferenceCollection(items) => {
            out.push(13);
            encode_len(out, items.len());
            for r in items {
                encode_reference(out, r);
            }
        }
        Value::StringArray(items) => {
            out.push(14);
            encode_len(out, items.len());
            for s in items {
                encode_string(out, s);
            }
        }
    }
}

fn encode_entity_head(out: &mut Vec<u8>, e: &Entity) {
    encode_string(out, &e.logical_name);
    match e.id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            encode_guid(out, id);
        }
    }
}

fn encode_entity_tail(out: &mut Vec<u8>, e: &Entity) {
    encode_len(out, e.formatted_values.len());
    for (name, text) in &e.formatted_values {
        encode_string(out, name);
        encode_string(out, text);
    }
    encode_option_string(out, e.row_version.as_deref());
}

fn encode_entity(out: &mut Vec<u8>, e: &Entity) {
    encode_entity_head(out, e);
    encode_len(out, e.attributes.len());
    for (name, value) in &e.attributes {
        encode_string(out, name);
        encode_value(out, value);
    }
    encode_entity_tail(out, e);
}

fn encode_parameter_value(out: &mut Vec<u8>, v: &ParameterValue) {
    match v {
        ParameterValue::Value(v) => {
            out.push(0);
            encode_value(out, v);
        }
        ParameterValue::Entity(e) => {
            out.push(1);
            encode_entity(out, e);
        }
        ParameterValue::EntityCollection(c) => {
            out.push(2);
            encode_string(out, &c.entity_name);
            encode_len(out, c.entities.len());
            for e in &c.entities {
                encode_entity(out, e);
            }
            out.push(u8::from(c.more_records));
            encode_option_string(out, c.paging_cookie.as_deref());
            out.extend_from_slice(&c.total_record_count.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<Value> {
        let id: Guid = "6d81597f-0f9f-e711-8122-000d3aa2331c".parse().unwrap();
        vec![
            Value::Null,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::Integer(7),
            Value::Integer(-7),
            Value::BigInteger(7),
            Value::Double(1.5),
            Value::Decimal("1.50".into()),
            Value::Money("1.50".into()),
            Value::String("1.50".into()),
            Value::String("1.5".into()),
            Value::String(String::new()),
            Value::String("a text longer than eight bytes".into()),
            Value::String("a text longer than eight bytez".into()),
            Value::BigInteger(-7),
            Value::DateTime(7),
            Value::DateTime(-7),
            Value::Guid(id),
            Value::EntityReference(EntityReference::new("account", id)),
            Value::OptionSetValue(7),
            Value::OptionSetValueCollection(vec![1, 2]),
            Value::EntityReferenceCollection(vec![EntityReference::new("contact", id)]),
            Value::StringArray(vec!["a".into()]),
        ]
    }

    /// What the diff compares in place agrees with encoding and comparing bytes: a value matches its own
    /// encoding and no other kind's or value's.
    #[test]
    fn a_value_encodes_as_its_own_bytes_only() {
        let mut scratch = Vec::new();
        for a in values() {
            let mut held = Vec::new();
            encode_value(&mut held, &a);
            for b in values() {
                assert_eq!(
                    encodes_as(&held, &b, &mut scratch),
                    a == b,
                    "{a:?} held, {b:?} now"
                );
            }
        }
    }

    /// `same_bytes` is `==` for every length around its eight-byte words.
    #[test]
    fn same_bytes_is_equality() {
        let text = b"0123456789abcdefghij";
        for n in 0..text.len() {
            let a = &text[..n];
            assert!(same_bytes(a, a));
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(a, &b), "{n} {i}");
            }
            assert!(!same_bytes(a, &text[..n + 1]));
        }
    }
}
