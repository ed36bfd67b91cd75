//! Shared Access Signature tokens for Service Bus, Event Hubs and Relay (azure-messaging.md §4).
//!
//! Owns token generation, parsing and verification, and the policy/rights model. It must not know about
//! HTTP routing: callers pass the resource URI being accessed and the right the operation needs.
//!
//! Two rules that are easy to get wrong and that the test vectors pin down:
//! - the HMAC key is the key string's UTF-8 bytes, never its base64 decoding;
//! - verification signs the `sr` value exactly as received (SDKs differ in percent-encoding case).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The token scheme prefix every SAS token starts with.
pub const SCHEME: &str = "SharedAccessSignature";

/// Characters left unencoded: those of JavaScript's `encodeURIComponent` (which .NET and JS SDKs match for URIs).
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes like `encodeURIComponent` (upper-case hex), the form the .NET and JS SDKs put in `sr`.
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URI_COMPONENT).to_string()
}

/// Base64 HMAC-SHA256 of `"{sr_encoded}\n{expiry}"` keyed with the key string's UTF-8 bytes.
pub fn sign(sr_encoded: &str, expiry: &str, key: &str) -> String {
    B64.encode(mac(sr_encoded, expiry, key).finalize().into_bytes())
}

fn mac(sr_encoded: &str, expiry: &str, key: &str) -> HmacSha256 {
    // new_from_slice accepts any key length for HMAC; the expect documents an impossible branch.
    let mut mac =
        HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(sr_encoded.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    mac
}

/// Builds a token for `resource_uri` (not yet encoded, e.g. `https://ns.servicebus.windows.net/queue`),
/// valid until `expiry_unix` (Unix seconds). Field order is the SDKs': `sr, sig, se, skn`.
pub fn generate_token(resource_uri: &str, key_name: &str, key: &str, expiry_unix: u64) -> String {
    generate_token_encoded(&url_encode(resource_uri), key_name, key, expiry_unix)
}

/// Like [`generate_token`] but with `sr` already encoded, used verbatim (for SDK-compatible variants).
pub fn generate_token_encoded(
    sr_encoded: &str,
    key_name: &str,
    key: &str,
    expiry_unix: u64,
) -> String {
    let se = expiry_unix.to_string();
    let sig = sign(sr_encoded, &se, key);
    format!(
        "{SCHEME} sr={sr_encoded}&sig={}&se={se}&skn={key_name}",
        url_encode(&sig)
    )
}

/// A parsed token. `sr` and `se` are kept exactly as received because the signature covers those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// Resource URI, still percent-encoded as received.
    pub sr: String,
    /// Signature, percent-decoded (base64 text).
    pub sig: String,
    /// Expiry as received (decimal Unix seconds).
    pub se: String,
    /// Expiry parsed.
    pub expiry: u64,
    /// Policy (key) name.
    pub skn: String,
}

/// Why a token was refused. [`SasError::status`] maps each to the HTTP status Azure uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    /// No token was presented.
    #[error("40100: Unauthorized: MissingToken: the request has no Authorization header or token")]
    Missing,
    /// The token is not `SharedAccessSignature k=v&…` with sr, sig, se and skn.
    #[error("40100: Unauthorized: malformed SharedAccessSignature token: {0}")]
    Malformed(String),
    /// The HMAC does not match, or `skn` names no configured policy: both answer exactly alike, so a caller
    /// cannot learn which key names exist.
    #[error("40103: Invalid authorization token signature")]
    BadSignature,
    /// `se` is in the past.
    #[error("40105: Unauthorized: ExpiredToken: the token expired at {expiry} (now {now})")]
    Expired {
        /// token expiry
        expiry: u64,
        /// server time
        now: u64,
    },
    /// `sr` does not cover the requested resource.
    #[error(
        "40300: Forbidden: InvalidAudience: token audience {audience} does not cover {resource}"
    )]
    WrongResource {
        /// decoded `sr`
        audience: String,
        /// requested resource
        resource: String,
    },
    /// The policy lacks the right the operation needs.
    #[error(
        "40300: Forbidden: Unauthorized access. '{0}' claim(s) are required to perform this operation"
    )]
    MissingRight(Right),
}

impl SasError {
    /// HTTP status: 401 for missing/malformed/invalid/expired tokens, 403 for valid tokens without access.
    pub fn status(&self) -> u16 {
        match self {
            SasError::WrongResource { .. } | SasError::MissingRight(_) => 403,
            _ => 401,
        }
    }
}

impl SasToken {
    /// Parses `SharedAccessSignature sr=…&sig=…&se=…&skn=…` with fields in any order.
    pub fn parse(token: &str) -> Result<SasToken, SasError> {
        let token = token.trim();
        let rest = token
            .strip_prefix(SCHEME)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| SasError::Malformed(format!("token must start with '{SCHEME} '")))?
            .trim_start();
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for part in rest.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| SasError::Malformed(format!("field '{part}' has no '='")))?;
            let slot = match k {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => continue,
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(SasError::Malformed(format!("field '{k}' appears twice")));
            }
        }
        let need = |v: Option<String>, name: &str| {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| SasError::Malformed(format!("field '{name}' is missing or empty")))
        };
        let (sr, sig, se, skn) = (
            need(sr, "sr")?,
            need(sig, "sig")?,
            need(se, "se")?,
            need(skn, "skn")?,
        );
        let expiry = se
            .parse::<u64>()
            .map_err(|_| SasError::Malformed(format!("se '{se}' is not decimal Unix seconds")))?;
        let sig = percent_decode_str(&sig)
            .decode_utf8()
            .map_err(|_| SasError::Malformed("sig is not valid percent-encoded UTF-8".into()))?
            .into_owned();
        let skn = percent_decode_str(&skn).decode_utf8_lossy().into_owned();
        Ok(SasToken {
            sr,
            sig,
            se,
            expiry,
            skn,
        })
    }

    /// Checks the HMAC against `key` over the literal `sr` and `se` (constant-time compare).
    pub fn signature_matches(&self, key: &str) -> bool {
        let Ok(raw) = B64.decode(self.sig.as_bytes()) else {
            return false;
        };
        mac(&self.sr, &self.se, key).verify_slice(&raw).is_ok()
    }

    /// The audience URI, percent-decoded (`+` read as space, as .NET's `WebUtility.UrlEncode` writes it).
    pub fn audience(&self) -> String {
        percent_decode_str(&self.sr.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    }
}

/// A right a SAS policy can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Right {
    /// Send messages / events / relay requests.
    Send,
    /// Receive messages, read events, register relay listeners.
    Listen,
    /// Everything (implies Send and Listen).
    Manage,
}

impl std::fmt::Display for Right {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Right::Send => "Send",
            Right::Listen => "Listen",
            Right::Manage => "Manage",
        })
    }
}

/// A shared access policy: a named key and the rights it grants.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SasPolicy {
    /// Key name (`skn`), e.g. `RootManageSharedAccessKey`.
    pub name: String,
    /// The key string; used as UTF-8 bytes. Write-only: never logged (see the Debug impl).
    pub key: String,
    /// Granted rights; `Manage` implies the others.
    #[serde(default = "all_rights")]
    pub rights: Vec<Right>,
}

fn all_rights() -> Vec<Right> {
    vec![Right::Manage, Right::Send, Right::Listen]
}

impl std::fmt::Debug for SasPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasPolicy")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("rights", &self.rights)
            .finish()
    }
}

impl SasPolicy {
    /// A policy granting Manage, Send and Listen.
    pub fn full(name: impl Into<String>, key: impl Into<String>) -> SasPolicy {
        SasPolicy {
            name: name.into(),
            key: key.into(),
            rights: all_rights(),
        }
    }

    /// Whether the policy grants `right` (Manage grants all).
    pub fn grants(&self, right: Right) -> bool {
        self.rights
            .iter()
            .any(|r| *r == right || *r == Right::Manage)
    }
}

/// Verifies a presented token for an access to `resource` (absolute URI, e.g. `http://host:7480/q/messages`)
/// needing `right`, at Unix time `now`. Order of checks: shape, key name and signature (one answer for both), expiry, scope, right.
pub fn authorize(
    token: Option<&str>,
    policies: &[SasPolicy],
    resource: &str,
    right: Right,
    now: u64,
) -> Result<SasToken, SasError> {
    let token = SasToken::parse(token.ok_or(SasError::Missing)?)?;
    let Some(policy) = policies.iter().find(|p| p.name == token.skn) else {
        // An unknown key name costs the same HMAC as a known one and gets the same error, so neither the
        // answer nor its timing tells which key names exist.
        let _ = token.signature_matches("");
        return Err(SasError::BadSignature);
    };
    if !token.signature_matches(&policy.key) {
        return Err(SasError::BadSignature);
    }
    if token.expiry <= now {
        return Err(SasError::Expired {
            expiry: token.expiry,
            now,
        });
    }
    let audience = token.audience();
    if !covers(&audience, resource) {
        return Err(SasError::WrongResource {
            audience,
            resource: resource.to_string(),
        });
    }
    if !policy.grants(right) {
        return Err(SasError::MissingRight(right));
    }
    Ok(token)
}

/// Whether `audience` covers `resource`: schemes http/https/sb/amqp/amqps are equivalent, hosts compare
/// case-insensitively with ports ignored, and the audience path must be a whole-segment prefix
/// (case-insensitive, as entity names are).
pub fn covers(audience: &str, resource: &str) -> bool {
    match (split_uri(audience), split_uri(resource)) {
        (Some((ah, ap)), Some((rh, rp))) => {
            if !ah.eq_ignore_ascii_case(&rh) {
                return false;
            }
            let a: Vec<&str> = ap.split('/').filter(|s| !s.is_empty()).collect();
            let r: Vec<&str> = rp.split('/').filter(|s| !s.is_empty()).collect();
            a.len() <= r.len() && a.iter().zip(&r).all(|(x, y)| x.eq_ignore_ascii_case(y))
        }
        _ => false,
    }
}

/// `scheme://host[:port]/path?q` → (host without port, path). Only http, https, sb, amqp and amqps are accepted.
fn split_uri(uri: &str) -> Option<(String, String)> {
    let (scheme, rest) = uri.split_once("://")?;
    // amqp/amqps: the audience an AMQP client puts on `$cbs` for the same entity.
    if !["http", "https", "sb", "amqp", "amqps"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return None;
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Official Go SDK vector (§4.1.1): generation is byte-exact and the token verifies.
    #[test]
    fn official_go_vector() {
        let expected = "SharedAccessSignature sr=audience&sig=8UM0iIfFCfeBSqxSdBMW8pUbhAm7mnjSUaIZTZx8V0g%3D&se=1578099723&skn=keyName";
        assert_eq!(
            generate_token("audience", "keyName", "key", 1578099723),
            expected
        );
        assert_eq!(
            sign("audience", "1578099723", "key"),
            "8UM0iIfFCfeBSqxSdBMW8pUbhAm7mnjSUaIZTZx8V0g="
        );
        let t = SasToken::parse(expected).unwrap();
        assert!(t.signature_matches("key"));
        assert!(!t.signature_matches("Key"));
    }

    /// §4.1.2: upper- and lower-case encodings of the same URI sign differently; both verify as received;
    /// the key ending in '=' is used as UTF-8, not base64-decoded.
    #[test]
    fn self_computed_vectors_case_sensitive_sr() {
        let upper = "https%3A%2F%2Fcontoso.servicebus.windows.net%2Fmyqueue";
        let lower = "https%3a%2f%2fcontoso.servicebus.windows.net%2fmyqueue";
        assert_eq!(
            sign(upper, "1700000000", "SECRETKEY="),
            "pvay+GqIP4oTSU7BjG6ydzM+QNA2c4UTsJWnLfD2SpE="
        );
        assert_eq!(
            sign(lower, "1700000000", "SECRETKEY="),
            "qgJFKWuikoQ8M6aS8XK3a1qlUTeBNj216Mcc8wAqAsQ="
        );
        let tu = generate_token(
            "https://contoso.servicebus.windows.net/myqueue",
            "n",
            "SECRETKEY=",
            1700000000,
        );
        assert!(
            tu.contains("&sig=pvay%2BGqIP4oTSU7BjG6ydzM%2BQNA2c4UTsJWnLfD2SpE%3D&"),
            "{tu}"
        );
        let tl = generate_token_encoded(lower, "n", "SECRETKEY=", 1700000000);
        assert!(
            tl.contains("&sig=qgJFKWuikoQ8M6aS8XK3a1qlUTeBNj216Mcc8wAqAsQ%3D&"),
            "{tl}"
        );
        for t in [tu, tl] {
            let p = SasToken::parse(&t).unwrap();
            assert!(p.signature_matches("SECRETKEY="));
            assert_eq!(
                p.audience(),
                "https://contoso.servicebus.windows.net/myqueue"
            );
        }
    }

    /// §4.1.3 third-party Notification Hubs vector.
    #[test]
    fn third_party_vector() {
        let t = generate_token("endpoint/hub", "keyName", "keyVal", 1);
        assert_eq!(
            t,
            "SharedAccessSignature sr=endpoint%2Fhub&sig=EGsjmHg%2FOKM5bYk5pU7ZpN5ExQRuT3VCwXuCftrmUZw%3D&se=1&skn=keyName"
        );
    }

    /// §4.1.4 shape check: a namespace token from the JS SDK regex.
    #[test]
    fn js_shape() {
        let t = generate_token(
            "sb://hostname.servicebus.windows.net/",
            "sakName",
            "k",
            1_900_000_000,
        );
        assert!(t.starts_with(
            "SharedAccessSignature sr=sb%3A%2F%2Fhostname.servicebus.windows.net%2F&sig="
        ));
        assert!(t.ends_with("&se=1900000000&skn=sakName"));
    }

    /// Old-doc field order (sig, se, skn, sr) verifies too.
    #[test]
    fn any_field_order() {
        let sig = url_encode(&sign("audience", "1578099723", "key"));
        let t = format!("SharedAccessSignature sig={sig}&se=1578099723&skn=keyName&sr=audience");
        assert!(SasToken::parse(&t).unwrap().signature_matches("key"));
    }

    /// Each authorization failure maps to its Azure status.
    #[test]
    fn authorize_failures() {
        let pol = vec![
            SasPolicy::full("root", "k1"),
            SasPolicy {
                name: "sender".into(),
                key: "k2".into(),
                rights: vec![Right::Send],
            },
        ];
        let res = "http://127.0.0.1:7480/orders/messages";
        let good = generate_token("sb://127.0.0.1/orders", "root", "k1", 2000);
        assert!(authorize(Some(&good), &pol, res, Right::Listen, 1000).is_ok());
        assert_eq!(
            authorize(Some(&good), &pol, res, Right::Listen, 2000)
                .unwrap_err()
                .status(),
            401
        );
        let bad = generate_token("sb://127.0.0.1/orders", "root", "wrong", 2000);
        assert_eq!(
            authorize(Some(&bad), &pol, res, Right::Send, 1000),
            Err(SasError::BadSignature)
        );
        assert!(
            SasError::BadSignature
                .to_string()
                .contains("40103: Invalid authorization token signature")
        );
        let other = generate_token("https://127.0.0.1/orders2", "root", "k1", 2000);
        assert_eq!(
            authorize(Some(&other), &pol, res, Right::Send, 1000)
                .unwrap_err()
                .status(),
            403
        );
        let send_only = generate_token("http://127.0.0.1/", "sender", "k2", 2000);
        assert!(authorize(Some(&send_only), &pol, res, Right::Send, 1000).is_ok());
        assert_eq!(
            authorize(Some(&send_only), &pol, res, Right::Listen, 1000),
            Err(SasError::MissingRight(Right::Listen))
        );
        assert_eq!(
            authorize(None, &pol, res, Right::Send, 1000),
            Err(SasError::Missing)
        );
        assert!(matches!(
            authorize(Some("Bearer x"), &pol, res, Right::Send, 1000),
            Err(SasError::Malformed(_))
        ));
        assert!(matches!(
            authorize(
                Some("SharedAccessSignature sr=a&sig=b&se=soon&skn=root"),
                &pol,
                res,
                Right::Send,
                1000
            ),
            Err(SasError::Malformed(_))
        ));
    }

    /// Scope is a whole-segment prefix with equivalent schemes and no port sensitivity.
    #[test]
    fn scope_rules() {
        assert!(covers("sb://h/q", "http://H:80/q/messages/head"));
        assert!(covers("https://h", "http://h/anything"));
        assert!(!covers("sb://h/q", "http://h/q2/messages"));
        assert!(!covers("sb://other/q", "http://h/q"));
        assert!(!covers("ftp://h/q", "http://h/q"));
        assert!(!covers("h/q", "http://h/q"));
    }
}
