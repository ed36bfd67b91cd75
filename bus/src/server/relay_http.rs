//! Relay Hybrid Connections over HTTP: HTTP senders (`/{hc}`), and the listener control channel and the other `/$hc/{hc}?sb-hc-action=…` sockets (rendezvous, accept, WebSocket senders). The protocol
//! itself lives in `crate::relay`.

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
use crate::relay::{
    AcceptOffer, AcceptOutcome, HybridConnection, ListenerWork, RelayRequest, rendezvous,
};
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
    if hc.dispatch(ListenerWork::Request(req)).await.is_err() {
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

/// `/$hc/{path}?sb-hc-action=…`: a listener's control channel (`listen`), a rendezvous socket for a request
/// (`request`), a listener accepting or rejecting a WebSocket sender (`accept`), or a WebSocket sender
/// (`connect`).
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
    let host = header_str(&headers, "host")
        .unwrap_or("localhost")
        .to_string();
    let action = query_get(&pairs, "sb-hc-action").map(str::to_ascii_lowercase);
    match action.as_deref() {
        Some("listen") => listen(bus, hc, &pairs, &headers, &host, ws),
        Some(a @ ("request" | "accept")) => {
            let Some(id) = query_get(&pairs, "sb-hc-id") else {
                return error(
                    400,
                    &format!("sb-hc-action={a} needs the sb-hc-id of its address"),
                );
            };
            if a == "request" {
                rendezvous_request(&bus, &hc, id, ws)
            } else {
                accept(&bus, &hc, id, &pairs, ws)
            }
        }
        Some("connect") => connect(bus, hc, &pairs, &headers, &host, ws).await,
        Some(a) => error(
            400,
            &format!("sb-hc-action '{a}' is not one of listen, connect, accept, request"),
        ),
        None => error(
            400,
            "sb-hc-action is required (listen, connect, accept or request)",
        ),
    }
}

/// The WebSocket limits of relay sockets: a message as large as a relayed body, plus room for the JSON head.
fn sized(bus: &Bus, ws: WebSocketUpgrade) -> WebSocketUpgrade {
    let max = bus.config.max_relay_body_bytes.saturating_add(64 * 1024);
    ws.max_message_size(max).max_frame_size(max)
}

fn not_upgrade(what: &str) -> Response {
    error(400, &format!("The {what} must be a WebSocket upgrade"))
}

/// A socket's SAS token: the `sb-hc-token` query parameter, else the `ServiceBusAuthorization` header.
fn socket_token(pairs: &[(String, String)], headers: &HeaderMap) -> Option<String> {
    query_get(pairs, "sb-hc-token")
        .map(str::to_string)
        .or_else(|| header_str(headers, "servicebusauthorization").map(str::to_string))
}

/// The listener's token (`sb-hc-token` or `ServiceBusAuthorization`), checked for Listen.
fn listen(
    bus: Arc<Bus>,
    hc: Arc<HybridConnection>,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    host: &str,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = socket_token(pairs, headers);
    let policies = bus.config.sas_policies.clone();
    let resource = format!("http://{host}/{}", hc.name);
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
        return not_upgrade("listener control channel");
    };
    let shutdown = bus.shutdown.clone();
    let ws_base = format!("ws://{host}");
    sized(&bus, ws).on_upgrade(move |socket| async move {
        let check = move |t: &str| {
            if policies.is_empty() {
                sas::SasToken::parse(t)
            } else {
                crate::relay::check_listen(t, &policies, &resource)
            }
        };
        hc.serve_listener(socket, ws_base, expiry, check, shutdown)
            .await;
    })
}

/// A listener's rendezvous socket for request `id`. The address itself is the credential (an unguessable id
/// handed only to the listener, valid once, until the sender stops waiting), as in Azure.
fn rendezvous_request(
    bus: &Bus,
    hc: &HybridConnection,
    id: &str,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return not_upgrade("rendezvous connection");
    };
    let Some(pending) = hc.take_pending(id) else {
        return error(
            403,
            "The rendezvous address has expired or was already used",
        );
    };
    let wait = std::time::Duration::from_secs_f64(bus.config.relay_timeout_secs);
    sized(bus, ws).on_upgrade(move |socket| rendezvous::serve_request(socket, pending, wait))
}

/// A listener taking up WebSocket sender `id`: connecting accepts it, `statusCode` (with
/// `statusDescription`) rejects it with that status.
fn accept(
    bus: &Bus,
    hc: &HybridConnection,
    id: &str,
    pairs: &[(String, String)],
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(waiting) = hc.take_accept(id) else {
        return error(403, "The accept address has expired or was already used");
    };
    if let Some(code) = query_get(pairs, "statusCode") {
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|c| (400..600).contains(c))
            .unwrap_or(500);
        let why = query_get(pairs, "statusDescription")
            .unwrap_or("Rejected by the listener")
            .to_string();
        let _ = waiting.send(AcceptOutcome::Rejected(status, why));
        return error(410, "The connection was rejected as asked");
    }
    let Ok(ws) = ws else {
        return not_upgrade("accept connection");
    };
    sized(bus, ws).on_upgrade(move |socket| async move {
        let _ = waiting.send(AcceptOutcome::Accepted(Box::new(socket)));
    })
}

/// Longest a WebSocket sender waits for a listener to accept it (the protocol's 30 s).
const ACCEPT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A WebSocket sender: authorized for Send, offered to a listener, answered with the listener's rejection,
/// or upgraded and piped to the listener's accept socket.
async fn connect(
    bus: Arc<Bus>,
    hc: Arc<HybridConnection>,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    host: &str,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = socket_token(pairs, headers);
    if let Err(r) = bus.authorize(
        token.as_deref(),
        headers,
        &format!("/{}", hc.name),
        Right::Send,
    ) {
        return r;
    }
    let Ok(ws) = ws else {
        return not_upgrade("sender connection");
    };
    let mut fwd = Map::new();
    for (k, v) in headers {
        let n = k.as_str();
        if is_hop_header(n) || n.starts_with("sec-websocket-") || n == "authorization" {
            continue;
        }
        if let Ok(v) = v.to_str() {
            fwd.insert(n.to_string(), Value::String(v.to_string()));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let outcome = hc.offer_accept(&id);
    let offer = ListenerWork::Accept(AcceptOffer {
        id: id.clone(),
        headers: fwd,
        remote: None,
    });
    if hc.dispatch(offer).await.is_err() {
        hc.drop_accept(&id);
        return error(
            404,
            &format!(
                "No listener is connected to hybrid connection '{}' ({host})",
                hc.name
            ),
        );
    }
    match tokio::time::timeout(ACCEPT_WAIT, outcome).await {
        Err(_) => {
            hc.drop_accept(&id);
            error(
                504,
                &format!("The listener on '{}' did not accept within 30 s", hc.name),
            )
        }
        Ok(Err(_)) => error(
            502,
            &format!("The listener on '{}' went away before accepting", hc.name),
        ),
        Ok(Ok(AcceptOutcome::Rejected(status, why))) => error(status, &why),
        Ok(Ok(AcceptOutcome::Accepted(listener))) => {
            let shutdown = bus.shutdown.clone();
            sized(&bus, ws).on_upgrade(move |sender| rendezvous::pipe(sender, *listener, shutdown))
        }
    }
}
