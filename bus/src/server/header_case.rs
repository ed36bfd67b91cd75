//! Request header names as the client spelled them. HTTP/1.1 header names are case-insensitive and hyper
//! hands them over lower-cased (its own record of the spelling is private), but a Service Bus custom
//! property sent as a header (`EntityLogicalName: "account"`) is named by that spelling: Azure's front end
//! keeps it, AMQP receivers and correlation filters see it. So each connection's bytes are watched as they
//! are read: every request head is parsed (httparse, the parser hyper itself uses) for its header names,
//! bodies are skipped by their framing, and the names reach the request as a [`HeaderSpelling`] extension.
//!
//! Owns only that observation; it changes no byte and decides nothing. Anything it does not follow (a head
//! over [`MAX_HEAD`], more than [`MAX_HEADERS`] headers, a malformed chunk, an upgrade to WebSocket) turns
//! it off for the connection, and names then stay lower-cased. A spelling is only ever used for a name it
//! equals ignoring ASCII case, so a stray record can never rename a property into another one.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request head followed (hyper's own default limit is about 400 KB; Service Bus heads are small).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers followed in one head.
pub const MAX_HEADERS: usize = 128;
/// Heads parsed but not yet taken by their request (pipelining); older ones are dropped past this.
const MAX_QUEUED: usize = 32;

/// The header names of one request as sent (extension set by the connection, read by the handlers).
#[derive(Debug, Clone, Default)]
pub struct HeaderSpelling(pub Arc<[String]>);

impl HeaderSpelling {
    /// The spelling of `lower` (a lower-cased header name) as sent, or `lower` itself.
    pub fn of<'a>(&'a self, lower: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|n| n.eq_ignore_ascii_case(lower))
            .map_or(lower, String::as_str)
    }
}

/// Spellings of the heads read on one connection, in order, for its requests to take.
pub type Spellings = Arc<Mutex<VecDeque<HeaderSpelling>>>;

/// Takes the next request's spelling.
pub fn next(spellings: &Spellings) -> Option<HeaderSpelling> {
    spellings.lock().ok()?.pop_front()
}

enum State {
    /// In a request head (bytes so far in `buf`).
    Head,
    /// Skipping a body of this many bytes.
    Body(u64),
    /// Reading a chunk-size line (in `buf`).
    ChunkSize,
    /// Skipping chunk data and its CRLF.
    ChunkData(u64),
    /// Reading trailer lines up to the empty one.
    Trailers,
    /// Not following this connection any more.
    Off,
}

/// Follows the bytes a server reads: request heads, bodies by Content-Length or chunked framing.
struct Scanner {
    state: State,
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Scanner {
    fn new() -> Scanner {
        Scanner {
            state: State::Head,
            buf: Vec::new(),
        }
    }

    fn feed(&mut self, mut data: &[u8], out: &Spellings) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Body(n) | State::ChunkData(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[k as usize..];
                    let left = n - k;
                    self.state = match (&self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), l) => State::Body(l),
                        (_, 0) => State::ChunkSize,
                        (_, l) => State::ChunkData(l),
                    };
                }
                State::Head => {
                    // Where the head ends in `data`: a terminator spanning the previous read and this one,
                    // else one inside this read. Only the head's bytes are copied, never the body's.
                    let spanning = (!self.buf.is_empty())
                        .then(|| {
                            let tail = &self.buf[self.buf.len().saturating_sub(3)..];
                            let mut joint = tail.to_vec();
                            joint.extend_from_slice(&data[..data.len().min(3)]);
                            find(&joint, b"\r\n\r\n").map(|p| p + 4 - tail.len())
                        })
                        .flatten();
                    let Some(end) = spanning.or_else(|| find(data, b"\r\n\r\n").map(|p| p + 4))
                    else {
                        self.buf.extend_from_slice(data);
                        if self.buf.len() > MAX_HEAD {
                            self.off();
                        }
                        return;
                    };
                    self.buf.extend_from_slice(&data[..end]);
                    data = &data[end..];
                    self.head(out);
                    self.buf.clear();
                }
                State::ChunkSize | State::Trailers => {
                    let start = self.buf.len().saturating_sub(1);
                    let before = self.buf.len();
                    self.buf.extend_from_slice(data);
                    let Some(at) = find(&self.buf[start..], b"\r\n") else {
                        if self.buf.len() > 4096 {
                            self.off();
                        }
                        return;
                    };
                    let end = start + at + 2;
                    data = &data[end - before..];
                    let line = &self.buf[..end - 2];
                    self.state = if matches!(self.state, State::Trailers) {
                        if line.is_empty() {
                            State::Head
                        } else {
                            State::Trailers
                        }
                    } else {
                        let size = std::str::from_utf8(line)
                            .ok()
                            .map(|l| l.split(';').next().unwrap_or("").trim())
                            .and_then(|h| u64::from_str_radix(h, 16).ok());
                        match size {
                            Some(0) => State::Trailers,
                            Some(n) => State::ChunkData(n.saturating_add(2)),
                            None => State::Off,
                        }
                    };
                    self.buf.clear();
                }
            }
        }
    }

    fn off(&mut self) {
        self.state = State::Off;
        self.buf = Vec::new();
    }

    /// A complete head in `buf`: records its names and sets how its body is framed.
    fn head(&mut self, out: &Spellings) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.buf) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return self.off(),
        }
        let mut length = 0u64;
        let mut chunked = false;
        let mut upgrade = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(n) => length = n,
                    None => return self.off(),
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.to_ascii_lowercase().ends_with(b"chunked");
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let names: Arc<[String]> = req
            .headers
            .iter()
            // Only names whose case says something: an all-lower-case name is what hyper gives anyway.
            .filter(|h| h.name.bytes().any(|b| b.is_ascii_uppercase()))
            .map(|h| h.name.to_owned())
            .collect();
        if let Ok(mut q) = out.lock() {
            if q.len() >= MAX_QUEUED {
                q.pop_front();
            }
            q.push_back(HeaderSpelling(names));
        }
        self.state = if upgrade {
            // After a WebSocket upgrade the bytes are frames, not requests.
            State::Off
        } else if chunked {
            State::ChunkSize
        } else if length > 0 {
            State::Body(length)
        } else {
            State::Head
        };
    }
}

/// An IO that reports the request heads it reads to its connection's [`Spellings`].
pub struct Recording<T> {
    inner: T,
    scanner: Scanner,
    out: Spellings,
}

impl<T> Recording<T> {
    /// Watches `inner`'s reads; the spellings go to `out`.
    pub fn new(inner: T, out: Spellings) -> Recording<T> {
        Recording {
            inner,
            scanner: Scanner::new(),
            out,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Recording<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.scanner.feed(&buf.filled()[before..], &this.out);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Recording<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(q: &Spellings) -> Vec<Vec<String>> {
        q.lock().unwrap().iter().map(|s| s.0.to_vec()).collect()
    }

    /// Heads split anywhere, bodies by length and chunks, pipelined requests: each head's mixed-case names,
    /// in order.
    #[test]
    fn follows_heads_and_bodies() {
        let wire = b"POST /q/messages HTTP/1.1\r\nHost: x\r\nEntityLogicalName: \"a\"\r\nContent-Length: 5\r\n\r\n\r\n\r\nx\
POST /q/messages HTTP/1.1\r\nhost: x\r\nTransfer-Encoding: chunked\r\nDepth: 1\r\n\r\n3;ext\r\nabc\r\n0\r\nT: 1\r\n\r\n\
DELETE /q/messages/head HTTP/1.1\r\nAuthorization: s\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let q = Spellings::default();
            let mut s = Scanner::new();
            for chunk in wire.chunks(step) {
                s.feed(chunk, &q);
            }
            assert_eq!(
                names(&q),
                [
                    vec!["Host", "EntityLogicalName", "Content-Length"],
                    vec!["Transfer-Encoding", "Depth"],
                    vec!["Authorization"],
                ],
                "step {step}"
            );
            assert!(matches!(s.state, State::Head));
        }
    }

    /// What it cannot follow turns it off; a spelling only ever renames a name it equals ignoring case.
    #[test]
    fn gives_up_safely() {
        let q = Spellings::default();
        let mut s = Scanner::new();
        s.feed(
            b"GET /$hc/x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            &q,
        );
        assert!(matches!(s.state, State::Off));
        let mut s = Scanner::new();
        s.feed(&vec![b'a'; MAX_HEAD + 10], &q);
        assert!(matches!(s.state, State::Off));
        let mut s = Scanner::new();
        s.feed(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            &q,
        );
        assert!(matches!(s.state, State::Off));
        let sp = HeaderSpelling(vec!["EntityLogicalName".to_owned()].into());
        assert_eq!(sp.of("entitylogicalname"), "EntityLogicalName");
        assert_eq!(sp.of("depth"), "depth");
    }
}
