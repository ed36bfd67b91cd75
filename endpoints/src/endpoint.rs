//! A service endpoint resolved for delivery: contract, wire format, target address and credentials, validated
//! once from weft-store's [`ServiceEndpoint`] row and [`EndpointSecrets`].
//!
//! Owns configuration rules (which auth types a contract accepts, address forms, the loopback-only `http://`
//! exception, the webhook `authvalue` forms) and secret hygiene (`Debug` redaction, [`Endpoint::redact`]).
//! It must not send anything; `post` and `check` do.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use uuid::Uuid;
use weft_bus::connection_string::{ConnectionString, ConnectionStringError};
use weft_message::{Format, SERVICE_BUS_LIMIT, WEBHOOK_LIMIT};
use weft_store::system::{
    AuthType, Contract, EndpointSecrets, MessageFormat, NamespaceFormat, ServiceEndpoint, UserClaim,
};

use crate::error::PostError;
use crate::settings;
use crate::signature::SigningSecret;

/// Dataverse's webhook timeout (dataverse.md §17), also used for the other contracts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest two-way (4) or REST (3) answer read by default, 1 MiB: a listener's answer is meant for a plug-in,
/// whose own output quotas are in the same range. Larger answers fail ([`crate::ErrorKind::AnswerTooLarge`]).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Credentials, by auth type. Never printed.
#[derive(Clone)]
pub(crate) enum Auth {
    /// SAS key (2) or a connection string with a key (7): a token is signed per request.
    SasKey { key_name: String, key: String },
    /// SAS token (3) or a connection string with `SharedAccessSignature` (7): used verbatim.
    SasToken(String),
    /// Webhook key (4): `?code=<key>`.
    WebhookKey(String),
    /// Http header (5).
    Headers(Vec<(HeaderName, HeaderValue)>),
    /// Http query string (6).
    Query(Vec<(String, String)>),
}

/// A validated endpoint, ready to post to. Fields are private so nothing can change after validation;
/// `Debug` never shows secrets.
#[derive(Clone)]
pub struct Endpoint {
    id: Uuid,
    pub(crate) name: String,
    pub(crate) contract: Contract,
    pub(crate) format: Format,
    pub(crate) user_claim: UserClaim,
    target: String,
    pub(crate) auth: Auth,
    timeout: Duration,
    max_response_bytes: usize,
    pub(crate) signing: Option<SigningSecret>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            Auth::SasKey { key_name, .. } => {
                format!("SasKey {{ key_name: {key_name:?}, key: <redacted> }}")
            }
            Auth::SasToken(_) => "SasToken(<redacted>)".into(),
            Auth::WebhookKey(_) => "WebhookKey(<redacted>)".into(),
            Auth::Headers(h) => format!(
                "Headers({:?}: <redacted>)",
                h.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
            ),
            Auth::Query(q) => format!(
                "Query({:?}: <redacted>)",
                q.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
            ),
        };
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("contract", &self.contract)
            .field("format", &self.format)
            .field("user_claim", &self.user_claim)
            .field("target", &self.target)
            .field("auth", &format_args!("{auth}"))
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("signing", &self.signing.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Endpoint {
    /// Validates a stored endpoint and its secrets. Errors are [`crate::ErrorClass::Permanent`] config errors
    /// that name the column at fault and never contain a secret.
    pub fn new(ep: &ServiceEndpoint, secrets: &EndpointSecrets) -> Result<Endpoint, PostError> {
        let def = &ep.def;
        let what =
            |msg: String| PostError::config(format!("service endpoint '{}': {msg}", def.name));
        let format = match (def.contract, def.message_format) {
            (Contract::Webhook, _) => Format::Json,
            (Contract::EventHub, MessageFormat::BinaryXml) => {
                return Err(what(
                    "Event Hub endpoints (contract 7) accept message format JSON (2) or XML (3), not Binary XML (1)"
                        .into(),
                ));
            }
            (_, MessageFormat::BinaryXml) => Format::Binary,
            (_, MessageFormat::Json) => Format::Json,
            (_, MessageFormat::TextXml) => Format::Xml,
        };
        let (target, auth) = match def.contract {
            Contract::Webhook => {
                webhook(def.url.as_deref(), def.auth_type, secrets).map_err(what)?
            }
            Contract::Queue
            | Contract::QueuePersistent
            | Contract::Topic
            | Contract::EventHub
            | Contract::OneWay
            | Contract::TwoWay
            | Contract::Rest => bus_entity(ep, secrets).map_err(what)?,
            Contract::EventGrid | Contract::ManagedDataLake => {
                return Err(what(format!(
                    "contract {} ({:?}) is not supported by weft",
                    def.contract.value(),
                    def.contract
                )));
            }
        };
        Ok(Endpoint {
            id: def.id,
            name: def.name.clone(),
            contract: def.contract,
            format,
            user_claim: def.user_claim,
            target,
            auth,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            signing: None,
        })
    }

    /// Replaces the 60 s request timeout (Dataverse's) — for tests and impatient callers.
    pub fn with_timeout(mut self, timeout: Duration) -> Endpoint {
        self.timeout = timeout;
        self
    }

    /// Replaces the largest two-way/REST answer read ([`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Endpoint {
        self.max_response_bytes = bytes;
        self
    }

    /// The largest two-way/REST answer read; a longer one fails with [`crate::ErrorKind::AnswerTooLarge`].
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Opts a webhook into Standard Webhooks signing (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    pub fn with_signing_secret(mut self, secret: SigningSecret) -> Result<Endpoint, PostError> {
        if self.contract != Contract::Webhook {
            return Err(PostError::config(format!(
                "service endpoint '{}': Standard Webhooks signing applies to webhooks (contract 8) only",
                self.name
            )));
        }
        self.signing = Some(secret);
        Ok(self)
    }

    /// `serviceendpointid`.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `contract`.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// The wire format actually sent: the endpoint's `messageformat`, except webhooks, which always get JSON.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The largest body this endpoint takes before the size rule reduces the context: 256 KB for webhooks,
    /// 192 KB for every other contract.
    pub fn size_limit(&self) -> usize {
        if self.contract == Contract::Webhook {
            WEBHOOK_LIMIT
        } else {
            SERVICE_BUS_LIMIT
        }
    }

    /// Whether a context already encoded (`len` bytes in `format`, a system job's stored copy) is sent as it
    /// is: in the endpoint's format and within its size limit. Otherwise the whole context is encoded again
    /// (and reduced if too large), so a caller holding only part of the decoded context must decode all of it.
    pub fn sends_as_stored(&self, format: Format, len: usize) -> bool {
        format == self.format && len <= self.size_limit()
    }

    /// `userclaim`: which user claims travel with Service Bus, Event Hubs and relay messages.
    pub fn user_claim(&self) -> UserClaim {
        self.user_claim
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Where messages go: the entity URI `scheme://host[:port]/path` (Service Bus, Event Hubs, relay) or the
    /// webhook URL as registered (auth query parameters are added per request, never stored here).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether this endpoint is a Service Bus queue or topic (contracts 2, 5, 6).
    pub fn is_service_bus(&self) -> bool {
        matches!(
            self.contract,
            Contract::Queue | Contract::QueuePersistent | Contract::Topic
        )
    }

    /// Whether this endpoint is a relay (contracts 1, 3, 4).
    pub fn is_relay(&self) -> bool {
        matches!(
            self.contract,
            Contract::OneWay | Contract::TwoWay | Contract::Rest
        )
    }

    /// The secrets this endpoint sends or signs with: keys, tokens, header and query values, the signing
    /// secret, and the values of a query string registered in the URL itself (an Azure Functions `?code=`)
    /// of 8 characters or more — shorter ones (`api-version=2`) are not credentials, and redacting every `2`
    /// of a message would hide what went wrong. The URL's query is never shown either way.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = match &self.auth {
            Auth::SasKey { key, .. } => vec![key],
            Auth::SasToken(t) => vec![t],
            Auth::WebhookKey(k) => vec![k],
            Auth::Headers(h) => h.iter().filter_map(|(_, v)| v.to_str().ok()).collect(),
            Auth::Query(q) => q.iter().map(|(_, v)| v.as_str()).collect(),
        };
        if let Some(s) = &self.signing {
            secrets.push(s.as_text());
        }
        if let Some((_, query)) = self.target.split_once('?') {
            secrets.extend(
                query
                    .split('&')
                    .filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
                    .filter(|v| v.len() >= 8),
            );
        }
        secrets
    }

    /// Replaces every secret of this endpoint in `text`, whatever its length and however the remote quoted
    /// it (raw, percent- or form-encoded, JSON- or HTML-escaped, base64; see `redact.rs`), with `<redacted>`,
    /// and SAS signatures too; when that cannot make the text secret-free, the whole text is withheld.
    /// Applied to anything a remote service sends back before it reaches an error message.
    pub fn redact(&self, text: &str) -> String {
        crate::redact::redact(text, &self.secrets())
    }

    /// The target as shown in messages: without a query string, which may hold a secret.
    pub(crate) fn shown_target(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or_default()
    }
}

/// Service Bus, Event Hubs and relay: namespace + path, SAS key / SAS token / connection string.
fn bus_entity(ep: &ServiceEndpoint, secrets: &EndpointSecrets) -> Result<(String, Auth), String> {
    let def = &ep.def;
    let column_path = def
        .path
        .as_deref()
        .map(|p| p.trim().trim_matches('/'))
        .filter(|p| !p.is_empty());
    let (base, path, auth) = match def.auth_type {
        AuthType::SasKey => {
            let key_name = def
                .sas_key_name
                .clone()
                .filter(|k| !k.trim().is_empty())
                .ok_or("auth type SAS Key (2) needs saskeyname")?;
            let key = secrets
                .sas_key
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or("auth type SAS Key (2) needs saskey (write-only; not set)")?;
            (
                namespace(ep)?,
                column_path.map(str::to_string),
                Auth::SasKey { key_name, key },
            )
        }
        AuthType::SasToken => {
            let token = secrets
                .sas_token
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or("auth type SAS Token (3) needs sastoken (write-only; not set)")?;
            if !token.trim_start().starts_with(weft_bus::sas::SCHEME) {
                return Err("sastoken must start with 'SharedAccessSignature '".into());
            }
            (
                namespace(ep)?,
                column_path.map(str::to_string),
                Auth::SasToken(token.trim().to_string()),
            )
        }
        AuthType::ConnectionString => {
            let text = secrets
                .auth_value
                .as_deref()
                .filter(|t| !t.trim().is_empty())
                .ok_or("auth type Connection String (7) needs the connection string in authvalue (write-only; not set)")?;
            let cs = ConnectionString::parse(text).map_err(|e| match e {
                // The part's text could be a stray secret: say where, not what.
                ConnectionStringError::MissingEquals { index, .. } => {
                    format!(
                        "connection string (authvalue) part {index} has no '=': expected Key=Value"
                    )
                }
                other => format!("connection string (authvalue): {other}"),
            })?;
            let base = cs.http_base();
            check_scheme_host(&base)?;
            if let Some(addr) = def
                .namespace_address
                .as_deref()
                .filter(|a| !a.trim().is_empty())
            {
                let (_, authority) = split_address(addr)?;
                let host = authority
                    .rsplit_once(':')
                    .map_or(authority.as_str(), |(h, _)| h);
                if !host.eq_ignore_ascii_case(&cs.host) {
                    return Err(format!(
                        "namespaceaddress host '{host}' differs from the connection string's Endpoint host '{}'",
                        cs.host
                    ));
                }
            }
            let path = match (column_path, cs.entity_path.as_deref()) {
                (Some(p), Some(e)) if !p.eq_ignore_ascii_case(e.trim_matches('/')) => {
                    return Err(format!(
                        "path '{p}' differs from the connection string's EntityPath '{e}'"
                    ));
                }
                (Some(p), _) => Some(p.to_string()),
                (None, e) => e.map(|e| e.trim_matches('/').to_string()),
            };
            let auth = match (
                cs.shared_access_signature,
                cs.shared_access_key_name,
                cs.shared_access_key,
            ) {
                (Some(sig), _, _) => Auth::SasToken(sig),
                (None, Some(key_name), Some(key)) => Auth::SasKey { key_name, key },
                // ConnectionString::parse guarantees one of the two forms.
                _ => return Err("connection string (authvalue) has no credentials".into()),
            };
            (base, path, auth)
        }
        other => {
            return Err(format!(
                "auth type {} ({other:?}) is not valid for contract {} ({:?}): use SAS Key (2), SAS Token (3) or Connection String (7)",
                other.value(),
                def.contract.value(),
                def.contract
            ));
        }
    };
    let path =
        path.ok_or("path (the queue, topic, event hub or hybrid connection name) is required")?;
    if path
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '?' | '#' | '%' | '\\'))
    {
        return Err(format!(
            "path '{path}' must not contain whitespace, '?', '#', '%' or '\\'"
        ));
    }
    Ok((format!("{base}/{path}"), auth))
}

/// `scheme://host[:port]` for REST calls from `namespaceaddress` / `namespaceformat`.
fn namespace(ep: &ServiceEndpoint) -> Result<String, String> {
    let def = &ep.def;
    let addr = def
        .namespace_address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or("namespaceaddress is required for this contract")?;
    if def.namespace_format == Some(NamespaceFormat::NamespaceName)
        && !addr.contains("://")
        && !addr.contains('.')
    {
        // Namespace name form: Azure's public cloud suffix.
        return Ok(format!("https://{addr}.servicebus.windows.net"));
    }
    let (scheme, authority) = split_address(addr)?;
    let base = format!("{scheme}://{authority}");
    check_scheme_host(&base)?;
    Ok(base)
}

/// `sb://h/`, `https://h`, `http://127.0.0.1:7480`, or a bare host → (http scheme, authority).
fn split_address(addr: &str) -> Result<(&'static str, String), String> {
    let (scheme, rest) = match addr.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("https".to_string(), addr),
    };
    if let Some((_, host)) = rest
        .split(['/', '?', '#'])
        .next()
        .and_then(|a| a.rsplit_once('@'))
    {
        // Checked first so that no later message quotes the password.
        return Err(format!(
            "namespaceaddress of host '{host}' carries user:password@ credentials; remove them and use saskey, sastoken or a connection string"
        ));
    }
    let scheme = match scheme.as_str() {
        "sb" | "https" => "https",
        "http" => "http",
        other => {
            return Err(format!(
                "namespaceaddress '{addr}' has scheme '{other}': expected sb://, https:// (or http:// on loopback)"
            ));
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.trim_matches('/').is_empty() {
        return Err(format!(
            "namespaceaddress '{addr}' must not contain a path: put the entity name in path"
        ));
    }
    if authority.is_empty() {
        return Err(format!("namespaceaddress '{addr}' has no host"));
    }
    Ok((scheme, authority.to_string()))
}

/// Parses `base` as a URL and enforces https, allowing plain `http://` only for loopback hosts.
///
/// Why the exception: Dataverse only talks to Azure over HTTPS (port 443), but weft's embedded bus and test
/// listeners run on `http://127.0.0.1:PORT`. Traffic that never leaves the machine gains nothing from TLS;
/// anything else must use TLS so SAS tokens and webhook secrets are never sent in clear.
fn check_scheme_host(base: &str) -> Result<Url, String> {
    // The address may carry credentials (userinfo, a query): the parse error names no part of it.
    let url = Url::parse(base).map_err(|e| format!("the address is not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the address of host '{}' carries user:password@ credentials, which would be sent in clear in every request line and quoted back in errors; remove them and use the auth type's own secret (authvalue, saskey, sastoken)",
            url.host_str().unwrap_or_default()
        ));
    }
    // From here on, show the address without a query string (an Azure Functions `?code=` is a secret).
    let base = &base[..base.find(['?', '#']).unwrap_or(base.len())];
    let host = url
        .host_str()
        .ok_or_else(|| format!("'{base}' has no host"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(host) => Ok(url),
        "http" => Err(format!(
            "'{base}': plain http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost); use https://"
        )),
        other => Err(format!(
            "'{base}': scheme '{other}' is not supported; use https://"
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Webhook: `url` + WebhookKey (4) / HttpHeader (5) / HttpQueryString (6).
fn webhook(
    url: Option<&str>,
    auth_type: AuthType,
    secrets: &EndpointSecrets,
) -> Result<(String, Auth), String> {
    let url = url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or("url is required for a webhook (contract 8)")?;
    check_scheme_host(url)?;
    let value = secrets
        .auth_value
        .as_deref()
        .filter(|v| !v.trim().is_empty());
    let need = |n: &str| format!("auth type {n} needs authvalue (write-only; not set)");
    let auth = match auth_type {
        AuthType::WebhookKey => Auth::WebhookKey(
            value
                .ok_or_else(|| need("Webhook Key (4)"))?
                .trim()
                .to_string(),
        ),
        AuthType::HttpHeader => {
            let pairs = settings::parse(value.ok_or_else(|| need("Http Header (5)"))?)?;
            let mut headers = Vec::with_capacity(pairs.len());
            for (i, (name, val)) in pairs.into_iter().enumerate() {
                let n = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                    format!(
                        "authvalue setting #{} ('{name}') is not a valid HTTP header name",
                        i + 1
                    )
                })?;
                let mut v = HeaderValue::from_str(&val).map_err(|_| {
                    format!("authvalue setting #{} ('{name}'): value is not a valid HTTP header value (control characters or non-ASCII)", i + 1)
                })?;
                v.set_sensitive(true);
                headers.push((n, v));
            }
            Auth::Headers(headers)
        }
        AuthType::HttpQueryString => Auth::Query(settings::parse(
            value.ok_or_else(|| need("Http Query String (6)"))?,
        )?),
        other => {
            return Err(format!(
                "auth type {} ({other:?}) is not valid for a webhook: use Webhook Key (4), Http Header (5) or Http Query String (6)",
                other.value()
            ));
        }
    };
    Ok((url.to_string(), auth))
}
