//! Dataverse's bulk messages on a table's collection: `POST {set}/Microsoft.Dynamics.CRM.CreateMultiple`,
//! `…UpdateMultiple` and `…UpsertMultiple` with `{"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.x", …}]}`.
//! CreateMultiple answers `{"Ids": […]}`, the others 204, as Dataverse does.
//!
//! Owns reading the targets (each checked before anything runs, identified for Update by its id or
//! `@odata.id`, for Upsert also by an alternate key, looked up here) and handing them to the pipeline as one
//! bulk message ([`crate::pipeline::Bulk`]: its steps run once with `Targets`, the steps on Create and
//! Update once per item, all in one transaction — the `$batch` change set's inside one).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::error::ApiError;
use super::json::{self, RawObject};
use super::{Call, Message, OrganizationResponse, alternate_key, unexpected};
use crate::pipeline::{Bulk, MAX_BULK_TARGETS as MAX_TARGETS};

/// One target: its attributes as a Web API body, and the row it names (id, or alternate key values).
struct Target {
    body: String,
    id: Option<Uuid>,
    key: Option<Vec<(String, weft_store::Value)>>,
}

impl Call {
    /// Runs a bulk message on this collection.
    pub(super) async fn bulk(&self, bulk: Bulk, body: &[u8]) -> Result<Response, ApiError> {
        let schema = &self.state.runtime.schema();
        let mut targets = Vec::new();
        for t in self.targets(bulk, body)? {
            // A row named by a key is looked up here; whether a row named by its id exists, the
            // operation decides in its transaction.
            let id = match (&t.id, &t.key) {
                (Some(id), _) => Some(*id),
                (None, Some(values)) => self.find_by_key(&self.table, values).await?,
                (None, None) => None,
            };
            let mut target = json::entity_from_body(schema, &self.table, t.body.as_bytes(), id)?;
            if id.is_none() {
                // A row named by a key it does not have yet is created with the key's values.
                for (name, value) in t.key.iter().flatten() {
                    if !target.attributes.iter().any(|a| a.name == *name) {
                        target
                            .attributes
                            .push(crate::sandbox::wit::types::Attribute {
                                name: name.clone(),
                                value: crate::convert::from_store(value),
                            });
                    }
                }
            }
            if bulk == Bulk::Update && target.id.is_none() {
                return Err(ApiError::payload(format!(
                    "{}: every target names its record, by '{}' or '@odata.id'.",
                    bulk.name(),
                    self.table.primary_id_attribute
                )));
            }
            targets.push(target);
        }
        let message = Message::Multiple {
            bulk,
            table: self.table.logical_name.clone(),
            targets,
        };
        let request = self.request(message, None)?;
        let ids = match self.execute(request).await? {
            OrganizationResponse::Multiple { ids } => ids,
            other => return Err(unexpected(&other)),
        };
        if bulk != Bulk::Create {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let body = serde_json::json!({
            "@odata.context": format!("{}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", self.base),
            "Ids": ids,
        });
        Ok(super::json_response(StatusCode::OK, body.to_string()))
    }

    /// The request's targets, each checked: an object of this table's type (`@odata.type` required, as
    /// Dataverse requires it), at most [`MAX_TARGETS`].
    fn targets(&self, bulk: Bulk, body: &[u8]) -> Result<Vec<Target>, ApiError> {
        let RawObject(members) = serde_json::from_slice::<RawObject>(body).map_err(|e| {
            ApiError::payload(format!(
                "The {} body is not a JSON object: {e}.",
                bulk.name()
            ))
        })?;
        let mut targets = None;
        for (name, value) in members {
            match name.as_str() {
                "Targets" => {
                    targets = Some(
                        serde_json::from_str::<Vec<Box<RawValue>>>(value.get()).map_err(|_| {
                            ApiError::payload(format!(
                                "{}: 'Targets' is an array of records.",
                                bulk.name()
                            ))
                        })?,
                    )
                }
                other => {
                    return Err(ApiError::payload(format!(
                        "{}: '{other}' is not a parameter (the only one is 'Targets').",
                        bulk.name()
                    )));
                }
            }
        }
        let targets = targets
            .ok_or_else(|| ApiError::payload(format!("{} needs 'Targets'.", bulk.name())))?;
        if targets.is_empty() || targets.len() > MAX_TARGETS {
            return Err(ApiError::payload(format!(
                "{}: 'Targets' holds 1 to {MAX_TARGETS} records, not {}.",
                bulk.name(),
                targets.len()
            )));
        }
        let wanted = format!("Microsoft.Dynamics.CRM.{}", self.table.logical_name);
        targets
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let RawObject(members) =
                    serde_json::from_str::<RawObject>(raw.get()).map_err(|_| {
                        ApiError::payload(format!(
                            "{}: target {i} is not a JSON object.",
                            bulk.name()
                        ))
                    })?;
                let mut own = Vec::new();
                let (mut typed, mut id, mut key) = (false, None, None);
                for (name, value) in members {
                    match name.as_str() {
                        "@odata.type" => {
                            let t: String = serde_json::from_str(value.get()).unwrap_or_default();
                            if t.trim_start_matches('#') != wanted {
                                return Err(ApiError::payload(format!(
                                    "{}: target {i} is of type '{t}', not '{wanted}'.",
                                    bulk.name()
                                )));
                            }
                            typed = true;
                        }
                        "@odata.id" if bulk != Bulk::Create => {
                            let url: String = serde_json::from_str(value.get()).map_err(|_| {
                                ApiError::payload(format!(
                                    "{}: target {i}'s @odata.id is not a URL.",
                                    bulk.name()
                                ))
                            })?;
                            let segment = url.rsplit('/').next().unwrap_or_default();
                            match json::parse_key_segment(segment) {
                                Some((_, Some(g))) => id = Some(g),
                                _ => match alternate_key::split(segment) {
                                    Some((_, text)) => {
                                        key = Some(alternate_key::values(&self.table, text)?)
                                    }
                                    None => {
                                        return Err(ApiError::payload(format!(
                                            "{}: target {i}'s @odata.id '{url}' names no record.",
                                            bulk.name()
                                        )));
                                    }
                                },
                            }
                        }
                        _ => own.push((name, value)),
                    }
                }
                if !typed {
                    return Err(ApiError::payload(format!(
                        "{}: target {i} needs \"@odata.type\": \"{wanted}\".",
                        bulk.name()
                    )));
                }
                if let Some((_, v)) = own
                    .iter()
                    .find(|(n, _)| *n == self.table.primary_id_attribute)
                {
                    id = Some(serde_json::from_str::<Uuid>(v.get()).map_err(|_| {
                        ApiError::payload(format!(
                            "{}: target {i}'s '{}' is not a GUID.",
                            bulk.name(),
                            self.table.primary_id_attribute
                        ))
                    })?);
                }
                let body = json::object_text(own.iter().map(|(n, v)| (n.as_str(), v.get())));
                Ok(Target { body, id, key })
            })
            .collect()
    }
}
