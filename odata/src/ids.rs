//! MetadataIds: name-based (version 5) UUIDs of what an item is and its names, so they are the same after
//! every restart and on every machine, without storing them.
//!
//! Owns the namespace and the naming of each kind of item. It must not hand out random ids.

use uuid::Uuid;

/// weft's namespace for metadata ids (a fixed random UUID; changing it changes every id).
const NAMESPACE: Uuid = Uuid::from_u128(0x5c0f_61d2_8f3e_4b7a_9d41_2e6b_0c7a_91f3);

/// The id of the metadata item of `kind` (`entity`, `attribute`, `relationship`, `optionset`, `label`…)
/// named by `parts` (e.g. the table and the column).
pub fn metadata_id(kind: &str, parts: &[&str]) -> Uuid {
    // NUL cannot occur in a name, so no two (kind, parts) lists give the same bytes.
    let mut name = kind.to_owned();
    for p in parts {
        name.push('\0');
        name.push_str(p);
    }
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_every_part_and_only_on_them() {
        let a = metadata_id("attribute", &["account", "name"]);
        assert_eq!(a, metadata_id("attribute", &["account", "name"]));
        assert_ne!(a, metadata_id("attribute", &["accountn", "ame"]));
        assert_ne!(a, metadata_id("entity", &["account", "name"]));
        assert_eq!(a.get_version_num(), 5);
    }
}
