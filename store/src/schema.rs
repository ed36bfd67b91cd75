//! Table declarations: the typed model of the tables and relationships a host declares in `weft.toml`.
//!
//! Owns the shape of `[[table]]` / `[[relationship]]` entries, their validation and the platform columns
//! every table gets. It must not touch storage: the SQLite backend turns a validated [`Schema`] into DDL.
//!
//! # TOML shape
//!
//! ```toml
//! [[table]]
//! logical_name = "account"
//! entity_set_name = "accounts"
//! primary_id_attribute = "accountid"        # Uniqueidentifier; added if not declared
//! primary_name_attribute = "name"           # must be a declared String attribute
//! ownership = "UserOwned"                   # or "OrganizationOwned" (no ownerid); default UserOwned
//!
//!   [[table.attribute]]
//!   logical_name = "name"
//!   type = "String"
//!   max_length = 160                        # default 100, 1..=4000
//!
//!   [[table.attribute]]
//!   logical_name = "revenue"
//!   type = "Money"
//!
//!   [[table.attribute]]
//!   logical_name = "numberofemployees"
//!   type = "Integer"
//!   min_value = 0                           # defaults: the i32 range
//!   max_value = 1000000
//!
//!   [[table.attribute]]
//!   logical_name = "industrycode"
//!   type = "Picklist"                       # also MultiSelectPicklist
//!   options = [{ value = 1, label = "Accounting" }, { value = 2, label = "Agriculture" }]
//!
//!   [[table.attribute]]
//!   logical_name = "primarycontactid"
//!   type = "Lookup"
//!   targets = ["contact"]
//!
//! [[relationship]]                          # N:N: an intersect table with both ids
//! name = "accountleads_association"
//! type = "ManyToMany"
//! entity1 = "account"
//! entity2 = "lead"
//!
//! [[relationship]]                          # 1:N: carried by a lookup on the referencing table
//! name = "contact_customer_accounts"
//! type = "OneToMany"
//! referenced_entity = "account"
//! referencing_entity = "contact"
//! referencing_attribute = "parentcustomerid"
//! ```
//!
//! Attribute `type`s: `String{max_length}`, `Memo{max_length}` (default 2000, up to 1048576), `Integer{min_value,
//! max_value}`, `BigInt`, `Double`, `Decimal{precision}` (0..=10, default 2), `Money` (up to 4 decimals), `Boolean`,
//! `DateTime`, `Uniqueidentifier`, `Lookup{targets}`, `Picklist{options}`, `MultiSelectPicklist{options}`,
//! `State{options}`, `Status{options}` (each status option names its `state`).
//!
//! Every table also gets the platform attributes it does not declare: the primary id, `createdon` and
//! `modifiedon` (DateTime, set by the store, read-only to callers), `versionnumber` (BigInt, the row version
//! the store raises on every write, read-only to callers), `ownerid` (Lookup to `systemuser`/`team`,
//! user-owned tables only), `statecode` (State: 0 Active, 1 Inactive) and `statuscode` (Status: 1 Active in
//! state 0, 2 Inactive in state 1). Declaring one of them overrides the default but must keep its type.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Lookup targets that are always valid although weft does not store them as declared tables.
pub const BUILT_IN_TARGETS: &[&str] = &["systemuser", "team"];

/// Table names owned by the store's system tables; a declared table or relationship may not use them.
pub const RESERVED_TABLE_NAMES: &[&str] = &[
    "asyncoperation",
    "plugintracelog",
    "pluginassembly",
    "plugintype",
    "sdkmessageprocessingstep",
    "sdkmessageprocessingstepimage",
    "sdkmessageprocessingstepsecureconfig",
    "serviceendpoint",
    "systemuser",
    "team",
    "workflow",
];

/// Platform attribute names with fixed meaning.
pub mod platform {
    /// Creation time, set by the store.
    pub const CREATED_ON: &str = "createdon";
    /// Last modification time, set by the store.
    pub const MODIFIED_ON: &str = "modifiedon";
    /// Row version (Dataverse's `versionnumber`, the Web API's `@odata.etag`), set by the store on every
    /// write: greater than the row's previous version.
    pub const VERSION_NUMBER: &str = "versionnumber";
    /// Owner of a user-owned row (systemuser or team).
    pub const OWNER_ID: &str = "ownerid";
    /// State of the row.
    pub const STATE_CODE: &str = "statecode";
    /// Status reason of the row, paired with its state.
    pub const STATUS_CODE: &str = "statuscode";
}

/// A table or relationship declaration the schema rejects, with what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

fn err(msg: impl Into<String>) -> SchemaError {
    SchemaError(msg.into())
}

/// One option of a Picklist, MultiSelectPicklist or State attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionMeta {
    /// Stored value.
    pub value: i32,
    /// Display label.
    pub label: String,
}

/// One option of a Status attribute, tied to the state it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusOption {
    /// Stored value.
    pub value: i32,
    /// Display label.
    pub label: String,
    /// The `statecode` value this status reason belongs to.
    pub state: i32,
}

/// The type of an attribute, with its type-specific constraints (Dataverse column types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeKind {
    /// Single line of text.
    String {
        /// Maximum length in characters.
        max_length: u32,
    },
    /// Multiple lines of text.
    Memo {
        /// Maximum length in characters.
        max_length: u32,
    },
    /// Whole number (32-bit).
    Integer {
        /// Smallest allowed value.
        min_value: i32,
        /// Largest allowed value.
        max_value: i32,
    },
    /// Big integer (64-bit).
    BigInt,
    /// Floating point number.
    Double,
    /// Exact decimal number.
    Decimal {
        /// Digits after the decimal point (0..=10).
        precision: u8,
    },
    /// Currency amount (exact, up to 4 decimals).
    Money,
    /// Two options.
    Boolean,
    /// Date and time, UTC, millisecond precision.
    DateTime,
    /// A GUID.
    Uniqueidentifier,
    /// Reference to a row of one of the target tables.
    Lookup {
        /// Logical names of the tables the lookup may point to.
        targets: Vec<String>,
    },
    /// Choice.
    Picklist {
        /// Allowed options.
        options: Vec<OptionMeta>,
    },
    /// Choices.
    MultiSelectPicklist {
        /// Allowed options.
        options: Vec<OptionMeta>,
    },
    /// Row state (`statecode`).
    State {
        /// Allowed states.
        options: Vec<OptionMeta>,
    },
    /// Status reason (`statuscode`).
    Status {
        /// Allowed status reasons, each tied to a state.
        options: Vec<StatusOption>,
    },
}

impl AttributeKind {
    /// The Dataverse type name, as written in `type = "…"` and in error messages.
    pub fn name(&self) -> &'static str {
        match self {
            AttributeKind::String { .. } => "String",
            AttributeKind::Memo { .. } => "Memo",
            AttributeKind::Integer { .. } => "Integer",
            AttributeKind::BigInt => "BigInt",
            AttributeKind::Double => "Double",
            AttributeKind::Decimal { .. } => "Decimal",
            AttributeKind::Money => "Money",
            AttributeKind::Boolean => "Boolean",
            AttributeKind::DateTime => "DateTime",
            AttributeKind::Uniqueidentifier => "Uniqueidentifier",
            AttributeKind::Lookup { .. } => "Lookup",
            AttributeKind::Picklist { .. } => "Picklist",
            AttributeKind::MultiSelectPicklist { .. } => "MultiSelectPicklist",
            AttributeKind::State { .. } => "State",
            AttributeKind::Status { .. } => "Status",
        }
    }

    /// Whether `gt`/`lt` conditions and ordering make sense for this type.
    pub fn is_ordered(&self) -> bool {
        !matches!(
            self,
            AttributeKind::Lookup { .. }
                | AttributeKind::MultiSelectPicklist { .. }
                | AttributeKind::Boolean
        )
    }
}

/// One attribute (column) of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAttribute", into = "RawAttribute")]
pub struct AttributeDef {
    /// Logical name (lowercase).
    pub logical_name: String,
    /// Type and constraints.
    pub kind: AttributeKind,
}

impl AttributeDef {
    /// An attribute of the given kind.
    pub fn new(logical_name: impl Into<String>, kind: AttributeKind) -> Self {
        AttributeDef {
            logical_name: logical_name.into(),
            kind,
        }
    }
}

/// Who owns the rows of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Ownership {
    /// Rows have an `ownerid` (systemuser or team) and can be assigned.
    #[default]
    UserOwned,
    /// Rows belong to the organization: no `ownerid`, no Assign.
    OrganizationOwned,
}

/// A declared table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// Logical name, e.g. `account`.
    pub logical_name: String,
    /// Web API entity set name, e.g. `accounts`.
    pub entity_set_name: String,
    /// Primary id attribute, e.g. `accountid`.
    pub primary_id_attribute: String,
    /// Primary name attribute, e.g. `name`.
    pub primary_name_attribute: String,
    /// Ownership type.
    #[serde(default)]
    pub ownership: Ownership,
    /// Attributes; after [`Schema::new`] this includes the platform attributes.
    #[serde(default, rename = "attribute")]
    pub attributes: Vec<AttributeDef>,
    /// Alternate keys (`[[table.key]]`): each set of attributes identifies at most one row.
    #[serde(default, rename = "key", skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyDef>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// An alternate key: attribute values that identify a row (Dataverse's entity key), enforced unique by the
/// store and usable in URLs instead of the id (`accounts(accountnumber='A1')`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDef {
    /// The key's logical (and schema) name, e.g. `accountnumber_key`.
    pub name: String,
    /// Its attributes (1 to 16), in order.
    pub attributes: Vec<String>,
}

/// Most attributes in one alternate key (Dataverse's limit).
pub const MAX_KEY_ATTRIBUTES: usize = 16;

impl TableDef {
    /// A table with the given names and attributes (platform attributes are added by [`Schema::new`]).
    pub fn new(
        logical_name: &str,
        entity_set_name: &str,
        primary_id_attribute: &str,
        primary_name_attribute: &str,
        attributes: Vec<AttributeDef>,
    ) -> Self {
        TableDef {
            logical_name: logical_name.into(),
            entity_set_name: entity_set_name.into(),
            primary_id_attribute: primary_id_attribute.into(),
            primary_name_attribute: primary_name_attribute.into(),
            ownership: Ownership::UserOwned,
            attributes,
            keys: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The attribute with this logical name.
    pub fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.index.get(name).map(|&i| &self.attributes[i])
    }

    /// Whether callers may write this attribute (false for `createdon`, `modifiedon`, `versionnumber`).
    pub fn is_writable(&self, name: &str) -> bool {
        name != platform::CREATED_ON
            && name != platform::MODIFIED_ON
            && name != platform::VERSION_NUMBER
    }

    fn normalize(&mut self) -> Result<(), SchemaError> {
        self.normalize_attributes()?;
        self.check_keys()
    }

    /// Checks the alternate keys: named, distinct, 1 to 16 existing attributes of types a key may use.
    fn check_keys(&self) -> Result<(), SchemaError> {
        let t = &self.logical_name;
        let mut names = HashSet::new();
        for k in &self.keys {
            check_name(&format!("key of table `{t}`:"), &k.name)?;
            if !names.insert(k.name.as_str()) {
                return Err(err(format!("table `{t}`: duplicate key `{}`", k.name)));
            }
            // The key's unique index is named `{table}@key@{key}`: PostgreSQL names hold 63 bytes.
            if t.len() + k.name.len() + 5 > 63 {
                return Err(err(format!(
                    "table `{t}`: key name `{}` is too long (table and key names together at most 58 bytes)",
                    k.name
                )));
            }
            if k.attributes.is_empty() || k.attributes.len() > MAX_KEY_ATTRIBUTES {
                return Err(err(format!(
                    "table `{t}`: key `{}` needs 1 to {MAX_KEY_ATTRIBUTES} attributes",
                    k.name
                )));
            }
            let mut seen = HashSet::new();
            for a in &k.attributes {
                let Some(def) = self.attributes.iter().find(|d| d.logical_name == *a) else {
                    return Err(err(format!(
                        "table `{t}`: key `{}` names `{a}`, which is not an attribute of the table",
                        k.name
                    )));
                };
                if !seen.insert(a.as_str()) {
                    return Err(err(format!(
                        "table `{t}`: key `{}` names `{a}` twice",
                        k.name
                    )));
                }
                let allowed = matches!(
                    def.kind,
                    AttributeKind::String { .. }
                        | AttributeKind::Integer { .. }
                        | AttributeKind::BigInt
                        | AttributeKind::Decimal { .. }
                        | AttributeKind::DateTime
                        | AttributeKind::Lookup { .. }
                        | AttributeKind::Picklist { .. }
                        | AttributeKind::Uniqueidentifier
                );
                if !allowed || *a == self.primary_id_attribute || !self.is_writable(a) {
                    return Err(err(format!(
                        "table `{t}`: key `{}` cannot use `{a}` ({}): keys take String, Integer, BigInt, \
                         Decimal, DateTime, Lookup, Picklist or Uniqueidentifier attributes the caller writes",
                        k.name,
                        def.kind.name()
                    )));
                }
            }
        }
        Ok(())
    }

    fn normalize_attributes(&mut self) -> Result<(), SchemaError> {
        let t = self.logical_name.clone();
        check_name("table", &t)?;
        check_name(
            &format!("entity set name of table `{t}`:"),
            &self.entity_set_name,
        )?;
        if RESERVED_TABLE_NAMES.contains(&t.as_str()) {
            return Err(err(format!(
                "table name `{t}` is reserved for a system table"
            )));
        }
        if self.primary_id_attribute.is_empty() {
            return Err(err(format!("table `{t}`: primary id attribute missing")));
        }
        check_name(
            &format!("primary id attribute of table `{t}`:"),
            &self.primary_id_attribute,
        )?;
        let mut seen = HashSet::new();
        for a in &self.attributes {
            check_name(&format!("attribute of table `{t}`:"), &a.logical_name)?;
            if !seen.insert(a.logical_name.clone()) {
                return Err(err(format!(
                    "table `{t}`: duplicate attribute `{}`",
                    a.logical_name
                )));
            }
            validate_kind(a).map_err(|e| err(format!("table `{t}`: {e}")))?;
        }
        let implicit = platform_attributes(self);
        for (name, kind) in implicit {
            match self.attributes.iter().find(|a| a.logical_name == name) {
                Some(a) if a.kind.name() != kind.name() => {
                    return Err(err(format!(
                        "table `{t}`: attribute `{name}` must be of type {}, not {}",
                        kind.name(),
                        a.kind.name()
                    )));
                }
                Some(_) => {}
                None => self.attributes.push(AttributeDef::new(name, kind)),
            }
        }
        if self.ownership == Ownership::OrganizationOwned
            && self
                .attributes
                .iter()
                .any(|a| a.logical_name == platform::OWNER_ID)
        {
            return Err(err(format!(
                "table `{t}` is organization-owned and cannot declare `ownerid`"
            )));
        }
        match self
            .attributes
            .iter()
            .find(|a| a.logical_name == self.primary_name_attribute)
        {
            None => {
                return Err(err(format!(
                    "table `{t}`: primary name attribute `{}` is not declared among its attributes",
                    self.primary_name_attribute
                )));
            }
            Some(a) if !matches!(a.kind, AttributeKind::String { .. }) => {
                return Err(err(format!(
                    "table `{t}`: primary name attribute `{}` must be of type String, not {}",
                    a.logical_name,
                    a.kind.name()
                )));
            }
            Some(_) => {}
        }
        for a in &self.attributes {
            let n = &a.logical_name;
            match &a.kind {
                AttributeKind::State { .. } if n != platform::STATE_CODE => {
                    return Err(err(format!(
                        "table `{t}`: State attribute `{n}` must be named `statecode`"
                    )));
                }
                AttributeKind::Status { .. } if n != platform::STATUS_CODE => {
                    return Err(err(format!(
                        "table `{t}`: Status attribute `{n}` must be named `statuscode`"
                    )));
                }
                _ => {}
            }
        }
        let states: Vec<i32> = match &self
            .attribute_by_scan(platform::STATE_CODE)
            .map(|a| &a.kind)
        {
            Some(AttributeKind::State { options }) => options.iter().map(|o| o.value).collect(),
            _ => Vec::new(),
        };
        if let Some(AttributeKind::Status { options }) = self
            .attribute_by_scan(platform::STATUS_CODE)
            .map(|a| &a.kind)
        {
            for o in options {
                if !states.contains(&o.state) {
                    return Err(err(format!(
                        "table `{t}`: status option {} ({}) belongs to state {}, which `statecode` does not declare",
                        o.value, o.label, o.state
                    )));
                }
            }
            for s in &states {
                if !options.iter().any(|o| o.state == *s) {
                    return Err(err(format!(
                        "table `{t}`: state {s} has no status option in `statuscode`"
                    )));
                }
            }
        }
        self.index = self
            .attributes
            .iter()
            .enumerate()
            .map(|(i, a)| (a.logical_name.clone(), i))
            .collect();
        Ok(())
    }

    fn attribute_by_scan(&self, name: &str) -> Option<&AttributeDef> {
        self.attributes.iter().find(|a| a.logical_name == name)
    }
}

fn platform_attributes(t: &TableDef) -> Vec<(String, AttributeKind)> {
    let opt = |value, label: &str| OptionMeta {
        value,
        label: label.into(),
    };
    let status = |value, label: &str, state| StatusOption {
        value,
        label: label.into(),
        state,
    };
    let mut v = vec![
        (
            t.primary_id_attribute.clone(),
            AttributeKind::Uniqueidentifier,
        ),
        (platform::CREATED_ON.into(), AttributeKind::DateTime),
        (platform::MODIFIED_ON.into(), AttributeKind::DateTime),
        (platform::VERSION_NUMBER.into(), AttributeKind::BigInt),
        (
            platform::STATE_CODE.into(),
            AttributeKind::State {
                options: vec![opt(0, "Active"), opt(1, "Inactive")],
            },
        ),
        (
            platform::STATUS_CODE.into(),
            AttributeKind::Status {
                options: vec![status(1, "Active", 0), status(2, "Inactive", 1)],
            },
        ),
    ];
    if t.ownership == Ownership::UserOwned {
        v.push((
            platform::OWNER_ID.into(),
            AttributeKind::Lookup {
                targets: vec!["systemuser".into(), "team".into()],
            },
        ));
    }
    v
}

/// A relationship between declared tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum RelationshipDef {
    /// N:N, stored in an intersect table named after the relationship.
    ManyToMany {
        /// Relationship schema name (also the intersect table's name).
        name: String,
        /// First table.
        entity1: String,
        /// Second table (may equal the first).
        entity2: String,
    },
    /// 1:N, carried by a lookup attribute on the referencing (N) table.
    OneToMany {
        /// Relationship schema name.
        name: String,
        /// The "one" side.
        referenced_entity: String,
        /// The "many" side, holding the lookup.
        referencing_entity: String,
        /// The lookup attribute on the referencing table.
        referencing_attribute: String,
    },
}

/// The attribute types a store recorded when it last migrated, by (table, attribute): the `weft_attribute`
/// table both backends keep.
pub(crate) type StoredKinds = HashMap<(String, String), String>;

impl TableDef {
    /// What no backend migrates for an existing table: a primary id other than the one stored
    /// (`stored_pk`), or an attribute whose type differs from the one recorded in `stored`.
    pub(crate) fn refuse_unmigratable(
        &self,
        stored_pk: Option<&str>,
        stored: &StoredKinds,
    ) -> Result<(), SchemaError> {
        if stored_pk != Some(self.primary_id_attribute.as_str()) {
            return Err(SchemaError(format!(
                "table `{}` is stored with primary id `{}`; changing it to `{}` is not migrated",
                self.logical_name,
                stored_pk.unwrap_or("?"),
                self.primary_id_attribute
            )));
        }
        for a in &self.attributes {
            if let Some(kind) = stored.get(&(self.logical_name.clone(), a.logical_name.clone()))
                && kind != a.kind.name()
            {
                return Err(SchemaError(format!(
                    "attribute `{}` of table `{}` is stored as {kind}; changing it to {} is not migrated",
                    a.logical_name,
                    self.logical_name,
                    a.kind.name()
                )));
            }
        }
        Ok(())
    }

    /// The attributes whose type `stored` does not record yet (new, or the table is new): the rows a
    /// migration writes to `weft_attribute`. Only what changed is written, so opening an unchanged store is
    /// read-only.
    pub(crate) fn unrecorded_kinds<'t>(
        &'t self,
        stored: &'t StoredKinds,
    ) -> impl Iterator<Item = &'t AttributeDef> + 't {
        self.attributes.iter().filter(move |a| {
            stored
                .get(&(self.logical_name.clone(), a.logical_name.clone()))
                .map(String::as_str)
                != Some(a.kind.name())
        })
    }
}

impl RelationshipDef {
    /// The relationship's schema name.
    pub fn name(&self) -> &str {
        match self {
            RelationshipDef::ManyToMany { name, .. } | RelationshipDef::OneToMany { name, .. } => {
                name
            }
        }
    }
}

/// A validated set of tables and relationships, with platform attributes added.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    tables: Vec<TableDef>,
    relationships: Vec<RelationshipDef>,
    by_name: HashMap<String, usize>,
    by_set: HashMap<String, usize>,
    /// Tables created at runtime (`POST EntityDefinitions`) rather than declared in `weft.toml`.
    runtime: HashSet<String>,
}

/// The top-level shape of a TOML document holding only table declarations (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    #[serde(default)]
    table: Vec<TableDef>,
    #[serde(default)]
    relationship: Vec<RelationshipDef>,
}

impl Schema {
    /// Validates the declarations and adds platform attributes.
    pub fn new(
        tables: Vec<TableDef>,
        relationships: Vec<RelationshipDef>,
    ) -> Result<Self, SchemaError> {
        let mut s = Schema {
            tables,
            relationships,
            by_name: HashMap::new(),
            by_set: HashMap::new(),
            runtime: HashSet::new(),
        };
        for (i, t) in s.tables.iter_mut().enumerate() {
            t.normalize()?;
            if s.by_name.insert(t.logical_name.clone(), i).is_some() {
                return Err(err(format!("duplicate table `{}`", t.logical_name)));
            }
            if s.by_set.insert(t.entity_set_name.clone(), i).is_some() {
                return Err(err(format!(
                    "table `{}`: entity set name `{}` is already used by another table",
                    t.logical_name, t.entity_set_name
                )));
            }
        }
        for t in &s.tables {
            for a in &t.attributes {
                if let AttributeKind::Lookup { targets } = &a.kind {
                    for target in targets {
                        if !s.by_name.contains_key(target)
                            && !BUILT_IN_TARGETS.contains(&target.as_str())
                        {
                            return Err(err(format!(
                                "attribute `{}` of table `{}` targets `{target}`, which is not a declared table",
                                a.logical_name, t.logical_name
                            )));
                        }
                    }
                }
            }
        }
        let mut rel_names = HashSet::new();
        for r in &s.relationships {
            let name = r.name();
            check_name("relationship", name)?;
            if !rel_names.insert(name.to_string()) {
                return Err(err(format!("duplicate relationship `{name}`")));
            }
            if s.by_name.contains_key(name) || RESERVED_TABLE_NAMES.contains(&name) {
                return Err(err(format!(
                    "relationship `{name}`: name is already used by a table"
                )));
            }
            match r {
                RelationshipDef::ManyToMany {
                    entity1, entity2, ..
                } => {
                    for e in [entity1, entity2] {
                        if !s.by_name.contains_key(e) {
                            return Err(err(format!(
                                "relationship `{name}`: table `{e}` is not declared"
                            )));
                        }
                    }
                }
                RelationshipDef::OneToMany {
                    referenced_entity,
                    referencing_entity,
                    referencing_attribute,
                    ..
                } => {
                    if !s.by_name.contains_key(referenced_entity) {
                        return Err(err(format!(
                            "relationship `{name}`: table `{referenced_entity}` is not declared"
                        )));
                    }
                    let Some(t) = s.table(referencing_entity) else {
                        return Err(err(format!(
                            "relationship `{name}`: table `{referencing_entity}` is not declared"
                        )));
                    };
                    match t.attribute(referencing_attribute).map(|a| &a.kind) {
                        Some(AttributeKind::Lookup { targets })
                            if targets.contains(referenced_entity) => {}
                        Some(_) => {
                            return Err(err(format!(
                                "relationship `{name}`: attribute `{referencing_attribute}` of table \
                                 `{referencing_entity}` is not a Lookup to `{referenced_entity}`"
                            )));
                        }
                        None => {
                            return Err(err(format!(
                                "relationship `{name}`: table `{referencing_entity}` has no attribute \
                                 `{referencing_attribute}`"
                            )));
                        }
                    }
                }
            }
        }
        Ok(s)
    }

    /// Parses and validates a TOML document with `[[table]]` and `[[relationship]]` entries only.
    /// `origin` names the source (a file path) in error messages.
    pub fn from_toml_str(origin: &str, text: &str) -> Result<Self, SchemaError> {
        let file: SchemaFile = toml::from_str(text).map_err(|e| err(format!("{origin}: {e}")))?;
        Schema::new(file.table, file.relationship).map_err(|e| err(format!("{origin}: {e}")))
    }

    /// The declarations as a TOML document that [`Schema::from_toml_str`] reads back to an equal schema
    /// (platform attributes included).
    pub fn to_toml_string(&self) -> Result<String, SchemaError> {
        let file = SchemaFile {
            table: self.tables.clone(),
            relationship: self.relationships.clone(),
        };
        toml::to_string(&file).map_err(|e| err(format!("cannot write the schema as TOML: {e}")))
    }

    /// All tables, in declaration order.
    pub fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    /// All relationships.
    pub fn relationships(&self) -> &[RelationshipDef] {
        &self.relationships
    }

    /// The table with this logical name.
    pub fn table(&self, logical_name: &str) -> Option<&TableDef> {
        self.by_name.get(logical_name).map(|&i| &self.tables[i])
    }

    /// The table with this entity set name (Web API path segment).
    pub fn table_by_entity_set(&self, entity_set_name: &str) -> Option<&TableDef> {
        self.by_set.get(entity_set_name).map(|&i| &self.tables[i])
    }

    /// The relationship with this schema name.
    pub fn relationship(&self, name: &str) -> Option<&RelationshipDef> {
        self.relationships.iter().find(|r| r.name() == name)
    }

    /// Whether the table was created at runtime (`POST EntityDefinitions`) rather than declared in
    /// `weft.toml`: only such a table may be deleted or given columns through the Web API.
    pub fn is_runtime_table(&self, logical_name: &str) -> bool {
        self.runtime.contains(logical_name)
    }

    /// Whether another table already has `table`'s logical name or entity set name.
    pub fn name_taken(&self, table: &TableDef) -> bool {
        self.table(&table.logical_name).is_some()
            || self.table_by_entity_set(&table.entity_set_name).is_some()
    }

    /// This schema with `table` added as a runtime table, or replacing the runtime table of its name,
    /// validated as a declaration is.
    pub fn with_runtime_table(&self, table: TableDef) -> Result<Schema, SchemaError> {
        let name = table.logical_name.clone();
        if self.table(&name).is_some() && !self.is_runtime_table(&name) {
            return Err(err(format!(
                "table `{name}` is declared in weft.toml and cannot be replaced at runtime"
            )));
        }
        self.rebuilt(&name, Some(table))
    }

    /// This schema without the runtime table `logical_name` (an error when a lookup still targets it).
    pub fn without_runtime_table(&self, logical_name: &str) -> Result<Schema, SchemaError> {
        if !self.is_runtime_table(logical_name) {
            return Err(err(format!(
                "table `{logical_name}` was not created at runtime"
            )));
        }
        self.rebuilt(logical_name, None)
    }

    /// This schema with the table `name` left out and, if given, `add` in its place as a runtime table.
    fn rebuilt(&self, name: &str, add: Option<TableDef>) -> Result<Schema, SchemaError> {
        let mut tables: Vec<TableDef> = self
            .tables
            .iter()
            .filter(|t| t.logical_name != name)
            .cloned()
            .collect();
        let adding = add.is_some();
        tables.extend(add);
        let mut next = Schema::new(tables, self.relationships.clone())?;
        next.runtime = self.runtime.clone();
        if adding {
            next.runtime.insert(name.to_owned());
        } else {
            next.runtime.remove(name);
        }
        Ok(next)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), SchemaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "{what} name `{name}` is invalid: use 1 to 64 lowercase letters, digits or `_`, starting with a letter"
        )))
    }
}

/// What a `[[table.attribute]]` entry may contain before its `type` decides which fields apply; also the
/// shape an [`AttributeDef`] serializes to, so declarations round-trip.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribute {
    logical_name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_value: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_value: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    precision: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<Vec<RawOption>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    value: i32,
    label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<i32>,
}

impl From<AttributeDef> for RawAttribute {
    fn from(a: AttributeDef) -> Self {
        let mut r = RawAttribute {
            logical_name: a.logical_name,
            kind: a.kind.name().to_string(),
            max_length: None,
            min_value: None,
            max_value: None,
            precision: None,
            targets: None,
            options: None,
        };
        let plain = |o: Vec<OptionMeta>| {
            o.into_iter()
                .map(|o| RawOption {
                    value: o.value,
                    label: o.label,
                    state: None,
                })
                .collect()
        };
        match a.kind {
            AttributeKind::String { max_length } | AttributeKind::Memo { max_length } => {
                r.max_length = Some(max_length)
            }
            AttributeKind::Integer {
                min_value,
                max_value,
            } => {
                r.min_value = Some(min_value);
                r.max_value = Some(max_value);
            }
            AttributeKind::Decimal { precision } => r.precision = Some(precision),
            AttributeKind::Lookup { targets } => r.targets = Some(targets),
            AttributeKind::Picklist { options }
            | AttributeKind::MultiSelectPicklist { options }
            | AttributeKind::State { options } => r.options = Some(plain(options)),
            AttributeKind::Status { options } => {
                r.options = Some(
                    options
                        .into_iter()
                        .map(|o| RawOption {
                            value: o.value,
                            label: o.label,
                            state: Some(o.state),
                        })
                        .collect(),
                );
            }
            AttributeKind::BigInt
            | AttributeKind::Double
            | AttributeKind::Money
            | AttributeKind::Boolean
            | AttributeKind::DateTime
            | AttributeKind::Uniqueidentifier => {}
        }
        r
    }
}

impl fmt::Display for RawAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attribute `{}` ({})", self.logical_name, self.kind)
    }
}

impl TryFrom<RawAttribute> for AttributeDef {
    type Error = SchemaError;

    fn try_from(r: RawAttribute) -> Result<Self, SchemaError> {
        let allowed: &[&str] = match r.kind.as_str() {
            "String" | "Memo" => &["max_length"],
            "Integer" => &["min_value", "max_value"],
            "Decimal" => &["precision"],
            "Lookup" => &["targets"],
            "Picklist" | "MultiSelectPicklist" | "State" | "Status" => &["options"],
            "BigInt" | "Double" | "Money" | "Boolean" | "DateTime" | "Uniqueidentifier" => &[],
            other => {
                return Err(err(format!(
                    "attribute `{}`: unknown type `{other}` (expected one of String, Memo, Integer, BigInt, Double, \
                     Decimal, Money, Boolean, DateTime, Uniqueidentifier, Lookup, Picklist, MultiSelectPicklist, \
                     State, Status)",
                    r.logical_name
                )));
            }
        };
        let present = [
            ("max_length", r.max_length.is_some()),
            ("min_value", r.min_value.is_some()),
            ("max_value", r.max_value.is_some()),
            ("precision", r.precision.is_some()),
            ("targets", r.targets.is_some()),
            ("options", r.options.is_some()),
        ];
        for (field, set) in present {
            if set && !allowed.contains(&field) {
                return Err(err(format!(
                    "{r}: `{field}` does not apply to type {}",
                    r.kind
                )));
            }
        }
        let kind = match r.kind.as_str() {
            "String" => AttributeKind::String {
                max_length: r.max_length.unwrap_or(100),
            },
            "Memo" => AttributeKind::Memo {
                max_length: r.max_length.unwrap_or(2000),
            },
            "Integer" => AttributeKind::Integer {
                min_value: r.min_value.unwrap_or(i32::MIN),
                max_value: r.max_value.unwrap_or(i32::MAX),
            },
            "BigInt" => AttributeKind::BigInt,
            "Double" => AttributeKind::Double,
            "Decimal" => AttributeKind::Decimal {
                precision: r.precision.unwrap_or(2),
            },
            "Money" => AttributeKind::Money,
            "Boolean" => AttributeKind::Boolean,
            "DateTime" => AttributeKind::DateTime,
            "Uniqueidentifier" => AttributeKind::Uniqueidentifier,
            "Lookup" => AttributeKind::Lookup {
                targets: r.targets.clone().unwrap_or_default(),
            },
            "Status" => {
                let mut opts = Vec::new();
                for o in r.options.as_deref().unwrap_or_default() {
                    let Some(state) = o.state else {
                        return Err(err(format!(
                            "{r}: option {} needs the `state` it belongs to",
                            o.value
                        )));
                    };
                    opts.push(StatusOption {
                        value: o.value,
                        label: o.label.clone(),
                        state,
                    });
                }
                AttributeKind::Status { options: opts }
            }
            _ => {
                let mut opts = Vec::new();
                for o in r.options.as_deref().unwrap_or_default() {
                    if o.state.is_some() {
                        return Err(err(format!(
                            "{r}: option {}: `state` applies to Status options only",
                            o.value
                        )));
                    }
                    opts.push(OptionMeta {
                        value: o.value,
                        label: o.label.clone(),
                    });
                }
                match r.kind.as_str() {
                    "Picklist" => AttributeKind::Picklist { options: opts },
                    "MultiSelectPicklist" => AttributeKind::MultiSelectPicklist { options: opts },
                    _ => AttributeKind::State { options: opts },
                }
            }
        };
        let def = AttributeDef {
            logical_name: r.logical_name.clone(),
            kind,
        };
        validate_kind(&def)?;
        Ok(def)
    }
}

/// Checks the type-specific constraints of one attribute.
fn validate_kind(a: &AttributeDef) -> Result<(), SchemaError> {
    let n = &a.logical_name;
    let option_values = |values: Vec<i32>| -> Result<(), SchemaError> {
        if values.is_empty() {
            return Err(err(format!(
                "attribute `{n}` ({}): `options` must not be empty",
                a.kind.name()
            )));
        }
        let mut seen = HashSet::new();
        for v in values {
            if !seen.insert(v) {
                return Err(err(format!(
                    "attribute `{n}` ({}): duplicate option value {v}",
                    a.kind.name()
                )));
            }
        }
        Ok(())
    };
    match &a.kind {
        AttributeKind::String { max_length } if !(1..=4000).contains(max_length) => Err(err(
            format!("attribute `{n}` (String): max_length {max_length} is outside 1..=4000"),
        )),
        AttributeKind::Memo { max_length } if !(1..=1_048_576).contains(max_length) => Err(err(
            format!("attribute `{n}` (Memo): max_length {max_length} is outside 1..=1048576"),
        )),
        AttributeKind::Integer {
            min_value,
            max_value,
        } if min_value > max_value => Err(err(format!(
            "attribute `{n}` (Integer): min_value {min_value} is greater than max_value {max_value}"
        ))),
        AttributeKind::Decimal { precision } if *precision > 10 => Err(err(format!(
            "attribute `{n}` (Decimal): precision {precision} is outside 0..=10"
        ))),
        AttributeKind::Lookup { targets } if targets.is_empty() => Err(err(format!(
            "attribute `{n}` (Lookup): `targets` must name at least one table"
        ))),
        AttributeKind::Picklist { options }
        | AttributeKind::MultiSelectPicklist { options }
        | AttributeKind::State { options } => {
            option_values(options.iter().map(|o| o.value).collect())
        }
        AttributeKind::Status { options } => {
            option_values(options.iter().map(|o| o.value).collect())
        }
        _ => Ok(()),
    }
}
