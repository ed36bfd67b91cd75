//! `weft up`: serves a configured weft — the HTTP API, the asynchronous
//! service delivering system jobs through the endpoint clients, and, when
//! `weft.toml` has a `[bus]` section, the embedded local bus — until Ctrl-C.

use super::data::RuntimeArgs;
use crate::api::{ApiLimits, TlsFiles};
use crate::delivery::{Delivery, DeliveryRunner};
use crate::registration::toml_error;
use crate::runtime::Runtime;
use anyhow::{Context as _, anyhow};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use weft_jobs::AsyncService;

/// Flags of `weft up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Where the HTTP API listens.
    #[arg(long, default_value = "127.0.0.1:5380")]
    bind: SocketAddr,
    /// The key callers send as `Authorization: Bearer …`; required off loopback. Never printed.
    #[arg(long, env = "WEFT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The organization listeners see in the claim properties and webhook headers.
    #[arg(long, default_value = "weft")]
    organization: String,
    /// Connections the API serves at once; more wait until one closes.
    #[arg(long, default_value_t = ApiLimits::default().max_connections)]
    api_max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an idle connection stays open).
    #[arg(long, default_value_t = ApiLimits::default().header_read_timeout.as_secs())]
    api_header_timeout: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long, default_value_t = ApiLimits::default().body_read_timeout.as_secs())]
    api_body_timeout: u64,
    /// The largest request body, bytes (every route but a component upload).
    #[arg(long, default_value_t = ApiLimits::default().body_bytes)]
    api_body_limit: usize,
    /// The largest component upload (`PUT pluginassemblies(<GUID>)/content`), bytes.
    #[arg(long, default_value_t = ApiLimits::default().upload_bytes)]
    api_upload_limit: usize,
    /// Hot-replace a plug-in when its component file (its `path` in weft.toml) changes, e.g. after
    /// `weft build`; a component that does not load is refused and the old one keeps serving.
    #[arg(long)]
    watch: bool,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first); needs --tls-key.
    #[arg(long, requires = "tls_key", conflicts_with = "tls")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", conflicts_with = "tls")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a development certificate weft makes in `<data>/tls/` (trust its `ca.pem`).
    #[arg(long)]
    tls: bool,
    /// Log lines as text or as JSON objects (one per line) on stderr.
    #[arg(long, value_enum, default_value_t = super::LogFormat::Text)]
    pub(super) log_format: super::LogFormat,
}

impl UpArgs {
    fn tls_files(&self) -> anyhow::Result<Option<TlsFiles>> {
        Ok(match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                trust: None,
            }),
            _ if self.tls => Some(crate::api::development_certificate(&self.runtime.data)?),
            _ => None,
        })
    }

    fn api_limits(&self) -> anyhow::Result<ApiLimits> {
        anyhow::ensure!(
            self.api_max_connections > 0,
            "--api-max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.api_header_timeout > 0 && self.api_body_timeout > 0,
            "--api-header-timeout and --api-body-timeout must be at least 1 second"
        );
        Ok(ApiLimits {
            max_connections: self.api_max_connections,
            header_read_timeout: Duration::from_secs(self.api_header_timeout),
            body_read_timeout: Duration::from_secs(self.api_body_timeout),
            body_bytes: self.api_body_limit,
            upload_bytes: self.api_upload_limit,
        })
    }
}

/// The `[bus]` section of `weft.toml`, when there is one.
fn bus_config(config: &std::path::Path) -> anyhow::Result<Option<weft_bus::BusConfig>> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    // Parse errors are rendered without the offending line when it holds a secret (a SAS key…).
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{} is not valid TOML: {}",
            config.display(),
            toml_error::render(&text, &e)
        )
    })?;
    if !table.contains_key("bus") {
        return Ok(None);
    }
    weft_bus::BusConfig::from_toml_str(&text)
        .map(Some)
        .with_context(|| format!("{}: [bus]", config.display()))
}

/// `weft up`.
pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let limits = args.api_limits()?;
    // Synchronous set-up (loading plug-ins, opening the store) before the async part.
    let runtime = Arc::new(Runtime::open_with_store(
        &args.runtime.config,
        &args.runtime.data,
        args.runtime.store.as_deref(),
    )?);
    // What the file overrode goes to stderr: stdout's first line stays the listening address.
    eprintln!(
        "store: {}",
        runtime.store_location(args.runtime.store.as_deref())
    );
    let report = runtime.pipeline.startup_report();
    for entry in &report.replaced {
        eprintln!("{}: {entry}", runtime.registration.file);
    }
    for entry in &report.removed {
        eprintln!(
            "{}: {entry} is no longer declared; deleted",
            runtime.registration.file
        );
    }
    eprint!("{}", super::summary::startup_summary(&runtime)?);
    let tls = args.tls_files()?;
    if let Some(TlsFiles {
        cert,
        trust: Some(ca),
        ..
    }) = &tls
    {
        eprintln!(
            "TLS: development certificate {} for localhost, 127.0.0.1 and ::1. Trust its CA {} \
             (Python requests: REQUESTS_CA_BUNDLE={ca}; Node: NODE_EXTRA_CA_CERTS={ca}; curl: --cacert \
             {ca}; or add it to the system's trust store).",
            cert.display(),
            ca.display(),
            ca = ca.display()
        );
    }
    let bus = bus_config(&args.runtime.config)?;
    let jobs = runtime
        .registration
        .jobs
        .clone()
        .into_config()
        .map_err(|e| anyhow!("{}: [jobs]: {e}", runtime.registration.file))?;
    // Traces (`[telemetry]`, OTEL_*): nothing runs unless configured. The guard flushes the last spans
    // when `weft up` returns, after the API and the asynchronous service stopped.
    let telemetry = match runtime
        .registration
        .telemetry
        .resolve(|name| std::env::var(name).ok())
        .map_err(|e| anyhow!("{}: [telemetry]: {e}", runtime.registration.file))?
    {
        Some(config) => {
            let guard = crate::telemetry::init(&config)?;
            eprintln!(
                "telemetry: traces to {} (OTLP/HTTP), service {}",
                config.origin(),
                config.service_name
            );
            Some(guard)
        }
        None => None,
    };
    let delivery = Delivery::new(args.organization)?;
    runtime.pipeline.set_delivery(Arc::clone(&delivery));
    let runner = Arc::new(DeliveryRunner::new(runtime.pipeline.clone(), delivery));
    let served = super::block_on(async move {
        let bus = match bus {
            Some(config) => {
                let handle = weft_bus::start(config).await?;
                println!("bus listening on {}", handle.url());
                runtime.attach_bus(handle.bus());
                let amqp = weft_amqp::cli::start_configured(handle.bus()).await?;
                Some((handle, amqp))
            }
            None => None,
        };
        // Trace-log retention: old rows go at start, then every interval, off the async threads.
        let purger = Arc::clone(&runtime);
        let retention = tokio::spawn(async move {
            loop {
                let runtime = Arc::clone(&purger);
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                let purged = tokio::task::spawn_blocking(move || runtime.purge_trace_logs(now_ms));
                if let Ok(Err(e)) = purged.await {
                    eprintln!("trace-log retention: {e}");
                }
                tokio::time::sleep(crate::runtime::TRACE_PURGE_INTERVAL).await;
            }
        });
        let watcher = args
            .watch
            .then(|| tokio::spawn(super::watch::watch(Arc::clone(&runtime))));
        let service = AsyncService::start(Arc::clone(&runtime.store), runner, jobs)
            .map_err(|e| anyhow!("starting the asynchronous service: {e}"))?;
        runtime.pipeline.set_job_notifier(service.notifier());
        // Other hosts on a shared (PostgreSQL) store: their jobs wake this service, their registration
        // changes are taken up.
        runtime
            .pipeline
            .follow_other_hosts(Some(service.notifier()));
        let (addr, server) = crate::api::serve_on(
            Arc::clone(&runtime),
            args.bind,
            args.api_key,
            limits,
            tls.as_ref(),
        )
        .await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{addr}");
        eprintln!("console: {scheme}://{addr}/console (metrics: {scheme}://{addr}/metrics)");
        server
            .run_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        retention.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        service.shutdown().await;
        if let Some((bus, amqp)) = bus {
            amqp.shutdown().await;
            bus.shutdown().await?;
        }
        Ok(())
    });
    if let Some(guard) = telemetry {
        guard.shutdown();
    }
    served
}
