//! The relationships the metadata shows: every declared `[[relationship]]`, plus one implicit 1:N
//! relationship for each lookup (and each of its declared target tables) that no declared relationship
//! carries, because Dataverse has a relationship behind every lookup and clients find the navigation
//! property names there. Lookups to `systemuser`/`team` (not declared tables) have none.
//!
//! Owns the relationship list, their names and navigation property names. It must not render JSON.

use weft_store::{AttributeKind, RelationshipDef, Schema, TableDef};

/// One relationship between declared tables.
#[derive(Debug, Clone)]
pub enum Rel<'a> {
    /// 1:N, carried by `attribute` (a lookup of `referencing`) pointing at `referenced`.
    OneToMany {
        /// Schema name.
        name: String,
        /// The "one" side.
        referenced: &'a TableDef,
        /// The "many" side.
        referencing: &'a TableDef,
        /// The lookup on the referencing table.
        attribute: &'a str,
        /// Declared in `weft.toml` (a custom relationship), not derived from a lookup.
        declared: bool,
    },
    /// N:N, stored in an intersect table named after the relationship.
    ManyToMany {
        /// Schema name (and intersect table name).
        name: &'a str,
        /// First table.
        entity1: &'a TableDef,
        /// Second table.
        entity2: &'a TableDef,
    },
}

impl Rel<'_> {
    /// The schema name.
    pub fn name(&self) -> &str {
        match self {
            Rel::OneToMany { name, .. } => name,
            Rel::ManyToMany { name, .. } => name,
        }
    }
}

/// The single-valued navigation property of lookup `attribute` towards `target`: the lookup's name, or
/// `{lookup}_{target}` when it has several targets (as `@odata.bind` names them).
pub fn lookup_navigation(table: &TableDef, attribute: &str, target: &str) -> String {
    match table.attribute(attribute).map(|a| &a.kind) {
        Some(AttributeKind::Lookup { targets }) if targets.len() > 1 => {
            format!("{attribute}_{target}")
        }
        _ => attribute.to_owned(),
    }
}

/// Every relationship: the declared ones in declaration order, then the implicit ones table by table.
pub fn all(schema: &Schema) -> Vec<Rel<'_>> {
    let mut out = Vec::new();
    for r in schema.relationships() {
        match r {
            RelationshipDef::ManyToMany {
                name,
                entity1,
                entity2,
            } => {
                if let (Some(entity1), Some(entity2)) =
                    (schema.table(entity1), schema.table(entity2))
                {
                    out.push(Rel::ManyToMany {
                        name,
                        entity1,
                        entity2,
                    });
                }
            }
            RelationshipDef::OneToMany {
                name,
                referenced_entity,
                referencing_entity,
                referencing_attribute,
            } => {
                if let (Some(referenced), Some(referencing)) = (
                    schema.table(referenced_entity),
                    schema.table(referencing_entity),
                ) {
                    out.push(Rel::OneToMany {
                        name: name.clone(),
                        referenced,
                        referencing,
                        attribute: referencing_attribute,
                        declared: true,
                    });
                }
            }
        }
    }
    for table in schema.tables() {
        for a in &table.attributes {
            let AttributeKind::Lookup { targets } = &a.kind else {
                continue;
            };
            for target in targets {
                let Some(referenced) = schema.table(target) else {
                    continue;
                };
                let carried = out.iter().any(|r| {
                    matches!(r, Rel::OneToMany { referenced: d, referencing, attribute, .. }
                        if d.logical_name == *target
                            && referencing.logical_name == table.logical_name
                            && *attribute == a.logical_name)
                });
                if carried {
                    continue;
                }
                let name = if targets.len() > 1 {
                    format!("lk_{}_{}_{target}", table.logical_name, a.logical_name)
                } else {
                    format!("lk_{}_{}", table.logical_name, a.logical_name)
                };
                out.push(Rel::OneToMany {
                    name,
                    referenced,
                    referencing: table,
                    attribute: &a.logical_name,
                    declared: false,
                });
            }
        }
    }
    out
}
