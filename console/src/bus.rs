//! The Bus page, when `weft up` embeds the bus: every queue, topic (with its subscriptions) and Event Hub
//! with its counts; a queue's or subscription's messages and dead letters peeked (nothing locked, no
//! delivery count changed) with their broker properties, custom properties and body — a Dataverse
//! RemoteExecutionContext decoded to a readable summary — and a dead letter resubmitted to its entity.
//!
//! Owns the rendering and the resubmit form. It must not hold delivery rules: counts, peeks and the
//! resubmit (one store transaction) are weft-bus's (`weft_bus::server::inspect`), decoding is
//! weft-message's. Every value shown is escaped by maud; bodies are shown bounded
//! ([`crate::context::MAX_RAW_BYTES`]), binary ones as a hex dump.

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use weft_bus::server::inspect::{HubDepth, InspectError, Peeked};
use weft_bus::store::Record;
use weft_message::{Format, RemoteExecutionContext};

use crate::page::{self, Nav};
use crate::{Console, context};

/// Messages per page of a peek.
pub const PEEK_PAGE: usize = 10;

fn frame(title: &str, body: Markup) -> Response {
    page::frame_with(title, Nav::Bus, true, body).into_response()
}

/// The page for a console without an embedded bus.
fn no_bus() -> Response {
    let body = html! {
        h1 { "Bus" }
        p.notice role="status" #no-bus {
            "No embedded bus: this weft was started without a " code { "[bus]" } " section in weft.toml "
            "(" code { "weft up" } " starts the bus only when there is one). A bus run on its own with "
            code { "weft bus" } " is not shown here."
        }
    };
    // The navigation hides the Bus entry here too: there is nothing to go to.
    page::frame_with("Bus", Nav::Bus, false, body).into_response()
}

/// `GET /console/bus`: every entity with its counts.
pub(crate) async fn overview(State(console): State<Console>) -> Response {
    let Some(bus) = console.host.bus() else {
        return no_bus();
    };
    let overview = match bus.overview().await {
        Ok(o) => o,
        Err(e) => return page::failure(&format!("reading the bus: {e:#}")),
    };
    let entity_link = |path: &str, dlq: bool| {
        format!(
            "/console/bus/entity?path={}{}",
            page::encode(path),
            if dlq { "&dlq=1" } else { "" }
        )
    };
    let counts = |d: &weft_bus::server::inspect::EntityDepth, label: &str| {
        html! {
            tr data-entity=(d.path) {
                td { a href=(entity_link(&d.path, false)) { (label) } }
                td.num.active { (d.depth.active) }
                td.num.locked { (d.depth.locked) }
                td.num.deferred { (d.depth.deferred) }
                td.num.scheduled { (d.depth.scheduled) }
                td.num.deadletter {
                    @if d.dead_letter > 0 {
                        a href=(entity_link(&d.path, true)) aria-label={ (d.dead_letter) " dead-lettered in " (d.path) } { (d.dead_letter) }
                    } @else { "0" }
                }
            }
        }
    };
    let head = html! {
        thead { tr { th { "Name" } th { "Active" } th { "of which locked" } th { "of which deferred" } th { "Scheduled" } th { "Dead-letter" } } }
    };
    let body = html! {
        h1 { "Bus" }
        p.muted { "Counts are taken when the page is served. Active includes messages locked by a receiver and deferred ones, as Azure counts them." }
        h2 #queues { "Queues" }
        table aria-labelledby="queues" {
            (head)
            tbody {
                @for q in &overview.queues { (counts(q, &q.path)) }
                @if overview.queues.is_empty() { tr { td colspan="6" .muted { "No queue." } } }
            }
        }
        h2 #topics { "Topics and subscriptions" }
        table aria-labelledby="topics" {
            (head)
            tbody {
                @for t in &overview.topics {
                    tr.topic { th colspan="6" scope="rowgroup" { "Topic " (t.name) } }
                    @for s in &t.subscriptions {
                        @let name = s.path.rsplit('/').next().unwrap_or(&s.path);
                        (counts(s, &format!("{} / {}", t.name, name)))
                    }
                    @if t.subscriptions.is_empty() { tr { td colspan="6" .muted { "No subscription: messages sent to this topic are dropped." } } }
                }
                @if overview.topics.is_empty() { tr { td colspan="6" .muted { "No topic." } } }
            }
        }
        h2 #hubs { "Event Hubs" }
        table aria-labelledby="hubs" {
            thead { tr { th { "Name" } th { "Partitions" } th { "Events retained" } th { "Per partition (first–last sequence number: events)" } } }
            tbody {
                @for h in &overview.event_hubs {
                    tr data-hub=(h.name) {
                        td { (h.name) }
                        td.num { (h.partitions.len()) }
                        td.num.events { (h.total_events()) }
                        td.mono {
                            @for (i, p) in h.partitions.iter().enumerate() {
                                @if i > 0 { ", " }
                                (i) ": "
                                @if p.is_empty { "empty" } @else { (p.begin_sequence_number) "–" (p.last_enqueued_sequence_number) ": " (HubDepth::events(p)) }
                            }
                        }
                    }
                }
                @if overview.event_hubs.is_empty() { tr { td colspan="4" .muted { "No Event Hub." } } }
            }
        }
    };
    frame("Bus", body)
}

/// The entity page's query. Text fields, so a bad value is reported on a page rather than refused by the
/// extractor.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EntityQuery {
    #[serde(default)]
    path: String,
    /// `1`: the dead-letter queue.
    #[serde(default)]
    dlq: String,
    /// First sequence number to show.
    #[serde(default)]
    from: String,
    #[serde(default)]
    notice: String,
    #[serde(default)]
    error: String,
}

fn entity_url(path: &str, dlq: bool, from: Option<u64>) -> String {
    let mut url = format!("/console/bus/entity?path={}", page::encode(path));
    if dlq {
        url.push_str("&dlq=1");
    }
    if let Some(f) = from {
        url.push_str(&format!("&from={f}"));
    }
    url
}

/// A sequence number typed by someone: digits only.
fn parse_seq(field: &str, s: &str) -> Result<u64, String> {
    s.trim().parse::<u64>().map_err(|_| {
        format!(
            "{field} {s:?} is not a sequence number (a whole number from 0 to 18446744073709551615)"
        )
    })
}

/// `GET /console/bus/entity?path=…[&dlq=1][&from=N]`: an entity's messages or dead letters, peeked.
pub(crate) async fn entity(
    State(console): State<Console>,
    Query(q): Query<EntityQuery>,
) -> Response {
    let Some(bus) = console.host.bus() else {
        return no_bus();
    };
    let path = q.path.trim();
    if path.is_empty() {
        return page::bad_request(
            "Which entity? Give path=queue or path=topic/subscriptions/name.",
            Some(("/console/bus", "← Bus")),
        );
    }
    let dlq = match q.dlq.as_str() {
        "" | "0" => false,
        "1" => true,
        other => {
            return page::bad_request(
                &format!("dlq must be 1 or 0, not {other:?}"),
                Some(("/console/bus", "← Bus")),
            );
        }
    };
    let from = if q.from.trim().is_empty() {
        0
    } else {
        match parse_seq("from", &q.from) {
            Ok(f) => f,
            Err(e) => {
                return page::bad_request(&e, Some((&entity_url(path, dlq, None), "← first page")));
            }
        }
    };
    let depth = match bus.entity_depth(path) {
        Ok(d) => d,
        Err(e @ InspectError::UnknownEntity(_)) => {
            return page::not_found_back(&e.to_string(), "/console/bus", "← Bus");
        }
        Err(e) => return page::failure(&e.to_string()),
    };
    // One more than a page: whether there is a next page.
    let mut peeked = match bus.peek(path, dlq, from, PEEK_PAGE + 1).await {
        Ok(p) => p,
        Err(e) => return page::failure(&e.to_string()),
    };
    let more = peeked.len() > PEEK_PAGE;
    peeked.truncate(PEEK_PAGE);
    let path = depth.path.clone();
    let what = if dlq { "Dead-letters" } else { "Messages" };
    let body = html! {
        p { a href="/console/bus" { "← Bus" } }
        h1 { (path) @if dlq { " / $DeadLetterQueue" } }
        (page::notice(Some(q.notice.as_str()), q.error == "1"))
        dl.facts #counts {
            dt { "Active" } dd #count-active { (depth.depth.active) }
            dt { "of which locked" } dd #count-locked { (depth.depth.locked) }
            dt { "of which deferred" } dd #count-deferred { (depth.depth.deferred) }
            dt { "Scheduled" } dd #count-scheduled { (depth.depth.scheduled) }
            dt { "Dead-letter" } dd #count-deadletter { (depth.dead_letter) }
        }
        nav.actions aria-label="Queue or dead-letter queue" {
            a href=(entity_url(&path, false, None)) aria-current=[(!dlq).then_some("page")] { "Messages" }
            a href=(entity_url(&path, true, None)) aria-current=[dlq.then_some("page")] { "Dead-letters (" (depth.dead_letter) ")" }
        }
        h2 #peek { (what) " from sequence number " (from) }
        p.muted { "Peeked: nothing is locked and no delivery count changes. Scheduled, locked and deferred messages are included." }
        @for p in &peeked { (message(p, &path, dlq)) }
        @if peeked.is_empty() { p.muted #empty { "No message" @if from > 0 { " from sequence number " (from) } "." } }
        div.paging {
            @if from > 0 { a href=(entity_url(&path, dlq, None)) { "First page" } }
            @if more {
                @if let Some(last) = peeked.last() {
                    a #next rel="next" href=(entity_url(&path, dlq, Some(last.record.seq + 1))) { "Next " (PEEK_PAGE) " →" }
                }
            }
        }
    };
    frame(&format!("{what} of {path}"), body)
}

/// One message: its state, broker properties, custom properties, body (decoded when it is Dataverse's)
/// and, for a dead letter, the resubmit button.
fn message(p: &Peeked, path: &str, dlq: bool) -> Markup {
    let r = &p.record;
    let m = &r.meta;
    let b = &m.broker;
    let now = weft_bus::props::now_ms();
    let state = match p.state {
        Some(s) => s.name(),
        None if r.expires_ms <= now => "Expired",
        None => "Settled",
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".into());
    html! {
        article.message #{ "msg-" (r.seq) } aria-labelledby={ "msg-" (r.seq) "-h" } {
            h3 #{ "msg-" (r.seq) "-h" } { "Sequence number " (r.seq) " " span.muted { "· " (state) } }
            div.grid2 {
                section {
                    h4 { "Broker properties" }
                    dl.facts {
                        dt { "MessageId" } dd.mono { (text(&b.message_id)) }
                        dt { "CorrelationId" } dd.mono { (text(&b.correlation_id)) }
                        dt { "Label" } dd { (text(&b.label)) }
                        dt { "ContentType" } dd.mono { (text(&m.content_type)) }
                        dt { "SequenceNumber" } dd { (r.seq) }
                        dt { "DeliveryCount" } dd { (r.delivery_count) }
                        dt { "EnqueuedTimeUtc" } dd { (page::time(r.enqueued_ms)) }
                        @if r.visible_ms > r.enqueued_ms { dt { "ScheduledEnqueueTimeUtc" } dd { (page::time(r.visible_ms)) } }
                        dt { "ExpiresAtUtc" } dd { @if r.expires_ms == i64::MAX { "never" } @else { (page::time(r.expires_ms)) } }
                        @if let Some(t) = b.time_to_live { dt { "TimeToLive" } dd { (t) " s" } }
                        @for (k, v) in [("SessionId", &b.session_id), ("ReplyTo", &b.reply_to), ("To", &b.to),
                                        ("ReplyToSessionId", &b.reply_to_session_id), ("PartitionKey", &b.partition_key)] {
                            @if let Some(v) = v { dt { (k) } dd.mono { (v) } }
                        }
                    }
                    h4 { "Custom properties" }
                    @if m.user.is_empty() { p.muted { "None." } } @else {
                        table.props {
                            thead { tr { th { "Name" } th { "Type" } th { "Value" } } }
                            tbody {
                                @for (k, v) in &m.user {
                                    tr { td.mono { (k) } td { (kind(v)) } td.mono { (v.as_text()) } }
                                }
                            }
                        }
                    }
                }
                section {
                    h4 { "Body " span.muted { "(" (r.body.len()) " bytes)" } }
                    (body(r))
                }
            }
            @if dlq {
                form.inline method="post" action="/console/bus/resubmit" {
                    input type="hidden" name="path" value=(path);
                    input type="hidden" name="seq" value=(r.seq);
                    button.primary type="submit" aria-label={ "Resubmit message " (r.seq) " to " (path) } { "Resubmit to " (path) }
                }
            }
        }
    }
}

fn kind(v: &weft_bus::props::PropValue) -> &'static str {
    use weft_bus::props::PropValue;
    match v {
        PropValue::String(_) => "String",
        PropValue::DateTime(_) => "DateTime",
        PropValue::Bool(_) => "Boolean",
        PropValue::Int(_) => "Int64",
        PropValue::Double(_) => "Double",
    }
}

/// The format a body is in: its content type's, else sniffed from its first byte (`{` JSON, `<` XML,
/// `0x56` .NET binary XML's first record); None when it is no Dataverse format.
fn dataverse_format(body: &[u8], content_type: Option<&str>) -> Option<Format> {
    if let Some(f) = content_type.and_then(|c| Format::from_content_type(c).ok()) {
        return Some(f);
    }
    if content_type.is_some_and(|c| !c.trim().is_empty()) {
        return None;
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Some(Format::Json),
        Some(b'<') => Some(Format::Xml),
        Some(0x56) => Some(Format::Binary),
        _ => None,
    }
}

/// A body: the decoded context's summary when it is one, then the raw bytes (text escaped, binary as hex).
fn body(r: &Record) -> Markup {
    let bytes = &r.body[..];
    // DataContractJsonSerializer output may start with a UTF-8 BOM.
    let unbommed = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let format = dataverse_format(unbommed, r.meta.content_type.as_deref());
    let decoded = format.map(|f| (f, weft_message::decode(unbommed, f)));
    let binary = format == Some(Format::Binary) || std::str::from_utf8(bytes).is_err();
    html! {
        @match &decoded {
            Some((f, Ok(ctx))) => { (summary(ctx, *f)) }
            Some((f, Err(e))) => { p.muted { "Not a Dataverse execution context (" (f.content_type()) "): " (e.to_string()) } }
            None => { p.muted { "Not a Dataverse body (content type " (r.meta.content_type.as_deref().unwrap_or("none")) ")." } }
        }
        details.raw-body open[decoded.as_ref().is_none_or(|(_, d)| d.is_err())] {
            summary { "Raw body" @if binary { " (hex)" } }
            @if binary { (context::hex(bytes)) } @else { (context::raw_text(bytes)) }
        }
    }
}

fn summary(ctx: &RemoteExecutionContext, format: Format) -> Markup {
    html! {
        dl.facts.dataverse {
            dt { "Decoded" } dd { "RemoteExecutionContext (" (format.content_type()) ")" }
            dt { "Message" } dd.message-name { (ctx.message_name) }
            dt { "Table" } dd.table { (ctx.primary_entity_name) }
            dt { "Id" } dd.mono { (ctx.primary_entity_id) }
            dt { "Correlation id" } dd { a.mono href={ "/console/traces/" (ctx.correlation_id) } { (ctx.correlation_id) } }
            dt { "Depth" } dd { (ctx.depth) }
        }
        details {
            summary { "Summary" }
            pre.context-summary { (weft_message::summary(ctx)) }
        }
    }
}

/// The resubmit form.
#[derive(Debug, Deserialize)]
pub(crate) struct Resubmit {
    #[serde(default)]
    path: String,
    #[serde(default)]
    seq: String,
}

/// `POST /console/bus/resubmit`: dead letter `seq` of `path` back to `path`, then to the dead-letter page
/// with the outcome.
pub(crate) async fn resubmit(State(console): State<Console>, Form(f): Form<Resubmit>) -> Response {
    let Some(bus) = console.host.bus() else {
        return no_bus();
    };
    let path = f.path.trim();
    let seq = match parse_seq("seq", &f.seq) {
        Ok(s) => s,
        Err(e) => {
            return page::bad_request(&e, Some((&entity_url(path, true, None), "← Dead-letters")));
        }
    };
    let back = |notice: &str, error: bool| {
        Redirect::to(&format!(
            "{}&notice={}{}",
            entity_url(path, true, None),
            page::encode(notice),
            if error { "&error=1" } else { "" }
        ))
        .into_response()
    };
    match bus.resubmit(path, seq).await {
        Ok(new_seq) => back(
            &format!("Message {seq} resubmitted to {path} as sequence number {new_seq}."),
            false,
        ),
        Err(e @ InspectError::UnknownEntity(_)) => {
            page::not_found_back(&e.to_string(), "/console/bus", "← Bus")
        }
        Err(InspectError::Resubmit(weft_bus::broker::ResubmitError::NotFound(_))) => {
            page::not_found_back(
                &format!(
                    "No dead-lettered message with sequence number {seq} in {path} (it may have been resubmitted or received already)."
                ),
                &entity_url(path, true, None),
                "← Dead-letters",
            )
        }
        Err(e) => back(&format!("Resubmit failed: {e}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats come from the content type, else from the first byte; other bodies are not Dataverse's.
    #[test]
    fn sniffs_dataverse_formats() {
        assert_eq!(
            dataverse_format(b"x", Some("application/msbin1")),
            Some(Format::Binary)
        );
        assert_eq!(dataverse_format(b" {\"a\":1}", None), Some(Format::Json));
        assert_eq!(dataverse_format(b"<Remote", None), Some(Format::Xml));
        assert_eq!(dataverse_format(b"\x56\x02", None), Some(Format::Binary));
        assert_eq!(dataverse_format(b"{", Some("text/plain")), None);
        assert_eq!(dataverse_format(b"hello", None), None);
    }

    /// Sequence numbers are digits; anything else is named in the error.
    #[test]
    fn sequence_numbers() {
        assert_eq!(parse_seq("seq", " 42 "), Ok(42));
        assert!(parse_seq("seq", "-1").unwrap_err().contains("\"-1\""));
        assert!(parse_seq("from", "1e3").is_err());
        assert!(parse_seq("from", "99999999999999999999").is_err());
    }
}
