//! Shared helpers for the bus integration tests: a real bus on 127.0.0.1:0 in a temp dir, and SAS tokens
//! computed here straight from the documented algorithm (HMAC-SHA256 over `url_encode(uri) + "\n" + expiry`
//! keyed with the key's UTF-8 bytes), independent of `weft_bus::sas`.
#![allow(dead_code)]

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use weft_bus::sas::SasPolicy;
use weft_bus::{BusConfig, BusHandle};

pub const KEY_NAME: &str = "RootManageSharedAccessKey";
pub const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
pub const SEND_ONLY: &str = "SendOnly";
pub const SEND_KEY: &str = "send-only-key";

/// encodeURIComponent, written out for the tests.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `uri` signed with `key`, expiring at `se`.
pub fn token_at(uri: &str, name: &str, key: &str, se: u64) -> String {
    let sr = enc(uri);
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{sr}\n{se}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={se}&skn={name}",
        enc(&sig)
    )
}

/// A root token for `uri` valid for an hour.
pub fn token(uri: &str) -> String {
    token_at(uri, KEY_NAME, KEY, now() + 3600)
}

pub struct TestBus {
    pub handle: BusHandle,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestBus {
    /// Starts a bus with the root and send-only policies on 127.0.0.1:0.
    pub async fn start(mut config: BusConfig) -> TestBus {
        let dir = tempfile::tempdir().unwrap();
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.data = dir.path().to_path_buf();
        config.sas_policies = vec![
            SasPolicy::full(KEY_NAME, KEY),
            SasPolicy {
                name: SEND_ONLY.into(),
                key: SEND_KEY.into(),
                rights: vec![weft_bus::sas::Right::Send],
            },
        ];
        Self::start_in(config, dir).await
    }

    pub async fn start_in(mut config: BusConfig, dir: tempfile::TempDir) -> TestBus {
        config.data = dir.path().to_path_buf();
        let handle = weft_bus::start(config).await.unwrap();
        let base = format!("http://{}", handle.local_addr());
        TestBus {
            handle,
            dir,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// Shuts down and starts again on the same data directory (a new port).
    pub async fn restart(self, config: BusConfig) -> TestBus {
        let TestBus { handle, dir, .. } = self;
        handle.shutdown().await.unwrap();
        let mut config = config;
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.sas_policies = vec![SasPolicy::full(KEY_NAME, KEY)];
        Self::start_in(config, dir).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Root token for the entity path.
    pub fn auth(&self, entity: &str) -> String {
        token(&self.url(entity))
    }

    /// Plain single send with extra headers.
    pub async fn send(
        &self,
        entity: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(self.url(&format!("{entity}/messages")))
            .header("Authorization", self.auth(entity))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    /// DELETE …/messages/head (receive and delete).
    pub async fn receive_delete(&self, entity: &str, timeout: u32) -> reqwest::Response {
        self.http
            .delete(self.url(&format!("{entity}/messages/head?timeout={timeout}")))
            .header("Authorization", self.auth(entity))
            .header(weft_bus::server::USER_PROPERTIES_REQUEST, "1")
            .send()
            .await
            .unwrap()
    }

    /// POST …/messages/head (peek-lock).
    pub async fn peek_lock(&self, entity: &str, timeout: u32) -> reqwest::Response {
        self.http
            .post(self.url(&format!("{entity}/messages/head?timeout={timeout}")))
            .header("Authorization", self.auth(entity))
            .header(weft_bus::server::USER_PROPERTIES_REQUEST, "1")
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap()
    }

    /// A request on a lock URI (DELETE complete, PUT unlock, POST renew).
    pub async fn lock_op(
        &self,
        method: reqwest::Method,
        location: &str,
        entity: &str,
    ) -> reqwest::Response {
        self.http
            .request(method, location)
            .header("Authorization", self.auth(entity))
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap()
    }
}

/// The BrokerProperties response header as JSON.
pub fn broker(r: &reqwest::Response) -> serde_json::Value {
    serde_json::from_str(
        r.headers()
            .get("BrokerProperties")
            .expect("BrokerProperties header")
            .to_str()
            .unwrap(),
    )
    .unwrap()
}

pub fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}
