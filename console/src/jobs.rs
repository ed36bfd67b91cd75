//! The System Jobs view: the list Power Apps shows (name, system job type, status reason, regarding,
//! created, started, completed, owner) with filters, sort, paging and live updates; a job's page with every
//! attempt, its execution context and the user actions; bulk retry of a filtered set.
//!
//! Owns the query form, the list's rendering and the server-sent-events stream that tells open lists to
//! refresh. It must not decide what an action may do: every action goes through [`weft_jobs::apply`],
//! and which buttons are enabled is asked of [`weft_jobs::ops::transition`] — the rules of the
//! `asyncoperations` API and `weft jobs`. Lists come from [`weft_jobs::views::list`] (its status, endpoint
//! and correlation filters); the table, type and time filters, sort and paging are applied here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;
use weft_jobs::ops::{JobAction, StatusName, status_label, transition};
use weft_jobs::views::{JobView, ListFilter, format_code};
use weft_store::Read;
use weft_store::system::{JobAttempt, JobStatus, SystemJob};

use crate::page::{self, Nav};
use crate::{Console, context};

/// The most jobs one list reads (newest first) before the table, type and time filters, sort and paging:
/// bounds the memory and time of a page on a store with a large backlog. The page says when it was hit.
pub const MAX_SCAN: u32 = 5_000;
/// Rows per page, as the System Jobs view's default.
pub const PAGE_SIZE: usize = 50;
/// How often an open list's event stream looks for changes.
const LIVE_POLL: Duration = Duration::from_secs(1);
/// How far "postpone" moves a job when the form gives no number, minutes.
const DEFAULT_POSTPONE_MIN: i64 = 60;

/// Every status, in Dataverse's order, for the filter's choices.
const STATUSES: [JobStatus; 8] = [
    JobStatus::WaitingForResources,
    JobStatus::Waiting,
    JobStatus::InProgress,
    JobStatus::Pausing,
    JobStatus::Canceling,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Canceled,
];

/// Dataverse's label of an `operationtype` (weft writes System Event jobs only).
fn type_label(t: i32) -> String {
    match t {
        1 => "System Event".into(),
        other => format!("Type {other}"),
    }
}

/// The list's query string, as the filter form sends it. Every field is text so a bad value is reported
/// on the page rather than refused by the extractor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobQuery {
    /// `statuscode`.
    #[serde(default)]
    pub status: String,
    /// `operationtype`.
    #[serde(default)]
    pub kind: String,
    /// Regarding table (`primaryentitytype`).
    #[serde(default)]
    pub table: String,
    /// Service endpoint id.
    #[serde(default)]
    pub endpoint: String,
    /// Created on or after (UTC, `YYYY-MM-DDTHH:MM`).
    #[serde(default)]
    pub from: String,
    /// Created before.
    #[serde(default)]
    pub to: String,
    /// Correlation id.
    #[serde(default)]
    pub correlation: String,
    /// Sort column.
    #[serde(default)]
    pub sort: String,
    /// `asc` for ascending; descending otherwise.
    #[serde(default)]
    pub dir: String,
    /// Page number, from 1.
    #[serde(default)]
    pub page: String,
    /// `1`: the table only (live updates).
    #[serde(default)]
    pub fragment: String,
    /// The outcome of the last action.
    #[serde(default)]
    pub notice: String,
    /// `1` when the notice is an error.
    #[serde(default)]
    pub error: String,
}

/// The list's filters, parsed.
#[derive(Debug, Clone, Default)]
struct Filter {
    status: Option<JobStatus>,
    kind: Option<i32>,
    table: Option<String>,
    endpoint: Option<Uuid>,
    from: Option<String>,
    to: Option<String>,
    correlation: Option<Uuid>,
}

/// Sortable columns.
const SORTS: [(&str, &str); 6] = [
    ("name", "Name"),
    ("status", "Status Reason"),
    ("table", "Regarding"),
    ("created", "Created On"),
    ("started", "Started On"),
    ("completed", "Completed On"),
];

impl JobQuery {
    /// The filters, or what is wrong with them (each bad field named).
    fn filter(&self) -> Result<Filter, String> {
        let mut problems = Vec::new();
        let trimmed = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
        let mut f = Filter {
            table: trimmed(&self.table),
            ..Filter::default()
        };
        if let Some(s) = trimmed(&self.status) {
            match s
                .parse::<i32>()
                .ok()
                .and_then(|n| JobStatus::try_from(n).ok())
            {
                Some(st) => f.status = Some(st),
                None => problems.push(format!("status {s:?} is not a status reason code")),
            }
        }
        if let Some(s) = trimmed(&self.kind) {
            match s.parse() {
                Ok(n) => f.kind = Some(n),
                Err(_) => problems.push(format!("system job type {s:?} is not a number")),
            }
        }
        for (field, text, out) in [
            ("endpoint", &self.endpoint, &mut f.endpoint),
            ("correlation id", &self.correlation, &mut f.correlation),
        ] {
            if let Some(s) = trimmed(text) {
                match Uuid::parse_str(&s) {
                    Ok(id) => *out = Some(id),
                    Err(_) => problems.push(format!("{field} {s:?} is not a GUID")),
                }
            }
        }
        for (field, text, out) in [
            ("from", &self.from, &mut f.from),
            ("to", &self.to, &mut f.to),
        ] {
            if let Some(s) = trimmed(text) {
                match page::parse_local(&s) {
                    Some(ms) => *out = Some(weft_jobs::views::format_ms(ms)),
                    None => problems.push(format!(
                        "{field} {s:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)"
                    )),
                }
            }
        }
        if problems.is_empty() {
            Ok(f)
        } else {
            Err(problems.join("; "))
        }
    }

    fn page(&self) -> usize {
        self.page.trim().parse::<usize>().unwrap_or(1).max(1)
    }

    fn sort(&self) -> (&str, bool) {
        let column = SORTS
            .iter()
            .map(|(c, _)| *c)
            .find(|c| *c == self.sort)
            .unwrap_or("created");
        (column, self.dir != "asc")
    }

    /// The query string with `changes` applied (empty values dropped), for links.
    fn with(&self, changes: &[(&str, String)]) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("status", self.status.clone()),
            ("kind", self.kind.clone()),
            ("table", self.table.clone()),
            ("endpoint", self.endpoint.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("correlation", self.correlation.clone()),
            ("sort", self.sort.clone()),
            ("dir", self.dir.clone()),
            ("page", self.page.clone()),
        ];
        for (k, v) in changes {
            if let Some(p) = pairs.iter_mut().find(|(pk, _)| pk == k) {
                p.1 = v.clone();
            }
        }
        let q: Vec<String> = pairs
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", page::encode(v.trim())))
            .collect();
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

/// The jobs matching `filter`, newest first, and whether the scan was cut at [`MAX_SCAN`].
fn select(r: &dyn Read, filter: &Filter) -> Result<(Vec<JobView>, bool), weft_store::StoreError> {
    let mut views = weft_jobs::views::list(
        r,
        &ListFilter {
            status: filter.status,
            endpoint_id: filter.endpoint,
            correlation_id: filter.correlation,
            limit: Some(MAX_SCAN + 1),
            newest_first: true,
            ..ListFilter::default()
        },
    )?;
    let capped = views.len() > MAX_SCAN as usize;
    views.truncate(MAX_SCAN as usize);
    // ISO 8601 UTC with fixed widths: text order is time order.
    views.retain(|v| {
        filter.kind.is_none_or(|k| v.operationtype == k)
            && filter
                .table
                .as_deref()
                .is_none_or(|t| v.primaryentitytype.as_deref() == Some(t))
            && filter
                .from
                .as_deref()
                .is_none_or(|f| v.createdon.as_str() >= f)
            && filter
                .to
                .as_deref()
                .is_none_or(|t| v.createdon.as_str() < t)
    });
    Ok((views, capped))
}

fn sort_views(views: &mut [JobView], column: &str, descending: bool) {
    let key = |v: &JobView| -> (Option<String>, String) {
        let k = match column {
            "name" => Some(v.name.to_lowercase()),
            "status" => Some(format!("{:03}", v.statuscode)),
            "table" => v.primaryentitytype.clone(),
            "started" => v.startedon.clone(),
            "completed" => v.completedon.clone(),
            _ => Some(v.createdon.clone()),
        };
        (k, v.createdon.clone())
    };
    views.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        // Empty cells last in either direction.
        match (&ka.0, &kb.0) {
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            _ if descending => kb.cmp(&ka),
            _ => ka.cmp(&kb),
        }
    });
}

/// What a page of the list needs besides the jobs: endpoint names and each row's owner.
struct Names {
    endpoints: HashMap<Uuid, String>,
    owners: HashMap<Uuid, Uuid>,
}

fn names(r: &dyn Read, rows: &[JobView]) -> Result<Names, weft_store::StoreError> {
    let endpoints = r
        .service_endpoints()?
        .into_iter()
        .map(|e| (e.def.id, e.def.name))
        .collect();
    let mut owners = HashMap::new();
    for v in rows {
        // The owner is the user the operation ran for: the context's UserId.
        if let Some(job) = r.system_job(v.asyncoperationid)?
            && let Ok(ctx) = weft_message::parse(&job.data, &job.data_content_type)
        {
            owners.insert(v.asyncoperationid, ctx.user_id);
        }
    }
    Ok(Names { endpoints, owners })
}

/// `GET /console`: the System Jobs view is the console's home.
pub(crate) async fn index() -> Redirect {
    Redirect::to("/console/jobs")
}

/// `GET /console/jobs`.
pub(crate) async fn list(State(console): State<Console>, Query(q): Query<JobQuery>) -> Response {
    let filter = q.filter();
    let selected = match &filter {
        Ok(f) => {
            let f = f.clone();
            let q2 = q.clone();
            crate::read(&console, move |r| {
                let (mut views, capped) = select(r, &f)?;
                let (column, desc) = q2.sort();
                sort_views(&mut views, column, desc);
                let total = views.len();
                let start = (q2.page() - 1) * PAGE_SIZE;
                let rows: Vec<JobView> = views.into_iter().skip(start).take(PAGE_SIZE).collect();
                let names = names(r, &rows)?;
                let tables: Vec<String> = {
                    let mut t: Vec<String> = r
                        .schema()
                        .tables()
                        .iter()
                        .map(|t| t.logical_name.clone())
                        .collect();
                    t.sort();
                    t
                };
                let endpoints: Vec<(Uuid, String)> = {
                    let mut e: Vec<(Uuid, String)> = names
                        .endpoints
                        .iter()
                        .map(|(k, v)| (*k, v.clone()))
                        .collect();
                    e.sort_by(|a, b| a.1.cmp(&b.1));
                    e
                };
                Ok(Some((rows, total, capped, names, tables, endpoints)))
            })
            .await
        }
        Err(_) => Ok(None),
    };
    let selected = match selected {
        Ok(s) => s,
        Err(r) => return r,
    };
    let table = match &selected {
        Some((rows, total, capped, names, _, _)) => jobs_table(&q, rows, *total, *capped, names),
        None => html! {},
    };
    if q.fragment == "1" {
        return table.into_response();
    }
    let (tables, endpoints) = match &selected {
        Some((_, _, _, _, t, e)) => (t.clone(), e.clone()),
        None => (Vec::new(), Vec::new()),
    };
    let problem = filter.as_ref().err().cloned();
    let bulk = html! {
        form.inline method="post" action="/console/jobs/retry"
            data-confirm="Retry now every Suspended or postponed job matching these filters?" {
            @for (k, v) in [("status", &q.status), ("kind", &q.kind), ("table", &q.table), ("endpoint", &q.endpoint),
                            ("from", &q.from), ("to", &q.to), ("correlation", &q.correlation)] {
                input type="hidden" name=(k) value=(v);
            }
            button #bulk-retry type="submit" { "Retry all matching" }
        }
    };
    let body = html! {
        h1 { "System Jobs" }
        (page::notice(Some(q.notice.as_str()), q.error == "1"))
        (page::notice(problem.as_deref(), true))
        form.filters method="get" action="/console/jobs" role="search" aria-label="Filter system jobs" {
            label { "Status Reason"
                select name="status" {
                    option value="" { "All" }
                    @for s in STATUSES {
                        option value=(s.value()) selected[q.status == s.value().to_string()] { (StatusName(s)) }
                    }
                }
            }
            label { "System Job Type"
                select name="kind" {
                    option value="" { "All" }
                    option value="1" selected[q.kind == "1"] { "System Event" }
                }
            }
            label { "Regarding table"
                select name="table" {
                    option value="" { "All" }
                    @for t in &tables { option value=(t) selected[&q.table == t] { (t) } }
                }
            }
            label { "Service endpoint"
                select name="endpoint" {
                    option value="" { "All" }
                    @for (id, n) in &endpoints {
                        option value=(id) selected[q.endpoint == id.to_string()] { (n) }
                    }
                }
            }
            label { "Created from (UTC)" input type="datetime-local" name="from" value=(q.from); }
            label { "to (UTC)" input type="datetime-local" name="to" value=(q.to); }
            label { "Correlation id" input type="text" name="correlation" size="36" value=(q.correlation) placeholder="GUID"; }
            input type="hidden" name="sort" value=(q.sort);
            input type="hidden" name="dir" value=(q.dir);
            button.primary type="submit" { "Apply" }
            a href="/console/jobs" { "Clear" }
        }
        div.actions { (bulk) span #live .live aria-live="polite" { "" } }
        div #jobs-table { (table) }
    };
    page::frame_with("System Jobs", Nav::Jobs, console.host.bus().is_some(), body).into_response()
}

fn jobs_table(q: &JobQuery, rows: &[JobView], total: usize, capped: bool, names: &Names) -> Markup {
    let (column, desc) = q.sort();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let current = q.page().min(pages);
    let header = |key: &str, label: &str| {
        let active = key == column;
        let dir = if active && desc { "asc" } else { "desc" };
        let href = format!(
            "/console/jobs{}",
            q.with(&[
                ("sort", key.into()),
                ("dir", dir.into()),
                ("page", String::new())
            ])
        );
        html! {
            th aria-sort=[active.then_some(if desc { "descending" } else { "ascending" })] {
                a href=(href) { (label) @if active { (if desc { " ▼" } else { " ▲" }) } }
            }
        }
    };
    html! {
        table {
            caption.muted style="text-align:left;caption-side:bottom;padding-top:6px" {
                (total) " job" @if total != 1 { "s" }
                @if capped { " (the newest " (MAX_SCAN) " were searched; narrow the filters to see older ones)" }
            }
            thead { tr {
                (header("name", "System Job Name"))
                th { "System Job Type" }
                (header("status", "Status Reason"))
                (header("table", "Regarding"))
                (header("created", "Created On"))
                (header("started", "Started On"))
                (header("completed", "Completed On"))
                th { "Owner" }
                th { "Error" }
            } }
            tbody {
                @for v in rows {
                    tr data-job=(v.asyncoperationid) {
                        td { a href={ "/console/jobs/" (v.asyncoperationid) } { (v.name) } }
                        td { (type_label(v.operationtype)) }
                        td.status.{ "s-" (v.statuscode) } { (status_label(JobStatus::try_from(v.statuscode).unwrap_or(JobStatus::WaitingForResources))) }
                        td {
                            (v.primaryentitytype.as_deref().unwrap_or("–"))
                            @if let Some(id) = v.regardingobjectid { " " span.mono title=(id) { (page::short(&id)) } }
                        }
                        td { (iso(&v.createdon)) }
                        td { (v.startedon.as_deref().map_or("–".into(), iso)) }
                        td { (v.completedon.as_deref().map_or("–".into(), iso)) }
                        td.mono { @if let Some(o) = names.owners.get(&v.asyncoperationid) { span title=(o) { (page::short(o)) } } @else { "–" } }
                        td { @if let Some(m) = &v.message { span.failed title=(m) { (first_line(m, 90)) } } }
                    }
                }
                @if rows.is_empty() { tr { td colspan="9" .muted { "No system jobs match." } } }
            }
        }
        nav.paging aria-label="Pages" {
            @if current > 1 { a rel="prev" href={ "/console/jobs" (q.with(&[("page", (current - 1).to_string())])) } { "← Previous" } }
            span { "Page " (current) " of " (pages) }
            @if current < pages { a rel="next" href={ "/console/jobs" (q.with(&[("page", (current + 1).to_string())])) } { "Next →" } }
        }
    }
}

/// `2026-11-25T21:37:00.123Z` → `2026-11-25 21:37:00Z`.
fn iso(s: &str) -> String {
    if s.len() >= 19 {
        format!("{} {}Z", &s[..10], &s[11..19])
    } else {
        s.to_owned()
    }
}

/// The first line of `s`, cut to `max` characters.
fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// `GET /console/jobs/events`: a `changed` event whenever the jobs matching the query change (status,
/// retries, new or deleted jobs), polled every [`LIVE_POLL`]; the page then fetches its table again.
pub(crate) async fn events(
    State(console): State<Console>,
    Query(q): Query<JobQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let filter = q.filter().unwrap_or_default();
    let state = (console, filter, None::<u64>);
    let stream = futures_util::stream::unfold(state, |(console, filter, mut last)| async move {
        loop {
            let f = filter.clone();
            let seen = crate::read(&console, move |r| {
                let (views, _) = select(r, &f)?;
                Ok(fingerprint(&views))
            })
            .await
            .ok();
            if let Some(now) = seen {
                if last.is_some_and(|l| l != now) {
                    let event = Event::default().event("changed").data(now.to_string());
                    return Some((Ok(event), (console, filter, Some(now))));
                }
                last = Some(now);
            }
            let mut stopping = console.stopping.clone();
            let stopped = async move {
                match &mut stopping {
                    // Err: the server is gone too.
                    Some(rx) => drop(rx.wait_for(|s| *s).await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(LIVE_POLL) => {}
                () = stopped => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A digest of what the list shows, to notice changes.
fn fingerprint(views: &[JobView]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in views {
        (
            v.asyncoperationid,
            v.statuscode,
            v.retrycount,
            &v.completedon,
            &v.postponeuntil,
        )
            .hash(&mut h);
    }
    h.finish()
}

/// `GET /console/jobs/{id}`: the job, every attempt, its context and its actions.
pub(crate) async fn show(
    State(console): State<Console>,
    Path(id): Path<String>,
    Query(q): Query<JobQuery>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return page::not_found(&format!("{id:?} is not a system job id (a GUID)."));
    };
    let read = crate::read(&console, move |r| {
        let Some(job) = r.system_job(id)? else {
            return Ok(None);
        };
        let attempts = r.job_attempts(id)?;
        let endpoints: Vec<_> = r.service_endpoints()?;
        Ok(Some((job, attempts, endpoints)))
    })
    .await;
    let (job, attempts, endpoints) = match read {
        Ok(Some(found)) => found,
        Ok(None) => {
            return page::not_found(&format!(
                "System job {id} does not exist (it may have been deleted)."
            ));
        }
        Err(r) => return r,
    };
    let endpoint_names: HashMap<Uuid, String> = endpoints
        .iter()
        .map(|e| (e.def.id, e.def.name.clone()))
        .collect();
    let step = job
        .owning_extension_id
        .and_then(|s| console.host.steps().into_iter().find(|d| d.id == s));
    // The endpoint the job posts to: its step's, else the last attempt's.
    let endpoint = step
        .as_ref()
        .and_then(|s| match s.event_handler {
            weft_store::system::EventHandler::ServiceEndpoint(e) => Some(e),
            weft_store::system::EventHandler::PluginType(_) => None,
        })
        .or_else(|| attempts.iter().rev().find_map(|a| a.entry.endpoint_id))
        .and_then(|e| endpoints.iter().find(|d| d.def.id == e));
    let view = JobView::of(&job);
    let now = now_ms();
    let body = html! {
        p { a href="/console/jobs" { "← System Jobs" } }
        h1 { (job.name) }
        (page::notice(Some(q.notice.as_str()), q.error == "1"))
        div.actions { (actions(&job, now)) }
        div.grid2 {
            section aria-labelledby="facts" {
                h2 #facts { "System job" }
                dl.facts {
                    dt { "Status" } dd.status.{ "s-" (view.statuscode) } #job-status { (StatusName(job.status)) }
                    dt { "System Job Type" } dd { (type_label(job.operation_type)) }
                    dt { "Id" } dd.mono { (job.id) }
                    dt { "Message" } dd { (job.message_name) }
                    dt { "Regarding" } dd { (job.primary_entity_type.as_deref().unwrap_or("–")) " " span.mono { (job.regarding.as_ref().map_or("".into(), |r| r.id.to_string())) } }
                    dt { "Step" } dd { @if let Some(s) = &step { (s.name) } @else { "–" } }
                    dt { "Service endpoint" } dd { @if let Some(e) = endpoint { (e.def.name) " " span.muted { "(" (format!("{:?}", e.def.contract)) ", " (format!("{:?}", e.def.message_format)) ")" } } @else { "–" } }
                    dt { "Correlation id" } dd { a.mono href={ "/console/traces/" (job.correlation_id) } { (job.correlation_id) } }
                    dt { "Depth" } dd { (job.depth) }
                    dt { "Created On" } dd { (page::time(job.created_on)) }
                    dt { "Started On" } dd { (page::time_or_dash(job.started_on)) }
                    dt { "Completed On" } dd { (page::time_or_dash(job.completed_on)) }
                    dt { "Postpone Until / next attempt" } dd #next-attempt { (page::time_or_dash(job.postpone_until)) }
                    dt { "Retry count" } dd { (job.retry_count) }
                    dt { "Error code" } dd.mono { (job.error_code.map(format_code).unwrap_or_else(|| "–".into())) }
                    dt { "Message" } dd { (job.message.as_deref().unwrap_or("–")) }
                    dt { "Friendly message" } dd { (job.friendly_message.as_deref().unwrap_or("–")) }
                }
            }
            section aria-labelledby="ctx" {
                h2 #ctx { "Execution context" }
                (context::render(&job.data, &job.data_content_type, endpoint.map(|e| e.def.message_format)))
            }
        }
        h2 #attempts { "Attempts" }
        (attempts_table(&attempts, &endpoint_names, &job))
    };
    page::frame_with(&job.name, Nav::Jobs, console.host.bus().is_some(), body).into_response()
}

fn attempts_table(
    attempts: &[JobAttempt],
    endpoints: &HashMap<Uuid, String>,
    job: &SystemJob,
) -> Markup {
    html! {
        table #attempts-table aria-labelledby="attempts" {
            thead { tr {
                th { "#" } th { "Started" } th { "Endpoint" } th { "HTTP status" } th { "Latency" }
                th { "Outcome" } th { "Error code" } th { "Message" }
            } }
            tbody {
                @for a in attempts {
                    @let e = &a.entry;
                    tr {
                        td.num { (a.attempt) }
                        td { (page::time(e.started_on)) }
                        td { @if let Some(id) = e.endpoint_id { (endpoints.get(&id).cloned().unwrap_or_else(|| id.to_string())) } @else { "–" } }
                        td.num { (e.http_status.map_or("–".into(), |s| s.to_string())) }
                        td.num { (e.latency_ms) " ms" }
                        td.{ @if e.outcome == "succeeded" { "ok" } @else { "failed" } } { (e.outcome) }
                        td.mono { (e.error_code.map(format_code).unwrap_or_else(|| "–".into())) }
                        td { (e.message.as_deref().unwrap_or("")) }
                    }
                }
                @if attempts.is_empty() { tr { td colspan="8" .muted { "No attempt yet." } } }
                @if let (JobStatus::Waiting | JobStatus::WaitingForResources, Some(next)) = (job.status, job.postpone_until) {
                    tr { td {} td colspan="7" { "Next attempt: " (page::time(next)) } }
                }
            }
        }
    }
}

/// The action buttons; those the job's state does not allow are disabled, with the rule as their title.
fn actions(job: &SystemJob, now: i64) -> Markup {
    let button = |name: &str,
                  label: &str,
                  action: JobAction,
                  confirm: Option<&str>,
                  class: &str| {
        let refused = transition(job, action, now).err().map(|e| e.to_string());
        html! {
            form.inline method="post" action={ "/console/jobs/" (job.id) "/action" } data-confirm=[confirm] {
                input type="hidden" name="action" value=(name);
                button.(class) type="submit" name="do" value=(name) disabled[refused.is_some()] title=[refused] { (label) }
            }
        }
    };
    let postpone_refused = transition(
        job,
        JobAction::Postpone {
            until_ms: now + 60_000,
        },
        now,
    )
    .err()
    .map(|e| e.to_string());
    html! {
        (button("retry", "Retry now", JobAction::RetryNow, None, "primary"))
        (button("resume", "Resume", JobAction::Resume, None, ""))
        (button("pause", "Pause", JobAction::Pause, None, ""))
        (button("cancel", "Cancel", JobAction::Cancel, Some("Cancel this system job?"), ""))
        form.inline method="post" action={ "/console/jobs/" (job.id) "/action" } {
            input type="hidden" name="action" value="postpone";
            label { "Postpone by " input type="number" name="minutes" min="1" max="525600" value=(DEFAULT_POSTPONE_MIN) style="width:6em" aria-label="minutes"; " min " }
            button type="submit" disabled[postpone_refused.is_some()] title=[postpone_refused] { "Postpone" }
        }
        (button("delete", "Delete", JobAction::Delete, Some("Delete this system job and its attempts?"), "danger"))
    }
}

fn now_ms() -> i64 {
    (weft_jobs::system_clock())()
}

/// An action form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    action: String,
    #[serde(default)]
    minutes: String,
}

/// `POST /console/jobs/{id}/action`: applies the action with weft-jobs' rules, then shows the job (or
/// the list once deleted) with what came of it.
pub(crate) async fn action(
    State(console): State<Console>,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return page::not_found(&format!("{id:?} is not a system job id (a GUID)."));
    };
    let now = now_ms();
    let action = match form.action.as_str() {
        "cancel" => JobAction::Cancel,
        "pause" => JobAction::Pause,
        "resume" => JobAction::Resume,
        "retry" => JobAction::RetryNow,
        "delete" => JobAction::Delete,
        "postpone" => {
            let minutes = if form.minutes.trim().is_empty() {
                DEFAULT_POSTPONE_MIN
            } else {
                match form.minutes.trim().parse::<i64>() {
                    Ok(m) if (1..=525_600).contains(&m) => m,
                    _ => {
                        return back(
                            id,
                            &format!(
                                "{:?} is not a number of minutes from 1 to 525600",
                                form.minutes
                            ),
                            true,
                        );
                    }
                }
            };
            JobAction::Postpone {
                until_ms: now + minutes * 60_000,
            }
        }
        other => {
            return (StatusCode::BAD_REQUEST, format!("unknown action {other:?}")).into_response();
        }
    };
    let store = console.host.store();
    match weft_jobs::apply(store.as_ref(), id, action, now).await {
        Ok(None) => Redirect::to(&format!(
            "/console/jobs?notice={}",
            page::encode(&format!("System job {id} deleted."))
        ))
        .into_response(),
        Ok(Some(job)) => back(
            id,
            &format!("Done: the job is now {}.", StatusName(job.status)),
            false,
        ),
        Err(e) => back(id, &e.to_string(), true),
    }
}

fn back(id: Uuid, notice: &str, error: bool) -> Response {
    let flag = if error { "&error=1" } else { "" };
    Redirect::to(&format!(
        "/console/jobs/{id}?notice={}{flag}",
        page::encode(notice)
    ))
    .into_response()
}

/// `POST /console/jobs/retry`: Retry now on every job matching the filters that the rules allow (Suspended,
/// or Ready but postponed); the others are counted as skipped.
pub(crate) async fn bulk_retry(
    State(console): State<Console>,
    Form(q): Form<JobQuery>,
) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            return Redirect::to(&format!("/console/jobs{}", with_notice(&q, &e, true)))
                .into_response();
        }
    };
    let selected = crate::read(&console, move |r| select(r, &filter).map(|(v, _)| v)).await;
    let views = match selected {
        Ok(v) => v,
        Err(r) => return r,
    };
    let store = console.host.store();
    let (mut retried, mut skipped, mut failed) = (0usize, 0usize, Vec::new());
    for v in &views {
        let now = now_ms();
        match weft_jobs::apply(store.as_ref(), v.asyncoperationid, JobAction::RetryNow, now).await {
            Ok(_) => retried += 1,
            Err(
                weft_jobs::JobOpError::InvalidTransition { .. }
                | weft_jobs::JobOpError::NotFound(_),
            ) => skipped += 1,
            Err(e) => failed.push(e.to_string()),
        }
    }
    let mut text = format!(
        "Retry now: {retried} job(s) retried, {skipped} skipped (not Suspended nor postponed)."
    );
    if let Some(first) = failed.first() {
        text.push_str(&format!(" {} failed: {first}", failed.len()));
    }
    Redirect::to(&format!(
        "/console/jobs{}",
        with_notice(&q, &text, !failed.is_empty())
    ))
    .into_response()
}

fn with_notice(q: &JobQuery, text: &str, error: bool) -> String {
    let base = q.with(&[]);
    let sep = if base.is_empty() { "?" } else { "&" };
    let flag = if error { "&error=1" } else { "" };
    format!("{base}{sep}notice={}{flag}", page::encode(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bad filter values are reported together, each named; good ones parse.
    #[test]
    fn filters_parse_or_say_why() {
        let q = JobQuery {
            status: "10".into(),
            correlation: "not-a-guid".into(),
            from: "2026-11-25T21:37".into(),
            to: "tomorrow".into(),
            ..JobQuery::default()
        };
        let e = q.filter().unwrap_err();
        assert!(
            e.contains("correlation id \"not-a-guid\" is not a GUID"),
            "{e}"
        );
        assert!(e.contains("to \"tomorrow\""), "{e}");
        let q = JobQuery {
            status: "10".into(),
            from: "2026-11-25T21:37".into(),
            ..JobQuery::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.status, Some(JobStatus::Waiting));
        assert_eq!(f.from.as_deref(), Some("2026-11-25T21:37:00.000Z"));
        assert_eq!(
            JobQuery {
                status: "11".into(),
                ..JobQuery::default()
            }
            .filter()
            .unwrap_err(),
            "status \"11\" is not a status reason code"
        );
    }

    /// Links keep the filters and replace what they change; unknown sort columns fall back to created.
    #[test]
    fn links_keep_filters() {
        let q = JobQuery {
            table: "account".into(),
            sort: "bogus".into(),
            page: "3".into(),
            ..JobQuery::default()
        };
        assert_eq!(
            q.with(&[("page", "4".into())]),
            "?table=account&sort=bogus&page=4"
        );
        assert_eq!(q.sort(), ("created", true));
        assert_eq!(q.page(), 3);
        assert_eq!(
            JobQuery {
                page: "-2".into(),
                ..JobQuery::default()
            }
            .page(),
            1
        );
    }
}
