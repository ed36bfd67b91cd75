//! Who may do what on one AMQP connection: SASL (ANONYMOUS and PLAIN, as the Service Bus emulator accepts)
//! and the SAS tokens put on `$cbs`. Token checks are weft-bus's [`Bus::authorize_token`], exactly as the
//! REST side checks the `Authorization` header; this module only remembers what was presented.

use std::sync::{Arc, Mutex};

use fe2o3_amqp::acceptor::sasl_acceptor::{SaslAcceptor, SaslServerFrame};
use fe2o3_amqp::types::primitives::{Array, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use weft_bus::sas::{Right, SasPolicy};
use weft_bus::server::Bus;

/// What a connection has proven.
#[derive(Default)]
pub struct Claims {
    /// SASL PLAIN with a policy's name and key: that policy's rights on every entity.
    policy: Option<SasPolicy>,
    /// Tokens accepted on `$cbs`, newest last.
    tokens: Vec<String>,
}

/// Claims shared by the SASL exchange and the connection's links.
pub type SharedClaims = Arc<Mutex<Claims>>;

fn locked(c: &SharedClaims) -> std::sync::MutexGuard<'_, Claims> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remembers a token accepted by `$cbs`.
pub fn add_token(claims: &SharedClaims, token: String) {
    let mut c = locked(claims);
    // Clients renew tokens on the same connection; keep the list short.
    if c.tokens.len() >= 64 {
        c.tokens.remove(0);
    }
    c.tokens.push(token);
}

/// Whether the connection may use `entity` with `right`: with no SAS policy (loopback anonymous mode)
/// always; else by its SASL PLAIN policy or a `$cbs` token whose audience covers the entity.
pub fn allowed(bus: &Bus, claims: &SharedClaims, entity: &str, right: Right) -> bool {
    if bus.config().sas_policies.is_empty() {
        return true;
    }
    let c = locked(claims);
    if c.policy.as_ref().is_some_and(|p| p.grants(right)) {
        return true;
    }
    c.tokens
        .iter()
        .rev()
        .any(|t| token_allows(bus, t, entity, right).is_ok())
}

/// Checks one token for `right` on `entity` exactly as the REST side checks SAS (signature, expiry,
/// scope, rights), against the audience's own origin: AMQP has no Host header, the scope check is on
/// the path. The error is the REST side's message.
pub fn token_allows(bus: &Bus, token: &str, entity: &str, right: Right) -> Result<(), String> {
    let parsed = weft_bus::sas::SasToken::parse(token).map_err(|e| e.to_string())?;
    let audience = parsed.audience();
    let resource = format!("{}/{entity}", origin(&audience));
    bus.authorize_token(Some(token), &resource, right)
        .map_err(|e| e.to_string())
}

/// `scheme://authority` of a URI (the whole text when it has no path).
pub fn origin(uri: &str) -> &str {
    match uri.find("://") {
        Some(i) => match uri[i + 3..].find('/') {
            Some(j) => &uri[..i + 3 + j],
            None => uri,
        },
        None => uri,
    }
}

/// SASL ANONYMOUS (authorization then comes from `$cbs`) and PLAIN with a policy's key name and key.
#[derive(Clone)]
pub struct Sasl {
    policies: Arc<Vec<SasPolicy>>,
    claims: SharedClaims,
}

impl Sasl {
    /// An acceptor for one connection, recording a PLAIN login into `claims`.
    pub fn new(policies: Vec<SasPolicy>, claims: SharedClaims) -> Sasl {
        Sasl {
            policies: Arc::new(policies),
            claims,
        }
    }

    fn plain(&self, response: &[u8]) -> SaslCode {
        let mut parts = response.split(|b| *b == 0);
        let (_authzid, Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
            return SaslCode::Auth;
        };
        if self.policies.is_empty() {
            return SaslCode::Ok; // anonymous mode: any login
        }
        match self
            .policies
            .iter()
            .find(|p| p.name.as_bytes() == user && p.key.as_bytes() == pass)
        {
            Some(p) => {
                locked(&self.claims).policy = Some(p.clone());
                SaslCode::Ok
            }
            None => SaslCode::Auth,
        }
    }
}

fn outcome(code: SaslCode) -> SaslServerFrame {
    SaslServerFrame::Outcome(SaslOutcome {
        code,
        additional_data: None,
    })
}

impl SaslAcceptor for Sasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![Symbol::from("ANONYMOUS"), Symbol::from("PLAIN")])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        match init.mechanism.as_str() {
            "ANONYMOUS" => outcome(SaslCode::Ok),
            "PLAIN" => {
                let resp = init
                    .initial_response
                    .map(|b| b.into_vec())
                    .unwrap_or_default();
                outcome(self.plain(&resp))
            }
            _ => outcome(SaslCode::Auth),
        }
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        // Neither mechanism has a challenge round.
        outcome(SaslCode::Auth)
    }
}

/// The rights worth remembering a token for, in the order they are tried.
pub const RIGHTS: [Right; 3] = [Right::Listen, Right::Send, Right::Manage];
