//! System jobs and service endpoints through the Web API: `asyncoperations` (GET the collection with
//! `$filter`/`$orderby`/`$top`/`$select`, GET one job, PATCH `statecode`/`statuscode`/`postponeuntil`) and
//! `serviceendpoints` (GET; POST a new endpoint; PATCH, DELETE one; POST
//! `…(id)/Microsoft.Dynamics.CRM.TriggerServiceEndpointCheck`; the JSON shape is the `endpoints` module's).
//!
//! Owns the translation HTTP ⇄ weft-jobs' [`views`](weft_jobs::views) and [`ops`](weft_jobs::ops) and
//! [`Delivery::check`], and the JSON shape of these rows (Dataverse column names, option-set numbers). It
//! holds no job rules (weft-jobs decides every transition and words every refusal) and never returns a
//! job's `data` (the serialized context) nor an endpoint's secrets (`saskey`, `sastoken`, `authvalue`):
//! only the `is…set` flags.
//!
//! # Differences from Dataverse
//! `$filter` takes `statuscode`, `statecode`, `_owningextensionid_value` and `correlationid` compared with
//! `eq` and joined by `and` (values may be `@alias` parameters); `$orderby` one of `createdon`,
//! `startedon`, `completedon` (ties and the other orders sort in memory). PATCH `statecode`/`statuscode`
//! 3/32 cancels, 1/10 pauses, 0/0 resumes; `postponeuntil` postpones. `serviceendpoints` takes no query
//! options but a next link's `$skiptoken`. Every list is paged (`super::paging`): the store reads one page
//! (and one row more) of jobs and trace rows; jobs ordered by anything but `createdon` (either way) are sorted
//! in memory, at most [`IN_MEMORY_ORDER_LIMIT`] of them. Endpoint changes survive a restart unless `weft.toml` changes the same endpoint.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;
use weft_endpoints::ErrorClass;
use weft_jobs::views::{JobView, ListFilter};
use weft_jobs::{JobAction, JobOpError};
use weft_store::system::{JobState, JobStatus, TraceFilter, TraceLog};
use weft_store::{Read, StoreError, StoreExt};

use super::endpoints::{endpoint_from_body, endpoint_json};
use super::error::{ApiError, BAD_URL};
use super::json::parse_datetime;
use super::paging::{Page, PageKey, SKIP_TOKEN};
use crate::delivery::{Delivery, DeliveryError, EndpointError};
use crate::runtime::Runtime;

/// The system jobs' entity set.
pub const JOBS: &str = "asyncoperations";
/// The service endpoints' entity set.
pub const ENDPOINTS: &str = "serviceendpoints";
/// The check action's path segment.
pub const CHECK: &str = "Microsoft.Dynamics.CRM.TriggerServiceEndpointCheck";
/// The plug-in trace log's entity set.
pub const TRACES: &str = "plugintracelogs";

/// How many matching jobs `$orderby` other than `createdon` sorts in memory at most.
const IN_MEMORY_ORDER_LIMIT: u32 = 5000;

/// The code of a failed check (Dataverse's generic unexpected-error code: the message says what failed).
const CHECK_FAILED: &str = "0x80040216";

/// The `asyncoperation` columns served, in Dataverse's names.
const JOB_COLUMNS: &[&str] = &[
    "asyncoperationid",
    "name",
    "operationtype",
    "messagename",
    "primaryentitytype",
    "_owningextensionid_value",
    "correlationid",
    "depth",
    "createdon",
    "startedon",
    "completedon",
    "postponeuntil",
    "retrycount",
    "errorcode",
    "message",
    "friendlymessage",
    "statecode",
    "statuscode",
];

/// The delivery context the check action posts with when the pipeline has none, made on first use.
pub(super) type Checker = Arc<OnceLock<Arc<Delivery>>>;

/// One request on `asyncoperations` or `serviceendpoints`.
pub(super) struct SystemCall<'a> {
    runtime: Arc<Runtime>,
    checker: Checker,
    base: String,
    set: &'a str,
    id: Option<Uuid>,
    /// The segment after `(id)`: only the check action.
    property: Option<&'a str>,
    /// The query string, parsed by [`SystemCall::handle`] (a malformed one is refused there).
    uri: Uri,
    pairs: Vec<(String, String)>,
    /// Whether the caller asked for `Prefer: return=representation`.
    representation: bool,
    headers: HeaderMap,
    pages: PageKey,
}

impl<'a> SystemCall<'a> {
    pub(super) fn new(
        state: &super::AppState,
        set: &'a str,
        id: Option<Uuid>,
        property: Option<&'a str>,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Self {
        SystemCall {
            runtime: Arc::clone(&state.runtime),
            checker: Arc::clone(&state.checker),
            base: super::base_url(state, headers),
            set,
            id,
            property,
            uri: uri.clone(),
            pairs: Vec::new(),
            representation: super::wants_representation(headers),
            headers: headers.clone(),
            pages: state.pages.clone(),
        }
    }

    /// Whether `set` is served here rather than as a table.
    pub(super) fn owns(set: &str) -> bool {
        set == JOBS || set == ENDPOINTS || set == TRACES
    }

    pub(super) async fn handle(
        mut self,
        method: Method,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        self.pairs = Query::<Vec<(String, String)>>::try_from_uri(&self.uri)
            .map_err(|e| ApiError::url(format!("The query string is malformed: {e}.")))?
            .0;
        if self.set == ENDPOINTS && self.pairs.iter().any(|(k, _)| k != SKIP_TOKEN) {
            return Err(ApiError::url(format!(
                "Query options are not supported on {ENDPOINTS} (but for a next link's {SKIP_TOKEN})."
            )));
        }
        match (self.set, &method, self.id, self.property) {
            (JOBS, &Method::GET, None, None) => self.list_jobs().await,
            (JOBS, &Method::GET, Some(id), None) => self.get_job(id).await,
            (JOBS, &Method::PATCH, Some(id), None) => self.patch_job(id, &body).await,
            (ENDPOINTS, &Method::GET, None, None) => self.list_endpoints().await,
            (ENDPOINTS, &Method::GET, Some(id), None) => self.get_endpoint(id).await,
            (ENDPOINTS, &Method::POST, None, None) => self.create_endpoint(&body).await,
            (ENDPOINTS, &Method::PATCH, Some(id), None) => self.update_endpoint(id, &body).await,
            (ENDPOINTS, &Method::DELETE, Some(id), None) => self.delete_endpoint(id).await,
            (ENDPOINTS, &Method::POST, Some(id), Some(CHECK)) => self.check(id).await,
            (TRACES, &Method::GET, None, None) => self.list_traces().await,
            (_, _, _, Some(p)) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                BAD_URL,
                format!(
                    "Resource not found for the segment '{p}': only POST \
                     serviceendpoints(<GUID>)/{CHECK} addresses an action."
                ),
            )),
            (set, m, _, None) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                BAD_URL,
                format!(
                    "{m} is not supported on {set} (asyncoperations: GET, PATCH a record; \
                     serviceendpoints: GET, POST the collection, PATCH or DELETE a record, POST \
                     serviceendpoints(<GUID>)/{CHECK})."
                ),
            )),
        }
    }

    fn context(&self, entity: bool) -> String {
        let suffix = if entity { "/$entity" } else { "" };
        format!("{}/$metadata#{}{suffix}", self.base, self.set)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Read) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let runtime = Arc::clone(&self.runtime);
        tokio::task::spawn_blocking(move || runtime.store.read(f))
            .await
            .map_err(|e| internal(format!("the read did not complete: {e}")))?
            .map_err(|e| internal(e.to_string()))
    }

    /// The page a collection GET asks for, and its query options without the `$skiptoken`.
    fn page(&self) -> Result<(Page, Vec<(String, String)>), ApiError> {
        let mut pairs = self.pairs.clone();
        let page = Page::from_request(
            &self.pages,
            self.set,
            &mut pairs,
            self.uri.query(),
            &self.headers,
        )?;
        Ok((page, pairs))
    }

    async fn list_jobs(&self) -> Result<Response, ApiError> {
        let (page, pairs) = self.page()?;
        let query = JobQuery::parse(&pairs)?;
        let top = query.top.map(|t| u32::try_from(t).unwrap_or(u32::MAX));
        let mut filter = query.filter.clone();
        let in_store = matches!(query.order, None | Some(("createdon", _)));
        if in_store {
            // The store orders by createdon either way: it reads just the page (and one more).
            filter.newest_first = matches!(query.order, Some((_, true)));
            filter.limit = Some(page.fetch(top));
            filter.skip = page.skip;
        } else {
            // Other orders sort in memory: bounded, and refused past the bound.
            filter.limit = Some(IN_MEMORY_ORDER_LIMIT + 1);
        }
        let mut jobs = self
            .read(move |r| weft_jobs::views::list(r, &filter))
            .await?;
        if !in_store {
            if jobs.len() > IN_MEMORY_ORDER_LIMIT as usize {
                return Err(ApiError::url(format!(
                    "$orderby: more than {IN_MEMORY_ORDER_LIMIT} asyncoperations match, the most that \
                     are ordered by anything but createdon (the limit); narrow the $filter or \
                     order by createdon."
                )));
            }
            if let Some((column, descending)) = query.order {
                jobs.sort_by(|a, b| order_key(a, column).cmp(&order_key(b, column)));
                if descending {
                    jobs.reverse();
                }
            }
            jobs.drain(
                ..usize::try_from(page.skip)
                    .unwrap_or(usize::MAX)
                    .min(jobs.len()),
            );
        }
        let next = page.finish(&mut jobs, top, &self.pages, &self.base);
        let rows: Vec<Json> = jobs
            .iter()
            .map(|j| job_json(j, query.select.as_deref()))
            .collect();
        Ok(page.answer(self.context(false), rows, next))
    }

    async fn get_job(&self, id: Uuid) -> Result<Response, ApiError> {
        let query = JobQuery::parse(&self.pairs)?;
        if query.filter.state.is_some()
            || query.filter.status.is_some()
            || query.filter.step_id.is_some()
            || query.filter.correlation_id.is_some()
            || query.order.is_some()
            || query.top.is_some()
        {
            return Err(ApiError::url(
                "Only $select applies to a single asyncoperation.",
            ));
        }
        let job = self
            .read(move |r| weft_jobs::views::show(r, id))
            .await?
            .ok_or_else(|| job_not_found(id))?;
        Ok(super::record(
            StatusCode::OK,
            self.context(true),
            job_json(&job, query.select.as_deref()),
        ))
    }

    async fn patch_job(&self, id: Uuid, body: &[u8]) -> Result<Response, ApiError> {
        if !self.pairs.is_empty() {
            return Err(ApiError::url("Query options do not apply to a PATCH."));
        }
        let action = job_action(body)?;
        let now = (weft_jobs::system_clock())();
        let store = Arc::clone(&self.runtime.store);
        match weft_jobs::apply(store.as_ref(), id, action, now).await {
            Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(JobOpError::NotFound(id)) => Err(job_not_found(id)),
            Err(JobOpError::Store(e)) => Err(internal(e.to_string())),
            Err(e) => Err(ApiError::payload(e.to_string())),
        }
    }

    /// `GET plugintracelogs`: newest first; `$filter` on `correlationid` and
    /// `_pluginstepid_value` (`eq`, joined by `and`) and `$top`.
    async fn list_traces(&self) -> Result<Response, ApiError> {
        let (page, pairs) = self.page()?;
        let mut filter = TraceFilter::default();
        let mut top = None;
        for (key, value) in &pairs {
            match key.as_str() {
                "$top" => {
                    let value = value.parse::<u32>().map_err(|_| {
                        ApiError::url(format!("$top: `{value}` is not a whole number."))
                    })?;
                    top = Some(value);
                }
                "$filter" => {
                    for clause in value.split(" and ") {
                        let (column, literal) =
                            clause.trim().split_once(" eq ").ok_or_else(|| {
                                ApiError::url(format!(
                                    "$filter: `{clause}` is not `<column> eq <guid>`."
                                ))
                            })?;
                        let id = literal.trim().parse::<Uuid>().map_err(|_| {
                            ApiError::url(format!("$filter: `{literal}` is not a GUID."))
                        })?;
                        match column.trim() {
                            "correlationid" => filter.correlation_id = Some(id),
                            "_pluginstepid_value" => filter.step_id = Some(id),
                            other => {
                                return Err(ApiError::url(format!(
                                    "$filter: `{other}` cannot be filtered on {TRACES} \
                                     (correlationid, _pluginstepid_value)."
                                )));
                            }
                        }
                    }
                }
                other => {
                    return Err(ApiError::url(format!(
                        "The query option `{other}` is not supported on {TRACES} ($filter, $top)."
                    )));
                }
            }
        }
        // The page and one more row, from the page's start: never the whole log in memory.
        filter.limit = Some(page.fetch(top));
        filter.skip = page.skip;
        let mut logs = self.read(move |r| r.trace_logs(&filter)).await?;
        let next = page.finish(&mut logs, top, &self.pages, &self.base);
        let rows: Vec<Json> = logs.iter().map(trace_json).collect();
        Ok(page.answer(self.context(false), rows, next))
    }

    /// Endpoints are registration: few, read whole and paged in memory.
    async fn list_endpoints(&self) -> Result<Response, ApiError> {
        let (page, _) = self.page()?;
        let endpoints = self.read(|r| r.service_endpoints()).await?;
        let (endpoints, next) = page.slice(endpoints, &self.pages, &self.base);
        let rows: Vec<Json> = endpoints.iter().map(endpoint_json).collect();
        Ok(page.answer(self.context(false), rows, next))
    }

    async fn get_endpoint(&self, id: Uuid) -> Result<Response, ApiError> {
        let endpoint = self
            .read(move |r| r.service_endpoint(id))
            .await?
            .ok_or_else(|| endpoint_not_found(id))?;
        Ok(super::record(
            StatusCode::OK,
            self.context(true),
            endpoint_json(&endpoint),
        ))
    }

    async fn create_endpoint(&self, body: &[u8]) -> Result<Response, ApiError> {
        let decl = endpoint_from_body(body, None)?;
        let pipeline = self.runtime.pipeline.clone();
        let row = super::blocking(move || pipeline.create_endpoint(decl)).await?;
        let representation = self.representation.then(|| {
            let mut r = super::record(StatusCode::OK, self.context(true), endpoint_json(&row));
            *r.status_mut() = StatusCode::CREATED;
            r
        });
        super::created(
            &format!("{}/{ENDPOINTS}({})", self.base, row.def.id),
            representation,
        )
    }

    async fn update_endpoint(&self, id: Uuid, body: &[u8]) -> Result<Response, ApiError> {
        let body = body.to_vec();
        let pipeline = self.runtime.pipeline.clone();
        let row = super::blocking(move || {
            pipeline.update_endpoint(
                id,
                Box::new(move |stored| {
                    endpoint_from_body(&body, Some(stored)).map_err(|e| e.message)
                }),
            )
        })
        .await?;
        if self.representation {
            Ok(super::record(
                StatusCode::OK,
                self.context(true),
                endpoint_json(&row),
            ))
        } else {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }

    async fn delete_endpoint(&self, id: Uuid) -> Result<Response, ApiError> {
        let pipeline = self.runtime.pipeline.clone();
        super::blocking(move || pipeline.delete_endpoint(id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// TriggerServiceEndpointCheck: 204 when the endpoint answers with its credentials, else 400 with the
    /// classified, secret-free error.
    async fn check(&self, id: Uuid) -> Result<Response, ApiError> {
        check_endpoint(&self.runtime, &self.checker, id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// TriggerServiceEndpointCheck, for the API and the console: Ok when endpoint `id` answers with its
/// credentials, else the classified, secret-free error. Posts as the host's delivery does (its
/// organization), or, on a server without one, through a client of its own made on first use.
pub(super) async fn check_endpoint(
    runtime: &Arc<Runtime>,
    checker: &Checker,
    id: Uuid,
) -> Result<(), ApiError> {
    let delivery = match runtime.pipeline.delivery().or_else(|| checker.get()) {
        Some(d) => Arc::clone(d),
        None => {
            let made = Delivery::new("weft.local")
                .map_err(|e| internal(format!("starting the endpoint client: {e}")))?;
            // Another request may have raced this one: keep whichever landed first.
            Arc::clone(checker.get_or_init(|| made))
        }
    };
    let reader = Arc::clone(&delivery);
    let store = Arc::clone(&runtime.store);
    let endpoint = tokio::task::spawn_blocking(move || {
        store.read(move |r| Ok::<_, StoreError>(reader.endpoint(r, id)))
    })
    .await
    .map_err(|e| internal(format!("the read did not complete: {e}")))?
    .map_err(|e| internal(e.to_string()))?
    .map_err(|e| match e {
        EndpointError::NotFound(id) => endpoint_not_found(id),
        EndpointError::Store(e) => internal(e.to_string()),
        e @ EndpointError::Config { .. } => ApiError::payload(e.to_string()),
    })?;
    match delivery.check(endpoint).await {
        Ok(()) => Ok(()),
        Err(DeliveryError::Post(e)) => {
            let class = match e.class() {
                ErrorClass::Transient => "transient: posts would be retried",
                ErrorClass::Permanent => "permanent: posts would fail",
                ErrorClass::Auth => "credentials refused: posts would wait for a fix",
            };
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                CHECK_FAILED,
                format!("service endpoint {id}: {e} ({class})"),
            ))
        }
        Err(e) => Err(internal(e.to_string())),
    }
}

/// Parses the query options of an `asyncoperations` GET (for [`super::parse_url`]).
pub(super) fn parse_job_query(pairs: &[(String, String)]) -> Result<(), ApiError> {
    JobQuery::parse(pairs).map(|_| ())
}

/// The parsed query options of `asyncoperations`.
struct JobQuery {
    filter: ListFilter,
    /// Column and whether descending.
    order: Option<(&'static str, bool)>,
    top: Option<usize>,
    select: Option<Vec<String>>,
}

impl JobQuery {
    fn parse(pairs: &[(String, String)]) -> Result<JobQuery, ApiError> {
        let mut q = JobQuery {
            filter: ListFilter::default(),
            order: None,
            top: None,
            select: None,
        };
        let alias = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        for (key, value) in pairs {
            match key.as_str() {
                "$filter" => {
                    for clause in split_and(value) {
                        q.filter_clause(&clause, &alias)?;
                    }
                }
                "$orderby" => {
                    let mut words = value.split_whitespace();
                    let column = match words.next() {
                        Some("createdon") => "createdon",
                        Some("startedon") => "startedon",
                        Some("completedon") => "completedon",
                        other => {
                            return Err(ApiError::url(format!(
                                "$orderby: '{}' is not supported on asyncoperations (createdon, \
                                 startedon or completedon).",
                                other.unwrap_or_default()
                            )));
                        }
                    };
                    let descending = match (words.next(), words.next()) {
                        (None | Some("asc"), None) => false,
                        (Some("desc"), None) => true,
                        _ => {
                            return Err(ApiError::url(format!(
                                "$orderby: '{value}' must be one column then asc or desc."
                            )));
                        }
                    };
                    q.order = Some((column, descending));
                }
                "$top" => {
                    q.top = Some(value.trim().parse().map_err(|_| {
                        ApiError::url(format!("$top: '{value}' is not a non-negative integer."))
                    })?);
                }
                "$select" => {
                    let columns: Vec<String> =
                        value.split(',').map(|c| c.trim().to_owned()).collect();
                    if let Some(bad) = columns.iter().find(|c| !JOB_COLUMNS.contains(&c.as_str())) {
                        return Err(ApiError::url(format!(
                            "$select: '{bad}' is not a column of asyncoperation (one of {}).",
                            JOB_COLUMNS.join(", ")
                        )));
                    }
                    q.select = Some(columns);
                }
                k if k.starts_with('@') => {}
                k => {
                    return Err(ApiError::url(format!(
                        "The query option '{k}' is not supported on asyncoperations ($filter, $orderby, \
                         $top, $select and @aliases)."
                    )));
                }
            }
        }
        Ok(q)
    }

    fn filter_clause<'p>(
        &mut self,
        clause: &str,
        alias: &impl Fn(&str) -> Option<&'p str>,
    ) -> Result<(), ApiError> {
        let bad = |why: &str| ApiError::url(format!("$filter: '{clause}' {why}."));
        let words: Vec<&str> = clause.split_whitespace().collect();
        let [column, "eq", value] = words.as_slice() else {
            return Err(bad(
                "is not '<column> eq <value>' (columns: statuscode, statecode, \
                 _owningextensionid_value, correlationid; clauses joined by 'and')",
            ));
        };
        let value = match value.strip_prefix('@') {
            Some(_) => alias(value)
                .ok_or_else(|| bad(&format!("uses the parameter {value}, which is not given")))?,
            None => value,
        };
        let number = || {
            value
                .parse::<i32>()
                .map_err(|_| bad(&format!("compares with '{value}', which is not an integer")))
        };
        let guid = || {
            Uuid::parse_str(value.trim_matches('\''))
                .map_err(|_| bad(&format!("compares with '{value}', which is not a GUID")))
        };
        match *column {
            "statuscode" => {
                self.filter.status = Some(JobStatus::try_from(number()?).map_err(|e| bad(&e))?)
            }
            "statecode" => {
                self.filter.state = Some(JobState::try_from(number()?).map_err(|e| bad(&e))?)
            }
            "_owningextensionid_value" => self.filter.step_id = Some(guid()?),
            "correlationid" => self.filter.correlation_id = Some(guid()?),
            other => {
                return Err(bad(&format!(
                    "filters on '{other}', which is not supported (statuscode, statecode, \
                     _owningextensionid_value, correlationid)"
                )));
            }
        }
        Ok(())
    }
}

/// The clauses of a `$filter` joined by the word `and`.
fn split_and(filter: &str) -> Vec<String> {
    let mut clauses = vec![Vec::new()];
    for word in filter.split_whitespace() {
        if word.eq_ignore_ascii_case("and") {
            clauses.push(Vec::new());
        } else if let Some(last) = clauses.last_mut() {
            last.push(word);
        }
    }
    clauses.into_iter().map(|c| c.join(" ")).collect()
}

fn order_key<'a>(job: &'a JobView, column: &str) -> Option<&'a str> {
    match column {
        "startedon" => job.startedon.as_deref(),
        "completedon" => job.completedon.as_deref(),
        _ => Some(job.createdon.as_str()),
    }
}

/// The action a PATCH body asks for: `statecode`/`statuscode` or `postponeuntil`, not both.
fn job_action(body: &[u8]) -> Result<JobAction, ApiError> {
    let object: Map<String, Json> = serde_json::from_slice(body)
        .map_err(|e| ApiError::payload(format!("The body is not a JSON object: {e}.")))?;
    let int = |name: &str| -> Result<Option<i64>, ApiError> {
        match object.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::payload(format!("'{name}' must be an integer."))),
        }
    };
    if let Some(other) = object
        .keys()
        .find(|k| !["statecode", "statuscode", "postponeuntil"].contains(&k.as_str()))
    {
        return Err(ApiError::payload(format!(
            "'{other}' cannot be changed on an asyncoperation (statecode, statuscode or postponeuntil)."
        )));
    }
    let (state, status) = (int("statecode")?, int("statuscode")?);
    match (state, status, object.get("postponeuntil")) {
        (None, None, Some(Json::String(text))) => {
            let until_ms = parse_datetime(text)
                .map_err(|e| ApiError::payload(format!("postponeuntil: {e}.")))?;
            Ok(JobAction::Postpone { until_ms })
        }
        (None, None, Some(_)) => Err(ApiError::payload(
            "postponeuntil must be an ISO 8601 date-time string.",
        )),
        (_, _, Some(_)) => Err(ApiError::payload(
            "Change either statecode/statuscode or postponeuntil, not both.",
        )),
        (Some(3) | None, Some(32), None) | (Some(3), None, None) => Ok(JobAction::Cancel),
        (Some(1) | None, Some(10), None) | (Some(1), None, None) => Ok(JobAction::Pause),
        (Some(0) | None, Some(0), None) | (Some(0), None, None) => Ok(JobAction::Resume),
        (None, None, None) => Err(ApiError::payload(
            "The body changes nothing: give statecode/statuscode or postponeuntil.",
        )),
        (state, status, None) => Err(ApiError::payload(format!(
            "statecode {} / statuscode {} is not a change users can make: 3/32 cancels, 1/10 pauses, \
             0/0 resumes.",
            state.map_or("-".into(), |s| s.to_string()),
            status.map_or("-".into(), |s| s.to_string())
        ))),
    }
}

/// A job's row; `data` (the serialized context) is never part of it.
fn job_json(job: &JobView, select: Option<&[String]>) -> Json {
    // Dataverse's errorcode is an Int32 column; the view prints it as hex.
    let errorcode = job.errorcode.as_deref().and_then(|hex| {
        u32::from_str_radix(hex.trim_start_matches("0x"), 16)
            .ok()
            .map(|c| c as i32)
    });
    let all = json!({
        "asyncoperationid": job.asyncoperationid,
        "name": job.name,
        "operationtype": job.operationtype,
        "messagename": job.messagename,
        "primaryentitytype": job.primaryentitytype,
        "_owningextensionid_value": job.owningextensionid,
        "correlationid": job.correlationid,
        "depth": job.depth,
        "createdon": job.createdon,
        "startedon": job.startedon,
        "completedon": job.completedon,
        "postponeuntil": job.postponeuntil,
        "retrycount": job.retrycount,
        "errorcode": errorcode,
        "message": job.message,
        "friendlymessage": job.friendlymessage,
        "statecode": job.statecode,
        "statuscode": job.statuscode,
    });
    match (select, all) {
        (Some(columns), Json::Object(mut map)) => {
            // Like Dataverse, the primary key comes back whatever $select says.
            map.retain(|k, _| k == "asyncoperationid" || columns.iter().any(|c| c == k));
            Json::Object(map)
        }
        (_, all) => all,
    }
}

/// A trace-log row with Dataverse's `plugintracelog` column names (captured
/// stderr, which Dataverse does not have, as `weft_stderr`).
fn trace_json(t: &TraceLog) -> Json {
    let e = &t.entry;
    json!({
        "plugintracelogid": t.id,
        "typename": e.plugin,
        "messagename": e.message_name,
        "primaryentity": e.primary_entity,
        "depth": e.depth,
        "correlationid": e.correlation_id,
        "mode": e.mode.value(),
        "performanceexecutionduration": e.duration_ms,
        "messageblock": e.trace,
        "exceptiondetails": e.error,
        "_pluginstepid_value": e.step_id,
        "createdon": super::json::format_datetime(t.created_on),
        "weft_stderr": e.stderr,
    })
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "0x80040216", message)
}

fn job_not_found(id: Uuid) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "0x80040217",
        format!("asyncoperation With Id = {id} Does Not Exist"),
    )
}

fn endpoint_not_found(id: Uuid) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "0x80040217",
        format!("serviceendpoint With Id = {id} Does Not Exist"),
    )
}
