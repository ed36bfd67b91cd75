//! What the host wires: `weft bus` (REST and AMQP on one store) and the AMQP listener `weft up` starts
//! next to the bus. Owns the AMQP port default; flags and the `[bus]` section stay weft-bus's.

use std::net::SocketAddr;
use std::sync::Arc;

use weft_bus::cli::BusArgs;
use weft_bus::server::Bus;

use crate::AmqpHandle;

/// The AMQP port Azure's SDKs use for the emulator (`UseDevelopmentEmulator=true`) unless the endpoint
/// names another.
pub const DEFAULT_AMQP_PORT: u16 = 5672;

/// Starts AMQP for `bus`: on `amqp_bind` when configured (its failure is an error), else on port 5672 of
/// the bus's `bind` address, falling back to a free port when 5672 is taken (a RabbitMQ broker, another
/// bus). Prints `amqp listening on amqp://HOST:PORT` on stdout.
pub async fn start_configured(bus: Arc<Bus>) -> anyhow::Result<AmqpHandle> {
    let configured = bus.config().amqp_bind;
    let handle = match configured {
        Some(addr) => crate::start(bus, addr).await?,
        None => {
            let ip = bus.config().bind.ip();
            match crate::start(bus.clone(), SocketAddr::new(ip, DEFAULT_AMQP_PORT)).await {
                Ok(h) => h,
                Err(e) => {
                    eprintln!(
                        "weft bus: AMQP port {DEFAULT_AMQP_PORT} unavailable ({e:#}); using a free port"
                    );
                    crate::start(bus, SocketAddr::new(ip, 0)).await?
                }
            }
        }
    };
    println!("amqp listening on amqp://{}", handle.local_addr());
    Ok(handle)
}

/// `weft bus`: the bus (first stdout line `listening on http://HOST:PORT`), then AMQP (second line
/// `amqp listening on amqp://HOST:PORT`), until Ctrl-C.
pub async fn run_bus(args: BusArgs) -> anyhow::Result<()> {
    let bus = weft_bus::cli::start_bus(&args).await?;
    let amqp = match start_configured(bus.bus()).await {
        Ok(a) => a,
        Err(e) => {
            bus.shutdown().await?;
            return Err(e);
        }
    };
    weft_bus::cli::wait_for_ctrl_c().await?;
    amqp.shutdown().await;
    bus.shutdown().await
}
