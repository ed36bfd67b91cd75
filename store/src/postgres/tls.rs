//! TLS to the PostgreSQL server, when the URL asks for it (`sslmode=require`): rustls with the web PKI
//! roots (Mozilla's, compiled in), ring as the provider, the server's certificate checked against them and
//! the URL's host name. Without `sslmode=require` (`prefer`, the default, or `disable`) connections are
//! plain, as before.
//!
//! Owns the `tokio-postgres` TLS adapter and the choice between it and no TLS for every connection the
//! backend opens (pooled, LISTEN/NOTIFY, `weft store copy`, test databases). It must not run statements.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Config, Connection, Socket};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

/// Whether the URL's `sslmode` requires TLS (both clients' configurations answer it).
fn required(mode: SslMode) -> bool {
    mode == SslMode::Require
}

fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }))
}

/// The connection's I/O as a future of its own, whatever the stream.
pub(crate) type Driver = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Connects with TLS when the URL requires it, else without.
pub(crate) async fn connect(config: &Config) -> Result<(Client, Driver), tokio_postgres::Error> {
    fn boxed<S, T>(c: Connection<S, T>) -> Driver
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Box::pin(c)
    }
    if required(config.get_ssl_mode()) {
        let (client, connection) = config.connect(Rustls).await?;
        Ok((client, boxed(connection)))
    } else {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        Ok((client, boxed(connection)))
    }
}

/// The synchronous client's connection (LISTEN/NOTIFY, copy, test databases), with TLS when required.
pub(crate) fn connect_sync(config: &postgres::Config) -> Result<postgres::Client, postgres::Error> {
    if required(config.get_ssl_mode()) {
        config.connect(Rustls)
    } else {
        config.connect(tokio_postgres::NoTls)
    }
}

/// Makes a TLS connector per connection, for the host name it connects to.
#[derive(Clone, Copy)]
pub(crate) struct Rustls;

impl MakeTlsConnect<Socket> for Rustls {
    type Stream = Stream;
    type TlsConnect = Connector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connector, Self::Error> {
        Ok(Connector(ServerName::try_from(domain.to_owned())?))
    }
}

pub(crate) struct Connector(ServerName<'static>);

impl TlsConnect<Socket> for Connector {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(client_config())
                .connect(self.0, socket)
                .await
                .map(Stream)
        })
    }
}

/// A TLS session with the server.
pub(crate) struct Stream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TlsStream for Stream {
    /// No channel binding: SCRAM authenticates without `-PLUS` (the certificate is checked instead).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
