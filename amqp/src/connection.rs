//! One AMQP connection: SASL, sessions, and the routing of each attached link to what it addresses — an
//! entity (send or receive), `$cbs`, or an entity's `$management` node. Owns the connection's claims and
//! the reply links of its request-response nodes; what a link does lives in `links` and `requests`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fe2o3_amqp::acceptor::{ConnectionAcceptor, LinkAcceptor, LinkEndpoint, SessionAcceptor};
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp::types::messaging::TargetArchetype;
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::Symbol;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weft_bus::server::Bus;

use crate::auth::{Sasl, SharedClaims};
use crate::convert::AmqpMessage;
use crate::eventhubs::{self, ConsumerRequest, Owners};

/// Where replies of `$cbs` / `$management` go: the client's receiving links, by their reply address and
/// by node (JavaScript's SDK names the reply address in the link's target, Python's attaches its reply
/// link with the node itself as target and sends requests whose `reply-to` is that link's address).
#[derive(Default)]
pub struct Replies {
    links: Mutex<Vec<ReplyLink>>,
}

struct ReplyLink {
    node: String,
    address: String,
    tx: mpsc::Sender<AmqpMessage>,
}

impl Replies {
    fn register(&self, node: String, address: String, tx: mpsc::Sender<AmqpMessage>) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let replaced = |l: &ReplyLink| l.node == node && l.address == address;
        links.retain(|l| !(l.tx.is_closed() || replaced(l)));
        links.push(ReplyLink { node, address, tx });
    }

    /// The reply link for `reply_to`, else the newest reply link on `node`.
    pub fn get(&self, node: &str, reply_to: &str) -> Option<mpsc::Sender<AmqpMessage>> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let open = || links.iter().rev().filter(|l| !l.tx.is_closed());
        open()
            .find(|l| l.address == reply_to)
            .or_else(|| open().find(|l| l.node == node))
            .map(|l| l.tx.clone())
    }
}

/// What every link of a connection shares.
pub struct Conn {
    /// The bus served.
    pub bus: Arc<Bus>,
    /// SASL login and `$cbs` tokens.
    pub claims: SharedClaims,
    /// Reply links of the request-response nodes.
    pub replies: Replies,
    /// Owner levels of the listener's Event Hubs consumer links.
    pub owners: Arc<Owners>,
}

/// The source filter that makes a receiving link a Service Bus session receiver.
const SESSION_FILTER: &str = "com.microsoft:session-filter";

/// The address a terminus names, without any `amqp(s)://host[:port]` / `sb://host` prefix (Python's SDK
/// sends full URIs, JavaScript's the bare path).
pub fn entity_path(address: &str) -> String {
    let rest = match address.find("://") {
        Some(i) => {
            let after = &address[i + 3..];
            after.find('/').map_or("", |j| &after[j..])
        }
        None => address,
    };
    rest.trim_matches('/').to_string()
}

/// Serves one TCP connection until the client closes it.
pub async fn serve(bus: Arc<Bus>, owners: Arc<Owners>, stream: TcpStream, peer: SocketAddr) {
    let claims = SharedClaims::default();
    let acceptor = ConnectionAcceptor::builder()
        .container_id("weft-bus")
        .sasl_acceptor(Sasl::new(bus.config().sas_policies.clone(), claims.clone()))
        .build();
    let mut connection = match acceptor.accept(stream).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "AMQP connection not opened");
            return;
        }
    };
    let conn = Arc::new(Conn {
        bus,
        claims,
        replies: Replies::default(),
        owners,
    });
    let session_acceptor = SessionAcceptor::new();
    while let Some(incoming) = connection.next_incoming_session().await {
        match session_acceptor
            .accept_incoming_session(incoming, &mut connection)
            .await
        {
            Ok(session) => {
                tokio::spawn(serve_session(conn.clone(), session));
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "AMQP session not begun");
                break;
            }
        }
    }
    let _ = connection.close().await;
}

async fn serve_session(conn: Arc<Conn>, mut session: fe2o3_amqp::acceptor::ListenerSessionHandle) {
    // Links announce the entity's message size limit, as Service Bus does: the SDKs size their batches
    // by it (JavaScript's refuses to build a batch without it).
    let acceptor = LinkAcceptor::builder()
        .max_message_size(conn.bus.config().max_message_bytes as u64)
        .build();
    while let Some(mut attach) = session.next_incoming_attach().await {
        let mut route = Route::of(&attach);
        route.event_hub = eventhubs::is_event_hub(&conn, &route.node);
        if attach.role == Role::Sender {
            // As Service Bus does, the bus settles what it receives at once (receiver-settle-mode first)
            // even when a sender asks for second (Python's SDK does): the disposition that accepts a
            // message is sent after it is committed, so there is nothing left to confirm.
            attach.rcv_settle_mode = ReceiverSettleMode::First;
        } else if route.is_request_node() {
            // Answers of `$cbs` / `$management` go pre-settled: Python's SDK never settles them, and an
            // answer waiting for a settlement would hold up the next one.
            attach.snd_settle_mode = SenderSettleMode::Settled;
        } else if route.event_hub {
            // Events go pre-settled: Event Hubs has no settlement (a consumer's position is its own
            // checkpoint), and unsettled deliveries would pile up in the link's unsettled map.
            attach.snd_settle_mode = SenderSettleMode::Settled;
        }
        match acceptor.accept_incoming_attach(attach, &mut session).await {
            Ok(link) => {
                tokio::spawn(serve_link(conn.clone(), route, link));
            }
            Err(e) => tracing::debug!(error = %e, "AMQP link not attached"),
        }
    }
    let _ = session.end().await;
}

/// What an incoming attach asks for, read before it is accepted.
struct Route {
    /// The node (entity path, `$cbs`, `…/$management`).
    node: String,
    /// For the client's receiving links: the address its replies are sent to (target address, else the
    /// link name).
    reply_address: String,
    /// Whether the client wants pre-settled deliveries (receive-and-delete).
    presettled: bool,
    /// Whether the node is under an Event Hub (set once the bus is at hand).
    event_hub: bool,
    /// For the client's receiving links: the Event Hubs start position and owner level asked for.
    consumer: Option<ConsumerRequest>,
    /// A Service Bus session receiver (`com.microsoft:session-filter` on the source): refused, since
    /// the bus has no sessions — serving it as a plain receiver would break the session's ordering and
    /// lock guarantees without telling the client.
    session_receiver: bool,
}

impl Route {
    /// `$cbs`, the namespace's `$management` (Event Hubs) or an entity's `$management` node.
    fn is_request_node(&self) -> bool {
        self.node == "$cbs" || self.node == "$management" || self.node.ends_with("/$management")
    }

    fn of(attach: &Attach) -> Route {
        let (node, reply_address) = match attach.role {
            // The client sends: the node is our target.
            Role::Sender => (
                attach
                    .target
                    .as_deref()
                    .and_then(target_address)
                    .unwrap_or_default(),
                String::new(),
            ),
            Role::Receiver => (
                attach
                    .source
                    .as_ref()
                    .and_then(|s| s.address.clone())
                    .unwrap_or_default(),
                attach
                    .target
                    .as_deref()
                    .and_then(target_address)
                    .unwrap_or_else(|| attach.name.clone()),
            ),
        };
        let session_receiver = attach.role == Role::Receiver
            && attach
                .source
                .as_ref()
                .and_then(|s| s.filter.as_ref())
                .is_some_and(|f| f.contains_key(&Symbol::from(SESSION_FILTER)));
        let consumer = (attach.role == Role::Receiver).then(|| ConsumerRequest {
            selector: eventhubs::selector(attach.source.as_ref().and_then(|s| s.filter.as_ref())),
            owner_level: eventhubs::owner_level(attach.properties.as_ref()),
        });
        Route {
            node: entity_path(&node),
            reply_address,
            presettled: attach.snd_settle_mode == SenderSettleMode::Settled,
            event_hub: false,
            consumer,
            session_receiver,
        }
    }
}

fn target_address(t: &TargetArchetype) -> Option<String> {
    #[allow(unreachable_patterns)]
    // a transaction coordinator, when fe2o3's `transaction` feature is on
    match t {
        TargetArchetype::Target(t) => t.address.clone(),
        _ => None,
    }
}

async fn serve_link(conn: Arc<Conn>, route: Route, link: LinkEndpoint) {
    let is_request_node = route.is_request_node();
    match link {
        LinkEndpoint::Receiver(receiver) if is_request_node => {
            crate::requests::serve(conn, route.node, receiver).await
        }
        LinkEndpoint::Sender(sender) if is_request_node => {
            let (tx, rx) = mpsc::channel(64);
            conn.replies.register(route.node, route.reply_address, tx);
            // The channel's sender lives in `conn.replies`: a task that held `conn` while waiting on the
            // channel would keep both alive for good, and with them the connection's state and the bus
            // (its store and the data directory's lock) after the client is gone.
            drop(conn);
            crate::requests::reply_link(sender, rx).await
        }
        LinkEndpoint::Receiver(receiver) if route.event_hub => {
            eventhubs::producer(conn, route.node, receiver).await
        }
        LinkEndpoint::Sender(sender) if route.event_hub => {
            let owners = conn.owners.clone();
            let request = route.consumer.unwrap_or(ConsumerRequest {
                selector: Ok(None),
                owner_level: None,
            });
            eventhubs::consumer(conn, owners, route.node, request, sender).await
        }
        LinkEndpoint::Receiver(receiver) => {
            crate::links::incoming(conn, route.node, receiver).await
        }
        LinkEndpoint::Sender(sender) if route.session_receiver => {
            let _ = sender
                .close_with_error(crate::links::error(
                    crate::links::conditions::NOT_IMPLEMENTED,
                    "Sessions are not supported by weft's bus: session receivers (com.microsoft:session-filter) are refused (see amqp/README.md)",
                ))
                .await;
        }
        LinkEndpoint::Sender(sender) => {
            crate::links::outgoing(conn, route.node, route.presettled, sender).await
        }
    }
}
