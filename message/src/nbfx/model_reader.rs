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
use super::{DICTIONARY_ELEMENT, SHORT_DICTIONARY_ELEMENT, SHORT_ELEMENT};
use super::{ELEMENT, END_ELEMENT, SHORT_ATTRIBUTE, ZERO_TEXT};
use crate::infoset::{Attr, Event};
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
    if root.local != "RemoteExecutionContext" {
        return None;
    }
    let ctx = r.context()?;
    (r.src.pos == bytes.len()).then_some(ctx)
}

type O<T> = Option<T>;

/// What the model reader needs of a start tag.
struct Tag<'a> {
    local: &'a str,
    /// `i:nil="true"` (or `"1"`).
    nil: bool,
    /// The `i:type` value.
    ty: Option<Cow<'a, str>>,
}

/// An element's content.
enum Content<'a> {
    Typed(Scalar),
    Text(Cow<'a, str>),
}

struct Reader<'a> {
    src: BinarySource<'a>,
    depth: usize,
    /// (element depth, prefix, namespace) declarations in scope.
    scopes: Vec<(usize, &'a str, Cow<'a, str>)>,
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

    fn resolve(&self, prefix: &str) -> Option<&str> {
        self.scopes
            .iter()
            .rev()
            .find(|s| s.1 == prefix)
            .map(|s| s.2.as_ref())
    }

    /// The next child element, or `Some(None)` at the current element's end.
    fn child(&mut self) -> O<Option<Tag<'a>>> {
        let rt = self.next_byte()?;
        let s = &mut self.src;
        let local = match rt {
            END_ELEMENT => {
                self.close();
                return Some(None);
            }
            SHORT_ELEMENT => s.string().ok()?,
            ELEMENT => {
                s.string().ok()?;
                s.string().ok()?
            }
            SHORT_DICTIONARY_ELEMENT => s.dict().ok()?,
            DICTIONARY_ELEMENT => {
                s.string().ok()?;
                s.dict().ok()?
            }
            0x44..=0x5D => s.dict().ok()?,
            0x5E..=0x77 => s.string().ok()?,
            _ => return None,
        };
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        // Plain attributes wait until the element's declarations are in scope.
        let mut attrs: [Option<Attr<'a>>; 4] = [None, None, None, None];
        let mut n = 0;
        while let Some(&a) = self.src.b.get(self.src.pos) {
            if !(SHORT_ATTRIBUTE..=0x3F).contains(&a) {
                break;
            }
            self.src.pos += 1;
            let attr = self.src.attribute(a).ok()?;
            if attr.xmlns {
                self.scopes.push((self.depth, attr.local, attr.value));
            } else {
                *attrs.get_mut(n)? = Some(attr);
                n += 1;
            }
        }
        let mut tag = Tag {
            local,
            nil: false,
            ty: None,
        };
        let (mut seen_nil, mut seen_type) = (false, false);
        for a in attrs.into_iter().flatten() {
            let xsi = || self.resolve(a.prefix) == Some(NS_XSI);
            if !seen_nil && a.local == "nil" && xsi() {
                seen_nil = true;
                tag.nil = matches!(a.value.as_ref(), "true" | "1");
            } else if !seen_type && a.local == "type" && xsi() {
                seen_type = true;
                tag.ty = Some(a.value);
            }
        }
        Some(Some(tag))
    }

    /// The element's content through its end: one text record, or none.
    fn content(&mut self) -> O<Content<'a>> {
        let rt = self.next_byte()?;
        if rt == END_ELEMENT {
            self.close();
            return Some(Content::Text(Cow::Borrowed("")));
        }
        if !(ZERO_TEXT..=0xBD).contains(&rt) {
            return None;
        }
        let content = match self.src.text_event(rt).ok()? {
            Event::Typed(v) => Content::Typed(v),
            Event::Text(t) => Content::Text(t),
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
                "BusinessUnitId" => c.business_unit_id = self.guid()?,
                "CorrelationId" => c.correlation_id = self.guid()?,
                "Depth" => c.depth = self.int()?,
                "InitiatingUserAgent" => c.initiating_user_agent = self.opt_string(&t)?,
                "InitiatingUserAzureActiveDirectoryObjectId" => {
                    c.initiating_user_azure_active_directory_object_id =
                        self.nil_or(&t, |r| r.guid())?
                }
                "InitiatingUserId" => c.initiating_user_id = self.guid()?,
                "InputParameters" => c.input_parameters = self.params()?,
                "IsExecutingOffline" => c.is_executing_offline = self.boolean()?,
                "IsInTransaction" => c.is_in_transaction = self.boolean()?,
                "IsOfflinePlayback" => c.is_offline_playback = self.boolean()?,
                "IsolationMode" => c.isolation_mode = self.int()?,
                "MessageName" => c.message_name = self.string()?,
                "Mode" => c.mode = self.int()?,
                "OperationCreatedOn" => c.operation_created_on = self.date()?,
                "OperationId" => c.operation_id = self.guid()?,
                "OrganizationId" => c.organization_id = self.guid()?,
                "OrganizationName" => c.organization_name = self.string()?,
                "OutputParameters" => c.output_parameters = self.params()?,
                "OwningExtension" => {
                    c.owning_extension = self.nil_or(&t, |r| r.entity_reference_members())?
                }
                "ParentContext" => {
                    c.parent_context = self.nil_or(&t, |r| Some(Box::new(r.context()?)))?
                }
                "PostEntityImages" => c.post_entity_images = self.images()?,
                "PreEntityImages" => c.pre_entity_images = self.images()?,
                "PrimaryEntityId" => c.primary_entity_id = self.guid()?,
                "PrimaryEntityName" => c.primary_entity_name = self.string()?,
                "RequestId" => c.request_id = self.nil_or(&t, |r| r.guid())?,
                "SecondaryEntityName" => c.secondary_entity_name = self.string()?,
                "SharedVariables" => c.shared_variables = self.params()?,
                "Stage" => c.stage = self.int()?,
                "UserAzureActiveDirectoryObjectId" => {
                    c.user_azure_active_directory_object_id = self.nil_or(&t, |r| r.guid())?
                }
                "UserId" => c.user_id = self.guid()?,
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
        while self.child()?.is_some() {
            let (mut k, mut v) = (None, None);
            while let Some(t) = self.child()? {
                match t.local {
                    "key" => k = Some(key(self, &t)?),
                    "value" => v = Some(value(self, &t)?),
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

    /// The value type named by the tag's `i:type`.
    fn ty(&self, tag: &Tag<'a>) -> O<Ty> {
        let qname = tag.ty.as_deref()?;
        let (prefix, local) = qname.split_once(':').unwrap_or(("", qname));
        Some(match (self.resolve(prefix).unwrap_or(""), local) {
            (NS_XSD, "string") => Ty::String,
            (NS_XSD, "int") => Ty::Int,
            (NS_XSD, "long") => Ty::Long,
            (NS_XSD, "double") => Ty::Double,
            (NS_XSD, "decimal") => Ty::Decimal,
            (NS_XSD, "boolean") => Ty::Boolean,
            (NS_XSD, "dateTime") => Ty::DateTime,
            (NS_SER, "guid") => Ty::Guid,
            (NS_CONTRACTS, "Entity") => Ty::Entity,
            (NS_CONTRACTS, "EntityReference") => Ty::EntityReference,
            (NS_CONTRACTS, "OptionSetValue") => Ty::OptionSetValue,
            (NS_CONTRACTS, "Money") => Ty::Money,
            (NS_CONTRACTS90 | NS_CONTRACTS, "OptionSetValueCollection") => {
                Ty::OptionSetValueCollection
            }
            (NS_CONTRACTS, "EntityReferenceCollection") => Ty::EntityReferenceCollection,
            (NS_CONTRACTS, "EntityCollection") => Ty::EntityCollection,
            (NS_CONTRACTS, "Relationship") => Ty::Relationship,
            (NS_CONTRACTS, "AliasedValue") => Ty::AliasedValue,
            (NS_CONTRACTS, "ColumnSet") => Ty::ColumnSet,
            (NS_GENERIC, "ArrayOfKeyValuePairOfstringstring") => Ty::StringPairs,
            _ => return None,
        })
    }

    fn value(&mut self, tag: &Tag<'a>) -> O<Value> {
        if tag.nil {
            self.empty()?;
            return Some(Value::Null);
        }
        Some(match self.ty(tag)? {
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
                while self.child()?.is_some() {
                    v.push(self.value_child(|r| r.int())?);
                }
                Value::OptionSetValueCollection(v)
            }
            Ty::EntityReferenceCollection => {
                let mut v = Vec::new();
                while self.child()?.is_some() {
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
                        "AttributeLogicalName" => a.attribute_logical_name = self.opt_string(&t)?,
                        "EntityLogicalName" => a.entity_logical_name = self.opt_string(&t)?,
                        "Value" => a.value = self.value(&t)?,
                        _ => return None,
                    }
                }
                Value::AliasedValue(Box::new(a))
            }
            Ty::ColumnSet => {
                let mut cs = ColumnSet::default();
                while let Some(t) = self.child()? {
                    match t.local {
                        "AllColumns" => cs.all_columns = self.boolean()?,
                        "Columns" => {
                            while self.child()?.is_some() {
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
            if t.local != "Value" {
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
                "Attributes" => e.attributes = self.params()?,
                "EntityState" => {
                    e.entity_state =
                        self.nil_or(&t, |r| enum_value(r.text()?.trim(), &ENTITY_STATES))?
                }
                "FormattedValues" => {
                    e.formatted_values = self.pairs(|r, _| r.string(), |r, _| r.string())?
                }
                "Id" => e.id = self.guid()?,
                "KeyAttributes" => e.key_attributes = self.params()?,
                "LogicalName" => e.logical_name = self.opt_string(&t)?,
                "RelatedEntities" => {
                    e.related_entities = self.pairs(
                        |r, _| r.relationship_members(),
                        |r, _| r.entity_collection_members(),
                    )?
                }
                "RowVersion" => e.row_version = self.opt_string(&t)?,
                _ => return None,
            }
        }
        Some(e)
    }

    fn entity_reference_members(&mut self) -> O<EntityReference> {
        let mut e = EntityReference::default();
        while let Some(t) = self.child()? {
            match t.local {
                "Id" => e.id = self.guid()?,
                "KeyAttributes" => e.key_attributes = self.params()?,
                "LogicalName" => e.logical_name = self.opt_string(&t)?,
                "Name" => e.name = self.opt_string(&t)?,
                "RowVersion" => e.row_version = self.opt_string(&t)?,
                _ => return None,
            }
        }
        Some(e)
    }

    fn entity_collection_members(&mut self) -> O<EntityCollection> {
        let mut c = EntityCollection::default();
        while let Some(t) = self.child()? {
            match t.local {
                "Entities" => {
                    while self.child()?.is_some() {
                        c.entities.push(self.entity_members()?);
                    }
                }
                "EntityName" => c.entity_name = self.opt_string(&t)?,
                "MinActiveRowVersion" => c.min_active_row_version = self.opt_string(&t)?,
                "MoreRecords" => c.more_records = self.boolean()?,
                "PagingCookie" => c.paging_cookie = self.opt_string(&t)?,
                "TotalRecordCount" => c.total_record_count = self.int()?,
                "TotalRecordCountLimitExceeded" => {
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
                "PrimaryEntityRole" => {
                    rel.primary_entity_role =
                        self.nil_or(&t, |r| enum_value(r.text()?.trim(), &ENTITY_ROLES))?
                }
                "SchemaName" => rel.schema_name = self.opt_string(&t)?,
                _ => return None,
            }
        }
        Some(rel)
    }
}
