//! Shared helpers: a real weft bus on 127.0.0.1:0 with a SAS policy, store rows for endpoints, contexts, and
//! SAS tokens computed here from the documented algorithm (independent of `weft_bus::sas`).
#![allow(dead_code)]

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use weft_bus::sas::SasPolicy;
use weft_bus::{
    BusConfig, BusHandle, EventHubConfig, QueueConfig, RelayConfig, SubscriptionConfig, TopicConfig,
};
use weft_endpoints::{Delivery, Endpoint};
use weft_message::{Entity, RemoteExecutionContext, Value};
use weft_store::system::{
    AuthType, ConnectionMode, Contract, EndpointSecrets, MessageFormat, ServiceEndpoint,
    ServiceEndpointDef, UserClaim,
};

pub const KEY_NAME: &str = "RootManageSharedAccessKey";
pub const KEY: &str = "c2VjcmV0LWtleS1mb3ItZW5kcG9pbnRz";

/// encodeURIComponent, written out.
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

/// A token for `uri` valid for an hour: HMAC-SHA256 over `enc(uri)\nexpiry` keyed with the key's UTF-8 bytes.
pub fn token(uri: &str) -> String {
    let se = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let sr = enc(uri);
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{sr}\n{se}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={se}&skn={KEY_NAME}",
        enc(&sig)
    )
}

pub struct TestBus {
    pub handle: BusHandle,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestBus {
    /// queue `orders`, topic `events` with subscription `all`, event hub `hub` (2 partitions), relay `hc`.
    pub async fn start() -> TestBus {
        let dir = tempfile::tempdir().unwrap();
        let config = BusConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            data: dir.path().to_path_buf(),
            queues: vec![QueueConfig::new("orders")],
            topics: vec![TopicConfig::new(
                "events",
                vec![SubscriptionConfig::new("all", BTreeMap::new())],
            )],
            event_hubs: vec![EventHubConfig::new("hub", 2)],
            relays: vec![RelayConfig { name: "hc".into() }],
            sas_policies: vec![SasPolicy::full(KEY_NAME, KEY)],
            ..BusConfig::default()
        };
        let handle = weft_bus::start(config).await.unwrap();
        let base = format!("http://{}", handle.local_addr());
        TestBus {
            handle,
            dir,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Receive-and-delete (`DELETE /{entity}/messages/head?timeout=N`) per the Service Bus REST reference.
    pub async fn receive(&self, entity: &str, timeout: u32) -> reqwest::Response {
        let e = entity.split("/subscriptions/").next().unwrap();
        self.http
            .delete(self.url(&format!("{entity}/messages/head?timeout={timeout}")))
            .header("Authorization", token(&self.url(e)))
            // Every custom property (the claims) in the UserProperties JSON header.
            .header(weft_bus::server::USER_PROPERTIES_REQUEST, "1")
            .send()
            .await
            .unwrap()
    }
}

pub fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

pub fn json_header(r: &reqwest::Response, name: &str) -> serde_json::Value {
    serde_json::from_str(&header(r, name).unwrap_or_else(|| panic!("no {name} header"))).unwrap()
}

/// A stored endpoint row as weft-store reads it back.
pub fn row(contract: Contract, format: MessageFormat, auth: AuthType) -> ServiceEndpoint {
    ServiceEndpoint {
        def: ServiceEndpointDef {
            id: Uuid::new_v4(),
            name: "test endpoint".into(),
            description: None,
            contract,
            message_format: format,
            auth_type: auth,
            connection_mode: ConnectionMode::Normal,
            namespace_format: None,
            user_claim: UserClaim::UserId,
            message_charset: None,
            namespace_address: None,
            path: None,
            url: None,
            sas_key_name: None,
            solution_namespace: None,
        },
        is_sas_key_set: false,
        is_sas_token_set: false,
        is_auth_value_set: false,
    }
}

/// An endpoint on the test bus with SAS key auth.
pub fn bus_endpoint(
    bus: &TestBus,
    contract: Contract,
    format: MessageFormat,
    path: &str,
    claim: UserClaim,
) -> Endpoint {
    let mut r = row(contract, format, AuthType::SasKey);
    r.def.namespace_address = Some(bus.base.clone());
    r.def.path = Some(path.into());
    r.def.sas_key_name = Some(KEY_NAME.into());
    r.def.user_claim = claim;
    Endpoint::new(&r, &sas_secrets(KEY)).unwrap()
}

/// The JSON queue endpoint most tests post to: `orders` on `bus`, claims as user ids.
pub fn orders_queue(bus: &TestBus) -> Endpoint {
    bus_endpoint(
        bus,
        Contract::Queue,
        MessageFormat::Json,
        "orders",
        UserClaim::UserId,
    )
}

pub fn sas_secrets(key: &str) -> EndpointSecrets {
    EndpointSecrets {
        sas_key: Some(key.into()),
        ..Default::default()
    }
}

/// A Create of an account with a Target parameter, user ids, an agent and a post image.
pub fn context() -> RemoteExecutionContext {
    let mut ctx = RemoteExecutionContext::new_minimal("Create", "account", 40);
    ctx.correlation_id = Uuid::new_v4();
    ctx.user_id = Uuid::new_v4();
    ctx.initiating_user_id = Uuid::new_v4();
    ctx.primary_entity_id = Uuid::new_v4();
    ctx.operation_id = Uuid::new_v4();
    ctx.organization_name = "contoso".into();
    ctx.initiating_user_agent = Some("weft-tests/1.0".into());
    let mut e = Entity::new("account", ctx.primary_entity_id);
    e.attributes
        .push(("name".into(), Value::String("Fourth Coffee".into())));
    ctx.input_parameters
        .push(("Target".into(), Value::Entity(Box::new(e.clone()))));
    ctx.post_entity_images.push(("Image".into(), e));
    ctx
}

/// A context whose InputParameters alone are `bytes` long (removable by the size rule).
pub fn big_input(bytes: usize) -> RemoteExecutionContext {
    let mut ctx = context();
    ctx.input_parameters
        .push(("Blob".into(), Value::String("x".repeat(bytes))));
    ctx
}

/// A context whose SharedVariables are `bytes` long (the size rule cannot remove them).
pub fn big_shared(bytes: usize) -> RemoteExecutionContext {
    let mut ctx = context();
    ctx.shared_variables
        .push(("Blob".into(), Value::String("x".repeat(bytes))));
    ctx
}

pub fn delivery(ctx: &RemoteExecutionContext) -> Delivery {
    Delivery {
        message_id: Uuid::new_v4().to_string(),
        correlation_id: ctx.correlation_id,
        organization: "org6eadd181.crm.dynamics.com".into(),
        partition_key: None,
    }
}
