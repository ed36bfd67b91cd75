//! Outbound HTTP and HTTPS from sandboxed plug-ins: Dataverse's "external endpoint access" from a
//! plug-in registered in the sandbox, over `wasi:http` (wasmtime-wasi-http), granted to
//! `weft:plugin@0.2.0` components only.
//!
//! Owns the plug-in's [`OutboundPolicy`] (its `[plugin.outbound]` table in weft.toml), the per-invocation
//! [`Ledger`] of calls (what the limits report and the trace log show) and the wasi:http hooks that
//! send every request through the vetting connector (`send`). The rules are Dataverse's sandbox rules:
//! http and https only; named hosts only, never IP literals; no loopback, private, shared (CGNAT),
//! link-local (cloud metadata), unspecified, multicast or reserved address, checked on the address
//! actually connected to; TLS with rustls and the web PKI roots. Loopback opens only with the plug-in's
//! loudly-named `allow_loopback_for_development = true`.
//!
//! Must not touch the pipeline or the store, and never records header values (they carry secrets).
//!
//! # Layout
//! - `address`: address classes and allow-list patterns (pure).
//! - `send`: the connector and the byte- and time-bounded bodies.

mod address;
mod send;

pub use address::AddressClass;

use super::limits::Limits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Where one plug-in may call: its `[plugin.outbound]` table (`deny_unknown_fields`; absent keys keep
/// their defaults, which are Dataverse's: any named host with a public address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundPolicy {
    /// Host names the plug-in may call: `api.contoso.com`, or `*.contoso.com` for any name under
    /// contoso.com. Empty (the default): any named host whose addresses are all public.
    pub allowed_hosts: Vec<String>,
    /// Lets the plug-in reach this machine (loopback addresses, e.g. `localhost`) — for local
    /// development and tests only: a production plug-in calling loopback reaches the host's own
    /// services. Never opens private, link-local or metadata addresses.
    pub allow_loopback_for_development: bool,
    /// Names pinned to an address instead of asking DNS (as curl's `--resolve`): points a production
    /// name at a local mock. A pinned address is vetted like a resolved one.
    pub resolve: BTreeMap<String, IpAddr>,
}

impl OutboundPolicy {
    /// Checks every allow-list entry and pinned name, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for pattern in &self.allowed_hosts {
            address::check_pattern(pattern)?;
        }
        for name in self.resolve.keys() {
            if name.starts_with("*.") {
                return Err(format!(
                    "resolve entry \"{name}\": pin names, not wildcards"
                ));
            }
            address::check_pattern(name).map_err(|e| e.replace("allowed_hosts", "resolve"))?;
        }
        Ok(())
    }

    /// The policy with every rule at its default but loopback opened (`weft plugin run
    /// --allow-loopback-for-development`, the quickstart's local receiver).
    pub fn loopback_for_development() -> OutboundPolicy {
        OutboundPolicy {
            allow_loopback_for_development: true,
            ..OutboundPolicy::default()
        }
    }
}

/// One outbound call, as the trace log and `weft plugin run` show it: never a header value, a path or a
/// query (they may carry keys), only the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The method, e.g. `POST`.
    pub method: String,
    /// `scheme://host[:port]` as the plug-in asked for it.
    pub origin: String,
    /// The answer's status, when one came.
    pub status: Option<u16>,
    /// Why the sandbox refused the call before connecting, when it did.
    pub refused: Option<String>,
    /// Why the call failed after it started (timeout, connection error, quota), when it did.
    pub error: Option<String>,
    /// Request body bytes sent.
    pub sent_bytes: u64,
    /// Answer body bytes received.
    pub received_bytes: u64,
    /// Time from the call to the end of its answer; `None` while the answer was not read to its end.
    pub duration: Option<Duration>,
}

impl fmt::Display for HttpCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outbound {} {}", self.method, self.origin)?;
        if let Some(why) = &self.refused {
            return write!(f, " refused: {why}");
        }
        match self.status {
            Some(status) => write!(f, " -> {status}")?,
            None => f.write_str(" -> no answer")?,
        }
        write!(
            f,
            ", sent {} B, received {} B",
            self.sent_bytes, self.received_bytes
        )?;
        match self.duration {
            Some(d) => write!(f, ", {} ms", d.as_millis())?,
            None => f.write_str(", answer not read to its end")?,
        }
        if let Some(e) = &self.error {
            write!(f, "; failed: {e}")?;
        }
        Ok(())
    }
}

/// The calls of one invocation and its byte totals. Shared with the connection tasks, which count bytes
/// as they flow.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<LedgerInner>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    calls: Vec<(HttpCall, Instant)>,
    sent: u64,
    received: u64,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerInner> {
        // A poisoned ledger only means a connection task panicked mid-count; the counts stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, method: String, origin: String) -> usize {
        let mut inner = self.lock();
        inner.calls.push((
            HttpCall {
                method,
                origin,
                status: None,
                refused: None,
                error: None,
                sent_bytes: 0,
                received_bytes: 0,
                duration: None,
            },
            Instant::now(),
        ));
        inner.calls.len() - 1
    }

    fn with(&self, index: usize, f: impl FnOnce(&mut HttpCall, Instant)) {
        if let Some((call, started)) = self.lock().calls.get_mut(index) {
            f(call, *started);
        }
    }

    fn refuse(&self, index: usize, reason: String) {
        self.with(index, |c, _| c.refused = Some(reason));
    }

    /// Records a failure, unless the call already has a refusal or an earlier failure (the first cause
    /// is the one that matters).
    fn fail(&self, index: usize, reason: String) {
        self.with(index, |c, started| {
            if c.refused.is_none() && c.error.is_none() {
                c.error = Some(reason);
                c.duration = Some(started.elapsed());
            }
        });
    }

    fn status(&self, index: usize, status: u16) {
        self.with(index, |c, _| c.status = Some(status));
    }

    fn finish(&self, index: usize) {
        self.with(index, |c, started| {
            c.duration.get_or_insert_with(|| started.elapsed());
        });
    }

    /// Counts `n` bytes sent; false when the invocation's total would pass `limit`.
    fn add_sent(&self, index: usize, n: u64, limit: usize) -> bool {
        let mut inner = self.lock();
        inner.sent += n;
        let within = inner.sent <= limit as u64;
        if let Some((call, _)) = inner.calls.get_mut(index) {
            call.sent_bytes += n;
            if !within {
                call.error = Some(format!(
                    "the invocation's request bytes passed {limit} (http_request_bytes)"
                ));
            }
        }
        within
    }

    /// Counts `n` bytes received; false when the invocation's total would pass `limit`.
    fn add_received(&self, index: usize, n: u64, limit: usize) -> bool {
        let mut inner = self.lock();
        inner.received += n;
        let within = inner.received <= limit as u64;
        if let Some((call, started)) = inner.calls.get_mut(index) {
            call.received_bytes += n;
            if !within && call.error.is_none() {
                call.error = Some(format!(
                    "the invocation's answer bytes passed {limit} (http_response_bytes)"
                ));
                call.duration = Some(started.elapsed());
            }
        }
        within
    }

    fn sent_left(&self, limit: usize) -> u64 {
        (limit as u64).saturating_sub(self.lock().sent)
    }

    fn received_left(&self, limit: usize) -> u64 {
        (limit as u64).saturating_sub(self.lock().received)
    }

    /// The calls so far, and the bytes sent and received.
    pub fn snapshot(&self) -> (Vec<HttpCall>, u64, u64) {
        let inner = self.lock();
        (
            inner.calls.iter().map(|(c, _)| c.clone()).collect(),
            inner.sent,
            inner.received,
        )
    }
}

/// The wasi:http hooks of one invocation: every request goes through [`send`](send::send).
pub struct Outbound {
    pub(super) policy: Arc<OutboundPolicy>,
    pub(super) limits: Arc<Limits>,
    pub(super) ledger: Arc<Ledger>,
    /// When the invocation must end; no call outlives it.
    pub(super) deadline: Instant,
    /// Calls attempted (refused ones included).
    pub(super) calls: u32,
    /// Whether a call went past `http_calls`: the invocation then fails with that quota.
    pub(super) quota_hit: bool,
}

impl WasiHttpHooks for Outbound {
    // Every scheme reaches `send`, which refuses all but http and https with a reason for the trace log.
    fn is_supported_scheme(&mut self, _scheme: &http::uri::Scheme) -> bool {
        true
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<send::Sent, wasmtime_wasi_http::Error>> + Send> {
        let uri = request.uri();
        // Host and port only: an authority's user-info part would be a credential.
        let origin = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or(""),
            uri.host().unwrap_or(""),
            uri.port_u16().map_or(String::new(), |p| format!(":{p}"))
        );
        let index = self.ledger.open(request.method().to_string(), origin);
        self.calls += 1;
        // Past the quota or the deadline nothing is sent. wasi:http's handler cannot trap from here, so
        // the quota fails the invocation when it ends (`Sandbox::invoke_until`), and past the deadline
        // the epoch stops the plug-in at its next check.
        let refusal = if self.calls > self.limits.http_calls {
            self.quota_hit = true;
            Some((
                wasmtime_wasi_http::Error::HttpRequestDenied,
                format!(
                    "the invocation's {} outbound calls (http_calls) are spent",
                    self.limits.http_calls
                ),
            ))
        } else if Instant::now() >= self.deadline {
            Some((
                wasmtime_wasi_http::Error::ConnectionTimeout,
                "the invocation's time is up".to_owned(),
            ))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            self.ledger.refuse(index, reason);
            return Box::new(async move { Err(code) });
        }
        let call = send::Call {
            policy: Arc::clone(&self.policy),
            limits: Arc::clone(&self.limits),
            ledger: Arc::clone(&self.ledger),
            index,
            deadline: self
                .deadline
                .min(Instant::now() + self.limits.http_timeout()),
        };
        Box::new(send::send(call, request, options))
    }
}
