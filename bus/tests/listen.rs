//! `weft listen` against a real bus: queue (peek-lock + complete, abandon on handler failure,
//! receive-and-delete), topic subscription, event hub partition and relay, with `--exec` recording what it saw.

mod common;

use std::collections::BTreeMap;

use clap::Parser as _;
use common::*;
use serde_json::json;
use weft_bus::cli::ListenArgs;
use weft_bus::{
    BusConfig, EventHubConfig, QueueConfig, RelayConfig, SubscriptionConfig, TopicConfig,
};

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    listen: ListenArgs,
}

fn args(bus: &TestBus, extra: &[&str]) -> ListenArgs {
    let cs = format!(
        "Endpoint={};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY}",
        bus.base
    );
    let mut v = vec![
        "listen",
        "--connection-string",
        cs.as_str(),
        "--poll-secs",
        "5",
    ];
    v.extend_from_slice(extra);
    Cli::try_parse_from(v).unwrap().listen
}

const CORRELATION: &str = "c0000000-0000-4000-8000-000000000001";

/// A real Dataverse JSON context, written by weft-message.
fn context() -> String {
    let mut ctx = weft_message::RemoteExecutionContext::new_minimal("Create", "account", 40);
    ctx.correlation_id = CORRELATION.parse().unwrap();
    ctx.primary_entity_id = "11111111-2222-3333-4444-555555555555".parse().unwrap();
    String::from_utf8(weft_message::encode(&ctx, weft_message::Format::Json)).unwrap()
}

fn claims() -> serde_json::Value {
    json!({"http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName": "account",
           "http://schemas.microsoft.com/xrm/2011/Claims/RequestName": "Create"})
}

async fn batch_send(bus: &TestBus, entity: &str, items: serde_json::Value) {
    let r = bus
        .http
        .post(bus.url(&format!("{entity}/messages")))
        .header("Authorization", bus.auth(entity))
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(items.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Peek-lock listener: the handler's env carries the summary; success completes the message.
#[tokio::test]
async fn queue_peek_lock_complete() {
    let bus = TestBus::start(BusConfig {
        queues: vec![QueueConfig::new("q")],
        ..BusConfig::default()
    })
    .await;
    batch_send(
        &bus,
        "q",
        json!([{"Body": context(), "ContentType": "application/json", "UserProperties": claims()}]),
    )
    .await;
    let out = bus.dir.path().join("seen.txt");
    let cmd = format!(
        "cat > /dev/null; echo \"$WEFT_MESSAGE_NAME $WEFT_PRIMARY_ENTITY_NAME $WEFT_CORRELATION_ID $WEFT_SUMMARY\" > {}",
        out.display()
    );
    weft_bus::cli::run_listen(args(
        &bus,
        &["--entity", "q", "--count", "1", "--exec", &cmd],
    ))
    .await
    .unwrap();
    let seen = std::fs::read_to_string(&out).unwrap();
    assert!(
        seen.starts_with(&format!(
            "Create account {CORRELATION} Create account 11111111-2222-3333-4444-555555555555"
        )),
        "{seen}"
    );
    assert!(seen.contains("EntityLogicalName=account"), "{seen}");
    assert_eq!(bus.receive_delete("q", 0).await.status(), 204, "completed");
}

/// A failing handler abandons: the message is available again with a higher delivery count.
#[tokio::test]
async fn queue_handler_failure_abandons() {
    let bus = TestBus::start(BusConfig {
        queues: vec![QueueConfig::new("q")],
        ..BusConfig::default()
    })
    .await;
    assert_eq!(bus.send("q", &context(), &[]).await.status(), 201);
    weft_bus::cli::run_listen(args(
        &bus,
        &["--entity", "q", "--count", "1", "--exec", "exit 3"],
    ))
    .await
    .unwrap();
    let r = bus.receive_delete("q", 1).await;
    assert_eq!(r.status(), 200);
    assert_eq!(broker(&r)["DeliveryCount"], 2);
}

/// Receive-and-delete from a filtered topic subscription via EntityPath in the connection string.
#[tokio::test]
async fn subscription_receive_and_delete() {
    let mut f = BTreeMap::new();
    f.insert("EntityLogicalName".into(), "account".into());
    let bus = TestBus::start(BusConfig {
        topics: vec![TopicConfig::new(
            "t",
            vec![SubscriptionConfig::new("acc", f)],
        )],
        ..BusConfig::default()
    })
    .await;
    batch_send(&bus, "t", json!([{"Body": "skip", "UserProperties": {"http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName": "contact"}},
                                 {"Body": context(), "UserProperties": claims()}])).await;
    let out = bus.dir.path().join("sub.txt");
    let cs = format!(
        "Endpoint={};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};EntityPath=t",
        bus.base
    );
    let cmd = format!("cat > {}", out.display());
    let a = Cli::try_parse_from([
        "listen",
        "--connection-string",
        &cs,
        "--subscription",
        "acc",
        "--receive-and-delete",
        "--count",
        "1",
        "--exec",
        &cmd,
    ])
    .unwrap()
    .listen;
    weft_bus::cli::run_listen(a).await.unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), context());
    assert_eq!(
        bus.receive_delete("t/subscriptions/acc", 0).await.status(),
        204
    );
}

/// Event hub partition listener reads from an offset.
#[tokio::test]
async fn event_hub_partition() {
    let bus = TestBus::start(BusConfig {
        event_hubs: vec![EventHubConfig::new("h", 2)],
        ..BusConfig::default()
    })
    .await;
    for b in ["e0", "e1"] {
        let r = bus
            .http
            .post(bus.url("h/partitions/1/messages"))
            .header("Authorization", bus.auth("h"))
            .body(b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let out = bus.dir.path().join("eh.txt");
    let cmd = format!("cat >> {}", out.display());
    weft_bus::cli::run_listen(args(
        &bus,
        &[
            "--entity",
            "h",
            "--partition",
            "1",
            "--offset",
            "1",
            "--count",
            "1",
            "--exec",
            &cmd,
        ],
    ))
    .await
    .unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "e1");
}

/// Relay listener answers senders with the configured reply (default `Success`).
#[tokio::test]
async fn relay_listener_answers() {
    let bus = TestBus::start(BusConfig {
        relays: vec![RelayConfig { name: "hc".into() }],
        ..BusConfig::default()
    })
    .await;
    let listener = tokio::spawn(weft_bus::cli::run_listen(args(
        &bus,
        &["--entity", "hc", "--relay", "--count", "1"],
    )));
    // The sender retries until the listener's control channel is up (502 means "no listener yet").
    let mut answer = None;
    for _ in 0..100 {
        let r = bus
            .http
            .post(bus.url("hc"))
            .header("ServiceBusAuthorization", bus.auth("hc"))
            .header("Content-Type", "application/json")
            .body(context())
            .send()
            .await
            .unwrap();
        if r.status() != 502 {
            answer = Some((r.status().as_u16(), r.text().await.unwrap()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(answer, Some((200, "Success".to_string())));
    listener.await.unwrap().unwrap();
}

/// A context larger than the control channel carries (a 100 KB description) reaches `weft listen` over its
/// rendezvous address, and a reply larger than 64 KB goes back over one too.
#[tokio::test]
async fn relay_listener_uses_rendezvous_for_large_contexts_and_replies() {
    let bus = TestBus::start(BusConfig {
        relays: vec![RelayConfig { name: "hc".into() }],
        ..BusConfig::default()
    })
    .await;
    let mut ctx = weft_message::RemoteExecutionContext::new_minimal("Create", "account", 40);
    ctx.correlation_id = CORRELATION.parse().unwrap();
    ctx.shared_variables.push((
        "description".into(),
        weft_message::Value::String("d".repeat(100_000)),
    ));
    let big_context = weft_message::encode(&ctx, weft_message::Format::Json);
    assert!(big_context.len() > 100_000);
    let reply = format!("{{\"note\":\"{}\"}}", "r".repeat(80_000));
    let out = bus.dir.path().join("big.json");
    let cmd = format!("cat > {}", out.display());
    let listener = tokio::spawn(weft_bus::cli::run_listen(args(
        &bus,
        &[
            "--entity", "hc", "--relay", "--count", "1", "--reply", &reply, "--exec", &cmd,
        ],
    )));
    let mut answer = None;
    for _ in 0..100 {
        let r = bus
            .http
            .post(bus.url("hc"))
            .header("ServiceBusAuthorization", bus.auth("hc"))
            .header("Content-Type", "application/json")
            .body(big_context.clone())
            .send()
            .await
            .unwrap();
        if r.status() != 502 {
            answer = Some((r.status().as_u16(), r.text().await.unwrap()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(answer, Some((200, reply)));
    listener.await.unwrap().unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), big_context);
}

/// The listener rides out a bus that is down (connection refused) and receives once it is back.
#[tokio::test]
async fn listener_retries_until_bus_is_back() {
    let cfg = BusConfig {
        queues: vec![QueueConfig::new("q")],
        ..BusConfig::default()
    };
    let bus = TestBus::start(cfg.clone()).await;
    assert_eq!(bus.send("q", &context(), &[]).await.status(), 201);
    let addr = bus.handle.local_addr();
    let listen_args = args(
        &bus,
        &["--entity", "q", "--count", "1", "--receive-and-delete"],
    );
    let TestBus { handle, dir, .. } = bus;
    handle.shutdown().await.unwrap();
    let listener = tokio::spawn(weft_bus::cli::run_listen(listen_args));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !listener.is_finished(),
        "still retrying while the bus is down"
    );
    let mut cfg = cfg;
    cfg.bind = addr;
    cfg.data = dir.path().to_path_buf();
    cfg.sas_policies = vec![weft_bus::sas::SasPolicy::full(KEY_NAME, KEY)];
    let back = weft_bus::start(cfg).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), listener)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    back.shutdown().await.unwrap();
}
