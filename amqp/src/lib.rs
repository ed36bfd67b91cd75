//! weft-amqp: AMQP 1.0 on weft's embedded bus, so the official Azure Service Bus and Event Hubs SDKs
//! (which speak only AMQP) work against `weft bus` with only the connection string changed.
//!
//! Owns the AMQP listener: connections, SASL, CBS (`$cbs` put-token), entity links, Event Hubs producer
//! and consumer links and the `$management` request-response nodes. Framing, sessions and links come
//! from `fe2o3-amqp`; delivery rules, persistence, partitions and SAS validation stay in weft-bus (one
//! store and one semantics for REST and AMQP) — this crate must not keep messages or events of its own.

mod auth;
pub mod bench;
pub mod cli;
mod connection;
mod convert;
mod eventhubs;
mod links;
mod requests;

use std::net::SocketAddr;
use std::sync::Arc;

use weft_bus::server::Bus;

/// A running AMQP listener. Dropping it does not stop it; call [`AmqpHandle::shutdown`].
pub struct AmqpHandle {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AmqpHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and ends the accept loop; open connections end with the bus.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The maximum segment size the listener advertises. PyPI `azure-eventhub` (5.15) reads every TCP
/// option of its socket after connecting and writes it back; on loopback the kernel reports an MSS of
/// 32,768 there (half the 64 KiB window), which `setsockopt(TCP_MAXSEG)` refuses (its maximum is
/// 32,767), so the SDK could not connect to a local bus at all. Advertising 32,767 keeps the client's
/// MSS settable; on real networks the path MTU gives a far smaller MSS, so nothing else changes.
const LISTENER_MSS: u32 = 32_767;

/// Binds the AMQP listener with [`LISTENER_MSS`] (best effort: a platform without the option keeps its
/// default).
fn bind_listener(bind: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::STREAM, Some(Protocol::TCP))?;
    // As tokio's `TcpListener::bind`: a restarted bus can take its port back at once.
    socket.set_reuse_address(true)?;
    if let Err(e) = socket.set_tcp_mss(LISTENER_MSS) {
        tracing::debug!(error = %e, "TCP_MAXSEG not set on the AMQP listener");
    }
    socket.bind(&bind.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Serves AMQP 1.0 (plain TCP) on `bind` over `bus`'s entities and store.
pub async fn start(bus: Arc<Bus>, bind: SocketAddr) -> anyhow::Result<AmqpHandle> {
    let listener = bind_listener(bind)
        .map_err(|e| anyhow::anyhow!("cannot bind the AMQP port {bind}: {e}"))?;
    let addr = listener.local_addr()?;
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut bus_stop = bus.shutdown_signal();
    let owners = Arc::new(eventhubs::Owners::default());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection::serve(bus.clone(), owners.clone(), stream, peer));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "AMQP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = stop_rx.changed() => break,
                _ = bus_stop.changed() => break,
            }
        }
    });
    Ok(AmqpHandle { addr, stop, task })
}
