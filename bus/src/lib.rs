//! weft-bus: weft's embedded local bus and the Dataverse-aware listener.
//!
//! An axum HTTP server speaking the documented Azure REST protocols (Service Bus queues, topics and
//! subscriptions; Event Hubs send; Relay Hybrid Connections HTTP requests), backed by SQLite, so the same client
//! code works against it and against Azure. This crate must not depend on weft-message: decoding for the
//! listener goes through [`listen::summarize`].

pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod connection_string;
pub mod emulator;
pub mod eventhub;
pub mod listen;
pub mod props;
pub mod relay;
pub mod sas;
pub mod server;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{
    BusConfig, EventHubConfig, QueueConfig, RelayConfig, RuleConfig, SubscriptionConfig,
    TopicConfig,
};

/// A running bus. Dropping it does not stop the server; call [`BusHandle::shutdown`].
pub struct BusHandle {
    addr: SocketAddr,
    bus: Arc<server::Bus>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl BusHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://HOST:PORT` when the bus serves TLS, else `http://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.bus.scheme(), self.addr)
    }

    /// The running bus, for other protocols served over the same store (weft-amqp).
    pub fn bus(&self) -> Arc<server::Bus> {
        self.bus.clone()
    }

    /// Stops accepting connections, ends long polls and relay listeners, and waits for in-flight requests.
    /// Everything acknowledged is already committed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await??;
        Ok(())
    }

    /// Waits until the server stops (it only stops through [`BusHandle::shutdown`] or an I/O error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await??;
        Ok(())
    }
}

/// The TLS acceptor the configuration asks for: `tls_cert`/`tls_key`, or with `tls = true` the development
/// certificate in `<data>/tls/` (made on first use); None for plain HTTP.
fn tls_acceptor(config: &BusConfig) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let files = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            trust: None,
        },
        _ if config.tls => tls::development(&config.data)?,
        _ => return Ok(None),
    };
    tls::acceptor(&files).map(Some)
}

/// Starts the bus: validates `config`, opens the store in `config.data`, binds `config.bind`, serves.
/// Without SAS policies the bus only starts on a loopback address (then requests need no token).
pub async fn start(config: BusConfig) -> anyhow::Result<BusHandle> {
    config.validate()?;
    anyhow::ensure!(
        !config.sas_policies.is_empty() || config.bind.ip().is_loopback(),
        "binding {} (not loopback) needs a SAS policy (--sas-key-name/--sas-key or [[bus.sas_policies]])",
        config.bind
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let bind = config.bind;
    let bus = tokio::task::spawn_blocking(move || server::Bus::new(config, stop_rx)).await??;
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        // The usual cause: another `weft bus` / `weft up` (or anything else) already has the port.
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "; is another `weft bus` or `weft up` running? Choose a free port with `[bus] bind` in \
                 weft.toml or `weft bus --bind`"
        } else {
            ""
        };
        anyhow::anyhow!("cannot bind {bind}: {e}{hint}")
    })?;
    let addr = listener.local_addr()?;
    let tls = tls_acceptor(bus.config())?;
    let limits = server::Limits {
        tls,
        header_timeout: std::time::Duration::from_secs_f64(bus.config().header_read_timeout_secs),
        max_connections: bus.config().max_connections,
    };
    let bus = Arc::new(bus);
    let app = server::router(bus.clone());
    let task = tokio::spawn(server::serve(listener, app, limits, stop.subscribe()));
    Ok(BusHandle {
        addr,
        bus,
        stop,
        task,
    })
}
