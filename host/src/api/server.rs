//! The API's HTTP/1.1 listener: accepts connections up to a cap, gives each a header read timeout (which
//! also closes a kept-alive connection that stays idle), and shuts down gracefully.
//!
//! Owns the connection-level limits ([`ApiLimits`]), the accept loop and the TLS handshake when the server
//! speaks HTTPS (bounded by the header read timeout, so a client stalling the handshake holds its slot no
//! longer than one stalling its headers). It must not look at requests: routing, authentication and body
//! limits are the router's; certificates are the `tls` module's.
//!
//! Why not `axum::serve`: it offers no header read timeout and no connection cap, so a client trickling
//! headers could hold connections forever and enough of them starve every other caller.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// The limits of the API's listener and requests. The defaults are safe for a laptop; `weft up` has a
/// flag for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Time a client has to send a request's complete head (request line and headers), counted from the
    /// connection's start or the end of the previous answer: a kept-alive connection idle for this long
    /// is closed too.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's complete body once its head arrived (408 after).
    pub body_read_timeout: Duration,
    /// The largest request body, bytes, on every route but a component upload (413 above).
    pub body_bytes: usize,
    /// The largest component upload (`PUT pluginassemblies(<GUID>)/content`), bytes.
    pub upload_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            body_bytes: 4 << 20,
            // A plug-in component (a few MB, a third more in base64).
            upload_bytes: 64 << 20,
        }
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` fires, then sets `stop` (which the
/// app may watch too: the console ends its event streams), stops accepting, lets in-flight requests
/// finish and waits for every connection to close.
pub(super) async fn run(
    listener: TcpListener,
    app: Router,
    limits: ApiLimits,
    tls: Option<TlsAcceptor>,
    shutdown: oneshot::Receiver<()>,
    stop: (watch::Sender<bool>, watch::Receiver<bool>),
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = stop;
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // A slot first: at the cap, new connections stay in the kernel's backlog rather than in memory.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let app = app.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_connection(stream, app, limits, stop).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    // A failed or stalled handshake just closes the connection: nothing to answer.
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.header_read_timeout, handshake).await
                    {
                        serve_connection(stream, app, limits, stop).await;
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it closes or the server stops.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    limits: ApiLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
