//! Service Bus wire shapes: single and batch sends, custom-property headers, received-message headers
//! (BrokerProperties, UserProperties, Location) and lock-URI operations. Delivery rules stay in `broker`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::header_case::HeaderSpelling;
use super::{BATCH_CONTENT_TYPE, Bus, error, header_str, query_get};
use crate::broker::{Delivered, Entity, LockError, Mode, NewMessage, SendError, SendTarget};
use crate::props::{BrokerProps, PropValue, ascii_json, http_date, user_props_from_json};
use crate::store::Meta;

/// The request header a receiver sends to get every custom property, typed and with its exact name, in one
/// `UserProperties` JSON header. Only on request: the legacy REST libraries (npm `azure-sb`, PyPI
/// `azure-servicebus` 0.21) turn every unknown response header into a custom property, and would report
/// a bogus `userproperties = NaN`.
pub const USER_PROPERTIES_REQUEST: &str = "x-weft-userproperties";

/// Largest single property (name + value), bytes.
const MAX_PROPERTY_BYTES: usize = 32 * 1024;
/// Largest total of properties (system + user, as stored), bytes.
const MAX_PROPERTIES_BYTES: usize = 64 * 1024;

/// Headers that are HTTP or protocol plumbing, never custom properties.
pub(super) fn is_standard_header(name: &str) -> bool {
    const STD: &[&str] = &[
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "content-language",
        "content-md5",
        "content-range",
        "content-location",
        "authorization",
        "brokerproperties",
        "connection",
        "keep-alive",
        "expect",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-charset",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "date",
        "cache-control",
        "pragma",
        "via",
        "warning",
        "cookie",
        "origin",
        "referer",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "max-forwards",
        "proxy-authorization",
        "proxy-connection",
        "servicebusauthorization",
        "forwarded",
        USER_PROPERTIES_REQUEST,
    ];
    STD.contains(&name)
        || name.starts_with("x-ms-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("sec-")
}

/// Parses one message from a single-send request; `spelling` gives custom property names their case as sent.
pub(super) fn single_message(
    headers: &HeaderMap,
    spelling: Option<&HeaderSpelling>,
    body: Bytes,
) -> Result<NewMessage, String> {
    let broker = match headers.get("brokerproperties") {
        Some(v) => BrokerProps::parse_header(
            v.to_str()
                .map_err(|_| "BrokerProperties header is not ASCII")?,
        )?,
        None => BrokerProps::default(),
    };
    let mut user = Vec::new();
    for (name, value) in headers {
        let n = name.as_str();
        if is_standard_header(n) {
            continue;
        }
        let v = value
            .to_str()
            .map_err(|_| format!("custom property header '{n}' has a non-ASCII value"))?;
        user.push((
            spelling.map_or(n, |s| s.of(n)).to_string(),
            PropValue::from_header(v).map_err(|e| format!("custom property '{n}': {e}"))?,
        ));
    }
    let content_type = header_str(headers, "content-type").map(str::to_string);
    Ok(NewMessage {
        meta: Meta {
            content_type,
            broker,
            user,
        },
        body,
    })
}

/// Parses a batch body: `[{"Body": "...", "IsBodyBase64": bool, "BrokerProperties": {...}, "UserProperties": {...}}, ...]`.
/// weft accepts an optional per-item `ContentType` string (Azure's batch has no per-message content type).
pub(super) fn batch_messages(body: &[u8]) -> Result<Vec<NewMessage>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("batch body is not valid JSON: {e}"))?;
    let Value::Array(items) = v else {
        return Err("batch body must be a JSON array of {\"Body\", \"BrokerProperties\", \"UserProperties\"}".into());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(mut obj) = item else {
                return Err(format!("batch item {i} is not a JSON object"));
            };
            // Taken out of the item rather than copied: it is most of the batch's bytes.
            let body = match obj.remove("Body") {
                Some(Value::String(s)) => s,
                Some(_) => return Err(format!("batch item {i}: Body must be a string")),
                None => return Err(format!("batch item {i}: Body is missing")),
            };
            // Azure's batch message also has `IsBodyBase64` (binary bodies, e.g. application/msbin1).
            let body = match obj.get("IsBodyBase64") {
                Some(Value::Bool(true)) => Bytes::from(
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &body)
                        .map_err(|e| {
                            format!(
                                "batch item {i}: IsBodyBase64 is true but Body is not base64: {e}"
                            )
                        })?,
                ),
                Some(Value::Bool(false) | Value::Null) | None => Bytes::from(body),
                Some(_) => {
                    return Err(format!(
                        "batch item {i}: IsBodyBase64 must be true or false"
                    ));
                }
            };
            let broker = match obj.get("BrokerProperties") {
                Some(v) if !v.is_null() => {
                    BrokerProps::parse(v).map_err(|e| format!("batch item {i}: {e}"))?
                }
                _ => BrokerProps::default(),
            };
            let user = match obj.get("UserProperties") {
                Some(v) if !v.is_null() => {
                    user_props_from_json(v).map_err(|e| format!("batch item {i}: {e}"))?
                }
                _ => vec![],
            };
            let content_type = match obj.get("ContentType") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(_) => return Err(format!("batch item {i}: ContentType must be a string")),
            };
            Ok(NewMessage {
                meta: Meta {
                    content_type,
                    broker,
                    user,
                },
                body,
            })
        })
        .collect()
}

pub(super) fn is_batch(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type")
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case(BATCH_CONTENT_TYPE))
}

pub(super) fn parse_messages(
    bus: &Bus,
    headers: &HeaderMap,
    spelling: Option<&HeaderSpelling>,
    body: Bytes,
) -> Result<Vec<NewMessage>, Response> {
    let max = bus.config.max_message_bytes;
    let msgs = if is_batch(headers) {
        if body.len() > max {
            return Err(error(
                403,
                &format!(
                    "The batch of {} bytes exceeds the maximum message size of {max} bytes",
                    body.len()
                ),
            ));
        }
        batch_messages(&body)
    } else {
        single_message(headers, spelling, body).map(|m| vec![m])
    }
    .map_err(|e| error(400, &e))?;
    for m in &msgs {
        let props = serde_json::to_string(&m.meta).map_or(0, |s| s.len());
        // Azure: each property ≤ 32 KB, all properties ≤ 64 KB, else a SerializationException.
        if let Some((k, _)) = m
            .meta
            .user
            .iter()
            .find(|(k, v)| k.len() + v.as_text().len() > MAX_PROPERTY_BYTES)
        {
            return Err(error(
                400,
                &format!("SerializationException: property '{k}' is larger than 32 KB"),
            ));
        }
        if props > MAX_PROPERTIES_BYTES {
            return Err(error(
                400,
                &format!(
                    "SerializationException: the message properties ({props} bytes) exceed 64 KB"
                ),
            ));
        }
        let size = m.body.len() + props;
        if size > max {
            return Err(error(
                403,
                &format!(
                    "The received message (size {size} bytes including properties) exceeds the maximum message size of {max} bytes"
                ),
            ));
        }
    }
    Ok(msgs)
}

pub(super) async fn sb_send(
    bus: &Bus,
    target: &SendTarget,
    headers: &HeaderMap,
    spelling: Option<&HeaderSpelling>,
    body: Bytes,
) -> Response {
    let msgs = match parse_messages(bus, headers, spelling, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match target.send(&bus.store, msgs).await {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(SendError::QuotaExceeded(d)) => error(403, &format!("QuotaExceeded: {d}")),
        Err(SendError::Store(e)) => error(500, &format!("The message could not be stored: {e:#}")),
    }
}

/// `?timeout=N` seconds (default 60, at most 3600).
pub(super) fn timeout_ms(query: &[(String, String)]) -> Result<i64, Response> {
    match query_get(query, "timeout") {
        None => Ok(60_000),
        Some(t) => match t.parse::<u64>() {
            Ok(s) => Ok((s.min(3600) * 1000) as i64),
            Err(_) => Err(error(
                400,
                &format!("timeout '{t}' is not a whole number of seconds"),
            )),
        },
    }
}

pub(super) async fn sb_receive(
    bus: &Bus,
    e: &Entity,
    mode: Mode,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Response {
    let timeout = match timeout_ms(query) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match e
        .receive(&bus.store, mode, timeout, bus.shutdown.clone())
        .await
    {
        Ok(Some(d)) => delivered_response(e, d, headers, bus.scheme()),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        // Deleted through the management API during the long poll: what a new request would get.
        Err(err) if e.is_deleted() => error(410, &format!("{err:#}")),
        Err(err) => error(500, &format!("receive failed: {err:#}")),
    }
}

/// 200 (receive-and-delete) or 201 + Location (peek-lock) with BrokerProperties and custom properties.
pub(super) fn delivered_response(
    e: &Entity,
    d: Delivered,
    req_headers: &HeaderMap,
    scheme: &str,
) -> Response {
    let rec = &d.rec;
    let mut bp = rec.meta.broker.to_map();
    bp.insert("DeliveryCount".into(), rec.delivery_count.into());
    bp.insert("EnqueuedSequenceNumber".into(), 0.into());
    bp.insert(
        "EnqueuedTimeUtc".into(),
        http_date(rec.enqueued_ms / 1000).into(),
    );
    bp.insert("SequenceNumber".into(), rec.seq.into());
    bp.insert("State".into(), "Active".into());
    if rec.expires_ms != i64::MAX && rec.meta.broker.time_to_live.is_none() {
        bp.insert(
            "TimeToLive".into(),
            ((rec.expires_ms - rec.visible_ms) as f64 / 1000.0).into(),
        );
    }
    let mut resp = Response::new(Body::from(rec.body.clone()));
    let h = resp.headers_mut();
    if let Some((token, until)) = d.lock {
        bp.insert("LockToken".into(), token.to_string().into());
        bp.insert("LockedUntilUtc".into(), http_date(until / 1000).into());
        let host = header_str(req_headers, "host").unwrap_or("localhost");
        let loc = format!("{scheme}://{host}/{}/messages/{}/{token}", e.path, rec.seq);
        if let Ok(v) = HeaderValue::from_str(&loc) {
            h.insert(header::LOCATION, v);
        }
        *resp.status_mut() = StatusCode::CREATED;
    }
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ascii_json(&Value::Object(bp))) {
        h.insert("brokerproperties", v);
    }
    if let Some(ct) = rec
        .meta
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(header::CONTENT_TYPE, ct);
    }
    let mut all = Map::new();
    for (k, v) in &rec.meta.user {
        all.insert(k.clone(), v.to_json());
        // Azure's form where the name is a legal header; names like Dataverse claim URIs are only in UserProperties.
        if let (Ok(n), Ok(val)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v.to_header()),
        ) && !is_standard_header(n.as_str())
        {
            h.append(n, val);
        }
    }
    let asked = req_headers
        .get(USER_PROPERTIES_REQUEST)
        .is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
    if asked
        && !all.is_empty()
        && let Ok(v) = HeaderValue::from_str(&ascii_json(&Value::Object(all)))
    {
        h.insert("userproperties", v);
    }
    resp
}

pub(super) async fn sb_lock_op(
    bus: &Bus,
    e: &Entity,
    m: &Method,
    id: &str,
    token: &str,
) -> Response {
    let not_found = || {
        error(
            404,
            &format!(
                "The lock supplied is invalid: no locked message '{id}' with lock token '{token}' (it may have expired or been settled)"
            ),
        )
    };
    let res = match *m {
        Method::DELETE => e.complete(&bus.store, Some(id), token).await,
        Method::PUT => e.abandon(&bus.store, Some(id), token).await,
        Method::POST => {
            return match e.renew(&bus.store, Some(id), token) {
                Ok(until) => {
                    let bp = serde_json::json!({ "LockToken": token, "LockedUntilUtc": http_date(until / 1000) });
                    (StatusCode::OK, [("brokerproperties", bp.to_string())]).into_response()
                }
                Err(LockError::NotFound) => not_found(),
            };
        }
        _ => {
            return error(
                405,
                "Use DELETE (complete), PUT (unlock) or POST (renew lock) on a lock URI",
            );
        }
    };
    match res {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(LockError::NotFound)) => not_found(),
        Err(err) => error(500, &format!("lock operation failed: {err:#}")),
    }
}
