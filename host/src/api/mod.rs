//! The HTTP API, shaped like the Dataverse Web API: `/api/data/v9.2/{entityset}` POST (Create),
//! `{entityset}({id})` GET/PATCH/DELETE (Retrieve/Update/Delete) and collection GET (RetrieveMultiple with
//! `$select`/`$filter`/`$top`/`$orderby`), `Prefer: return=representation`, the
//! `MSCRM.BypassBusinessLogicExecution[StepIds]`, `MSCRM.BypassCustomPluginExecution` and `MSCRMCallerID`
//! headers, the `tag` query option and errors as
//! `{"error":{"code":"0x…","message":"…"}}`; Custom APIs (parameters in the `custom_api` submodule) as
//! `/{unique_name}` when unbound, `{entityset}({id})/Microsoft.Dynamics.CRM.{unique_name}` when bound to a
//! row (which reaches the plug-in as `Target`) and `{entityset}/Microsoft.Dynamics.CRM.{unique_name}` when
//! bound to the collection: POST for an action, GET for a function (`…{unique_name}(Name='x',N=@p)?@p=1`),
//! with the same caller headers and `tag` as table operations. The registration sets `sdkmessageprocessingsteps` and
//! `pluginassemblies` are served by the `registration` submodule (steps enabled/disabled and
//! reconfigured, components replaced, at runtime); system jobs (`asyncoperations`) and service endpoints
//! (`serviceendpoints`, with TriggerServiceEndpointCheck) by the `system` submodule; the service document,
//! `$metadata`, `EntityDefinitions`, `RelationshipDefinitions` and `WhoAmI` by the `metadata` submodule
//! (with weft-odata); tables and columns created at runtime (`POST EntityDefinitions`, `CreateEntities`,
//! `…/Attributes`, `DELETE EntityDefinitions(…)`) by the `define` submodule. Over HTTPS when `weft up` has a certificate (the `tls` submodule). The web console
//! (`/console`) and `/metrics` of weft-console share the listener, outside the API's layers; the `console`
//! submodule hands it the runtime and the API's own step-toggle and endpoint-check code.
//!
//! Owns only the translation HTTP ⇄ [`OrganizationRequest`] / [`OrganizationResponse`], request
//! authentication and the server's lifetime. It holds no business logic: every operation goes through
//! [`Pipeline::execute`](crate::pipeline::Pipeline::execute) (on a blocking thread), so plug-ins, rollback
//! and the outbox behave exactly as for any other caller. It must not write to the store directly; its only
//! direct reads are an upsert's existence check and the links of an N:N relationship `$expand` follows, and
//! its only direct writes the table definitions `define` hands the store.
//!
//! # Authentication
//! With an API key every request needs `Authorization: Bearer <key>` (the scheme in any case, RFC 9110);
//! without one the server only binds to a loopback address ([`serve`] refuses anything else). The key is
//! never logged or echoed. The `Host` header, which the answers' URLs are built from, must be a plain
//! `host[:port]` (400 otherwise), so no caller can make an answer point elsewhere.
//!
//! # Limits
//! Connections, header and body read times and body sizes are bounded ([`ApiLimits`], the `server`
//! submodule); every collection is paged (the `paging` submodule); a `$filter`'s depth and size are bounded
//! (`odata`); JSON bodies nest at most 128 levels (serde_json's recursion limit, left on).
//!
//! # Differences from Dataverse
//! PATCH is an upsert (`If-Match: *` and `If-None-Match: *` as Dataverse defines them); every record carries
//! `@odata.etag` from its `versionnumber`, checked for `If-Match` inside the operation (the `etag`
//! submodule). Records may be addressed by an alternate key (`alternate_key`); a record's properties and
//! navigation properties by URL, `$ref` included (`navigation`); a POST may nest related records
//! (`deep_insert`). `$expand` follows single- and collection-valued navigation properties (the `expand`
//! submodule); `$count` is capped at 5,000 as in Dataverse and counted by a RetrieveMultiple of its own;
//! paging is by row offset (see `paging`). Annotations: `lookuplogicalname`, `associatednavigationproperty`
//! and FormattedValue (en-US, UTC, the `formatted` submodule). `return=representation` reads the record
//! back with a Retrieve operation of its own (Retrieve steps fire for it). When that read-back fails after
//! the write committed, the answer is the write's own (204, with `OData-EntityId` for a Create) without
//! `Preference-Applied`: the preference was not honoured, but the caller learns the write happened, so a
//! retrying client does not create the row twice.
//! String values holding a character XML 1.0 cannot carry (C0 controls other than TAB, LF and CR; U+FFFE,
//! U+FFFF) are refused with 400 naming the attribute: they would make the XML-format messages sent to
//! service endpoints unreadable.
//! `$filter` takes the lambda operators `any`/`all` over collection-valued navigation properties (the
//! `odata` submodule; the store runs them as correlated `EXISTS`). Tables and columns may be created and
//! tables created so deleted at runtime (`define`); those `weft.toml` declares are changed in the file only,
//! and there are no solutions, relationships created at runtime, or column updates and deletions.
//! Impersonation is by `MSCRMCallerID` (a systemuserid) only: `CallerObjectId` (a Microsoft Entra object
//! id) is refused. A Custom API function's URL arguments are OData literals (`'text'`, numbers, `true`,
//! `false`, `null`, bare GUIDs and dates) or JSON objects and arrays, inline or as `@alias` query options.

mod alternate_key;
mod apply;
mod batch;
mod bulk;
mod console;
mod custom_api;
mod deep_insert;
mod define;
mod endpoints;
mod error;
mod etag;
mod expand;
mod fetch;
mod formatted;
pub(crate) mod json;
mod metadata;
mod navigation;
mod odata;
mod paging;
mod registration;
mod server;
mod system;
mod tls;
mod url;
mod workflows;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use uuid::Uuid;
use weft_store::schema::platform;
use weft_store::{Query as StoreQuery, StoreError, StoreExt as _, TableDef};

pub use error::{ApiError, BAD_PAYLOAD, BAD_URL};
pub use json::{entity_to_body, format_datetime, parse_datetime};
pub use odata::{MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH};
pub use paging::DEFAULT_PAGE_SIZE;
pub use registration::{ASSEMBLIES, STEPS};
pub use server::ApiLimits;
pub use tls::{DEV_DIR as TLS_DEV_DIR, TlsFiles, development as development_certificate};
pub use url::parse_url;

use registration::RegistrationCall;
use system::SystemCall;

use crate::convert;
use crate::pipeline::{Message, OrganizationRequest, OrganizationResponse, PipelineError};
use crate::registration::{Binding, CustomApiDecl};
use crate::runtime::Runtime;
use crate::sandbox::wit::types::Entity;

pub(crate) use custom_api::{body_object, parameters as custom_api_parameters, response_object};

/// The most rows `$count` counts (Dataverse's limit); above it the answer says so.
const COUNT_LIMIT: u32 = 5000;

/// The Web API's path prefix.
pub const PREFIX: &str = "/api/data/v9.2";

/// How requests authenticate.
#[derive(Clone, Default)]
pub struct ApiAuth {
    key: Option<String>,
}

impl ApiAuth {
    /// No authentication (only safe on loopback).
    pub fn open() -> Self {
        ApiAuth { key: None }
    }

    /// Every request needs `Authorization: Bearer <key>`.
    pub fn bearer(key: impl Into<String>) -> Self {
        ApiAuth {
            key: Some(key.into()),
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        // Schemes are case-insensitive (RFC 9110 §11.1): `bearer`, `BEARER` and `Bearer` are the same.
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim_start_matches(' '))
            .unwrap_or_default();
        // Constant-time comparison: the time taken must not tell how much of the key matched.
        given.len() == key.len()
            && given
                .bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is write-only.
        let shown = if self.key.is_some() {
            "Bearer(***)"
        } else {
            "Open"
        };
        f.write_str(shown)
    }
}

#[derive(Clone)]
struct AppState {
    runtime: Arc<Runtime>,
    auth: ApiAuth,
    checker: system::Checker,
    limits: ApiLimits,
    pages: paging::PageKey,
    /// `http` or `https`: what the answers' URLs start with.
    scheme: &'static str,
}

/// The API's routes over `runtime`, with `limits` on request bodies, served over plain HTTP.
pub fn router(runtime: Arc<Runtime>, auth: ApiAuth, limits: ApiLimits) -> Router {
    router_for(runtime, auth, limits, "http", None)
}

/// [`router`] for a server speaking `scheme` (`http` or `https`), which the answers' URLs use.
fn router_for(
    runtime: Arc<Runtime>,
    auth: ApiAuth,
    limits: ApiLimits,
    scheme: &'static str,
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
) -> Router {
    let state = AppState {
        runtime,
        auth,
        checker: system::Checker::default(),
        limits,
        pages: paging::PageKey::random(),
        scheme,
    };
    // The web console and /metrics: beside the API's routes, outside its layers (the console signs in
    // with a cookie as well as the bearer key, and answers HTML, not OData).
    let console = weft_console::router(
        Arc::new(console::Bridge {
            runtime: Arc::clone(&state.runtime),
            checker: Arc::clone(&state.checker),
        }),
        state.auth.key.clone(),
        stopping,
    );
    let api = Router::new()
        .route(&format!("{PREFIX}/$batch"), any(batch::handle))
        .fallback_service(routes(state.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // A span per Web API request, only when traces are exported (the console and /metrics get none).
    let api = if crate::telemetry::enabled() {
        api.layer(middleware::from_fn(crate::telemetry::trace_request))
    } else {
        api
    };
    api.with_state(state).merge(console)
}

/// The routes a request is answered by, after authentication: also what each request of a `$batch`
/// goes through.
fn routes(state: AppState) -> Router {
    // Bodies are read by the handlers (`read_body`), with the limit of what the request addresses.
    Router::new()
        .route(&format!("{PREFIX}/{{resource}}"), any(resource))
        .route(
            &format!("{PREFIX}/{{resource}}/{{property}}"),
            any(property),
        )
        .route(
            &format!("{PREFIX}/{{resource}}/{{property}}/{{tail}}"),
            any(reference),
        )
        .fallback(unknown_path)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metadata::intercept,
        ))
        .with_state(state)
}

/// A running API server. Dropping it stops the server as [`ApiServer::shutdown`] does, without waiting.
pub struct ApiServer {
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// Stops accepting requests, lets in-flight ones finish and waits for the server to end.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("the API server task failed")??;
        Ok(())
    }

    /// Serves until `signal` completes (e.g. Ctrl-C for `weft up`), then shuts down gracefully. An error
    /// if the server stops on its own first.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ApiServer { shutdown, mut task } = self;
        tokio::pin!(signal);
        let ended = tokio::select! {
            () = &mut signal => None,
            r = &mut task => Some(r),
        };
        match ended {
            None => ApiServer { shutdown, task }.shutdown().await,
            Some(r) => {
                r.context("the API server task failed")??;
                anyhow::bail!("the API server stopped unexpectedly")
            }
        }
    }
}

/// Binds `bind` (port 0 picks one) and serves the API with the default [`ApiLimits`]; returns the bound
/// address and the server. Refuses a non-loopback address without an API key, and an empty key.
pub async fn serve(
    runtime: Arc<Runtime>,
    bind: SocketAddr,
    api_key: Option<String>,
) -> anyhow::Result<(SocketAddr, ApiServer)> {
    serve_with(runtime, bind, api_key, ApiLimits::default()).await
}

/// [`serve`] with these limits.
pub async fn serve_with(
    runtime: Arc<Runtime>,
    bind: SocketAddr,
    api_key: Option<String>,
    limits: ApiLimits,
) -> anyhow::Result<(SocketAddr, ApiServer)> {
    serve_on(runtime, bind, api_key, limits, None).await
}

/// [`serve_with`], over HTTPS with the certificate in `tls` when there is one.
pub async fn serve_on(
    runtime: Arc<Runtime>,
    bind: SocketAddr,
    api_key: Option<String>,
    limits: ApiLimits,
    tls: Option<&TlsFiles>,
) -> anyhow::Result<(SocketAddr, ApiServer)> {
    let acceptor = tls.map(tls::acceptor).transpose()?;
    let auth = match api_key {
        Some(k) if k.is_empty() => anyhow::bail!("the API key is empty"),
        Some(k) => ApiAuth::bearer(k),
        None if bind.ip().is_loopback() => ApiAuth::open(),
        None => anyhow::bail!(
            "refusing to serve the API on {bind} without an API key: only a loopback address may be used \
             without one"
        ),
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the API to {bind}"))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    // Turns true when the server stops: the console's event streams end, so in-flight requests finish.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let app = router_for(runtime, auth, limits, scheme, Some(stopping.clone()));
    let stop = (stopping_tx, stopping);
    let task = tokio::spawn(server::run(listener, app, limits, acceptor, rx, stop));
    Ok((addr, ApiServer { shutdown: tx, task }))
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.auth.allows(request.headers()) {
        // Like Dataverse's front door: no body, a challenge.
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    if let Some(host) = request.headers().get(header::HOST)
        && !host.to_str().is_ok_and(valid_host)
    {
        return ApiError::url(
            "The Host header is not a valid host[:port]; the answer's URLs are built from it.",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert("OData-Version", HeaderValue::from_static("4.0"));
    response
}

async fn unknown_path(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        BAD_URL,
        format!(
            "Resource not found for the segment '{}'.",
            uri.path().rsplit('/').next().unwrap_or_default()
        ),
    )
}

/// Everything a handler needs from the request besides the body.
struct Call {
    state: AppState,
    table: TableDef,
    id: Option<Uuid>,
    /// The alternate key values the URL addressed the record by, if it did.
    key: Option<Vec<(String, weft_store::Value)>>,
    /// No row has `key`'s values: `id` is a new one.
    key_missing: bool,
    pairs: Vec<(String, String)>,
    /// The URL's query string as sent (a next link repeats it).
    raw_query: Option<String>,
    headers: HeaderMap,
    base: String,
}

async fn resource(
    State(state): State<AppState>,
    Path(resource): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, state.limits.body_bytes, &state.limits).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if let Some((set, id)) = json::parse_key_segment(&resource)
        && SystemCall::owns(set)
    {
        return SystemCall::new(&state, set, id, None, &uri, &headers)
            .handle(method, body)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    if let Some((set, id)) = json::parse_key_segment(&resource)
        && RegistrationCall::owns(set)
    {
        return registration_call(&state, set, id, None, &uri, &headers)
            .handle(method, body)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let (name, args) = split_call(&resource);
    if let Some(api) = custom_api_named(&state, name) {
        let result = match &api.binding {
            Binding::Global => {
                let incoming = Incoming {
                    method,
                    uri: &uri,
                    headers: &headers,
                    body: &body,
                };
                custom_api_call(&state, api, None, args, incoming).await
            }
            Binding::Entity(t) | Binding::EntityCollection(t) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                BAD_URL,
                format!(
                    "Resource not found for the segment '{name}': the Custom API {name} is bound to \
                     `{t}`; call it as {}/{}{name}.",
                    bound_path(&state, api),
                    custom_api::TYPE_PREFIX
                ),
            )),
        };
        return result.unwrap_or_else(IntoResponse::into_response);
    }
    let mut call = match Call::new(state, &resource, &uri, headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = call.resolve_key().await {
        return e.into_response();
    }
    let result = match (method, call.id) {
        (Method::POST, None) => call.create(&body).await,
        (Method::GET, None) => call.retrieve_multiple().await,
        (Method::GET, Some(id)) => call.retrieve(id).await,
        (Method::PATCH, Some(id)) => call.update(id, &body).await,
        (Method::DELETE, Some(id)) => call.delete(id).await,
        (m, id) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            BAD_URL,
            format!(
                "{m} is not supported on {} (collection: GET, POST; record: GET, PATCH, DELETE).",
                if id.is_some() {
                    "a record"
                } else {
                    "a collection"
                }
            ),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The parts of a request a Custom API call reads.
struct Incoming<'a> {
    method: Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// `weft_Fn(Name='x')` → (`weft_Fn`, `Name='x'`); `weft_Greet` → (`weft_Greet`, None).
fn split_call(segment: &str) -> (&str, Option<&str>) {
    match segment.strip_suffix(')').and_then(|s| s.split_once('(')) {
        Some((name, args)) => (name, Some(args)),
        None => (segment, None),
    }
}

fn custom_api_named<'a>(state: &'a AppState, name: &str) -> Option<&'a CustomApiDecl> {
    state
        .runtime
        .registration
        .custom_apis
        .iter()
        .find(|c| c.unique_name == name)
}

/// How a bound API's URL starts: `accounts(<GUID>)` or `accounts`.
fn bound_path(state: &AppState, api: &CustomApiDecl) -> String {
    let schema = &state.runtime.schema();
    let set = |t: &str| {
        schema
            .table(t)
            .map_or(t.to_owned(), |d| d.entity_set_name.clone())
    };
    match &api.binding {
        Binding::Global => String::new(),
        Binding::Entity(t) => format!("{}(<GUID>)", set(t)),
        Binding::EntityCollection(t) => set(t),
    }
}

/// `{entityset}({id})/Microsoft.Dynamics.CRM.{unique_name}` or `{entityset}/Microsoft.Dynamics.CRM.{…}`:
/// the binding must be the API's, with a row id exactly when it is bound to a row.
async fn bound_custom_api_call(
    state: &AppState,
    resource: &str,
    operation: &str,
    incoming: Incoming<'_>,
) -> Result<Response, ApiError> {
    let not_found = |why: String| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            BAD_URL,
            format!("Resource not found for the segment '{operation}'{why}."),
        )
    };
    let (name, args) = split_call(
        operation
            .strip_prefix(custom_api::TYPE_PREFIX)
            .unwrap_or(operation),
    );
    let api = custom_api_named(state, name).ok_or_else(|| not_found(String::new()))?;
    let (table, id) = addressed_table(state, resource)?;
    let how = || format!("{}/{operation}", bound_path(state, api));
    let row = match (&api.binding, id) {
        (Binding::Global, _) => {
            return Err(not_found(format!(
                ": the Custom API {name} is unbound; call it as /{name}"
            )));
        }
        (Binding::Entity(t) | Binding::EntityCollection(t), _) if *t != table.logical_name => {
            return Err(not_found(format!(
                ": the Custom API {name} is bound to `{t}`, not `{}`; call it as {}",
                table.logical_name,
                how()
            )));
        }
        (Binding::Entity(_), Some(id)) => Some(id),
        (Binding::EntityCollection(_), None) => None,
        (Binding::Entity(t), None) => {
            return Err(ApiError::url(format!(
                "The Custom API {name} is bound to one `{t}` row: call it as {}.",
                how()
            )));
        }
        (Binding::EntityCollection(t), Some(_)) => {
            return Err(ApiError::url(format!(
                "The Custom API {name} is bound to the `{t}` collection, not a row: call it as {}.",
                how()
            )));
        }
    };
    custom_api_call(state, api, row, args, incoming).await
}

/// A Custom API call: POST with a JSON body for an action, GET with URL arguments for a function; `row`
/// is the row an Entity-bound API is called on. Query options: `tag`, and a function's parameter aliases.
async fn custom_api_call(
    state: &AppState,
    api: &CustomApiDecl,
    row: Option<Uuid>,
    args: Option<&str>,
    incoming: Incoming<'_>,
) -> Result<Response, ApiError> {
    let Incoming {
        method,
        uri,
        headers,
        body,
    } = incoming;
    let (expected, kind) = if api.is_function {
        (Method::GET, "function")
    } else {
        (Method::POST, "action")
    };
    if method != expected {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            BAD_URL,
            format!(
                "{method} is not supported on the {kind} {} ({expected}).",
                api.unique_name
            ),
        ));
    }
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::url(format!("The query string is malformed: {e}.")))?
        .0;
    let mut tag = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "tag" => tag = Some(v.clone()),
            alias if api.is_function && alias.starts_with('@') => {}
            other => {
                return Err(ApiError::url(format!(
                    "The query option '{other}' does not apply to the {kind} {} (tag{}).",
                    api.unique_name,
                    if api.is_function {
                        " and parameter aliases @name"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    let fields = if api.is_function {
        custom_api::function_arguments(api, args, &pairs)?
    } else if args.is_some_and(|a| !a.trim().is_empty()) {
        return Err(ApiError::url(format!(
            "{} is an action: its parameters go in the POST body, not in the URL.",
            api.unique_name
        )));
    } else {
        custom_api::body_object(body)?
    };
    let schema = &state.runtime.schema();
    let mut parameters = custom_api::parameters(schema, api, fields)?;
    parameters.extend(row.and_then(|id| api.target(id)));
    let message = Message::Custom {
        name: api.unique_name.clone(),
        parameters,
    };
    let request = caller_request(headers, message, tag)?;
    let response = execute(&state.runtime, request).await?;
    let OrganizationResponse::Custom { outputs } = response else {
        return Err(unexpected(&response));
    };
    custom_api::response(schema, &base_url(state, headers), api, &outputs)
}

/// A single property of a record: only `pluginassemblies(<GUID>)/content` (the component) is served.
async fn property(
    State(state): State<AppState>,
    Path((resource, property)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Only a component upload may be large; every other body is an entity or parameters.
    let limit = if method == Method::PUT && property == "content" {
        state.limits.upload_bytes
    } else {
        state.limits.body_bytes
    };
    let body = match read_body(body, limit, &state.limits).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // Bound operations of the system tables (TriggerServiceEndpointCheck) are theirs; declared Custom APIs
    // are served here, for any entity set.
    if let Some(operation) = property.strip_prefix(custom_api::TYPE_PREFIX)
        && custom_api_named(&state, split_call(operation).0).is_some()
    {
        let incoming = Incoming {
            method,
            uri: &uri,
            headers: &headers,
            body: &body,
        };
        return bound_custom_api_call(&state, &resource, &property, incoming)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    if property == "$count" {
        if method != Method::GET {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                BAD_URL,
                format!("{method} is not supported on /$count (GET)."),
            )
            .into_response();
        }
        let result = match Call::new(state, &resource, &uri, headers) {
            Ok(call) if call.id.is_none() => call.count_only().await,
            Ok(_) => Err(ApiError::url(
                "/$count applies to a collection (accounts/$count), not to a record.",
            )),
            Err(e) => Err(e),
        };
        return result.unwrap_or_else(IntoResponse::into_response);
    }
    if let Some(bulk) = property
        .strip_prefix(custom_api::TYPE_PREFIX)
        .and_then(crate::pipeline::Bulk::named)
    {
        let result = match Call::new(state, &resource, &uri, headers) {
            Ok(call) if call.id.is_none() && call.key.is_none() && method == Method::POST => {
                call.bulk(bulk, &body).await
            }
            Ok(_) if method != Method::POST => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                BAD_URL,
                format!("{method} is not supported on the action {property} (POST)."),
            )),
            Ok(_) => Err(ApiError::url(format!(
                "{property} is bound to a collection ({{set}}/{property}), not to a record."
            ))),
            Err(e) => Err(e),
        };
        return result.unwrap_or_else(IntoResponse::into_response);
    }
    match json::parse_key_segment(&resource) {
        Some((set, Some(id))) if RegistrationCall::owns(set) => {
            registration_call(&state, set, Some(id), Some(&property), &uri, &headers)
                .handle(method, body)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Some((set, Some(id))) if SystemCall::owns(set) => {
            SystemCall::new(&state, set, Some(id), Some(&property), &uri, &headers)
                .handle(method, body)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Some((_, Some(id))) => match Call::new(state, &resource, &uri, headers) {
            Ok(call) => call.single_property(id, &property, method, &body).await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(IntoResponse::into_response),
        _ => unknown_path(uri).await.into_response(),
    }
}

/// `{set}(id)/{nav}/$ref` and `{set}(id)/{nav}(<id>)/$ref`: a navigation property's references.
async fn reference(
    State(state): State<AppState>,
    Path((resource, property, tail)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if tail != "$ref" {
        return unknown_path(uri).await.into_response();
    }
    let body = match read_body(body, state.limits.body_bytes, &state.limits).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let result = match Call::new(state, &resource, &uri, headers) {
        Ok(call) => match call.id {
            Some(id) => call.reference(id, &property, method, &body).await,
            None => Err(ApiError::url(
                "A $ref is addressed from a record: {set}(<GUID>)/{navigation property}/$ref.",
            )),
        },
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn registration_call<'a>(
    state: &'a AppState,
    set: &'a str,
    id: Option<Uuid>,
    property: Option<&'a str>,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> RegistrationCall<'a> {
    RegistrationCall {
        pipeline: state.runtime.pipeline.clone(),
        base: base_url(state, headers),
        set,
        id,
        property,
        uri,
        headers,
        pages: &state.pages,
    }
}

/// A Create's answer: 204 with the new row's URL (`location`) in `OData-EntityId`, or, when the caller
/// asked for `return=representation`, `representation` (a 201 with the row) with that header too.
fn created(location: &str, representation: Option<Response>) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(location).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "0x80040216",
            e.to_string(),
        )
    })?;
    let mut response = match representation {
        Some(mut r) => {
            r.headers_mut().insert(
                "Preference-Applied",
                HeaderValue::from_static("return=representation"),
            );
            r
        }
        // Dataverse answers a plain Create with 204 and the new record's URL.
        None => StatusCode::NO_CONTENT.into_response(),
    };
    response.headers_mut().insert("OData-EntityId", location);
    Ok(response)
}

/// Whether the caller asked for `Prefer: return=representation`.
pub(super) fn wants_representation(headers: &HeaderMap) -> bool {
    headers
        .get("Prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.split(',').any(|p| p.trim() == "return=representation"))
}

/// The table a path segment (`accounts` or `accounts(<GUID>)`) addresses, with the row id when it has one.
fn addressed_table(state: &AppState, segment: &str) -> Result<(TableDef, Option<Uuid>), ApiError> {
    let (set, id) = json::parse_key_segment(segment).ok_or_else(|| {
        ApiError::url(format!(
            "'{segment}' is not an entity set or a record key such as accounts(<GUID>)."
        ))
    })?;
    let table = state
        .runtime
        .schema()
        .table_by_entity_set(set)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                BAD_URL,
                format!("Resource not found for the segment '{set}'."),
            )
        })?;
    Ok((table, id))
}

/// Reads a request body of at most `limit` bytes within the body read timeout: 413 when it is larger
/// (told before reading when `Content-Length` says so), 408 when it is too slow.
async fn read_body(body: Body, limit: usize, limits: &ApiLimits) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            BAD_PAYLOAD,
            format!(
                "The request body is larger than {limit} bytes, the limit for this request (`weft up` \
                 --api-body-limit / --api-upload-limit)."
            ),
        )
    };
    match tokio::time::timeout(limits.body_read_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = s.source();
            }
            Err(ApiError::payload(format!(
                "The request body could not be read: {e}."
            )))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            BAD_PAYLOAD,
            format!(
                "The request body did not arrive within {} s.",
                limits.body_read_timeout.as_secs()
            ),
        )),
    }
}

/// Whether a `Host` header is a plain `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in
/// brackets, and an optional port. Anything else (userinfo, a path, quotes, spaces) could redirect the
/// URLs the answers carry.
fn valid_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => {
                match after.strip_prefix(':') {
                    Some(port) => ("v6", Some(port)),
                    None if after.is_empty() => ("v6", None),
                    None => return false,
                }
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    port_ok && name_ok
}

/// The service root the answers' URLs (contexts, next links, entity ids) start with: the scheme the
/// server speaks and the `Host` the caller used.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}{PREFIX}", state.scheme)
}

impl Call {
    fn new(
        state: AppState,
        resource: &str,
        uri: &Uri,
        headers: HeaderMap,
    ) -> Result<Call, ApiError> {
        // A record may be addressed by an alternate key (`accounts(accountnumber='A1')`): its values now,
        // the row's id once `resolve_key` found it.
        let (table, id, key) = match alternate_key::split(resource) {
            Some((set, text)) if json::parse_key_segment(resource).is_none() => {
                let (table, _) = addressed_table(&state, set)?;
                let key = alternate_key::values(&table, text)?;
                (table, None, Some(key))
            }
            _ => {
                let (table, id) = addressed_table(&state, resource)?;
                (table, id, None)
            }
        };
        let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::url(format!("The query string is malformed: {e}.")))?
            .0;
        let base = base_url(&state, &headers);
        Ok(Call {
            state,
            table,
            id,
            key,
            key_missing: false,
            pairs,
            raw_query: uri.query().map(str::to_owned),
            headers,
            base,
        })
    }

    /// `body` with each `@odata.bind` that names its row by an alternate key
    /// (`"/accounts(accountnumber='A1')"`) rewritten to the row's id — the record's own and those of the
    /// records nested in it (a deep insert) —; unchanged when none does. A key no row has answers 404, as a
    /// bind to a missing id does.
    async fn resolve_key_binds<'b>(
        &self,
        body: &'b [u8],
    ) -> Result<std::borrow::Cow<'b, [u8]>, ApiError> {
        // Every Create and Update asks: a body without a bind is not parsed again.
        if !body
            .windows(b"@odata.bind".len())
            .any(|w| w == b"@odata.bind")
        {
            return Ok(std::borrow::Cow::Borrowed(body));
        }
        // entity_from_body answers a malformed body with the precise error.
        let Ok(text) = std::str::from_utf8(body) else {
            return Ok(std::borrow::Cow::Borrowed(body));
        };
        let mut keyed: Vec<String> = Vec::new();
        alternate_key::rewrite_binds(text, &mut |url| {
            if let Some(segment) = alternate_key::keyed_segment(url)
                && !keyed.iter().any(|k| k == segment)
            {
                keyed.push(segment.to_owned());
            }
            None
        });
        if keyed.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(body));
        }
        let schema = &self.state.runtime.schema();
        let mut ids = Vec::with_capacity(keyed.len());
        for segment in keyed {
            let Some((set, text)) = alternate_key::split(&segment) else {
                continue;
            };
            let table = schema.table_by_entity_set(set).ok_or_else(|| {
                ApiError::payload(format!("'{segment}': '{set}' is not an entity set."))
            })?;
            let values = alternate_key::values(table, text)?;
            let Some(id) = self.find_by_key(table, &values).await? else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "0x80040217",
                    format!("'{segment}': no {} record has {text}.", table.logical_name),
                ));
            };
            ids.push((segment.clone(), format!("/{set}({id})")));
        }
        let rewritten = alternate_key::rewrite_binds(text, &mut |url| {
            let segment = alternate_key::keyed_segment(url)?;
            ids.iter()
                .find(|(k, _)| k == segment)
                .map(|(_, v)| v.clone())
        });
        Ok(match rewritten {
            Some(text) => std::borrow::Cow::Owned(text.into_bytes()),
            None => std::borrow::Cow::Borrowed(body),
        })
    }

    /// The id of the `table` row with these alternate key values, if one has them (a RetrieveMultiple
    /// through the pipeline).
    async fn find_by_key(
        &self,
        table: &TableDef,
        values: &[(String, weft_store::Value)],
    ) -> Result<Option<Uuid>, ApiError> {
        let query = StoreQuery {
            table: table.logical_name.clone(),
            columns: Some(vec![table.primary_id_attribute.clone()]),
            filter: Some(weft_store::Condition::And(
                values
                    .iter()
                    .map(|(a, v)| weft_store::Condition::Eq(a.clone(), v.clone()))
                    .collect(),
            )),
            orders: Vec::new(),
            top: Some(2),
            skip: 0,
        };
        let entities = self.retrieve_rows(query, None).await?;
        match entities.as_slice() {
            [] => Ok(None),
            [one] => Ok(one.id.map(convert::uuid)),
            _ => Err(ApiError::url(
                "The key values match several records (a key's uniqueness is enforced on write: this \
                 answers only for rows written before the key was declared).",
            )),
        }
    }

    /// For a record addressed by an alternate key: finds its id (a RetrieveMultiple through the pipeline).
    /// When no row has those values, the call gets a new id and `key_missing`: a GET or DELETE then answers
    /// 404, a PATCH creates the row with the key's values (Dataverse's upsert by key).
    async fn resolve_key(&mut self) -> Result<(), ApiError> {
        let Some(values) = &self.key else {
            return Ok(());
        };
        match self.find_by_key(&self.table, values).await? {
            Some(id) => self.id = Some(id),
            None => {
                self.id = Some(weft_store::new_id());
                self.key_missing = true;
            }
        }
        Ok(())
    }

    fn header(&self, name: &str) -> Result<Option<&str>, ApiError> {
        header(&self.headers, name)
    }

    fn annotations(&self) -> Result<json::Annotations, ApiError> {
        Ok(self
            .header("Prefer")?
            .map(json::Annotations::from_prefer)
            .unwrap_or_default())
    }

    fn wants_representation(&self) -> Result<bool, ApiError> {
        Ok(self
            .header("Prefer")?
            .is_some_and(|p| p.split(',').any(|p| p.trim() == "return=representation")))
    }

    fn request(
        &self,
        message: Message,
        tag: Option<String>,
    ) -> Result<OrganizationRequest, ApiError> {
        caller_request(&self.headers, message, tag)
    }

    async fn execute(
        &self,
        request: OrganizationRequest,
    ) -> Result<OrganizationResponse, ApiError> {
        execute(&self.state.runtime, request).await
    }

    fn entity_url(&self, id: Uuid) -> String {
        format!("{}/{}({id})", self.base, self.table.entity_set_name)
    }

    fn context_url(&self, select: Option<&[String]>, entity: bool) -> String {
        let select = select.map_or(String::new(), |s| format!("({})", s.join(",")));
        let suffix = if entity { "/$entity" } else { "" };
        format!(
            "{}/$metadata#{}{select}{suffix}",
            self.base, self.table.entity_set_name
        )
    }

    /// Retrieves `id` and answers it with `status` (a write's representation, or a GET).
    /// Row `id` as the answer's JSON, or 304 when `if_none_match` (a conditional GET's ETag) is its
    /// current version.
    async fn representation(
        &self,
        id: Uuid,
        options: &odata::Options,
        status: StatusCode,
        if_none_match: Option<i64>,
    ) -> Result<Response, ApiError> {
        let expands = self.expands(options)?;
        let message = Message::Retrieve {
            table: self.table.logical_name.clone(),
            id,
            columns: read_columns(&options.select, &expands),
        };
        let response = self
            .execute(self.request(message, options.tag.clone())?)
            .await?;
        let OrganizationResponse::Retrieve { mut entity } = response else {
            return Err(unexpected(&response));
        };
        if let Some(known) = if_none_match
            && json::row_version(&entity) == Some(known)
        {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        let select = options.select.as_deref();
        let annotations = self.annotations()?;
        if annotations.formatted_value {
            self.name_lookups(std::slice::from_mut(&mut entity), options)
                .await?;
        }
        let body = json::entity_to_json(
            &self.table,
            &entity,
            select,
            Some(&self.context_url(select, true)),
            annotations,
        );
        let rows = [entity];
        let extra = self.expanded(&expands, &rows, options).await?;
        let body = with_properties(body, extra.first().map_or(&[][..], Vec::as_slice));
        Ok(json_response(status, body))
    }

    async fn create(&self, body: &[u8]) -> Result<Response, ApiError> {
        let options = odata::parse(&self.table, &self.pairs, odata::Allowed::Record)?;
        let schema = &self.state.runtime.schema();
        let representation = self.wants_representation()?;
        let body = &*self.resolve_key_binds(body).await?;
        let id = if deep_insert::is_deep(schema, &self.table, body) {
            self.deep_insert(body, &options).await?
        } else {
            let target = json::entity_from_body(schema, &self.table, body, None)?;
            let request = self.request(Message::Create { target }, options.tag.clone())?;
            let response = self.execute(request).await?;
            let OrganizationResponse::Create { id } = response else {
                return Err(unexpected(&response));
            };
            id
        };
        // The row is committed: a failed read-back must not hide its id (see the module's documentation).
        let row = if representation {
            self.representation(id, &options, StatusCode::CREATED, None)
                .await
                .ok()
        } else {
            None
        };
        created(&self.entity_url(id), row)
    }

    /// A deep insert (see `deep_insert`): every nested record created in one transaction — the change
    /// set's, inside a `$batch` — and the root record's id.
    async fn deep_insert(&self, body: &[u8], options: &odata::Options) -> Result<Uuid, ApiError> {
        let schema = &self.state.runtime.schema();
        let (id, messages) = deep_insert::plan(schema, &self.table, body)?;
        let requests = messages
            .into_iter()
            .map(|m| self.request(m, options.tag.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        self.execute_all(requests).await?;
        Ok(id)
    }

    /// Runs `requests` in one transaction — the `$batch` change set's when the request is in one — and
    /// answers their responses in order (deep insert, bulk messages).
    async fn execute_all(
        &self,
        requests: Vec<OrganizationRequest>,
    ) -> Result<Vec<OrganizationResponse>, ApiError> {
        if let Some(change_set) = batch::ChangeSet::current() {
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(change_set.execute(request).await?);
            }
            return Ok(responses);
        }
        let runtime = Arc::clone(&self.state.runtime);
        blocking(move || {
            runtime.pipeline.transaction(|t| {
                requests
                    .into_iter()
                    .map(|r| t.execute(r))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .await
    }

    async fn retrieve(&self, id: Uuid) -> Result<Response, ApiError> {
        let options = odata::parse(&self.table, &self.pairs, odata::Allowed::Record)?;
        if self.header("If-Match")?.is_some() {
            return Err(ApiError::url(
                "If-Match does not apply to a GET: send If-None-Match with the record's ETag to read it only \
                 when it changed.",
            ));
        }
        let known = match self.header("If-None-Match")? {
            None => None,
            Some(v) => Some(etag::parse("If-None-Match", v)?),
        };
        self.representation(id, &options, StatusCode::OK, known)
            .await
    }

    async fn retrieve_multiple(&self) -> Result<Response, ApiError> {
        if let Some((_, xml)) = self.pairs.iter().find(|(k, _)| k == "fetchXml") {
            return self.fetch_xml(xml).await;
        }
        if let Some((_, text)) = self.pairs.iter().find(|(k, _)| k == "$apply") {
            return self.apply(&self.pairs, text).await;
        }
        let mut pairs = self.pairs.clone();
        let page = paging::Page::from_request(
            &self.state.pages,
            &self.table.entity_set_name,
            &mut pairs,
            self.raw_query.as_deref(),
            &self.headers,
        )?;
        let options = odata::parse_in(
            &self.state.runtime.schema(),
            &self.table,
            &pairs,
            odata::Allowed::Collection,
        )?;
        // One row more than the page, from the page's start: whether another page follows, and never
        // more than a page in memory.
        let expands = self.expands(&options)?;
        let query = StoreQuery {
            table: self.table.logical_name.clone(),
            columns: read_columns(&options.select, &expands),
            filter: options.filter.clone(),
            orders: options.orders.clone(),
            top: Some(page.fetch(options.top)),
            skip: page.skip,
        };
        let mut entities = self.retrieve_rows(query, options.tag.clone()).await?;
        let next = page.finish(&mut entities, options.top, &self.state.pages, &self.base);
        let select = options.select.as_deref();
        let annotations = self.annotations()?;
        if annotations.formatted_value {
            self.name_lookups(&mut entities, &options).await?;
        }
        let extra = self.expanded(&expands, &entities, &options).await?;
        let rows: Vec<String> = entities
            .iter()
            .zip(extra)
            .map(|(e, extra)| {
                let row = json::entity_to_json(&self.table, e, select, None, annotations);
                with_properties(row, &extra)
            })
            .collect();
        let context = serde_json::Value::String(self.context_url(select, false));
        let next = next.map_or(String::new(), |link| {
            format!(",\"@odata.nextLink\":{}", serde_json::Value::String(link))
        });
        let count = if options.count {
            let (n, exceeded) = self.count(&options).await?;
            format!(
                ",\"@odata.count\":{n},\"@Microsoft.Dynamics.CRM.totalrecordcount\":{n},\
                 \"@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded\":{exceeded}"
            )
        } else {
            String::new()
        };
        let body = format!(
            "{{\"@odata.context\":{context}{count},\"value\":[{}]{next}}}",
            rows.join(",")
        );
        let mut response = json_response(StatusCode::OK, body);
        page.mark(&mut response);
        Ok(response)
    }

    /// The `$expand` of `options`, resolved against the declared tables.
    fn expands(&self, options: &odata::Options) -> Result<Vec<expand::Expand>, ApiError> {
        let schema = &self.state.runtime.schema();
        options.expand.as_deref().map_or(Ok(Vec::new()), |text| {
            expand::parse(schema, &self.table, text)
        })
    }

    /// For each row, its expanded navigation properties as (name, JSON text): the related rows, read by
    /// RetrieveMultiple per related table (see the `expand` module): an object (or null) for a
    /// single-valued property, an array for a collection-valued one.
    async fn expanded(
        &self,
        expands: &[expand::Expand],
        rows: &[Entity],
        options: &odata::Options,
    ) -> Result<Vec<Vec<(String, String)>>, ApiError> {
        let annotations = self.annotations()?;
        let mut per_row = vec![Vec::new(); rows.len()];
        let parent = self.table.logical_name.as_str();
        for e in expands {
            let target = &e.target;
            let object = |related: &Entity| {
                json::entity_to_json(target, related, e.select.as_deref(), None, annotations)
            };
            let array = |items: &mut dyn Iterator<Item = &Entity>| {
                let top = e.top.map_or(usize::MAX, |t| t as usize);
                let texts: Vec<String> = items.take(top).map(object).collect();
                format!("[{}]", texts.join(","))
            };
            let row_id = |r: &Entity| r.id.map(convert::uuid);
            match &e.kind {
                expand::Kind::Lookup { attribute } => {
                    let ids: Vec<Uuid> = rows
                        .iter()
                        .filter_map(|r| expand::related_id(r, attribute, &target.logical_name))
                        .collect();
                    let key = &target.primary_id_attribute;
                    let found = expand::by_id(
                        self.read_all(expand::queries(e, parent, key, &ids), options)
                            .await?,
                    );
                    for (row, extra) in rows.iter().zip(per_row.iter_mut()) {
                        let text = expand::related_id(row, attribute, &target.logical_name)
                            .and_then(|id| found.get(&id))
                            .map_or_else(|| "null".to_owned(), object);
                        extra.push((e.nav.clone(), text));
                    }
                }
                expand::Kind::OneToMany { attribute } => {
                    let parents: Vec<Uuid> = rows.iter().filter_map(row_id).collect();
                    let related = self
                        .read_all(expand::queries(e, parent, attribute, &parents), options)
                        .await?;
                    let mut groups: std::collections::HashMap<Uuid, Vec<&Entity>> =
                        std::collections::HashMap::new();
                    for r in &related {
                        if let Some(p) = expand::related_id(r, attribute, parent) {
                            groups.entry(p).or_default().push(r);
                        }
                    }
                    for (row, extra) in rows.iter().zip(per_row.iter_mut()) {
                        let items = row_id(row).and_then(|id| groups.get(&id));
                        let text = array(&mut items.into_iter().flatten().copied());
                        extra.push((e.nav.clone(), text));
                    }
                }
                expand::Kind::ManyToMany { relationship } => {
                    let links = self.links(relationship, rows).await?;
                    let ids: Vec<Uuid> = links.iter().flatten().copied().collect();
                    let key = &target.primary_id_attribute;
                    let related = self
                        .read_all(expand::queries(e, parent, key, &ids), options)
                        .await?;
                    for ((linked, extra), _) in links.iter().zip(per_row.iter_mut()).zip(rows) {
                        // In the query's order (the nested $orderby), the rows this one is linked to.
                        let text = array(
                            &mut related
                                .iter()
                                .filter(|r| row_id(r).is_some_and(|id| linked.contains(&id))),
                        );
                        extra.push((e.nav.clone(), text));
                    }
                }
            }
        }
        Ok(per_row)
    }

    /// `GET {set}?$apply=…` (see `apply`): the rows `$filter` and the `filter(…)` steps keep, read by one
    /// RetrieveMultiple of at most `apply::RECORD_LIMIT` rows, aggregated.
    async fn apply(&self, pairs: &[(String, String)], text: &str) -> Result<Response, ApiError> {
        let mut rest = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "$apply" => {}
                "$filter" | "tag" => rest.push((k.clone(), v.clone())),
                other => {
                    return Err(ApiError::url(format!(
                        "The query option '{other}' cannot be combined with $apply (only $filter can)."
                    )));
                }
            }
        }
        let options = odata::parse_in(
            &self.state.runtime.schema(),
            &self.table,
            &rest,
            odata::Allowed::Collection,
        )?;
        let apply = apply::Apply::parse(&self.table, text)?;
        let mut conditions: Vec<weft_store::Condition> =
            options.filter.clone().into_iter().collect();
        conditions.extend(apply.filters.iter().cloned());
        let mut columns = apply.columns();
        if columns.is_empty() {
            columns.push(self.table.primary_id_attribute.clone());
        }
        let query = StoreQuery {
            table: self.table.logical_name.clone(),
            columns: Some(columns),
            filter: match conditions.len() {
                0 => None,
                1 => conditions.pop(),
                _ => Some(weft_store::Condition::And(conditions)),
            },
            orders: Vec::new(),
            top: Some(apply::RECORD_LIMIT as u32 + 1),
            skip: 0,
        };
        let entities = self.retrieve_rows(query, options.tag.clone()).await?;
        if entities.len() > apply::RECORD_LIMIT {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x8004e023",
                format!(
                    "AggregateQueryRecordLimit exceeded. Cannot perform this operation. (An aggregate reads at \
                     most {} records: narrow it with $filter.)",
                    apply::RECORD_LIMIT
                ),
            ));
        }
        let rows = apply.rows(&self.table, &entities);
        let body = format!(
            "{{\"@odata.context\":{},\"value\":[{}]}}",
            serde_json::Value::String(format!(
                "{}/$metadata#{}",
                self.base, self.table.entity_set_name
            )),
            rows.join(",")
        );
        Ok(json_response(StatusCode::OK, body))
    }

    /// `GET {set}?fetchXml=…` (see `fetch`): translated into the collection's own options (or `$apply` for
    /// an aggregate fetch); `count`/`page` page it, answered with Dataverse's `morerecords` and paging
    /// cookie annotations.
    async fn fetch_xml(&self, xml: &str) -> Result<Response, ApiError> {
        if let Some((other, _)) = self
            .pairs
            .iter()
            .find(|(k, _)| k != "fetchXml" && k != "tag")
        {
            return Err(ApiError::url(format!(
                "The query option '{other}' cannot be combined with fetchXml."
            )));
        }
        let schema = &self.state.runtime.schema();
        let t = fetch::translate(schema, &self.table, xml)?;
        if let Some(apply) = &t.apply {
            return self.apply(&t.pairs, apply).await;
        }
        let options = odata::parse_in(schema, &self.table, &t.pairs, odata::Allowed::Collection)?;
        let expands = if t.expand.is_empty() {
            Vec::new()
        } else {
            expand::parse(schema, &self.table, &t.expand.join(","))?
        };
        let (size, page) = t.page.unwrap_or((paging::DEFAULT_PAGE_SIZE, 1));
        let size = options.top.map_or(size, |top| top.min(size));
        let query = StoreQuery {
            table: self.table.logical_name.clone(),
            columns: read_columns(&options.select, &expands),
            filter: options.filter.clone(),
            orders: options.orders.clone(),
            top: Some(size + 1),
            skip: u64::from(page.saturating_sub(1)).saturating_mul(u64::from(size)),
        };
        let mut entities = self.retrieve_rows(query, options.tag.clone()).await?;
        let more = entities.len() > size as usize && options.top.is_none();
        entities.truncate(size as usize);
        let annotations = self.annotations()?;
        if annotations.formatted_value {
            self.name_lookups(&mut entities, &options).await?;
        }
        let select = options.select.as_deref();
        let linked = if expands.is_empty() {
            Vec::new()
        } else {
            self.expanded(&expands, &entities, &options).await?
        };
        let rows: Vec<String> = entities
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let row = json::entity_to_json(&self.table, e, select, None, annotations);
                match linked.get(i) {
                    Some(extra) => with_properties(row, &fetch::aliased_values(&t.aliased, extra)),
                    None => row,
                }
            })
            .collect();
        let paging = if t.page.is_some() {
            let cookie = format!(
                "<cookie pagenumber=\"{}\" pagingcookie=\"\" istracking=\"False\" />",
                page + 1
            );
            format!(
                ",\"@Microsoft.Dynamics.CRM.fetchxmlpagingcookie\":{},\"@Microsoft.Dynamics.CRM.morerecords\":{more}",
                serde_json::Value::String(cookie)
            )
        } else {
            String::new()
        };
        let body = format!(
            "{{\"@odata.context\":{}{paging},\"value\":[{}]}}",
            serde_json::Value::String(self.context_url(select, false)),
            rows.join(",")
        );
        Ok(json_response(StatusCode::OK, body))
    }

    /// Gives the rows' lookups the primary names of the rows they point at (their FormattedValue, as
    /// Dataverse annotates them): one RetrieveMultiple of ids and names per target table and 500 ids.
    /// Lookups to tables weft does not hold (`systemuser`, `team`) keep no name.
    async fn name_lookups(
        &self,
        rows: &mut [Entity],
        options: &odata::Options,
    ) -> Result<(), ApiError> {
        use crate::sandbox::wit::types::Value as WitValue;
        let schema = &self.state.runtime.schema();
        let mut wanted: std::collections::BTreeMap<String, Vec<Uuid>> = Default::default();
        for row in rows.iter() {
            for a in &row.attributes {
                if let WitValue::EntityReference(r) = &a.value
                    && r.name.is_none()
                    && schema.table(&r.logical_name).is_some()
                {
                    wanted
                        .entry(r.logical_name.clone())
                        .or_default()
                        .push(convert::uuid(r.id));
                }
            }
        }
        // By table, then id: looking a lookup up allocates nothing.
        let mut names: std::collections::HashMap<String, std::collections::HashMap<Uuid, String>> =
            Default::default();
        for (table, mut ids) in wanted {
            let Some(t) = schema.table(&table) else {
                continue;
            };
            ids.sort_unstable();
            ids.dedup();
            let queries = ids.chunks(expand::IDS_PER_QUERY).map(|chunk| StoreQuery {
                table: table.clone(),
                columns: Some(vec![
                    t.primary_id_attribute.clone(),
                    t.primary_name_attribute.clone(),
                ]),
                filter: Some(weft_store::Condition::Or(
                    chunk
                        .iter()
                        .map(|id| {
                            weft_store::Condition::Eq(
                                t.primary_id_attribute.clone(),
                                weft_store::Value::Guid(*id),
                            )
                        })
                        .collect(),
                )),
                orders: Vec::new(),
                top: None,
                skip: 0,
            });
            for related in self.read_all(queries.collect(), options).await? {
                let name = related.attributes.iter().find_map(|a| match &a.value {
                    WitValue::String(n) if a.name == t.primary_name_attribute => Some(n.clone()),
                    _ => None,
                });
                if let (Some(id), Some(name)) = (related.id, name) {
                    names
                        .entry(table.clone())
                        .or_default()
                        .insert(convert::uuid(id), name);
                }
            }
        }
        for row in rows.iter_mut() {
            for a in &mut row.attributes {
                if let WitValue::EntityReference(r) = &mut a.value
                    && r.name.is_none()
                {
                    r.name = names
                        .get(r.logical_name.as_str())
                        .and_then(|by_id| by_id.get(&convert::uuid(r.id)))
                        .cloned();
                }
            }
        }
        Ok(())
    }

    /// The rows `query` matches: a RetrieveMultiple through the pipeline (its steps fire).
    async fn retrieve_rows(
        &self,
        query: StoreQuery,
        tag: Option<String>,
    ) -> Result<Vec<Entity>, ApiError> {
        let response = self
            .execute(self.request(Message::RetrieveMultiple { query }, tag)?)
            .await?;
        match response {
            OrganizationResponse::RetrieveMultiple { collection } => Ok(collection.entities),
            other => Err(unexpected(&other)),
        }
    }

    /// The rows of `queries`, each a RetrieveMultiple through the pipeline, in order.
    async fn read_all(
        &self,
        queries: Vec<StoreQuery>,
        options: &odata::Options,
    ) -> Result<Vec<Entity>, ApiError> {
        let mut out = Vec::new();
        for query in queries {
            let entities = self.retrieve_rows(query, options.tag.clone()).await?;
            out.extend(entities);
        }
        Ok(out)
    }

    /// For each row, the ids it is linked to through N:N `relationship` (committed links).
    async fn links(&self, relationship: &str, rows: &[Entity]) -> Result<Vec<Vec<Uuid>>, ApiError> {
        let table = self.table.logical_name.clone();
        let ids: Vec<Option<Uuid>> = rows.iter().map(|r| r.id.map(convert::uuid)).collect();
        let (runtime, relationship) = (Arc::clone(&self.state.runtime), relationship.to_owned());
        blocking(move || {
            runtime
                .store
                .read(|r| {
                    ids.iter()
                        .map(|id| match id {
                            Some(id) => r
                                .related(
                                    &relationship,
                                    &weft_store::EntityRef {
                                        logical_name: table.clone(),
                                        id: *id,
                                    },
                                )
                                .map(|refs| refs.into_iter().map(|r| r.id).collect()),
                            None => Ok(Vec::new()),
                        })
                        .collect::<Result<Vec<Vec<Uuid>>, StoreError>>()
                })
                .map_err(PipelineError::Store)
        })
        .await
    }

    /// How many rows `options`' filter matches, counting at most [`COUNT_LIMIT`] (as Dataverse does), and
    /// whether there are more. A RetrieveMultiple of its own, of the primary ids only (RetrieveMultiple
    /// steps fire for it too): the rows of the page being answered cannot tell the total.
    async fn count(&self, options: &odata::Options) -> Result<(usize, bool), ApiError> {
        let query = StoreQuery {
            table: self.table.logical_name.clone(),
            columns: Some(vec![self.table.primary_id_attribute.clone()]),
            filter: options.filter.clone(),
            orders: Vec::new(),
            top: Some(COUNT_LIMIT + 1),
            skip: 0,
        };
        let entities = self.retrieve_rows(query, options.tag.clone()).await?;
        let n = entities.len();
        let limit = COUNT_LIMIT as usize;
        Ok((n.min(limit), n > limit))
    }

    /// `GET {set}/$count`: the number of rows (`$filter` applies), as text.
    async fn count_only(&self) -> Result<Response, ApiError> {
        let options = odata::parse_in(
            &self.state.runtime.schema(),
            &self.table,
            &self.pairs,
            odata::Allowed::Collection,
        )?;
        let refused = [
            ("$select", options.select.is_some()),
            ("$top", options.top.is_some()),
            ("$orderby", !options.orders.is_empty()),
            ("$count", options.count),
        ];
        if let Some((name, _)) = refused.iter().find(|(_, given)| *given) {
            return Err(ApiError::url(format!(
                "The query option '{name}' does not apply to /$count (only $filter and tag do)."
            )));
        }
        let (n, _) = self.count(&options).await?;
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain;charset=utf-8")],
            n.to_string(),
        )
            .into_response())
    }

    /// `PATCH {set}(id)`: Dataverse's upsert. An existing row is updated (Update's pipeline); a missing one
    /// is created with that id (Create's pipeline). `If-Match: *` prevents the create (404 when missing),
    /// `If-None-Match: *` prevents the update (412 when present). With `return=representation` the row
    /// comes back: 201 when it was created, 200 when updated.
    async fn update(&self, id: Uuid, body: &[u8]) -> Result<Response, ApiError> {
        let options = odata::parse(&self.table, &self.pairs, odata::Allowed::Record)?;
        let precondition = Precondition::from_headers(self)?;
        let schema = &self.state.runtime.schema();
        let body = self.resolve_key_binds(body).await?;
        let mut target = json::entity_from_body(schema, &self.table, &body, Some(id))?;
        let representation = self.wants_representation()?;
        let create = match precondition {
            Precondition::UpdateOnly | Precondition::UpdateIfVersion(_) => false,
            Precondition::CreateOnly => true,
            Precondition::Upsert => self.key_missing || !self.exists(id).await?,
        };
        // Addressed by an alternate key: the row holds the key's values (a body may not change them).
        for (name, value) in self.key.iter().flatten() {
            let value = convert::from_store(value);
            match target.attributes.iter().find(|a| a.name == *name) {
                Some(a) if a.value != value => {
                    return Err(ApiError::payload(format!(
                        "'{name}' is part of the key the URL addresses the record by: the body cannot change it."
                    )));
                }
                Some(_) => {}
                None if create => target
                    .attributes
                    .push(crate::sandbox::wit::types::Attribute {
                        name: name.clone(),
                        value,
                    }),
                None => {}
            }
        }
        let created = if create {
            let request = self.request(
                Message::Create {
                    target: target.clone(),
                },
                options.tag.clone(),
            )?;
            match execute_pipeline(&self.state.runtime, request).await? {
                Ok(_) => true,
                Err(PipelineError::Store(StoreError::DuplicateId { table, id: dup }))
                    if precondition == Precondition::CreateOnly
                        && table == self.table.logical_name
                        && dup == id =>
                {
                    return Err(ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        "0x80040237",
                        "A record with matching key values already exists.",
                    ));
                }
                // Created by another request since the existence check: it is there now, so this upsert
                // updates it, as it would have a moment later.
                Err(PipelineError::Store(StoreError::DuplicateId { table, id: dup }))
                    if table == self.table.logical_name && dup == id =>
                {
                    self.execute(self.request(Message::Update { target }, options.tag.clone())?)
                        .await?;
                    false
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            let mut request = self.request(Message::Update { target }, options.tag.clone())?;
            if let Precondition::UpdateIfVersion(v) = precondition {
                request.if_row_version = Some(v);
            }
            self.execute(request).await?;
            false
        };
        // The write is committed: a failed read-back answers 204 without Preference-Applied.
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let row = if representation {
            self.representation(id, &options, status, None).await.ok()
        } else {
            None
        };
        match row {
            Some(mut r) => {
                r.headers_mut().insert(
                    "Preference-Applied",
                    HeaderValue::from_static("return=representation"),
                );
                Ok(r)
            }
            None => {
                let mut r = StatusCode::NO_CONTENT.into_response();
                if let Ok(v) = HeaderValue::from_str(&self.entity_url(id)) {
                    r.headers_mut().insert("OData-EntityId", v);
                }
                Ok(r)
            }
        }
    }

    /// Whether row `id` of the addressed table exists now (committed data, or in a `$batch` change set
    /// what its transaction sees; no Retrieve steps fire).
    async fn exists(&self, id: Uuid) -> Result<bool, ApiError> {
        let table = self.table.logical_name.clone();
        if let Some(change_set) = batch::ChangeSet::current() {
            return change_set.exists(table, id).await.map_err(ApiError::from);
        }
        let runtime = Arc::clone(&self.state.runtime);
        let columns = vec![self.table.primary_id_attribute.clone()];
        blocking(move || {
            runtime
                .store
                .read(|r| r.retrieve(&table, id, Some(&columns)))
                .map(|row| row.is_some())
                .map_err(PipelineError::Store)
        })
        .await
    }

    async fn delete(&self, id: Uuid) -> Result<Response, ApiError> {
        let options = odata::parse(&self.table, &self.pairs, odata::Allowed::Record)?;
        if options.select.is_some() {
            return Err(ApiError::url("$select does not apply to a DELETE."));
        }
        if self.header("If-None-Match")?.is_some() {
            return Err(ApiError::url(
                "If-None-Match does not apply to a DELETE: send If-Match with the record's ETag to delete it \
                 only while it is unchanged.",
            ));
        }
        let message = Message::Delete {
            table: self.table.logical_name.clone(),
            id,
        };
        let mut request = self.request(message, options.tag)?;
        match self.header("If-Match")? {
            None => {}
            Some(v) if v.trim() == "*" => {}
            Some(v) => request.if_row_version = Some(etag::parse("If-Match", v)?),
        }
        self.execute(request).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// The value of header `name`, if sent; an error when it is not ASCII text.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::url(format!("The header '{name}' is not ASCII text.")))
        })
        .transpose()
}

/// An OrganizationRequest for `message` carrying the caller's optional parameters, the same for table
/// operations and Custom APIs: `tag`, the `MSCRM.BypassBusinessLogicExecution[StepIds]` and
/// `MSCRM.BypassCustomPluginExecution` headers, and `MSCRMCallerID` (impersonation by systemuserid).
fn caller_request(
    headers: &HeaderMap,
    message: Message,
    tag: Option<String>,
) -> Result<OrganizationRequest, ApiError> {
    let mut r = OrganizationRequest::new(message);
    r.tag = tag;
    if let Some(v) = header(headers, "MSCRM.BypassBusinessLogicExecution")? {
        r = r
            .bypass_business_logic(v)
            .map_err(|e| ApiError::url(format!("MSCRM.{e}")))?;
    }
    if let Some(v) = header(headers, "MSCRM.BypassBusinessLogicExecutionStepIds")? {
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            r.bypass_step_ids.push(Uuid::parse_str(part).map_err(|_| {
                ApiError::url(format!(
                    "MSCRM.BypassBusinessLogicExecutionStepIds: '{part}' is not a GUID."
                ))
            })?);
        }
    }
    match header(headers, "MSCRM.BypassCustomPluginExecution")? {
        None | Some("false") => {}
        Some("true") => r.bypass_sync = true,
        Some(other) => {
            return Err(ApiError::url(format!(
                "MSCRM.BypassCustomPluginExecution: '{other}' is not true or false."
            )));
        }
    }
    if let Some(id) = caller_id(headers)? {
        r.user_id = id;
    }
    // Impersonating by Microsoft Entra object id needs Entra users, which weft does not have: refused
    // rather than ignored, so the operation never silently runs as the default user.
    if header(headers, "CallerObjectId")?.is_some() {
        return Err(ApiError::url(
            "CallerObjectId is not supported (weft has no Microsoft Entra ID users): impersonate with \
             MSCRMCallerID and a systemuserid.",
        ));
    }
    Ok(r)
}

/// The user a request impersonates with `MSCRMCallerID`, if it does.
fn caller_id(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    header(headers, "MSCRMCallerID")?
        .map(|v| {
            Uuid::parse_str(v.trim())
                .map_err(|_| ApiError::url(format!("MSCRMCallerID: '{v}' is not a GUID.")))
        })
        .transpose()
}

/// Runs `request` through the pipeline on a blocking thread.
async fn execute(
    runtime: &Arc<Runtime>,
    request: OrganizationRequest,
) -> Result<OrganizationResponse, ApiError> {
    execute_pipeline(runtime, request)
        .await?
        .map_err(ApiError::from)
}

/// [`execute`] keeping the pipeline's error, for callers that answer some failures their own way.
async fn execute_pipeline(
    runtime: &Arc<Runtime>,
    request: OrganizationRequest,
) -> Result<Result<OrganizationResponse, PipelineError>, ApiError> {
    // A `$batch` change set's request runs in the change set's transaction.
    if let Some(change_set) = batch::ChangeSet::current() {
        return Ok(change_set.execute(request).await);
    }
    let runtime = Arc::clone(runtime);
    // The request's span (telemetry) stays the parent of the operation's on the blocking thread.
    let trace = crate::telemetry::carry();
    tokio::task::spawn_blocking(move || {
        let _trace = trace.attach();
        runtime.pipeline.execute(request)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "0x80040216",
            format!("the operation did not complete: {e}"),
        )
    })
}

/// What a PATCH's `If-Match` / `If-None-Match` headers allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precondition {
    /// Neither header: update or create.
    Upsert,
    /// `If-Match: *`: update an existing row only.
    UpdateOnly,
    /// `If-None-Match: *`: create only.
    CreateOnly,
    /// `If-Match` with an ETag: update the existing row only while it has this version (412 otherwise).
    UpdateIfVersion(i64),
}

impl Precondition {
    fn from_headers(call: &Call) -> Result<Precondition, ApiError> {
        match (call.header("If-Match")?, call.header("If-None-Match")?) {
            (Some(_), Some(_)) => Err(ApiError::url(
                "If-Match and If-None-Match cannot both be sent: If-Match: * prevents the create of an \
                 upsert, If-None-Match: * its update.",
            )),
            (Some(m), None) if m.trim() == "*" => Ok(Precondition::UpdateOnly),
            (Some(m), None) => Ok(Precondition::UpdateIfVersion(etag::parse("If-Match", m)?)),
            (None, Some(n)) if n.trim() == "*" => Ok(Precondition::CreateOnly),
            (None, Some(_)) => Err(ApiError::url(
                "If-None-Match with an ETag applies to a GET only; in a PATCH only If-None-Match: * (create, \
                 never update) is meaningful.",
            )),
            (None, None) => Ok(Precondition::Upsert),
        }
    }
}

fn unexpected(response: &OrganizationResponse) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "0x80040216",
        format!("the pipeline answered with an unexpected response: {response:?}"),
    )
}

/// Runs a pipeline call that waits (a store commit, maybe a compilation) on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PipelineError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "0x80040216",
                format!("the change did not complete: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// A record's answer: `@odata.context`, then the row's fields.
pub(super) fn record(status: StatusCode, context: String, row: serde_json::Value) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("@odata.context".into(), serde_json::Value::String(context));
    if let serde_json::Value::Object(fields) = row {
        body.extend(fields);
    }
    json_response(status, serde_json::Value::Object(body).to_string())
}

/// The columns a read asks the store for: the `$select`ed ones plus the lookups `$expand` follows (which
/// the answer writes only when selected).
fn read_columns(select: &Option<Vec<String>>, expands: &[expand::Expand]) -> Option<Vec<String>> {
    select.as_ref().map(|s| {
        let mut columns = s.clone();
        // Every record carries its `@odata.etag`, selected or not.
        let version = platform::VERSION_NUMBER.to_owned();
        if !columns.contains(&version) {
            columns.push(version);
        }
        for e in expands {
            if let expand::Kind::Lookup { attribute } = &e.kind
                && !columns.contains(attribute)
            {
                columns.push(attribute.clone());
            }
        }
        columns
    })
}

/// `object` (a JSON object's text) with `extra` (name, JSON text) properties appended.
fn with_properties(mut object: String, extra: &[(String, String)]) -> String {
    if extra.is_empty() || !object.ends_with('}') {
        return object;
    }
    object.pop();
    for (name, value) in extra {
        if object.len() > 1 {
            object.push(',');
        }
        object.push_str(&serde_json::Value::String(name.clone()).to_string());
        object.push(':');
        object.push_str(value);
    }
    object.push('}');
    object
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/json; odata.metadata=minimal",
        )],
        body,
    )
        .into_response()
}
