//! Deep insert: a `POST {set}` whose body nests related records under navigation properties — an object
//! under a single-valued one (`"primarycontactid": {…}`), an array under a collection-valued one
//! (`"contact_customer_accounts": [{…}]`, 1:N or N:N) — creates all of them in one transaction, each a
//! Create through the pipeline (so every row's steps fire), linked as Dataverse links them: a nested
//! single-valued record is created first and bound to its parent's lookup, a 1:N child after its parent
//! with its lookup bound to it, an N:N child after its parent and then associated.
//!
//! Owns the plan (which rows, in which order, with which ids and bindings); the transaction is the
//! pipeline's (or the `$batch` change set's the request belongs to). Every body is checked before anything
//! runs, and values keep their exact text (decimals are never rounded through an f64).

use serde_json::value::RawValue;
use uuid::Uuid;
use weft_store::{EntityRef, Schema, TableDef};

use super::error::ApiError;
use super::json::{self, RawObject};
use super::navigation::{Navigation, resolve};
use crate::pipeline::Message;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 10;
/// Most records one deep insert creates.
pub const MAX_RECORDS: usize = 1_000;

/// Whether `body` nests records under navigation properties of `table` (then it is a deep insert).
pub fn is_deep(schema: &Schema, table: &TableDef, body: &[u8]) -> bool {
    // Every Create asks: a body with no object or array inside its own braces is not parsed again.
    let inner = body.get(1..).unwrap_or_default();
    if !inner.contains(&b'{') && !inner.contains(&b'[') {
        return false;
    }
    let Ok(RawObject(members)) = serde_json::from_slice::<RawObject>(body) else {
        return false;
    };
    members.iter().any(|(k, v)| {
        let t = v.get().trim_start();
        (t.starts_with('{') || t.starts_with('[')) && resolve(schema, table, k).is_some()
    })
}

/// The messages a deep insert runs, in order, and the root record's id.
pub fn plan(
    schema: &Schema,
    table: &TableDef,
    body: &[u8],
) -> Result<(Uuid, Vec<Message>), ApiError> {
    let mut out = Vec::new();
    let mut count = 0;
    let id = record(schema, table, body, None, 0, &mut count, &mut out)?;
    Ok((id, out))
}

/// Plans one record of `table` (and what it nests), appending its messages to `out`; returns its id.
/// `bind` is the lookup binding its parent gives it (a 1:N child).
fn record(
    schema: &Schema,
    table: &TableDef,
    body: &[u8],
    bind: Option<(String, String)>,
    depth: usize,
    count: &mut usize,
    out: &mut Vec<Message>,
) -> Result<Uuid, ApiError> {
    *count += 1;
    if *count > MAX_RECORDS {
        return Err(ApiError::payload(format!(
            "A deep insert creates at most {MAX_RECORDS} records."
        )));
    }
    if depth > MAX_DEPTH {
        return Err(ApiError::payload(format!(
            "A deep insert nests at most {MAX_DEPTH} levels."
        )));
    }
    let RawObject(members) = serde_json::from_slice::<RawObject>(body).map_err(|e| {
        ApiError::payload(format!(
            "A nested {} record is not a JSON object: {e}.",
            table.logical_name
        ))
    })?;
    let id = match members
        .iter()
        .find(|(k, _)| *k == table.primary_id_attribute)
        .map(|(_, v)| serde_json::from_str::<Uuid>(v.get()))
    {
        Some(Ok(id)) => id,
        Some(Err(_)) => {
            return Err(ApiError::payload(format!(
                "'{}' must be a GUID.",
                table.primary_id_attribute
            )));
        }
        None => weft_store::new_id(),
    };
    let url = format!("/{}({id})", table.entity_set_name);
    let mut own: Vec<(String, Box<RawValue>)> = Vec::new();
    // Nested records created after this one: (1:N children, N:N children with their relationship).
    let mut later: Vec<(Navigation<'_>, Vec<Box<RawValue>>)> = Vec::new();
    let mut firsts = Vec::new();
    for (key, value) in members {
        let text = value.get().trim_start();
        let nested = text.starts_with('{') || text.starts_with('[');
        match resolve(schema, table, &key).filter(|_| nested) {
            Some(Navigation::Lookup { attribute, target }) => {
                if !text.starts_with('{') {
                    return Err(ApiError::payload(format!(
                        "'{key}' is single-valued: nest one {} record as an object.",
                        target.logical_name
                    )));
                }
                firsts.push((attribute.to_owned(), target, value));
            }
            Some(nav) => {
                let items: Vec<Box<RawValue>> =
                    serde_json::from_str(value.get()).map_err(|_| {
                        ApiError::payload(format!(
                            "'{key}' is collection-valued: nest its records as an array of objects."
                        ))
                    })?;
                later.push((nav, items));
            }
            None => own.push((key, value)),
        }
    }
    // Single-valued: the related record first, then bound to this one's lookup.
    for (attribute, target, value) in firsts {
        let bind_key = format!("{attribute}@odata.bind");
        if own.iter().any(|(k, _)| *k == bind_key) {
            return Err(ApiError::payload(format!(
                "'{attribute}' is both bound and nested: give one of them."
            )));
        }
        let child = record(
            schema,
            target,
            value.get().as_bytes(),
            None,
            depth + 1,
            count,
            out,
        )?;
        let url = format!("\"/{}({child})\"", target.entity_set_name);
        own.push((bind_key, RawValue::from_string(url).map_err(internal)?));
    }
    if let Some((key, url)) = bind {
        if own.iter().any(|(k, _)| *k == key) {
            return Err(ApiError::payload(format!(
                "A record nested under its parent cannot set '{key}' itself."
            )));
        }
        own.push((
            key,
            RawValue::from_string(serde_json::to_string(&url).map_err(internal)?)
                .map_err(internal)?,
        ));
    }
    let text = json::object_text(own.iter().map(|(k, v)| (k.as_str(), v.get())));
    let target = json::entity_from_body(schema, table, text.as_bytes(), Some(id))?;
    out.push(Message::Create { target });
    for (nav, items) in later {
        match nav {
            Navigation::OneToMany { related, attribute } => {
                for item in items {
                    let bind = (format!("{attribute}@odata.bind"), url.clone());
                    record(
                        schema,
                        related,
                        item.get().as_bytes(),
                        Some(bind),
                        depth + 1,
                        count,
                        out,
                    )?;
                }
            }
            Navigation::ManyToMany {
                relationship,
                related,
            } => {
                let mut linked = Vec::new();
                for item in items {
                    let child = record(
                        schema,
                        related,
                        item.get().as_bytes(),
                        None,
                        depth + 1,
                        count,
                        out,
                    )?;
                    linked.push(EntityRef {
                        logical_name: related.logical_name.clone(),
                        id: child,
                    });
                }
                if !linked.is_empty() {
                    out.push(Message::Associate {
                        target: EntityRef {
                            logical_name: table.logical_name.clone(),
                            id,
                        },
                        relationship: relationship.to_owned(),
                        related: linked,
                    });
                }
            }
            Navigation::Lookup { .. } => {}
        }
    }
    Ok(id)
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::payload(format!("The nested record could not be rebuilt: {e}."))
}
