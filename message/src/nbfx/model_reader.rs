//! The binary decoder's fast path: [MC-NBFX] records straight into the model.
//!
//! Owns the walk from bytes to a RemoteExecutionContext for [`super::decode`]:
//! it reads records with `events`' primitives (names and chars borrowed from
//! the input, typed records as numbers) but builds no events, no attribute
//! lists and no path; the only allocations are the model's own strings and
//! vectors. It mirrors `infoset::Reader` rule for rule (member names, nil,
//! `i:type` resolution, typed values first, then their text) for the forms
//! writers produce. Anything else — comments, whitespace text, unknown
//! members, text split over records, more than four attributes, any error —
//! makes it give up (`None`), and `decode` runs the event reader, which
//! accepts every record form and words the errors. So it never accepts what
//! the event reader rejects, and where both succeed they agree
//! (`direct_reader_agrees_with_the_event_reader` checks it on mutated input).

use super::events::BinarySource;
use super::events::LETTERS;
use super::{
    CHARS8_TEXT, ELEMENT, END_ELEMENT, PREFIX_ATTRIBUTE_A, QNAME_DICTIONARY_TEXT, SHORT_ATTRIBUTE,
    TRUE_TEXT, XMLNS, ZERO_TEXT,
};
use super::{DICTIONARY_ELEMENT, SHORT_DICTIONARY_ELEMENT, SHORT_ELEMENT};
use crate::infoset::Event;
use crate::infoset::{
    ENTITY_ROLES, ENTITY_STATES, MAX_DEPTH, NS_CONTRACTS, NS_CONTRACTS90, NS_GENERIC, NS_SER,
    NS_XSD, NS_XSI, Scalar, enum_value, parse_xml_date, parse_xml_double,
};
use crate::model::*;
use std::borrow::Cow;
use uuid::Uuid;

/// Decodes `bytes`, or `None` when the event reader must (see the module docs).
pub(super) fn decode(bytes: &[u8], local_offset: i16) -> Option<RemoteExecutionContext> {
    let mut r = Reader {
        src: BinarySource::in_zone(bytes, local_offset),
        depth: 0,
        scopes: Vec::with_capacity(16),
    };
    let root = r.child()??;
    if root.local != b"RemoteExecutionContext" {
        return None;
    }
    let ctx = r.context()?;
    (r.src.pos == bytes.len()).then_some(ctx)
}

type O<T> = Option<T>;

/// What the model reader needs of a start tag.
struct Tag<'a> {
    /// The local name's bytes.
    local: &'a [u8],
    /// `i:nil="true"` (or `"1"`).
    nil: bool,
    /// The value type its `i:type` names (`None`: absent or unknown).
    ty: Option<Ty>,
}

/// An attribute value as read: raw chars (checked as UTF-8 unless a known
/// value matched them) or text from the general record reader.
#[derive(Clone, Default)]
enum AttrValue<'a> {
    #[default]
    Empty,
    Raw(&'a [u8]),
    Text(Cow<'a, str>),
}

impl AttrValue<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            AttrValue::Empty => b"",
            AttrValue::Raw(b) => b,
            AttrValue::Text(t) => t.as_bytes(),
        }
    }
}

/// An element name the caller does not compare is still checked as UTF-8.
fn utf8(name: &[u8]) -> O<()> {
    std::str::from_utf8(name).ok().map(|_| ())
}

/// An element's content.
enum Content<'a> {
    Typed(Scalar),
    Text(Cow<'a, str>),
}

struct Reader<'a> {
    src: BinarySource<'a>,
    depth: usize,
    /// (element depth, prefix, namespace id from [`ns_id`]) declarations in scope.
    scopes: Vec<(usize, &'a [u8], Ns)>,
}

/// The namespaces the model reader tells apart; every other one is `Other`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ns {
    Xsi,
    Xsd,
    Ser,
    Generic,
    Contracts,
    Contracts90,
    Other,
}

/// Classifies a declared namespace once, so look-ups compare ids, not URIs;
/// `None` when it is not UTF-8 (known ones are).
fn ns_id(ns: &[u8]) -> Option<Ns> {
    let known = [
        (NS_XSI, Ns::Xsi),
        (NS_XSD, Ns::Xsd),
        (NS_SER, Ns::Ser),
        (NS_GENERIC, Ns::Generic),
        (NS_CONTRACTS, Ns::Contracts),
        (NS_CONTRACTS90, Ns::Contracts90),
    ];
    match known.iter().find(|(k, _)| k.as_bytes() == ns) {
        Some(&(_, id)) => Some(id),
        None => utf8(ns).map(|()| Ns::Other),
    }
}

/// The value types `infoset::Reader::value` knows, by `i:type`.
#[derive(Clone, Copy)]
enum Ty {
    String,
    Int,
    Long,
    Double,
    Decimal,
    Boolean,
    DateTime,
    Guid,
    Entity,
    EntityReference,
    OptionSetValue,
    Money,
    OptionSetValueCollection,
    EntityReferenceCollection,
    EntityCollection,
    Relationship,
    AliasedValue,
    ColumnSet,
    StringPairs,
}

impl<'a> Reader<'a> {
    fn next_byte(&mut self) -> O<u8> {
        let b = *self.src.b.get(self.src.pos)?;
        self.src.pos += 1;
        Some(b)
    }

    /// Leaves the current element (its end record was read).
    fn close(&mut self) {
        while self.scopes.last().is_some_and(|s| s.0 == self.depth) {
            self.scopes.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }

    /// The namespace bound to `prefix` (`Other` when unbound, which, like
    /// the event reader's `""`, matches nothing known).
    fn resolve(&self, prefix: &[u8]) -> Ns {
        // Prefixes are one letter in practice: compare without a memcmp call.
        let same = |p: &[u8]| match (p, prefix) {
            ([a], [b]) => a == b,
            _ => p == prefix,
        };
        self.scopes
            .iter()
            .rev()
            .find(|s| same(s.1))
            .map_or(Ns::Other, |s| s.2)
    }

    /// `n` bytes of input.
    #[inline]
    fn take(&mut self, n: usize) -> O<&'a [u8]> {
        let at = self.src.pos;
        let bytes = self.src.b.get(at..at.checked_add(n)?)?;
        self.src.pos += n;
        Some(bytes)
    }

    /// A length-prefixed string's bytes, not yet checked to be UTF-8.
    #[inline]
    fn raw(&mut self) -> O<&'a [u8]> {
        let n = match self.src.b.get(self.src.pos) {
            Some(&n) if n < 0x80 => {
                self.src.pos += 1;
                usize::from(n)
            }
            _ => self.src.mb31().ok()? as usize,
        };
        self.take(n)
    }

    /// A length-prefixed UTF-8 string.
    #[inline]
    fn name(&mut self) -> O<&'a str> {
        std::str::from_utf8(self.raw()?).ok()
    }

    /// The next child element, or `Some(None)` at the current element's end.
    /// Its local name stays bytes: callers compare it with known names (which
    /// proves it UTF-8) or check it with [`utf8`].
    fn child(&mut self) -> O<Option<Tag<'a>>> {
        let rt = self.next_byte()?;
        let local: &'a [u8] = match rt {
            END_ELEMENT => {
                self.close();
                return Some(None);
            }
            SHORT_ELEMENT | 0x5E..=0x77 => self.raw()?,
            ELEMENT => {
                self.name()?;
                self.raw()?
            }
            SHORT_DICTIONARY_ELEMENT => self.src.dict().ok()?.as_bytes(),
            DICTIONARY_ELEMENT => {
                self.name()?;
                self.src.dict().ok()?.as_bytes()
            }
            0x44..=0x5D => self.src.dict().ok()?.as_bytes(),
            _ => return None,
        };
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut tag = Tag {
            local,
            nil: false,
            ty: None,
        };
        if !matches!(self.src.b.get(self.src.pos), Some(SHORT_ATTRIBUTE..=0x3F)) {
            return Some(Some(tag));
        }
        // Plain attributes wait until the element's declarations are in scope.
        let mut plain: [(&'a [u8], &'a [u8], AttrValue<'a>); 4] = Default::default();
        let mut n = 0;
        while let Some(&a) = self.src.b.get(self.src.pos) {
            if !(SHORT_ATTRIBUTE..=0x3F).contains(&a) {
                break;
            }
            self.src.pos += 1;
            match a {
                PREFIX_ATTRIBUTE_A..=0x3F => {
                    let prefix = LETTERS[usize::from(a - PREFIX_ATTRIBUTE_A)].as_bytes();
                    let local = self.raw()?;
                    let value = match self.next_byte()? {
                        CHARS8_TEXT => {
                            let n = usize::from(self.next_byte()?);
                            AttrValue::Raw(self.take(n)?)
                        }
                        TRUE_TEXT => AttrValue::Raw(b"true"),
                        vt if (ZERO_TEXT..=QNAME_DICTIONARY_TEXT).contains(&vt) && vt & 1 == 0 => {
                            AttrValue::Text(self.src.text_body(vt).ok()?)
                        }
                        _ => return None,
                    };
                    *plain.get_mut(n)? = (prefix, local, value);
                    n += 1;
                }
                XMLNS => {
                    let prefix = self.name()?.as_bytes();
                    let ns = ns_id(self.raw()?)?;
                    self.scopes.push((self.depth, prefix, ns));
                }
                _ => {
                    let attr = self.src.attribute(a).ok()?;
                    if attr.xmlns {
                        let ns = ns_id(attr.value.as_bytes())?;
                        self.scopes.push((self.depth, attr.local.as_bytes(), ns));
                    } else {
                        *plain.get_mut(n)? = (
                            attr.prefix.as_bytes(),
                            attr.local.as_bytes(),
                            AttrValue::Text(attr.value),
                        );
                        n += 1;
                    }
                }
            }
        }
        let (mut seen_nil, mut seen_type) = (false, false);
        for (prefix, local, value) in plain.into_iter().take(n) {
            let xsi = |r: &Self| r.resolve(prefix) == Ns::Xsi;
            // A name and value that matched known ones are UTF-8; anything
            // else is checked (prefixes were: letters, or read as UTF-8).
            let mut matched = false;
            if !seen_nil && local == b"nil" && xsi(self) {
                seen_nil = true;
                tag.nil = matches!(value.bytes(), b"true" | b"1");
                matched = tag.nil;
            } else if !seen_type && local == b"type" && xsi(self) {
                seen_type = true;
                tag.ty = self.ty(value.bytes());
                matched = tag.ty.is_some();
            }
            if !matched {
                utf8(local)?;
                utf8(value.bytes())?;
            }
        }
        Some(Some(tag))
    }

    /// The element's content through its end: one text record, or none.
    fn content(&mut self) -> O<Content<'a>> {
        let rt = self.next_byte()?;
        let content = match rt {
            END_ELEMENT => {
                self.close();
                return Some(Content::Text(Cow::Borrowed("")));
            }
            CHARS8_TEXT | 0x99 => {
                let n = usize::from(self.next_byte()?);
                Content::Text(Cow::Borrowed(std::str::from_utf8(self.take(n)?).ok()?))
            }
            ZERO_TEXT..=0xBD => match self.src.text_event(rt).ok()? {
                Event::Typed(v) => Content::Typed(v),
                Event::Text(t) => Content::Text(t),
                _ => return None,
            },
            _ => return None,
        };
        if rt & 1 == 0 && self.next_byte()? != END_ELEMENT {
            return None;
        }
        self.close();
        Some(content)
    }

    /// An element that must be empty (a nil one).
    fn empty(&mut self) -> O<()> {
        if self.next_byte()? != END_ELEMENT {
            return None;
        }
        self.close();
        Some(())
    }

    fn text(&mut self) -> O<Cow<'a, str>> {
        Some(match self.content()? {
            Content::Typed(v) => Cow::Owned(v.to_text()),
            Content::Text(t) => t,
        })
    }

    fn string(&mut self) -> O<String> {
        Some(self.text()?.into_owned())
    }

    fn opt_string(&mut self, tag: &Tag<'a>) -> O<Option<String>> {
        self.nil_or(tag, |r| r.string())
    }

    fn nil_or<T>(&mut self, tag: &Tag<'a>, f: impl FnOnce(&mut Self) -> O<T>) -> O<Option<T>> {
        if tag.nil {
            self.empty()?;
            Some(None)
        } else {
            Some(Some(f(self)?))
        }
    }

    /// A typed value `pick` accepts, else the text parsed (as the event reader).
    fn scalar<T>(
        &mut self,
        pick: impl FnOnce(Scalar) -> Option<T>,
        parse: impl Fn(&str) -> Option<T>,
    ) -> O<T> {
        match self.content()? {
            Content::Typed(v) => pick(v).or_else(|| parse(v.to_text().trim())),
            Content::Text(t) => parse(t.trim()),
        }
    }

    fn guid(&mut self) -> O<Uuid> {
        self.scalar(
            |v| match v {
                Scalar::Guid(g) => Some(g),
                _ => None,
            },
            |t| Uuid::try_parse(t).ok(),
        )
    }

    fn long(&mut self) -> O<i64> {
        self.scalar(
            |v| match v {
                Scalar::Int(i) => Some(i),
                _ => None,
            },
            |t| t.parse().ok(),
        )
    }

    fn int(&mut self) -> O<i32> {
        i32::try_from(self.long()?).ok()
    }

    fn boolean(&mut self) -> O<bool> {
        self.scalar(
            |v| match v {
                Scalar::Bool(b) => Some(b),
                _ => None,
            },
            |t| match t {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
        )
    }

    fn double(&mut self) -> O<f64> {
        self.scalar(
            |v| match v {
                Scalar::Double(d) => Some(d),
                Scalar::Int(i) => Some(i as f64),
                _ => None,
            },
            parse_xml_double,
        )
    }

    fn decimal(&mut self) -> O<Decimal> {
        self.scalar(
            |v| match v {
                Scalar::Int(i) => Some(Decimal::from(i)),
                _ => None,
            },
            Decimal::parse,
        )
    }

    fn date(&mut self) -> O<DateTime> {
        self.scalar(
            |v| match v {
                Scalar::Date(d) => Some(d),
                _ => None,
            },
            parse_xml_date,
        )
    }

    fn context(&mut self) -> O<RemoteExecutionContext> {
        let mut c = RemoteExecutionContext::default();
        while let Some(t) = self.child()? {
            match t.local {
                b"BusinessUnitId" => c.business_unit_id = self.guid()?,
                b"CorrelationId" => c.correlation_id = self.guid()?,
                b"Depth" => c.depth = self.int()?,
                b"InitiatingUserAgent" => c.initiating_user_agent = self.opt_string(&t)?,
                b"InitiatingUserAzureActiveDirectoryObjectId" => {
                    c.initiating_user_azure_active_directory_object_id =
                        self.nil_or(&t, |r| r.guid())?
                }
                b"InitiatingUserId" => c.initiating_user_id = self.guid()?,
                b"InputParameters" => c.input_parameters = self.params()?,
                b"IsExecutingOffline" => c.is_executing_offline = self.boolean()?,
                b"IsInTransaction" => c.is_in_transaction = self.boolean()?,
                b"IsOfflinePlayback" => c.is_offline_playback = self.boolean()?,
                b"IsolationMode" => c.isolation_mode = self.int()?,
                b"MessageName" => c.message_name = self.string()?,
                b"Mode" => c.mode = self.int()?,
                b"OperationCreatedOn" => c.operation_created_on = self.date()?,
                b"OperationId" => c.operation_id = self.guid()?,
                b"OrganizationId" => c.organization_id = self.guid()?,
                b"OrganizationName" => c.organization_name = self.string()?,
                b"OutputParameters" => c.output_parameters = self.params()?,
                b"OwningExtension" => {
                    c.owning_extension = self.nil_or(&t, |r| r.entity_reference_members())?
                }
                b"ParentContext" => {
                    c.parent_context = self.nil_or(&t, |r| Some(Box::new(r.context()?)))?
                }
                b"PostEntityImages" => c.post_entity_images = self.images()?,
                b"PreEntityImages" => c.pre_entity_images = self.images()?,
                b"PrimaryEntityId" => c.primary_entity_id = self.guid()?,
                b"PrimaryEntityName" => c.primary_entity_name = self.string()?,
                b"RequestId" => c.request_id = self.nil_or(&t, |r| r.guid())?,
                b"SecondaryEntityName" => c.secondary_entity_name = self.string()?,
                b"SharedVariables" => c.shared_variables = self.params()?,
                b"Stage" => c.stage = self.int()?,
                b"UserAzureActiveDirectoryObjectId" => {
                    c.user_azure_active_directory_object_id = self.nil_or(&t, |r| r.guid())?
                }
                b"UserId" => c.user_id = self.guid()?,
                _ => return None,
            }
        }
        Some(c)
    }

    /// Items with `key` and `value` children (item names are not checked,
    /// as in the event reader).
    fn pairs<K, V>(
        &mut self,
        mut key: impl FnMut(&mut Self, &Tag<'a>) -> O<K>,
        mut value: impl FnMut(&mut Self, &Tag<'a>) -> O<V>,
    ) -> O<Vec<(K, V)>> {
        let mut out = Vec::new();
        while let Some(item) = self.child()? {
            utf8(item.local)?;
            let (mut k, mut v) = (None, None);
            while let Some(t) = self.child()? {
                match t.local {
                    b"key" => k = Some(key(self, &t)?),
                    b"value" => v = Some(value(self, &t)?),
                    _ => return None,
                }
            }
            out.push((k?, v?));
        }
        Some(out)
    }

    fn params(&mut self) -> O<Params> {
        self.pairs(|r, _| r.string(), |r, t| r.value(t))
    }

    fn images(&mut self) -> O<Vec<(String, Entity)>> {
        self.pairs(|r, _| r.string(), |r, _| r.entity_members())
    }

    /// The value type an `i:type` value names (its bytes need no UTF-8
    /// check: a known name and a declared prefix matched them).
    fn ty(&self, qname: &[u8]) -> O<Ty> {
        let (prefix, local) = match qname.iter().position(|&b| b == b':') {
            Some(i) => (&qname[..i], &qname[i + 1..]),
            None => (&b""[..], qname),
        };
        let ns = self.resolve(prefix);
        let (ty, want) = match local {
            b"string" => (Ty::String, Ns::Xsd),
            b"int" => (Ty::Int, Ns::Xsd),
            b"long" => (Ty::Long, Ns::Xsd),
            b"double" => (Ty::Double, Ns::Xsd),
            b"decimal" => (Ty::Decimal, Ns::Xsd),
            b"boolean" => (Ty::Boolean, Ns::Xsd),
            b"dateTime" => (Ty::DateTime, Ns::Xsd),
            b"guid" => (Ty::Guid, Ns::Ser),
            b"Entity" => (Ty::Entity, Ns::Contracts),
            b"EntityReference" => (Ty::EntityReference, Ns::Contracts),
            b"OptionSetValue" => (Ty::OptionSetValue, Ns::Contracts),
            b"Money" => (Ty::Money, Ns::Contracts),
            // Read in the 2011 namespace too (what weft once wrote).
            b"OptionSetValueCollection" if ns == Ns::Contracts => {
                (Ty::OptionSetValueCollection, Ns::Contracts)
            }
            b"OptionSetValueCollection" => (Ty::OptionSetValueCollection, Ns::Contracts90),
            b"EntityReferenceCollection" => (Ty::EntityReferenceCollection, Ns::Contracts),
            b"EntityCollection" => (Ty::EntityCollection, Ns::Contracts),
            b"Relationship" => (Ty::Relationship, Ns::Contracts),
            b"AliasedValue" => (Ty::AliasedValue, Ns::Contracts),
            b"ColumnSet" => (Ty::ColumnSet, Ns::Contracts),
            b"ArrayOfKeyValuePairOfstringstring" => (Ty::StringPairs, Ns::Generic),
            _ => return None,
        };
        (ns == want).then_some(ty)
    }

    fn value(&mut self, tag: &Tag<'a>) -> O<Value> {
        if tag.nil {
            self.empty()?;
            return Some(Value::Null);
        }
        Some(match tag.ty? {
            Ty::String => Value::String(self.string()?),
            Ty::Int => Value::Int(self.int()?),
            Ty::Long => Value::Long(self.long()?),
            Ty::Double => Value::Double(self.double()?),
            Ty::Decimal => Value::Decimal(self.decimal()?),
            Ty::Boolean => Value::Boolean(self.boolean()?),
            Ty::DateTime => Value::DateTime(self.date()?),
            Ty::Guid => Value::Guid(self.guid()?),
            Ty::Entity => Value::Entity(Box::new(self.entity_members()?)),
            Ty::EntityReference => Value::EntityReference(self.entity_reference_members()?),
            Ty::OptionSetValue => Value::OptionSetValue(self.value_child(|r| r.int())?),
            Ty::Money => Value::Money(self.value_child(|r| r.decimal())?),
            Ty::OptionSetValueCollection => {
                let mut v = Vec::new();
                while let Some(item) = self.child()? {
                    utf8(item.local)?;
                    v.push(self.value_child(|r| r.int())?);
                }
                Value::OptionSetValueCollection(v)
            }
            Ty::EntityReferenceCollection => {
                let mut v = Vec::new();
                while let Some(item) = self.child()? {
                    utf8(item.local)?;
                    v.push(self.entity_reference_members()?);
                }
                Value::EntityReferenceCollection(v)
            }
            Ty::EntityCollection => Value::EntityCollection(self.entity_collection_members()?),
            Ty::Relationship => Value::Relationship(self.relationship_members()?),
            Ty::AliasedValue => {
                let mut a = AliasedValue {
                    attribute_logical_name: None,
                    entity_logical_name: None,
                    value: Value::Null,
                };
                while let Some(t) = self.child()? {
                    match t.local {
                        b"AttributeLogicalName" => {
                            a.attribute_logical_name = self.opt_string(&t)?
                        }
                        b"EntityLogicalName" => a.entity_logical_name = self.opt_string(&t)?,
                        b"Value" => a.value = self.value(&t)?,
                        _ => return None,
                    }
                }
                Value::AliasedValue(Box::new(a))
            }
            Ty::ColumnSet => {
                let mut cs = ColumnSet::default();
                while let Some(t) = self.child()? {
                    match t.local {
                        b"AllColumns" => cs.all_columns = self.boolean()?,
                        b"Columns" => {
                            while let Some(item) = self.child()? {
                                utf8(item.local)?;
                                cs.columns.push(self.string()?);
                            }
                        }
                        _ => return None,
                    }
                }
                Value::ColumnSet(cs)
            }
            Ty::StringPairs => {
                Value::StringPairs(self.pairs(|r, _| r.string(), |r, _| r.string())?)
            }
        })
    }

    /// Children of an element with a single `<Value>` child.
    fn value_child<T: Default>(&mut self, f: impl Fn(&mut Self) -> O<T>) -> O<T> {
        let mut v = T::default();
        while let Some(t) = self.child()? {
            if t.local != b"Value" {
                return None;
            }
            v = f(self)?;
        }
        Some(v)
    }

    fn entity_members(&mut self) -> O<Entity> {
        let mut e = Entity::default();
        while let Some(t) = self.child()? {
            match t.local {
                b"Attributes" => e.attributes = self.params()?,
                b"EntityState" => {
                    e.entity_state =
                        self.nil_or(&t, |r| enum_value(r.text()?.trim(), &ENTITY_STATES))?
                }
                b"FormattedValues" => {
                    e.formatted_values = self.pairs(|r, _| r.string(), |r, _| r.string())?
                }
                b"Id" => e.id = self.guid()?,
                b"KeyAttributes" => e.key_attributes = self.params()?,
                b"LogicalName" => e.logical_name = self.opt_string(&t)?,
                b"RelatedEntities" => {
                    e.related_entities = self.pairs(
                        |r, _| r.relationship_members(),
                        |r, _| r.entity_collection_members(),
                    )?
                }
                b"RowVersion" => e.row_version = self.opt_string(&t)?,
                _ => return None,
            }
        }
        Some(e)
    }

    fn entity_reference_members(&mut self) -> O<EntityReference> {
        let mut e = EntityReference::default();
        while let Some(t) = self.child()? {
            match t.local {
                b"Id" => e.id = self.guid()?,
                b"KeyAttributes" => e.key_attributes = self.params()?,
                b"LogicalName" => e.logical_name = self.opt_string(&t)?,
                b"Name" => e.name = self.opt_string(&t)?,
                b"RowVersion" => e.row_version = self.opt_string(&t)?,
                _ => return None,
            }
        }
        Some(e)
    }

    fn entity_collection_members(&mut self) -> O<EntityCollection> {
        let mut c = EntityCollection::default();
        while let Some(t) = self.child()? {
            match t.local {
                b"Entities" => {
                    while let Some(item) = self.child()? {
                        utf8(item.local)?;
                        c.entities.push(self.entity_members()?);
                    }
                }
                b"EntityName" => c.entity_name = self.opt_string(&t)?,
                b"MinActiveRowVersion" => c.min_active_row_version = self.opt_string(&t)?,
                b"MoreRecords" => c.more_records = self.boolean()?,
                b"PagingCookie" => c.paging_cookie = self.opt_string(&t)?,
                b"TotalRecordCount" => c.total_record_count = self.int()?,
                b"TotalRecordCountLimitExceeded" => {
                    c.total_record_count_limit_exceeded = self.boolean()?
                }
                _ => return None,
            }
        }
        Some(c)
    }

    fn relationship_members(&mut self) -> O<Relationship> {
        let mut rel = Relationship::default();
        while let Some(t) = self.child()? {
            match t.local {
                b"PrimaryEntityRole" => {
                    rel.primary_entity_role =
                        self.nil_or(&t, |r| enum_value(r.text()?.trim(), &ENTITY_ROLES))?
                }
                b"SchemaName" => rel.schema_name = self.opt_string(&t)?,
                _ => return None,
            }
        }
        Some(rel)
    }
}
