//! What a record's URL can address beyond the record: one property (`accounts(id)/name`: GET, PUT,
//! DELETE) and a navigation property's references (`…/primarycontactid/$ref`,
//! `…/contact_customer_accounts/$ref`, `…/nn_relationship(<id>)/$ref`), as the Dataverse Web API defines
//! them, and the resolution of navigation property names shared with `$expand`.
//!
//! Owns these URL forms and what they turn into: an Update for a property and for the lookup behind a
//! single-valued navigation property or a 1:N collection (Dataverse fires Associate only for N:N), an
//! Associate/Disassociate for N:N. It must not write rows itself: every write is a pipeline operation, so
//! the steps registered on Update, Associate and Disassociate fire.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;
use uuid::Uuid;
use weft_store::{AttributeKind, EntityRef, Schema, TableDef};

use super::error::ApiError;
use super::{Call, Message, OrganizationResponse, json, unexpected};

/// What a navigation property of a table leads to.
#[derive(Debug, Clone, Copy)]
pub enum Navigation<'s> {
    /// Single-valued: the table's lookup `attribute`, towards `target`.
    Lookup {
        /// The lookup attribute.
        attribute: &'s str,
        /// The related table.
        target: &'s TableDef,
    },
    /// Collection-valued over a 1:N relationship whose "one" side is the table: the related rows'
    /// lookup `attribute` points at it.
    OneToMany {
        /// The "many" side.
        related: &'s TableDef,
        /// Its lookup.
        attribute: &'s str,
    },
    /// Collection-valued over an N:N relationship.
    ManyToMany {
        /// The relationship's schema name.
        relationship: &'s str,
        /// The other table.
        related: &'s TableDef,
    },
}

/// The navigation property `nav` of `table`: a lookup (its name, or `{lookup}_{target}` for several
/// targets, as `@odata.bind` writes it) or a relationship's schema name. None when it is neither, or
/// leads to a table this weft does not hold (`systemuser`, `team`).
pub fn resolve<'s>(schema: &'s Schema, table: &TableDef, nav: &str) -> Option<Navigation<'s>> {
    for a in &schema.table(&table.logical_name)?.attributes {
        let AttributeKind::Lookup { targets } = &a.kind else {
            continue;
        };
        let target = if targets.len() == 1 && a.logical_name == nav {
            Some(&targets[0])
        } else {
            let target_part = nav
                .strip_prefix(a.logical_name.as_str())
                .and_then(|r| r.strip_prefix('_'));
            targets.iter().find(|t| target_part == Some(t.as_str()))
        };
        if let Some(t) = target {
            return schema.table(t).map(|target| Navigation::Lookup {
                attribute: &a.logical_name,
                target,
            });
        }
    }
    weft_odata::relationships::all(schema)
        .into_iter()
        .find(|r| r.name() == nav)
        .and_then(|r| match r {
            weft_odata::relationships::Rel::OneToMany {
                referenced,
                referencing,
                attribute,
                ..
            } if referenced.logical_name == table.logical_name => Some(Navigation::OneToMany {
                related: referencing,
                attribute,
            }),
            weft_odata::relationships::Rel::ManyToMany {
                name,
                entity1,
                entity2,
            } if entity1.logical_name == table.logical_name
                || entity2.logical_name == table.logical_name =>
            {
                let related = if entity1.logical_name == table.logical_name {
                    entity2
                } else {
                    entity1
                };
                Some(Navigation::ManyToMany {
                    relationship: name,
                    related,
                })
            }
            _ => None,
        })
}

impl Call {
    /// `GET/PUT/DELETE {set}(id)/{property}`: one attribute read (`{"value": …}`, 204 when null), set
    /// (`{"value": …}`) or cleared, each write an Update with that attribute only.
    pub(super) async fn single_property(
        &self,
        id: Uuid,
        property: &str,
        method: Method,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let schema = &self.state.runtime.schema();
        let attribute = self.table.attribute(property).filter(|a| {
            a.logical_name != self.table.primary_id_attribute
                && !matches!(a.kind, AttributeKind::Lookup { .. })
        });
        let Some(attribute) = attribute else {
            if method == Method::GET && resolve(schema, &self.table, property).is_some() {
                return self.navigation_read(id, property).await;
            }
            return Err(self.not_a_property(schema, property));
        };
        let name = attribute.logical_name.clone();
        match method {
            Method::GET => {
                let message = Message::Retrieve {
                    table: self.table.logical_name.clone(),
                    id,
                    columns: Some(vec![name.clone()]),
                };
                let response = self.execute(self.request(message, None)?).await?;
                let OrganizationResponse::Retrieve { entity } = response else {
                    return Err(unexpected(&response));
                };
                let value = entity.attributes.iter().find(|a| a.name == name);
                match value.map(|a| &a.value) {
                    None | Some(crate::sandbox::wit::types::Value::Null) => {
                        Ok(StatusCode::NO_CONTENT.into_response())
                    }
                    Some(v) => {
                        let context = format!(
                            "{}/$metadata#{}({id})/{name}",
                            self.base, self.table.entity_set_name
                        );
                        let body = format!(
                            "{{\"@odata.context\":{},\"value\":{}}}",
                            Json::String(context),
                            json::value_to_json(v)
                        );
                        Ok(super::json_response(StatusCode::OK, body))
                    }
                }
            }
            Method::PUT => {
                let value: Json = serde_json::from_slice::<serde_json::Map<String, Json>>(body)
                    .ok()
                    .and_then(|mut m| m.remove("value"))
                    .ok_or_else(|| {
                        ApiError::payload(format!(
                            "A PUT of '{name}' takes {{\"value\": …}} with the new value."
                        ))
                    })?;
                self.update_attributes(id, serde_json::json!({ name: value }))
                    .await
            }
            Method::DELETE => {
                self.update_attributes(id, serde_json::json!({ name: Json::Null }))
                    .await
            }
            m => Err(method_not_allowed(&m, "a property", "GET, PUT, DELETE")),
        }
    }

    /// `{set}(id)/{nav}/$ref` and `{set}(id)/{nav}(<related id>)/$ref`: PUT/DELETE a single-valued
    /// navigation property's reference, POST/DELETE a collection-valued one's.
    pub(super) async fn reference(
        &self,
        id: Uuid,
        nav_segment: &str,
        method: Method,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let schema = &self.state.runtime.schema();
        let (nav, keyed) = match json::parse_key_segment(nav_segment) {
            Some((n, k)) => (n, k),
            None => (nav_segment, None),
        };
        let Some(navigation) = resolve(schema, &self.table, nav) else {
            return Err(self.not_a_property(schema, nav));
        };
        // DELETE of a collection's reference names the related row in the key or in `$id`.
        let related_id = async |related: &TableDef| -> Result<Uuid, ApiError> {
            if let Some(k) = keyed {
                return Ok(k);
            }
            let Some((_, url)) = self.pairs.iter().find(|(k, _)| k == "$id") else {
                return Err(ApiError::url(format!(
                    "Name the {} row to remove: {nav}(<GUID>)/$ref, or /$ref?$id=<its URL>.",
                    related.logical_name
                )));
            };
            self.referenced_id(schema, related, url, "$id").await
        };
        match (navigation, method) {
            (Navigation::Lookup { attribute, target }, Method::PUT) if keyed.is_none() => {
                let other = self
                    .referenced_id(schema, target, &odata_id(body)?, "@odata.id")
                    .await?;
                let value = entity_reference_json(target, other);
                self.update_attributes(id, lookup_body(attribute, value))
                    .await
            }
            (Navigation::Lookup { attribute, .. }, Method::DELETE) if keyed.is_none() => {
                self.update_attributes(id, lookup_body(attribute, Json::Null))
                    .await
            }
            (Navigation::OneToMany { related, attribute }, Method::POST) if keyed.is_none() => {
                let other = self
                    .referenced_id(schema, related, &odata_id(body)?, "@odata.id")
                    .await?;
                let value = entity_reference_json(&self.table, id);
                self.update_other(related, other, lookup_body(attribute, value))
                    .await
            }
            (Navigation::OneToMany { related, attribute }, Method::DELETE) => {
                let other = related_id(related).await?;
                self.update_other(related, other, lookup_body(attribute, Json::Null))
                    .await
            }
            (
                Navigation::ManyToMany {
                    relationship,
                    related,
                },
                m @ (Method::POST | Method::DELETE),
            ) => {
                let other = if m == Method::POST {
                    if keyed.is_some() {
                        return Err(ApiError::url(format!(
                            "POST {nav}/$ref adds a reference: the row goes in the body's @odata.id, not the URL."
                        )));
                    }
                    self.referenced_id(schema, related, &odata_id(body)?, "@odata.id")
                        .await?
                } else {
                    related_id(related).await?
                };
                let target = EntityRef {
                    logical_name: self.table.logical_name.clone(),
                    id,
                };
                let related = vec![EntityRef {
                    logical_name: related.logical_name.clone(),
                    id: other,
                }];
                let relationship = relationship.to_owned();
                let message = if m == Method::POST {
                    Message::Associate {
                        target,
                        relationship,
                        related,
                    }
                } else {
                    Message::Disassociate {
                        target,
                        relationship,
                        related,
                    }
                };
                self.execute(self.request(message, None)?).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            (Navigation::Lookup { .. }, m) => Err(method_not_allowed(
                &m,
                "a single-valued navigation property's $ref",
                "PUT, DELETE",
            )),
            (_, m) => Err(method_not_allowed(
                &m,
                "a collection-valued navigation property's $ref",
                "POST, DELETE",
            )),
        }
    }

    /// `GET {set}(id)/{nav}`: the related record of a single-valued navigation property (204 when the
    /// lookup is empty), or the related rows of a collection-valued one with the request's `$select`,
    /// `$filter`, `$orderby` and `$top` — read as `$expand` reads them.
    async fn navigation_read(&self, id: Uuid, nav: &str) -> Result<Response, ApiError> {
        let schema = &self.state.runtime.schema();
        let nested: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k.starts_with('$'))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let text = if nested.is_empty() {
            nav.to_owned()
        } else {
            format!("{nav}({})", nested.join(";"))
        };
        let expands = super::expand::parse(schema, &self.table, &text)?;
        let mut columns = vec![self.table.primary_id_attribute.clone()];
        if let Some(super::expand::Kind::Lookup { attribute }) = expands.first().map(|e| &e.kind) {
            columns.push(attribute.clone());
        }
        let message = Message::Retrieve {
            table: self.table.logical_name.clone(),
            id,
            columns: Some(columns),
        };
        let response = self.execute(self.request(message, None)?).await?;
        let OrganizationResponse::Retrieve { entity } = response else {
            return Err(unexpected(&response));
        };
        let options = super::odata::Options::default();
        let mut per_row = self.expanded(&expands, &[entity], &options).await?;
        let (Some(e), Some((_, text))) = (expands.first(), per_row.pop().and_then(|mut v| v.pop()))
        else {
            return Err(ApiError::url(format!("'{nav}' could not be read.")));
        };
        let set = &e.target.entity_set_name;
        let body = match e.kind {
            super::expand::Kind::Lookup { .. } if text == "null" => {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            super::expand::Kind::Lookup { .. } => format!(
                "{{\"@odata.context\":{},{}",
                Json::String(format!("{}/$metadata#{set}/$entity", self.base)),
                text.strip_prefix('{').unwrap_or("}")
            ),
            _ => format!(
                "{{\"@odata.context\":{},\"value\":{text}}}",
                Json::String(format!("{}/$metadata#{set}", self.base))
            ),
        };
        Ok(super::json_response(StatusCode::OK, body))
    }

    /// An Update of this record with `body` (a Web API entity object), answered 204.
    async fn update_attributes(&self, id: Uuid, body: Json) -> Result<Response, ApiError> {
        self.update_other(&self.table, id, body).await
    }

    /// An Update of row `id` of `table` with `body`, answered 204.
    async fn update_other(
        &self,
        table: &TableDef,
        id: Uuid,
        body: Json,
    ) -> Result<Response, ApiError> {
        let schema = &self.state.runtime.schema();
        let target = json::entity_from_body(schema, table, body.to_string().as_bytes(), Some(id))?;
        self.execute(self.request(Message::Update { target }, None)?)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn not_a_property(&self, schema: &Schema, name: &str) -> ApiError {
        let hint = match resolve(schema, &self.table, name) {
            Some(Navigation::Lookup { .. }) => {
                " It is a single-valued navigation property: set it with PUT …/$ref, or @odata.bind in a PATCH."
            }
            Some(_) => {
                " It is a collection-valued navigation property: read it with GET, add references with POST \
                 …/$ref."
            }
            None if self.table.attribute(name).is_some() => {
                " Lookups are set through their navigation property (…/$ref or @odata.bind); the primary id \
                 cannot change."
            }
            None => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    super::BAD_URL,
                    format!("Resource not found for the segment '{name}'."),
                );
            }
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            super::BAD_URL,
            format!(
                "'{name}' is not a property of type 'Microsoft.Dynamics.CRM.{}' that can be addressed this way.{hint}",
                self.table.logical_name
            ),
        )
    }
}

fn method_not_allowed(method: &Method, what: &str, allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        super::BAD_URL,
        format!("{method} is not supported on {what} ({allowed})."),
    )
}

/// The `@odata.id` of a `$ref` body.
fn odata_id(body: &[u8]) -> Result<String, ApiError> {
    serde_json::from_slice::<serde_json::Map<String, Json>>(body)
        .ok()
        .and_then(|m| m.get("@odata.id").and_then(Json::as_str).map(str::to_owned))
        .ok_or_else(|| {
            ApiError::payload(
                "A $ref body is {\"@odata.id\": \"<the related record's URL, e.g. accounts(<GUID>)>\"}.",
            )
        })
}

impl Call {
    /// The id of the `table` row a reference URL names by id (`…/contacts(<GUID>)`) or by an alternate key
    /// (`…/contacts(lastname='Kim')`, found by a RetrieveMultiple: 404 when no row has the values).
    async fn referenced_id(
        &self,
        schema: &Schema,
        table: &TableDef,
        url: &str,
        what: &str,
    ) -> Result<Uuid, ApiError> {
        let Some((set, text)) = super::alternate_key::keyed_segment(url)
            .and_then(super::alternate_key::split)
            .filter(|(set, _)| {
                schema.table_by_entity_set(set).map(|t| &t.logical_name)
                    == Some(&table.logical_name)
            })
        else {
            return reference_id(schema, table, url, what);
        };
        let values = super::alternate_key::values(table, text)?;
        self.find_by_key(table, &values).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "0x80040217",
                format!(
                    "{what}: no {} record has {text} ({set}).",
                    table.logical_name
                ),
            )
        })
    }
}

/// The id of the `table` row a reference URL (`…/contacts(<GUID>)`) names; another table's row is refused.
fn reference_id(
    schema: &Schema,
    table: &TableDef,
    url: &str,
    what: &str,
) -> Result<Uuid, ApiError> {
    let segment = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    match json::parse_key_segment(segment) {
        Some((set, Some(id)))
            if schema.table_by_entity_set(set).map(|t| &t.logical_name)
                == Some(&table.logical_name) =>
        {
            Ok(id)
        }
        _ => Err(ApiError::payload(format!(
            "{what}: '{}' is not a {} record URL such as {}(<GUID>).",
            url.chars().take(200).collect::<String>(),
            table.logical_name,
            table.entity_set_name
        ))),
    }
}

/// `"/{set}({id})"`, as an `@odata.bind` value.
fn entity_reference_json(table: &TableDef, id: Uuid) -> Json {
    Json::String(format!("/{}({id})", table.entity_set_name))
}

/// A Web API body setting lookup `attribute` to `value` (an `@odata.bind` URL or null): the URL's entity
/// set says which target a lookup with several targets gets.
fn lookup_body(attribute: &str, value: Json) -> Json {
    let mut m = serde_json::Map::new();
    m.insert(format!("{attribute}@odata.bind"), value);
    Json::Object(m)
}
