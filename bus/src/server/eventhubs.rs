//! Event Hubs wire shapes: sends to a hub, partition or publisher, and the weft partition read endpoint.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::servicebus::{parse_messages, timeout_ms};
use super::{Bus, error, query_get};
use crate::eventhub::{Hub, Route};
use crate::props::http_date;

pub(super) async fn eh_send(
    bus: &Bus,
    hub: &Hub,
    route: Route<'_>,
    headers: &HeaderMap,
    spelling: Option<&super::header_case::HeaderSpelling>,
    body: Bytes,
) -> Response {
    let msgs = match parse_messages(bus, headers, spelling, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut events = Vec::with_capacity(msgs.len());
    for mut m in msgs {
        let Some(p) = hub.pick(route, &m.meta) else {
            return error(400, "partition does not exist");
        };
        m.meta
            .broker
            .message_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().simple().to_string());
        events.push((p, m.meta, m.body));
    }
    match hub.send(&bus.store, events).await {
        Ok(placed) => {
            let mut r = StatusCode::CREATED.into_response();
            // weft extension: where the events landed, e.g. "0:12,3:4".
            let v = placed
                .iter()
                .map(|(p, o)| format!("{p}:{o}"))
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert("x-weft-partition-offsets", v);
            }
            r
        }
        Err(e) => error(500, &format!("The event could not be stored: {e:#}")),
    }
}

pub(super) async fn eh_read(bus: &Bus, hub: &Hub, p: &str, query: &[(String, String)]) -> Response {
    let Some(p) = p
        .parse::<usize>()
        .ok()
        .filter(|p| *p < hub.partitions.len())
    else {
        return error(
            400,
            &format!("Partition '{p}' does not exist in event hub '{}'", hub.name),
        );
    };
    let num = |name: &str, default: u64| -> Result<u64, Response> {
        query_get(query, name).map_or(Ok(default), |v| {
            v.parse::<u64>()
                .map_err(|_| error(400, &format!("{name} '{v}' is not a non-negative integer")))
        })
    };
    let (offset, max) = match (num("offset", 0), num("max", 100)) {
        (Ok(o), Ok(m)) => (o, m.clamp(1, 1000) as usize),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let timeout = match query_get(query, "timeout") {
        None => 0,
        Some(_) => match timeout_ms(query) {
            Ok(t) => t,
            Err(r) => return r,
        },
    };
    match hub.read(&bus.store, p, offset, max, timeout).await {
        Ok(recs) => {
            let events: Vec<Value> = recs
                .iter()
                .map(|r| {
                    let user: Map<String, Value> = r.meta.user.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                    let mut o = serde_json::json!({
                        "Offset": r.seq,
                        "SequenceNumber": r.seq,
                        "EnqueuedTimeUtc": http_date(r.enqueued_ms / 1000),
                        "BrokerProperties": Value::Object(r.meta.broker.to_map()),
                        "UserProperties": user,
                        "ContentType": r.meta.content_type,
                        "BodyBase64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &r.body),
                    });
                    if let Ok(s) = std::str::from_utf8(&r.body) {
                        o["Body"] = Value::String(s.to_string());
                    }
                    o
                })
                .collect();
            let next = recs.last().map_or(offset, |r| r.seq + 1);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        HeaderName::from_static("x-weft-next-offset"),
                        next.to_string(),
                    ),
                ],
                Value::Array(events).to_string(),
            )
                .into_response()
        }
        Err(e) => error(500, &format!("read failed: {e:#}")),
    }
}
