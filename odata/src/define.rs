//! Table and column definitions from metadata bodies: the `EntityMetadata` of `POST EntityDefinitions` (and
//! the `ComplexEntityMetadata` items of the `CreateEntities` action Microsoft's Python SDK sends), the
//! `AttributeMetadata` of `POST EntityDefinitions(<key>)/Attributes`, read into the store's declarations.
//!
//! Owns which properties are read and what each means: `SchemaName` (the logical name is its lowercase, as
//! Dataverse makes it), `EntitySetName` / `LogicalCollectionName` (else the logical name's English plural),
//! `OwnershipType`, the one `IsPrimaryName` string attribute, and per attribute type its constraints
//! (`MaxLength`, `MinValue`/`MaxValue`, `Precision`, `OptionSet.Options`). Labels, descriptions, required
//! levels and the other presentation properties are accepted and not kept (weft shows logical names). It must
//! not create anything: the host hands the definition to the store, which validates it as a `[[table]]`.

use serde_json::{Map, Value as Json};
use weft_store::schema::{OptionMeta, Ownership};
use weft_store::{AttributeDef, AttributeKind, TableDef};

use crate::{MetadataError, NAMESPACE};

/// Dataverse's code for a request body it cannot use (`0x80048d19`, "Error identified in Payload provided by
/// the user").
pub const BAD_BODY: &str = "0x80048d19";

fn bad(message: impl Into<String>) -> MetadataError {
    MetadataError {
        status: 400,
        code: BAD_BODY,
        message: message.into(),
    }
}

/// The metadata type an object names by `@odata.type` (`#Microsoft.Dynamics.CRM.StringAttributeMetadata` or
/// without `#`), the `Complex` prefix of the CreateEntities action's types removed.
fn odata_type(o: &Map<String, Json>) -> Option<&str> {
    let t = o.get("@odata.type")?.as_str()?;
    let t = t.strip_prefix('#').unwrap_or(t);
    let t = t.strip_prefix(NAMESPACE)?.strip_prefix('.')?;
    Some(t.strip_prefix("Complex").unwrap_or(t))
}

fn object<'a>(v: &'a Json, what: &str) -> Result<&'a Map<String, Json>, MetadataError> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} must be a JSON object.")))
}

/// A logical name from the `SchemaName` property (required).
fn logical_name(o: &Map<String, Json>, what: &str) -> Result<String, MetadataError> {
    match o.get("SchemaName") {
        Some(Json::String(s)) if !s.is_empty() => Ok(s.to_ascii_lowercase()),
        _ => Err(bad(format!("{what}: SchemaName is required."))),
    }
}

fn int(o: &Map<String, Json>, name: &str, what: &str) -> Result<Option<i64>, MetadataError> {
    match o.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| bad(format!("{what}: {name} must be a whole number."))),
    }
}

fn ranged<T: TryFrom<i64>>(
    o: &Map<String, Json>,
    name: &str,
    what: &str,
) -> Result<Option<T>, MetadataError> {
    int(o, name, what)?
        .map(|v| T::try_from(v).map_err(|_| bad(format!("{what}: {name} {v} is out of range."))))
        .transpose()
}

/// The first localized label of a `Label` object.
fn label_text(v: Option<&Json>) -> Option<String> {
    let v = v?;
    v.get("UserLocalizedLabel")
        .and_then(|l| l.get("Label"))
        .or_else(|| v.get("LocalizedLabels")?.get(0)?.get("Label"))
        .and_then(Json::as_str)
        .map(str::to_owned)
}

fn options(o: &Map<String, Json>, what: &str) -> Result<Vec<OptionMeta>, MetadataError> {
    let set = o
        .get("OptionSet")
        .and_then(Json::as_object)
        .ok_or_else(|| bad(format!("{what}: a choice column needs an OptionSet.")))?;
    if set.get("IsGlobal").and_then(Json::as_bool) == Some(true) {
        return Err(bad(format!(
            "{what}: global option sets are not supported; give the column its own Options."
        )));
    }
    let items = set
        .get("Options")
        .and_then(Json::as_array)
        .ok_or_else(|| bad(format!("{what}: OptionSet.Options must be an array.")))?;
    items
        .iter()
        .map(|item| {
            let item = object(item, &format!("{what}: an option"))?;
            let value = ranged::<i32>(item, "Value", what)?
                .ok_or_else(|| bad(format!("{what}: every option needs a Value.")))?;
            let label = label_text(item.get("Label")).unwrap_or_else(|| value.to_string());
            Ok(OptionMeta { value, label })
        })
        .collect()
}

/// A column from an `AttributeMetadata` object, typed by its `@odata.type` (or `AttributeType`).
pub fn attribute_from_json(body: &Json) -> Result<AttributeDef, MetadataError> {
    let o = object(body, "The attribute")?;
    let name = logical_name(o, "The attribute")?;
    let what = format!("Attribute '{name}'");
    let kind_name = odata_type(o)
        .map(|t| t.strip_suffix("AttributeMetadata").unwrap_or(t).to_owned())
        .or_else(|| {
            o.get("AttributeType")
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            bad(format!(
                "{what}: @odata.type must name the attribute's type, e.g. \
                 Microsoft.Dynamics.CRM.StringAttributeMetadata."
            ))
        })?;
    let kind = match kind_name.as_str() {
        "String" => AttributeKind::String {
            max_length: ranged(o, "MaxLength", &what)?.unwrap_or(100),
        },
        "Memo" => AttributeKind::Memo {
            max_length: ranged(o, "MaxLength", &what)?.unwrap_or(2000),
        },
        "Integer" => AttributeKind::Integer {
            min_value: ranged(o, "MinValue", &what)?.unwrap_or(i32::MIN),
            max_value: ranged(o, "MaxValue", &what)?.unwrap_or(i32::MAX),
        },
        "BigInt" => AttributeKind::BigInt,
        "Decimal" => AttributeKind::Decimal {
            precision: ranged(o, "Precision", &what)?.unwrap_or(2),
        },
        "Money" => AttributeKind::Money,
        "Double" => AttributeKind::Double,
        "Boolean" => AttributeKind::Boolean,
        "DateTime" => AttributeKind::DateTime,
        "Picklist" => AttributeKind::Picklist {
            options: options(o, &what)?,
        },
        "MultiSelectPicklist" => AttributeKind::MultiSelectPicklist {
            options: options(o, &what)?,
        },
        "Lookup" => {
            return Err(bad(format!(
                "{what}: a lookup column is created with its relationship \
                 (RelationshipDefinitions), which weft does not support yet; declare it in weft.toml."
            )));
        }
        other => {
            return Err(bad(format!(
                "{what}: the attribute type '{other}' is not supported. weft creates String, Memo, \
                 Integer, BigInt, Decimal, Money, Double, Boolean, DateTime, Picklist and \
                 MultiSelectPicklist columns."
            )));
        }
    };
    Ok(AttributeDef::new(name, kind))
}

/// The English plural Dataverse gives a custom table's entity set (`new_product` → `new_products`,
/// `new_box` → `new_boxes`, `new_category` → `new_categories`).
fn plural(name: &str) -> String {
    let consonant_y = name.ends_with('y')
        && !name
            .chars()
            .rev()
            .nth(1)
            .is_some_and(|c| "aeiou".contains(c));
    if consonant_y {
        format!("{}ies", &name[..name.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        format!("{name}es")
    } else {
        format!("{name}s")
    }
}

/// A table from an `EntityMetadata` (or `ComplexEntityMetadata`) object with its `Attributes`: exactly one
/// of them a string column with `IsPrimaryName` true.
pub fn table_from_json(body: &Json) -> Result<TableDef, MetadataError> {
    let o = object(body, "The entity")?;
    if let Some(t) = odata_type(o)
        && t != "EntityMetadata"
    {
        return Err(bad(format!("@odata.type '{t}' is not an EntityMetadata.")));
    }
    let name = logical_name(o, "The entity")?;
    let what = format!("Entity '{name}'");
    let set = ["EntitySetName", "LogicalCollectionName"]
        .iter()
        .find_map(|p| o.get(*p).and_then(Json::as_str))
        .map_or_else(|| plural(&name), str::to_ascii_lowercase);
    let ownership = match o.get("OwnershipType").and_then(Json::as_str) {
        None | Some("UserOwned") => Ownership::UserOwned,
        Some("OrganizationOwned") => Ownership::OrganizationOwned,
        Some(other) => {
            return Err(bad(format!(
                "{what}: OwnershipType '{other}' is not supported (UserOwned or OrganizationOwned)."
            )));
        }
    };
    if o.get("IsActivity").and_then(Json::as_bool) == Some(true) {
        return Err(bad(format!("{what}: activity tables are not supported.")));
    }
    let items = o
        .get("Attributes")
        .and_then(Json::as_array)
        .ok_or_else(|| {
            bad(format!(
                "{what}: Attributes must list the primary name attribute (a StringAttributeMetadata \
                 with IsPrimaryName true)."
            ))
        })?;
    let mut attributes = Vec::with_capacity(items.len());
    let mut primary = Vec::new();
    for item in items {
        let a = attribute_from_json(item)?;
        if item.get("IsPrimaryName").and_then(Json::as_bool) == Some(true) {
            if !matches!(a.kind, AttributeKind::String { .. }) {
                return Err(bad(format!(
                    "{what}: the primary name attribute '{}' must be a StringAttributeMetadata.",
                    a.logical_name
                )));
            }
            primary.push(a.logical_name.clone());
        }
        attributes.push(a);
    }
    let [primary] = primary.as_slice() else {
        return Err(bad(format!(
            "{what}: exactly one attribute must have IsPrimaryName true (found {}).",
            primary.len()
        )));
    };
    let mut table = TableDef::new(&name, &set, &format!("{name}id"), primary, attributes);
    table.ownership = ownership;
    Ok(table)
}

/// The tables of a `CreateEntities` action body (`{"Entities": [ComplexEntityMetadata, …]}`).
pub fn tables_from_create_entities(body: &Json) -> Result<Vec<TableDef>, MetadataError> {
    let entities = body
        .get("Entities")
        .and_then(Json::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| bad("CreateEntities: Entities must be a non-empty array."))?;
    entities.iter().map(table_from_json).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The body Microsoft's Python SDK 1.1.0 sends for `tables.create("new_Product", {...})`, trimmed of
    /// labels.
    fn sdk_entity() -> Json {
        json!({
            "@odata.type": "Microsoft.Dynamics.CRM.ComplexEntityMetadata",
            "SchemaName": "new_Product",
            "OwnershipType": "UserOwned",
            "HasActivities": false,
            "IsActivity": false,
            "Attributes": [
                {"@odata.type": "Microsoft.Dynamics.CRM.ComplexStringAttributeMetadata",
                 "SchemaName": "new_Name", "MaxLength": 200, "IsPrimaryName": true},
                {"@odata.type": "Microsoft.Dynamics.CRM.ComplexDecimalAttributeMetadata",
                 "SchemaName": "new_Price", "MinValue": -100000000000.0, "MaxValue": 100000000000.0,
                 "Precision": 2},
                {"@odata.type": "Microsoft.Dynamics.CRM.ComplexPicklistAttributeMetadata",
                 "SchemaName": "new_Status", "OptionSet": {"IsGlobal": false, "Options": [
                    {"Value": 1, "Label": {"LocalizedLabels": [{"Label": "Active", "LanguageCode": 1033}]}}
                 ]}}
            ]
        })
    }

    #[test]
    fn the_python_sdks_table_reads_with_names_lowercased_and_a_plural_set() {
        let t = table_from_json(&sdk_entity()).unwrap();
        assert_eq!(t.logical_name, "new_product");
        assert_eq!(t.entity_set_name, "new_products");
        assert_eq!(t.primary_id_attribute, "new_productid");
        assert_eq!(t.primary_name_attribute, "new_name");
        assert_eq!(
            t.attributes[0].kind,
            AttributeKind::String { max_length: 200 }
        );
        assert_eq!(
            t.attributes[1].kind,
            AttributeKind::Decimal { precision: 2 }
        );
        let AttributeKind::Picklist { options } = &t.attributes[2].kind else {
            panic!("{:?}", t.attributes[2]);
        };
        assert_eq!(options[0].label, "Active");
    }

    #[test]
    fn plurals_follow_english_endings() {
        assert_eq!(plural("new_box"), "new_boxes");
        assert_eq!(plural("new_category"), "new_categories");
        assert_eq!(plural("new_day"), "new_days");
        assert_eq!(plural("new_class"), "new_classes");
    }

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let mut no_primary = sdk_entity();
        no_primary["Attributes"][0]["IsPrimaryName"] = json!(false);
        let e = table_from_json(&no_primary).unwrap_err();
        assert_eq!((e.status, e.code), (400, BAD_BODY));
        assert!(e.message.contains("IsPrimaryName"), "{}", e.message);
        let lookup = json!({"@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
                            "SchemaName": "new_ParentId"});
        assert!(
            attribute_from_json(&lookup)
                .unwrap_err()
                .message
                .contains("relationship")
        );
        let file = json!({"@odata.type": "Microsoft.Dynamics.CRM.FileAttributeMetadata",
                          "SchemaName": "new_Doc"});
        assert!(
            attribute_from_json(&file)
                .unwrap_err()
                .message
                .contains("'File'")
        );
        let e = attribute_from_json(&json!({"SchemaName": "x"})).unwrap_err();
        assert!(e.message.contains("@odata.type"), "{}", e.message);
        let e = tables_from_create_entities(&json!({"Entities": []})).unwrap_err();
        assert!(e.message.contains("Entities"), "{}", e.message);
        let e = attribute_from_json(&json!({
            "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata",
            "SchemaName": "new_n", "MinValue": 1.5}))
        .unwrap_err();
        assert!(e.message.contains("MinValue"), "{}", e.message);
    }
}
