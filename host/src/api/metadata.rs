//! The Web API's service-level resources: the service document (`GET /api/data/v9.2/`), the CSDL document
//! (`$metadata`), the metadata sets (`EntityDefinitions`, `RelationshipDefinitions`,
//! `GlobalOptionSetDefinitions`, served by weft-odata), the read-only `sdkmessages` / `sdkmessagefilters`
//! rows (which messages run on which table, with the ids the registration rows point at) and the `WhoAmI`
//! function: the calls clients make to check a connection and learn the tables before their first
//! operation.
//!
//! Owns routing these paths (a middleware ahead of the table routes, because metadata paths have more
//! segments than table paths; writes to `EntityDefinitions` and the `CreateEntities` action go to `define`)
//! and the translation of the declared Custom APIs into weft-odata's
//! operations. It must not build metadata itself (weft-odata does) nor run operations.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_odata::{MessageFilter, Model, Operation, OperationBinding, Parameter};
use weft_store::Schema;
use weft_store::schema::Ownership;

use super::error::{ApiError, BAD_URL};
use super::{AppState, PREFIX, base_url, caller_id, define};
use crate::pipeline::{BUSINESS_UNIT_ID, DEFAULT_USER_ID, ORGANIZATION_ID};
use crate::registration::{Binding, CustomApiDecl, ParameterType, derived_id};

/// Answers the service-level paths; hands every other request to the table routes.
pub(super) async fn intercept(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let Some(rest) = path
        .strip_prefix(PREFIX)
        .map(|r| r.strip_prefix('/').unwrap_or(r))
    else {
        return next.run(request).await;
    };
    let writes_tables = (rest == define::CREATE_ENTITIES && request.method() == Method::POST)
        || (weft_odata::is_metadata_path(rest) && request.method() != Method::GET);
    if writes_tables {
        let rest = rest.to_owned();
        let (parts, body) = request.into_parts();
        return define::handle(&state, &parts.method, &rest, &parts.headers, body)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let what = if rest.is_empty() {
        What::ServiceDocument
    } else if rest == "$metadata" {
        What::Csdl
    } else if rest == "WhoAmI" || rest == "WhoAmI()" {
        What::WhoAmI
    } else if weft_odata::is_metadata_path(rest) {
        What::Metadata(rest.to_owned())
    } else {
        return next.run(request).await;
    };
    answer(
        &state,
        what,
        request.method(),
        request.uri(),
        request.headers(),
    )
    .unwrap_or_else(IntoResponse::into_response)
}

enum What {
    ServiceDocument,
    Csdl,
    WhoAmI,
    Metadata(String),
}

fn answer(
    state: &AppState,
    what: What,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            BAD_URL,
            format!("{method} is not supported on this resource; use GET."),
        ));
    }
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::url(format!("The query string is malformed: {e}.")))?
        .0;
    let base = base_url(state, headers);
    let registration = &state.runtime.registration;
    let operations = operations(&registration.custom_apis);
    let schema = state.runtime.schema();
    let filters = message_filters(&schema, &registration.custom_apis);
    let model = Model {
        schema: &schema,
        operations: &operations,
        filters: &filters,
    };
    let no_options = |what: &str| match pairs.first() {
        Some((k, _)) => Err(ApiError::url(format!(
            "The query option '{k}' is not supported on {what}."
        ))),
        None => Ok(()),
    };
    match what {
        What::ServiceDocument => {
            no_options("the service document")?;
            let mut sets: Vec<_> = model
                .schema
                .tables()
                .iter()
                .map(|t| json!({"name": t.entity_set_name, "kind": "EntitySet", "url": t.entity_set_name}))
                .collect();
            for s in [
                "EntityDefinitions",
                "RelationshipDefinitions",
                "GlobalOptionSetDefinitions",
            ] {
                sets.push(json!({"name": s, "kind": "EntitySet", "url": s}));
            }
            Ok(json_response(
                json!({"@odata.context": format!("{base}/$metadata"), "value": sets}),
            ))
        }
        What::Csdl => {
            no_options("$metadata")?;
            let mut r = weft_odata::csdl(model).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            Ok(r)
        }
        What::WhoAmI => {
            no_options("WhoAmI")?;
            // The caller is whoever a request would run as: MSCRMCallerID's user, or the default one.
            let user = caller_id(headers)?.unwrap_or(DEFAULT_USER_ID);
            Ok(json_response(json!({
                "@odata.context": format!("{base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"),
                "BusinessUnitId": BUSINESS_UNIT_ID,
                "UserId": user,
                "OrganizationId": ORGANIZATION_ID,
            })))
        }
        What::Metadata(rest) => Ok(json_response(weft_odata::get(model, &base, &rest, &pairs)?)),
    }
}

fn json_response(body: serde_json::Value) -> Response {
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; odata.metadata=minimal"),
    );
    r
}

/// The messages the pipeline runs on each declared table (Assign only on user-owned ones) and the Custom
/// APIs (on their table, or `none` when unbound), with the ids the registration rows point at.
fn message_filters(schema: &Schema, apis: &[CustomApiDecl]) -> Vec<MessageFilter> {
    let filter = |message: &str, table: &str| MessageFilter {
        id: derived_id("sdkmessagefilter", &format!("{message}:{table}")),
        message: message.to_owned(),
        message_id: derived_id("sdkmessage", message),
        table: table.to_owned(),
    };
    let mut out = Vec::new();
    for t in schema.tables() {
        for m in crate::registration::MESSAGES {
            if *m != "Assign" || t.ownership == Ownership::UserOwned {
                out.push(filter(m, &t.logical_name));
            }
        }
    }
    for api in apis {
        let table = match &api.binding {
            Binding::Global => "none",
            Binding::Entity(t) | Binding::EntityCollection(t) => t,
        };
        out.push(filter(&api.unique_name, table));
    }
    out
}

/// The EDM type of a Custom API parameter.
fn edm_type(kind: ParameterType) -> &'static str {
    match kind {
        ParameterType::Boolean => "Edm.Boolean",
        ParameterType::DateTime => "Edm.DateTimeOffset",
        ParameterType::Decimal | ParameterType::Money => "Edm.Decimal",
        ParameterType::Float => "Edm.Double",
        ParameterType::Integer | ParameterType::Picklist => "Edm.Int32",
        ParameterType::String => "Edm.String",
        ParameterType::StringArray => "Collection(Edm.String)",
        ParameterType::Guid => "Edm.Guid",
        ParameterType::EntityReference => "mscrm.crmbaseentity",
    }
}

/// The declared Custom APIs as OData operations.
fn operations(apis: &[CustomApiDecl]) -> Vec<Operation> {
    apis.iter()
        .map(|api| Operation {
            name: api.unique_name.clone(),
            is_function: api.is_function,
            binding: match &api.binding {
                Binding::Global => OperationBinding::Unbound,
                Binding::Entity(t) => OperationBinding::Entity(t.clone()),
                Binding::EntityCollection(t) => OperationBinding::Collection(t.clone()),
            },
            parameters: api
                .request_parameters
                .iter()
                .map(|p| Parameter {
                    name: p.name.clone(),
                    edm_type: edm_type(p.kind),
                    optional: p.optional,
                })
                .collect(),
            returns: api
                .response_properties
                .iter()
                .map(|p| Parameter {
                    name: p.name.clone(),
                    edm_type: edm_type(p.kind),
                    optional: true,
                })
                .collect(),
        })
        .collect()
}
