//! The bus's connections: accepting on the listener, the cap on open connections, the header (and
//! keep-alive idle) timeout, and graceful shutdown.
//!
//! Owns nothing about what a request means (the router does) and no body limits (`dispatch` applies them
//! per route). Why not `axum::serve`: it sets no header timeout and no connection cap, so a client trickling
//! partial headers could hold any number of connections forever.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::header_case;

/// Connection limits from the bus configuration.
pub struct Limits {
    /// HTTPS: the TLS handshake runs first (within `header_timeout`), then HTTP/1.1 inside it.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Time to send a request head, counted from when the connection is ready for one (so also the idle
    /// timeout between keep-alive requests).
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` turns true, then stops accepting, lets each connection finish
/// its request in flight and waits for all of them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    loop {
        // A free slot first: at the cap, new clients wait in the kernel's listen backlog (and get served as
        // soon as a connection ends, at the latest when a stalled one hits the header timeout).
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = stop.wait_for(|v| *v) => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|v| *v) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("bus: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let mut closing = closing_rx.clone();
        let header_timeout = limits.header_timeout;
        let tls = limits.tls.clone();
        tokio::spawn(async move {
            // Held until the connection ends (for a WebSocket, until the upgrade hands it over).
            let _slot = slot;
            match tls {
                None => serve_one(tcp, app, header_timeout, &mut closing).await,
                Some(acceptor) => {
                    // A client that never finishes the handshake is cut off like one that never sends a
                    // request head.
                    match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_one(stream, app, header_timeout, &mut closing).await
                        }
                        Ok(Err(e)) => tracing::debug!("bus: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("bus: TLS handshake timed out"),
                    }
                }
            }
        });
    }
    let _ = closing.send(true);
    drop(listener);
    // Every connection holds a slot until it ends: all slots back means every connection ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// Serves HTTP/1.1 (with upgrades) on one accepted stream, plain or TLS, until it ends or the bus closes.
/// The request heads are recorded as read (inside TLS), so each request carries its headers' spelling
/// (custom property names).
async fn serve_one<I>(
    io: I,
    app: Router,
    header_timeout: Duration,
    closing: &mut watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let spellings = header_case::Spellings::default();
    let io = header_case::Recording::new(io, spellings.clone());
    let app = TowerToHyperService::new(app);
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(s) = header_case::next(&spellings) {
                req.extensions_mut().insert(s);
            }
            hyper::service::Service::call(&app, req)
        });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = closing.wait_for(|v| *v) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}
