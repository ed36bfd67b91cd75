//! The wire: what each contract sends (Service Bus / Event Hubs batch send, Relay Hybrid Connections HTTP,
//! webhooks) and how answers become a [`PostOutcome`] or a classified [`PostError`].
//!
//! Owns request construction, the Dataverse claim properties and response reading. It must not retry,
//! sleep or record anything: one call, one HTTP request.

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::{Map, Value, json};
use uuid::Uuid;
use weft_message::{Format, MessageError, RemoteExecutionContext};
use weft_store::system::{Contract, UserClaim};

use crate::endpoint::{Auth, Endpoint};
use crate::error::{ErrorKind, PostError, parse_retry_after};

/// Service Bus batch content type (azure-messaging.md §1.1): the only REST form that carries property names
/// that are not legal HTTP header names, such as Dataverse's claim URIs.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";
/// Prefix of Dataverse's claim properties (dataverse.md §16).
pub const CLAIMS: &str = "http://schemas.microsoft.com/xrm/2011/Claims/";
/// Lifetime of the SAS tokens signed per request.
const TOKEN_LIFETIME_SECS: u64 = 3600;
/// Longest error text kept from a response body.
const DETAIL_CHARS: usize = 300;
/// Bytes of an error answer read to build its message: enough for [`DETAIL_CHARS`] after whitespace is
/// collapsed, with room for redaction to see a quoted secret whole. The rest is never read.
const ERROR_READ_BYTES: usize = 4096;
/// Longest encoding of one character of a secret that redaction knows (`%25XX` for each of 4 bytes): a
/// secret cut by the end of the read window leaves at most this many bytes per character behind it.
const MAX_ENCODED_CHAR_BYTES: usize = 20;

/// Per-post facts that are not in the context: who is posting, under which job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The system job's id: BrokerProperties `MessageId`, `webhook-id`. Stable across retries so listeners
    /// can drop duplicates. At most 128 characters (Service Bus limit).
    pub message_id: String,
    /// The operation's correlation id: BrokerProperties `CorrelationId`, webhook `x-ms-correlation-request-id`.
    pub correlation_id: Uuid,
    /// The organization's host name (e.g. `org.crm.dynamics.com`): webhook `x-ms-dynamics-organization` and
    /// the `…/Claims/Organization` property, sent as given.
    pub organization: String,
    /// Event Hubs `PartitionKey`; `None` = the context's `PrimaryEntityId`, so one record's events stay in
    /// order on one partition.
    pub partition_key: Option<String>,
}

/// A successful post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostOutcome {
    /// The HTTP status (201 for Service Bus / Event Hubs, the listener's or webhook's 2xx otherwise).
    pub status: u16,
    /// The two-way (4) or REST (3) listener's answer; empty for every other contract.
    pub response_body: String,
    /// Whether the size rule removed ParentContext, InputParameters and the images.
    pub truncated: bool,
    /// Time from sending the request to reading the answer (its body only when it is used: two-way, REST).
    pub latency: Duration,
}

/// Posts `ctx` to `ep` with `http`. `stored` is a copy of `ctx` already encoded (the bytes a system job
/// holds, in their format): sent as it is when it is in the endpoint's format and within the size limit,
/// which saves encoding the context again; otherwise `ctx` is encoded (and reduced if too large).
pub(crate) async fn post(
    http: &reqwest::Client,
    ep: &Endpoint,
    ctx: &RemoteExecutionContext,
    d: &Delivery,
    stored: Option<(&[u8], Format)>,
) -> Result<PostOutcome, PostError> {
    if d.message_id.is_empty() || d.message_id.chars().count() > 128 {
        return Err(PostError::config(format!(
            "MessageId must be 1 to 128 characters, got {}",
            d.message_id.chars().count()
        )));
    }
    let webhook = ep.contract == Contract::Webhook;
    let enc = match stored {
        Some((bytes, format)) if ep.sends_as_stored(format, bytes.len()) => Body {
            bytes: Cow::Borrowed(bytes),
            truncated: false,
        },
        _ => {
            let encoded = weft_message::encode_limited(ctx, ep.format, ep.size_limit()).map_err(
                |e| match e {
                    MessageError::TooLarge { size, limit } => PostError::too_large(size, limit),
                    other => PostError::config(format!("cannot encode the context: {other}")),
                },
            )?;
            Body {
                bytes: Cow::Owned(encoded.bytes),
                truncated: encoded.truncated,
            }
        }
    };
    let truncated = enc.truncated;
    // The relay and webhook bodies are the encoded bytes themselves: handed over, not copied.
    let req = if webhook {
        webhook_request(http, ep, ctx, d, enc)?
    } else if ep.is_relay() {
        relay_request(http, ep, ctx, d, enc)?
    } else {
        batch_request(http, ep, ctx, d, &enc)?
    };
    let two_way = matches!(ep.contract, Contract::TwoWay | Contract::Rest);
    let answer_limit = two_way.then(|| ep.max_response_bytes());
    let (status, body, latency) = execute(ep, req, false, answer_limit).await?;
    Ok(PostOutcome {
        status,
        response_body: body,
        truncated,
        latency,
    })
}

/// The message body to send: a stored copy borrowed as it is (the batch format escapes it into its own
/// body, so copying it first would be a copy for nothing), or the context encoded for this post.
struct Body<'a> {
    bytes: Cow<'a, [u8]>,
    /// Whether the size rule removed ParentContext, InputParameters and the images.
    truncated: bool,
}

/// Sends `req`; 2xx → (status, answer text, latency), anything else → a classified error. With
/// `listener_answer_ok`, any relay answer carrying `Via` (produced by a listener) also counts as success.
///
/// Memory stays bounded whatever the service sends: a successful answer's body is read only when
/// `answer_limit` is given (two-way and REST answers), up to that many bytes, and a longer one fails; an
/// error answer is read up to [`ERROR_READ_BYTES`]. The rest is never read (the connection is dropped).
pub(crate) async fn execute(
    ep: &Endpoint,
    req: reqwest::RequestBuilder,
    listener_answer_ok: bool,
    answer_limit: Option<usize>,
) -> Result<(u16, String, Duration), PostError> {
    let webhook = ep.contract == Contract::Webhook;
    let start = Instant::now();
    let mut resp = req
        .timeout(ep.timeout())
        .send()
        .await
        .map_err(|e| transport(ep, e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // A Via header means the listener produced the answer (azure-messaging.md §3), not the relay.
    let via = resp.headers().contains_key("via");
    if (200..300).contains(&status) || (listener_answer_ok && via) {
        let Some(limit) = answer_limit else {
            return Ok((status, String::new(), start.elapsed()));
        };
        let (body, whole) = read_at_most(&mut resp, limit)
            .await
            .map_err(|e| transport(ep, e))?;
        if !whole {
            return Err(PostError::new(
                ErrorKind::AnswerTooLarge,
                format!(
                    "the answer from {} is larger than {limit} bytes (the endpoint's max_response_bytes); the rest was not read",
                    ep.shown_target()
                ),
            ));
        }
        return Ok((
            status,
            String::from_utf8_lossy(&body).into_owned(),
            start.elapsed(),
        ));
    }
    // An unreadable error body still leaves the status to report.
    let (body, whole) = read_at_most(&mut resp, ERROR_READ_BYTES)
        .await
        .unwrap_or_default();
    drop(resp);
    let detail = error_detail(ep, &body, whole);
    let detail = match status {
        502 | 503 if ep.is_relay() && !via => format!("no active listener: {detail}"),
        _ => detail,
    };
    Err(PostError::status(
        status,
        retry_after,
        webhook,
        &format!("from {}: {detail}", ep.shown_target()),
    ))
}

/// Reads at most `limit` bytes of the body; `true` when that was the whole body.
async fn read_at_most(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok((Vec::new(), false));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The first [`DETAIL_CHARS`] of an error answer, secret-free: redacted while whole, and, when the read
/// window cut the body, without the window's tail, where a quoted secret may have been cut in two.
fn error_detail(ep: &Endpoint, body: &[u8], whole: bool) -> String {
    let mut text = ep.redact(&String::from_utf8_lossy(body));
    if !whole {
        let longest = ep.secrets().iter().map(|s| s.chars().count()).max();
        let tail = longest.unwrap_or(0) * MAX_ENCODED_CHAR_BYTES;
        let mut keep = text.len().saturating_sub(tail);
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
        text.truncate(keep);
    }
    let text = ep.redact(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    text.chars().take(DETAIL_CHARS).collect()
}

/// A reqwest failure → Connect / Timeout / Transport, with the URL (which may hold `?code=`) removed and the
/// cause chain redacted.
fn transport(ep: &Endpoint, e: reqwest::Error) -> PostError {
    let kind = if e.is_builder() {
        // The request could not be built (e.g. an invalid URL): retrying cannot help.
        ErrorKind::Config
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Transport
    };
    let e = e.without_url();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let what = match kind {
        ErrorKind::Timeout => format!("no answer within {:?}", ep.timeout()),
        ErrorKind::Connect => "cannot connect".to_string(),
        _ => "request failed".to_string(),
    };
    PostError::new(
        kind,
        format!(
            "{} {}: {what} ({})",
            verb(ep),
            ep.shown_target(),
            ep.redact(&chain)
        ),
    )
    .for_webhook(ep.contract == Contract::Webhook)
}

fn verb(ep: &Endpoint) -> &'static str {
    if ep.contract == Contract::Webhook {
        "POST"
    } else {
        "send to"
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The SAS token for a request to the endpoint's entity URI; an expired ready-made token fails here, before
/// anything is sent.
pub(crate) fn sas_token(ep: &Endpoint) -> Result<String, PostError> {
    match &ep.auth {
        Auth::SasKey { key_name, key } => Ok(weft_bus::sas::generate_token(
            ep.target(),
            key_name,
            key,
            now_unix() + TOKEN_LIFETIME_SECS,
        )),
        Auth::SasToken(t) => {
            let se = t
                .split(['&', ' '])
                .find_map(|kv| kv.strip_prefix("se="))
                .and_then(|v| v.parse::<u64>().ok());
            match se {
                Some(se) if se <= now_unix() => Err(PostError::status(
                    401,
                    None,
                    false,
                    &format!(
                        "the configured SAS token expired at {se} (Unix seconds); nothing was sent"
                    ),
                )),
                Some(_) => Ok(t.clone()),
                None => Err(PostError::config(
                    "the configured SAS token has no numeric se= expiry",
                )),
            }
        }
        _ => Err(PostError::config("this contract needs SAS credentials")),
    }
}

/// Dataverse's message properties for Service Bus, Event Hubs and relay messages (dataverse.md §16).
///
/// Always: `Organization`, `EntityLogicalName`, `RequestName`. User claims by `userclaim`:
/// 1 None → no user claims; 2 UserId → `User` (UserId) and `InitiatingUser` (InitiatingUserId);
/// 3 UserInfo → as 2 plus `InitiatingUserAgent` when the context has one. `MessageMaxSizeExceeded: true`
/// only on truncated messages.
pub fn claims(
    user_claim: UserClaim,
    ctx: &RemoteExecutionContext,
    d: &Delivery,
    truncated: bool,
) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(format!("{CLAIMS}{k}"), Value::String(v));
    };
    put("Organization", d.organization.clone());
    if matches!(user_claim, UserClaim::UserId | UserClaim::UserInfo) {
        put("User", ctx.user_id.to_string());
        put("InitiatingUser", ctx.initiating_user_id.to_string());
    }
    if user_claim == UserClaim::UserInfo
        && let Some(agent) = ctx
            .initiating_user_agent
            .as_deref()
            .filter(|a| !a.is_empty())
    {
        put("InitiatingUserAgent", agent.to_string());
    }
    put("EntityLogicalName", ctx.primary_entity_name.clone());
    put("RequestName", ctx.message_name.clone());
    if truncated {
        m.insert("MessageMaxSizeExceeded".into(), Value::Bool(true));
    }
    m
}

fn broker_properties(ctx: &RemoteExecutionContext, d: &Delivery) -> Map<String, Value> {
    let mut b = Map::new();
    b.insert("MessageId".into(), json!(d.message_id));
    b.insert("CorrelationId".into(), json!(d.correlation_id.to_string()));
    b.insert("Label".into(), json!(ctx.message_name));
    b
}

/// Service Bus queue/topic and Event Hubs: one message through the batch endpoint, so the claim names
/// survive. Text formats travel as the `Body` string; binary XML as base64 with `IsBodyBase64: true`.
fn batch_request(
    http: &reqwest::Client,
    ep: &Endpoint,
    ctx: &RemoteExecutionContext,
    d: &Delivery,
    enc: &Body<'_>,
) -> Result<reqwest::RequestBuilder, PostError> {
    let mut broker = broker_properties(ctx, d);
    if ep.contract == Contract::EventHub {
        let key = d
            .partition_key
            .clone()
            .unwrap_or_else(|| ctx.primary_entity_id.to_string());
        broker.insert("PartitionKey".into(), json!(key));
    }
    let user = claims(ep.user_claim, ctx, d, enc.truncated);
    let body = batch_body(ep.format, &enc.bytes, &broker, &user);
    Ok(http
        .post(format!("{}/messages", ep.target()))
        .header(AUTHORIZATION, sas_token(ep)?)
        .header(CONTENT_TYPE, BATCH_CONTENT_TYPE)
        .body(body))
}

/// The batch body of one message: `[{"Body", "BrokerProperties", "ContentType", "IsBodyBase64",
/// "UserProperties"}]`, members in that (sorted) order, as a `serde_json::Value` of them prints. Written
/// directly rather than through a `Value`: the body (a context of a few KB) is escaped once into the request
/// instead of first copied into a JSON tree.
fn batch_body(
    format: Format,
    bytes: &[u8],
    broker: &Map<String, Value>,
    user: &Map<String, Value>,
) -> Vec<u8> {
    const ALWAYS: &str = "strings and string-keyed maps always serialize to JSON";
    fn put(out: &mut Vec<u8>, text: &str) {
        serde_json::to_writer(out, text).expect(ALWAYS);
    }
    fn put_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
        serde_json::to_writer(out, map).expect(ALWAYS);
    }
    let text = match format {
        Format::Json | Format::Xml => std::str::from_utf8(bytes).ok(),
        Format::Binary => None,
    };
    // The escaped text is a little longer than the bytes; the properties add a few hundred.
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 1024);
    out.extend_from_slice(b"[{\"Body\":");
    match text {
        Some(text) => put(&mut out, text),
        None => put(&mut out, &B64.encode(bytes)),
    }
    out.extend_from_slice(b",\"BrokerProperties\":");
    put_map(&mut out, broker);
    // Azure's batch item has no content type; weft's bus keeps this one (Azure ignores unknown members).
    out.extend_from_slice(b",\"ContentType\":");
    put(&mut out, format.content_type());
    if text.is_none() {
        out.extend_from_slice(b",\"IsBodyBase64\":true");
    }
    out.extend_from_slice(b",\"UserProperties\":");
    put_map(&mut out, user);
    out.extend_from_slice(b"}]");
    out
}

/// Relay (one-way, two-way, REST) through Hybrid Connections HTTP: the body as is, the token in
/// `ServiceBusAuthorization`, BrokerProperties and the claims as JSON headers (`UserProperties`, the shape
/// weft's bus hands to receivers).
fn relay_request(
    http: &reqwest::Client,
    ep: &Endpoint,
    ctx: &RemoteExecutionContext,
    d: &Delivery,
    enc: Body<'_>,
) -> Result<reqwest::RequestBuilder, PostError> {
    let broker = Value::Object(broker_properties(ctx, d));
    let user = Value::Object(claims(ep.user_claim, ctx, d, enc.truncated));
    let mut h = HeaderMap::new();
    for (name, v) in [("brokerproperties", &broker), ("userproperties", &user)] {
        let v = weft_bus::props::ascii_json(v)
            .parse()
            .map_err(|_| PostError::config(format!("{name} header is not a valid header value")))?;
        h.insert(name, v);
    }
    Ok(http
        .post(ep.target())
        .header("ServiceBusAuthorization", sas_token(ep)?)
        .header(CONTENT_TYPE, ep.format.content_type())
        .headers(h)
        .body(enc.bytes.into_owned()))
}

/// Webhook: JSON body, Dataverse's `x-ms-*` headers, the configured auth, optional Standard Webhooks signature.
fn webhook_request(
    http: &reqwest::Client,
    ep: &Endpoint,
    ctx: &RemoteExecutionContext,
    d: &Delivery,
    enc: Body<'_>,
) -> Result<reqwest::RequestBuilder, PostError> {
    let mut req = http
        .post(webhook_url(ep)?)
        .header(CONTENT_TYPE, "application/json")
        .header(
            "x-ms-dynamics-organization",
            header_value("x-ms-dynamics-organization", &d.organization)?,
        )
        .header(
            "x-ms-dynamics-entity-name",
            header_value("x-ms-dynamics-entity-name", &ctx.primary_entity_name)?,
        )
        .header(
            "x-ms-dynamics-request-name",
            header_value("x-ms-dynamics-request-name", &ctx.message_name)?,
        )
        .header("x-ms-correlation-request-id", d.correlation_id.to_string());
    if enc.truncated {
        req = req.header("x-ms-dynamics-msg-size-exceeded", "true");
    }
    if let Auth::Headers(hs) = &ep.auth {
        for (n, v) in hs {
            req = req.header(n, v);
        }
    }
    if let Some(secret) = &ep.signing {
        let ts = now_unix();
        req = req
            .header("webhook-id", &d.message_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                secret.sign(&d.message_id, ts, &enc.bytes),
            );
    }
    Ok(req.body(enc.bytes.into_owned()))
}

/// A header value from context data; characters HTTP cannot carry are a permanent error, not a send failure.
fn header_value(name: &str, value: &str) -> Result<HeaderValue, PostError> {
    HeaderValue::from_str(value).map_err(|_| {
        PostError::config(format!(
            "{name} value {value:?} has characters an HTTP header cannot carry (control or non-ASCII)"
        ))
    })
}

/// The webhook URL with the auth query parameters (`code=` or the settings) appended.
pub(crate) fn webhook_url(ep: &Endpoint) -> Result<reqwest::Url, PostError> {
    let mut url = reqwest::Url::parse(ep.target())
        .map_err(|e| PostError::config(format!("url is not a valid URL: {e}")))?;
    match &ep.auth {
        Auth::WebhookKey(k) => {
            url.query_pairs_mut().append_pair("code", k);
        }
        Auth::Query(q) => {
            url.query_pairs_mut().extend_pairs(q.iter());
        }
        _ => {}
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch item as a `serde_json::Value` prints it: what [`batch_body`] must equal byte for byte.
    fn through_value(
        format: Format,
        bytes: &[u8],
        broker: &Map<String, Value>,
        user: &Map<String, Value>,
    ) -> Vec<u8> {
        let mut item = Map::new();
        match (format, std::str::from_utf8(bytes)) {
            (Format::Json | Format::Xml, Ok(text)) => {
                item.insert("Body".into(), json!(text));
            }
            _ => {
                item.insert("Body".into(), json!(B64.encode(bytes)));
                item.insert("IsBodyBase64".into(), json!(true));
            }
        }
        item.insert("BrokerProperties".into(), Value::Object(broker.clone()));
        item.insert("UserProperties".into(), Value::Object(user.clone()));
        item.insert("ContentType".into(), json!(format.content_type()));
        Value::Array(vec![Value::Object(item)])
            .to_string()
            .into_bytes()
    }

    #[test]
    fn batch_body_is_what_a_value_prints() {
        let ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
        let d = Delivery {
            message_id: "m-1".into(),
            correlation_id: Uuid::new_v4(),
            organization: "org.crm.dynamics.com".into(),
            partition_key: None,
        };
        let mut broker = broker_properties(&ctx, &d);
        broker.insert("PartitionKey".into(), json!("p\"1"));
        let user = claims(UserClaim::UserInfo, &ctx, &d, true);
        for format in [Format::Json, Format::Xml, Format::Binary] {
            let bytes = weft_message::encode(&ctx, format);
            assert_eq!(
                String::from_utf8_lossy(&batch_body(format, &bytes, &broker, &user)),
                String::from_utf8_lossy(&through_value(format, &bytes, &broker, &user)),
                "{format:?}"
            );
        }
        // Text that is not UTF-8 travels as base64 whatever the format says.
        let odd = b"\xff\xfe<a/>";
        assert_eq!(
            batch_body(Format::Xml, odd, &broker, &user),
            through_value(Format::Xml, odd, &broker, &user)
        );
    }
}
