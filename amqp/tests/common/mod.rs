//! Shared helpers: a real bus (REST) with its AMQP port, both on 127.0.0.1:0 in a temp dir.
#![allow(dead_code)]

use weft_bus::sas::{Right, SasPolicy};
use weft_bus::{
    BusConfig, BusHandle, EventHubConfig, QueueConfig, SubscriptionConfig, TopicConfig,
};

pub const KEY_NAME: &str = "RootManageSharedAccessKey";
pub const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
pub const LISTEN_ONLY: &str = "ListenOnly";
pub const LISTEN_KEY: &str = "listen-only-key";

pub struct TestBus {
    pub bus: BusHandle,
    pub amqp: weft_amqp::AmqpHandle,
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` of the REST side.
    pub rest: String,
    pub http: reqwest::Client,
}

/// Queue `orders` (lock 30 s), queue `short` (lock 2 s, max 2 deliveries), topic `events` with
/// subscription `all`, Event Hub `hub` with 4 partitions.
pub fn config() -> BusConfig {
    let mut c = BusConfig::default();
    let mut orders = QueueConfig::new("orders");
    orders.lock_duration_secs = 30.0;
    let mut short = QueueConfig::new("short");
    short.max_delivery_count = 2;
    c.queues = vec![orders, short];
    c.topics = vec![TopicConfig::new(
        "events",
        vec![SubscriptionConfig::new("all", Default::default())],
    )];
    c.event_hubs = vec![EventHubConfig::new("hub", 4)];
    c
}

impl TestBus {
    pub async fn start() -> TestBus {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Stops both sides and starts them again on the same data directory (new ports). Link tasks of
    /// connections the clients already closed end a moment after the shutdown signal, each dropping its
    /// hold on the bus (and so on the data directory's lock): the start is retried until they have.
    pub async fn restart(self) -> TestBus {
        let TestBus { bus, amqp, dir, .. } = self;
        amqp.shutdown().await;
        bus.shutdown().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match weft_bus::start(Self::config_in(&dir)).await {
                Ok(bus) => return Self::serve(bus, dir).await,
                Err(e)
                    if std::time::Instant::now() < deadline
                        && format!("{e:#}").contains("in use") =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("restart: {e:#}"),
            }
        }
    }

    async fn start_in(dir: tempfile::TempDir) -> TestBus {
        let bus = weft_bus::start(Self::config_in(&dir)).await.unwrap();
        Self::serve(bus, dir).await
    }

    fn config_in(dir: &tempfile::TempDir) -> BusConfig {
        let mut c = config();
        c.bind = "127.0.0.1:0".parse().unwrap();
        c.data = dir.path().to_path_buf();
        c.sas_policies = vec![
            SasPolicy::full(KEY_NAME, KEY),
            SasPolicy {
                name: LISTEN_ONLY.into(),
                key: LISTEN_KEY.into(),
                rights: vec![Right::Listen],
            },
        ];
        c
    }

    async fn serve(bus: BusHandle, dir: tempfile::TempDir) -> TestBus {
        let amqp = weft_amqp::start(bus.bus(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let rest = format!("http://{}", bus.local_addr());
        TestBus {
            bus,
            amqp,
            dir,
            rest,
            http: reqwest::Client::new(),
        }
    }

    pub fn amqp_port(&self) -> u16 {
        self.amqp.local_addr().port()
    }

    /// The Service Bus emulator's connection string convention, pointing at this bus's AMQP port.
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint=sb://127.0.0.1:{};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};UseDevelopmentEmulator=true",
            self.amqp_port()
        )
    }

    /// A root SAS token for a REST path.
    pub fn rest_token(&self, path: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        weft_bus::sas::generate_token(&format!("{}/{path}", self.rest), KEY_NAME, KEY, now + 3600)
    }

    /// A REST request to `{rest}/{path}` signed with a root token for `entity`.
    pub fn rest_request(
        &self,
        method: reqwest::Method,
        entity: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/{path}", self.rest))
            .header("Authorization", self.rest_token(entity))
            // Receives answer every custom property in the UserProperties JSON header.
            .header(weft_bus::server::USER_PROPERTIES_REQUEST, "1")
    }

    pub async fn stop(self) {
        self.amqp.shutdown().await;
        self.bus.shutdown().await.unwrap();
    }
}

/// The repository's root.
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where `bus/tests/clients/install.sh` put the SDKs (`WEFT_BUS_CLIENTS` overrides).
pub fn clients_dir() -> std::path::PathBuf {
    std::env::var_os("WEFT_BUS_CLIENTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join("target/bus-clients"))
}

/// True when `bin` runs and `marker` (a path under [`clients_dir`]) is installed; otherwise test `name`
/// prints `skipped: NAME: why` and should return — or fails, when `WEFT_REQUIRE_CLIENTS=1`.
pub fn client_available(name: &str, bin: &str, marker: &str) -> bool {
    let why = if std::process::Command::new(bin)
        .arg("--version")
        .output()
        .is_err()
    {
        Some(format!("{bin} is not installed"))
    } else {
        let m = clients_dir().join(marker);
        (!m.exists()).then(|| {
            format!(
                "{} is missing: run bus/tests/clients/install.sh",
                m.display()
            )
        })
    };
    match why {
        None => true,
        Some(why) if std::env::var("WEFT_REQUIRE_CLIENTS").as_deref() == Ok("1") => {
            panic!("{name}: {why} (WEFT_REQUIRE_CLIENTS=1)")
        }
        Some(why) => {
            println!("skipped: {name}: {why}");
            false
        }
    }
}
