//! Metadata URLs: `EntityDefinitions`, `EntityDefinitions(LogicalName='account')` or `(<MetadataId>)`,
//! then `/Attributes` (keyed the same way, with an optional type-cast segment such as
//! `/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`), `/Keys`, `/OneToManyRelationships`,
//! `/ManyToOneRelationships`, `/ManyToManyRelationships` (keyed by `SchemaName` or id);
//! `RelationshipDefinitions` (keyed by `SchemaName` or id, with an optional cast); and
//! `GlobalOptionSetDefinitions` (always empty: every option set in weft is local to its column); and the
//! `sdkmessagefilters` / `sdkmessages` rows (by id).
//!
//! Owns the path grammar, the lookups by key and the `@odata.context` of each answer. It must not render
//! items (`items`) nor apply query options (`query`).

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use crate::items::{Item, Nav};
use crate::query::Options;
use crate::relationships;
use crate::{MetadataError, Model, NAMESPACE};

/// The metadata entity sets.
const SETS: &[&str] = &[
    "EntityDefinitions",
    "RelationshipDefinitions",
    "GlobalOptionSetDefinitions",
    "sdkmessagefilters",
    "sdkmessages",
];

/// Whether `rest` (the path after `/api/data/v9.2/`) addresses a metadata set.
pub fn is_metadata_path(rest: &str) -> bool {
    let first = rest.split('/').next().unwrap_or_default();
    let name = first.split('(').next().unwrap_or_default();
    SETS.contains(&name)
}

/// A path segment split into its name and its key, both decoded: `Attributes(LogicalName='x')` →
/// (`Attributes`, Some(`LogicalName='x'`)).
fn segment(raw: &str) -> Result<(String, Option<String>), MetadataError> {
    let text = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| MetadataError::bad(format!("The segment '{raw}' is not UTF-8.")))?
        .into_owned();
    match text.split_once('(') {
        Some((name, rest)) => {
            let key = rest.strip_suffix(')').ok_or_else(|| {
                MetadataError::bad(format!("The segment '{text}' has an unclosed key."))
            })?;
            Ok((name.to_owned(), Some(key.to_owned())))
        }
        None => Ok((text, None)),
    }
}

/// A key: a bare GUID (the `MetadataId`) or `Name='value'` with `name_property` as the only name allowed.
enum Key {
    Id(Uuid),
    Name(String),
}

fn key(text: &str, name_property: &str) -> Result<Key, MetadataError> {
    let text = text.trim();
    if let Ok(id) = Uuid::parse_str(text.strip_prefix("MetadataId=").unwrap_or(text)) {
        return Ok(Key::Id(id));
    }
    let bad = || {
        MetadataError::bad(format!(
            "The key '{text}' is not a MetadataId (a GUID) nor {name_property}='…'."
        ))
    };
    let (name, value) = text.split_once('=').ok_or_else(bad)?;
    if name.trim() != name_property {
        return Err(bad());
    }
    let value = value
        .trim()
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(bad)?;
    Ok(Key::Name(value.replace("''", "'")))
}

/// A row key: a bare GUID.
fn key_id(text: &str) -> Result<Key, MetadataError> {
    Uuid::parse_str(text.trim())
        .map(Key::Id)
        .map_err(|_| MetadataError::bad(format!("The key '{text}' is not a GUID.")))
}

fn find<'a>(
    items: Vec<Item<'a>>,
    key: &Key,
    name_property: &str,
    what: &str,
) -> Result<Item<'a>, MetadataError> {
    items
        .into_iter()
        .find(|i| match key {
            Key::Id(id) => i.metadata_id() == *id,
            Key::Name(n) => i.properties().get(name_property).and_then(Json::as_str) == Some(n),
        })
        .ok_or_else(|| {
            MetadataError::not_found(match key {
                Key::Id(id) => format!("Could not find {what} with id = {id}."),
                Key::Name(n) => format!("Could not find {what} with {name_property} = '{n}'."),
            })
        })
}

/// A type-cast segment `Microsoft.Dynamics.CRM.X` → `X`.
fn cast(segment: &str) -> Result<&str, MetadataError> {
    segment
        .strip_prefix(NAMESPACE)
        .and_then(|s| s.strip_prefix('.'))
        .ok_or_else(|| {
            MetadataError::not_found(format!("Resource not found for the segment '{segment}'."))
        })
}

fn check_cast<'a>(items: Vec<Item<'a>>, to: Option<&str>) -> Result<Vec<Item<'a>>, MetadataError> {
    Ok(match to {
        None => items,
        Some(t) => items.into_iter().filter(|i| i.is_a(t)).collect(),
    })
}

pub fn get(
    model: Model<'_>,
    base: &str,
    rest: &str,
    pairs: &[(String, String)],
) -> Result<Json, MetadataError> {
    let schema = model.schema;
    let options = Options::from_pairs(pairs)?;
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segs = Vec::with_capacity(raw.len());
    for r in &raw {
        segs.push(segment(r)?);
    }
    let unknown =
        |s: &str| MetadataError::not_found(format!("Resource not found for the segment '{s}'."));
    let context = format!("{base}/$metadata#{}", raw.join("/"));
    let (set, set_key) = &segs[0];
    let answer = match (set.as_str(), set_key, &segs[1..]) {
        ("EntityDefinitions", None, []) => {
            let items = schema.tables().iter().map(Item::Entity).collect();
            Answer::Many(items)
        }
        ("EntityDefinitions", Some(k), tail) => {
            let items = schema.tables().iter().map(Item::Entity).collect();
            let entity = find(items, &key(k, "LogicalName")?, "LogicalName", "an entity")?;
            entity_tail(schema, entity, tail)?
        }
        ("RelationshipDefinitions", None, tail) => {
            let to = match tail {
                [] => None,
                [(c, None)] => Some(cast(c)?),
                [(s, _), ..] => return Err(unknown(s)),
            };
            let items = relationships::all(schema)
                .into_iter()
                .map(Item::Relationship)
                .collect();
            Answer::Many(check_cast(items, to)?)
        }
        ("RelationshipDefinitions", Some(k), tail) => {
            let items = relationships::all(schema)
                .into_iter()
                .map(Item::Relationship)
                .collect();
            let one = find(
                items,
                &key(k, "SchemaName")?,
                "SchemaName",
                "a relationship",
            )?;
            match tail {
                [] => Answer::One(one),
                [(c, None)] if one.is_a(cast(c)?) => Answer::One(one),
                [(s, _), ..] => return Err(unknown(s)),
            }
        }
        ("GlobalOptionSetDefinitions", None, []) => Answer::Many(Vec::new()),
        ("GlobalOptionSetDefinitions", Some(k), []) => {
            return Err(MetadataError::not_found(format!(
                "Could not find a global option set with key {k}: weft's option sets are local to their \
                 columns."
            )));
        }
        ("sdkmessagefilters", key, []) => {
            let items = model.filters.iter().map(Item::MessageFilter).collect();
            match key {
                None => Answer::Many(items),
                Some(k) => Answer::One(find(items, &key_id(k)?, "", "an sdkmessagefilter")?),
            }
        }
        ("sdkmessages", key, []) => {
            // One item per message: the first filter of each stands for it.
            let mut items: Vec<Item<'_>> = Vec::new();
            for f in model.filters {
                if !items.iter().any(|i| i.metadata_id() == f.message_id) {
                    items.push(Item::Message(f));
                }
            }
            match key {
                None => Answer::Many(items),
                Some(k) => Answer::One(find(items, &key_id(k)?, "", "an sdkmessage")?),
            }
        }
        (_, _, [(s, _), ..]) => return Err(unknown(s)),
        (s, _, []) => return Err(unknown(s)),
    };
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(context));
    match answer {
        Answer::Many(items) => {
            body.insert(
                "value".into(),
                Json::Array(options.collection(schema, items)?),
            );
        }
        Answer::One(item) => body.extend(options.render(schema, &item)?),
    }
    Ok(Json::Object(body))
}

enum Answer<'a> {
    Many(Vec<Item<'a>>),
    One(Item<'a>),
}

/// What follows `EntityDefinitions(<key>)`.
fn entity_tail<'a>(
    schema: &'a weft_store::Schema,
    entity: Item<'a>,
    tail: &[(String, Option<String>)],
) -> Result<Answer<'a>, MetadataError> {
    let unknown =
        |s: &str| MetadataError::not_found(format!("Resource not found for the segment '{s}'."));
    let Some(((nav, nav_key), rest)) = tail.split_first() else {
        return Ok(Answer::One(entity));
    };
    let Some(Nav::Many(items)) = entity.navigation(schema, nav) else {
        return Err(unknown(nav));
    };
    let (name_property, what) = match nav.as_str() {
        "Attributes" => ("LogicalName", "an attribute"),
        "Keys" => ("LogicalName", "a key"),
        _ => ("SchemaName", "a relationship"),
    };
    match (nav_key, rest) {
        (None, []) => Ok(Answer::Many(items)),
        (None, [(c, None)]) => Ok(Answer::Many(check_cast(items, Some(cast(c)?))?)),
        (Some(k), []) => Ok(Answer::One(find(
            items,
            &key(k, name_property)?,
            name_property,
            what,
        )?)),
        (Some(k), [(c, None)]) => {
            let one = find(items, &key(k, name_property)?, name_property, what)?;
            let to = cast(c)?;
            if one.is_a(to) {
                Ok(Answer::One(one))
            } else {
                Err(MetadataError::bad(format!(
                    "The attribute is a {}, not a {to}.",
                    one.type_name()
                )))
            }
        }
        (_, [(s, _), ..]) => Err(unknown(s)),
    }
}

/// What a metadata write (`POST`/`DELETE`) addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataWrite {
    /// `POST EntityDefinitions`: a new table.
    CreateTable,
    /// `POST EntityDefinitions(<key>)/Attributes`: a new column of this table (logical name).
    AddColumn(String),
    /// `DELETE EntityDefinitions(<key>)`: this table (logical name).
    DeleteTable(String),
}

/// The write `method` (`POST` or `DELETE`) makes on the metadata path `rest`, or why there is none (404 for
/// a table that does not exist, 405 for a path that takes no such write).
pub fn write_target(
    schema: &weft_store::Schema,
    method: &str,
    rest: &str,
) -> Result<MetadataWrite, MetadataError> {
    let mut segs = Vec::new();
    for r in rest.split('/') {
        segs.push(segment(r)?);
    }
    let table = |k: &str| -> Result<String, MetadataError> {
        let key = key(k, "LogicalName")?;
        schema
            .tables()
            .iter()
            .find(|t| match &key {
                Key::Id(id) => crate::metadata_id("entity", &[&t.logical_name]) == *id,
                Key::Name(n) => t.logical_name == *n,
            })
            .map(|t| t.logical_name.clone())
            .ok_or_else(|| {
                MetadataError::not_found(format!("Could not find an entity with key {k}."))
            })
    };
    let segs: Vec<(&str, Option<&str>)> = segs
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_deref()))
        .collect();
    match (method, segs.as_slice()) {
        ("POST", [("EntityDefinitions", None)]) => Ok(MetadataWrite::CreateTable),
        ("POST", [("EntityDefinitions", Some(k)), ("Attributes", None)]) => {
            Ok(MetadataWrite::AddColumn(table(k)?))
        }
        ("DELETE", [("EntityDefinitions", Some(k))]) => Ok(MetadataWrite::DeleteTable(table(k)?)),
        _ => Err(MetadataError {
            status: 405,
            code: crate::BAD_URL,
            message: format!(
                "{method} is not supported on this resource; weft creates tables (POST \
                 EntityDefinitions, or the CreateEntities action), adds columns (POST \
                 EntityDefinitions(<key>)/Attributes) and deletes tables it created (DELETE \
                 EntityDefinitions(<key>))."
            ),
        }),
    }
}
