//! The plug-in trace log per operation: a list of recent operations (correlation ids) and, for one,
//! every step in execution order with its plug-in, outcome, duration, traces, captured stderr, the
//! failure's message and a trimmed backtrace.
//!
//! Owns the rendering only; rows come from the store's trace log (`weft trace` reads the same). It must
//! not write. A failure's text is the message on its first line and the guest backtrace after it (how
//! the pipeline records it); the page shows the message, the first [`BACKTRACE_LINES`] frames, and the
//! rest folded.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;
use weft_store::system::{TraceFilter, TraceLog, TraceOutcome};

use crate::Console;
use crate::page::{self, Nav};

/// Trace rows the operations list reads (newest first): about the last few hundred operations.
const LIST_ROWS: u32 = 1_000;
/// Operations per list page.
const OPERATIONS_SHOWN: usize = 100;
/// The most rows one operation's page reads (a deep chain of child operations stays bounded).
const OPERATION_ROWS: u32 = 2_000;
/// Backtrace frames shown before the rest is folded.
pub const BACKTRACE_LINES: usize = 12;

/// The list's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TraceQuery {
    #[serde(default)]
    correlation: String,
}

/// `GET /console/traces`: recent operations, newest first, or straight to one by correlation id.
pub(crate) async fn list(State(console): State<Console>, Query(q): Query<TraceQuery>) -> Response {
    let wanted = q.correlation.trim();
    if !wanted.is_empty() {
        return match Uuid::parse_str(wanted) {
            Ok(id) => {
                axum::response::Redirect::to(&format!("/console/traces/{id}")).into_response()
            }
            Err(_) => page::not_found(&format!("{wanted:?} is not a correlation id (a GUID).")),
        };
    }
    let logs = match crate::read(&console, |r| {
        r.trace_logs(&TraceFilter {
            limit: Some(LIST_ROWS),
            ..TraceFilter::default()
        })
    })
    .await
    {
        Ok(l) => l,
        Err(r) => return r,
    };
    // Group by operation, newest first (the store answers newest first).
    let mut order: Vec<Uuid> = Vec::new();
    let mut groups: HashMap<Uuid, Vec<&TraceLog>> = HashMap::new();
    for log in &logs {
        let c = log.entry.correlation_id;
        if !groups.contains_key(&c) {
            order.push(c);
        }
        groups.entry(c).or_default().push(log);
    }
    let body = html! {
        h1 { "Plug-in Trace Log" }
        form.filters method="get" action="/console/traces" role="search" {
            label { "Correlation id" input type="text" name="correlation" size="36" placeholder="GUID"; }
            button.primary type="submit" { "Open" }
        }
        table #operations {
            thead { tr { th { "Operation (correlation id)" } th { "Message" } th { "Table" } th { "Steps" } th { "Outcome" } th { "Duration" } th { "Last step at" } } }
            tbody {
                @for c in order.iter().take(OPERATIONS_SHOWN) {
                    @let rows = &groups[c];
                    @let failed = rows.iter().filter(|l| l.entry.outcome == TraceOutcome::Failed).count();
                    @let first = rows.last().map(|l| &l.entry);
                    tr {
                        td { a.mono href={ "/console/traces/" (c) } { (c) } }
                        td { (first.map_or("", |e| e.message_name.as_str())) }
                        td { (first.and_then(|e| e.primary_entity.as_deref()).unwrap_or("–")) }
                        td.num { (rows.len()) }
                        td { @if failed > 0 { span.failed { (failed) " failed" } } @else { span.ok { "ok" } } }
                        td.num { (rows.iter().map(|l| l.entry.duration_ms).sum::<i64>()) " ms" }
                        td { (page::time(rows[0].created_on)) }
                    }
                }
                @if order.is_empty() { tr { td colspan="7" .muted { "No plug-in has run yet." } } }
            }
        }
    };
    page::frame_with(
        "Plug-in Trace Log",
        Nav::Traces,
        console.host.bus().is_some(),
        body,
    )
    .into_response()
}

/// `GET /console/traces/{correlation}`: one operation's steps in execution order.
pub(crate) async fn show(
    State(console): State<Console>,
    Path(correlation): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&correlation) else {
        return page::not_found(&format!(
            "{correlation:?} is not a correlation id (a GUID)."
        ));
    };
    let logs = match crate::read(&console, move |r| {
        r.trace_logs(&TraceFilter {
            correlation_id: Some(id),
            limit: Some(OPERATION_ROWS),
            ..TraceFilter::default()
        })
    })
    .await
    {
        Ok(mut l) => {
            // Newest first from the store; execution order is the reverse.
            l.reverse();
            l
        }
        Err(r) => return r,
    };
    let steps: HashMap<Uuid, String> = console
        .host
        .steps()
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let body = html! {
        p { a href="/console/traces" { "← Plug-in Trace Log" } }
        h1 { "Operation " span.mono { (id) } }
        p { a href={ "/console/jobs?correlation=" (id) } { "System jobs of this operation" } }
        @if logs.is_empty() { p.muted { "No trace-log rows for this correlation id (none ran, or they were purged)." } }
        ol #steps {
            @for log in &logs { li { (entry(log, &steps)) } }
        }
    };
    page::frame_with(
        "Plug-in Trace Log",
        Nav::Traces,
        console.host.bus().is_some(),
        body,
    )
    .into_response()
}

fn entry(log: &TraceLog, steps: &HashMap<Uuid, String>) -> Markup {
    let e = &log.entry;
    let step = e
        .step_id
        .and_then(|s| steps.get(&s))
        .cloned()
        .unwrap_or_else(|| e.plugin.clone());
    let (message, backtrace) = match &e.error {
        Some(text) => {
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default().to_owned();
            (
                Some(first),
                lines
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            )
        }
        None => (None, Vec::new()),
    };
    html! {
        section.step {
            h2 {
                (step) " "
                span.muted { "(" (e.plugin) ") " (e.message_name) " " (e.primary_entity.as_deref().unwrap_or("–")) ", depth " (e.depth) ", " (format!("{:?}", e.mode).to_lowercase()) }
            }
            p {
                @match e.outcome {
                    TraceOutcome::Succeeded => span.ok { "Succeeded" },
                    TraceOutcome::Failed => span.failed { "Failed" },
                }
                " in " (e.duration_ms) " ms, at " (page::time(log.created_on)) " · trace row " span.mono { (log.id) }
            }
            @if let Some(m) = &message {
                p.notice.error { (m) }
                @if !backtrace.is_empty() {
                    h3 { "Backtrace" }
                    pre.backtrace { (backtrace.iter().take(BACKTRACE_LINES).cloned().collect::<Vec<_>>().join("\n")) }
                    @if backtrace.len() > BACKTRACE_LINES {
                        details { summary { (backtrace.len() - BACKTRACE_LINES) " more lines" } pre { (backtrace[BACKTRACE_LINES..].join("\n")) } }
                    }
                }
                p.muted { "Reproduce with " code { "weft plugin replay " (log.id) } }
            }
            @if !e.trace.is_empty() { h3 { "Traces" } pre.traces { (e.trace) } }
            @if !e.stderr.is_empty() { h3 { "stderr" } pre { (e.stderr) } }
        }
    }
}
