//! `weft listen`: a Dataverse-aware listener for a queue, a topic subscription, an Event Hub partition (weft
//! bus only) or a Relay hybrid connection, speaking the same REST/WebSocket protocols as Azure.
//!
//! Owns the receive loops, the one-line summary and `--exec`. Decoding goes through [`summarize`] only, so it
//! can later be routed to weft-message for XML and binary XML without touching the loops.

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::broker::CLAIMS_PREFIX;
use crate::connection_string::ConnectionString;
use crate::relay::{ControlRequest, ListenerMessage, RenewToken, ResponseHead, StatusCode};
use crate::sas;

/// `weft listen` options. `Debug` redacts the connection string (it holds the key).
#[derive(Clone, clap::Args)]
pub struct ListenArgs {
    /// `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=…`. For the local bus write
    /// `Endpoint=http://127.0.0.1:7480` (or pass --endpoint). Also read from WEFT_CONNECTION_STRING.
    #[arg(long, env = "WEFT_CONNECTION_STRING", hide_env_values = true)]
    pub connection_string: String,
    /// Base URL overriding the connection string's endpoint, e.g. `http://127.0.0.1:7480`.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Entity path overriding `EntityPath` (queue, topic, event hub or hybrid connection).
    #[arg(long, value_name = "PATH")]
    pub entity: Option<String>,
    /// Read from this subscription of the topic.
    #[arg(long, value_name = "SUB", conflicts_with_all = ["partition", "relay"])]
    pub subscription: Option<String>,
    /// Read this Event Hub partition (weft bus read endpoint).
    #[arg(long, value_name = "N", conflicts_with = "relay")]
    pub partition: Option<u32>,
    /// First Event Hub offset to read.
    #[arg(long, default_value_t = 0, requires = "partition")]
    pub offset: u64,
    /// The entity is a Relay hybrid connection: answer its requests.
    #[arg(long)]
    pub relay: bool,
    /// Answer body for relay requests (two-way/REST contracts). Dataverse's sample two-way listener answers
    /// `Success`; JSON text is sent as application/json, anything else as text/plain.
    #[arg(long, default_value = "Success")]
    pub reply: String,
    /// Destructive read instead of peek-lock + complete (abandon when the handler fails).
    #[arg(long)]
    pub receive_and_delete: bool,
    /// Print the raw message (properties then body) instead of the one-line summary.
    #[arg(long)]
    pub raw: bool,
    /// Run `sh -c CMD` per message: body on stdin, summary in WEFT_* env vars; non-zero exit = failure.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Stop after N messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Long-poll seconds per receive request.
    #[arg(long, default_value_t = 30)]
    pub poll_secs: u64,
}

impl std::fmt::Debug for ListenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenArgs")
            .field("connection_string", &"<redacted>")
            .field("endpoint", &self.endpoint)
            .field("entity", &self.entity)
            .field("subscription", &self.subscription)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("relay", &self.relay)
            .field("reply", &self.reply)
            .field("receive_and_delete", &self.receive_and_delete)
            .field("raw", &self.raw)
            .field("exec", &self.exec)
            .field("count", &self.count)
            .field("poll_secs", &self.poll_secs)
            .finish()
    }
}

/// What a listener shows about a message body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Content type as received.
    pub content_type: String,
    /// Body size in bytes.
    pub size: usize,
    /// Whether the body was decoded as a RemoteExecutionContext.
    pub decoded: bool,
    /// `MessageName`.
    pub message_name: Option<String>,
    /// `PrimaryEntityName`.
    pub primary_entity_name: Option<String>,
    /// `PrimaryEntityId`.
    pub primary_entity_id: Option<String>,
    /// `CorrelationId`.
    pub correlation_id: Option<String>,
    /// `OperationId`.
    pub operation_id: Option<String>,
}

/// Why a body could not be summarised.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The content type says RemoteExecutionContext but the body is not one.
    #[error("body is not a RemoteExecutionContext: {0}")]
    Malformed(#[from] weft_message::MessageError),
}

/// Decodes a body by content type with weft-message: JSON (`application/json`,
/// or no content type and a body starting with `{`), text XML
/// (`application/xml`) and .NET binary XML (`application/msbin1`) yield the
/// context fields; other content types report only type and size.
pub fn summarize(body: &[u8], content_type: &str) -> Result<Summary, SummaryError> {
    let mut s = Summary {
        content_type: content_type.to_string(),
        size: body.len(),
        ..Summary::default()
    };
    // DataContractJsonSerializer output may start with a UTF-8 BOM.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let sniffed_json = content_type.trim().is_empty()
        && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let format = match weft_message::Format::from_content_type(content_type) {
        Ok(format) => format,
        Err(_) if sniffed_json => weft_message::Format::Json,
        Err(_) => return Ok(s),
    };
    let ctx = weft_message::decode(body, format)?;
    s.decoded = true;
    s.message_name = Some(ctx.message_name);
    s.primary_entity_name = Some(ctx.primary_entity_name);
    s.primary_entity_id = Some(ctx.primary_entity_id.to_string());
    s.correlation_id = Some(ctx.correlation_id.to_string());
    s.operation_id = Some(ctx.operation_id.to_string());
    Ok(s)
}

/// A received message, whatever the source.
struct Incoming {
    body: bytes::Bytes,
    content_type: String,
    /// Custom properties as text.
    props: BTreeMap<String, String>,
    /// Extra raw lines for `--raw` (BrokerProperties etc.).
    raw_head: Vec<String>,
}

/// One summary line: message, table, id, correlation, claims, size-exceeded flag.
fn summary_line(m: &Incoming) -> (String, Option<Summary>) {
    let mut parts = Vec::new();
    let sum = match summarize(&m.body, &m.content_type) {
        Ok(s) if s.decoded => {
            let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            parts.push(format!(
                "{} {} {}",
                d(&s.message_name),
                d(&s.primary_entity_name),
                d(&s.primary_entity_id)
            ));
            parts.push(format!("correlation={}", d(&s.correlation_id)));
            parts.push(format!("operation={}", d(&s.operation_id)));
            Some(s)
        }
        Ok(s) => {
            parts.push(format!(
                "content-type={}",
                if s.content_type.is_empty() {
                    "-"
                } else {
                    &s.content_type
                }
            ));
            Some(s)
        }
        Err(e) => {
            parts.push(format!("undecodable ({e})"));
            None
        }
    };
    parts.push(format!("size={}", m.body.len()));
    let claims: Vec<String> = m
        .props
        .iter()
        .filter(|(k, _)| k.as_str() != "MessageMaxSizeExceeded")
        .map(|(k, v)| format!("{}={v}", k.strip_prefix(CLAIMS_PREFIX).unwrap_or(k)))
        .collect();
    if !claims.is_empty() {
        parts.push(format!("[{}]", claims.join(" ")));
    }
    if m.props.contains_key("MessageMaxSizeExceeded") {
        parts.push("size-exceeded".into());
    }
    (parts.join(" "), sum)
}

/// Prints the message and runs `--exec`; Ok(false) means the handler failed.
async fn handle(args: &ListenArgs, m: &Incoming) -> anyhow::Result<bool> {
    let (line, sum) = summary_line(m);
    if args.raw {
        for h in &m.raw_head {
            println!("{h}");
        }
        println!("Content-Type: {}", m.content_type);
        for (k, v) in &m.props {
            println!("{k}: {v}");
        }
        println!();
        println!("{}", String::from_utf8_lossy(&m.body));
    } else {
        println!("{line}");
    }
    let Some(cmd) = &args.exec else {
        return Ok(true);
    };
    let s = sum.unwrap_or_default();
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd).stdin(Stdio::piped());
    let env = [
        ("WEFT_MESSAGE_NAME", s.message_name),
        ("WEFT_PRIMARY_ENTITY_NAME", s.primary_entity_name),
        ("WEFT_PRIMARY_ENTITY_ID", s.primary_entity_id),
        ("WEFT_CORRELATION_ID", s.correlation_id),
        ("WEFT_OPERATION_ID", s.operation_id),
        ("WEFT_CONTENT_TYPE", Some(m.content_type.clone())),
        (
            "WEFT_SIZE_EXCEEDED",
            Some(m.props.contains_key("MessageMaxSizeExceeded").to_string()),
        ),
        ("WEFT_SUMMARY", Some(line)),
    ];
    for (k, v) in env {
        c.env(k, v.unwrap_or_default());
    }
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot run --exec '{cmd}'"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read stdin closes it early; that is not a failure.
        let _ = stdin.write_all(&m.body).await;
    }
    let status = child.wait().await?;
    if !status.success() {
        eprintln!("weft listen: --exec exited with {status}");
    }
    Ok(status.success())
}

struct Target {
    base: String,
    entity: String,
    cs: ConnectionString,
}

impl Target {
    fn token(&self, path: &str) -> anyhow::Result<String> {
        if let Some(sig) = &self.cs.shared_access_signature {
            return Ok(sig.clone());
        }
        let (Some(n), Some(k)) = (&self.cs.shared_access_key_name, &self.cs.shared_access_key)
        else {
            bail!("connection string has no credentials");
        };
        let expiry = (crate::props::now_ms() / 1000) as u64 + 3600;
        Ok(sas::generate_token(
            &format!("{}/{path}", self.base),
            n,
            k,
            expiry,
        ))
    }
}

/// Runs the listener until `--count` messages were handled (or forever).
pub async fn run_listen(args: ListenArgs) -> anyhow::Result<()> {
    let cs =
        ConnectionString::parse(&args.connection_string).context("invalid --connection-string")?;
    let base = args
        .endpoint
        .clone()
        .unwrap_or_else(|| cs.http_base())
        .trim_end_matches('/')
        .to_string();
    anyhow::ensure!(
        base.starts_with("http://") || base.starts_with("https://"),
        "--endpoint '{base}' must start with http:// or https://"
    );
    let entity = args
        .entity
        .clone()
        .or_else(|| cs.entity_path.clone())
        .context("no entity: set EntityPath in the connection string or pass --entity")?;
    let t = Target { base, entity, cs };
    if args.relay {
        listen_relay(&args, &t).await
    } else if let Some(p) = args.partition {
        listen_partition(&args, &t, p).await
    } else {
        listen_queue(&args, &t).await
    }
}

/// Exponential back-off (1 s doubling to 30 s) for transient failures: unreachable bus, 429, 5xx.
/// Authorization and addressing errors are not transient and end the listener.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    async fn wait(&mut self, why: &str) {
        let secs = (1u64 << self.0.min(5)).min(30);
        eprintln!("weft listen: {why}; retrying in {secs} s");
        self.0 += 1;
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn done(args: &ListenArgs, n: u64) -> bool {
    args.count.is_some_and(|c| n >= c)
}

async fn listen_queue(args: &ListenArgs, t: &Target) -> anyhow::Result<()> {
    let path = match &args.subscription {
        Some(s) => format!("{}/subscriptions/{s}", t.entity),
        None => t.entity.clone(),
    };
    let client = reqwest::Client::new();
    let url = format!("{}/{path}/messages/head?timeout={}", t.base, args.poll_secs);
    let mut handled = 0;
    let mut backoff = Backoff::default();
    while !done(args, handled) {
        let req = if args.receive_and_delete {
            client.delete(&url)
        } else {
            client.post(&url)
        };
        let sent = req
            .header("Authorization", t.token(&path)?)
            .header("Content-Length", "0")
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                backoff.wait(&format!("cannot reach {}: {e}", t.base)).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        match status {
            204 => {
                backoff.reset();
                continue;
            }
            200 | 201 => backoff.reset(),
            500 | 503 | 504 | 429 => {
                backoff
                    .wait(&format!("receive from '{path}' answered {status}"))
                    .await;
                continue;
            }
            _ => bail!(
                "receive from '{path}' failed: {status} {}",
                resp.text().await.unwrap_or_default()
            ),
        }
        let h = resp.headers().clone();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let location = get("location");
        let mut props = BTreeMap::new();
        if let Some(Ok(Value::Object(o))) =
            get("userproperties").map(|u| serde_json::from_str::<Value>(&u))
        {
            for (k, v) in o {
                props.insert(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
            }
        }
        let mut raw_head = Vec::new();
        if let Some(bp) = get("brokerproperties") {
            raw_head.push(format!("BrokerProperties: {bp}"));
        }
        let m = Incoming {
            content_type: get("content-type").unwrap_or_default(),
            body: resp.bytes().await?,
            props,
            raw_head,
        };
        let ok = handle(args, &m).await?;
        if let Some(loc) = location.filter(|_| !args.receive_and_delete) {
            let req = if ok {
                client.delete(&loc)
            } else {
                client.put(&loc)
            };
            let r = req
                .header("Authorization", t.token(&path)?)
                .header("Content-Length", "0")
                .send()
                .await?;
            if !r.status().is_success() {
                eprintln!(
                    "weft listen: {} failed: {}",
                    if ok { "complete" } else { "abandon" },
                    r.status()
                );
            }
        }
        handled += 1;
    }
    Ok(())
}

async fn listen_partition(args: &ListenArgs, t: &Target, p: u32) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let path = format!("{}/partitions/{p}/events", t.entity);
    let mut offset = args.offset;
    let mut handled = 0;
    let mut backoff = Backoff::default();
    while !done(args, handled) {
        let url = format!(
            "{}/{path}?offset={offset}&max=100&timeout={}",
            t.base, args.poll_secs
        );
        let resp = match client
            .get(&url)
            .header("Authorization", t.token(&path)?)
            .send()
            .await
        {
            Ok(r) if !matches!(r.status().as_u16(), 429 | 500 | 503 | 504) => r,
            Ok(r) => {
                backoff
                    .wait(&format!("read from '{path}' answered {}", r.status()))
                    .await;
                continue;
            }
            Err(e) => {
                backoff.wait(&format!("cannot reach {}: {e}", t.base)).await;
                continue;
            }
        };
        backoff.reset();
        if !resp.status().is_success() {
            bail!(
                "read from '{path}' failed: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let events: Vec<Value> = resp
            .json()
            .await
            .context("event read answer is not a JSON array")?;
        for e in events {
            let body = match e.get("BodyBase64").and_then(Value::as_str) {
                Some(b) => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b)?,
                None => Vec::new(),
            };
            let mut props = BTreeMap::new();
            if let Some(Value::Object(o)) = e.get("UserProperties") {
                for (k, v) in o {
                    props.insert(
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    );
                }
            }
            offset = e
                .get("Offset")
                .and_then(Value::as_u64)
                .map_or(offset + 1, |o| o + 1);
            let m = Incoming {
                content_type: e
                    .get("ContentType")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                body: body.into(),
                props,
                raw_head: vec![format!("Offset: {}", offset - 1)],
            };
            handle(args, &m).await?;
            handled += 1;
            if done(args, handled) {
                break;
            }
        }
    }
    Ok(())
}

async fn listen_relay(args: &ListenArgs, t: &Target) -> anyhow::Result<()> {
    let ws_base = t.base.replacen("http", "ws", 1);
    let token = t.token(&t.entity)?;
    let url = format!(
        "{ws_base}/$hc/{}?sb-hc-action=listen&sb-hc-token={}",
        t.entity,
        sas::url_encode(&token)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("cannot open the relay control channel for '{}'", t.entity))?;
    eprintln!("weft listen: listening on hybrid connection '{}'", t.entity);
    let (reply_type, reply) = match serde_json::from_str::<Value>(&args.reply) {
        Ok(_) => ("application/json", args.reply.clone()),
        Err(_) => ("text/plain; charset=utf-8", args.reply.clone()),
    };
    let mut handled = 0;
    let mut head: Option<ControlRequest> = None;
    // Tokens last an hour; the service closes the control channel at expiry unless the listener sends
    // `renewToken` first (a fixed SharedAccessSignature from the connection string cannot be renewed).
    let mut renew = tokio::time::interval(std::time::Duration::from_secs(30 * 60));
    renew.tick().await;
    while !done(args, handled) {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = renew.tick() => {
                if t.cs.shared_access_signature.is_none() {
                    let renewal = ListenerMessage { renew_token: Some(RenewToken { token: t.token(&t.entity)? }), response: None };
                    ws.send(WsMessage::text(serde_json::to_string(&renewal)?)).await?;
                }
                continue;
            }
        };
        let Some(msg) = msg else {
            bail!("relay control channel closed")
        };
        let (req, body) = match msg? {
            WsMessage::Text(text) => {
                let r: ControlRequest = serde_json::from_str(text.as_str())
                    .with_context(|| format!("unexpected control message: {text}"))?;
                if r.request.body {
                    head = Some(r);
                    continue;
                }
                (r, bytes::Bytes::new())
            }
            WsMessage::Binary(b) => match head.take() {
                Some(r) => (r, b),
                None => continue,
            },
            WsMessage::Close(f) => bail!("relay control channel closed: {f:?}"),
            _ => continue,
        };
        if req.request.is_address_only() {
            // Too large for the control channel: the request waits on its rendezvous address, and the
            // answer goes back there.
            let (mut rv, _) = tokio_tungstenite::connect_async(req.request.address.as_str())
                .await
                .context("cannot open the rendezvous socket of a large relay request")?;
            let (req, body) = read_rendezvous_request(&mut rv).await?;
            let (head, answer) = answer_relay(args, &req, body, reply_type, &reply).await?;
            send_answer(&mut rv, head, answer).await?;
            let _ = rv.close(None).await;
        } else {
            let (head, answer) = answer_relay(args, &req, body, reply_type, &reply).await?;
            if answer.as_ref().map_or(0, Vec::len) + 1024 > crate::relay::CONTROL_CHANNEL_LIMIT {
                // An answer larger than the control channel carries goes over the rendezvous socket.
                let (mut rv, _) = tokio_tungstenite::connect_async(req.request.address.as_str())
                    .await
                    .context("cannot open the rendezvous socket for a large relay answer")?;
                send_answer(&mut rv, head, answer).await?;
                let _ = rv.close(None).await;
            } else {
                send_answer(&mut ws, head, answer).await?;
            }
        }
        handled += 1;
    }
    let _ = ws.close(None).await;
    Ok(())
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads a request sent on its rendezvous socket: the `request` head, then its body if it has one.
async fn read_rendezvous_request(
    rv: &mut WsStream,
) -> anyhow::Result<(ControlRequest, bytes::Bytes)> {
    let mut head: Option<ControlRequest> = None;
    while let Some(msg) = rv.next().await {
        match msg? {
            WsMessage::Text(text) => {
                let r: ControlRequest = serde_json::from_str(text.as_str())
                    .with_context(|| format!("unexpected rendezvous message: {text}"))?;
                if !r.request.body {
                    return Ok((r, bytes::Bytes::new()));
                }
                head = Some(r);
            }
            WsMessage::Binary(b) => {
                if let Some(r) = head.take() {
                    return Ok((r, b));
                }
            }
            WsMessage::Close(f) => bail!("rendezvous socket closed before the request: {f:?}"),
            _ => {}
        }
    }
    bail!("rendezvous socket closed before the request")
}

/// Handles one relayed request: the `response` head and the body to answer with.
async fn answer_relay(
    args: &ListenArgs,
    req: &ControlRequest,
    body: bytes::Bytes,
    reply_type: &str,
    reply: &str,
) -> anyhow::Result<(ResponseHead, Option<Vec<u8>>)> {
    let headers = &req.request.request_headers;
    let mut props = BTreeMap::new();
    for (k, v) in headers {
        if k.starts_with("http") || k.eq_ignore_ascii_case("MessageMaxSizeExceeded") {
            props.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let m = Incoming {
        content_type: headers
            .get("content-type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        body,
        props,
        raw_head: vec![format!(
            "{} {}",
            req.request.method, req.request.request_target
        )],
    };
    let ok = handle(args, &m).await?;
    let head = ResponseHead {
        request_id: req.request.id.clone(),
        status_code: StatusCode::Number(if ok { 200 } else { 500 }),
        status_description: None,
        response_headers: serde_json::json!({ "Content-Type": reply_type })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        body: ok,
    };
    Ok((head, ok.then(|| reply.as_bytes().to_vec())))
}

/// Sends a `response` head and its body (if any) on a control channel or rendezvous socket.
async fn send_answer(
    ws: &mut WsStream,
    head: ResponseHead,
    body: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let resp = ListenerMessage {
        response: Some(head),
        renew_token: None,
    };
    ws.send(WsMessage::text(serde_json::to_string(&resp)?))
        .await?;
    if let Some(b) = body {
        ws.send(WsMessage::binary(b)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON sample context yields message, table, id, correlation and operation.
    #[test]
    fn summarize_json_sample() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../message/tests/samples/webhook-update-contact-async.json"
        );
        let body = std::fs::read(path).expect("the sample is in the repository");
        let s = summarize(&body, "application/json").unwrap();
        assert!(s.decoded);
        assert_eq!(s.message_name.as_deref(), Some("Update"));
        assert_eq!(s.primary_entity_name.as_deref(), Some("contact"));
    }

    /// Every Dataverse format decodes; BOM and sniffing work; other types and
    /// malformed bodies are told apart.
    #[test]
    fn summarize_cases() {
        use weft_message::{Format, RemoteExecutionContext, encode};
        let ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
        for format in [Format::Json, Format::Xml, Format::Binary] {
            let body = encode(&ctx, format);
            let s = summarize(&body, format.content_type()).unwrap();
            assert!(s.decoded, "{format:?}");
            assert_eq!(
                (s.message_name.as_deref(), s.primary_entity_name.as_deref()),
                (Some("Create"), Some("account"))
            );
        }
        let json = encode(&ctx, Format::Json);
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(&json);
        assert!(summarize(&bom, "").unwrap().decoded);
        let other = summarize(b"hello", "text/plain").unwrap();
        assert!(!other.decoded);
        assert_eq!(other.size, 5);
        assert!(summarize(b"<RemoteExecutionContext><Depth>", "application/xml").is_err());
        assert!(summarize(b"{nope", "application/json").is_err());
    }
}
