//! `POST $batch`: several Web API requests in one HTTP request, as Dataverse runs them.
//!
//! Each request is answered by the API's own routes, in order, so a request means in a batch exactly
//! what it means alone. A **change set** is all or nothing: its requests run in one pipeline transaction
//! ([`crate::pipeline::Transaction`], Dataverse's ExecuteTransaction) held by a blocking thread, and the
//! routes reach it through a task-local [`ChangeSet`] handle that [`super::execute`] checks; on the first
//! failure the whole change set rolls back and its answer is that failure alone. `Content-ID` references
//! (`$1` at the start of a URL, or as an `@odata.bind` value) name a row created earlier in the same change
//! set. Without `Prefer: odata.continue-on-error` the batch stops at the first failed request or change
//! set, as Dataverse's does.
//!
//! Owns the batch's order, transactions and references; the wire format is `multipart`'s. It must not
//! interpret table requests itself: the routes do.

mod multipart;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt as _;
use uuid::Uuid;

use super::error::{ApiError, BAD_URL};
use super::{AppState, PREFIX, json, read_body};
use crate::pipeline::{OrganizationRequest, OrganizationResponse, PipelineError, Transaction};
use multipart::{Answer, Item, PartRequest, PartResponse};

/// Dataverse's limit: at most 1,000 requests in one batch.
const MAX_REQUESTS: usize = 1_000;
/// The largest answer of one request kept for the batch's answer (a page of 5,000 wide rows fits).
const MAX_PART_ANSWER_BYTES: usize = 64 << 20;

tokio::task_local! {
    /// Set while a change set's request runs: its pipeline calls go to the change set's transaction.
    static CHANGE_SET: ChangeSet;
}

/// What a route's pipeline call asks of the change set's transaction.
enum Command {
    // Boxed: a request is much larger than the other commands.
    Execute(
        Box<OrganizationRequest>,
        oneshot::Sender<Result<OrganizationResponse, PipelineError>>,
    ),
    Exists(String, Uuid, oneshot::Sender<Result<bool, PipelineError>>),
    Commit,
}

/// The handle a change set's requests reach its transaction through.
#[derive(Clone)]
pub(super) struct ChangeSet(mpsc::UnboundedSender<Command>);

impl ChangeSet {
    /// The change set the current request runs in, if any.
    pub(super) fn current() -> Option<ChangeSet> {
        CHANGE_SET.try_with(Clone::clone).ok()
    }

    /// Runs `request` in the change set's transaction.
    pub(super) async fn execute(
        &self,
        request: OrganizationRequest,
    ) -> Result<OrganizationResponse, PipelineError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Command::Execute(Box::new(request), reply))
            .map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }

    /// Whether row `id` of `table` exists in the change set's view (its own writes included).
    pub(super) async fn exists(&self, table: String, id: Uuid) -> Result<bool, PipelineError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Command::Exists(table, id, reply))
            .map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }
}

fn ended() -> PipelineError {
    PipelineError::Invalid("the change set's transaction has ended".into())
}

/// Serves a change set's commands on the transaction's thread until it is told to commit (Ok) or its
/// requests stop coming (Err: roll back). A failed request poisons the transaction: the commit fails
/// with that request's error, since its partial writes cannot be told apart from the others'.
fn serve(
    transaction: &mut Transaction<'_>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Result<(), PipelineError> {
    let mut failed: Option<PipelineError> = None;
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::Execute(request, reply) => {
                let result = transaction.execute(*request);
                if let Err(e) = &result
                    && failed.is_none()
                {
                    failed = Some(e.clone());
                }
                let _ = reply.send(result);
            }
            Command::Exists(table, id, reply) => {
                let _ = reply.send(transaction.exists(&table, id));
            }
            Command::Commit => return failed.map_or(Ok(()), Err),
        }
    }
    Err(PipelineError::Invalid(
        "the change set was abandoned".into(),
    ))
}

/// `POST /api/data/v9.2/$batch`.
pub(super) async fn handle(State(state): State<AppState>, request: Request) -> Response {
    run(state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run(state: AppState, request: Request) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            BAD_URL,
            format!("{} is not supported on $batch (POST).", request.method()),
        ));
    }
    let (parts, body) = request.into_parts();
    let content_type = super::header(&parts.headers, "Content-Type")?.unwrap_or("");
    let boundary = multipart::boundary(content_type).map_err(|e| ApiError::payload(e.0))?;
    let body = read_body(body, state.limits.body_bytes, &state.limits).await?;
    let items = multipart::parse(&body, &boundary, MAX_REQUESTS)
        .map_err(|e| ApiError::payload(format!("The $batch body cannot be read: {e}.")))?;
    let continue_on_error = super::header(&parts.headers, "Prefer")?
        .is_some_and(|p| p.split(',').any(|p| p.trim() == "odata.continue-on-error"));
    let batch = Batch {
        routes: super::routes(state.clone()),
        state,
        outer: parts.headers,
    };
    let mut answers = Vec::new();
    for item in items {
        let (answer, failed) = match item {
            Item::Request(request) => {
                let answer = batch.dispatch(request, &[]).await;
                let failed = answer.status >= 400;
                (Answer::Single(answer), failed)
            }
            Item::ChangeSet(requests) => batch.change_set(requests).await,
        };
        answers.push(answer);
        if failed && !continue_on_error {
            break;
        }
    }
    let boundary = format!("batchresponse_{}", Uuid::new_v4());
    let text = multipart::write(&answers, &boundary, &|| {
        format!("changesetresponse_{}", Uuid::new_v4())
    });
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert("OData-Version", HeaderValue::from_static("4.0"));
    Ok(response)
}

struct Batch {
    state: AppState,
    /// The routes every part is answered by, built once for the batch.
    routes: axum::Router,
    /// The `$batch` request's own headers: `Host` (answers' URLs) and the caller's identity carry over.
    outer: HeaderMap,
}

impl Batch {
    /// Runs a change set in one transaction: its answers when every request succeeded and the commit
    /// was durable; else the first failure alone (and `true`).
    async fn change_set(&self, requests: Vec<PartRequest>) -> (Answer, bool) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let pipeline = self.state.runtime.pipeline.clone();
        let trace = crate::telemetry::carry();
        let worker = tokio::task::spawn_blocking(move || {
            let _trace = trace.attach();
            pipeline.transaction(|transaction| serve(transaction, receiver))
        });
        let handle = ChangeSet(commands.clone());
        let mut answers: Vec<PartResponse> = Vec::new();
        let mut failure = None;
        for request in requests {
            let content_id = request.content_id.clone();
            let answer = match self.in_change_set(&request) {
                Ok(()) => {
                    CHANGE_SET
                        .scope(handle.clone(), self.dispatch(request, &answers))
                        .await
                }
                Err(e) => error_part(content_id, e),
            };
            if answer.status >= 400 {
                failure = Some(answer);
                break;
            }
            answers.push(answer);
        }
        if failure.is_none() {
            let _ = commands.send(Command::Commit);
        }
        drop(handle);
        drop(commands);
        let committed = match worker.await {
            Ok(result) => result.map_err(ApiError::from),
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "0x80040216",
                format!("the change set did not complete: {e}"),
            )),
        };
        match (failure, committed) {
            (Some(answer), _) => (Answer::Single(answer), true),
            (None, Ok(())) => (Answer::ChangeSet(answers), false),
            // A request's pipeline call failed though its route answered (a read-back, say), or the
            // commit failed: nothing was written.
            (None, Err(e)) => (Answer::Single(error_part(None, e)), true),
        }
    }

    /// A change set holds writes to table rows and Custom API calls, whose pipeline calls can join its
    /// transaction; nothing else.
    fn in_change_set(&self, request: &PartRequest) -> Result<(), ApiError> {
        if request.method == "GET" {
            return Err(ApiError::url(
                "A change set cannot contain a GET request: put reads outside change sets.",
            ));
        }
        let path = request_path(&request.target);
        if path.starts_with('$') {
            return Ok(());
        }
        let path = path
            .strip_prefix(PREFIX)
            .map_or(path, |p| p.trim_start_matches('/'));
        let segment = path.split(['/', '?']).next().unwrap_or("");
        let name = json::parse_key_segment(segment).map_or(segment, |(set, _)| set);
        let schema = &self.state.runtime.schema();
        if schema.table_by_entity_set(name).is_some()
            || super::custom_api_named(&self.state, super::split_call(segment).0).is_some()
        {
            return Ok(());
        }
        Err(ApiError::url(format!(
            "'{name}' cannot be changed in a change set: only table rows and Custom APIs can \
             (send system and registration requests outside change sets)."
        )))
    }

    /// Answers one request through the API's routes; `earlier` are the change set's answers so far, for
    /// `$n` references.
    async fn dispatch(&self, request: PartRequest, earlier: &[PartResponse]) -> PartResponse {
        let content_id = request.content_id.clone();
        match self.route(request, earlier).await {
            Ok(r) => r,
            Err(e) => error_part(content_id, e),
        }
    }

    async fn route(
        &self,
        request: PartRequest,
        earlier: &[PartResponse],
    ) -> Result<PartResponse, ApiError> {
        let target = resolve_target(&request.target, earlier)?;
        let body = resolve_binds(&request.body, earlier)?;
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| ApiError::url(format!("'{}' is not an HTTP method.", request.method)))?;
        let mut builder = Request::builder().method(method).uri(&target);
        for (name, value) in &request.headers {
            if [
                "host",
                "content-length",
                "authorization",
                "transfer-encoding",
            ]
            .contains(&name.to_ascii_lowercase().as_str())
            {
                continue;
            }
            builder = builder.header(name, value);
        }
        for name in [header::HOST, header::AUTHORIZATION] {
            if let Some(v) = self.outer.get(&name) {
                builder = builder.header(name, v);
            }
        }
        if let Some(v) = self.outer.get("MSCRMCallerID")
            && !request
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("MSCRMCallerID"))
        {
            builder = builder.header("MSCRMCallerID", v);
        }
        let request_out = builder
            .body(Body::from(body))
            .map_err(|e| ApiError::url(format!("The request '{target}' is malformed: {e}.")))?;
        let response = self
            .routes
            .clone()
            .oneshot(request_out)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, MAX_PART_ANSWER_BYTES)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "0x80040216",
                    format!("the answer to '{target}' could not be read: {e}"),
                )
            })?;
        let headers = parts
            .headers
            .iter()
            .filter(|(n, _)| *n != header::CONTENT_LENGTH)
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok(PartResponse {
            content_id: request.content_id,
            status: parts.status.as_u16(),
            reason: parts.status.canonical_reason().unwrap_or("").to_owned(),
            headers,
            body: body.to_vec(),
        })
    }
}

fn error_part(content_id: Option<String>, e: ApiError) -> PartResponse {
    let body = serde_json::json!({"error": {"code": e.code, "message": e.message}});
    PartResponse {
        content_id,
        status: e.status.as_u16(),
        reason: e.status.canonical_reason().unwrap_or("").to_owned(),
        headers: vec![
            (
                "Content-Type".into(),
                "application/json; odata.metadata=minimal".into(),
            ),
            ("OData-Version".into(), "4.0".into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// The path and query of a request target: absolute URLs lose scheme and authority.
fn request_path(target: &str) -> &str {
    for scheme in ["https://", "http://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    target
}

/// The URL a part's request goes to: `$n…` replaced by the row request `n` created or addressed,
/// relative targets put under the API's prefix.
fn resolve_target(target: &str, earlier: &[PartResponse]) -> Result<String, ApiError> {
    let path = request_path(target);
    if let Some(reference) = path.strip_prefix('$') {
        let digits = reference
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
            .unwrap_or(reference.len());
        let (id, rest) = reference.split_at(digits);
        let row = referenced_row(id, earlier)?;
        return Ok(format!("{PREFIX}/{row}{rest}"));
    }
    if path.starts_with('/') {
        if !path.starts_with(&format!("{PREFIX}/")) {
            return Err(ApiError::url(format!(
                "'{target}' is not under {PREFIX}/: a batch's requests address this service."
            )));
        }
        return Ok(path.to_owned());
    }
    Ok(format!("{PREFIX}/{path}"))
}

/// The row (`accounts(<GUID>)`) whose URL the answer with `Content-ID: id` gave.
fn referenced_row(id: &str, earlier: &[PartResponse]) -> Result<String, ApiError> {
    let answer = earlier
        .iter()
        .find(|r| r.content_id.as_deref() == Some(id))
        .ok_or_else(|| {
            ApiError::url(format!(
                "'${id}' names no earlier request of this change set (Content-ID: {id})."
            ))
        })?;
    let url = answer
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("OData-EntityId"))
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            ApiError::url(format!(
                "'${id}': the request with Content-ID {id} did not create or address a row."
            ))
        })?;
    let row = url.rsplit('/').next().unwrap_or(url);
    Ok(row.to_owned())
}

/// A JSON body with `"…@odata.bind": "$n"` values replaced by the referenced row's path; other bodies
/// unchanged (the route reads them, and says what is wrong with them).
fn resolve_binds(body: &[u8], earlier: &[PartResponse]) -> Result<Vec<u8>, ApiError> {
    let Ok(json::RawObject(members)) = serde_json::from_slice::<json::RawObject>(body) else {
        return Ok(body.to_vec());
    };
    let mut changed = false;
    let mut out = Vec::with_capacity(members.len());
    for (name, value) in members {
        if name.ends_with("@odata.bind")
            && let Ok(text) = serde_json::from_str::<String>(value.get())
            && let Some(id) = text.strip_prefix('$')
        {
            let row = format!("/{}", referenced_row(id, earlier)?);
            out.push((name, serde_json::Value::String(row).to_string()));
            changed = true;
        } else {
            out.push((name, value.get().to_owned()));
        }
    }
    if !changed {
        return Ok(body.to_vec());
    }
    let members: Vec<String> = out
        .iter()
        .map(|(n, v)| format!("{}:{v}", serde_json::Value::String(n.clone())))
        .collect();
    Ok(format!("{{{}}}", members.join(",")).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: &str, row: &str) -> PartResponse {
        PartResponse {
            content_id: Some(id.into()),
            status: 204,
            reason: "No Content".into(),
            headers: vec![(
                "OData-EntityId".into(),
                format!("https://h/api/data/v9.2/{row}"),
            )],
            body: Vec::new(),
        }
    }

    #[test]
    fn references_resolve_to_earlier_rows() {
        let earlier = [created(
            "1",
            "accounts(00000000-0000-0000-0000-000000000001)",
        )];
        assert_eq!(
            resolve_target("$1", &earlier).unwrap(),
            "/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)"
        );
        assert_eq!(
            resolve_target("$1/name", &earlier).unwrap(),
            "/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)/name"
        );
        assert_eq!(
            resolve_target("https://x/api/data/v9.2/contacts?$top=1", &earlier).unwrap(),
            "/api/data/v9.2/contacts?$top=1"
        );
        assert_eq!(
            resolve_target("contacts", &earlier).unwrap(),
            "/api/data/v9.2/contacts"
        );
        assert!(
            resolve_target("$2", &earlier)
                .unwrap_err()
                .message
                .contains("Content-ID: 2")
        );
        assert!(resolve_target("/elsewhere/x", &earlier).is_err());

        let body = br#"{"lastname":"L","parentcustomerid_account@odata.bind":"$1","n":1.50}"#;
        let out = String::from_utf8(resolve_binds(body, &earlier).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"lastname":"L","parentcustomerid_account@odata.bind":"/accounts(00000000-0000-0000-0000-000000000001)","n":1.50}"#
        );
        assert_eq!(resolve_binds(b"not json", &earlier).unwrap(), b"not json");
    }
}
