//! The binary encoder: a RemoteExecutionContext straight to [MC-NBFX] records
//! (names inline, [`super::encode`]).
//!
//! Owns the walk from the model to bytes. Element order, names, `i:type`s and
//! prefixes are those of `infoset::Writer` (the generic walk that text XML and
//! dictionary encoding use); the records are `writer`'s, so the bytes are the
//! same — `direct_writer_matches_the_generic_walk` checks both walks agree on
//! generated contexts. What makes this one fast: the start tags, attributes
//! and namespace declarations that repeat per value (`<a:value i:type="b:int"
//! xmlns:b="…XMLSchema">`, `<a:key>`, collection items, member names) are
//! [`Piece`]s recorded once from `writer`'s own calls, appended with one copy
//! and a prefix letter patched in; no name is measured or looked up per element,
//! and everything goes into one pre-sized `Vec<u8>`.

use super::writer::{BinarySink, Piece};
use crate::infoset::{
    ENTITY_ROLES, ENTITY_STATES, LETTERS, NS_ARRAYS, NS_CONTRACTS, NS_CONTRACTS71, NS_CONTRACTS90,
    NS_GENERIC, NS_SER, NS_XSD, NS_XSI, Sink, enum_name, item_names,
};
use crate::model::*;
use std::sync::OnceLock;
use uuid::Uuid;

/// Declares the member elements written from pieces: `M::Name` indexes
/// `MEMBER_NAMES`, whose text is the element name.
macro_rules! members {
    ($($m:ident),* $(,)?) => {
        #[derive(Clone, Copy)]
        enum M { $($m),* }
        const MEMBER_NAMES: &[&str] = &[$(stringify!($m)),*];
    };
}

members!(
    BusinessUnitId,
    CorrelationId,
    Depth,
    InitiatingUserAgent,
    InitiatingUserAzureActiveDirectoryObjectId,
    InitiatingUserId,
    InputParameters,
    IsExecutingOffline,
    IsInTransaction,
    IsOfflinePlayback,
    IsolationMode,
    MessageName,
    Mode,
    OperationCreatedOn,
    OperationId,
    OrganizationId,
    OrganizationName,
    OutputParameters,
    OwningExtension,
    ParentContext,
    PostEntityImages,
    PreEntityImages,
    PrimaryEntityId,
    PrimaryEntityName,
    RequestId,
    SecondaryEntityName,
    SharedVariables,
    Stage,
    UserAzureActiveDirectoryObjectId,
    UserId,
    Attributes,
    EntityState,
    FormattedValues,
    Id,
    KeyAttributes,
    LogicalName,
    Name,
    RelatedEntities,
    RowVersion,
    Value,
    Entities,
    Entity,
    EntityName,
    EntityReference,
    MinActiveRowVersion,
    MoreRecords,
    PagingCookie,
    TotalRecordCount,
    TotalRecordCountLimitExceeded,
    PrimaryEntityRole,
    SchemaName,
    AttributeLogicalName,
    EntityLogicalName,
    AllColumns,
    Columns,
);

/// The `i:type`s of values (namespace, name); `T_STRING_PAIRS`' name is the
/// generic one computed by `names::generic_name`.
const TYPES: [(&str, &str); 18] = [
    (NS_XSD, "boolean"),
    (NS_XSD, "int"),
    (NS_XSD, "long"),
    (NS_XSD, "double"),
    (NS_XSD, "decimal"),
    (NS_XSD, "string"),
    (NS_XSD, "dateTime"),
    (NS_SER, "guid"),
    (NS_CONTRACTS, "Money"),
    (NS_CONTRACTS, "OptionSetValue"),
    (NS_CONTRACTS90, "OptionSetValueCollection"),
    (NS_CONTRACTS, "EntityReference"),
    (NS_CONTRACTS, "Entity"),
    (NS_CONTRACTS, "EntityCollection"),
    (NS_CONTRACTS, "EntityReferenceCollection"),
    (NS_CONTRACTS, "AliasedValue"),
    (NS_CONTRACTS, "ColumnSet"),
    (NS_CONTRACTS, "Relationship"),
];
const T_BOOLEAN: usize = 0;
const T_INT: usize = 1;
const T_LONG: usize = 2;
const T_DOUBLE: usize = 3;
const T_DECIMAL: usize = 4;
const T_STRING: usize = 5;
const T_DATETIME: usize = 6;
const T_GUID: usize = 7;
const T_MONEY: usize = 8;
const T_OPTION: usize = 9;
const T_OPTIONS: usize = 10;
const T_REFERENCE: usize = 11;
const T_ENTITY: usize = 12;
const T_COLLECTION: usize = 13;
const T_REFERENCES: usize = 14;
const T_ALIASED: usize = 15;
const T_COLUMNS: usize = 16;
const T_RELATIONSHIP: usize = 17;
const T_STRING_PAIRS: usize = 18;

fn type_name(t: usize) -> (&'static str, &'static str) {
    match TYPES.get(t) {
        Some(&pair) => pair,
        None => (NS_GENERIC, item_names().array_of_string_string.as_str()),
    }
}

/// `<a:value i:type="b:T" xmlns:b="…">` recorded with `a` and `b`, and where
/// the type's prefix letter sits in the bytes (in the `i:type` text and in the
/// declaration) so another letter can be patched in.
struct Head {
    piece: Piece,
    qname_letter: usize,
    xmlns_letter: usize,
}

/// Every piece, recorded once per process.
struct Pieces {
    /// `<Member>` start tags, by `M`.
    open: Vec<Piece>,
    /// `<Member i:nil="true"/>`, by `M`.
    nil: Vec<Piece>,
    /// Value start tags by type: `[already bound, declared here]`.
    heads: Vec<[Head; 2]>,
    /// `<a:value i:nil="true"/>`.
    nil_value: Piece,
    /// `<a:key>`.
    key: Piece,
    /// `<a:value>` (image and formatted-value items).
    value: Piece,
    /// `xmlns:a="…"` by namespace id.
    xmlns: Vec<Piece>,
    /// The namespace id of each type in `heads`.
    type_ns: Vec<u8>,
    /// `<KeyValuePairOfstringanyType><a:key>`.
    item_any_key: Piece,
    /// `<a:KeyValuePairOfstringanyType>` (key attributes: the 7.1 prefix).
    item_any_prefixed: Piece,
    /// `<KeyValuePairOfstringstring>`.
    item_string: Piece,
    /// `<KeyValuePairOfstringEntity…>`.
    item_entity: Piece,
    /// `<a:OptionSetValue>`.
    option: Piece,
}

fn pieces() -> &'static Pieces {
    static PIECES: OnceLock<Pieces> = OnceLock::new();
    PIECES.get_or_init(|| {
        let names = item_names();
        let start =
            |prefix: &'static str, local: &'static str| Piece::record(|s| s.start(prefix, local));
        let head = |t: usize, declare: bool| {
            let (ns, name) = type_name(t);
            let (mut qname_letter, mut xmlns_letter) = (0, 0);
            let piece = Piece::record(|s| {
                s.start("a", "value");
                // Attribute record, 4-byte name "type", Chars8Text header.
                qname_letter = s.buf.out.len() + 8;
                if ns == NS_CONTRACTS {
                    s.attr("i", "type", name);
                } else {
                    s.attr("i", "type", &format!("b:{name}"));
                }
                // XmlnsAttribute record, prefix length.
                xmlns_letter = s.buf.out.len() + 2;
                if declare && ns != NS_CONTRACTS {
                    s.xmlns("b", ns);
                }
            });
            debug_assert!(ns == NS_CONTRACTS || piece.bytes[qname_letter] == b'b');
            debug_assert!(!declare || ns == NS_CONTRACTS || piece.bytes[xmlns_letter] == b'b');
            Head {
                piece,
                qname_letter,
                xmlns_letter,
            }
        };
        Pieces {
            open: MEMBER_NAMES.iter().map(|m| start("", m)).collect(),
            nil: MEMBER_NAMES
                .iter()
                .map(|m| {
                    Piece::record(|s| {
                        s.start("", m);
                        s.attr_true("i", "nil");
                        s.end();
                    })
                })
                .collect(),
            heads: (0..=T_STRING_PAIRS)
                .map(|t| [head(t, false), head(t, true)])
                .collect(),
            nil_value: Piece::record(|s| {
                s.start("a", "value");
                s.attr_true("i", "nil");
                s.end();
            }),
            key: start("a", "key"),
            value: start("a", "value"),
            xmlns: NAMESPACES
                .iter()
                .map(|ns| Piece::record(|s| s.xmlns("a", ns)))
                .collect(),
            type_ns: (0..=T_STRING_PAIRS)
                .map(|t| ns_id(type_name(t).0))
                .collect(),
            item_any_key: Piece::record(|s| {
                s.start("", &names.string_any);
                s.start("a", "key");
            }),
            item_any_prefixed: start("a", &names.string_any),
            item_string: start("", &names.string_string),
            item_entity: start("", &names.string_entity),
            option: start("a", "OptionSetValue"),
        }
    })
}

/// Encodes a context with every name inline (what [`super::encode`] returns).
pub(super) fn encode(ctx: &RemoteExecutionContext) -> Vec<u8> {
    let mut w = Writer {
        s: BinarySink::new(false),
        p: pieces(),
        depth: 0,
        bindings: Vec::with_capacity(16),
        version: 1,
        scalar_heads: [(0, 0, false); T_GUID + 1],
    };
    w.start("", "RemoteExecutionContext");
    w.s.xmlns("", NS_CONTRACTS);
    w.s.xmlns("i", NS_XSI);
    w.bindings.push((1, b'i' - b'a', ns_id(NS_XSI)));
    w.context(ctx);
    w.end();
    w.s.buf.out
}

/// The walk: `infoset::Writer`'s, with pieces for the repeated tags.
struct Writer {
    s: BinarySink,
    p: &'static Pieces,
    depth: usize,
    /// Prefix bindings in scope: (element depth, letter index, namespace id
    /// from [`ns_id`]).
    bindings: Vec<(usize, u8, u8)>,
    /// Bumped whenever `bindings` changes.
    version: u32,
    /// Per scalar type: (`version` it was computed at, its prefix letter, whether
    /// it must be declared). Scalar values bind nothing inside themselves, so
    /// within one collection every item gets the same answer.
    scalar_heads: [(u32, u8, bool); T_GUID + 1],
}

/// The namespaces the writer binds, by id; `CONTRACTS` (the default
/// namespace) is never bound.
const NAMESPACES: [&str; 8] = [
    NS_XSI,
    NS_XSD,
    NS_SER,
    NS_GENERIC,
    NS_ARRAYS,
    NS_CONTRACTS71,
    NS_CONTRACTS90,
    NS_CONTRACTS,
];
const CONTRACTS: u8 = 7;

/// A small id per namespace, so binding look-ups compare bytes, not URIs.
/// Every namespace the writer uses is in [`NAMESPACES`].
fn ns_id(ns: &str) -> u8 {
    debug_assert!(NAMESPACES.contains(&ns), "{ns}");
    NAMESPACES
        .iter()
        .position(|n| *n == ns)
        .unwrap_or(usize::from(CONTRACTS)) as u8
}

impl Writer {
    fn start(&mut self, prefix: &str, local: &str) {
        self.depth += 1;
        self.s.start(prefix, local);
    }

    /// A recorded start tag.
    #[inline]
    fn open(&mut self, m: M) {
        self.depth += 1;
        self.s.buf.put(&self.p.open[m as usize]);
    }

    /// A recorded start tag without a prefix.
    #[inline]
    fn open_piece(&mut self, piece: &Piece) {
        self.depth += 1;
        self.s.buf.put(piece);
    }

    /// A recorded start tag `a:…` with prefix letter `letter` instead of `a`.
    #[inline]
    fn open_prefixed(&mut self, piece: &Piece, letter: u8) {
        self.depth += 1;
        let at = self.s.buf.put(piece);
        // The record type is `PrefixElementA + letter`.
        self.s.buf.out[at] += letter;
    }

    #[inline]
    fn end(&mut self) {
        while self.bindings.last().is_some_and(|b| b.0 == self.depth) {
            self.bindings.pop();
            self.version += 1;
        }
        self.depth -= 1;
        self.s.buf.end();
    }

    /// The letter bound to `ns` in scope (`None` for the contracts namespace,
    /// the default one), or a new letter bound here (`true` = declare it).
    fn bind(&mut self, id: u8) -> (Option<u8>, bool) {
        if id == CONTRACTS {
            return (None, false);
        }
        let (letter, new) = self.lookup(id);
        if new {
            self.bindings.push((self.depth, letter, id));
            self.version += 1;
        }
        (Some(letter), new)
    }

    /// The letter bound to namespace `id` in scope (`false`), else the letter
    /// `bind` would bind (`true`).
    fn lookup(&self, id: u8) -> (u8, bool) {
        if let Some(b) = self.bindings.iter().rev().find(|b| b.2 == id) {
            return (b.1, false);
        }
        let free = (0u8..26)
            .find(|l| !self.bindings.iter().any(|b| b.1 == *l))
            .unwrap_or(25);
        (free, true)
    }

    /// `WriteNamespaceDecl`: the letter for `ns`, declared here if new.
    fn declare(&mut self, ns: &'static str) -> u8 {
        let id = ns_id(ns);
        match self.bind(id) {
            (Some(l), new) => {
                if new {
                    // `xmlns:a="…"` recorded; the letter is its third byte.
                    let at = self.s.buf.put(&self.p.xmlns[usize::from(id)]);
                    self.s.buf.out[at + 2] = b'a' + l;
                }
                l
            }
            (None, _) => 0,
        }
    }

    /// A value's start tag with its `i:type` (and the type's declaration).
    fn head(&mut self, prefix: &str, local: &str, t: usize) {
        self.depth += 1;
        match (local, prefix.as_bytes()) {
            ("value", &[g @ b'a'..=b'z']) if t > T_GUID => {
                let id = self.p.type_ns[t];
                let (letter, new) = self.bind(id);
                self.put_head(g - b'a', t, letter, new);
            }
            ("value", &[g @ b'a'..=b'z']) => {
                let (letter, new) = self.scalar_letter(t);
                self.put_head(g - b'a', t, Some(letter), new);
            }
            _ => {
                // AliasedValue's unprefixed `Value`: the general records.
                let (ns, name) = type_name(t);
                self.s.start(prefix, local);
                let (letter, new) = self.bind(self.p.type_ns[t]);
                match letter {
                    Some(l) => {
                        let p = LETTERS[usize::from(l)];
                        self.s.attr("i", "type", &format!("{p}:{name}"));
                        if new {
                            self.s.xmlns(p, ns);
                        }
                    }
                    None => self.s.attr("i", "type", name),
                }
            }
        }
    }

    /// What `bind` would answer for a scalar type's namespace, without
    /// binding: a scalar value's end would drop the binding before anything
    /// used it. Cached per binding state.
    #[inline]
    fn scalar_letter(&mut self, t: usize) -> (u8, bool) {
        let (at, l, new) = self.scalar_heads[t];
        if at == self.version {
            return (l, new);
        }
        let (l, new) = self.lookup(self.p.type_ns[t]);
        self.scalar_heads[t] = (self.version, l, new);
        (l, new)
    }

    /// `<g:value i:type="x:T" [xmlns:x="…"]>` from its piece.
    #[inline]
    fn put_head(&mut self, g: u8, t: usize, letter: Option<u8>, new: bool) {
        let head = &self.p.heads[t][usize::from(new)];
        let at = self.s.buf.put(&head.piece);
        let out = &mut self.s.buf.out;
        out[at] += g;
        if let Some(l) = letter {
            out[at + head.qname_letter] = b'a' + l;
            if new {
                out[at + head.xmlns_letter] = b'a' + l;
            }
        }
    }

    /// A collection item's `<g:value>`: scalars take a short path (their
    /// element binds nothing, so it needs no depth or scope bookkeeping).
    #[inline]
    fn item_value(&mut self, g: u8, v: &Value) {
        let t = match v {
            Value::Boolean(_) => T_BOOLEAN,
            Value::Int(_) => T_INT,
            Value::Long(_) => T_LONG,
            Value::Double(_) => T_DOUBLE,
            Value::Decimal(_) => T_DECIMAL,
            Value::String(_) => T_STRING,
            Value::DateTime(_) => T_DATETIME,
            Value::Guid(_) => T_GUID,
            _ => return self.value(LETTERS[usize::from(g)], "value", v),
        };
        let (letter, new) = self.scalar_letter(t);
        self.put_head(g, t, Some(letter), new);
        match v {
            Value::Boolean(b) => self.s.text_bool(*b),
            Value::Int(i) => self.s.text_int((*i).into()),
            Value::Long(l) => self.s.text_int(*l),
            Value::Double(d) => self.s.text_double(*d),
            Value::Decimal(d) => self.s.text_decimal(d),
            Value::String(s) => self.text(s),
            Value::DateTime(d) => self.s.text_date(d),
            Value::Guid(u) => self.s.buf.guid(u),
            _ => {}
        }
        self.s.buf.end();
    }

    fn text(&mut self, t: &str) {
        if !t.is_empty() {
            self.s.buf.string(t);
        }
    }

    fn leaf(&mut self, m: M, t: &str) {
        self.open(m);
        self.text(t);
        self.end();
    }

    fn nil(&mut self, m: M) {
        self.s.buf.put(&self.p.nil[m as usize]);
    }

    fn opt_leaf(&mut self, m: M, t: Option<&str>) {
        match t {
            Some(t) => self.leaf(m, t),
            None => self.nil(m),
        }
    }

    fn guid_leaf(&mut self, m: M, g: &Uuid) {
        self.open(m);
        self.s.buf.guid(g);
        self.end();
    }

    fn int_leaf(&mut self, m: M, v: i64) {
        self.open(m);
        self.s.text_int(v);
        self.end();
    }

    fn bool_leaf(&mut self, m: M, v: bool) {
        self.open(m);
        self.s.text_bool(v);
        self.end();
    }

    /// `<a:key>k</a:key>` with the Generic letter `g`.
    fn key(&mut self, g: u8, k: &str) {
        let pc = self.p;
        self.open_prefixed(&pc.key, g);
        self.text(k);
        self.end();
    }

    fn context(&mut self, c: &RemoteExecutionContext) {
        self.guid_leaf(M::BusinessUnitId, &c.business_unit_id);
        self.guid_leaf(M::CorrelationId, &c.correlation_id);
        self.int_leaf(M::Depth, c.depth.into());
        if let Some(a) = &c.initiating_user_agent {
            self.leaf(M::InitiatingUserAgent, a);
        }
        if let Some(g) = &c.initiating_user_azure_active_directory_object_id {
            self.guid_leaf(M::InitiatingUserAzureActiveDirectoryObjectId, g);
        }
        self.guid_leaf(M::InitiatingUserId, &c.initiating_user_id);
        self.params(M::InputParameters, &c.input_parameters, false);
        self.bool_leaf(M::IsExecutingOffline, c.is_executing_offline);
        self.bool_leaf(M::IsInTransaction, c.is_in_transaction);
        self.bool_leaf(M::IsOfflinePlayback, c.is_offline_playback);
        self.int_leaf(M::IsolationMode, c.isolation_mode.into());
        self.leaf(M::MessageName, &c.message_name);
        self.int_leaf(M::Mode, c.mode.into());
        self.open(M::OperationCreatedOn);
        self.s.text_date(&c.operation_created_on);
        self.end();
        self.guid_leaf(M::OperationId, &c.operation_id);
        self.guid_leaf(M::OrganizationId, &c.organization_id);
        self.leaf(M::OrganizationName, &c.organization_name);
        self.params(M::OutputParameters, &c.output_parameters, false);
        match &c.owning_extension {
            Some(r) => {
                self.open(M::OwningExtension);
                self.entity_reference_members(r);
                self.end();
            }
            None => self.nil(M::OwningExtension),
        }
        match &c.parent_context {
            Some(p) => {
                self.open(M::ParentContext);
                self.context(p);
                self.end();
            }
            None => self.nil(M::ParentContext),
        }
        self.images(M::PostEntityImages, &c.post_entity_images);
        self.images(M::PreEntityImages, &c.pre_entity_images);
        self.guid_leaf(M::PrimaryEntityId, &c.primary_entity_id);
        self.leaf(M::PrimaryEntityName, &c.primary_entity_name);
        match &c.request_id {
            Some(g) => self.guid_leaf(M::RequestId, g),
            None => self.nil(M::RequestId),
        }
        self.leaf(M::SecondaryEntityName, &c.secondary_entity_name);
        self.params(M::SharedVariables, &c.shared_variables, false);
        self.int_leaf(M::Stage, c.stage.into());
        if let Some(g) = &c.user_azure_active_directory_object_id {
            self.guid_leaf(M::UserAzureActiveDirectoryObjectId, g);
        }
        self.guid_leaf(M::UserId, &c.user_id);
    }

    /// A string→object collection; `keys`: KeyAttributeCollection, whose items
    /// are in the 7.1 namespace (see `infoset::Writer::params`).
    fn params(&mut self, m: M, ps: &[(String, Value)], keys: bool) {
        let pc = self.p;
        self.open(m);
        let item = keys.then(|| self.declare(NS_CONTRACTS71));
        let g = self.declare(NS_GENERIC);
        let key_at = pc.item_any_key.bytes.len() - 5;
        for (k, v) in ps {
            match item {
                None => {
                    // Item and key start tags in one copy.
                    self.depth += 2;
                    let at = self.s.buf.put(&pc.item_any_key) + key_at;
                    self.s.buf.out[at] += g;
                    // `<a:key>` binds nothing: its end needs no scope pop.
                    self.s.buf.text_then_end(k);
                    self.depth -= 1;
                }
                Some(l) => {
                    self.open_prefixed(&pc.item_any_prefixed, l);
                    self.key(g, k);
                }
            }
            self.item_value(g, v);
            self.end();
        }
        self.end();
    }

    fn images(&mut self, m: M, imgs: &[(String, Entity)]) {
        let pc = self.p;
        self.open(m);
        let g = self.declare(NS_GENERIC);
        for (k, e) in imgs {
            self.open_piece(&pc.item_entity);
            self.key(g, k);
            self.open_prefixed(&pc.value, g);
            self.entity_members(e);
            self.end();
            self.end();
        }
        self.end();
    }

    fn value(&mut self, prefix: &'static str, local: &'static str, v: &Value) {
        let pc = self.p;
        if let Value::Null = v {
            if let (&[g @ b'a'..=b'z'], "value") = (prefix.as_bytes(), local) {
                let at = self.s.buf.put(&self.p.nil_value);
                self.s.buf.out[at] += g - b'a';
            } else {
                self.start(prefix, local);
                self.s.attr_true("i", "nil");
                self.end();
            }
            return;
        }
        match v {
            Value::Null => {}
            Value::Boolean(b) => {
                self.head(prefix, local, T_BOOLEAN);
                self.s.text_bool(*b);
            }
            Value::Int(i) => {
                self.head(prefix, local, T_INT);
                self.s.text_int((*i).into());
            }
            Value::Long(l) => {
                self.head(prefix, local, T_LONG);
                self.s.text_int(*l);
            }
            Value::Double(d) => {
                self.head(prefix, local, T_DOUBLE);
                self.s.text_double(*d);
            }
            Value::Decimal(d) => {
                self.head(prefix, local, T_DECIMAL);
                self.s.text_decimal(d);
            }
            Value::String(s) => {
                self.head(prefix, local, T_STRING);
                self.text(s);
            }
            Value::DateTime(d) => {
                self.head(prefix, local, T_DATETIME);
                self.s.text_date(d);
            }
            Value::Guid(g) => {
                self.head(prefix, local, T_GUID);
                self.s.buf.guid(g);
            }
            Value::Money(d) => {
                self.head(prefix, local, T_MONEY);
                self.open(M::Value);
                self.s.text_decimal(d);
                self.end();
            }
            Value::OptionSetValue(o) => {
                self.head(prefix, local, T_OPTION);
                self.int_leaf(M::Value, (*o).into());
            }
            Value::OptionSetValueCollection(os) => {
                self.head(prefix, local, T_OPTIONS);
                let p = self.declare(NS_CONTRACTS90);
                for o in os {
                    self.open_prefixed(&pc.option, p);
                    self.int_leaf(M::Value, (*o).into());
                    self.end();
                }
            }
            Value::EntityReference(r) => {
                self.head(prefix, local, T_REFERENCE);
                self.entity_reference_members(r);
            }
            Value::Entity(e) => {
                self.head(prefix, local, T_ENTITY);
                self.entity_members(e);
            }
            Value::EntityCollection(c) => {
                self.head(prefix, local, T_COLLECTION);
                self.entity_collection_members(c);
            }
            Value::EntityReferenceCollection(rs) => {
                self.head(prefix, local, T_REFERENCES);
                for r in rs {
                    self.open(M::EntityReference);
                    self.entity_reference_members(r);
                    self.end();
                }
            }
            Value::AliasedValue(a) => {
                self.head(prefix, local, T_ALIASED);
                self.opt_leaf(M::AttributeLogicalName, a.attribute_logical_name.as_deref());
                self.opt_leaf(M::EntityLogicalName, a.entity_logical_name.as_deref());
                self.value("", "Value", &a.value);
            }
            Value::ColumnSet(cs) => {
                self.head(prefix, local, T_COLUMNS);
                self.bool_leaf(M::AllColumns, cs.all_columns);
                self.open(M::Columns);
                let p = LETTERS[usize::from(self.declare(NS_ARRAYS))];
                for c in &cs.columns {
                    self.start(p, "string");
                    self.text(c);
                    self.end();
                }
                self.end();
            }
            Value::Relationship(r) => {
                self.head(prefix, local, T_RELATIONSHIP);
                self.relationship_members(r);
            }
            Value::StringPairs(ps) => {
                self.head(prefix, local, T_STRING_PAIRS);
                let g = self.declare(NS_GENERIC);
                let p = LETTERS[usize::from(g)];
                for (k, v) in ps {
                    self.start(p, &item_names().string_string);
                    self.key(g, k);
                    self.open_prefixed(&pc.value, g);
                    self.text(v);
                    self.end();
                    self.end();
                }
            }
        }
        self.end();
    }

    fn entity_members(&mut self, e: &Entity) {
        let pc = self.p;
        self.params(M::Attributes, &e.attributes, false);
        match e.entity_state {
            Some(s) => self.leaf(M::EntityState, &enum_name(s, &ENTITY_STATES)),
            None => self.nil(M::EntityState),
        }
        self.open(M::FormattedValues);
        let g = self.declare(NS_GENERIC);
        for (k, v) in &e.formatted_values {
            self.open_piece(&pc.item_string);
            self.key(g, k);
            self.open_prefixed(&pc.value, g);
            self.text(v);
            self.end();
            self.end();
        }
        self.end();
        self.guid_leaf(M::Id, &e.id);
        self.params(M::KeyAttributes, &e.key_attributes, true);
        self.opt_leaf(M::LogicalName, e.logical_name.as_deref());
        self.open(M::RelatedEntities);
        let g = self.declare(NS_GENERIC);
        let p = LETTERS[usize::from(g)];
        for (r, c) in &e.related_entities {
            self.start("", &item_names().relationship_collection);
            self.start(p, "key");
            self.relationship_members(r);
            self.end();
            self.open_prefixed(&pc.value, g);
            self.entity_collection_members(c);
            self.end();
            self.end();
        }
        self.end();
        self.opt_leaf(M::RowVersion, e.row_version.as_deref());
    }

    fn entity_reference_members(&mut self, r: &EntityReference) {
        self.guid_leaf(M::Id, &r.id);
        self.params(M::KeyAttributes, &r.key_attributes, true);
        self.opt_leaf(M::LogicalName, r.logical_name.as_deref());
        self.opt_leaf(M::Name, r.name.as_deref());
        self.opt_leaf(M::RowVersion, r.row_version.as_deref());
    }

    fn entity_collection_members(&mut self, c: &EntityCollection) {
        self.open(M::Entities);
        for e in &c.entities {
            self.open(M::Entity);
            self.entity_members(e);
            self.end();
        }
        self.end();
        self.opt_leaf(M::EntityName, c.entity_name.as_deref());
        self.opt_leaf(M::MinActiveRowVersion, c.min_active_row_version.as_deref());
        self.bool_leaf(M::MoreRecords, c.more_records);
        self.opt_leaf(M::PagingCookie, c.paging_cookie.as_deref());
        self.int_leaf(M::TotalRecordCount, c.total_record_count.into());
        self.bool_leaf(
            M::TotalRecordCountLimitExceeded,
            c.total_record_count_limit_exceeded,
        );
    }

    fn relationship_members(&mut self, r: &Relationship) {
        match r.primary_entity_role {
            Some(v) => self.leaf(M::PrimaryEntityRole, &enum_name(v, &ENTITY_ROLES)),
            None => self.nil(M::PrimaryEntityRole),
        }
        self.opt_leaf(M::SchemaName, r.schema_name.as_deref());
    }
}
