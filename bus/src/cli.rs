//! Command-line entry points the host wires as `weft bus` and `weft listen`.
//!
//! Owns flag parsing into [`BusConfig`] / listener options. It does not implement serving or listening.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::{
    BusConfig, EventHubConfig, QueueConfig, RelayConfig, SubscriptionConfig, TopicConfig,
};
use crate::sas::SasPolicy;

/// `weft bus`: run the local bus. `Debug` redacts the SAS key.
#[derive(Clone, clap::Args)]
pub struct BusArgs {
    /// Address to listen on [default: 127.0.0.1:7480, or `bind` from --config].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Where `weft bus` serves AMQP 1.0 for the Azure SDKs [default: port 5672 on the --bind address when
    /// free, else a free port; or `amqp_bind` from --config].
    #[arg(long, value_name = "ADDR")]
    pub amqp_bind: Option<SocketAddr>,
    /// A queue (repeatable).
    #[arg(long = "queue", value_name = "NAME")]
    pub queues: Vec<String>,
    /// A topic with subscriptions: `NAME:SUB[,SUB…]`; a subscription may carry a correlation filter
    /// `SUB=Prop=value[&Prop=value…]`, e.g. `events:accounts=EntityLogicalName=account,all` (repeatable).
    #[arg(long = "topic", value_name = "NAME:SUB[,SUB]")]
    pub topics: Vec<String>,
    /// An Event Hub with its partition count: `NAME:PARTITIONS` (repeatable).
    #[arg(long = "event-hub", value_name = "NAME:PARTITIONS")]
    pub event_hubs: Vec<String>,
    /// A Relay hybrid connection (repeatable).
    #[arg(long = "relay", value_name = "NAME")]
    pub relays: Vec<String>,
    /// SAS policy name (grants Manage, Send, Listen).
    #[arg(long, value_name = "NAME", requires = "sas_key")]
    pub sas_key_name: Option<String>,
    /// SAS key for --sas-key-name (used as UTF-8 bytes). Also read from WEFT_BUS_SAS_KEY.
    #[arg(
        long,
        value_name = "KEY",
        env = "WEFT_BUS_SAS_KEY",
        hide_env_values = true,
        requires = "sas_key_name"
    )]
    pub sas_key: Option<String>,
    /// Data directory [default: .weft/bus, or `data` from --config].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Read entities and settings from the `[bus]` section of this TOML file; flags add to / override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read queues, topics, subscriptions and rules from a Service Bus emulator configuration file
    /// (`Config.json`: `UserConfig.Namespaces[].Queues/Topics`), so an emulator set-up moves over.
    #[arg(long, value_name = "FILE")]
    pub emulator_config: Option<PathBuf>,
    /// Serve HTTPS with a development certificate made in `<data>/tls/` (trust `<data>/tls/ca.pem`, e.g.
    /// with NODE_EXTRA_CA_CERTS or REQUESTS_CA_BUNDLE), for clients that turn `sb://` into `https://`.
    #[arg(long)]
    pub tls: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl std::fmt::Debug for BusArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusArgs")
            .field("bind", &self.bind)
            .field("amqp_bind", &self.amqp_bind)
            .field("queues", &self.queues)
            .field("topics", &self.topics)
            .field("event_hubs", &self.event_hubs)
            .field("relays", &self.relays)
            .field("sas_key_name", &self.sas_key_name)
            .field("sas_key", &self.sas_key.as_ref().map(|_| "<redacted>"))
            .field("data", &self.data)
            .field("config", &self.config)
            .field("emulator_config", &self.emulator_config)
            .field("tls", &self.tls)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl BusArgs {
    /// Builds the configuration: the file's `[bus]` section (if any), then flags on top.
    pub fn to_config(&self) -> anyhow::Result<BusConfig> {
        let mut cfg = match &self.config {
            Some(p) => BusConfig::from_toml_file(p)?,
            None => BusConfig::default(),
        };
        if let Some(b) = self.bind {
            cfg.bind = b;
        }
        if let Some(b) = self.amqp_bind {
            cfg.amqp_bind = Some(b);
        }
        if let Some(d) = &self.data {
            cfg.data = d.clone();
        }
        if let Some(p) = &self.emulator_config {
            let (queues, topics) = crate::emulator::from_file(p)?;
            cfg.queues.extend(queues);
            cfg.topics.extend(topics);
        }
        cfg.tls |= self.tls;
        if let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) {
            cfg.tls_cert = Some(c.clone());
            cfg.tls_key = Some(k.clone());
        }
        cfg.queues.extend(self.queues.iter().map(QueueConfig::new));
        for t in &self.topics {
            cfg.topics.push(parse_topic(t)?);
        }
        for h in &self.event_hubs {
            let (name, n) = h.split_once(':').with_context(|| {
                format!("--event-hub '{h}': expected NAME:PARTITIONS, e.g. hub:4")
            })?;
            let partitions = n.parse().with_context(|| {
                format!("--event-hub '{h}': partition count '{n}' is not a number")
            })?;
            cfg.event_hubs.push(EventHubConfig::new(name, partitions));
        }
        cfg.relays
            .extend(self.relays.iter().map(|r| RelayConfig { name: r.clone() }));
        if let (Some(n), Some(k)) = (&self.sas_key_name, &self.sas_key) {
            cfg.sas_policies.retain(|p| &p.name != n);
            cfg.sas_policies.push(SasPolicy::full(n, k));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `NAME:SUB[,SUB]` with `SUB=Prop=value[&Prop=value]` filters.
fn parse_topic(spec: &str) -> anyhow::Result<TopicConfig> {
    let (name, subs) = spec.split_once(':').unwrap_or((spec, ""));
    let mut out = Vec::new();
    for sub in subs.split(',').filter(|s| !s.is_empty()) {
        let (sname, filter) = sub.split_once('=').unwrap_or((sub, ""));
        let mut f = BTreeMap::new();
        for cond in filter.split('&').filter(|c| !c.is_empty()) {
            let (k, v) = cond.split_once('=').with_context(|| {
                format!(
                    "--topic '{spec}': filter '{cond}' of subscription '{sname}' must be Prop=value"
                )
            })?;
            f.insert(k.to_string(), v.to_string());
        }
        out.push(SubscriptionConfig::new(sname, f));
    }
    anyhow::ensure!(
        !out.is_empty(),
        "--topic '{spec}': expected NAME:SUB[,SUB], e.g. events:all"
    );
    Ok(TopicConfig::new(name, out))
}

/// Runs the bus until Ctrl-C. The first stdout line is exactly `listening on http://HOST:PORT` (`https://`
/// with TLS).
pub async fn run_bus(args: BusArgs) -> anyhow::Result<()> {
    let handle = start_bus(&args).await?;
    wait_for_ctrl_c().await?;
    handle.shutdown().await
}

/// Starts the bus from flags and prints where it listens (stdout) and what it serves (stderr). The host's
/// `weft bus` adds AMQP on top (weft-amqp), then waits like [`run_bus`].
pub async fn start_bus(args: &BusArgs) -> anyhow::Result<crate::BusHandle> {
    let cfg = args.to_config()?;
    let anonymous = cfg.sas_policies.is_empty();
    let summary = format!(
        "{} queue(s), {} topic(s), {} event hub(s), {} relay(s), data in {}",
        cfg.queues.len(),
        cfg.topics.len(),
        cfg.event_hubs.len(),
        cfg.relays.len(),
        cfg.data.display()
    );
    let handle = crate::start(cfg).await?;
    println!("listening on {}", handle.url());
    eprintln!("weft bus: {summary}");
    if anonymous {
        eprintln!(
            "weft bus: no SAS policy configured: accepting requests without a token (loopback only)"
        );
    }
    Ok(handle)
}

/// Waits for Ctrl-C (then the caller shuts down).
pub async fn wait_for_ctrl_c() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    eprintln!("weft bus: shutting down");
    Ok(())
}

pub use crate::listen::{ListenArgs, run_listen};

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bus: BusArgs,
    }

    /// Flags build a validated config; the key never shows in Debug output.
    #[test]
    fn flags_to_config_and_redaction() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "bus",
            "--queue",
            "q",
            "--event-hub",
            "h:2",
            "--relay",
            "r",
            "--sas-key-name",
            "root",
            "--sas-key",
            "s3cret",
        ])
        .unwrap();
        assert!(!format!("{:?}", cli.bus).contains("s3cret"));
        let cfg = cli.bus.to_config().unwrap();
        assert_eq!(cfg.bind.to_string(), crate::config::DEFAULT_BIND);
        assert_eq!(
            (
                cfg.queues.len(),
                cfg.event_hubs[0].partitions,
                cfg.relays.len()
            ),
            (1, 2, 1)
        );
        assert_eq!(cfg.sas_policies[0].name, "root");
        let bad = Cli::try_parse_from(["bus", "--event-hub", "h:x"]).unwrap();
        assert!(
            bad.bus
                .to_config()
                .unwrap_err()
                .to_string()
                .contains("'x' is not a number")
        );
        assert!(
            Cli::try_parse_from(["bus", "--sas-key-name", "root"]).is_err(),
            "a key name needs a key"
        );
        assert!(
            Cli::try_parse_from(["bus", "--tls-cert", "c.pem"]).is_err(),
            "a certificate needs its key"
        );
        let tls = Cli::try_parse_from(["bus", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .unwrap()
            .bus
            .to_config()
            .unwrap();
        assert_eq!(tls.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert!(
            Cli::try_parse_from(["bus", "--tls"])
                .unwrap()
                .bus
                .to_config()
                .unwrap()
                .tls
        );
    }

    /// Topic flags with filters become subscriptions with correlation filters.
    #[test]
    fn topic_flag() {
        let t = parse_topic("events:accounts=EntityLogicalName=account&RequestName=Create,all")
            .unwrap();
        assert_eq!(t.subscriptions.len(), 2);
        assert_eq!(t.subscriptions[0].filter["EntityLogicalName"], "account");
        assert_eq!(t.subscriptions[0].filter["RequestName"], "Create");
        assert!(t.subscriptions[1].filter.is_empty());
        assert!(parse_topic("events").is_err());
        assert!(parse_topic("events:s=bad").is_err());
    }
}
