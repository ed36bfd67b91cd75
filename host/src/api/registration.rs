//! Registration at runtime through the Web API: `sdkmessageprocessingsteps` (GET the collection or one
//! step; POST a new step; PATCH `statecode`/`statuscode`, `rank`, `configuration`; DELETE), `pluginassemblies` (GET; replace the
//! component with PATCH `{"content":"<base64>"}` or PUT `…(id)/content`) and `workflows` (its columns are
//! `super::workflows`').
//!
//! Owns the translation HTTP ⇄ [`Pipeline::update_step`] / [`Pipeline::replace_plugin`] and the JSON shape
//! of these rows (Dataverse column names, option-set numbers). Changes are persisted and applied by the
//! pipeline (next operation sees them, running ones finish on the old version); this module must not touch
//! the store. The secure configuration is write-only: never returned, only whether one is set (the
//! `_sdkmessageprocessingstepsecureconfigid_value` lookup).
//!
//! Changes made here survive a restart; an edit of `weft.toml` that changes the same entry wins over them
//! (see [`crate::registration::Registration::apply`]).
//!
//! # Differences from Dataverse
//! No query options on these sets (their lists are paged in memory: `Prefer: odata.maxpagesize` and a next
//! link's `$skiptoken` only). A new step is POSTed as weft.toml declares one (`name`, `message`,
//! `table`, `stage`, `mode`, `plugin` or `service_endpoint`, `image`, …, as JSON), not with Dataverse's
//! `sdkmessageid@odata.bind`/`plugintypeid@odata.bind` lookups: weft has no `sdkmessages` or
//! `sdkmessagefilters` sets to bind to, and one declaration language keeps file and API validated alike. The message and table of a step are the lookups `_sdkmessageid_value` and
//! `_sdkmessagefilterid_value` with weft-derived ids (their names are the FormattedValue annotations). An
//! assembly's `content` is write-only here (components are large), `sourcehash` is its sha256 and `path`
//! the component file it was first loaded from. `PUT …(id)/content` takes the component's bytes as the body
//! (any content type but JSON), or OData's `{"value":"<base64>"}` with a JSON content type.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;
use weft_store::StoreError;
use weft_store::system::{EventHandler, PluginAssembly, StepState};

use super::error::{ApiError, BAD_PAYLOAD, BAD_URL};
use super::json::Annotations;
use super::paging::{Page, PageKey};
use super::workflows::WORKFLOWS;
use crate::pipeline::{Pipeline, PipelineError, StepChange};
use crate::registration::{RawStep, StepDecl, derived_id};

/// The steps' entity set.
pub const STEPS: &str = "sdkmessageprocessingsteps";
/// The plug-in assemblies' entity set.
pub const ASSEMBLIES: &str = "pluginassemblies";

const LOOKUP_LOGICAL_NAME: &str = "@Microsoft.Dynamics.CRM.lookuplogicalname";
const FORMATTED_VALUE: &str = "@OData.Community.Display.V1.FormattedValue";

/// One request on a registration set.
pub(super) struct RegistrationCall<'a> {
    pub(super) pipeline: Pipeline,
    pub(super) base: String,
    pub(super) set: &'a str,
    pub(super) id: Option<Uuid>,
    /// `content` for `pluginassemblies(id)/content`.
    pub(super) property: Option<&'a str>,
    pub(super) uri: &'a Uri,
    pub(super) headers: &'a HeaderMap,
    pub(super) pages: &'a PageKey,
}

impl RegistrationCall<'_> {
    /// Whether `set` is served here rather than as a table.
    pub(super) fn owns(set: &str) -> bool {
        set == STEPS || set == ASSEMBLIES || set == WORKFLOWS
    }

    pub(super) async fn handle(self, method: Method, body: Bytes) -> Result<Response, ApiError> {
        let mut pairs = Query::<Vec<(String, String)>>::try_from_uri(self.uri)
            .map_err(|e| ApiError::url(format!("The query string is malformed: {e}.")))?
            .0;
        // A collection GET is paged: its only query option is the next link's $skiptoken.
        let list = method == Method::GET && self.id.is_none() && self.property.is_none();
        let page = if list {
            Some(Page::from_request(
                self.pages,
                self.set,
                &mut pairs,
                self.uri.query(),
                self.headers,
            )?)
        } else {
            None
        };
        if !pairs.is_empty() {
            return Err(ApiError::url(format!(
                "Query options are not supported on {}.",
                self.set
            )));
        }
        if let Some(page) = page {
            return match self.set {
                STEPS => Ok(self.list_steps(page)),
                WORKFLOWS => Ok(self.list_workflows(page)),
                _ => Ok(self.list_assemblies(page)),
            };
        }
        match (self.set, &method, self.id, self.property) {
            (STEPS, &Method::GET, Some(id), None) => self.get_step(id),
            (STEPS, &Method::PATCH, Some(id), None) => self.patch_step(id, &body).await,
            (STEPS, &Method::POST, None, None) => self.create_step(&body).await,
            (STEPS, &Method::DELETE, Some(id), None) => self.delete_step(id).await,
            (WORKFLOWS, &Method::GET, Some(id), None) => self.get_workflow(id),
            (WORKFLOWS, &Method::PATCH, Some(id), None) => self.patch_workflow(id, &body).await,
            (WORKFLOWS, &Method::POST, None, None) => self.create_workflow(&body).await,
            (WORKFLOWS, &Method::DELETE, Some(id), None) => self.delete_workflow(id).await,
            (ASSEMBLIES, &Method::GET, Some(id), None) => self.get_assembly(id),
            (ASSEMBLIES, &Method::PATCH, Some(id), None) => {
                let bytes = content_from_patch(&body)?;
                self.replace(id, bytes).await
            }
            (ASSEMBLIES, &Method::PUT, Some(id), Some("content")) => {
                let bytes = self.content_from_put(&body)?;
                self.replace(id, bytes).await
            }
            (_, _, _, Some(p)) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                BAD_URL,
                format!(
                    "Resource not found for the segment '{p}': only PUT pluginassemblies(<GUID>)/content \
                     addresses a property."
                ),
            )),
            (set, m, id, None) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                BAD_URL,
                format!(
                    "{m} is not supported on {} of {set} (steps and workflows: GET, POST the collection; \
                     GET, PATCH, DELETE a record; assemblies: GET; PATCH a record or PUT its content).",
                    if id.is_some() {
                        "a record"
                    } else {
                        "the collection"
                    }
                ),
            )),
        }
    }

    fn annotations(&self) -> Annotations {
        self.headers
            .get("Prefer")
            .and_then(|v| v.to_str().ok())
            .map(Annotations::from_prefer)
            .unwrap_or_default()
    }

    pub(super) fn context(&self, entity: bool) -> String {
        let suffix = if entity { "/$entity" } else { "" };
        format!("{}/$metadata#{}{suffix}", self.base, self.set)
    }

    fn list_steps(&self, page: Page) -> Response {
        let a = self.annotations();
        let (steps, next) = page.slice(self.pipeline.steps(), self.pages, &self.base);
        let rows: Vec<Json> = steps.iter().map(|s| step_json(s, a)).collect();
        page.answer(self.context(false), rows, next)
    }

    fn get_step(&self, id: Uuid) -> Result<Response, ApiError> {
        let step = self
            .pipeline
            .step(id)
            .ok_or_else(|| not_found("sdkmessageprocessingstep", id))?;
        Ok(super::record(
            StatusCode::OK,
            self.context(true),
            step_json(&step, self.annotations()),
        ))
    }

    async fn patch_step(&self, id: Uuid, body: &[u8]) -> Result<Response, ApiError> {
        let change = step_change(body)?;
        let pipeline = self.pipeline.clone();
        let step = super::blocking(move || pipeline.update_step(id, change)).await?;
        if super::wants_representation(self.headers) {
            Ok(super::record(
                StatusCode::OK,
                self.context(true),
                step_json(&step, self.annotations()),
            ))
        } else {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }

    /// POST: the body is a `[[step]]` of `weft.toml` as a JSON object (same keys, same rules).
    async fn create_step(&self, body: &[u8]) -> Result<Response, ApiError> {
        // The secure configuration is checked before serde, whose messages quote the offending value.
        if let Ok(Json::Object(o)) = serde_json::from_slice::<Json>(body)
            && o.get("secure_configuration")
                .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(ApiError::payload(
                "'secure_configuration' must be a string or null.",
            ));
        }
        let raw: RawStep = serde_json::from_slice(body).map_err(|e| {
            ApiError::payload(format!(
                "The body is not a step declaration (the keys of a weft.toml [[step]]): {e}."
            ))
        })?;
        let pipeline = self.pipeline.clone();
        let step = super::blocking(move || pipeline.create_step(raw)).await?;
        let row = super::wants_representation(self.headers).then(|| {
            super::record(
                StatusCode::CREATED,
                self.context(true),
                step_json(&step, self.annotations()),
            )
        });
        super::created(&format!("{}/{STEPS}({})", self.base, step.def.id), row)
    }

    async fn delete_step(&self, id: Uuid) -> Result<Response, ApiError> {
        let pipeline = self.pipeline.clone();
        super::blocking(move || pipeline.delete_step(id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn list_assemblies(&self, page: Page) -> Response {
        let (assemblies, next) = page.slice(self.pipeline.assemblies(), self.pages, &self.base);
        let rows: Vec<Json> = assemblies.iter().map(assembly_json).collect();
        page.answer(self.context(false), rows, next)
    }

    fn assembly(&self, id: Uuid) -> Result<PluginAssembly, ApiError> {
        self.pipeline
            .assemblies()
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| not_found("pluginassembly", id))
    }

    fn get_assembly(&self, id: Uuid) -> Result<Response, ApiError> {
        let assembly = self.assembly(id)?;
        Ok(super::record(
            StatusCode::OK,
            self.context(true),
            assembly_json(&assembly),
        ))
    }

    fn content_from_put(&self, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        let json = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return Ok(body.to_vec());
        }
        let object = object(body)?;
        only(&object, &["value"])?;
        match object.get("value") {
            Some(Json::String(text)) => decode(text, "value"),
            _ => Err(ApiError::payload(
                "The body must be {\"value\":\"<base64 component>\"} (or the component's bytes with a \
                 non-JSON content type).",
            )),
        }
    }

    async fn replace(&self, id: Uuid, bytes: Vec<u8>) -> Result<Response, ApiError> {
        let name = self.assembly(id)?.name;
        if bytes.is_empty() {
            return Err(ApiError::payload("The component is empty."));
        }
        let pipeline = self.pipeline.clone();
        let assembly = super::blocking(move || pipeline.replace_plugin(&name, &bytes))
            .await
            .map_err(|e| ApiError {
                code: BAD_PAYLOAD.into(),
                ..e
            })?;
        if super::wants_representation(self.headers) {
            Ok(super::record(
                StatusCode::OK,
                self.context(true),
                assembly_json(&assembly),
            ))
        } else {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

pub(super) fn not_found(table: &str, id: Uuid) -> ApiError {
    ApiError::from(PipelineError::Store(StoreError::NotFound {
        table: table.into(),
        id,
    }))
}

/// A request body that must be one JSON object (registration and workflow rows).
pub(super) fn object(body: &[u8]) -> Result<Map<String, Json>, ApiError> {
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::payload("The body must be a JSON object.")),
        Err(e) => Err(ApiError::payload(format!(
            "The body is not valid JSON: {e}."
        ))),
    }
}

/// Refuses any key outside `allowed`, naming it.
fn only(object: &Map<String, Json>, allowed: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::payload(format!(
            "'{k}' cannot be written here: only {} can.",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn decode(text: &str, field: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| ApiError::payload(format!("'{field}' is not valid base64: {e}.")))
}

fn content_from_patch(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let object = object(body)?;
    only(&object, &["content"])?;
    match object.get("content") {
        Some(Json::String(text)) => decode(text, "content"),
        Some(other) => Err(ApiError::payload(format!(
            "'content' must be a base64 string, not {other}."
        ))),
        None => Err(ApiError::payload(
            "The body names no column to change: give 'content' (the component, base64).",
        )),
    }
}

/// Reads a step PATCH body: `statecode` (0, 1), `statuscode` (1, 2; must match the state), `rank` (whole
/// number), `configuration` (string or null). Anything else is refused, nothing changed.
fn step_change(body: &[u8]) -> Result<StepChange, ApiError> {
    let object = object(body)?;
    only(
        &object,
        &["statecode", "statuscode", "rank", "configuration"],
    )?;
    let int = |name: &str| -> Result<Option<i32>, ApiError> {
        match object.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    ApiError::payload(format!(
                        "'{name}' must be a whole number (32-bit), not {v}."
                    ))
                }),
        }
    };
    let from_state = |n: i32| {
        StepState::try_from(n).map_err(|_| {
            ApiError::payload(format!("statecode {n} is not 0 (Enabled) or 1 (Disabled)."))
        })
    };
    let from_status = |n: i32| match n {
        1 => Ok(StepState::Enabled),
        2 => Ok(StepState::Disabled),
        _ => Err(ApiError::payload(format!(
            "statuscode {n} is not 1 (Enabled) or 2 (Disabled)."
        ))),
    };
    let state = match (int("statecode")?, int("statuscode")?) {
        (None, None) => None,
        (Some(s), None) => Some(from_state(s)?),
        (None, Some(s)) => Some(from_status(s)?),
        (Some(state), Some(status)) => {
            let (a, b) = (from_state(state)?, from_status(status)?);
            if a != b {
                return Err(ApiError::payload(format!(
                    "statuscode {status} does not belong to statecode {state} (0 goes with 1, 1 with 2)."
                )));
            }
            Some(a)
        }
    };
    let configuration = match object.get("configuration") {
        None => None,
        Some(Json::Null) => Some(None),
        Some(Json::String(s)) => Some(Some(s.clone())),
        Some(other) => {
            return Err(ApiError::payload(format!(
                "'configuration' must be a string or null, not {other}."
            )));
        }
    };
    let change = StepChange {
        state,
        rank: int("rank")?,
        configuration,
    };
    if change == StepChange::default() {
        return Err(ApiError::payload(
            "The body names no column to change: give statecode/statuscode, rank or configuration.",
        ));
    }
    Ok(change)
}

fn step_json(s: &StepDecl, a: Annotations) -> Json {
    let d = &s.def;
    let mut o = Map::new();
    let mut put = |k: &str, v: Json| {
        o.insert(k.to_owned(), v);
    };
    put("sdkmessageprocessingstepid", json!(d.id));
    put("name", json!(d.name));
    put("stage", json!(d.stage.value()));
    put("mode", json!(d.mode.value()));
    put("rank", json!(d.rank));
    put("statecode", json!(d.state.value()));
    put("statuscode", json!(d.state.status_code()));
    put("configuration", json!(d.configuration));
    put(
        "filteringattributes",
        if d.filtering_attributes.is_empty() {
            Json::Null
        } else {
            json!(d.filtering_attributes.join(","))
        },
    );
    put("invocationsource", json!(d.invocation_source.value()));
    put("asyncautodelete", json!(d.async_auto_delete));
    put("supporteddeployment", json!(0));
    put("_impersonatinguserid_value", json!(d.impersonating_user_id));
    if a.lookup_logical_name && d.impersonating_user_id.is_some() {
        put(
            &format!("_impersonatinguserid_value{LOOKUP_LOGICAL_NAME}"),
            json!("systemuser"),
        );
    }
    let (handler, handler_table) = match d.event_handler {
        EventHandler::PluginType(id) => (id, "plugintype"),
        EventHandler::ServiceEndpoint(id) => (id, "serviceendpoint"),
    };
    put("_eventhandler_value", json!(handler));
    if a.lookup_logical_name {
        put(
            &format!("_eventhandler_value{LOOKUP_LOGICAL_NAME}"),
            json!(handler_table),
        );
    }
    put(
        "_sdkmessageid_value",
        json!(derived_id("sdkmessage", &d.message)),
    );
    if a.formatted_value {
        put(
            &format!("_sdkmessageid_value{FORMATTED_VALUE}"),
            json!(d.message),
        );
    }
    let filter = d
        .primary_entity
        .as_ref()
        .map(|t| derived_id("sdkmessagefilter", &format!("{}:{t}", d.message)));
    put("_sdkmessagefilterid_value", json!(filter));
    if a.formatted_value
        && let Some(t) = &d.primary_entity
    {
        put(
            &format!("_sdkmessagefilterid_value{FORMATTED_VALUE}"),
            json!(t),
        );
    }
    // Whether a secure configuration is set, never its value.
    let secure = s
        .secure_configuration
        .as_ref()
        .map(|_| derived_id("sdkmessageprocessingstepsecureconfig", &d.id.to_string()));
    put(
        "_sdkmessageprocessingstepsecureconfigid_value",
        json!(secure),
    );
    Json::Object(o)
}

fn assembly_json(a: &PluginAssembly) -> Json {
    json!({
        "pluginassemblyid": a.id,
        "name": a.name,
        "sourcehash": a.sha256,
        "path": a.component_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step PATCH with a stray or mistyped column is refused, naming it.
    #[test]
    fn step_change_refuses_what_it_cannot_apply() {
        let e = step_change(br#"{"secureconfig":"x"}"#).unwrap_err();
        assert!(
            e.message.contains("'secureconfig' cannot be written"),
            "{}",
            e.message
        );
        let e = step_change(br#"{"statecode":1,"statuscode":1}"#).unwrap_err();
        assert!(e.message.contains("does not belong"), "{}", e.message);
        let e = step_change(br#"{"rank":"2"}"#).unwrap_err();
        assert!(
            e.message.contains("'rank' must be a whole number"),
            "{}",
            e.message
        );
        assert!(step_change(b"{}").is_err());
        assert!(
            step_change(b"[")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
        let ok = step_change(br#"{"statuscode":2,"configuration":null}"#).unwrap();
        assert_eq!(ok.state, Some(StepState::Disabled));
        assert_eq!(ok.configuration, Some(None));
    }
}
