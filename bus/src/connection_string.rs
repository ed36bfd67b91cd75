//! Service Bus / Event Hubs / Relay connection strings (azure-messaging.md §5).
//!
//! Owns parsing only, with the .NET SDK's rules; it does not open connections or mint tokens.
//! Deviation for the local bus: the `Endpoint` scheme is forced to `sb` as Azure does, but the scheme the user
//! wrote is kept in [`ConnectionString::written_scheme`] so `Endpoint=http://127.0.0.1:7480` can reach a
//! plain-HTTP bus.

/// A parsed connection string. The key is write-only: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// Host name from `Endpoint`.
    pub host: String,
    /// Non-default port from `Endpoint`, if any.
    pub port: Option<u16>,
    /// The scheme as written in `Endpoint` (lower-case), before forcing `sb`; `None` for a bare host name.
    pub written_scheme: Option<String>,
    /// `SharedAccessKeyName`.
    pub shared_access_key_name: Option<String>,
    /// `SharedAccessKey` (used as UTF-8 bytes when signing).
    pub shared_access_key: Option<String>,
    /// `SharedAccessSignature`: a ready-made token.
    pub shared_access_signature: Option<String>,
    /// `EntityPath`: queue, topic, hub or hybrid connection.
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator` (invalid values read as false, like the SDK).
    pub use_development_emulator: bool,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint())
            .field("written_scheme", &self.written_scheme)
            .field("shared_access_key_name", &self.shared_access_key_name)
            .field(
                "shared_access_key",
                &self.shared_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "shared_access_signature",
                &self.shared_access_signature.as_ref().map(|_| "<redacted>"),
            )
            .field("entity_path", &self.entity_path)
            .field("use_development_emulator", &self.use_development_emulator)
            .finish()
    }
}

/// A connection string problem, saying which part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// Blank input.
    #[error("connection string is empty")]
    Empty,
    /// A `;`-separated part lacks `=`.
    #[error("connection string part {index} ('{part}') has no '=': expected Key=Value")]
    MissingEquals {
        /// 1-based part number
        index: usize,
        /// the part text (never a key value: parts without '=' hold none)
        part: String,
    },
    /// `Key=` with nothing after it.
    #[error("connection string key '{key}' (part {index}) has an empty value")]
    EmptyValue {
        /// key as written
        key: String,
        /// 1-based part number
        index: usize,
    },
    /// Endpoint is not a usable host.
    #[error("connection string Endpoint '{0}' is not a valid host or absolute URI")]
    InvalidEndpoint(String),
    /// Endpoint carries `user:password@`; holds the host only, so the error never quotes the password.
    #[error(
        "connection string Endpoint for host '{0}' carries user:password@ credentials: remove them (the key goes in SharedAccessKey)"
    )]
    Userinfo(String),
    /// Both key and signature.
    #[error(
        "connection string has both SharedAccessKeyName/SharedAccessKey and SharedAccessSignature: use one"
    )]
    KeyAndSignature,
    /// Nothing to authenticate with, or no endpoint.
    #[error("connection string is missing {0}")]
    Missing(&'static str),
}

impl ConnectionString {
    /// Parses per the SDK: split on `;`, split each part at the first `=`, keys case-insensitive, trimmed.
    pub fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        if s.trim().is_empty() {
            return Err(ConnectionStringError::Empty);
        }
        let mut cs = ConnectionString {
            host: String::new(),
            port: None,
            written_scheme: None,
            shared_access_key_name: None,
            shared_access_key: None,
            shared_access_signature: None,
            entity_path: None,
            use_development_emulator: false,
        };
        let mut endpoint = None;
        let parts: Vec<&str> = s.split(';').collect();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            if part.trim().is_empty() {
                if i == last {
                    continue;
                }
                return Err(ConnectionStringError::MissingEquals {
                    index: i + 1,
                    part: String::new(),
                });
            }
            let Some((k, v)) = part.split_once('=') else {
                return Err(ConnectionStringError::MissingEquals {
                    index: i + 1,
                    part: part.trim().into(),
                });
            };
            let (k, v) = (k.trim(), v.trim());
            if v.is_empty() {
                return Err(ConnectionStringError::EmptyValue {
                    key: k.into(),
                    index: i + 1,
                });
            }
            let v = Some(v.to_string());
            match k.to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = v,
                "sharedaccesskeyname" => cs.shared_access_key_name = v,
                "sharedaccesskey" => cs.shared_access_key = v,
                "sharedaccesssignature" => cs.shared_access_signature = v,
                "entitypath" => cs.entity_path = v,
                "usedevelopmentemulator" => {
                    cs.use_development_emulator = v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
                }
                _ => {} // unknown keys are ignored, as the SDK does
            }
        }
        let endpoint = endpoint.ok_or(ConnectionStringError::Missing("Endpoint"))?;
        let (scheme, host, port) = parse_endpoint(&endpoint)?;
        cs.written_scheme = scheme;
        cs.host = host;
        cs.port = port;
        let has_key = cs.shared_access_key_name.is_some() || cs.shared_access_key.is_some();
        match (has_key, cs.shared_access_signature.is_some()) {
            (true, true) => return Err(ConnectionStringError::KeyAndSignature),
            (true, false) if cs.shared_access_key_name.is_none() => {
                return Err(ConnectionStringError::Missing(
                    "SharedAccessKeyName (SharedAccessKey is set)",
                ));
            }
            (true, false) if cs.shared_access_key.is_none() => {
                return Err(ConnectionStringError::Missing(
                    "SharedAccessKey (SharedAccessKeyName is set)",
                ));
            }
            (false, false) => {
                return Err(ConnectionStringError::Missing(
                    "credentials: SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature",
                ));
            }
            _ => {}
        }
        Ok(cs)
    }

    /// The normalised endpoint, `sb://host[:port]/`, as the SDK reports it.
    pub fn endpoint(&self) -> String {
        match self.port {
            Some(p) => format!("sb://{}:{p}/", self.host),
            None => format!("sb://{}/", self.host),
        }
    }

    /// The HTTP base URL to use for REST calls: `http://` when the string said `http://` or set
    /// `UseDevelopmentEmulator=true` (the local bus), otherwise `https://`. No trailing slash.
    pub fn http_base(&self) -> String {
        let plain = self.written_scheme.as_deref() == Some("http") || self.use_development_emulator;
        let scheme = if plain { "http" } else { "https" };
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }
}

/// Endpoint value → (written scheme, host, non-default port).
fn parse_endpoint(v: &str) -> Result<(Option<String>, String, Option<u16>), ConnectionStringError> {
    let invalid = || ConnectionStringError::InvalidEndpoint(v.to_string());
    let (scheme, rest) = match v.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, v),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some((_, host)) = authority.rsplit_once('@') {
        // user:password@ in the address: refused, and the error must not quote the password.
        return Err(ConnectionStringError::Userinfo(host.to_string()));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if scheme.is_some() => (h, Some(p.parse::<u16>().map_err(|_| invalid())?)),
        _ => (authority, None),
    };
    let valid_host = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid_host || (scheme.is_none() && rest.len() != authority.len()) {
        return Err(invalid());
    }
    let default_port = match scheme.as_deref() {
        Some("https") | Some("sb") | Some("amqps") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let port = port.filter(|p| Some(*p) != default_port);
    Ok((scheme, host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented form parses, with `=` padding in the key kept and the endpoint forced to sb.
    #[test]
    fn documented_form() {
        let cs = ConnectionString::parse(
            "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=abc+/def==;EntityPath=orders",
        )
        .unwrap();
        assert_eq!(cs.endpoint(), "sb://contoso.servicebus.windows.net/");
        assert_eq!(cs.shared_access_key.as_deref(), Some("abc+/def=="));
        assert_eq!(cs.entity_path.as_deref(), Some("orders"));
        assert_eq!(cs.http_base(), "https://contoso.servicebus.windows.net");
        assert!(
            !format!("{cs:?}").contains("abc+"),
            "Debug must redact the key"
        );
    }

    /// Keys are case-insensitive and trimmed; a trailing ';' and unknown keys are fine; emulator flag parses.
    #[test]
    fn lenient_rules() {
        let cs = ConnectionString::parse(
            " endpoint = sb://localhost ; sharedaccesskeyname=RootManageSharedAccessKey;SHAREDACCESSKEY=SAS_KEY_VALUE;UseDevelopmentEmulator=true;Foo=bar;",
        )
        .unwrap();
        assert_eq!(cs.host, "localhost");
        assert!(cs.use_development_emulator);
        assert_eq!(cs.http_base(), "http://localhost");
        let cs = ConnectionString::parse("Endpoint=sb://h;SharedAccessSignature=SharedAccessSignature sr=a&sig=b=&se=1&skn=k;UseDevelopmentEmulator=yes").unwrap();
        assert_eq!(
            cs.shared_access_signature.as_deref(),
            Some("SharedAccessSignature sr=a&sig=b=&se=1&skn=k")
        );
        assert!(!cs.use_development_emulator);
    }

    /// The local bus form keeps http and its port.
    #[test]
    fn local_http_endpoint() {
        let cs = ConnectionString::parse(
            "Endpoint=http://127.0.0.1:7480;SharedAccessKeyName=k;SharedAccessKey=v",
        )
        .unwrap();
        assert_eq!(cs.http_base(), "http://127.0.0.1:7480");
        assert_eq!(cs.endpoint(), "sb://127.0.0.1:7480/");
        let cs = ConnectionString::parse(
            "Endpoint=https://h:443/;SharedAccessKeyName=k;SharedAccessKey=v",
        )
        .unwrap();
        assert_eq!(cs.port, None);
    }

    /// Every documented error case is reported precisely.
    #[test]
    fn errors() {
        use ConnectionStringError as E;
        let p = ConnectionString::parse;
        assert_eq!(p("  "), Err(E::Empty));
        assert!(matches!(
            p("Endpoint=sb://h;garbage;SharedAccessKeyName=k;SharedAccessKey=v"),
            Err(E::MissingEquals { index: 2, .. })
        ));
        assert!(matches!(
            p("Endpoint=sb://h;;SharedAccessKeyName=k;SharedAccessKey=v"),
            Err(E::MissingEquals { index: 2, .. })
        ));
        assert!(matches!(
            p("Endpoint=sb://h;SharedAccessKeyName=;SharedAccessKey=v"),
            Err(E::EmptyValue { index: 2, .. })
        ));
        assert!(matches!(
            p("Endpoint=sb://bad host;SharedAccessKeyName=k;SharedAccessKey=v"),
            Err(E::InvalidEndpoint(_))
        ));
        assert!(matches!(
            p("Endpoint=sb://h:99999;SharedAccessKeyName=k;SharedAccessKey=v"),
            Err(E::InvalidEndpoint(_))
        ));
        let e = p("Endpoint=sb://u:Pw-1@h/;SharedAccessKeyName=k;SharedAccessKey=v").unwrap_err();
        assert_eq!(e, E::Userinfo("h".into()));
        assert!(!e.to_string().contains("Pw-1"), "{e}");
        assert_eq!(
            p("Endpoint=sb://h;SharedAccessKeyName=k;SharedAccessKey=v;SharedAccessSignature=x"),
            Err(E::KeyAndSignature)
        );
        assert!(matches!(
            p("Endpoint=sb://h;SharedAccessKeyName=k"),
            Err(E::Missing(_))
        ));
        assert!(matches!(p("Endpoint=sb://h"), Err(E::Missing(_))));
        assert!(matches!(
            p("SharedAccessKeyName=k;SharedAccessKey=v"),
            Err(E::Missing("Endpoint"))
        ));
    }
}
