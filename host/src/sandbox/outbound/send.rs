//! The connector behind every outbound call: vets the URL against the plug-in's policy, resolves the
//! name itself, vets each address, connects to exactly the vetted address (so a second DNS answer cannot
//! swap in another: no rebinding), speaks TLS with rustls and the web PKI roots, and wraps both bodies so
//! the invocation's byte quotas and deadline hold while bytes flow. Everything it learns goes to the
//! invocation's [`Ledger`].
//!
//! Must not touch the store, the guest or header values (they may carry secrets; only the method, scheme,
//! host, port, status, byte counts and duration are recorded). The connection handling follows
//! `wasmtime_wasi_http::default_send_request` (which cannot be told which address to connect to).

use super::address::{AddressClass, classify, host_matches};
use super::{Ledger, OutboundPolicy};
use crate::sandbox::limits::Limits;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// What `send_request` hands back: the response and the future driving the connection.
pub(super) type Sent = (
    Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// One call's share of the invocation: its policy, limits, ledger entry and the time it must end by.
pub(super) struct Call {
    pub policy: Arc<OutboundPolicy>,
    pub limits: Arc<Limits>,
    pub ledger: Arc<Ledger>,
    pub index: usize,
    /// The earlier of the per-call timeout and the invocation's deadline.
    pub deadline: Instant,
}

/// Sends one request under the sandbox's rules; the ledger records the outcome either way.
pub(super) async fn send(
    call: Call,
    request: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let ledger = Arc::clone(&call.ledger);
    let index = call.index;
    let result = send_vetted(call, request, options).await;
    if let Err(e) = &result {
        ledger.fail(index, e.to_string());
    }
    result
}

/// A refusal: the reason goes to the ledger (and so the trace log), the guest gets `code`.
fn refuse(call: &Call, code: Error, reason: String) -> Error {
    call.ledger.refuse(call.index, reason);
    code
}

async fn send_vetted(
    call: Call,
    mut request: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let uri = request.uri().clone();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => {
            return Err(refuse(
                &call,
                Error::HttpRequestDenied,
                format!(
                    "the scheme `{}` is not allowed: plug-ins call http and https only",
                    other.unwrap_or("")
                ),
            ));
        }
    };
    let raw_host = uri.host().unwrap_or("");
    if raw_host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return Err(refuse(
            &call,
            Error::DestinationIpProhibited,
            format!("`{raw_host}` is an IP address: plug-ins call named hosts only"),
        ));
    }
    let host = raw_host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(refuse(
            &call,
            Error::HttpRequestUriInvalid,
            "the request names no host".into(),
        ));
    }
    let policy = &call.policy;
    if !policy.allowed_hosts.is_empty()
        && !policy.allowed_hosts.iter().any(|p| host_matches(p, &host))
    {
        return Err(refuse(
            &call,
            Error::HttpRequestDenied,
            format!(
                "`{host}` is not in the plug-in's allowed_hosts ({})",
                policy.allowed_hosts.join(", ")
            ),
        ));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let deadline = call.deadline;
    let connect_deadline = shorten(deadline, options.and_then(|o| o.connect_timeout));
    let addresses = resolve(&call, &host, port, connect_deadline).await?;
    let stream = connect(&addresses, port, connect_deadline).await?;
    let stream: Box<dyn Stream> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()).connect(name, stream);
        Box::new(
            tokio::time::timeout_at(connect_deadline.into(), tls)
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?,
        )
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout_at(
        connect_deadline.into(),
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries the path only: scheme and authority are for proxies (the Host header,
    // set by wasi:http, names the host).
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared
        && length > call.ledger.sent_left(call.limits.http_request_bytes)
    {
        return Err(refuse(
            &call,
            Error::HttpRequestBodySize(Some(length)),
            format!(
                "the request body ({length} B) is over what is left of the invocation's {} B \
                 (http_request_bytes)",
                call.limits.http_request_bytes
            ),
        ));
    }
    let request = request.map(|inner| {
        CountedBody {
            inner,
            ledger: Arc::clone(&call.ledger),
            index: call.index,
            limit: call.limits.http_request_bytes,
            direction: Direction::Sent,
            deadline: None,
        }
        .boxed_unsync()
    });

    let first_byte_deadline = shorten(deadline, options.and_then(|o| o.first_byte_timeout));
    let response = async {
        tokio::time::timeout_at(first_byte_deadline.into(), sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(Error::from)
    };
    // Wait for the response while driving the connection's I/O.
    let mut response = pin!(response);
    let mut conn = Some(conn);
    let response = poll_fn(|cx| match response.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match done {
                Ok(()) => response.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err(Error::from(e))),
            }
        }
    })
    .await?;
    call.ledger.status(call.index, response.status().as_u16());
    if let Some(length) = response.body().size_hint().exact()
        && length > call.ledger.received_left(call.limits.http_response_bytes)
    {
        return Err(refuse(
            &call,
            Error::HttpResponseBodySize(Some(length)),
            format!(
                "the answer ({length} B) is over what is left of the invocation's {} B \
                 (http_response_bytes)",
                call.limits.http_response_bytes
            ),
        ));
    }
    let response = response.map(|incoming| {
        CountedBody {
            inner: incoming.map_err(Error::from),
            ledger: Arc::clone(&call.ledger),
            index: call.index,
            limit: call.limits.http_response_bytes,
            direction: Direction::Received,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline.into()))),
        }
        .boxed_unsync()
    });
    let io = async move {
        match conn {
            Some(conn) => conn.await.map_err(Error::from),
            None => Ok(()),
        }
    };
    Ok((response, Box::new(io)))
}

/// The earlier of `deadline` and now + the guest's own timeout (it may shorten the sandbox's, never
/// lengthen it).
fn shorten(deadline: Instant, guest: Option<std::time::Duration>) -> Instant {
    guest.map_or(deadline, |t| deadline.min(Instant::now() + t))
}

/// The addresses `host` resolves to (or is pinned to by the policy's `resolve`), every one of them
/// allowed: one refused address refuses the call, so a name cannot mix a public and an internal answer.
async fn resolve(
    call: &Call,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<IpAddr>, Error> {
    let addresses: Vec<IpAddr> = match call.policy.resolve.get(host) {
        Some(ip) => vec![*ip],
        None => tokio::time::timeout_at(deadline.into(), tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Error::DnsTimeout)?
            .map_err(|e| {
                refuse(
                    call,
                    Error::DestinationNotFound,
                    format!("`{host}` does not resolve: {e}"),
                )
            })?
            .map(|a| a.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(refuse(
            call,
            Error::DestinationNotFound,
            format!("`{host}` resolves to no address"),
        ));
    }
    for ip in &addresses {
        let class = classify(*ip);
        let allowed = class == AddressClass::Public
            || (class == AddressClass::Loopback && call.policy.allow_loopback_for_development);
        if !allowed {
            let hint = if class == AddressClass::Loopback {
                " (set allow_loopback_for_development = true for the plug-in to call this machine \
                 in development)"
            } else {
                ""
            };
            return Err(refuse(
                call,
                Error::DestinationIpProhibited,
                format!("`{host}` resolves to {ip}, {}{hint}", class.describe()),
            ));
        }
    }
    Ok(addresses)
}

/// Connects to the first vetted address that answers, by address: no second lookup.
async fn connect(addresses: &[IpAddr], port: u16, deadline: Instant) -> Result<TcpStream, Error> {
    let mut last = None;
    for ip in addresses {
        match tokio::time::timeout_at(
            deadline.into(),
            TcpStream::connect(SocketAddr::new(*ip, port)),
        )
        .await
        {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(e),
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    }
    Err(last.map_or(Error::ConnectionRefused, Error::Connect))
}

/// rustls with the web PKI roots (Mozilla's, compiled in: no system store is read), ring as the
/// provider the host already uses.
fn tls_config() -> Arc<rustls::ClientConfig> {
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

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> Stream for T where T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

#[derive(Clone, Copy)]
enum Direction {
    Sent,
    Received,
}

/// A body whose bytes count against the invocation's quota for its direction (the call fails with the
/// quota's error past it) and, for an answer, that ends with a timeout error at the call's deadline — so
/// a guest reading a slow answer is never blocked past it.
struct CountedBody<B> {
    inner: B,
    ledger: Arc<Ledger>,
    index: usize,
    limit: usize,
    direction: Direction,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Bytes::len) as u64;
                let within = match this.direction {
                    Direction::Sent => this.ledger.add_sent(this.index, n, this.limit),
                    Direction::Received => this.ledger.add_received(this.index, n, this.limit),
                };
                if !within {
                    let n = Some(this.limit as u64);
                    return Poll::Ready(Some(Err(match this.direction {
                        Direction::Sent => Error::HttpRequestBodySize(n),
                        Direction::Received => Error::HttpResponseBodySize(n),
                    })));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                // The end of the answer ends the call (the end of the request does not).
                if let Direction::Received = this.direction {
                    this.ledger.finish(this.index);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => match &mut this.deadline {
                Some(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    this.ledger
                        .fail(this.index, "the call's time ran out".into());
                    Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
                }
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
