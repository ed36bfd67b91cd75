//! Service Bus, Event Hubs and relay posts against a real weft bus on loopback, read back with plain REST
//! requests built from the Azure docs (receive-and-delete, the Event Hubs partition read, a hand-written
//! Hybrid Connections listener).

mod common;

use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use weft_endpoints::{CLAIMS, ErrorClass, ErrorKind, check, post};
use weft_store::system::{AuthType, Contract, EndpointSecrets, MessageFormat, UserClaim};

fn claim(props: &Value, name: &str) -> Option<String> {
    props
        .get(format!("{CLAIMS}{name}"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// A queue post carries MessageId = job id, Label = message name, CorrelationId, the content type, the claims
/// for userclaim 2 (UserId), and a body that decodes back to the context.
#[tokio::test]
async fn queue_json_with_claims() {
    let bus = TestBus::start().await;
    let ep = orders_queue(&bus);
    let ctx = context();
    let d = delivery(&ctx);
    let out = post(&ep, &ctx, &d).await.unwrap();
    assert_eq!(out.status, 201);
    assert_eq!(out.response_body, "");
    assert!(!out.truncated);

    let r = bus.receive("orders", 5).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    let bp = json_header(&r, "brokerproperties");
    assert_eq!(bp["MessageId"], d.message_id);
    assert_eq!(bp["Label"], "Create");
    assert_eq!(bp["CorrelationId"], ctx.correlation_id.to_string());
    let up = json_header(&r, "userproperties");
    assert_eq!(
        claim(&up, "Organization").as_deref(),
        Some("org6eadd181.crm.dynamics.com")
    );
    assert_eq!(claim(&up, "User"), Some(ctx.user_id.to_string()));
    assert_eq!(
        claim(&up, "InitiatingUser"),
        Some(ctx.initiating_user_id.to_string())
    );
    assert_eq!(claim(&up, "EntityLogicalName").as_deref(), Some("account"));
    assert_eq!(claim(&up, "RequestName").as_deref(), Some("Create"));
    assert_eq!(
        claim(&up, "InitiatingUserAgent"),
        None,
        "userclaim 2 sends no agent"
    );
    assert!(up.get("MessageMaxSizeExceeded").is_none());
    let body = r.bytes().await.unwrap();
    assert_eq!(weft_message::parse(&body, "application/json").unwrap(), ctx);
}

/// userclaim 1 (None) sends no user claims; 3 (UserInfo) adds InitiatingUserAgent.
#[tokio::test]
async fn user_claim_mapping() {
    let bus = TestBus::start().await;
    let ctx = context();
    for (uc, user, agent) in [
        (UserClaim::None, false, false),
        (UserClaim::UserInfo, true, true),
    ] {
        let ep = bus_endpoint(
            &bus,
            Contract::QueuePersistent,
            MessageFormat::Json,
            "orders",
            uc,
        );
        post(&ep, &ctx, &delivery(&ctx)).await.unwrap();
        let r = bus.receive("orders", 5).await;
        let up = json_header(&r, "userproperties");
        assert_eq!(claim(&up, "User").is_some(), user, "{uc:?}");
        assert_eq!(claim(&up, "InitiatingUser").is_some(), user, "{uc:?}");
        assert_eq!(claim(&up, "InitiatingUserAgent").is_some(), agent, "{uc:?}");
        assert_eq!(claim(&up, "EntityLogicalName").as_deref(), Some("account"));
    }
}

/// A topic post in text XML reaches the subscription with content type application/xml and decodes.
#[tokio::test]
async fn topic_xml() {
    let bus = TestBus::start().await;
    let ep = bus_endpoint(
        &bus,
        Contract::Topic,
        MessageFormat::TextXml,
        "events",
        UserClaim::UserId,
    );
    let ctx = context();
    post(&ep, &ctx, &delivery(&ctx)).await.unwrap();
    let r = bus.receive("events/subscriptions/all", 5).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/xml")
    );
    let body = r.bytes().await.unwrap();
    assert_eq!(weft_message::parse(&body, "application/xml").unwrap(), ctx);
}

/// Over 192 KB with removable members: sent truncated with MessageMaxSizeExceeded, without InputParameters.
#[tokio::test]
async fn truncated_message_is_marked() {
    let bus = TestBus::start().await;
    let ep = orders_queue(&bus);
    let ctx = big_input(200 * 1024);
    let out = post(&ep, &ctx, &delivery(&ctx)).await.unwrap();
    assert!(out.truncated);
    let r = bus.receive("orders", 5).await;
    let up = json_header(&r, "userproperties");
    assert_eq!(up["MessageMaxSizeExceeded"], true);
    let got = weft_message::parse(&r.bytes().await.unwrap(), "application/json").unwrap();
    assert!(got.input_parameters.is_empty() && got.post_entity_images.is_empty());
    assert_eq!(got.primary_entity_id, ctx.primary_entity_id);
}

/// Still over 192 KB after the size rule: a TooLarge (permanent) error and nothing in the queue.
#[tokio::test]
async fn oversize_sends_nothing() {
    let bus = TestBus::start().await;
    let ep = orders_queue(&bus);
    let ctx = big_shared(200 * 1024);
    let e = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.to_string().contains("nothing was sent"), "{e}");
    assert_eq!(bus.receive("orders", 0).await.status(), 204);
}

/// Event Hub with a connection string (authvalue): PartitionKey = PrimaryEntityId, claims and JSON body on
/// the event read back from the partition it landed on.
#[tokio::test]
async fn event_hub_connection_string() {
    let bus = TestBus::start().await;
    let mut r = row(
        Contract::EventHub,
        MessageFormat::Json,
        AuthType::ConnectionString,
    );
    let secrets = EndpointSecrets {
        auth_value: Some(format!(
            "Endpoint={};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};EntityPath=hub",
            bus.base
        )),
        ..Default::default()
    };
    r.def.user_claim = UserClaim::UserId;
    let ep = weft_endpoints::Endpoint::new(&r, &secrets).unwrap();
    assert_eq!(ep.target(), bus.url("hub"));
    let ctx = context();
    let d = delivery(&ctx);
    assert_eq!(post(&ep, &ctx, &d).await.unwrap().status, 201);
    let mut found = Vec::new();
    for p in 0..2 {
        let r = bus
            .http
            .get(bus.url(&format!("hub/partitions/{p}/events?offset=0&max=10")))
            .header("Authorization", token(&bus.url("hub")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        found.extend(r.json::<Vec<Value>>().await.unwrap());
    }
    assert_eq!(found.len(), 1);
    let ev = &found[0];
    assert_eq!(
        ev["BrokerProperties"]["PartitionKey"],
        ctx.primary_entity_id.to_string()
    );
    assert_eq!(ev["BrokerProperties"]["MessageId"], d.message_id);
    assert_eq!(ev["ContentType"], "application/json");
    assert_eq!(
        claim(&ev["UserProperties"], "RequestName").as_deref(),
        Some("Create")
    );
    let body = ev["Body"].as_str().unwrap().as_bytes();
    assert_eq!(weft_message::parse(body, "application/json").unwrap(), ctx);

    // Binary XML is refused for Event Hubs, as in Dataverse.
    let r = row(
        Contract::EventHub,
        MessageFormat::BinaryXml,
        AuthType::ConnectionString,
    );
    let e = weft_endpoints::Endpoint::new(&r, &secrets).unwrap_err();
    assert!(e.to_string().contains("Binary XML"), "{e}");
    assert!(!e.to_string().contains(KEY));
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Hybrid Connections listener on the control channel, per the published protocol.
async fn listen(bus: &TestBus) -> Ws {
    let url = format!(
        "{}/$hc/hc?sb-hc-action=listen&sb-hc-id=test&sb-hc-token={}",
        bus.base.replace("http://", "ws://"),
        enc(&token(&bus.url("hc")))
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads one request (head + body frame) and answers with `reply`; returns the request head and body.
async fn answer(ws: &mut Ws, reply: &str) -> (Value, Vec<u8>) {
    let Message::Text(head) = ws.next().await.unwrap().unwrap() else {
        panic!("expected request head")
    };
    let head: Value = serde_json::from_str(head.as_str()).unwrap();
    let body = if head["request"]["body"] == true {
        let Message::Binary(b) = ws.next().await.unwrap().unwrap() else {
            panic!("expected body frame")
        };
        b.to_vec()
    } else {
        Vec::new()
    };
    let resp = json!({"response": {"requestId": head["request"]["id"], "statusCode": 200,
        "responseHeaders": {"Content-Type": "text/plain"}, "body": true}});
    ws.send(Message::text(resp.to_string())).await.unwrap();
    ws.send(Message::binary(reply.as_bytes().to_vec()))
        .await
        .unwrap();
    (head, body)
}

/// Two-way relay in binary XML: the listener gets the bytes, content type and claim headers, and its answer
/// comes back as the response body; one-way returns "" even when the listener answers.
#[tokio::test]
async fn relay_two_way_and_one_way() {
    let bus = TestBus::start().await;
    let mut ws = listen(&bus).await;
    let ctx = context();
    let two = bus_endpoint(
        &bus,
        Contract::TwoWay,
        MessageFormat::BinaryXml,
        "hc",
        UserClaim::UserId,
    );
    let d = delivery(&ctx);
    let (out, (head, body)) = tokio::join!(post(&two, &ctx, &d), answer(&mut ws, "Success"));
    let out = out.unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.response_body, "Success");
    let h = &head["request"]["requestHeaders"];
    assert_eq!(h["content-type"], "application/msbin1");
    assert!(
        h.get("servicebusauthorization").is_none(),
        "the relay strips the token"
    );
    let up: Value = serde_json::from_str(h["userproperties"].as_str().unwrap()).unwrap();
    assert_eq!(claim(&up, "EntityLogicalName").as_deref(), Some("account"));
    let bp: Value = serde_json::from_str(h["brokerproperties"].as_str().unwrap()).unwrap();
    assert_eq!(bp["MessageId"], d.message_id);
    assert_eq!(
        weft_message::parse(&body, "application/msbin1").unwrap(),
        ctx
    );

    let one = bus_endpoint(
        &bus,
        Contract::OneWay,
        MessageFormat::Json,
        "hc",
        UserClaim::None,
    );
    let (out, _) = tokio::join!(post(&one, &ctx, &d), answer(&mut ws, "ignored"));
    assert_eq!(out.unwrap().response_body, "");

    // check(): a listener's answer to the HEAD probe proves path, token and listener.
    let (c, (head, _)) = tokio::join!(check(&two), answer(&mut ws, ""));
    c.unwrap();
    assert_eq!(head["request"]["method"], "HEAD");
}

/// No relay listener: 502 "no active listener", transient, both for post and check.
#[tokio::test]
async fn relay_without_listener_is_transient() {
    let bus = TestBus::start().await;
    let ep = bus_endpoint(
        &bus,
        Contract::Rest,
        MessageFormat::Json,
        "hc",
        UserClaim::UserId,
    );
    let ctx = context();
    let e = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(e.status_code(), Some(502));
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(e.to_string().contains("no active listener"), "{e}");
    assert_eq!(check(&ep).await.unwrap_err().class(), ErrorClass::Transient);
}

/// A wrong SAS key: 401 → Auth, and neither the error nor Debug shows the key.
#[tokio::test]
async fn wrong_key_is_auth_and_secret_free() {
    let bus = TestBus::start().await;
    let mut r = row(Contract::Queue, MessageFormat::Json, AuthType::SasKey);
    r.def.namespace_address = Some(bus.base.clone());
    r.def.path = Some("orders".into());
    r.def.sas_key_name = Some(KEY_NAME.into());
    let wrong = "d3Jvbmcta2V5LXZhbHVlLTEyMzQ=";
    let ep = weft_endpoints::Endpoint::new(&r, &sas_secrets(wrong)).unwrap();
    assert!(!format!("{ep:?}").contains(wrong));
    let ctx = context();
    let e = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(e.status_code(), Some(401));
    assert_eq!(e.class(), ErrorClass::Auth);
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(
            !text.contains(wrong) && !text.contains(&enc(wrong)),
            "{text}"
        );
    }
    assert_eq!(check(&ep).await.unwrap_err().class(), ErrorClass::Auth);
    assert_eq!(bus.receive("orders", 0).await.status(), 204);
}

/// check() on a queue authenticates without storing anything; a missing entity is 410, permanent.
#[tokio::test]
async fn check_queue_has_no_side_effects() {
    let bus = TestBus::start().await;
    let ep = orders_queue(&bus);
    check(&ep).await.unwrap();
    assert_eq!(bus.receive("orders", 0).await.status(), 204);
    let missing = bus_endpoint(
        &bus,
        Contract::Queue,
        MessageFormat::Json,
        "nosuch",
        UserClaim::UserId,
    );
    let e = check(&missing).await.unwrap_err();
    assert_eq!(e.status_code(), Some(410));
    assert_eq!(e.class(), ErrorClass::Permanent);
}

/// An unreachable bus is a transient connection error.
#[tokio::test]
async fn unreachable_is_transient() {
    let bus = TestBus::start().await;
    let ep = orders_queue(&bus);
    bus.handle.shutdown().await.unwrap();
    let ctx = context();
    let e = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);
}

/// Binary XML on a queue travels base64 in the batch (`IsBodyBase64`) and is received as the raw
/// application/msbin1 bytes.
#[tokio::test]
async fn queue_binary_xml() {
    let bus = TestBus::start().await;
    let ep = bus_endpoint(
        &bus,
        Contract::Queue,
        MessageFormat::BinaryXml,
        "orders",
        UserClaim::UserId,
    );
    let ctx = context();
    post(&ep, &ctx, &delivery(&ctx)).await.unwrap();
    let r = bus.receive("orders", 5).await;
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/msbin1")
    );
    let body = r.bytes().await.unwrap();
    assert_eq!(
        body[..],
        weft_message::encode(&ctx, weft_message::Format::Binary)[..]
    );
}

/// SAS token auth (3): the ready-made token is used verbatim; an expired one fails as Auth before sending.
#[tokio::test]
async fn sas_token_auth() {
    let bus = TestBus::start().await;
    let mut r = row(Contract::Queue, MessageFormat::Json, AuthType::SasToken);
    r.def.namespace_address = Some(format!("{}/", bus.base));
    r.def.path = Some("/orders/".into());
    let good = EndpointSecrets {
        sas_token: Some(token(&bus.url("orders"))),
        ..Default::default()
    };
    let ep = weft_endpoints::Endpoint::new(&r, &good).unwrap();
    let ctx = context();
    post(&ep, &ctx, &delivery(&ctx)).await.unwrap();
    assert_eq!(bus.receive("orders", 5).await.status(), 200);
    let expired = "SharedAccessSignature sr=x&sig=c2lnbmF0dXJl&se=1000&skn=k";
    let bad = EndpointSecrets {
        sas_token: Some(expired.into()),
        ..Default::default()
    };
    let ep = weft_endpoints::Endpoint::new(&r, &bad).unwrap();
    let e = post(&ep, &ctx, &delivery(&ctx)).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth);
    assert!(
        e.to_string().contains("expired") && !e.to_string().contains("c2lnbmF0dXJl"),
        "{e}"
    );
}

/// Address rules: sb:// and bare hosts become https, a namespace name gets the Azure suffix, http:// is
/// refused off loopback, and missing secrets are named.
#[test]
fn address_rules() {
    let mk = |addr: &str| {
        let mut r = row(Contract::Topic, MessageFormat::Json, AuthType::SasKey);
        r.def.namespace_address = Some(addr.into());
        r.def.path = Some("events".into());
        r.def.sas_key_name = Some(KEY_NAME.into());
        r
    };
    let s = sas_secrets(KEY);
    let target =
        |addr: &str| weft_endpoints::Endpoint::new(&mk(addr), &s).map(|e| e.target().to_string());
    assert_eq!(
        target("sb://contoso.servicebus.windows.net/").unwrap(),
        "https://contoso.servicebus.windows.net/events"
    );
    assert_eq!(
        target("contoso.servicebus.windows.net").unwrap(),
        "https://contoso.servicebus.windows.net/events"
    );
    assert_eq!(
        target("http://localhost:7480").unwrap(),
        "http://localhost:7480/events"
    );
    let e = target("http://contoso.servicebus.windows.net").unwrap_err();
    assert!(e.to_string().contains("only allowed for loopback"), "{e}");
    let e = target("sb://contoso.servicebus.windows.net/events").unwrap_err();
    assert!(e.to_string().contains("must not contain a path"), "{e}");
    let mut r = mk("contoso");
    r.def.namespace_format = Some(weft_store::system::NamespaceFormat::NamespaceName);
    assert_eq!(
        weft_endpoints::Endpoint::new(&r, &s).unwrap().target(),
        "https://contoso.servicebus.windows.net/events"
    );
    let e = weft_endpoints::Endpoint::new(
        &mk("sb://c.servicebus.windows.net"),
        &EndpointSecrets::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("saskey"), "{e}");
    let mut r = mk("sb://c.servicebus.windows.net");
    r.def.auth_type = AuthType::WebhookKey;
    let e = weft_endpoints::Endpoint::new(&r, &s).unwrap_err();
    assert!(e.to_string().contains("not valid for contract 5"), "{e}");
}

/// A stored copy in the endpoint's format is sent byte for byte (no re-encoding); a copy in another format
/// is not used, the context is encoded in the endpoint's format.
#[tokio::test]
async fn stored_copy_is_sent_as_it_is_in_the_endpoints_format() {
    let bus = TestBus::start().await;
    let ep = orders_queue(&bus);
    let ctx = context();
    let client = weft_endpoints::Client::new();
    let mut stored = weft_message::encode(&ctx, weft_message::Format::Json);
    stored.extend_from_slice(b"\n"); // still the context, but not what encoding it produces
    let d = delivery(&ctx);
    client
        .post_stored(&ep, &ctx, &stored, weft_message::Format::Json, &d)
        .await
        .unwrap();
    let r = bus.receive("orders", 5).await;
    assert_eq!(
        json_header(&r, "brokerproperties")["MessageId"],
        d.message_id
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), stored.as_slice());

    let xml = weft_message::encode(&ctx, weft_message::Format::Xml);
    client
        .post_stored(&ep, &ctx, &xml, weft_message::Format::Xml, &d)
        .await
        .unwrap();
    let r = bus.receive("orders", 5).await;
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        weft_message::encode(&ctx, weft_message::Format::Json).as_slice()
    );
}
