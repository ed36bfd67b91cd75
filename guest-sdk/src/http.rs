//! Outbound HTTP and HTTPS from a plug-in: a small blocking client on `wasi:http`, which the weft host
//! grants to weft:plugin@0.2.0 plug-ins under Dataverse's sandbox rules (named hosts only, no internal
//! addresses, per-plug-in allowed hosts, bounded time, bytes and calls). Send with
//! [`Services::send`](crate::Services::send); in native tests [`crate::testing::TestHost::fake_endpoint`]
//! answers instead of the network.
//!
//! ```
//! use weft_sdk::http::{Request, Response};
//! use weft_sdk::testing::TestHost;
//! use weft_sdk::Services;
//!
//! let host = TestHost::new().fake_endpoint("https://api.contoso.com/", |req| {
//!     Ok(Response::new(201, format!("got {} bytes", req.body.len())))
//! });
//! let services = Services::new(&host);
//! let answer = services
//!     .send(&Request::post("https://api.contoso.com/orders", r#"{"id":1}"#).header("content-type", "application/json"))
//!     .unwrap();
//! assert_eq!((answer.status, answer.text().as_str()), (201, "got 8 bytes"));
//! assert_eq!(host.http_requests()[0].url, "https://api.contoso.com/orders");
//! ```
//!
//! Must not: keep connections, follow redirects or retry (a plug-in decides; the host counts each call),
//! or let `wasi:http`'s generated types out of this module.

use std::fmt;
use std::time::Duration;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// HEAD
    Head,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        })
    }
}

/// A request: method, absolute `http://` or `https://` URL, headers, body, optional timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
    /// A shorter time limit than the host's (`http_timeout_ms`), for connecting and for the first byte.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A GET.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new(Method::Get, url)
    }

    /// A POST with a body.
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Request {
        Request::new(Method::Post, url).body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a time limit shorter than the host's.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }
}

/// An answer: status, headers and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An answer with a status and a body, no headers (for fake endpoints).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a call brought no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// The URL is not an absolute http(s) URL.
    InvalidUrl,
    /// The sandbox refused the call (scheme, IP literal, a host outside the plug-in's allowed hosts or
    /// resolving to an internal address); the host's trace line for the call says which.
    Refused,
    /// The call's time (or the plug-in's) ran out.
    Timeout,
    /// The request or the answer passed the invocation's byte quota.
    TooLarge,
    /// The host name does not resolve, or the connection or TLS failed.
    Connection,
    /// Anything else (protocol errors, a host that grants no HTTP).
    Other,
}

/// A failed call: its kind and a message for the trace log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// What went wrong.
    pub kind: HttpErrorKind,
    /// Details.
    pub message: String,
}

impl HttpError {
    /// An error of `kind`.
    pub fn new(kind: HttpErrorKind, message: impl Into<String>) -> HttpError {
        HttpError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP call failed ({:?}): {}", self.kind, self.message)
    }
}

impl std::error::Error for HttpError {}

/// A URL split the way wasi:http wants it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Url<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path_with_query: String,
}

/// Splits an absolute URL into scheme, authority and path-with-query (a fragment is dropped: it never
/// goes on the wire).
pub(crate) fn split_url(url: &str) -> Result<Url<'_>, HttpError> {
    let bad = |why: &str| HttpError::new(HttpErrorKind::InvalidUrl, format!("`{url}`: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("not an absolute URL (scheme://host/path)"))?;
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let path_with_query = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    Ok(Url {
        scheme,
        authority,
        path_with_query,
    })
}

/// Sends through the host's `wasi:http` (the WebAssembly side of [`crate::Services::send`]).
#[cfg(target_arch = "wasm32")]
pub(crate) fn send_wasi(request: &Request) -> Result<Response, HttpError> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, Method as WasiMethod, OutgoingBody, OutgoingRequest, RequestOptions,
        Scheme,
    };
    use wasip2::io::streams::StreamError;

    let url = split_url(&request.url)?;
    let entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let other = |m: String| HttpError::new(HttpErrorKind::Other, m);
    let headers =
        Fields::from_list(&entries).map_err(|e| other(format!("header not accepted: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
        Method::Head => WasiMethod::Head,
    };
    let scheme = match url.scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let invalid = || HttpError::new(HttpErrorKind::InvalidUrl, request.url.clone());
    outgoing.set_method(&method).map_err(|()| invalid())?;
    outgoing.set_scheme(Some(&scheme)).map_err(|()| invalid())?;
    outgoing
        .set_authority(Some(url.authority))
        .map_err(|()| invalid())?;
    outgoing
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid())?;
    let options = request.timeout.map(|t| {
        let options = RequestOptions::new();
        let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        // Refused only by hosts that do not support a timeout; the host's own limit applies then.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        options
    });
    let body = outgoing
        .body()
        .map_err(|()| other("the request body was already taken".into()))?;
    // Hand the request over first, then stream the body: the host reads it as it sends.
    let pending = outgoing_handler::handle(outgoing, options).map_err(error_from_code)?;
    if !request.body.is_empty() {
        let stream = body
            .write()
            .map_err(|()| other("the request body stream was already taken".into()))?;
        // wasi:io allows at most 4096 bytes per blocking write.
        for chunk in request.body.chunks(4096) {
            if let Err(e) = stream.blocking_write_and_flush(chunk) {
                drop(stream);
                return Err(stream_error(e, &pending));
            }
        }
    }
    OutgoingBody::finish(body, None).map_err(error_from_code)?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(error_from_code(code)),
        _ => return Err(other("the answer was not available after waiting".into())),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| other("the answer body was already taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| other("the answer body stream was already taken".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(match wasip2::http::types::http_error_code(&e) {
                    Some(code) => error_from_code(code),
                    // The host's body errors do not always carry a wasi:http error code: their first
                    // line says what happened (the rest may be a host backtrace).
                    None => {
                        let text = e.to_debug_string();
                        let first = text.lines().next().unwrap_or_default().to_owned();
                        let lower = first.to_ascii_lowercase();
                        let kind = if lower.contains("size exceeds") {
                            HttpErrorKind::TooLarge
                        } else if lower.contains("timeout") || lower.contains("timed out") {
                            HttpErrorKind::Timeout
                        } else {
                            HttpErrorKind::Other
                        };
                        HttpError::new(kind, first)
                    }
                });
            }
        }
    }
    return Ok(Response {
        status,
        headers,
        body: bytes,
    });

    fn stream_error(
        e: StreamError,
        pending: &wasip2::http::types::FutureIncomingResponse,
    ) -> HttpError {
        // A closed request stream usually means the call failed: its own error says why.
        if let Some(Ok(Err(code))) = pending.get() {
            return error_from_code(code);
        }
        HttpError::new(
            HttpErrorKind::Other,
            format!("writing the request body failed: {e:?}"),
        )
    }

    fn error_from_code(code: ErrorCode) -> HttpError {
        let kind = match &code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                HttpErrorKind::Refused
            }
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => HttpErrorKind::Timeout,
            ErrorCode::HttpRequestBodySize(_) | ErrorCode::HttpResponseBodySize(_) => {
                HttpErrorKind::TooLarge
            }
            ErrorCode::HttpRequestUriInvalid => HttpErrorKind::InvalidUrl,
            ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => HttpErrorKind::Connection,
            _ => HttpErrorKind::Other,
        };
        HttpError::new(kind, format!("{code:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL splits into what wasi:http sets; a query without a path gets `/`; a fragment never leaves.
    #[test]
    fn urls_split() {
        let u = split_url("https://api.contoso.com:8443/v1/orders?id=3#top").unwrap();
        assert_eq!(
            (u.scheme, u.authority, u.path_with_query.as_str()),
            ("https", "api.contoso.com:8443", "/v1/orders?id=3")
        );
        assert_eq!(
            split_url("http://contoso.com?x=1").unwrap().path_with_query,
            "/?x=1"
        );
        assert_eq!(
            split_url("http://contoso.com").unwrap().path_with_query,
            "/"
        );
        for bad in ["contoso.com/x", "https:///path", "https://"] {
            assert_eq!(split_url(bad).unwrap_err().kind, HttpErrorKind::InvalidUrl);
        }
    }
}
