//! Relay Hybrid Connections over HTTP: the sender side (`/{hc}`) and the listener control-channel upgrade
//! (`/$hc/{hc}?sb-hc-action=listen`). The control-channel protocol itself lives in `crate::relay`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use super::{Bus, error, header_str, query_get, query_pairs};
use crate::relay::{HybridConnection, RelayRequest};
use crate::sas::{self, Right};

/// Headers never forwarded to a listener (RFC 7230 connection headers and relay auth).
pub(super) fn is_hop_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "content-length"
            | "host"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "close"
            | "keep-alive"
            | "proxy-connection"
            | "servicebusauthorization"
    )
}

pub(super) async fn relay_send(
    bus: &Bus,
    hc: Arc<HybridConnection>,
    method: &Method,
    uri: &axum::http::Uri,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::CONNECT {
        return error(400, "CONNECT cannot be relayed");
    }
    let pairs = query_pairs(uri.query());
    // Precedence per the protocol: sb-hc-token query, ServiceBusAuthorization header, then Authorization.
    let from_query = query_get(&pairs, "sb-hc-token").map(str::to_string);
    let from_sba = header_str(headers, "servicebusauthorization").map(str::to_string);
    let used_authorization = from_query.is_none() && from_sba.is_none();
    let token = from_query
        .or(from_sba)
        .or_else(|| header_str(headers, "authorization").map(str::to_string));
    if let Err(r) = bus.authorize(token.as_deref(), headers, path, Right::Send) {
        return r;
    }
    let raw_query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("sb-hc-"))
        .collect();
    let target = if raw_query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", raw_query.join("&"))
    };
    let mut fwd = Map::new();
    for (k, v) in headers {
        let n = k.as_str();
        if is_hop_header(n)
            || (n == "authorization" && used_authorization && !bus.config.sas_policies.is_empty())
        {
            continue;
        }
        if let Ok(v) = v.to_str() {
            fwd.insert(n.to_string(), Value::String(v.to_string()));
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = RelayRequest {
        id: uuid::Uuid::new_v4().to_string(),
        method: method.to_string(),
        target,
        headers: fwd,
        body,
        reply: tx,
    };
    if hc.dispatch(req).await.is_err() {
        return error(
            502,
            &format!(
                "No listener is connected to hybrid connection '{}'",
                hc.name
            ),
        );
    }
    let wait = std::time::Duration::from_secs_f64(bus.config.relay_timeout_secs);
    match tokio::time::timeout(wait, rx).await {
        Err(_) => error(
            504,
            &format!(
                "The listener on '{}' did not answer within {} s",
                hc.name, bus.config.relay_timeout_secs
            ),
        ),
        Ok(Err(_)) => error(
            502,
            &format!(
                "The listener on '{}' disconnected before answering",
                hc.name
            ),
        ),
        Ok(Ok(r)) => {
            // Listeners may not answer 502 or 504 (those mean "relay problem" to senders).
            let status = match r.status {
                502 | 504 => 500,
                s => s,
            };
            let mut resp = Response::new(Body::from(r.body));
            *resp.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let h = resp.headers_mut();
            for (k, v) in r.headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) && !is_hop_header(n.as_str())
                {
                    h.append(n, v);
                }
            }
            let host = header_str(headers, "host")
                .unwrap_or("localhost")
                .to_string();
            if let Ok(v) = HeaderValue::from_str(&format!("1.1 {host}")) {
                h.append(header::VIA, v);
            }
            resp
        }
    }
}

pub(super) async fn relay_listen(
    State(bus): State<Arc<Bus>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let full = uri.path().to_string();
    let segments: Vec<String> = full
        .trim_start_matches("/$hc")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let Some(hc) = bus.resolve(&segments).and_then(|(n, _)| n.relay.clone()) else {
        return error(
            404,
            &format!("Hybrid connection '{}' does not exist", segments.join("/")),
        );
    };
    let pairs = query_pairs(uri.query());
    match query_get(&pairs, "sb-hc-action") {
        Some("listen") => {}
        Some(a) => {
            return error(
                400,
                &format!(
                    "sb-hc-action '{a}' is not supported by weft bus (only 'listen'; no rendezvous)"
                ),
            );
        }
        None => return error(400, "sb-hc-action is required (sb-hc-action=listen)"),
    }
    let resource_path = format!("/{}", hc.name);
    let token = query_get(&pairs, "sb-hc-token")
        .map(str::to_string)
        .or_else(|| header_str(&headers, "servicebusauthorization").map(str::to_string));
    let policies = bus.config.sas_policies.clone();
    let host = header_str(&headers, "host")
        .unwrap_or("localhost")
        .to_string();
    let resource = format!("http://{host}{resource_path}");
    let expiry = if policies.is_empty() {
        u64::MAX
    } else {
        match token
            .as_deref()
            .map(|t| crate::relay::check_listen(t, &policies, &resource))
        {
            Some(Ok(t)) => t.expiry,
            Some(Err(e)) => return error(e.status(), &e.to_string()),
            None => return error(401, &sas::SasError::Missing.to_string()),
        }
    };
    if !hc.has_room() {
        return error(
            403,
            "The listener quota (25) for this hybrid connection is reached",
        );
    }
    let Ok(ws) = ws else {
        return error(
            400,
            "The listener control channel must be a WebSocket upgrade",
        );
    };
    let shutdown = bus.shutdown.clone();
    // A listener's answer travels in one binary message: bounded like the requests relayed to it (plus room
    // for the JSON control frame).
    let max = bus.config.max_relay_body_bytes.saturating_add(64 * 1024);
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let check = move |t: &str| {
                if policies.is_empty() {
                    sas::SasToken::parse(t)
                } else {
                    crate::relay::check_listen(t, &policies, &resource)
                }
            };
            hc.serve_listener(socket, expiry, check, shutdown).await;
        })
}
