//! Measures posts per second and per-post latency from weft-endpoints to a local weft bus queue
//! (durable: the bus answers 201 after its fsync). Not a test: figures depend on the machine.
//!
//! `cargo run --release -p weft-endpoints --example post_rate -- [posts] [concurrency]`

use std::time::{Duration, Instant};

use weft_bus::sas::SasPolicy;
use weft_bus::{BusConfig, QueueConfig};
use weft_endpoints::{Delivery, Endpoint};
use weft_store::system::{
    AuthType, ConnectionMode, Contract, EndpointSecrets, MessageFormat, ServiceEndpoint,
    ServiceEndpointDef, UserClaim,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let posts: usize = args.next().map_or(Ok(5000), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let bus = weft_bus::start(BusConfig {
        bind: "127.0.0.1:0".parse()?,
        data: dir.path().to_path_buf(),
        queues: vec![QueueConfig::new("orders")],
        sas_policies: vec![SasPolicy::full("root", "bench-key")],
        ..BusConfig::default()
    })
    .await?;
    for (format, name) in [
        (MessageFormat::Json, "json"),
        (MessageFormat::BinaryXml, "binary"),
    ] {
        let row = ServiceEndpoint {
            def: ServiceEndpointDef {
                id: uuid::Uuid::new_v4(),
                name: "bench".into(),
                description: None,
                contract: Contract::Queue,
                message_format: format,
                auth_type: AuthType::SasKey,
                connection_mode: ConnectionMode::Normal,
                namespace_format: None,
                user_claim: UserClaim::UserId,
                message_charset: None,
                namespace_address: Some(format!("http://{}", bus.local_addr())),
                path: Some("orders".into()),
                url: None,
                sas_key_name: Some("root".into()),
                solution_namespace: None,
            },
            is_sas_key_set: true,
            is_sas_token_set: false,
            is_auth_value_set: false,
        };
        let secrets = EndpointSecrets {
            sas_key: Some("bench-key".into()),
            ..Default::default()
        };
        let ep = Endpoint::new(&row, &secrets)?;
        let ctx = weft_message::bench::realistic_context(1024);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..concurrency {
            let (ep, ctx) = (ep.clone(), ctx.clone());
            tasks.spawn(async move {
                let mut lat = Vec::new();
                for i in (w..posts).step_by(concurrency) {
                    let d = Delivery {
                        message_id: format!("job-{i}"),
                        correlation_id: ctx.correlation_id,
                        organization: "org.crm.dynamics.com".into(),
                        partition_key: None,
                    };
                    let out = weft_endpoints::post(&ep, &ctx, &d).await?;
                    lat.push(out.latency);
                }
                anyhow::Ok(lat)
            });
        }
        let mut lat: Vec<Duration> = Vec::new();
        while let Some(r) = tasks.join_next().await {
            lat.extend(r??);
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        println!(
            "{name}: {posts} posts, {concurrency} concurrent: {:.0} posts/s, latency p50 {:.2} ms, p99 {:.2} ms",
            posts as f64 / secs,
            pct(0.5),
            pct(0.99)
        );
    }
    bus.shutdown().await
}
