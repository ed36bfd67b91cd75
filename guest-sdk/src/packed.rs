//! Decodes the byte string 0.2.0's `packed-parameters` answers (the encoding
//! is specified beside that function in `wit/v0.2/context.wit`) straight into
//! the SDK's types. Owns the decoder only; which collection to fetch and when
//! is the context's business.
//!
//! Why: a collection lowered through the canonical ABI costs one call into
//! this component's allocator per string and list, each a host-to-guest
//! transition, and then a conversion from the generated types; one byte
//! string is one allocation and one copy.

use crate::{Entity, EntityCollection, EntityReference, Guid, ParameterValue, Parameters, Value};

/// Decodes a whole `parameters` list. The bytes come from the host; an error
/// means a host bug, and says where the bytes stopped making sense.
pub(crate) fn decode(bytes: &[u8]) -> Result<Parameters, String> {
    let mut r = Reader { bytes, at: 0 };
    let params = r.parameters()?;
    if r.at != bytes.len() {
        return Err(format!(
            "{} bytes left over after the last parameter",
            bytes.len() - r.at
        ));
    }
    Ok(params)
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
        let n = self.u32()? as usize;
        let at = self.at;
        let raw = self.take(n)?;
        core::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|e| format!("a string at byte {at} is not UTF-8: {e}"))
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

    fn entity(&mut self) -> Result<Entity, String> {
        let logical_name = self.string()?;
        let id = if self.flag()? {
            Some(self.guid()?)
        } else {
            None
        };
        let n = self.count(5)?;
        let mut attributes = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string()?;
            attributes.push((name, self.value()?));
        }
        let n = self.count(8)?;
        let mut formatted_values = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string()?;
            formatted_values.push((name, self.string()?));
        }
        Ok(Entity {
            logical_name,
            id,
            attributes,
            formatted_values,
            row_version: self.option_string()?,
        })
    }

    fn collection(&mut self) -> Result<EntityCollection, String> {
        let entity_name = self.string()?;
        let n = self.count(14)?;
        let entities = (0..n).map(|_| self.entity()).collect::<Result<_, _>>()?;
        Ok(EntityCollection {
            entity_name,
            entities,
            more_records: self.flag()?,
            paging_cookie: self.option_string()?,
            total_record_count: self.i32()?,
        })
    }

    fn parameters(&mut self) -> Result<Parameters, String> {
        let n = self.count(5)?;
        let mut params = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string()?;
            let at = self.at;
            let value = match self.byte()? {
                0 => ParameterValue::Value(self.value()?),
                1 => ParameterValue::Entity(self.entity()?),
                2 => ParameterValue::EntityCollection(self.collection()?),
                tag => return Err(format!("parameter case {tag} at byte {at}")),
            };
            params.push((name, value));
        }
        Ok(Parameters(params))
    }
}
