//! The metadata items (tables, columns, option sets, relationships) as Dataverse's Web API returns them:
//! their properties with Dataverse's names and values, their `@odata.type` and their navigation properties
//! (what `$expand` and path segments reach).
//!
//! Owns every metadata property name and value. It must not parse URLs or apply query options (`query`
//! does, over [`Item::properties`] and [`Item::navigation`]).
//!
//! weft declares no display names, descriptions or schema names: `SchemaName` is the logical name and
//! `DisplayName` the logical name in one 1033 (English) label, so clients that show them show something
//! true. Choice labels are the declared ones.

use serde_json::{Map, Value as Json, json};
use weft_store::schema::Ownership;
use weft_store::schema::platform;
use weft_store::{AttributeDef, AttributeKind, KeyDef, Schema, TableDef};

use crate::MessageFilter;
use crate::ids::metadata_id;
use crate::relationships::{self, Rel, lookup_navigation};

/// One metadata item.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    /// A table (`EntityMetadata`).
    Entity(&'a TableDef),
    /// A column (`AttributeMetadata` and its derived types).
    Attribute(&'a TableDef, &'a AttributeDef),
    /// The local option set of a choice, state, status or yes/no column.
    OptionSet(&'a TableDef, &'a AttributeDef),
    /// A relationship.
    Relationship(Rel<'a>),
    /// An alternate key of a table (`EntityKeyMetadata`).
    Key(&'a TableDef, &'a KeyDef),
    /// A message (`sdkmessage`), reached from one of its filters.
    Message(&'a MessageFilter),
    /// A message on a table (`sdkmessagefilter`).
    MessageFilter(&'a MessageFilter),
}

/// What a navigation property leads to.
pub enum Nav<'a> {
    /// A collection.
    Many(Vec<Item<'a>>),
    /// A single item, or null.
    One(Option<Item<'a>>),
}

/// The English label Dataverse wraps every text in (no label when `text` is empty).
pub fn label(text: &str, id_parts: &[&str]) -> Json {
    if text.is_empty() {
        return json!({ "LocalizedLabels": [], "UserLocalizedLabel": null });
    }
    let l = json!({
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": false,
        "MetadataId": metadata_id("label", id_parts),
        "HasChanged": null,
    });
    json!({ "LocalizedLabels": [l.clone()], "UserLocalizedLabel": l })
}

/// The map of a `json!` object literal.
fn object(json: Json) -> Map<String, Json> {
    match json {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

fn managed(value: Json, name: &str) -> Json {
    json!({ "Value": value, "CanBeChanged": false, "ManagedPropertyLogicalName": name })
}

/// `(metadata type name, AttributeType, AttributeTypeName)` of a column.
pub fn attribute_type(attr: &AttributeDef) -> (&'static str, &'static str, &'static str) {
    match &attr.kind {
        AttributeKind::String { .. } => ("StringAttributeMetadata", "String", "StringType"),
        AttributeKind::Memo { .. } => ("MemoAttributeMetadata", "Memo", "MemoType"),
        AttributeKind::Integer { .. } => ("IntegerAttributeMetadata", "Integer", "IntegerType"),
        AttributeKind::BigInt => ("BigIntAttributeMetadata", "BigInt", "BigIntType"),
        AttributeKind::Double => ("DoubleAttributeMetadata", "Double", "DoubleType"),
        AttributeKind::Decimal { .. } => ("DecimalAttributeMetadata", "Decimal", "DecimalType"),
        AttributeKind::Money => ("MoneyAttributeMetadata", "Money", "MoneyType"),
        AttributeKind::Boolean => ("BooleanAttributeMetadata", "Boolean", "BooleanType"),
        AttributeKind::DateTime => ("DateTimeAttributeMetadata", "DateTime", "DateTimeType"),
        AttributeKind::Uniqueidentifier => (
            "UniqueIdentifierAttributeMetadata",
            "Uniqueidentifier",
            "UniqueidentifierType",
        ),
        AttributeKind::Lookup { .. } if attr.logical_name == platform::OWNER_ID => {
            ("LookupAttributeMetadata", "Owner", "OwnerType")
        }
        AttributeKind::Lookup { .. } => ("LookupAttributeMetadata", "Lookup", "LookupType"),
        AttributeKind::Picklist { .. } => ("PicklistAttributeMetadata", "Picklist", "PicklistType"),
        AttributeKind::MultiSelectPicklist { .. } => (
            "MultiSelectPicklistAttributeMetadata",
            "Virtual",
            "MultiSelectPicklistType",
        ),
        AttributeKind::State { .. } => ("StateAttributeMetadata", "State", "StateType"),
        AttributeKind::Status { .. } => ("StatusAttributeMetadata", "Status", "StatusType"),
    }
}

/// Whether a column of this kind derives from `EnumAttributeMetadata` (choices, states, statuses).
pub fn is_enum(kind: &AttributeKind) -> bool {
    matches!(
        kind,
        AttributeKind::Picklist { .. }
            | AttributeKind::MultiSelectPicklist { .. }
            | AttributeKind::State { .. }
            | AttributeKind::Status { .. }
    )
}

impl<'a> Item<'a> {
    /// The item's type name without the namespace, e.g. `EntityMetadata`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Item::Entity(_) => "EntityMetadata",
            Item::Attribute(_, a) => attribute_type(a).0,
            Item::OptionSet(_, a) if matches!(a.kind, AttributeKind::Boolean) => {
                "BooleanOptionSetMetadata"
            }
            Item::OptionSet(..) => "OptionSetMetadata",
            Item::Relationship(Rel::OneToMany { .. }) => "OneToManyRelationshipMetadata",
            Item::Relationship(Rel::ManyToMany { .. }) => "ManyToManyRelationshipMetadata",
            Item::Key(..) => "EntityKeyMetadata",
            Item::Message(_) => "sdkmessage",
            Item::MessageFilter(_) => "sdkmessagefilter",
        }
    }

    /// The property holding the item's id, which every answer carries whatever the `$select`.
    pub fn key_property(&self) -> &'static str {
        match self {
            Item::Message(_) => "sdkmessageid",
            Item::MessageFilter(_) => "sdkmessagefilterid",
            _ => "MetadataId",
        }
    }

    /// Whether this item is of type `name` (its own type or one it derives from).
    pub fn is_a(&self, name: &str) -> bool {
        let base = match self {
            Item::Entity(_) => "",
            Item::Attribute(_, a) if is_enum(&a.kind) => "EnumAttributeMetadata",
            Item::Attribute(..) => "AttributeMetadata",
            Item::OptionSet(..) => "OptionSetMetadataBase",
            Item::Relationship(_) => "RelationshipMetadataBase",
            Item::Key(..) => "MetadataBase",
            Item::Message(_) | Item::MessageFilter(_) => "crmbaseentity",
        };
        name == self.type_name()
            || name == base
            || (name == "AttributeMetadata" && matches!(self, Item::Attribute(..)))
    }

    /// The item's `MetadataId`.
    pub fn metadata_id(&self) -> uuid::Uuid {
        match self {
            Item::Entity(t) => metadata_id("entity", &[&t.logical_name]),
            Item::Attribute(t, a) => metadata_id("attribute", &[&t.logical_name, &a.logical_name]),
            Item::OptionSet(t, a) => metadata_id("optionset", &[&t.logical_name, &a.logical_name]),
            Item::Relationship(r) => metadata_id("relationship", &[r.name()]),
            Item::Key(t, k) => metadata_id("key", &[&t.logical_name, &k.name]),
            Item::Message(f) => f.message_id,
            Item::MessageFilter(f) => f.id,
        }
    }

    /// The item's structural properties (no navigation properties).
    pub fn properties(&self) -> Map<String, Json> {
        let mut m = match self {
            Item::Entity(t) => entity(t),
            Item::Attribute(t, a) => attribute(t, a),
            Item::OptionSet(t, a) => option_set(t, a),
            Item::Relationship(r) => relationship(r),
            Item::Key(t, k) => object(json!({
                "LogicalName": k.name,
                "SchemaName": k.name,
                "EntityLogicalName": t.logical_name,
                "KeyAttributes": k.attributes,
                "EntityKeyIndexStatus": "Active",
                "IsManaged": false,
                "IsCustomizable": managed(json!(true), "iscustomizable"),
                "IntroducedVersion": "1.0",
                "DisplayName": label(&k.name, &["key", &t.logical_name, &k.name, "DisplayName"]),
            })),
            Item::Message(f) => object(json!({ "name": f.message, "isprivate": false })),
            Item::MessageFilter(f) => object(json!({
                "primaryobjecttypecode": f.table,
                "secondaryobjecttypecode": "none",
                "iscustomprocessingstepallowed": true,
                "isvisible": true,
                "_sdkmessageid_value": f.message_id,
            })),
        };
        m.insert(self.key_property().into(), json!(self.metadata_id()));
        m
    }

    /// The navigation property `name`, or None when the type has none of that name.
    pub fn navigation(&self, schema: &'a Schema, name: &str) -> Option<Nav<'a>> {
        match (self, name) {
            (Item::Entity(t), "Attributes") => Some(Nav::Many(
                t.attributes.iter().map(|a| Item::Attribute(t, a)).collect(),
            )),
            (Item::Entity(t), "Keys") => {
                Some(Nav::Many(t.keys.iter().map(|k| Item::Key(t, k)).collect()))
            }
            (Item::Entity(t), "OneToManyRelationships" | "ManyToOneRelationships") => {
                let one_side = name == "OneToManyRelationships";
                let rels = relationships::all(schema).into_iter().filter(|r| {
                    matches!(r, Rel::OneToMany { referenced, referencing, .. }
                        if (if one_side { referenced } else { referencing }).logical_name
                            == t.logical_name)
                });
                Some(Nav::Many(rels.map(Item::Relationship).collect()))
            }
            (Item::Entity(t), "ManyToManyRelationships") => {
                let rels = relationships::all(schema).into_iter().filter(|r| {
                    matches!(r, Rel::ManyToMany { entity1, entity2, .. }
                        if entity1.logical_name == t.logical_name
                            || entity2.logical_name == t.logical_name)
                });
                Some(Nav::Many(rels.map(Item::Relationship).collect()))
            }
            (Item::MessageFilter(f), "sdkmessageid") => Some(Nav::One(Some(Item::Message(f)))),
            (Item::Attribute(t, a), "OptionSet")
                if is_enum(&a.kind) || matches!(a.kind, AttributeKind::Boolean) =>
            {
                Some(Nav::One(Some(Item::OptionSet(t, a))))
            }
            // Every option set is local to its column: none is global.
            (Item::Attribute(_, a), "GlobalOptionSet")
                if is_enum(&a.kind) || matches!(a.kind, AttributeKind::Boolean) =>
            {
                Some(Nav::One(None))
            }
            _ => None,
        }
    }
}

fn entity(t: &TableDef) -> Map<String, Json> {
    let name = &t.logical_name;
    let ownership = match t.ownership {
        Ownership::UserOwned => "UserOwned",
        Ownership::OrganizationOwned => "OrganizationOwned",
    };
    let json = json!({
        "LogicalName": name,
        "SchemaName": name,
        "EntitySetName": t.entity_set_name,
        "LogicalCollectionName": t.entity_set_name,
        "CollectionSchemaName": t.entity_set_name,
        "PrimaryIdAttribute": t.primary_id_attribute,
        "PrimaryNameAttribute": t.primary_name_attribute,
        "PrimaryImageAttribute": null,
        "OwnershipType": ownership,
        "TableType": "Standard",
        "IsCustomEntity": true,
        "IsActivity": false,
        "IsActivityParty": false,
        "IsIntersect": false,
        "IsPrivate": false,
        "IsManaged": false,
        "IsLogicalEntity": false,
        "IsValidForAdvancedFind": true,
        "HasActivities": false,
        "HasNotes": false,
        "ChangeTrackingEnabled": false,
        "IntroducedVersion": "1.0",
        "IsCustomizable": managed(json!(true), "iscustomizable"),
        "DisplayName": label(name, &["entity", name, "DisplayName"]),
        "DisplayCollectionName": label(&t.entity_set_name, &["entity", name, "DisplayCollectionName"]),
        "Description": label("", &[]),
    });
    object(json)
}

fn attribute(t: &TableDef, a: &AttributeDef) -> Map<String, Json> {
    let (type_name, attribute_type, type_value) = attribute_type(a);
    let name = &a.logical_name;
    let is_id = *name == t.primary_id_attribute;
    let platform_attr = is_id
        || [
            platform::CREATED_ON,
            platform::MODIFIED_ON,
            platform::OWNER_ID,
            platform::STATE_CODE,
            platform::STATUS_CODE,
        ]
        .contains(&name.as_str());
    let required = if is_id || name == platform::OWNER_ID {
        "SystemRequired"
    } else if *name == t.primary_name_attribute {
        "ApplicationRequired"
    } else {
        "None"
    };
    let column_number = t
        .attributes
        .iter()
        .position(|x| x.logical_name == *name)
        .map_or(0, |i| i + 1);
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        json!(format!("#{}.{type_name}", crate::NAMESPACE)),
    );
    let common = json!({
        "LogicalName": name,
        "SchemaName": name,
        "EntityLogicalName": t.logical_name,
        "AttributeType": attribute_type,
        "AttributeTypeName": { "Value": type_value },
        "AttributeOf": null,
        "ColumnNumber": column_number,
        "IsPrimaryId": is_id,
        "IsPrimaryName": *name == t.primary_name_attribute,
        "IsCustomAttribute": !platform_attr,
        "IsLogical": false,
        "IsManaged": false,
        "IsValidForCreate": t.is_writable(name),
        "IsValidForUpdate": t.is_writable(name) && !is_id,
        "IsValidForRead": true,
        "IsValidForAdvancedFind": managed(json!(true), "canmodifysearchsettings"),
        "RequiredLevel": managed(json!(required), "canmodifyrequirementlevelsettings"),
        "IntroducedVersion": "1.0",
        "DisplayName": label(name, &["attribute", &t.logical_name, name, "DisplayName"]),
        "Description": label("", &[]),
    });
    m.extend(object(common));
    let specific = match &a.kind {
        AttributeKind::String { max_length } => json!({
            "MaxLength": max_length,
            "DatabaseLength": u64::from(*max_length) * 2,
            "Format": "Text",
            "FormatName": { "Value": "Text" },
        }),
        AttributeKind::Memo { max_length } => json!({
            "MaxLength": max_length,
            "DatabaseLength": u64::from(*max_length) * 2,
            "Format": "TextArea",
            "FormatName": { "Value": "TextArea" },
        }),
        AttributeKind::Integer {
            min_value,
            max_value,
        } => json!({ "MinValue": min_value, "MaxValue": max_value, "Format": "None" }),
        AttributeKind::BigInt => json!({ "MinValue": i64::MIN, "MaxValue": i64::MAX }),
        AttributeKind::Decimal { precision } => json!({ "Precision": precision }),
        AttributeKind::Money => json!({ "Precision": 4, "PrecisionSource": 0 }),
        AttributeKind::Boolean => json!({ "DefaultValue": false }),
        AttributeKind::DateTime => json!({
            "Format": "DateAndTime",
            // Stored and returned in UTC as given: no conversion to a user's time zone.
            "DateTimeBehavior": { "Value": "TimeZoneIndependent" },
        }),
        AttributeKind::Lookup { targets } => json!({ "Targets": targets }),
        AttributeKind::Picklist { .. }
        | AttributeKind::MultiSelectPicklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => json!({ "DefaultFormValue": null }),
        AttributeKind::Double | AttributeKind::Uniqueidentifier => json!({}),
    };
    m.extend(object(specific));
    m
}

fn option(value: i32, text: &str, id_parts: &[&str]) -> Map<String, Json> {
    let json = json!({
        "Value": value,
        "Label": label(text, id_parts),
        "Description": label("", &[]),
        "Color": null,
        "IsManaged": false,
        "ExternalValue": null,
        "ParentValues": [],
        "Tag": null,
        "MetadataId": null,
        "HasChanged": null,
    });
    object(json)
}

fn option_set(t: &TableDef, a: &AttributeDef) -> Map<String, Json> {
    let (table, attr) = (t.logical_name.as_str(), a.logical_name.as_str());
    let plain = |v: i32, text: &str| option(v, text, &["option", table, attr, &v.to_string()]);
    let mut m = Map::new();
    m.insert("Name".into(), json!(format!("{table}_{attr}")));
    m.insert("IsGlobal".into(), json!(false));
    m.insert("IsCustomOptionSet".into(), json!(true));
    m.insert("IsManaged".into(), json!(false));
    m.insert(
        "DisplayName".into(),
        label(attr, &["optionset", table, attr]),
    );
    m.insert("Description".into(), label("", &[]));
    let (kind, options): (&str, Vec<Map<String, Json>>) = match &a.kind {
        AttributeKind::Boolean => {
            m.insert("OptionSetType".into(), json!("Boolean"));
            m.insert("TrueOption".into(), Json::Object(plain(1, "Yes")));
            m.insert("FalseOption".into(), Json::Object(plain(0, "No")));
            return m;
        }
        AttributeKind::Picklist { options } | AttributeKind::MultiSelectPicklist { options } => (
            "Picklist",
            options.iter().map(|o| plain(o.value, &o.label)).collect(),
        ),
        AttributeKind::State { options } => {
            let statuses = t.attributes.iter().find_map(|x| match &x.kind {
                AttributeKind::Status { options } => Some(options),
                _ => None,
            });
            let list = options
                .iter()
                .map(|o| {
                    let mut m = plain(o.value, &o.label);
                    let default_status = statuses
                        .and_then(|s| s.iter().find(|s| s.state == o.value))
                        .map(|s| s.value);
                    m.insert(
                        "@odata.type".into(),
                        json!(format!("#{}.StateOptionMetadata", crate::NAMESPACE)),
                    );
                    m.insert("DefaultStatus".into(), json!(default_status));
                    m.insert("InvariantName".into(), json!(o.label));
                    m
                })
                .collect();
            ("State", list)
        }
        AttributeKind::Status { options } => {
            let list = options
                .iter()
                .map(|o| {
                    let mut m = plain(o.value, &o.label);
                    m.insert(
                        "@odata.type".into(),
                        json!(format!("#{}.StatusOptionMetadata", crate::NAMESPACE)),
                    );
                    m.insert("State".into(), json!(o.state));
                    m.insert("TransitionData".into(), json!(null));
                    m
                })
                .collect();
            ("Status", list)
        }
        _ => ("Picklist", Vec::new()),
    };
    m.insert("OptionSetType".into(), json!(kind));
    m.insert(
        "Options".into(),
        Json::Array(options.into_iter().map(Json::Object).collect()),
    );
    m
}

fn relationship(r: &Rel<'_>) -> Map<String, Json> {
    let json = match r {
        Rel::OneToMany {
            name,
            referenced,
            referencing,
            attribute,
            declared,
        } => json!({
            "@odata.type": format!("#{}.OneToManyRelationshipMetadata", crate::NAMESPACE),
            "SchemaName": name,
            "RelationshipType": "OneToManyRelationship",
            "IsCustomRelationship": declared,
            "IsManaged": false,
            "IsValidForAdvancedFind": true,
            "IsHierarchical": false,
            "SecurityTypes": "None",
            "IntroducedVersion": "1.0",
            "ReferencedEntity": referenced.logical_name,
            "ReferencedAttribute": referenced.primary_id_attribute,
            "ReferencingEntity": referencing.logical_name,
            "ReferencingAttribute": attribute,
            "ReferencedEntityNavigationPropertyName": name,
            "ReferencingEntityNavigationPropertyName":
                lookup_navigation(referencing, attribute, &referenced.logical_name),
            "RelationshipBehavior": if *declared { 1 } else { 0 },
        }),
        Rel::ManyToMany {
            name,
            entity1,
            entity2,
        } => json!({
            "@odata.type": format!("#{}.ManyToManyRelationshipMetadata", crate::NAMESPACE),
            "SchemaName": name,
            "RelationshipType": "ManyToManyRelationship",
            "IsCustomRelationship": true,
            "IsManaged": false,
            "IsValidForAdvancedFind": true,
            "SecurityTypes": "None",
            "IntroducedVersion": "1.0",
            "IntersectEntityName": name,
            "Entity1LogicalName": entity1.logical_name,
            "Entity1IntersectAttribute": entity1.primary_id_attribute,
            "Entity1NavigationPropertyName": name,
            "Entity2LogicalName": entity2.logical_name,
            "Entity2IntersectAttribute": entity2.primary_id_attribute,
            "Entity2NavigationPropertyName": name,
        }),
    };
    object(json)
}
