//! DataContractSerializer's naming rule for generic types, so that every item
//! name weft writes (`KeyValuePairOfstringEntitygUGIFE1S`, …) is computed the
//! way .NET computes it rather than copied as a constant.
//!
//! Owns the rule and the MD5 it needs; knows nothing of XML events or bytes.
//! The rule (.NET reference source, `DataContract.GetDefaultStableLocalName`
//! and `GetNamespacesDigest`): a closed generic type is named after its
//! definition (`KeyValuePair` + `Of`) followed by each generic argument's
//! contract name. When any argument's namespace is not a built-in one (XML
//! Schema or the Serialization namespace), a digest is appended: MD5 of
//! `" <argument count> <ns1> <ns2> …"` (UTF-8), its first 6 bytes in base64
//! with `=` dropped, `+` written `_P` and `/` written `_S`.

use crate::infoset::{NS_SER, NS_XSD};
use base64::Engine;

/// A data contract name: local name and namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractName<'a> {
    /// The contract's local name (`string`, `Entity`, `anyType`).
    pub name: &'a str,
    /// The contract's namespace.
    pub ns: &'a str,
}

/// The stable name of a closed generic type whose definition's name without
/// the arity suffix is `definition` (`KeyValuePair` for ``KeyValuePair`2``).
pub fn generic_name(definition: &str, args: &[ContractName<'_>]) -> String {
    let mut local = String::with_capacity(64);
    local.push_str(definition);
    local.push_str("Of");
    let mut namespaces = String::new();
    let mut built_in = true;
    for a in args {
        local.push_str(a.name);
        namespaces.push(' ');
        namespaces.push_str(a.ns);
        built_in &= a.ns == NS_XSD || a.ns == NS_SER;
    }
    if !built_in {
        // .NET prefixes the nesting counts (one level here: the argument count).
        let digest = namespaces_digest(&format!(" {}{namespaces}", args.len()));
        local.push_str(&digest);
    }
    local
}

/// `GetNamespacesDigest`: MD5, first 6 bytes, base64 with `+`/`/`/`=` replaced.
fn namespaces_digest(namespaces: &str) -> String {
    let hash = md5(namespaces.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&hash[..6]);
    let mut out = String::with_capacity(12);
    for c in b64.chars() {
        match c {
            '=' => {}
            '+' => out.push_str("_P"),
            '/' => out.push_str("_S"),
            c => out.push(c),
        }
    }
    out
}

/// MD5 (RFC 1321). The reference source carries its own copy too, so the
/// digest does not depend on a platform crypto provider.
fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
    let k: [u32; 64] =
        std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32);
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for block in msg.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ])
        });
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(m[g])
                .rotate_left(S[(i / 16) * 4 + i % 4]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 16];
    for (i, w) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infoset::{NS_CONTRACTS, NS_SER, NS_XSD};

    const STRING: ContractName = ContractName {
        name: "string",
        ns: NS_XSD,
    };

    /// RFC 1321's test vectors.
    #[test]
    fn md5_matches_rfc_1321() {
        let hex = |b: [u8; 16]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    /// The public examples: the SDK's related-entities item and the image item.
    #[test]
    fn public_examples() {
        let entity = ContractName {
            name: "Entity",
            ns: NS_CONTRACTS,
        };
        assert_eq!(
            generic_name("KeyValuePair", &[STRING, entity]),
            "KeyValuePairOfstringEntitygUGIFE1S"
        );
        let rel = ContractName {
            name: "Relationship",
            ns: NS_CONTRACTS,
        };
        let coll = ContractName {
            name: "EntityCollection",
            ns: NS_CONTRACTS,
        };
        assert_eq!(
            generic_name("KeyValuePair", &[rel, coll]),
            "KeyValuePairOfRelationshipEntityCollectionX_PsK4FkN"
        );
    }

    /// Arguments from built-in namespaces get no digest.
    #[test]
    fn built_in_arguments_get_no_digest() {
        let any = ContractName {
            name: "anyType",
            ns: NS_XSD,
        };
        let guid = ContractName {
            name: "guid",
            ns: NS_SER,
        };
        assert_eq!(
            generic_name("KeyValuePair", &[STRING, any]),
            "KeyValuePairOfstringanyType"
        );
        assert_eq!(
            generic_name("KeyValuePair", &[STRING, STRING]),
            "KeyValuePairOfstringstring"
        );
        assert_eq!(
            generic_name("KeyValuePair", &[STRING, guid]),
            "KeyValuePairOfstringguid"
        );
    }
}
