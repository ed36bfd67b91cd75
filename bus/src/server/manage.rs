//! The Service Bus management REST API (Atom feeds) as Azure serves it to `azure-sb`, the legacy Python
//! library and the current SDKs' administration clients: `PUT/GET/DELETE` on queues, topics,
//! subscriptions and rules, the `$Resources/Queues|Topics`, `…/Subscriptions` and `…/Rules` listings
//! (`$skip`, `$top`), and `$namespaceinfo`.
//!
//! Owns the XML shapes (parsing request entries with quick-xml, writing Azure's descriptions, feeds and
//! counts), the mapping of description properties to the bus's entity settings, the Manage right, and
//! persisting runtime entities' definitions through the store. It must not know delivery rules (the broker
//! applies the settings it is given) or other routes (the dispatcher decides what is a management request).
//!
//! Entities from the configuration (weft.toml, flags, `--emulator-config`) are listed and read like the
//! others but cannot be changed or deleted here: the configuration would bring them back at the next start.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::{Bus, Def, DefKind, Registry, Restore, error, header_str, query_get};
use crate::broker::Entity;
use crate::config::{
    BusConfig, QueueConfig, RuleConfig, SqlFilter, SubscriptionConfig, TopicConfig,
    check_entity_name, check_short_name, parse_rule_sql,
};
use crate::props::now_ms;
use crate::sas::{Right, SasError};
use crate::store::{Op, StoredEntity};

const SB_NS: &str = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const COUNT_NS: &str = "http://schemas.microsoft.com/netservices/2011/06/servicebus";
/// .NET's `TimeSpan.MaxValue`, Azure's "never" for TTLs and auto-delete.
const TIMESPAN_MAX: &str = "P10675199DT2H48M5.4775807S";
/// Azure's page size for listings (and the most `$top` gives).
const PAGE: usize = 100;

// ---------------------------------------------------------------------------------------------------
// A small element tree read with quick-xml (bounded: the body is at most 64 KiB, depth at most 32).

#[derive(Debug, Default, Clone)]
pub(crate) struct El {
    /// local name
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<El>,
}

impl El {
    fn child(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

const MAX_DEPTH: usize = 32;

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => s.into_owned(),
    }
}

/// Parses a whole XML document into its root element; errors say what and where.
pub(crate) fn parse_xml(body: &[u8]) -> Result<El, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<El> = Vec::new();
    let mut root: Option<El> = None;
    let at = |r: &Reader<&[u8]>| r.buffer_position();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", at(&reader)))?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let mut el = El {
                    name: local(e.name().as_ref()),
                    ..El::default()
                };
                for a in e.attributes() {
                    let a =
                        a.map_err(|e| format!("malformed attribute at byte {}: {e}", at(&reader)))?;
                    let v = a
                        .unescape_value()
                        .map_err(|e| format!("malformed attribute value: {e}"))?;
                    el.attrs.push((local(a.key.as_ref()), v.into_owned()));
                }
                if root.is_some() {
                    return Err("content after the root element".into());
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(el);
                if empty {
                    close(&mut stack, &mut root);
                }
            }
            Event::End(_) => close(&mut stack, &mut root),
            Event::Text(t) => {
                let s = t
                    .decode()
                    .map_err(|e| format!("malformed text at byte {}: {e}", at(&reader)))?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(t) => {
                let s = t
                    .decode()
                    .map_err(|e| format!("malformed CDATA at byte {}: {e}", at(&reader)))?;
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let s = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| format!("bad character reference: {e}"))?
                        .map(String::from)
                        .unwrap_or_default()
                } else {
                    let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .map(str::to_string)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                };
                push_text(&mut stack, &s)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err("a DOCTYPE is not accepted".into()),
        }
    }
    if !stack.is_empty() {
        return Err(format!(
            "element <{}> is not closed",
            stack[stack.len() - 1].name
        ));
    }
    root.ok_or_else(|| "no root element".to_string())
}

fn close(stack: &mut Vec<El>, root: &mut Option<El>) {
    if let Some(el) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(el),
            None => *root = Some(el),
        }
    }
}

fn push_text(stack: &mut [El], s: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

// ---------------------------------------------------------------------------------------------------
// Values: ISO 8601 durations (XML Schema `duration`, what .NET's XmlConvert writes), booleans, numbers.

/// `PT1M`, `P14D`, `PT0.5S`, … in seconds; None for `TimeSpan.MaxValue` (and anything as long: forever).
pub(crate) fn parse_duration(s: &str) -> Result<Option<f64>, String> {
    let bad = || format!("'{s}' is not an ISO 8601 duration such as PT1M or P14D");
    let rest = s.trim().strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Result<(), String> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let unit = units
                .iter()
                .find(|(u, _)| *u == c)
                .ok_or_else(|| format!("'{s}': unit '{c}' is not supported (use D, H, M, S)"))?;
            let n: f64 = num.parse().map_err(|_| bad())?;
            secs += n * unit.1;
            num.clear();
            any = true;
        }
        if num.is_empty() { Ok(()) } else { Err(bad()) }
    };
    take(date, &[('W', 604_800.0), ('D', 86_400.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return Err(bad());
        }
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !any {
        return Err(bad());
    }
    // TimeSpan.MaxValue is 10675199 days and change; treat anything from 10,000 days as "never".
    Ok(if secs >= 10_000.0 * 86_400.0 {
        None
    } else {
        Some(secs)
    })
}

/// Seconds as .NET writes a TimeSpan in XML (`PT1M`, `P1DT2H`, `PT0.5S`); None → `TimeSpan.MaxValue`.
pub(crate) fn fmt_duration(secs: Option<f64>) -> String {
    let Some(secs) = secs else {
        return TIMESPAN_MAX.to_string();
    };
    let total_ms = (secs * 1000.0).round() as i64;
    let (days, rem) = (total_ms / 86_400_000, total_ms % 86_400_000);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if h > 0 || m > 0 || s > 0 || ms > 0 || days == 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if ms > 0 {
            let frac = format!("{ms:03}");
            out.push_str(&format!("{s}.{}S", frac.trim_end_matches('0')));
        } else if s > 0 || (h == 0 && m == 0) {
            out.push_str(&format!("{s}S"));
        }
    }
    out
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{name} '{v}' is not true or false")),
    }
}

fn parse_int<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{name} '{v}' is not a whole number in range"))
}

/// ISO 8601 UTC (`2026-12-05T22:26:33.123Z`) from ms since the epoch.
pub(crate) fn iso_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = weft_message::calendar::civil_from_days(i128::from(days));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

// ---------------------------------------------------------------------------------------------------
// Descriptions → configuration.

/// Properties that sessions or forwarding would need: refused with a precise message rather than ignored,
/// because a client relying on them would silently misbehave.
fn refuse_unsupported(d: &El) -> Result<(), String> {
    if let Some(v) = d.text_of("RequiresSession")
        && parse_bool("RequiresSession", v)?
    {
        return Err("RequiresSession: sessions are not supported by weft's bus (session receivers are not served); create the entity without RequiresSession".into());
    }
    for f in ["ForwardTo", "ForwardDeadLetteredMessagesTo"] {
        if d.text_of(f).is_some_and(|v| !v.is_empty()) {
            return Err(format!(
                "{f}: auto-forwarding is not supported by weft's bus; receive and resend instead"
            ));
        }
    }
    Ok(())
}

fn dedup_window(d: &El, current: Option<f64>) -> Result<Option<f64>, String> {
    let on = match d.text_of("RequiresDuplicateDetection") {
        Some(v) => parse_bool("RequiresDuplicateDetection", v)?,
        None => current.is_some(),
    };
    if !on {
        return Ok(None);
    }
    Ok(match d.text_of("DuplicateDetectionHistoryTimeWindow") {
        Some(v) => Some(
            parse_duration(v)
                .map_err(|e| format!("DuplicateDetectionHistoryTimeWindow: {e}"))?
                .unwrap_or(7.0 * 86_400.0),
        ),
        None => Some(current.unwrap_or(600.0)),
    })
}

fn ttl(d: &El, current: Option<f64>) -> Result<Option<f64>, String> {
    match d.text_of("DefaultMessageTimeToLive") {
        Some(v) => parse_duration(v).map_err(|e| format!("DefaultMessageTimeToLive: {e}")),
        None => Ok(current),
    }
}

/// The settings a queue and a subscription share, where the description gives them.
fn receiver_settings(
    d: &El,
    lock_duration_secs: &mut f64,
    max_delivery_count: &mut u32,
    dead_letter_on_expiration: &mut bool,
) -> Result<(), String> {
    if let Some(v) = d.text_of("LockDuration") {
        *lock_duration_secs = parse_duration(v)
            .map_err(|e| format!("LockDuration: {e}"))?
            .ok_or("LockDuration must be at most 5 minutes")?;
    }
    if let Some(v) = d.text_of("MaxDeliveryCount") {
        *max_delivery_count = parse_int("MaxDeliveryCount", v)?;
    }
    if let Some(v) = d.text_of("DeadLetteringOnMessageExpiration") {
        *dead_letter_on_expiration = parse_bool("DeadLetteringOnMessageExpiration", v)?;
    }
    Ok(())
}

pub(crate) fn queue_from(d: &El, mut q: QueueConfig) -> Result<QueueConfig, String> {
    refuse_unsupported(d)?;
    receiver_settings(
        d,
        &mut q.lock_duration_secs,
        &mut q.max_delivery_count,
        &mut q.dead_letter_on_expiration,
    )?;
    if let Some(v) = d.text_of("MaxSizeInMegabytes") {
        q.max_size_mb = parse_int("MaxSizeInMegabytes", v)?;
    }
    q.default_ttl_secs = ttl(d, q.default_ttl_secs)?;
    q.duplicate_detection_window_secs = dedup_window(d, q.duplicate_detection_window_secs)?;
    let probe = BusConfig {
        queues: vec![q.clone()],
        ..BusConfig::default()
    };
    probe.validate().map_err(|e| e.to_string())?;
    Ok(q)
}

pub(crate) fn topic_from(d: &El, mut t: TopicConfig) -> Result<TopicConfig, String> {
    refuse_unsupported(d)?;
    if let Some(v) = d.text_of("MaxSizeInMegabytes") {
        t.max_size_mb = parse_int("MaxSizeInMegabytes", v)?;
    }
    t.default_ttl_secs = ttl(d, t.default_ttl_secs)?;
    t.duplicate_detection_window_secs = dedup_window(d, t.duplicate_detection_window_secs)?;
    let probe = BusConfig {
        topics: vec![t.clone()],
        ..BusConfig::default()
    };
    probe.validate().map_err(|e| e.to_string())?;
    Ok(t)
}

pub(crate) fn sub_from(
    d: &El,
    mut s: SubscriptionConfig,
    creating: bool,
) -> Result<SubscriptionConfig, String> {
    refuse_unsupported(d)?;
    receiver_settings(
        d,
        &mut s.lock_duration_secs,
        &mut s.max_delivery_count,
        &mut s.dead_letter_on_expiration,
    )?;
    s.default_ttl_secs = ttl(d, s.default_ttl_secs)?;
    // The default rule is only read at creation, as Azure does.
    if creating {
        let mut rule = match d.child("DefaultRuleDescription") {
            Some(r) => rule_from(r, "$Default")?,
            None => RuleConfig {
                name: "$Default".into(),
                filter: Default::default(),
                sql_filter: Some("1=1".into()),
            },
        };
        rule.name = "$Default".into();
        s.filter.clear();
        s.sql_filter = None;
        s.rules = Some(vec![rule]);
    }
    let probe = BusConfig {
        topics: vec![TopicConfig::new("t", vec![s.clone()])],
        ..BusConfig::default()
    };
    probe.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

/// Correlation filter system properties: XML element → weft filter key.
const CORRELATION_SYS: [(&str, &str); 8] = [
    ("CorrelationId", "sys.CorrelationId"),
    ("MessageId", "sys.MessageId"),
    ("To", "sys.To"),
    ("ReplyTo", "sys.ReplyTo"),
    ("Label", "sys.Label"),
    ("SessionId", "sys.SessionId"),
    ("ReplyToSessionId", "sys.ReplyToSessionId"),
    ("ContentType", "sys.ContentType"),
];

/// A `RuleDescription` (or `DefaultRuleDescription`): the filter by its `i:type`, the action refused
/// unless empty.
pub(crate) fn rule_from(r: &El, name: &str) -> Result<RuleConfig, String> {
    let mut rule = RuleConfig {
        name: name.to_string(),
        filter: Default::default(),
        sql_filter: None,
    };
    if let Some(a) = r.child("Action") {
        let kind = a.attr("type").unwrap_or("EmptyRuleAction");
        let expr = a.text_of("SqlExpression").unwrap_or_default();
        if !kind.ends_with("EmptyRuleAction") && !expr.is_empty() {
            return Err(format!(
                "Action: rule actions ({kind} '{expr}') are not supported by weft's bus: messages are copied unchanged"
            ));
        }
    }
    let Some(f) = r.child("Filter") else {
        rule.sql_filter = Some("1=1".into());
        return Ok(rule);
    };
    let kind = f.attr("type").unwrap_or("SqlFilter");
    let kind = kind.rsplit(':').next().unwrap_or(kind);
    match kind {
        "TrueFilter" => rule.sql_filter = Some("1=1".into()),
        "FalseFilter" => rule.sql_filter = Some("1=0".into()),
        "SqlFilter" => {
            let expr = f
                .text_of("SqlExpression")
                .ok_or("Filter: a SqlFilter needs a SqlExpression")?;
            if f.child("Parameters")
                .is_some_and(|p| !p.children.is_empty())
            {
                return Err(
                    "Filter: SqlFilter parameters (@name) are not supported by weft's bus".into(),
                );
            }
            parse_rule_sql(expr).map_err(|e| format!("SqlExpression '{expr}': {e}"))?;
            rule.sql_filter = Some(expr.to_string());
        }
        "CorrelationFilter" => {
            for (el, key) in CORRELATION_SYS {
                if let Some(v) = f.text_of(el)
                    && !v.is_empty()
                {
                    rule.filter.insert(key.to_string(), v.to_string());
                }
            }
            if let Some(props) = f.child("Properties") {
                for kv in &props.children {
                    let k = kv
                        .text_of("Key")
                        .ok_or("Filter: a correlation property has no Key")?;
                    let v = kv.child("Value").ok_or_else(|| {
                        format!("Filter: correlation property '{k}' has no Value")
                    })?;
                    let text = v.text.trim();
                    // Booleans compare as weft writes them (`true`/`false`).
                    let text = if v.attr("type").is_some_and(|t| t.ends_with("boolean")) {
                        text.to_ascii_lowercase()
                    } else {
                        text.to_string()
                    };
                    rule.filter.insert(format!("user.{k}"), text);
                }
            }
        }
        other => {
            return Err(format!(
                "Filter: type '{other}' is not one of SqlFilter, CorrelationFilter, TrueFilter, FalseFilter"
            ));
        }
    }
    Ok(rule)
}

// ---------------------------------------------------------------------------------------------------
// Configuration → descriptions.

fn b(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

fn count_details(active: u64, dead: u64, scheduled: u64) -> String {
    format!(
        "<CountDetails xmlns:d2p1=\"{COUNT_NS}\"><d2p1:ActiveMessageCount>{active}</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>{dead}</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>{scheduled}</d2p1:ScheduledMessageCount><d2p1:TransferMessageCount>0</d2p1:TransferMessageCount><d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount></CountDetails>"
    )
}

/// (active, dead-lettered, scheduled, bytes) of a receiver and its dead-letter queue.
fn counts(e: Option<&Arc<Entity>>) -> (u64, u64, u64, u64) {
    let Some(e) = e else { return (0, 0, 0, 0) };
    let now = now_ms();
    let (total, scheduled, bytes) = e.counts(now);
    let (dead, _, dbytes) = e.dlq.as_ref().map_or((0, 0, 0), |d| d.counts(now));
    (total - scheduled, dead, scheduled, bytes + dbytes)
}

fn times(def: &Def) -> String {
    format!(
        "<CreatedAt>{}</CreatedAt><UpdatedAt>{}</UpdatedAt><AccessedAt>0001-01-01T00:00:00Z</AccessedAt>",
        iso_time(def.created_ms),
        iso_time(def.updated_ms)
    )
}

fn queue_xml(q: &QueueConfig, def: &Def, e: Option<&Arc<Entity>>) -> String {
    let (active, dead, scheduled, bytes) = counts(e);
    format!(
        "<QueueDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\"><LockDuration>{}</LockDuration><MaxSizeInMegabytes>{}</MaxSizeInMegabytes><RequiresDuplicateDetection>{}</RequiresDuplicateDetection><RequiresSession>false</RequiresSession><DefaultMessageTimeToLive>{}</DefaultMessageTimeToLive><DeadLetteringOnMessageExpiration>{}</DeadLetteringOnMessageExpiration><DuplicateDetectionHistoryTimeWindow>{}</DuplicateDetectionHistoryTimeWindow><MaxDeliveryCount>{}</MaxDeliveryCount><EnableBatchedOperations>true</EnableBatchedOperations><SizeInBytes>{bytes}</SizeInBytes><MessageCount>{}</MessageCount><IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules></AuthorizationRules><Status>Active</Status>{}<SupportOrdering>true</SupportOrdering>{}<AutoDeleteOnIdle>{TIMESPAN_MAX}</AutoDeleteOnIdle><EnablePartitioning>false</EnablePartitioning><EntityAvailabilityStatus>Available</EntityAvailabilityStatus><EnableExpress>false</EnableExpress></QueueDescription>",
        fmt_duration(Some(q.lock_duration_secs)),
        q.max_size_mb,
        b(q.duplicate_detection_window_secs.is_some()),
        fmt_duration(q.default_ttl_secs),
        b(q.dead_letter_on_expiration),
        fmt_duration(Some(q.duplicate_detection_window_secs.unwrap_or(600.0))),
        q.max_delivery_count,
        active + dead + scheduled,
        times(def),
        count_details(active, dead, scheduled),
    )
}

fn topic_xml(t: &TopicConfig, def: &Def, subs: usize, bytes: u64) -> String {
    format!(
        "<TopicDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\"><DefaultMessageTimeToLive>{}</DefaultMessageTimeToLive><MaxSizeInMegabytes>{}</MaxSizeInMegabytes><RequiresDuplicateDetection>{}</RequiresDuplicateDetection><DuplicateDetectionHistoryTimeWindow>{}</DuplicateDetectionHistoryTimeWindow><EnableBatchedOperations>true</EnableBatchedOperations><SizeInBytes>{bytes}</SizeInBytes><FilteringMessagesBeforePublishing>false</FilteringMessagesBeforePublishing><IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules></AuthorizationRules><Status>Active</Status>{}<SupportOrdering>true</SupportOrdering>{}<SubscriptionCount>{subs}</SubscriptionCount><AutoDeleteOnIdle>{TIMESPAN_MAX}</AutoDeleteOnIdle><EnablePartitioning>false</EnablePartitioning><EntityAvailabilityStatus>Available</EntityAvailabilityStatus><EnableSubscriptionPartitioning>false</EnableSubscriptionPartitioning><EnableExpress>false</EnableExpress></TopicDescription>",
        fmt_duration(t.default_ttl_secs),
        t.max_size_mb,
        b(t.duplicate_detection_window_secs.is_some()),
        fmt_duration(Some(t.duplicate_detection_window_secs.unwrap_or(600.0))),
        times(def),
        count_details(0, 0, 0),
    )
}

fn sub_xml(s: &SubscriptionConfig, def: &Def, e: Option<&Arc<Entity>>) -> String {
    let (active, dead, scheduled, _) = counts(e);
    format!(
        "<SubscriptionDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\"><LockDuration>{}</LockDuration><RequiresSession>false</RequiresSession><DefaultMessageTimeToLive>{}</DefaultMessageTimeToLive><DeadLetteringOnMessageExpiration>{}</DeadLetteringOnMessageExpiration><DeadLetteringOnFilterEvaluationExceptions>true</DeadLetteringOnFilterEvaluationExceptions><MessageCount>{}</MessageCount><MaxDeliveryCount>{}</MaxDeliveryCount><EnableBatchedOperations>true</EnableBatchedOperations><Status>Active</Status>{}{}<AutoDeleteOnIdle>{TIMESPAN_MAX}</AutoDeleteOnIdle><EntityAvailabilityStatus>Available</EntityAvailabilityStatus></SubscriptionDescription>",
        fmt_duration(Some(s.lock_duration_secs)),
        fmt_duration(s.default_ttl_secs),
        b(s.dead_letter_on_expiration),
        active + dead + scheduled,
        s.max_delivery_count,
        times(def),
        count_details(active, dead, scheduled),
    )
}

/// The filter element of a rule: TrueFilter/FalseFilter/SqlFilter/CorrelationFilter as Azure writes them.
fn filter_xml(r: &RuleConfig) -> String {
    let sql = r.sql_filter.as_deref().map(parse_rule_sql);
    match (&sql, r.filter.is_empty()) {
        (None | Some(Ok(SqlFilter::True)), true) => {
            "<Filter i:type=\"TrueFilter\"><SqlExpression>1=1</SqlExpression><CompatibilityLevel>20</CompatibilityLevel></Filter>".into()
        }
        (Some(Ok(SqlFilter::False)), _) => {
            "<Filter i:type=\"FalseFilter\"><SqlExpression>1=0</SqlExpression><CompatibilityLevel>20</CompatibilityLevel></Filter>".into()
        }
        (Some(_), _) => {
            // A configured rule may AND a correlation map with SQL: written as one SQL expression.
            let mut parts: Vec<String> = r
                .filter
                .iter()
                .map(|(k, v)| format!("[{k}] = '{}'", v.replace('\'', "''")))
                .collect();
            if let Some(s) = &r.sql_filter {
                parts.push(s.clone());
            }
            format!(
                "<Filter i:type=\"SqlFilter\"><SqlExpression>{}</SqlExpression><CompatibilityLevel>20</CompatibilityLevel></Filter>",
                escape(parts.join(" AND ").as_str())
            )
        }
        (None, false) => {
            let mut sys = String::new();
            let mut props = String::new();
            for (k, v) in &r.filter {
                if let Some((el, _)) = CORRELATION_SYS.iter().find(|(_, key)| key == k) {
                    sys.push_str(&format!("<{el}>{}</{el}>", escape(v.as_str())));
                } else {
                    let name = k.strip_prefix("user.").unwrap_or(k);
                    props.push_str(&format!(
                        "<KeyValueOfstringanyType><Key>{}</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" i:type=\"d6p1:string\">{}</Value></KeyValueOfstringanyType>",
                        escape(name),
                        escape(v.as_str())
                    ));
                }
            }
            format!("<Filter i:type=\"CorrelationFilter\">{sys}<Properties>{props}</Properties></Filter>")
        }
    }
}

fn rule_xml(r: &RuleConfig, def: &Def) -> String {
    format!(
        "<RuleDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">{}<Action i:type=\"EmptyRuleAction\"/><CreatedAt>{}</CreatedAt><Name>{}</Name></RuleDescription>",
        filter_xml(r),
        iso_time(def.created_ms),
        escape(r.name.as_str())
    )
}

/// Where a response's ids point: the scheme served, the request's host, the api-version asked for.
struct Base {
    scheme: &'static str,
    host: String,
    api: String,
    /// The request's path as sent: a feed's id echoes it, as Azure's does (azure-sb checks that a rules
    /// listing's id contains the `…/Rules/` it asked for).
    raw_path: String,
}

impl Base {
    fn url(&self, path: &str) -> String {
        format!(
            "{}://{}/{}?api-version={}",
            self.scheme,
            self.host,
            path.trim_start_matches('/'),
            self.api
        )
    }
    fn namespace(&self) -> String {
        let h = self.host.split(':').next().unwrap_or("weft");
        let first = h.split('.').next().unwrap_or("weft");
        if first.is_empty() || first.chars().all(|c| c.is_ascii_digit()) || h.starts_with('[') {
            "weft".into()
        } else {
            first.to_string()
        }
    }
}

fn entry_xml(base: &Base, path: &str, title: &str, def_times: (i64, i64), content: &str) -> String {
    let url = base.url(path);
    format!(
        "<entry xmlns=\"http://www.w3.org/2005/Atom\"><id>{}</id><title type=\"text\">{}</title><published>{}</published><updated>{}</updated><author><name>{}</name></author><link rel=\"self\" href=\"{}\"/><content type=\"application/xml\">{content}</content></entry>",
        escape(url.as_str()),
        escape(title),
        iso_time(def_times.0),
        iso_time(def_times.1),
        escape(base.namespace().as_str()),
        escape(url.as_str()),
    )
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/atom+xml;type=entry;charset=utf-8",
        )],
        format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{body}"),
    )
        .into_response()
}

fn feed(
    base: &Base,
    title: &str,
    path: &str,
    entries: Vec<String>,
    skip: usize,
    more: bool,
    top: usize,
) -> Response {
    let _ = path;
    let self_url = base.url(&base.raw_path);
    let mut body = format!(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title type=\"text\">{}</title><id>{}</id><updated>{}</updated><link rel=\"self\" href=\"{}\"/>",
        escape(title),
        escape(self_url.as_str()),
        iso_time(now_ms()),
        escape(self_url.as_str())
    );
    if more {
        let next = format!("{self_url}&$skip={}&$top={top}", skip + top);
        body.push_str(&format!(
            "<link rel=\"next\" href=\"{}\"/>",
            escape(next.as_str())
        ));
    }
    for e in entries {
        body.push_str(&e);
    }
    body.push_str("</feed>");
    xml_response(StatusCode::OK, body)
}

/// Azure answers a GET of a missing entity with an empty feed (the SDKs turn it into "not found").
fn empty_feed(base: &Base, path: &str) -> Response {
    feed(
        base,
        "Publicly Listed Services",
        path,
        vec![],
        0,
        false,
        PAGE,
    )
}

// ---------------------------------------------------------------------------------------------------
// Requests.

/// What a management path names.
enum Target {
    NamespaceInfo,
    List(&'static str),
    Entity(String),
    Subscriptions(String),
    Subscription(String, String),
    Rules(String, String),
    Rule(String, String, String),
}

fn target(segments: &[String]) -> Result<Target, String> {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    match lower
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["$namespaceinfo"] => return Ok(Target::NamespaceInfo),
        ["$resources", "queues"] => return Ok(Target::List("Queues")),
        ["$resources", "topics"] => return Ok(Target::List("Topics")),
        ["$resources", other] => {
            return Err(format!(
                "Listing '$Resources/{other}' is not supported by weft's bus (Queues and Topics are)"
            ));
        }
        _ => {}
    }
    let Some(i) = lower.iter().position(|s| s == "subscriptions") else {
        return Ok(Target::Entity(segments.join("/")));
    };
    if i == 0 {
        return Err("a subscription path needs a topic: {topic}/Subscriptions/{name}".into());
    }
    let topic = segments[..i].join("/");
    let rest = &segments[i + 1..];
    let lrest = &lower[i + 1..];
    Ok(match (rest, lrest.get(1).map(String::as_str)) {
        ([], _) => Target::Subscriptions(topic),
        ([sub], _) => Target::Subscription(topic, sub.clone()),
        ([sub, _], Some("rules")) => Target::Rules(topic, sub.clone()),
        ([sub, _, rule], Some("rules")) => Target::Rule(topic, sub.clone(), rule.clone()),
        _ => {
            return Err(format!(
                "'{}' is not a management path ({{topic}}/Subscriptions/{{sub}}[/Rules[/{{rule}}]])",
                segments.join("/")
            ));
        }
    })
}

/// Whether a request is for the management API: GET, PUT or DELETE on a path that names no message
/// operation, Event Hubs route or hybrid connection (the caller checked the latter two).
pub(super) fn is_management(method: &Method, segments: &[String]) -> bool {
    matches!(*method, Method::GET | Method::PUT | Method::DELETE)
        && !segments.is_empty()
        && !segments.iter().any(|s| {
            s.eq_ignore_ascii_case("messages") || s.eq_ignore_ascii_case("$DeadLetterQueue")
        })
}

fn not_found(what: &str) -> Response {
    error(
        404,
        &format!("SubCode=40400. Not Found. The messaging entity '{what}' could not be found"),
    )
}

fn conflict(what: &str) -> Response {
    error(
        409,
        &format!("SubCode=40900. Conflict. The messaging entity '{what}' already exists"),
    )
}

/// Azure's quota error (the SDKs map a 403 without SubCode=40301 to QuotaExceededError).
fn quota(what: &str, max: usize) -> Response {
    error(
        403,
        &format!(
            "SubCode=40300. QuotaExceeded: the maximum number of {what} ({max}) has been reached; raise it in [bus] or delete some"
        ),
    )
}

fn read_only(what: &str) -> Response {
    error(
        403,
        &format!(
            "SubCode=40301. '{what}' is defined in the bus configuration (weft.toml, flags or --emulator-config) and cannot be changed or deleted through the management API; edit the configuration instead"
        ),
    )
}

/// The Manage right, as Azure checks it for management operations (a Send/Listen-only token → 401).
fn authorize_manage(
    bus: &Bus,
    headers: &HeaderMap,
    raw_path: &str,
    method: &Method,
) -> Result<(), Response> {
    let token = header_str(headers, "authorization");
    match bus.authorize(token, headers, raw_path, Right::Manage) {
        Ok(()) => Ok(()),
        Err(_) => {
            // Re-derive the reason (authorize already answered) for Azure's management wording.
            let host = header_str(headers, "host").unwrap_or("localhost");
            let resource = format!("http://{host}{raw_path}");
            match bus.authorize_token(token, &resource, Right::Manage) {
                Err(SasError::MissingRight(_)) => {
                    let claim = match *method {
                        Method::GET => "Manage,EntityRead",
                        Method::DELETE => "Manage,EntityDelete",
                        _ => "Manage,EntityWrite",
                    };
                    Err(error(
                        401,
                        &format!(
                            "40100: Unauthorized : Unauthorized access for '{}' operation on endpoint '{resource}'. {claim} claims required for this operation",
                            method.as_str()
                        ),
                    ))
                }
                Err(e) => Err(error(401, &e.to_string())),
                Ok(()) => Ok(()),
            }
        }
    }
}

/// Reads a request's Atom entry and returns its content's description element.
fn description(body: &[u8], want: &[&str]) -> Result<El, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(error(
            400,
            "The request body is empty: expected an Atom <entry> with a description in <content>",
        ));
    }
    let root = parse_xml(body)
        .map_err(|e| error(400, &format!("The request body is not valid XML: {e}")))?;
    if root.name != "entry" {
        return Err(error(
            400,
            &format!(
                "The request body's root element is <{}>: expected an Atom <entry>",
                root.name
            ),
        ));
    }
    let content = root
        .child("content")
        .ok_or_else(|| error(400, "The Atom entry has no <content> element"))?;
    let d = content
        .children
        .iter()
        .find(|c| want.contains(&c.name.as_str()))
        .ok_or_else(|| {
            let got = content
                .children
                .first()
                .map_or("nothing".to_string(), |c| format!("<{}>", c.name));
            error(
                400,
                &format!(
                    "The entry's content is {got}: expected <{}>",
                    want.join("> or <")
                ),
            )
        })?;
    Ok(d.clone())
}

fn paging(query: &[(String, String)]) -> Result<(usize, usize), Response> {
    let num = |name: &str, default: usize| -> Result<usize, Response> {
        match query_get(query, name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| error(400, &format!("{name} '{v}' is not a whole number"))),
        }
    };
    Ok((num("$skip", 0)?, num("$top", PAGE)?.clamp(1, PAGE)))
}

fn stored(key: &str, def: &Def) -> Result<StoredEntity, Response> {
    let (kind, json) = match &def.kind {
        DefKind::Queue(q) => ("queue", serde_json::to_string(q)),
        DefKind::Topic(t) => ("topic", serde_json::to_string(t)),
        DefKind::Subscription { topic, sub } => (
            "subscription",
            serde_json::to_string(&serde_json::json!({ "topic": topic, "subscription": sub })),
        ),
    };
    let def_json = json.map_err(|e| error(500, &format!("cannot record the entity: {e}")))?;
    Ok(StoredEntity {
        key: key.to_string(),
        kind: kind.to_string(),
        def: def_json,
        created_ms: def.created_ms,
        updated_ms: def.updated_ms,
    })
}

/// Serves a stored (management-API) entity again at start. Config entities of the same name win.
pub(super) fn restore_entity(
    reg: &mut Registry,
    se: &StoredEntity,
    restore: &mut Restore,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !reg.nodes.contains_key(&se.key),
        "an entity of the same name is in the configuration, which wins"
    );
    let def = |kind| Def {
        kind,
        from_config: false,
        created_ms: se.created_ms,
        updated_ms: se.updated_ms,
    };
    match se.kind.as_str() {
        "queue" => {
            let q: QueueConfig = serde_json::from_str(&se.def)?;
            reg.add_queue(&q, def(DefKind::Queue(q.clone())), Some(restore));
        }
        "topic" => {
            let t: TopicConfig = serde_json::from_str(&se.def)?;
            reg.add_topic(&t, def(DefKind::Topic(t.clone())), Some(restore));
        }
        "subscription" => {
            #[derive(serde::Deserialize)]
            struct S {
                topic: String,
                subscription: SubscriptionConfig,
            }
            let s: S = serde_json::from_str(&se.def)?;
            let t = topic_config(reg, &s.topic)
                .ok_or_else(|| anyhow::anyhow!("its topic '{}' no longer exists", s.topic))?;
            reg.add_subscription(
                &t,
                &s.subscription,
                def(DefKind::Subscription {
                    topic: t.name.clone(),
                    sub: s.subscription.clone(),
                }),
                Some(restore),
            )?;
        }
        other => anyhow::bail!("unknown kind '{other}'"),
    }
    Ok(())
}

fn topic_config(reg: &Registry, name: &str) -> Option<TopicConfig> {
    match &reg.defs.get(&name.to_ascii_lowercase())?.kind {
        DefKind::Topic(t) => Some(t.clone()),
        _ => None,
    }
}

fn sub_key(topic: &str, sub: &str) -> String {
    format!("{topic}/subscriptions/{sub}").to_ascii_lowercase()
}

/// Serves one management request (the caller read the body within the small-body limit).
pub(super) async fn handle(
    bus: &Bus,
    method: &Method,
    segments: &[String],
    raw_path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize_manage(bus, headers, raw_path, method) {
        return r;
    }
    let t = match target(segments) {
        Ok(t) => t,
        Err(e) => return error(400, &e),
    };
    let base = Base {
        scheme: bus.scheme(),
        host: header_str(headers, "host")
            .unwrap_or("localhost")
            .to_string(),
        api: query_get(query, "api-version")
            .unwrap_or("2017-04")
            .to_string(),
        raw_path: raw_path.to_string(),
    };
    let if_match = headers.contains_key(header::IF_MATCH);
    match (method.clone(), t) {
        (Method::GET, Target::NamespaceInfo) => namespace_info(&base),
        (Method::GET, Target::List(kind)) => list_entities(bus, &base, kind, query),
        (Method::GET, Target::Entity(path)) => get_entity(bus, &base, &path),
        (Method::PUT, Target::Entity(path)) => put_entity(bus, &base, &path, &body, if_match).await,
        (Method::DELETE, Target::Entity(path)) => {
            delete(bus, &path.to_ascii_lowercase(), &path).await
        }
        (Method::GET, Target::Subscriptions(topic)) => list_subs(bus, &base, &topic, query),
        (Method::GET, Target::Subscription(topic, sub)) => get_sub(bus, &base, &topic, &sub),
        (Method::PUT, Target::Subscription(topic, sub)) => {
            put_sub(bus, &base, &topic, &sub, &body, if_match).await
        }
        (Method::DELETE, Target::Subscription(topic, sub)) => {
            delete(
                bus,
                &sub_key(&topic, &sub),
                &format!("{topic}/Subscriptions/{sub}"),
            )
            .await
        }
        (Method::GET, Target::Rules(topic, sub)) => list_rules(bus, &base, &topic, &sub, query),
        (Method::GET, Target::Rule(topic, sub, rule)) => get_rule(bus, &base, &topic, &sub, &rule),
        (Method::PUT, Target::Rule(topic, sub, rule)) => {
            put_rule(bus, &base, &topic, &sub, &rule, Some(&body), if_match).await
        }
        (Method::DELETE, Target::Rule(topic, sub, rule)) => {
            put_rule(bus, &base, &topic, &sub, &rule, None, true).await
        }
        (m, _) => error(
            405,
            &format!("{m} is not a management operation on '{raw_path}'"),
        ),
    }
}

fn namespace_info(base: &Base) -> Response {
    let now = now_ms();
    let ns = base.namespace();
    let content = format!(
        "<NamespaceInfo xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\"><CreatedTime>{}</CreatedTime><MessagingSKU>Standard</MessagingSKU><ModifiedTime>{}</ModifiedTime><Name>{}</Name><NamespaceType>Messaging</NamespaceType></NamespaceInfo>",
        iso_time(now),
        iso_time(now),
        escape(ns.as_str())
    );
    xml_response(
        StatusCode::OK,
        entry_xml(base, "$namespaceinfo", &ns, (now, now), &content),
    )
}

fn entity_entry(bus: &Bus, reg: &Registry, base: &Base, key: &str, def: &Def) -> Option<String> {
    let node = reg.nodes.get(key);
    let (path, title, content) = match &def.kind {
        DefKind::Queue(q) => (
            q.name.clone(),
            q.name.clone(),
            queue_xml(q, def, node.and_then(|n| n.receiver.as_ref())),
        ),
        DefKind::Topic(t) => {
            let target = node.and_then(|n| n.target.clone());
            let receivers = target.map(|t| t.receivers()).unwrap_or_default();
            let subs = receivers.len();
            let bytes = receivers.iter().map(|r| counts(Some(r)).3).sum();
            (
                t.name.clone(),
                t.name.clone(),
                topic_xml(t, def, subs, bytes),
            )
        }
        DefKind::Subscription { topic, sub } => (
            format!("{topic}/Subscriptions/{}", sub.name),
            sub.name.clone(),
            sub_xml(sub, def, node.and_then(|n| n.receiver.as_ref())),
        ),
    };
    let _ = bus;
    Some(entry_xml(
        base,
        &path,
        &title,
        (def.created_ms, def.updated_ms),
        &content,
    ))
}

fn list_entities(bus: &Bus, base: &Base, kind: &str, query: &[(String, String)]) -> Response {
    let (skip, top) = match paging(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let reg = bus.reg();
    let all: Vec<(&String, &Def)> = reg
        .defs
        .iter()
        .filter(|(_, d)| {
            matches!(
                (&d.kind, kind),
                (DefKind::Queue(_), "Queues") | (DefKind::Topic(_), "Topics")
            )
        })
        .collect();
    let entries = all
        .iter()
        .skip(skip)
        .take(top)
        .filter_map(|(k, d)| entity_entry(bus, &reg, base, k, d))
        .collect();
    feed(
        base,
        kind,
        &format!("$Resources/{kind}"),
        entries,
        skip,
        all.len() > skip + top,
        top,
    )
}

fn get_entity(bus: &Bus, base: &Base, path: &str) -> Response {
    let key = path.to_ascii_lowercase();
    let reg = bus.reg();
    match reg.defs.get(&key) {
        Some(d) if !matches!(d.kind, DefKind::Subscription { .. }) => {
            match entity_entry(bus, &reg, base, &key, d) {
                Some(e) => xml_response(StatusCode::OK, e),
                None => empty_feed(base, path),
            }
        }
        _ => empty_feed(base, path),
    }
}

async fn commit(bus: &Bus, ops: Vec<Op>) -> Result<(), Response> {
    bus.store
        .commit(ops)
        .await
        .map_err(|e| error(500, &format!("The entity could not be stored: {e:#}")))
}

async fn put_entity(bus: &Bus, base: &Base, path: &str, body: &[u8], if_match: bool) -> Response {
    let d = match description(body, &["QueueDescription", "TopicDescription"]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let key = path.to_ascii_lowercase();
    let _guard = bus.manage_lock.lock().await;
    let existing = bus.reg().defs.get(&key).cloned();
    let now = now_ms();
    let new_def = match (&existing, if_match) {
        (None, true) => return not_found(path),
        (Some(_), false) => return conflict(path),
        (None, false) => {
            if bus.reg().nodes.contains_key(&key) {
                return conflict(path);
            }
            let entities = bus
                .reg()
                .defs
                .values()
                .filter(|d| !matches!(d.kind, DefKind::Subscription { .. }))
                .count();
            if entities >= bus.config.max_entities {
                return quota("queues and topics (max_entities)", bus.config.max_entities);
            }
            if let Err(e) = check_entity_name(
                if d.name == "QueueDescription" {
                    "queue"
                } else {
                    "topic"
                },
                path,
            ) {
                return error(400, &e.to_string());
            }
            let kind = if d.name == "QueueDescription" {
                queue_from(&d, QueueConfig::new(path)).map(DefKind::Queue)
            } else {
                topic_from(&d, TopicConfig::new(path, vec![])).map(DefKind::Topic)
            };
            match kind {
                Ok(kind) => Def {
                    kind,
                    from_config: false,
                    created_ms: now,
                    updated_ms: now,
                },
                Err(e) => return error(400, &e),
            }
        }
        (Some(old), true) => {
            if old.from_config {
                return read_only(path);
            }
            let kind = match (&old.kind, d.name.as_str()) {
                (DefKind::Queue(q), "QueueDescription") => {
                    queue_from(&d, q.clone()).map(DefKind::Queue)
                }
                (DefKind::Topic(t), "TopicDescription") => {
                    topic_from(&d, t.clone()).map(DefKind::Topic)
                }
                _ => Err(format!("'{path}' exists as another kind of entity")),
            };
            let kind = match kind {
                Ok(k) => k,
                Err(e) => return error(400, &e),
            };
            // Duplicate detection and a topic's TTL live in the sender's sequence state: fixed at creation,
            // as Azure fixes RequiresDuplicateDetection.
            let fixed = match (&old.kind, &kind) {
                (DefKind::Queue(a), DefKind::Queue(b)) => {
                    a.duplicate_detection_window_secs == b.duplicate_detection_window_secs
                }
                (DefKind::Topic(a), DefKind::Topic(b)) => {
                    a.duplicate_detection_window_secs == b.duplicate_detection_window_secs
                        && a.default_ttl_secs == b.default_ttl_secs
                }
                _ => true,
            };
            if !fixed {
                return error(
                    400,
                    "RequiresDuplicateDetection, DuplicateDetectionHistoryTimeWindow and a topic's DefaultMessageTimeToLive can only be set when the entity is created (delete and create it again)",
                );
            }
            Def {
                kind,
                from_config: false,
                created_ms: old.created_ms,
                updated_ms: now,
            }
        }
    };
    let se = match stored(&key, &new_def) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = commit(bus, vec![Op::PutEntity(se)]).await {
        return r;
    }
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut reg = bus.reg_mut();
    match (&new_def.kind, existing.is_some()) {
        (DefKind::Queue(q), false) => reg.add_queue(q, new_def.clone(), None),
        (DefKind::Topic(t), false) => reg.add_topic(t, new_def.clone(), None),
        (DefKind::Queue(q), true) => {
            if let Some(e) = reg.nodes.get(&key).and_then(|n| n.receiver.clone()) {
                e.set_settings(super::queue_settings(q));
            }
            reg.defs.insert(key.clone(), new_def.clone());
        }
        (DefKind::Topic(t), true) => {
            // The subscriptions' quota is the topic's.
            let subs: Vec<(String, SubscriptionConfig)> = reg
                .defs
                .iter()
                .filter_map(|(k, d)| match &d.kind {
                    DefKind::Subscription { topic, sub } if topic.eq_ignore_ascii_case(&key) => {
                        Some((k.clone(), sub.clone()))
                    }
                    _ => None,
                })
                .collect();
            for (k, s) in subs {
                if let Some(e) = reg.nodes.get(&k).and_then(|n| n.receiver.clone()) {
                    e.set_settings(super::sub_settings(t, &s));
                }
            }
            reg.defs.insert(key.clone(), new_def.clone());
        }
        _ => {}
    }
    match entity_entry(bus, &reg, base, &key, &new_def) {
        Some(e) => xml_response(status, e),
        None => StatusCode::OK.into_response(),
    }
}

async fn delete(bus: &Bus, key: &str, shown: &str) -> Response {
    let _guard = bus.manage_lock.lock().await;
    let def = bus.reg().defs.get(key).cloned();
    let Some(def) = def else {
        return not_found(shown);
    };
    if def.from_config {
        return read_only(shown);
    }
    // Out of the registry first (new requests get 404/410, holders see it deleted), then the store.
    let (gone, defs): (Vec<String>, Vec<String>) = {
        let mut reg = bus.reg_mut();
        let before: Vec<String> = reg.defs.keys().cloned().collect();
        let gone = reg.remove(key);
        let defs = before
            .into_iter()
            .filter(|k| !reg.defs.contains_key(k))
            .collect();
        (gone, defs)
    };
    let mut ops = Vec::new();
    for (i, k) in defs.iter().enumerate() {
        ops.push(Op::DropEntity {
            key: k.clone(),
            keys: if i == 0 { gone.clone() } else { vec![] },
        });
    }
    if let Err(r) = commit(bus, ops).await {
        return r;
    }
    StatusCode::OK.into_response()
}

fn sub_def(reg: &Registry, topic: &str, sub: &str) -> Option<(Def, SubscriptionConfig)> {
    let d = reg.defs.get(&sub_key(topic, sub))?;
    match &d.kind {
        DefKind::Subscription { sub: s, .. } => Some((d.clone(), s.clone())),
        _ => None,
    }
}

fn list_subs(bus: &Bus, base: &Base, topic: &str, query: &[(String, String)]) -> Response {
    let (skip, top) = match paging(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let reg = bus.reg();
    if topic_config(&reg, topic).is_none() {
        return not_found(topic);
    }
    let all: Vec<(&String, &Def)> = reg
        .defs
        .iter()
        .filter(|(_, d)| matches!(&d.kind, DefKind::Subscription { topic: t, .. } if t.eq_ignore_ascii_case(topic)))
        .collect();
    let entries = all
        .iter()
        .skip(skip)
        .take(top)
        .filter_map(|(k, d)| entity_entry(bus, &reg, base, k, d))
        .collect();
    feed(
        base,
        "Subscriptions",
        &format!("{topic}/Subscriptions"),
        entries,
        skip,
        all.len() > skip + top,
        top,
    )
}

fn get_sub(bus: &Bus, base: &Base, topic: &str, sub: &str) -> Response {
    let reg = bus.reg();
    let key = sub_key(topic, sub);
    match reg.defs.get(&key) {
        Some(d) => match entity_entry(bus, &reg, base, &key, d) {
            Some(e) => xml_response(StatusCode::OK, e),
            None => empty_feed(base, &key),
        },
        None => empty_feed(base, &format!("{topic}/Subscriptions/{sub}")),
    }
}

async fn put_sub(
    bus: &Bus,
    base: &Base,
    topic: &str,
    sub: &str,
    body: &[u8],
    if_match: bool,
) -> Response {
    let d = match description(body, &["SubscriptionDescription"]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let shown = format!("{topic}/Subscriptions/{sub}");
    if let Err(e) = check_short_name("subscription", sub) {
        return error(400, &e.to_string());
    }
    let _guard = bus.manage_lock.lock().await;
    let Some(t) = topic_config(&bus.reg(), topic) else {
        return not_found(topic);
    };
    let key = sub_key(&t.name, sub);
    let existing = sub_def(&bus.reg(), &t.name, sub);
    let max = bus.config.max_subscriptions_per_topic;
    if existing.is_none() && !if_match {
        let subs = bus
            .reg()
            .nodes
            .get(&t.name.to_ascii_lowercase())
            .and_then(|n| n.target.clone())
            .map_or(0, |t| t.receivers().len());
        if subs >= max {
            return quota(
                "subscriptions of a topic (max_subscriptions_per_topic)",
                max,
            );
        }
    }
    let now = now_ms();
    let new_def = match (&existing, if_match) {
        (None, true) => return not_found(&shown),
        (Some(_), false) => return conflict(&shown),
        (Some((old, _)), true) if old.from_config => return read_only(&shown),
        (None, false) => match sub_from(&d, SubscriptionConfig::new(sub, Default::default()), true)
        {
            Ok(s) => Def {
                kind: DefKind::Subscription {
                    topic: t.name.clone(),
                    sub: s,
                },
                from_config: false,
                created_ms: now,
                updated_ms: now,
            },
            Err(e) => return error(400, &e),
        },
        (Some((old, s)), true) => match sub_from(&d, s.clone(), false) {
            Ok(s) => Def {
                kind: DefKind::Subscription {
                    topic: t.name.clone(),
                    sub: s,
                },
                from_config: false,
                created_ms: old.created_ms,
                updated_ms: now,
            },
            Err(e) => return error(400, &e),
        },
    };
    let se = match stored(&key, &new_def) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = commit(bus, vec![Op::PutEntity(se)]).await {
        return r;
    }
    let DefKind::Subscription { sub: sc, .. } = &new_def.kind else {
        return error(500, "internal: not a subscription");
    };
    let mut reg = bus.reg_mut();
    if existing.is_none() {
        if let Err(e) = reg.add_subscription(&t, sc, new_def.clone(), None) {
            return error(500, &format!("{e:#}"));
        }
    } else {
        if let Some(e) = reg.nodes.get(&key).and_then(|n| n.receiver.clone()) {
            e.set_settings(super::sub_settings(&t, sc));
        }
        reg.defs.insert(key.clone(), new_def.clone());
    }
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    match entity_entry(bus, &reg, base, &key, &new_def) {
        Some(e) => xml_response(status, e),
        None => StatusCode::OK.into_response(),
    }
}

fn rule_entry(base: &Base, topic: &str, sub: &str, r: &RuleConfig, def: &Def) -> String {
    entry_xml(
        base,
        &format!("{topic}/Subscriptions/{sub}/Rules/{}", r.name),
        &r.name,
        (def.created_ms, def.updated_ms),
        &rule_xml(r, def),
    )
}

fn list_rules(
    bus: &Bus,
    base: &Base,
    topic: &str,
    sub: &str,
    query: &[(String, String)],
) -> Response {
    let (skip, top) = match paging(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some((def, s)) = sub_def(&bus.reg(), topic, sub) else {
        return not_found(&format!("{topic}/Subscriptions/{sub}"));
    };
    let rules = s.named_rules();
    let entries = rules
        .iter()
        .skip(skip)
        .take(top)
        .map(|r| rule_entry(base, topic, &s.name, r, &def))
        .collect();
    feed(
        base,
        "Rules",
        &format!("{topic}/Subscriptions/{sub}/Rules"),
        entries,
        skip,
        rules.len() > skip + top,
        top,
    )
}

fn get_rule(bus: &Bus, base: &Base, topic: &str, sub: &str, rule: &str) -> Response {
    let shown = format!("{topic}/Subscriptions/{sub}/Rules/{rule}");
    let Some((def, s)) = sub_def(&bus.reg(), topic, sub) else {
        return empty_feed(base, &shown);
    };
    match s
        .named_rules()
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(rule))
    {
        Some(r) => xml_response(StatusCode::OK, rule_entry(base, topic, &s.name, r, &def)),
        None => empty_feed(base, &shown),
    }
}

/// Creates (`body` Some, no If-Match), replaces (If-Match) or deletes (`body` None) a rule: the
/// subscription's definition is rewritten and its filters replaced.
async fn put_rule(
    bus: &Bus,
    base: &Base,
    topic: &str,
    sub: &str,
    rule: &str,
    body: Option<&[u8]>,
    if_match: bool,
) -> Response {
    let shown = format!("{topic}/Subscriptions/{sub}/Rules/{rule}");
    let new_rule = match body {
        Some(b) => match description(b, &["RuleDescription"]) {
            Ok(d) => match rule_from(&d, rule) {
                Ok(r) => Some(r),
                Err(e) => return error(400, &e),
            },
            Err(r) => return r,
        },
        None => None,
    };
    if let Err(e) = check_short_name("rule", rule) {
        return error(400, &e.to_string());
    }
    let _guard = bus.manage_lock.lock().await;
    let Some(t) = topic_config(&bus.reg(), topic) else {
        return not_found(topic);
    };
    let Some((old, s)) = sub_def(&bus.reg(), &t.name, sub) else {
        return not_found(&format!("{topic}/Subscriptions/{sub}"));
    };
    if old.from_config {
        return read_only(&format!("{topic}/Subscriptions/{sub}"));
    }
    let mut rules = s.named_rules();
    let at = rules.iter().position(|r| r.name.eq_ignore_ascii_case(rule));
    match (&new_rule, at, if_match) {
        (None, None, _) => return not_found(&shown),
        (None, Some(i), _) => {
            rules.remove(i);
        }
        (Some(_), Some(_), false) => return conflict(&shown),
        (Some(_), None, true) => return not_found(&shown),
        (Some(r), Some(i), true) => rules[i] = r.clone(),
        (Some(_), None, false) if rules.len() >= bus.config.max_subscriptions_per_topic => {
            return quota(
                "rules of a subscription (max_subscriptions_per_topic)",
                bus.config.max_subscriptions_per_topic,
            );
        }
        (Some(r), None, false) => rules.push(r.clone()),
    }
    let mut sc = s.clone();
    sc.filter.clear();
    sc.sql_filter = None;
    // No rule left: the subscription gets nothing, as in Azure.
    sc.rules = Some(rules);
    let filters = match super::sub_filters(&sc) {
        Ok(f) => f,
        Err(e) => return error(400, &e.to_string()),
    };
    let now = now_ms();
    let def = Def {
        kind: DefKind::Subscription {
            topic: t.name.clone(),
            sub: sc.clone(),
        },
        from_config: false,
        created_ms: old.created_ms,
        updated_ms: now,
    };
    let key = sub_key(&t.name, sub);
    let se = match stored(&key, &def) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = commit(bus, vec![Op::PutEntity(se)]).await {
        return r;
    }
    let mut reg = bus.reg_mut();
    if let Some(e) = reg.nodes.get(&key).and_then(|n| n.receiver.clone()) {
        e.set_filters(filters);
    }
    reg.defs.insert(key, def.clone());
    match new_rule {
        None => StatusCode::OK.into_response(),
        Some(r) => {
            let status = if at.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            xml_response(status, rule_entry(base, &t.name, &sc.name, &r, &def))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations read and write as .NET's XmlConvert does; MaxValue is "never".
    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT1M").unwrap(), Some(60.0));
        assert_eq!(parse_duration("P14D").unwrap(), Some(14.0 * 86400.0));
        assert_eq!(parse_duration("PT0.5S").unwrap(), Some(0.5));
        assert_eq!(parse_duration("P1DT2H3M4S").unwrap(), Some(93784.0));
        assert_eq!(parse_duration(TIMESPAN_MAX).unwrap(), None);
        for bad in ["", "1M", "P", "PT", "P1Y", "PTM", "P1.2.3D", "PT5X"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(fmt_duration(Some(60.0)), "PT1M");
        assert_eq!(fmt_duration(Some(600.0)), "PT10M");
        assert_eq!(fmt_duration(Some(14.0 * 86400.0)), "P14D");
        assert_eq!(fmt_duration(Some(93784.0)), "P1DT2H3M4S");
        assert_eq!(fmt_duration(Some(0.5)), "PT0.5S");
        assert_eq!(fmt_duration(None), TIMESPAN_MAX);
        for s in [1.0, 30.0, 61.5, 3600.0, 86399.0] {
            assert_eq!(parse_duration(&fmt_duration(Some(s))).unwrap(), Some(s));
        }
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_709_251_200_123), "2024-03-01T00:00:00.123Z");
    }

    /// The XML reader keeps text, attributes and nesting; hostile input gets a precise error.
    #[test]
    fn xml_reader() {
        let el = parse_xml(
            br#"<?xml version="1.0"?><entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="x"><LockDuration>PT30S</LockDuration><A i:type="b:c" xmlns:i="i">x &amp; &#65;</A><E/></QueueDescription></content></entry>"#,
        )
        .unwrap();
        let d = &el.child("content").unwrap().children[0];
        assert_eq!(d.text_of("LockDuration"), Some("PT30S"));
        assert_eq!(d.text_of("A"), Some("x & A"));
        assert_eq!(d.child("A").unwrap().attr("type"), Some("b:c"));
        assert!(d.child("E").is_some());
        for (bad, want) in [
            (&b"<a><b></a>"[..], "malformed"),
            (b"<a>", "not closed"),
            (b"<!DOCTYPE x [<!ENTITY e 'x'>]><a>&e;</a>", "DOCTYPE"),
            (b"<a/><b/>", "after the root"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let err = parse_xml(bad).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse_xml(deep.as_bytes()).unwrap_err().contains("deeper"));
    }
}
