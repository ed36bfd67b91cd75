//! The byte encoding of a parameter collection that 0.2.0's
//! `packed-parameters` answers (specified beside that function in
//! `wit/v0.2/context.wit`; the SDK's `packed` module decodes it). Owns the
//! encoder only: what a collection holds is `contract_v2`'s business.
//!
//! Why it exists: lowering a 1 KB Target through the canonical ABI calls into
//! the guest's allocator once per string and list (about 45 times), each a
//! host-to-guest transition; one byte string is one allocation and one copy,
//! encoded straight from the shared context without cloning it.
//!
//! The SDK holds the same encoder for its own types (`guest-sdk/src/packed.rs`): it finds what a plug-in
//! changed by encoding values again and comparing bytes, so the two must agree byte for byte. They cannot
//! share code (the SDK is copied whole into `weft new` projects and depends on nothing of the host's);
//! `contract::every_value_kind_crosses_the_packed_read_intact` fails if they drift apart.

use super::wit::types::{Entity, EntityCollection, EntityReference, Guid, ParameterValue, Value};

/// Encodes `params` (a `parameters` list) into a fresh buffer.
pub(super) fn encode(params: &[super::wit::types::Parameter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    len(&mut out, params.len());
    for p in params {
        string(&mut out, &p.name);
        match &p.value {
            ParameterValue::Value(v) => {
                out.push(0);
                value(&mut out, v);
            }
            ParameterValue::Entity(e) => {
                out.push(1);
                entity(&mut out, e);
            }
            ParameterValue::EntityCollection(c) => {
                out.push(2);
                collection(&mut out, c);
            }
        }
    }
    out
}

/// A count or byte length. The guest's 32-bit memory and the return quota keep
/// every real collection far below 4 GiB; a longer one (never seen) would
/// saturate, and the decoder then fails clearly on a count past the end of the
/// bytes rather than misreading them.
fn len(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
}

fn string(out: &mut Vec<u8>, s: &str) {
    len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn option_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            string(out, s);
        }
    }
}

fn guid(out: &mut Vec<u8>, g: Guid) {
    out.extend_from_slice(&g.hi.to_le_bytes());
    out.extend_from_slice(&g.lo.to_le_bytes());
}

fn reference(out: &mut Vec<u8>, r: &EntityReference) {
    string(out, &r.logical_name);
    guid(out, r.id);
    option_string(out, r.name.as_deref());
}

fn value(out: &mut Vec<u8>, v: &Value) {
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
            string(out, s);
        }
        Value::Money(s) => {
            out.push(6);
            string(out, s);
        }
        Value::String(s) => {
            out.push(7);
            string(out, s);
        }
        Value::Datetime(ms) => {
            out.push(8);
            out.extend_from_slice(&ms.to_le_bytes());
        }
        Value::Guid(g) => {
            out.push(9);
            guid(out, *g);
        }
        Value::EntityReference(r) => {
            out.push(10);
            reference(out, r);
        }
        Value::OptionSetValue(i) => {
            out.push(11);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::OptionSetValueCollection(items) => {
            out.push(12);
            len(out, items.len());
            for i in items {
                out.extend_from_slice(&i.to_le_bytes());
            }
        }
        Value::EntityReferenceCollection(items) => {
            out.push(13);
            len(out, items.len());
            for r in items {
                reference(out, r);
            }
        }
        Value::StringArray(items) => {
            out.push(14);
            len(out, items.len());
            for s in items {
                string(out, s);
            }
        }
    }
}

fn entity(out: &mut Vec<u8>, e: &Entity) {
    string(out, &e.logical_name);
    match e.id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            guid(out, id);
        }
    }
    len(out, e.attributes.len());
    for a in &e.attributes {
        string(out, &a.name);
        value(out, &a.value);
    }
    len(out, e.formatted_values.len());
    for (name, text) in &e.formatted_values {
        string(out, name);
        string(out, text);
    }
    option_string(out, e.row_version.as_deref());
}

fn collection(out: &mut Vec<u8>, c: &EntityCollection) {
    string(out, &c.entity_name);
    len(out, c.entities.len());
    for e in &c.entities {
        entity(out, e);
    }
    out.push(u8::from(c.more_records));
    option_string(out, c.paging_cookie.as_deref());
    out.extend_from_slice(&c.total_record_count.to_le_bytes());
}
